"""Test reports on disk: the figures as JSON and the confusion matrix as a PNG picture.

Every trainer ends with :func:`write_report`, so a run leaves ``NAME.test.json`` and
``NAME.confusion.png`` beside its checkpoint and card.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

__all__ = ["confusion_image", "write_report"]

_CELL = 56  # pixels per matrix cell
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def confusion_image(cm: np.ndarray | list, labels: Sequence[str], title: str = "") -> np.ndarray:
    """The confusion matrix drawn as a BGR uint8 image: rows true, columns predicted, each cell
    shaded by its share of its row (recall), with the count written in it."""
    cm = np.asarray(cm)
    n = len(labels)
    left, top = 110, 60 + 90  # room for row labels; for the title and column labels
    image = np.full((top + n * _CELL + 40, left + n * _CELL + 20, 3), 255, np.uint8)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    for i in range(n):
        for j in range(n):
            x, y = left + j * _CELL, top + i * _CELL
            shade = int(255 - 200 * share[i, j])
            cv2.rectangle(image, (x, y), (x + _CELL - 1, y + _CELL - 1), (255, shade, shade), -1)
            text = str(int(cm[i, j]))
            (w, h), _ = cv2.getTextSize(text, _FONT, 0.5, 1)
            colour = (255, 255, 255) if share[i, j] > 0.6 else (0, 0, 0)
            cv2.putText(image, text, (x + (_CELL - w) // 2, y + (_CELL + h) // 2), _FONT, 0.5, colour, 1, cv2.LINE_AA)
        cv2.putText(image, labels[i][:12], (6, top + i * _CELL + _CELL // 2 + 5), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for j, label in enumerate(labels):  # column labels, written upwards
        patch = np.full((_CELL, 90, 3), 255, np.uint8)
        cv2.putText(patch, label[:12], (2, _CELL // 2 + 5), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        image[top - 90 : top, left + j * _CELL : left + (j + 1) * _CELL] = cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE)
    cv2.putText(image, title or "true (rows) x predicted (columns)", (6, 24), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def write_report(report: dict, out: str | Path, name: str) -> dict[str, Path]:
    """Write ``report`` (from :func:`training.metrics.report`) as ``out/NAME.test.json`` and its
    confusion matrix as ``out/NAME.confusion.png``; returns the two paths."""
    out = Path(out)
    paths = {"json": out / f"{name}.test.json", "png": out / f"{name}.confusion.png"}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    title = f"{name}: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}, n={report['n']}"
    cv2.imwrite(str(paths["png"]), confusion_image(report["confusion_matrix"], report["labels"], title))
    return paths
