"""The gateway benchmarks run end to end in a quick mode and print their figures.

Each script runs as a subprocess, as a person would run it: the latency one against its own
gunicorn (with locust, skipped where it is not installed), the job ones against the tests' Triton
(tests/conftest.py) with one job of the tests' 8 s 640x360 video.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"\d+(\.\d+)?"


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="locust is not installed (the test extra has it)")
def test_latency_prints_percentiles_and_rates_per_route() -> None:
    # Never import locust here: it monkey-patches threading, sockets and subprocess (gevent) in the
    # whole test process, which broke this test and hung later ones' subprocesses.
    out = _run("gateway_latency.py", "--users", "4", "--seconds", "3", "--workers", "1", "--accounts", "2", "--analyses", "3",
               "--wait", "0.2")  # fmt: skip
    assert re.search(r"^4 users \(load average ", out, re.M), out
    for route in ("status", "timeline", "history API", "history page", "all"):
        row = re.search(rf"^{route} +(\d+) +(\d+) +{NUMBER} +\d+ +\d+ +\d+ ", out, re.M)
        assert row and int(row.group(1)) > 0 and row.group(2) == "0", out  # answered, none failed
    assert "aim (p99 < 50 ms at 50 users): not measured" in out


def test_gateway_share_prints_each_stage_and_the_gateways_share(triton, face_video: Path) -> None:  # noqa: ANN001
    out = _run("gateway_share.py", "--triton", triton.grpc_url, "--jobs", "1", "--video", str(face_video))
    for stage in ("decoding", "faces", "voice", "inference", "rendering", "gateway", "wall", "db"):
        assert re.search(rf"^{stage} +{NUMBER} +{NUMBER}%$", out, re.M), out
    assert re.search(rf"aim \(the gateway's share < 5 % of a job's wall time\): (met|NOT met), median share {NUMBER} %", out), out


def test_first_window_prints_the_times_from_upload_to_done(triton, face_video: Path) -> None:  # noqa: ANN001
    out = _run("gateway_first_window.py", "--triton", triton.grpc_url, "--jobs", "1", "--video", str(face_video), "--web-workers", "1")
    row = re.search(rf"^median +({NUMBER}) +({NUMBER}) +({NUMBER}) +({NUMBER})$", out, re.M)
    assert row, out
    upload, first, done = float(row.group(1)), float(row.group(5)), float(row.group(7))
    assert 0 < upload <= first <= done, out
