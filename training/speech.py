"""Train the speech emotion CNN on RAVDESS speech, actor-independent, and write its card.

    python -m training.speech --data /work/shared/data/ravdess-speech --out models/weights/speech

writes ``OUT/speech.pt`` (the state dict of each seed's CNN, model config, labels, :class:`LogMelSpec`; read it with
:func:`models.speech.load_speech`) and ``OUT/speech.card.json`` (a :class:`models.card.ModelCard`:
labels, input, preprocessing, data, split, licence, validation and test metrics), and the test
report ``OUT/speech.test.json`` with its confusion matrix ``OUT/speech.confusion.png``. Unless
``--no-baseline``, the MFCC-statistics MLP baseline is trained on the same split and windows, and
its test metrics go into the card beside the CNN's.

Windows
-------
Each clip (2.9-5.3 s, silence around the speech) is seen through 3.6 s windows, as serving sees
a recording. Every epoch draws a fresh window per training clip: a long clip is cropped anywhere,
a short one is placed anywhere inside a window of zeros (the range of
:func:`preprocessing.audio_features.window_offsets`). Validation and test average the softmax of
``eval_crops`` evenly spread windows per clip; the test report also gives the accuracy of each of
those windows alone, which is what serving one 3.6 s window gets.

Features are computed from the cut window by :func:`preprocessing.audio_features.log_mel`, the
very function serving applies to ``Window.audio``; augmentation acts on the audio before it (speed)
or on the features after it (SpecAugment masks, mixup), never inside it.

Augmentation
------------
- speed perturbation: each training clip is resampled by a random factor in [1 - s, 1 + s], which
  changes tempo and pitch together (Ko et al. 2015, "Audio augmentation for speech recognition");
- pitch (off in the shipped recipe): each window's mel axis is warped by a random factor in
  [1 - p, 1 + p], which moves pitch and formants up or down and leaves the tempo alone (vocal tract
  length perturbation, Jaitly & Hinton 2013), so tempo and pitch can be measured apart;
- SpecAugment masks of mel bands and frames (Park et al. 2019), filled with the window's mean;
- mixup of examples and their one-hot targets (Zhang et al. 2018);
- real recording conditions (:mod:`training.conditions`): each window at a random level (-30 to
  0 dB, stored as 16-bit PCM), and some in a room, in background noise or through a telephone band.

After every epoch the batch-norm statistics are re-estimated on clean training windows
(:func:`recalibrate_batch_norm`) before validation, so that the model kept is the one serving runs.

The epochs are those of :func:`training.loop.fit`, the loop every trainer shares; this module
gives it its hooks: the training batches (windows, features, masks, mixup), the learning-rate
schedule (linear warm-up, then cosine decay), the recalibration and the scoring of clips.

Everything is seeded: the same seed, data and thread count give the same weights. One CNN is
trained per seed of ``seeds`` and the model shipped averages their softmaxes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import librosa
import numpy as np
import torch
import torch.nn.functional as F

from models.card import ModelCard
from models.parameters import count_parameters
from models.speech import SPEECH_WEIGHTS, MfccMLPConfig, SpeechCNNConfig, SpeechEnsemble, build, load_speech, speech_card
from preprocessing.audio_features import SAMPLE_RATE, LogMelSpec, MfccSpec, cut_window, log_mel, mfcc, window_offsets
from training.conditions import STUDIO, RealRecordings, degrade
from training.loop import Epoch, FitConfig, Score, TrainBatch, best_epoch, predict_proba
from training.loop import fit as fit_loop
from training.metrics import format_confusion, report
from training.ravdess import EMOTIONS_8, LICENCE, Clip, actor_groups, derive_split, load_audio, read_clips
from training.report import write_report

__all__ = ["Augment", "TrainConfig", "evaluate", "fit", "main", "mixup", "predict_clips", "recalibrate_batch_norm", "train"]

log = logging.getLogger("training.speech")


@dataclass
class Augment:
    """Training-time augmentation of the CNN's windows (the baseline trains without)."""

    speed: float = 0.1  # resample by a factor in [1 - speed, 1 + speed]: tempo and pitch; 0 disables
    pitch: float = 0.0  # warp the mel axis by a factor in [1 - pitch, 1 + pitch]: pitch and formants only; 0 disables
    freq_masks: int = 2  # SpecAugment: masks of up to freq_mask_width mel bands
    freq_mask_width: int = 8
    time_masks: int = 2  # SpecAugment: masks of up to time_mask_width frames (23 ms each)
    time_mask_width: int = 20
    mixup_alpha: float = 0.2  # mix pairs with Beta(alpha, alpha) weights; 0 disables
    recordings: RealRecordings = field(default_factory=RealRecordings)  # level, room, noise, telephone


