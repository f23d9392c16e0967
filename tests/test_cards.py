"""Model cards: what each says of its use and limits, and `emofuse models`, which prints them
from the served repository without loading a model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models.card import NOT_FOR, ModelCard, known_limits
from serving.cards import describe, read_catalogue

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"


def _emofuse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emofuse.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def _card(**changes: object) -> ModelCard:
    fields = dict(name="m", task="t", labels=["a", "b"], inputs={}, preprocessing={}, weights="real", source="s",
                  data="RAVDESS speech, 19 actors", licence="CC BY-NC-SA 4.0")  # fmt: skip
    return ModelCard(**{**fields, **changes})


def test_a_card_says_what_it_is_not_for_and_the_limits_of_its_data() -> None:
    card = _card()
    assert "employment" in card.not_for and "health" in card.not_for and card.not_for == NOT_FOR
    assert any("acted emotions" in limit and "English" in limit for limit in card.limits)
    assert not any("generated data" in limit for limit in card.limits)
    synthetic = _card(weights="synthetic", data="synthetic windows")
    assert synthetic.limits == ["Trained on generated data only: it has never been measured on a real person."]
    assert any("skin tone" in limit for limit in known_limits("FER-2013 Training images", "real"))
    own = _card(limits=["Only tried on one camera."])
    assert own.limits == ["Only tried on one camera."]  # a trainer's own limits are kept as they are


def test_a_card_written_before_limits_existed_still_loads_with_them(tmp_path: Path) -> None:
    old = json.loads(_card().to_json())
    for key in ("intended_use", "not_for", "limits"):
        del old[key]
    (tmp_path / "card.json").write_text(json.dumps(old))
    card = ModelCard.load(tmp_path / "card.json")
    assert card.intended_use and card.not_for and card.limits


def test_emofuse_models_lists_every_served_model_and_marks_the_untrained() -> None:
    run = _emofuse("models", "--repository", str(REPOSITORY))
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split()[1] for line in run.stdout.splitlines()}
    assert rows == {model.name: "trained" if model.trained else "UNTRAINED" for model in read_catalogue(REPOSITORY).models}
    assert rows["face_expression"] == "trained" and rows["eeg_trial"] == "UNTRAINED"


def test_emofuse_models_name_prints_the_whole_card() -> None:
    run = _emofuse("models", "speech_emotion", "--repository", str(REPOSITORY))
    assert run.returncode == 0, run.stderr
    for part in ("trained on real data", "labels: neutral, calm", "intended use:", "not for:", "measured:", "limits:", "RAVDESS"):
        assert part in run.stdout, part
    missing = _emofuse("models", "no_such_model", "--repository", str(REPOSITORY))
    assert missing.returncode == 1 and "no served model is called 'no_such_model'" in missing.stderr
    assert "face_expression" in missing.stderr and "Traceback" not in missing.stderr


def test_figures_per_group_are_shown_for_trained_models_only(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(REPOSITORY, repository, ignore=shutil.ignore_patterns("*.onnx", "*.pt", "*.plan"))
    card = json.loads((repository / "speech_emotion" / "card.json").read_text())
    card["metrics"]["groups"] = {"per_sex": {"female": 0.61, "male": 0.58}}
    (repository / "speech_emotion" / "card.json").write_text(json.dumps(card))
    speech = next(m for m in read_catalogue(repository).models if m.name == "speech_emotion")
    assert ("per sex", "female 61.0 %, male 58.0 %") in speech.groups
    text = describe(speech)
    assert "per group:" in text and "female 61.0 %" in text
    untrained = next(m for m in read_catalogue(repository).models if m.name == "eeg_trial")
    assert untrained.groups == [] and "UNTRAINED" in describe(untrained)


def test_an_ensembles_card_shows_each_member_alone(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(REPOSITORY, repository, ignore=shutil.ignore_patterns("*.onnx", "*.pt", "*.plan"))
    card = json.loads((repository / "face_expression" / "card.json").read_text())
    card["metrics"]["members"] = [{"member": "port", "PrivateTest": 0.668}, {"member": "runs/fer-ft-s1", "PrivateTest": 0.663}]
    (repository / "face_expression" / "card.json").write_text(json.dumps(card))
    face = next(m for m in read_catalogue(repository).models if m.name == "face_expression")
    assert ("Each member alone, PrivateTest", "port 66.8 %, fer-ft-s1 66.3 %") in face.figures


@pytest.mark.parametrize("command", [["models"], ["models", "face_expression"]])
def test_emofuse_models_loads_no_model_code(command: list[str]) -> None:
    script = ("import runpy, sys\n"
              f"sys.argv = ['emofuse', *{command!r}, '--repository', {str(REPOSITORY)!r}]\n"
              "from emofuse.cli import main\n"
              "code = main(sys.argv[1:])\n"
              "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'models', 'training', 'export'))\n"
              "print('HEAVY', heavy, code)\n")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.stdout.strip().splitlines()[-1] == "HEAVY [] 0", run.stdout + run.stderr
