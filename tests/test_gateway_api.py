"""The API's analyses and every route's ownership: a second user gets 404 from every route that
takes an id, exactly as for an id that does not exist, and sees nothing of the first user's.

Real SQLite in tmp_path, real uploads, and for the finished analysis the real job runner against
the real Triton of tests/conftest.py.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import create_app
from gateway.config import Config
from gateway.db import engine_of
from gateway.models import User
from gateway.testing import csrf_token
from gateway.testing_flow import api_user, runner_for, signed_in, stored_files
from gateway.tokens import create_token
from preprocessing.synthesis import SampleSpec, write_sample_video

NO_SUCH_ID = 987654


class Person:
    """A user with a browser session and an API token."""

    def __init__(self, app: Flask, email: str) -> None:
        self.app, self.web = app, signed_in(app, email)
        with Session(engine_of(app)) as session:
            user = session.scalar(select(User).where(User.email == email))
            _, secret = create_token(session, user, "tests")
            self.id = user.id
        self.headers = {"Authorization": f"Bearer {secret}"}

    def call(self, method: str, path: str, **request: Any) -> Any:
        return self.app.test_client().open(path, method=method, headers={**self.headers, **request.pop("headers", {})}, **request)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_video(tmp_path_factory.mktemp("api") / "clip.mp4", SampleSpec(duration_s=3.6, width=320, height=180, face_height=120))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, video: Path, triton: Any) -> dict[str, Any]:
    """Ana, with one finished analysis (annotated copy and all) and one waiting; Bob, with nothing."""
    app = create_app(Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path_factory.mktemp("api-data"))}))
    ana, bob = Person(app, "ana@example.org"), Person(app, "bob@example.org")
    done = _create(ana, video, name="Ana's interview")
    runner = runner_for(app, triton.grpc_url)
    runner.work(burst=True)
    runner.close()
    waiting = _create(ana, video, name="Ana, later")
    return {"app": app, "ana": ana, "bob": bob, "done": done, "waiting": waiting}


def _create(person: Person, video: Path, **form: str) -> dict[str, Any]:
    response = person.call("POST", "/api/v1/analyses", content_type="multipart/form-data",
                           data={"recording": (io.BytesIO(video.read_bytes()), "clip.mp4"), "consent": "true", **form})  # fmt: skip
    assert response.status_code == 201, response.json
    return response.json


# Create, poll, fetch


def test_a_finished_analysis_has_its_verdict_timeline_and_files(world: dict[str, Any]) -> None:
    ana, done = world["ana"], world["done"]
    body = ana.call("GET", f"/api/v1/analyses/{done['id']}").json
    assert (body["status"], body["percent"], body["stage"], body["timeline_ready"], body["mode"], body["weights"]) == (
        "done", 100, None, True, "av", "real")  # fmt: skip
    assert body["verdict"]["label"] in body["verdict"]["probabilities"]
    assert set(body["files"]) == {"video", "json", "csv", "plot"}
    timeline = ana.call("GET", body["links"]["timeline"]).json
    assert timeline["windows"][0]["start_s"] == 0.0 and timeline["complete"] is True
    assert [m["model"] for m in timeline["models_used"]] == ["face_expression", "speech_emotion"]
    video = ana.call("GET", body["files"]["video"], headers={"Range": "bytes=0-9"})
    assert video.status_code == 206 and video.data[4:8] == b"ftyp"
    csv_file = ana.call("GET", body["files"]["csv"])
    assert csv_file.mimetype == "text/csv" and csv_file.headers["Content-Disposition"].startswith("attachment")


def test_a_waiting_analysis_says_its_stage_and_has_no_timeline_yet(world: dict[str, Any]) -> None:
    ana, waiting = world["ana"], world["waiting"]
    body = ana.call("GET", f"/api/v1/analyses/{waiting['id']}").json
    assert (body["status"], body["stage"], body["stage_label"], body["percent"]) == ("queued", "queued", "Waiting for a worker", 0)
    timeline = ana.call("GET", f"/api/v1/analyses/{waiting['id']}/timeline")
    assert timeline.status_code == 409
    assert timeline.json["error"] == {"code": "not_ready", "message": "The timeline is not ready yet: the analysis is waiting for a worker."}
    copy = ana.call("GET", f"/api/v1/analyses/{waiting['id']}/files/video")
    assert copy.status_code == 409 and copy.json["error"]["code"] == "not_ready"
    unknown = ana.call("GET", f"/api/v1/analyses/{waiting['id']}/files/secrets")
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "not_found"


def test_the_list_pages_newest_first_and_searches(tmp_path: Path, video: Path) -> None:
    app = create_app(Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path)}))
    person = Person(app, "pages@example.org")
    app.config["EMOFUSE_MAX_PENDING_ANALYSES"] = 10
    made = [_create(person, video, name=f"Visit {n}")["id"] for n in range(5)]
    first = person.call("GET", "/api/v1/analyses?per_page=2").json
    assert (first["total"], first["pages"], first["page"]) == (5, 3, 1)
    assert [item["id"] for item in first["items"]] == made[::-1][:2]
    assert first["links"] == {"self": "/api/v1/analyses?page=1&per_page=2", "next": "/api/v1/analyses?page=2&per_page=2"}
    last = person.call("GET", "/api/v1/analyses?page=3&per_page=2").json
    assert [item["id"] for item in last["items"]] == [made[0]] and "next" not in last["links"] and "prev" in last["links"]
    assert person.call("GET", "/api/v1/analyses?q=visit%203").json["total"] == 1
    for query, message in (("per_page=101", "per_page is 101; ask for at most 100."), ("page=0", "page is '0'; send a whole number from 1."),
                           ("page=two", "page is 'two'; send a whole number from 1.")):  # fmt: skip
        response = person.call("GET", f"/api/v1/analyses?{query}")
        assert response.status_code == 400 and response.json["error"] == {"code": "bad_request", "message": message}


def test_rename_and_delete(tmp_path: Path, video: Path) -> None:
    app = create_app(Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path)}))
    person = Person(app, "edit@example.org")
    analysis = _create(person, video)
    path = f"/api/v1/analyses/{analysis['id']}"
    assert person.call("PATCH", path, json={"name": " Second  visit "}).json["name"] == "Second visit"
    for body in (None, {"title": "x"}, {"name": 7}):
        bad = person.call("PATCH", path, json=body)
        assert bad.status_code == 400 and bad.json["error"]["message"] == 'Send a JSON object with the new name: {"name": "..."}.'
    empty = person.call("PATCH", path, json={"name": "\u202e  "})
    assert empty.status_code == 400 and empty.json["error"]["message"] == "Enter a name for the analysis."
    assert person.call("DELETE", path).status_code == 204
    assert person.call("GET", path).status_code == 404
    assert person.call("DELETE", path).status_code == 404
    assert stored_files(app, person.id) == []


def test_errors_are_json_with_a_code_and_the_right_status(world: dict[str, Any]) -> None:
    app = world["app"]
    anonymous = app.test_client()
    missing = anonymous.get("/api/v1/analyses")
    assert missing.status_code == 401 and missing.json["error"]["code"] == "authentication_required"
    forged = anonymous.get("/api/v1/analyses", headers={"Authorization": "Bearer emo_not-a-real-token"})
    assert forged.status_code == 401 and forged.json["error"]["code"] == "invalid_token"
    ana = world["ana"]
    wrong_method = ana.call("PUT", f"/api/v1/analyses/{world['done']['id']}")
    assert wrong_method.status_code == 405 and wrong_method.is_json and "PATCH" in wrong_method.headers["Allow"]
    nowhere = ana.call("GET", "/api/v1/analyses/1/nowhere")
    assert nowhere.status_code == 404 and nowhere.json["error"]["code"] == "not_found"


# Ownership


def _id_routes(app: Flask) -> list[tuple[str, str, str]]:
    """Every (method, rule, endpoint) that takes an analysis or recording id."""
    routes = []
    for rule in app.url_map.iter_rules():
        if "analysis_id" in rule.arguments or "recording_id" in rule.arguments:
            routes += [(method, rule.rule, rule.endpoint) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return routes


def _fill(rule: str, analysis_id: int, recording_id: int) -> str:
    path = rule.replace("<int:analysis_id>", str(analysis_id)).replace("<int:recording_id>", str(recording_id))
    return path.replace("<kind>", "video")


def _as(person: Person, method: str, path: str) -> Any:
    if path.startswith("/api/"):
        return person.call(method, path, json={"name": "taken over"} if method == "PATCH" else None)
    data = {"csrf_token": csrf_token(person.web, "/"), "name": "taken over"} if method == "POST" else None
    return person.web.open(path, method=method, data=data)


def test_every_route_with_an_id_answers_another_user_as_if_it_did_not_exist(world: dict[str, Any]) -> None:
    app, ana, bob, done = world["app"], world["ana"], world["bob"], world["done"]
    routes = _id_routes(app)
    assert len(routes) == 16  # 9 of pages, 7 of the API; a new one is tried here as soon as it exists
    before = ana.call("GET", f"/api/v1/analyses/{done['id']}").json
    files_before = stored_files(app, ana.id)
    for method, rule, endpoint in routes:
        theirs = _as(bob, method, _fill(rule, done["id"], done["recording"]["id"]))
        nothing = _as(bob, method, _fill(rule, NO_SUCH_ID, NO_SUCH_ID))
        assert theirs.status_code == nothing.status_code == 404, (method, rule, theirs.status_code, nothing.status_code)
        mine, none = (_message(r).replace(str(i), "ID") for r, i in ((theirs, done["id"]), (nothing, NO_SUCH_ID)))
        mine = mine.replace(str(done["recording"]["id"]), "ID")
        assert mine == none, (endpoint, mine, none)
        assert "interview" not in theirs.get_data(as_text=True)  # nothing of the analysis, not even its name
    after = ana.call("GET", f"/api/v1/analyses/{done['id']}").json
    assert after == before and stored_files(app, ana.id) == files_before  # nothing renamed, deleted, or queued


def _message(response: Any) -> str:
    if response.is_json:
        return response.json["error"]["message"]
    found = re.search(r'class="notice error" role="alert">([^<]*)<', response.get_data(as_text=True))
    return found.group(1) if found else response.get_data(as_text=True)[:200]


def test_lists_and_searches_show_only_ones_own(world: dict[str, Any]) -> None:
    bob = world["bob"]
    assert bob.call("GET", "/api/v1/analyses").json["total"] == 0
    assert bob.call("GET", "/api/v1/analyses?q=Ana").json["items"] == []
    home = bob.web.get("/?q=Ana").text
    assert "Ana's interview" not in home and "Ana&#39;s interview" not in home
    assert world["ana"].call("GET", "/api/v1/analyses").json["total"] == 2


def test_a_revoked_token_reaches_nothing(world: dict[str, Any], video: Path) -> None:
    app = world["app"]
    user_id, headers = api_user(app, "revoked@example.org")
    from gateway.models import ApiToken
    from gateway.tokens import revoke_token

    with Session(engine_of(app)) as session:
        revoke_token(session, session.scalar(select(ApiToken).where(ApiToken.user_id == user_id)))
    client: FlaskClient = app.test_client()
    response = client.post("/api/v1/analyses", headers=headers, content_type="multipart/form-data",
                           data={"recording": (io.BytesIO(video.read_bytes()), "clip.mp4"), "consent": "true"})  # fmt: skip
    assert response.status_code == 401 and response.json["error"]["code"] == "invalid_token"
    assert stored_files(app, user_id) == []
