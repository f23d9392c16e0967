"""`emofuse train fer2013`: a small run on a slice of the real FER-2013 learns faces it never saw.

The port's last layer is re-initialised (``--fresh-head``), so what it gets right it learnt in
this run; the PrivateTest images it is judged on are never trained on nor chosen on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.card import ModelCard
from models.face_expression import load_face_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FER2013 = ROOT.parent / "shared" / "data" / "fer2013"
pytestmark = pytest.mark.skipif(not (FER2013 / "train").is_dir(), reason=f"FER-2013 is not at {FER2013} (see its README there)")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("fer2013")
    command = [sys.executable, "-m", "emofuse.cli", "train", "fer2013", "--data", str(FER2013), "--out", str(out),
               "--epochs", "3", "--per-class", "60", "--fresh-head"]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900), out


def test_a_quick_run_learns_expressions_of_faces_it_never_saw(trained) -> None:
    run, out = trained
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout.splitlines()[-1])
    assert figures["private_test_accuracy"] > 0.3, f"chance is 1/7: {figures}"
    card = ModelCard.load(out / "face.card.json")
    history = card.metrics["history"]
    assert history[-1]["train_acc"] > history[0]["train_acc"], "it learnt during the run"
    sizes = card.metrics["sizes"]
    assert sizes["Training"] == 420 and 350 < sizes["PublicTest"] <= 420 and 350 < sizes["PrivateTest"] <= 420  # disgust has fewer
    assert card.metrics["test"]["accuracy"] == figures["private_test_accuracy"] and set(card.metrics["test"]["recall"]) == set(card.labels)
    assert "research" in card.licence and "quick run" in card.data and any("skin tone" in limit for limit in card.limits)
    assert set(card.metrics["without_flip_average"]) == {"PublicTest", "PrivateTest"}


def test_the_trained_model_loads_for_export_with_flip_averaging(trained) -> None:
    _, out = trained
    model, card = load_face_checkpoint(out)
    assert model.config.flip_average and not model.training
    crops = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    mirrored = model(crops.flip(-1))
    assert torch.allclose(model(crops), mirrored, atol=1e-4), "flip averaging: a face and its mirror get the same answer"


def test_a_face_vgg_checkpoint_loads_for_export_and_averages_mirrors(tmp_path: Path) -> None:
    """`--start scratch` writes a FaceVGG; it loads as export loads face models, flip-averaged."""
    from dataclasses import asdict

    from models.card import ModelCard
    from models.emotions import FER2013 as LABELS
    from models.face_vgg import FaceVGG, FaceVGGConfig

    torch.manual_seed(0)
    net = FaceVGG(FaceVGGConfig())
    torch.save({"architecture": "face_vgg", "state_dict": net.state_dict(), "config": asdict(net.config), "labels": list(LABELS)},
               tmp_path / "face.pt")  # fmt: skip
    ModelCard(name="face_expression", task="t", labels=list(LABELS), inputs={}, preprocessing={}, weights="none", source="s",
              data="d", licence="l").save(tmp_path / "face.card.json")  # fmt: skip
    model, _ = load_face_checkpoint(tmp_path)
    assert isinstance(model, FaceVGG) and model.config.flip_average and not model.training
    crops = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    logits = model(crops)
    assert logits.shape == (3, len(LABELS)) and torch.allclose(logits, model(crops.flip(-1)), atol=1e-4)
    assert not torch.allclose(logits[0], logits[1]), "different faces, different answers"
