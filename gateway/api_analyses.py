"""The API's analyses: create (multipart), poll, fetch the timeline and files, list, rename, delete.

All under ``/api/v1/``, with a bearer token (:func:`gateway.api.token_required`)::

    POST   /analyses                      multipart: recording, [sound], consent=true, [mode], [name]
                                          201 + Location; Idempotency-Key: a key sent again is 409
    GET    /analyses?page=1&per_page=20&q=TEXT
    GET    /analyses/<id>                 status, stage, percent, verdict, links to the files
    PATCH  /analyses/<id>                 {"name": "..."}
    DELETE /analyses/<id>                 204; its files and every record made from it
    GET    /analyses/<id>/timeline        409 until it exists; 422/503 when the analysis failed
    GET    /analyses/<id>/files/<kind>    video, image, json, csv, plot (range requests)
    GET    /recordings/<id>/comparison    the face, voice and both analyses of a recording
    POST   /recordings/<id>/comparison    queue those missing; 202

Another user's id answers 404, exactly as an id that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Blueprint, g, request
from sqlalchemy.sql.base import ExecutableOption
from werkzeug.wrappers import Response

from . import current, jobs, records, uploads
from .api import PREFIX, token_required
from .db import get_session
from .errors import ApiError
from .history import history_page
from .results import DOCUMENT_LOADS, analysis_document, send_result_file, timeline_document

__all__ = ["bp"]

bp = Blueprint("api_analyses", __name__, url_prefix=PREFIX)

MAX_PER_PAGE = 100


class BadRequest(ApiError):
    """A query parameter or a JSON body that means nothing here."""

    status = 400
    code = "bad_request"


def _mine(analysis_id: int, loads: Sequence[ExecutableOption] = ()) -> Any:
    return records.owned_analysis(get_session(), g.api_user.id, analysis_id, loads)


@bp.post("/analyses")
@token_required
def create() -> tuple[dict[str, Any], int, dict[str, str]]:
    key = request.headers.get("Idempotency-Key", "").strip()[:64] or None
    analysis = uploads.receive(get_session(), g.api_user.id, key=key)
    return analysis_document(analysis), 201, {"Location": f"{PREFIX}/analyses/{analysis.id}"}


@bp.get("/analyses")
@token_required
def index() -> dict[str, Any]:
    number, per_page = _positive("page", 1), _positive("per_page", 20)
    if per_page > MAX_PER_PAGE:
        raise BadRequest(f"per_page is {per_page}; ask for at most {MAX_PER_PAGE}.")
    query = request.args.get("q", "").strip()[:200] or None
    page = history_page(get_session(), g.api_user.id, number, per_page, query=query, loads=DOCUMENT_LOADS)
    links = {"self": _page_url(page.number, per_page, query)}
    if page.has_next:
        links["next"] = _page_url(page.number + 1, per_page, query)
    if page.has_previous:
        links["prev"] = _page_url(page.number - 1, per_page, query)
    return {"items": [analysis_document(a) for a in page.analyses], "page": page.number, "per_page": per_page, "total": page.total,
            "pages": page.pages, "links": links}  # fmt: skip


def _positive(name: str, default: int) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"{name} is {text[:20]!r}; send a whole number from 1.")
    return int(text)


def _page_url(number: int, per_page: int, query: str | None) -> str:
    from urllib.parse import urlencode

    return f"{PREFIX}/analyses?" + urlencode({"page": number, "per_page": per_page, **({"q": query} if query else {})})


@bp.get("/analyses/<int:analysis_id>")
@token_required
def show(analysis_id: int) -> dict[str, Any]:
    return analysis_document(_mine(analysis_id, DOCUMENT_LOADS))


@bp.patch("/analyses/<int:analysis_id>")
@token_required
def rename(analysis_id: int) -> dict[str, Any]:
    analysis = _mine(analysis_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise BadRequest('Send a JSON object with the new name: {"name": "..."}.')
    records.rename_analysis(get_session(), analysis, body["name"])
    return analysis_document(analysis)


@bp.delete("/analyses/<int:analysis_id>")
@token_required
def delete(analysis_id: int) -> tuple[str, int]:
    records.delete_analysis(get_session(), current.storage(), _mine(analysis_id))
    return "", 204


@bp.get("/analyses/<int:analysis_id>/timeline")
@token_required
def timeline(analysis_id: int) -> dict[str, Any]:
    return timeline_document(_mine(analysis_id))


@bp.get("/analyses/<int:analysis_id>/files/<kind>")
@token_required
def file(analysis_id: int, kind: str) -> Response:
    return send_result_file(_mine(analysis_id), kind, download=True)


@bp.get("/recordings/<int:recording_id>/comparison")
@token_required
def comparison(recording_id: int) -> dict[str, Any]:
    session = get_session()
    recording = records.owned_recording(session, g.api_user.id, recording_id)
    found = records.comparison(session, recording)
    return {"recording": recording.id, "modes": {mode: analysis_document(a) if a else None for mode, a in found.items()}}


@bp.post("/recordings/<int:recording_id>/comparison")
@token_required
def start_comparison(recording_id: int) -> tuple[dict[str, Any], int, dict[str, str]]:
    session = get_session()
    recording = records.owned_recording(session, g.api_user.id, recording_id)
    base = min(recording.analyses, key=lambda a: a.id).name if recording.analyses else recording.name
    created = records.start_comparison(session, recording, base)
    jobs.announce(uploads.queue(), created)
    location = f"{PREFIX}/recordings/{recording.id}/comparison"
    return comparison(recording_id), 202, {"Location": location}
