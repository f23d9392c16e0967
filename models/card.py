"""Model cards: what a set of weights is, what it expects, and how far it can be trusted.

Every checkpoint and every exported artefact travels with its card. Serving reads the card to
label outputs and to mark models whose weights never saw real data as "untrained".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["INTENDED_USE", "KNOWN_LIMITS", "NOT_FOR", "ModelCard", "Weights", "known_limits"]

#: real: trained on real recordings; synthetic: only on generated data; none: random initialisation.
Weights = Literal["real", "synthetic", "none"]

INTENDED_USE = (
    "Research and review of recordings whose people agreed to it: which emotion a face, a voice or an EEG "
    "recording expresses, window by window, for a person to look at beside the recording."
)
NOT_FOR = (
    "Decisions about a person from these outputs alone: employment, credit, insurance, housing, health "
    "(diagnosis or treatment), guilt, lying or danger (policing, borders, courts, exams), or watching people "
    "who did not agree to it."
)
#: What is known to limit a model, by the data set its card names in ``data`` (first match wins
#: for each set; a card may name several).
KNOWN_LIMITS: dict[str, tuple[str, ...]] = {
    "FER-2013": (
        "FER-2013's faces were gathered by web image search: mostly frontal, posed or staged expressions, "
        "grey 48x48 crops; about 10 % of its labels are disputed (FER+ relabelling).",
        "FER-2013 records no age, sex or skin tone of its faces, so how the model fares across them is not known; "
        "web photos over-represent young adults and lighter skin.",
        "Profile views, occlusion (masks, hands, glasses), poor light and motion blur were rare in training.",
        "Disgust is rare in FER-2013 (436 of 28,709 training faces): it is recognised least often.",
    ),
    "RAVDESS": (
        "RAVDESS holds acted emotions: 24 professional actors (12 female, 12 male) speaking two neutral "
        "English sentences with a North American accent; spontaneous emotion, other languages and accents, "
        "children and older people are not in it.",
        "Studio recordings: noise, reverberation, telephone audio and overlapping speakers were only simulated, if at all.",
    ),
    "synthetic": (
        "Trained on generated data only: it has never been measured on a real person.",
    ),
}


def known_limits(data: str, weights: str) -> list[str]:
    """The known limits of a model trained on ``data`` (its card's description) with ``weights``."""
    limits = [] if weights == "real" else list(KNOWN_LIMITS["synthetic"])
    for name, texts in KNOWN_LIMITS.items():
        if name != "synthetic" and name.lower() in data.lower():
            limits += texts
    return limits


@dataclass
class ModelCard:
    """Description of one model's weights.

    Attributes
    ----------
    name : str
        Model name, also its name in the Triton repository.
    task : str
        One line: what it recognises from what.
    labels : list of str
        Class names in output order.
    inputs : dict
        Input name -> {"dtype", "shape", "meaning"}; shapes without the batch axis.
    preprocessing : dict
        Settings of ``preprocessing`` that made its inputs (window, crop, audio rate...).
    weights : 'real' | 'synthetic' | 'none'
        Only 'real' weights may be shown as emotions; the others are served as "untrained".
    source, data, licence : str
        Where the weights come from, what data trained them, and under which terms.
    metrics : dict
        Measured figures, each with what it was measured on; ``metrics["groups"]`` holds figures
        per group where the data names groups (per actor, per sex), per class in each test report.
    intended_use, not_for : str
        What the model is for, and what it must not be used for.
    limits : list of str
        Known limits: the data's coverage (acted emotion, language, age, skin tone...) and conditions.
    """

    name: str
    task: str
    labels: list[str]
    inputs: dict[str, dict[str, Any]]
    preprocessing: dict[str, Any]
    weights: Weights
    source: str
    data: str
    licence: str
    metrics: dict[str, Any] = field(default_factory=dict)
    intended_use: str = INTENDED_USE
    not_for: str = NOT_FOR
    limits: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.weights not in ("real", "synthetic", "none"):
            raise ValueError(f"weights must be 'real', 'synthetic' or 'none', got {self.weights!r}.")
        if not self.limits:  # cards written before limits existed, and trainers that add none of their own
            self.limits = known_limits(self.data, self.weights)

    @property
    def trained(self) -> bool:
        """True only for weights learnt from real data."""
        return self.weights == "real"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        data = json.loads(Path(path).read_text())
        return cls(**data)
