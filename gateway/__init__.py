"""The web application: pages and the HTTP API over the serving library (:mod:`serving`).

It reaches the models only through Triton, via :mod:`serving`; it never imports torch, ``models``,
``training`` or ``export`` (checked by import-linter, see pyproject.toml). Run it with gunicorn::

    gunicorn -c gateway/gunicorn_conf.py     # gateway:create_app(), settings from the environment: gateway.config

One module per concern: ``auth`` (sign up, in, out), ``history`` (the home page), ``analyses``
(upload, progress, result, compare pages) and ``api_analyses`` (the same under ``/api/v1/``), ``sample``
(the server's sample video in one click), ``settings``
(password, API tokens, retention, export, deleting the account), ``about`` (what the models can and
cannot tell), ``health`` (``/healthz``, ``/readyz``), ``metrics`` (``/metrics``), ``api``
(``/api/v1/``, bearer tokens), ``openapi`` (the API's description at ``/api/v1/openapi.json``);
``models`` and ``db`` (the database and its migrations), ``storage`` (users' files), ``accounts``,
``sessions``, ``tokens``, ``limits``, ``retention`` and ``archive`` (the rules behind the pages),
``uploads`` and ``media`` (receiving and checking files), ``jobs`` and ``queue`` (the background
analyses), ``records``, ``results`` and ``plots`` (what they produce), ``security``, ``logs`` and
``failures`` (what every request gets).
"""

from __future__ import annotations

from flask import Flask

from . import about, analyses, api, auth, current, db, failures, health, history, logs, metrics, openapi, sample, security, settings
from .config import Config

__all__ = ["Config", "create_app"]


def create_app(config: Config | None = None) -> Flask:
    """Create and configure an instance of the gateway; ``None`` reads the settings from the environment.

    Applies the database migrations first unless ``config.migrate`` is off, so a fresh data
    directory serves at once.
    """
    config = config or Config.from_env()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=config.secret_key, MAX_CONTENT_LENGTH=config.max_upload_bytes)
    engine = db.make_engine(config.database_url)
    if config.migrate:
        db.upgrade(engine)
    logs.init_app(app)  # first: its request id must exist before any other check can refuse a request
    metrics.init_app(app)  # next: a request refused by any later check is still counted
    current.init_app(app, config)
    db.init_app(app, engine)
    security.init_app(app, config)
    failures.init_app(app)
    auth.init_app(app)
    analyses.init_app(app)  # upload, progress, results, compare, and their API routes
    sample.init_app(app)  # the server's sample video, one click away for a user with no analyses
    app.register_blueprint(history.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    security.csrf.exempt(api.bp)
    app.register_blueprint(openapi.bp)  # /api/v1/openapi.json, for anyone
    app.register_blueprint(settings.bp)
    app.register_blueprint(settings.api_bp)
    security.csrf.exempt(settings.api_bp)  # bearer tokens, never cookies, as for api.bp
    app.register_blueprint(about.bp)
    return app
