"""Several classifiers trained alike answering as one: the mean of their probabilities.

    (B, ...) -> (B, classes): the log of the members' mean softmax, so that its softmax is that
    mean (an average of probabilities, which a plain mean of logits is not).

The speech model's fold CNNs and the face model's fine-tuned mini-Xceptions are served this way;
each member keeps its own settings (a face member may average a crop with its mirror, another not).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MeanProbability"]


class MeanProbability(nn.Module):
    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([member(x).softmax(dim=-1) for member in self.members]).mean(dim=0)
        return probs.clamp(min=1e-30).log()
