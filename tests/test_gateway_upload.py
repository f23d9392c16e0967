"""Uploads through the page and the API: streamed to disk, checked from their content, recorded
whole or not at all, limits checked before the body is read, a double submit made once.
Bad input of every kind, refused with its reason: tests/test_gateway_bad_input.py.

A real SQLite database in tmp_path and real media files made here; no Triton is needed: an
upload only records the analysis and queues its job (tests/test_gateway_jobs.py runs them).
"""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import current
from gateway.db import engine_of
from gateway.models import Analysis, Job, JobState, Recording
from gateway.testing_flow import api_user, gateway_app, owned_counts, page_upload, signed_in, stored_files
from gateway.uploads import display_name
from preprocessing.synthesis import SampleSpec, astronaut_face, write_sample_video

TINY = dict(width=320, height=180, face_height=120)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real recordings."""
    root = tmp_path_factory.mktemp("upload-clips")
    write_sample_video(root / "video.mp4", SampleSpec(duration_s=4.0, **TINY))
    write_sample_video(root / "silent.mp4", SampleSpec(duration_s=4.0, audio=None, **TINY))
    rate = 16000
    tone = 0.2 * np.sin(2 * np.pi * 220 * np.arange(3 * rate) / rate)
    soundfile.write(root / "voice.wav", tone.astype(np.float32), rate)
    soundfile.write(root / "voice.flac", tone.astype(np.float32), rate)
    cv2.imwrite(str(root / "photo.jpg"), cv2.cvtColor(astronaut_face(), cv2.COLOR_RGB2BGR))
    return root


@pytest.fixture
def web(app: Flask) -> FlaskClient:
    """Signed in: the page's upload form is for users only."""
    return signed_in(app, "uploader@example.org")


@pytest.fixture
def api(app: Flask) -> tuple[int, dict[str, str]]:
    return api_user(app, "program@example.org")


def _file(path: Path, name: str | None = None) -> tuple[io.BytesIO, str]:
    return io.BytesIO(path.read_bytes()), name or path.name


def _user_id(app: Flask, email: str) -> int:
    from gateway.models import User

    with Session(engine_of(app)) as session:
        return session.scalar(select(User.id).where(User.email == email))


def _records(app: Flask) -> list[tuple[Recording, Analysis, Job]]:
    with Session(engine_of(app), expire_on_commit=False) as session:
        rows = session.execute(select(Recording, Analysis, Job).join(Analysis, Analysis.recording_id == Recording.id)
                               .join(Job, Job.analysis_id == Analysis.id).order_by(Analysis.id)).all()  # fmt: skip
        return [tuple(row) for row in rows]


# What is accepted


def test_a_video_through_the_page_is_stored_under_a_generated_name_and_queued(app: Flask, web: FlaskClient, clips: Path) -> None:
    response = page_upload(web, {"recording": _file(clips / "video.mp4", "Session 3 (Dr. K).mp4")})
    assert response.status_code == 303
    [(recording, analysis, job)] = _records(app)
    assert response.headers["Location"] == f"/analyses/{analysis.id}"
    assert (recording.kind, recording.media_type, recording.has_audio, recording.duration_s) == ("video", "video/mp4", True, 4.0)
    assert analysis.name == recording.name == "Session 3 (Dr. K).mp4"
    assert (analysis.mode, analysis.status.value, job.state) == ("av", "queued", JobState.QUEUED)
    assert recording.consented_at is not None
    user_id = _user_id(app, "uploader@example.org")
    assert stored_files(app, user_id) == [recording.stored_name]  # the upload's temporary part is gone
    assert current.storage(app).path(user_id, recording.stored_name).read_bytes() == (clips / "video.mp4").read_bytes()
    assert "Waiting for a worker" in web.get(response.headers["Location"]).text


def test_the_api_answers_201_with_the_analysis_and_its_location(app: Flask, api: tuple[int, dict[str, str]], clips: Path) -> None:
    user_id, headers = api
    response = web_post(app, headers, recording=_file(clips / "video.mp4"), consent="true", mode="face", name="Face only, please")
    assert response.status_code == 201, response.json
    body = response.json
    assert response.headers["Location"] == f"/api/v1/analyses/{body['id']}" == body["links"]["self"]
    assert (body["name"], body["mode"], body["status"], body["stage"], body["percent"]) == ("Face only, please", "face", "queued", "queued", 0)
    assert body["recording"]["kind"] == "video" and body["timeline_ready"] is False and body["files"] == {}
    assert len(stored_files(app, user_id)) == 1