@dataclass
class TrainConfig:
    # One CNN per seed, their softmaxes averaged (models.speech.SpeechEnsemble); seeds numpy and
    # torch: same seed, same weights. Two seeds: +1 point on validation and test clips, where one
    # differs from another by up to a point (measured in the card, member by member).
    seeds: tuple[int, ...] = (0, 1)
    epochs: int = 40  # most epochs; early stopping may end sooner
    patience: int = 12  # stop after this many epochs without a better validation accuracy
    batch_size: int = 32
    lr: float = 1e-3  # peak learning rate (AdamW), after a linear warm-up, then cosine decay
    warmup_epochs: int = 2
    weight_decay: float = 1e-2
    label_smoothing: float = 0.05
    augment: Augment = field(default_factory=Augment)
    eval_crops: int = 5  # evenly spread windows per clip, softmax averaged, at validation and test
    threads: int = 1  # torch CPU threads (same count, same weights); 2 ran 4x slower on a shared 2-core CPU
    cnn: SpeechCNNConfig = field(default_factory=SpeechCNNConfig)
    logmel: LogMelSpec = field(default_factory=LogMelSpec)
    baseline: bool = True  # also train and test the MFCC-statistics MLP
    baseline_epochs: int = 30
    baseline_lr: float = 1e-3
    mlp: MfccMLPConfig = field(default_factory=MfccMLPConfig)
    max_clips: int | None = None  # keep only this many clips (evenly spread), for smoke tests

    def to_dict(self) -> dict:
        return {**asdict(self), "cnn": self.cnn.to_dict()}


# ---------------------------------------------------------------------------------------------
# Windows and their features


def _speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play ``samples`` ``factor`` times faster (linear interpolation): shorter and higher."""
    positions = np.arange(0.0, len(samples) - 1, factor)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)


def random_windows(audio: Sequence[np.ndarray], rng: np.random.Generator, speed: float = 0.0) -> np.ndarray:
    """One window per clip at a random position (and speed), shape (len(audio), 79380)."""
    out = []
    for samples in audio:
        if speed > 0:
            samples = _speed(samples, 1 + speed * (2 * rng.random() - 1))
        lo, hi = window_offsets(len(samples), 2)  # the whole range of window positions
        out.append(cut_window(samples, int(rng.integers(lo, hi + 1))))
    return np.stack(out)


def even_windows(audio: Sequence[np.ndarray], n_crops: int) -> np.ndarray:
    """``n_crops`` evenly spread windows per clip, clip by clip: shape (len(audio) * n_crops, 79380)."""
    return np.stack([cut_window(s, int(o)) for s in audio for o in window_offsets(len(s), n_crops)])


def features(kind: str, windows: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Model input of each window: log-mel (B, 64, 156) for the CNN, MFCCs (B, 40, 156) for the MLP."""
    if kind == "cnn":
        return log_mel(windows, cfg.logmel)
    return mfcc(windows, MfccSpec(n_mfcc=cfg.mlp.n_mfcc))


