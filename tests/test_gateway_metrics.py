"""Operations: Prometheus metrics, in one process and under a real gunicorn with two workers, and
``/readyz``'s queue check against a real Redis server (skipped, saying why, where it is absent).

The gunicorn test starts ``gunicorn -c gateway/gunicorn_conf.py`` on a free loopback port, spreads
requests over both workers (gunicorn's access log names the worker of each), and checks that every
scrape, whichever worker answers it, counts all of them, also after a worker was replaced.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from gateway.config import Config
from gateway.db import engine_of
from gateway.metrics import MULTIPROCESS_DIR, TRITON_RESTARTS_FILE, TRITON_SECONDS, count_failure
from gateway.models import Analysis, AnalysisStatus, Job, JobState, Recording, User, utcnow
from gateway.testing import free_port, stop_process
from gateway.testing_flow import RedisServer, gateway_app

ROOT = Path(__file__).resolve().parents[1]
HEALTHZ = {"route": "/healthz", "method": "GET", "status": "200"}


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, by name and labels."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}  # fmt: skip


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape(web) -> dict:  # noqa: ANN001 (a Flask test client)
    response = web.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    return _samples(response.get_data(as_text=True))


# One process


def test_requests_are_counted_by_route_not_by_path(tmp_path: Path) -> None:
    web = gateway_app(tmp_path).test_client()
    before = _scrape(web)
    for token_id in (123, 456, 789):
        assert web.delete(f"/api/v1/tokens/{token_id}").status_code == 401
    for number in range(4):
        assert web.get(f"/no-such-page-{number}").status_code == 404
    after = _scrape(web)
    route = {"route": "/api/v1/tokens/<int:token_id>", "method": "DELETE"}
    assert _value(after, "emofuse_http_requests_total", **route, status="401") - _value(before, "emofuse_http_requests_total", **route, status="401") == 3
    assert _value(after, "emofuse_http_request_duration_seconds_count", **route) - _value(before, "emofuse_http_request_duration_seconds_count", **route) == 3
    unmatched = {"route": "<unmatched>", "method": "GET", "status": "404"}
    assert _value(after, "emofuse_http_requests_total", **unmatched) - _value(before, "emofuse_http_requests_total", **unmatched) == 4
    assert not any("no-such-page" in str(labels) or "123" in str(labels) for _, labels in after)  # no raw path is a label


def test_failures_are_counted_by_source_and_reason(tmp_path: Path) -> None:
    web = gateway_app(tmp_path).test_client()
    before = _scrape(web)
    assert web.post("/auth/sign-in", data={"email": "a@example.org", "password": "x"}).status_code == 400  # no CSRF token
    assert web.get("/api/v1/me").status_code == 401
    count_failure("unprocessable_recording")
    TRITON_SECONDS.labels(model="emotion_av").observe(0.012)
    after = _scrape(web)
    for labels in ({"source": "request", "reason": "csrf_failed"}, {"source": "request", "reason": "authentication_required"},
                   {"source": "job", "reason": "unprocessable_recording"}):  # fmt: skip
        assert _value(after, "emofuse_failures_total", **labels) - _value(before, "emofuse_failures_total", **labels) == 1
    triton = {"model": "emotion_av"}
    assert _value(after, "emofuse_triton_request_duration_seconds_count", **triton) - _value(before, "emofuse_triton_request_duration_seconds_count", **triton) == 1


def test_jobs_queued_and_running_are_counted_in_the_database(tmp_path: Path) -> None:
    app = gateway_app(tmp_path)
    web = app.test_client()
    assert _value(_scrape(web), "emofuse_jobs", state="queued") == 0
    with Session(engine_of(app)) as session:
        user = User(email="jobs@example.org", password_hash="x")
        recording = Recording(name="r.mp4", kind="video", media_type="video/mp4", size_bytes=1, stored_name="0" * 32)
        user.recordings.append(recording)
        analysis = Analysis(name="r.mp4", status=AnalysisStatus.QUEUED)
        recording.analyses.append(analysis)
        waited = timedelta(minutes=5)
        analysis.jobs += [Job(state=JobState.QUEUED, created_at=utcnow() - waited), Job(state=JobState.QUEUED),
                          Job(state=JobState.RUNNING), Job(state=JobState.DONE), Job(state=JobState.FAILED)]  # fmt: skip
        session.add(user)
        session.commit()
    samples = _scrape(web)
    assert _value(samples, "emofuse_jobs", state="queued") == 2 and _value(samples, "emofuse_jobs", state="running") == 1
    assert waited.total_seconds() <= _value(samples, "emofuse_jobs_oldest_queued_seconds") < waited.total_seconds() + 120


def test_metrics_need_no_session_and_take_a_bearer_token_when_one_is_set(tmp_path: Path) -> None:
    assert gateway_app(tmp_path / "open").test_client().get("/metrics").status_code == 200
    web = gateway_app(tmp_path / "closed", metrics_token="s3cret-for-prometheus").test_client()
    missing = web.get("/metrics")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    for header in ("Bearer wrong", "Basic czNjcmV0LWZvci1wcm9tZXRoZXVz", "Bearer s3cret-for-prometheus-and-more"):
        assert web.get("/metrics", headers={"Authorization": header}).status_code == 401
    allowed = web.get("/metrics", headers={"Authorization": "Bearer s3cret-for-prometheus"})
    assert allowed.status_code == 200 and "emofuse_http_requests_total" in allowed.get_data(as_text=True)


def test_the_metrics_token_is_read_from_the_environment(tmp_path: Path) -> None:
    config = Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path), "EMOFUSE_METRICS_TOKEN": "from-env"})
    assert config.metrics_token == "from-env" and Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path)}).metrics_token is None


# Several gunicorn workers


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_triton_restarts_are_read_from_the_watchdogs_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`emofuse serve`'s watchdog writes its counts beside the metrics files; a scrape reads them as they are then."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    monkeypatch.setenv(MULTIPROCESS_DIR, str(directory))
    web = gateway_app(tmp_path).test_client()
    assert not any(name.startswith("emofuse_triton_model_restarts") for name, _ in _scrape(web)), "no watchdog, no figure"
    counts = directory / TRITON_RESTARTS_FILE
    counts.write_text(json.dumps({"speech_emotion": 2, "face_expression": 1}))
    samples = _scrape(web)
    assert _value(samples, "emofuse_triton_model_restarts_total", model="speech_emotion") == 2
    assert _value(samples, "emofuse_triton_model_restarts_total", model="face_expression") == 1
    for broken in ("{not json", "[1, 2]", '{"speech_emotion": "often"}'):
        counts.write_text(broken)
        assert not any(name.startswith("emofuse_triton_model_restarts") for name, _ in _scrape(web)), f"{broken}: no wrong figure, and no error"


class Gunicorn:
    """``gunicorn -c gateway/gunicorn_conf.py`` with two workers on a free loopback port, logs in files."""

    def __init__(self, root: Path) -> None:
        self.port, self.root = free_port(), root
        self.metrics_dir, self.access, self.errors = root / "prometheus", root / "access.log", root / "error.log"
        self.env = {**os.environ, "EMOFUSE_DATA_DIR": str(root / "data"), "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        for name in ("DATABASE_URL", "REDIS_URL", "TRITON_URL", "EMOFUSE_METRICS_TOKEN"):
            self.env.pop(name, None)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gateway" / "gunicorn_conf.py"), "-b", f"127.0.0.1:{self.port}",
                   "-w", "2", "--timeout", "120", "--access-logfile", str(self.access), "--access-logformat", "%(p)s %(U)s %(s)s",
                   "--error-logfile", str(self.errors)]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_for_workers(2)

    def workers(self) -> list[int]:
        """Pids of the workers booted so far, oldest first (gunicorn's own log says them)."""
        text = self.errors.read_text() if self.errors.exists() else ""
        return [int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if "Booting worker with pid:" in line]

    def wait_for_workers(self, count: int) -> None:
        deadline = time.monotonic() + 180  # each worker imports the gateway and serving: slow on a busy machine
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.errors.read_text()
            if len(self.workers()) >= count and self.answers():
                return
            time.sleep(0.2)
        raise AssertionError(f"gunicorn did not boot {count} workers: {self.errors.read_text()}")

    def answers(self) -> bool:
        try:
            return _get(self.url + "/readyz")[0] == 200  # not /healthz: those are the requests the test counts
        except OSError:
            return False

    def served(self, total: int) -> Counter[int]:
        """The ``total`` requests for /healthz answered so far, by worker pid (a worker logs each just after answering it)."""
        deadline = time.monotonic() + 30
        while True:
            lines = self.access.read_text().splitlines() if self.access.exists() else []
            served = Counter(int(line.split()[0].strip("<>")) for line in lines if line.endswith(" /healthz 200"))  # "<PID> ..."
            if sum(served.values()) >= total or time.monotonic() > deadline:
                assert sum(served.values()) == total, served
                return served
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path)
    _leave_a_stale_count(server.metrics_dir)
    server.start()
    yield server
    server.stop()