def web_post(app: Flask, headers: dict[str, str], **form: object) -> object:
    return app.test_client().post("/api/v1/analyses", data=form, headers=headers, content_type="multipart/form-data")


@pytest.mark.parametrize(
    ("files", "kind", "mode", "has_audio", "stored"),
    [
        ({"recording": "silent.mp4", "sound": "voice.wav"}, "video", "av", True, 2),
        ({"recording": "silent.mp4", "sound": "voice.flac"}, "video", "av", True, 2),
        ({"recording": "silent.mp4"}, "video", "face", False, 1),
        ({"recording": "voice.wav"}, "audio", "audio", True, 1),
        ({"recording": "photo.jpg"}, "image", "face", False, 1),
    ],
)
def test_each_kind_of_recording_gets_the_mode_its_content_allows(app: Flask, api: tuple[int, dict[str, str]], clips: Path,
                                                                 files: dict[str, str], kind: str, mode: str, has_audio: bool,
                                                                 stored: int) -> None:  # fmt: skip
    user_id, headers = api
    response = web_post(app, headers, consent="true", **{slot: _file(clips / name) for slot, name in files.items()})
    assert response.status_code == 201, response.json
    [(recording, analysis, _job)] = _records(app)
    assert (recording.kind, analysis.mode, recording.has_audio) == (kind, mode, has_audio)
    assert (recording.sound_stored_name is not None) == ("sound" in files)
    assert len(stored_files(app, user_id)) == stored


# Streaming


class _Body(io.RawIOBase):
    """A request body made as it is read: a real video, then ``padding`` bytes in an MP4 ``free``
    box (which players skip), so a large upload never exists in this process's memory either."""

    def __init__(self, head: bytes, video: bytes, padding: int, tail: bytes) -> None:
        box = (8 + padding).to_bytes(4, "big") + b"free"
        self._parts: Iterator[bytes] = iter([head, video, box, *self._zeros(padding), tail])
        self._buffer, self._sent = b"", 0
        self.length = len(head) + len(video) + len(box) + padding + len(tail)

    @staticmethod
    def _zeros(count: int) -> Iterator[bytes]:
        chunk = bytes(1 << 20)
        while count > 0:
            yield chunk[: min(count, len(chunk))]
            count -= len(chunk)

    def readable(self) -> bool:
        return True

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            part = next(self._parts, None)
            if part is None:
                return 0
            self._buffer = part
        size = min(len(target), len(self._buffer))
        target[:size], self._buffer = self._buffer[:size], self._buffer[size:]
        self._sent += size
        return size


def _multipart(video: Path, padding: int) -> tuple[_Body, str]:
    boundary = "----emofuse-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"consent\"\r\n\r\ntrue\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"recording\"; filename=\"long.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()  # fmt: skip
    tail = f"\r\n--{boundary}--\r\n".encode()
    return _Body(head, video.read_bytes(), padding, tail), f"multipart/form-data; boundary={boundary}"


def _stream(client: FlaskClient, body: _Body, content_type: str, headers: dict[str, str]) -> object:
    """POST ``body`` as it is read, as a server hands a request to the application."""
    return client.post("/api/v1/analyses", headers=headers,
                       environ_overrides={"wsgi.input": body, "CONTENT_LENGTH": str(body.length), "CONTENT_TYPE": content_type})


