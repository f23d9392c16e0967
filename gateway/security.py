"""Browser-facing protections: CSRF on every form, cookie flags, response headers, trusted proxies.

- **CSRF**: Flask-WTF's ``CSRFProtect`` checks every POST, PUT, PATCH and DELETE outside
  ``/api/v1/`` (which authenticates by bearer token, never by cookie, so a forged cross-site
  request carries nothing that would authenticate it).
- **Cookies**: the session cookie is HttpOnly and SameSite=Lax always, and Secure in production,
  with ``EMOFUSE_HTTPS=1``, or whenever the request itself came over HTTPS.
- **Headers**: no framing, no MIME sniffing, no referrer sent to other sites, and a content
  security policy that allows this site's own styles and scripts only.
- **Proxies**: with ``EMOFUSE_PROXY_HOPS=N`` the last N hops' ``X-Forwarded-For``, ``-Proto`` and
  ``-Host`` are believed, so rate limits count the client's address, not the proxy's.
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Config

__all__ = ["csrf", "init_app"]

csrf = CSRFProtect()

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",  # fmt: skip
}


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure on HTTPS requests even when not configured so."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or request.is_secure


def init_app(app: Flask, config: Config) -> None:
    app.config.update(
        SESSION_COOKIE_NAME="emofuse_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=config.secure_cookies,
        PREFERRED_URL_SCHEME="https" if config.secure_cookies else "http",
    )
    app.session_interface = _SessionInterface()
    csrf.init_app(app)
    app.after_request(_headers)
    if config.proxy_hops:
        hops = config.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]


def _headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response
