"""Accounts: sign-up rules, argon2id password hashes, checking a sign-in, deleting everything of a user.

Passwords are hashed with argon2id (argon2-cffi's defaults: RFC 9106's low-memory profile, 64 MiB,
3 passes). A sign-in for an email that has no account still verifies a hash, so the answer takes
as long as for a wrong password and says nothing about which it was.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .errors import SignUpRefused
from .models import User
from .storage import Storage

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "authenticate",
    "check_sign_up",
    "create_user",
    "delete_user",
    "normalize_email",
]

MIN_PASSWORD_LENGTH = 12  # with the rate limit, long enough that guessing gets nowhere
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; a bound keeps a request from being a megabyte of work
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")

_hasher = PasswordHasher()
_DECOY_HASH = _hasher.hash("a password no account has")  # verified when the email has no account


def normalize_email(email: str) -> str:
    """The address as it is stored and looked up: trimmed and lower-cased."""
    return email.strip().lower()


def check_sign_up(email: str, password: str, confirmation: str) -> None:
    """Raise :class:`SignUpRefused` for the first value that cannot make an account."""
    if not email:
        raise SignUpRefused("email", "Enter your email address.")
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise SignUpRefused("email", "Enter an email address like name@example.org.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SignUpRefused("password", f"Use a password of at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise SignUpRefused("password", f"Use a password of at most {MAX_PASSWORD_LENGTH} characters.")
    if password != confirmation:
        raise SignUpRefused("confirmation", "The two passwords differ; type the same password twice.")


def create_user(session: Session, email: str, password: str, confirmation: str | None = None) -> User:
    """Make and commit an account.

    Raises
    ------
    SignUpRefused
        A value breaks a rule, or the address is already registered.
    """
    email = normalize_email(email)
    check_sign_up(email, password, password if confirmation is None else confirmation)
    user = User(email=email, password_hash=_hasher.hash(password))
    session.add(user)
    try:
        session.commit()
    except IntegrityError:  # the unique index decides, so two sign-ups at once cannot both win
        session.rollback()
        raise SignUpRefused("email", "This email address cannot be used to sign up. "
                                     "If you already have an account, sign in instead.") from None  # fmt: skip
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user whose email and password these are, else None; never says which one was wrong."""
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    try:
        _hasher.verify(user.password_hash if user else _DECOY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):  # parameters raised since: upgrade the hash now
        user.password_hash = _hasher.hash(password)
        session.commit()
    return user


def delete_user(session: Session, storage: Storage, user: User) -> None:
    """Delete the account: its records by the database's cascades, then its directory of files.

    The records go first: should removing the files fail, no record points at a half-deleted
    directory, and nothing is left that the user could still reach.
    """
    user_id = user.id
    session.delete(user)
    session.commit()
    storage.remove_user(user_id)
