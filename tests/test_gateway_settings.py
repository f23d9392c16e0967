"""The settings page and what stands behind it: API tokens, the password and sessions, retention and
its purge, the export archive, deleting the account; the revision that added them.

Through Flask's test client against a real SQLite database in tmp_path; the purge, the account's
deletion and the migration run again on a real PostgreSQL (skipped, saying why, where its binaries
are absent). Files are real files in the data directory, checked on disk.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tracemalloc
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import MetaData, func, insert, inspect, select
from sqlalchemy.orm import Session

from gateway import current
from gateway.db import downgrade, engine_of, make_engine, upgrade
from gateway.failures import CSRF_FAILED
from gateway.models import (
    Analysis,
    AnalysisStatus,
    ApiToken,
    Job,
    JobState,
    Recording,
    User,
    Verdict,
    Window,
    utcnow,
)
from gateway.retention import purge_expired
from gateway.sessions import user_for_session_id
from gateway.storage import Storage
from gateway.testing import csrf_token, sign_in, sign_up
from gateway.testing_flow import gateway_app
from gateway.tokens import create_token

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple tangent orbit"
OWNED = (ApiToken, Recording, Analysis, Window, Verdict, Job)


def _user(web: FlaskClient, db: Session, email: str = "ada@example.org") -> User:
    assert sign_up(web, email, PASSWORD).status_code == 302
    db.rollback()  # a snapshot from before the sign-up would neither see the user nor be allowed to write
    return db.scalar(select(User).where(User.email == email))


def _post(web: FlaskClient, path: str, **form: str):  # noqa: ANN202 (a test response)
    return web.post(path, data={"csrf_token": csrf_token(web, "/settings"), **form})


def _message(response) -> str:  # noqa: ANN001 (a test response)
    found = re.search(r'class="notice error" role="alert"[^>]*>([^<]*)<', response.get_data(as_text=True))
    return found.group(1) if found else ""


def _signed_in(web: FlaskClient) -> bool:
    return web.get("/settings").status_code == 200


def _recording(session: Session, storage: Storage, user: User, *, age_days: float, now: datetime,
               job: JobState = JobState.DONE, with_copy: bool = False) -> Recording:  # fmt: skip
    """A recording ``age_days`` old with its file on disk, and an analysis with a window, a verdict
    and a job; ``with_copy``: the analysis has an output file too (an annotated copy)."""
    name = storage.new_name(".mp4")
    storage.path(user.id, name).write_bytes(f"video of {user.email}, {age_days} days old".encode())
    created = now - timedelta(days=age_days)
    recording = Recording(name=f"{user.email} {age_days} d.mp4", kind="video", media_type="video/mp4", size_bytes=30,
                          stored_name=name, created_at=created)  # fmt: skip
    user.recordings.append(recording)
    outputs = {}
    if with_copy:
        outputs["video"] = storage.new_name(".mp4")
        storage.path(user.id, outputs["video"]).write_bytes(b"annotated copy")
    analysis = Analysis(name=recording.name, mode="av", status=AnalysisStatus.DONE, created_at=created, labels=["happy", "sad"],
                        files=outputs)  # fmt: skip
    recording.analyses.append(analysis)
    analysis.windows.append(Window(index=0, start_s=0.0, end_s=3.6, status="ok", label="happy", probabilities={"happy": 0.8, "sad": 0.2},
                                   face_frames=15, frames=15, voice=True, weights={"face_expression": 0.55, "speech_emotion": 0.45}))  # fmt: skip
    analysis.verdicts.append(Verdict(label="happy", confidence=0.8, probabilities={"happy": 0.8, "sad": 0.2}, windows=1))
    analysis.jobs.append(Job(state=job, created_at=created))
    session.commit()
    return recording


def _remains(session: Session, recording_id: int) -> dict[str, int]:
    """How many rows of each kind are left of a recording."""
    analyses = select(Analysis.id).where(Analysis.recording_id == recording_id).scalar_subquery()
    count = lambda kind, *where: session.scalar(select(func.count()).select_from(kind).where(*where))  # noqa: E731
    return {
        "Recording": count(Recording, Recording.id == recording_id),
        "Analysis": count(Analysis, Analysis.recording_id == recording_id),
        "Window": count(Window, Window.analysis_id.in_(analyses)),
        "Verdict": count(Verdict, Verdict.analysis_id.in_(analyses)),
        "Job": count(Job, Job.analysis_id.in_(analyses)),
    }


ALL_THERE = {"Recording": 1, "Analysis": 1, "Window": 1, "Verdict": 1, "Job": 1}
NOTHING = dict.fromkeys(ALL_THERE, 0)


# The page


def test_the_settings_page_needs_a_session(web: FlaskClient) -> None:
    response = web.get("/settings")
    assert response.status_code == 302 and response.location.startswith("/auth/sign-in")


def test_the_page_links_here_and_to_what_the_models_can_tell(web: FlaskClient, db: Session) -> None:
    _user(web, db)
    page = web.get("/settings").get_data(as_text=True)
    assert 'href="/settings" aria-current="page">Settings</a>' in page and 'href="/about"' in page
    assert page.count('name="csrf_token"') == 6  # sign out, new token, retention, password, export, delete


@pytest.mark.parametrize(
    ("path", "form"),
    [("/settings/tokens", {"name": "x"}), ("/settings/tokens/1/revoke", {}), ("/settings/retention", {"retention": "days", "days": "1"}),
     ("/settings/password", {"current_password": PASSWORD, "password": NEW_PASSWORD, "confirmation": NEW_PASSWORD}),
     ("/settings/export", {}), ("/settings/delete", {"password": PASSWORD})],  # fmt: skip
    ids=["token", "revoke", "retention", "password", "export", "delete"],
)
def test_every_settings_form_without_its_csrf_token_is_refused(web: FlaskClient, db: Session, path: str, form: dict) -> None:
    user = _user(web, db)
    token, _ = create_token(db, user, "kept")
    response = web.post(path.replace("/1/", f"/{token.id}/"), data=form)
    assert response.status_code == 400 and _message(response) == CSRF_FAILED
    db.rollback()  # end the read snapshot (SQLite's WAL) and forget what this session loaded
    user = db.get(User, user.id)
    assert user is not None and user.retention_days is None and [(t.name, t.active) for t in user.tokens] == [("kept", True)]
    assert sign_in(web.application.test_client(), user.email, PASSWORD).status_code == 302  # the password is unchanged


# API tokens


def test_a_new_token_is_shown_once_and_opens_the_api(web: FlaskClient, db: Session) -> None:
    user = _user(web, db)
    response = _post(web, "/settings/tokens", name="lab laptop")
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="new-secret" value="(emo_[A-Za-z0-9_-]+)"', response.get_data(as_text=True)).group(1)
    db.rollback()
    token = db.scalar(select(ApiToken).where(ApiToken.user_id == user.id))
    assert token.name == "lab laptop" and secret not in (token.digest, token.prefix) and secret.startswith(token.prefix)
    listed = web.get("/settings").get_data(as_text=True)
    assert secret not in listed and f"<code>{token.prefix}…</code>" in listed and "lab laptop" in listed and ">Never<" in listed
    api = web.application.test_client()
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).json["token"]["name"] == "lab laptop"
    assert "UTC</time>" in web.get("/settings").get_data(as_text=True).split("lab laptop")[1].split("</tr>")[0]  # last used: now


def test_a_token_needs_a_name(web: FlaskClient, db: Session) -> None:
    user = _user(web, db)
    response = _post(web, "/settings/tokens", name="   ")
    assert response.status_code == 400 and "Name the token" in _message(response)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user.id)) == 0


def test_a_revoked_token_leaves_the_list_and_opens_nothing(web: FlaskClient, db: Session) -> None:
    token, secret = create_token(db, _user(web, db), "old script")
    response = _post(web, f"/settings/tokens/{token.id}/revoke")
    assert response.status_code == 302
    assert "The token \u201cold script\u201d is revoked" in web.get("/settings").get_data(as_text=True)
    assert "old script" not in web.get("/settings").get_data(as_text=True)
    assert web.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_someone_elses_token_is_404_and_stays_active(app: Flask, web: FlaskClient, db: Session) -> None:
    token, secret = create_token(db, _user(web, db, "owner@example.org"), "theirs")
    intruder = app.test_client()
    _, intruder_secret = create_token(db, _user(intruder, db, "intruder@example.org"), "mine")
    assert _post(intruder, f"/settings/tokens/{token.id}/revoke").status_code == 404
    unknown = _post(intruder, "/settings/tokens/999999/revoke")
    assert unknown.status_code == 404
    api = app.test_client()
    by_api = api.delete(f"/api/v1/tokens/{token.id}", headers={"Authorization": f"Bearer {intruder_secret}"})
    assert by_api.status_code == 404 and by_api.json["error"]["code"] == "not_found"
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_the_api_lists_and_revokes_tokens_but_cannot_make_one(web: FlaskClient, db: Session) -> None:
    user = _user(web, db)
    old, _ = create_token(db, user, "old")
    token, secret = create_token(db, user, "current")
    bearer = {"Authorization": f"Bearer {secret}"}
    listed = web.get("/api/v1/tokens", headers=bearer)
    assert listed.status_code == 200 and [t["name"] for t in listed.json["tokens"]] == ["current", "old"]
    assert set(listed.json["tokens"][0]) == {"id", "name", "prefix", "active", "created_at", "last_used_at", "revoked_at"}
    assert secret not in listed.get_data(as_text=True) and token.digest not in listed.get_data(as_text=True)
    assert web.delete(f"/api/v1/tokens/{old.id}", headers=bearer).status_code == 204
    assert web.delete(f"/api/v1/tokens/{old.id}", headers=bearer).status_code == 204  # already revoked: the same answer
    assert [t["active"] for t in web.get("/api/v1/tokens", headers=bearer).json["tokens"]] == [True, False]
    made = web.post("/api/v1/tokens", headers=bearer, json={"name": "more"})
    assert made.status_code == 405 and made.json["error"]["code"] == "method_not_allowed"
    assert web.delete(f"/api/v1/tokens/{token.id}", headers=bearer).status_code == 204  # a token may revoke itself
    assert web.get("/api/v1/tokens", headers=bearer).status_code == 401


# Password and sessions


def test_changing_the_password_signs_out_every_other_session(app: Flask, web: FlaskClient, db: Session) -> None:
    user = _user(web, db)
    other = app.test_client()
    assert sign_in(other, user.email, PASSWORD).status_code == 302 and _signed_in(other)
    response = _post(web, "/settings/password", current_password=PASSWORD, password=NEW_PASSWORD, confirmation=NEW_PASSWORD)
    assert response.status_code == 302
    assert _signed_in(web)  # the browser that changed it goes on
    assert not _signed_in(other)  # the other one is back at the sign-in page
    fresh = app.test_client()
    assert sign_in(fresh, user.email, PASSWORD).status_code == 400
    assert sign_in(fresh, user.email, NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("current_password", "password", "confirmation", "message"),
    [("wrong password here", NEW_PASSWORD, NEW_PASSWORD, "The current password is wrong."),
     (PASSWORD, "short", "short", "Use a password of at least 12 characters."),
     (PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!", "The two passwords differ; type the same password twice."),
     (PASSWORD, PASSWORD, PASSWORD, "The new password is the current one; choose another.")],  # fmt: skip
    ids=["wrong-current", "short", "differ", "same"],
)
def test_a_refused_password_change_says_why_and_changes_nothing(app: Flask, web: FlaskClient, db: Session, current_password: str,
                                                                password: str, confirmation: str, message: str) -> None:  # fmt: skip
    user = _user(web, db)
    token_before = user.session_token
    response = _post(web, "/settings/password", current_password=current_password, password=password, confirmation=confirmation)
    assert response.status_code == 400 and _message(response) == message
    db.rollback()  # end the read snapshot (SQLite's WAL) and forget what this session loaded
    assert db.get(User, user.id).session_token == token_before and _signed_in(web)
    assert sign_in(app.test_client(), user.email, PASSWORD).status_code == 302


def test_guessing_the_password_on_the_settings_page_is_limited(tmp_path: Path) -> None:
    """Wrong passwords typed again count with failed sign-ins: a stolen session cannot guess on."""
    app = gateway_app(tmp_path, signin_max_per_account=2)
    web = app.test_client()
    with Session(engine_of(app)) as db:
        _user(web, db)
    guesses = [_post(web, "/settings/password", current_password=f"guess {n} of many", password=NEW_PASSWORD,
                     confirmation=NEW_PASSWORD).status_code for n in range(2)]  # fmt: skip
    assert guesses == [400, 400]
    refused = _post(web, "/settings/delete", password=PASSWORD)  # the right one, but too late
    assert refused.status_code == 429 and "Too many sign-in attempts" in _message(refused)
    assert _signed_in(web)


def test_a_session_id_names_its_user_only_while_the_token_is_theirs(web: FlaskClient, db: Session) -> None:
    user = _user(web, db)
    assert re.fullmatch(r"[0-9a-f]{32}", user.session_token)
    assert user_for_session_id(db, user.get_id()) == user
    assert user_for_session_id(db, str(user.id)) is None  # an id from before session tokens
    assert user_for_session_id(db, f"{user.id}:{'0' * 32}") is None
    assert user_for_session_id(db, f"{user.id}:") is None and user_for_session_id(db, "x:y") is None


# Retention


def test_retention_is_set_in_days_or_forever(web: FlaskClient, db: Session) -> None:
    user = _user(web, db)
    assert _post(web, "/settings/retention", retention="days", days=" 30 ").status_code == 302
    db.rollback()  # end the read snapshot (SQLite's WAL) and forget what this session loaded
    assert db.get(User, user.id).retention_days == 30
    assert 'value="30"' in web.get("/settings").get_data(as_text=True)
    assert _post(web, "/settings/retention", retention="forever", days="30").status_code == 302
    db.rollback()  # end the read snapshot (SQLite's WAL) and forget what this session loaded
    assert db.get(User, user.id).retention_days is None


@pytest.mark.parametrize("days", ["0", "3651", "ten", "", "-5", "2.5"])
def test_a_retention_that_is_not_a_number_of_days_is_refused(web: FlaskClient, db: Session, days: str) -> None:
    user = _user(web, db)
    response = _post(web, "/settings/retention", retention="days", days=days)
    assert response.status_code == 400 and _message(response).startswith("Enter a number of days from 1 to 3650")
    db.rollback()  # end the read snapshot (SQLite's WAL) and forget what this session loaded
    assert db.get(User, user.id).retention_days is None


def test_purge_deletes_expired_uploads_with_their_files_and_nothing_else(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    storage, now = Storage(tmp_path / "users"), utcnow()
    try:
        with Session(engine, expire_on_commit=False) as session:
            month = User(email="month@example.org", password_hash="x", retention_days=30)
            forever = User(email="forever@example.org", password_hash="x")
            week = User(email="week@example.org", password_hash="x", retention_days=7)
            session.add_all([month, forever, week])
            session.commit()
            expired = _recording(session, storage, month, age_days=31, now=now, with_copy=True)
            kept = _recording(session, storage, month, age_days=29, now=now, with_copy=True)
            busy = _recording(session, storage, month, age_days=40, now=now, job=JobState.RUNNING, with_copy=True)
            old_but_forever = _recording(session, storage, forever, age_days=4000, now=now, with_copy=True)
            expired_week = _recording(session, storage, week, age_days=8, now=now, with_copy=True)
            kept_week = _recording(session, storage, week, age_days=6, now=now, with_copy=True)
            files = {r.id: [storage.path(r.user_id, name) for name in r.stored_files]
                     for r in (expired, kept, busy, old_but_forever, expired_week, kept_week)}  # fmt: skip
            assert all(len(paths) == 2 for paths in files.values()), "the upload and the analysis's annotated copy"
            session.expunge_all()  # the purge must find everything in the database, not in this session

            assert purge_expired(session, storage, now) == 2
            session.expunge_all()
            for gone in (expired, expired_week):
                assert _remains(session, gone.id) == NOTHING and not any(p.exists() for p in files[gone.id])
            for there in (kept, busy, old_but_forever, kept_week):
                assert _remains(session, there.id) == ALL_THERE and all(p.is_file() for p in files[there.id])
            assert purge_expired(session, storage, now) == 0
            assert purge_expired(session, storage, now + timedelta(days=2)) == 2  # 31 and 8 days old by then
            for gone in (kept, kept_week):
                assert _remains(session, gone.id) == NOTHING and not any(p.exists() for p in files[gone.id])
            assert _remains(session, busy.id) == _remains(session, old_but_forever.id) == ALL_THERE
    finally:
        engine.dispose()


def test_the_purge_runs_from_the_command_line(tmp_path: Path) -> None:
    app = gateway_app(tmp_path)
    storage = current.storage(app)
    with Session(engine_of(app), expire_on_commit=False) as session:
        user = User(email="cli@example.org", password_hash="x", retention_days=1)
        session.add(user)
        session.commit()
        old = _recording(session, storage, user, age_days=2, now=utcnow())
        new = _recording(session, storage, user, age_days=0.5, now=utcnow())
    env = {**os.environ, "EMOFUSE_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    run = subprocess.run([sys.executable, "-m", "gateway.retention"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "Deleted 1 recording past their owners' retention period."
    with Session(engine_of(app)) as session:
        assert _remains(session, old.id) == NOTHING and _remains(session, new.id) == ALL_THERE
    assert not storage.path(user.id, old.stored_name).exists() and storage.path(user.id, new.stored_name).is_file()


# Export


def test_the_export_holds_everything_of_the_user_and_nothing_of_anyone_else(app: Flask, web: FlaskClient, db: Session) -> None:
    storage, now = current.storage(app), utcnow()
    user = _user(web, db)
    token, secret = create_token(db, user, "script")
    recording = _recording(db, storage, user, age_days=1, now=now)
    other = app.test_client()
    stranger = _user(other, db, "stranger@example.org")
    theirs = _recording(db, storage, stranger, age_days=1, now=now)
    output = storage.new_name(".mp4")  # a file the jobs wrote (an annotated copy), whatever record names it
    storage.path(user.id, output).write_bytes(b"annotated copy")
    (storage.user_dir(user.id) / ".upload-3f9c.part").write_bytes(b"half an upload")  # not a file the gateway named

    response = _post(web, "/settings/export")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert re.fullmatch(r"attachment; filename=emofuse-export-\d{4}-\d\d-\d\d\.zip", response.headers["Content-Disposition"])
    assert int(response.headers["Content-Length"]) == len(response.data)
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.testzip() is None
    analysis_id = recording.analyses[0].id
    assert sorted(archive.namelist()) == sorted(["README.txt", "account.json", f"analyses/{analysis_id}.json",
                                                 f"files/{recording.stored_name}", f"files/{output}"])  # fmt: skip
    assert archive.read(f"files/{output}") == b"annotated copy"
    account = json.loads(archive.read("account.json"))
    assert account["user"] == {"id": user.id, "email": "ada@example.org", "created_at": user.created_at.isoformat(), "retention_days": None}
    assert [t["name"] for t in account["tokens"]] == ["script"]
    assert account["recordings"][0]["name"] == recording.name and account["recordings"][0]["files"] == [f"files/{recording.stored_name}"]
    analysis = json.loads(archive.read(f"analyses/{analysis_id}.json"))
    assert analysis["windows"] == [{"index": 0, "start_s": 0.0, "end_s": 3.6, "status": "ok", "label": "happy",
                                    "probabilities": {"happy": 0.8, "sad": 0.2}, "face_frames": 15, "frames": 15, "voice": True,
                                    "weights": {"face_expression": 0.55, "speech_emotion": 0.45}}]  # fmt: skip
    assert analysis["verdicts"][0]["label"] == "happy" and analysis["status"] == "done" and analysis["labels"] == ["happy", "sad"]
    assert archive.read(f"files/{recording.stored_name}") == storage.path(user.id, recording.stored_name).read_bytes()
    everything = b"".join(archive.read(name) for name in archive.namelist())
    for never in (secret.encode(), token.digest.encode(), b"stranger@example.org", theirs.stored_name.encode(), user.password_hash.encode()):
        assert never not in everything


def test_a_large_export_streams_without_holding_the_archive_in_memory(app: Flask, web: FlaskClient, db: Session, tmp_path: Path) -> None:
    """A 48 MiB upload goes into the archive and out to the client with a small, bounded peak of memory."""
    user = _user(web, db)
    recording = _recording(db, current.storage(app), user, age_days=0, now=utcnow())
    path = current.storage(app).path(user.id, recording.stored_name)
    with path.open("wb") as file:
        for block in range(48):
            file.write(bytes([block]) * 2**20)
    token = csrf_token(web, "/settings")
    received = tmp_path / "export.zip"
    tracemalloc.start()
    try:
        response = web.post("/settings/export", data={"csrf_token": token}, buffered=False)
        with received.open("wb") as out:
            for chunk in response.response:
                out.write(chunk)
        response.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB for a 48 MiB upload"
    with zipfile.ZipFile(received) as archive:
        assert archive.getinfo(f"files/{recording.stored_name}").file_size == 48 * 2**20 and archive.testzip() is None


# Deleting the account


def test_deleting_the_account_needs_the_password(web: FlaskClient, db: Session, app: Flask) -> None:
    user = _user(web, db)
    _recording(db, current.storage(app), user, age_days=0, now=utcnow())
    response = _post(web, "/settings/delete", password="not my password")
    assert response.status_code == 400 and _message(response) == "The password is wrong; nothing was deleted."
    db.rollback()  # end the read snapshot (SQLite's WAL) and forget what this session loaded
    assert db.get(User, user.id) is not None and len(list(current.storage(app).user_dir(user.id).iterdir())) == 1
    assert _signed_in(web)


def test_deleting_the_account_removes_every_row_and_file_and_nothing_else(database_url: str, tmp_path: Path) -> None:
    app = gateway_app(tmp_path, database_url=database_url)
    storage, now = current.storage(app), utcnow()
    web, other = app.test_client(), app.test_client()
    with Session(engine_of(app), expire_on_commit=False) as db:
        user, stranger = _user(web, db), _user(other, db, "stranger@example.org")
        create_token(db, user, "laptop")
        for age in (0, 3):
            _recording(db, storage, user, age_days=age, now=now)
        theirs = _recording(db, storage, stranger, age_days=0, now=now)
        user_id, user_dir = user.id, storage.user_dir(user.id)
        assert len(list(user_dir.iterdir())) == 2

        response = _post(web, "/settings/delete", password=PASSWORD)
        assert response.status_code == 302 and response.location == "/auth/sign-in"
        db.rollback()  # read what the database holds now, not what this session remembers
        db.expunge_all()
        assert db.get(User, user_id) is None
        assert {kind.__name__: db.scalar(select(func.count()).select_from(kind).where(kind.user_id == user_id)) for kind in OWNED} == (
            dict.fromkeys((kind.__name__ for kind in OWNED), 0))  # fmt: skip
        assert not user_dir.exists()
        assert _remains(db, theirs.id) == ALL_THERE and storage.path(stranger.id, theirs.stored_name).is_file()
    assert "Your account is deleted" in web.get("/auth/sign-in").get_data(as_text=True)
    assert not _signed_in(web) and _signed_in(other)
    assert sign_in(app.test_client(), "ada@example.org", PASSWORD).status_code == 400
    engine_of(app).dispose()


# The revision


def test_the_settings_revision_keeps_every_record_and_gives_each_user_a_token(database_url: str) -> None:
    """Upgrading a database at 0001 that holds users and their records: nothing is lost (on SQLite a
    copied ``users`` table would cascade into every other table), and each user gets a session token of its own."""
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0001")
        tables = MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            for number in (1, 2):
                connection.execute(insert(tables.tables["users"]).values(id=number, email=f"u{number}@example.org", password_hash="x",
                                                                         created_at=utcnow()))  # fmt: skip
                connection.execute(insert(tables.tables["recordings"]).values(id=number, user_id=number, name="r", kind="video",
                                   media_type="video/mp4", size_bytes=1, stored_name="0" * 32, created_at=utcnow()))  # fmt: skip
        upgrade(engine)
        with Session(engine) as session:
            users = session.scalars(select(User).order_by(User.id)).all()
            assert [(u.id, u.retention_days) for u in users] == [(1, None), (2, None)]
            assert all(re.fullmatch(r"[0-9a-f]{32}", u.session_token) for u in users) and users[0].session_token != users[1].session_token
            assert session.scalar(select(func.count()).select_from(Recording)) == 2
        downgrade(engine, "0001")
        assert {"session_token", "retention_days"}.isdisjoint(column["name"] for column in inspect(engine).get_columns("users"))
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(tables.tables["recordings"])).scalar() == 2
    finally:
        engine.dispose()
