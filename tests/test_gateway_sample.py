"""The sample video one click away (gateway.sample): offered only to a user with no analyses on a
server that has a sample, CSRF-checked, stored like an upload, and seen by its owner alone.

A real SQLite database in tmp_path and a real sample video; no Triton: the click only records the
analysis and queues its job (tests/test_serve.py runs it through `emofuse serve`'s worker).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from gateway import create_app, current
from gateway.config import Config
from gateway.db import engine_of
from gateway.failures import CSRF_FAILED
from gateway.models import Analysis, Job, JobState, Recording
from gateway.sample import SAMPLE_NAME
from gateway.testing import csrf_token
from gateway.testing_flow import owned_counts, signed_in, stored_files
from preprocessing.synthesis import SampleSpec, write_sample_video

BUTTON = "Analyse the sample video"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_video(tmp_path_factory.mktemp("sample") / "sample.mp4", SampleSpec(duration_s=4.0, width=320, height=180,
                                                                                            face_height=120))  # fmt: skip


def _app(tmp_path: Path, sample: Path | None) -> Flask:
    environ = {"EMOFUSE_DATA_DIR": str(tmp_path / "data"), **({"EMOFUSE_SAMPLE_VIDEO": str(sample)} if sample else {})}
    return create_app(Config.from_env(environ))


def _press(web: FlaskClient, page: str = "/") -> TestResponse:
    """Press the button as a browser does: with the CSRF token of the form on ``page``."""
    return web.post("/analyses/sample", data={"csrf_token": csrf_token(web, page)})


def test_the_button_is_on_the_history_and_upload_pages_of_a_user_with_no_analyses(tmp_path: Path, sample: Path) -> None:
    web = signed_in(_app(tmp_path, sample), "first@example.org")
    assert BUTTON in web.get("/").text
    assert BUTTON in web.get("/analyses/new").text
    assert 'action="/analyses/sample"' in web.get("/").text


def test_without_a_configured_sample_there_is_no_button_and_no_route(tmp_path: Path, sample: Path) -> None:
    web = signed_in(_app(tmp_path, None), "nosample@example.org")
    assert BUTTON not in web.get("/").text
    assert BUTTON not in web.get("/analyses/new").text
    assert _press(web).status_code == 404
    missing = signed_in(_app(tmp_path / "gone", tmp_path / "nowhere.mp4"), "gone@example.org")  # configured, but no file
    assert BUTTON not in missing.get("/").text


def test_pressing_it_stores_a_copy_and_queues_the_analysis_then_the_button_goes(tmp_path: Path, sample: Path) -> None:
    app = _app(tmp_path, sample)
    web = signed_in(app, "press@example.org")
    response = _press(web)
    assert response.status_code == 303
    with Session(engine_of(app)) as session:
        analysis = session.scalars(select(Analysis)).one()
        recording, job = session.get(Recording, analysis.recording_id), session.scalars(select(Job)).one()
        user_id = analysis.user_id
        assert response.headers["Location"] == f"/analyses/{analysis.id}"
        assert (analysis.name, analysis.mode, analysis.status.value) == (SAMPLE_NAME, "av", "queued")
        assert (recording.user_id, recording.kind, recording.has_audio, job.user_id, job.state) == (user_id, "video", True, user_id,
                                                                                                   JobState.QUEUED)  # fmt: skip
        stored = current.storage(app).path(user_id, recording.stored_name)
    assert stored_files(app, user_id) == [recording.stored_name]  # a generated name, no temporary part left
    assert stored.read_bytes() == sample.read_bytes() and stored != sample
    assert SAMPLE_NAME in web.get(f"/analyses/{analysis.id}").text
    assert BUTTON not in web.get("/").text and BUTTON not in web.get("/analyses/new").text
    again = _press(web, "/analyses/new")  # a second press (an old tab) makes nothing more
    assert (again.status_code, again.headers["Location"]) == (303, "/")
    assert owned_counts(app, user_id)["Analysis"] == 1


def test_without_its_csrf_token_the_press_is_refused_and_nothing_is_made(tmp_path: Path, sample: Path) -> None:
    app = _app(tmp_path, sample)
    web = signed_in(app, "forged@example.org")
    response = web.post("/analyses/sample")
    assert response.status_code == 400 and CSRF_FAILED in response.text
    assert web.post("/analyses/sample", data={"csrf_token": "forged"}).status_code == 400
    with Session(engine_of(app)) as session:
        assert session.scalars(select(Analysis)).all() == []
    signed_out = app.test_client()
    assert signed_out.post("/analyses/sample", data={"csrf_token": csrf_token(signed_out, "/auth/sign-in")}).status_code == 302


def test_the_sample_analysis_is_its_owners_alone(tmp_path: Path, sample: Path) -> None:
    app = _app(tmp_path, sample)
    owner, other = signed_in(app, "owner@example.org"), signed_in(app, "other@example.org")
    location = _press(owner).headers["Location"]
    analysis_id = int(location.rsplit("/", 1)[1])
    assert owner.get(location).status_code == 200
    for path in (location, f"{location}/status", f"{location}/result", f"{location}/files/json"):
        assert other.get(path).status_code == 404, path
    assert SAMPLE_NAME not in other.get("/").text
    assert BUTTON in other.get("/").text  # the other user still has no analyses of their own
    _press(other)
    with Session(engine_of(app)) as session:
        owners = {a.id: a.user_id for a in session.scalars(select(Analysis))}
    assert len(owners) == 2 and len(set(owners.values())) == 2 and analysis_id in owners