def _leave_a_stale_count(directory: Path) -> None:
    """Counts an earlier gunicorn left behind: 1,000 requests for /healthz that this run never served."""
    directory.mkdir(parents=True)
    script = ("from prometheus_client import Counter\n"
              "Counter('emofuse_http_requests', 'stale', ['route', 'method', 'status']).labels('/healthz', 'GET', '200').inc(1000)\n")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}, timeout=60)
    assert run.returncode == 0 and list(directory.glob("counter_*.db"))


def _send(server: Gunicorn, count: int) -> None:
    """``count`` requests for /healthz, 8 at a time, so that both workers get some."""
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: _get(server.url + "/healthz")[0], range(count)))
    assert statuses == [200] * count


def _healthz_counts(server: Gunicorn) -> tuple[float, float]:
    """What one scrape says of /healthz: the requests counted, and the latencies observed."""
    status, text = _get(server.url + "/metrics")
    assert status == 200
    samples = _samples(text)
    return (_value(samples, "emofuse_http_requests_total", **HEALTHZ),
            _value(samples, "emofuse_http_request_duration_seconds_count", route="/healthz", method="GET"))


def test_the_counts_add_up_across_gunicorn_workers(gunicorn: Gunicorn) -> None:
    sent = 0
    while sent < 800 and len(gunicorn.served(sent)) < 2:  # until both workers have answered some
        _send(gunicorn, 40)
        sent += 40
    served = gunicorn.served(sent)
    assert set(served) == set(gunicorn.workers()) and len(served) == 2, served
    for _ in range(6):  # scrapes land on either worker; each must count both workers' requests, and none of the stale ones
        assert _healthz_counts(gunicorn) == (sent, sent)

    first = gunicorn.workers()[0]
    os.kill(first, signal.SIGTERM)  # the master replaces it (and tells prometheus-client in child_exit)
    gunicorn.wait_for_workers(3)
    _send(gunicorn, 40)
    sent += 40
    assert first in gunicorn.served(sent)
    for _ in range(6):
        assert _healthz_counts(gunicorn) == (sent, sent)  # the exited worker's requests are still counted


