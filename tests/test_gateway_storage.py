"""The gateway's storage: migrations, ownership and cascades, users' files, and the settings.

The database tests run twice: on SQLite in tmp_path and on a real PostgreSQL started on the
loopback (skipped, saying why, where its binaries are absent). Nothing replaces the database.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, event, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from gateway import create_app
from gateway.accounts import create_user, delete_user
from gateway.config import SECRET_KEY_FILE, Config
from gateway.db import current_revision, downgrade, head_revision, make_engine, upgrade
from gateway.errors import ConfigError, StorageError
from gateway.history import history_page
from gateway.models import (
    Analysis,
    AnalysisStatus,
    ApiToken,
    Base,
    Job,
    Recording,
    User,
    Verdict,
    Window,
)
from gateway.storage import Storage
from gateway.tokens import create_token

PASSWORD = "correct horse battery"
OWNED = (ApiToken, Recording, Analysis, Window, Verdict, Job)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _user_with_everything(session: Session, storage: Storage, email: str, analyses: int = 1) -> User:
    """A user with a token, a recording on disk, and analyses that each have a window, a verdict and a job."""
    user = create_user(session, email, PASSWORD)
    create_token(session, user, "laptop")
    name = storage.new_name(".mp4")
    storage.path(user.id, name).write_bytes(b"not really a video")
    recording = Recording(name=f"{email}.mp4", kind="video", media_type="video/mp4", size_bytes=18, stored_name=name)
    user.recordings.append(recording)
    for number in range(analyses):
        analysis = Analysis(name=f"{email} #{number}", mode="av", status=AnalysisStatus.DONE)
        recording.analyses.append(analysis)
        analysis.windows.append(Window(index=0, start_s=0.0, end_s=3.6, status="ok", label="happy",
                                       probabilities={"happy": 0.9, "sad": 0.1}, face_frames=15, frames=15, voice=True,
                                       weights={"face_expression": 0.6, "speech_emotion": 0.4}))  # fmt: skip
        analysis.verdicts.append(Verdict(label="happy", confidence=0.9, probabilities={"happy": 0.9, "sad": 0.1}, windows=1))
        analysis.jobs.append(Job())
    session.commit()
    return user


def _owned_counts(session: Session, user_id: int) -> dict[str, int]:
    return {kind.__name__: session.scalar(select(func.count()).select_from(kind).where(kind.user_id == user_id)) for kind in OWNED}


# Migrations


def test_migrations_make_exactly_the_models_schema(engine: Engine) -> None:
    """`alembic upgrade head` gives the schema the models describe: no table, column, index,
    key or type differs (autogenerate finds nothing to write)."""
    assert current_revision(engine) == head_revision()  # one head: a second branch of revisions fails here
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert differences == []


def test_migrations_go_down_to_nothing_and_up_again(engine: Engine) -> None:
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(engine) is None
    upgrade(engine)
    assert {"users", "api_tokens", "recordings", "analyses", "windows", "verdicts", "jobs", "auth_attempts"} <= set(
        inspect(engine).get_table_names()
    )


def test_upgrading_twice_changes_nothing(engine: Engine, session: Session) -> None:
    create_user(session, "kept@example.org", PASSWORD)
    upgrade(engine)
    assert session.scalar(select(func.count()).select_from(User)) == 1


def test_sqlite_connections_are_pooled_write_ahead_and_dropped_with_their_file(tmp_path: Path) -> None:
    """Writes reuse a pooled connection (a job writes its progress on one); once the file is gone,
    no pooled connection answers from it."""
    file = tmp_path / "db" / "emofuse.sqlite"
    engine = make_engine(f"sqlite:///{file}")
    upgrade(engine)
    opened: list[object] = []
    event.listen(engine, "connect", lambda connection, _record: opened.append(connection))
    for number in range(3):
        with Session(engine) as session:
            create_user(session, f"writer{number}@example.org", PASSWORD)  # commits
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL: a commit does not wait for the disk
    assert opened == []  # the connection the migrations used, every time
    for leftover in file.parent.glob("emofuse.sqlite*"):
        leftover.unlink()  # the database, its WAL and its shared memory, as when the volume is lost
    with pytest.raises(OperationalError), engine.connect():
        pass
    engine.dispose()


# Ownership


def test_deleting_a_user_deletes_all_of_theirs_and_nothing_else(session: Session, tmp_path: Path) -> None:
    storage = Storage(tmp_path / "users")
    first = _user_with_everything(session, storage, "first@example.org", analyses=2)
    second = _user_with_everything(session, storage, "second@example.org")
    first_id, first_dir = first.id, storage.user_dir(first.id)
    assert _owned_counts(session, first_id) == {"ApiToken": 1, "Recording": 1, "Analysis": 2, "Window": 2, "Verdict": 2, "Job": 2}

    session.expunge_all()  # a fresh session knows none of the records: the database's cascades must delete them
    delete_user(session, storage, session.get(User, first_id))
    session.expunge_all()  # read what the database holds now, not what the session remembers

    assert session.get(User, first_id) is None
    assert _owned_counts(session, first_id) == dict.fromkeys((kind.__name__ for kind in OWNED), 0)
    assert not first_dir.exists()
    assert _owned_counts(session, second.id) == {"ApiToken": 1, "Recording": 1, "Analysis": 1, "Window": 1, "Verdict": 1, "Job": 1}
    assert len(list(storage.user_dir(second.id).iterdir())) == 1


def test_the_database_refuses_a_child_owned_by_someone_else(session: Session, tmp_path: Path) -> None:
    """A window must have its analysis's owner: the (analysis_id, user_id) key refuses another."""
    storage = Storage(tmp_path / "users")
    owner = _user_with_everything(session, storage, "owner@example.org")
    intruder = create_user(session, "intruder@example.org", PASSWORD)
    analysis_id = session.scalar(select(Analysis.id).where(Analysis.user_id == owner.id))
    with pytest.raises(IntegrityError):
        session.execute(insert(Window).values(user_id=intruder.id, analysis_id=analysis_id, index=7, start_s=0.0,
                                              end_s=3.6, status="ok", face_frames=0, frames=0, weights={}))  # fmt: skip
        session.flush()
    session.rollback()


