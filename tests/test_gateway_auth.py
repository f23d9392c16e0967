"""Sign up, sign in, sign out, rate limits, cookies, CSRF and API tokens, through Flask's test client
against a real SQLite database in tmp_path with the migrations applied."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import current
from gateway.accounts import delete_user
from gateway.auth import SIGN_IN_FAILED
from gateway.db import engine_of
from gateway.failures import CSRF_FAILED
from gateway.models import (
    Analysis,
    AnalysisStatus,
    ApiToken,
    AuthAttempt,
    Recording,
    User,
    utcnow,
)
from gateway.testing import csrf_token, sign_in, sign_up
from gateway.testing_flow import gateway_app
from gateway.tokens import create_token, revoke_token

PASSWORD = "correct horse battery"
SECRET_KEY = "k" * 64


def _message(response) -> str:  # noqa: ANN001 (a test response)
    found = re.search(r'class="notice error" role="alert"[^>]*>([^<]*)<', response.get_data(as_text=True))
    return found.group(1) if found else ""


def _signed_in(web: FlaskClient) -> bool:
    return web.get("/").status_code == 200


# Sign up


def test_sign_up_signs_in_and_opens_an_empty_history(web: FlaskClient, db: Session) -> None:
    response = sign_up(web, "Ada@Example.org ", PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    home = web.get("/")
    assert home.status_code == 200
    assert "No analyses yet" in home.text and "ada@example.org" in home.text
    assert db.scalar(select(User.email)) == "ada@example.org"


def test_the_password_is_kept_as_an_argon2id_hash(web: FlaskClient, db: Session) -> None:
    sign_up(web, "hash@example.org", PASSWORD)
    stored = db.scalar(select(User.password_hash))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)


@pytest.mark.parametrize(
    ("email", "password", "confirmation", "message"),
    [
        ("", PASSWORD, PASSWORD, "Enter your email address."),
        ("not-an-address", PASSWORD, PASSWORD, "Enter an email address like name@example.org."),
        ("two@@example.org", PASSWORD, PASSWORD, "Enter an email address like name@example.org."),
        ("nodot@example", PASSWORD, PASSWORD, "Enter an email address like name@example.org."),
        ("short@example.org", "eleven char", "eleven char", "Use a password of at least 12 characters."),
        ("long@example.org", "x" * 1025, "x" * 1025, "Use a password of at most 1024 characters."),
        ("differ@example.org", PASSWORD, PASSWORD + "!", "The two passwords differ; type the same password twice."),
    ],
)
def test_each_sign_up_failure_says_what_to_change(web: FlaskClient, db: Session, email: str, password: str,
                                                  confirmation: str, message: str) -> None:  # fmt: skip
    response = sign_up(web, email, password, confirmation)
    assert response.status_code == 400
    assert _message(response) == message
    assert db.scalar(select(func.count()).select_from(User)) == 0
    assert not _signed_in(web)


def test_a_registered_address_is_refused_without_saying_more(app: Flask, web: FlaskClient, db: Session) -> None:
    sign_up(web, "taken@example.org", PASSWORD)
    other = app.test_client()
    response = sign_up(other, "TAKEN@example.org", "another long password")
    assert response.status_code == 400
    assert _message(response) == "This email address cannot be used to sign up. If you already have an account, sign in instead."
    assert db.scalar(select(func.count()).select_from(User)) == 1
    assert not _signed_in(other)


# Sign in and out


def test_sign_in_and_sign_out(app: Flask, web: FlaskClient) -> None:
    sign_up(app.test_client(), "in@example.org", PASSWORD)
    assert web.get("/").headers["Location"].startswith("/auth/sign-in?next=")
    response = sign_in(web, "IN@example.org", PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert _signed_in(web)
    out = web.post("/auth/sign-out", data={"csrf_token": csrf_token(web, "/")})
    assert out.status_code == 302 and out.headers["Location"] == "/auth/sign-in"
    assert "You are signed out." in web.get("/auth/sign-in").text
    assert not _signed_in(web)


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(app: Flask) -> None:
    """Same status, same message, same page and same cookies: nothing tells whether the account exists."""
    sign_up(app.test_client(), "known@example.org", PASSWORD)
    wrong_client, unknown_client = app.test_client(), app.test_client()  # each with the same history
    wrong = sign_in(wrong_client, "known@example.org", "not the password at all")
    unknown = sign_in(unknown_client, "nobody@example.org", "not the password at all")
    assert wrong.status_code == unknown.status_code == 400
    assert _message(wrong) == _message(unknown) == SIGN_IN_FAILED

    def page(response) -> str:  # noqa: ANN001 (everything but the values the form echoes back)
        text = response.get_data(as_text=True).replace("known@example.org", "").replace("nobody@example.org", "")
        return re.sub(r'name="csrf_token" value="[^"]+"', "", text)

    assert page(wrong) == page(unknown)
    def cookie_names(response) -> list[str]:  # noqa: ANN001 (a test response)
        return [cookie.split("=")[0] for cookie in response.headers.getlist("Set-Cookie")]

    assert cookie_names(wrong) == cookie_names(unknown)
    assert not _signed_in(wrong_client) and not _signed_in(unknown_client)


def test_after_sign_in_only_a_path_on_this_site_is_followed(app: Flask) -> None:
    sign_up(app.test_client(), "next@example.org", PASSWORD)
    for target, expected in (("/?page=2", "/?page=2"), ("https://evil.example/", "/"), ("//evil.example/", "/"),
                             ("/\\evil.example", "/")):  # fmt: skip
        web = app.test_client()
        token = csrf_token(web, "/auth/sign-in")
        response = web.post(f"/auth/sign-in?next={target}", data={"csrf_token": token, "email": "next@example.org",
                                                                    "password": PASSWORD})  # fmt: skip
        assert response.headers["Location"] == expected, target


# CSRF and cookies


@pytest.mark.parametrize("path", ["/auth/sign-in", "/auth/sign-up"])
def test_a_form_without_its_csrf_token_is_refused(web: FlaskClient, db: Session, path: str) -> None:
    form = {"email": "csrf@example.org", "password": PASSWORD, "confirmation": PASSWORD}
    response = web.post(path, data=form)
    assert response.status_code == 400
    assert _message(response) == CSRF_FAILED
    response = web.post(path, data={**form, "csrf_token": "forged"})
    assert response.status_code == 400
    assert db.scalar(select(func.count()).select_from(User)) == 0


def test_sign_out_without_its_csrf_token_signs_nobody_out(web: FlaskClient) -> None:
    sign_up(web, "stay@example.org", PASSWORD)
    assert web.post("/auth/sign-out").status_code == 400
    assert _signed_in(web)


def _session_cookie(response) -> str:  # noqa: ANN001 (a test response)
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("emofuse_session=")]
    assert len(cookies) == 1, response.headers.getlist("Set-Cookie")
    return cookies[0]


def test_the_session_cookie_is_httponly_and_samesite(web: FlaskClient) -> None:
    cookie = _session_cookie(sign_up(web, "cookie@example.org", PASSWORD))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP in development: a Secure cookie would never come back


@pytest.mark.parametrize(
    ("settings", "base_url"),
    [({"env": "production", "secret_key": SECRET_KEY}, "http://localhost"), ({"https": True}, "http://localhost"),
     ({}, "https://localhost")],  # fmt: skip
    ids=["production", "EMOFUSE_HTTPS", "https-request"],
)
def test_the_session_cookie_is_secure_in_production_and_over_https(tmp_path: Path, settings: dict, base_url: str) -> None:
    web = gateway_app(tmp_path, **settings).test_client()
    cookie = _session_cookie(sign_up(web, "secure@example.org", PASSWORD, base_url=base_url))
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


# Rate limits


def test_sign_in_is_limited_per_account(tmp_path: Path) -> None:
    app = gateway_app(tmp_path, signin_max_per_account=3)
    sign_up(app.test_client(), "target@example.org", PASSWORD)
    sign_up(app.test_client(), "bystander@example.org", PASSWORD)
    web = app.test_client()
    assert [sign_in(web, "target@example.org", f"guess {n}").status_code for n in range(3)] == [400] * 3
    refused = sign_in(web, "target@example.org", PASSWORD)  # even the right password: the limit comes first
    assert refused.status_code == 429
    assert _message(refused) == "Too many sign-in attempts. Try again in 15 minutes."
    assert 14 * 60 < int(refused.headers["Retry-After"]) <= 15 * 60
    assert not _signed_in(web)
    assert sign_in(app.test_client(), "bystander@example.org", PASSWORD).status_code == 302  # other accounts are not locked


def test_sign_in_is_limited_per_client_address(tmp_path: Path) -> None:
    app = gateway_app(tmp_path, signin_max_per_address=3)
    sign_up(app.test_client(), "real@example.org", PASSWORD)
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert [sign_in(attacker, f"user{n}@example.org", "guess").status_code for n in range(3)] == [400] * 3
    assert sign_in(attacker, "real@example.org", PASSWORD).status_code == 429
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "198.51.100.4"
    assert sign_in(elsewhere, "real@example.org", PASSWORD).status_code == 302


def test_an_unknown_account_is_limited_like_a_real_one(tmp_path: Path) -> None:
    app = gateway_app(tmp_path, signin_max_per_account=2)
    sign_up(app.test_client(), "exists@example.org", PASSWORD)
    answers = []
    for email in ("exists@example.org", "ghost@example.org"):
        web = app.test_client()
        for _ in range(2):
            sign_in(web, email, "guess")
        refused = sign_in(web, email, "guess")
        answers.append((refused.status_code, _message(refused)))
    assert answers[0] == answers[1] == (429, "Too many sign-in attempts. Try again in 15 minutes.")


def _failed_twice(tmp_path: Path, email: str, *, most: int) -> tuple[Flask, FlaskClient]:
    """An app allowing ``most`` failed sign-ins per account, and a client that failed twice as ``email``."""
    app = gateway_app(tmp_path, signin_max_per_account=most)
    sign_up(app.test_client(), email, PASSWORD)
    web = app.test_client()
    for _ in range(2):
        sign_in(web, email, "typo")
    return app, web


def test_signing_in_clears_the_accounts_failures(tmp_path: Path) -> None:
    _, web = _failed_twice(tmp_path, "typo@example.org", most=3)
    assert sign_in(web, "typo@example.org", PASSWORD).status_code == 302
    web.post("/auth/sign-out", data={"csrf_token": csrf_token(web, "/")})
    assert [sign_in(web, "typo@example.org", "typo").status_code for _ in range(2)] == [400, 400]
    assert sign_in(web, "typo@example.org", PASSWORD).status_code == 302


def test_old_attempts_fall_out_of_the_window(tmp_path: Path) -> None:
    app, web = _failed_twice(tmp_path, "patient@example.org", most=2)
    assert sign_in(web, "patient@example.org", PASSWORD).status_code == 429
    with Session(engine_of(app)) as db:
        for attempt in db.scalars(select(AuthAttempt)):
            attempt.at = utcnow().replace(year=2000)  # as if the attempts were made long ago
        db.commit()
    assert sign_in(web, "patient@example.org", PASSWORD).status_code == 302


def test_sign_up_is_limited_per_client_address(tmp_path: Path) -> None:
    app = gateway_app(tmp_path, signup_max_per_address=2)
    web = app.test_client()
    assert sign_up(web, "bad address", PASSWORD).status_code == 400
    assert sign_up(web, "one@example.org", PASSWORD).status_code == 302
    refused = sign_up(app.test_client(), "two@example.org", PASSWORD)
    assert refused.status_code == 429 and _message(refused) == "Too many sign-up attempts. Try again in 60 minutes."
    assert "Retry-After" in refused.headers


# History belongs to its user


def test_the_history_lists_only_the_signed_in_users_analyses(app: Flask, db: Session) -> None:
    first, second = app.test_client(), app.test_client()
    sign_up(first, "first@example.org", PASSWORD)
    sign_up(second, "second@example.org", PASSWORD)
    storage = current.storage(app)
    for email, count in (("first@example.org", 23), ("second@example.org", 1)):
        user = db.scalar(select(User).where(User.email == email))
        recording = Recording(name=f"{email}.mp4", kind="video", media_type="video/mp4", size_bytes=1,
                              stored_name=storage.new_name(".mp4"))  # fmt: skip
        user.recordings.append(recording)
        for number in range(count):
            recording.analyses.append(Analysis(name=f"{email.split('@')[0]}-{number:02d}", status=AnalysisStatus.DONE))
        db.commit()

    page_one, page_two = first.get("/").text, first.get("/?page=2").text
    assert "first-22" in page_one and "first-03" in page_one and "first-02" not in page_one  # newest first, 20 a page
    assert "Page 1 of 2" in page_one and "first-02" in page_two and "first-00" in page_two and "first-03" not in page_two
    assert "second-" not in page_one + page_two
    theirs = second.get("/").text
    assert "second-00" in theirs and "first-" not in theirs


# API tokens


def _user(db: Session, web: FlaskClient, email: str = "api@example.org") -> User:
    sign_up(web, email, PASSWORD)
    return db.scalar(select(User).where(User.email == email))


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_a_token_opens_the_api_and_is_kept_only_as_its_sha256(web: FlaskClient, db: Session) -> None:
    user = _user(db, web)
    token, secret = create_token(db, user, "script")
    assert secret.startswith("emo_") and len(secret) >= 40
    stored = db.get(ApiToken, token.id)
    assert stored.digest == hashlib.sha256(secret.encode()).hexdigest() and secret not in (stored.prefix, stored.name)
    api = web.application.test_client()  # no session cookie: the token alone
    response = api.get("/api/v1/me", headers=_bearer(secret))
    assert response.status_code == 200
    assert response.json["email"] == "api@example.org" and response.json["token"]["name"] == "script"
    db.expire_all()
    assert db.get(ApiToken, token.id).last_used_at is not None


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "authentication_required"), ({"Authorization": "Bearer"}, "invalid_token"),
     ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_token"), ({"Authorization": "Bearer emo_unknown"}, "invalid_token"),
     ({"Authorization": "Bearer " + "emo_" + "x" * 500}, "invalid_token")],  # fmt: skip
    ids=["none", "empty", "basic", "unknown", "oversized"],
)
def test_the_api_refuses_a_request_without_a_valid_token(web: FlaskClient, headers: dict[str, str], code: str) -> None:
    response = web.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.json == {"error": {"code": code, "message": response.json["error"]["message"]}}
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="emofuse"')


def test_a_session_cookie_does_not_open_the_api(web: FlaskClient, db: Session) -> None:
    _user(db, web)
    assert _signed_in(web)
    assert web.get("/api/v1/me").status_code == 401


def test_a_revoked_token_gets_401(web: FlaskClient, db: Session) -> None:
    token, secret = create_token(db, _user(db, web), "old")
    assert web.get("/api/v1/me", headers=_bearer(secret)).status_code == 200
    revoke_token(db, token)
    response = web.get("/api/v1/me", headers=_bearer(secret))
    assert response.status_code == 401 and response.json["error"]["code"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_the_token_of_a_deleted_user_gets_401(app: Flask, web: FlaskClient, db: Session) -> None:
    user = _user(db, web)
    _, secret = create_token(db, user, "gone")
    delete_user(db, current.storage(app), user)
    assert web.get("/api/v1/me", headers=_bearer(secret)).status_code == 401
    assert not _signed_in(web)  # the session of a deleted account opens nothing either


def test_api_errors_are_json_with_a_code(web: FlaskClient) -> None:
    missing = web.get("/api/v1/no-such-route")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    wrong_method = web.post("/api/v1/me")
    assert wrong_method.status_code == 405 and wrong_method.json["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong_method.headers["Allow"]
    page = web.get("/no-such-page")
    assert page.status_code == 404 and page.mimetype == "text/html"
