"""How errors are answered: JSON under ``/api/v1/``, a page everywhere else; never a traceback.

=======================================  ======  ===========================
error                                    status  code
=======================================  ======  ===========================
:class:`gateway.errors.ApiError`         its own its own (401, 404, 429, ...)
:class:`serving.InputError`              422     ``unprocessable_recording``
:class:`serving.UpstreamError`           503     ``models_unavailable``
a missing or expired CSRF token          400     ``csrf_failed`` (pages only)
any other HTTP error (404, 405, 413...)  its own its name: ``not_found``...
anything else                            500     ``internal_error``, logged
=======================================  ======  ===========================
"""

from __future__ import annotations

import logging

from flask import Flask, json, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from serving.errors import InputError, UpstreamError

from .api import PREFIX
from .errors import ApiError
from .metrics import count_failure

__all__ = ["CSRF_FAILED", "init_app"]

log = logging.getLogger(__name__)

CSRF_FAILED = "This form has expired or was not sent from this site. Reload the page and try again."


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(InputError, lambda err: _answer(422, "unprocessable_recording", str(err)))
    app.register_error_handler(UpstreamError, lambda err: _answer(503, "models_unavailable", str(err)))
    app.register_error_handler(CSRFError, lambda err: _answer(400, "csrf_failed", CSRF_FAILED))
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _api_error(err: ApiError) -> Response:
    return _answer(err.status, err.code, err.message, err.headers)


def _http_error(err: HTTPException) -> Response:
    code = (err.name or "error").lower().replace(" ", "_").replace("'", "")
    response = _answer(err.code or 500, code, err.description or err.name)
    for name, value in err.get_headers():  # e.g. Allow on a 405
        if name.lower() != "content-type":
            response.headers.setdefault(name, value)
    return response


def _unexpected(err: Exception) -> Response:
    log.exception("unexpected error answering %s %s", request.method, request.path)
    return _answer(500, "internal_error", "Something went wrong on our side; it has been logged. Try again later.")


def _answer(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    count_failure(code, source="request")
    if _wants_json():
        body = {"error": {"code": code, "message": message}}
        response = Response(json.dumps(body), status=status, mimetype="application/json")
    else:
        response = Response(render_template("error.html", status=status, message=message), status=status, mimetype="text/html")
    response.headers.update(headers or {})
    return response


def _wants_json() -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")
