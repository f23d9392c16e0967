"""The analysis flow: uploads with consent and a key against double submits, output files, retries.

Revision ID: 0003_analysis_flow
Revises: 0002_settings
Created: 2026-12-01

- ``recordings``: a separate sound file for a video, whether there is sound, when the uploader
  confirmed consent, and the upload's key (one recording per key and user: a form sent twice);
- ``analyses``: why it failed (a code for programs), whether to write the annotated copy, the
  stored output files and the reasons for any that is missing;
- ``jobs``: when a job may run again (a retry waits while Triton cannot answer).

Every column is added with ``ALTER TABLE ... ADD COLUMN`` and the key is a unique index, never a
constraint added by batch mode: on SQLite batch mode copies the table, and dropping the old one
with foreign keys on would cascade into its children (see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_analysis_flow"
down_revision = "0002_settings"
branch_labels = None
depends_on = None

MOMENT = sa.DateTime(timezone=True)
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("recordings", sa.Column("sound_stored_name", sa.String(64), nullable=True))
    op.add_column("recordings", sa.Column("has_audio", sa.Boolean(), nullable=True))
    op.add_column("recordings", sa.Column("consented_at", MOMENT, nullable=True))
    op.add_column("recordings", sa.Column("upload_key", sa.String(64), nullable=True))
    op.create_index("ix_recordings_user_id_upload_key", "recordings", ["user_id", "upload_key"], unique=True)
    op.add_column("analyses", sa.Column("error_code", sa.String(32), nullable=True))
    # NOT NULL needs a default on SQLite's ADD COLUMN; existing analyses did write their copy.
    op.add_column("analyses", sa.Column("render", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("analyses", sa.Column("files", DOCUMENT, nullable=True))
    op.add_column("analyses", sa.Column("failures", DOCUMENT, nullable=True))
    op.add_column("jobs", sa.Column("available_at", MOMENT, nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "available_at")
    for column in ("failures", "files", "render", "error_code"):
        op.drop_column("analyses", column)
    op.drop_index("ix_recordings_user_id_upload_key", table_name="recordings")
    for column in ("upload_key", "consented_at", "has_audio", "sound_stored_name"):
        op.drop_column("recordings", column)
