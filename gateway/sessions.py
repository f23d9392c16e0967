"""Sign-in sessions that end when the password changes.

A session cookie keeps ``ID:SESSION_TOKEN`` (:meth:`gateway.models.User.get_id`), and the user
loader accepts it only while the token is still the user's. Changing the password makes a new
token, so every other browser signed in to the account is signed out at its next request; the
browser that made the change signs in again with the new one::

    user = user_for_session_id(session, "17:3f9c...")    # None once the token changed
    change_password(session, user, old, new, new)        # raises PasswordRefused, or commits
"""

from __future__ import annotations

import hmac

from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from . import accounts
from .errors import SignUpRefused
from .models import User, new_session_token

__all__ = ["PasswordRefused", "change_password", "check_password", "user_for_session_id"]

# The same parameters as gateway.accounts (argon2-cffi's defaults, RFC 9106's low-memory profile);
# should they ever differ, gateway.accounts.authenticate upgrades the hash at the next sign-in.
_hasher = PasswordHasher()


class PasswordRefused(SignUpRefused):
    """The current password is wrong, or the new one breaks a rule; ``field`` names the one to change."""


def user_for_session_id(session: Session, session_id: str) -> User | None:
    """The user a session cookie's id names, while its token is still theirs; else None."""
    user_id, _, token = session_id.partition(":")
    if not user_id.isdigit() or not token:
        return None  # an id from before session tokens, or a forged one: sign in again
    user = session.get(User, int(user_id))
    if user is None or not hmac.compare_digest(user.session_token.encode(), token.encode()):
        return None
    return user


def check_password(session: Session, user: User, password: str) -> bool:
    """Whether ``password`` is the user's: the check before changing the password or deleting the account."""
    return accounts.authenticate(session, user.email, password) is not None


def change_password(session: Session, user: User, current: str, new: str, confirmation: str) -> None:
    """Set a new password and a new session token (ending the user's other sessions); commits.

    Raises
    ------
    PasswordRefused
        ``current`` is not the password, or ``new`` breaks a sign-up rule or differs from ``confirmation``.
    """
    if not check_password(session, user, current):
        raise PasswordRefused("current_password", "The current password is wrong.")
    if new == current:
        raise PasswordRefused("password", "The new password is the current one; choose another.")
    try:
        accounts.check_sign_up(user.email, new, confirmation)
    except SignUpRefused as err:
        raise PasswordRefused(err.field, err.message) from None
    user.password_hash = _hasher.hash(new)
    user.session_token = new_session_token()
    session.commit()
