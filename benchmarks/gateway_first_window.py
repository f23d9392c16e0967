"""How long from an upload to the first window of its timeline, and to the finished analysis?

Runs the gateway as it is deployed, each part in its own process: a Triton on the checkout's
repository (``--triton HOST:PORT`` uses a running one instead), gunicorn (``gunicorn -c
gateway/gunicorn_conf.py``, 2 sync workers: ``--web-workers``) and one ``emofuse worker`` polling the database
(``EMOFUSE_JOB_POLL_S``, 0.25 s by default), both on a fresh SQLite in a temporary folder. For each
of ``--jobs`` uploads of the sample video (`emofuse sample`: 12 s, 1280x720, a face and speech),
over real HTTP with the standard library:

- the upload: ``POST /api/v1/analyses`` until its 201 (the file streamed to disk and checked by FFmpeg);
- the first window: ``GET /api/v1/analyses/<id>/timeline`` every ``--poll`` seconds until it
  answers 200 with a window;
- done: ``GET /api/v1/analyses/<id>`` until its status is done (the annotated copy written).

Prints each upload's times from the moment it was sent, with when the worker claimed the job
(``started_at`` less ``created_at``), and their medians. The first job also pays for the worker
connecting to Triton and loading the face detector.

    .venv/bin/python benchmarks/gateway_first_window.py [--jobs 3] [--duration 12 | --video FILE] [--triton HOST:PORT] [--web-workers 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _gateway import ROOT, Gunicorn, describe, environment, get_json, load, make_app, median, post_recording, sample_video, seed, triton

from gateway.testing import stop_process

COLUMNS = ("upload s", "claimed s", "first window s", "done s")


class Worker:
    """An ``emofuse worker`` process on the gateway's database, its output in ``log``."""

    def __init__(self, env: dict[str, str], url: str, log: Path) -> None:
        self.command = [sys.executable, "-m", "emofuse.cli", "worker", "--triton", url]
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Worker:
        """Start it; :meth:`wait` until it polls."""
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def wait(self) -> Worker:
        deadline = time.monotonic() + 120
        while "emofuse worker " not in self.log.read_text():  # it prints its name once it polls
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"emofuse worker did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)


def follow(url: str, headers: dict[str, str], video: Path, poll_s: float, timeout_s: float) -> dict[str, Any]:
    """Upload ``video`` and follow it: seconds from sending it to each of :data:`COLUMNS`."""
    sent = time.perf_counter()
    status, created = post_recording(url, headers, video)
    if status != 201:
        sys.exit(f"the upload was answered {status}: {created}")
    times = {"upload s": time.perf_counter() - sent}
    base = f"{url}/api/v1/analyses/{created['id']}"
    while "first window s" not in times:
        status, timeline = get_json(base + "/timeline", headers)
        if status == 200 and timeline["windows"]:
            times["first window s"], times["windows"] = time.perf_counter() - sent, len(timeline["windows"])
        else:
            _wait(status, timeline, sent, poll_s, timeout_s)
    while "done s" not in times:
        status, document = get_json(base, headers)
        if document.get("status") == "done":
            times["done s"] = time.perf_counter() - sent
            times["claimed s"] = (_moment(document["started_at"]) - _moment(document["created_at"])).total_seconds()
        else:
            _wait(status, document, sent, poll_s, timeout_s)
    return times


def _wait(status: int, body: dict[str, Any], sent: float, poll_s: float, timeout_s: float) -> None:
    if status not in (200, 409) or body.get("status") == "failed":
        sys.exit(f"the analysis failed ({status}): {body}")
    if time.perf_counter() - sent > timeout_s:
        sys.exit(f"no result after {timeout_s:.0f} s: {body}")
    time.sleep(poll_s)


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def report(runs: list[dict[str, Any]]) -> None:
    print(f"\n{'upload':<8}" + "".join(f"{c:>16}" for c in COLUMNS))
    for n, run in enumerate(runs, 1):
        print(f"{n:<8}" + "".join(f"{run[c]:>16.2f}" for c in COLUMNS))
    print(f"{'median':<8}" + "".join(f"{median([run[c] for run in runs]):>16.2f}" for c in COLUMNS))
    print(f"\n{runs[0]['windows']} windows a timeline; seconds from sending the upload ({load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3, help="uploads, one after the other (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds of the sample video (default: %(default)s)")
    parser.add_argument("--video", type=Path, help="upload this recording instead of writing the sample")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (default: %(default)s)")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between the client's polls (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up on an upload after this long (default: %(default)s)")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--triton", help="gRPC host:port of a running Triton (default: start one on --repository)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emofuse-bench-") as tmp, triton(args.triton, args.repository) as url:
        root = Path(tmp)
        account = seed(make_app(root / "data"), users=1, analyses=0, windows=0)[0]  # the database first: migrations
        env = environment(root / "data")
        with Gunicorn(root, env, args.web_workers) as server, Worker(env, url, root / "worker.log") as worker:
            video = args.video or sample_video(root / "sample.mp4", args.duration)  # while they boot
            server.wait(), worker.wait()
            print(f"gunicorn at {server.url} ({args.web_workers} workers), one `emofuse worker`, Triton at {url}; "
                  f"uploading {describe(video)}; {load()}", flush=True)  # fmt: skip
            runs = [follow(server.url, account.headers, video, args.poll, args.timeout) for _ in range(args.jobs)]
        report(runs)


if __name__ == "__main__":
    main()
