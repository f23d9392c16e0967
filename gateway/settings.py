"""The settings page: password, API tokens, retention, export of everything, deletion of the account.

Every form carries its CSRF token (:mod:`gateway.security`). Changing the password and deleting
the account ask for the current password again, and wrong ones count against the same limit as
sign-in attempts, so a session left open on a shared computer guesses no faster than the sign-in page.

The API has the tokens too: ``GET /api/v1/tokens`` lists them, ``DELETE /api/v1/tokens/ID``
revokes one. It cannot create one: a leaked token that could make new ones would outlive its
own revocation, so new tokens come from this page, behind the password.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from . import archive, current, limits, retention, sessions
from .accounts import delete_user
from .api import PREFIX, token_required
from .db import get_session
from .errors import NotFound, TooManyAttempts
from .models import ApiToken, User, utcnow
from .tokens import create_token, revoke_token

__all__ = ["api_bp", "bp"]

bp = Blueprint("settings", __name__, url_prefix="/settings")
api_bp = Blueprint("tokens_api", __name__, url_prefix=f"{PREFIX}/tokens")

View = Response | str | tuple[str, int]
_CHUNK = 256 * 1024  # what the export streams per write: large enough for few calls, small enough for any worker


def _page(status: int = 200, **context: Any) -> tuple[str, int]:
    """The settings page, with whatever a form just did (``errors``, a ``new_secret``...)."""
    tokens = get_session().scalars(
        select(ApiToken).where(ApiToken.user_id == current_user.id, ApiToken.revoked_at.is_(None)).order_by(ApiToken.created_at.desc())
    ).all()  # fmt: skip
    context.setdefault("errors", {})
    return render_template("settings/index.html", tokens=tokens, max_days=retention.MAX_RETENTION_DAYS, **context), status


def _me() -> User:
    """The signed-in user itself, not Flask-Login's proxy to it (which cannot be signed in again)."""
    return current_user._get_current_object()  # type: ignore[attr-defined]


