"""The gateway's records: who uses it, what they uploaded, and what the models said about it.

Every record belongs to a user. Each table holds ``user_id`` with a foreign key to ``users``
(``ON DELETE CASCADE``), and a child refers to its parent by ``(parent_id, user_id)``, so the
database itself refuses an analysis, window, verdict or job whose owner differs from its parent's::

    User ─┬─ ApiToken
          └─ Recording ── Analysis ─┬─ Window     one per 3.6 s window, in time order
                                    ├─ Verdict    the whole recording's label, per source
                                    └─ Job        the background work that fills the analysis

Deleting a user deletes everything of theirs in the database (their files: :mod:`gateway.storage`).
``AuthAttempt`` alone belongs to nobody: it counts sign-in and sign-up attempts by address and by
the hash of the email tried, which may name no account.

The schema is made by the Alembic migrations in ``gateway/migrations/``, never by ``create_all``;
``tests/test_gateway_storage.py`` checks that the two agree.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timezone
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column, relationship

__all__ = [
    "Analysis",
    "AnalysisStatus",
    "ApiToken",
    "AuthAttempt",
    "Base",
    "Job",
    "JobState",
    "Recording",
    "User",
    "Verdict",
    "Window",
    "new_session_token",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_session_token() -> str:
    return secrets.token_hex(16)


class UTCDateTime(TypeDecorator[datetime]):
    """A moment in UTC: ``timestamptz`` on PostgreSQL; on SQLite, which keeps no zone, stored as
    UTC and read back as aware datetimes, so both databases give the same values."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"{value!r} has no time zone; pass an aware datetime (gateway.models.utcnow()).")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


JSONDocument = JSON().with_variant(JSONB(), "postgresql")

# Fixed constraint names: migrations can then name what they alter, on SQLite and PostgreSQL alike.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONDocument, list[str]: JSONDocument}


def _owner() -> Mapped[int]:
    return mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


def _states(kind: type[enum.Enum], name: str) -> Enum:
    """A column of ``kind``'s values, as text with a CHECK constraint (the same on both databases)."""
    return Enum(kind, name=name, native_enum=False, create_constraint=True, length=16,
                values_callable=lambda members: [member.value for member in members])  # fmt: skip


class AnalysisStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"  # leased by one worker until lease_until: never run twice at once
    DONE = "done"
    FAILED = "failed"


class User(UserMixin, Base):
    """A person who signs in with an email address and a password (argon2id hash)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # lower-cased: see gateway.accounts
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Part of every session's id (get_id): a new one, made when the password changes, ends the others.
    session_token: Mapped[str] = mapped_column(String(32), default=new_session_token)
    retention_days: Mapped[int | None]  # uploads older than this are deleted (gateway.retention); None: kept

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan", passive_deletes=True)
    recordings: Mapped[list[Recording]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                       passive_deletes=True)  # fmt: skip

    def get_id(self) -> str:
        """What Flask-Login keeps in the session cookie: ``ID:SESSION_TOKEN`` (see :mod:`gateway.sessions`)."""
        return f"{self.id}:{self.session_token}"


class ApiToken(Base):
    """A personal API token: only the SHA-256 of the secret is kept; the secret is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = _owner()
    name: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of the whole token
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to recognise it in a list
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Recording(Base):
    """An uploaded file, stored under a generated name in its owner's directory."""

    __tablename__ = "recordings"
    __table_args__ = (
        UniqueConstraint("id", "user_id"),  # the target of the children's (id, user_id) keys
        Index(None, "user_id", "upload_key", unique=True),  # a form sent twice makes one recording
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = _owner()
    name: Mapped[str] = mapped_column(String(255))  # what the uploader called it: shown, never a path
    kind: Mapped[str] = mapped_column(String(16))  # video, audio, image, trial: found from the content
    media_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    duration_s: Mapped[float | None]
    stored_name: Mapped[str] = mapped_column(String(64))  # made by gateway.storage
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sound_stored_name: Mapped[str | None] = mapped_column(String(64))  # a separate sound file for the video
    has_audio: Mapped[bool | None]  # the recording (or its separate sound file) has a sound track
    consented_at: Mapped[datetime | None]  # when the uploader confirmed that the people recorded agreed
    upload_key: Mapped[str | None] = mapped_column(String(64))  # the form's or Idempotency-Key's value
    eeg_stored_name: Mapped[str | None] = mapped_column(String(64))  # a trial's EEG (.mat, .edf, .bdf)
    eeg_settings: Mapped[dict[str, Any] | None]  # mat_key, rate, channels: what an EEG file may not say itself

    user: Mapped[User] = relationship(back_populates="recordings")
    analyses: Mapped[list[Analysis]] = relationship(back_populates="recording", cascade="all, delete-orphan",
                                                    passive_deletes=True)  # fmt: skip

    @property
    def stored_files(self) -> list[str]:
        """Every stored file that goes with the recording: the upload, its separate sound and EEG,
        and each analysis's outputs (annotated copies). Deleting the recording deletes these."""
        own = [name for name in (self.stored_name, self.sound_stored_name, self.eeg_stored_name) if name]
        return own + [name for analysis in self.analyses for name in (analysis.files or {}).values()]


def _of_analysis() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["analysis_id", "user_id"], ["analyses.id", "analyses.user_id"], ondelete="CASCADE")


