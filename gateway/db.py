"""The database: one engine per application, one session per request, the schema made by Alembic.

SQLite by default, PostgreSQL (psycopg 3) when ``DATABASE_URL`` says so::

    engine = make_engine("postgresql://emofuse@localhost/emofuse")
    upgrade(engine)                       # alembic upgrade head, as the app does at start

Views take the request's session from :func:`get_session`; it is closed (and whatever was not
committed rolled back) when the request ends.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask, current_app, g
from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url, text
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "MIGRATIONS",
    "current_revision",
    "downgrade",
    "engine_of",
    "get_session",
    "head_revision",
    "init_app",
    "make_engine",
    "upgrade",
]

MIGRATIONS = Path(__file__).with_name("migrations")
_EXTENSION = "emofuse.db"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; ``postgresql://`` URLs use psycopg 3.

    A SQLite file is opened read-write but never created (:func:`upgrade` creates it): a lost
    database file is an error to report, not an empty database to carry on with. Its connections
    enforce foreign keys (so deletes cascade), wait for a writer instead of failing at once, write
    ahead (WAL) and are pooled: a job's progress write costs a transaction, not opening the file
    again. A pooled connection whose file was removed or replaced is dropped before it is used.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        # libpq waits forever for a host that does not answer; a probe or a request must not.
        connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 5}
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    if parsed.database in (None, "", ":memory:") or parsed.database.startswith("file:"):
        return create_engine(parsed)  # in memory, or a URI the operator wrote: taken as it is
    path = Path(parsed.database).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    uri = parsed.set(database=f"file:{quote(str(path))}", query={**parsed.query, "mode": "rw", "uri": "true"})
    engine = create_engine(uri)
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    _drop_when_replaced(engine, path)
    return engine


def _sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite engine that :func:`make_engine` made; None for any other."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or not database.startswith("file:") or engine.url.query.get("mode") != "rw":
        return None
    return Path(unquote(database.removeprefix("file:")))


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # The sqlite3 module opens transactions only before INSERT and UPDATE, so a failed migration
    # would leave half a schema: SQLAlchemy emits BEGIN itself instead (its documented recipe).
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")  # off by default in SQLite: no cascades without it
    cursor.execute("PRAGMA busy_timeout = 5000")  # gunicorn workers write in turn
    cursor.execute("PRAGMA journal_mode = WAL")  # readers go on while one worker writes (set in the file, for every process)
    # With WAL, a commit no longer waits for the disk; the database stays whole through a crash, and
    # only a power cut may lose the last commits (SQLite's documented trade of this setting).
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _drop_when_replaced(engine: Engine, path: Path) -> None:
    """Make ``engine``'s pool drop a connection whose file is no longer at ``path`` (removed, or
    restored from a backup): it would go on answering from the old file. One ``stat`` a checkout."""

    def opened(_connection: Any, record: Any) -> None:
        record.info["file"] = _identity(path)

    def checked_out(_connection: Any, record: Any, _proxy: Any) -> None:
        if _identity(path) != record.info.get("file"):
            raise exc.DisconnectionError(f"{path} was removed or replaced")  # the pool opens it again, or fails to

    event.listen(engine, "connect", opened)
    event.listen(engine, "checkout", checked_out)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def _alembic_config(connection: Connection) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection  # env.py migrates on it: no URL escaping, no second engine
    return config


def head_revision() -> str:
    """The newest revision under ``gateway/migrations/versions``."""
    script = ScriptDirectory(str(MIGRATIONS))
    return script.get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """``alembic upgrade head`` on ``engine``, one process at a time.

    gunicorn workers all start the app at once: on PostgreSQL an advisory lock lets one migrate
    while the others wait, on SQLite a lock file beside the database does the same.
    """
    with _migration_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(7406170102)"))  # any fixed number, the same everywhere
        command.upgrade(_alembic_config(connection), revision)


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """On a SQLite file, hold a lock beside it, and create the file (the app's engine never does)."""
    file = _sqlite_file(engine)
    if file is None:
        yield
        return
    with open(file.with_name(file.name + ".migrate.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            file.touch(exist_ok=True)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def init_app(app: Flask, engine: Engine) -> None:
    """Give ``app`` its engine and sessions, and close each request's session when it ends."""
    app.extensions[_EXTENSION] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)


def engine_of(app: Flask) -> Engine:
    return app.extensions[_EXTENSION].kw["bind"]


def get_session() -> Session:
    """The current request's session, opened on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions[_EXTENSION]()
    return g.db_session


def _close_session(_error: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def downgrade(engine: Engine, revision: str) -> None:
    """``alembic downgrade REVISION`` on ``engine`` (``"base"``: drop every table the migrations made)."""
    with _migration_lock(engine), engine.begin() as connection:
        command.downgrade(_alembic_config(connection), revision)
