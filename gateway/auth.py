"""Sign up, sign in, sign out: server-rendered forms, Flask-Login sessions.

Each form is checked for its CSRF token (:mod:`gateway.security`) before the view runs. A failed
sign-in always answers the same sentence, whether the email has an account or not; attempts are
limited per account and per client address (:mod:`gateway.limits`), and the limit is checked
before the password, so a refused attempt learns nothing.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_user, logout_user
from werkzeug.wrappers import Response

from . import accounts, current, limits, sessions
from .db import get_session
from .errors import SignUpRefused, TooManyAttempts
from .models import User

__all__ = ["SIGN_IN_FAILED", "bp", "init_app", "login_manager"]

bp = Blueprint("auth", __name__, url_prefix="/auth")
login_manager = LoginManager()
login_manager.login_view = "auth.sign_in"
login_manager.login_message = "Sign in to see your analyses."
login_manager.login_message_category = "info"

SIGN_IN_FAILED = "The email address or the password is wrong."

View = Response | str | tuple[str, int, dict[str, str]]  # a redirect, a page, or a page with its status


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    return sessions.user_for_session_id(get_session(), session_id)  # None once the password changed


@bp.route("/sign-up", methods=("GET", "POST"))
def sign_up() -> View:
    """Make an account and sign in with it."""
    if current_user.is_authenticated:
        return redirect(url_for("history.index"))
    if request.method == "GET":
        return render_template("auth/sign_up.html")
    email = request.form.get("email", "")
    config, db = current.config(), get_session()
    address = _client_address()
    try:
        limits.check(db, "signup", address=address, address_limit=limits.Limit(config.signup_max_per_address, config.signup_window_s))
        limits.record(db, "signup", address=address, keep_s=config.signup_window_s)
        user = accounts.create_user(db, email, request.form.get("password", ""), request.form.get("confirmation", ""))
    except TooManyAttempts as err:
        return render_template("auth/sign_up.html", error=err.message, email=email), err.status, err.headers
    except SignUpRefused as err:
        return render_template("auth/sign_up.html", error=err.message, field=err.field, email=email), 400, {}
    _start_session(user)
    flash("Welcome to emofuse. Your account is ready.", "success")
    return redirect(url_for("history.index"))


@bp.route("/sign-in", methods=("GET", "POST"))
def sign_in() -> View:
    """Check an email and password and start a session."""
    if current_user.is_authenticated:
        return redirect(url_for("history.index"))
    if request.method == "GET":
        return render_template("auth/sign_in.html")
    email = request.form.get("email", "")
    config, db = current.config(), get_session()
    address, account = _client_address(), limits.account_key(email)
    window = config.signin_window_s
    try:
        limits.check(db, "signin", address=address, address_limit=limits.Limit(config.signin_max_per_address, window),
                     account=account, account_limit=limits.Limit(config.signin_max_per_account, window))  # fmt: skip
    except TooManyAttempts as err:
        return render_template("auth/sign_in.html", error=err.message, email=email), err.status, err.headers
    user = accounts.authenticate(db, email, request.form.get("password", ""))
    if user is None:
        limits.record(db, "signin", address=address, account=account, keep_s=window)
        return render_template("auth/sign_in.html", error=SIGN_IN_FAILED, email=email), 400, {}
    limits.clear(db, "signin", account=account)
    _start_session(user)
    return redirect(_safe_next(request.args.get("next")) or url_for("history.index"))


@bp.post("/sign-out")
def sign_out() -> Response:
    """End the session (a POST with its CSRF token: a link elsewhere cannot sign anyone out)."""
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.sign_in"))


def _start_session(user: User) -> None:
    session.clear()  # nothing from before signing in carries over into the signed-in session
    login_user(user)


def _client_address() -> str:
    return request.remote_addr or "unknown"


def _safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site; never another site (no open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target
