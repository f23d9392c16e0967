"""Does the memory of `emofuse analyze` stay flat however long the recording?

Runs `emofuse analyze --no-video` (timeline and .wav, as issue 12 measured it) on 1-, 10- and
60-minute 1280x720 30 fps H.264 + AAC videos against one running Triton, each in a fresh process,
and prints each process's peak resident memory (max RSS, the kernel's own account of it, read by
a small wrapper process with ``getrusage(RUSAGE_CHILDREN)``), its time, and the ratio of the
longest to the shortest.

    python benchmarks/memory.py [--workdir var/bench] [--minutes 1,10,60] [--triton HOST:PORT]

The 1-minute video is the one `analyze_speed.py` writes (generated; sensor noise for a real
camera's bit rate, 1.5 Mbit/s); the longer ones repeat it without re-encoding
(:func:`~preprocessing.synthesis.repeat_video`): real files of that length, every frame decoded
again. Without ``--triton`` a local Triton is started on free ports.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emofuse.triton_server import TritonPorts, TritonServer  # noqa: E402
from preprocessing.recording import probe  # noqa: E402
from preprocessing.synthesis import SampleSpec, repeat_video, write_sample_video  # noqa: E402
from preprocessing.windows import WindowSpec  # noqa: E402

MINUTE = "minute_720p.mp4"  # shared with analyze_speed.py and batch_speed.py


def video(workdir: Path, minutes: int) -> Path:
    """The ``minutes``-long test video in ``workdir``, made once."""
    minute = workdir / MINUTE
    if not minute.exists():
        print("writing the 60 s 1280x720 video ...", flush=True)
        write_sample_video(minute, SampleSpec(duration_s=60.0, noise=5.0))  # as analyze_speed.py writes it
    if minutes == 1:
        return minute
    path = workdir / f"{minutes}_minutes_720p.mp4"
    if not path.exists():
        print(f"joining {minutes} copies into {path.name} ...", flush=True)
        repeat_video(minute, minutes, path)
    return path


# A small process between this one and the analysis: on Linux a child's ru_maxrss starts from the
# RSS of the process that forked it, and this one holds the videos' makers (hundreds of MiB).
_WRAPPER = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)"
)


def peak_rss_mib(path: Path, url: str) -> tuple[float, float]:
    """Peak RSS in MiB and wall seconds of a fresh `emofuse analyze --no-video` process."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "emofuse.cli", "analyze", str(path), "--no-video", "--triton", url, "--out", out]
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", _WRAPPER, *command], cwd=ROOT, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
    max_rss_kib, status = (int(v) for v in run.stdout.split())  # ru_maxrss is in KiB on Linux
    if status != 0:
        raise SystemExit(f"emofuse analyze {path.name} failed with exit status {status}: {run.stderr.strip()}")
    return max_rss_kib / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--minutes", default="1,10,60", help="video lengths in minutes, comma-separated (default: %(default)s)")
    parser.add_argument("--triton", help="host:port of a running Triton's gRPC endpoint (default: start one)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    lengths = [int(m) for m in args.minutes.split(",")]
    videos = {m: video(args.workdir, m) for m in lengths}
    for m, path in videos.items():
        info = probe(path)
        windows = len(WindowSpec().spans(info.duration_s))
        print(f"{path.name}: {info.width}x{info.height}, {info.fps:.0f} fps, {info.duration_s:.1f} s, {windows} windows, "
              f"{path.stat().st_size / 2**20:.0f} MiB")  # fmt: skip

    def measure(url: str) -> dict[int, tuple[float, float]]:
        figures = {}
        for m, path in videos.items():
            figures[m] = peak_rss_mib(path, url)
            print(f"  {m:>3} min: peak RSS {figures[m][0]:7.1f} MiB, {figures[m][1]:6.1f} s", flush=True)
        return figures

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.triton:
        figures = measure(args.triton)
    else:
        with TritonServer(args.repository, ports=TritonPorts.free()) as server:
            figures = measure(server.grpc_url)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\n{'minutes':>7}{'peak RSS MiB':>14}{'seconds':>9}{'video s per s':>15}")
    for m, (mib, seconds) in figures.items():
        print(f"{m:>7}{mib:>14.1f}{seconds:>9.1f}{60 * m / seconds:>15.1f}")
    shortest, longest = min(figures), max(figures)
    if longest != shortest:
        ratio = figures[longest][0] / figures[shortest][0]
        print(f"peak RSS {longest} min / {shortest} min: {ratio:.3f} (goal: within 10 %, at most 1.10)")


if __name__ == "__main__":
    main()
