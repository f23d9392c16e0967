"""Classification metrics in plain numpy: confusion matrix, accuracy, recall, macro-F1.

Conventions follow scikit-learn: rows of the confusion matrix are true classes, columns
predicted classes; a class with no true and no predicted examples has F1 = 0 and still counts in
the macro average (``zero_division=0``), so a model cannot gain by never predicting a class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["confusion_matrix", "accuracy", "per_class_recall", "per_class_f1", "macro_f1", "report", "format_confusion"]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs.

    Parameters
    ----------
    y_true, y_pred : array of int, shape (n,)
        Class indices in ``[0, n_classes)``.
    n_classes : int

    Returns
    -------
    cm : ndarray of int64, shape (n_classes, n_classes)
        ``cm[i, j]`` = number of examples of class i predicted as j.
    """
    y_true, y_pred = np.asarray(y_true, np.int64).ravel(), np.asarray(y_pred, np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels, y_pred {y_pred.size}.")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} holds labels outside [0, {n_classes}).")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions; NaN for no examples."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    return float(np.mean(y_true == y_pred)) if y_true.size else float("nan")


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall of each class (diagonal / row sum), shape (n_classes,); 0 for a class with no examples."""
    return _safe_div(np.diag(cm), cm.sum(axis=1))


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    """F1 of each class, ``2 tp / (2 tp + fp + fn)``, shape (n_classes,); 0 where undefined."""
    tp = np.diag(cm).astype(np.float64)
    return _safe_div(2 * tp, cm.sum(axis=0) + cm.sum(axis=1))


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 scores."""
    return float(per_class_f1(cm).mean())


def report(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class recall and the confusion matrix, JSON-ready.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``macro_f1``, ``recall`` ({label: recall}), ``confusion_matrix``
        (list of rows: true classes, columns predicted, in ``labels`` order) and ``labels``.
    """
    cm = confusion_matrix(y_true, y_pred, len(labels))
    return {
        "n": int(cm.sum()),
        "accuracy": round(accuracy(y_true, y_pred), 4),
        "macro_f1": round(macro_f1(cm), 4),
        "recall": {name: round(float(r), 4) for name, r in zip(labels, per_class_recall(cm))},
        "labels": list(labels),
        "confusion_matrix": cm.tolist(),
    }


def per_group(y_true: np.ndarray, y_pred: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """Accuracy within each group (an actor, a sex...), by group name in sorted order."""
    y_true, y_pred, groups = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    return {name: round(accuracy(y_true[groups == name], y_pred[groups == name]), 4) for name in sorted(set(groups.tolist()))}


def format_confusion(cm: np.ndarray | list, labels: Sequence[str]) -> str:
    """The confusion matrix as a text table (rows true, columns predicted)."""
    cm = np.asarray(cm)
    short = [name[:5] for name in labels]
    width = max(5, len(str(cm.max())) if cm.size else 1)
    lines = ["true\\pred " + " ".join(f"{s:>{width}}" for s in short)]
    for name, row in zip(short, cm):
        lines.append(f"{name:>9} " + " ".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)
