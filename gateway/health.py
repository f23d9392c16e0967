"""Probes for an orchestrator: ``/healthz`` (the process answers) and ``/readyz`` (it can serve).

``/readyz`` answers 200 when every check passes and 503 otherwise, naming each check::

    {"status": "not ready",
     "checks": {"database": {"ok": false, "error": "The database cannot be reached."},
                "storage": {"ok": true},
                "triton": {"ok": true, "models": {"emotion_face": "READY", ...}}}}

- **database**: a connection opens and the schema is at the newest migration;
- **storage**: a file can be written, read and deleted in the data directory;
- **queue** (only when ``REDIS_URL`` is set): Redis answers a ``PING`` within the probe's timeout;
- **triton** (only when ``TRITON_URL`` is set): every ensemble the gateway calls is READY,
  asked with a fresh :class:`serving.EmotionClient` each time (a client caches what it learnt,
  so a kept one would go on answering READY for a server that went away).

The answer's sentences are written here and in :mod:`serving.errors`; the database's and the file
system's own errors go to the log, with the request id, not to whoever asks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from flask import Blueprint, current_app
from sqlalchemy.exc import SQLAlchemyError

from serving import EmotionClient, UpstreamError
from serving.cards import SERVED_ENSEMBLES

from . import current
from .db import current_revision, engine_of, head_revision
from .errors import GatewayError, StorageError

__all__ = ["READY_MODELS", "bp"]

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)

#: The Triton ensembles the gateway sends requests to.
READY_MODELS = SERVED_ENSEMBLES

Check = dict[str, Any]


class _NotReady(GatewayError):
    """A check failed; the message, and any details, are what the probe's answer says."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[dict[str, Any], int]:
    checks: dict[str, Callable[[], Check]] = {"database": _database, "storage": _storage}
    if current.config().redis_url:
        checks["queue"] = _queue
    if current.config().triton_url:
        checks["triton"] = _triton
    results = {name: _run(name, check) for name, check in checks.items()}
    ready = all(result["ok"] for result in results.values())
    return {"status": "ready" if ready else "not ready", "checks": results}, 200 if ready else 503


def _run(name: str, check: Callable[[], Check]) -> Check:
    try:
        return {"ok": True, **check()}
    except _NotReady as err:
        log.warning("readiness check %s failed: %s", name, err.__cause__ or err)
        return {"ok": False, "error": str(err), **err.details}


def _database() -> Check:
    engine = engine_of(current_app)
    try:
        found = current_revision(engine)
    except SQLAlchemyError as err:
        raise _NotReady("The database cannot be reached.") from err
    needed = head_revision()
    if found != needed:
        raise _NotReady(f"The database schema is at revision {found}; the gateway needs {needed}: run the migrations.")
    return {"revision": found}


def _storage() -> Check:
    try:
        current.storage().check()
    except StorageError as err:
        raise _NotReady("The data directory cannot be written.") from err
    return {}


def _queue() -> Check:
    config = current.config()
    timeout = config.readiness_timeout_s
    try:
        client = redis.Redis.from_url(config.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as err:  # a URL redis-py cannot read
        raise _NotReady("REDIS_URL is not a Redis URL (redis://HOST:PORT/DB).") from err
    try:
        client.ping()
    except redis.RedisError as err:
        raise _NotReady("The job queue (Redis) cannot be reached.") from err
    finally:
        client.close()
    return {}


def _triton() -> Check:
    config = current.config()
    models: dict[str, str] = {}
    try:
        with EmotionClient(config.triton_url, timeout_s=config.readiness_timeout_s) as client:
            for name in READY_MODELS:
                client.model(name)  # raises unless the model is READY
                models[name] = "READY"
    except UpstreamError as err:
        raise _NotReady(str(err), models=models) from err
    return {"models": models}
