"""Labelled recordings for the audio-video model: manifests, RAVDESS folders, the window cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

import training.recordings as recordings
from preprocessing.faces import CropSpec
from preprocessing.synthesis import SampleSpec, speech, write_sample_video
from training.recordings import load_windows, ravdess_recordings, read_manifest

TINY = dict(duration_s=4.0, width=320, height=180, face_height=120, fps=15.0)  # 2 windows each


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four speakers, two recordings each, listed in a manifest."""
    root = tmp_path_factory.mktemp("corpus")
    rows = ["path,label,speaker"]
    for speaker in ("ann", "bob", "cy", "dee"):
        for label in ("happy", "neutral"):
            name = f"clips/{speaker}_{label}.mp4"
            (root / "clips").mkdir(exist_ok=True)
            write_sample_video(root / name, SampleSpec(**TINY), seed=len(rows))
            rows.append(f"{name},{label},{speaker}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def test_manifest_windows_and_their_cache(corpus, tmp_path, monkeypatch) -> None:
    listed = read_manifest(corpus / "manifest.csv")
    assert len(listed) == 8 and listed[0].path == corpus / "clips/ann_happy.mp4"
    windows = load_windows(listed, ("happy", "neutral"), cache_dir=tmp_path)
    assert windows.faces.shape == (16, 15, 64, 64) and windows.mfcc.shape == (16, 10, 156)
    assert windows.face_found.mean() > 0.9 and windows.audio_present.all()
    assert windows.labels.tolist() == [0, 0, 1, 1] * 4 and windows.speakers.tolist() == sorted([0, 1, 2, 3] * 4)
    assert len(list(tmp_path.glob("*.npz"))) == 8, "one cache entry per recording"

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached recording was decoded again")

    monkeypatch.setattr(recordings, "read_windows", no_decoding)
    again = load_windows(listed, ("happy", "neutral"), cache_dir=tmp_path)
    np.testing.assert_array_equal(again.faces, windows.faces)
    np.testing.assert_array_equal(again.mfcc, windows.mfcc)
    with pytest.raises(AssertionError, match="decoded again"):  # other settings, other entries
        load_windows(listed[:1], ("happy", "neutral"), crop=CropSpec(size=48, grey=False), cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,label,speaker\nx.mp4,happy,a\n", r"columns \['path'\] are missing"),
        ("path,label,speaker\nclips/gone.mp4,happy,a\n", "line 2: .*gone.mp4 is not there"),
        ("path,label,speaker\nclips/ann_happy.mp4,,a\n", "line 2: path, label and speaker must all be given"),
        ("path,label,speaker\n", "no recordings listed"),
    ],
)
def test_bad_manifests_say_where(corpus, text, message) -> None:
    (corpus / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_manifest(corpus / "bad.csv")


def test_unknown_labels_and_unreadable_files_are_named(corpus, tmp_path) -> None:
    listed = read_manifest(corpus / "manifest.csv")
    with pytest.raises(ValueError, match=r"labels \['neutral'\] are not in the label set"):
        load_windows(listed, ("happy", "sad"), cache_dir=tmp_path)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match="broken.mp4"):
        load_windows([recordings.LabelledRecording(broken, "happy", "x")], ("happy",), cache_dir=tmp_path)


def test_ravdess_folder_pairs_video_only_files_with_their_speech(tmp_path) -> None:
    actor = tmp_path / "Actor_07"
    actor.mkdir()
    write_sample_video(actor / "01-01-03-02-01-01-07.mp4", SampleSpec(**TINY))  # audio-video, happy
    write_sample_video(actor / "02-01-04-01-02-01-07.mp4", SampleSpec(**{**TINY, "audio": None}))  # video only, sad
    soundfile.write(actor / "03-01-04-01-02-01-07.wav", speech("Dogs are sitting by the door.", 22_050, 4.0), 22_050)
    write_sample_video(actor / "01-02-03-01-01-01-07.mp4", SampleSpec(**TINY))  # song: left out
    found = ravdess_recordings(tmp_path)
    assert [(r.path.name, r.label, r.speaker, r.audio and r.audio.name) for r in found] == [
        ("01-01-03-02-01-01-07.mp4", "happy", "07", None),
        ("02-01-04-01-02-01-07.mp4", "sad", "07", "03-01-04-01-02-01-07.wav"),
    ]
    windows = load_windows(found, ("neutral", "calm", "happy", "sad"), cache_dir=tmp_path / "cache")
    assert windows.audio_present.all(), "the video-only clip takes its audio from the paired file"
    assert np.abs(windows.mfcc[2:]).max() > 0 and windows.labels.tolist() == [2, 2, 3, 3]


def test_train_av_on_a_manifest(corpus, tmp_path) -> None:
    command = [sys.executable, "-m", "emofuse.cli", "train", "av", "--data", str(corpus / "manifest.csv"),
               "--out", str(tmp_path), "--cache", str(tmp_path / "cache"), "--size", "small", "--face-encoder",
               "mini_xception", "--epochs", "2", "--val-speakers", "1", "--test-speakers", "1", "--threads", "1"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    card = json.loads((tmp_path / "av.card.json").read_text())
    assert card["labels"] == ["happy", "neutral"] and card["weights"] == "real"
    assert "8 recordings" in card["data"] and set(card["metrics"]["test"]) == {"audio_video", "face_only", "audio_only"}
    assert {p.name for p in tmp_path.glob("av.*.png")} == {f"av.{c}.confusion.png" for c in card["metrics"]["test"]}
