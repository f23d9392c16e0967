"""The consent and purpose page, ``/about``: built from the served repository's model cards and
configs at each request (the repository of this checkout, and copies of it changed on purpose)."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from gateway import create_app
from gateway.about import read_catalogue
from gateway.config import Config
from gateway.health import READY_MODELS

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"


def _app(tmp_path: Path, repository: Path) -> Flask:
    config = Config.from_env({"EMOFUSE_DATA_DIR": str(tmp_path / "data")})
    return create_app(dataclasses.replace(config, model_repository=repository))


def _page(tmp_path: Path, repository: Path) -> str:
    response = _app(tmp_path, repository).test_client().get("/about")
    assert response.status_code == 200
    return html.unescape(response.get_data(as_text=True))


def _cards(page: str) -> dict[str, str]:
    """Each model's part of the page, by model name."""
    parts = re.split(r'<article class="card model" aria-labelledby="model-', page)[1:]
    return {part.split('"', 1)[0]: part.split("</article>", 1)[0] for part in parts}


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """The served repository's configs and cards, copied (no weights: the page reads none)."""
    copy = tmp_path / "model_repository"
    for file in [*REPOSITORY.glob("*/config.pbtxt"), *REPOSITORY.glob("*/card.json")]:
        (copy / file.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(file, copy / file.parent.name / file.name)
    return copy


def _card(repository: Path, entry: str) -> dict:
    return json.loads((repository / entry / "card.json").read_text())


def test_the_page_needs_no_sign_in_and_lists_every_model_the_served_ensembles_run(tmp_path: Path) -> None:
    page = _page(tmp_path, REPOSITORY)
    models = _cards(page)
    expected = set()
    for ensemble in READY_MODELS:
        steps = re.findall(r'model_name:\s*"([^"]+)"', (REPOSITORY / ensemble / "config.pbtxt").read_text())
        expected |= {_card(REPOSITORY, entry)["name"] for entry in (ensemble, *steps)}
    assert set(models) == expected and len(expected) >= 7
    assert {"face_expression", "speech_emotion", "emotion_av", "av_attention", "eeg_trial", "fusion_cnn"} <= expected
    speech = _card(REPOSITORY, "speech_emotion")["metrics"]
    assert f"{100 * speech['test']['accuracy']:.1f} %" in models["speech_emotion"]
    assert f"{100 * speech['chance_accuracy']:.1f} %" in models["speech_emotion"]
    assert "Non-commercial use only" in models["speech_emotion"] and "RAVDESS" in models["speech_emotion"]
    face = _card(REPOSITORY, "face_expression")["metrics"]
    assert f"{100 * face['test']['accuracy']:.1f} %" in models["face_expression"] and "PrivateTest" in models["face_expression"]
    assert "emofuse has not measured it" not in models["face_expression"]  # measured here now, on FER-2013
    for part in ("Not for", "employment", "By group", "actor 03 (male)", "Per sex", "skin tone"):
        assert part in models["speech_emotion"] + models["face_expression"], part
    assert "Face and voice" in models["speech_emotion"] and "Voice" in models["speech_emotion"]


def test_untrained_models_are_marked_so_and_none_that_is_trained(tmp_path: Path) -> None:
    models = _cards(_page(tmp_path, REPOSITORY))
    untrained = {name for name, part in models.items() if "Untrained: never shown as an emotion" in part}
    trained = {name for name, part in models.items() if "Trained on real data" in part}
    assert untrained == {"av_attention", "av_trial", "eeg_trial", "fusion_cnn"}  # README: synthetic weights only
    assert {"face_expression", "speech_emotion", "emotion_av"} <= trained and not trained & untrained
    for name in untrained:
        assert "say nothing about people" in models[name] and "<dt>Labels</dt>" not in models[name]


def test_the_page_says_what_it_is_not_for_and_asks_for_consent(tmp_path: Path) -> None:
    page = _page(tmp_path, REPOSITORY)
    for use in ("hiring", "credit", "diagnosis", "guilty"):
        assert use in page
    assert "every person in it has agreed" in page


def test_the_page_is_read_from_the_cards_at_each_request(tmp_path: Path, repository: Path) -> None:
    app = _app(tmp_path, repository)
    web = app.test_client()
    assert "71.2 %" not in web.get("/about").get_data(as_text=True)
    card = _card(repository, "speech_emotion")
    card["metrics"]["test"]["accuracy"] = 0.7123
    (repository / "speech_emotion" / "card.json").write_text(json.dumps(card))
    config = repository / "face_expression" / "config.pbtxt"
    config.write_text(config.read_text().replace('key: "weights" value: { string_value: "real" }',
                                                  'key: "weights" value: { string_value: "synthetic" }'))  # fmt: skip
    models = _cards(html.unescape(web.get("/about").get_data(as_text=True)))  # the same app: nothing was cached
    assert "71.2 %" in models["speech_emotion"] and "About 3 in 10 of its answers" in models["speech_emotion"]
    assert "Untrained: never shown as an emotion" in models["face_expression"]  # the config's weights decide


def test_a_repository_that_cannot_be_read_is_said_and_the_rest_still_shows(tmp_path: Path, repository: Path) -> None:
    (repository / "eeg_trial" / "card.json").write_text("{not json")
    page = _page(tmp_path, repository)
    assert "The model cards of emotion_av_eeg cannot be read from the model repository." in page
    assert "speech_emotion" in _cards(page) and "fusion_cnn" not in _cards(page)
    missing = _page(tmp_path, tmp_path / "no_repository")
    assert _cards(missing) == {} and missing.count("cannot be read from the model repository.") == len(READY_MODELS)
    assert "What emofuse is not for" in missing


def test_settings_blocks_are_left_out_of_the_data_descriptions() -> None:
    catalogue = read_catalogue(REPOSITORY)
    assert catalogue.problems == []
    for model in catalogue.models:
        assert "{" not in model.data and "}" not in model.data, model.data
    assert next(m for m in catalogue.models if m.name == "av_attention").data.startswith("synthetic windows of training.synthetic_av,")


def test_the_page_loads_no_model_code(tmp_path: Path) -> None:
    """In a fresh interpreter: /about reads JSON and text; torch, models, training and export stay unloaded."""
    script = (
        "import json, sys\n"
        "from gateway import Config, create_app\n"
        "web = create_app(Config.from_env({'EMOFUSE_DATA_DIR': sys.argv[1]})).test_client()\n"
        "page = web.get('/about')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'models', 'training', 'export'))\n"
        "print(json.dumps({'status': page.status_code, 'models': page.get_data(as_text=True).count('class=\"card model\"'), 'heavy': heavy}))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200 and answer["models"] >= 7 and answer["heavy"] == []
