"""Analyse every recording under a folder with one Triton server: ``emofuse batch``.

    emofuse batch recordings/ --triton triton:8001 --out results.jsonl [--workers 2] [--in-flight 4]

Recordings are found by their file names (:data:`MEDIA_SUFFIXES`); only their content decides
whether they can be analysed. Worker processes (:class:`WorkerPool`) analyse several at once,
each with its own :class:`~serving.analysis.Analyzer` and gRPC client keeping several requests in
flight, so decoding and face detection run beside Triton's inference. The parent process writes
one JSON line per recording as soon as it is done (:class:`ResultsFile`), so a rerun skips what
was done; a recording that cannot be analysed gets a line with ``error`` (retried on the next
run) and the batch goes on. A Triton that cannot answer stops the run (exit status 3) with every
finished line kept.

A line::

    {"recording": "day1/a.mp4", "size": 1830244, "mtime_ns": 1764230000000000000,
     "model": "emotion_av", "mode": "av", "weights": "real", "labels": [...],
     "verdict": {"label": "happy", ...}, "windows": [...],             # as `emofuse analyze --json`
     "models_used": {"emotion_av": {"weights": "real", "untrained": false}, ...},
     "media": {"kind": "video", "duration_s": 8.0, ...}, "files": {"timeline": ..., "audio": ...},
     "failures": {}, "seconds": 2.41}

``failures`` names what could not be written beside a complete timeline, e.g. ``{"video": "the
annotated copy could not be written (...)"}``: the line is a result, the copy is not retried.

or ``{"recording": "day1/b.mp4", "size": 0, "mtime_ns": ..., "error": "b.mp4: the file is empty.", "seconds": 0.01}``.
The last line of a recording is the one that counts.
"""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol, Self, TextIO

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from preprocessing.trial import read_trial_manifest

from serving.errors import InputError, ModelError, OutputError, TritonUnavailable, UpstreamError
from serving.analysis import MODES, Analyzer
from serving.trials import TRIAL_MODEL, TrialAnalyzer
from serving.triton_client import DEFAULT_IN_FLIGHT, EmotionClient

__all__ = [
    "DEFAULT_WORKERS",
    "KINDS",
    "MEDIA_SUFFIXES",
    "BatchSummary",
    "Job",
    "ResultsFile",
    "TrialJobs",
    "WorkerPool",
    "WorkerSettings",
    "find_jobs",
    "run_batch",
]

log = logging.getLogger(__name__)

#: File names that make a file a candidate recording: videos, sound files, still images.
MEDIA_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"}  # video
    | {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma"}  # sound
    | {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}  # still images
)
#: Worker processes: one per core keeps decoding busy while Triton (on its own cores, or the
#: same ones) answers the requests in flight.
DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class Job:
    """One unit of a batch, named in the results by its path relative to INPUT_DIR.

    Attributes
    ----------
    kind : str
        Name of the :class:`JobKind` that found it and runs it.
    path : Path
    key : str
        Path relative to INPUT_DIR, '/'-separated.
    size : int
        Bytes.
    mtime_ns : int
        Last modification, in nanoseconds since the epoch; with ``size``, what tells a rerun
        that the recording is the one already analysed.
    """

    kind: str
    path: Path
    key: str
    size: int
    mtime_ns: int

    @property
    def identity(self) -> dict[str, Any]:
        return {"recording": self.key, "size": self.size, "mtime_ns": self.mtime_ns}


class JobKind(Protocol):
    """A kind of job: how it is recognised under INPUT_DIR, and how a worker runs it."""

    name: str

    def jobs(self, path: Path, key: str) -> list[Job] | None:
        """The jobs ``path`` (a file or a folder, ``key`` relative to INPUT_DIR) holds, judged by
        name and type only; None if it is none of this kind's."""

    def run(self, job: Job, worker: Worker) -> dict[str, Any]:
        """Analyse the job; the result line without the identity fields.

        Raises InputError for a job that cannot be analysed, UpstreamError when Triton cannot answer.
        """


