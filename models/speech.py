"""
Speech emotion recognition from one 3.6 s window of audio: a compact CNN over the log-mel
spectrogram, and the baseline it has to beat, an MLP over MFCC statistics.

Both take the feature matrix that :mod:`preprocessing.audio_features` computes for a window and
return logits over the RAVDESS emotions (training.ravdess.EMOTIONS_8).

References:
1) Livingstone & Russo (2018), the RAVDESS corpus:
https://doi.org/10.1371/journal.pone.0196391
2) The log-mel CNN recipe (small 3x3 conv blocks, pooling over frequency then time), as in the
VGGish-like baselines of audio tagging, e.g. Kong et al. (2020), PANNs:
https://arxiv.org/abs/1912.10211
3) SpecAugment masks and mixup used in training: Park et al. (2019), https://arxiv.org/abs/1904.08779;
Zhang et al. (2018), https://arxiv.org/abs/1710.09412
4) MFCC-statistics baselines for RAVDESS and the actor-independent split: Chumachenko, Iosifidis
& Gabbouj (2022), https://arxiv.org/abs/2201.11095
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SpeechCNNConfig", "SpeechCNN", "MfccMLPConfig", "MfccMLP", "build", "count_parameters"]


@dataclass
class SpeechCNNConfig:
    n_mels: int = 64  # input rows: log-mel bands (preprocessing.audio_features.LogMelSpec)
    n_classes: int = 8  # RAVDESS emotions, training.ravdess.EMOTIONS_8 order
    widths: tuple[int, ...] = (24, 48, 96, 192)  # channels of the conv blocks; each halves F and T
    dropout: float = 0.3  # before the classifier
    # the time axis may have any length >= 16 (3.6 s windows have 156 frames); it is pooled away

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths)}


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and ReLU, then 2x2 average pooling."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, 2)


class SpeechCNN(nn.Module):
    """Log-mel CNN: (B, n_mels, T) dB below the window's peak -> (B, n_classes) logits."""

    def __init__(self, config: SpeechCNNConfig) -> None:
        super().__init__()
        self.config = config
        self.norm = nn.BatchNorm1d(config.n_mels)  # per-band standardisation of the dB values
        widths = (1, *config.widths)
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * config.widths[-1], config.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, n_mels, T), e.g. (B, 64, 156)
        x = self.norm(x).unsqueeze(1)  # (B, 1, n_mels, T)
        for block in self.blocks:
            x = block(x)  # (B, C_k, n_mels / 2^k, T / 2^k): (B, 192, 4, 9) after four blocks
        x = x.mean(dim=2)  # (B, C, T'): average over frequency
        x = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)  # (B, 2C): mean and max over time
        return self.head(self.drop(x))  # (B, n_classes)


@dataclass
class MfccMLPConfig:
    n_mfcc: int = 40  # input rows: MFCCs per frame (preprocessing.audio_features.mfcc)
    n_classes: int = 8  # RAVDESS emotions, training.ravdess.EMOTIONS_8 order
    hidden: int = 256  # width of the two hidden layers
    dropout: float = 0.3  # after each hidden layer

    def to_dict(self) -> dict:
        return asdict(self)


class MfccMLP(nn.Module):
    """Baseline: mean and standard deviation of each MFCC over time -> MLP -> logits."""

    def __init__(self, config: MfccMLPConfig) -> None:
        super().__init__()
        self.config = config
        n = 2 * config.n_mfcc
        self.net = nn.Sequential(
            nn.BatchNorm1d(n),  # standardise the statistics (c0 is in the hundreds, c39 near 1)
            nn.Linear(n, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, n_mfcc, T), e.g. (B, 40, 156)
        stats = torch.cat([x.mean(dim=2), x.std(dim=2)], dim=1)  # (B, 2 n_mfcc)
        return self.net(stats)  # (B, n_classes)


def build(kind: str, config: dict) -> nn.Module:
    """A model from its kind ('cnn' or 'mlp') and its config as a dict (as checkpoints store it)."""
    if kind == "cnn":
        return SpeechCNN(SpeechCNNConfig(**{**config, "widths": tuple(config.get("widths", SpeechCNNConfig.widths))}))
    if kind == "mlp":
        return MfccMLP(MfccMLPConfig(**config))
    raise ValueError(f"unknown speech model kind {kind!r}; expected 'cnn' or 'mlp'.")


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
