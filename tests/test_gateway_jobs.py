"""Jobs: claimed with a lease so they never run twice at once, taken up again when their worker
dies, retried while Triton cannot answer, delivered by RQ through Redis, and every stage and the
timeline written as the analysis goes.

The tests that do not need the models run twice: on SQLite with the embedded (polling) workers,
and on a real PostgreSQL with a real Redis and RQ, both started on the loopback (skipped, saying
why, where their binaries are absent). The analyses run on the real Triton of tests/conftest.py.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from gateway import create_app
from gateway.config import Config
from gateway.db import engine_of
from gateway.jobs import _Lost, delivering
from gateway.models import Analysis, AnalysisStatus, Job, JobState, User, utcnow
from gateway.testing import PostgresServer
from gateway.testing_flow import (
    RedisServer,
    api_user,
    owned_counts,
    runner_for,
    signed_in,
    stored_files,
    token_for,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite-embedded", "postgresql-rq"])
def backend(request: pytest.FixtureRequest) -> dict[str, str | None]:
    """The database and the queue: SQLite and polling workers, or PostgreSQL and RQ on Redis."""
    if request.param == "sqlite-embedded":
        return {"database_url": None, "redis_url": None}
    server = request.getfixturevalue("postgres")
    redis_server = request.getfixturevalue("redis_server")
    from redis import Redis

    Redis.from_url(redis_server.url).flushdb()  # each test starts with an empty queue
    return {"database_url": server.create_database(f"jobs_{uuid.uuid4().hex[:12]}"), "redis_url": redis_server.url}


def _app(tmp_path: Path, backend: dict[str, str | None] | None = None) -> Flask:
    config = Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path / "data")})
    backend = backend or {}
    settings = {key: value for key, value in backend.items() if value is not None}
    return create_app(dataclasses.replace(config, **settings))


@pytest.fixture
def app(tmp_path: Path, backend: dict[str, str | None]) -> Flask:
    return _app(tmp_path, backend)


def _upload(app: Flask, headers: dict[str, str], video: Path, **form: str) -> int:
    response = app.test_client().post("/api/v1/analyses", headers=headers, content_type="multipart/form-data",
                                      data={"recording": (io.BytesIO(video.read_bytes()), video.name), "consent": "true", **form})  # fmt: skip
    assert response.status_code == 201, response.json
    return response.json["id"]


def _job(app: Flask, analysis_id: int) -> tuple[Job, Analysis]:
    with Session(engine_of(app), expire_on_commit=False) as session:
        analysis = session.get(Analysis, analysis_id)
        return analysis.jobs[0], analysis


def _rq_worker(app: Flask) -> Any:
    from rq import SimpleWorker

    from gateway.uploads import queue

    rq_queue = queue(app).rq_queue()
    return SimpleWorker([rq_queue], connection=rq_queue.connection)


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Leases: never twice at once


def test_of_workers_claiming_at_the_same_moment_each_job_goes_to_one(app: Flask, backend: dict, short_video: Path) -> None:
    _user, headers = api_user(app, "claims@example.org")
    ids = {_upload(app, headers, short_video) for _ in range(3)}
    runners = [runner_for(app, "127.0.0.1:1") for _ in range(6)]
    start = threading.Barrier(len(runners))
    claimed: list[int | None] = [None] * len(runners)

    def claim(i: int) -> None:
        start.wait()
        claimed[i] = runners[i].claim()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(runners))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [job_id for job_id in claimed if job_id is not None]
    assert len(won) == len(set(won)) == 3  # three jobs, three winners, nobody twice
    jobs = {job_id: _job_by_id(app, job_id) for job_id in won}
    assert {job.worker for job in jobs.values()} <= {runner.name for runner in runners}
    assert all(job.state == JobState.RUNNING and job.attempts == 1 for job in jobs.values())
    assert runners[0].claim() is None  # nothing left to claim while their leases hold
    assert {job.analysis_id for job in jobs.values()} == ids


def _job_by_id(app: Flask, job_id: int) -> Job:
    with Session(engine_of(app), expire_on_commit=False) as session:
        return session.get(Job, job_id)


def test_a_job_whose_worker_stopped_answering_is_claimed_again_and_the_first_worker_is_shut_out(
    app: Flask, backend: dict, short_video: Path
) -> None:  # fmt: skip
    _user, headers = api_user(app, "lease@example.org")
    analysis_id = _upload(app, headers, short_video)
    stalled, fresh = runner_for(app, "127.0.0.1:1", lease_s=0.3), runner_for(app, "127.0.0.1:1", lease_s=30)
    job_id = stalled.claim()
    assert job_id is not None and fresh.claim() is None  # leased
    time.sleep(0.5)
    assert fresh.claim() == job_id  # the lease ran out: taken up again
    job, _analysis = _job(app, analysis_id)
    assert (job.worker, job.attempts) == (fresh.name, 2)
    with pytest.raises(_Lost), stalled.owned(job_id):
        pass  # the stalled worker's next write finds the job is no longer its own


def test_a_job_abandoned_on_every_attempt_is_failed_with_its_reason(app: Flask, backend: dict, short_video: Path) -> None:
    user_id, headers = api_user(app, "abandoned@example.org")
    analysis_id = _upload(app, headers, short_video)
    for _ in range(2):
        assert runner_for(app, "127.0.0.1:1", lease_s=0.2, max_attempts=2).claim() is not None
        time.sleep(0.3)  # the worker died: no renewal
    sweeper = runner_for(app, "127.0.0.1:1", max_attempts=2)
    assert sweeper.claim() is None  # two attempts used: not claimable a third time
    assert len(sweeper.sweep()) == 1
    job, analysis = _job(app, analysis_id)
    reason = "The analysis was interrupted 2 times (its worker stopped before finishing) and was not tried again."
    assert (job.state, job.error) == (JobState.FAILED, reason)
    assert (analysis.status, analysis.error_code, analysis.error) == (AnalysisStatus.FAILED, "interrupted", reason)
    status = app.test_client().get(f"/api/v1/analyses/{analysis_id}", headers=headers).json
    assert status["status"] == "failed" and status["error"] == {"code": "interrupted", "message": reason}


def test_when_triton_cannot_answer_the_job_waits_and_is_tried_again_then_fails(app: Flask, backend: dict, short_video: Path,
                                                                              closed_port: int) -> None:  # fmt: skip
    user_id, headers = api_user(app, "upstream@example.org")
    analysis_id = _upload(app, headers, short_video)
    runner = runner_for(app, f"127.0.0.1:{closed_port}", max_attempts=2, retry_delay_s=0.3)
    assert runner.run_once()
    job, analysis = _job(app, analysis_id)
    assert (job.state, analysis.status, analysis.stage) == (JobState.QUEUED, AnalysisStatus.QUEUED, "retrying")
    assert job.available_at is not None and runner.claim() is None  # not before its wait is over
    time.sleep(0.4)
    assert runner.run_once()
    job, analysis = _job(app, analysis_id)
    assert (job.state, job.attempts, analysis.status, analysis.error_code) == (JobState.FAILED, 2, AnalysisStatus.FAILED,
                                                                               "models_unavailable")  # fmt: skip
    assert analysis.error.startswith("The models could not be reached (") and analysis.error.endswith("; try again later.")
    timeline = app.test_client().get(f"/api/v1/analyses/{analysis_id}/timeline", headers=headers)
    assert timeline.status_code == 503 and timeline.json["error"]["code"] == "models_unavailable"
    runner.close()
    assert [name for name in stored_files(app, user_id) if name.startswith(".job-")] == []


def test_the_sweep_removes_what_dead_processes_left_and_nothing_else(tmp_path: Path, short_video: Path) -> None:
    """Upload parts, checks, unpacked trial folders and work folders of a gateway or job worker
    killed outright go once old; fresh ones, a running job's, stored files and other names stay."""
    app = _app(tmp_path)
    user_id, headers = api_user(app, "tidy@example.org")
    _upload(app, headers, short_video)
    runner = runner_for(app, "127.0.0.1:1")
    running = runner.claim()
    home = Path(app.extensions["emofuse.storage"].user_dir(user_id))
    stored = [name for name in stored_files(app, user_id) if not name.startswith(".")]
    dead = [".upload-dead.part", ".upload-dead.part.mat", ".check-dead", ".trial-dead", ".job-999-dead"]
    kept = [".upload-fresh.part", ".trial-fresh", f".job-{running}-alive", ".upload-dead", ".notes-dead"]  # not old, running, not ours
    for name in dead + kept:
        (home / name).mkdir() if name.startswith((".check", ".trial", ".job")) else (home / name).write_bytes(b"partial")
    for member in ("member-0", "member-1.mat"):  # what a trial's .zip unpacked
        (home / ".trial-dead" / member).write_bytes(b"unpacked")
    old = time.time() - 13 * 3600
    for name in [*stored, *dead, *kept]:
        if "fresh" not in name:
            os.utime(home / name, (old, old))
    removed = runner.tidy()
    assert sorted(p.name for p in removed) == sorted(dead)
    assert stored_files(app, user_id) == sorted([*stored, *kept])


