"""The training loop (training.loop): its hooks and early stopping; and its progress bar, drawn
on a terminal, silent elsewhere."""

from __future__ import annotations

import copy
import io
from dataclasses import replace

import numpy as np
import pytest
import torch

from training.loop import FitConfig, best_epoch, class_weights, fit, predict_proba
from training.progress import batches


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_is_drawn_on_a_terminal_and_cleared() -> None:
    screen = Terminal()
    assert list(batches(range(4), 4, stream=screen)) == [0, 1, 2, 3]
    frames = screen.getvalue().split("\r")
    assert "batch 1/4 [" in frames[1] and "batch 4/4 [" + "#" * 30 + "]" in frames[4]
    assert frames[-1] == "" and frames[-2].strip() == "", "the last frame is blanked for the epoch's log line"


def test_nothing_is_written_to_a_pipe_or_log() -> None:
    log = io.StringIO()
    assert list(batches(iter("abc"), 3, stream=log)) == ["a", "b", "c"]
    assert log.getvalue() == ""


# --- the loop's hooks ---------------------------------------------------------------------------


def _task(n: int = 64) -> tuple[tuple[np.ndarray], np.ndarray]:
    """Two classes, each a cloud of 4-d points around its own corner: a linear model learns it."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    return (rng.normal(0, 0.3, (n, 4)).astype(np.float32) + labels[:, None].astype(np.float32),), labels.astype(np.int64)


def test_fit_follows_the_schedule_runs_after_epoch_before_validation_and_keeps_the_best_epoch() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    states, calls = [], []
    scripted = iter([(1.0, 0.5), (0.9, 0.7), (0.8, 0.7), (0.9, 0.6), (0.9, 0.6), (0.9, 0.9)])

    def after_epoch(trained: torch.nn.Module) -> None:
        states.append(copy.deepcopy(trained.state_dict()))

    def score(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        calls.append(len(states))  # validation comes after this epoch's after_epoch
        return next(scripted)

    cfg = FitConfig(epochs=6, patience=2, batch_size=16, lr=0.1)
    model, history = fit(model, _task(), _task(), cfg, lr_factor=lambda e: 1 / (e + 1), after_epoch=after_epoch, score=score)
    assert [e.lr for e in history] == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025, 0.02])
    assert calls == [1, 2, 3, 4, 5], "stopped after two epochs without a better accuracy"
    assert best_epoch(history).epoch == 3  # accuracy ties with epoch 2; the lower loss wins
    assert all(torch.equal(v, states[2][k]) for k, v in model.state_dict().items())
    assert [e.to_dict()["val_acc"] for e in history] == [0.5, 0.7, 0.7, 0.6, 0.6]


def test_without_validation_every_epoch_runs_and_the_last_is_kept() -> None:
    torch.manual_seed(0)
    states: list[dict] = []
    cfg = FitConfig(epochs=4, patience=1, batch_size=16, lr=0.1)
    model, history = fit(torch.nn.Linear(4, 2), _task(), None, cfg, after_epoch=lambda m: states.append(copy.deepcopy(m.state_dict())))
    assert [e.epoch for e in history] == [1, 2, 3, 4], "patience does not stop a run with nothing to judge it by"
    assert all(np.isnan(e.val_acc) and np.isnan(e.val_loss) for e in history)
    assert best_epoch(history) is history[-1]
    assert all(torch.equal(v, states[-1][k]) for k, v in model.state_dict().items()), "the last epoch's weights"
    assert float(np.mean(predict_proba(model, _task()[0]).argmax(1) == _task()[1])) > 0.9, "and it learnt"


def test_fit_trains_on_the_targets_train_batch_makes_and_scores_against_the_labels() -> None:
    def only_class_0(arrays: list[np.ndarray], labels: torch.Tensor, rng: np.random.Generator) -> tuple[tuple[torch.Tensor], torch.Tensor]:
        target = torch.zeros(len(labels), 2)
        target[:, 0] = 1.0  # soft targets, all on class 0, whatever the labels say
        return (torch.from_numpy(arrays[0]),), target

    cfg = FitConfig(epochs=5, patience=5, batch_size=16, lr=0.1)
    torch.manual_seed(0)
    _, plain = fit(torch.nn.Linear(4, 2), _task(), _task(), cfg)
    torch.manual_seed(0)
    model, misled = fit(torch.nn.Linear(4, 2), _task(), _task(), cfg, train_batch=only_class_0)
    assert plain[-1].val_acc > 0.9 and plain[-1].lr < plain[0].lr == cfg.lr  # default: cosine decay from cfg.lr
    assert misled[-1].val_acc == 0.5 and misled[-1].train_acc == 0.5, "always class 0: right on half the labels"
    assert (predict_proba(model, _task()[0]).argmax(1) == 0).all()


def test_class_weights_weigh_rare_classes_more_and_keep_the_mean_weight_at_1() -> None:
    labels = np.array([0] * 16 + [1] * 1 + [2] * 4)
    assert class_weights(labels, 3, 0.0) == (1.0, 1.0, 1.0)
    sqrt = np.array(class_weights(labels, 3, 0.5))
    assert sqrt[1] / sqrt[0] == pytest.approx(4, rel=1e-3) and sqrt[2] / sqrt[0] == pytest.approx(2, rel=1e-3)
    balanced = np.array(class_weights(labels, 3, 1.0))
    assert balanced * np.bincount(labels) == pytest.approx([7, 7, 7], rel=1e-3), "each class weighs as much in all"
    assert np.mean(sqrt[labels]) == pytest.approx(1, rel=1e-3)
    with pytest.raises(ValueError, match=r"class \[3\]"):
        class_weights(labels, 4, 0.5)


def test_class_weights_tip_a_task_with_no_signal_towards_the_heavier_class() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.normal(0, 1, (128, 4)).astype(np.float32),), (np.arange(128) % 2).astype(np.int64)  # labels unrelated to x
    cfg = FitConfig(epochs=5, patience=5, batch_size=16, lr=0.05)
    predicted = {}
    for weights in [(1.0, 1.0), (1.0, 9.0)]:
        torch.manual_seed(0)
        model, _ = fit(torch.nn.Linear(4, 2), noise, noise, replace(cfg, class_weights=weights))
        predicted[weights] = float(np.mean(predict_proba(model, noise[0]).argmax(1) == 1))
    assert predicted[(1.0, 9.0)] > 0.95 and predicted[(1.0, 1.0)] < 0.8, predicted


def test_fit_settings_are_taken_from_a_trainers_config_by_name() -> None:
    from training import eeg, speech

    cfg = eeg.TrainConfig(seed=3, epochs=7, patience=2, batch_size=8, lr=0.01, weight_decay=0.5, dropout=0.1)
    assert FitConfig.of(cfg) == FitConfig(epochs=7, patience=2, batch_size=8, lr=0.01, weight_decay=0.5, seed=3)
    taken = FitConfig.of(speech.TrainConfig(label_smoothing=0.2, patience=4))
    assert (taken.label_smoothing, taken.patience, taken.seed) == (0.2, 4, FitConfig.seed)  # speech has seeds, not a seed