class RecordingJobs:
    """A video, a sound file or a still image, analysed as `emofuse analyze` does."""

    name = "recording"

    def jobs(self, path: Path, key: str) -> list[Job] | None:
        if path.suffix.lower() not in MEDIA_SUFFIXES or not path.is_file():
            return None
        stat = path.stat()
        return [Job(self.name, path, key, stat.st_size, stat.st_mtime_ns)]

    def run(self, job: Job, worker: Worker) -> dict[str, Any]:
        settings = worker.settings
        analysis = worker.analyzer.analyze(job.path, settings.files / job.key, mode=settings.mode, render=settings.render)
        result = analysis.to_dict()
        media = result.pop("recording")
        del result["files"]  # file names only; the line gives paths that lead to them
        mode = MODES[result["mode"]]
        weights = {name: worker.client.model(name).weights for name in (mode.model, *mode.sources)}
        return {
            **result,
            "models_used": {name: {"weights": w, "untrained": w != "real"} for name, w in weights.items()},
            "media": media,
            "files": {kind: os.path.relpath(path, settings.results.parent) for kind, path in analysis.files.items()},
        }


class TrialJobs:
    """A folder of trials with EEG, described by its ``manifest.csv`` (:mod:`preprocessing.trial`):
    one job per trial, named ``FOLDER/SUBJECT/TRIAL``, judged by the ``emotion_av_eeg`` ensemble."""

    name = "trial"
    manifest = "manifest.csv"

    def jobs(self, path: Path, key: str) -> list[Job] | None:
        manifest = path / self.manifest
        if not path.is_dir() or not manifest.is_file():
            return None
        try:
            trials = read_trial_manifest(manifest)
        except ValueError:  # one job, whose run reports what is wrong with the manifest
            stat = manifest.stat()
            return [Job(self.name, manifest, f"{key}/{self.manifest}", stat.st_size, stat.st_mtime_ns)]
        jobs = []
        for trial in trials:
            stats = [f.stat() for f in (manifest, trial.eeg, trial.video, trial.audio) if f is not None]
            size, mtime = sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats)  # any file changed: judged again
            jobs.append(Job(self.name, manifest, f"{key}/{trial.subject}/{trial.trial}", size, mtime))
        return jobs

    def run(self, job: Job, worker: Worker) -> dict[str, Any]:
        try:
            trials = read_trial_manifest(job.path)
        except ValueError as err:
            raise InputError(str(err)) from err
        *_, subject, name = job.key.split("/")
        trial = next((t for t in trials if str(t.subject) == subject and t.trial == name), None)
        if trial is None:
            raise InputError(f"{job.path}: subject {subject} has no trial {name!r} any more.")
        if worker.trials is None:
            worker.trials = TrialAnalyzer(worker.client, detector=worker.analyzer.detector)
        result = worker.trials.analyze(trial).to_dict()
        weights = worker.trials.model.weights
        return {**result, "models_used": {TRIAL_MODEL: {"weights": weights, "untrained": weights != "real"}}}


#: The kinds of job, asked in this order about every file and folder; a folder a kind claims is
#: not searched further.
KINDS: dict[str, JobKind] = {kind.name: kind for kind in (TrialJobs(), RecordingJobs())}


def find_jobs(root: Path, *, exclude: Iterable[Path] = ()) -> list[Job]:
    """Every job under ``root``, sorted by key.

    Hidden files and folders, the folders in ``exclude`` (the batch's own output) and folders
    reached through symbolic links are left out.
    """
    root, excluded = root.resolve(), {p.resolve() for p in exclude}
    jobs = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        search = []
        for name in sorted(dirs) + sorted(files):
            path = here / name
            if name.startswith(".") or path in excluded:
                continue
            key = path.relative_to(root).as_posix()
            found = next((j for kind in KINDS.values() if (j := kind.jobs(path, key)) is not None), None)
            if found is not None:
                jobs.extend(found)
            elif name in dirs:
                search.append(name)
        dirs[:] = search
    return sorted(jobs, key=lambda j: j.key)