def test_the_sweep_deletes_uploads_past_their_retention_period(tmp_path: Path, short_video: Path) -> None:
    app = _app(tmp_path)
    user_id, headers = api_user(app, "retention@example.org")
    old_id, kept_id = _upload(app, headers, short_video), _upload(app, headers, short_video)
    with Session(engine_of(app)) as session:
        session.get(User, user_id).retention_days = 7
        session.get(Analysis, old_id).recording.created_at = utcnow() - timedelta(days=8)
        session.commit()
    runner_for(app, "127.0.0.1:1").sweep()
    with Session(engine_of(app)) as session:
        assert session.get(Analysis, old_id) is None and session.get(Analysis, kept_id) is not None
    assert owned_counts(app, user_id)["Recording"] == 1 and len(stored_files(app, user_id)) == 1


def test_a_job_created_while_redis_was_down_is_delivered_by_the_sweep(tmp_path: Path, short_video: Path, postgres: PostgresServer,
                                                                    redis_server: RedisServer) -> None:  # fmt: skip
    app = _app(tmp_path, {"database_url": postgres.create_database(f"down_{uuid.uuid4().hex[:12]}"), "redis_url": redis_server.url})
    _user, headers = api_user(app, "redis-down@example.org")
    redis_server.stop()
    try:
        analysis_id = _upload(app, headers, short_video)  # 201: the job is safe in the database
    finally:
        redis_server.start()
    job, analysis = _job(app, analysis_id)
    assert (job.state, analysis.status) == (JobState.QUEUED, AnalysisStatus.QUEUED)
    worker = _rq_worker(app)
    assert worker.queues[0].count == 0  # Redis lost the news (it was down)
    runner_for(app, "127.0.0.1:1").sweep()
    assert worker.queues[0].job_ids == [f"emofuse-{job.id}-0"]
    runner_for(app, "127.0.0.1:1").sweep()
    assert worker.queues[0].count == 1  # announced once, not again at every sweep


