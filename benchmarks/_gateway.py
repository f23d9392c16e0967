"""What the gateway benchmarks share: a gateway on a fresh SQLite, users with tokens, finished
analyses written straight into the database (:func:`gateway.testing_flow.finished_analysis`), a
local gunicorn, a Triton, and small readers for ``/metrics`` and the machine's load.

Only the project's own dependencies: the HTTP client is the standard library's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from gateway import create_app  # noqa: E402
from gateway.config import Config  # noqa: E402
from gateway.db import engine_of  # noqa: E402
from gateway.testing import free_port, sign_in, stop_process  # noqa: E402
from gateway.testing_flow import PASSWORD, api_user, finished_analysis  # noqa: E402


def load() -> str:
    """The machine's load averages (1, 5, 15 minutes) and its cores, for the output."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def environment(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment for a gateway on ``data_dir`` (its SQLite), nothing else inherited
    that would point it elsewhere."""
    env = {**os.environ, "EMOFUSE_DATA_DIR": str(data_dir), **extra}
    for name in ("DATABASE_URL", "REDIS_URL", "TRITON_URL", "EMOFUSE_METRICS_TOKEN", "PROMETHEUS_MULTIPROC_DIR", "SECRET_KEY"):
        if name not in extra:
            env.pop(name, None)
    return env


def make_app(data_dir: Path) -> Flask:
    """The gateway on a fresh SQLite in ``data_dir`` (migrations applied), in this process; its
    request log lines (JSON, one a request) are left out of the benchmark's output."""
    app = create_app(Config.from_env({"EMOFUSE_DATA_DIR": str(data_dir)}))
    logging.getLogger("gateway").setLevel(logging.WARNING)
    return app


@dataclass(frozen=True)
class Account:
    """A seeded user: the API's headers, the page's ``Cookie`` header, and their analyses' ids."""

    email: str
    headers: dict[str, str]
    cookie: str
    analyses: list[int]


def seed(app: Flask, users: int, analyses: int, windows: int) -> list[Account]:
    """``users`` users, each with a token, a signed-in session and ``analyses`` finished analyses
    of ``windows`` windows each (with their verdict and done job), written through the models."""
    accounts = []
    for n in range(users):
        email = f"bench{n}@example.org"
        user_id, headers = api_user(app, email)
        with Session(engine_of(app)) as session:
            ids = [finished_analysis(session, user_id, f"Interview {i}", windows) for i in range(analyses)]
        accounts.append(Account(email, headers, _session_cookie(app, email), ids))
    return accounts


def _session_cookie(app: Flask, email: str) -> str:
    """A browser's ``Cookie`` header after signing in with the form (CSRF token and all)."""
    web, name = app.test_client(), app.config["SESSION_COOKIE_NAME"]
    assert sign_in(web, email, PASSWORD).status_code == 302
    return f"{name}={web.get_cookie(name).value}"


class Gunicorn:
    """``gunicorn -c gateway/gunicorn_conf.py`` on a free loopback port, its output in ``root``."""

    def __init__(self, root: Path, env: dict[str, str], workers: int) -> None:
        self.root, self.env, self.workers, self.port = root, env, workers, free_port()
        self.log = root / "gunicorn.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Gunicorn:
        """Start it; :meth:`wait` until it answers (meanwhile other things can boot)."""
        command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gateway" / "gunicorn_conf.py"), "-b", f"127.0.0.1:{self.port}",
                   "-w", str(self.workers), "--timeout", "120", "gateway:create_app()"]  # fmt: skip
        env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.root / "prometheus")}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def wait(self) -> Gunicorn:
        deadline = time.monotonic() + 180  # each worker imports the gateway and serving: slow on a busy machine
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.process.returncode}):\n{self.log.read_text()[-2000:]}")
            booted = self.log.read_text().count("Booting worker with pid")
            if booted >= self.workers and get(self.url + "/healthz")[0] == 200:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within 180 s:\n{self.log.read_text()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of a GET; (0, b'') when nothing answers."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def get_json(url: str, headers: dict[str, str]) -> tuple[int, dict]:
    status, body = get(url, headers)
    return status, json.loads(body) if body else {}


def post_recording(url: str, headers: dict[str, str], video: Path) -> tuple[int, dict]:
    """``POST /api/v1/analyses`` with the video (multipart, consent given), as a program sends it."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="consent"\r\n\r\ntrue\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="recording"; filename="{video.name}"\r\n'
            "Content-Type: video/mp4\r\n\r\n").encode()  # fmt: skip
    body = head + video.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/api/v1/analyses", data=body, method="POST",
                                     headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def samples(text: str, name: str, label: str) -> dict[str, float]:
    """``name``'s samples in a Prometheus text page, by the value of ``label`` (summed over the rest)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and label in sample.labels:
                key = sample.labels[label]
                found[key] = found.get(key, 0.0) + sample.value
    return found


def sample_video(path: Path, duration_s: float) -> Path:
    """The sample video (`emofuse sample`: 1280x720, 30 fps, a face and speech), written once."""
    from preprocessing.synthesis import SampleSpec, write_sample_video

    return path if path.exists() else write_sample_video(path, SampleSpec(duration_s=duration_s))


def describe(video: Path) -> str:
    """``sample.mp4 (1280x720, 12.0 s)``."""
    from preprocessing.recording import probe

    info = probe(video)
    return f"{video.name} ({info.width}x{info.height}, {info.duration_s:.1f} s)"


def missing_models(repository: Path) -> list[str]:
    """The repository's models whose ONNX file is not there (``emofuse repo build`` writes them)."""
    return [str(code.parent) for code in sorted(repository.glob("*/1/model.py")) if not (code.parent / "model.onnx").exists()]


@contextlib.contextmanager
def triton(url: str | None, repository: Path) -> Iterator[str]:
    """A Triton's gRPC address: ``url`` as given, else a local server on ``repository`` (free ports)."""
    if url:
        yield url
        return
    if not repository.is_dir():
        sys.exit(f"There is no model repository at {repository}: run `.venv/bin/emofuse repo build` first.")
    missing = missing_models(repository)
    if missing:
        names = ", ".join(Path(m).parent.name for m in missing)
        sys.exit(f"{repository} lacks the ONNX files of {names}: run `.venv/bin/emofuse repo build` first.")
    from emofuse.triton_server import TritonPorts, TritonServer

    print(f"starting Triton on {repository} ...", flush=True)
    with TritonServer(repository, ports=TritonPorts.free()) as server:
        yield server.grpc_url


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