class ResultsFile:
    """The batch's JSON-lines file, opened for appending by one batch at a time.

    Each line is written with a single ``write`` and forced to disk (fsync) before the next one,
    so a crash can only leave the last line partial; such a line is cut off when the file is
    opened again. Lines of a recording that changed, or that failed, stay in the file: the last
    line of a recording is the one that counts.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise InputError(f"{path}: another `emofuse batch` is writing to it; wait for it or choose another --out.") from None
        self.last = self._read()

    def _read(self) -> dict[str, tuple[Any, Any, bool]]:
        """Size, modification time and success of each recording's last line; a partial last line is cut off."""
        last, complete = {}, 0
        with self.path.open("rb") as f:
            for number, text in enumerate(f, start=1):
                if not text.endswith(b"\n"):
                    break
                complete += len(text)
                try:
                    line = json.loads(text)
                    last[line["recording"]] = _identity(line)
                except (ValueError, TypeError, KeyError):
                    log.warning("%s:%d: not a result line; ignored", self.path, number)
        if (size := os.fstat(self._fd).st_size) > complete:
            log.warning("%s: ignoring a partial last line (%d bytes) left by an interrupted run", self.path, size - complete)
            os.ftruncate(self._fd, complete)
        return last

    def done(self, job: Job) -> bool:
        """Whether the recording was analysed as it is now (same path, size and modification time)."""
        return self.last.get(job.key) == (job.size, job.mtime_ns, True)

    def append(self, line: dict[str, Any]) -> None:
        data = (json.dumps(line) + "\n").encode()
        if os.write(self._fd, data) != len(data):
            raise OSError(f"{self.path}: short write (disk full?); the partial line is cut off on the next run.")
        os.fsync(self._fd)
        self.last[line["recording"]] = _identity(line)

    def close(self) -> None:
        os.close(self._fd)  # releases the lock


def _identity(line: dict[str, Any]) -> tuple[Any, Any, bool]:
    return line.get("size"), line.get("mtime_ns"), "error" not in line


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker process is started with.

    Attributes
    ----------
    url : str
        ``host:port`` of Triton's gRPC endpoint.
    in_flight : int
        Requests each worker keeps outstanding.
    mode : str | None
        A key of :data:`~serving.analysis.MODES`; None: the richest mode each recording allows.
    render : bool
        Write annotated copies.
    files : Path
        Folder of the files each analysis writes, one sub-folder per job key.
    results : Path
        The results file; ``files`` entries of a line are relative to its folder.
    """

    url: str
    in_flight: int
    mode: str | None
    render: bool
    files: Path
    results: Path


class Worker:
    """What one worker process holds: a gRPC client and an analyzer of its own."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.client = EmotionClient(settings.url, in_flight=settings.in_flight)
        self.analyzer = Analyzer(self.client)
        self.trials: TrialAnalyzer | None = None  # made at the first trial: it asks Triton for emotion_av_eeg

    def run(self, job: Job) -> dict[str, Any] | UpstreamError:
        """The job's result line, or the upstream error that must stop the batch."""
        start = time.perf_counter()
        try:
            line = KINDS[job.kind].run(job, self)
        except (InputError, OutputError) as err:
            line = {"error": str(err)}
        except ModelError as err:  # the job's own fault only while Triton is still ready: it refuses requests while it stops
            if not _triton_ready(self.settings.url):
                return TritonUnavailable(f"Triton at {self.settings.url} stopped serving: {err}")
            line = {"error": str(err)}
        except UpstreamError as err:
            return err
        except Exception as err:  # an unforeseen fault in one file must not cost the others
            log.exception("%s: unexpected failure", job.key)
            line = {"error": f"{job.path.name}: unexpected failure ({type(err).__name__}: {err})."}
        return {**job.identity, **line, "seconds": round(time.perf_counter() - start, 3)}