# Running for real


def test_a_job_reports_each_stage_and_stores_the_timeline_before_the_copy(tmp_path: Path, triton: Any, face_video: Path) -> None:
    """The rows, read while the job runs: stages in order, progress never going back, the windows
    and the verdict there while the annotated video is still being written."""
    app = _app(tmp_path)
    user_id, headers = api_user(app, "stages@example.org")
    analysis_id = _upload(app, headers, face_video)
    runner = runner_for(app, triton.grpc_url)
    before = scrape(app)
    seen: list[tuple[str, str | None, float, int, bool]] = []
    worker = threading.Thread(target=runner.run_once)
    worker.start()
    while worker.is_alive():
        seen.append(_snapshot(app, analysis_id))
        time.sleep(0.03)
    worker.join()
    seen.append(_snapshot(app, analysis_id))
    runner.close()
    stages = [stage for _, stage, *_ in seen]
    assert {"decoding", "rendering"} <= set(stages), stages
    order = [s for i, s in enumerate(stages) if s and (i == 0 or stages[i - 1] != s)]
    windows = [s for s in order if s in ("faces", "voice", "inference")]  # whichever the job waited on most
    assert windows and order.index(windows[-1]) < order.index("rendering"), order
    assert all(a[2] <= b[2] for a, b in zip(seen, seen[1:])), "progress went back"
    rendering = [entry for entry in seen if entry[1] == "rendering"]
    assert rendering and all(windows > 0 and not video for _, _, _, windows, video in rendering)  # timeline first, copy later
    assert seen[-1][0] == "done" and seen[-1][2] == 1.0 and seen[-1][4]
    document = app.test_client().get(f"/api/v1/analyses/{analysis_id}/timeline", headers=headers).json
    assert document["complete"] and len(document["windows"]) == seen[-1][3] == 3
    assert document["verdict"]["label"] in document["labels"]
    assert [name for name in stored_files(app, user_id) if name.startswith(".")] == []  # no work folder, no part left
    after = scrape(app)
    grown = {stage: after.get(("emofuse_job_stage_duration_seconds_sum", stage), 0.0) - before.get(("emofuse_job_stage_duration_seconds_sum", stage), 0.0)
             for stage in ("decoding", "faces", "voice", "inference", "rendering", "gateway")}  # fmt: skip
    assert all(t > 0 for t in grown.values()), grown
    with Session(engine_of(app)) as session:
        analysis = session.get(Analysis, analysis_id)
        wall = (analysis.finished_at - analysis.started_at).total_seconds()
    assert sum(grown.values()) <= wall + 0.5, (grown, wall)  # the stages take turns on the job's thread
    requests = after.get(("emofuse_triton_request_duration_seconds_count", "emotion_av"), 0) - before.get(("emofuse_triton_request_duration_seconds_count", "emotion_av"), 0)
    assert requests >= 1


