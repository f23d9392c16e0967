"""The sample video, one click away: a user with no analyses yet can try emofuse on the server's
own sample instead of finding a recording first.

``emofuse serve`` writes a sample video and names it in ``EMOFUSE_SAMPLE_VIDEO``
(:attr:`gateway.config.Config.sample_video`); where none is set, or its file is gone, nothing is
offered. While the signed-in user has no analyses, the history page and the upload page show the
button (``templates/sample/_button.html``, a form with its CSRF token); ``POST /analyses/sample``
copies the file into the user's directory under a generated name, checks the copy as an upload is
checked (:func:`gateway.media.inspect_media`), and commits its Recording, Analysis and Job in one
transaction, as :mod:`gateway.uploads` does for a file sent by the user.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from flask import Blueprint, Flask, flash, redirect, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from . import current, jobs, uploads
from .config import Config
from .db import get_session
from .errors import NotFound
from .media import MediaFacts, inspect_media
from .models import Analysis, AnalysisStatus, Recording
from .storage import Storage

__all__ = ["SAMPLE_NAME", "bp", "configured_sample", "init_app", "offered", "start_sample"]

bp = Blueprint("sample", __name__)

SAMPLE_NAME = "Sample video"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_global(offered, "sample_offered")


def configured_sample(config: Config) -> Path | None:
    """The sample file, if one is configured and exists."""
    path = config.sample_video
    return path if path is not None and path.is_file() else None


def _has_analyses(session: Session, user_id: int) -> bool:
    return session.scalar(select(Analysis.id).where(Analysis.user_id == user_id).limit(1)) is not None


def offered() -> bool:
    """Whether the page shows the button: a sample exists and the signed-in user has no analyses.

    Only a first analysis is offered, so the button cannot fill the workers' queue.
    """
    if not current_user.is_authenticated or configured_sample(current.config()) is None:
        return False
    return not _has_analyses(get_session(), current_user.id)


def _mode(facts: MediaFacts) -> str:
    """What the sample is judged by: all it has, as an upload with no mode chosen."""
    if facts.kind == "audio":
        return "audio"
    return "av" if facts.kind == "video" and facts.has_audio else "face"


def start_sample(session: Session, storage: Storage, user_id: int, sample: Path, *, max_duration_s: float) -> Analysis:
    """Copy ``sample`` into the user's directory and commit its Recording, Analysis and queued Job.

    The copy is written under a hidden temporary name (which the worker's sweep removes if this
    process dies) and moved under its generated name once whole, so no half file has a record.

    Raises
    ------
    gateway.media.UnsupportedUpload, gateway.media.UnprocessableUpload
        The configured file is not a recording emofuse can analyse.
    """
    directory = storage.user_dir(user_id)
    descriptor, part = tempfile.mkstemp(dir=directory, prefix=".upload-", suffix=".part")
    os.close(descriptor)
    stored: Path | None = None
    try:
        shutil.copyfile(sample, part)
        facts = inspect_media(Path(part), slot="recording", max_duration_s=max_duration_s)
        name = storage.new_name(facts.suffix)
        stored = storage.path(user_id, name)
        os.replace(part, stored)
        # No consent to record: nobody's recording was uploaded (the sample is drawn and its voice synthetic).
        recording = Recording(user_id=user_id, name=SAMPLE_NAME, kind=facts.kind, media_type=facts.media_type,
                              size_bytes=stored.stat().st_size, duration_s=facts.duration_s, stored_name=name,
                              has_audio=facts.has_audio)  # fmt: skip
        analysis = Analysis(user_id=user_id, name=SAMPLE_NAME, mode=_mode(facts), status=AnalysisStatus.QUEUED, stage="queued",
                            files={}, failures={})  # fmt: skip
        recording.analyses.append(analysis)
        jobs.enqueue(session, analysis)
        session.add(recording)
        session.commit()
    except BaseException:
        session.rollback()
        Path(part).unlink(missing_ok=True)
        if stored is not None:
            stored.unlink(missing_ok=True)
        raise
    return analysis


@bp.post("/analyses/sample")
@login_required
def create() -> Response:
    """Analyse the sample for the user; a redirect to its page (303), or to the history if they have analyses."""
    config, session = current.config(), get_session()
    sample = configured_sample(config)
    if sample is None:
        raise NotFound("This server offers no sample video.")
    if _has_analyses(session, current_user.id):
        flash("The sample is offered for a first analysis; upload a recording of your own.", "info")
        return redirect(url_for("history.index"), 303)
    analysis = start_sample(session, current.storage(), current_user.id, sample, max_duration_s=config.max_duration_s)
    jobs.announce(uploads.queue(), list(analysis.jobs))
    return redirect(url_for("analyses.show", analysis_id=analysis.id), 303)
