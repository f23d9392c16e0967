"""Rate limits on sign-in and sign-up, counted in the database.

The counts live in the ``auth_attempts`` table, so every gunicorn worker (and every host behind
a load balancer) sees the same ones, and a restart forgets nothing. A sign-in is refused when
the account, or the client address, has had too many *failed* attempts in the window; a success
clears the account's count. A sign-up is refused when the address has tried too many in its window.

An account is counted by the SHA-256 of the email tried, whether or not an account has it: a 429
for an address nobody registered looks the same as one for a real account.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .errors import TooManyAttempts
from .models import AuthAttempt, utcnow

__all__ = ["Limit", "account_key", "check", "clear", "record"]


@dataclass(frozen=True)
class Limit:
    """At most ``attempts`` in any ``window_s`` seconds."""

    attempts: int
    window_s: int


def account_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def check(session: Session, kind: str, *, address: str, address_limit: Limit,
          account: str | None = None, account_limit: Limit | None = None) -> None:  # fmt: skip
    """Raise :class:`TooManyAttempts` if the account or the address used up its attempts.

    The error's ``retry_after_s`` is when the oldest counted attempt leaves the window.
    """
    now = utcnow()
    counted = [(AuthAttempt.address == address, address_limit)]
    if account is not None and account_limit is not None:
        counted.append((AuthAttempt.account == account, account_limit))
    for condition, limit in counted:
        since = now - timedelta(seconds=limit.window_s)
        attempts, oldest = session.execute(
            select(func.count(), func.min(AuthAttempt.at)).where(AuthAttempt.kind == kind, condition, AuthAttempt.at > since)
        ).one()
        if attempts >= limit.attempts:
            raise _refusal(kind, oldest, limit, now)


def _refusal(kind: str, oldest: datetime, limit: Limit, now: datetime) -> TooManyAttempts:
    wait_s = max(1, math.ceil((oldest + timedelta(seconds=limit.window_s) - now).total_seconds()))
    what = "sign-in" if kind == "signin" else "sign-up"
    minutes = math.ceil(wait_s / 60)
    return TooManyAttempts(f"Too many {what} attempts. Try again in {minutes} minute{'s' * (minutes != 1)}.",
                           retry_after_s=wait_s)  # fmt: skip


def record(session: Session, kind: str, *, address: str, account: str | None = None, keep_s: int) -> None:
    """Count one attempt, and forget those older than ``keep_s`` (the longest window); commits."""
    now = utcnow()
    session.execute(delete(AuthAttempt).where(AuthAttempt.kind == kind, AuthAttempt.at < now - timedelta(seconds=keep_s)))
    session.add(AuthAttempt(kind=kind, address=address, account=account, at=now))
    session.commit()


def clear(session: Session, kind: str, *, account: str) -> None:
    """Forget the account's attempts (after it signed in); the address keeps its count. Commits."""
    session.execute(delete(AuthAttempt).where(AuthAttempt.kind == kind, AuthAttempt.account == account))
    session.commit()
