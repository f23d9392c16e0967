"""Receiving an upload: streamed to disk in chunks, checked from its content, recorded only when whole.

One path for the page's form and the API's multipart request (:func:`receive`):

1. before a byte of the body is read: the declared size against ``EMOFUSE_MAX_UPLOAD_MB``, the
   user's analyses still waiting, and a key seen before (a double submit);
2. the body is parsed by werkzeug, which writes each file part, 64 KiB at a time, into a
   temporary file *in the user's directory* (:class:`UploadRequest`), deleted when the request
   ends unless it was kept: an upload cut off halfway leaves no file, and no record, behind;
3. each file is checked from its content (:func:`gateway.media.inspect_media`): magic bytes,
   then FFmpeg; its name and declared type decide nothing;
4. the file is linked under a generated name, and the Recording, its Analysis and a Job are
   committed in one transaction; then the workers are told.

Fields: ``recording`` (a video, a sound file, a photo, or a trial folder's .zip), ``sound``
(optional: a sound file for a video), ``consent`` (``true``: the people recorded agreed),
``mode`` (``face``, ``audio``, ``av``, ``attention``; empty: all the recording has), ``name``
(optional; else the file's name).

A **trial** (face, voice and EEG recorded together, judged by ``emotion_av_eeg``) adds ``eeg``
(.mat, .edf, .bdf), ``eeg_variable`` (the .mat variable; empty: its only matrix), ``eeg_rate``
(Hz; required for .mat, checked against EDF/BDF headers) and ``eeg_channels`` (names, separated
by spaces, commas or semicolons). Its video lasts 12.6 to 60 s (one trial) and its EEG as long.
A trial folder zipped (its ``manifest.csv`` and the files it names, :mod:`gateway.trial_zip`) is
sent alone as ``recording``, with ``trial`` (``SUBJECT/TRIAL``) where several of its trials have
a video; the manifest gives what the ``eeg_*`` fields would. It is unpacked, within the limits of
:mod:`gateway.unzip`, into a temporary folder in the user's directory, removed when the request ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flask import Flask, Request, current_app, request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from preprocessing.trial import Trial, TrialSpec

from . import current, jobs
from .errors import ApiError, UploadTooLarge
from .media import (
    HEAD_BYTES,
    KIND_NAMES,
    MediaFacts,
    UnprocessableUpload,
    UnsupportedUpload,
    combine,
    inspect_eeg,
    inspect_media,
    sniff_eeg,
)
from .models import Analysis, AnalysisStatus, Recording, utcnow
from .queue import JobQueue
from .storage import Storage
from .trial_zip import UnpackedTrial, unpack_trial
from .unzip import ZipLimits, is_zip, shown

__all__ = [
    "BadUpload",
    "ConsentRequired",
    "DuplicateUpload",
    "MODES_OFFERED",
    "TooManyPending",
    "UploadRequest",
    "display_name",
    "init_app",
    "queue",
    "receive",
]

MODES_OFFERED = ("face", "audio", "av", "attention")
MAX_NAME_LENGTH = 200  # leaves room in the 255-character column for a comparison's " · voice only"
MAX_PENDING_ANALYSES = 10  # per user, queued or running: one user cannot fill the workers' day
MAX_TRIAL_S = 60.0  # a trial is about 21 s: its 6 + 4 windows are spread over it, sparser the longer it is
EEG_SLACK_S = 1.0  # how far the EEG's length may be from the video's: they record the same trial
_UPLOAD_DIR = "emofuse.upload_dir"  # environ keys: where this request's file parts go, and what to remove when it ends
_CLEANUP = "emofuse.upload_cleanup"
_QUEUE = "emofuse.queue"
_YES = ("true", "on", "yes", "1")


class BadUpload(ApiError):
    """The form is incomplete or has a value that means nothing here."""

    status = 400
    code = "bad_upload"


class ConsentRequired(ApiError):
    """The uploader did not confirm that the people recorded agreed to the analysis."""

    status = 403
    code = "consent_required"


class DuplicateUpload(ApiError):
    """This upload's key was used before: the form was sent twice."""

    status = 409
    code = "duplicate_upload"

    def __init__(self, message: str, *, analysis_id: int) -> None:
        super().__init__(message, headers={"Location": f"/api/v1/analyses/{analysis_id}"})
        self.analysis_id = analysis_id


class TooManyPending(ApiError):
    """The user already has as many analyses waiting or running as allowed."""

    status = 429
    code = "too_many_pending"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "30"})


