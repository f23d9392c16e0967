"""The API's OpenAPI description (gateway/openapi.py): a valid OpenAPI 3.1 document, describing
every /api/v1 route of ``app.url_map`` and nothing else, and true of the real responses.

Every request below goes to the real app (Flask's test client, SQLite in tmp_path) and its
response is checked against the description: the status must be one documented for that
operation, the documented headers must be there, and a JSON body must validate (jsonschema,
formats checked) against the schema for that status, with every object schema closed for the
check, so a field the API sends and the description lacks fails too. The last test asserts that
every documented (operation, status) was seen. One real analysis of a 3.6 s video, by the real
job runner against the real Triton of tests/conftest.py, serves the whole module.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest
import scipy.io
from flask import Flask
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from gateway import create_app
from gateway.api import PREFIX
from gateway.config import Config
from gateway.db import engine_of
from gateway.models import Analysis, AnalysisStatus, ApiToken
from gateway.testing_flow import api_user, runner_for
from preprocessing.synthesis import SampleSpec, write_sample_video
from training.synthetic_eeg import SyntheticEEGSpec, synthetic_trial_eeg

ROOT_URI = "urn:emofuse:openapi"
TINY = dict(width=320, height=180, face_height=120)
METHODS = ("get", "put", "post", "patch", "delete")
NO_SUCH_ID = 987654

Headers = dict[str, str]


# The checker


def _closed(node: Any) -> Any:
    """A copy in which every object schema with properties allows no others."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _closed(value) for key, value in node.items()}
    if out.get("type") == "object" and isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _media_matches(documented: str, actual: str) -> bool:
    kind, _, sub = documented.partition("/")
    return documented == actual or (sub == "*" and actual.startswith(kind + "/"))


class Api:
    """Sends requests to the app and checks each response against the description."""

    def __init__(self, app: Flask, spec: dict[str, Any]) -> None:
        self.app, self.spec = app, spec
        self.registry = Registry().with_resource(ROOT_URI, Resource.from_contents(_closed(spec), default_specification=DRAFT202012))
        self.seen: set[tuple[str, str, str]] = set()
        self.codes: set[tuple[str, str, str]] = set()  # (template, method, error code) answered

    def call(self, who: Headers | None, method: str, template: str, values: dict[str, Any] | None = None, **request: Any) -> TestResponse:
        """``method`` on ``template`` (a documented path, filled with ``values``) as ``who``; checked."""
        path = PREFIX + template.format(**(values or {}))
        headers = {**(who or {}), **request.pop("headers", {})}
        response = self.app.test_client().open(path, method=method.upper(), headers=headers, **request)
        self.check(response, method.lower(), template)
        return response

    def check(self, response: TestResponse, method: str, template: str) -> None:
        operation = self.spec["paths"][template][method]
        status = str(response.status_code)
        assert status in operation["responses"], f"{method.upper()} {template} answered {status}, not documented: {response.data[:300]!r}"
        documented = operation["responses"][status]
        self._check_headers(response, documented)
        self._check_body(response, documented, (template, method, status))
        self.seen.add((template, method, status))
        if response.status_code >= 400 and response.is_json:
            self.codes.add((template, method, response.get_json()["error"]["code"]))

    def _check_headers(self, response: TestResponse, documented: dict[str, Any]) -> None:
        for name, header in documented.get("headers", {}).items():
            header = self._resolve(header)
            if header.get("required"):
                assert name in response.headers, f"{response.status_code} lacks its header {name}"

    def _check_body(self, response: TestResponse, documented: dict[str, Any], where: tuple[str, str, str]) -> None:
        content = documented.get("content")
        if content is None:
            assert response.data == b"", f"{where}: documented without a body, answered {response.data[:100]!r}"
            return
        media = next((m for m in content if _media_matches(m, response.mimetype)), None)
        assert media is not None, f"{where}: {response.mimetype} is not one of {list(content)}"
        if media == "application/json":
            schema = {"$ref": ROOT_URI + _pointer("paths", where[0], where[1], "responses", where[2], "content", media, "schema")}
            validator = jsonschema.Draft202012Validator(schema, registry=self.registry, format_checker=jsonschema.FormatChecker())
            errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(response.get_json())]
            assert not errors, f"{where}: {errors[:5]}"

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """``node``, or what its local ``$ref`` (``#/components/...``) names."""
        while "$ref" in node:
            node = functools.reduce(lambda at, key: at[key], node["$ref"].removeprefix("#/").split("/"), self.spec)
        return node

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for template, item in self.spec["paths"].items():
            for method in METHODS:
                if method in item:
                    yield template, method, item[method]


