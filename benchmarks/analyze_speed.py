"""How fast is `emofuse analyze`, and how much memory does it take?

For a generated 60 s 1280x720 30 fps H.264 + AAC video, prints the time of: a naive decode of
every frame (the yardstick), preprocessing alone (windows, faces, crops, audio), Triton inference
alone, and the whole analysis with and without the annotated copy; then the ratios end-to-end /
decode-only and seconds of video per second of processing. For scale: decoding every frame to RGB
arrays (what naive video code does) and a plain re-encode (the floor under the annotated copy).
Then the peak memory (max RSS) of the `emofuse analyze` process for a 1- and a 10-minute video.

    python benchmarks/analyze_speed.py [--workdir var/bench] [--repeat 3]

The videos are written once into the work folder (the 10-minute one by joining the 1-minute one
ten times, without re-encoding). A local Triton is started on free ports.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _timing import median_seconds  # noqa: E402

from serving.analysis import BATCH_WINDOWS, FACE_CROP, MODES, Analyzer  # noqa: E402
from serving.render import X264_OPTIONS  # noqa: E402
from serving.triton_client import EmotionClient  # noqa: E402
from emofuse.triton_server import TritonPorts, TritonServer  # noqa: E402
from preprocessing.faces import FaceDetector  # noqa: E402
from preprocessing.recording import probe  # noqa: E402
from preprocessing.synthesis import SampleSpec, write_sample_video  # noqa: E402
from preprocessing.windows import read_windows  # noqa: E402


def naive_decode(path: Path) -> None:
    with av.open(str(path)) as container:
        for _ in container.decode(video=0):
            pass


def decode_to_arrays(path: Path) -> None:
    """What most video code does first: every frame decoded and converted to an RGB array."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")


def reencode(path: Path, out: Path) -> None:
    """The floor under the annotated copy: decode and encode every frame as render_video does, no captions."""
    with av.open(str(path)) as source, av.open(str(out), "w") as sink:
        vin = source.streams.video[0]
        vin.thread_type = "AUTO"
        vout = sink.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt, vout.time_base = vin.width, vin.height, "yuv420p", vin.time_base
        vout.options = X264_OPTIONS
        for frame in source.decode(vin):
            sink.mux(vout.encode(frame))
        sink.mux(vout.encode())


def join(source: Path, times: int, out: Path) -> Path:
    """``source`` played ``times`` times in a row, remuxed without re-encoding (atomically)."""
    with av.open(str(source)) as src:  # each stream's span in its time base: the shift per repeat
        first: dict[int, int] = {}
        end: dict[int, int] = {}
        for packet in src.demux():
            if packet.dts is not None:
                i = packet.stream.index
                first.setdefault(i, packet.dts)
                end[i] = max(end.get(i, packet.dts), packet.dts + (packet.duration or 0))
        length = {i: end[i] - first[i] for i in end}
    part = out.with_name(out.stem + ".part" + out.suffix)
    with av.open(str(part), "w") as dst:
        with av.open(str(source)) as src:
            streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for i in range(times):
            with av.open(str(source)) as src:
                for packet in src.demux():
                    if packet.dts is None:
                        continue
                    shift = i * length[packet.stream.index]
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = streams[packet.stream.index]
                    dst.mux(packet)
    return part.replace(out)


def peak_memory_mib(path: Path, url: str) -> float:
    """Max RSS of a fresh `emofuse analyze` process, measured by a wrapper process of its own."""
    with tempfile.TemporaryDirectory() as out:
        code = (
            "import resource, subprocess, sys;"
            f"subprocess.run([sys.executable, '-m', 'emofuse.cli', 'analyze', {str(path)!r}, '--triton', {url!r}, '--out', {out!r}], check=True);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return int(run.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    minute = args.workdir / "minute_720p.mp4"
    if not minute.exists():
        print("writing the 60 s 1280x720 video ...", flush=True)
        # Sensor noise of 5 grey levels gives about the bit rate of a real 720p camera recording.
        write_sample_video(minute, SampleSpec(duration_s=60.0, noise=5.0))
    ten = args.workdir / "ten_minutes_720p.mp4"
    if not ten.exists():
        join(minute, 10, ten)
    info = probe(minute)
    mbits = minute.stat().st_size * 8 / info.duration_s / 1e6
    print(f"video: {minute.name}, {info.width}x{info.height}, {info.fps:.0f} fps, {info.duration_s:.1f} s, {info.video_codec}+{info.audio_codec}, {mbits:.1f} Mbit/s")

    with TritonServer(args.repository, ports=TritonPorts.free()) as server, EmotionClient(server.grpc_url) as client:
        detector = FaceDetector()
        analyzer = Analyzer(client, detector=detector)
        windows = list(read_windows(info, crop=FACE_CROP, detector=detector))
        av_mode = MODES["av"]  # what analyze uses for a video with sound
        batches = [analyzer.inputs(av_mode, windows[i : i + BATCH_WINDOWS]) for i in range(0, len(windows), BATCH_WINDOWS)]

        def infer() -> None:
            for future in [client.submit(av_mode.model, inputs, av_mode.outputs) for inputs in batches]:
                future.result()

        with tempfile.TemporaryDirectory() as out:
            figures = {
                "decode every frame (naive)": median_seconds(lambda: naive_decode(minute), args.repeat),
                "decode every frame to RGB arrays": median_seconds(lambda: decode_to_arrays(minute), args.repeat),
                "preprocessing (windows, faces, audio)": median_seconds(lambda: list(read_windows(info, crop=FACE_CROP, detector=detector)), args.repeat),
                f"Triton inference, {av_mode.model} ({len(windows)} windows)": median_seconds(infer, args.repeat),
                "analyze, timeline only (--no-video)": median_seconds(lambda: analyzer.analyze(minute, out, render=False), args.repeat),
                "analyze, with annotated video": median_seconds(lambda: analyzer.analyze(minute, out), args.repeat),
                f"re-encode only (libx264 {X264_OPTIONS['preset']})": median_seconds(lambda: reencode(minute, Path(out) / "copy.mp4"), args.repeat),
            }
        decode = figures["decode every frame (naive)"]
        print(f"\n{'stage':<42}{'seconds':>9}{'x decode':>10}{'video s/s':>11}")
        for name, seconds in figures.items():
            print(f"{name:<42}{seconds:>9.2f}{seconds / decode:>10.2f}{info.duration_s / seconds:>11.1f}")

        print("\npeak memory of `emofuse analyze` (max RSS of the process; Triton not included)")
        for path in (minute, ten):
            print(f"  {probe(path).duration_s / 60:4.0f} min: {peak_memory_mib(path, server.grpc_url):7.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