def scrape(app: Flask) -> dict[tuple[str, str], float]:
    """Samples of ``/metrics`` by name and their one label's value (stage or model)."""
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {(sample.name, next(iter(sample.labels.values()), "")): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples if len(sample.labels) <= 1}  # fmt: skip


def _snapshot(app: Flask, analysis_id: int) -> tuple[str, str | None, float, int, bool]:
    with Session(engine_of(app)) as session:
        analysis = session.get(Analysis, analysis_id)
        return analysis.status.value, analysis.stage, analysis.progress, len(analysis.windows), "video" in (analysis.files or {})


def test_a_recording_without_a_face_fails_with_the_reason_and_no_file_name_of_ours(tmp_path: Path, triton: Any,
                                                                                  no_face_video: Path) -> None:  # fmt: skip
    app = _app(tmp_path)
    web = signed_in(app, "noface@example.org")
    user_id, headers = token_for(app, "noface@example.org")
    analysis_id = _upload(app, headers, no_face_video, mode="face")
    runner = runner_for(app, triton.grpc_url)
    assert runner.run_once()
    runner.close()
    _job_row, analysis = _job(app, analysis_id)
    assert (analysis.status, analysis.error_code) == (AnalysisStatus.FAILED, "no_face")
    assert analysis.error == "No face was found in any of its 2 windows."
    response = app.test_client().get(f"/api/v1/analyses/{analysis_id}/timeline", headers=headers)
    assert response.status_code == 422
    assert response.json["error"] == {"code": "no_face", "message": "The analysis failed: No face was found in any of its 2 windows."}
    assert len(stored_files(app, user_id)) == 1  # the recording only
    page = web.get(f"/analyses/{analysis_id}").text
    assert "The analysis failed" in page and "No face was found in any of its 2 windows." in page and "Traceback" not in page


def test_rq_delivers_a_job_to_a_worker_which_runs_it_once(tmp_path: Path, triton: Any, short_video: Path, postgres: PostgresServer,
                                                         redis_server: RedisServer) -> None:  # fmt: skip
    from redis import Redis

    Redis.from_url(redis_server.url).flushdb()
    app = _app(tmp_path, {"database_url": postgres.create_database(f"rq_{uuid.uuid4().hex[:12]}"), "redis_url": redis_server.url})
    _user, headers = api_user(app, "rq@example.org")
    analysis_id = _upload(app, headers, short_video, mode="face")
    worker = _rq_worker(app)
    assert worker.queues[0].count == 1  # announced on RQ at once
    runner = runner_for(app, triton.grpc_url)
    with delivering(runner):
        worker.work(burst=True)
    job, analysis = _job(app, analysis_id)
    assert (analysis.status, job.state, job.attempts, job.worker) == (AnalysisStatus.DONE, JobState.DONE, 1, runner.name)
    assert runner.deliver(job.id) is False  # delivered again: done already, not run twice
    assert _job(app, analysis_id)[0].attempts == 1
    runner.close()


