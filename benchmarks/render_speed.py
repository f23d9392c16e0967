"""How fast is the annotated copy, against a naive decode of the same file?

For a 60 s 1280x720 30 fps H.264 + AAC clip at about 17 Mbit/s (the sample video of
`benchmarks/analyze_speed.py` with camera-like sensor noise, encoded at that bit rate), prints in
one run the wall and CPU time of: a naive PyAV decode of every frame (the yardstick), the timeline alone
(`analyze --no-video`), the annotated copy alone (`render_video`), and the whole `analyze` with the
copy, with each one's ratio to the naive decode. Then the x264 settings, compared on the clip's
first 10 s as the copy encodes them: seconds, size (Mbit/s) and PSNR of the copy's luma against
the source's (below the caption), the figures behind `serving.render.X264_OPTIONS`.

    python benchmarks/render_speed.py [--workdir var/bench] [--repeat 3]

The clips are written once into the work folder. A local Triton is started on free ports.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emofuse.triton_server import TritonPorts, TritonServer  # noqa: E402
from preprocessing.recording import probe  # noqa: E402
from preprocessing.synthesis import SampleSpec, write_sample_video  # noqa: E402
from serving.analysis import Analyzer  # noqa: E402
from serving.render import X264_OPTIONS, caption_margin, caption_patch, render_video  # noqa: E402
from serving.triton_client import EmotionClient  # noqa: E402

BIT_RATE = 17_000_000  # a 720p phone or webcam recording, as in the issue's measurements
NOISE = 5.0  # sensor noise, grey levels: what makes a camera's bits (a clean render needs far fewer)
EXCERPT_S = 10.0  # of the clip, for the settings comparison
SETTINGS = [  # x264 preset and crf: the three fastest presets and the next, around the default crf 23
    {"preset": "ultrafast", "crf": "23"},
    {"preset": "ultrafast", "crf": "26"},
    {"preset": "ultrafast", "crf": "28"},
    {"preset": "superfast", "crf": "23"},
    {"preset": "superfast", "crf": "26"},
    {"preset": "veryfast", "crf": "23"},
    {"preset": "veryfast", "crf": "26"},
    {"preset": "faster", "crf": "23"},
]


def camera_clip(clean: Path, out: Path, *, seconds: float | None = None) -> Path:
    """``clean`` with per-frame sensor noise, H.264 at BIT_RATE (audio copied), cut at ``seconds``."""
    rng = np.random.default_rng(0)
    part = out.with_name(f".{out.stem}.part{out.suffix}")
    with av.open(str(clean)) as src, av.open(str(part), "w") as dst:
        vin, ain = src.streams.video[0], src.streams.audio[0]
        vout = dst.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        vout.time_base = vout.codec_context.time_base = vin.time_base
        vout.bit_rate = BIT_RATE
        vout.options = {"preset": "veryfast", "maxrate": str(BIT_RATE), "bufsize": str(2 * BIT_RATE)}
        aout = dst.add_stream_from_template(ain)
        # A bank of noise planes, drawn once: per-frame noise without per-frame random numbers.
        bank = np.clip(rng.normal(0, NOISE, (16, vin.height, vin.width)), -128, 127).astype(np.int16)
        for packet in src.demux(vin, ain):
            if packet.dts is None or (seconds is not None and float(packet.pts * packet.time_base) >= seconds):
                continue
            if packet.stream is ain:
                packet.stream = aout
                dst.mux(packet)
                continue
            for i, frame in enumerate(packet.decode()):
                yuv = frame.to_ndarray(format="yuv420p")  # (h * 3/2, w)
                yuv[: vin.height] = np.clip(yuv[: vin.height] + bank[(frame.pts or i) % len(bank)], 0, 255)
                noisy = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                noisy.pts, noisy.time_base = frame.pts, frame.time_base
                dst.mux(vout.encode(noisy))
        dst.mux(vout.encode())
    return part.replace(out)


def interleaved(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds of each run over ``repeat`` rounds, each round running every
    one in turn: on a shared machine a burst of load then weighs on all of them alike. CPU seconds
    are this process's, all its threads (decoder, x264) together; Triton's are not counted."""
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name in runs}