class UploadRequest(Request):
    """Flask's request, writing file parts into the directory a view named, as temporary files.

    Each part is a ``NamedTemporaryFile`` there: deleted when closed, which happens when the
    request ends (:func:`_clean_up`); :func:`receive` links what it keeps under a stored name first.
    Requests to other views keep werkzeug's default (a temporary file outside the data directory).
    """

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None, filename: str | None = None,
                         content_length: int | None = None) -> IO[bytes]:  # fmt: skip
        directory = self.environ.get(_UPLOAD_DIR)
        if directory is None:
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        part = tempfile.NamedTemporaryFile(dir=directory, prefix=".upload-", suffix=".part")  # noqa: SIM115 (closed at teardown)
        self.environ.setdefault(_CLEANUP, []).append(part.close)
        return part

    def make_form_data_parser(self) -> FormDataParser:
        parser = super().make_form_data_parser()
        # werkzeug drops a body it cannot parse, silently: an upload cut off under gunicorn (whose
        # stream just ends) would look like a form sent without its file, or without its CSRF token
        parser.silent = _UPLOAD_DIR not in self.environ
        return parser


def init_app(app: Flask) -> None:
    app.request_class = UploadRequest
    app.teardown_request(_clean_up)
    app.config.setdefault("EMOFUSE_MAX_PENDING_ANALYSES", MAX_PENDING_ANALYSES)
    app.extensions[_QUEUE] = JobQueue(current.config(app).redis_url)


def queue(app: Flask | None = None) -> JobQueue:
    """Where new jobs are announced (RQ with ``REDIS_URL``; nowhere for embedded workers)."""
    return (app or current_app).extensions[_QUEUE]


def _clean_up(_error: BaseException | None = None) -> None:
    """Delete the request's file parts and unpacked folders; a kept upload has a link of its own."""
    for remove in request.environ.pop(_CLEANUP, []):
        with contextlib.suppress(OSError):
            remove()


def _scratch(directory: Path) -> Path:
    """A new folder in ``directory``, removed with everything in it when the request ends."""
    folder = Path(tempfile.mkdtemp(dir=directory, prefix=".trial-"))  # a name the workers' sweep knows, should this process be killed
    request.environ.setdefault(_CLEANUP, []).append(lambda: shutil.rmtree(folder, ignore_errors=True))
    return folder


@dataclass(frozen=True)
class _Upload:
    """One checked file: where it is now (a file part, or a member unpacked), and what it holds."""

    path: Path
    facts: MediaFacts


@dataclass(frozen=True)
class _TrialEEG:
    """A trial's checked EEG, and the settings to read it with."""

    path: Path
    suffix: str
    settings: dict[str, object]


@dataclass(frozen=True)
class _Parts:
    """What one upload holds, checked: the recording, its separate sound, a trial's EEG, and what
    to call it when the form gives no name (the file's name, as the client sent it)."""

    upload: _Upload
    sound: _Upload | None
    eeg: _TrialEEG | None
    called: str


def receive(session: Session, user_id: int, *, key: str | None = None, check_form: Callable[[], None] | None = None) -> Analysis:
    """Take the current request's upload for ``user_id``; the new analysis, committed and announced.

    ``key`` (the API's ``Idempotency-Key``) is checked before the body is read; the page's form
    carries its own ``upload_key``. ``check_form`` runs once the parts stream into the user's
    directory and may read the form (the page's CSRF check).

    Raises
    ------
    UploadTooLarge, TooManyPending, DuplicateUpload, BadUpload, ConsentRequired
    gateway.media.UnsupportedUpload, gateway.media.UnprocessableUpload
    gateway.unzip.DamagedArchive, gateway.unzip.UnsafeArchive, gateway.unzip.ArchiveTooLarge
    """
    config, storage = current.config(), current.storage()
    limit = config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise UploadTooLarge(_too_large(limit))
    _check_pending(session, user_id)
    _check_key(session, user_id, key)
    request.environ[_UPLOAD_DIR] = str(storage.user_dir(user_id))
    try:
        if check_form is not None:
            check_form()
        form, files = request.form, request.files
    except RequestEntityTooLarge:  # a body longer than it said, or of no stated length
        raise UploadTooLarge(_too_large(limit)) from None
    except (ClientDisconnected, ValueError):  # the stream ended early (werkzeug's server), or the body did (gunicorn's)
        raise BadUpload("The upload was cut off before it was complete; send it again.") from None
    key = key or (form.get("upload_key") or "").strip()[:64] or None
    _check_key(session, user_id, key)
    consent = (form.get("consent") or "").strip().lower() in _YES
    mode = _requested_mode(form.get("mode"))
    main, sound, eeg = (_chosen(files.get(slot)) for slot in ("recording", "sound", "eeg"))
    if main is None:
        raise BadUpload("Choose a recording to upload: a video, a sound file, a photo or a trial folder's .zip.")
    if not consent:
        raise ConsentRequired("Confirm that the people recorded agreed to this analysis (consent=true).")
    if is_zip(_head(main)):
        parts = _trial_folder(main, sound, eeg, form, storage.user_dir(user_id))
    else:
        parts = _files(main, sound, eeg, form)
    mode = "trial" if parts.eeg is not None else _mode_for(parts.upload.facts, parts.sound is not None, mode)
    name = display_name(form.get("name") or parts.called, fallback=f"Recording of {utcnow():%d %b %Y, %H:%M}")
    analysis = _record(session, storage, user_id, parts, name=name, mode=mode, key=key)
    jobs.announce(queue(), list(analysis.jobs))
    return analysis


