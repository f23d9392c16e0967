"""Trial uploads: a video with the EEG recorded beside it, judged by ``emotion_av_eeg``, and the
EEG files that are refused (a .mat without the named variable, EEG shorter than the video,
mismatched lengths, no sampling rate, not EEG at all), each with its reason, nothing recorded.

Real SQLite, real .mat files of synthetic EEG, and the real Triton of tests/conftest.py for the
analysis. The trial models learnt from synthetic data only, so no emotion is shown for them.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest
import scipy.io
from flask import Flask

from gateway import create_app
from gateway.config import Config
from gateway.testing_flow import owned_counts, runner_for, signed_in, stored_files, token_for
from preprocessing.synthesis import SampleSpec, write_sample_video
from training.synthetic_eeg import SyntheticEEGSpec, synthetic_trial_eeg

SPEC = SyntheticEEGSpec(duration_s=14.0)
CHANNELS = " ".join(SPEC.channels)


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trial")
    files = {"video": write_sample_video(root / "t1.mp4", SampleSpec(duration_s=14.0, width=320, height=180, face_height=120)),
             "short_video": write_sample_video(root / "short.mp4", SampleSpec(duration_s=4.0, width=320, height=180, face_height=120))}  # fmt: skip
    for name, seconds in (("eeg", 14.0), ("short_eeg", 8.0), ("long_eeg", 20.0)):
        eeg = synthetic_trial_eeg(dataclasses.replace(SPEC, duration_s=seconds), 1, 2)
        scipy.io.savemat(root / f"{name}.mat", {"eeg": eeg.data})
        files[name] = root / f"{name}.mat"
    files["notes"] = root / "notes.mat"
    files["notes"].write_text("channel,value\nFz,1\n")
    return files


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path / "data")}))


def _send(app: Flask, headers: dict[str, str], files: dict[str, Path], video: str = "video", eeg: str = "eeg", **fields: str) -> Any:
    form = {"recording": (io.BytesIO(files[video].read_bytes()), "t1.mp4"), "eeg": (io.BytesIO(files[eeg].read_bytes()), "t1.mat"),
            "consent": "true", "eeg_rate": str(SPEC.rate), "eeg_channels": CHANNELS, "eeg_variable": "eeg", **fields}  # fmt: skip
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


BAD = [
    ({"eeg_variable": "signals"}, {}, 422, "The EEG file has no variable 'signals'; it has ['eeg']. Set eeg_variable to one of them."),
    ({"eeg_rate": ""}, {}, 400, "A .mat file does not store its sampling rate: give it in Hz (eeg_rate)."),
    ({"eeg_rate": "fast"}, {}, 400, "The EEG's sampling rate 'fast' is not a number of Hz."),
    ({"eeg_channels": "Fz Cz"}, {}, 422, "The EEG file variable 'eeg' has 14 channels (rows), but 2 channel names were given."),
    ({}, {"eeg": "short_eeg"}, 422, "The EEG lasts 8 s, shorter than the video's 14 s; send the EEG of the whole trial."),
    ({}, {"eeg": "long_eeg"}, 422, "The EEG lasts 20 s and the video 14 s: they must record the same trial (at most 1 s apart)."),
    ({}, {"eeg": "notes"}, 415, "The EEG file is not a .mat, EDF or BDF file, whatever its name says."),
    ({}, {"video": "short_video"}, 422, "A trial's video lasts 12.6 to 60 s (one trial, about 21 s); this one lasts 4 s."),
]


@pytest.mark.parametrize(("fields", "files", "status", "message"), BAD)
def test_a_bad_eeg_is_refused_with_its_reason_and_leaves_nothing(app: Flask, trial: dict[str, Path], fields: dict[str, str],
                                                                 files: dict[str, str], status: int, message: str) -> None:  # fmt: skip
    signed_in(app, "bad-eeg@example.org")
    user_id, headers = token_for(app, "bad-eeg@example.org")
    response = _send(app, headers, trial, **files, **fields)
    assert response.status_code == status
    assert response.json["error"]["message"] == message
    assert owned_counts(app, user_id)["Recording"] == 0
    assert stored_files(app, user_id) == []