def test_a_200_mb_upload_streams_to_disk_in_chunks(app: Flask, api: tuple[int, dict[str, str]], clips: Path) -> None:
    """The request's peak Python memory stays under 16 MiB for 200 MiB: werkzeug writes each
    64 KiB chunk to the temporary file in the user's directory; nothing holds the whole."""
    user_id, headers = api
    padding = 200 * 2**20
    body, content_type = _multipart(clips / "video.mp4", padding)
    client = app.test_client()
    tracemalloc.start()
    try:
        response = _stream(client, body, content_type, headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 201, response.json
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    [(recording, _analysis, _job)] = _records(app)
    assert recording.size_bytes == (clips / "video.mp4").stat().st_size + 8 + padding
    assert stored_files(app, user_id) == [recording.stored_name]


def test_an_upload_over_the_size_limit_is_refused_before_its_body_is_read(tmp_path: Path, clips: Path) -> None:
    app = gateway_app(tmp_path / "data", max_upload_bytes=2**20)
    user_id, headers = api_user(app, "big@example.org")
    body, content_type = _multipart(clips / "video.mp4", 3 * 2**20)
    response = _stream(app.test_client(), body, content_type, headers)
    assert response.status_code == 413
    assert response.json["error"] == {"code": "too_large", "message": "The upload is larger than the limit of 1 MB."}
    assert body._sent == 0  # not a byte read
    assert _records(app) == [] and stored_files(app, user_id) == []


def test_a_recording_longer_than_the_limit_is_refused_with_the_limit(tmp_path: Path, clips: Path) -> None:
    app = gateway_app(tmp_path / "data", max_duration_s=3.0)
    user_id, headers = api_user(app, "long@example.org")
    response = web_post(app, headers, recording=_file(clips / "video.mp4"), consent="true")
    assert response.status_code == 422
    assert response.json["error"]["message"] == "The recording lasts 4 s; the limit is 3 s."
    assert _records(app) == [] and stored_files(app, user_id) == []


def test_the_page_needs_a_signed_in_user_and_the_api_a_token(app: Flask, clips: Path) -> None:
    anonymous = app.test_client()
    assert anonymous.get("/analyses/new").headers["Location"].startswith("/auth/sign-in")
    response = anonymous.post("/api/v1/analyses", data={"recording": _file(clips / "video.mp4"), "consent": "true"},
                              content_type="multipart/form-data")  # fmt: skip
    assert response.status_code == 401 and response.json["error"]["code"] == "authentication_required"
    assert _records(app) == []


# Names


def test_display_names_keep_what_a_person_typed() -> None:
    assert display_name("  Interview   with  Ana.mov ", fallback="x") == "Interview with Ana.mov"
    assert display_name("", fallback="Recording") == "Recording"


# Sent twice


def test_a_form_sent_twice_makes_one_analysis_and_leads_to_it(app: Flask, web: FlaskClient, clips: Path) -> None:
    first = page_upload(web, {"recording": _file(clips / "video.mp4")}, key="the-same-form")
    again = page_upload(web, {"recording": _file(clips / "video.mp4")}, key="the-same-form")
    assert first.status_code == again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]
    assert "This upload was already received" in web.get(again.headers["Location"]).text
    [(recording, _analysis, _job)] = _records(app)
    assert stored_files(app, recording.user_id) == [recording.stored_name]


def test_an_idempotency_key_sent_twice_is_409_with_the_first_analysis(app: Flask, api: tuple[int, dict[str, str]],
                                                                      clips: Path) -> None:  # fmt: skip
    user_id, headers = api
    keyed = {**headers, "Idempotency-Key": "upload-7f3a"}
    first = web_post(app, keyed, recording=_file(clips / "video.mp4"), consent="true")
    again = web_post(app, keyed, recording=_file(clips / "video.mp4"), consent="true")
    assert (first.status_code, again.status_code) == (201, 409)
    assert again.json["error"] == {"code": "duplicate_upload", "message": f"This upload was already received, as analysis {first.json['id']}."}
    assert again.headers["Location"] == first.headers["Location"]
    assert len(_records(app)) == 1 and len(stored_files(app, user_id)) == 1


def test_too_many_analyses_waiting_is_429_until_one_is_done(app: Flask, api: tuple[int, dict[str, str]], clips: Path) -> None:
    user_id, headers = api
    app.config["EMOFUSE_MAX_PENDING_ANALYSES"] = 2
    statuses = [web_post(app, headers, recording=_file(clips / "video.mp4"), consent="true").status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    refused = web_post(app, headers, recording=_file(clips / "video.mp4"), consent="true")
    assert refused.headers["Retry-After"] == "30" and refused.json["error"]["code"] == "too_many_pending"
    assert len(stored_files(app, user_id)) == 2
    assert owned_counts(app, user_id)["Analysis"] == 2
