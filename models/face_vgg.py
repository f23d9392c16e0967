"""Facial expression of a grey face crop: a small VGG-style network trained on FER-2013 here.

It takes what the mini-Xception port takes (``FACE_CROPS``: grey 64x64 crops, pixels 0..255) so
either can be the face step of the Triton ensembles. FER-2013's images are 48x48; serving makes
64x64 crops of the BlazeFace box, and training makes the same 64x64 from each 48x48 image
(:func:`preprocessing.faces.whole_image_crop`), so the network sizes its input back to 48 itself:

    pixels (B, 64, 64) -> [-1, 1] -> bilinear to (B, 1, 48, 48)
    4 stages of two conv3x3 BN ReLU and a 2x2 max pool, 32, 64, 128, 256 channels:
        48 -> 24 -> 12 -> 6 -> 3
    head: flatten (256*3*3) -> dropout -> linear 256 -> ReLU -> dropout -> linear 7 (logits)

With ``flip_average`` the logits are the mean of the crop's and its mirror's, test-time flip
averaging built into the graph, so the served model does it too (twice the convolutions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .emotions import FER2013

__all__ = ["FaceVGG", "FaceVGGConfig"]


@dataclass(frozen=True)
class FaceVGGConfig:
    image_size: int = 64  # the crop it takes (preprocessing's CropSpec size)
    working_size: int = 48  # the size FER-2013's faces were cut at
    n_classes: int = len(FER2013)
    channels: tuple[int, ...] = (32, 64, 128, 256)
    hidden: int = 256
    dropout: float = 0.5
    flip_average: bool = True


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with batch norm and ReLU, then a 2x2 max pool: halves H and W."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )  # fmt: skip


class FaceVGG(nn.Module):
    def __init__(self, config: FaceVGGConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or FaceVGGConfig()
        widths = (1, *config.channels)
        self.stages = nn.Sequential(*(_stage(a, b) for a, b in zip(widths, widths[1:])))
        side = config.working_size // 2 ** len(config.channels)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(config.channels[-1] * side * side, config.hidden),
            nn.ReLU(inplace=True), nn.Dropout(config.dropout), nn.Linear(config.hidden, config.n_classes),
        )  # fmt: skip

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 48, 48) in [-1, 1] -> logits (B, n_classes)."""
        return self.head(self.stages(x))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels``: (B, 64, 64) uint8 or float, grey values 0..255 -> logits (B, 7) float32."""
        s = self.config.image_size
        if not torch.jit.is_tracing() and (pixels.dim() != 3 or tuple(pixels.shape[1:]) != (s, s)):
            raise ValueError(f"expected grey face crops of shape (batch, {s}, {s}), got {tuple(pixels.shape)}")
        x = (pixels.to(torch.float32) / 127.5 - 1.0).unsqueeze(1)  # (B, 1, 64, 64) in [-1, 1]
        w = self.config.working_size
        x = F.interpolate(x, size=(w, w), mode="bilinear", align_corners=False)  # (B, 1, 48, 48)
        if self.training or not self.config.flip_average:
            return self.features(x)
        both = self.features(torch.cat([x, x.flip(-1)]))  # the crops and their mirrors as one batch: (2B, 7)
        crops, mirrors = both.chunk(2)  # chunk, not len(x): the batch stays dynamic in ONNX
        return (crops + mirrors) / 2
