"""`emofuse train face`: fine-tuning the FER-2013 mini-Xception on a folder of face images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.card import ModelCard
from preprocessing.faces import CropSpec
from training.face import read_folder, stratified_split
from training.synthetic_av import SyntheticSpec, synthetic_window

CLASSES = ("happy", "sad", "surprise")  # all three known to FER-2013: its head rows carry over
SPEC = SyntheticSpec(labels=CLASSES, face_codes=(2, 3, 7), crop=CropSpec(size=96, grey=False))


def write_faces(root: Path, speakers: range, per_class: int) -> None:
    """Drawn faces of ``speakers`` (their own face shapes and resting expressions), one PNG per window."""
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for speaker in speakers:
            for k in range(per_class):
                window = synthetic_window(SPEC, speaker, label, index=k)
                frame = window.faces[-1]  # the expression at its fullest
                cv2.imwrite(str(root / name / f"s{speaker}_{k}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """train/, val/, test/ with different people in each, so the test is person-independent."""
    root = tmp_path_factory.mktemp("faces")
    write_faces(root / "train", range(0, 8), 6)
    write_faces(root / "val", range(8, 10), 6)
    write_faces(root / "test", range(10, 13), 6)
    return root


def train(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "emofuse.cli", "train", "face", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def fine_tuned(faces, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("face-model")
    return train("--data", str(faces), "--out", str(out), "--epochs", "8", "--synthetic"), out


def test_fine_tuning_recognises_unseen_people(fine_tuned) -> None:
    run, tmp_path = fine_tuned
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout.splitlines()[-1])
    assert figures["test_accuracy"] > 0.7, f"chance is 1/3: {figures}"
    card = ModelCard.load(tmp_path / "face.card.json")
    assert card.labels == list(CLASSES) and card.weights == "synthetic" and not card.trained
    assert card.metrics["sizes"] == {"train": 144, "val": 36, "test": 54}
    assert card.metrics["test"]["confusion_matrix"] and len(card.metrics["history"]) >= 1
    assert "epoch" in run.stderr, "one progress line per epoch"
    assert json.loads((tmp_path / "face.test.json").read_text()) == card.metrics["test"]
    picture = cv2.imread(str(tmp_path / "face.confusion.png"))
    assert picture is not None and picture.shape[0] > 200
    checkpoint = torch.load(tmp_path / "face.pt", weights_only=True)
    assert checkpoint["labels"] == list(CLASSES)


def test_a_trained_model_can_be_tried_at_once(fine_tuned, face_video, tmp_path) -> None:
    """Built into a repository of its own and served: marked untrained, as synthetic data made it."""
    _, weights = fine_tuned
    repo = tmp_path / "repo"
    cli = [sys.executable, "-m", "emofuse.cli"]
    build = subprocess.run([*cli, "repo", "build", "--out", str(repo), "--face", str(weights)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    assert (repo / "emotion_face" / "labels.txt").read_text().split() == list(CLASSES)
    options = ["--repository", str(repo), "--model", "face", "--json", "--no-video", "--out", str(tmp_path / "out")]
    run = subprocess.run([*cli, "analyze", str(face_video), *options], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["labels"] == list(CLASSES) and result["weights"] == "untrained" and result["verdict"] is None
    assert {w["status"] for w in result["windows"]} == {"untrained"}


def test_same_seed_same_weights(faces, tmp_path) -> None:
    runs = [train("--data", str(faces / "val"), "--out", str(tmp_path / str(i)), "--epochs", "2", "--freeze") for i in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    a, b = (torch.load(tmp_path / str(i) / "face.pt", weights_only=True)["state_dict"] for i in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_crops_are_the_serving_crops(faces) -> None:
    crops, labels, classes = read_folder(faces / "test")
    assert crops.shape == (54, 64, 64) and crops.dtype == np.uint8 and classes == list(CLASSES)
    from preprocessing.faces import whole_image_crop
    from preprocessing.recording import probe, read_still

    first = sorted((faces / "test" / "happy").glob("*.png"))[0]
    np.testing.assert_array_equal(crops[0], whole_image_crop(read_still(probe(first)), CropSpec(64, grey=True)))


def test_split_is_stratified_and_disjoint() -> None:
    labels = np.repeat([0, 1, 2], [20, 40, 60])
    parts = stratified_split(labels, (0.15, 0.15), seed=0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(120))
    assert np.bincount(labels[parts["test"]]).tolist() == [3, 6, 9]


@pytest.mark.parametrize("case", ["missing", "one class", "broken image"])
def test_bad_folders_say_what_to_fix(case, tmp_path) -> None:
    root = tmp_path / "data"
    if case != "missing":
        (root / "happy").mkdir(parents=True)
        cv2.imwrite(str(root / "happy" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    if case == "broken image":
        (root / "sad").mkdir()
        (root / "sad" / "b.png").write_bytes(b"not a png")
    run = train("--data", str(root), "--out", str(tmp_path / "out"))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    expected = {"missing": "no such folder", "one class": "at least two are needed", "broken image": "b.png"}[case]
    assert expected in run.stderr
