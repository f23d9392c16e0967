"""Alembic's entry point for the gateway's schema; run by :func:`gateway.db.upgrade`.

The caller hands over an open connection in ``config.attributes["connection"]``, so the
migration runs in the caller's transaction, on whichever database the app uses.
"""

from __future__ import annotations

from alembic import context

from gateway.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run the gateway's migrations with gateway.db.upgrade(engine), which passes a connection.")

# render_as_batch: SQLite cannot ALTER most things, so later revisions copy the table instead.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