def test_a_worker_process_killed_mid_job_costs_only_time(app: Flask, backend: dict, triton: Any, face_video: Path,
                                                         tmp_path: Path) -> None:  # fmt: skip
    """`emofuse worker` is killed (SIGKILL) while it analyses; once its lease runs out the job is
    taken up again (through RQ's sweep with Redis), runs to the end, and nothing of the first
    attempt is left: one set of windows, no work folder."""
    user_id, headers = api_user(app, "killed@example.org")
    analysis_id = _upload(app, headers, face_video)
    env = {**os.environ, "EMOFUSE_DATA_DIR": str(tmp_path / "data"), "EMOFUSE_JOB_LEASE_S": "2", "EMOFUSE_JOB_POLL_S": "0.2"}
    env.update({name: value for name, value in (("DATABASE_URL", backend["database_url"]), ("REDIS_URL", backend["redis_url"]))
                if value})  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-m", "emofuse.cli", "worker", "--triton", triton.grpc_url], cwd=REPOSITORY_ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _snapshot(app, analysis_id)[1] not in ("inference", "rendering"):
            assert worker.poll() is None, worker.stdout.read().decode()
            assert time.monotonic() < deadline, "the worker never started the job"
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.stdout.close()
    assert _snapshot(app, analysis_id)[0] == "running"  # as the dead worker left it
    runner = runner_for(app, triton.grpc_url, lease_s=2)
    time.sleep(2.2)  # its lease runs out
    if backend["redis_url"]:
        runner.sweep()  # announces the abandoned job again on RQ
        with delivering(runner):
            _rq_worker(app).work(burst=True)
    else:
        assert runner.run_once()
    runner.close()
    job, analysis = _job(app, analysis_id)
    assert (analysis.status, job.state, job.attempts, job.worker) == (AnalysisStatus.DONE, JobState.DONE, 2, runner.name)
    assert owned_counts(app, user_id)["Window"] == 3
    assert [name for name in stored_files(app, user_id) if name.startswith(".")] == []


def test_a_worker_stopped_with_sigterm_gives_its_job_back_at_once(tmp_path: Path, triton: Any, face_video: Path) -> None:
    """The embedded worker's SIGTERM: the job goes back to the queue at once, the claim not
    counted as an attempt, its work folder removed; the next worker need not wait for a lease."""
    app = _app(tmp_path)
    user_id, headers = api_user(app, "sigterm@example.org")
    analysis_id = _upload(app, headers, face_video)
    env = {**os.environ, "EMOFUSE_DATA_DIR": str(tmp_path / "data"), "EMOFUSE_JOB_POLL_S": "0.2"}
    worker = subprocess.Popen([sys.executable, "-m", "emofuse.cli", "worker", "--triton", triton.grpc_url], cwd=REPOSITORY_ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _snapshot(app, analysis_id)[1] not in ("inference", "rendering"):
            assert worker.poll() is None and time.monotonic() < deadline, "the worker never started the job"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if worker.poll() is None:
            worker.kill()
    job, analysis = _job(app, analysis_id)
    assert (job.state, job.attempts, job.worker, analysis.status) == (JobState.QUEUED, 0, None, AnalysisStatus.QUEUED)
    assert [name for name in stored_files(app, user_id) if name.startswith(".")] == []
    assert runner_for(app, triton.grpc_url).claim() == job.id  # at once: no lease to wait out


def test_deleting_an_analysis_while_it_runs_stops_the_job_and_leaves_nothing(tmp_path: Path, triton: Any, face_video: Path) -> None:
    app = _app(tmp_path)
    user_id, headers = api_user(app, "deleted@example.org")
    analysis_id = _upload(app, headers, face_video)
    runner = runner_for(app, triton.grpc_url)
    worker = threading.Thread(target=runner.run_once)
    worker.start()
    deadline = time.monotonic() + 120
    while _snapshot(app, analysis_id)[1] != "rendering":
        assert worker.is_alive() and time.monotonic() < deadline, "the job never reached the annotated copy"
        time.sleep(0.02)
    assert app.test_client().delete(f"/api/v1/analyses/{analysis_id}", headers=headers).status_code == 204
    worker.join(timeout=120)
    runner.close()
    assert not worker.is_alive()
    assert owned_counts(app, user_id) == {"Recording": 0, "Analysis": 0, "Window": 0, "Verdict": 0, "Job": 0, "User": 1}
    assert stored_files(app, user_id) == []
