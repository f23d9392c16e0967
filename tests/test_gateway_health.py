"""Probes, request ids, request logs and response headers; `/readyz` against a real Triton, a real
SQLite file that goes away, and a real PostgreSQL server that stops."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway import create_app
from gateway.config import Config
from gateway.db import head_revision
from gateway.health import READY_MODELS
from gateway.logs import JsonFormatter
from gateway.testing import PostgresServer, PostgresUnavailable, sign_up

ROOT = Path(__file__).resolve().parents[1]


def _app(tmp_path: Path, **settings: object) -> Flask:
    config = Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'db' / 'emofuse.sqlite'}"})
    return create_app(dataclasses.replace(config, **settings))


@pytest.fixture
def web(tmp_path: Path) -> FlaskClient:
    return _app(tmp_path).test_client()


def test_healthz_answers_while_the_process_is_up(web: FlaskClient) -> None:
    response = web.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_checks_the_database_and_the_storage(web: FlaskClient) -> None:
    response = web.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "checks": {"database": {"ok": True, "revision": head_revision()}, "storage": {"ok": True}}}


def test_readyz_is_503_when_the_database_is_gone(tmp_path: Path, web: FlaskClient) -> None:
    assert web.get("/readyz").status_code == 200
    for file in (tmp_path / "db").iterdir():
        file.unlink()  # the database file, as when its volume is lost
    response = web.get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "not ready"
    assert response.json["checks"]["database"] == {"ok": False, "error": "The database cannot be reached."}
    assert response.json["checks"]["storage"] == {"ok": True}
    assert not (tmp_path / "db" / "emofuse.sqlite").exists()  # the probe made no empty database in its place


def test_readyz_is_503_when_the_database_cannot_be_opened(tmp_path: Path, web: FlaskClient) -> None:
    (tmp_path / "db").rename(tmp_path / "elsewhere")
    (tmp_path / "db").write_text("a file where the database's directory was")
    response = web.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == {"ok": False, "error": "The database cannot be reached."}


def test_readyz_is_503_before_the_migrations_ran(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "emofuse.sqlite").touch()  # a database, empty: the operator has not migrated it yet
    response = _app(tmp_path, migrate=False).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"]["error"] == (
        f"The database schema is at revision None; the gateway needs {head_revision()}: run the migrations."
    )


def test_readyz_is_503_when_the_storage_cannot_be_written(tmp_path: Path, web: FlaskClient) -> None:
    (tmp_path / "users").mkdir(exist_ok=True)
    (tmp_path / "users").rmdir()
    (tmp_path / "users").write_text("a file where the users' directories should be")
    response = web.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["storage"] == {"ok": False, "error": "The data directory cannot be written."}
    assert response.json["checks"]["database"]["ok"] is True


def test_readyz_is_503_when_postgresql_stops(tmp_path: Path) -> None:
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as err:
        pytest.skip(f"no PostgreSQL here: {err}")
    try:
        web = _app(tmp_path, database_url=server.create_database("readiness")).test_client()
        assert web.get("/readyz").status_code == 200
        server.stop()
        response = web.get("/readyz")
        assert response.status_code == 503
        assert response.json["checks"]["database"] == {"ok": False, "error": "The database cannot be reached."}
    finally:
        server.close()


def test_readyz_reports_every_model_ready_on_a_real_triton(tmp_path: Path, triton) -> None:  # noqa: ANN001 (conftest's server)
    web = _app(tmp_path, triton_url=triton.grpc_url).test_client()
    response = web.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["checks"]["triton"] == {"ok": True, "models": dict.fromkeys(READY_MODELS, "READY")}
    assert set(READY_MODELS) == {"emotion_face", "emotion_speech", "emotion_av", "emotion_av_attention", "emotion_av_eeg"}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: nothing listens on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_readyz_is_503_when_triton_is_unreachable(tmp_path: Path, closed_port: int) -> None:
    web = _app(tmp_path, triton_url=f"127.0.0.1:{closed_port}").test_client()
    started = time.monotonic()
    response = web.get("/readyz")
    assert time.monotonic() - started < 10  # the probe's own short timeout, not the client's 60 s
    assert response.status_code == 503
    triton = response.json["checks"]["triton"]
    assert triton["ok"] is False and "is not reachable" in triton["error"] and triton["models"] == {}
    assert response.json["checks"]["database"]["ok"] is True


def test_readyz_is_503_when_triton_never_answers(tmp_path: Path) -> None:
    """A server that accepts the connection and never speaks: the probe gives up within its timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        web = _app(tmp_path, triton_url=f"127.0.0.1:{listener.getsockname()[1]}", readiness_timeout_s=0.5).test_client()
        started = time.monotonic()
        response = web.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503 and response.json["checks"]["triton"]["ok"] is False


