"""Test-time views of a face crop: the face model judges each crop at a few zooms and mirrored,
and the answer is the mean of its probabilities over the views.

    crops (B, 64, 64) 0..255 -> 2 * len(scales) views -> network -> (B, 7) log mean probability

A zoom of ``s`` samples the crop's centre ``1/s`` of its side back to the full size (``s`` > 1
zooms in, < 1 out, the border repeated), as if the face detector's box had been that much smaller
or larger; the mirror is the same view flipped left to right. Serving's crop frames a face only
roughly as FER-2013 did (``benchmarks/face_crop_mapping.py``), and averaging over nearby framings
makes the answer depend less on where the box fell. The sampling grids are fixed, computed once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SERVED_SCALES", "TestTimeViews"]

#: The zooms the served face model judges each crop at, each also mirrored: 4 views, 4 times one
#: pass. Chosen on FER-2013 PublicTest among sets of one to three zooms from 0.85 to 1.2
#: (``benchmarks/face_views.py``); PrivateTest only reports it.
SERVED_SCALES = (0.95, 1.1)


class TestTimeViews(nn.Module):
    def __init__(self, network: nn.Module, scales: tuple[float, ...], size: int, mirror: bool = True) -> None:
        """``network``: (N, size, size) crops -> (N, classes) logits, judging one view each."""
        super().__init__()
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive zoom factors, got {scales}")
        self.network, self.scales, self.mirror, self.size = network, tuple(scales), mirror, size
        flips = (1.0, -1.0) if mirror else (1.0,)
        theta = torch.tensor([[[flip / s, 0.0, 0.0], [0.0, 1 / s, 0.0]] for s in scales for flip in flips])
        self.register_buffer("grids", F.affine_grid(theta, [len(theta), 1, size, size], align_corners=False), persistent=False)

    @property
    def n_views(self) -> int:
        return len(self.grids)

    def views(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, size, size) -> (V, B, size, size) float: every view of every crop, zoom by zoom,
        each followed by its mirror."""
        # The batch rides as channels, so that one grid_sample makes them all.
        x = crops.to(torch.float32).unsqueeze(0).expand(self.n_views, -1, -1, -1)
        return F.grid_sample(x, self.grids, mode="bilinear", padding_mode="border", align_corners=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """``crops``: (B, size, size) grey pixels 0..255 -> (B, classes), the log of the mean
        probability over the views (its softmax is that mean)."""
        probs = self.network(self.views(crops).reshape(-1, self.size, self.size)).softmax(dim=-1)  # (V * B, classes)
        return probs.reshape(self.n_views, -1, probs.shape[-1]).mean(dim=0).clamp(min=1e-30).log()