def _too_large(limit: int) -> str:
    return f"The upload is larger than the limit of {limit / 2**20:,.0f} MB."


def _check_pending(session: Session, user_id: int) -> None:
    most = current_app.config["EMOFUSE_MAX_PENDING_ANALYSES"]
    waiting = session.scalar(select(func.count()).select_from(Analysis).where(
        Analysis.user_id == user_id, Analysis.status.in_((AnalysisStatus.QUEUED, AnalysisStatus.RUNNING))))  # fmt: skip
    if waiting >= most:
        raise TooManyPending(f"You have {waiting} analyses waiting or running, the most at once; upload again when one is done.")


def _check_key(session: Session, user_id: int, key: str | None) -> None:
    if not key:
        return
    found = session.scalar(select(Analysis.id).join(Recording).where(Recording.user_id == user_id, Recording.upload_key == key)
                           .order_by(Analysis.id).limit(1))  # fmt: skip
    if found is not None:
        raise DuplicateUpload(f"This upload was already received, as analysis {found}.", analysis_id=found)


def _requested_mode(value: str | None) -> str | None:
    mode = (value or "").strip().lower()
    if mode in ("", "auto", "automatic"):
        return None
    if mode not in MODES_OFFERED:
        raise BadUpload(f"Mode {mode[:40]!r} is not one of {', '.join(MODES_OFFERED)}; leave it empty to use all the recording has.")
    return mode


def _chosen(part: FileStorage | None) -> FileStorage | None:
    """The part, unless it is a file input left empty (a browser still sends it, nameless and empty)."""
    if part is None:
        return None
    if not isinstance(getattr(part.stream, "name", None), str):  # not one of UploadRequest's files: never expected
        raise BadUpload("The upload could not be received; send it again.")
    if not part.filename and os.path.getsize(_flushed(part)) == 0:
        return None
    return part


def _flushed(part: FileStorage) -> Path:
    part.stream.flush()  # werkzeug wrote through a buffer: what is on disk must be all of it before FFmpeg reads it
    return Path(part.stream.name)


def _head(part: FileStorage) -> bytes:
    with _flushed(part).open("rb") as file:
        return file.read(HEAD_BYTES)


def _inspected(path: Path, slot: str) -> _Upload:
    return _Upload(path, inspect_media(path, slot=slot, max_duration_s=current.config().max_duration_s))


def _files(main: FileStorage, sound: FileStorage | None, eeg: FileStorage | None, form: Any) -> _Parts:
    """The parts of an upload of files: a recording, and its sound or its trial's EEG."""
    upload = _inspected(_flushed(main), "recording")
    extra = None if sound is None else _inspected(_flushed(sound), "sound")
    if extra is not None:
        _check_combinable(upload, extra)
    return _Parts(upload, extra, _trial_eeg(eeg, form, upload) if eeg is not None else None, main.filename or "")


def _trial_folder(main: FileStorage, sound: FileStorage | None, eeg: FileStorage | None, form: Any, directory: Path) -> _Parts:
    """The parts of a trial folder's .zip, each checked as the same file uploaded alone would be;
    a refusal names the file in the .zip it is about."""
    if sound is not None or eeg is not None:
        raise BadUpload("A trial folder's .zip holds its sound and EEG: send the .zip alone, without a sound or EEG file.")
    limits = ZipLimits(max_bytes=current.config().max_upload_bytes)
    unpacked = unpack_trial(_flushed(main), _scratch(directory), choice=form.get("trial"), limits=limits)
    trial = unpacked.trial
    with _about(unpacked, trial.video):
        upload = _inspected(trial.video, "recording")
        _check_trial_video(upload)
    extra = None
    if trial.audio is not None:
        with _about(unpacked, trial.audio):
            extra = _inspected(trial.audio, "sound")
            _check_combinable(upload, extra)
    with _about(unpacked, trial.eeg):
        checked = _read_trial_eeg(trial.eeg, _eeg_suffix(trial.eeg), upload, rate=_rate(str(trial.eeg_rate), required=True),
                                  channels=trial.channels, mat_key=trial.mat_key)  # fmt: skip
    return _Parts(upload, extra, checked, _trial_called(main.filename or "", trial))


