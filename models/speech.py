"""
Speech emotion recognition from one 3.6 s window of audio: a compact CNN over the log-mel
spectrogram, and the baseline it has to beat, an MLP over MFCC statistics.

Both take the feature matrix that :mod:`preprocessing.audio_features` computes for a window and
return logits over the RAVDESS emotions in their order (models.emotions.RAVDESS).

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
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.card import ModelCard
from models.checkpoint import read_checkpoint
from models.emotions import RAVDESS
from models.ensemble import MeanProbability
from preprocessing.audio_features import N_FRAMES, LogMelSpec
from preprocessing.windows import WindowSpec

__all__ = [
    "SPEECH_WEIGHTS",
    "SpeechCNNConfig",
    "SpeechCNN",
    "SpeechEnsemble",
    "MfccMLPConfig",
    "MfccMLP",
    "build",
    "speech_card",
    "load_speech",
]

#: Where the shipped checkpoint and card live.
SPEECH_WEIGHTS = Path(__file__).resolve().parent / "weights" / "speech"


@dataclass
class SpeechCNNConfig:
    n_mels: int = 64  # input rows: log-mel bands (preprocessing.audio_features.LogMelSpec)
    n_classes: int = 8  # RAVDESS emotions, models.emotions.RAVDESS order
    widths: tuple[int, ...] = (16, 32, 64, 128)  # conv block channels, each block halves F and T; 296k parameters
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
        if not torch.jit.is_tracing() and (x.ndim != 3 or x.shape[1] != self.config.n_mels or x.shape[2] < 16):
            raise ValueError(
                f"SpeechCNN takes log-mel windows of shape (B, {self.config.n_mels}, T >= 16), "
                f"e.g. (B, {self.config.n_mels}, {N_FRAMES}); got {tuple(x.shape)}."
            )
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
    n_classes: int = 8  # RAVDESS emotions, models.emotions.RAVDESS order
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


def speech_card(model: nn.Module, spec: LogMelSpec, *, source: str, data: str, licence: str,
                metrics: dict[str, Any]) -> ModelCard:  # fmt: skip
    """The card of trained speech CNN weights: labels, the ``LOG_MEL`` input and how it is made."""
    window = WindowSpec()
    return ModelCard(
        name="speech",
        task=f"{len(RAVDESS)}-class emotion of speech in one {window.length_s} s audio window (log-mel CNN)",
        labels=list(RAVDESS),
        inputs={
            "LOG_MEL": {
                "dtype": "FP32",
                "shape": [spec.n_mels, N_FRAMES],
                "meaning": (
                    f"preprocessing.audio_features.log_mel(window.audio, LogMelSpec(**preprocessing['log_mel'])) "
                    f"of one mono {window.length_s} s window ({window.samples} samples at {spec.sr} Hz): "
                    f"mel power in dB below the window's loudest cell, clipped at -{spec.top_db:g} dB"
                ),
            }
        },
        preprocessing={"window": asdict(window), "log_mel": spec.to_dict()},
        weights="real",
        source=f"SpeechCNN {model.config.to_dict()}; {source}",
        data=data,
        licence=licence,
        metrics=metrics,
    )


class SpeechEnsemble(MeanProbability):
    """Speech models trained alike (seeds, folds), answering together: (B, 64, 156) log-mel ->
    (B, 8), the log of the members' mean softmax (:class:`models.ensemble.MeanProbability`)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__(members)
        self.config = members[0].config


def load_speech(directory: str | Path = SPEECH_WEIGHTS) -> tuple[nn.Module, ModelCard, LogMelSpec]:
    """The trained speech model, its card and its log-mel settings, from ``speech.pt`` and ``speech.card.json``.

    Returns
    -------
    model : SpeechCNN | SpeechEnsemble
        In eval mode; takes ``log_mel(window.audio, spec)`` batched, (B, 64, 156) -> logits (B, 8).
        A checkpoint of several members (seeds) gives their :class:`SpeechEnsemble`.
    card : ModelCard
    spec : LogMelSpec
        The settings the model was trained with; serving must compute its input with them.

    Raises
    ------
    FileNotFoundError
        If either file is missing.
    ValueError
        If the checkpoint and the card disagree on labels or preprocessing.
    """
    ckpt, card = read_checkpoint(directory, "speech", "audio")
    spec = LogMelSpec(**ckpt["log_mel"])
    if card.preprocessing.get("log_mel") != spec.to_dict():
        raise ValueError(f"{directory}: speech.pt and speech.card.json disagree on the log-mel settings.")
    members = []
    for state in ckpt["members"]:
        members.append(build(ckpt["kind"], ckpt["config"]))
        members[-1].load_state_dict(state)
    model = members[0] if len(members) == 1 else SpeechEnsemble(members)
    return model.eval(), card, spec
