"""Prometheus metrics at ``/metrics``, correct under several gunicorn workers.

Each gunicorn worker counts into its own files under ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode; ``gateway/gunicorn_conf.py`` sets it up and cleans it),
and a scrape, whichever worker answers it, adds up every worker's files, those of workers that
have exited too. Without that variable (one process: tests, ``flask run``) the metrics live in the
process. Triton's own metrics stay on its port (8002).

- ``emofuse_http_requests_total`` (counter; ``route``, ``method``, ``status``): every request. The
  route is the URL rule (``/api/v1/tokens/<int:token_id>``), never the raw path, so a scanner's
  guesses make one ``<unmatched>`` series, not thousands.
- ``emofuse_http_request_duration_seconds`` (histogram; ``route``, ``method``): time to answer.
- ``emofuse_upload_bytes_total`` (counter): bytes of uploads stored; the upload code calls
  ``UPLOAD_BYTES.inc(size)``.
- ``emofuse_job_stage_duration_seconds`` (histogram; ``stage``: decoding, faces, voice,
  inference, rendering, gateway): each finished analysis's wall seconds in each stage, as
  ``serving.Analysis.seconds`` counts them, and the rest of its job as "gateway" (database
  writes, moving files); :mod:`gateway.jobs` observes them.
- ``emofuse_triton_request_duration_seconds`` (histogram; ``model``, the ensemble): each request's
  seconds from send to answer (the job worker's ``EmotionClient(on_answer=...)``).
- ``emofuse_failures_total`` (counter; ``source``: request or job, ``reason``: a fixed code such as
  ``csrf_failed``, ``not_found``, ``models_unavailable``): every error answered
  (:mod:`gateway.failures`), and every job failure, by ``count_failure(reason)`` (source job).
- ``emofuse_jobs`` (gauge; ``state``: queued, running) and ``emofuse_jobs_oldest_queued_seconds``:
  counted in the database at scrape time, so exact whichever process runs the jobs.
- ``emofuse_triton_model_restarts_total`` (counter; ``model``, a Triton model such as
  ``speech_emotion``): models whose process died and that the watchdog of ``emofuse serve``
  restarted (:mod:`emofuse.triton_watchdog`), read from its :data:`TRITON_RESTARTS_FILE` in
  ``PROMETHEUS_MULTIPROC_DIR`` at scrape time; absent when Triton was started some other way.

A job worker in another process reaches ``/metrics`` only when it shares the gateway's
``PROMETHEUS_MULTIPROC_DIR`` (start the embedded worker with the same variable); workers on other
hosts need an exporter of their own. With ``EMOFUSE_METRICS_TOKEN`` set, ``/metrics`` answers only
``Authorization: Bearer TOKEN``; unset, it is open (bind it to a private network).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Flask, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from . import current
from .db import engine_of
from .errors import AuthenticationRequired, InvalidToken
from .models import Job, JobState, utcnow

__all__ = [
    "FAILURES",
    "JOB_STAGE_SECONDS",
    "MULTIPROCESS_DIR",
    "TRITON_RESTARTS_FILE",
    "REQUESTS",
    "REQUEST_SECONDS",
    "TRITON_SECONDS",
    "UPLOAD_BYTES",
    "bp",
    "count_failure",
    "init_app",
]

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
TRITON_RESTARTS_FILE = "triton_model_restarts.json"  # in MULTIPROCESS_DIR, written by emofuse serve's Triton watchdog
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))  # anything else: "other"
_UNMATCHED = "<unmatched>"  # a path no route has: one label for every scanner's guesses

REQUESTS = Counter("emofuse_http_requests", "HTTP requests answered, by route, method and status.", ["route", "method", "status"])
REQUEST_SECONDS = Histogram(
    "emofuse_http_request_duration_seconds", "Time to answer an HTTP request (streamed bodies: until the first byte).",
    ["route", "method"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)  # fmt: skip
UPLOAD_BYTES = Counter("emofuse_upload_bytes", "Bytes of uploaded recordings stored.")
JOB_STAGE_SECONDS = Histogram(
    "emofuse_job_stage_duration_seconds", "Time an analysis job spent in each stage.", ["stage"],
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),  # a photo to a 30-minute video
)  # fmt: skip
TRITON_SECONDS = Histogram(
    "emofuse_triton_request_duration_seconds", "Time Triton took to answer one inference request, by ensemble.", ["model"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),  # 7 ms a window, up to a batch of trials
)  # fmt: skip
FAILURES = Counter("emofuse_failures", "Requests and jobs that failed, by source and machine-readable reason.", ["source", "reason"])


def count_failure(reason: str, source: str = "job") -> None:
    """Count one failure; ``reason`` is a fixed code (``unprocessable_recording``), never a message."""
    FAILURES.labels(source=source, reason=reason).inc()


def init_app(app: Flask) -> None:
    """Time and count every request of ``app``, and serve ``/metrics``."""
    app.before_request(_start)
    app.after_request(_observe)
    app.register_blueprint(bp)


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule is not None else _UNMATCHED
    method = request.method if request.method in _METHODS else "other"
    REQUESTS.labels(route=route, method=method, status=str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        REQUEST_SECONDS.labels(route=route, method=method).observe(time.perf_counter() - started)
    return response


class _JobCollector:
    """Jobs queued and running, counted in the database when Prometheus asks: exact, whoever runs them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        try:
            with Session(self.engine) as session:
                counts = dict(session.execute(select(Job.state, func.count()).where(Job.state.in_((JobState.QUEUED, JobState.RUNNING)))
                                              .group_by(Job.state)).all())  # fmt: skip
                oldest = session.scalar(select(func.min(Job.created_at)).where(Job.state == JobState.QUEUED))
        except SQLAlchemyError as err:  # no figure rather than a wrong one; /readyz says why
            log.warning("jobs not counted for /metrics: %s", err)
            return
        jobs = GaugeMetricFamily("emofuse_jobs", "Analysis jobs queued and running now.", labels=["state"])
        for state in (JobState.QUEUED, JobState.RUNNING):
            jobs.add_metric([state.value], counts.get(state, 0))
        yield jobs
        waited = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily("emofuse_jobs_oldest_queued_seconds", "How long the oldest queued job has waited.", value=waited)