@contextlib.contextmanager
def _about(unpacked: UnpackedTrial, path: Path) -> Iterator[None]:
    """Say which file of the .zip a refusal is about: the uploader sees that name, not ours."""
    try:
        yield
    except (BadUpload, UnsupportedUpload, UnprocessableUpload) as err:
        message = err.message[:1].lower() + err.message[1:]
        raise type(err)(f"In the .zip, {shown(unpacked.names[path])}: {message}") from err


def _trial_called(filename: str, trial: Trial) -> str:
    """The .zip's name and the trial's; a slash in the trial's name would make display_name cut it off."""
    name = re.sub(r"[/\\]", "-", trial.trial)
    return f"{filename or 'Trial folder'} · subject {trial.subject}, trial {name}"


def _check_combinable(upload: _Upload, sound: _Upload) -> None:
    if upload.facts.kind != "video":
        raise UnprocessableUpload(f"A separate sound file goes with a video; the recording is {KIND_NAMES[upload.facts.kind]}.")
    with tempfile.TemporaryDirectory(dir=upload.path.parent, prefix=".check-") as folder:
        try:
            combine(upload.path, sound.path, Path(folder) / "first-second.mov", limit_s=1.0)
        except ValueError as err:  # preprocessing's RecordingError
            raise UnprocessableUpload("The video and the sound file cannot be put together: " + getattr(err, "reason", str(err))
                                      .removeprefix("the video and the sound file cannot be combined ") + ".") from err  # fmt: skip


def _trial_eeg(part: FileStorage, form: Any, upload: _Upload) -> _TrialEEG:
    """Check a trial's EEG against its form fields and its video.

    Raises
    ------
    BadUpload
        A sampling rate that is not a number, or none for a .mat file (400).
    UnsupportedUpload
        Not a .mat, EDF or BDF file (415).
    UnprocessableUpload
        The recording is not a video of one trial, or the EEG cannot be read or does not cover it (422).
    """
    path = _flushed(part)
    suffix = _eeg_suffix(path)
    _check_trial_video(upload)
    rate = _rate(form.get("eeg_rate"), required=suffix == ".mat")
    channels = tuple(name for name in re.split(r"[\s,;]+", form.get("eeg_channels") or "") if name)[:512] or None
    mat_key = (form.get("eeg_variable") or "").strip()[:64] or None
    return _read_trial_eeg(path, suffix, upload, rate=rate, channels=channels, mat_key=mat_key)


def _eeg_suffix(path: Path) -> str:
    with path.open("rb") as file:
        suffix = sniff_eeg(file.read(HEAD_BYTES))
    if suffix is None:
        raise UnsupportedUpload("The EEG file is not a .mat, EDF or BDF file, whatever its name says.")
    return suffix


def _check_trial_video(upload: _Upload) -> None:
    if upload.facts.kind != "video":
        raise UnprocessableUpload(f"An EEG goes with the video of its trial; the recording is {KIND_NAMES[upload.facts.kind]}.")
    video_s = upload.facts.duration_s or 0.0
    shortest = TrialSpec().min_duration_s("av")
    if not shortest <= video_s <= MAX_TRIAL_S:
        raise UnprocessableUpload(f"A trial's video lasts {shortest:g} to {MAX_TRIAL_S:g} s (one trial, about 21 s); this one lasts {video_s:g} s.")


def _read_trial_eeg(path: Path, suffix: str, upload: _Upload, *, rate: float | None, channels: tuple[str, ...] | None,
                    mat_key: str | None) -> _TrialEEG:  # fmt: skip
    """Read the EEG as the job will, and check it lasts as long as the trial's video."""
    video_s = upload.facts.duration_s or 0.0
    # read_eeg goes by the suffix: read it under a name that has the one its content announced
    named = path.with_name(path.name + suffix)
    os.link(path, named)
    try:
        facts = inspect_eeg(named, mat_key=mat_key, rate=rate, channels=channels)
    finally:
        named.unlink()
    if facts.duration_s < video_s - EEG_SLACK_S:
        raise UnprocessableUpload(f"The EEG lasts {facts.duration_s:g} s, shorter than the video's {video_s:g} s; send the EEG of the whole trial.")
    if facts.duration_s > video_s + EEG_SLACK_S:
        raise UnprocessableUpload(f"The EEG lasts {facts.duration_s:g} s and the video {video_s:g} s: they must record the same trial "
                                  f"(at most {EEG_SLACK_S:g} s apart).")  # fmt: skip
    return _TrialEEG(path, suffix, {"mat_key": mat_key, "rate": facts.rate, "channels": list(facts.channels) if channels else None})


