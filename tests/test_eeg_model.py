"""The EEG model (models.eeg, EEGNet), its ONNX export and its training (training.eeg).

Learning is tested on synthetic subjects never seen in training (4 classes, chance 0.25): the
trainer runs end to end through ``main``, and the checkpoint, card and the serving path
(:func:`training.eeg.eeg_inputs` on raw recordings) must reproduce its test figures.
Everything runs on one CPU thread.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from export.onnx import check_parity, export_onnx
from models.eeg import EEGNet, EEGNetConfig, load_eeg
from models.parameters import count_parameters
from preprocessing.eeg import EEGSpec, channel_stats
from training.eeg import EEGWindows, eeg_inputs, main, predict, trial_probabilities
from training.synthetic_eeg import SyntheticEEGSpec, make_eeg_dataset, synthetic_trial_eeg
from training.trials import DEAP_CHANNELS

torch.set_num_threads(1)

LABELS = ("neutral", "calm", "happy", "sad")
SYNTHETIC = SyntheticEEGSpec(labels=LABELS)  # what `main --classes 4` generates
TRAIN, VAL, TEST = range(1, 11), range(11, 13), range(13, 17)
PER_CLASS = 3


def expected_parameters(c: EEGNetConfig) -> int:
    """EEGNet's parameter count from its layer table (Lawhern et al. 2018, table 2), batch norm: 2 per channel."""
    fd = c.F1 * c.D
    block1 = c.F1 * c.kernel_length + 2 * c.F1 + fd * c.channels + 2 * fd
    block2 = fd * c.separable_length + fd * c.F2 + 2 * c.F2
    return block1 + block2 + c.F2 * (c.samples // 32) * c.n_classes + c.n_classes


@pytest.mark.parametrize("config", [EEGNetConfig(), EEGNetConfig(channels=62, samples=1050, n_classes=3, rate=200.0),
                                    EEGNetConfig(channels=14, samples=256, n_classes=4, F1=4, D=1, F2=8)])  # fmt: skip
def test_parameters_and_shapes(config: EEGNetConfig) -> None:
    model = EEGNet(config)
    assert count_parameters(model) == expected_parameters(config)
    assert model(torch.randn(3, config.channels, config.samples)).shape == (3, config.n_classes)


def test_default_size_and_rate_derived_kernels() -> None:
    assert count_parameters(EEGNet(EEGNetConfig())) == 3301  # the figure the docstring gives
    assert (EEGNetConfig().kernel_length, EEGNetConfig().separable_length) == (64, 16)
    assert (EEGNetConfig(rate=256.0).kernel_length, EEGNetConfig(rate=256.0).separable_length) == (128, 32)
    with pytest.raises(ValueError, match=r"shape \(B, 32, 672\); got \(2, 31, 672\)"):
        EEGNet(EEGNetConfig())(torch.zeros(2, 31, 672))


def test_onnx_parity_with_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = EEGNetConfig(channels=14, n_classes=4)
    model = EEGNet(config).eval()
    for m in model.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = export_onnx(model, torch.zeros(1, 14, 672), tmp_path / "eeg.onnx", input_name="EEG", output_name="LOGITS")
    x = np.random.default_rng(0).standard_normal((7, 14, 672)).astype(np.float32)
    parity = check_parity(model, path, x)
    assert parity.n == 7 and parity.ok(atol=1e-4), parity


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eeg")
    main(["--data", "synthetic", "--out", str(out), "--classes", "4", "--subjects", "16", "--per-class", str(PER_CLASS),
          "--epochs", "15", "--patience", "15", "--threads", "1", "--train-subjects", "1-10", "--val-subjects", "11-12",
          "--test-subjects", "13-16"])  # fmt: skip
    return out


def test_learns_on_unseen_subjects(trained: Path) -> None:
    card = json.loads((trained / "eeg.card.json").read_text())
    test = card["metrics"]["test"]
    assert test["n"] == len(TEST) * len(LABELS) * PER_CLASS * 4  # 4 windows per 21 s trial
    assert test["accuracy"] >= 0.7 and card["metrics"]["chance_accuracy"] == 0.25
    assert card["metrics"]["test_trials"]["n"] == len(TEST) * len(LABELS) * PER_CLASS
    assert card["data"].endswith("{'train': [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'val': [11, 12], 'test': [13, 14, 15, 16]}")


def test_writes_checkpoint_card_and_report(trained: Path) -> None:
    assert {p.name for p in trained.iterdir()} >= {"eeg.pt", "eeg.card.json", "eeg.test.json", "eeg.confusion.png"}
    card = json.loads((trained / "eeg.card.json").read_text())
    assert card["name"] == "eeg" and card["weights"] == "synthetic" and card["labels"] == list(LABELS)
    assert json.loads((trained / "eeg.test.json").read_text()) == card["metrics"]["test"]
    prep = card["preprocessing"]
    assert prep["eeg"] == EEGSpec().to_dict() and prep["channels"] == list(SYNTHETIC.channels) and prep["rate"] == 128.0
    assert card["inputs"]["EEG"]["shape"] == [14, 672]
    # the standardisation statistics are those of the training subjects' windows, and only theirs
    mean, std = channel_stats(make_eeg_dataset(SYNTHETIC, TRAIN, PER_CLASS).windows)
    np.testing.assert_allclose(prep["standardisation"]["mean"], mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(prep["standardisation"]["std"], std, rtol=1e-6)


def test_serving_path_reproduces_the_test_figures(trained: Path) -> None:
    model, card = load_eeg(trained)
    assert not card.trained and model.config.channels == 14 and model.config.n_classes == 4
    inputs, labels, trials = [], [], []
    for subject in TEST:
        for label in range(len(LABELS)):
            for k in range(PER_CLASS):
                x = eeg_inputs(synthetic_trial_eeg(SYNTHETIC, subject, label, index=k), card, count=4)
                inputs.append(x)
                labels += [label] * len(x)
                trials += [len(trials) // 4] * len(x)
    probs = predict(model, np.concatenate(inputs))
    assert np.mean(probs.argmax(1) == labels) == pytest.approx(card.metrics["test"]["accuracy"], abs=1e-4)
    first, per_trial = trial_probabilities(probs, np.array(trials))
    assert np.mean(per_trial.argmax(1) == np.array(labels)[first]) == pytest.approx(card.metrics["test_trials"]["accuracy"], abs=1e-4)


def test_windows_save_load(tmp_path: Path) -> None:
    data = make_eeg_dataset(SyntheticEEGSpec(labels=("a", "b")), [1, 2], 1)
    data.save(tmp_path / "w.npz")
    back = EEGWindows.load(tmp_path / "w.npz")
    np.testing.assert_array_equal(back.windows, data.windows)
    assert (back.label_names, back.channels, back.rate) == (data.label_names, data.channels, data.rate)
    np.testing.assert_array_equal(back.trials, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])


def write_deap(folder: Path, subjects: range, rng: np.random.Generator) -> None:
    """DEAP-layout pickles (4 trials each) whose valence shows in alpha power: a learnable toy."""
    folder.mkdir()
    t = np.arange(8064) / 128.0
    for s in subjects:
        ratings = np.array([[7.0, 6.0, 5, 5], [2.0, 6.0, 5, 5], [8.0, 3.0, 5, 5], [3.0, 2.0, 5, 5]])
        alpha = np.where(ratings[:, :1, None] > 5, 20.0, 5.0) * np.sin(2 * np.pi * 10 * t)  # (4, 1, 8064)
        data = (rng.normal(0, 5, (4, 40, 8064)) + alpha).astype(np.float32)
        with (folder / f"s{s:02d}.dat").open("wb") as f:
            pickle.dump({"data": data, "labels": ratings}, f)


def test_trains_on_a_deap_folder(tmp_path: Path) -> None:
    write_deap(tmp_path / "deap", range(1, 6), np.random.default_rng(0))
    out = tmp_path / "out"
    main(["--data", str(tmp_path / "deap"), "--out", str(out), "--deap-target", "valence", "--epochs", "3", "--threads", "1"])
    model, card = load_eeg(out)
    assert card.trained and card.weights == "real" and card.labels == ["high valence", "low valence"]
    assert card.preprocessing["channels"] == list(DEAP_CHANNELS) and model.config.channels == 32
    assert card.metrics["test"]["n"] == 4 * 11  # subject 5 tests: 4 trials of 60 s, 11 windows each
    assert "subject-independent split {'train': [1, 2, 3], 'val': [4], 'test': [5]}" in card.data


DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = [p for p in (DATA / "deap", DATA / "seed") if p.is_dir()]


@pytest.mark.slow
@pytest.mark.skipif(not REAL, reason=f"no real EEG corpus in {DATA} (deap/ or seed/)")
@pytest.mark.parametrize("folder", REAL, ids=[p.name for p in REAL])
def test_real_corpus(folder: Path, tmp_path: Path) -> None:
    main(["--data", str(folder), "--out", str(tmp_path), "--epochs", "30", "--threads", "2"])
    card = json.loads((tmp_path / "eeg.card.json").read_text())
    print(folder.name, card["metrics"]["test"]["accuracy"], card["metrics"]["test_trials"]["accuracy"])
    assert card["metrics"]["test"]["accuracy"] > card["metrics"]["chance_accuracy"]
