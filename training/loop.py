"""A supervised training loop for classifiers: mini-batches, validation, early stopping.

Deterministic: the same seed, data and thread count give the same weights. Every epoch logs one
line of learning rate, train and validation loss and accuracy, and the weights of the best
validation accuracy (ties: lower validation loss) are the ones returned (:func:`best_epoch`).
Without validation data every epoch runs and the last one's weights are returned, for a
schedule whose length was chosen beforehand (the speech folds' ``--val-actors 0``).

Trainers adapt it through hooks rather than loops of their own: ``batch`` and ``logits`` shape
the model's inputs and outputs, ``train_batch`` makes training batches that evaluation does not
see (a fresh window cut from each clip, mixup of inputs and targets), ``lr_factor`` sets the
learning-rate schedule, ``after_epoch`` runs between an epoch's steps and its validation (e.g.
re-estimating batch-norm statistics), and ``score`` says how validation probabilities are judged.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, astuple, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .progress import batches

__all__ = [
    "Batch",
    "Epoch",
    "FitConfig",
    "Score",
    "TrainBatch",
    "as_tensors",
    "best_epoch",
    "fit",
    "loss_and_accuracy",
    "predict_proba",
]  # fmt: skip

log = logging.getLogger(__name__)

#: Makes a batch's input tensors from the arrays of its examples (augmenting them in training).
Batch = Callable[[Sequence[np.ndarray], np.random.Generator | None], tuple[torch.Tensor, ...]]
#: Makes a training batch's (inputs, targets) from its examples' arrays and (B,) labels, drawing
#: from the loop's generator. Targets are class indices (B,) or class probabilities (B, classes).
TrainBatch = Callable[[Sequence[np.ndarray], torch.Tensor, np.random.Generator], tuple[tuple[torch.Tensor, ...], torch.Tensor]]
#: The logits (B, classes) in what a model's forward returns.
Logits = Callable[[Any], torch.Tensor]
#: Validation (loss, accuracy) from the probabilities (N, classes) of the validation inputs and their labels.
Score = Callable[[np.ndarray, np.ndarray], tuple[float, float]]


def _itself(output: torch.Tensor) -> torch.Tensor:
    return output


def as_tensors(arrays: Sequence[np.ndarray], rng: np.random.Generator | None) -> tuple[torch.Tensor, ...]:
    """The default :data:`Batch`: the arrays as they are."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def loss_and_accuracy(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The default :data:`Score`: mean cross-entropy and accuracy, one row per label."""
    loss = float(-np.mean(np.log(probs[np.arange(len(labels)), labels] + 1e-9)))
    return loss, float(np.mean(probs.argmax(1) == labels))


@dataclass(frozen=True)
class FitConfig:
    """Optimisation settings (AdamW; the learning rate decays on a cosine unless ``fit`` gets a schedule)."""

    epochs: int = 30
    patience: int = 8  # stop after this many epochs without a better validation accuracy
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.0
    class_weights: tuple[float, ...] | None = None  # of each class in the loss, in label order; None: all 1
    seed: int = 0

    @classmethod
    def of(cls, settings: object) -> FitConfig:
        """The settings of a trainer's own config that go by these names (its epochs, lr, seed...);
        those it lacks keep their defaults."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)})


def class_weights(labels: np.ndarray, n_classes: int, power: float) -> tuple[float, ...]:
    """Loss weight of each class (for :attr:`FitConfig.class_weights`): ``(n / count) ** power``,
    scaled so that the mean weight over ``labels`` (n,) is 1.

    ``power`` 0: all 1; 0.5: a class 16 times rarer (FER-2013's disgust against happy) weighs 4
    times more; 1: every class weighs as much in all as any other.

    Raises
    ------
    ValueError
        If a class has no example: its weight would be infinite.
    """
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"no training example of class {np.flatnonzero(counts == 0).tolist()}: cannot weigh a class never seen.")
    w = (len(labels) / counts) ** power
    return tuple(round(float(v), 4) for v in w / (w @ counts / len(labels)))


@dataclass(frozen=True)
class Epoch:
    """Figures of one epoch."""

    epoch: int
    lr: float  # the learning rate of its steps
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float  # since training began

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6 if k == "lr" else 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def best_epoch(history: Sequence[Epoch]) -> Epoch:
    """The epoch whose weights :func:`fit` returns: best validation accuracy, then lower
    validation loss, then the earlier one; the last, where there was no validation."""
    if all(math.isnan(e.val_acc) for e in history):
        return history[-1]
    return max(history, key=lambda e: (e.val_acc, -e.val_loss))


def predict_proba(
    model: torch.nn.Module, inputs: Sequence[np.ndarray], batch: Batch = as_tensors, logits: Logits = _itself, size: int = 256
) -> np.ndarray:
    """Class probabilities (N, classes) of ``model`` in eval mode over arrays of N examples."""
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(inputs[0]), size):
            out.append(torch.softmax(logits(model(*batch([a[s : s + size] for a in inputs], None))), dim=1).numpy())
    return np.concatenate(out)


def _with_labels(batch: Batch) -> TrainBatch:
    """The default :data:`TrainBatch`: ``batch``'s inputs, the labels as targets."""

    def train_batch(
        arrays: Sequence[np.ndarray], labels: torch.Tensor, rng: np.random.Generator
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        return batch(arrays, rng), labels

    return train_batch


def _schedule(
    opt: torch.optim.Optimizer, cfg: FitConfig, lr_factor: Callable[[int], float] | None
) -> torch.optim.lr_scheduler.LRScheduler:
    if lr_factor is None:
        # Cosine decay: late epochs take small steps, so the best epoch is not a lucky jump.
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr / 50)
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)  # epoch e steps at cfg.lr * lr_factor(e)


