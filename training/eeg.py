"""Train the EEG emotion model (models.eeg, EEGNet) subject-independently, and write its card.

    emofuse train eeg --data synthetic|MANIFEST.csv|SEED_FOLDER|DEAP_FOLDER --out DIR [--epochs 60 --seed 0 ...]

writes ``DIR/eeg.pt`` (state dict, model config, labels), ``DIR/eeg.card.json`` (a
:class:`models.card.ModelCard` whose ``preprocessing`` holds the EEG settings, the channel names
and the per-channel standardisation statistics of the training windows) and the test report
``DIR/eeg.test.json`` and ``DIR/eeg.confusion.png``. ``--data synthetic`` generates trials with
:mod:`training.synthetic_eeg` (its card says ``weights="synthetic"``); a manifest CSV, a SEED
folder or a DEAP folder are read by :mod:`training.trials`.

Every trial goes through :class:`preprocessing.eeg.EEGPreprocessing`, exactly as in serving:
band-pass and notch, resampling to the model's rate, windows of 5.25 s, standardisation.
Subjects are split by :func:`training.trials.subject_split` (subjects 1-30 train, 31-36
validate, 37-42 test, or the same proportions). Each epoch logs the training and validation
loss and accuracy; the weights of the best validation accuracy are kept. The test report gives
accuracy, macro-F1, recall per class and the confusion matrix of the test subjects' windows,
and of their trials (window probabilities averaged).

Everything is seeded: the same seed, data and thread count give the same weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from models.card import ModelCard
from models.eeg import EEGNet, EEGNetConfig
from models.parameters import count_parameters
from preprocessing.eeg import EEGPreprocessing, EEGRecording, EEGSpec, channel_stats, eeg_windows, standardise
from preprocessing.errors import RecordingError
from preprocessing.trial import read_trial_manifest
from training.examples import Examples
from training.loop import Epoch, FitConfig, best_epoch, fit, predict_proba
from training.metrics import format_confusion, report
from training.report import write_report
from training.trials import (
    PAPER_SUBJECTS,
    EEGTrial,
    SubjectSplit,
    load_eeg_trials,
    parse_subjects,
    read_deap,
    read_seed,
    subject_split,
)

__all__ = [
    "EEGWindows",
    "TrainConfig",
    "eeg_inputs",
    "main",
    "predict",
    "train",
    "trial_probabilities",
    "windows_of",
]  # fmt: skip

log = logging.getLogger("training.eeg")


@dataclass
class EEGWindows(Examples):
    """EEG windows as they enter standardisation, N of them.

    Attributes
    ----------
    windows : ndarray of float32, shape (N, n_channels, n_samples)
        Filtered and resampled (:func:`preprocessing.eeg.eeg_windows`), in uV, not standardised.
    labels : ndarray of int64, shape (N,)
        Indices into ``label_names``.
    subjects : ndarray of int64, shape (N,)
    trials : ndarray of int64, shape (N,)
        The trial each window was cut from: 0, 1, ... in the order the trials were read; the
        windows of one trial are consecutive.
    label_names, channels : tuple of str
    rate : float
        Sampling rate of the windows in Hz.
    """

    windows: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    trials: np.ndarray
    label_names: tuple[str, ...]
    channels: tuple[str, ...]
    rate: float

    ARRAYS: ClassVar[dict[str, type | None]] = {"windows": np.float32, "labels": np.int64, "subjects": np.int64, "trials": np.int64}


def windows_of(trials: Sequence[EEGTrial], spec: EEGSpec, label_names: Sequence[str] | None = None) -> EEGWindows:
    """The windows of labelled trials (:func:`preprocessing.eeg.eeg_windows` with ``spec``).

    ``label_names``: class order; None: the trials' labels, sorted. Every trial must have the
    channels of the first, in the same order.

    Raises
    ------
    RecordingError
        A trial is shorter than a window, or its channels differ from the first trial's; the
        message names its file.
    """
    if not trials:
        raise ValueError("no trials to cut into windows.")
    names = tuple(label_names) if label_names is not None else tuple(sorted({t.label for t in trials}))
    channels = trials[0].recording.channels
    windows, labels, subjects, owners = [], [], [], []
    for i, t in enumerate(trials):
        if t.recording.channels != channels:
            raise RecordingError(t.recording.path, f"has the channels {list(t.recording.channels)}, the first trial {list(channels)}; "
                                 "give every trial the same channels in the same order.")  # fmt: skip
        if t.label not in names:
            raise ValueError(f"trial {t.trial} of subject {t.subject} has the label {t.label!r}, not one of {list(names)}.")
        w = eeg_windows(t.recording, spec)
        windows.append(w)
        labels += [names.index(t.label)] * len(w)
        subjects += [t.subject] * len(w)
        owners += [i] * len(w)
    return EEGWindows(np.concatenate(windows), np.array(labels, np.int64), np.array(subjects, np.int64), np.array(owners, np.int64),
                      names, channels, spec.rate)  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0  # seeds numpy and torch: same seed, same weights
    epochs: int = 60  # most epochs; early stopping may end sooner
    patience: int = 15  # stop after this many epochs without a better validation accuracy
    batch_size: int = 32
    lr: float = 3e-3  # AdamW with cosine decay (the paper: Adam, 1e-3)
    weight_decay: float = 1e-3  # stands in for the paper's max-norm constraints
    threads: int = 2  # torch CPU threads (results are reproducible for a fixed count)
    F1: int = 8  # EEGNet-8,2
    D: int = 2
    F2: int = 16
    dropout: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)


def predict(model: EEGNet, inputs: np.ndarray) -> np.ndarray:
    """Softmax probabilities (N, n_classes) of standardised windows (N, C, S)."""
    return predict_proba(model, (inputs,))


def trial_probabilities(probs: np.ndarray, trials: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean window probabilities of each trial.

    Returns
    -------
    first : ndarray of int, shape (T,)
        Index of each trial's first window (its label is the trial's), in trial id order.
    probabilities : ndarray of float64, shape (T, n_classes)
    """
    _, first, owner = np.unique(trials, return_index=True, return_inverse=True)
    sums = np.zeros((len(first), probs.shape[1]))
    np.add.at(sums, owner, probs)
    return first, sums / np.bincount(owner)[:, None]


