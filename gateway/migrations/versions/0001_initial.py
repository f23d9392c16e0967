"""The first schema: users, API tokens, recordings, analyses, windows, verdicts, jobs, auth attempts.

Revision ID: 0001
Revises:
Created: 2026-12-01

Written against ``gateway.models`` as it was then, with plain SQLAlchemy types only: a revision
must keep making the same schema however the models change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MOMENT = sa.DateTime(timezone=True)
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
STATES = ("queued", "running", "done", "failed")


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _owner(table: str) -> list[sa.SchemaItem]:
    """The ``user_id`` column, its key to ``users`` and its index: every table but two has them."""
    return [
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"),
    ]


def _of(table: str, parent: str, parent_table: str) -> sa.ForeignKeyConstraint:
    """The key from a child to its parent's ``(id, user_id)``: parent and child have one owner."""
    return sa.ForeignKeyConstraint([f"{parent}_id", "user_id"], [f"{parent_table}.id", f"{parent_table}.user_id"],
                                   name=f"fk_{table}_{parent}_id_user_id_{parent_table}", ondelete="CASCADE")  # fmt: skip


def _state(name: str) -> sa.Enum:
    return sa.Enum(*STATES, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "api_tokens",
        _id(),
        *_owner("api_tokens"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("last_used_at", MOMENT, nullable=True),
        sa.Column("revoked_at", MOMENT, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("digest", name="uq_api_tokens_digest"),
    )
    op.create_table(
        "recordings",
        _id(),
        *_owner("recordings"),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("stored_name", sa.String(64), nullable=False),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recordings"),
        sa.UniqueConstraint("id", "user_id", name="uq_recordings_id_user_id"),
    )
    op.create_table(
        "analyses",
        _id(),
        *_owner("analyses"),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(16), nullable=True),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("trained", sa.Boolean(), nullable=True),
        sa.Column("labels", DOCUMENT, nullable=True),
        sa.Column("status", _state("analysis_status"), nullable=False),
        sa.Column("stage", sa.String(32), nullable=True),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("started_at", MOMENT, nullable=True),
        sa.Column("finished_at", MOMENT, nullable=True),
        _of("analyses", "recording", "recordings"),
        sa.PrimaryKeyConstraint("id", name="pk_analyses"),
        sa.UniqueConstraint("id", "user_id", name="uq_analyses_id_user_id"),
    )
    op.create_table(
        "windows",
        _id(),
        *_owner("windows"),
        sa.Column("analysis_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Double(), nullable=False),
        sa.Column("end_s", sa.Double(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("label", sa.String(32), nullable=True),
        sa.Column("probabilities", DOCUMENT, nullable=True),
        sa.Column("face_frames", sa.Integer(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("voice", sa.Boolean(), nullable=True),
        sa.Column("weights", DOCUMENT, nullable=False),
        _of("windows", "analysis", "analyses"),
        sa.PrimaryKeyConstraint("id", name="pk_windows"),
        sa.UniqueConstraint("analysis_id", "index", name="uq_windows_analysis_id_index"),
    )
    op.create_table(
        "verdicts",
        _id(),
        *_owner("verdicts"),
        sa.Column("analysis_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("probabilities", DOCUMENT, nullable=False),
        sa.Column("windows", sa.Integer(), nullable=False),
        _of("verdicts", "analysis", "analyses"),
        sa.PrimaryKeyConstraint("id", name="pk_verdicts"),
        sa.UniqueConstraint("analysis_id", "source", name="uq_verdicts_analysis_id_source"),
    )
    op.create_table(
        "jobs",
        _id(),
        *_owner("jobs"),
        sa.Column("analysis_id", sa.Integer(), nullable=False),
        sa.Column("state", _state("job_state"), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(64), nullable=True),
        sa.Column("lease_until", MOMENT, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("started_at", MOMENT, nullable=True),
        sa.Column("finished_at", MOMENT, nullable=True),
        _of("jobs", "analysis", "analyses"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_table(
        "auth_attempts",
        _id(),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("account", sa.String(64), nullable=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_auth_attempts"),
    )
    for table in ("api_tokens", "recordings", "analyses", "windows", "verdicts", "jobs"):
        op.create_index(f"ix_{table}_user_id", table, ["user_id"])
    op.create_index("ix_analyses_recording_id", "analyses", ["recording_id"])
    op.create_index("ix_analyses_user_id_created_at", "analyses", ["user_id", "created_at"])
    op.create_index("ix_jobs_analysis_id", "jobs", ["analysis_id"])
    op.create_index("ix_jobs_state_created_at", "jobs", ["state", "created_at"])
    op.create_index("ix_auth_attempts_kind_account_at", "auth_attempts", ["kind", "account", "at"])
    op.create_index("ix_auth_attempts_kind_address_at", "auth_attempts", ["kind", "address", "at"])


def downgrade() -> None:
    for table in ("auth_attempts", "jobs", "verdicts", "windows", "analyses", "recordings", "api_tokens", "users"):
        op.drop_table(table)  # children first; their indexes go with them
