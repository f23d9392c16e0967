"""Which test-time views of a face crop help the face model, and what each set costs.

The fer port judges every FER-2013 PublicTest and PrivateTest image (as serving crops it) at
zooms from 0.85 to 1.2, each as it is and mirrored (:class:`models.face_views.TestTimeViews`);
sets of one to three zooms, each with its mirror, are scored by the mean of their probabilities.
Prints the one-view and flip-averaged figures, then the best sets by PublicTest (where the set
is chosen) with PrivateTest (where it is only reported) and the cost, in passes of the network,
beside the served set (:data:`models.face_views.SERVED_SCALES`).

With ``--member DIR`` (a network ``emofuse train fer2013`` wrote) the same is done for it, and
then for the two together: the mean of the port's probabilities over its views and the member's
over its own, for every pair of sets (one zoom, mirrored or not, or two), the cost in passes of
each network.

    python benchmarks/face_views.py [--data ../shared/data/fer2013] [--best 4] [--member DIR]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from models.face_expression import load_face_checkpoint, load_fer_mini_xception
from models.face_views import SERVED_SCALES, TestTimeViews
from training.fer2013 import USAGES, read_fer2013, set_flip_average
from training.loop import predict_proba

ROOT = Path(__file__).resolve().parents[1]
ZOOMS = (0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2)

Views = tuple[float, ...]  # zooms, each judged as it is and mirrored
Probabilities = dict[tuple[str, float, bool], np.ndarray]  # (usage, zoom, mirrored) -> (N, 7)


def view_probabilities(network: torch.nn.Module, usages: dict) -> Probabilities:
    """``network`` (one view per pass) on every test image at every zoom, as it is and mirrored."""
    probs = {}
    for zoom in ZOOMS:
        view = TestTimeViews(network, (zoom,), 64, mirror=False).eval()
        for usage in USAGES[1:]:
            crops = usages[usage].crops
            probs[usage, zoom, False] = predict_proba(view, (crops,))
            probs[usage, zoom, True] = predict_proba(view, (np.ascontiguousarray(crops[:, :, ::-1]),))
    return probs


def mean_over(probs: Probabilities, usage: str, zooms: Views, mirrored: tuple[bool, ...] = (False, True)) -> np.ndarray:
    return np.mean([probs[usage, z, m] for z in zooms for m in mirrored], axis=0)


def accuracy(labels: dict[str, np.ndarray], judge) -> dict[str, float]:
    """``judge(usage)`` -> (N, 7) probabilities; its accuracy on each usage."""
    return {u: float(np.mean(judge(u).argmax(1) == y)) for u, y in labels.items()}


def best_sets(probs: Probabilities, labels: dict, sizes: tuple[int, ...], best: int) -> list[tuple[Views, dict[str, float]]]:
    """The ``best`` zoom sets of each size by PublicTest, and the served set wherever it ranks."""
    rows = []
    for size in sizes:
        sets = [(zooms, accuracy(labels, lambda u, z=zooms: mean_over(probs, u, z))) for zooms in itertools.combinations(ZOOMS, size)]
        sets.sort(key=lambda s: -s[1]["PublicTest"])
        rows += sets[:best] + [(z, acc) for z, acc in sets[best:] if z == SERVED_SCALES]
    return rows


def _print(rows: list[tuple[str, str, dict[str, float]]]) -> None:
    print(f"{'views':<52}{'passes':>8}{'PublicTest':>12}{'PrivateTest':>13}")
    for name, passes, acc in rows:
        print(f"{name:<52}{passes:>8}{acc['PublicTest']:>11.1%}{acc['PrivateTest']:>12.1%}")


def _single_rows(name: str, probs: Probabilities, labels: dict, best: int) -> list[tuple[str, str, dict[str, float]]]:
    rows = [(f"{name}, one view", "1", accuracy(labels, lambda u: mean_over(probs, u, (1.0,), (False,)))),
            (f"{name}, flip-averaged", "2", accuracy(labels, lambda u: mean_over(probs, u, (1.0,))))]  # fmt: skip
    for zooms, acc in best_sets(probs, labels, (1, 2, 3), best):
        served = " (served)" if name == "port" and zooms == SERVED_SCALES else ""
        rows.append((f"{name}, zooms {', '.join(map(str, zooms))}{served}", str(2 * len(zooms)), acc))
    return rows


def _pair_rows(port: Probabilities, member: Probabilities, labels: dict, best: int) -> list[tuple[str, str, dict[str, float]]]:
    """The port and the member together, each over its own views, for the pairs of sets of one
    zoom (mirrored or not) or two (each mirrored): the ``best`` by PublicTest for each number of passes."""
    sets = [((z,), m) for z in ZOOMS for m in (False, True)] + [(zooms, True) for zooms in itertools.combinations(ZOOMS, 2)]
    by_passes: dict[tuple[int, int], list] = {}
    for a, b in itertools.product(sets, sets):
        acc = accuracy(labels, lambda u, a=a, b=b: (_mean_of(port, u, a) + _mean_of(member, u, b)) / 2)
        by_passes.setdefault((_passes(a), _passes(b)), []).append((a, b, acc))
    rows = []
    for (passes_a, passes_b), pairs in sorted(by_passes.items(), key=lambda item: (sum(item[0]), item[0])):
        pairs.sort(key=lambda p: -p[2]["PublicTest"])
        for a, b, acc in pairs[:best]:
            rows.append((f"port {_named(a)} + member {_named(b)}", f"{passes_a}+{passes_b}", acc))
    return rows


def _mean_of(probs: Probabilities, usage: str, views: tuple[Views, bool]) -> np.ndarray:
    zooms, mirrored = views
    return mean_over(probs, usage, zooms, (False, True) if mirrored else (False,))


def _passes(views: tuple[Views, bool]) -> int:
    return len(views[0]) * (2 if views[1] else 1)


def _named(views: tuple[Views, bool]) -> str:
    return ", ".join(map(str, views[0])) + ("" if views[1] else " unmirrored")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fer2013")
    p.add_argument("--best", type=int, default=4, help="sets shown per size")
    p.add_argument("--member", type=Path, help="a network emofuse train fer2013 wrote, judged beside the port")
    a = p.parse_args()
    torch.set_num_threads(2)
    usages = read_fer2013(a.data)
    labels = {u: usages[u].labels for u in USAGES[1:]}
    port = view_probabilities(load_fer_mini_xception(), usages)
    rows = _single_rows("port", port, labels, a.best)
    if a.member is not None:
        network, card = load_face_checkpoint(a.member)
        member = view_probabilities(set_flip_average(network, False), usages)
        rows += _single_rows("member", member, labels, a.best) + _pair_rows(port, member, labels, a.best)
        print(f"member: {card.source}")
    _print(rows)
    print(f"\n(n = {len(labels['PublicTest'])} PublicTest, {len(labels['PrivateTest'])} PrivateTest images; cost grows with the passes)")


if __name__ == "__main__":
    main()
