"""Trial uploads: a recording's EEG file and how to read it.

Revision ID: 0004_trial_uploads
Revises: 0003_analysis_flow
Created: 2026-12-02

``recordings.eeg_stored_name`` is the EEG (.mat, .edf, .bdf) of a trial upload, stored beside its
video; ``eeg_settings`` holds what the file may not say itself: the .mat variable, the sampling
rate and the channel names. Added with ``ALTER TABLE ... ADD COLUMN`` (see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_trial_uploads"
down_revision = "0003_analysis_flow"
branch_labels = None
depends_on = None

DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("recordings", sa.Column("eeg_stored_name", sa.String(64), nullable=True))
    op.add_column("recordings", sa.Column("eeg_settings", DOCUMENT, nullable=True))


def downgrade() -> None:
    op.drop_column("recordings", "eeg_settings")
    op.drop_column("recordings", "eeg_stored_name")