def test_the_database_refuses_an_unknown_status(session: Session, tmp_path: Path) -> None:
    user = _user_with_everything(session, Storage(tmp_path / "users"), "status@example.org")
    with pytest.raises(IntegrityError):
        session.execute(text("UPDATE analyses SET status = 'exploded' WHERE user_id = :user"), {"user": user.id})
        session.flush()
    session.rollback()


def test_emails_are_unique_whatever_their_case(session: Session) -> None:
    create_user(session, "Case@Example.org", PASSWORD)
    session.add(User(email="case@example.org", password_hash="x"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_times_come_back_as_utc(session: Session) -> None:
    user = create_user(session, "time@example.org", PASSWORD)
    written = user.created_at
    session.expunge_all()
    read = session.get(User, user.id).created_at
    assert read.tzinfo is not None and read.utcoffset() == timezone.utc.utcoffset(None)
    assert read == written


def test_history_pages_hold_only_the_users_analyses_newest_first(session: Session, tmp_path: Path) -> None:
    storage = Storage(tmp_path / "users")
    mine = _user_with_everything(session, storage, "mine@example.org", analyses=5)
    theirs = _user_with_everything(session, storage, "theirs@example.org", analyses=3)

    pages = [history_page(session, mine.id, number, size=2) for number in (1, 2, 3)]
    names = [[analysis.name for analysis in page.analyses] for page in pages]
    assert names == [["mine@example.org #4", "mine@example.org #3"], ["mine@example.org #2", "mine@example.org #1"],
                     ["mine@example.org #0"]]  # fmt: skip
    assert [(page.total, page.pages, page.has_previous, page.has_next) for page in pages] == [
        (5, 3, False, True), (5, 3, True, True), (5, 3, True, False),
    ]  # fmt: skip
    assert history_page(session, mine.id, 99, size=2).number == 3  # past the end: the last page
    assert {a.user_id for a in history_page(session, theirs.id, 1, size=10).analyses} == {theirs.id}
    assert history_page(session, theirs.id, 1, size=10).total == 3


# Users' files


def test_stored_names_are_made_here_and_nothing_else_is_a_path(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "users")
    name = storage.new_name(".mp4")
    assert len(name) == 36 and name.endswith(".mp4") and storage.new_name(".mp4") != name
    assert storage.path(3, name) == tmp_path / "users" / "3" / name
    for hostile in ("../../etc/passwd", "/etc/passwd", "a/b.mp4", "video.mp4", name + "/..", name.upper(), "", "\x00" + name):
        with pytest.raises(StorageError):
            storage.path(3, hostile)
    for suffix in ("mp4", ".MP4", "./x", ".m p4", "..", ".a" * 5):
        with pytest.raises(StorageError):
            storage.new_name(suffix)
    for user_id in (0, -1, True, "3"):
        with pytest.raises(StorageError):
            storage.user_dir(user_id)  # type: ignore[arg-type]


def test_a_users_directory_is_private_and_removed_whole(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "users")
    directory = storage.user_dir(5)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    (directory / storage.new_name(".wav")).write_bytes(b"x")
    storage.remove_user(5)
    assert not directory.exists()


def test_storage_check_fails_when_the_root_cannot_be_a_directory(tmp_path: Path) -> None:
    Storage(tmp_path / "users").check()
    (tmp_path / "blocked").write_text("a file where the directory should be")
    with pytest.raises(StorageError, match="cannot be written"):
        Storage(tmp_path / "blocked").check()


# Settings


def test_settings_default_under_the_data_dir(tmp_path: Path) -> None:
    config = Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path / "data")})
    assert config.database_url == f"sqlite:///{tmp_path / 'data' / 'emofuse.sqlite'}"
    assert config.storage_dir == tmp_path / "data" / "users"
    assert (config.triton_url, config.redis_url, config.production, config.secure_cookies) == (None, None, False, False)
    assert config.max_upload_bytes == 2048 * 2**20


