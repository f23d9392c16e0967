"""Everything of one user's, as a .zip archive: the export on the settings page.

The archive holds::

    README.txt                  what each part is
    account.json                the account, its API tokens (never their secrets), its recordings
    analyses/ID.json            each analysis: its settings, status, windows and verdicts
    files/NAME                  each stored file, under its stored name (the uploader's name is in account.json)

It is written into a spooled temporary file, in memory up to :data:`SPOOL_BYTES` and on disk
beyond that (in the data directory, sized for uploads, not ``/tmp``, which may be memory), one
analysis and one stored file at a time, so a user with gigabytes of recordings costs a worker no
more memory than a small one::

    archive = export_archive(session, storage, user, spool_dir)   # a binary file, at offset 0
    try:
        shutil.copyfileobj(archive, destination)
    finally:
        archive.close()
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import StorageError
from .models import Analysis, ApiToken, Recording, User, Verdict, Window, utcnow
from .retention import stored_names
from .storage import Storage

__all__ = ["FORMAT", "SPOOL_BYTES", "analysis_document", "export_archive"]

FORMAT = 1  # the layout above; raised when it changes, so a reader can tell
T = TypeVar("T", Recording, Analysis, ApiToken)
SPOOL_BYTES = 8 * 2**20  # an account with no uploads stays in memory; anything larger goes to disk

_README = """\
Your emofuse data, exported {when} (UTC).

account.json         your account, your API tokens (their names and dates; the secrets are never kept)
                     and your recordings, each with the name you gave it and its file in files/
analyses/ID.json     each analysis: mode, model, status, every window's label and probabilities, the verdicts
files/               the files you uploaded, as stored

Labels from a model marked "trained": false learnt synthetic data only; they are not emotions.
"""


def _moment(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _account(user: User, tokens: list[ApiToken], recordings: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "exported_at": now.isoformat(),
        "user": {"id": user.id, "email": user.email, "created_at": _moment(user.created_at), "retention_days": user.retention_days},
        "tokens": [{"name": t.name, "prefix": t.prefix, "created_at": _moment(t.created_at), "last_used_at": _moment(t.last_used_at),
                    "revoked_at": _moment(t.revoked_at)} for t in tokens],  # fmt: skip
        "recordings": recordings,
    }


def _recording(recording: Recording, files: list[str]) -> dict[str, Any]:
    return {
        "id": recording.id, "name": recording.name, "kind": recording.kind, "media_type": recording.media_type,
        "size_bytes": recording.size_bytes, "duration_s": recording.duration_s, "created_at": _moment(recording.created_at),
        "files": [f"files/{name}" for name in files],
    }  # fmt: skip


def analysis_document(session: Session, analysis: Analysis) -> dict[str, Any]:
    """One analysis as the archive's ``analyses/ID.json`` holds it, windows in time order."""
    windows = session.scalars(select(Window).where(Window.analysis_id == analysis.id).order_by(Window.index))
    verdicts = session.scalars(select(Verdict).where(Verdict.analysis_id == analysis.id).order_by(Verdict.source))
    return {
        "id": analysis.id, "recording_id": analysis.recording_id, "name": analysis.name, "mode": analysis.mode,
        "model": analysis.model, "trained": analysis.trained, "labels": analysis.labels, "status": analysis.status.value,
        "stage": analysis.stage, "progress": analysis.progress, "error": analysis.error,
        "created_at": _moment(analysis.created_at), "started_at": _moment(analysis.started_at),
        "finished_at": _moment(analysis.finished_at),
        "windows": [{"index": w.index, "start_s": w.start_s, "end_s": w.end_s, "status": w.status, "label": w.label,
                     "probabilities": w.probabilities, "face_frames": w.face_frames, "frames": w.frames, "voice": w.voice,
                     "weights": w.weights} for w in windows],
        "verdicts": [{"source": v.source, "label": v.label, "confidence": v.confidence, "probabilities": v.probabilities,
                      "windows": v.windows} for v in verdicts],
    }  # fmt: skip


def _json(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _write(archive: zipfile.ZipFile, name: str, text: str, now: datetime) -> None:
    info = zipfile.ZipInfo(name, date_time=now.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, text)


def _write_files(archive: zipfile.ZipFile, storage: Storage, user: User) -> set[str]:
    """Add every file in the user's directory that the gateway named (uploads and outputs alike); their names.

    The directory, not the records, says what there is: no kind of file is left out because a
    record does not name it, and temporary files (``.upload-*.part``) are no name the gateway made.
    """
    written = set()
    for entry in sorted(storage.user_dir(user.id).iterdir()):
        try:
            path = storage.path(user.id, entry.name)
        except StorageError:
            continue
        if path.is_file():
            # Stored, not deflated: media is compressed already, and zipfile copies it in small chunks.
            archive.write(path, f"files/{entry.name}", compress_type=zipfile.ZIP_STORED)
            written.add(entry.name)
    return written


def _mine(session: Session, kind: type[T], user: User) -> list[T]:
    """The user's records of ``kind``, oldest first; only these are read, so no one else's can slip in."""
    return list(session.scalars(select(kind).where(kind.user_id == user.id).order_by(kind.id)))


def export_archive(session: Session, storage: Storage, user: User, spool_dir: Path) -> IO[bytes]:
    """The user's archive as an open binary file at offset 0; the caller closes it (which frees its disk space)."""
    now = utcnow()
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, dir=spool_dir, prefix=".export-")
    try:
        with zipfile.ZipFile(spool, "w") as archive:
            _write(archive, "README.txt", _README.format(when=now.strftime("%d %b %Y, %H:%M")), now)
            written = _write_files(archive, storage, user)
            recordings = [_recording(recording, [name for name in stored_names(recording) if name in written])
                          for recording in _mine(session, Recording, user)]  # fmt: skip
            for analysis in _mine(session, Analysis, user):
                _write(archive, f"analyses/{analysis.id}.json", _json(analysis_document(session, analysis)), now)
            tokens = _mine(session, ApiToken, user)
            _write(archive, "account.json", _json(_account(user, tokens, recordings, now)), now)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool
