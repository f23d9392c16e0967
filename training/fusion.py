"""Train the trial fusions (models.fusion: WAVER, XGBoost, the fusion CNN) from trained window models.

    emofuse train fusion --av AV_DIR --eeg EEG_DIR --data synthetic|MANIFEST.csv --out DIR
                         [--val-subjects 31-36 --test-subjects 37-42 ...]

``AV_DIR`` holds ``av.pt`` and ``av.card.json`` (``emofuse train av``), ``EEG_DIR`` ``eeg.pt`` and
``eeg.card.json`` (``emofuse train eeg``); both were trained on the training subjects. Every
trial of the validation and test subjects goes through both window models: 6 audio-video
windows and 4 EEG windows (:mod:`preprocessing.trial`) give a (6, C) and a (4, C) matrix of
logits (:class:`TrialLogits`, saved as ``DIR/fusion.logits.npz``). Then, on the **validation**
subjects only (the window models never saw them):

- WAVER's weights are each modality's trial accuracy on them;
- XGBoost and the CNN are trained on them, early stopping on a held-out third of them (whole
  subjects). So that they learn to answer from either modality alone, XGBoost gets every trial
  also without its AV and without its EEG, the CNN hides one modality of random trials in
  training (its modality dropout), and both stop on the held-out trials in all three forms.

The **test** subjects, never seen by any model, give the test report: AV alone, EEG alone,
AVER, WAVER, XGBoost and CNN, and each fusion with the AV and with the EEG missing
(``DIR/fusion.NAME.test.json`` and ``.confusion.png``). Written: ``fusion_cnn.pt`` +
``fusion_cnn.card.json``, ``fusion_xgboost.json`` + ``fusion_xgboost.card.json`` and
``fusion_waver.card.json``; the cards say ``weights="synthetic"`` when the window models or the
trials were synthetic.

``--data synthetic`` makes the trials with :mod:`training.synthetic_trials` (the validation and
test subjects of the split; ``--codes full``: each modality shows every class, as the window
models of ``emofuse train av|eeg --data synthetic`` learnt; ``--codes split``: each tells only
part of the classes apart, for window models trained on those codes). A trial manifest CSV
(:func:`preprocessing.trial.read_trial_manifest`) is read end to end: each video cut into its AV
windows and face crops as the AV model's card says (:func:`training.recordings.load_windows`,
cached), each EEG file through the EEG model's card (:func:`training.eeg.eeg_inputs`). A trial
without a video is judged from its EEG alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from models.av import AVModel, load_av
from models.card import ModelCard
from models.eeg import EEGNet, load_eeg
from models.fusion import FusionCNN, FusionConfig, FusionResult, Fusions, XGBoostFusion, aver, trial_matrix
from preprocessing.faces import FaceDetector
from preprocessing.recording import probe
from preprocessing.trial import TrialSpec, av_window_spec, eeg_spans, read_trial_manifest
from preprocessing.windows import WindowSpec
from training.av import AVWindows
from training.eeg import eeg_inputs
from training.examples import Examples
from training.loop import FitConfig, best_epoch, fit
from training.metrics import report
from training.recordings import LabelledRecording, load_windows
from training.report import write_report
from training.trials import PAPER_SUBJECTS, SubjectSplit, parse_subjects, subject_split

__all__ = ["TrainConfig", "TrialInputs", "TrialLogits", "evaluate", "fit_fusions", "judge_trials",
           "load_window_models", "main", "read_trials", "train", "trial_spec", "window_logits"]  # fmt: skip

log = logging.getLogger("training.fusion")

#: Test conditions: which modalities the fusions are given (on top of what each trial has).
CONDITIONS = {"": (True, True), ".no_av": (False, True), ".no_eeg": (True, False)}


@dataclass
class TrialInputs:
    """N trials as the two window models' inputs.

    Attributes
    ----------
    av : AVWindows
        N * 6 audio-video windows, trial after trial (a trial without video: zeros, nothing found).
    av_present : ndarray of bool, shape (N,)
        The trial has a video.
    eeg : ndarray of float32, shape (N, 4, channels, samples)
        Standardised EEG windows (:func:`training.eeg.eeg_inputs`).
    eeg_present : ndarray of bool, shape (N,)
    labels, subjects : ndarray of int64, shape (N,)
    label_names : tuple of str
    """

    av: AVWindows
    av_present: np.ndarray
    eeg: np.ndarray
    eeg_present: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    label_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> TrialInputs:
        A = len(self.av) // len(self)
        windows = (np.asarray(idx)[:, None] * A + np.arange(A)).ravel()
        return TrialInputs(self.av.subset(windows), self.av_present[idx], self.eeg[idx], self.eeg_present[idx], self.labels[idx],
                           self.subjects[idx], self.label_names)  # fmt: skip


@dataclass
class TrialLogits(Examples):
    """The window models' logits of N trials.

    Attributes
    ----------
    av : ndarray of float32, shape (N, 6, C)
    eeg : ndarray of float32, shape (N, 4, C)
    av_present, eeg_present : ndarray of bool, shape (N,)
        Whether the trial has the modality (the other's logits are meaningless).
    labels, subjects : ndarray of int64, shape (N,)
    label_names : tuple of str
    """

    av: np.ndarray
    eeg: np.ndarray
    av_present: np.ndarray
    eeg_present: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    label_names: tuple[str, ...]

    ARRAYS: ClassVar[dict[str, type | None]] = {"av": np.float32, "eeg": np.float32, "av_present": bool, "eeg_present": bool,
                                                "labels": np.int64, "subjects": np.int64}  # fmt: skip

    def given(self, av: bool, eeg: bool) -> TrialLogits:
        """The same trials with the modalities not given marked missing."""
        return TrialLogits(self.av, self.eeg, self.av_present & av, self.eeg_present & eeg, self.labels, self.subjects, self.label_names)

    def with_missing(self) -> TrialLogits:
        """3 N trials: these, these without AV, these without EEG (to train fusions that answer from either)."""
        parts = [self, self.given(False, True), self.given(True, False)]
        return replace(self, **{k: np.concatenate([getattr(p, k) for p in parts]) for k in self.ARRAYS})

    def kwargs(self) -> dict:
        """The arguments of :mod:`models.fusion`'s functions: logits and presence masks."""
        return {"av_logits": self.av, "eeg_logits": self.eeg, "av_present": self.av_present, "eeg_present": self.eeg_present}


@torch.no_grad()
def window_logits(trials: TrialInputs, av_model: AVModel, eeg_model: EEGNet, *, batch: int = 64) -> TrialLogits:
    """Every window of ``trials`` through its model (eval mode, ``batch`` windows at a time).

    A trial's AV modality counts as present when it has a video and the AV model used a face or
    a voice in any of its windows.
    """
    av_model.eval()
    eeg_model.eval()
    N, A = len(trials), len(trials.av) // len(trials)
    w = trials.av
    av, used = [], []
    for s in range(0, len(w), batch):
        out = av_model(*(torch.from_numpy(a[s : s + batch]) for a in (w.faces, w.mfcc, w.face_found, w.audio_present)))
        av.append(out.logits.numpy())
        used.append(out.used.numpy().any(axis=1))
    eeg_flat = trials.eeg.reshape(-1, *trials.eeg.shape[2:])  # (N * 4, channels, samples)
    eeg = np.concatenate([eeg_model(torch.from_numpy(eeg_flat[s : s + batch])).numpy() for s in range(0, len(eeg_flat), batch)])
    C = eeg.shape[1]
    av_present = trials.av_present & np.concatenate(used).reshape(N, A).any(axis=1)
    return TrialLogits(np.concatenate(av).reshape(N, A, C).astype(np.float32), eeg.reshape(N, -1, C).astype(np.float32), av_present,
                       trials.eeg_present.copy(), trials.labels, trials.subjects, trials.label_names)  # fmt: skip


def judge_trials(trials: TrialInputs, av_model: AVModel, eeg_model: EEGNet, fusions: Fusions) -> dict[str, FusionResult]:
    """Every fusion's verdict on every trial: window models, then :meth:`Fusions.judge`."""
    return fusions.judge(**window_logits(trials, av_model, eeg_model).kwargs())


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0  # seeds numpy, torch and XGBoost: same seed, same fusions
    threads: int = 2  # torch CPU threads
    holdout: float = 1 / 3  # share of the validation subjects that early-stop XGBoost and the CNN
    epochs: int = 300  # CNN: most epochs (a few trials per batch: an epoch is milliseconds)
    patience: int = 60
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-3
    rounds: int = 400  # XGBoost: most boosting rounds; early stopping keeps fewer
    depth: int = 3
    cnn: FusionConfig = field(default_factory=FusionConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def _holdout(subjects: np.ndarray, share: float) -> np.ndarray:
    """Boolean mask (N,) of the trials of the last ``share`` of the subjects (at least one, not all)."""
    ids = np.unique(subjects)
    if len(ids) < 2:
        raise ValueError(f"the fusions need 2 or more validation subjects (to fit and to stop early), got {ids.tolist()}.")
    n = min(len(ids) - 1, max(1, round(share * len(ids))))
    return np.isin(subjects, ids[-n:])


def _accuracy(result: FusionResult, labels: np.ndarray) -> float:
    answered = result.used.any(axis=1)
    return float(np.mean(result.probabilities[answered].argmax(1) == labels[answered])) if answered.any() else float("nan")


def fit_fusions(val: TrialLogits, cfg: TrainConfig) -> tuple[Fusions, dict]:
    """Train the fusions on the validation subjects' trials; returns them and what the cards record."""
    t0 = time.perf_counter()
    C = len(val.label_names)
    accuracy = [_accuracy(aver(**val.given(m == "av", m == "eeg").kwargs()), val.labels) for m in ("av", "eeg")]
    weights = tuple(a if np.isfinite(a) and a > 0 else 1.0 / C for a in accuracy)  # a modality with no trials: chance
    stop = _holdout(val.subjects, cfg.holdout)
    fit_trials, stop_part = val.subset(~stop), val.subset(stop).with_missing()
    fit_part = fit_trials.with_missing()
    log.info("validation trials: %d fit, %d stop early (each also without AV, without EEG); WAVER weights %s",
             len(fit_trials), stop.sum(), weights)  # fmt: skip

    xgb = XGBoostFusion(C, n_estimators=cfg.rounds, max_depth=cfg.depth, seed=cfg.seed)
    xgb.fit(XGBoostFusion.features(**fit_part.kwargs())[0], fit_part.labels, XGBoostFusion.features(**stop_part.kwargs())[0],
            stop_part.labels)  # fmt: skip
    t1 = time.perf_counter()

    torch.manual_seed(cfg.seed)
    config = FusionConfig(**{**asdict(cfg.cnn), "n_classes": C})
    windows = (config.av_windows, config.eeg_windows)
    x_fit = trial_matrix(**fit_trials.kwargs(), windows=windows)[0]  # its modality dropout removes rows in training
    x_stop = trial_matrix(**stop_part.kwargs(), windows=windows)[0]
    cnn, history = fit(FusionCNN(config), ((x_fit,), fit_trials.labels), ((x_stop,), stop_part.labels), FitConfig.of(cfg))
    t2 = time.perf_counter()
    epochs = [e.to_dict() for e in history]
    best = best_epoch(history).to_dict()
    subjects = {
        "fit": sorted(int(i) for i in np.unique(val.subjects[~stop])),
        "early_stopping": sorted(int(i) for i in np.unique(val.subjects[stop])),
    }
    info = {
        "validation": {"trials": len(val), "subjects": subjects},
        "waver": {"validation_accuracy": {"av": accuracy[0], "eeg": accuracy[1]}, "weights": {"av": weights[0], "eeg": weights[1]}},
        "xgboost": {"rounds": xgb.rounds, "seconds": round(t1 - t0, 2)},
        "cnn": {
            "history": epochs,
            "epochs_run": len(epochs),
            "best_epoch": best["epoch"],
            "seconds": round(t2 - t1, 2),
            "seconds_per_epoch": round((t2 - t1) / len(epochs), 4),
        },
    }
    return Fusions(weights, xgb, cnn.eval()), info


def _figures(result: FusionResult, labels: np.ndarray, names: tuple[str, ...]) -> dict:
    """metrics.report of the argmax, plus how many trials each modality took part in."""
    used = result.used
    figures = report(labels, result.probabilities.argmax(1), names)
    return {**figures, "answered": int(used.any(axis=1).sum()), "used": {"av": int(used[:, 0].sum()), "eeg": int(used[:, 1].sum())}}


def evaluate(fusions: Fusions, test: TrialLogits) -> dict[str, dict]:
    """Figures of AV alone, EEG alone, and every fusion in every condition of :data:`CONDITIONS`.

    Keys: ``av``, ``eeg``, ``aver``, ``waver``, ``xgboost``, ``cnn`` and, for each fusion,
    ``NAME.no_av`` and ``NAME.no_eeg``. A trial nobody can judge gets uniform probabilities,
    so it counts as a guess of the first class; ``answered`` says how many were judged.
    """
    out = {m: _figures(aver(**test.given(m == "av", m == "eeg").kwargs()), test.labels, test.label_names) for m in ("av", "eeg")}
    for suffix, (av, eeg) in CONDITIONS.items():
        for name, result in fusions.judge(**test.given(av, eeg).kwargs()).items():
            out[name + suffix] = _figures(result, test.labels, test.label_names)
    return out


def load_window_models(av_dir: str | Path, eeg_dir: str | Path) -> tuple[AVModel, ModelCard, EEGNet, ModelCard]:
    """The AV and EEG models and their cards; they must name the same labels in the same order."""
    av_model, av_card = load_av(av_dir)
    eeg_model, eeg_card = load_eeg(eeg_dir)
    if av_card.labels != eeg_card.labels:
        raise ValueError(f"the AV model's labels {av_card.labels} differ from the EEG model's {eeg_card.labels}; "
                         "train both on the same label set.")  # fmt: skip
    return av_model, av_card, eeg_model, eeg_card


def trial_spec(av_card: ModelCard, eeg_card: ModelCard, config: FusionConfig) -> TrialSpec:
    """The trial windows the window models' cards and the CNN's rows (``config``) ask for."""
    window = av_card.preprocessing["window"]
    av_window = WindowSpec(length_s=window["length_s"], frames=window["frames"], audio_rate=window["audio_rate"])
    return TrialSpec(av_windows=config.av_windows, av_window=av_window, eeg_windows=config.eeg_windows,
                     eeg_window_s=eeg_card.preprocessing["eeg"]["window_s"])  # fmt: skip


def read_trials(manifest: str | Path, subjects: set[int], av_model: AVModel, eeg_card: ModelCard, spec: TrialSpec, *,
                cache: Path | None = None) -> TrialInputs:  # fmt: skip
    """The trials of ``subjects`` in a trial manifest, as the window models' inputs.

    Raises
    ------
    RecordingError, ValueError
        A file cannot be read, or a trial is shorter than its windows; the message names it.
    """
    rows = [t for t in read_trial_manifest(manifest) if t.subject in subjects]
    if not rows:
        raise ValueError(f"{manifest}: no trials of the subjects {sorted(subjects)}; check the split.")
    labels = tuple(eeg_card.labels)
    unknown = sorted({t.label for t in rows} - set(labels))
    if unknown:
        raise ValueError(f"{manifest}: labels {unknown} are not among the models' {list(labels)}; relabel or retrain.")
    crop, detector = av_model.config.crop, FaceDetector()
    av, eeg = [], []
    for t in rows:
        if t.video is None:
            av.append(_blank_windows(spec, av_model, labels))
        else:
            windows = av_window_spec(probe(t.video).duration_s, spec, t.video)
            av.append(load_windows([LabelledRecording(t.video, t.label, str(t.subject), t.audio)], labels, spec=windows, crop=crop,
                                   detector=detector, cache_dir=cache))  # fmt: skip
        recording = t.read_eeg()
        eeg_spans(recording.duration_s, spec, recording.path)  # a trial too short for its EEG windows: an error naming the file
        eeg.append(eeg_inputs(recording, eeg_card, count=spec.eeg_windows))
    label_ids = np.array([labels.index(t.label) for t in rows], np.int64)
    subject_ids = np.array([t.subject for t in rows], np.int64)
    A = spec.av_windows
    windows = AVWindows(*(np.concatenate([getattr(w, k) for w in av]) for k in ("faces", "face_found", "mfcc", "audio_present")),
                        np.repeat(label_ids, A), np.repeat(subject_ids, A), labels)  # fmt: skip
    has_video = np.array([t.video is not None for t in rows])
    log.info("%d trials of %s (%d without video)", len(rows), manifest, (~has_video).sum())
    return TrialInputs(windows, has_video, np.stack(eeg), np.ones(len(rows), bool), label_ids, subject_ids, labels)


def _blank_windows(spec: TrialSpec, av_model: AVModel, labels: tuple[str, ...]) -> AVWindows:
    """The AV windows of a trial without video: nothing found, nothing heard."""
    A, T, c = spec.av_windows, spec.av_window.frames, av_model.config
    return AVWindows(np.zeros((A, T, *c.crop.shape), np.uint8), np.zeros((A, T), bool), np.zeros((A, c.n_mfcc, c.mfcc_frames), np.float32),
                     np.zeros(A, bool), np.zeros(A, np.int64), np.zeros(A, np.int64), labels)  # fmt: skip


def _provenance(av_card: ModelCard, eeg_card: ModelCard, *, synthetic: bool, data_text: str, split: SubjectSplit, spec: TrialSpec) -> dict:
    """What every fusion card says about its inputs: weights, data, licence, window models, trials."""
    real = not synthetic and av_card.weights == "real" and eeg_card.weights == "real"
    trials = "generated, no third-party data" if synthetic else f"that of {data_text}"
    return {
        "weights": "real" if real else "synthetic",
        "data": f"{data_text}; window logits of the validation subjects fit, of the test subjects test; "
        f"subject-independent split {split.to_dict()}",
        "licence": f"AV model: {av_card.licence}; EEG model: {eeg_card.licence}; trials: {trials}",
        "preprocessing": {
            "trial": spec.to_dict(),
            "window_models": {c.name: {"source": c.source, "weights": c.weights, "data": c.data} for c in (av_card, eeg_card)},
        },
    }


def _test_of(figures: dict, name: str) -> dict:
    """One fusion's test figures: with both modalities, without AV, without EEG, and each modality alone."""
    return {"both": figures[name], "no_av": figures[f"{name}.no_av"], "no_eeg": figures[f"{name}.no_eeg"],
            "av_alone": figures["av"], "eeg_alone": figures["eeg"]}  # fmt: skip


def _cards(
    fusions: Fusions, figures: dict, info: dict, cfg: TrainConfig, provenance: dict, common: dict, labels: tuple[str, ...]
) -> dict[str, ModelCard]:
    """The three fusions' cards; each fusion's task, inputs, settings, source and metrics, the rest shared."""
    config, C = fusions.cnn.config, len(labels)
    n_params = sum(q.numel() for q in fusions.cnn.parameters())
    matrix = f"models.fusion.trial_matrix: {config.av_windows} AV rows then {config.eeg_windows} EEG rows, a missing modality's rows zero"
    cards = {
        "fusion_cnn": (
            f"emotion of one trial from the {config.rows} x {C} matrix of its window logits",
            {"WINDOW_LOGITS": {"dtype": "float32", "shape": [1, config.rows, C], "meaning": matrix}},
            {"cnn": config.to_dict()},
            f"trained by training.fusion (seed {cfg.seed}): FusionCNN, {n_params:,} parameters",
            {"test": _test_of(figures, "cnn"), "training": info["cnn"]},
        ),
        "fusion_xgboost": (
            "emotion of one trial from its AV and EEG verdicts (softmax of each modality's mean window logits)",
            {"FEATURES": {"dtype": "float32", "shape": [2 * C], "meaning": "AV then EEG class probabilities, NaN for a missing modality"}},
            {"xgboost": {"rounds": fusions.xgboost.rounds, "max_depth": cfg.depth}},
            f"trained by training.fusion (seed {cfg.seed}): xgboost.XGBClassifier, {fusions.xgboost.rounds} rounds of {C} trees",
            {"test": _test_of(figures, "xgboost"), "training": info["xgboost"]},
        ),
        "fusion_waver": (
            "emotion of one trial: its AV and EEG verdicts weighted by their validation accuracy",
            {"AV_LOGITS": {"dtype": "float32", "shape": [config.av_windows, C], "meaning": "AV model logits of the trial's windows"},
             "EEG_LOGITS": {"dtype": "float32", "shape": [config.eeg_windows, C], "meaning": "EEG model logits of the trial's windows"}},
            {"waver": {**info["waver"]["weights"], "normalise": "softmax of each modality's mean window logits"}},
            "training.fusion: each modality's trial accuracy on the validation subjects",
            {"test": _test_of(figures, "waver"), "aver": _test_of(figures, "aver"), "training": info["waver"]},
        ),
    }  # fmt: skip
    return {
        name: ModelCard(name=name, task=task, labels=list(labels), inputs=inputs,
                        preprocessing={**provenance["preprocessing"], **settings}, weights=provenance["weights"],
                        source=source, data=provenance["data"], licence=provenance["licence"], metrics={**metrics, **common})
        for name, (task, inputs, settings, source, metrics) in cards.items()
    }  # fmt: skip


def train(
    trials: TrialInputs, out: str | Path, cfg: TrainConfig, *, av_model: AVModel, av_card: ModelCard, eeg_model: EEGNet,
    eeg_card: ModelCard, split: SubjectSplit, data_text: str, synthetic: bool, spec: TrialSpec,
) -> dict[str, ModelCard]:  # fmt: skip
    """Fit the fusions on ``split.val``, test them on ``split.test``; write checkpoints, cards, reports.

    Returns the three cards by name (``fusion_cnn``, ``fusion_xgboost``, ``fusion_waver``).
    """
    t_start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    logits = window_logits(trials, av_model, eeg_model)
    logits.save(out / "fusion.logits.npz")
    val = logits.subset(np.isin(logits.subjects, split.val))
    test = logits.subset(np.isin(logits.subjects, split.test))
    if not len(val) or not len(test):
        raise ValueError(f"the trials hold {len(val)} validation and {len(test)} test trials for the split {split.to_dict()}; give both.")
    fusions, info = fit_fusions(val, cfg)
    figures = evaluate(fusions, test)
    for key, r in figures.items():
        write_report(r, out, f"fusion.{key}")
    log.info("test accuracy: %s", {k: r["accuracy"] for k, r in figures.items()})

    labels = trials.label_names
    cnn = fusions.cnn
    torch.save({"state_dict": cnn.state_dict(), "config": cnn.config.to_dict(), "labels": list(labels)}, out / "fusion_cnn.pt")
    fusions.xgboost.save(out / "fusion_xgboost.json")
    provenance = _provenance(av_card, eeg_card, synthetic=synthetic, data_text=data_text, split=split, spec=spec)
    common = {"chance_accuracy": round(1 / len(labels), 4), "test_trials": len(test), "validation": info["validation"],
              "seconds": round(time.perf_counter() - t_start, 1), "config": cfg.to_dict()}  # fmt: skip
    cards = _cards(fusions, figures, info, cfg, provenance, common, labels)
    for name, card in cards.items():
        card.save(out / f"{name}.card.json")
    log.info("wrote %s", ", ".join(f"{n}.card.json" for n in cards))
    return cards


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emofuse train fusion", description=__doc__.split("\n\n")[0])
    p.add_argument("--av", required=True, help="folder of av.pt and av.card.json (emofuse train av)")
    p.add_argument("--eeg", required=True, help="folder of eeg.pt and eeg.card.json (emofuse train eeg)")
    p.add_argument("--data", required=True, help="'synthetic' or a trial manifest .csv")
    p.add_argument("--out", required=True, help="folder for the fusions, their cards and the test reports")
    d = TrainConfig()
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--epochs", type=int, default=d.epochs, help="CNN")
    p.add_argument("--patience", type=int, default=d.patience, help="CNN")
    p.add_argument("--val-subjects", default="31-36", help="fit the fusions (absent: split in the paper's proportions)")
    p.add_argument("--test-subjects", default="37-42")
    p.add_argument("--cache", type=Path, help="window cache of the videos (default: ~/.cache/emofuse/windows)")
    g = p.add_argument_group("synthetic trials")
    g.add_argument("--per-class", type=int, default=4, help="trials per class and subject")
    g.add_argument("--codes", choices=("full", "split"), default="full",
                   help="full: every class shows its own prototype in each modality, as `emofuse train av|eeg --data synthetic` "
                        "train on; split: each modality tells only 3 of 5 classes apart (training.synthetic_trials; window "
                        "models must have been trained on those codes)")  # fmt: skip
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(a.threads)

    av_model, av_card, eeg_model, eeg_card = load_window_models(a.av, a.eeg)
    cfg = TrainConfig(seed=a.seed, threads=a.threads, epochs=a.epochs, patience=a.patience)
    spec = trial_spec(av_card, eeg_card, cfg.cnn)
    asked = SubjectSplit((), parse_subjects(a.val_subjects), parse_subjects(a.test_subjects))  # training subjects: the window models' cards
    if a.data == "synthetic":
        from training.synthetic_trials import SyntheticTrialSpec, synthetic_trials

        n = len(av_card.labels)
        codes = {} if a.codes == "split" else {"av_codes": tuple(range(n)), "eeg_codes": tuple(range(n))}
        synth = SyntheticTrialSpec(labels=tuple(av_card.labels), crop=av_model.config.crop, channels=tuple(eeg_card.preprocessing["channels"]),
                                   trial=spec, **codes)  # fmt: skip
        split = asked
        trials = synthetic_trials(synth, split.val + split.test, a.per_class, eeg_card, seed=a.seed)
        text = f"synthetic trials of training.synthetic_trials {json.dumps(synth.to_dict())}, seed {a.seed}"
    else:
        split = _fusion_split({t.subject for t in read_trial_manifest(a.data)}, asked)
        trials = read_trials(a.data, set(split.val + split.test), av_model, eeg_card, spec, cache=a.cache)
        text = f"trial manifest {a.data}: {len(trials)} trials"
    cards = train(trials, a.out, cfg, av_model=av_model, av_card=av_card, eeg_model=eeg_model, eeg_card=eeg_card, split=split,
                  data_text=text, synthetic=a.data == "synthetic", spec=spec)  # fmt: skip
    test = cards["fusion_waver"].metrics
    summary = {"av": test["test"]["av_alone"]["accuracy"], "eeg": test["test"]["eeg_alone"]["accuracy"],
               "aver": test["aver"]["both"]["accuracy"]}  # fmt: skip
    summary |= {name.removeprefix("fusion_"): c.metrics["test"]["both"]["accuracy"] for name, c in cards.items()}
    print(json.dumps(summary))
    return 0


def _fusion_split(subjects: set[int], asked: SubjectSplit) -> SubjectSplit:
    """The validation and test subjects of ``asked`` that the data has, the others training (the
    window models', not used here); where it has none of either, the paper's split or its
    proportions (:func:`training.trials.subject_split`)."""
    val, test = (tuple(s for s in getattr(asked, k) if s in subjects) for k in ("val", "test"))
    if val and test:
        return SubjectSplit(tuple(sorted(subjects - set(val) - set(test))), val, test)
    return subject_split(subjects, PAPER_SUBJECTS)


if __name__ == "__main__":
    raise SystemExit(main())
