"""How fast is `emofuse batch`, and what do more worker processes buy?

Copies the 60 s 1280x720 video of `analyze_speed.py` COPIES times into a folder and runs
`emofuse batch --no-video` over it with 1, 2, ... worker processes, each run from scratch (a new
results file). Prints the wall time of each run (the command as a user starts it: process and
worker start-up included), windows and seconds of video per second, and the speed-up over one
worker; then, as the yardstick, the same recordings analysed one after another in this process
(`Analyzer.analyze`, no worker processes, no start-up).

    python benchmarks/batch_speed.py [--workdir var/bench] [--copies 4] [--workers 1 2]

A local Triton is started on free ports.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving.analysis import Analyzer
from serving.triton_client import EmotionClient
from emofuse.triton_server import TritonPorts, TritonServer
from preprocessing.recording import probe
from preprocessing.synthesis import SampleSpec, write_sample_video

ROOT = Path(__file__).resolve().parents[1]


def run_batch(folder: Path, url: str, workers: int) -> tuple[float, int]:
    """Wall seconds of one `emofuse batch` run over ``folder``, and the windows it analysed."""
    with tempfile.TemporaryDirectory() as out:
        results = Path(out) / "results.jsonl"
        command = [sys.executable, "-m", "emofuse.cli", "batch", str(folder), "--triton", url, "--out", str(results), "--no-video"]
        start = time.perf_counter()
        subprocess.run([*command, "--workers", str(workers)], cwd=ROOT, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        return seconds, sum(len(json.loads(line)["windows"]) for line in results.read_text().splitlines())


def run_in_process(videos: list[Path], url: str) -> float:
    """Wall seconds to analyse ``videos`` one after another with one Analyzer in this process."""
    with EmotionClient(url) as client, tempfile.TemporaryDirectory() as out:
        analyzer = Analyzer(client)
        start = time.perf_counter()
        for video in videos:
            analyzer.analyze(video, out, render=False)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    minute = args.workdir / "minute_720p.mp4"
    if not minute.exists():
        print("writing the 60 s 1280x720 video ...", flush=True)
        write_sample_video(minute, SampleSpec(duration_s=60.0, noise=5.0))  # as analyze_speed.py writes it
    video_s = probe(minute).duration_s * args.copies

    with TritonServer(args.repository, ports=TritonPorts.free()) as server, tempfile.TemporaryDirectory() as folder:
        videos = [shutil.copy(minute, Path(folder) / f"take{i}.mp4") for i in range(args.copies)]
        print(f"{args.copies} copies of {minute.name}: {video_s:.0f} s of video\n")
        print(f"{'run':<34}{'seconds':>9}{'windows/s':>11}{'video s/s':>11}{'speed-up':>10}")
        one_worker = None
        for workers in args.workers:
            seconds, windows = run_batch(Path(folder), server.grpc_url, workers)
            one_worker = one_worker or seconds
            name = f"emofuse batch, {workers} worker{'s' * (workers > 1)}"
            print(f"{name:<34}{seconds:>9.2f}{windows / seconds:>11.1f}{video_s / seconds:>11.1f}{one_worker / seconds:>10.2f}", flush=True)
        seconds = run_in_process([Path(v) for v in videos], server.grpc_url)
        print(f"{'in process, one after another':<34}{seconds:>9.2f}{windows / seconds:>11.1f}{video_s / seconds:>11.1f}{one_worker / seconds:>10.2f}")


if __name__ == "__main__":
    main()