class _TritonRestarts:
    """The Triton models ``emofuse serve``'s watchdog restarted, as its counts file says when Prometheus asks."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        try:
            counts = {str(model): float(times) for model, times in json.loads(self.path.read_text()).items()}
        except FileNotFoundError:  # Triton not started by emofuse serve: no watchdog, no figure
            return
        except (OSError, ValueError, TypeError, AttributeError) as err:  # not {"model": times}: no wrong figure
            log.warning("Triton restarts not counted for /metrics: %s: %s", self.path, err)
            return
        restarts = CounterMetricFamily("emofuse_triton_model_restarts", "Triton models restarted after their process died.", labels=["model"])
        for model, times in sorted(counts.items()):
            restarts.add_metric([model], times)
        yield restarts


class _ThisProcess:
    """The process's own registry, when there is one process: everything it counted."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def _registry(app: Flask) -> CollectorRegistry:
    """A registry for one scrape: every worker's files (or this process) and the jobs in the database."""
    registry = CollectorRegistry()
    if directory := os.environ.get(MULTIPROCESS_DIR):
        MultiProcessCollector(registry)
        registry.register(_TritonRestarts(Path(directory) / TRITON_RESTARTS_FILE))
    else:
        registry.register(_ThisProcess())
    registry.register(_JobCollector(engine_of(app)))
    return registry


def _authorize() -> None:
    """With ``EMOFUSE_METRICS_TOKEN`` set, let only a request bearing it through."""
    expected = current.config().metrics_token
    if not expected:
        return
    header = request.headers.get("Authorization", "")
    if not header:
        raise AuthenticationRequired("Send the metrics token: Authorization: Bearer TOKEN.", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise InvalidToken("The metrics token is wrong.", headers={"WWW-Authenticate": 'Bearer realm="metrics", error="invalid_token"'})


@bp.get("/metrics")
def metrics() -> Response:
    """The Prometheus text format; no sign-in (a scraper has no session), a bearer token when configured."""
    _authorize()
    return Response(generate_latest(_registry(current_app)), content_type=CONTENT_TYPE_LATEST)