def naive_decode(path: Path) -> None:
    """What a first attempt does: PyAV's defaults, every frame decoded, nothing kept."""
    with av.open(str(path)) as container:
        for _ in container.decode(video=0):
            pass


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane, shape (height, width) uint8."""
    plane = frame.reformat(format="yuv420p").planes[0]
    return np.frombuffer(plane, np.uint8, count=plane.line_size * plane.height).reshape(plane.height, -1)[:, : plane.width]


def psnr(source: Path, copy: Path, skip_rows: int) -> float:
    """PSNR in dB of the copy's luma against the source's, over the copy's frames (the first ones
    of a longer source), rows ``skip_rows`` and below (the caption is not the source's)."""
    squared, count = 0.0, 0
    with av.open(str(source)) as a, av.open(str(copy)) as b:
        for fa, fb in zip(a.decode(video=0), b.decode(video=0)):
            ya, yb = luma(fa), luma(fb)
            h, w = min(ya.shape[0], yb.shape[0]), min(ya.shape[1], yb.shape[1])
            diff = ya[skip_rows:h, :w].astype(np.float32) - yb[skip_rows:h, :w]
            squared += float(np.square(diff).sum())
            count += diff.size
    return 10 * math.log10(255**2 / (squared / count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of timings (medians)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    clean = args.workdir / "minute_720p.mp4"  # the same file benchmarks/analyze_speed.py writes
    if not clean.exists():
        print("writing the 60 s 1280x720 video ...", flush=True)
        write_sample_video(clean, SampleSpec(duration_s=60.0, noise=5.0))
    clip, excerpt = args.workdir / "minute_720p_17mbit.mp4", args.workdir / "excerpt_720p_17mbit.mp4"
    for path, seconds in ((clip, None), (excerpt, EXCERPT_S)):
        if not path.exists():
            print(f"writing {path.name} ...", flush=True)
            camera_clip(clean, path, seconds=seconds)
    info = probe(clip)
    mbits = clip.stat().st_size * 8 / info.duration_s / 1e6
    print(f"video: {clip.name}, {info.width}x{info.height}, {info.fps:.0f} fps, {info.duration_s:.1f} s, {info.video_codec}+{info.audio_codec}, {mbits:.1f} Mbit/s")

    with TritonServer(args.repository, ports=TritonPorts.free()) as server, EmotionClient(server.grpc_url) as client:
        analyzer = Analyzer(client)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            timeline = analyzer.analyze(clip, out, render=False).timeline  # also the warm-up
            stages = {
                "decode every frame (naive)": lambda: naive_decode(clip),
                "timeline (analyze --no-video)": lambda: analyzer.analyze(clip, out, render=False),
                "annotated copy alone (render_video)": lambda: render_video(info, timeline, out / "copy.mp4"),
                "analyze with the copy": lambda: analyzer.analyze(clip, out),
            }
            figures = interleaved(stages, args.repeat)
            (decode, decode_cpu) = figures["decode every frame (naive)"]
            print(f"\n{'stage':<40}{'seconds':>9}{'x decode':>10}{'CPU s':>8}{'x decode':>10}   (median of {args.repeat})")
            for name, (seconds, cpu) in figures.items():
                print(f"{name:<40}{seconds:>9.2f}{seconds / decode:>10.2f}{cpu:>8.2f}{cpu / decode_cpu:>10.2f}")

            print(f"\nx264 settings, the copy of the first {EXCERPT_S:.0f} s (chosen: {X264_OPTIONS}); PSNR of luma below the caption")
            print(f"against the source, whose own noise caps it near {20 * math.log10(255 / NOISE):.1f} dB, and against the noise-free picture")
            print(f"{'preset':<11}{'crf':>4}{'seconds':>9}{'x decode':>10}{'CPU s':>8}{'x decode':>10}{'Mbit/s':>8}{'source dB':>11}{'picture dB':>12}")
            short = probe(excerpt)
            copies = {f"{o['preset']}-{o['crf']}": out / f"{o['preset']}-{o['crf']}.mp4" for o in SETTINGS}
            runs = {"decode": lambda: naive_decode(excerpt)} | {
                name: (lambda o=o, path=path: render_video(short, timeline, path, x264_options=o)) for o, (name, path) in zip(SETTINGS, copies.items())
            }
            times = interleaved(runs, args.repeat)
            short_decode, short_cpu = times["decode"]
            below = caption_patch("no face or voice", short.height, short.width).shape[0] + 2 * caption_margin(short.height, short.width)
            for options, (name, copy) in zip(SETTINGS, copies.items()):
                seconds, cpu = times[name]
                rate = copy.stat().st_size * 8 / short.duration_s / 1e6
                quality = f"{psnr(excerpt, copy, below):>11.2f}{psnr(clean, copy, below):>12.2f}"
                speed = f"{seconds:>9.2f}{seconds / short_decode:>10.2f}{cpu:>8.2f}{cpu / short_cpu:>10.2f}"
                print(f"{options['preset']:<11}{options['crf']:>4}{speed}{rate:>8.2f}{quality}", flush=True)


if __name__ == "__main__":
    main()