# /readyz and the queue


def test_readyz_has_no_queue_check_without_redis_url(tmp_path: Path) -> None:
    response = gateway_app(tmp_path).test_client().get("/readyz")
    assert response.status_code == 200 and "queue" not in response.json["checks"]


def test_readyz_pings_the_queue_and_is_503_once_redis_stops(tmp_path: Path, redis_server: RedisServer) -> None:
    web = gateway_app(tmp_path, redis_url=redis_server.url).test_client()
    response = web.get("/readyz")
    assert response.status_code == 200 and response.json["checks"]["queue"] == {"ok": True}
    redis_server.stop()
    try:
        response = web.get("/readyz")
    finally:
        redis_server.start()  # the session's Redis, for the tests after this one
    assert response.status_code == 503
    assert response.json["checks"]["queue"] == {"ok": False, "error": "The job queue (Redis) cannot be reached."}
    assert response.json["checks"]["database"]["ok"] is True


def test_readyz_is_503_when_redis_never_answers(tmp_path: Path) -> None:
    """A server that accepts the connection and never speaks: the probe gives up within its timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        web = gateway_app(tmp_path, redis_url=url, readiness_timeout_s=0.5).test_client()
        started = time.monotonic()
        response = web.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503 and response.json["checks"]["queue"]["ok"] is False


def test_readyz_says_when_redis_url_is_not_a_redis_url(tmp_path: Path) -> None:
    response = gateway_app(tmp_path, redis_url="http://127.0.0.1:6379").test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["queue"] == {"ok": False, "error": "REDIS_URL is not a Redis URL (redis://HOST:PORT/DB)."}
