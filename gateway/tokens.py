"""Personal API tokens: random secrets shown once, kept as their SHA-256.

A token is ``emo_`` and 43 URL-safe characters (256 random bits). That much entropy makes a plain
SHA-256 the right thing to store: nobody can guess a token, so there is nothing for a slow
password hash to slow down, and a lookup by digest takes one indexed query::

    token, secret = create_token(session, user, "laptop")   # show `secret` to the user, once
    assert find_token(session, secret) == token
    revoke_token(session, token)                            # find_token(...) is None from now on
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import ApiToken, User, utcnow

__all__ = ["PREFIX", "create_token", "digest", "find_token", "revoke_token"]

PREFIX = "emo_"  # lets secret scanners and people recognise an emofuse token
_SECRET_BYTES = 32
_MAX_LENGTH = 64  # longer than any token made here: refused before hashing


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(session: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """A new active token for ``user``, committed, and its secret (which is nowhere kept)."""
    secret = PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
    token = ApiToken(name=name.strip()[:100] or "API token", digest=digest(secret), prefix=secret[: len(PREFIX) + 6])
    user.tokens.append(token)
    session.commit()
    return token, secret


def find_token(session: Session, secret: str) -> ApiToken | None:
    """The active token whose secret this is; None for one unknown, malformed or revoked."""
    if not secret.startswith(PREFIX) or len(secret) > _MAX_LENGTH:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.digest == digest(secret)))
    return token if token is not None and token.active else None


def revoke_token(session: Session, token: ApiToken) -> None:
    """Revoke ``token`` for good; commits."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.commit()
