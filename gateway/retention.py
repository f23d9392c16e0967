"""Retention: each user may have their uploads deleted automatically once they are N days old.

A user's ``retention_days`` (None: kept until they delete them) is set on the settings page.
:func:`purge_expired` deletes every recording older than its owner's period, with its analyses,
windows, verdicts, jobs and files. The job worker calls it every :data:`PURGE_EVERY_S`; operators
can run it by hand, or from cron::

    python -m gateway.retention          # settings from the environment, as the gateway reads them

    deleted = purge_expired(session, storage, utcnow())     # the worker's call; commits
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime, timedelta

from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session

from .config import Config
from .db import make_engine, upgrade
from .models import Analysis, Job, JobState, Recording, User, utcnow
from .storage import Storage

__all__ = [
    "MAX_RETENTION_DAYS",
    "PURGE_EVERY_S",
    "RetentionRefused",
    "delete_recording",
    "main",
    "parse_retention",
    "purge_expired",
    "stored_names",
]

log = logging.getLogger(__name__)

PURGE_EVERY_S = 60 * 60  # retention is counted in days: an hour late is on time
MAX_RETENTION_DAYS = 3650  # ten years; longer is "forever", which is its own choice


class RetentionRefused(ValueError):
    """The retention period given is not a whole number of days in range."""


def parse_retention(choice: str, days: str) -> int | None:
    """The settings form's answer as ``retention_days``: None for ``choice == "forever"``.

    Raises
    ------
    RetentionRefused
        ``days`` is not a whole number from 1 to :data:`MAX_RETENTION_DAYS`.
    """
    if choice == "forever":
        return None
    text = days.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_RETENTION_DAYS:
        raise RetentionRefused(f"Enter a number of days from 1 to {MAX_RETENTION_DAYS}, or keep uploads until you delete them.")
    return int(text)


def stored_names(recording: Recording) -> list[str]:
    """The names of every file in the owner's directory that belongs to ``recording``: the upload,
    its separate sound and EEG, and every analysis's outputs (:attr:`Recording.stored_files`)."""
    return recording.stored_files


def delete_recording(session: Session, storage: Storage, recording: Recording) -> None:
    """Delete a recording, everything derived from it (by the database's cascades) and its files; commits.

    Records first, as :func:`gateway.accounts.delete_user` does: should removing a file fail,
    no record points at it and nothing half-deleted is left for the user to reach.
    """
    user_id, names = recording.user_id, stored_names(recording)
    session.delete(recording)
    session.commit()
    for name in names:
        storage.remove(user_id, name)


def _expired(now: datetime, days: int) -> Select[tuple[Recording]]:
    """Recordings of users keeping uploads ``days`` days that are older than that, and not being analysed now."""
    running = (
        select(Job.id).join(Analysis, (Job.analysis_id == Analysis.id) & (Job.user_id == Analysis.user_id))
        .where(Analysis.recording_id == Recording.id, Job.state == JobState.RUNNING)
    )  # fmt: skip
    return (
        select(Recording).join(User, Recording.user_id == User.id)
        .where(User.retention_days == days, Recording.created_at < now - timedelta(days=days), ~exists(running))
        .order_by(Recording.id)
    )  # fmt: skip


def purge_expired(session: Session, storage: Storage, now: datetime) -> int:
    """Delete every recording older than its owner's retention period at ``now``; the number deleted.

    One query per distinct period (there are few), not per user. A recording whose analysis is
    running right now is left for the next purge, so no worker loses its input halfway.
    """
    periods = session.scalars(select(User.retention_days).where(User.retention_days.is_not(None)).distinct()).all()
    deleted = 0
    for days in periods:
        for recording in session.scalars(_expired(now, days)).all():
            delete_recording(session, storage, recording)
            deleted += 1
    if deleted:
        log.info("deleted %d recording%s past their retention period", deleted, "s" * (deleted != 1))
    return deleted


def main(argv: list[str] | None = None) -> int:
    """``python -m gateway.retention``: purge once with the gateway's settings and say how many went."""
    parser = argparse.ArgumentParser(prog="python -m gateway.retention", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    config = Config.from_env()
    engine = make_engine(config.database_url)
    try:
        if config.migrate:
            upgrade(engine)
        with Session(engine, expire_on_commit=False) as session:
            deleted = purge_expired(session, Storage(config.storage_dir), utcnow())
    finally:
        engine.dispose()
    print(f"Deleted {deleted} recording{'s' * (deleted != 1)} past their owners' retention period.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
