"""`emofuse serve`: the README's first command after setup, run as a user would.

Real processes only: `emofuse serve` starts Triton, gunicorn and the job worker on free ports with
a temporary workdir; the test is a browser made of urllib (cookies kept, CSRF tokens taken from the
forms): it signs up, presses the sample button, follows the analysis the worker runs, reads the
probes and the metrics, stops the service, and starts it again on the same workdir.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from emofuse.triton_server import TritonPorts
from gateway.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
STATUS_ROUTE = "/analyses/<int:analysis_id>/status"


class Browser:
    """Plain HTTP with a cookie jar, following redirects as a browser does."""

    def __init__(self, base: str, cookies: http.cookiejar.CookieJar | None = None) -> None:
        self.base = base
        self.cookies = cookies if cookies is not None else http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> tuple[int, str, str]:
        """Status, body and final path of a GET; error statuses are answers too."""
        return self._open(urllib.request.Request(self.base + path))

    def post_form(self, path: str, form_page: str, **fields: str) -> tuple[int, str, str]:
        """POST ``fields`` with the CSRF token of the form on ``form_page``."""
        token = _CSRF.search(self.get(form_page)[1]).group(1)
        body = urllib.parse.urlencode({"csrf_token": token, **fields}).encode()
        return self._open(urllib.request.Request(self.base + path, data=body, method="POST"))

    def _open(self, request: urllib.request.Request) -> tuple[int, str, str]:
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode(errors="replace"), urllib.parse.urlsplit(response.url).path
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace"), urllib.parse.urlsplit(err.url).path


class Serve:
    """`emofuse serve` in a process of its own, its output in a file (read while it runs)."""

    def __init__(self, repository: Path, workdir: Path, output: Path) -> None:
        ports, self.port = TritonPorts.free(), free_port()
        command = [
            sys.executable, "-m", "emofuse.cli", "serve", "--repository", str(repository), "--workdir", str(workdir),
            "--port", str(self.port), "--grpc-port", str(ports.grpc), "--http-port", str(ports.http), "--metrics-port", str(ports.metrics),
        ]  # fmt: skip
        self.output = output
        with output.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, "EMOFUSE_JOB_POLL_S": "0.2"})  # fmt: skip

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, prefix: str, timeout_s: float = 240.0) -> str:
        """The first line of its output that starts with ``prefix``, once it is there."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [line for line in self.text().splitlines() if line.startswith(prefix)]
            if found:
                return found[0]
            assert self.process.poll() is None, f"serve exited with {self.process.returncode}:\n{self.text()}"
            time.sleep(0.2)
        raise AssertionError(f"serve printed no line starting {prefix!r} within {timeout_s:.0f} s:\n{self.text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, start time), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it exited meanwhile
            found[int(entry.name)] = (int(fields[1]), fields[19])
    return found


def descendants(pid: int) -> dict[int, str]:
    """The processes below ``pid``, with their start times (a reused pid is another process)."""
    table, found, todo = _processes(), {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, started) in table.items():
            if ppid == parent and child not in found:
                found[child] = started
                todo.append(child)
    return found


def alive(processes: dict[int, str]) -> list[int]:
    table = _processes()
    return [pid for pid, started in processes.items() if pid in table and table[pid][1] == started]


def _metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())  # fmt: skip


def _kill_the_stub_of(pid: int, model: str) -> None:
    """SIGKILL the process of Triton's Python-backend ``model`` among ``pid``'s descendants, as the kernel's OOM killer would."""
    for child in descendants(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"triton_python_backend_stub") and f"/{model}/".encode() in argv[1]:
            os.kill(child, signal.SIGKILL)
            return
    raise AssertionError(f"no stub process of {model} below {pid}")