def warp_frequencies(x: np.ndarray, factors: np.ndarray, spec: LogMelSpec) -> np.ndarray:
    """Move every frequency of each log-mel window (B, n_mels, frames) by its factor (B,).

    Band ``m`` of the result takes the value the input had at ``f_m / factor`` (``f_m`` the band's
    centre in Hz), interpolated between neighbouring bands; below the lowest band the lowest is
    kept, above the highest the floor ``-top_db``. A factor above 1 raises pitch and formants.
    """
    centres = librosa.mel_frequencies(spec.n_mels + 2, fmin=spec.fmin, fmax=spec.fmax)[1:-1]
    bands = np.arange(spec.n_mels, dtype=np.float64)
    out = np.empty_like(x)
    for i, factor in enumerate(np.asarray(factors, np.float64)):
        source = np.interp(centres / factor, centres, bands, right=np.nan)  # fractional input band of each output band
        inside = ~np.isnan(source)
        source = np.where(inside, source, 0.0)
        lo = np.minimum(np.floor(source).astype(np.int64), spec.n_mels - 1)
        hi = np.minimum(lo + 1, spec.n_mels - 1)
        t = (source - lo)[:, None]
        out[i] = np.where(inside[:, None], (1 - t) * x[i, lo] + t * x[i, hi], -spec.top_db)
    return out.astype(np.float32)


