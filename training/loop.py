"""A supervised training loop for classifiers: mini-batches, validation, early stopping.

Deterministic: the same seed, data and thread count give the same weights. Every epoch logs one
line of train and validation loss and accuracy, and the weights of the best validation accuracy
(ties: lower validation loss) are the ones returned.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, astuple, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .progress import batches

__all__ = ["Epoch", "FitConfig", "fit", "predict_proba"]

log = logging.getLogger(__name__)

#: Makes a batch's input tensors from the arrays of its examples (augmenting them in training).
Batch = Callable[[Sequence[np.ndarray], np.random.Generator | None], tuple[torch.Tensor, ...]]
#: The logits (B, classes) in what a model's forward returns.
Logits = Callable[[Any], torch.Tensor]


def _itself(output: torch.Tensor) -> torch.Tensor:
    return output


def as_tensors(arrays: Sequence[np.ndarray], rng: np.random.Generator | None) -> tuple[torch.Tensor, ...]:
    """The default :data:`Batch`: the arrays as they are."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


@dataclass(frozen=True)
class FitConfig:
    """Optimisation settings (AdamW with cosine decay of the learning rate)."""

    epochs: int = 30
    patience: int = 8  # stop after this many epochs without a better validation accuracy
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class Epoch:
    """Figures of one epoch."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float  # since training began

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


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


def fit(
    model: torch.nn.Module,
    train: tuple[Sequence[np.ndarray], np.ndarray],
    val: tuple[Sequence[np.ndarray], np.ndarray],
    cfg: FitConfig,
    batch: Batch = as_tensors,
    logits: Logits = _itself,
) -> tuple[torch.nn.Module, list[Epoch]]:
    """Train ``model`` in place; return it with the weights of its best epoch, and the history.

    Parameters
    ----------
    train, val : (inputs, labels)
        ``inputs``: arrays whose first axis runs over the N examples (the model's positional
        inputs); ``labels``: (N,) class indices.
    batch : Batch
        Turns a batch's arrays into the model's inputs; gets a generator in training, None in
        evaluation, so it can augment only the former.
    logits : Logits
        Picks the logits out of the model's output, for models that return more.
    """
    rng = np.random.default_rng(cfg.seed)  # torch's generator: seeded by the caller, before building the model
    (x_train, y_train), (x_val, y_val) = train, val
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Cosine decay: late epochs take small steps, so the best epoch is not a lucky jump.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr / 50)
    best, best_state, stale, history = (-1.0, np.inf), None, 0, []
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, correct, seen = 0.0, 0, 0
        order = rng.permutation(len(y_train))
        starts = range(0, len(order), cfg.batch_size)
        for s in batches(starts, len(starts)):
            idx = order[s : s + cfg.batch_size]
            if len(idx) < 2:
                continue  # batch norm needs two examples
            y = torch.from_numpy(y_train[idx])
            scores = logits(model(*batch([a[idx] for a in x_train], rng)))
            loss = F.cross_entropy(scores, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((scores.argmax(1) == y).sum())
            seen += len(idx)
        sched.step()
        probs = predict_proba(model, x_val, batch, logits)
        val_loss = float(-np.mean(np.log(probs[np.arange(len(y_val)), y_val] + 1e-9)))
        val_acc = float(np.mean(probs.argmax(1) == y_val))
        row = Epoch(epoch, total / max(seen, 1), correct / max(seen, 1), val_loss, val_acc, time.perf_counter() - start)
        history.append(row)
        log.info("epoch %3d  train loss %.3f acc %.3f  val loss %.3f acc %.3f  (%.0f s)", *astuple(row))
        if (val_acc, -val_loss) > (best[0], -best[1]):
            best, best_state, stale = (val_acc, val_loss), copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("no better validation accuracy for %d epochs: stopping", cfg.patience)
                break
    model.load_state_dict(best_state)
    return model.eval(), history