def test_settings_read_from_the_environment(tmp_path: Path) -> None:
    config = Config.from_env({
        "EMOFUSE_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://db.internal/emofuse", "TRITON_URL": "triton:8001",
        "REDIS_URL": "redis://queue:6379/0", "EMOFUSE_MAX_UPLOAD_MB": "10", "EMOFUSE_MAX_DURATION_S": "60",
        "EMOFUSE_HTTPS": "1", "EMOFUSE_PROXY_HOPS": "1", "EMOFUSE_MIGRATE": "0",
    })  # fmt: skip
    assert (config.database_url, config.triton_url, config.redis_url) == ("postgresql://db.internal/emofuse", "triton:8001", "redis://queue:6379/0")
    limits = (config.max_upload_bytes, config.max_duration_s, config.https, config.proxy_hops, config.migrate)
    assert limits == (10 * 2**20, 60.0, True, 1, False)
    assert config.secure_cookies


def test_the_secret_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    first = Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path)})
    key_file = tmp_path / SECRET_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32 and key_file.read_text().strip() == first.secret_key
    assert Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path)}).secret_key == first.secret_key
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_KEY_FILE]  # no temporary file left behind

    key_file.chmod(0o644)
    Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path)})
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EMOFUSE_ENV": "production"}, "SECRET_KEY must be set when EMOFUSE_ENV=production"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY has 5 characters; use at least 32"),
        ({"EMOFUSE_ENV": "staging"}, "EMOFUSE_ENV is 'staging'"),
        ({"EMOFUSE_MAX_UPLOAD_MB": "lots"}, "EMOFUSE_MAX_UPLOAD_MB is 'lots'; set it to a number"),
        ({"EMOFUSE_MAX_UPLOAD_MB": "0"}, "EMOFUSE_MAX_UPLOAD_MB is '0'; it must be at least 1"),
        ({"EMOFUSE_HTTPS": "maybe"}, "EMOFUSE_HTTPS is 'maybe'; set it to 1 or 0"),
    ],
)
def test_bad_settings_say_what_to_fix(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path), **environ})


def test_production_never_makes_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path), "EMOFUSE_ENV": "production"})
    assert not (tmp_path / SECRET_KEY_FILE).exists()


def test_production_uses_the_given_key_and_writes_none(tmp_path: Path) -> None:
    key = os.urandom(32).hex()
    config = Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path), "EMOFUSE_ENV": "production", "SECRET_KEY": key})
    assert (config.secret_key, config.production, config.secure_cookies) == (key, True, True)
    assert not (tmp_path / SECRET_KEY_FILE).exists()


def test_the_app_applies_the_upload_limit_and_migrates(tmp_path: Path) -> None:
    config = Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path), "EMOFUSE_MAX_UPLOAD_MB": "3"})
    app = create_app(config)
    assert current_revision(make_engine(config.database_url)) == head_revision()
    body = "email=" + "x" * (3 * 2**20)
    response = app.test_client().post("/auth/sign-in", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413


def test_the_app_can_leave_migrations_to_the_operator(tmp_path: Path) -> None:
    config = dataclasses.replace(Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path)}), migrate=False)
    create_app(config)
    assert not (tmp_path / "emofuse.sqlite").exists()  # the app made no database: the operator migrates
    upgrade(make_engine(config.database_url))
    assert current_revision(make_engine(config.database_url)) == head_revision()
