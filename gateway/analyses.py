"""The analysis pages: upload, progress and result (one page that becomes the other), files,
rename, delete, and the comparison of face, voice and both.

- ``GET /analyses/new``, ``POST /analyses``: the upload form; it answers at once with a redirect
  to the analysis's page while a worker runs the job (:mod:`gateway.jobs`);
- ``GET /analyses/<id>``: stage and percentage, updated without a reload by static/analysis.js
  polling ``/analyses/<id>/status``; the timeline as soon as it exists (the fragment
  ``/analyses/<id>/result`` is fetched again whenever the status's ``version`` changes);
- ``GET /analyses/<id>/files/<kind>``: the annotated video (with range requests), JSON, CSV, PNG;
- ``GET|POST /recordings/<id>/compare``: the same recording judged by the face alone, the voice
  alone and both, side by side.

Every id is looked up with its owner (:mod:`gateway.records`): another user's id is a 404.
The upload's CSRF check runs inside the view, after sign-in is checked and once the file parts
have somewhere in the user's directory to stream to (:func:`gateway.uploads.receive`).
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, Flask, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from . import current, jobs, records, uploads
from .api_analyses import bp as api_bp
from .db import get_session
from .errors import ApiError
from .history import MODE_NAMES
from .jobs import STAGES
from .metrics import count_failure
from .models import Analysis, AnalysisStatus
from .plots import colour, probability_svg, strip_svg
from .results import (
    MODEL_NAMES,
    available_files,
    clock,
    send_result_file,
    status_document,
    timeline_document,
    window_caption,
)
from .security import csrf

__all__ = ["bp", "init_app"]

bp = Blueprint("analyses", __name__)

#: The modes the upload form offers, in its order.
FORM_MODES = [("", "Everything the recording has (recommended)"), ("face", MODE_NAMES["face"]), ("audio", MODE_NAMES["audio"]),
              ("av", MODE_NAMES["av"]), ("attention", MODE_NAMES["attention"] + ", untrained: no emotions shown")]  # fmt: skip


def init_app(app: Flask) -> None:
    """Register the pages and the API's analysis routes, and stream uploads to users' directories."""
    uploads.init_app(app)
    app.register_blueprint(bp)
    app.register_blueprint(api_bp)
    csrf.exempt(api_bp)  # bearer tokens, never cookies: see gateway.api
    csrf.exempt(create)  # checked in the view, once the parts have a place to stream to
    app.add_template_global(colour, "label_colour")
    app.add_template_global(clock, "clock")
    app.add_template_filter(lambda stage: STAGES.get(stage or "", stage), "stage_name")


# Upload


@bp.get("/analyses/new")
@login_required
def new() -> str:
    return _form()


def _form(error: str | None = None, status: int = 200, **values: Any) -> Any:
    page = render_template("analyses/new.html", error=error, modes=FORM_MODES, upload_key=secrets.token_urlsafe(24),
                           limit_mb=current.config().max_upload_bytes // 2**20, limit_min=current.config().max_duration_s / 60,
                           values=values)  # fmt: skip
    return (page, status) if status != 200 else page


@bp.post("/analyses")
@login_required
def create() -> Any:
    """Receive the form's upload; a redirect to the new analysis's page (303), or the form again with the reason."""
    session = get_session()
    try:
        analysis = uploads.receive(session, current_user.id, check_form=csrf.protect)
    except uploads.DuplicateUpload as err:
        flash("This upload was already received; here is its analysis.", "info")
        return redirect(url_for("analyses.show", analysis_id=err.analysis_id), 303)
    except ApiError as err:
        count_failure(err.code, source="request")  # as the API's refusals are (gateway.failures), though shown on the form
        kept = ("mode", "name", "eeg_variable", "eeg_rate", "eeg_channels", "trial")
        values = {key: request.form.get(key, "") for key in kept} if "form" in request.__dict__ else {}
        values["eeg"] = any(values.get(key) for key in ("eeg_rate", "eeg_channels", "eeg_variable", "trial"))
        return _form(err.message, err.status, **values)
    return redirect(url_for("analyses.show", analysis_id=analysis.id), 303)


# Progress and result


def _mine(analysis_id: int) -> Analysis:
    return records.owned_analysis(get_session(), current_user.id, analysis_id)


def _view(analysis: Analysis) -> dict[str, Any]:
    """Everything the result templates show, from the analysis's rows."""
    document = timeline_document(analysis) if analysis.window_count and analysis.status.value != "failed" else None
    return {
        "analysis": analysis,
        "status": status_document(analysis),
        "document": document,
        "strip": strip_svg(document) if document and analysis.recording.kind in ("video", "audio") else None,
        "plot": probability_svg(document) if document and analysis.recording.kind in ("video", "audio") and analysis.trained else None,
        "files": available_files(analysis),
        "models": MODEL_NAMES,
        "stages": STAGES,
        "caption": lambda window: window_caption(analysis, window),
        "comparable": records.comparable_modes(analysis.recording),
    }


