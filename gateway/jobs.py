"""Background jobs: a worker claims an analysis's job, runs :class:`serving.Analyzer` on it, and
writes every stage, the timeline and the files back to the database.

The ``jobs`` table is the queue of record, so a job outlives any process:

- **claimed with a lease**: one ``UPDATE jobs ... WHERE <claimable> RETURNING id`` (on PostgreSQL
  over a ``SELECT ... FOR UPDATE SKIP LOCKED``) sets the worker's name and ``lease_until``; a
  second worker's update matches no row, so a job never runs twice at once;
- **kept alive**: a thread renews the lease every third of its length while the job runs, and
  every write of the job checks that the row is still this worker's (a job deleted, or taken
  over after a stall, stops at its next progress report and leaves nothing behind);
- **taken up again**: a job whose lease ran out (its worker died) is claimable again, up to
  ``max_attempts`` claims; after that the sweep fails it with the reason. A job whose models
  could not be reached waits ``retry_delay_s`` (doubling) and is tried again, as often.

The same :meth:`Runner.run` runs every job, whichever way it arrives: the embedded workers poll
the table (:meth:`Runner.work`); with ``REDIS_URL`` RQ calls :func:`deliver` with the job's id in
an ``emofuse worker`` process, which claims that row the same way. ``emofuse worker`` is
:func:`run_worker`::

    runner = Runner(engine, storage, triton_url="localhost:8001")
    runner.work(burst=True)                # every claimable job, then return

Settings from the environment (:meth:`JobSettings.from_env`): ``EMOFUSE_JOB_LEASE_S`` (60),
``EMOFUSE_JOB_ATTEMPTS`` (3), ``EMOFUSE_JOB_RETRY_S`` (15), ``EMOFUSE_JOB_POLL_S`` (0.25).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, delete, or_, select, update
from sqlalchemy.orm import Session

from preprocessing.errors import RecordingError
from preprocessing.trial import Trial
from serving import (
    Analyzer,
    EmotionClient,
    InputError,
    NoFaceFound,
    NothingToJudge,
    NoVoiceFound,
    OutputError,
    Progress,
    Timeline,
    TrialAnalyzer,
    TrialResult,
    UpstreamError,
)
from serving.trials import TRIAL_MODEL

from . import media
from .config import Config
from .db import make_engine
from .errors import ConfigError
from .metrics import JOB_STAGE_SECONDS, TRITON_SECONDS, count_failure
from .models import Analysis, AnalysisStatus, Job, JobState, Verdict, Window, utcnow
from .queue import JobQueue
from .retention import PURGE_EVERY_S, purge_expired
from .storage import Storage

__all__ = ["STAGES", "JobSettings", "Runner", "announce", "deliver", "delivering", "enqueue", "run_worker"]

log = logging.getLogger(__name__)

#: What each stage is called where people read it (the page, the API's ``stage_label``).
STAGES = {
    "queued": "Waiting for a worker",
    "retrying": "Waiting for the models to answer again",
    "decoding": "Reading the recording",
    "combining": "Putting the video and the sound together",
    # While windows flow, these overlap; the page names the one the job waited on most lately.
    "faces": "Finding the faces",
    "voice": "Listening to the voice",
    "eeg": "Reading the video, the sound and the EEG, and judging the trial",
    "inference": "Judging each window",
    "rendering": "Writing the annotated video",
    "saving": "Saving the results",
}

# Shares of the progress bar, from benchmarks/analyze_speed.py: the timeline takes about a fifth
# of an analysis that writes the annotated copy (H.264 encoding is the rest).
_TIMELINE_SHARE_WITH_COPY = 0.22
_TIMELINE_SHARE_ALONE = 0.95
_WRITE_EVERY_S = 0.5  # progress reaches the database at most twice a second
# The stages of the window loop: they take turns window by window, so a change among them is no
# news worth a write of its own; the next throttled write names the busiest one.
_WINDOW_STAGES = frozenset({"decoding", "faces", "voice", "inference"})
_TIDY_EVERY_S = 600.0  # how often a worker looks for leftovers of processes that died
STALE_AFTER_S = 12 * 3600  # an upload's part or a job's folder untouched this long belongs to a dead process


@dataclass(frozen=True)
class JobSettings:
    """How workers lease, retry and poll; defaults suit one analysis of up to 30 minutes.

    ``JobSettings(lease_s=5)`` in a test makes a dead worker's job claimable 5 s later.
    """

    lease_s: float = 60.0  # a dead worker's job waits this long; renewed every third of it while alive
    max_attempts: int = 3  # claims of one job: a recording that kills its worker twice more is given up
    retry_delay_s: float = 15.0  # first wait when Triton cannot answer; doubles each time
    # How often an idle embedded worker looks for work: an upload waits half of it on average. A look
    # is two indexed queries (the sweep's, the claim's), about 3 ms of CPU: idle, a worker uses about
    # 1 % of one core at this rate (0.3 % at 1 s; measured in the README's Gateway benchmarks).
    poll_s: float = 0.25

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobSettings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, name, kind in (("lease_s", "EMOFUSE_JOB_LEASE_S", float), ("max_attempts", "EMOFUSE_JOB_ATTEMPTS", int),
                                  ("retry_delay_s", "EMOFUSE_JOB_RETRY_S", float), ("poll_s", "EMOFUSE_JOB_POLL_S", float)):  # fmt: skip
            text = environ.get(name, "").strip()
            if not text:
                continue
            try:
                values[field] = kind(text)
            except ValueError:
                raise ConfigError(f"{name} is {text!r}; set it to a number, e.g. {getattr(cls, field)}.") from None
            if values[field] <= 0:
                raise ConfigError(f"{name} is {text!r}; it must be greater than 0.")
        return cls(**values)


def enqueue(session: Session, analysis: Analysis) -> Job:
    """Add a queued job for ``analysis`` to the session (the caller commits, then :func:`announce`)."""
    job = Job(user_id=analysis.user_id, state=JobState.QUEUED, attempts=0)
    analysis.jobs.append(job)
    return job


def announce(queue: JobQueue, jobs: list[Job]) -> None:
    """Tell the workers about committed jobs (RQ); a failure leaves them to the sweep."""
    for job in jobs:
        queue.deliver(job.id, job.attempts)


# BaseException: raised in the progress callback, they must pass through the serving library's
# ``except Exception`` around the annotated copy (a failed copy costs only the copy) and stop the job.


class _Lost(BaseException):
    """The job is no longer this worker's: deleted, or claimed by another after a stall."""


