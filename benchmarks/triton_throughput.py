"""Triton's throughput and latency per ensemble, and its overhead over ONNX Runtime in-process.

Starts Triton on the model repository (building it first if it holds no ONNX files) and asks
Triton which ensembles it serves and what they take. Each ensemble whose inputs a client mode
makes (``serving.analysis.MODES``: real preprocessing of a sample video, ``Analyzer.inputs``) gets
requests of 1 and 8 windows at 1, 2, 4 and 8 requests in flight (async gRPC): windows per second,
(``emotion_av_eeg``: requests of 1 and 4 trials, ``serving.trials.TrialAnalyzer.inputs`` of the
video with generated EEG; its figures count trials, of 6 AV and 4 EEG windows each)
latency percentiles per request, and the CPU time Triton (server and backend processes) and this
client spent per window. The same batches also go through the ensemble's steps in this process:
each step's ``model.onnx`` in ONNX Runtime with the thread setting of its config, wired as the
ensemble config wires them; the ratio Triton / in-process is Triton's overhead. Each figure is
the best of a few runs, taken in turns. Finally: is the issue's aim, ``emotion_av`` at 25
windows/s or more, met, and what bounds it.

    python benchmarks/triton_throughput.py [--repository model_repository] [--seconds 2] [--rounds 3] [--triton HOST:PORT]

With ``--triton`` an already running server is measured (it must serve ``--repository``); its
CPU time is then not known.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import np_to_triton_dtype

from serving.analysis import FACE_CROP, MODES, Analyzer
from serving.trials import TRIAL_MODEL, TrialAnalyzer
from serving.triton_client import EmotionClient
from emofuse.triton_server import TritonPorts, TritonServer
from preprocessing.faces import FaceDetector
from preprocessing.recording import probe
from preprocessing.synthesis import SampleSpec, write_sample_video
from preprocessing.trial import Trial
from preprocessing.windows import Window, read_windows

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 8)  # windows per request: one at a time, and what `emofuse analyze` sends (BATCH_WINDOWS)
TRIAL_BATCHES = (1, 4)  # trials per request: one, and emotion_av_eeg's max_batch_size
CONCURRENCY = (1, 2, 4, 8)  # requests in flight
AIM = ("emotion_av", 25.0)  # the aim: windows/s on this 2-core machine (90 s of video per second)

Arrays = dict[str, np.ndarray]
T = TypeVar("T")


@dataclass(frozen=True)
class Load:
    """One measurement: how many windows went through, how fast, and at what CPU cost."""

    windows_per_s: float
    p50_ms: float
    p95_ms: float
    server_cpu_ms: float | None  # per window: Triton's server and backend processes
    client_cpu_ms: float  # per window: this process

    @classmethod
    def of(cls, latencies: list[float], batch: int, seconds: float, server_cpu_s: float | None, client_cpu_s: float) -> Load:
        windows = len(latencies) * batch
        cut = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else latencies * 19
        return cls(
            windows / seconds,
            1e3 * statistics.median(latencies),
            1e3 * cut[18],
            None if server_cpu_s is None else 1e3 * server_cpu_s / windows,
            1e3 * client_cpu_s / windows,
        )


def descendants_cpu_s() -> float:
    """CPU seconds (user + system) used so far by the live descendants of this process: the Triton
    server it started and the backend stubs that server started."""
    parents, ticks = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
            except OSError:  # exited meanwhile
                continue
            parents[int(entry.name)] = int(fields[1])
            ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    family, grown = {os.getpid()}, True
    while grown:
        before = len(family)
        family |= {pid for pid, parent in parents.items() if parent in family}
        grown = len(family) > before
    return sum(ticks[pid] for pid in family - {os.getpid()}) / os.sysconf("SC_CLK_TCK")


class InProcessEnsemble:
    """An ensemble run in this process: each step's ``model.onnx`` in ONNX Runtime, with the
    ``intra_op_thread_count`` of its config (0: ONNX Runtime's choice, as in Triton), fed as the
    ensemble's ``input_map``/``output_map`` say, steps in the order their inputs allow.

    Raises LookupError for an ensemble with a step that has no ONNX file taking the model's own
    tensors (a Python-only model): it has no in-process twin.
    """

    def __init__(self, repository: Path, ensemble: dict, configs: dict[str, dict], versions: dict[str, str]) -> None:
        self.steps = []  # (model name, session, input_map, output_map), in run order
        pending = list(ensemble["ensemble_scheduling"]["step"])
        known = {t["name"] for t in ensemble["input"]}
        while pending:
            step = next((s for s in pending if set(s["input_map"].values()) <= known), None)
            if step is None:
                raise LookupError(f"the steps of {ensemble['name']} wait on tensors no step makes")
            pending.remove(step)
            name = step["model_name"]
            self.steps.append(
                (name, self._session(repository / name / versions[name], configs[name]), step["input_map"], step["output_map"])
            )
            known |= set(step["output_map"].values())
        self.reset()

    def reset(self) -> None:
        """Start counting windows and the time of each step afresh."""
        self.windows, self.step_seconds = 0, dict.fromkeys((s[0] for s in self.steps), 0.0)

    def ms_per_window(self) -> dict[str, float]:
        """Wall milliseconds of each step per window, since :meth:`reset`."""
        return {step: 1e3 * t / max(self.windows, 1) for step, t in self.step_seconds.items()}

    @staticmethod
    def _session(folder: Path, config: dict) -> ort.InferenceSession:
        onnx = folder / "model.onnx"
        if not onnx.is_file():
            raise LookupError(f"step {config['name']} has no model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(config.get("parameters", {}).get("intra_op_thread_count", {}).get("string_value", "0"))
        session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
        takes, wants = {i.name for i in session.get_inputs()}, {t["name"] for t in config["input"]}
        if takes != wants:
            raise LookupError(f"the ONNX graph of step {config['name']} takes {sorted(takes)}, the model {sorted(wants)}")
        return session

    def __call__(self, inputs: Arrays) -> Arrays:
        tensors = dict(inputs)
        self.windows += len(next(iter(inputs.values())))
        for name, session, input_map, output_map in self.steps:
            start = time.perf_counter()
            outputs = session.run(list(output_map), {key: tensors[value] for key, value in input_map.items()})
            tensors.update(zip(output_map.values(), outputs))
            self.step_seconds[name] += time.perf_counter() - start
        return tensors


async def triton_load(url: str, model: str, inputs: Arrays, outputs: list[str], concurrency: int, seconds: float) -> tuple[Load, Arrays]:
    """``concurrency`` requests kept in flight for ``seconds``; the load and one answer."""
    client = aioclient.InferenceServerClient(url)
    request = []
    for name, array in inputs.items():
        tensor = aioclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        request.append(tensor)
    wanted = [aioclient.InferRequestedOutput(name) for name in outputs]

    async def one() -> float:
        start = time.perf_counter()
        await client.infer(model, request, outputs=wanted)
        return time.perf_counter() - start

    try:
        answer = await client.infer(model, request, outputs=wanted)
        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm-up: every batcher queue, every thread
        latencies: list[float] = []
        server, client_cpu, start = descendants_cpu_s(), time.process_time(), time.perf_counter()
        end = start + seconds

        async def keep_sending() -> None:
            while time.perf_counter() < end:
                latencies.append(await one())

        await asyncio.gather(*(keep_sending() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        server_cpu = descendants_cpu_s() - server
        batch = len(next(iter(inputs.values())))
        load = Load.of(latencies, batch, elapsed, server_cpu if server_cpu > 0 else None, time.process_time() - client_cpu)
        return load, {name: answer.as_numpy(name) for name in outputs}
    finally:
        await client.close()


def in_process_load(pipeline: InProcessEnsemble, inputs: Arrays, seconds: float) -> tuple[Load, dict[str, float]]:
    """The pipeline called back to back for ``seconds``; the load and each step's milliseconds per window."""
    pipeline(inputs)  # warm-up
    pipeline.reset()
    latencies, cpu, start = [], time.process_time(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        pipeline(inputs)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - start
    load = Load.of(latencies, len(next(iter(inputs.values()))), elapsed, None, time.process_time() - cpu)
    return load, pipeline.ms_per_window()


def sample_windows(workdir: Path) -> list[Window]:
    """The windows of a 30 s 1280x720 sample video (a face throughout, speech), preprocessed as
    `emofuse analyze` does; the video is written once."""
    video = workdir / "throughput_sample.mp4"
    if not video.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        write_sample_video(video, SampleSpec(duration_s=30.0))
    windows = list(read_windows(probe(video), crop=FACE_CROP, detector=FaceDetector()))
    assert len(windows) >= max(BATCHES), f"{video} gives {len(windows)} windows, fewer than a batch"
    return windows


def sample_trial(workdir: Path) -> Trial:
    """A 21.6 s trial: the sample video's start and 14 channels of generated EEG at 256 Hz (a .mat)."""
    import scipy.io

    from training.synthetic_eeg import SyntheticEEGSpec, synthetic_trial_eeg

    video, eeg = workdir / "throughput_trial.mp4", workdir / "throughput_trial.mat"
    if not video.exists():
        write_sample_video(video, SampleSpec(duration_s=21.6))
    spec = SyntheticEEGSpec(duration_s=21.6)
    scipy.io.savemat(eeg, {"eeg": synthetic_trial_eeg(spec, 1, 2).data})
    return Trial(1, "t1", "happy", eeg, video, None, spec.rate, "eeg", tuple(spec.channels))


def ensure_built(repository: Path) -> None:
    if not any(repository.glob("*/*/model.onnx")):
        print(f"{repository} holds no ONNX files: building it ...", flush=True)
        subprocess.run([sys.executable, "-m", "emofuse.cli", "repo", "build", "--out", str(repository)], check=True, cwd=ROOT)


def served(url: str, repository: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Config (as JSON) and version of every model of ``repository`` that Triton has ready.

    The models are those of the folder, not of Triton's repository index: a Triton started by
    emofuse answers that (model-control) API only to its own watchdog.
    """
    with grpcclient.InferenceServerClient(url) as client:
        names = sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))
        metadata = {name: client.get_model_metadata(name, as_json=True) for name in names if client.is_model_ready(name)}
        versions = {name: m["versions"][-1] for name, m in metadata.items()}
        return {name: client.get_model_config(name, as_json=True)["config"] for name in versions}, versions


def shapes(arrays: Arrays) -> str:
    return ", ".join(f"{name} {a.dtype} {tuple(a.shape)}" for name, a in arrays.items())


@dataclass(frozen=True)
class Result:
    """An ensemble's best Triton load, with the in-process load and step times at the same batch size."""

    triton: Load
    batch: int
    in_process: Load | None
    steps_ms: dict[str, float]  # in-process wall milliseconds per window of each step


def _fastest(runs: list[tuple[Load, T]]) -> tuple[Load, T]:
    return max(runs, key=lambda run: run[0].windows_per_s)


def measure_ensemble(
    url: str, name: str, batches: dict[int, Arrays], outputs: list[str], pipeline: InProcessEnsemble | None, seconds: float, rounds: int
) -> Result:
    """Print the table of one ensemble: Triton at every batch size and concurrency, and in-process.

    Each figure is the best of ``rounds`` runs, in-process and Triton taking turns, so that a burst
    of other work on a shared machine spoils one run rather than the comparison.
    """
    print(
        f"{'batch':>6}{'in flight':>10}{'windows/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'Triton CPU':>12}{'client CPU':>12}{'x in-process':>14}"
    )
    best: Result | None = None
    for b, inputs in batches.items():
        local_runs, triton_runs = [], {c: [] for c in CONCURRENCY}
        for _ in range(rounds):
            if pipeline is not None:
                local_runs.append(in_process_load(pipeline, inputs, seconds))
            for concurrency in CONCURRENCY:
                triton_runs[concurrency].append(asyncio.run(triton_load(url, name, inputs, outputs, concurrency, seconds)))
        local, steps = _fastest(local_runs) if local_runs else (None, {})
        for concurrency, runs in triton_runs.items():
            load, answer = _fastest(runs)
            if best is None or load.windows_per_s > best.triton.windows_per_s:
                best = Result(load, b, local, steps)
            server = f"{load.server_cpu_ms:9.2f} ms" if load.server_cpu_ms is not None else f"{'?':>12}"
            ratio = f"{load.windows_per_s / local.windows_per_s:14.2f}" if local else f"{'n/a':>14}"
            print(
                f"{b:>6}{concurrency:>10}{load.windows_per_s:>11.1f}{load.p50_ms:>9.2f}{load.p95_ms:>9.2f}{server}{load.client_cpu_ms:9.2f} ms{ratio}"
            )
        if local is not None:
            print(
                f"{b:>6}{'in-proc':>10}{local.windows_per_s:>11.1f}{local.p50_ms:>9.2f}{local.p95_ms:>9.2f}{'':>12}{local.client_cpu_ms:9.2f} ms"
            )
            print(f"{'':>8}in-process ms per window: " + ", ".join(f"{step} {ms:.2f}" for step, ms in steps.items()))
            reference = pipeline(inputs)
            gap = max(float(np.abs(answer[o].astype(np.float64) - reference[o]).max()) for o in outputs)
            print(f"{'':>8}largest |Triton - in-process| over the outputs: {gap:.2e}")
    return best


def measure(url: str, repository: Path, windows: list[Window], trial: Trial, seconds: float, rounds: int) -> dict[str, Result]:
    """Measure every ensemble Triton serves whose inputs a client mode (or the trial analysis) makes."""
    configs, versions = served(url, repository)
    results = {}
    with EmotionClient(url) as client:
        analyzer = Analyzer(client)
        for name, config in sorted(configs.items()):
            if config.get("platform") != "ensemble":
                continue
            mode = next((m for m in MODES.values() if m.model == name), None)
            if name == TRIAL_MODEL:
                one = TrialAnalyzer(client).inputs(trial)[0]
                batches = {b: {k: np.repeat(v, b, axis=0) for k, v in one.items()} for b in TRIAL_BATCHES}
            elif mode is None:
                print(f"\n{name}: skipped, no client mode makes its inputs ({', '.join(t['name'] for t in config['input'])})")
                continue
            else:
                batches = {b: analyzer.inputs(mode, windows[:b]) for b in BATCHES}
            outputs = [t["name"] for t in config["output"]]
            print(f"\n{name}: {shapes(batches[max(batches)])} -> {', '.join(outputs)}")
            try:
                pipeline = InProcessEnsemble(repository, config, configs, versions)
            except LookupError as err:
                pipeline = None
                print(f"  in-process: n/a ({err})")
            results[name] = measure_ensemble(url, name, batches, outputs, pipeline, seconds, rounds)
    return results


def bound(result: Result) -> str:
    """What limits the best load: CPU time per window against the cores, and the slowest step."""
    load, cores = result.triton, os.cpu_count() or 1
    lines = []
    if load.server_cpu_ms is not None:
        cpu = load.server_cpu_ms + load.client_cpu_ms
        lines.append(
            f"CPU per window: Triton's processes {load.server_cpu_ms:.2f} ms + this client {load.client_cpu_ms:.2f} ms; "
            f"{cores} cores to themselves would give at most {1e3 * cores / cpu:.0f} windows/s"
        )
    if result.steps_ms:
        step, ms = max(result.steps_ms.items(), key=lambda item: item[1])
        share = ms / sum(result.steps_ms.values())
        lines.append(
            f"slowest step in ONNX Runtime: {step}, {ms:.2f} ms per window at batch {result.batch} ({100 * share:.0f} % of the steps), "
            f"so at most {1e3 / ms:.0f} windows/s while it runs one batch at a time"
        )
    return "\n       ".join(lines) or "not known here (a server this script did not start, steps without ONNX files)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--seconds", type=float, default=2.0, help="per run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each measurement, the best counts (default: %(default)s)")
    parser.add_argument("--triton", help="host:port of a running Triton serving --repository (default: start one)")
    args = parser.parse_args()
    print(f"load average (1, 5, 15 min) at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
    ensure_built(args.repository)
    windows, trial = sample_windows(args.workdir), sample_trial(args.workdir)
    if args.triton:
        results = measure(args.triton, args.repository, windows, trial, args.seconds, args.rounds)
    else:
        with TritonServer(args.repository, ports=TritonPorts.free()) as server:
            results = measure(server.grpc_url, args.repository, windows, trial, args.seconds, args.rounds)
    model, aim = AIM
    if model in results:
        best = results[model]
        verdict = "met" if best.triton.windows_per_s >= aim else "NOT met"
        print(
            f"\naim: {model} at {aim:.0f} windows/s or more: {verdict}, {best.triton.windows_per_s:.1f} windows/s at best (batch {best.batch})"
        )
        print(f"bound: {bound(best)}")
    print(f"load average (1, 5, 15 min) at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
