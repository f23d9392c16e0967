"""The API's OpenAPI 3.1 description, served at ``/api/v1/openapi.json`` to anyone (no token).

Built here from the same constants the routes use (statuses, stages, modes, file kinds), so the
description cannot name a stage or a file kind the API does not have. Every route under
``/api/v1/`` is described, with the statuses it answers and the schema of each body;
tests/test_gateway_openapi.py checks that in both directions against ``app.url_map`` and
validates real responses against it::

    curl -s http://127.0.0.1:5000/api/v1/openapi.json | python -m json.tool

Object schemas list what a response always carries; a client should ignore fields it does not
know, since later versions may add some.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, jsonify
from werkzeug.wrappers import Response

from .api import PREFIX
from .api_analyses import MAX_PER_PAGE
from .history import MODE_NAMES
from .jobs import STAGES
from .models import AnalysisStatus
from .records import COMPARED_MODES
from .results import FILE_KINDS
from .uploads import MAX_NAME_LENGTH, MODES_OFFERED

__all__ = ["bp", "document"]

bp = Blueprint("openapi", __name__, url_prefix=PREFIX)

Schema = dict[str, Any]

_FILE_TYPES = {"video": ["video/mp4"], "image": ["image/png"], "json": ["application/json"], "csv": ["text/csv"],
               "plot": ["image/png"], "recording": ["video/*", "audio/*", "image/*"]}  # fmt: skip
_OURS_FAILED = ["models_unavailable", "storage_error", "interrupted", "internal_error"]  # gateway.results.Failed: 503


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """This description, as JSON; no token needed."""
    return jsonify(document())


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the whole API (built once; do not change what it returns)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "emofuse API", "version": "1", "description": _INFO},
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}],
        "tags": [{"name": "analyses"}, {"name": "recordings"}, {"name": "account"}, {"name": "meta"}],
        "paths": _paths(),
        "components": {"securitySchemes": _SECURITY, "schemas": _schemas(), "parameters": _parameters(), "headers": _HEADERS},
    }


_INFO = (
    "Multimodal emotion recognition: upload a recording, follow its analysis, fetch the timeline and the files. "
    "Authenticate with a personal API token from the Settings page: `Authorization: Bearer emo_...`. "
    "Every error is JSON, `{\"error\": {\"code\": ..., \"message\": ...}}`, the message written for people and "
    "the code for programs; a status not listed for an operation (405, 500) has that body too. "
    "Another user's id answers 404, exactly as an id that does not exist."
)
_SECURITY = {"bearer": {"type": "http", "scheme": "bearer", "description": "A personal API token, `emo_` and 43 characters."}}
_HEADERS = {
    "Location": {"description": "Where the analysis (or comparison) is.", "required": True, "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before trying again.", "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "WWW-Authenticate": {"description": "`Bearer realm=\"emofuse\"`, with `error=\"invalid_token\"` for a bad token.",
                         "required": True, "schema": {"type": "string"}},  # fmt: skip
}


# Schemas


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Schema], *, optional: tuple[str, ...] = (), description: str | None = None) -> Schema:
    schema: Schema = {"type": "object", "required": [name for name in properties if name not in optional], "properties": properties}
    return {**schema, "description": description} if description else schema


_STRING, _INT, _NUMBER, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
_MOMENT = {"type": "string", "format": "date-time"}
_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_PROBABILITIES = {"type": "object", "additionalProperties": _FRACTION, "description": "Each label's probability."}


def _schemas() -> dict[str, Schema]:
    return {
        "Error": _error_schema(None),
        "Analysis": _analysis(),
        "Recording": _recording(),
        "Verdict": _verdict(),
        "AnalysisPage": _page(),
        "Timeline": _timeline(),
        "Window": _window(),
        "ModelUsed": _object({"model": _STRING, "name": _STRING, "windows": _INT, "of": _INT, "trained": _BOOL}),
        "Comparison": _object({"recording": _INT, "modes": _object({mode: _nullable(_ref("Analysis")) for mode in COMPARED_MODES})},
                              description="The newest analysis of the recording in each compared mode; null where there is none."),
        "Me": _object({"id": _INT, "email": _STRING, "created_at": _MOMENT,
                       "token": _object({"name": _STRING, "prefix": _STRING, "created_at": _MOMENT})}),  # fmt: skip
        "Token": _object({"id": _INT, "name": _STRING, "prefix": _STRING, "active": _BOOL, "created_at": _MOMENT,
                          "last_used_at": _nullable(_MOMENT), "revoked_at": _nullable(_MOMENT)}),  # fmt: skip
        "TokenList": _object({"tokens": {"type": "array", "items": _ref("Token")}}, description="Newest first; never a secret."),
    }


def _error_schema(codes: list[str] | None) -> Schema:
    code: Schema = {"type": "string", "pattern": "^[a-z_]+$"}
    if codes:
        code = {"type": "string", "enum": codes}
    return _object({"error": _object({"code": code, "message": {"type": "string", "minLength": 1}})})


def _analysis() -> Schema:
    failure = _object({"code": _nullable(_STRING), "message": _nullable(_STRING)})
    return _object({
        "id": _INT,
        "status": {"type": "string", "enum": [status.value for status in AnalysisStatus]},
        "stage": {"enum": [*STAGES, None], "description": "null once done or failed."},
        "stage_label": _nullable(_STRING),
        "progress": _FRACTION,
        "percent": {"type": "integer", "minimum": 0, "maximum": 100},
        "timeline_ready": _BOOL,
        "error": _nullable(failure),
        "name": _STRING,
        "mode": {"enum": [*(mode for mode in MODE_NAMES if mode), None]},
        "mode_label": _STRING,
        "model": _nullable(_STRING),
        "weights": {"enum": ["real", "untrained", None], "description": "untrained: the model never saw real data; no labels."},
        "created_at": _MOMENT,
        "started_at": _nullable(_MOMENT),
        "finished_at": _nullable(_MOMENT),
        "recording": _ref("Recording"),
        "windows": _INT,
        "verdict": _nullable(_ref("Verdict")),
        "failures": {"type": "object", "additionalProperties": _STRING, "description": "File kind: why it is missing."},
        "files": {"type": "object", "propertyNames": {"enum": list(FILE_KINDS)}, "additionalProperties": _STRING,
                  "description": "The files that can be fetched now: kind -> URL."},  # fmt: skip
        "links": _object({"self": _STRING, "timeline": _STRING, "page": _STRING}),
    })  # fmt: skip


def _recording() -> Schema:
    return _object({"id": _INT, "name": _STRING, "kind": {"type": "string", "enum": ["video", "audio", "image", "trial"]},
                    "media_type": _STRING, "size_bytes": _INT, "duration_s": _nullable(_NUMBER), "has_audio": _nullable(_BOOL)})  # fmt: skip


def _verdict() -> Schema:
    return _object({"label": _STRING, "confidence": _FRACTION, "probabilities": _PROBABILITIES, "windows": _INT})


def _page() -> Schema:
    links = _object({"self": _STRING, "next": _STRING, "prev": _STRING}, optional=("next", "prev"))
    return _object({"items": {"type": "array", "items": _ref("Analysis")}, "page": _INT, "per_page": _INT, "total": _INT,
                    "pages": _INT, "links": links}, description="Newest first.")  # fmt: skip


def _timeline() -> Schema:
    verdicts = {"type": "object", "additionalProperties": _object({"label": _STRING, "confidence": _FRACTION, "probabilities": _PROBABILITIES})}
    return _object({
        "analysis": _INT, "name": _STRING, "model": _nullable(_STRING), "mode": _nullable(_STRING),
        "weights": {"type": "string", "enum": ["real", "untrained"]},
        "labels": {"type": "array", "items": _STRING},
        "models_used": {"type": "array", "items": _ref("ModelUsed")},
        "verdict": _nullable(_ref("Verdict")),
        "verdicts": {**verdicts, "description": "By source: windows (their average), fusion and waver (trials)."},
        "complete": {"type": "boolean", "description": "false while the annotated copy is still being written."},
        "windows": {"type": "array", "items": _ref("Window")},
    })  # fmt: skip


def _window() -> Schema:
    return _object({
        "index": _INT, "start_s": _NUMBER, "end_s": _NUMBER,
        "status": {"type": "string", "description": "ok, no_face, no_voice, no_face_or_voice, untrained."},
        "label": _nullable(_STRING), "caption": _STRING,
        "probabilities": _nullable(_PROBABILITIES),
        "face_frames": _INT, "frames": _INT, "voice_found": _nullable(_BOOL),
        "models": {"type": "object", "additionalProperties": _nullable(_NUMBER), "description": "Model: its weight in the answer."},
    })  # fmt: skip


# Parameters


def _id_parameter(name: str, what: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": f"The {what}'s id.", "schema": {"type": "integer", "minimum": 0}}


def _parameters() -> dict[str, Schema]:
    return {
        "AnalysisId": _id_parameter("analysis_id", "analysis"),
        "RecordingId": _id_parameter("recording_id", "recording"),
        "TokenId": _id_parameter("token_id", "token"),
        "Kind": {"name": "kind", "in": "path", "required": True, "schema": {"type": "string", "enum": list(FILE_KINDS)},
                 "description": "recording is the upload itself; another name answers 404."},  # fmt: skip
    }


def _param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


# Responses


def _json(description: str, schema: Schema, headers: tuple[str, ...] = ()) -> Schema:
    response: Schema = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
    return response


def _error(description: str, *codes: str, headers: tuple[str, ...] = ()) -> Schema:
    return _json(description, _error_schema(list(codes)) if codes else _ref("Error"), headers)


_UNAUTHORIZED = _error("No token, or one unknown or revoked.", "authentication_required", "invalid_token", headers=("WWW-Authenticate",))
_NOT_FOUND = _error("No such id, or another user's.", "not_found")
_NO_CONTENT = {"description": "Done; no body."}


def _operation(summary: str, tag: str, responses: dict[int, Schema], *, operation_id: str,
               parameters: tuple[str | Schema, ...] = (), **extra: Any) -> Schema:  # fmt: skip
    """One operation; ``parameters`` are names of components.parameters or whole parameter objects."""
    operation: Schema = {"summary": summary, "tags": [tag], "operationId": operation_id,
                         "responses": {str(status): response for status, response in sorted(responses.items())}}  # fmt: skip
    if parameters:
        operation["parameters"] = [_param(p) if isinstance(p, str) else p for p in parameters]
    return {**operation, **extra}


def _paths() -> dict[str, Schema]:
    return {
        "/openapi.json": {"get": _operation("This description", "meta", {200: _json("OpenAPI 3.1", {"type": "object"})},
                                            operation_id="getOpenapi", security=[])},  # fmt: skip
        "/me": {"get": _operation("Who the token belongs to", "account", {200: _json("The user and the token", _ref("Me")),
                                                                           401: _UNAUTHORIZED}, operation_id="getMe")},  # fmt: skip
        "/tokens": {"get": _operation("The user's API tokens", "account", {200: _json("Tokens", _ref("TokenList")), 401: _UNAUTHORIZED},
                                      operation_id="listTokens")},  # fmt: skip
        "/tokens/{token_id}": {"delete": _operation("Revoke a token (also the one making the request)", "account",
                                                    {204: _NO_CONTENT, 401: _UNAUTHORIZED, 404: _NOT_FOUND},
                                                    parameters=("TokenId",), operation_id="revokeToken")},  # fmt: skip
        "/analyses": {"post": _create(), "get": _list()},
        "/analyses/{analysis_id}": {"get": _show(), "patch": _rename(), "delete": _delete()},
        "/analyses/{analysis_id}/timeline": {"get": _timeline_operation()},
        "/analyses/{analysis_id}/files/{kind}": {"get": _file()},
        "/recordings/{recording_id}/comparison": {"get": _comparison(), "post": _start_comparison()},
    }


def _create() -> Schema:
    created = _json("Queued; poll the Location.", _ref("Analysis"), ("Location",))
    return _operation("Upload a recording and queue its analysis", "analyses", {
        201: created,
        400: _error("A field is missing or means nothing here (no recording, an unknown mode, a bad EEG rate, a .zip sent with a "
                    "sound or EEG file), or the upload was cut off.", "bad_upload"),
        401: _UNAUTHORIZED,
        403: _error("consent is not true.", "consent_required"),
        409: _error("This Idempotency-Key was used before; Location names that analysis.", "duplicate_upload", headers=("Location",)),
        413: _error("Larger than EMOFUSE_MAX_UPLOAD_MB as sent, or a .zip once unpacked; the message says the limit.", "too_large"),
        415: _error("Not a video, sound file, photo or EEG that emofuse reads (judged by content, not name).", "unsupported_media_type"),
        422: _error("unprocessable_recording: a known kind that cannot be analysed (damaged, too long, no stream the mode needs, a "
                    "trial's EEG that does not cover its video, a .zip's manifest that names no such trial); unsafe_archive: a .zip "
                    "holding a path out of it, a link, an encrypted member, too many files or a zip bomb; damaged_archive: a .zip cut "
                    "off or whose member does not unpack. Nothing of a .zip is unpacked before its directory was checked.",
                    "unprocessable_recording", "unsafe_archive", "damaged_archive"),
        429: _error("Too many analyses of this user waiting or running.", "too_many_pending", headers=("Retry-After",)),
    }, operation_id="createAnalysis", requestBody=_upload_body(),
       parameters=({"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"},
                    "description": "Up to 64 characters; the same key again answers 409 and makes nothing."},))  # fmt: skip


def _upload_body() -> Schema:
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    fields = {
        "recording": {**binary, "description": "A video (.mp4 .mov .webm .mkv .avi), a sound file, a photo, or a trial folder "
                      "as one .zip (its manifest.csv and the files its rows name; sent alone, it gives what sound and the eeg fields "
                      "would). A .zip is told by its content, not its name."},
        "sound": {**binary, "description": "A separate sound file for the video."},
        "eeg": {**binary, "description": "The EEG recorded beside the video (.mat, .edf, .bdf): a trial."},
        "eeg_variable": {"type": "string", "description": "The .mat variable; empty: its only matrix."},
        "eeg_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 100000, "description": "Hz; required for .mat."},
        "eeg_channels": {"type": "string", "description": "Channel names, separated by spaces, commas or semicolons."},
        "trial": {"type": "string", "description": "With a trial folder's .zip: the trial to analyse, SUBJECT/TRIAL (or TRIAL "
                  "alone when no other subject has it); needed where several of its trials have a video."},
        "consent": {"type": "string", "enum": ["true", "on", "yes", "1"], "description": "The people recorded agreed."},
        "mode": {"type": "string", "enum": ["", "auto", *MODES_OFFERED], "description": "Empty: all the recording has."},
        "name": {"type": "string", "description": f"Shown in the history (at most {MAX_NAME_LENGTH} characters); else the file's name."},
    }
    schema = {"type": "object", "required": ["recording", "consent"], "properties": fields}
    encoding = {"recording": {"contentType": "video/*, audio/*, image/*, application/zip"}, "sound": {"contentType": "audio/*"}}
    return {"required": True, "content": {"multipart/form-data": {"schema": schema, "encoding": encoding}}}


def _list() -> Schema:
    def query(name: str, schema: Schema, description: str) -> Schema:
        return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}

    parameters = (query("page", {"type": "integer", "minimum": 1, "default": 1}, "From 1."),
                  query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 20}, "Analyses a page."),
                  query("q", {"type": "string"}, "Only analyses whose name has this text (first 200 characters)."))  # fmt: skip
    return _operation("The user's analyses, newest first", "analyses", {
        200: _json("A page", _ref("AnalysisPage")),
        400: _error("page or per_page is not a whole number from 1, or per_page is over the most.", "bad_request"),
        401: _UNAUTHORIZED,
    }, operation_id="listAnalyses", parameters=parameters)  # fmt: skip


def _show() -> Schema:
    return _operation("An analysis: status, stage, percent, verdict, files", "analyses", {
        200: _json("The analysis", _ref("Analysis")), 401: _UNAUTHORIZED, 404: _NOT_FOUND,
    }, parameters=("AnalysisId",), operation_id="getAnalysis")  # fmt: skip


def _rename() -> Schema:
    body = {"required": True, "content": {"application/json": {"schema": _object({"name": {"type": "string", "minLength": 1}})}}}
    return _operation("Rename an analysis", "analyses", {
        200: _json("Renamed", _ref("Analysis")),
        400: _error('Not {"name": "..."}, or a name with nothing to show.', "bad_request", "bad_upload"),
        401: _UNAUTHORIZED, 404: _NOT_FOUND,
    }, parameters=("AnalysisId",), operation_id="renameAnalysis", requestBody=body)  # fmt: skip


def _delete() -> Schema:
    return _operation("Delete an analysis with its files (and its recording when no other analysis uses it)", "analyses",
                      {204: _NO_CONTENT, 401: _UNAUTHORIZED, 404: _NOT_FOUND}, parameters=("AnalysisId",),
                      operation_id="deleteAnalysis")  # fmt: skip


def _failed() -> dict[int, Schema]:
    return {
        409: _error("Not ready yet: the analysis is queued or running.", "not_ready"),
        422: _error("The analysis failed because of the recording; the code says why (no_face...)."),
        503: _error("The analysis failed on our side (the models could not answer...); uploading again may work.", *_OURS_FAILED),
    }


def _timeline_operation() -> Schema:
    return _operation("The timeline: every window with its probabilities", "analyses", {
        200: _json("The timeline", _ref("Timeline")), 401: _UNAUTHORIZED, 404: _NOT_FOUND, **_failed(),
    }, parameters=("AnalysisId",), operation_id="getTimeline")  # fmt: skip


def _file() -> Schema:
    content = {media: {"schema": _ref("Timeline") if media == "application/json" else {"type": "string"}}
               for media in dict.fromkeys(m for types in _FILE_TYPES.values() for m in types)}  # fmt: skip
    ok = {"description": "The file, as an attachment. video: video/mp4; image, plot: image/png; json: the timeline; "
          "csv: one row per window; recording: the upload, its own type.", "content": content}  # fmt: skip
    partial = {"description": "The bytes a Range header asked for (stored files: video, image, recording).",
               "content": {media: {"schema": {"type": "string"}} for media in ("video/mp4", "image/png", "video/*", "audio/*", "image/*")}}
    return _operation("Download a file of the analysis", "analyses", {
        200: ok, 206: partial, 401: _UNAUTHORIZED,
        404: _error("No such id or kind, or this analysis will never have that file.", "not_found"),
        416: _error("The Range is outside the file.", "requested_range_not_satisfiable"),
        **_failed(),
    }, parameters=("AnalysisId", "Kind"), operation_id="getFile")  # fmt: skip


def _comparison() -> Schema:
    return _operation("The face-only, voice-only and face-and-voice analyses of a recording", "recordings", {
        200: _json("By mode", _ref("Comparison")), 401: _UNAUTHORIZED, 404: _NOT_FOUND,
    }, parameters=("RecordingId",), operation_id="getComparison")  # fmt: skip


def _start_comparison() -> Schema:
    return _operation("Queue the compared analyses the recording lacks", "recordings", {
        202: _json("Queued; poll the Location.", _ref("Comparison"), ("Location",)), 401: _UNAUTHORIZED, 404: _NOT_FOUND,
        422: _error("Only a video with sound can be judged by its face and its voice apart.", "nothing_to_compare"),
    }, parameters=("RecordingId",), operation_id="startComparison")  # fmt: skip
