"""Silero VAD, the voice-activity model emofuse serves, ported from the ``silero-vad`` wheel.

Silero VAD (v5 and later; Silero Team, MIT licence, https://github.com/snakers4/silero-vad) judges
32 ms of 16 kHz audio at a time: each 512-sample chunk, with the last 64 samples of the chunk
before it as context, goes through a learnt STFT and four convolutions, then one LSTM cell whose
state runs from chunk to chunk, and a sigmoid gives the chunk's speech probability. The wheel
ships it as an ONNX graph that takes one chunk and the state and returns the next state, so a
client loops over chunks in Python.

:class:`SileroVAD` computes the same thing for whole windows in one graph: the chunks are cut
and given their context by tensor operations, the convolutions run on every chunk at once (as
matrix products), and the chunk-to-chunk recurrence is one ``nn.LSTM`` over the chunk axis (an
ONNX ``LSTM`` node, which ONNX Runtime and TensorRT run natively). Its weights are read from the wheel's
``silero_vad.onnx`` at ``emofuse repo build`` time (its 16 kHz branch), never committed, and
:func:`reference_probabilities` runs that very file chunk by chunk, as the wheel's own
``OnnxWrapper`` does, to check the port against.
"""

from __future__ import annotations

from importlib import metadata, resources
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

__all__ = ["CHUNK", "CONTEXT", "RATE", "SILERO_VERSION", "SileroVAD", "chunks", "installed_version", "load_silero", "reference_probabilities",
           "wheel_model"]

RATE = 16_000  #: Hz, the only rate the port serves (the wheel's model also has an 8 kHz branch)
CHUNK = 512  #: samples per judged chunk at 16 kHz: 32 ms
CONTEXT = 64  #: samples of the previous chunk put before each chunk
SILERO_VERSION = "6.2.3"  # the wheel deploy/setup.sh installs
_BRANCH = "If_0_then_branch__Inline_0__"  # the constants of the sr == 16000 branch of silero_vad.onnx
_N_FFT, _HOP, _HIDDEN = 256, 128, 128


def wheel_model() -> Path:
    """The ONNX file the installed ``silero-vad`` wheel ships, ``silero_vad/data/silero_vad.onnx``."""
    try:
        path = Path(str(resources.files("silero_vad.data").joinpath("silero_vad.onnx")))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"The silero-vad wheel is not installed: run `.venv/bin/pip install --no-deps silero-vad=={SILERO_VERSION}` "
            "(deploy/setup.sh does), then `emofuse repo build` again."
        )
    return path


def installed_version() -> str:
    """The version of the installed ``silero-vad`` wheel."""
    return metadata.version("silero-vad")


def chunks(samples: int) -> int:
    """Chunks :class:`SileroVAD` judges in ``samples`` samples: the last one is padded with zeros."""
    return (samples + CHUNK - 1) // CHUNK  # positive operands: ONNX's integer Div truncates, it does not floor


