"""deploy/examples/client.py, run as its users run it: a process of its own against a real server
(werkzeug on a free loopback port, SQLite in tmp_path), with a real job runner in a thread and the
real Triton of tests/conftest.py. One analysis of a 7.2 s video (two windows).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from werkzeug.serving import make_server

from gateway import create_app
from gateway.config import Config
from gateway.testing import free_port
from gateway.testing_flow import api_user, runner_for
from preprocessing.synthesis import SampleSpec, write_sample_video

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "deploy" / "examples" / "client.py"
ROW = re.compile(r"^\s*(\d+)\s+(\d+:\d\d\.\d)\s+(\d+:\d\d\.\d)\s+(\S+)\s+(\S+(?: %)?)\s+(.+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, triton: Any, video: Path) -> Iterator[dict[str, Any]]:
    """The gateway on a free port, its job runner working, and a user's token.

    It takes ``video`` so that the video (espeak-ng, a subprocess) is made before the server's
    threads start: twice in full runs, a fork beside them left the fixture's Popen waiting forever.
    """
    app = create_app(Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path_factory.mktemp("client-data"))}))
    _, headers = api_user(app, "client@example.org")
    http = make_server("127.0.0.1", free_port(), app, threaded=True)
    runner = runner_for(app, triton.grpc_url)
    threads = [threading.Thread(target=http.serve_forever, daemon=True), threading.Thread(target=runner.work, daemon=True)]
    for thread in threads:
        thread.start()
    yield {"url": f"http://127.0.0.1:{http.server_port}", "app": app, "headers": headers,
           "token": headers["Authorization"].removeprefix("Bearer ")}  # fmt: skip
    runner.stop()
    http.shutdown()
    for thread in threads:
        thread.join(timeout=120)
    runner.close()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_video(tmp_path_factory.mktemp("client") / "interview.mp4", SampleSpec(duration_s=7.2, width=320, height=180,
                                                                                              face_height=120))  # fmt: skip


def _run(*args: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EMOFUSE_TOKEN": token}
    return subprocess.run([sys.executable, str(CLIENT), *args], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_the_client_uploads_follows_prints_the_timeline_and_downloads(server: dict[str, Any], video: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = _run(str(video), "--url", server["url"], "--out", str(out), "--every", "0.2", token=server["token"])
    print(run.stdout)  # shown by pytest when a check below fails
    assert run.returncode == 0, run.stdout + run.stderr
    analysis_id = int(re.search(r"^Uploaded interview\.mp4 as analysis (\d+) \(Face and voice\)$", run.stdout, re.MULTILINE).group(1))
    progress = re.findall(r"^\s*(\d+) %  (.+)$", run.stdout, re.MULTILINE)
    assert progress[0] == ("0", "Waiting for a worker") and progress[-1] == ("100", "done")
    assert [int(p) for p, _ in progress] == sorted(int(p) for p, _ in progress)
    timeline = server["app"].test_client().get(f"/api/v1/analyses/{analysis_id}/timeline", headers=server["headers"]).get_json()
    rows = ROW.findall(run.stdout)
    assert [(int(r[0]), r[5]) for r in rows] == [(w["index"], w["caption"]) for w in timeline["windows"]] and len(rows) == 2
    assert rows[1][1:3] == ("0:03.6", "0:07.2")
    assert sorted(path.name for path in out.iterdir()) == ["interview.annotated.mp4", "interview.timeline.csv"]
    assert f"Saved {out / 'interview.annotated.mp4'}" in run.stdout
    _check_video(out / "interview.annotated.mp4")
    _check_csv(out / "interview.timeline.csv", timeline)


def _check_video(path: Path) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 180)
    assert frames == round(7.2 * 30)  # every frame of the 7.2 s at 30 fps is in the copy, and decodes


def _check_csv(path: Path, timeline: dict[str, Any]) -> None:
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["start_s", "end_s", "label", *timeline["labels"], "status"]
    assert [(float(r["start_s"]), r["status"]) for r in rows] == [(w["start_s"], w["status"]) for w in timeline["windows"]]


def test_a_bad_token_exits_1_with_the_apis_message(server: dict[str, Any], video: Path, tmp_path: Path) -> None:
    run = _run(str(video), "--url", server["url"], "--out", str(tmp_path / "none"), token="emo_not-a-real-token")
    assert run.returncode == 1
    assert run.stderr.strip() == "error: The API token is not valid: it is unknown or was revoked. (HTTP 401, invalid_token)"
    assert run.stdout == "" and not (tmp_path / "none").exists()
