"""Model cards: what a set of weights is, what it expects, and how far it can be trusted.

Every checkpoint and every exported artefact travels with its card. Serving reads the card to
label outputs and to mark models whose weights never saw real data as "untrained".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["ModelCard", "Weights"]

#: real: trained on real recordings; synthetic: only on generated data; none: random initialisation.
Weights = Literal["real", "synthetic", "none"]


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
        Measured figures, each with what it was measured on.
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

    def __post_init__(self) -> None:
        if self.weights not in ("real", "synthetic", "none"):
            raise ValueError(f"weights must be 'real', 'synthetic' or 'none', got {self.weights!r}.")

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
