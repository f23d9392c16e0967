"""Which test-time views of a face crop help the face model, and what each set costs.

The fer port judges every FER-2013 PublicTest and PrivateTest image (as serving crops it) at
zooms from 0.85 to 1.2, each as it is and mirrored (:class:`models.face_views.TestTimeViews`);
sets of one to three zooms, each with its mirror, are scored by the mean of their probabilities.
Prints the one-view and flip-averaged figures, then the best sets by PublicTest (where the set
is chosen) with PrivateTest (where it is only reported) and the cost, in passes of the network,
beside the served set (:data:`models.face_views.SERVED_SCALES`).

    python benchmarks/face_views.py [--data ../shared/data/fer2013] [--best 4]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from models.face_expression import load_fer_mini_xception
from models.face_views import SERVED_SCALES, TestTimeViews
from training.fer2013 import USAGES, read_fer2013
from training.loop import predict_proba

ROOT = Path(__file__).resolve().parents[1]
ZOOMS = (0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2)


def view_probabilities(data: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """{(usage, zoom, mirrored): (N, 7) probabilities} and {usage: (N,) labels}."""
    usages = read_fer2013(data)
    port = load_fer_mini_xception()
    probs = {}
    for zoom in ZOOMS:
        view = TestTimeViews(port, (zoom,), 64, mirror=False).eval()
        for usage in USAGES[1:]:
            crops = usages[usage].crops
            probs[usage, zoom, False] = predict_proba(view, (crops,))
            probs[usage, zoom, True] = predict_proba(view, (np.ascontiguousarray(crops[:, :, ::-1]),))
    return probs, {u: usages[u].labels for u in USAGES[1:]}


def accuracy(probs: dict, labels: dict[str, np.ndarray], views: list[tuple[float, bool]]) -> dict[str, float]:
    return {u: float(np.mean(np.mean([probs[u, z, m] for z, m in views], axis=0).argmax(1) == y)) for u, y in labels.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fer2013")
    p.add_argument("--best", type=int, default=4, help="sets shown per size")
    a = p.parse_args()
    torch.set_num_threads(2)
    probs, labels = view_probabilities(a.data)
    rows = [("one view", 1, accuracy(probs, labels, [(1.0, False)])), ("flip-averaged", 2, accuracy(probs, labels, [(1.0, False), (1.0, True)]))]
    for size in (1, 2, 3):
        sets = [(zooms, accuracy(probs, labels, [(z, m) for z in zooms for m in (False, True)])) for zooms in itertools.combinations(ZOOMS, size)]
        sets.sort(key=lambda s: -s[1]["PublicTest"])
        rows += [(f"zooms {', '.join(map(str, zooms))}" + (" (served)" if zooms == SERVED_SCALES else ""), 2 * size, acc) for zooms, acc in sets[: a.best]]
        rows += [(f"zooms {', '.join(map(str, z))} (served)", 2 * size, acc) for z, acc in sets[a.best :] if z == SERVED_SCALES]
    print(f"{'views':<34}{'passes':>7}{'PublicTest':>12}{'PrivateTest':>13}")
    for name, passes, acc in rows:
        print(f"{name:<34}{passes:>7}{acc['PublicTest']:>11.1%}{acc['PrivateTest']:>12.1%}")
    print(f"\n(n = {len(labels['PublicTest'])} PublicTest, {len(labels['PrivateTest'])} PrivateTest images; cost grows with the passes)")


if __name__ == "__main__":
    main()
