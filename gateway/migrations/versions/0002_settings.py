"""Settings: each user's session token (a password change ends their other sessions) and retention period.

Revision ID: 0002_settings
Revises: 0001
Created: 2026-12-01

Columns are added with ``ALTER TABLE ... ADD COLUMN``, never by batch mode's copy of the table:
on SQLite, dropping the old ``users`` table with foreign keys on would cascade into every other
table and delete everyone's records.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002_settings"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite adds a NOT NULL column only with a default; every row gets a real token just below.
    op.add_column("users", sa.Column("session_token", sa.String(32), nullable=False, server_default=""))
    op.add_column("users", sa.Column("retention_days", sa.Integer(), nullable=True))
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("session_token", sa.String(32)))
    connection = op.get_bind()
    for (user_id,) in connection.execute(sa.select(users.c.id)).all():
        connection.execute(users.update().where(users.c.id == user_id).values(session_token=secrets.token_hex(16)))
    if connection.dialect.name != "sqlite":  # SQLite cannot drop a column default without copying the table
        op.alter_column("users", "session_token", server_default=None)


def downgrade() -> None:
    op.drop_column("users", "retention_days")
    op.drop_column("users", "session_token")
