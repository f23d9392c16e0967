"""Structured request logs: one JSON line per request, every line tagged with the request's id.

The id is the client's ``X-Request-ID`` when it is a plain token (letters, digits, ``._-``, at
most 128), so a proxy's id follows the request through; otherwise a new one. The response carries
it back in ``X-Request-ID``, and every record logged while the request runs has it as
``request_id``::

    {"time": "2026-12-01T23:05:06.911Z", "level": "INFO", "logger": "gateway.request",
     "message": "GET /readyz 200", "request_id": "6f1c...", "method": "GET", "path": "/readyz",
     "status": 200, "duration_ms": 3.1, "user_id": null, "address": "127.0.0.1"}
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone

from flask import Flask, Response, g, has_request_context, request
from flask_login import current_user

__all__ = ["JsonFormatter", "REQUEST_ID_HEADER", "init_app", "request_id"]

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")  # nothing that could forge a log line or a header
_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "user_id", "address")

log = logging.getLogger("gateway.request")


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, the request's fields, any error."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in _FIELDS if hasattr(record, name)})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _RequestIdFilter(logging.Filter):
    """Tag every record logged during a request with that request's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and not hasattr(record, "request_id"):
            record.request_id = request_id()
        return True


def request_id() -> str:
    return g.get("request_id", "-")


def init_app(app: Flask) -> None:
    """Log each request as JSON to standard error (where gunicorn collects it) with its id."""
    gateway = logging.getLogger("gateway")
    if not any(isinstance(h.formatter, JsonFormatter) for h in gateway.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(_RequestIdFilter())
        gateway.addHandler(handler)
        gateway.setLevel(logging.INFO)
    app.before_request(_start)
    app.after_request(_finish)


def _start() -> None:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = request_id()
    duration_ms = round(1000 * (time.perf_counter() - g.get("request_started", time.perf_counter())), 2)
    api_user = g.get("api_user")  # set by gateway.api's bearer check; pages sign in with a session
    user_id = api_user.id if api_user is not None else current_user.id if current_user.is_authenticated else None
    log.info("%s %s %s", request.method, request.path, response.status_code, extra={
        "request_id": request_id(), "method": request.method, "path": request.path, "status": response.status_code,
        "duration_ms": duration_ms, "user_id": user_id, "address": request.remote_addr,
    })  # fmt: skip
    return response