def spec_augment(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Mask random bands and frame spans of each example (B, rows, frames) with its mean."""
    b, rows, frames = x.shape
    fill = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    for n, width, size, axis in ((aug.freq_masks, aug.freq_mask_width, rows, 1),
                                 (aug.time_masks, aug.time_mask_width, frames, 2)):  # fmt: skip
        for _ in range(n):
            w = torch.randint(0, width + 1, (b,), generator=gen)
            start = (torch.rand(b, generator=gen) * (size - w + 1).float()).long()
            pos = torch.arange(size)
            mask = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + w)[:, None])  # (B, size)
            x = torch.where(mask[:, :, None] if axis == 1 else mask[:, None, :], fill, x)
    return x


# ---------------------------------------------------------------------------------------------
# Training


@torch.no_grad()
def recalibrate_batch_norm(model: torch.nn.Module, x: np.ndarray, batch: int = 64) -> None:
    """Re-estimate the batch-norm running statistics on clean windows (inputs (n, rows, frames)).

    Training estimates them on augmented batches (speed, masks, mixup) with weights that move
    from batch to batch; validation and serving see neither, and on RAVDESS that mismatch made
    the validation loss jump between epochs. Recomputing the statistics as an equal-weight
    average over clean training windows with the final weights ("precise BN", Wu & Johnson
    2021, arXiv:2105.07576) removes it. Weights do not change.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for i in range(0, len(x), batch):
        model(torch.from_numpy(x[i : i + batch]))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def _lr_factor(epoch: int, cfg: TrainConfig, epochs: int) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to 2% of the peak."""
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    t = (epoch - cfg.warmup_epochs) / max(1, epochs - cfg.warmup_epochs)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def mixup(x: torch.Tensor, target: torch.Tensor, alpha: float, rng: np.random.Generator,
          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Mix each example (B, ...) and its target (B, classes) with another of the batch, weights
    Beta(alpha, alpha) (Zhang et al. 2018)."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=gen)
    return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]


def _training_batches(kind: str, train_audio: Sequence[np.ndarray], cfg: TrainConfig, aug: Augment | None,
                      gen: torch.Generator) -> TrainBatch:  # fmt: skip
    """The loop's :data:`~training.loop.TrainBatch` over clip indices: a fresh window per clip
    (at a random speed, under random recording conditions), its features, then SpecAugment masks
    and mixup; targets one-hot."""

    def train_batch(
        arrays: Sequence[np.ndarray], labels: torch.Tensor, rng: np.random.Generator
    ) -> tuple[tuple[torch.Tensor], torch.Tensor]:
        (clips,) = arrays
        windows = random_windows([train_audio[i] for i in clips], rng, aug.speed if aug else 0.0)
        if aug is not None and aug.recordings.enabled:
            windows = degrade(windows, aug.recordings, SAMPLE_RATE, rng)
        x = features(kind, windows, cfg)
        if aug is not None and aug.pitch > 0:
            x = warp_frequencies(x, 1 + aug.pitch * (2 * rng.random(len(x)) - 1), cfg.logmel)
        x = torch.from_numpy(x)
        target = F.one_hot(labels, len(EMOTIONS_8)).float()
        if aug is not None:
            x = spec_augment(x, aug, gen)
            if aug.mixup_alpha > 0:
                x, target = mixup(x, target, aug.mixup_alpha, rng, gen)
        return (x,), target

    return train_batch


def _clip_score(n_crops: int) -> Score:
    """The loop's :data:`~training.loop.Score` for ``n_crops`` windows per clip, clip by clip:
    the loss of every window, the accuracy of clips with their windows' softmax averaged."""

    def score(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        rows = torch.from_numpy(np.repeat(labels, n_crops))
        loss = float(F.nll_loss(torch.log(torch.from_numpy(probs) + 1e-9), rows))
        return loss, float(np.mean(probs.reshape(len(labels), n_crops, -1).mean(axis=1).argmax(1) == labels))

    return score


def fit(
    kind: str,
    train_audio: Sequence[np.ndarray],
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    cfg: TrainConfig,
    seed: int,
) -> tuple[torch.nn.Module, list[Epoch]]:
    """Train one model ('cnn' or 'mlp') from ``seed`` with :func:`training.loop.fit` and keep its
    best epoch by validation accuracy.

    Parameters
    ----------
    train_audio : sequence of ndarray, shape (n_samples_i,)
        Decoded training clips.
    y_train : ndarray of int64, shape (n_train,)
    x_val : ndarray of float32, shape (n_val * eval_crops, rows, 156)
        Features of the validation clips' evenly spread windows, clip by clip.
    y_val : ndarray of int64, shape (n_val,)
        Both None: no validation, all ``epochs`` run and the last is kept.

    Returns
    -------
    model : the weights of the best epoch (:func:`training.loop.best_epoch`), in eval mode
    history : one :class:`training.loop.Epoch` per epoch
    """
    log.info("training the %s from seed %d", kind, seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)  # SpecAugment and mixup; numpy's generator is the loop's
    if kind == "cnn":
        model_cfg = {**cfg.cnn.to_dict(), "n_mels": cfg.logmel.n_mels, "n_classes": len(EMOTIONS_8)}
        epochs, lr, aug = cfg.epochs, cfg.lr, cfg.augment
    else:
        model_cfg = {**cfg.mlp.to_dict(), "n_classes": len(EMOTIONS_8)}
        epochs, lr, aug = cfg.baseline_epochs, cfg.baseline_lr, None
    model = build(kind, model_cfg)
    x_clean = features(kind, even_windows(train_audio, 1), cfg)  # one centred window per clip, for recalibration
    opt = replace(FitConfig.of(cfg), epochs=epochs, lr=lr, seed=seed)  # patience, batch size, weight decay, smoothing: cfg's
    return fit_loop(
        model, ((np.arange(len(train_audio)),), y_train), None if x_val is None else ((x_val,), y_val), opt,
        train_batch=_training_batches(kind, train_audio, cfg, aug, gen),
        lr_factor=lambda epoch: _lr_factor(epoch, cfg, epochs),
        after_epoch=lambda trained: recalibrate_batch_norm(trained, x_clean),
        score=_clip_score(cfg.eval_crops),
    )  # fmt: skip


def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, n_crops: int) -> dict:
    """Test report: clips with the softmax of their ``n_crops`` windows averaged, and windows alone.

    ``x`` holds the features of each clip's evenly spread windows, clip by clip (n * n_crops, rows, 156).
    """
    probs = predict_proba(model, (x,)).reshape(len(y), n_crops, -1)
    single = report(np.repeat(y, n_crops), probs.reshape(len(y) * n_crops, -1).argmax(1), EMOTIONS_8)
    return {
        **report(y, probs.mean(axis=1).argmax(1), EMOTIONS_8),
        "what": f"clips of the test actors; softmax averaged over {n_crops} evenly spread 3.6 s windows per clip",
        "single_window": {
            "accuracy": single["accuracy"],
            "macro_f1": single["macro_f1"],
            "what": f"each of those {n_crops} windows classified alone ({single['n']} windows), as serving sees them",
        },
    }


def predict_clips(model: torch.nn.Module, x: np.ndarray, n_crops: int) -> np.ndarray:
    """Class of each clip (n,), its ``n_crops`` windows' softmax averaged; ``x`` (n * n_crops, ...) as
    :func:`features` makes them."""
    return predict_proba(model, (x,)).reshape(len(x) // n_crops, n_crops, -1).mean(axis=1).argmax(1)


def group_accuracy(model: torch.nn.Module, x: np.ndarray, clips: Sequence[Clip], n_crops: int) -> dict[str, dict[str, float]]:
    """Accuracy per actor and per sex (RAVDESS: odd actors male, even female) of ``clips``,
    whose features ``x`` are as :func:`evaluate` takes them."""
    truth = np.array([c.label for c in clips])
    return actor_groups(truth, predict_clips(model, x, n_crops), [c.actor for c in clips])


def measure_groups(data: str | Path, weights: str | Path = SPEECH_WEIGHTS) -> dict[str, dict[str, float]]:
    """Add the per-actor and per-sex accuracy on its test actors to the card of trained weights
    (``weights/speech.card.json``); returns them."""
    model, card, spec = load_speech(weights)
    if "cross_validation" in card.metrics:  # its members heard the derived split's test actors
        raise ValueError(f"{weights} holds the models of a cross-validation: its card's groups are already those of the actors "
                         f"each member never heard (training.speech_folds); there are no unheard actors left to measure.")  # fmt: skip
    cfg = TrainConfig(logmel=spec)
    clips = read_clips(data)
    split = derive_split(sorted({c.actor for c in clips}))
    test = [c for c in clips if c.actor in split.test]
    groups = group_accuracy(model, features("cnn", even_windows(load_audio(test), cfg.eval_crops), cfg), test, cfg.eval_crops)
    card.metrics["groups"] = groups
    card.metrics["groups_what"] = f"clips of the test actors {list(split.test)}, {cfg.eval_crops} windows averaged (measured by emofuse train audio --measure-groups)"
    card.save(Path(weights) / "speech.card.json")
    return groups


def _select(items: list, max_items: int | None) -> list:
    if max_items is None or max_items >= len(items):
        return items
    return [items[i] for i in sorted(set(np.linspace(0, len(items) - 1, max_items).round().astype(int)))]


def train(data: str | Path, out: str | Path, cfg: TrainConfig | None = None) -> ModelCard:
    """Train on RAVDESS speech at ``data``; write ``out/speech.pt`` and ``out/speech.card.json``.

    ``cfg`` None trains with :class:`TrainConfig`'s defaults, the settings of the shipped model.

    Returns
    -------
    ModelCard
        The card written, with validation and test metrics of the CNN (and the MFCC-MLP baseline's).
    """
    t_start = time.perf_counter()
    cfg = cfg or TrainConfig()
    torch.set_num_threads(cfg.threads)
    data, out = Path(data), Path(out)
    clips = _select(read_clips(data), cfg.max_clips)
    split = derive_split(sorted({c.actor for c in clips}))
    log.info("split: train %s, val %s, test %s", split.train, split.val, split.test)
    audio = load_audio(clips)
    subsets = split.indices(np.array([c.actor for c in clips]))
    for name, idx in subsets.items():
        if not len(idx):
            raise ValueError(f"no {name} clips: the data must hold actors of every subset of {split}.")
    log.info("clips: %s", {k: len(v) for k, v in subsets.items()})
    y = {name: np.array([clips[i].label for i in idx], np.int64) for name, idx in subsets.items()}
    train_audio = [audio[i] for i in subsets["train"]]
    eval_windows = {name: even_windows([audio[i] for i in subsets[name]], cfg.eval_crops) for name in ("val", "test")}

    def run(kind: str, seed: int) -> tuple[torch.nn.Module, list[dict], int, dict, float]:
        t0 = time.perf_counter()
        model, history = fit(kind, train_audio, y["train"], x[kind]["val"], y["val"], cfg, seed)
        test = evaluate(model, x[kind]["test"], y["test"], cfg.eval_crops)
        return model, [e.to_dict() for e in history], best_epoch(history).epoch, test, time.perf_counter() - t0

    kinds = ("cnn", "mlp") if cfg.baseline else ("cnn",)
    x = {kind: {name: features(kind, w, cfg) for name, w in eval_windows.items()} for kind in kinds}
    runs = [run("cnn", seed) for seed in cfg.seeds]
    model = runs[0][0] if len(runs) == 1 else SpeechEnsemble([r[0] for r in runs])
    val, test = (evaluate(model, x["cnn"][name], y[name], cfg.eval_crops) for name in ("val", "test"))
    groups = group_accuracy(model, x["cnn"]["test"], [clips[i] for i in subsets["test"]], cfg.eval_crops)
    members = [{"seed": seed, "validation_accuracy": history[best - 1]["val_acc"], "test_accuracy": member_test["accuracy"],
                "test_single_window_accuracy": member_test["single_window"]["accuracy"], "best_epoch": best,
                "epochs_run": len(history), "training_time_s": round(secs, 1), "history": history}
               for seed, (_, history, best, member_test, secs) in zip(cfg.seeds, runs, strict=True)]  # fmt: skip
    log.info("CNN test accuracy %.3f, macro-F1 %.3f (single window %.3f)\n%s", test["accuracy"], test["macro_f1"],
             test["single_window"]["accuracy"], format_confusion(test["confusion_matrix"], EMOTIONS_8))  # fmt: skip
    baseline = None
    if cfg.baseline:
        mlp, b_history, b_best, baseline, b_s = run("mlp", cfg.seeds[0])
        baseline.update(
            model=f"MfccMLP {mlp.config.to_dict()}",
            parameters=count_parameters(mlp),
            best_epoch=b_best,
            validation_accuracy=b_history[b_best - 1]["val_acc"],
            training_time_s=round(b_s, 1),
        )
        log.info("baseline (MFCC-statistics MLP) test accuracy %.3f, macro-F1 %.3f", baseline["accuracy"],
                 baseline["macro_f1"])  # fmt: skip

    out.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"kind": "cnn", "config": model.config.to_dict(), "members": [r[0].state_dict() for r in runs], "labels": list(EMOTIONS_8),
         "log_mel": cfg.logmel.to_dict()},
        out / "speech.pt",
    )  # fmt: skip
    card = speech_card(
        model,
        cfg.logmel,
        source=(f"trained from scratch by training.speech: {len(runs)} CNNs (seeds {', '.join(map(str, cfg.seeds))}) whose softmaxes "
                f"are averaged, {count_parameters(model):,} parameters in all"),  # fmt: skip
        data=(
            f"RAVDESS speech (Livingstone & Russo 2018, doi:10.1371/journal.pone.0196391; Zenodo 1188976): "
            f"{len(clips)} clips of actors {sorted({c.actor for c in clips})}, resampled to 22,050 Hz; "
            f"actor-independent split after Chumachenko et al. (2022) with absent actors replaced: "
            f"train {list(split.train)}, validation {list(split.val)}, test {list(split.test)}"
        ),
        licence=LICENCE,
        metrics={
            "validation_accuracy": val["accuracy"],
            "validation_accuracy_what": (
                f"clips of the validation actors {list(split.val)}, {cfg.eval_crops} windows averaged, each member at the epoch kept"
            ),
            "test": test,
            "groups": groups,
            "groups_what": f"clips of the test actors {list(split.test)}, {cfg.eval_crops} windows averaged",
            "baseline_mfcc_mlp": baseline,
            "chance_accuracy": round(1 / len(EMOTIONS_8), 4),
            "training": {
                "split": split.to_dict(),
                "clips": {k: len(v) for k, v in subsets.items()},
                "parameters": count_parameters(model),
                "members": members,
                "total_time_s": round(time.perf_counter() - t_start, 1),
                "threads": cfg.threads,
                "torch": torch.__version__,
                "config": cfg.to_dict(),
            },
        },
    )
    card.save(out / "speech.card.json")
    write_report(test, out, "speech")
    log.info("wrote %s and %s in %.0f s", out / "speech.pt", out / "speech.card.json", time.perf_counter() - t_start)
    return card