def _work(conn: Connection, settings: WorkerSettings) -> None:
    """A worker process: say it is ready (or why not), then run each job sent until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent decides
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # unwinds: the analysis removes its staging folder
    try:
        worker = Worker(settings)
    except Exception as err:  # noqa: BLE001 - reported to the parent, which stops the batch
        conn.send(f"{type(err).__name__}: {err}")
        return
    conn.send(None)
    with worker.client:
        while (job := conn.recv()) is not None:
            conn.send(worker.run(job))


_STOP_TIMEOUT_S = 5.0  # a worker that has not stopped this long after SIGTERM is killed
# How a dead process shows on its end of a duplex pipe (a socketpair): EOF, or, when it died with
# a job still unread in its buffer, ECONNRESET.
_PEER_GONE = (EOFError, ConnectionResetError)


@dataclass
class _Process:
    process: multiprocessing.process.BaseProcess
    conn: Connection


class WorkerPool:
    """Worker processes that each analyse one job at a time.

    The pool knows which job each process holds, so a process that dies (a decoder crashing on a
    corrupt file, the kernel's OOM killer) costs only that job: it gets an error line and a fresh
    process takes the dead one's place. Processes are spawned, not forked: the parent's gRPC
    threads would not survive a fork.
    """

    def __init__(self, size: int, settings: WorkerSettings) -> None:
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[_Process] = []
        try:
            self._idle = [self._start() for _ in range(size)]
            for worker in self._idle:
                self._ready(worker)
        except BaseException:
            self.close()
            raise

    def _start(self) -> _Process:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_work, args=(child, self.settings), name="emofuse-batch-worker", daemon=True)
        process.start()
        child.close()
        worker = _Process(process, parent)
        self._processes.append(worker)
        log.info("worker %d started", process.pid)
        return worker

    def _ready(self, worker: _Process) -> None:
        try:
            failure = worker.conn.recv()
        except _PEER_GONE:
            worker.process.join()
            failure = f"it exited with code {worker.process.exitcode}"
        if failure is not None:
            raise RuntimeError(f"A batch worker could not start: {failure}")

    def _replace(self, dead: _Process) -> _Process:
        dead.process.join()
        dead.conn.close()
        self._processes.remove(dead)
        worker = self._start()
        self._ready(worker)
        return worker

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, dict[str, Any] | UpstreamError]]:
        """Each job with its result line (or upstream error), in the order they finish."""
        pending, busy = deque(jobs), {}
        while pending or busy:
            while pending and self._idle:
                worker = self._idle.pop()
                try:
                    worker.conn.send(pending[0])
                except OSError:  # it died while idle
                    self._idle.append(self._replace(worker))
                    continue
                busy[worker.process.sentinel] = (worker, pending.popleft())
            ready = wait([w.conn for w, _ in busy.values()] + list(busy))
            for sentinel, (worker, job) in list(busy.items()):
                if worker.conn not in ready and sentinel not in ready:
                    continue
                del busy[sentinel]
                try:
                    result = worker.conn.recv()
                except _PEER_GONE:  # it died before answering
                    worker.process.join()
                    result = {**job.identity, "error": f"{job.path.name}: {_death(worker.process.exitcode)}"}
                    worker = self._replace(worker)
                self._idle.append(worker)
                yield job, result

    def close(self) -> None:
        """Stop every worker at once; the jobs they were running are left for the next run."""
        for worker in self._processes:
            worker.process.terminate()
        for worker in self._processes:
            worker.process.join(_STOP_TIMEOUT_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._processes.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _death(code: int | None) -> str:
    how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited with code {code}"
    return f"the worker process analysing it {how} (the file may crash the decoder, or memory ran out)."


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


class ProgressReport:
    """Progress on a stream (standard error): recordings done of total, windows per second, ETA.

    On a terminal a bar is redrawn in place and only failures are printed above it; elsewhere
    (logs, pipes) each finished recording gets a plain line.
    """

    _WIDTH = 24  # characters of the bar

    def __init__(self, jobs: list[Job], stream: TextIO) -> None:
        self.total, self.total_bytes = len(jobs), sum(j.size for j in jobs)
        self.done = self.done_bytes = self.failed = self.windows = 0
        self.stream, self.tty = stream, stream.isatty()
        self.start = time.monotonic()

    def finished(self, job: Job, line: dict[str, Any]) -> None:
        self.done += 1
        self.done_bytes += job.size
        self.failed += "error" in line
        self.windows += len(line.get("windows", ()))
        elapsed = time.monotonic() - self.start
        rate = f"{self.windows / elapsed:.1f} windows/s" if elapsed > 0 else ""
        eta = _clock(elapsed * (self.total_bytes - self.done_bytes) / self.done_bytes) if self.done_bytes else "?"
        status = f"{self.done}/{self.total} recordings, {rate}, ETA {eta}"
        message = f"{job.key}: {_outcome(line)}"
        if self.tty:
            filled = round(self._WIDTH * self.done / max(self.total, 1))
            above = f"\r\033[K{message}\n" if "error" in line else ""
            self.stream.write(f"{above}\r\033[K[{'#' * filled}{'.' * (self._WIDTH - filled)}] {status}")
        else:
            self.stream.write(f"[{status}] {message}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def summary(self, found: int) -> BatchSummary:
        return BatchSummary(
            found=found,
            skipped=found - self.total,
            analysed=self.done - self.failed,
            failed=self.failed,
            left=self.total - self.done,
            windows=self.windows,
            seconds=time.monotonic() - self.start,
        )


def _outcome(line: dict[str, Any]) -> str:
    if "error" in line:
        return f"error: {line['error']}"
    verdict = "untrained model" if line["weights"] != "real" else (line["verdict"] or {}).get("label", "no verdict")
    outcome = f"{verdict}, {len(line['windows'])} windows in {line['seconds']:.1f} s"
    for kind, reason in line.get("failures", {}).items():  # the timeline is kept; say what was not written
        outcome += f"; {_WRITTEN.get(kind, kind)} failed: {reason}"
    return outcome


_WRITTEN = {"video": "annotated copy", "image": "annotated image"}  # the kinds of Analysis.failures, in words


@dataclass(frozen=True)
class BatchSummary:
    """What one run of a batch did, in jobs (recordings)."""

    found: int  # under INPUT_DIR
    skipped: int  # done by an earlier run
    analysed: int  # result lines written by this run
    failed: int  # error lines written by this run
    left: int  # not run: the batch was stopped
    windows: int  # analysed by this run
    seconds: float

    def __str__(self) -> str:
        rate = f" ({self.windows / self.seconds:.1f} windows/s)" if self.seconds > 0 and self.windows else ""
        done = f"{self.analysed} analysed, {self.failed} failed, {self.skipped} skipped"
        return f"{done}; {self.windows} windows in {self.seconds:.1f} s{rate}"


def run_batch(
    input_dir: Path,
    url: str,
    out: Path,
    *,
    workers: int | None = None,
    in_flight: int | None = None,
    mode: str | None = None,
    render: bool = True,
    files: Path | None = None,
    stream: TextIO | None = None,
) -> BatchSummary:
    """Analyse every recording under ``input_dir`` not yet done in ``out``; see the module docstring.

    Parameters
    ----------
    workers : int | None
        Worker processes; :data:`DEFAULT_WORKERS` if None.
    in_flight : int | None
        Requests each worker keeps outstanding; ``triton_client.DEFAULT_IN_FLIGHT`` if None.
    files : Path | None
        Where each analysis writes its files; ``OUT.files`` beside the results if None.
    stream : TextIO | None
        Where progress goes; standard error if None.

    Raises
    ------
    InputError
        ``input_dir`` is not a folder, or another batch is writing to ``out``.
    UpstreamError
        Triton cannot answer; the lines written so far stay.
    """
    if not input_dir.is_dir():
        raise InputError(f"{input_dir} is not a folder; give the folder that holds the recordings.")
    workers = DEFAULT_WORKERS if workers is None else workers
    in_flight = DEFAULT_IN_FLIGHT if in_flight is None else in_flight
    if workers < 1 or in_flight < 1:
        raise InputError(f"--workers and --in-flight must be at least 1, got {workers} and {in_flight}.")
    stream = stream or sys.stderr
    files = files or out.with_name(out.name.removesuffix(".jsonl") + ".files")
    _check_triton(url, mode)
    results = ResultsFile(out)
    try:
        jobs = find_jobs(input_dir, exclude=[files, out])
        todo = [job for job in jobs if not results.done(job)]
        print(
            f"{len(jobs)} recordings in {input_dir}: {len(jobs) - len(todo)} done before, {len(todo)} to analyse", file=stream, flush=True
        )
        settings = WorkerSettings(url, in_flight, mode, render, files.resolve(), out.resolve())
        progress = ProgressReport(todo, stream)
        try:
            if todo:
                with WorkerPool(min(workers, len(todo)), settings) as pool:
                    for job, line in pool.run(todo):
                        if isinstance(line, UpstreamError):
                            raise line
                        results.append(line)
                        progress.finished(job, line)
        finally:
            progress.close()
            summary = progress.summary(len(jobs))
            print(f"{summary}; results in {out}", file=stream, flush=True)
            if summary.left:
                print(f"stopped with {summary.left} left: run the same command again to go on", file=stream, flush=True)
    finally:
        results.close()
    return summary


def _triton_ready(url: str) -> bool:
    """Whether Triton answers that it and all its models are ready."""
    with grpcclient.InferenceServerClient(url) as client:
        try:
            return client.is_server_ready(client_timeout=10)
        except InferenceServerException:
            return False


def _check_triton(url: str, mode: str | None) -> None:
    """Fail before any work if Triton is not ready, or does not serve the mode asked for."""
    if not _triton_ready(url):
        raise TritonUnavailable(f"Triton at {url} is not reachable or not ready; start it, or name another with --triton.")
    if mode is not None:
        with EmotionClient(url, timeout_s=10) as client:
            client.model(MODES[mode].model)