# Request ids and logs


def test_a_request_id_is_made_when_none_is_sent(web: FlaskClient) -> None:
    first, second = web.get("/healthz").headers["X-Request-ID"], web.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


def test_a_plain_request_id_is_echoed_and_any_other_replaced(web: FlaskClient) -> None:
    assert web.get("/healthz", headers={"X-Request-ID": "proxy-7f3a.2"}).headers["X-Request-ID"] == "proxy-7f3a.2"
    for hostile in ("has spaces", "x" * 129, '{"forged": "json"}'):
        echoed = web.get("/healthz", headers={"X-Request-ID": hostile}).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", echoed), hostile


def test_errors_carry_the_request_id_too(web: FlaskClient) -> None:
    response = web.get("/api/v1/me", headers={"X-Request-ID": "trace-401"})
    assert response.status_code == 401 and response.headers["X-Request-ID"] == "trace-401"
    refused = web.post("/auth/sign-in", data={"email": "a@example.org"}, headers={"X-Request-ID": "trace-csrf"})
    assert refused.status_code == 400 and refused.headers["X-Request-ID"] == "trace-csrf"


def test_each_request_is_logged_once_as_structured_json(web: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    sign_up(web, "logged@example.org", "correct horse battery")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gateway.request"):
        response = web.get("/", headers={"X-Request-ID": "trace-home"})
    records = [r for r in caplog.records if r.name == "gateway.request"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["message"] == "GET / 200" and line["level"] == "INFO" and line["logger"] == "gateway.request"
    assert {key: line[key] for key in ("request_id", "method", "path", "status", "user_id", "address")} == {
        "request_id": "trace-home", "method": "GET", "path": "/", "status": 200, "user_id": 1, "address": "127.0.0.1",
    }  # fmt: skip
    assert line["duration_ms"] >= 0 and response.headers["X-Request-ID"] == "trace-home"
    assert "correct horse battery" not in caplog.text


def test_pages_send_protective_headers(web: FlaskClient) -> None:
    headers = web.get("/auth/sign-in").headers
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in headers["Content-Security-Policy"] and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in headers  # only over HTTPS
    assert "Strict-Transport-Security" in web.get("/auth/sign-in", base_url="https://localhost").headers


def test_the_stylesheet_is_served_from_the_site(web: FlaskClient) -> None:
    page = web.get("/auth/sign-in").text
    assert 'href="/static/style.css"' in page and "http" not in re.sub(r'xmlns="[^"]*"', "", page.split("<body>")[0])
    with web.get("/static/style.css") as style:
        assert style.status_code == 200 and style.mimetype == "text/css" and "@media (max-width: 40rem)" in style.text


def test_the_gateway_never_loads_torch_or_the_model_code(tmp_path: Path) -> None:
    """Build the app and serve pages, the API and the probes in a fresh interpreter: torch,
    ``models``, ``training`` and ``export`` stay unloaded (import-linter checks the source; this, what runs)."""
    script = (
        "import json, sys\n"
        "from gateway import Config, create_app\n"
        "web = create_app(Config.from_env({'EMOFUSE_DATA_DIR': sys.argv[1]})).test_client()\n"
        "codes = [web.get(path).status_code for path in ('/auth/sign-in', '/readyz', '/api/v1/me', '/')]\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'models', 'training', 'export'))\n"
        "print(json.dumps({'codes': codes, 'heavy': heavy}))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"codes": [200, 200, 401, 302], "heavy": []}
