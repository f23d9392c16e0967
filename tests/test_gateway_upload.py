"""Uploads through the page and the API: streamed to disk, checked from their content, recorded
whole or not at all; bad input of every kind refused with its reason and the right status.

A real SQLite database in tmp_path and real media files made here; no Triton is needed: an
upload only records the analysis and queues its job (tests/test_gateway_jobs.py runs them).
"""

from __future__ import annotations

import dataclasses
import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import create_app, current
from gateway.config import Config
from gateway.db import engine_of
from gateway.failures import CSRF_FAILED
from gateway.models import Analysis, Job, JobState, Recording
from gateway.testing_flow import api_user, owned_counts, page_upload, signed_in, stored_files
from gateway.uploads import display_name
from preprocessing.synthesis import SampleSpec, astronaut_face, write_sample_video

TINY = dict(width=320, height=180, face_height=120)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real recordings, and files that only look like them."""
    root = tmp_path_factory.mktemp("upload-clips")
    write_sample_video(root / "video.mp4", SampleSpec(duration_s=4.0, **TINY))
    write_sample_video(root / "silent.mp4", SampleSpec(duration_s=4.0, audio=None, **TINY))
    rate = 16000
    tone = 0.2 * np.sin(2 * np.pi * 220 * np.arange(3 * rate) / rate)
    soundfile.write(root / "voice.wav", tone.astype(np.float32), rate)
    soundfile.write(root / "voice.flac", tone.astype(np.float32), rate)
    cv2.imwrite(str(root / "photo.jpg"), cv2.cvtColor(astronaut_face(), cv2.COLOR_RGB2BGR))
    data = (root / "video.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])  # its index (at the end) is gone
    _faststart(root / "video.mp4", root / "indexed.mp4")
    indexed = (root / "indexed.mp4").read_bytes()
    (root / "cut_indexed.mp4").write_bytes(indexed[: len(indexed) // 2])  # its index is whole, half its data is not
    (root / "program.mp4").write_bytes(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(4000))  # a Windows program, renamed
    (root / "notes.txt").write_text("not a recording\n" * 50)
    (root / "empty.mp4").write_bytes(b"")
    return root


def _faststart(source: Path, out: Path) -> None:
    """``source`` rewritten with its index before its data, as web-ready MP4s are."""
    with av.open(str(source)) as inp, av.open(str(out), "w", options={"movflags": "faststart"}) as output:
        copies = {stream: output.add_stream_from_template(stream) for stream in inp.streams}
        for packet in inp.demux():
            if packet.size:
                packet.stream = copies[packet.stream]
                output.mux(packet)


def _app(tmp_path: Path, **settings: object) -> Flask:
    config = Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path / "data")})
    return create_app(dataclasses.replace(config, **settings))


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return _app(tmp_path)


@pytest.fixture
def web(app: Flask) -> FlaskClient:
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

    def __init__(self, head: bytes, video: bytes, padding: int, tail: bytes, *, stop_after: int | None = None) -> None:
        box = (8 + padding).to_bytes(4, "big") + b"free"
        self._parts: Iterator[bytes] = iter([head, video, box, *self._zeros(padding), tail])
        self._buffer, self._sent, self._stop_after = b"", 0, stop_after
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
        if self._stop_after is not None and self._sent >= self._stop_after:
            return 0  # the client went away: the body ends before its Content-Length
        while not self._buffer:
            part = next(self._parts, None)
            if part is None:
                return 0
            self._buffer = part
        size = min(len(target), len(self._buffer))
        target[:size], self._buffer = self._buffer[:size], self._buffer[size:]
        self._sent += size
        return size


def _multipart(video: Path, padding: int, *, stop_after: int | None = None) -> tuple[_Body, str]:
    boundary = "----emofuse-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"consent\"\r\n\r\ntrue\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"recording\"; filename=\"long.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()  # fmt: skip
    tail = f"\r\n--{boundary}--\r\n".encode()
    return _Body(head, video.read_bytes(), padding, tail, stop_after=stop_after), f"multipart/form-data; boundary={boundary}"


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


def test_an_upload_cut_off_halfway_leaves_nothing_behind(app: Flask, api: tuple[int, dict[str, str]], clips: Path) -> None:
    user_id, headers = api
    body, content_type = _multipart(clips / "video.mp4", 8 * 2**20, stop_after=3 * 2**20)
    response = _stream(app.test_client(), body, content_type, headers)
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_upload"
    assert response.json["error"]["message"] == "The upload was cut off before it was complete; send it again."
    assert _records(app) == []
    assert stored_files(app, user_id) == []


# What is refused, with its reason


BAD = [
    # (files, form fields, status, code, message)
    ({"recording": "empty.mp4"}, {}, 422, "unprocessable_recording", "The file is empty."),
    ({"recording": "cut.mp4"}, {}, 422, "unprocessable_recording",
     "The file could not be read as a video: not a readable media file (Invalid data found when processing input)."),
    ({"recording": "cut_indexed.mp4"}, {}, 422, "unprocessable_recording",
     "The file could not be read as a video: it is cut short (it ends at 2 s of the 4 s its header announces)."),
    ({"recording": "program.mp4"}, {}, 415, "unsupported_media_type",
     "The file is not a video, sound file or photo that emofuse reads; send a video (.mp4, .mov, .webm, .mkv, .avi), "
     "a sound file (.wav, .flac, .mp3, .ogg, .m4a, .aac) or a photo (JPEG, PNG, WebP)."),
    ({"recording": "notes.txt"}, {}, 415, "unsupported_media_type", None),
    ({"recording": "silent.mp4", "sound": "photo.jpg"}, {}, 415, "unsupported_media_type",
     "The sound file holds a photo, not sound alone; send the video as the recording."),
    ({"recording": "silent.mp4", "sound": "notes.txt"}, {}, 415, "unsupported_media_type",
     "The sound file is not one emofuse reads; send .wav, .flac, .mp3, .ogg, .m4a, .aac."),
    ({"recording": "video.mp4", "sound": "silent.mp4"}, {}, 415, "unsupported_media_type",
     "The sound file holds a video, not sound alone; send the video as the recording."),
    ({"recording": "voice.wav", "sound": "voice.wav"}, {}, 422, "unprocessable_recording",
     "A separate sound file goes with a video; the recording is a sound file."),
    ({"recording": "silent.mp4"}, {"mode": "av"}, 422, "unprocessable_recording",
     "This video has no sound track: it is judged by its face (mode face), or send a sound file with it."),
    ({"recording": "photo.jpg"}, {"mode": "audio"}, 422, "unprocessable_recording",
     "A photo has no sound: it is judged by its faces (mode face)."),
    ({"recording": "voice.wav"}, {"mode": "face"}, 422, "unprocessable_recording",
     "A sound file has no picture: it is judged by its voice (mode audio)."),
    ({"recording": "video.mp4"}, {"mode": "telepathy"}, 400, "bad_upload",
     "Mode 'telepathy' is not one of face, audio, av, attention; leave it empty to use all the recording has."),
    ({}, {}, 400, "bad_upload", "Choose a recording to upload: a video, a sound file or a photo."),
    ({"recording": "video.mp4"}, {"consent": ""}, 403, "consent_required",
     "Confirm that the people recorded agreed to this analysis (consent=true)."),
]


def _seed(app: Flask, headers: dict[str, str], clips: Path) -> tuple[Recording, list[str]]:
    """An earlier analysis, which a refused upload must leave as it was."""
    assert web_post(app, headers, recording=_file(clips / "video.mp4"), consent="true").status_code == 201
    [(recording, _analysis, _job)] = _records(app)
    return recording, stored_files(app, recording.user_id)


@pytest.mark.parametrize(("files", "fields", "status", "code", "message"), BAD)
def test_bad_input_through_the_api_gets_its_status_and_reason_and_leaves_nothing(
    app: Flask, api: tuple[int, dict[str, str]], clips: Path, files: dict[str, str], fields: dict[str, str], status: int, code: str,
    message: str | None,
) -> None:  # fmt: skip
    user_id, headers = api
    earlier, earlier_files = _seed(app, headers, clips)
    form = {"consent": "true", **fields, **{slot: _file(clips / name) for slot, name in files.items()}}
    response = web_post(app, headers, **form)
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    if message is not None:
        assert response.json["error"]["message"] == message
    assert "Traceback" not in response.text
    assert [row[0].id for row in _records(app)] == [earlier.id]  # no partial record; the earlier one untouched
    assert stored_files(app, user_id) == earlier_files  # no orphan file, no temporary part
    assert current.storage(app).path(user_id, earlier.stored_name).read_bytes() == (clips / "video.mp4").read_bytes()


@pytest.mark.parametrize(("files", "fields", "status", "code", "message"), [BAD[0], BAD[3], BAD[8], BAD[-1]])
def test_bad_input_through_the_page_shows_the_form_again_with_the_reason(
    app: Flask, web: FlaskClient, clips: Path, files: dict[str, str], fields: dict[str, str], status: int, code: str, message: str,
) -> None:  # fmt: skip
    consent = fields.get("consent", "true") == "true"
    response = page_upload(web, {slot: _file(clips / name) for slot, name in files.items()}, consent=consent,
                           **{k: v for k, v in fields.items() if k != "consent"})  # fmt: skip
    assert response.status_code == status
    assert f'<p class="notice error" role="alert" id="form-error">{_escaped(message)}</p>' in response.text
    assert 'enctype="multipart/form-data"' in response.text  # the form, ready to be sent again
    assert _records(app) == []
    assert stored_files(app, _user_id(app, "uploader@example.org")) == []


def _escaped(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def test_an_upload_over_the_size_limit_is_refused_before_its_body_is_read(tmp_path: Path, clips: Path) -> None:
    app = _app(tmp_path, max_upload_bytes=2**20)
    user_id, headers = api_user(app, "big@example.org")
    body, content_type = _multipart(clips / "video.mp4", 3 * 2**20)
    response = _stream(app.test_client(), body, content_type, headers)
    assert response.status_code == 413
    assert response.json["error"] == {"code": "too_large", "message": "The upload is larger than the limit of 1 MB."}
    assert body._sent == 0  # not a byte read
    assert _records(app) == [] and stored_files(app, user_id) == []


def test_a_recording_longer_than_the_limit_is_refused_with_the_limit(tmp_path: Path, clips: Path) -> None:
    app = _app(tmp_path, max_duration_s=3.0)
    user_id, headers = api_user(app, "long@example.org")
    response = web_post(app, headers, recording=_file(clips / "video.mp4"), consent="true")
    assert response.status_code == 422
    assert response.json["error"]["message"] == "The recording lasts 4 s; the limit is 3 s."
    assert _records(app) == [] and stored_files(app, user_id) == []


def test_a_form_without_its_csrf_token_is_refused_and_stores_nothing(app: Flask, web: FlaskClient, clips: Path) -> None:
    response = page_upload(web, {"recording": _file(clips / "video.mp4")}, csrf=False)
    assert response.status_code == 400
    assert CSRF_FAILED in response.text
    assert _records(app) == []
    assert stored_files(app, _user_id(app, "uploader@example.org")) == []


def test_the_page_needs_a_signed_in_user_and_the_api_a_token(app: Flask, clips: Path) -> None:
    anonymous = app.test_client()
    assert anonymous.get("/analyses/new").headers["Location"].startswith("/auth/sign-in")
    response = anonymous.post("/api/v1/analyses", data={"recording": _file(clips / "video.mp4"), "consent": "true"},
                              content_type="multipart/form-data")  # fmt: skip
    assert response.status_code == 401 and response.json["error"]["code"] == "authentication_required"
    assert _records(app) == []


# Names


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("../../../etc/passwd.mp4", "passwd.mp4"),
        ("bell\x07 escape\x1b[31m and\ttab.mp4", "bell escape[31m and tab.mp4"),
        ("\u202egpj.exe.mp4", "gpj.exe.mp4"),  # a right-to-left override would show it reversed
        ("ｓｅｓｓｉｏｎ.mp4", "ｓｅｓｓｉｏｎ.mp4"),  # full-width look-alikes: a name, shown as sent, never a path
        ("раураl.mp4", "раураl.mp4"),  # Cyrillic look-alikes
        ("x" * 1000 + ".mp4", "x" * 199 + "…"),
        ("...", None),
    ],
)
def test_hostile_file_names_reach_no_path_and_are_shown_cleaned(app: Flask, api: tuple[int, dict[str, str]], clips: Path,
                                                                sent: str, shown: str | None) -> None:  # fmt: skip
    user_id, headers = api
    response = web_post(app, headers, recording=(io.BytesIO((clips / "video.mp4").read_bytes()), sent), consent="true")
    assert response.status_code == 201, response.json
    [(recording, analysis, _job)] = _records(app)
    if shown is None:
        assert analysis.name.startswith("Recording of ")
    else:
        assert analysis.name == recording.name == shown
    assert stored_files(app, user_id) == [recording.stored_name]
    assert len(recording.stored_name) == 36 and recording.stored_name.endswith(".mp4")
    data_dir = current.config(app).data_dir
    assert {p.name for p in data_dir.iterdir()} <= {"emofuse.sqlite", "emofuse.sqlite-shm", "emofuse.sqlite-wal",
                                                     "emofuse.sqlite.migrate.lock", "secret_key", "users"}  # fmt: skip
    assert [p.name for p in (data_dir / "users").iterdir()] == [str(user_id)]


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