def train(
    data: EEGWindows, out: str | Path, cfg: TrainConfig, *, spec: EEGSpec, weights: str, data_text: str, licence: str,
    split: SubjectSplit = PAPER_SUBJECTS,
) -> ModelCard:  # fmt: skip
    """Train on ``data`` split by subject; write ``out/eeg.pt``, ``out/eeg.card.json`` and the report.

    ``spec`` made the windows (its rate and window length must match them); ``split``: the
    subject split asked for, applied through :func:`training.trials.subject_split`.
    """
    t_start = time.perf_counter()
    if data.windows.shape[2] != spec.samples or abs(data.rate - spec.rate) > 1e-6:
        raise ValueError(f"windows of {data.windows.shape[2]} samples at {data.rate:g} Hz were not made by {spec}.")
    torch.set_num_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    subjects = subject_split(data.subjects.tolist(), split)
    idx = subjects.indices(data.subjects)
    log.info("windows: %s; subjects %s", {k: len(v) for k, v in idx.items()}, subjects.to_dict())
    stats = channel_stats(data.windows[idx["train"]])
    prep = EEGPreprocessing(spec, data.channels, stats)
    x = standardise(data.windows, *stats)
    part = {k: ((x[v],), data.labels[v]) for k, v in idx.items()}

    torch.manual_seed(cfg.seed)
    config = EEGNetConfig(channels=len(data.channels), samples=spec.samples, n_classes=len(data.label_names), rate=spec.rate,
                          F1=cfg.F1, D=cfg.D, F2=cfg.F2, dropout=cfg.dropout)  # fmt: skip
    model = EEGNet(config)
    model, epochs = fit(model, part["train"], part["val"], FitConfig.of(cfg))
    (x_test,), y_test = part["test"]
    test_probs = predict(model, x_test)
    test = report(y_test, test_probs.argmax(1), data.label_names)
    first, trial_probs = trial_probabilities(test_probs, data.trials[idx["test"]])
    test_trials = report(y_test[first], trial_probs.argmax(1), data.label_names)
    log.info("test windows: accuracy %.3f, macro-F1 %.3f; trials: accuracy %.3f", test["accuracy"], test["macro_f1"],
             test_trials["accuracy"])  # fmt: skip
    log.info("confusion (windows):\n%s", format_confusion(test["confusion_matrix"], data.label_names))

    torch.save({"state_dict": model.state_dict(), "config": config.to_dict(), "labels": list(data.label_names)}, out / "eeg.pt")
    card = _card(model, data, prep, cfg, epochs, weights=weights, data_text=data_text, licence=licence, subjects=subjects,
                 windows={k: len(v) for k, v in idx.items()}, test=test, test_trials=test_trials,
                 seconds=time.perf_counter() - t_start)  # fmt: skip
    card.save(out / "eeg.card.json")
    write_report(test, out, "eeg")
    log.info("wrote %s and %s", out / "eeg.pt", out / "eeg.card.json")
    return card


