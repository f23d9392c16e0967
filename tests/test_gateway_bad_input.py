"""Bad input, through the page and through the API alike: every case runs once as a signed-in
browser sending the upload form and once as a program with an API token.

Each refusal is checked for its status, its message (the API's JSON with a machine code, the
page's form shown again with the message), no traceback, no record and no file left (not even a
temporary part or an unpacked folder), and the user's earlier analysis untouched with its file.
A real SQLite database in tmp_path, real files made here (videos, .mat EEG, zip archives built
member by member), real servers with raw sockets for the cancelled uploads, and the real Triton of
tests/conftest.py for the recordings that are accepted but cannot be judged in full.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import html
import io
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import av
import cv2
import numpy as np
import pytest
import scipy.io
import soundfile
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from gateway import create_app, current
from gateway.accounts import delete_user
from gateway.config import Config
from gateway.db import engine_of
from gateway.failures import CSRF_FAILED
from gateway.models import Analysis, ApiToken, User, new_session_token
from gateway.testing import csrf_token, free_port, sign_in
from gateway.testing_flow import PASSWORD, page_upload, runner_for, signed_in, stored_files, token_for
from gateway.tokens import revoke_token
from preprocessing.synthesis import SampleSpec, astronaut_face, write_sample_video
from training.synthetic_eeg import SyntheticEEGSpec, synthetic_trial_eeg

TINY = dict(width=320, height=180, face_height=120)
SPEC = SyntheticEEGSpec(duration_s=14.0)
TRIAL = {"eeg_rate": str(SPEC.rate), "eeg_channels": " ".join(SPEC.channels), "eeg_variable": "eeg"}
CHANNELS = ("page", "api")
UNSUPPORTED = ("The file is not a video, sound file or photo that emofuse reads; send a video (.mp4, .mov, .webm, .mkv, .avi), "
               "a sound file (.wav, .flac, .mp3, .ogg, .m4a, .aac) or a photo (JPEG, PNG, WebP).")  # fmt: skip
_FORM_ERROR = re.compile(r'<p class="notice error" role="alert" id="form-error">(.*?)</p>', re.S)


# Files


def _manifest(*rows: dict[str, str]) -> str:
    """A trial manifest (preprocessing/trial.py's columns), subject 1, the synthetic EEG's settings."""
    text = io.StringIO()
    writer = csv.DictWriter(text, ["subject", "trial", "label", "eeg", "video", "eeg_rate", "mat_key", "channels"])
    writer.writeheader()
    for row in rows:
        writer.writerow({"subject": 1, "label": "happy", "eeg_rate": SPEC.rate, "mat_key": "eeg", "channels": " ".join(SPEC.channels),
                         "video": "", **row})  # fmt: skip
    return text.getvalue()


ONE_TRIAL = _manifest({"trial": "t1", "eeg": "s01/t1.mat", "video": "s01/t1.mp4"})


def _zip(path: Path, members: dict[str | zipfile.ZipInfo, bytes | str | Path], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data.read_bytes() if isinstance(data, Path) else data)
    return path


def _trial_zip(path: Path, files: dict[str, Path], manifest: str = ONE_TRIAL, **extra: bytes | str | Path) -> Path:
    """A trial folder zipped whole (``trial/manifest.csv``, ``trial/s01/t1.mp4``...): ``files`` by their name in it."""
    return _zip(path, {"trial/manifest.csv": manifest, **{f"trial/{name}": file for name, file in files.items()}, **extra})


def _symlink(name: str) -> zipfile.ZipInfo:
    """A member that is a symbolic link, as `zip --symlinks` stores one: its data is the link's target."""
    info = zipfile.ZipInfo(name)
    info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
    return info


def _bomb(path: Path, name: str, size: int) -> Path:
    """A .zip whose member ``name`` inflates ``size`` zero bytes from about a thousandth of that."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open(name, "w") as member:
        chunk = bytes(2**20)
        for _ in range(size // len(chunk)):
            member.write(chunk)
    return path


def _damaged(path: Path, source: Path) -> Path:
    """``source`` zipped uncompressed, with bytes in the middle of the video changed: its CRC no longer matches."""
    _zip(path, {"manifest.csv": ONE_TRIAL.replace("s01/", ""), "t1.mp4": source, "t1.mat": b"x"}, method=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    middle = data.find(source.read_bytes()[:64]) + source.stat().st_size // 2
    data[middle : middle + 16] = bytes(16)
    path.write_bytes(bytes(data))
    return path


def _faststart(source: Path, out: Path) -> Path:
    """``source`` rewritten with its index before its data, as web-ready MP4s are."""
    with av.open(str(source)) as inp, av.open(str(out), "w", options={"movflags": "faststart"}) as output:
        copies = {stream: output.add_stream_from_template(stream) for stream in inp.streams}
        for packet in inp.demux():
            if packet.size:
                packet.stream = copies[packet.stream]
                output.mux(packet)
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real recordings and trials, files that only look like them, and archives of every bad kind."""
    root = tmp_path_factory.mktemp("bad-input")
    files = {name: root / name for name in ("video.mp4", "silent.mp4", "voice.wav", "photo.jpg", "t1.mp4", "short.mp4")}
    write_sample_video(files["video.mp4"], SampleSpec(duration_s=4.0, **TINY))
    write_sample_video(files["silent.mp4"], SampleSpec(duration_s=4.0, audio=None, **TINY))
    write_sample_video(files["t1.mp4"], SampleSpec(duration_s=14.0, **TINY))
    write_sample_video(files["short.mp4"], SampleSpec(duration_s=4.0, **TINY))
    rate = 16000
    soundfile.write(files["voice.wav"], (0.2 * np.sin(2 * np.pi * 220 * np.arange(3 * rate) / rate)).astype(np.float32), rate)
    cv2.imwrite(str(files["photo.jpg"]), cv2.cvtColor(astronaut_face(), cv2.COLOR_RGB2BGR))
    data = files["video.mp4"].read_bytes()
    files["cut.mp4"] = root / "cut.mp4"
    files["cut.mp4"].write_bytes(data[: len(data) // 2])  # its index, at the end, is gone
    files["cut_indexed.mp4"] = root / "cut_indexed.mp4"
    indexed = _faststart(files["video.mp4"], root / "indexed.mp4").read_bytes()
    files["cut_indexed.mp4"].write_bytes(indexed[: len(indexed) // 2])  # its index is whole, half its data is not
    files["program.mp4"] = root / "program.mp4"
    files["program.mp4"].write_bytes(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(4000))  # a Windows program, renamed
    files["notes.txt"] = root / "notes.txt"
    files["notes.txt"].write_text("not a recording\n" * 50)
    files["empty.mp4"] = root / "empty.mp4"
    files["empty.mp4"].write_bytes(b"")
    files["big.mp4"] = root / "big.mp4"
    files["big.mp4"].write_bytes(data + (8 + 2**20).to_bytes(4, "big") + b"free" + bytes(2**20))  # a video padded past 1 MB
    for name, seconds in (("t1.mat", 14.0), ("short.mat", 8.0), ("long.mat", 20.0)):
        files[name] = root / name
        scipy.io.savemat(files[name], {"eeg": synthetic_trial_eeg(dataclasses.replace(SPEC, duration_s=seconds), 1, 2).data})
    files["notes.mat"] = root / "notes.mat"
    files["notes.mat"].write_text("channel,value\nFz,1\n")
    files["signals.mat"] = root / "signals.mat"
    signals = synthetic_trial_eeg(SPEC, 1, 2).data
    scipy.io.savemat(files["signals.mat"], {"signals": signals, "reference": signals[:2]})  # two matrices: which one is the EEG?
    trial = {"s01/t1.mp4": files["t1.mp4"], "s01/t1.mat": files["t1.mat"]}
    zips = {
        "trial.zip": _trial_zip(root / "trial.zip", trial),
        "bomb.zip": _bomb(root / "bomb.zip", "trial/s01/t1.mat", 64 * 2**20),
        "traversal.zip": _zip(root / "traversal.zip", {"manifest.csv": ONE_TRIAL, "../../etc/passwd.mp4": b"x"}),
        "absolute.zip": _zip(root / "absolute.zip", {"manifest.csv": ONE_TRIAL, "/etc/cron.d/job": b"x"}),
        "symlink.zip": _zip(root / "symlink.zip", {"manifest.csv": ONE_TRIAL, _symlink("s01/t1.mp4"): "/etc/passwd"}),
        "duplicate.zip": _zip(root / "duplicate.zip", {"manifest.csv": ONE_TRIAL, "s01/t1.mat": b"a", "s01//t1.mat": b"b"}),
        "over.zip": _zip(root / "over.zip", {f"s01/{i}.bin": bytes(900 * 1024) for i in range(3)}),  # each too small to be a bomb
        "many.zip": _zip(root / "many.zip", {"manifest.csv": ONE_TRIAL, **{f"s01/{i:04}.txt": b"" for i in range(1000)}}),
        "bzip2.zip": _zip(root / "bzip2.zip", {"manifest.csv": ONE_TRIAL}, method=zipfile.ZIP_BZIP2),
        "damaged.zip": _damaged(root / "damaged.zip", files["t1.mp4"]),
        "no_manifest.zip": _zip(root / "no_manifest.zip", {"t1.mp4": files["t1.mp4"], "t1.mat": files["t1.mat"]}),
        "two_manifests.zip": _zip(root / "two_manifests.zip", {"a/manifest.csv": ONE_TRIAL, "b/manifest.csv": ONE_TRIAL}),
        "missing.zip": _trial_zip(root / "missing.zip", {"s01/t1.mat": files["t1.mat"]}),
        "eeg_only.zip": _trial_zip(root / "eeg_only.zip", trial, _manifest({"trial": "t1", "eeg": "s01/t1.mat"})),
        "two_trials.zip": _trial_zip(root / "two_trials.zip", trial, _manifest({"trial": "t1", "eeg": "s01/t1.mat", "video": "s01/t1.mp4"},
                                                                              {"trial": "t2", "eeg": "s01/t1.mat", "video": "s01/t1.mp4"})),  # fmt: skip
        "outside.zip": _trial_zip(root / "outside.zip", trial, ONE_TRIAL.replace("s01/t1.mat", "../t1.mat")),
        "not_utf8.zip": _trial_zip(root / "not_utf8.zip", trial, ONE_TRIAL.replace("happy", "h\xe4ppy").encode("latin-1")),  # type: ignore[arg-type]
        "zip_short_eeg.zip": _trial_zip(root / "zip_short_eeg.zip", {**trial, "s01/t1.mat": files["short.mat"]}),
        "zip_program.zip": _trial_zip(root / "zip_program.zip", {**trial, "s01/t1.mp4": files["program.mp4"]}),
        "zip_signals.zip": _trial_zip(root / "zip_signals.zip", {**trial, "s01/t1.mat": files["signals.mat"]}),
        "zip_one_file_twice.zip": _trial_zip(root / "zip_one_file_twice.zip", {"s01/t1.mat": files["t1.mp4"]},
                                             _manifest({"trial": "t1", "eeg": "s01/t1.mat", "video": "s01/t1.mat"})),
        "zip_short_video.zip": _trial_zip(root / "zip_short_video.zip", {**trial, "s01/t1.mp4": files["short.mp4"]}),
    }
    cut = root / "cut.zip"
    cut.write_bytes(zips["trial.zip"].read_bytes()[: zips["trial.zip"].stat().st_size // 2])
    return {**files, **zips, "cut.zip": cut}


# Who sends, and how


@dataclasses.dataclass
class Sender:
    """One user sending uploads through one channel: the page's form as a signed-in browser, or the API with a token."""

    channel: str
    app: Flask
    user_id: int
    web: FlaskClient
    headers: dict[str, str]

    def send(self, files: dict[str, tuple[IO[bytes], str]], *, consent: bool = True, csrf: bool = True, **fields: str) -> TestResponse:
        if self.channel == "page":
            return page_upload(self.web, files, consent=consent, csrf=csrf, **fields)
        form: dict[str, Any] = {**fields, **files, **({"consent": "true"} if consent else {})}
        return self.app.test_client().post("/api/v1/analyses", data=form, headers=self.headers, content_type="multipart/form-data")

    def post(self, form: dict[str, Any]) -> TestResponse:
        """``form`` as it is, to the page's address with the browser's cookies, or to the API's with the token."""
        if self.channel == "page":
            return self.web.post("/analyses", data=form, content_type="multipart/form-data")
        return self.app.test_client().post("/api/v1/analyses", data=form, headers=self.headers, content_type="multipart/form-data")

    def accepted(self, response: TestResponse) -> int:
        """The new analysis's id, from the page's redirect or the API's 201."""
        assert response.status_code == (303 if self.channel == "page" else 201), response.get_data(as_text=True)[:2000]
        return int(response.headers["Location"].rsplit("/", 1)[1])

    def refusal(self, response: TestResponse) -> tuple[str | None, str]:
        """The machine code (the API's; the page shows none) and the message the sender is shown."""
        text = response.get_data(as_text=True)
        assert "Traceback" not in text and 'File "/' not in text
        if self.channel == "api":
            return response.json["error"]["code"], response.json["error"]["message"]
        found = _FORM_ERROR.search(text)
        assert found is not None and 'enctype="multipart/form-data"' in text, text[:2000]  # the form, ready to be sent again
        return None, html.unescape(found.group(1))


def _sender(app: Flask, channel: str, email: str = "sender@example.org") -> Sender:
    web = signed_in(app, email)
    user_id, headers = token_for(app, email)
    return Sender(channel, app, user_id, web, headers)


def _app(tmp_path: Path, **settings: Any) -> Flask:
    return create_app(dataclasses.replace(Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path / "data")}), **settings))


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return _app(tmp_path)


@pytest.fixture(params=CHANNELS)
def sender(request: pytest.FixtureRequest, app: Flask) -> Sender:
    return _sender(app, request.param)


@dataclasses.dataclass(frozen=True)
class Earlier:
    """An analysis the user made before the bad upload, which the bad upload must leave as it was."""

    analysis_id: int
    stored_name: str
    files: list[str]


def _earlier(sender: Sender, clips: dict[str, Path]) -> Earlier:
    analysis_id = sender.accepted(sender.send({"recording": _file(clips["video.mp4"])}))
    with Session(engine_of(sender.app)) as session:
        stored = session.get(Analysis, analysis_id).recording.stored_name
    return Earlier(analysis_id, stored, stored_files(sender.app, sender.user_id))


@pytest.fixture
def earlier(sender: Sender, clips: dict[str, Path]) -> Earlier:
    return _earlier(sender, clips)


def _file(path: Path, name: str | None = None) -> tuple[io.BytesIO, str]:
    return io.BytesIO(path.read_bytes()), name or path.name


def _analysis_ids(app: Flask, user_id: int) -> list[int]:
    with Session(engine_of(app)) as session:
        return list(session.scalars(select(Analysis.id).where(Analysis.user_id == user_id).order_by(Analysis.id)))


def _assert_untouched(sender: Sender, earlier: Earlier, clips: dict[str, Path]) -> None:
    """No new record, no file but the earlier ones (no temporary part, no unpacked folder), the earlier one whole."""
    assert _analysis_ids(sender.app, sender.user_id) == [earlier.analysis_id]
    assert stored_files(sender.app, sender.user_id) == earlier.files
    assert current.storage(sender.app).path(sender.user_id, earlier.stored_name).read_bytes() == clips["video.mp4"].read_bytes()
    response = sender.web.get(f"/analyses/{earlier.analysis_id}/files/recording")
    assert response.status_code == 200 and response.data == clips["video.mp4"].read_bytes()


# What is refused, with its reason


@dataclasses.dataclass(frozen=True)
class Bad:
    """An upload that is refused: its files (slot: clip), its form fields, and what the sender is told."""

    id: str
    files: dict[str, str]
    status: int
    code: str
    message: str | re.Pattern[str]
    fields: dict[str, str] = dataclasses.field(default_factory=dict)
    consent: bool = True


BAD = [
    # Recordings
    Bad("empty file", {"recording": "empty.mp4"}, 422, "unprocessable_recording", "The file is empty."),
    Bad("truncated video", {"recording": "cut.mp4"}, 422, "unprocessable_recording",
        "The file could not be read as a video: not a readable media file (Invalid data found when processing input)."),
    Bad("truncated video, index first", {"recording": "cut_indexed.mp4"}, 422, "unprocessable_recording",
        "The file could not be read as a video: it is cut short (it ends at 2 s of the 4 s its header announces)."),
    Bad("wrong type", {"recording": "notes.txt"}, 415, "unsupported_media_type", UNSUPPORTED),
    Bad("program renamed .mp4", {"recording": "program.mp4"}, 415, "unsupported_media_type", UNSUPPORTED),
    Bad("photo as the sound", {"recording": "silent.mp4", "sound": "photo.jpg"}, 415, "unsupported_media_type",
        "The sound file holds a photo, not sound alone; send the video as the recording."),
    Bad("text as the sound", {"recording": "silent.mp4", "sound": "notes.txt"}, 415, "unsupported_media_type",
        "The sound file is not one emofuse reads; send .wav, .flac, .mp3, .ogg, .m4a, .aac."),
    Bad("video as the sound", {"recording": "video.mp4", "sound": "silent.mp4"}, 415, "unsupported_media_type",
        "The sound file holds a video, not sound alone; send the video as the recording."),
    Bad("sound file with a sound file", {"recording": "voice.wav", "sound": "voice.wav"}, 422, "unprocessable_recording",
        "A separate sound file goes with a video; the recording is a sound file."),
    Bad("photo judged by voice", {"recording": "photo.jpg"}, 422, "unprocessable_recording",
        "A photo has no sound: it is judged by its faces (mode face).", {"mode": "audio"}),
    Bad("sound judged by face", {"recording": "voice.wav"}, 422, "unprocessable_recording",
        "A sound file has no picture: it is judged by its voice (mode audio).", {"mode": "face"}),
    Bad("no sound track, voice asked", {"recording": "silent.mp4"}, 422, "unprocessable_recording",
        "This video has no sound track: it is judged by its face (mode face), or send a sound file with it.", {"mode": "av"}),
    Bad("unknown mode", {"recording": "video.mp4"}, 400, "bad_upload",
        "Mode 'telepathy' is not one of face, audio, av, attention; leave it empty to use all the recording has.", {"mode": "telepathy"}),
    Bad("no file", {}, 400, "bad_upload", "Choose a recording to upload: a video, a sound file, a photo or a trial folder's .zip."),
    Bad("no consent", {"recording": "video.mp4"}, 403, "consent_required",
        "Confirm that the people recorded agreed to this analysis (consent=true).", consent=False),
    # A video and its EEG
    Bad(".mat without the named variable", {"recording": "t1.mp4", "eeg": "t1.mat"}, 422, "unprocessable_recording",
        "The EEG file has no variable 'signals'; it has ['eeg']. Set eeg_variable to one of them.", {**TRIAL, "eeg_variable": "signals"}),
    Bad(".mat of several variables, none named", {"recording": "t1.mp4", "eeg": "signals.mat"}, 422, "unprocessable_recording",
        re.compile(r"The EEG file .*'signals'.*"), {**TRIAL, "eeg_variable": ""}),
    Bad("EEG shorter than the video", {"recording": "t1.mp4", "eeg": "short.mat"}, 422, "unprocessable_recording",
        "The EEG lasts 8 s, shorter than the video's 14 s; send the EEG of the whole trial.", TRIAL),
    Bad("EEG and video of other lengths", {"recording": "t1.mp4", "eeg": "long.mat"}, 422, "unprocessable_recording",
        "The EEG lasts 20 s and the video 14 s: they must record the same trial (at most 1 s apart).", TRIAL),
    Bad("EEG that is text", {"recording": "t1.mp4", "eeg": "notes.mat"}, 415, "unsupported_media_type",
        "The EEG file is not a .mat, EDF or BDF file, whatever its name says.", TRIAL),
    Bad(".mat without its rate", {"recording": "t1.mp4", "eeg": "t1.mat"}, 400, "bad_upload",
        "A .mat file does not store its sampling rate: give it in Hz (eeg_rate).", {**TRIAL, "eeg_rate": ""}),
    Bad("EEG rate that is not a number", {"recording": "t1.mp4", "eeg": "t1.mat"}, 400, "bad_upload",
        "The EEG's sampling rate 'fast' is not a number of Hz.", {**TRIAL, "eeg_rate": "fast"}),
    Bad("EEG channel names of another count", {"recording": "t1.mp4", "eeg": "t1.mat"}, 422, "unprocessable_recording",
        "The EEG file variable 'eeg' has 14 channels (rows), but 2 channel names were given.", {**TRIAL, "eeg_channels": "Fz Cz"}),
    Bad("EEG with a video too short for a trial", {"recording": "short.mp4", "eeg": "t1.mat"}, 422, "unprocessable_recording",
        "A trial's video lasts 12.6 to 60 s (one trial, about 21 s); this one lasts 4 s.", TRIAL),
    # A trial folder's .zip: the archive
    Bad("zip bomb", {"recording": "bomb.zip"}, 422, "unsafe_archive", re.compile(
        r"The \.zip looks like a zip bomb: 'trial/s01/t1\.mat' unpacks to 64 MB from \d\d KB, 1,0\d\d to 1, where recordings compress "
        r"100 to 1 at most; nothing was unpacked\.")),  # the ratio is zlib's
    Bad("zip member climbing out", {"recording": "traversal.zip"}, 422, "unsafe_archive",
        "The .zip holds '../../etc/passwd.mp4', a path outside its folder; nothing was unpacked."),
    Bad("zip member with an absolute path", {"recording": "absolute.zip"}, 422, "unsafe_archive",
        "The .zip holds '/etc/cron.d/job', a path outside its folder; nothing was unpacked."),
    Bad("zip member that is a symlink", {"recording": "symlink.zip"}, 422, "unsafe_archive",
        "The .zip holds 's01/t1.mp4', a symbolic link; put the file itself in the .zip."),
    Bad("zip member twice", {"recording": "duplicate.zip"}, 422, "unsafe_archive",
        "The .zip holds 's01/t1.mat' twice; which one is meant cannot be told."),
    Bad("zip of too many files", {"recording": "many.zip"}, 422, "unsafe_archive",
        "The .zip holds 1,001 files; a trial folder holds at most 1,000."),
    Bad("zip compressed with bzip2", {"recording": "bzip2.zip"}, 422, "unsafe_archive",
        "'manifest.csv' in the .zip is compressed in a way not read here; zip it with the usual compression (deflate) or none."),
    Bad("zip cut off", {"recording": "cut.zip"}, 422, "damaged_archive",
        "The .zip is damaged or cut off: its end, which lists its files, is missing; send it again."),
    Bad("zip damaged", {"recording": "damaged.zip"}, 422, "damaged_archive",
        "The .zip is damaged or cut off: 't1.mp4' does not unpack (Bad CRC-32 for file 't1.mp4'); send it again."),
    Bad("zip with an EEG file beside it", {"recording": "trial.zip", "eeg": "t1.mat"}, 400, "bad_upload",
        "A trial folder's .zip holds its sound and EEG: send the .zip alone, without a sound or EEG file.", TRIAL),
    # A trial folder's .zip: its manifest
    Bad("zip without a manifest", {"recording": "no_manifest.zip"}, 422, "unprocessable_recording",
        "The .zip holds no manifest.csv: zip a trial folder, its manifest (subject, trial, label, eeg, video, eeg_rate, mat_key, "
        "channels) and the files its rows name."),
    Bad("zip of two manifests", {"recording": "two_manifests.zip"}, 422, "unprocessable_recording",
        "The .zip holds 2 manifests ('a/manifest.csv', 'b/manifest.csv'); send one trial folder."),
    Bad("zip without the video its manifest names", {"recording": "missing.zip"}, 422, "unprocessable_recording",
        "The .zip's 'trial/manifest.csv', line 2: the video file s01/t1.mp4 is not there; correct the path (relative to the manifest)."),
    Bad("zip whose manifest points outside it", {"recording": "outside.zip"}, 422, "unprocessable_recording",
        "The .zip's 'trial/manifest.csv', line 2: the eeg file ../t1.mat is not there; correct the path (relative to the manifest)."),
    Bad("zip whose manifest is not UTF-8", {"recording": "not_utf8.zip"}, 422, "unprocessable_recording",
        "The .zip's 'trial/manifest.csv' is not UTF-8 text; save the manifest as a UTF-8 CSV."),
    Bad("zip of EEG alone", {"recording": "eeg_only.zip"}, 422, "unprocessable_recording",
        "No trial in the manifest has a video; a trial is judged here from its video and EEG together (trials of EEG alone: emofuse batch)."),
    Bad("zip of two trials, none chosen", {"recording": "two_trials.zip"}, 422, "unprocessable_recording",
        "The manifest lists 2 trials with a video (1/t1, 1/t2); name the one to analyse (trial: SUBJECT/TRIAL), or send a .zip of one trial."),
    Bad("zip of two trials, another chosen", {"recording": "two_trials.zip"}, 422, "unprocessable_recording",
        "The manifest has no trial with a video named '1/t9'; its trials with a video are 1/t1, 1/t2.", {"trial": "1/t9"}),
    # A trial folder's .zip: its files, named as the .zip names them
    Bad("zip whose EEG is shorter than its video", {"recording": "zip_short_eeg.zip"}, 422, "unprocessable_recording",
        "In the .zip, 'trial/s01/t1.mat': the EEG lasts 8 s, shorter than the video's 14 s; send the EEG of the whole trial."),
    Bad("zip whose .mat lacks the manifest's variable", {"recording": "zip_signals.zip"}, 422, "unprocessable_recording",
        "In the .zip, 'trial/s01/t1.mat': the EEG file has no variable 'eeg'; it has ['reference', 'signals']. Set eeg_variable to one of them."),
    Bad("zip whose video is a program", {"recording": "zip_program.zip"}, 415, "unsupported_media_type",
        "In the .zip, 'trial/s01/t1.mp4': t" + UNSUPPORTED[1:]),
    Bad("zip naming one file as video and EEG", {"recording": "zip_one_file_twice.zip"}, 415, "unsupported_media_type",
        "In the .zip, 'trial/s01/t1.mat': the EEG file is not a .mat, EDF or BDF file, whatever its name says."),
    Bad("zip whose video is too short for a trial", {"recording": "zip_short_video.zip"}, 422, "unprocessable_recording",
        "In the .zip, 'trial/s01/t1.mp4': a trial's video lasts 12.6 to 60 s (one trial, about 21 s); this one lasts 4 s."),
]


@pytest.mark.parametrize("bad", BAD, ids=[bad.id for bad in BAD])
def test_bad_input_is_refused_with_its_reason_and_leaves_nothing_behind(sender: Sender, earlier: Earlier, clips: dict[str, Path],
                                                                        bad: Bad) -> None:  # fmt: skip
    response = sender.send({slot: _file(clips[name]) for slot, name in bad.files.items()}, consent=bad.consent, **bad.fields)
    assert response.status_code == bad.status
    code, message = sender.refusal(response)
    assert code in (None, bad.code)
    if isinstance(bad.message, str):
        assert message == bad.message
    else:
        assert bad.message.fullmatch(message), message
    _assert_untouched(sender, earlier, clips)


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(("sent", "message"), [
    ("big.mp4", "The upload is larger than the limit of 1 MB."),
    ("over.zip", "The .zip unpacks to 2.6 MB, more than the limit of 1 MB; nothing was unpacked."),
], ids=["file", "zip unpacked"])  # fmt: skip
def test_over_the_size_limit_is_413_with_the_limit(tmp_path: Path, clips: dict[str, Path], channel: str, sent: str,
                                                   message: str) -> None:  # fmt: skip
    sender = _sender(_app(tmp_path, max_upload_bytes=2**20), channel)
    earlier = _earlier(sender, clips)
    response = sender.send({"recording": _file(clips[sent])})
    assert response.status_code == 413
    assert sender.refusal(response) == ({"api": "too_large"}.get(channel), message)
    _assert_untouched(sender, earlier, clips)


# Who may send


def _revoke_token(sender: Sender) -> None:
    with Session(engine_of(sender.app)) as session:
        for token in session.scalars(select(ApiToken).where(ApiToken.user_id == sender.user_id)):
            revoke_token(session, token)


def _end_sessions(sender: Sender) -> None:
    """What a password change in another browser does: every session of the account ends."""
    with Session(engine_of(sender.app)) as session:
        session.get(User, sender.user_id).session_token = new_session_token()
        session.commit()


def _delete_account(sender: Sender) -> None:
    with Session(engine_of(sender.app)) as session:
        delete_user(session, current.storage(sender.app), session.get(User, sender.user_id))


CREDENTIALS = [
    # (what happened, what is done to the sender, the page's answer, the API's answer)
    ("no CSRF token or no bearer token", None, (400, CSRF_FAILED), (401, "authentication_required")),
    ("token revoked, session ended", "revoked", (302, None), (401, "invalid_token")),
    ("account deleted", "deleted", (302, None), (401, "invalid_token")),
]


@pytest.mark.parametrize(("what", "done", "page", "api"), CREDENTIALS, ids=[row[0] for row in CREDENTIALS])
def test_an_upload_without_valid_credentials_is_refused_and_stores_nothing(sender: Sender, earlier: Earlier, clips: dict[str, Path],
                                                                          what: str, done: str | None, page: tuple[int, str | None],
                                                                          api: tuple[int, str | None]) -> None:  # fmt: skip
    form = _form_fields(sender)  # the form as the browser shows it, before its session ends
    if done == "revoked":
        _revoke_token(sender) if sender.channel == "api" else _end_sessions(sender)
    elif done == "deleted":
        _delete_account(sender)
    else:
        form.pop("csrf_token", None)
        sender.headers = {}
    response = sender.post({**form, "recording": _file(clips["video.mp4"])})
    status, expected = page if sender.channel == "page" else api
    assert response.status_code == status
    if status == 302:
        assert response.headers["Location"].startswith("/auth/sign-in")
    elif sender.channel == "page":
        assert expected in response.get_data(as_text=True) and "Traceback" not in response.get_data(as_text=True)
    else:
        assert response.json["error"]["code"] == expected
    if done == "deleted":
        assert not (current.storage(sender.app).root / str(sender.user_id)).exists()  # nothing made for a user who is gone
        return
    if done == "revoked" and sender.channel == "page":
        assert sign_in(sender.web, "sender@example.org", PASSWORD).status_code == 302  # signed in again, the earlier one is there
    _assert_untouched(sender, earlier, clips)


# Names


NAMES = [
    # (sent, shown)
    ("../../etc/passwd.mp4", "passwd.mp4"),
    ("bell\x07 escape\x1b[31m and\ttab\x7f.mp4", "bell escape[31m and tab.mp4"),
    ("\u202egpj.exe.mp4", "gpj.exe.mp4"),  # a right-to-left override would show it reversed
    ("vide\u043e.mp4", "vide\u043e.mp4"),  # a Cyrillic o: a name, shown as sent, never a path
    ("ｓｅｓｓｉｏｎ.mp4", "ｓｅｓｓｉｏｎ.mp4"),  # full-width look-alikes
    ("x" * 1000 + ".mp4", "x" * 199 + "…"),
    ("<img src=x onerror=alert(1)>.mp4", "<img src=x onerror=alert(1)>.mp4"),  # shown escaped
    ("...", None),
]


@pytest.mark.parametrize(("sent", "shown"), NAMES, ids=[ascii(sent)[:30] for sent, _ in NAMES])
def test_a_hostile_file_name_reaches_no_path_and_is_shown_cleaned(sender: Sender, clips: dict[str, Path], sent: str,
                                                                  shown: str | None) -> None:  # fmt: skip
    analysis_id = sender.accepted(sender.send({"recording": _file(clips["video.mp4"], sent)}))
    with Session(engine_of(sender.app)) as session:
        analysis = session.get(Analysis, analysis_id)
        name, stored = analysis.name, analysis.recording.stored_name
    assert name.startswith("Recording of ") if shown is None else name == shown
    assert re.fullmatch(r"[0-9a-f]{32}\.mp4", stored) and stored_files(sender.app, sender.user_id) == [stored]
    data_dir = current.config(sender.app).data_dir
    assert sorted(p.name for p in (data_dir / "users").iterdir()) == [str(sender.user_id)]
    assert not any("passwd" in p.name for p in data_dir.rglob("*"))
    page = sender.web.get(f"/analyses/{analysis_id}").get_data(as_text=True)
    assert f"<h1>{escape(name)}</h1>" in page and "<img src=x" not in page and "\u202e" not in page


def test_a_hostile_name_inside_a_zip_reaches_no_path(app: Flask, clips: dict[str, Path], tmp_path: Path) -> None:
    """Members named to climb out once normalised, or to look like others, are found by the manifest and stored under generated names."""
    sender = _sender(app, "api")
    video, eeg = "s01/./\u202e4pm.1t\u200b.mp4", "s01/t1\u0430.mat"  # an RTL override, a zero-width space, a Cyrillic a
    manifest = _manifest({"trial": "t1", "eeg": eeg, "video": video})
    archive = _trial_zip(tmp_path / "names.zip", {video: clips["t1.mp4"], eeg: clips["t1.mat"]}, manifest)
    analysis_id = sender.accepted(sender.send({"recording": _file(archive, "../../trial\x00.zip")}))
    assert all(re.fullmatch(r"[0-9a-f]{32}\.(mp4|mat)", name) for name in stored_files(app, sender.user_id))
    assert len(stored_files(app, sender.user_id)) == 2
    assert _analysis_ids(app, sender.user_id) == [analysis_id]


# Cancelled uploads


BOUNDARY = "----emofuse-cancelled"
_SESSION = "emofuse_session"  # gateway/security.py's cookie


def _multipart(fields: dict[str, str], file: bytes, filename: str = "clip.mp4") -> tuple[bytes, bytes]:
    """The body of a form with ``fields`` and one ``recording``: what comes before the file's bytes, and after."""
    head = "".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n' for name, value in fields.items())
    head += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="recording"; filename="{filename}"\r\nContent-Type: video/mp4\r\n\r\n'
    return head.encode(), f"\r\n--{BOUNDARY}--\r\n".encode()


def _form_fields(sender: Sender) -> dict[str, str]:
    """The page's hidden fields (a fresh CSRF token and upload key) or the API's, and consent."""
    if sender.channel == "api":
        return {"consent": "true"}
    page = sender.web.get("/analyses/new").get_data(as_text=True)
    key = re.search(r'name="upload_key" value="([^"]+)"', page).group(1)
    return {"csrf_token": csrf_token(sender.web, "/analyses/new"), "upload_key": key, "consent": "true"}


class _Cut(io.RawIOBase):
    """A request body that stops after ``sent`` bytes: it ends early, or the connection is reset."""

    def __init__(self, data: bytes, sent: int, how: str) -> None:
        self._data, self._sent, self._how, self._at = data, sent, how, 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        if self._at >= self._sent:
            if self._how == "reset":
                raise ConnectionResetError(104, "Connection reset by peer")
            return 0
        size = min(len(target), self._sent - self._at, 64 * 1024)
        target[:size] = self._data[self._at : self._at + size]
        self._at += size
        return size


@pytest.mark.parametrize("how", ["ends early", "reset"])
def test_an_upload_cancelled_halfway_leaves_no_file_and_no_record(sender: Sender, earlier: Earlier, clips: dict[str, Path],
                                                                  how: str) -> None:  # fmt: skip
    head, tail = _multipart(_form_fields(sender), video := bytes(2 * 2**20))
    body = head + video + tail
    path = "/analyses" if sender.channel == "page" else "/api/v1/analyses"
    response = sender.web.post(path, headers=sender.headers if sender.channel == "api" else {}, environ_overrides={
        "wsgi.input": _Cut(body, len(head) + 2**20, "reset" if how == "reset" else "eof"), "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}"})  # fmt: skip
    assert response.status_code == 400
    assert sender.refusal(response) == ({"api": "bad_upload"}.get(sender.channel), "The upload was cut off before it was complete; send it again.")
    _assert_untouched(sender, earlier, clips)


@contextlib.contextmanager
def _werkzeug(app: Flask) -> Iterator[int]:
    """werkzeug's own server, in a thread, serving ``app``; its port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=30)


@contextlib.contextmanager
def _gunicorn(app: Flask) -> Iterator[int]:
    """gunicorn, as deployed (gateway/gunicorn_conf.py, one worker), on ``app``'s data directory; its port."""
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("EMOFUSE_", "DATABASE_URL", "REDIS_URL", "TRITON_URL", "PROMETHEUS_MULTIPROC_DIR"))}  # fmt: skip
    env["EMOFUSE_DATA_DIR"] = str(current.config(app).data_dir)
    command = [sys.executable, "-m", "gunicorn", "-c", "gateway/gunicorn_conf.py", "-b", f"127.0.0.1:{port}", "-w", "1", "gateway:create_app()"]
    process = subprocess.Popen(command, cwd=Path(__file__).parents[1], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: process.poll() is not None or socket.socket().connect_ex(("127.0.0.1", port)) == 0, "gunicorn to listen")
        assert process.poll() is None, f"gunicorn exited with status {process.returncode}"
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s:g} s for {what}"
        time.sleep(0.05)


def _parts(sender: Sender) -> list[str]:
    return [name for name in stored_files(sender.app, sender.user_id) if name.startswith(".")]


def _failures(port: int) -> dict[str, float]:
    """The server's count of refused requests by reason, from its /metrics."""
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        text = b"".join(iter(lambda: client.recv(65536), b"")).decode()
    found = re.findall(r'emofuse_failures_total\{reason="(\w+)",source="request"\} (\S+)', text)
    return {reason: float(count) for reason, count in found}


@pytest.mark.parametrize("server", [_werkzeug, _gunicorn], ids=["werkzeug", "gunicorn"])
def test_a_client_that_closes_the_connection_halfway_leaves_no_file_and_no_record(sender: Sender, earlier: Earlier,
                                                                                  clips: dict[str, Path],
                                                                                  server: Callable[[Flask], Any]) -> None:  # fmt: skip
    """A real server and a raw socket: the upload streams into a part in the user's directory, the
    client goes away with half of it sent, and the part goes with the request."""
    head, tail = _multipart(_form_fields(sender), b"")
    size = 8 * 2**20
    if sender.channel == "api":
        path, credentials = "/api/v1/analyses", f"Authorization: {sender.headers['Authorization']}\r\n"
    else:
        path, credentials = "/analyses", f"Cookie: {_SESSION}={sender.web.get_cookie(_SESSION).value}\r\n"
    with server(sender.app) as port:
        before = _failures(port)  # first: gunicorn's one sync worker serves one connection at a time
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}"
                           f"\r\nContent-Length: {len(head) + size + len(tail)}\r\n{credentials}\r\n".encode() + head + bytes(size // 2))  # fmt: skip
            _wait_for(lambda: bool(_parts(sender)), "the upload to stream into a part")
            client.shutdown(socket.SHUT_RDWR)
        _wait_for(lambda: not _parts(sender), "the part to be deleted")
        after = _failures(port)
    assert {reason: after[reason] - before.get(reason, 0) for reason in after if after[reason] != before.get(reason)} == {"bad_upload": 1}
    _assert_untouched(sender, earlier, clips)


# Accepted, but not all of it can be judged


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("partial")
    return {name: write_sample_video(root / f"{name}.mp4", SampleSpec(duration_s=4.0, **TINY, **spec)) for name, spec in (
        ("no sound", {"audio": None}), ("no face", {"face_spans": []}), ("neither", {"audio": None, "face_spans": []}))}  # fmt: skip


PARTIAL = [
    # (recording, mode, status, error, what the page says)
    ("no sound", "face", "done", None, ("judged by face · no sound track",)),
    ("no face", "av", "done", None, ("judged by face and voice", "(voice only)", "answered in 0 of 2 windows")),
    ("neither", "face", "failed", "No face was found in any of its 2 windows.", ("The analysis failed", "No face was found in any of its 2 windows.")),
]


@pytest.mark.parametrize(("recording", "mode", "status", "error", "shown"), PARTIAL, ids=[row[0] for row in PARTIAL])
def test_a_recording_without_sound_or_face_is_judged_by_what_it_has_or_fails_saying_why(
    sender: Sender, partial: dict[str, Path], triton: Any, recording: str, mode: str, status: str, error: str | None,
    shown: tuple[str, ...],
) -> None:  # fmt: skip
    analysis_id = sender.accepted(sender.send({"recording": _file(partial[recording])}))
    runner = runner_for(sender.app, triton.grpc_url)
    try:
        assert runner.run_once()
    finally:
        runner.close()
    document = sender.web.get(f"/api/v1/analyses/{analysis_id}", headers=sender.headers).json
    assert (document["mode"], document["status"]) == (mode, status)
    assert document["error"] == (None if error is None else {"code": "no_face", "message": error})
    page = sender.web.get(f"/analyses/{analysis_id}").get_data(as_text=True)
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert all(line in text for line in shown) and "Traceback" not in page
    assert [name for name in stored_files(sender.app, sender.user_id) if name.startswith(".")] == []