def _no_store(page: tuple[str, int]) -> Response:
    """A page that shows a secret: kept by no cache, not even the browser's back button."""
    response = Response(page[0], status=page[1], mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("")
@login_required
def index() -> View:
    """The page itself, its forms empty."""
    return _page()


def _password_limits() -> dict[str, Any]:
    """The sign-in limits, for the password typed again: one count for both ways of guessing it."""
    config, user = current.config(), current_user
    window = config.signin_window_s
    return {"address": request.remote_addr or "unknown", "address_limit": limits.Limit(config.signin_max_per_address, window),
            "account": limits.account_key(user.email), "account_limit": limits.Limit(config.signin_max_per_account, window)}  # fmt: skip


def _count_wrong_password() -> None:
    found = _password_limits()
    limits.record(get_session(), "signin", address=found["address"], account=found["account"], keep_s=current.config().signin_window_s)


@bp.post("/password")
@login_required
def change_password() -> View:
    """Set a new password; every other session of the account ends, this one goes on."""
    db, form, user = get_session(), request.form, _me()
    try:
        limits.check(db, "signin", **_password_limits())
        sessions.change_password(db, user, form.get("current_password", ""), form.get("password", ""),
                                 form.get("confirmation", ""))  # fmt: skip
    except TooManyAttempts as err:
        return _page(err.status, errors={"password": err.message})
    except sessions.PasswordRefused as err:
        if err.field == "current_password":
            _count_wrong_password()
        return _page(400, errors={"password": err.message}, field=err.field)
    login_user(user)  # this browser goes on under the new session token; the old one opens nothing now
    flash("Your password is changed. Every other browser signed in to your account is signed out.", "success")
    return redirect(url_for("settings.index"))


@bp.post("/tokens")
@login_required
def new_token() -> View:
    """Make a token and show its secret, this once."""
    name = request.form.get("name", "").strip()
    if not name:
        return _page(400, errors={"tokens": "Name the token after where it will be used, e.g. \u201clab laptop\u201d."})
    token, secret = create_token(get_session(), _me(), name)
    return _no_store(_page(201, new_token=token, new_secret=secret))


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke(token_id: int) -> View:
    token = _own_token(token_id)
    revoke_token(get_session(), token)
    flash(f"The token \u201c{token.name}\u201d is revoked; programs using it are refused from now on.", "success")
    return redirect(url_for("settings.index"))


def _own_token(token_id: int) -> ApiToken:
    """The signed-in user's token ``token_id``; 404 for one that is someone else's, exactly as for none."""
    user = g.get("api_user") or current_user
    token = get_session().get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound(f"There is no API token {token_id}.")
    return token


@bp.post("/retention")
@login_required
def set_retention() -> View:
    """Keep uploads until deleted, or delete them automatically after a number of days."""
    try:
        days = retention.parse_retention(request.form.get("retention", ""), request.form.get("days", ""))
    except retention.RetentionRefused as err:
        return _page(400, errors={"retention": str(err)}, days=request.form.get("days", ""))
    _me().retention_days = days
    get_session().commit()
    kept = "until you delete them" if days is None else f"for {days} day{'s' * (days != 1)}; older ones are deleted within the hour"
    flash(f"Your uploads are kept {kept}.", "success")
    return redirect(url_for("settings.index"))


@bp.post("/export")
@login_required
def export() -> Response:
    """Everything of the account as a .zip, streamed from a spooled file (:mod:`gateway.archive`)."""
    config = current.config()
    file = archive.export_archive(get_session(), current.storage(), _me(), config.data_dir)
    size = file.seek(0, 2)
    file.seek(0)
    response = Response(_stream(file), mimetype="application/zip", direct_passthrough=True)
    response.headers["Content-Length"] = str(size)
    response.headers["Cache-Control"] = "no-store"
    response.headers.set("Content-Disposition", "attachment", filename=f"emofuse-export-{utcnow():%Y-%m-%d}.zip")
    return response


def _stream(file: IO[bytes]) -> Iterator[bytes]:
    """The file's bytes a chunk at a time; closed when the download ends, or is cut off."""
    try:
        while chunk := file.read(_CHUNK):
            yield chunk
    finally:
        file.close()


@bp.post("/delete")
@login_required
def delete_account() -> View:
    """Delete the account, its records and its files, once the password is typed again."""
    db = get_session()
    try:
        limits.check(db, "signin", **_password_limits())
    except TooManyAttempts as err:
        return _page(err.status, errors={"delete": err.message})
    if not sessions.check_password(db, _me(), request.form.get("password", "")):
        _count_wrong_password()
        return _page(400, errors={"delete": "The password is wrong; nothing was deleted."})
    user = _me()
    logout_user()
    delete_user(db, current.storage(), user)
    session.clear()
    flash("Your account is deleted, with every recording, analysis and file in it.", "success")
    return redirect(url_for("auth.sign_in"))


def _token_json(token: ApiToken) -> dict[str, Any]:
    def moment(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {"id": token.id, "name": token.name, "prefix": token.prefix, "active": token.active,
            "created_at": moment(token.created_at), "last_used_at": moment(token.last_used_at),
            "revoked_at": moment(token.revoked_at)}  # fmt: skip


@api_bp.get("")
@token_required
def list_tokens() -> dict[str, Any]:
    """The user's tokens, newest first, revoked ones too (with ``revoked_at``); never a secret."""
    tokens = get_session().scalars(
        select(ApiToken).where(ApiToken.user_id == g.api_user.id).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    )  # fmt: skip
    return {"tokens": [_token_json(token) for token in tokens]}


@api_bp.delete("/<int:token_id>")
@token_required
def delete_token(token_id: int) -> tuple[str, int]:
    """Revoke a token (the one making the request too, if it names itself); 204, also when already revoked."""
    revoke_token(get_session(), _own_token(token_id))
    return "", 204