def _rate(text: str | None, *, required: bool) -> float | None:
    text = (text or "").strip()
    if not text:
        if required:
            raise BadUpload("A .mat file does not store its sampling rate: give it in Hz (eeg_rate).")
        return None
    try:
        rate = float(text)
    except ValueError:
        raise BadUpload(f"The EEG's sampling rate {text[:20]!r} is not a number of Hz.") from None
    if not 0 < rate <= 100_000:
        raise BadUpload(f"The EEG's sampling rate {text[:20]!r} Hz is not one an EEG is recorded at.")
    return rate


def _mode_for(facts: MediaFacts, separate_sound: bool, requested: str | None) -> str:
    """The mode to analyse in: ``requested`` if the recording has what it needs, else a 422 saying why."""
    has_audio = facts.has_audio or separate_sound
    if facts.kind == "image":
        allowed, why = ("face",), "A photo has no sound: it is judged by its faces (mode face)."
    elif facts.kind == "audio":
        allowed, why = ("audio",), "A sound file has no picture: it is judged by its voice (mode audio)."
    elif not has_audio:
        allowed, why = ("face",), "This video has no sound track: it is judged by its face (mode face), or send a sound file with it."
    else:
        allowed, why = MODES_OFFERED, ""
    mode = requested or ("av" if "av" in allowed else allowed[0])
    if mode not in allowed:
        raise UnprocessableUpload(why)
    return mode


def display_name(raw: str, *, fallback: str) -> str:
    """What a person calls the file, safe to show: the last part of a path, no control or
    formatting characters (a right-to-left override can disguise ``gpj.exe``), spaces collapsed,
    at most 200 characters. Look-alike letters stay: it is a name, shown escaped, never a path."""
    text = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C")
    text = " ".join(text.split())
    if len(text) > MAX_NAME_LENGTH:
        text = text[: MAX_NAME_LENGTH - 1].rstrip() + "…"
    return text if text.strip(". ") else fallback


def _record(session: Session, storage: Storage, user_id: int, parts: _Parts, *, name: str, mode: str, key: str | None) -> Analysis:
    """Link the files under generated names and commit the Recording, its Analysis and a Job."""
    upload, sound, eeg = parts.upload, parts.sound, parts.eeg
    kept: list[str] = []
    try:
        stored = _keep(storage, user_id, upload.path, upload.facts.suffix, kept)
        sound_stored = _keep(storage, user_id, sound.path, sound.facts.suffix, kept) if sound is not None else None
        eeg_stored = _keep(storage, user_id, eeg.path, eeg.suffix, kept) if eeg is not None else None
        facts = upload.facts
        size = sum(part.path.stat().st_size for part in (upload, sound, eeg) if part is not None)
        recording = Recording(user_id=user_id, name=name, kind="trial" if eeg else facts.kind, media_type=facts.media_type,
                              size_bytes=size, duration_s=facts.duration_s, stored_name=stored, sound_stored_name=sound_stored,
                              has_audio=facts.has_audio or sound is not None, consented_at=utcnow(), upload_key=key,
                              eeg_stored_name=eeg_stored, eeg_settings=eeg.settings if eeg else None)  # fmt: skip
        analysis = Analysis(user_id=user_id, name=name, mode=mode, status=AnalysisStatus.QUEUED, stage="queued", files={}, failures={})
        recording.analyses.append(analysis)
        jobs.enqueue(session, analysis)
        session.add(recording)
        session.commit()
    except IntegrityError:  # the same key, committed by a second request sent at the same moment
        session.rollback()
        _remove(storage, user_id, kept)
        _check_key(session, user_id, key)
        raise
    except BaseException:
        session.rollback()
        _remove(storage, user_id, kept)
        raise
    return analysis


def _keep(storage: Storage, user_id: int, part: Path, suffix: str, kept: list[str]) -> str:
    name = storage.new_name(suffix)
    os.link(part, storage.path(user_id, name))  # a second name for the part: it survives the part's deletion
    kept.append(name)
    return name


def _remove(storage: Storage, user_id: int, names: list[str]) -> None:
    for name in names:
        storage.remove(user_id, name)
