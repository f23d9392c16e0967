"""Trial uploads: a video with the EEG recorded beside it, or a trial folder as a .zip with its
manifest, judged by ``emotion_av_eeg``. The EEG files and archives that are refused, each with its
reason: tests/test_gateway_bad_input.py.

Real SQLite, real .mat files of synthetic EEG, conftest's trial folder, and the real Triton of
tests/conftest.py for the analysis. The trial models learnt from synthetic data only, so no emotion
is shown for them.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from pathlib import Path
from typing import Any

import pytest
import scipy.io
from flask import Flask
from sqlalchemy.orm import Session

from gateway import create_app, current
from gateway.config import Config
from gateway.db import engine_of
from gateway.models import Analysis
from gateway.testing_flow import page_upload, runner_for, signed_in, stored_files, token_for
from preprocessing.synthesis import SampleSpec, write_sample_video
from training.synthetic_eeg import SyntheticEEGSpec, synthetic_trial_eeg

SPEC = SyntheticEEGSpec(duration_s=14.0)
CHANNELS = " ".join(SPEC.channels)


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trial")
    scipy.io.savemat(root / "t1.mat", {"eeg": synthetic_trial_eeg(SPEC, 1, 2).data})
    return {"video": write_sample_video(root / "t1.mp4", SampleSpec(duration_s=14.0, width=320, height=180, face_height=120)),
            "eeg": root / "t1.mat"}


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path / "data")}))


def _send(app: Flask, headers: dict[str, str], files: dict[str, Path]) -> Any:
    form = {"recording": (io.BytesIO(files["video"].read_bytes()), "t1.mp4"), "eeg": (io.BytesIO(files["eeg"].read_bytes()), "t1.mat"),
            "consent": "true", "eeg_rate": str(SPEC.rate), "eeg_channels": CHANNELS, "eeg_variable": "eeg"}  # fmt: skip
    return app.test_client().post("/api/v1/analyses", headers=headers, data=form, content_type="multipart/form-data")


def test_a_trial_is_judged_by_face_voice_and_eeg_and_shown_as_untrained(app: Flask, trial: dict[str, Path], triton: Any) -> None:
    web = signed_in(app, "eeg@example.org")
    user_id, headers = token_for(app, "eeg@example.org")
    response = _send(app, headers, trial)
    assert response.status_code == 201, response.json
    body = response.json
    assert (body["mode"], body["recording"]["kind"], body["mode_label"]) == ("trial", "trial", "Face, voice and EEG")
    assert len(stored_files(app, user_id)) == 2  # the video and the EEG, under generated names
    runner = runner_for(app, triton.grpc_url)
    runner.work(burst=True)
    runner.close()
    document = app.test_client().get(f"/api/v1/analyses/{body['id']}/timeline", headers=headers).json
    assert (document["model"], document["weights"], document["verdict"], document["verdicts"]) == ("emotion_av_eeg", "untrained", None, {})
    assert [next(iter(w["models"])) for w in document["windows"]] == ["av_trial"] * 6 + ["eeg_trial"] * 4
    assert all(w["status"] == "untrained" and w["probabilities"] is None for w in document["windows"])
    assert document["windows"][5]["end_s"] == document["windows"][9]["end_s"] == 14.0
    page = web.get(f"/analyses/{body['id']}").text
    assert "Untrained model" in page and page.count("Face and voice, ") == 6 and page.count("EEG, ") == 4
    assert f'src="/analyses/{body["id"]}/files/recording"' in page
    assert "EEG model (EEGNet)" in page and 'class="badge untrained"' in page


def _zipped(folder: Path, out: Path, *, under: str) -> Path:
    """``folder`` as `zip -r` makes it, folders included: under ``under/`` (zipped whole) or at the root ("")."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, posixpath.join(under, path.relative_to(folder).as_posix()))
    return out


@pytest.mark.parametrize(("channel", "under"), [("page", "trials"), ("api", "")], ids=["page, folder zipped", "api, its contents zipped"])
def test_a_trial_folder_zipped_is_stored_and_judged_as_a_trial(app: Flask, trial_folder: Path, triton: Any, tmp_path: Path,
                                                               channel: str, under: str) -> None:  # fmt: skip
    """conftest's trial folder (a video trial, two of EEG alone), zipped: its one trial with a video is
    unpacked, its video and EEG stored under generated names, its manifest's EEG settings kept, and
    the trial judged by emotion_av_eeg; nothing unpacked is left."""
    web = signed_in(app, "zip@example.org")
    user_id, headers = token_for(app, "zip@example.org")
    archive = (io.BytesIO(_zipped(trial_folder, tmp_path / "trials.zip", under=under).read_bytes()), "trials.zip")
    if channel == "page":
        response = page_upload(web, {"recording": archive})
        assert response.status_code == 303, response.text
    else:
        response = app.test_client().post("/api/v1/analyses", headers=headers, data={"recording": archive, "consent": "true"},
                                          content_type="multipart/form-data")  # fmt: skip
        assert response.status_code == 201, response.json
    analysis_id = int(response.headers["Location"].rsplit("/", 1)[1])
    with Session(engine_of(app)) as session:
        analysis = session.get(Analysis, analysis_id)
        recording, name, mode = analysis.recording, analysis.name, analysis.mode
    assert (name, mode, recording.kind) == ("trials.zip · subject 1, trial t1", "trial", "trial")
    assert recording.eeg_settings == {"mat_key": "eeg", "rate": SPEC.rate, "channels": list(SPEC.channels)}
    assert stored_files(app, user_id) == sorted([recording.stored_name, recording.eeg_stored_name])  # no part, no unpacked folder
    storage = current.storage(app)
    assert storage.path(user_id, recording.stored_name).read_bytes() == (trial_folder / "s01" / "t1.mp4").read_bytes()
    assert storage.path(user_id, recording.eeg_stored_name).read_bytes() == (trial_folder / "s01" / "t1.mat").read_bytes()
    runner = runner_for(app, triton.grpc_url)
    runner.work(burst=True)
    runner.close()
    document = app.test_client().get(f"/api/v1/analyses/{analysis_id}/timeline", headers=headers).json
    assert (document["model"], document["weights"]) == ("emotion_av_eeg", "untrained")
    assert [next(iter(w["models"])) for w in document["windows"]] == ["av_trial"] * 6 + ["eeg_trial"] * 4
    assert document["windows"][5]["end_s"] == document["windows"][9]["end_s"] == 14.0
    page = web.get(f"/analyses/{analysis_id}").text
    assert "Trial (video and EEG), 0:14.0 · judged by face, voice and eeg" in " ".join(page.split())