class SileroVAD(nn.Module):
    """Silero VAD over whole windows: AUDIO (B, S) float32 at 16 kHz -> (B, N) speech probability
    of each 32 ms chunk, N = ceil(S / 512); the LSTM state starts at zero in every window.

    ``weights``: the 16 kHz branch's tensors by their names in ``silero_vad.onnx``
    (:func:`load_silero` reads them). The wheel's convolutions (the learnt STFT, kernel 256 and
    stride 128; four of kernel 3 over 4, 2 and 1 frames) are computed as the matrix products
    they are, frames and channels last: ONNX Runtime runs its convolutions slowly on inputs this
    short, and the products several times faster (``benchmarks/voice_activity.py`` times the step).
    """

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        w = {name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in weights.items()}
        self.register_buffer("basis", w["stft.forward_basis_buffer"][:, 0, :].T.contiguous())  # (256, 2 * 129): cosines, sines
        self.kernels, self.biases = nn.ParameterList(), nn.ParameterList()
        self.strides = (1, 2, 2, 1)
        for i in range(4):
            kernel = w[f"encoder.{i}.reparam_conv.weight"]  # (out, in, 3)
            self.kernels.append(nn.Parameter(kernel.permute(2, 1, 0).flatten(0, 1).contiguous()))  # (3 * in, out): tap-major
            self.biases.append(nn.Parameter(w[f"encoder.{i}.reparam_conv.bias"]))
        self.rnn = nn.LSTM(_HIDDEN, _HIDDEN, batch_first=True)  # the wheel's LSTMCell, run over the chunk axis
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(self.rnn, f"{name}_l0").data = w[f"decoder.rnn.{name}"]
        self.head = nn.Linear(_HIDDEN, 1)
        self.head.weight.data, self.head.bias.data = w["decoder.decoder.2.weight"][:, :, 0], w["decoder.decoder.2.bias"]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # The window length is a constant of an exported graph (its config fixes it), so the
        # graph's output has a known number of chunks; only the batch axis B stays dynamic.
        S = int(audio.shape[1])
        N = chunks(S)
        x = nn.functional.pad(audio, (0, N * CHUNK - S)).reshape(-1, N, CHUNK)  # (B, N, 512)
        context = torch.cat((torch.zeros_like(x[:, :1, -CONTEXT:]), x[:, :-1, -CONTEXT:]), dim=1)  # (B, N, 64)
        x = torch.cat((context, x), dim=2).reshape(-1, 1, CONTEXT + CHUNK)  # (B*N, 1, 576)
        x = nn.functional.pad(x, (0, CONTEXT), mode="reflect")[:, 0]  # (B*N, 640)
        frames = (x.shape[1] - _N_FFT) // _HOP + 1  # 4
        x = torch.stack([x[:, i * _HOP : i * _HOP + _N_FFT] for i in range(frames)], dim=1) @ self.basis  # (B*N, 4, 258)
        half = self.basis.shape[1] // 2
        x = torch.sqrt(x[..., :half] ** 2 + x[..., half:] ** 2)  # (B*N, 4, 129): magnitudes
        for kernel, bias, stride in zip(self.kernels, self.biases, self.strides, strict=True):
            x = torch.relu(_conv3(x, stride) @ kernel + bias)  # (B*N, 2, 64) ... (B*N, 1, 128)
        h, _ = self.rnn(x.reshape(-1, N, _HIDDEN))  # (B, N, 128)
        return torch.sigmoid(self.head(torch.relu(h))).reshape(-1, N)  # (B, N)


def _conv3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """The columns of a kernel-3, padding-1 convolution: x (M, L, C) -> (M, L', 3 * C), tap-major."""
    out = (x.shape[1] - 1) // stride + 1
    padded = nn.functional.pad(x, (0, 0, 1, 1))  # (M, L + 2, C)
    return torch.cat([padded[:, k : k + stride * (out - 1) + 1 : stride] for k in range(3)], dim=-1)


def _weights(path: Path) -> dict[str, np.ndarray]:
    graph = onnx.load(str(path)).graph
    (branch,) = (a.g for node in graph.node if node.op_type == "If" for a in node.attribute if a.name == "then_branch")
    weights = {}
    for node in branch.node:
        name = node.output[0].removeprefix(_BRANCH)
        if node.op_type == "Constant" and (name.startswith(("stft.", "encoder.", "decoder."))):
            weights[name] = numpy_helper.to_array(node.attribute[0].t)
    return weights


def load_silero(path: Path | None = None) -> SileroVAD:
    """The port with the weights of ``path`` (default: the installed wheel's ``silero_vad.onnx``)."""
    path = path or wheel_model()
    weights = _weights(path)
    if weights["stft.forward_basis_buffer"].shape != (2 * (_N_FFT // 2 + 1), 1, _N_FFT):
        raise ValueError(f"{path} is not the 16 kHz Silero VAD v5+ graph this port reads (STFT basis {weights['stft.forward_basis_buffer'].shape}).")
    return SileroVAD(weights).eval()


def reference_probabilities(audio: np.ndarray, path: Path | None = None) -> np.ndarray:
    """The wheel's ONNX file run as its ``OnnxWrapper`` runs it: chunk by chunk, the state and the
    64 samples of context carried in Python. ``audio`` (B, S) float32 at 16 kHz -> (B, N)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path or wheel_model()), options, providers=["CPUExecutionProvider"])
    audio = np.asarray(audio, dtype=np.float32)
    B, S = audio.shape
    N = chunks(S)
    x = np.zeros((B, N * CHUNK), np.float32)
    x[:, :S] = audio
    state, context = np.zeros((2, B, _HIDDEN), np.float32), np.zeros((B, CONTEXT), np.float32)
    out = np.zeros((B, N), np.float32)
    for n in range(N):
        chunk = np.concatenate((context, x[:, n * CHUNK : (n + 1) * CHUNK]), axis=1)
        probability, state = session.run(None, {"input": chunk, "state": state, "sr": np.array(RATE, np.int64)})
        out[:, n], context = probability[:, 0], chunk[:, -CONTEXT:]
    return out