def _card(
    model: EEGNet, data: EEGWindows, prep: EEGPreprocessing, cfg: TrainConfig, epochs: list[Epoch], *, weights: str, data_text: str,
    licence: str, subjects: SubjectSplit, windows: dict[str, int], test: dict, test_trials: dict, seconds: float,
) -> ModelCard:  # fmt: skip
    history = [e.to_dict() for e in epochs]
    best = best_epoch(epochs).to_dict()
    c, spec = model.config, prep.spec
    return ModelCard(
        name="eeg",
        task=f"emotion of one {spec.window_s:g} s EEG window ({c.channels} channels at {spec.rate:g} Hz)",
        labels=list(data.label_names),
        inputs={
            "EEG": {
                "dtype": "float32",
                "shape": [c.channels, c.samples],
                "meaning": "preprocessing.eeg.EEGPreprocessing.inputs: filtered, resampled, standardised per channel",
            }
        },
        preprocessing=prep.to_dict(),
        weights=weights,  # type: ignore[arg-type]
        source=(
            f"trained by training.eeg (seed {cfg.seed}): EEGNet-{c.F1},{c.D}, {count_parameters(model):,} parameters; "
            "Lawhern et al. 2018, arXiv:1611.08024"
        ),
        data=f"{data_text}; subject-independent split {subjects.to_dict()}",
        licence=licence,
        metrics={
            "test": test,
            "test_trials": test_trials,
            "chance_accuracy": round(1 / len(data.label_names), 4),
            "validation_accuracy": best["val_acc"],
            "training": {
                "history": history,
                "best_epoch": best["epoch"],
                "epochs_run": len(history),
                "windows": windows,
                "parameters": count_parameters(model),
                "seconds": round(seconds, 1),
                "threads": cfg.threads,
                "torch": torch.__version__,
                "config": cfg.to_dict(),
            },
        },
    )


def eeg_inputs(recording: EEGRecording, card: ModelCard, count: int | None = None) -> np.ndarray:
    """The model inputs of ``recording`` as the card's preprocessing makes them: (n, C, S) float32.

    ``count``: None, windows every hop; an int, exactly that many spread over the recording (4
    for a trial). See :meth:`preprocessing.eeg.EEGPreprocessing.inputs`.
    """
    return EEGPreprocessing.from_dict(card.preprocessing).inputs(recording, count)


