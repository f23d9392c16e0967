"""Timelines: the emotion of each window of a recording, and the verdict over all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["Timeline", "Verdict", "WindowResult"]

#: ok: the models judged the window; no_face, no_voice, no_face_or_voice: nothing the mode looks at
#: was there; untrained: the model's weights never saw real data, so its output is withheld.
Status = Literal["ok", "no_face", "no_voice", "no_face_or_voice", "untrained"]

_CAPTIONS = {"no_face": "no face", "no_voice": "no voice", "no_face_or_voice": "no face or voice", "untrained": "untrained model"}
_ALONE = {"face_expression": "face only", "speech_emotion": "voice only"}  # said when the other model had nothing to judge


@dataclass(frozen=True)
class WindowResult:
    """The answer for one window.

    Attributes
    ----------
    index : int
    start_s, end_s : float
        Span of the window in seconds.
    status : 'ok' | 'no_face' | 'no_voice' | 'no_face_or_voice' | 'untrained'
    probabilities : ndarray, shape (n_labels,) | None
        Present only when status is 'ok'.
    face_frames : int
        Frames of the window in which a face was found.
    frames : int
        Frames sampled and searched for a face (0 when the mode does not look at faces).
    voice : bool | None
        Whether the window holds a voice; None when the mode does not listen.
    weights : dict of str to float
        Weight of each model ('face_expression', 'speech_emotion') in the answer; 0 for one with nothing to judge.
    voiced_fraction : float | None
        Share of the window's 32 ms chunks that the voice-activity model heard as speech; None
        when the mode does not listen.
    """

    index: int
    start_s: float
    end_s: float
    status: Status
    probabilities: np.ndarray | None
    face_frames: int
    frames: int
    voice: bool | None = None
    weights: dict[str, float] = field(default_factory=dict)
    voiced_fraction: float | None = None

    @property
    def judged(self) -> bool:
        """Whether some model had a face or a voice to judge (trained or not)."""
        return any(self.weights.values())


@dataclass(frozen=True)
class Verdict:
    """The label the windows' probabilities, averaged, point to."""

    label: str
    probabilities: np.ndarray  # (n_labels,)
    windows: int  # windows averaged


def _probabilities(labels: tuple[str, ...], probs: np.ndarray) -> dict[str, float]:
    return {label: round(float(p), 4) for label, p in zip(labels, probs)}


@dataclass
class Timeline:
    """Window results of one recording from one model.

    Attributes
    ----------
    model : str
        The Triton model that answered.
    labels : tuple of str
    trained : bool
        False when the model's weights never saw real data: no label is ever shown.
    mode : str
        'face', 'audio' or 'av' (see ``serving.analysis.MODES``).
    windows : list of WindowResult
        In time order.
    cards : tuple of str
        The models that answered (the ensemble's steps), each with its card in the repository.
    """

    model: str
    labels: tuple[str, ...]
    trained: bool
    mode: str = "face"
    windows: list[WindowResult] = field(default_factory=list)
    cards: tuple[str, ...] = ()

    def label(self, window: WindowResult) -> str | None:
        """The top label of a judged window, else None."""
        if window.status != "ok":
            return None
        return self.labels[int(np.argmax(window.probabilities))]

    def caption(self, window: WindowResult) -> str:
        """What a person sees for a window: 'happy 82%', 'sad 64% (voice only)', 'no face',
        'untrained model'..."""
        if window.status != "ok":
            return _CAPTIONS[window.status]
        caption = f"{self.label(window)} {round(100 * float(window.probabilities.max()))}%"
        alone = [source for source, weight in window.weights.items() if weight == 1.0]
        if len(window.weights) > 1 and alone:
            caption += f" ({_ALONE[alone[0]]})"
        return caption

    def verdict(self) -> Verdict | None:
        """Average of the judged windows' probabilities; None if no window was judged."""
        judged = [w.probabilities for w in self.windows if w.status == "ok"]
        if not judged:
            return None
        mean = np.mean(judged, axis=0)
        return Verdict(self.labels[int(np.argmax(mean))], mean, len(judged))

    def to_dict(self) -> dict[str, Any]:
        verdict = self.verdict()
        return {
            "model": self.model,
            "mode": self.mode,
            "weights": "real" if self.trained else "untrained",
            "cards": list(self.cards),
            "labels": list(self.labels),
            "verdict": None
            if verdict is None
            else {
                "label": verdict.label,
                "probabilities": _probabilities(self.labels, verdict.probabilities),
                "windows": verdict.windows,
            },
            "windows": [
                {
                    "index": w.index,
                    "start_s": round(w.start_s, 3),
                    "end_s": round(w.end_s, 3),
                    "status": w.status,
                    "label": self.label(w),
                    "probabilities": None if w.probabilities is None else _probabilities(self.labels, w.probabilities),
                    "face_found": w.face_frames > 0 if w.frames else None,
                    "face_frames": w.face_frames,
                    "frames": w.frames,
                    "voice_found": w.voice,
                    "voiced_fraction": None if w.voiced_fraction is None else round(w.voiced_fraction, 3),
                    "models": w.weights,
                }
                for w in self.windows
            ],
        }
