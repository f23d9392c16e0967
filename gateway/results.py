"""An analysis's results as people and programs get them: its status, the timeline as JSON and
CSV, its files (served with HTTP range requests, so a player can seek), and captions.

Everything is read from the database rows the job wrote (:mod:`gateway.jobs`), so the page, the
API and the downloads always say the same. A model whose weights never saw real data is
*untrained*: its windows carry no label and no probabilities, here as everywhere.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from flask import Response, send_file, url_for
from sqlalchemy.orm import joinedload, selectinload
from werkzeug.exceptions import NotFound as _HttpNotFound

from . import current
from .errors import ApiError, NotFound
from .history import mode_name
from .jobs import STAGES
from .models import Analysis, AnalysisStatus, Window

__all__ = [
    "DOCUMENT_LOADS",
    "FILE_KINDS",
    "MODEL_NAMES",
    "NotReady",
    "analysis_document",
    "clock",
    "models_used",
    "send_result_file",
    "status_document",
    "timeline_csv",
    "timeline_document",
    "window_caption",
]

#: What each served model is called where people read it.
MODEL_NAMES = {
    "face_expression": "Face model (CNNs trained on FER-2013 photos)",
    "speech_emotion": "Voice model (speech CNNs, trained on RAVDESS actors)",
    "av_attention": "Audio-video attention model",
    "av_trial": "Audio-video attention model, per trial",
    "eeg_trial": "EEG model (EEGNet)",
}

#: Downloadable files: kind -> (media type, how its download name ends).
FILE_KINDS = {
    "video": ("video/mp4", ".annotated.mp4"),
    "image": ("image/png", ".annotated.png"),
    "json": ("application/json", ".timeline.json"),
    "csv": ("text/csv", ".timeline.csv"),
    "plot": ("image/png", ".probabilities.png"),
    "recording": (None, ""),  # the upload itself, for the page's player of a sound file
}

#: What :func:`analysis_document` reads beyond the analysis's row, for a query's ``options``: a
#: list of them then costs two queries in all (the window count comes with the row).
DOCUMENT_LOADS = (joinedload(Analysis.recording), selectinload(Analysis.verdicts))

_CAPTIONS = {"no_face": "no face", "no_voice": "no voice", "no_face_or_voice": "no face or voice", "untrained": "untrained model"}
_ALONE = {"face_expression": "face only", "speech_emotion": "voice only"}
_UNSAFE = re.compile(r"[^\w\- ]+")


class NotReady(ApiError):
    """The analysis has not produced this yet: its timeline or a file comes later."""

    status = 409
    code = "not_ready"


class Failed(ApiError):
    """The analysis failed, so what was asked for will never exist; the status says why."""

    def __init__(self, analysis: Analysis) -> None:
        ours = analysis.error_code in ("models_unavailable", "storage_error", "interrupted", "internal_error")
        self.status = 503 if ours else 422  # 503: the service failed, not the recording; trying again may work
        self.code = analysis.error_code or "failed"
        super().__init__(f"The analysis failed: {analysis.error}")


def clock(seconds: float) -> str:
    """``1:03.6``: minutes and seconds to a tenth, as a player shows them."""
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def window_caption(analysis: Analysis, window: Window) -> str:
    """What a person reads for a window: 'happy 82 %', 'sad 64 % (voice only)', 'no face', 'untrained model'."""
    if window.status != "ok" or not window.probabilities or window.label is None:
        return _CAPTIONS.get(window.status, window.status.replace("_", " "))
    caption = f"{window.label} {round(100 * window.probabilities[window.label])} %"
    alone = [source for source, weight in (window.weights or {}).items() if weight == 1.0]
    if len(window.weights or {}) > 1 and alone:
        caption += f" ({_ALONE.get(alone[0], alone[0])})"
    return caption


def models_used(analysis: Analysis) -> list[dict[str, Any]]:
    """Each model that took part: in how many windows it had something to judge, and whether it
    is trained (an untrained model's answers are never shown as emotions)."""
    counts: dict[str, int] = {}
    for window in analysis.windows:
        for source, weight in (window.weights or {}).items():
            counts[source] = counts.get(source, 0) + (1 if weight and weight > 0 else 0)
    return [{"model": source, "name": MODEL_NAMES.get(source, source), "windows": used, "of": len(analysis.windows),
             "trained": bool(analysis.trained)} for source, used in counts.items()]  # fmt: skip


def verdict_document(analysis: Analysis) -> dict[str, Any] | None:
    # A recording's windows averaged; a trial's fusion CNN (WAVER's answer is in "verdicts").
    verdict = next((v for source in ("windows", "fusion") for v in analysis.verdicts if v.source == source), None)
    if verdict is None:
        return None
    return {"label": verdict.label, "confidence": round(verdict.confidence, 4), "probabilities": verdict.probabilities,
            "windows": verdict.windows}  # fmt: skip


def status_document(analysis: Analysis) -> dict[str, Any]:
    """What a progress poll needs: status, stage, percentage, and whether the timeline and the copy exist."""
    files = analysis.files or {}
    ready = analysis.window_count > 0
    return {
        "id": analysis.id,
        "status": analysis.status.value,
        "stage": analysis.stage,
        "stage_label": STAGES.get(analysis.stage or "", None) if analysis.status != AnalysisStatus.DONE else None,
        "progress": round(analysis.progress, 4),
        "percent": 100 if analysis.status == AnalysisStatus.DONE else min(99, int(100 * analysis.progress)),
        "timeline_ready": ready,
        "video_ready": "video" in files or "image" in files,
        "error": None if analysis.status != AnalysisStatus.FAILED else {"code": analysis.error_code, "message": analysis.error},
        # Changes whenever the page's results would: the page fetches them again only then.
        "version": f"{analysis.status.value}:{int(ready)}:{','.join(sorted(files))}",
    }


def analysis_document(analysis: Analysis) -> dict[str, Any]:
    """The analysis as the API shows it."""
    recording = analysis.recording
    base = f"/api/v1/analyses/{analysis.id}"
    status = status_document(analysis)
    files = {kind: f"{base}/files/{kind}" for kind in available_files(analysis)}
    return {
        **{key: status[key] for key in ("id", "status", "stage", "stage_label", "progress", "percent", "timeline_ready", "error")},
        "name": analysis.name,
        "mode": analysis.mode,
        "mode_label": mode_name(analysis.mode),
        "model": analysis.model,
        "weights": None if analysis.trained is None else "real" if analysis.trained else "untrained",
        "created_at": analysis.created_at.isoformat(),
        "started_at": analysis.started_at.isoformat() if analysis.started_at else None,
        "finished_at": analysis.finished_at.isoformat() if analysis.finished_at else None,
        "recording": {"id": recording.id, "name": recording.name, "kind": recording.kind, "media_type": recording.media_type,
                      "size_bytes": recording.size_bytes, "duration_s": recording.duration_s, "has_audio": recording.has_audio},  # fmt: skip
        "windows": analysis.window_count,
        "verdict": verdict_document(analysis),
        "failures": analysis.failures or {},
        "files": files,
        "links": {"self": base, "timeline": f"{base}/timeline", "page": f"/analyses/{analysis.id}"},
    }


def available_files(analysis: Analysis) -> list[str]:
    """The kinds of file that can be fetched now."""
    kinds = [kind for kind in ("video", "image") if kind in (analysis.files or {})]
    if analysis.window_count:
        kinds += ["json", "csv"] + (["plot"] if analysis.recording.kind in ("video", "audio") else [])
    return kinds


def timeline_document(analysis: Analysis) -> dict[str, Any]:
    """The whole result: model, labels, verdict, and every window with its probabilities.

    Raises
    ------
    NotReady
        No timeline yet (409).
    Failed
        The analysis failed (422, or 503 when the models could not be reached).
    """
    if analysis.status == AnalysisStatus.FAILED:
        raise Failed(analysis)
    if not analysis.window_count:
        raise NotReady(f"The timeline is not ready yet: the analysis is {_doing(analysis)}.")
    return {
        "analysis": analysis.id,
        "name": analysis.name,
        "model": analysis.model,
        "mode": analysis.mode,
        "weights": "real" if analysis.trained else "untrained",
        "labels": list(analysis.labels or []),
        "models_used": models_used(analysis),
        "verdict": verdict_document(analysis),
        "verdicts": {v.source: {"label": v.label, "confidence": round(v.confidence, 4), "probabilities": v.probabilities}
                     for v in analysis.verdicts},  # fmt: skip
        "complete": analysis.status == AnalysisStatus.DONE,
        "windows": [
            {"index": w.index, "start_s": w.start_s, "end_s": w.end_s, "status": w.status, "label": w.label,
             "caption": window_caption(analysis, w), "probabilities": w.probabilities, "face_frames": w.face_frames,
             "frames": w.frames, "voice_found": w.voice, "models": w.weights}  # fmt: skip
            for w in analysis.windows
        ],
    }


def _doing(analysis: Analysis) -> str:
    if analysis.status == AnalysisStatus.QUEUED:
        return "waiting for a worker"
    return f"at the stage '{STAGES.get(analysis.stage or '', analysis.stage)}', {int(100 * analysis.progress)} % done"


def timeline_csv(analysis: Analysis) -> str:
    """One row per window: start and end in seconds, status, label, then every label's probability
    (empty where withheld: no face or voice, or an untrained model)."""
    document = timeline_document(analysis)
    labels = document["labels"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["start_s", "end_s", "label", *labels, "status"])
    for w in document["windows"]:
        probabilities = w["probabilities"] or {}
        writer.writerow([w["start_s"], w["end_s"], w["label"] or "", *[probabilities.get(label, "") for label in labels], w["status"]])
    return out.getvalue()


def download_name(analysis: Analysis, kind: str) -> str:
    """A file name for a download, from the analysis's name with anything unsafe taken out."""
    stem = analysis.name.rsplit(".", 1)[0] if "." in analysis.name[-6:] else analysis.name
    stem = " ".join(_UNSAFE.sub(" ", stem).split())[:80] or f"analysis-{analysis.id}"
    if kind == "recording":
        return stem + "." + analysis.recording.stored_name.rsplit(".", 1)[-1]
    return stem + FILE_KINDS[kind][1]


def send_result_file(analysis: Analysis, kind: str, *, download: bool) -> Response:
    """The file ``kind`` of ``analysis``: stored ones with range requests (a ``<video>`` seeks),
    made ones (JSON, CSV, the plot's PNG) from the rows.

    Raises
    ------
    NotFound
        ``kind`` is not a kind of file, or the analysis will never have it (404).
    NotReady
        It will exist once the analysis gets there (409).
    """
    if kind not in FILE_KINDS:
        raise NotFound(f"There is no file {kind[:40]!r}; the files are {', '.join(FILE_KINDS)}.")
    name = download_name(analysis, kind)
    if kind == "json":
        body = Response(_json(timeline_document(analysis)), mimetype="application/json")
    elif kind == "csv":
        body = Response(timeline_csv(analysis), mimetype="text/csv")
    elif kind == "plot":
        from .plots import probability_png  # matplotlib loads only when a PNG is asked for

        body = Response(probability_png(analysis, timeline_document(analysis)), mimetype="image/png")
    else:
        return _stored(analysis, kind, name, download)
    if download:
        body.headers.set("Content-Disposition", "attachment", filename=name)
    return body


def _stored(analysis: Analysis, kind: str, name: str, download: bool) -> Response:
    storage = current.storage()
    if kind == "recording":
        stored = analysis.recording.stored_name
        media_type = analysis.recording.media_type
    else:
        stored = (analysis.files or {}).get(kind)
        media_type = FILE_KINDS[kind][0]
        if stored is None:
            _never_or_later(analysis, kind)
    path = storage.path(analysis.user_id, stored)
    try:
        return send_file(path, mimetype=media_type, as_attachment=download, download_name=name, conditional=True, max_age=0)
    except (FileNotFoundError, _HttpNotFound):
        raise NotFound(f"The {kind} file of analysis {analysis.id} is missing from the storage.") from None


def _never_or_later(analysis: Analysis, kind: str) -> None:
    failure = (analysis.failures or {}).get(kind)
    if failure:
        raise NotFound(f"This analysis has no annotated copy: {failure}")
    wants_copy = analysis.render and (kind == "video") == (analysis.recording.kind != "image")
    if analysis.status in (AnalysisStatus.QUEUED, AnalysisStatus.RUNNING) and wants_copy:
        raise NotReady(f"The annotated copy is not ready yet: the analysis is {_doing(analysis)}.")
    raise NotFound(f"This analysis has no {'annotated video' if kind == 'video' else 'annotated photo'}.")


def _json(document: dict[str, Any]) -> str:
    import json

    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
