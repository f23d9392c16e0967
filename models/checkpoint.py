"""Read a trained model's folder: its checkpoint ``NAME.pt`` and its card ``NAME.card.json``.

Every trainer writes both (``emofuse train KIND --out DIR``); nothing loads weights without the
card that says what they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .card import ModelCard

__all__ = ["read_checkpoint"]


def read_checkpoint(directory: str | Path, name: str, kind: str) -> tuple[dict[str, Any], ModelCard]:
    """The checkpoint dict of ``directory/NAME.pt`` (tensors on the CPU) and the card beside it.

    ``kind``: the ``emofuse train`` kind that writes it, for the error message.

    Raises
    ------
    FileNotFoundError
        If either file is missing.
    ValueError
        If the checkpoint and the card disagree on labels.
    """
    directory = Path(directory)
    for file in (f"{name}.pt", f"{name}.card.json"):
        if not (directory / file).is_file():
            raise FileNotFoundError(f"{directory / file} not found; give the folder `emofuse train {kind} --out {directory}` wrote.")
    checkpoint = torch.load(directory / f"{name}.pt", map_location="cpu", weights_only=True)
    card = ModelCard.load(directory / f"{name}.card.json")
    if "labels" in checkpoint and list(checkpoint["labels"]) != card.labels:
        raise ValueError(f"{directory}: {name}.pt and {name}.card.json disagree on labels.")
    return checkpoint, card
