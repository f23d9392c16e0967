"""Helpers for the tests of the analysis flow: the gateway on a data directory of the test's, a
throwaway Redis, users with API tokens, uploads made as a browser or a program would, and jobs
run by the real runner against a real Triton.

:class:`RedisServer` runs Debian's ``redis-server`` (``apt-get install -y redis-server``) on a free
loopback port, in memory only, until it stops::

    with RedisServer() as redis:
        app = create_app(dataclasses.replace(config, redis_url=redis.url))
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from . import create_app, current
from .accounts import create_user
from .config import Config
from .db import engine_of
from .jobs import JobSettings, Runner
from .models import Analysis, AnalysisStatus, Job, JobState, Recording, User, Verdict, Window, utcnow
from .queue import JobQueue
from .testing import LoopbackServer, ServerUnavailable, csrf_token, free_port, sign_up
from .tokens import create_token

__all__ = [
    "PASSWORD",
    "RedisServer",
    "RedisUnavailable",
    "api_user",
    "finished_analysis",
    "gateway_app",
    "owned_counts",
    "page_upload",
    "runner_for",
    "signed_in",
    "stored_files",
    "token_for",
]

PASSWORD = "correct horse battery"
LABELS = ["angry", "happy", "neutral", "sad", "surprised"]  # the shipped ensembles' five classes
WINDOW_S = 3.6
OWNED = (Recording, Analysis, Window, Verdict, Job)
_UPLOAD_KEY = re.compile(r'name="upload_key" value="([^"]+)"')


def gateway_app(data_dir: Path, **settings: Any) -> Flask:
    """The gateway with its SQLite database and users' files in ``data_dir``; ``settings``
    replace those fields of the Config the environment gives (``max_upload_bytes=2**20``)."""
    config = Config.from_env({"EMOFUSE_DATA_DIR": str(data_dir)})
    return create_app(dataclasses.replace(config, **settings))


class RedisUnavailable(ServerUnavailable):
    """No ``redis-server`` binary here; the message says what to install."""


class RedisServer(LoopbackServer):
    """A Redis of its own on the loopback, with no persistence, for tests."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
        if binary is None:
            raise RedisUnavailable("Redis is not installed: `apt-get install -y redis-server` (Debian) provides it.")
        self.binary, self.port = binary, free_port()
        self.root = Path(tempfile.mkdtemp(prefix="emofuse-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(self.root), "--daemonize", "no"]  # fmt: skip
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RedisUnavailable(f"redis-server exited at once with status {self._process.returncode}.")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RedisUnavailable("redis-server did not listen within 20 s.")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=20)
        self._process = None


def api_user(app: Flask, email: str) -> tuple[int, dict[str, str]]:
    """A new user of ``app`` and the headers that authenticate as them with an API token."""
    with Session(engine_of(app), expire_on_commit=False) as session:
        user = create_user(session, email, PASSWORD)
        _, secret = create_token(session, user, "tests")
        return user.id, {"Authorization": f"Bearer {secret}"}


def token_for(app: Flask, email: str) -> tuple[int, dict[str, str]]:
    """An API token for the existing user ``email``: their id and the headers that authenticate as them."""
    with Session(engine_of(app), expire_on_commit=False) as session:
        user = session.scalar(select(User).where(User.email == email))
        _, secret = create_token(session, user, "tests")
        return user.id, {"Authorization": f"Bearer {secret}"}


def signed_in(app: Flask, email: str) -> FlaskClient:
    """A browser-like client of ``app``, signed up and in as ``email``."""
    web = app.test_client()
    response = sign_up(web, email, PASSWORD)
    assert response.status_code == 302, response.text
    return web


def page_upload(web: FlaskClient, files: dict[str, tuple[Any, str]], *, consent: bool = True, csrf: bool = True,
                key: str | None = None, **fields: str) -> TestResponse:  # fmt: skip
    """Send the upload form as a browser does: its CSRF token and upload key, the files, the fields."""
    page = web.get("/analyses/new").text
    form: dict[str, Any] = {"upload_key": key or _UPLOAD_KEY.search(page).group(1), **fields, **files}
    if csrf:
        form["csrf_token"] = csrf_token(web, "/analyses/new")
    if consent:
        form["consent"] = "true"
    return web.post("/analyses", data=form, content_type="multipart/form-data")


def runner_for(app: Flask, triton_url: str, **settings: Any) -> Runner:
    """The real job runner on ``app``'s database, storage and queue."""
    config = current.config(app)
    return Runner(engine_of(app), current.storage(app), triton_url, queue=JobQueue(config.redis_url),
                  settings=JobSettings(**{"lease_s": 30.0, "retry_delay_s": 0.2, "poll_s": 0.1, **settings}))  # fmt: skip


def finished_analysis(session: Session, user_id: int, name: str, windows: int) -> int:
    """A done analysis of a video with ``windows`` windows, its verdict and its job, written
    straight through the models (no Triton); its id."""
    now = utcnow()
    recording = Recording(user_id=user_id, name=f"{name}.mp4", kind="video", media_type="video/mp4", size_bytes=12_000_000,
                          duration_s=windows * WINDOW_S, stored_name=f"{uuid.uuid4().hex}.mp4", has_audio=True, consented_at=now)  # fmt: skip
    analysis = Analysis(user_id=user_id, recording=recording, name=name, mode="av", model="emotion_av", trained=True, labels=LABELS,
                        status=AnalysisStatus.DONE, progress=1.0, started_at=now, finished_at=now + timedelta(seconds=20), files={})  # fmt: skip
    for i in range(windows):
        probabilities = {label: round(((i + k) % 5 + 1) / 15, 4) for k, label in enumerate(LABELS)}  # sums to 1
        analysis.windows.append(Window(user_id=user_id, index=i, start_s=round(i * WINDOW_S, 3), end_s=round((i + 1) * WINDOW_S, 3),
                                       status="ok", label=max(probabilities, key=probabilities.get), probabilities=probabilities,
                                       face_frames=15, frames=15, voice=True, weights={"face_expression": 0.5, "speech_emotion": 0.5}))  # fmt: skip
    analysis.verdicts.append(Verdict(user_id=user_id, source="windows", label="happy", confidence=0.4,
                                     probabilities={label: 0.2 for label in LABELS}, windows=windows))  # fmt: skip
    analysis.jobs.append(Job(user_id=user_id, state=JobState.DONE, attempts=1, started_at=now, finished_at=now))
    session.add_all([recording, analysis])
    session.commit()
    return analysis.id


def stored_files(app: Flask, user_id: int) -> list[str]:
    """Every file and folder under the user's directory (hidden ones too), relative to it."""
    directory = current.storage(app).root / str(user_id)
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*")) if directory.exists() else []


def owned_counts(app: Flask, user_id: int) -> dict[str, int]:
    """How many records of each kind the user owns."""
    with Session(engine_of(app)) as session:
        counts = {kind.__name__: session.scalar(select(func.count()).select_from(kind).where(kind.user_id == user_id)) for kind in OWNED}
        counts["User"] = session.scalar(select(func.count()).select_from(User).where(User.id == user_id))
    return counts
