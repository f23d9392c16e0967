"""Actor-wise cross-validation of the speech CNN (training.speech_folds).

The folds are checked on RAVDESS's actor numbers alone; one short real run reads the RAVDESS
speech folder (``$EMOFUSE_RAVDESS``, by default ``../shared/data/ravdess-speech`` beside the
repository) and is skipped where it is absent: 3 folds over 380 of its 1,140 clips (20 of each
actor's 60), 2 epochs per fold, two folds at a time, with every recording condition measured (about 3
minutes on a shared 2-core CPU); and a smaller one run both one fold after another and two at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path

import pytest

from models.speech import SpeechEnsemble, load_speech
from training import speech, speech_folds
from training.conditions import CONDITIONS, STUDIO, RealRecordings
from training.ravdess import read_clips
from training.speech_folds import FoldsConfig, actor_folds

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("EMOFUSE_RAVDESS", REPO.parent / "shared" / "data" / "ravdess-speech"))
PRESENT = [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]  # the 19 actors of the shared folder


@pytest.mark.parametrize(("n_folds", "n_val"), [(5, 3), (5, 2), (3, 2), (4, 3), (19, 2)])
def test_every_actor_is_tested_once_and_never_heard_by_its_fold(n_folds: int, n_val: int) -> None:
    folds = actor_folds(PRESENT, n_folds, n_val)
    assert len(folds) == n_folds
    tested = [a for f in folds for a in f.test]
    assert sorted(tested) == PRESENT, "each actor in exactly one test fold"
    for f in folds:
        assert set(f.train) | set(f.val) | set(f.test) == set(PRESENT)
        assert not set(f.test) & (set(f.train) | set(f.val)) and not set(f.train) & set(f.val)
        assert len(f.val) == n_val and {a % 2 for a in f.val} == {0, 1}, "validation actors of both sexes"
        assert {a % 2 for a in f.train} == {0, 1}
    sizes = [len(f.test) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    assert actor_folds(list(reversed(PRESENT)) + [3], n_folds, n_val) == folds, "deterministic, whatever the order"


def test_five_folds_mix_the_sexes_of_the_19_actors() -> None:
    folds = actor_folds(PRESENT)
    assert [f.test for f in folds] == [(1, 4, 13, 14), (3, 6, 15, 16), (7, 8, 17, 18), (9, 10, 19, 20), (2, 11, 12)]
    assert [f.val for f in folds] == [(3, 6, 15), (7, 8, 18), (9, 10, 19), (2, 11, 12), (1, 4, 13)]
    for f in folds:
        assert {a % 2 for a in f.test} == {0, 1}, f"fold testing {f.test} has one sex only"
    assert all(len(f.train) in (12, 13) for f in folds)


def test_without_validation_actors_each_fold_trains_on_every_actor_it_does_not_test() -> None:
    folds = actor_folds(PRESENT, 5, 0)
    assert [f.test for f in folds] == [f.test for f in actor_folds(PRESENT)], "the same test actors as with validation"
    for f in folds:
        assert f.val == () and sorted(f.train + f.test) == PRESENT
    assert [len(f.train) for f in folds] == [15, 15, 15, 15, 16]


@pytest.mark.parametrize(("actors", "n_folds", "n_val"), [([1, 2, 3], 5, 1), ([1, 2, 3, 4], 2, 2), (PRESENT, 1, 3), (PRESENT, 5, -1), ([1, 2], 3, 0)])
def test_too_few_actors_or_folds_are_refused(actors: list[int], n_folds: int, n_val: int) -> None:
    with pytest.raises(ValueError, match="folds|too few"):
        actor_folds(actors, n_folds, n_val)


def test_train_audio_hands_folds_to_the_cross_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """``emofuse train audio --folds 5 ...`` runs training.speech.main, which hands its options on."""
    seen = []
    monkeypatch.setattr(speech_folds, "main", lambda argv: seen.append(argv) or 0)
    argv = ["--data", "d", "--out", "o", "--folds", "5", "--epochs", "3"]
    assert speech.main(argv) == 0 and seen == [argv]


def _config(monkeypatch: pytest.MonkeyPatch, *options: str) -> speech_folds.FoldsConfig:
    """The configuration ``python -m training.speech_folds --data d --out o OPTIONS`` runs."""
    seen = []

    def run(data: str, out: str, cfg: speech_folds.FoldsConfig) -> dict:
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(speech_folds, "cross_validate", run)
    with pytest.raises(SystemExit):
        speech_folds.main(["--data", "d", "--out", "o", *options])
    return seen[0]


def test_each_augmentation_and_condition_can_be_set_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the README's one-at-a-time comparison runs: the shipped recipe less (or plus) one thing."""
    shipped = _config(monkeypatch)
    assert shipped.train == FoldsConfig().train and shipped.only is None and shipped.model == "cnn"
    assert shipped.train.augment.recordings == RealRecordings() and shipped.train.augment.pitch == 0
    studio = _config(monkeypatch, "--studio-only").train.augment
    assert studio.recordings == STUDIO and studio.speed == shipped.train.augment.speed
    assert _config(monkeypatch, "--conditions", "none").train.augment == studio
    level = _config(monkeypatch, "--conditions", "level", "--speed", "0", "--pitch", "0.1", "--mixup", "0").train.augment
    assert level.recordings == RealRecordings().keeping(["level"]) and (level.speed, level.pitch, level.mixup_alpha) == (0, 0.1, 0)
    some = _config(monkeypatch, "--only", "2,1", "--model", "mlp")
    assert some.only == (2, 1) and some.model == "mlp"
    assert shipped.val_actors == 0 and _config(monkeypatch, "--val-actors", "3").val_actors == 3


