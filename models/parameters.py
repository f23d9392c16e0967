"""How many parameters a model has: the figure every card and benchmark reports.

One count for every model, so that the cards of the speech CNN, EEGNet and the audio-video model
mean the same thing by "parameters".
"""

from __future__ import annotations

from torch import nn

__all__ = ["count_parameters"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``model``: all of them, or with ``trainable_only`` those that require a
    gradient (a frozen frame encoder is left out)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