class _Interrupted(BaseException):
    """The worker was told to stop in the middle of a job."""


def _claimable(now: Any, max_attempts: int) -> Any:
    queued = and_(Job.state == JobState.QUEUED, or_(Job.available_at.is_(None), Job.available_at <= now))
    abandoned = and_(Job.state == JobState.RUNNING, Job.lease_until < now, Job.attempts < max_attempts)
    return or_(queued, abandoned)


class Runner:
    """Claims and runs jobs against one database, one storage root and one Triton.

    Parameters
    ----------
    engine : Engine
    storage : Storage
    triton_url : str
        Triton's gRPC ``host:port``; connected on the first job.
    queue : JobQueue | None
        Where the sweep announces jobs again (RQ); None: embedded, nothing to announce.
    settings : JobSettings
    """

    def __init__(self, engine: Engine, storage: Storage, triton_url: str, *, queue: JobQueue | None = None,
                 settings: JobSettings = JobSettings()) -> None:  # fmt: skip
        self.engine, self.storage, self.triton_url = engine, storage, triton_url
        self.queue = queue or JobQueue(None)
        self.settings = settings
        self.name = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"
        self._client: EmotionClient | None = None
        self._analyzer: Analyzer | None = None
        self._trials: TrialAnalyzer | None = None
        self._stopping = threading.Event()
        self._tidied = self._purged = -math.inf

    @classmethod
    def from_config(cls, config: Config, triton_url: str, settings: JobSettings | None = None) -> Runner:
        return cls(make_engine(config.database_url), Storage(config.storage_dir), triton_url, queue=JobQueue(config.redis_url),
                   settings=settings or JobSettings.from_env())  # fmt: skip

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = self._analyzer = self._trials = None

    def stop(self) -> None:
        """Ask :meth:`work` to return after the current job (or at once when idle)."""
        self._stopping.set()

    @property
    def analyzer(self) -> Analyzer:
        if self._analyzer is None:
            self._client = EmotionClient(self.triton_url, on_answer=_observe_triton)
            self._analyzer = Analyzer(self._client)
        return self._analyzer

    # Claiming

    def claim(self, job_id: int | None = None) -> int | None:
        """Lease the oldest claimable job (or job ``job_id`` if it is claimable); its id, or None."""
        now = utcnow()
        claimable = _claimable(now, self.settings.max_attempts)
        pick = select(Job.id).where(claimable).order_by(Job.created_at, Job.id).limit(1)
        if job_id is not None:
            pick = pick.where(Job.id == job_id)
        if self.engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)  # workers skip each other's rows instead of queueing on them
        claim = (
            update(Job).where(Job.id == pick.scalar_subquery(), claimable)
            .values(state=JobState.RUNNING, worker=self.name, lease_until=now + timedelta(seconds=self.settings.lease_s),
                    attempts=Job.attempts + 1, started_at=now, available_at=None)
            .returning(Job.id)
        )  # fmt: skip
        with self.engine.begin() as connection:
            return connection.execute(claim).scalar()

    def sweep(self) -> list[int]:
        """Fail the jobs whose worker died on each of their ``max_attempts`` claims; announce
        claimable jobs again on RQ where RQ holds no delivery for them. Returns the failed ids."""
        now = utcnow()
        with Session(self.engine) as session, session.begin():
            exhausted = session.scalars(select(Job).where(Job.state == JobState.RUNNING, Job.lease_until < now,
                                                          Job.attempts >= self.settings.max_attempts)).all()  # fmt: skip
            for job in exhausted:
                reason = (f"The analysis was interrupted {job.attempts} times (its worker stopped before finishing) "
                          "and was not tried again.")  # fmt: skip
                job.state, job.error, job.finished_at, job.lease_until = JobState.FAILED, reason, now, None
                _fail(job.analysis, "interrupted", reason, now)
            failed = [job.id for job in exhausted]
        if not self.queue.embedded:
            self._announce_again(now)
        if time.monotonic() - self._tidied > _TIDY_EVERY_S:
            self.tidy()
        if time.monotonic() - self._purged > PURGE_EVERY_S:
            self._purge(now)
        return failed

    def _purge(self, now: Any) -> None:
        """Delete the uploads past their owner's retention period (:mod:`gateway.retention`)."""
        self._purged = time.monotonic()
        try:
            with Session(self.engine) as session:
                purge_expired(session, self.storage, now)
        except Exception:  # the next sweep tries again; the jobs must go on meanwhile
            log.exception("the uploads past their retention period could not be deleted")

    def tidy(self, *, older_than_s: float = STALE_AFTER_S) -> list[Path]:
        """Remove what processes that died left in users' directories: upload parts, checks and
        unpacked trial folders of a gateway worker killed mid-request, and work folders of jobs no
        longer running. Only the gateway's temporary names, untouched for ``older_than_s``; returns
        what was removed."""
        self._tidied = time.monotonic()
        with Session(self.engine) as session:
            running = set(session.scalars(select(Job.id).where(Job.state == JobState.RUNNING)))
        cutoff, removed = time.time() - older_than_s, []
        for leftover, job_id in self.storage.temporaries():
            if job_id in running:
                continue
            with contextlib.suppress(OSError):  # gone meanwhile: its request or job ended
                found = leftover.lstat()
                if found.st_mtime < cutoff:
                    shutil.rmtree(leftover) if stat.S_ISDIR(found.st_mode) else leftover.unlink()
                    removed.append(leftover)
        return removed

    def _announce_again(self, now: Any) -> None:
        with Session(self.engine) as session:
            waiting = session.execute(select(Job.id, Job.attempts).where(_claimable(now, self.settings.max_attempts))).all()
        for job_id, attempts in waiting:
            with contextlib.suppress(Exception):  # Redis down: the next sweep tries again
                if not self.queue.pending(job_id, attempts):
                    self.queue.deliver(job_id, attempts)

    # Running

    def run_once(self) -> bool:
        """Sweep, then claim and run one job; False when none was claimable."""
        self.sweep()
        job_id = self.claim()
        if job_id is None:
            return False
        self.run(job_id)
        return True

    def work(self, *, burst: bool = False) -> None:
        """Run jobs until :meth:`stop` (or, with ``burst``, until none is claimable)."""
        while not self._stopping.is_set():
            if not self.run_once():
                if burst:
                    return
                self._stopping.wait(self.settings.poll_s)

    def deliver(self, job_id: int) -> bool:
        """Run job ``job_id`` if it can be claimed now (an RQ delivery); False if it was not."""
        if self.claim(job_id) is None:
            log.info("job %s was delivered but is not claimable (done, running elsewhere, or deleted)", job_id)
            return False
        self.run(job_id)
        return True

    def run(self, job_id: int) -> None:
        """Run the claimed job ``job_id`` to its end: done, failed, waiting for a retry, or lost."""
        started = time.perf_counter()
        with Session(self.engine, expire_on_commit=False) as session:
            job = session.get(Job, job_id)
            if job is None or job.worker != self.name:
                return
            analysis, recording = job.analysis, job.analysis.recording
            session.execute(delete(Window).where(Window.analysis_id == analysis.id))  # a retry starts afresh
            session.execute(delete(Verdict).where(Verdict.analysis_id == analysis.id))
            analysis.status, analysis.stage, analysis.progress = AnalysisStatus.RUNNING, "decoding", 0.0
            analysis.started_at, analysis.finished_at, analysis.error, analysis.error_code = utcnow(), None, None, None
            analysis.files, analysis.failures = {}, {}
            session.commit()
            user_id, analysis_id, mode, render = analysis.user_id, analysis.id, analysis.mode, analysis.render
            stored, sound = recording.stored_name, recording.sound_stored_name
            eeg, eeg_settings = recording.eeg_stored_name, dict(recording.eeg_settings or {})
            attempts = job.attempts
        work = self._work_dir(user_id, job_id)
        report = _Reporter(self, job_id, analysis_id, user_id, render)
        path = self.storage.path(user_id, stored)
        try:
            with _Lease(self, job_id) as lease:
                report.lease = lease
                if eeg is not None:
                    report.stage("eeg", 0.05)
                    report.finish_trial(self._judge_trial(path, sound and self.storage.path(user_id, sound),
                                                          self.storage.path(user_id, eeg), eeg_settings))  # fmt: skip
                    return
                if sound is not None:
                    report.stage("combining", 0.0)
                    path = media.combine(path, self.storage.path(user_id, sound), work / "combined.mov")
                result = self.analyzer.analyze(path, work / "out", mode=mode, render=render, progress=report)
                report.finish(result)
                _observe_stages(result.seconds, time.perf_counter() - started)
        except _Lost:
            log.warning("job %s is no longer this worker's (deleted or taken over); its work is dropped", job_id)
        except (InputError, RecordingError) as err:
            report.fail(_input_code(err), _sentence(str(err), path.name))
        except UpstreamError as err:
            report.retry_or_fail(str(err), attempts)
        except OutputError as err:  # the server's disk, not the recording: logged for the operator
            log.error("job %s: the results could not be written: %s", job_id, err)
            report.fail("storage_error", "The results could not be saved on the server; try again later.")
        except (KeyboardInterrupt, SystemExit, _Interrupted):
            report.release()
            raise
        except Exception:
            log.exception("job %s failed unexpectedly", job_id)
            report.fail("internal_error", "Something went wrong on our side while analysing; it has been logged.")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _judge_trial(self, video: Path, sound: Path | None, eeg: Path, settings: dict[str, Any]) -> TrialResult:
        """One trial upload through ``emotion_av_eeg`` (:class:`serving.TrialAnalyzer`)."""
        if self._trials is None:
            self._trials = TrialAnalyzer(self.analyzer.client, detector=self.analyzer.detector)
        channels = tuple(settings["channels"]) if settings.get("channels") else None
        trial = Trial(subject=0, trial="upload", label="", eeg=eeg, video=video, audio=sound, eeg_rate=settings.get("rate") or 0.0,
                      mat_key=settings.get("mat_key"), channels=channels)  # fmt: skip
        return self._trials.analyze(trial)

    def _work_dir(self, user_id: int, job_id: int) -> Path:
        """A fresh folder for the job's files in the user's directory; any left by an earlier
        attempt whose worker died is removed first."""
        directory = self.storage.user_dir(user_id)
        for stale in directory.glob(f".job-{job_id}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=f".job-{job_id}-", dir=directory))

    @contextlib.contextmanager
    def owned(self, job_id: int) -> Iterator[Session]:
        """A transaction that commits only while the job is still this worker's; else :class:`_Lost`."""
        with Session(self.engine) as session, session.begin():
            mine = session.execute(update(Job).where(Job.id == job_id, Job.worker == self.name, Job.state == JobState.RUNNING)
                                   .values(lease_until=utcnow() + timedelta(seconds=self.settings.lease_s)))  # fmt: skip
            if mine.rowcount != 1:
                raise _Lost(job_id)
            yield session


class _Lease:
    """Renews a job's lease in a thread while it runs; ``lost`` is set once the row is not ours."""

    def __init__(self, runner: Runner, job_id: int) -> None:
        self.runner, self.job_id = runner, job_id
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _renew(self) -> None:
        every = self.runner.settings.lease_s / 3
        while not self._done.wait(every):
            try:
                with self.runner.owned(self.job_id):
                    pass
            except _Lost:
                self.lost.set()
                return
            except Exception:  # the database away for a moment: the next renewal may pass, the lease still holds
                log.warning("the lease of job %s could not be renewed", self.job_id, exc_info=True)


class _Reporter:
    """The progress callback of one job: stage and percentage to the analysis row, the timeline
    as soon as it exists, and the job's end."""

    def __init__(self, runner: Runner, job_id: int, analysis_id: int, user_id: int, render: bool) -> None:
        self.runner, self.job_id, self.analysis_id, self.user_id = runner, job_id, analysis_id, user_id
        self.share = _TIMELINE_SHARE_WITH_COPY if render else _TIMELINE_SHARE_ALONE
        self.lease: _Lease | None = None
        self.timeline_stored = False
        self._written = ("decoding", -math.inf)  # the stage last written, and when (monotonic)
        self._latest = "decoding"  # the stage last reported, written or held back by the throttle
        self._seconds: Mapping[str, float] = {}  # of each stage, at the last write

    def _busiest(self, seconds: Mapping[str, float]) -> str:
        """The stage that took most of the time since the last write: decoding, faces, voice or
        inference. They overlap window by window, so the page names the one the job waits on."""
        grown = {stage: t - self._seconds.get(stage, 0.0) for stage, t in seconds.items()}
        return max(grown, key=grown.get) if grown else "inference"

    def __call__(self, progress: Progress) -> None:
        if self.lease is not None and self.lease.lost.is_set():
            raise _Lost(self.job_id)
        if self.runner._stopping.is_set() and progress.stage == "windows":
            raise _Interrupted
        if progress.stage == "windows":
            if self.stage(self._busiest(progress.seconds), 0.02 + (self.share - 0.02) * progress.done / max(progress.total, 1)):
                self._seconds = dict(progress.seconds)
        elif progress.stage == "timeline" and progress.timeline is not None:
            self.store_timeline(progress.timeline)
        elif progress.stage == "video":
            self.stage("rendering", self.share + (0.98 - self.share) * progress.done / max(progress.total, 1e-9))

    def stage(self, stage: str, fraction: float) -> bool:
        """Write the stage and the fraction done: at once when the job enters another phase
        (rendering, saving...), else at most every :data:`_WRITE_EVERY_S`. True if written."""
        self._latest = stage
        last, written = self._written
        same_phase = stage == last or {stage, last} <= _WINDOW_STAGES
        if same_phase and time.monotonic() - written < _WRITE_EVERY_S:
            return False
        with self.runner.owned(self.job_id) as session:
            session.execute(update(Analysis).where(Analysis.id == self.analysis_id).values(stage=stage, progress=round(fraction, 4)))
        self._written = (stage, time.monotonic())
        return True

    def store_timeline(self, timeline: Timeline) -> None:
        """The windows and the verdict, at once (the page shows them while the copy is written),
        with the stage the throttle may have held back since its last write."""
        with self.runner.owned(self.job_id) as session:
            analysis = session.get(Analysis, self.analysis_id)
            _store_timeline(session, analysis, timeline)
            analysis.stage, analysis.progress = self._latest, self.share
        self._written = (self._latest, time.monotonic())
        self.timeline_stored = True

    def finish(self, result: Any) -> None:
        """Move the output files into the user's storage and mark the job done, in one transaction."""
        self.stage("saving", 0.99)
        moved: dict[str, str] = {}
        storage = self.runner.storage
        try:
            for kind in ("video", "image"):
                if kind in result.files:
                    name = storage.new_name(result.files[kind].suffix.lower())
                    os.replace(result.files[kind], storage.path(self.user_id, name))
                    moved[kind] = name
            with self.runner.owned(self.job_id) as session:
                analysis = session.get(Analysis, self.analysis_id)
                if not self.timeline_stored:  # photos report no stages: their timeline comes with the result
                    _store_timeline(session, analysis, result.timeline)
                now = utcnow()
                analysis.files, analysis.failures = moved, dict(result.failures)
                analysis.status, analysis.stage, analysis.progress, analysis.finished_at = AnalysisStatus.DONE, None, 1.0, now
                job = session.get(Job, self.job_id)
                job.state, job.finished_at, job.lease_until = JobState.DONE, now, None
        except BaseException:
            for name in moved.values():  # deleted meanwhile, or the database failed: no file left without its record
                storage.remove(self.user_id, name)
            raise

    def finish_trial(self, result: TrialResult) -> None:
        """A trial's windows (6 AV, then 4 EEG, each marked by its model in ``weights``) and its
        verdicts (the fusion CNN's and WAVER's), withheld where the models are untrained."""
        with self.runner.owned(self.job_id) as session:
            analysis = session.get(Analysis, self.analysis_id)
            session.execute(delete(Window).where(Window.analysis_id == analysis.id))
            session.execute(delete(Verdict).where(Verdict.analysis_id == analysis.id))
            labels = list(result.labels)
            analysis.model, analysis.trained, analysis.labels = TRIAL_MODEL, result.trained, labels
            index = 0
            for modality, spans, probs, used in (("av_trial", result.av_spans, result.av_windows, result.used[0]),
                                                 ("eeg_trial", result.eeg_spans, result.eeg_windows, result.used[1])):  # fmt: skip
                for i, (start, end) in enumerate(spans):
                    row = None if probs is None else {k: round(float(p), 4) for k, p in zip(labels, probs[i])}
                    status = "ok" if row else "untrained" if used or modality == "eeg_trial" else "no_face_or_voice"
                    session.add(Window(user_id=self.user_id, analysis_id=analysis.id, index=index, start_s=round(start, 3),
                                       end_s=round(end, 3), status=status, label=max(row, key=row.get) if row else None,
                                       probabilities=row, face_frames=0, frames=0, voice=None,
                                       weights={modality: 1.0 if used else 0.0}))  # fmt: skip
                    index += 1
            for source, probs in (("fusion", result.probabilities), ("waver", result.waver)):
                if probs is not None:
                    row = {k: round(float(p), 4) for k, p in zip(labels, probs)}
                    best = max(row, key=row.get)
                    session.add(Verdict(user_id=self.user_id, analysis_id=analysis.id, source=source, label=best, confidence=row[best],
                                        probabilities=row, windows=index))  # fmt: skip
            now = utcnow()
            analysis.files, analysis.failures = {}, {}
            analysis.status, analysis.stage, analysis.progress, analysis.finished_at = AnalysisStatus.DONE, None, 1.0, now
            job = session.get(Job, self.job_id)
            job.state, job.finished_at, job.lease_until = JobState.DONE, now, None

    def fail(self, code: str, message: str) -> None:
        count_failure(code, source="job")
        with contextlib.suppress(_Lost), self.runner.owned(self.job_id) as session:
            now = utcnow()
            job = session.get(Job, self.job_id)
            job.state, job.error, job.finished_at, job.lease_until = JobState.FAILED, message, now, None
            _fail(session.get(Analysis, self.analysis_id), code, message, now)

    def retry_or_fail(self, reason: str, attempts: int) -> None:
        """Triton could not answer: wait and try again, unless this was the last attempt."""
        if attempts >= self.runner.settings.max_attempts:
            self.fail("models_unavailable", f"The models could not be reached ({reason.rstrip('.')}); try again later.")
            return
        delay = self.runner.settings.retry_delay_s * 2 ** (attempts - 1)
        log.warning("job %s: the models could not be reached (%s); trying again in %.0f s", self.job_id, reason, delay)
        with contextlib.suppress(_Lost), self.runner.owned(self.job_id) as session:
            attempt = self._requeue(session, available_at=utcnow() + timedelta(seconds=delay), stage="retrying")
        if attempt is not None:
            self.runner.queue.deliver(self.job_id, attempt)  # claimable only once the wait is over; the sweep sends it again then

    def release(self) -> None:
        """Give the job back at once (the worker is stopping): the claim does not count as an attempt."""
        attempt = None
        with contextlib.suppress(Exception, _Lost), self.runner.owned(self.job_id) as session:
            attempt = self._requeue(session, available_at=None, stage="queued", refund=True)
        if attempt is not None:
            self.runner.queue.deliver(self.job_id, attempt)

    def _requeue(self, session: Session, *, available_at: Any, stage: str, refund: bool = False) -> int:
        job = session.get(Job, self.job_id)
        job.state, job.worker, job.lease_until, job.available_at = JobState.QUEUED, None, None, available_at
        if refund:
            job.attempts -= 1
        session.execute(delete(Window).where(Window.analysis_id == self.analysis_id))
        session.execute(delete(Verdict).where(Verdict.analysis_id == self.analysis_id))
        analysis = session.get(Analysis, self.analysis_id)
        analysis.status, analysis.stage, analysis.progress = AnalysisStatus.QUEUED, stage, 0.0
        return job.attempts


def _observe_triton(model: str, seconds: float) -> None:
    TRITON_SECONDS.labels(model=model).observe(seconds)


def _observe_stages(seconds: Mapping[str, float], wall_s: float) -> None:
    """Each stage's seconds of one finished analysis into ``JOB_STAGE_SECONDS``, and the rest
    of the job's wall time as "gateway": its database writes, moving its files, and serving's
    own bookkeeping between the stages."""
    for stage, t in seconds.items():
        JOB_STAGE_SECONDS.labels(stage=stage).observe(t)
    JOB_STAGE_SECONDS.labels(stage="gateway").observe(max(wall_s - sum(seconds.values()), 0.0))


def _fail(analysis: Analysis, code: str, message: str, now: Any) -> None:
    analysis.status, analysis.error_code, analysis.error, analysis.finished_at = AnalysisStatus.FAILED, code, message, now
    analysis.stage = None


def _store_timeline(session: Session, analysis: Analysis, timeline: Timeline) -> None:
    """Window and Verdict rows for ``timeline``, replacing any of an earlier attempt."""
    session.execute(delete(Window).where(Window.analysis_id == analysis.id))
    session.execute(delete(Verdict).where(Verdict.analysis_id == analysis.id))
    labels = list(timeline.labels)
    analysis.model, analysis.trained, analysis.labels, analysis.mode = timeline.model, timeline.trained, labels, timeline.mode
    for w in timeline.windows:
        probabilities = None if w.probabilities is None else {k: round(float(p), 4) for k, p in zip(labels, w.probabilities)}
        session.add(Window(user_id=analysis.user_id, analysis_id=analysis.id, index=w.index, start_s=round(w.start_s, 3),
                           end_s=round(w.end_s, 3), status=w.status, label=timeline.label(w), probabilities=probabilities,
                           face_frames=w.face_frames, frames=w.frames, voice=w.voice, weights=dict(w.weights)))  # fmt: skip
    verdict = timeline.verdict()
    if verdict is not None:
        probabilities = {k: round(float(p), 4) for k, p in zip(labels, verdict.probabilities)}
        session.add(Verdict(user_id=analysis.user_id, analysis_id=analysis.id, source="windows", label=verdict.label,
                            confidence=probabilities[verdict.label], probabilities=probabilities, windows=verdict.windows))  # fmt: skip


def _input_code(err: Exception) -> str:
    if isinstance(err, NoFaceFound):
        return "no_face"
    if isinstance(err, NoVoiceFound):
        return "no_voice"
    if isinstance(err, NothingToJudge):
        return "nothing_to_judge"
    return "unprocessable_recording"


def _sentence(message: str, stored: str) -> str:
    """serving's message without the generated file name it starts with, as a sentence."""
    message = message.removeprefix(f"{stored}: ").strip()
    return message[:1].upper() + message[1:] if message else "The recording could not be analysed."


# RQ: the function a delivery calls, and the worker process


_delivery_runner: Runner | None = None


@contextlib.contextmanager
def delivering(runner: Runner) -> Iterator[Runner]:
    """Make ``runner`` the one that RQ's deliveries in this process use (an RQ worker's setup)."""
    global _delivery_runner
    previous, _delivery_runner = _delivery_runner, runner
    try:
        yield runner
    finally:
        _delivery_runner = previous


def deliver(job_id: int) -> bool:
    """RQ's entry point: run job ``job_id`` with this process's runner, if it can be claimed."""
    if _delivery_runner is None:
        raise RuntimeError("No job runner in this process: start it with `emofuse worker`, which sets one up.")
    return _delivery_runner.deliver(job_id)


def run_worker(triton_url: str, *, config: Config | None = None, settings: JobSettings | None = None, burst: bool = False) -> int:
    """``emofuse worker``: run jobs until stopped (``burst``: until none is waiting).

    Polls the database; with ``REDIS_URL`` set, takes RQ deliveries instead and sweeps the table
    in a thread (abandoned jobs, deliveries lost while Redis was away).
    """
    config = config or Config.from_env()
    runner = Runner.from_config(config, triton_url, settings)
    print(f"emofuse worker {runner.name}: jobs from {'RQ at ' + config.redis_url if config.redis_url else 'the database'}, "
          f"models at {triton_url}", flush=True)  # fmt: skip
    try:
        if config.redis_url is None:
            runner.work(burst=burst)
        else:
            _work_rq(runner, burst=burst)
    finally:
        runner.close()
    return 0


def _work_rq(runner: Runner, *, burst: bool) -> None:
    from rq import SimpleWorker

    queue = runner.queue.rq_queue()
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(runner.settings.lease_s / 2):
            with contextlib.suppress(Exception):
                runner.sweep()

    sweeper = threading.Thread(target=sweep, name="sweeper", daemon=True)
    sweeper.start()
    runner.sweep()  # what waited while no worker ran
    try:
        with delivering(runner):
            SimpleWorker([queue], connection=queue.connection).work(burst=burst)  # no fork: the models' client stays warm
    finally:
        stop.set()