def _read(data: str, spec: EEGSpec, deap_target: str) -> tuple[EEGWindows, str]:
    """Windows of a manifest CSV, a SEED folder or a DEAP folder, and a line describing them."""
    path = Path(data)
    if path.suffix.lower() == ".csv":
        trials, kind = load_eeg_trials(read_trial_manifest(path)), "trial manifest"
    elif any(path.glob("s[0-9]*.dat")):
        trials, kind = read_deap(path, deap_target), f"DEAP ({deap_target})"
    elif any(path.glob("*.mat")):
        trials, kind = read_seed(path), "SEED"
    else:
        raise ValueError(f"{data}: give 'synthetic', a trial manifest .csv, a SEED folder (*.mat) or a DEAP folder (s01.dat ...).")
    windows = windows_of(trials, spec)
    return windows, f"{kind} {data}: {len(trials)} trials, {len(windows)} windows"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emofuse train eeg", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="'synthetic', a trial manifest .csv, a SEED folder or a DEAP folder")
    p.add_argument("--out", required=True, help="folder for eeg.pt, eeg.card.json and the test report")
    d, e = TrainConfig(), EEGSpec()
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--train-subjects", default="1-30", help="e.g. 1-30 or 1,2,5 (absent subjects: split in the same proportions)")
    p.add_argument("--val-subjects", default="31-36")
    p.add_argument("--test-subjects", default="37-42")
    g = p.add_argument_group("EEG preprocessing")
    g.add_argument("--low", type=float, default=e.low_hz, help="band-pass low edge, Hz")
    g.add_argument("--high", type=float, default=e.high_hz, help="band-pass high edge, Hz")
    g.add_argument("--notch", type=float, default=e.notch_hz, help="mains frequency, Hz (0: no notch)")
    g.add_argument("--rate", type=float, default=e.rate, help="model input rate, Hz")
    g.add_argument("--window", type=float, default=e.window_s, help="window length, s")
    g.add_argument("--hop", type=float, default=None, help="window hop, s (default: the window length)")
    g.add_argument("--deap-target", choices=("quadrant", "valence", "arousal"), default="quadrant")
    s = p.add_argument_group("synthetic data")
    s.add_argument("--classes", type=int, choices=(3, 4, 5), default=5, help="the first N of neutral, calm, happy, sad, angry")
    s.add_argument("--subjects", type=int, default=14)
    s.add_argument("--per-class", type=int, default=4, help="trials per class and subject (4 windows each)")
    s.add_argument("--channels", type=int, choices=(14, 32), default=14, help="Emotiv-like 14 or 10-20 32 channels")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(a.threads)

    spec = EEGSpec(low_hz=a.low, high_hz=a.high, notch_hz=a.notch or None, rate=a.rate, window_s=a.window, hop_s=a.hop)
    if a.data == "synthetic":
        from training.ravdess import EMOTIONS_5
        from training.synthetic_eeg import CHANNELS_14, CHANNELS_32, SyntheticEEGSpec, make_eeg_dataset

        synthetic = SyntheticEEGSpec(labels=EMOTIONS_5[: a.classes], channels=CHANNELS_14 if a.channels == 14 else CHANNELS_32)
        data = make_eeg_dataset(synthetic, range(1, a.subjects + 1), a.per_class, seed=a.seed, eeg=spec)
        weights, licence = "synthetic", "generated by training.synthetic_eeg; no third-party data"
        text = f"synthetic trials of training.synthetic_eeg {json.dumps(synthetic.to_dict())}, seed {a.seed}"
    else:
        data, text = _read(a.data, spec, a.deap_target)
        weights, licence = "real", f"that of the recordings in {a.data}"
    cfg = TrainConfig(seed=a.seed, epochs=a.epochs, patience=a.patience, batch_size=a.batch_size, lr=a.lr, threads=a.threads,
                      dropout=a.dropout)  # fmt: skip
    split = SubjectSplit(parse_subjects(a.train_subjects), parse_subjects(a.val_subjects), parse_subjects(a.test_subjects))
    card = train(data, a.out, cfg, spec=spec, weights=weights, data_text=text, licence=licence, split=split)
    test = card.metrics["test"]
    print(
        json.dumps({"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "trial_accuracy": card.metrics["test_trials"]["accuracy"]})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
