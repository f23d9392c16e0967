"""Train the audio-video emotion model (models.av) speaker-independently, and write its card.

    emofuse train av --data synthetic|MANIFEST.csv|RAVDESS_FOLDER|WINDOWS.npz --out DIR [--fusion ia|it|lt] ...

writes ``DIR/av.pt`` (state dict, model config, labels, crop and window settings),
``DIR/av.card.json`` (a :class:`models.card.ModelCard`) and a test report per condition
(``DIR/av.audio_video.test.json`` and ``.confusion.png``, likewise face_only, audio_only).
``--data synthetic`` generates a data set with :mod:`training.synthetic_av` (its card says
``weights="synthetic"``); a manifest CSV or a RAVDESS folder names recordings, cut into windows
by :mod:`training.recordings` (cached); an ``.npz`` holds windows as :meth:`AVWindows.save`
writes them.

Speakers are split into train, validation and test sets that share nobody. Each epoch logs the
training and validation loss and accuracy; the weights of the best validation accuracy are kept,
and training stops after ``patience`` epochs without a better one. The test report gives accuracy
and macro-F1 with both modalities, with the face only and with the audio only.

Everything is seeded: the same seed, data and thread count give the same weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from models.av import FUSIONS, AVConfig, AVModel, AVOutput
from models.card import ModelCard
from models.emotions import RAVDESS
from models.parameters import count_parameters
from preprocessing.audio_features import MfccSpec, mfcc
from preprocessing.faces import CropSpec
from preprocessing.windows import WindowSpec
from training.examples import Examples
from training.loop import Batch, Epoch, FitConfig, as_tensors, best_epoch, predict_proba
from training.loop import fit as fit_loop
from training.metrics import format_confusion, report
from training.ravdess import EMOTIONS_5, EMOTIONS_8
from training.report import write_report
from training.trials import ordered_split

__all__ = [
    "AVWindows",
    "TrainConfig",
    "condition_report",
    "fit",
    "main",
    "predict",
    "train",
]  # fmt: skip

log = logging.getLogger("training.av")

#: Test conditions: which modalities the model is given (on top of what each window has).
CONDITIONS = {"audio_video": (True, True), "face_only": (True, False), "audio_only": (False, True)}


@dataclass
class AVWindows(Examples):
    """Windows as model inputs, N of them.

    Attributes
    ----------
    faces : ndarray of uint8, shape (N, 15, S, S) grey or (N, 15, S, S, 3) RGB
    face_found : ndarray of bool, shape (N, 15)
    mfcc : ndarray of float32, shape (N, 10, 156)
        :func:`preprocessing.audio_features.mfcc` of each window's audio.
    audio_present : ndarray of bool, shape (N,)
    labels : ndarray of int64, shape (N,)
        Indices into ``label_names``.
    speakers : ndarray of int64, shape (N,)
    label_names : tuple of str
    """

    faces: np.ndarray
    face_found: np.ndarray
    mfcc: np.ndarray
    audio_present: np.ndarray
    labels: np.ndarray
    speakers: np.ndarray
    label_names: tuple[str, ...]

    ARRAYS: ClassVar[dict[str, type | None]] = {"faces": None, "face_found": bool, "mfcc": np.float32, "audio_present": bool,
                                                "labels": np.int64, "speakers": np.int64}  # fmt: skip


@dataclass
class TrainConfig:
    seed: int = 0  # seeds numpy and torch: same seed, same weights
    epochs: int = 60  # most epochs; early stopping may end sooner
    patience: int = 10  # stop after this many epochs without a better validation accuracy
    batch_size: int = 16  # the paper trains with 8 windows per batch (x4 with its modality dropout)
    lr: float = 3e-3  # AdamW, cosine decay; the paper: SGD from 0.04 with step decay, too slow for CPU budgets
    weight_decay: float = 1e-4
    threads: int = 2  # torch CPU threads (results are reproducible for a fixed count)
    pretrain_audio: str | None = None  # a RAVDESS speech folder: pre-train the audio branch on it first
    pretrain_epochs: int = 15
    model: AVConfig = field(default_factory=AVConfig)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in vars(self).items() if k != "model"}, "model": self.model.to_dict()}


#: A narrow model that trains on small crops in seconds per epoch on one CPU thread.
SMALL = dict(face_widths=(16, 32, 64, 128), face_repeats=(1, 1, 1), face_dim=64, video_widths=(16, 16, 32, 32),
             audio_widths=(16, 32, 32, 32))  # fmt: skip


def _inputs(data: AVWindows) -> tuple[np.ndarray, ...]:
    """The model's inputs, in its forward's order: faces, MFCCs, face found, audio present."""
    return data.faces, data.mfcc, data.face_found, data.audio_present


def _given(face: bool, audio: bool) -> Batch:
    """A :data:`~training.loop.Batch` that hides the modalities not given."""

    def batch(arrays: list[np.ndarray], rng: np.random.Generator | None) -> tuple[torch.Tensor, ...]:
        faces, mfcc, found, present = as_tensors(arrays, rng)
        return faces, mfcc, found & face, present & audio

    return batch


def _logits(output: AVOutput) -> torch.Tensor:
    return output.logits


def predict(model: AVModel, data: AVWindows, *, face: bool = True, audio: bool = True) -> np.ndarray:
    """Softmax probabilities (N, n_classes), giving the model only the modalities asked for."""
    return predict_proba(model, _inputs(data), _given(face, audio), _logits, size=64)


def fit(train: AVWindows, val: AVWindows, cfg: TrainConfig, model: AVModel | None = None) -> tuple[AVModel, list[Epoch]]:
    """Train ``model`` (None: a new one); returns it with the weights of the best validation
    accuracy, and the history."""
    if model is None:
        torch.manual_seed(cfg.seed)
        model = AVModel(cfg.model)
    return fit_loop(model, (_inputs(train), train.labels), (_inputs(val), val.labels), FitConfig.of(cfg), logits=_logits)


class AudioBranch(nn.Module):
    """The audio branch of an AV model (its own modules, not copies) under a head of its own:
    training it on speech trains the AV model's audio convolutions in place."""

    def __init__(self, model: AVModel, n_classes: int) -> None:
        super().__init__()
        self.norm, self.stage1, self.stage2 = model.mfcc_norm, model.audio_stage1, model.audio_stage2
        self.head = nn.Linear(model.config.audio_widths[-1], n_classes)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCCs (B, 10, 156) -> logits (B, n_classes)."""
        return self.head(self.stage2(self.stage1(self.norm(mfcc))).mean(dim=-1))


def pretrain_audio(model: AVModel, speech: str | Path, cfg: TrainConfig) -> dict:
    """Pre-train ``model``'s audio branch on the 8 emotions of a RAVDESS speech folder.

    Three evenly spread 3.6 s windows per clip, MFCCs as in serving; the actors of the folder's
    training split train it, those of its validation split pick the epoch, and its test actors
    are left out, so that they stay unheard for any later test. Returns what the card records.
    """
    from training.ravdess import derive_split, load_audio, read_clips
    from training.speech import even_windows

    clips = read_clips(speech)
    split = derive_split(sorted({c.actor for c in clips}))
    used = [c for c in clips if split.subset(c.actor) in ("train", "val")]
    per_clip = 3
    features = mfcc(even_windows(load_audio(used), per_clip)).astype(np.float32)
    labels = np.repeat([c.label for c in used], per_clip)
    part = np.repeat([split.subset(c.actor) for c in used], per_clip)
    branch = AudioBranch(model, len(RAVDESS))
    opt = FitConfig(epochs=cfg.pretrain_epochs, patience=cfg.pretrain_epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed)
    train, val = part == "train", part == "val"
    _, history = fit_loop(branch, ((features[train],), labels[train]), ((features[val],), labels[val]), opt)
    best = best_epoch(history)
    log.info("audio branch pre-trained on %d speech windows: validation accuracy %.3f", len(labels), best.val_acc)
    return {
        "data": f"RAVDESS speech ({speech}): {len(used)} clips, 8 emotions",
        "actors": {"train": sorted(split.train), "val": sorted(split.val), "left out": sorted(split.test)},
        "windows": len(labels),
        "validation_accuracy": round(best.val_acc, 4),
        "epoch": best.epoch,
    }


def condition_report(model: AVModel, test: AVWindows) -> dict:
    """Accuracy, macro-F1, recall and confusion matrix per condition of :data:`CONDITIONS`."""
    out = {}
    for name, (face, audio) in CONDITIONS.items():
        pred = predict(model, test, face=face, audio=audio).argmax(1)
        out[name] = report(test.labels, pred, test.label_names)
    return out


def _recordings(data: str, classes: int, crop: CropSpec, cache: Path | None) -> tuple[AVWindows, str]:
    """Windows of a manifest CSV (labels: sorted) or of a RAVDESS folder (``classes`` emotions)."""
    from training.recordings import (  # imports this module
        load_windows,
        ravdess_recordings,
        read_manifest,
    )

    if data.endswith(".csv"):
        recordings = read_manifest(data)
        labels = tuple(sorted({r.label for r in recordings}))
    else:
        labels = EMOTIONS_8 if classes == 8 else EMOTIONS_5
        recordings = [r for r in ravdess_recordings(data) if r.label in labels]
    windows = load_windows(recordings, labels, crop=crop, cache_dir=cache)
    return windows, f"{len(recordings)} recordings of {data} ({len(windows)} windows)"


def _synthetic(classes: int, speakers: int, per_class: int, crop_size: int, grey: bool, seed: int) -> tuple[AVWindows, dict]:
    from training.synthetic_av import (  # imports this module: not at the top
        SyntheticSpec,
        make_dataset,
    )

    spec = SyntheticSpec(labels=EMOTIONS_8 if classes == 8 else EMOTIONS_5, crop=CropSpec(size=crop_size, grey=grey))
    return make_dataset(spec, range(speakers), per_class, seed=seed), spec.to_dict()


def train(
    data: AVWindows, out: str | Path, cfg: TrainConfig, *, weights: str, data_text: str, licence: str,
    n_val: int, n_test: int,
) -> ModelCard:  # fmt: skip
    """Train on ``data`` split by speaker; write ``out/av.pt`` and ``out/av.card.json``."""
    t_start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # the last n_test speaker ids test, the n_val before them validate
    split = ordered_split(data.speakers, n_val, n_test).indices(data.speakers)
    parts = {name: data.subset(idx) for name, idx in split.items()}
    log.info("windows: %s", {k: len(v) for k, v in parts.items()})
    torch.manual_seed(cfg.seed)
    model = AVModel(cfg.model)
    pretraining = pretrain_audio(model, cfg.pretrain_audio, cfg) if cfg.pretrain_audio else None
    model, epochs = fit(parts["train"], parts["val"], cfg, model)
    history = [e.to_dict() for e in epochs]
    kept = best_epoch(epochs)
    test = condition_report(model, parts["test"])
    for name, r in test.items():
        log.info("test %s: accuracy %.3f, macro-F1 %.3f", name, r["accuracy"], r["macro_f1"])
    log.info("audio-video confusion:\n%s", format_confusion(test["audio_video"]["confusion_matrix"], data.label_names))

    mc = cfg.model
    torch.save({"state_dict": model.state_dict(), "config": mc.to_dict(), "labels": list(data.label_names)}, out / "av.pt")
    window = WindowSpec()
    crop = mc.crop
    face_shape = [window.frames, crop.size, crop.size] + ([] if crop.grey else [3])
    speakers = {k: sorted(int(s) for s in np.unique(v.speakers)) for k, v in parts.items()}
    card = ModelCard(
        name="av",
        task="emotion of one 3.6 s window from 15 face crops and 10 MFCCs, either modality may be missing",
        labels=list(data.label_names),
        inputs={
            "FACES": {"dtype": "uint8", "shape": face_shape, "meaning": f"face crops, pixels 0..255 ({crop})"},
            "MFCC": {"dtype": "float32", "shape": [mc.n_mfcc, mc.mfcc_frames], "meaning": "preprocessing.audio_features.mfcc of the window"},
            "FACE_PRESENT": {"dtype": "bool", "shape": [window.frames], "meaning": "Window.face_found"},
            "AUDIO_PRESENT": {"dtype": "bool", "shape": [], "meaning": "the window has audio"},
        },  # fmt: skip
        preprocessing={
            "window": {"length_s": window.length_s, "frames": window.frames, "audio_rate": window.audio_rate},
            "crop": {"size": crop.size, "grey": crop.grey, "scale": crop.scale},
            "mfcc": MfccSpec(n_mfcc=mc.n_mfcc).to_dict(),
        },
        weights=weights,  # type: ignore[arg-type]
        source=(f"trained by training.av (seed {cfg.seed}): AVModel fusion={mc.fusion}, face encoder {mc.face_encoder}, "
                f"{count_parameters(model):,} parameters; Chumachenko et al. ICPR 2022, arXiv:2201.11095"),  # fmt: skip
        data=f"{data_text}; speaker-independent split {speakers}",
        licence=licence,
        metrics={
            "test": test,
            "chance_accuracy": round(1 / len(data.label_names), 4),
            "audio_pretraining": pretraining,
            "validation_accuracy": round(kept.val_acc, 4),
            "training": {"history": history, "best_epoch": kept.epoch, "epochs_run": len(history),
                         "windows": {k: len(v) for k, v in parts.items()}, "parameters": count_parameters(model),
                         "seconds": round(time.perf_counter() - t_start, 1), "threads": cfg.threads,
                         "torch": torch.__version__, "config": cfg.to_dict()},  # fmt: skip
        },
    )
    card.save(out / "av.card.json")
    for condition, figures in test.items():
        write_report(figures, out, f"av.{condition}")
    log.info("wrote %s and %s", out / "av.pt", out / "av.card.json")
    return card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emofuse train av", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="'synthetic', a manifest .csv (path, label, speaker), a RAVDESS folder or an .npz")
    p.add_argument("--out", required=True, help="folder for av.pt and av.card.json")
    d, m = TrainConfig(), AVConfig()
    p.add_argument("--fusion", choices=FUSIONS, default=m.fusion)
    p.add_argument("--face-encoder", choices=("efficientface", "mini_xception"), default=m.face_encoder)
    p.add_argument("--finetune-face-encoder", action="store_true", help="mini-Xception: train it too")
    p.add_argument("--size", choices=("paper", "small"), default="paper",
                   help="paper: EfficientFace and conv widths of the paper; small: a narrow model for CPU runs")  # fmt: skip
    p.add_argument("--modality-dropout", type=float, default=m.modality_dropout)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--val-speakers", type=int, default=3)
    p.add_argument("--test-speakers", type=int, default=3)
    p.add_argument("--pretrain-audio", metavar="RAVDESS_SPEECH", help="pre-train the audio branch on this speech folder first")
    p.add_argument("--pretrain-epochs", type=int, default=d.pretrain_epochs)
    p.add_argument("--cache", type=Path, help="window cache of recordings (default: ~/.cache/emofuse/windows)")
    g = p.add_argument_group("synthetic data")
    g.add_argument("--classes", type=int, choices=(8, 5), default=5, help="also for RAVDESS: all 8 emotions or the first 5")
    g.add_argument("--speakers", type=int, default=16)
    g.add_argument("--per-class", type=int, default=6, help="windows per class and speaker")
    g.add_argument("--crop-size", type=int, default=48, help="face crop side in pixels (a multiple of 16)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(a.threads)

    grey = a.face_encoder == "mini_xception"
    if a.data == "synthetic":
        data, spec = _synthetic(a.classes, a.speakers, a.per_class, 64 if grey else a.crop_size, grey, a.seed)
        weights, licence = "synthetic", "generated by training.synthetic_av; no third-party data"
        text = f"synthetic windows of training.synthetic_av {json.dumps(spec)}, seed {a.seed}"
    elif a.data.endswith(".npz"):
        data = AVWindows.load(a.data)
        weights, licence = "real", "that of the recordings in " + a.data
        text = f"windows of {a.data}"
    else:
        data, text = _recordings(a.data, a.classes, CropSpec(size=64 if grey else a.crop_size, grey=grey), a.cache)
        weights, licence = "real", f"that of the recordings in {a.data}"
    size = {} if a.size == "paper" else SMALL
    model = AVConfig(n_classes=len(data.label_names), fusion=a.fusion, face_encoder=a.face_encoder,
                     face_size=data.faces.shape[2], finetune_face_encoder=a.finetune_face_encoder,
                     modality_dropout=a.modality_dropout, **size)  # fmt: skip
    cfg = TrainConfig(seed=a.seed, epochs=a.epochs, patience=a.patience, batch_size=a.batch_size, lr=a.lr,
                      threads=a.threads, pretrain_audio=a.pretrain_audio, pretrain_epochs=a.pretrain_epochs,
                      model=model)  # fmt: skip
    card = train(data, a.out, cfg, weights=weights, data_text=text, licence=licence, n_val=a.val_speakers,
                 n_test=a.test_speakers)  # fmt: skip
    test = card.metrics["test"]
    print(json.dumps({name: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"]} for name, r in test.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