@bp.get("/analyses/<int:analysis_id>")
@login_required
def show(analysis_id: int) -> str:
    return render_template("analyses/show.html", **_view(_mine(analysis_id)))


@bp.get("/analyses/<int:analysis_id>/result")
@login_required
def result(analysis_id: int) -> str:
    """The result part of the page, fetched again by the page's script when the status changes."""
    return render_template("analyses/_result.html", **_view(_mine(analysis_id)))


@bp.get("/analyses/<int:analysis_id>/summary")
@login_required
def summary(analysis_id: int) -> str:
    """One column of the comparison page."""
    return render_template("analyses/_summary.html", **_view(_mine(analysis_id)))


@bp.get("/analyses/<int:analysis_id>/status")
@login_required
def status(analysis_id: int) -> Response:
    """Stage and percentage for the page's script (the API has the same under /api/v1/)."""
    response = jsonify(status_document(_mine(analysis_id)))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/analyses/<int:analysis_id>/files/<kind>")
@login_required
def file(analysis_id: int, kind: str) -> Response:
    """A file of the analysis; ``?download=1`` for an attachment."""
    return send_result_file(_mine(analysis_id), kind, download=request.args.get("download") == "1")


# History actions


@bp.post("/analyses/<int:analysis_id>/rename")
@login_required
def rename(analysis_id: int) -> Response:
    analysis = _mine(analysis_id)
    try:
        records.rename_analysis(get_session(), analysis, request.form.get("name"))
    except ApiError as err:
        flash(err.message, "error")
    else:
        flash(f"Renamed to “{analysis.name}”.", "success")
    return redirect(_back(url_for("analyses.show", analysis_id=analysis_id)), 303)


@bp.post("/analyses/<int:analysis_id>/delete")
@login_required
def delete(analysis_id: int) -> Response:
    analysis = _mine(analysis_id)
    name = analysis.name
    records.delete_analysis(get_session(), current.storage(), analysis)
    flash(f"“{name}” and its files are deleted.", "success")
    return redirect(url_for("history.index"), 303)


def _back(default: str) -> str:
    """Where a history action returns to: the history page it came from, or ``default``."""
    target = request.form.get("next", "")
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else default


# Compare


@bp.get("/recordings/<int:recording_id>/compare")
@login_required
def compare(recording_id: int) -> str:
    session = get_session()
    recording = records.owned_recording(session, current_user.id, recording_id)
    found = records.comparison(session, recording)
    columns = [(mode, records.COMPARED_MODES[mode], _view(analysis) if analysis else None) for mode, analysis in found.items()]
    can_start = any(a is None or a.status == AnalysisStatus.FAILED for a in found.values())
    return render_template("analyses/compare.html", recording=recording, columns=columns, can_start=can_start,
                           comparable=records.comparable_modes(recording))  # fmt: skip


@bp.post("/recordings/<int:recording_id>/compare")
@login_required
def start_compare(recording_id: int) -> Response:
    session = get_session()
    recording = records.owned_recording(session, current_user.id, recording_id)
    base = min(recording.analyses, key=lambda a: a.id).name if recording.analyses else recording.name
    created = records.start_comparison(session, recording, base)  # NothingToCompare: the error page says why
    jobs.announce(uploads.queue(), created)
    return redirect(url_for("analyses.compare", recording_id=recording_id), 303)
