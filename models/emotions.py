"""Label sets of the emotion models, and the one they share when their answers are fused.

The face model speaks FER-2013's seven expressions, the speech model RAVDESS's eight emotions.
Late fusion compares them on seven shared labels, the emotions both sets name:

    neutral, happy, sad, angry, fearful, disgust, surprised

RAVDESS's *calm* has no counterpart in FER-2013; it is a neutral-valence, low-arousal state that
a face shows as neutral, so it counts as neutral (its probability is added to neutral's).
Plain data and a pure function: no torch, so serving code may import it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["FER2013", "RAVDESS", "SHARED", "SYNONYMS", "to_shared"]

FER2013 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # model output order
RAVDESS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
SHARED = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")

#: Names in other label sets -> the shared name they mean.
SYNONYMS = {"fear": "fearful", "surprise": "surprised", "calm": "neutral"}


def to_shared(labels: Sequence[str]) -> list[int]:
    """For each label of a model, the index of the shared label it counts towards.

    >>> to_shared(RAVDESS)
    [0, 0, 1, 2, 3, 4, 5, 6]

    Raises
    ------
    ValueError
        A label has no shared counterpart.
    """
    targets = []
    for label in labels:
        shared = SYNONYMS.get(label, label)
        if shared not in SHARED:
            raise ValueError(f"label {label!r} has no counterpart among the shared labels {SHARED}; add it to SYNONYMS.")
        targets.append(SHARED.index(shared))
    return targets
