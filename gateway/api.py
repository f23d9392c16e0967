"""The HTTP API under ``/api/v1/``: JSON in and out, authenticated by personal API tokens.

Send a token as ``Authorization: Bearer emo_...``. Every error is JSON with the right status::

    HTTP/1.1 401 UNAUTHORIZED
    WWW-Authenticate: Bearer realm="emofuse", error="invalid_token"
    {"error": {"code": "invalid_token", "message": "The API token is not valid: it is unknown or was revoked."}}

The API never reads the session cookie, so it needs no CSRF token and a page cannot act on it
with a visitor's cookies.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from flask import Blueprint, g, request

from .db import get_session
from .errors import AuthenticationRequired, InvalidToken
from .models import utcnow
from .tokens import find_token

__all__ = ["PREFIX", "bp", "token_required"]

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)

F = TypeVar("F", bound=Callable[..., Any])
_REALM = 'Bearer realm="emofuse"'
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at to the minute: not a database write per request


def token_required(view: F) -> F:
    """Run ``view`` only for a request with an active token; its user is ``g.api_user``.

    Raises
    ------
    AuthenticationRequired
        No ``Authorization`` header (401).
    InvalidToken
        Not a bearer token, or unknown, or revoked (401).
    """

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "").strip()
        if not header:
            raise AuthenticationRequired("Send an API token: Authorization: Bearer emo_...", headers={"WWW-Authenticate": _REALM})
        scheme, _, secret = header.partition(" ")
        session = get_session()
        token = find_token(session, secret.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise InvalidToken("The API token is not valid: it is unknown or was revoked.",
                               headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'})  # fmt: skip
        now = utcnow()
        if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
            token.last_used_at = now
            session.commit()
        g.api_token, g.api_user = token, token.user
        return view(*args, **kwargs)

    return checked  # type: ignore[return-value]


@bp.get("/me")
@token_required
def me() -> dict[str, Any]:
    """Who the token belongs to, and which token it is."""
    user, token = g.api_user, g.api_token
    return {
        "id": user.id,
        "email": user.email,
        "created_at": user.created_at.isoformat(),
        "token": {"name": token.name, "prefix": token.prefix, "created_at": token.created_at.isoformat()},
    }