def _train_epoch(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    train: tuple[Sequence[np.ndarray], np.ndarray],
    cfg: FitConfig,
    rng: np.random.Generator,
    train_batch: TrainBatch,
    logits: Logits,
) -> tuple[float, float]:
    """One pass over the training examples in a random order; mean loss and accuracy of its batches.

    Accuracy is against each example's own label, whatever the targets (mixup lowers it).
    """
    x_train, y_train = train
    model.train()
    weight = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float32)
    total, correct, seen = 0.0, 0, 0
    order = rng.permutation(len(y_train))
    starts = range(0, len(order), cfg.batch_size)
    for s in batches(starts, len(starts)):
        idx = order[s : s + cfg.batch_size]
        if len(idx) < 2:
            continue  # batch norm needs two examples
        y = torch.from_numpy(y_train[idx])
        inputs, targets = train_batch([a[idx] for a in x_train], y, rng)
        scores = logits(model(*inputs))
        loss = F.cross_entropy(scores, targets, weight=weight, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
        correct += int((scores.argmax(1) == y).sum())
        seen += len(idx)
    return total / max(seen, 1), correct / max(seen, 1)


def fit(
    model: torch.nn.Module,
    train: tuple[Sequence[np.ndarray], np.ndarray],
    val: tuple[Sequence[np.ndarray], np.ndarray] | None,
    cfg: FitConfig,
    batch: Batch = as_tensors,
    logits: Logits = _itself,
    *,
    train_batch: TrainBatch | None = None,
    lr_factor: Callable[[int], float] | None = None,
    after_epoch: Callable[[torch.nn.Module], None] | None = None,
    score: Score = loss_and_accuracy,
) -> tuple[torch.nn.Module, list[Epoch]]:
    """Train ``model`` in place; return it with the weights of its best epoch, and the history.

    Parameters
    ----------
    train, val : (inputs, labels)
        ``inputs``: arrays whose first axis runs over the N examples (the model's positional
        inputs, or what ``train_batch`` makes them from); ``labels``: (N,) class indices.
        ``val`` None: no validation; all ``cfg.epochs`` run and the last epoch's weights are
        returned (its figures are NaN in the history).
    batch : Batch
        Turns a batch's arrays into the model's inputs; gets a generator in training, None in
        evaluation, so it can augment only the former.
    logits : Logits
        Picks the logits out of the model's output, for models that return more.
    train_batch : TrainBatch, optional
        Makes each training batch's inputs and targets instead of ``batch`` and the labels.
    lr_factor : callable, optional
        The learning rate of epoch e (from 0) is ``cfg.lr * lr_factor(e)``; None: cosine decay
        from ``cfg.lr`` to a 50th of it.
    after_epoch : callable, optional
        Called with the model after each epoch's steps, before its validation.
    score : Score
        Validation loss and accuracy from ``predict_proba`` of the validation inputs; the labels
        need not be one per input row (several windows of one clip, say).
    """
    rng = np.random.default_rng(cfg.seed)  # torch's generator: seeded by the caller, before building the model
    make = train_batch or _with_labels(batch)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _schedule(opt, cfg, lr_factor)
    best_state, stale, history = None, 0, []
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        lr = opt.param_groups[0]["lr"]
        train_loss, train_acc = _train_epoch(model, opt, train, cfg, rng, make, logits)
        if after_epoch is not None:
            after_epoch(model)
        sched.step()
        val_loss, val_acc = score(predict_proba(model, val[0], batch, logits), val[1]) if val else (math.nan, math.nan)
        row = Epoch(epoch, lr, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - start)
        history.append(row)
        log.info("epoch %3d  lr %.5f  train loss %.3f acc %.3f  val loss %.3f acc %.3f  (%.0f s)", *astuple(row))
        if val is None:
            continue
        if best_epoch(history) is row:
            best_state, stale = copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("no better validation accuracy for %d epochs: stopping", cfg.patience)
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history