# The world: Ana with one finished analysis, Bob with nothing


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("openapi-media")
    write_sample_video(root / "clip.mp4", SampleSpec(duration_s=3.6, width=320, height=180, face_height=120))
    gradient = np.tile(np.arange(160, dtype=np.uint8), (120, 1))
    cv2.imwrite(str(root / "photo.png"), cv2.merge([gradient, gradient, gradient]))
    data = (root / "clip.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])  # its index, at the end, is gone
    (root / "notes.txt").write_text("not a recording\n" * 20)
    _archives(root)
    return {path.name: path for path in root.iterdir()}


def _archives(root: Path) -> None:
    """A trial folder zipped (13 s: a trial's shortest, under the 1 MB limit), and .zip files refused three ways."""
    spec = SyntheticEEGSpec(duration_s=13.0)
    write_sample_video(root / "t1.mp4", SampleSpec(duration_s=spec.duration_s, **TINY))
    scipy.io.savemat(root / "t1.mat", {"eeg": synthetic_trial_eeg(spec, 1, 2).data})
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerows([["subject", "trial", "label", "eeg", "video", "eeg_rate", "mat_key", "channels"],
                      [1, "t1", "happy", "s01/t1.mat", "s01/t1.mp4", spec.rate, "eeg", " ".join(spec.channels)]])  # fmt: skip
    with zipfile.ZipFile(root / "trial.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("trial/manifest.csv", manifest.getvalue())
        for name in ("t1.mp4", "t1.mat"):
            archive.write(root / name, f"trial/s01/{name}")
    whole = (root / "trial.zip").read_bytes()
    (root / "cut.zip").write_bytes(whole[: len(whole) // 2])  # the directory, at the end, is gone
    with zipfile.ZipFile(root / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("trial/s01/t1.mat", bytes(8 * 2**20))  # 1,000 to 1
    with zipfile.ZipFile(root / "over.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            archive.writestr(f"trial/s01/{i}.bin", bytes(900 * 1024))  # 2.6 MB unpacked: past the limit, no member a bomb


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, media: dict[str, Path], triton: Any) -> dict[str, Any]:
    environ = {"EMOFUSE_DATA_DIR": str(tmp_path_factory.mktemp("openapi-data")), "EMOFUSE_MAX_UPLOAD_MB": "1"}
    app = create_app(Config.from_env(environ))
    spec = app.test_client().get(f"{PREFIX}/openapi.json").get_json()
    api = Api(app, spec)
    (ana_id, ana), (_, bob) = api_user(app, "ana@example.org"), api_user(app, "bob@example.org")
    done = _upload(api, ana, media["clip.mp4"], name="Ana's interview").get_json()
    runner = runner_for(app, triton.grpc_url)
    runner.work(burst=True)
    runner.close()
    return {"app": app, "api": api, "ana": ana, "ana_id": ana_id, "bob": bob, "done": done["id"], "recording": done["recording"]["id"]}


def _upload(api: Api, who: Headers, path: Path | None, *, headers: Headers | None = None, **fields: str) -> TestResponse:
    form: dict[str, Any] = {"consent": "true", **fields}
    if path is not None:
        form["recording"] = (io.BytesIO(path.read_bytes()), path.name)
    return api.call(who, "post", "/analyses", content_type="multipart/form-data", data=form, headers=headers or {})


def _queued(world: dict[str, Any], media: dict[str, Path], name: str) -> int:
    return _upload(world["api"], world["ana"], media["clip.mp4"], name=name).get_json()["id"]


def _fail(app: Flask, analysis_id: int, code: str) -> None:
    with Session(engine_of(app)) as session:
        analysis = session.get(Analysis, analysis_id)
        analysis.status, analysis.stage, analysis.error_code, analysis.error = AnalysisStatus.FAILED, None, code, f"it failed ({code})."
        session.commit()


# The document


def test_the_description_is_valid_openapi_and_needs_no_token(world: dict[str, Any]) -> None:
    api = world["api"]
    response = api.call(None, "get", "/openapi.json")
    assert response.status_code == 200
    validate_spec(response.get_json())
    assert response.get_json()["openapi"].startswith("3.1")


def _described(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(PREFIX + template, method.upper()) for template, item in spec["paths"].items() for method in METHODS if method in item}


def _routed(app: Flask) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PREFIX + "/"):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            routes |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def test_every_api_route_is_described_and_every_description_is_a_route(world: dict[str, Any]) -> None:
    routed, described = _routed(world["app"]), _described(world["api"].spec)
    assert routed - described == set(), "routes without a description in gateway/openapi.py"
    assert described - routed == set(), "described in gateway/openapi.py, but no such route"
    assert len(routed) >= 13


def test_every_path_parameter_is_declared(world: dict[str, Any]) -> None:
    api = world["api"]
    for template, _, operation in api.operations():
        declared = {api._resolve(p)["name"] for p in operation.get("parameters", []) if api._resolve(p)["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", template)), template


# A finished analysis, its timeline and files


def test_a_finished_analysis_its_timeline_and_list(world: dict[str, Any]) -> None:
    api, ana, done = world["api"], world["ana"], {"analysis_id": world["done"]}
    body = api.call(ana, "get", "/analyses/{analysis_id}", done).get_json()
    assert (body["status"], body["percent"], body["timeline_ready"]) == ("done", 100, True)
    timeline = api.call(ana, "get", "/analyses/{analysis_id}/timeline", done).get_json()
    assert len(timeline["windows"]) == body["windows"] >= 1
    page = api.call(ana, "get", "/analyses", query_string={"per_page": 1, "q": "interview"}).get_json()
    assert [item["id"] for item in page["items"]] == [world["done"]]
    bad = api.call(ana, "get", "/analyses", query_string={"per_page": 101})
    assert bad.status_code == 400


def test_the_files_of_a_finished_analysis(world: dict[str, Any]) -> None:
    api, ana = world["api"], world["ana"]
    statuses = {}
    for kind in ("video", "json", "csv", "plot", "recording", "image"):
        statuses[kind] = api.call(ana, "get", "/analyses/{analysis_id}/files/{kind}", {"analysis_id": world["done"], "kind": kind}).status_code
    assert statuses == {"video": 200, "json": 200, "csv": 200, "plot": 200, "recording": 200, "image": 404}
    where = {"analysis_id": world["done"], "kind": "video"}
    part = api.call(ana, "get", "/analyses/{analysis_id}/files/{kind}", where, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.data[4:8] == b"ftyp"
    beyond = api.call(ana, "get", "/analyses/{analysis_id}/files/{kind}", where, headers={"Range": "bytes=900000000-"})
    assert beyond.status_code == 416
    nothing = api.call(ana, "get", "/analyses/{analysis_id}/files/{kind}", {**where, "kind": "secrets"})
    assert nothing.status_code == 404


def test_the_account_and_its_tokens(world: dict[str, Any]) -> None:
    api, app, ana = world["api"], world["app"], world["ana"]
    assert api.call(ana, "get", "/me").get_json()["email"] == "ana@example.org"
    _, spare = api_user(app, "spare@example.org")
    spare_id = api.call(spare, "get", "/tokens").get_json()["tokens"][0]["id"]
    assert api.call(ana, "delete", "/tokens/{token_id}", {"token_id": spare_id}).status_code == 404  # not Ana's
    assert api.call(spare, "delete", "/tokens/{token_id}", {"token_id": spare_id}).status_code == 204
    assert api.call(spare, "get", "/me").status_code == 401
    with Session(engine_of(app)) as session:
        assert session.get(ApiToken, spare_id).revoked_at is not None


# Uploads and their refusals


def test_an_upload_and_each_refusal(world: dict[str, Any], media: dict[str, Path]) -> None:
    api, ana, clip = world["api"], world["ana"], media["clip.mp4"]
    key = {"Idempotency-Key": "openapi-once"}
    first = _upload(api, ana, clip, headers=key)
    assert first.status_code == 201 and first.headers["Location"] == f"{PREFIX}/analyses/{first.get_json()['id']}"
    assert _upload(api, ana, clip, headers=key).status_code == 409
    refusals = [
        (_upload(api, ana, None), 400),
        (_upload(api, ana, clip, mode="sideways"), 400),
        (_upload(api, ana, clip, consent=""), 403),
        (api.call(ana, "post", "/analyses", content_type="multipart/form-data",
                  data={"consent": "true", "recording": (io.BytesIO(bytes(1_200_000)), "big.mp4")}), 413),  # fmt: skip
        (_upload(api, ana, media["notes.txt"]), 415),
        (_upload(api, ana, media["cut.mp4"]), 422),
        (_upload(api, ana, media["photo.png"], mode="audio"), 422),
    ]
    assert [response.status_code for response, _ in refusals] == [status for _, status in refusals]


def test_a_trial_folder_zip_and_each_refusal_of_an_archive(world: dict[str, Any], media: dict[str, Path]) -> None:
    api, ana = world["api"], world["ana"]
    trial = _upload(api, ana, media["trial.zip"], trial="1/t1")
    assert trial.status_code == 201 and (trial.get_json()["mode"], trial.get_json()["recording"]["kind"]) == ("trial", "trial")
    refused = {name: _upload(api, ana, media[name]) for name in ("bomb.zip", "cut.zip", "over.zip")}
    answers = {name: (response.status_code, response.get_json()["error"]["code"]) for name, response in refused.items()}
    assert answers == {"bomb.zip": (422, "unsafe_archive"), "cut.zip": (422, "damaged_archive"), "over.zip": (413, "too_large")}


def test_too_many_waiting_analyses(world: dict[str, Any], media: dict[str, Path]) -> None:
    app = world["app"]
    most, app.config["EMOFUSE_MAX_PENDING_ANALYSES"] = app.config["EMOFUSE_MAX_PENDING_ANALYSES"], 0
    try:
        refused = _upload(world["api"], world["ana"], media["clip.mp4"])
    finally:
        app.config["EMOFUSE_MAX_PENDING_ANALYSES"] = most
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"


# Waiting and failed analyses


def test_a_waiting_analysis_has_no_timeline_or_files_yet(world: dict[str, Any], media: dict[str, Path]) -> None:
    api, ana = world["api"], world["ana"]
    waiting = {"analysis_id": _queued(world, media, "Ana, later")}
    assert api.call(ana, "get", "/analyses/{analysis_id}", waiting).get_json()["stage"] == "queued"
    assert api.call(ana, "get", "/analyses/{analysis_id}/timeline", waiting).status_code == 409
    assert api.call(ana, "get", "/analyses/{analysis_id}/files/{kind}", {**waiting, "kind": "video"}).status_code == 409


@pytest.mark.parametrize(("code", "status"), [("no_face", 422), ("models_unavailable", 503)])
def test_a_failed_analysis_says_why(world: dict[str, Any], media: dict[str, Path], code: str, status: int) -> None:
    api, ana = world["api"], world["ana"]
    failed = {"analysis_id": _queued(world, media, f"Ana, {code}")}
    _fail(world["app"], failed["analysis_id"], code)
    assert api.call(ana, "get", "/analyses/{analysis_id}", failed).get_json()["error"]["code"] == code
    assert api.call(ana, "get", "/analyses/{analysis_id}/timeline", failed).status_code == status
    assert api.call(ana, "get", "/analyses/{analysis_id}/files/{kind}", {**failed, "kind": "csv"}).status_code == status


# Comparison, rename, delete


def test_a_comparison_is_queued_for_a_video_with_sound_only(world: dict[str, Any], media: dict[str, Path]) -> None:
    api, ana, recording = world["api"], world["ana"], {"recording_id": world["recording"]}
    before = api.call(ana, "get", "/recordings/{recording_id}/comparison", recording).get_json()
    assert before["modes"]["av"]["id"] == world["done"] and before["modes"]["face"] is None
    started = api.call(ana, "post", "/recordings/{recording_id}/comparison", recording)
    assert started.status_code == 202 and started.get_json()["modes"]["face"]["status"] == "queued"
    photo = _upload(api, ana, media["photo.png"]).get_json()["recording"]["id"]
    assert api.call(ana, "post", "/recordings/{recording_id}/comparison", {"recording_id": photo}).status_code == 422


def test_rename_and_delete(world: dict[str, Any], media: dict[str, Path]) -> None:
    api, ana = world["api"], world["ana"]
    mine = {"analysis_id": _queued(world, media, "Ana, to rename")}
    assert api.call(ana, "patch", "/analyses/{analysis_id}", mine, json={"name": "Renamed"}).get_json()["name"] == "Renamed"
    assert api.call(ana, "patch", "/analyses/{analysis_id}", mine, json={"title": "x"}).status_code == 400
    assert api.call(ana, "patch", "/analyses/{analysis_id}", mine, json={"name": "  "}).status_code == 400
    assert api.call(ana, "delete", "/analyses/{analysis_id}", mine).status_code == 204
    assert api.call(ana, "delete", "/analyses/{analysis_id}", mine).status_code == 404


# Every operation: without a token, and with another user's ids


def _filled(world: dict[str, Any], ana_token_id: int) -> dict[str, Any]:
    return {"analysis_id": world["done"], "recording_id": world["recording"], "token_id": ana_token_id, "kind": "video"}


def _ana_token(world: dict[str, Any]) -> int:
    with Session(engine_of(world["app"])) as session:
        return session.query(ApiToken.id).filter(ApiToken.user_id == world["ana_id"]).order_by(ApiToken.id).first()[0]


def test_every_operation_needs_a_token(world: dict[str, Any]) -> None:
    api, values = world["api"], _filled(world, _ana_token(world))
    guarded = [(t, m) for t, m, operation in api.operations() if operation.get("security", api.spec["security"])]
    assert len(guarded) == len(list(api.operations())) - 1  # all but the description itself
    for template, method in guarded:
        for who, code in ((None, "authentication_required"), ({"Authorization": "Bearer emo_forged"}, "invalid_token")):
            response = api.call(who, method, template, values, json={"name": "x"} if method == "patch" else None)
            assert response.status_code == 401 and response.get_json()["error"]["code"] == code, (method, template)


def test_every_operation_with_an_id_answers_another_user_404(world: dict[str, Any]) -> None:
    api, bob, values = world["api"], world["bob"], _filled(world, _ana_token(world))
    with_ids = [(t, m) for t, m, _ in api.operations() if "{" in t]
    assert len(with_ids) == 8
    for template, method in with_ids:
        for filled in (values, {**values, "analysis_id": NO_SUCH_ID, "recording_id": NO_SUCH_ID, "token_id": NO_SUCH_ID}):
            response = api.call(bob, method, template, filled, json={"name": "taken over"} if method == "patch" else None)
            assert response.status_code == 404, (method, template, response.status_code)
    assert api.call(world["ana"], "get", "/analyses/{analysis_id}", values).get_json()["name"] == "Ana's interview"


def test_every_documented_response_was_seen(world: dict[str, Any]) -> None:
    """Runs last: each (operation, status) the description promises, some test above got."""
    api = world["api"]
    documented = {(t, m, status) for t, m, operation in api.operations() for status in operation["responses"]}
    assert documented - api.seen == set(), "documented but never answered in these tests"


def test_every_error_code_documented_for_an_upload_was_answered(world: dict[str, Any]) -> None:
    """Runs last: the upload's lists of codes are exact (each answered code is in them: checked by every call)."""
    api = world["api"]
    responses = api.spec["paths"]["/analyses"]["post"]["responses"]
    schemas = [api._resolve(response["content"]["application/json"]["schema"]) for status, response in responses.items() if status >= "400"]
    documented = {code for schema in schemas for code in schema["properties"]["error"]["properties"]["code"]["enum"]}
    answered = {code for template, method, code in api.codes if (template, method) == ("/analyses", "post")}
    assert documented == answered