def _widths(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m training.speech --data DIR --out DIR [--seeds 0,1 --epochs N ...]``.

    ``emofuse train audio`` delegates here with the same options. Prints a one-line JSON summary.
    With ``--folds N`` it cross-validates over the actors instead (:mod:`training.speech_folds`).
    """
    if any(arg.split("=")[0] == "--folds" for arg in (sys.argv[1:] if argv is None else argv)):
        from training.speech_folds import main as cross_validate  # imports this module: imported here

        return cross_validate(argv)
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m training.speech", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the ravdess-speech folder (labels.csv, Actor_XX/)")
    p.add_argument("--out", help="folder for speech.pt and speech.card.json")
    p.add_argument("--measure-groups", metavar="DIR", help="train nothing: add per-actor and per-sex test accuracy to the card in DIR")
    p.add_argument("--seeds", type=_widths, default=d.seeds, help="one CNN per seed, comma-separated; their softmaxes are averaged")
    p.add_argument("--epochs", type=int, default=d.epochs, help="most CNN epochs (early stopping may end sooner)")
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--widths", type=_widths, default=d.cnn.widths, help="CNN block widths, comma-separated")
    p.add_argument("--speed", type=float, default=d.augment.speed, help="speed perturbation range; 0 disables")
    p.add_argument("--pitch", type=float, default=d.augment.pitch, help="mel-axis warp range (pitch, not tempo); 0 disables")
    p.add_argument("--mixup", type=float, default=d.augment.mixup_alpha, help="mixup alpha; 0 disables")
    p.add_argument("--studio-only", action="store_true", help="train without the real recording conditions (level, room, noise, telephone)")
    p.add_argument("--baseline-epochs", type=int, default=d.baseline_epochs)
    p.add_argument("--no-baseline", action="store_true", help="skip the MFCC-statistics MLP baseline")
    p.add_argument("--max-clips", type=int, default=None, help="use only this many clips (smoke tests)")
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--folds", type=int, help="cross-validate over the actors instead: python -m training.speech_folds --help")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if a.measure_groups:
        print(json.dumps(measure_groups(a.data, a.measure_groups)))
        return 0
    if not a.out:
        p.error("--out is required (or --measure-groups DIR)")
    cfg = TrainConfig(
        seeds=a.seeds, epochs=a.epochs, patience=a.patience, lr=a.lr, batch_size=a.batch_size,
        augment=Augment(speed=a.speed, pitch=a.pitch, mixup_alpha=a.mixup, recordings=STUDIO if a.studio_only else RealRecordings()), cnn=SpeechCNNConfig(widths=a.widths),
        baseline=not a.no_baseline, baseline_epochs=a.baseline_epochs, max_clips=a.max_clips, threads=a.threads,
    )  # fmt: skip
    m = train(a.data, a.out, cfg).metrics
    summary = {"test_accuracy": m["test"]["accuracy"], "test_macro_f1": m["test"]["macro_f1"],
               "single_window_accuracy": m["test"]["single_window"]["accuracy"],
               "validation_accuracy": m["validation_accuracy"],
               "baseline_accuracy": (m["baseline_mfcc_mlp"] or {}).get("accuracy"),
               "seconds": m["training"]["total_time_s"]}  # fmt: skip
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
