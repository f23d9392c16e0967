"""What deciding "is someone speaking?" in Triton costs: the voice_activity step (Silero VAD) per window.

Starts Triton on a copy of the model repository with one more ensemble beside ``emotion_av``:
``emotion_av_without_vad``, the same steps less ``voice_activity``, its late fusion fed the chunk
probabilities by the client (all "speech"), i.e. the cost of ``emotion_av`` before the VAD moved
into Triton. On the windows of the throughput benchmark's 30 s sample video it prints, best of
``--rounds`` runs of ``--seconds`` taken in turns:

- the client's resampling of a window to 16 kHz (``preprocessing.voice.voice_audio``);
- ``voice_activity`` in ONNX Runtime in this process, one thread as in its config;
- ``voice_activity`` alone, ``emotion_av`` and ``emotion_av_without_vad`` through Triton at 1 and
  8 windows per request, 1 and 4 requests in flight: windows per second and median latency.

    python benchmarks/voice_activity.py [--repository model_repository] [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from _timing import median_seconds
from google.protobuf import text_format
from triton_throughput import ROOT, ensure_built, sample_windows, triton_load
from tritonclient.grpc import model_config_pb2

from emofuse.triton_server import TritonPorts, TritonServer
from preprocessing.voice import voice_audio
from serving.analysis import MODES, Analyzer
from serving.triton_client import EmotionClient

BATCHES = (1, 8)
CONCURRENCY = (1, 4)
BASELINE = "emotion_av_without_vad"


def _without_vad(repository: Path) -> model_config_pb2.ModelConfig:
    """emotion_av less its voice_activity step: the client sends VOICE_PROBS instead of AUDIO_16K."""
    config = text_format.Parse((repository / "emotion_av" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    vad = text_format.Parse((repository / "voice_activity" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config.name = BASELINE
    steps = [s for s in config.ensemble_scheduling.step if s.model_name != "voice_activity"]
    del config.ensemble_scheduling.step[:]
    config.ensemble_scheduling.step.extend(steps)
    inputs = [t for t in config.input if t.name != "AUDIO_16K"]
    outputs = [t for t in config.output if t.name not in ("VOICE_PRESENT", "VOICED_FRACTION")]
    del config.input[:], config.output[:]
    config.input.extend(inputs)
    (probs,) = (t for t in vad.output if t.name == "VOICE_PROBS")
    config.input.add(name=probs.name, data_type=probs.data_type, dims=probs.dims)
    config.output.extend(outputs)
    return config


def _copy_with_baseline(repository: Path, into: Path) -> Path:
    root = into / "model_repository"
    root.mkdir()
    for model in repository.iterdir():
        if (model / "config.pbtxt").is_file():
            (root / model.name).symlink_to(model.resolve(), target_is_directory=True)
    (root / BASELINE).mkdir()
    (root / BASELINE / "1").mkdir()
    (root / BASELINE / "config.pbtxt").write_text(text_format.MessageToString(_without_vad(repository)))
    shutil.copy(repository / "emotion_av" / "labels.txt", root / BASELINE / "labels.txt")
    return root


def _best(url: str, model: str, inputs: dict, outputs: list[str], concurrency: int, seconds: float) -> tuple[float, float]:
    load, _ = asyncio.run(triton_load(url, model, inputs, outputs, concurrency, seconds))
    return load.windows_per_s, load.p50_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average (1, 5, 15 min) at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
    ensure_built(args.repository)
    windows = sample_windows(args.workdir)
    audio = np.stack([w.audio for w in windows[:8]])

    print("\nclient: resampling to 16 kHz (voice_audio), ms per window")
    for b in BATCHES:
        print(f"  batch {b}: {1e3 * median_seconds(lambda: voice_audio(audio[:b], 22_050), 20) / b:.2f}")

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as in the config (intra_op_thread_count)
    session = ort.InferenceSession(str(args.repository / "voice_activity" / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    print("\nvoice_activity in ONNX Runtime, this process, 1 thread: ms per window")
    for b in BATCHES:
        feed = {"AUDIO_16K": voice_audio(audio[:b], 22_050)}
        print(f"  batch {b}: {1e3 * median_seconds(lambda: session.run(None, feed), 10) / b:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        root = _copy_with_baseline(args.repository, Path(tmp))
        with TritonServer(root, ports=TritonPorts.free()) as server, EmotionClient(server.grpc_url) as client:
            analyzer, mode = Analyzer(client), MODES["av"]
            runs = {}
            for b in BATCHES:
                av = analyzer.inputs(mode, windows[:b])
                baseline = {k: v for k, v in av.items() if k != "AUDIO_16K"} | {"VOICE_PROBS": np.ones((b, 113), np.float32)}
                cases = {
                    "voice_activity": ({"AUDIO_16K": av["AUDIO_16K"]}, ["VOICE_PRESENT", "VOICED_FRACTION", "VOICE_PROBS"]),
                    "emotion_av": (av, mode.outputs),
                    BASELINE: (baseline, ["EMOTION_PROBS", "FACES_USED", "MODEL_WEIGHTS"]),
                }
                for concurrency in CONCURRENCY:
                    for _ in range(args.rounds):  # in turns, so that a burst of other work spoils one run, not the comparison
                        for name, (inputs, outputs) in cases.items():
                            got = _best(server.grpc_url, name, inputs, outputs, concurrency, args.seconds)
                            best = runs.get((name, b, concurrency))
                            runs[(name, b, concurrency)] = got if best is None or got[0] > best[0] else best
                        time.sleep(0.1)
    print(f"\nTriton, best of {args.rounds} runs of {args.seconds:g} s: windows/s (p50 ms per request)")
    print(f"{'model':>24}" + "".join(f"{f'{b} x {c}':>20}" for b in BATCHES for c in CONCURRENCY))
    for name in ("voice_activity", "emotion_av", BASELINE):
        print(f"{name:>24}" + "".join(f"{runs[(name, b, c)][0]:>11.1f} ({runs[(name, b, c)][1]:5.1f})" for b in BATCHES for c in CONCURRENCY))
    ratios = [runs[("emotion_av", b, c)][0] / runs[(BASELINE, b, c)][0] for b in BATCHES for c in CONCURRENCY]
    print(f"{'emotion_av / without':>24}" + "".join(f"{r:>20.2f}" for r in ratios))
    print(f"load average (1, 5, 15 min) at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