class Window(Base):
    """The models' answer for one window of an analysis (see ``serving.timeline.WindowResult``)."""

    __tablename__ = "windows"
    __table_args__ = (_of_analysis(), UniqueConstraint("analysis_id", "index"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = _owner()
    analysis_id: Mapped[int] = mapped_column()
    index: Mapped[int]
    start_s: Mapped[float]
    end_s: Mapped[float]
    status: Mapped[str] = mapped_column(String(24))  # ok, no_face, no_voice, no_face_or_voice, untrained
    label: Mapped[str | None] = mapped_column(String(32))
    probabilities: Mapped[dict[str, Any] | None]  # label -> probability, only when status is ok
    face_frames: Mapped[int] = mapped_column(default=0)
    frames: Mapped[int] = mapped_column(default=0)
    voice: Mapped[bool | None]
    weights: Mapped[dict[str, Any]] = mapped_column(default=dict)  # model -> its weight in the answer

    analysis: Mapped[Analysis] = relationship(back_populates="windows")


class Verdict(Base):
    """The label for a whole recording or trial, from one source: the windows' average
    (``windows``), or for trials the fusion CNN (``fusion``) and WAVER (``waver``)."""

    __tablename__ = "verdicts"
    __table_args__ = (_of_analysis(), UniqueConstraint("analysis_id", "source"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = _owner()
    analysis_id: Mapped[int] = mapped_column()
    source: Mapped[str] = mapped_column(String(16), default="windows")
    label: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float]  # the label's probability
    probabilities: Mapped[dict[str, Any]]
    windows: Mapped[int]  # windows it was made from

    analysis: Mapped[Analysis] = relationship(back_populates="verdicts")


class Analysis(Base):
    """One judgement of a recording by one mode (face, audio, av, attention, trial)."""

    __tablename__ = "analyses"
    __table_args__ = (
        ForeignKeyConstraint(["recording_id", "user_id"], ["recordings.id", "recordings.user_id"], ondelete="CASCADE"),
        UniqueConstraint("id", "user_id"),
        Index(None, "user_id", "created_at"),  # the history page: a user's analyses, newest first
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = _owner()
    recording_id: Mapped[int] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(255))  # the recording's name at first; the user may rename it
    mode: Mapped[str | None] = mapped_column(String(16))  # None: the richest the recording allows
    model: Mapped[str | None] = mapped_column(String(64))  # the Triton ensemble that answered
    trained: Mapped[bool | None]  # False: the model never saw real data, its labels are withheld
    labels: Mapped[list[str] | None]
    status: Mapped[AnalysisStatus] = mapped_column(_states(AnalysisStatus, "analysis_status"), default=AnalysisStatus.QUEUED)
    stage: Mapped[str | None] = mapped_column(String(32))  # decoding, faces, voice, eeg, inference, rendering
    progress: Mapped[float] = mapped_column(default=0.0)  # 0 to 1
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(32))  # why it failed, for programs: no_face, models_unavailable...
    render: Mapped[bool] = mapped_column(default=True, server_default=true())  # write the annotated copy
    files: Mapped[dict[str, Any] | None] = mapped_column(default=dict)  # kind (video, image) -> stored name
    failures: Mapped[dict[str, Any] | None] = mapped_column(default=dict)  # kind -> why that file is missing
    # Counted by the database with the row: a poll or a list needs how many windows there are, not
    # the windows (500 for 30 minutes), and a page of analyses then costs one query, not one each.
    window_count: Mapped[int] = column_property(
        select(func.count(Window.id)).where(Window.analysis_id == id).correlate_except(Window).scalar_subquery()
    )

    recording: Mapped[Recording] = relationship(back_populates="analyses")
    windows: Mapped[list[Window]] = relationship(back_populates="analysis", cascade="all, delete-orphan",
                                                 passive_deletes=True, order_by="Window.index")  # fmt: skip
    verdicts: Mapped[list[Verdict]] = relationship(back_populates="analysis", cascade="all, delete-orphan",
                                                   passive_deletes=True)  # fmt: skip
    jobs: Mapped[list[Job]] = relationship(back_populates="analysis", cascade="all, delete-orphan", passive_deletes=True)


class Job(Base):
    """Background work on an analysis; a worker leases it, so it never runs twice at once."""

    __tablename__ = "jobs"
    __table_args__ = (_of_analysis(), Index(None, "state", "created_at"))  # workers take the oldest queued job

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = _owner()
    analysis_id: Mapped[int] = mapped_column(index=True)
    state: Mapped[JobState] = mapped_column(_states(JobState, "job_state"), default=JobState.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    worker: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]  # a running job whose lease ran out is taken up again
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    available_at: Mapped[datetime | None]  # not claimed before then: a retry waits for Triton to come back

    analysis: Mapped[Analysis] = relationship(back_populates="jobs")


class AuthAttempt(Base):
    """One sign-in or sign-up attempt, counted by :mod:`gateway.limits`; kept for its window only."""

    __tablename__ = "auth_attempts"
    __table_args__ = (Index(None, "kind", "account", "at"), Index(None, "kind", "address", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # signin, signup
    account: Mapped[str | None] = mapped_column(String(64))  # SHA-256 of the email tried: no address is kept
    address: Mapped[str] = mapped_column(String(64))  # the client's IP address
    at: Mapped[datetime] = mapped_column(default=utcnow)
