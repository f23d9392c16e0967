"""`emofuse batch` end to end: a folder of real recordings, a real Triton, worker processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emofuse.batch import WorkerPool, WorkerSettings, find_jobs
from emofuse.triton_server import TritonPorts, TritonServer, free_port

BROKEN = ("broken/empty.mp4", "broken/half.mp4", "broken/notes.mp4")
GOOD = ("day2/silent.mp4", "day2/speech.wav", "face.mp4")


def emofuse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emofuse.cli", *args], check=False, capture_output=True, text=True, timeout=300)


def batch(folder: Path, out: Path, url: str, *options: str) -> subprocess.CompletedProcess:
    return emofuse("-v", "batch", str(folder), "--triton", url, "--out", str(out), "--no-video", *options)


def lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n"), "every line is complete"
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory, face_video, silent_video) -> Path:
    """Three good recordings (a video with speech, a silent video, an espeak-ng .wav), three bad ones
    (empty, cut in half, a text file named .mp4) and a text file that is no candidate at all."""
    root = tmp_path_factory.mktemp("recordings")
    (root / "day2").mkdir()
    (root / "broken").mkdir()
    shutil.copy(face_video, root / "face.mp4")
    shutil.copy(silent_video, root / "day2" / "silent.mp4")
    text = "I can't believe it. This is the best day of my life! Kids are talking by the door."
    subprocess.run(["espeak-ng", "-w", str(root / "day2" / "speech.wav"), text], check=True, capture_output=True, timeout=60)
    (root / "broken" / "empty.mp4").write_bytes(b"")
    (root / "broken" / "half.mp4").write_bytes(face_video.read_bytes()[: face_video.stat().st_size // 2])
    (root / "broken" / "notes.mp4").write_text("just text\n" * 50)
    (root / "README.txt").write_text("not a recording\n")
    return root


@pytest.fixture(scope="module")
def first_run(recordings, triton, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("batch") / "results.jsonl"
    return batch(recordings, out, triton.grpc_url), out


def test_one_line_per_recording(first_run, recordings) -> None:
    run, out = first_run
    assert run.returncode == 1, "some recordings failed"
    assert "Traceback" not in run.stderr
    written = {line["recording"]: line for line in lines(out)}
    assert sorted(written) == sorted(GOOD + BROKEN), "README.txt is no candidate"
    for key, line in written.items():
        stat = (recordings / key).stat()
        assert (line["size"], line["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)
        assert line["seconds"] >= 0
    for key in BROKEN:
        assert written[key]["error"].startswith(f"{Path(key).name}: ")
        assert "windows" not in written[key]
    assert "3 analysed, 3 failed, 0 skipped" in run.stderr
    progress = re.findall(r"^\[(\d)/6 recordings, [\d.]+ windows/s, ETA [\d:?]+\] (\S+): ", run.stderr, re.MULTILINE)
    assert [int(n) for n, _ in progress] == [1, 2, 3, 4, 5, 6] and {key for _, key in progress} == set(written)


@pytest.mark.parametrize("key", ["face.mp4", "day2/speech.wav"])
def test_results_equal_analyze(key, first_run, recordings, triton, tmp_path) -> None:
    _, out = first_run
    (line,) = [line for line in lines(out) if line["recording"] == key]
    single = emofuse("analyze", str(recordings / key), "--json", "--no-video", "--triton", triton.grpc_url, "--out", str(tmp_path))
    assert single.returncode == 0, single.stderr
    expected = json.loads(single.stdout)
    for field in ("model", "mode", "weights", "labels"):
        assert line[field] == expected[field]
    assert line["verdict"]["label"] == expected["verdict"]["label"]
    assert [(w["status"], w["label"], w["start_s"]) for w in line["windows"]] == [
        (w["status"], w["label"], w["start_s"]) for w in expected["windows"]
    ]
    assert line["media"] == expected["recording"]
    used = [expected["model"], *expected["windows"][0]["models"]]
    assert line["models_used"] == {name: {"weights": "real", "untrained": False} for name in used}
    timeline = out.parent / line["files"]["timeline"]
    assert json.loads(timeline.read_text())["verdict"] == line["verdict"]


def test_rerun_skips_what_is_done_and_retries_failures(first_run, recordings, triton, tmp_path) -> None:
    _, first = first_run
    out = tmp_path / "results.jsonl"
    shutil.copy(first, out)
    changed = recordings / "day2" / "silent.mp4"
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        run = batch(recordings, out, triton.grpc_url)
    finally:
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert run.returncode == 1, run.stderr
    before = len(lines(first))
    again = lines(out)[before:]
    assert sorted(line["recording"] for line in again) == sorted([*BROKEN, "day2/silent.mp4"])
    assert "6 recordings" in run.stderr and "2 done before, 4 to analyse" in run.stderr


def test_a_partial_last_line_is_ignored(first_run, recordings, triton, tmp_path) -> None:
    _, first = first_run
    out = tmp_path / "results.jsonl"
    shutil.copy(first, out)
    with out.open("a") as f:
        f.write('{"recording": "face.mp4", "size": 12')  # a run killed in the middle of a write
    run = batch(recordings, out, triton.grpc_url)
    assert "partial last line" in run.stderr
    written = lines(out)
    assert len(written) == len(lines(first)) + len(BROKEN), "only the failed recordings are tried again"
    assert "3 done before" in run.stderr


def test_unreachable_triton_is_exit_3(recordings, tmp_path) -> None:
    run = batch(recordings, tmp_path / "results.jsonl", f"127.0.0.1:{free_port()}")
    assert run.returncode == 3
    assert "not reachable" in run.stderr and "Traceback" not in run.stderr


@pytest.fixture(scope="module")
def many(tmp_path_factory, face_video) -> Path:
    """Six copies of one video: work enough to stop a batch in the middle."""
    return _copies(tmp_path_factory.mktemp("many"), face_video, 6)


@pytest.fixture(scope="module")
def plenty(tmp_path_factory, face_video) -> Path:
    """24 copies: a batch still running when Ctrl-C comes, however late a busy machine sends it
    (six were all done before it, once, on a loaded CI machine)."""
    return _copies(tmp_path_factory.mktemp("plenty"), face_video, 24)


def _copies(root: Path, video: Path, n: int) -> Path:
    for i in range(n):
        shutil.copy(video, root / f"take{i}.mp4")
    return root


def start_batch(folder: Path, out: Path, url: str, *options: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "emofuse.cli", "-v", "batch", str(folder), "--triton", url, "--out", str(out), "--no-video", *options]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)


def wait_for_lines(out: Path, n: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not (out.exists() and out.read_text().count("\n") >= n):
        assert process.poll() is None and time.monotonic() < deadline, "the batch should still be running"
        time.sleep(0.05)


@pytest.fixture
def face_repository(repository, tmp_path) -> Path:
    """emotion_face and the models its steps run, alone: a Triton of its own starts in seconds."""
    ensemble = repository / "emotion_face"
    for model in {"emotion_face", *re.findall(r'model_name: "(\w+)"', (ensemble / "config.pbtxt").read_text())}:
        shutil.copytree(repository / model, tmp_path / "repo" / model, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "repo"


def test_triton_going_away_stops_the_run(many, face_repository, tmp_path) -> None:
    out = tmp_path / "results.jsonl"
    with TritonServer(face_repository, ports=TritonPorts.free()) as server:
        process = start_batch(many, out, server.grpc_url, "--workers", "1", "--model", "face")
        wait_for_lines(out, 1, process)
    assert process.wait(60) == 3
    stderr = process.stderr.read()
    assert "Triton at" in stderr and "run the same command again" in stderr and "Traceback" not in stderr
    written = lines(out)
    assert 1 <= len(written) < 6 and all("error" not in line for line in written), "finished lines stay; none is blamed on its file"


def test_ctrl_c_stops_workers_and_keeps_finished_lines(plenty, triton, tmp_path) -> None:
    out = tmp_path / "results.jsonl"
    process = start_batch(plenty, out, triton.grpc_url, "--workers", "2")
    wait_for_lines(out, 1, process)
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 130
    stderr = process.stderr.read()
    workers = [int(pid) for pid in re.findall(r"worker (\d+) started", stderr)]
    assert len(workers) == 2 and not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "no worker outlives the batch"
    assert all("verdict" in line for line in lines(out))
    assert not list(tmp_path.rglob(".emofuse-*")), "stopped analyses leave no staging folders"


def test_a_worker_that_dies_costs_only_its_recording(many, triton, tmp_path) -> None:
    out = tmp_path / "results.jsonl"
    process = start_batch(many, out, triton.grpc_url, "--workers", "1")
    while not (worker := re.search(r"worker (\d+) started", process.stderr.readline())):
        pass
    wait_for_lines(out, 1, process)
    time.sleep(0.3)  # the worker is analysing the second recording now
    os.kill(int(worker.group(1)), signal.SIGKILL)  # as a decoder crash or the OOM killer would
    assert process.wait(120) == 1
    assert "Traceback" not in process.stderr.read()
    written = lines(out)
    (dead,) = [line for line in written if "error" in line]
    assert "killed by SIGKILL" in dead["error"]
    assert sorted(line["recording"] for line in written) == [f"take{i}.mp4" for i in range(6)]


def test_a_worker_killed_before_it_read_its_job_costs_only_that_job(many, tmp_path) -> None:
    """A stopped worker never reads the job sent to it; killed so, its end of the pipe resets
    instead of closing, and the pool must still blame only that job and carry on."""
    settings = WorkerSettings(f"127.0.0.1:{free_port()}", 1, None, False, tmp_path / "files", tmp_path / "results.jsonl")
    (job,) = [job for job in find_jobs(many) if job.key == "take0.mp4"]
    with WorkerPool(1, settings) as pool:
        (worker,) = pool._processes
        os.kill(worker.process.pid, signal.SIGSTOP)
        threading.Timer(0.5, os.kill, (worker.process.pid, signal.SIGKILL)).start()
        ((done, line),) = list(pool.run([job]))
        (replacement,) = pool._processes
    assert done is job and "was killed by SIGKILL" in line["error"] and line["recording"] == "take0.mp4"
    assert replacement.process.pid != worker.process.pid


def test_trial_folders_are_judged_trial_by_trial(trial_folder, triton, tmp_path) -> None:
    """A folder with a manifest.csv is one job per trial (its video is not a recording of its own);
    a manifest that cannot be read gets one error line."""
    shutil.copytree(trial_folder, tmp_path / "in" / "session")
    (tmp_path / "in" / "broken").mkdir()
    (tmp_path / "in" / "broken" / "manifest.csv").write_text("subject,trial\n1,t1\n")
    out = tmp_path / "results.jsonl"
    run = batch(tmp_path / "in", out, triton.grpc_url)
    assert run.returncode == 1, run.stderr  # the broken manifest and the 13-channel trial
    written = {line["recording"]: line for line in lines(out)}
    assert sorted(written) == ["broken/manifest.csv", "session/1/t1", "session/1/t2", "session/1/t3"], run.stderr
    both, eeg_only, wrong = written["session/1/t1"], written["session/1/t2"], written["session/1/t3"]
    assert both["model"] == "emotion_av_eeg" and both["modalities"] == {"av": True, "eeg": True}
    assert both["weights"] == "untrained" and both["verdict"] is None, "synthetic weights: no verdict shown"
    assert both["models_used"] == {"emotion_av_eeg": {"weights": "synthetic", "untrained": True}}
    assert eeg_only["modalities"] == {"av": False, "eeg": True} and [w["modality"] for w in eeg_only["windows"]] == ["eeg"] * 4
    assert "t3.mat" in wrong["error"] and "columns" in written["broken/manifest.csv"]["error"]
    again = batch(tmp_path / "in", out, triton.grpc_url)
    assert "2 skipped" in again.stderr and len(lines(out)) == 6, "a rerun judges only the failed ones again"