@pytest.mark.parametrize(("options", "message"), [
    (["--conditions", "level,echo"], "unknown recording condition 'echo'; choose from level, room, noise, telephone. Or none."),
    (["--model", "svm"], "invalid choice: 'svm'"),
])  # fmt: skip
def test_unknown_options_are_refused_with_the_choices(options: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        speech_folds.main(["--data", "d", "--out", "o", *options])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(("cfg", "message"), [
    (FoldsConfig(only=(2,), ensemble=True), "needs every fold"),
    (FoldsConfig(model="mlp", ensemble=True), "needs every fold .* and the CNN"),
    (FoldsConfig(model="svm"), "unknown model 'svm'"),
])  # fmt: skip
def test_what_cannot_run_is_refused_before_the_audio_is_read(cfg: FoldsConfig, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        speech_folds.cross_validate(tmp_path / "no such folder", tmp_path / "out", cfg)
    assert not (tmp_path / "out").exists()


def test_a_fold_that_does_not_exist_is_named(tmp_path: Path) -> None:
    splits = actor_folds(PRESENT, 5, 3)
    assert list(speech_folds._chosen(splits, (3, 1))) == [1, 3] and len(speech_folds._chosen(splits, None)) == 5
    with pytest.raises(ValueError, match="there is no fold 0, 7: the 5 folds are numbered 1 to 5"):
        speech_folds._chosen(splits, (0, 2, 7))


# ---------------------------------------------------------------------------------------------
# A short real run

needs_real_data = pytest.mark.skipif(not (REAL_DATA / "labels.csv").is_file(), reason=f"RAVDESS speech not at {REAL_DATA}")
CLIPS = 380


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    out = tmp_path_factory.mktemp("folds")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        argv = ["--data", str(REAL_DATA), "--out", str(out), "--folds", "3", "--max-clips", str(CLIPS), "--epochs", "2", "--ensemble",
                "--jobs", "2"]  # fmt: skip
        assert speech_folds.main(argv) == 0
    return out, json.loads((out / "speech_folds.json").read_text()), json.loads(printed.getvalue().splitlines()[-1])


@needs_real_data
def test_a_short_run_reports_every_actor_on_folds_that_never_heard_them(short_run: tuple[Path, dict, dict]) -> None:
    out, r, line = short_run
    actors = sorted({c.actor for c in read_clips(REAL_DATA)})
    assert r["complete"] and len(r["folds"]) == 3 and r["config"]["folds"] == 3
    assert sorted(int(name.split()[1]) for name in r["per_actor"]) == actors, "a figure for every actor present"
    assert set(r["per_sex"]) == {"female", "male"} and r["chance_accuracy"] == 0.125
    for f in r["folds"]:
        tested = {int(name.split()[1]) for name in f["per_actor"]}
        assert tested == set(f["actors"]["test"]) and not tested & set(f["actors"]["train"] + f["actors"]["val"])
        assert f["clips"]["test"] == f["report"]["n"] and f["members"][0]["epochs_run"] == 2
    assert r["pooled"]["n"] == CLIPS == sum(f["clips"]["test"] for f in r["folds"])
    accuracies = [f["accuracy"] for f in r["folds"]]
    assert r["accuracy"]["mean"] == pytest.approx(sum(accuracies) / 3, abs=1e-4)
    assert r["accuracy"]["min"] == min(accuracies) and r["accuracy"]["std"] >= 0 and 0 < r["macro_f1"]["mean"] <= 1
    assert line["pooled_accuracy"] == r["pooled"]["accuracy"] and line["accuracy_std"] == r["accuracy"]["std"]
    assert r["seconds"] > 0 and r["config"]["train"]["epochs"] == 2 and r["config"]["jobs"] == 2


@needs_real_data
def test_a_short_run_measures_every_recording_condition(short_run: tuple[Path, dict, dict]) -> None:
    r, line = short_run[1], short_run[2]
    names = [c.name for c in CONDITIONS]
    assert list(r["conditions"]) == names == list(line["conditions"])
    assert r["conditions"]["clean"] == r["pooled"]["accuracy"], "clean is the undegraded test set"
    for name in names:
        pooled = sum(f["conditions"][name] * f["clips"]["test"] for f in r["folds"]) / r["pooled"]["n"]
        assert r["conditions"][name] == pytest.approx(pooled, abs=1e-4) and 0 <= r["conditions"][name] <= 1


@needs_real_data
def test_folds_run_side_by_side_give_what_they_give_one_after_another(tmp_path: Path) -> None:
    def run(jobs: int) -> dict:
        out = tmp_path / f"jobs{jobs}"
        with contextlib.redirect_stdout(io.StringIO()):
            argv = ["--data", str(REAL_DATA), "--out", str(out), "--folds", "2", "--max-clips", "120", "--epochs", "1", "--jobs", str(jobs),
                    "--val-actors", "3"]  # validation actors choosing the epoch: the path the default skips  # fmt: skip
            assert speech_folds.main(argv) == 0
        return json.loads((out / "speech_folds.json").read_text())

    one, two = run(1), run(2)
    for key in ("accuracy", "macro_f1", "pooled", "per_actor", "conditions"):
        assert one[key] == two[key], key


@needs_real_data
def test_a_short_run_is_above_chance_on_actors_it_never_heard(short_run: tuple[Path, dict, dict]) -> None:
    """Two epochs on 180-200 clips per fold: about 29 % here against 12.5 % for guessing. The pooled
    figure must beat chance by 3 binomial standard deviations (18.6 % for 380 clips), each fold chance."""
    r = short_run[1]
    n, chance = r["pooled"]["n"], r["chance_accuracy"]
    assert r["pooled"]["accuracy"] > chance + 3 * math.sqrt(chance * (1 - chance) / n), r["pooled"]
    assert all(f["accuracy"] > chance for f in r["folds"]), [f["accuracy"] for f in r["folds"]]


@needs_real_data
def test_the_fold_models_load_as_one_servable_ensemble(short_run: tuple[Path, dict, dict]) -> None:
    out, r, _ = short_run
    model, card, _ = load_speech(out)
    assert isinstance(model, SpeechEnsemble) and len(model.members) == 3 and card.weights == "real"
    m = card.metrics
    assert m["test"]["accuracy"] == m["validation_accuracy"] == r["pooled"]["accuracy"] and m["test"]["n"] == CLIPS
    assert "no actor is left" in m["test"]["what"] and any("never heard" in text for text in card.limits)
    assert m["groups"] == {"per_actor": r["per_actor"], "per_sex": r["per_sex"]}
    assert m["cross_validation"]["accuracy"] == r["accuracy"]


@needs_real_data
def test_measuring_groups_refuses_a_cross_validations_models(short_run: tuple[Path, dict, dict]) -> None:
    """Every actor trained some member: the derived split's 'test' actors are not unheard any more."""
    out = short_run[0]
    card_before = (out / "speech.card.json").read_text()
    with pytest.raises(ValueError, match="cross-validation.*no unheard actors"):
        speech.measure_groups(REAL_DATA, out)
    assert (out / "speech.card.json").read_text() == card_before, "the card is left as it was"


@needs_real_data
def test_a_fold_without_validation_actors_runs_every_epoch_and_keeps_the_last(tmp_path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        argv = ["--data", str(REAL_DATA), "--out", str(tmp_path), "--folds", "3", "--only", "1", "--model", "mlp", "--max-clips", "120"]
        assert speech_folds.main(argv) == 0
    fold = json.loads((tmp_path / "speech_folds.json").read_text())["folds"][0]
    assert fold["actors"]["val"] == [] and fold["clips"]["val"] == 0
    assert fold["clips"]["train"] + fold["clips"]["test"] == 120, "every clip it does not test trains it"
    member = fold["members"][0]
    assert member["validation_accuracy"] is None and member["epochs_run"] == member["best_epoch"] == speech.TrainConfig().baseline_epochs


@needs_real_data
def test_some_folds_of_the_baseline_alone(tmp_path: Path) -> None:
    """``--only 2 --model mlp``: one fold of the MFCC-statistics MLP, marked incomplete, its actors only."""
    with contextlib.redirect_stdout(io.StringIO()):
        argv = ["--data", str(REAL_DATA), "--out", str(tmp_path), "--folds", "3", "--only", "2", "--model", "mlp", "--max-clips", "120"]
        assert speech_folds.main(argv) == 0
    r = json.loads((tmp_path / "speech_folds.json").read_text())
    assert not r["complete"] and [f["fold"] for f in r["folds"]] == [2] and "MLP baseline" in r["what"] and "only fold 2" in r["what"]
    tested = set(r["folds"][0]["actors"]["test"])
    assert {int(name.split()[1]) for name in r["per_actor"]} == tested and r["pooled"]["n"] == r["folds"][0]["clips"]["test"]
    assert r["folds"][0]["members"][0]["epochs_run"] > 2, "the MLP trains for its own (baseline) epochs"
    assert r["pooled"]["accuracy"] > r["chance_accuracy"]