def _restarts_counted(web: Browser, model: str, timeout_s: float = 60) -> float:
    """``emofuse_triton_model_restarts_total`` for ``model`` once it is above 0, or 0 after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (count := _metric(web.get("/metrics")[1], "emofuse_triton_model_restarts_total", model=model)) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    return count


def _analyse_the_sample(web: Browser) -> tuple[int, int]:
    """Press the sample button on the empty history; follow the analysis to its end. Its id and the polls made."""
    status, page, _ = web.get("/")
    assert status == 200 and "Analyse the sample video" in page, page
    status, page, path = web.post_form("/analyses/sample", "/")
    assert status == 200 and re.fullmatch(r"/analyses/\d+", path), (status, path)
    assert "Sample video" in page
    analysis_id, polls, deadline = int(path.rsplit("/", 1)[1]), 0, time.monotonic() + 300
    while True:
        status, body, _ = web.get(f"/analyses/{analysis_id}/status")
        polls += 1
        assert status == 200, body
        document = json.loads(body)
        assert document["status"] != "failed", document["error"]
        if document["status"] == "done":
            return analysis_id, polls
        assert time.monotonic() < deadline, f"the worker did not finish the sample within 300 s: {document}"
        time.sleep(0.5)


def test_serve_runs_triton_the_gateway_and_the_worker_then_stops_them_all(repository: Path, tmp_path: Path) -> None:
    """Start, sign up, one click analyses the sample through the worker and Triton, probes and
    metrics answer; SIGTERM stops every process it started; the secret key is kept, 0600."""
    workdir = tmp_path / "var"
    serve = Serve(repository, workdir, tmp_path / "serve-1.txt")
    try:
        assert serve.wait_for("Secret key: ") == f"Secret key: made and kept in {workdir / 'secret_key'} (mode 0600)"
        line = serve.wait_for("Open http://")
        assert line.startswith(f"Open http://127.0.0.1:{serve.port}/ "), line
        web = Browser(f"http://127.0.0.1:{serve.port}")
        status, _, path = web.post_form("/auth/sign-up", "/auth/sign-up", email="first@example.org", password=PASSWORD,
                                        confirmation=PASSWORD)  # fmt: skip
        assert (status, path) == (200, "/")
        started = time.monotonic()
        analysis_id, polls = _analyse_the_sample(web)
        print(f"the sample analysed through the worker in {time.monotonic() - started:.1f} s ({polls} polls)")
        status, body, _ = web.get(f"/analyses/{analysis_id}/files/json")
        timeline = json.loads(body)
        assert status == 200 and timeline["complete"] and timeline["verdict"]["label"] == "happy", body[:500]
        assert len(timeline["windows"]) >= 3 and all(w["status"] == "ok" and w["probabilities"] for w in timeline["windows"])
        assert web.get(f"/analyses/{analysis_id}/files/video")[0] == 200  # the annotated copy the worker wrote
        status, body, _ = web.get("/readyz")
        assert status == 200 and json.loads(body)["checks"]["triton"]["ok"], body
        status, metrics, _ = web.get("/metrics")
        assert status == 200
        # Every poll counted once, whichever of gunicorn's two workers answered it; the jobs gauge read from the database.
        assert _metric(metrics, "emofuse_http_requests_total", route=STATUS_ROUTE, method="GET") == polls
        assert _metric(metrics, "emofuse_jobs", state="queued") == _metric(metrics, "emofuse_jobs", state="running") == 0
        assert "# TYPE emofuse_triton_model_restarts_total counter" in metrics and _metric(metrics, "emofuse_triton_model_restarts_total") == 0
        _kill_the_stub_of(serve.process.pid, "speech_emotion")
        assert _restarts_counted(web, "speech_emotion") == 1, "the watchdog restarted it, and /metrics says so"
        children = descendants(serve.process.pid)
        assert len(children) >= 5, children  # Triton and its models' stubs, gunicorn and its workers, the job worker
        serve.process.send_signal(signal.SIGTERM)
        assert serve.process.wait(timeout=120) == 128 + signal.SIGTERM, serve.text()
        assert alive(children) == [], serve.text()
    finally:
        serve.stop()
    key = workdir / "secret_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    _restart_keeps_the_key_and_stops_when_a_process_dies(repository, workdir, tmp_path, key.read_text(), web.cookies)


def _restart_keeps_the_key_and_stops_when_a_process_dies(repository: Path, workdir: Path, tmp_path: Path, key: str,
                                                         cookies: http.cookiejar.CookieJar) -> None:  # fmt: skip
    """The second start on the same workdir: the same key (the first run's session cookie still
    signs in); then the job worker is killed, and serve stops the rest and says which one died."""
    serve = Serve(repository, workdir, tmp_path / "serve-2.txt")
    try:
        assert serve.wait_for("Secret key: ") == f"Secret key: kept from an earlier start in {workdir / 'secret_key'} (mode 0600)"
        serve.wait_for("Open http://")
        assert (workdir / "secret_key").read_text() == key
        web = Browser(f"http://127.0.0.1:{serve.port}", cookies)
        status, page, path = web.get("/")
        assert (status, path) == (200, "/") and "Sample video" in page  # signed in still, the analysis in the history
        children = descendants(serve.process.pid)
        worker = next(pid for pid in children if b"emofuse.cli\0worker\0" in Path(f"/proc/{pid}/cmdline").read_bytes())
        os.kill(worker, signal.SIGKILL)
        assert serve.process.wait(timeout=120) == 1, serve.text()
        assert "emofuse serve: the job worker was killed by SIGKILL (log: " in serve.text()
        assert alive(children) == [], serve.text()
    finally:
        serve.stop()
