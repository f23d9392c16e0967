"""
EEGNet: a compact convolutional network for EEG windows, from one window of standardised EEG
(channels x samples) to logits over the card's labels.

Channel count, window length, sampling rate and label count come from the config, which comes
from the model card; nothing here assumes a montage or a rate.

References:
1) Lawhern, Solon, Waytowich, Gordon, Hung & Lance (2018), EEGNet: a compact convolutional
neural network for EEG-based brain-computer interfaces. J. Neural Eng. 15 056013.
https://arxiv.org/abs/1611.08024
2) The authors' Keras code (EEGModels, arl-eegmodels): temporal convolution of half the rate,
depthwise spatial convolution, separable convolution of 16 samples at 128 Hz, pools 4 and 8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .card import ModelCard
from .checkpoint import read_checkpoint

__all__ = ["EEGNet", "EEGNetConfig", "load_eeg"]


@dataclass(frozen=True)
class EEGNetConfig:
    channels: int = 32  # EEG channels, in the card's order (DEAP's 32; SEED has 62)
    samples: int = 672  # samples per window: 5.25 s at 128 Hz
    n_classes: int = 5
    rate: float = 128.0  # Hz; sets the temporal kernels: half a second, and an eighth
    F1: int = 8  # temporal filters
    D: int = 2  # spatial filters per temporal filter
    F2: int = 16  # pointwise filters of the separable convolution (F1 * D in the paper)
    dropout: float = 0.25  # the paper: 0.25 across subjects, 0.5 within a subject

    def __post_init__(self) -> None:
        if self.samples < 32:
            raise ValueError(f"EEGNet pools the time axis by 32; {self.samples} samples are too few.")

    @property
    def kernel_length(self) -> int:
        """Temporal kernel of block 1: half a second (64 at 128 Hz)."""
        return max(2, round(self.rate / 2))

    @property
    def separable_length(self) -> int:
        """Temporal kernel of block 2: an eighth of a second after pooling by 4 (16 at 128 Hz)."""
        return max(2, round(self.rate / 8))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EEGNetConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _same(kernel: int) -> nn.ZeroPad2d:
    """Zero padding of the time axis that keeps its length ('same' for an even kernel too)."""
    return nn.ZeroPad2d(((kernel - 1) // 2, kernel // 2, 0, 0))


class EEGNet(nn.Module):
    """EEGNet-8,2: (B, channels, samples) standardised EEG -> (B, n_classes) logits.

    With the default config (32 channels, 672 samples, 5 classes) it has 3,301 parameters.
    Weight decay stands in for the paper's max-norm constraints, which need a hook in the loop.
    """

    def __init__(self, config: EEGNetConfig) -> None:
        super().__init__()
        self.config = c = config
        FD = c.F1 * c.D
        # block 1: temporal filters (frequency bands), then per-filter spatial filters (montage)
        self.temporal = nn.Sequential(_same(c.kernel_length), nn.Conv2d(1, c.F1, (1, c.kernel_length), bias=False),
                                      nn.BatchNorm2d(c.F1))  # fmt: skip
        self.spatial = nn.Sequential(nn.Conv2d(c.F1, FD, (c.channels, 1), groups=c.F1, bias=False), nn.BatchNorm2d(FD), nn.ELU(),
                                     nn.AvgPool2d((1, 4)), nn.Dropout(c.dropout))  # fmt: skip
        # block 2: separable convolution = depthwise temporal summary + pointwise mixing
        self.separable = nn.Sequential(_same(c.separable_length), nn.Conv2d(FD, FD, (1, c.separable_length), groups=FD, bias=False),
                                       nn.Conv2d(FD, c.F2, 1, bias=False), nn.BatchNorm2d(c.F2), nn.ELU(),
                                       nn.AvgPool2d((1, 8)), nn.Dropout(c.dropout))  # fmt: skip
        self.head = nn.Linear(c.F2 * (c.samples // 32), c.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if not torch.jit.is_tracing() and (x.ndim != 3 or x.shape[1:] != (c.channels, c.samples)):
            raise ValueError(f"EEGNet takes windows of shape (B, {c.channels}, {c.samples}); got {tuple(x.shape)}.")
        x = self.temporal(x.unsqueeze(1))  # (B, F1, C, S)
        x = self.spatial(x)  # (B, F1*D, 1, S/4)
        x = self.separable(x)  # (B, F2, 1, S/32)
        return self.head(x.flatten(1))  # (B, n_classes)


def load_eeg(directory: str | Path) -> tuple[EEGNet, ModelCard]:
    """The trained model of ``directory/eeg.pt`` in eval mode, with its card ``eeg.card.json``
    (whose ``preprocessing`` says how to make its inputs: :class:`preprocessing.eeg.EEGPreprocessing`)."""
    checkpoint, card = read_checkpoint(directory, "eeg", "eeg")
    model = EEGNet(EEGNetConfig.from_dict(checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), card
