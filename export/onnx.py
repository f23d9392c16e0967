"""One-tensor classifiers to an ONNX file, checked against the model they came from: a small
front to :mod:`export.artefact` for benchmarks and tests of a single network.

    path = export_onnx(model, torch.zeros(1, 64, 64, dtype=torch.uint8), "model.onnx",
                       input_name="pixels", output_name="logits")
    report = check_parity(model, path, crops)   # crops: (n, 64, 64) uint8
    assert report.max_abs_diff < 1e-4 and report.argmax_agreement == 1.0

The graph is traced as :func:`export.artefact.onnx_bytes` traces every served model. Axis 0 of the input and the output is dynamic
("batch"); every other axis is fixed by ``example_input``. The exported graph takes the input's
dtype as it is, so a model that casts inside (``pixels.to(torch.float32)``) exports a Cast node
and accepts uint8 directly. Exporting the same weights twice gives the same bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .artefact import OPSET, onnx_bytes, write_atomically

__all__ = ["ParityReport", "check_parity", "export_onnx"]

log = logging.getLogger(__name__)


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | Path,
    *,
    input_name: str,
    output_name: str,
) -> Path:
    """Trace ``model`` (put in eval mode) on ``example_input`` and write it to ``path`` as ONNX.

    Parameters
    ----------
    model : nn.Module
        One tensor in, one tensor out: (batch, *item_shape) -> (batch, *output_shape).
    example_input : torch.Tensor
        (batch, *item_shape), in the dtype the ONNX input must have (uint8 for raw pixels, say).
    path : str or Path
        Destination; written under a temporary name in the same folder, checked with
        ``onnx.checker`` (shapes inferred), then renamed, so readers never see half a file.
    input_name, output_name : str
        Names of the graph's input and output.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}}
    write_atomically(path, onnx_bytes(model.eval(), {input_name: example_input}, [output_name], axes))
    log.info("exported %s to %s (%d bytes, opset %d)", type(model).__name__, path, path.stat().st_size, OPSET)
    return path


@dataclass(frozen=True)
class ParityReport:
    """How closely an ONNX file reproduces its PyTorch model on some inputs.

    Attributes
    ----------
    n : int
        Number of inputs (batch items) compared.
    max_abs_diff : float
        Largest absolute difference between the two outputs over all items and classes
        (in the output's units: logits for a classifier).
    argmax_agreement : float
        Fraction (0..1) of items whose top class is the same in both.
    """

    n: int
    max_abs_diff: float
    argmax_agreement: float

    def ok(self, atol: float) -> bool:
        """True when the outputs differ by less than ``atol`` and every top class agrees."""
        return self.max_abs_diff < atol and self.argmax_agreement == 1.0


def check_parity(model: nn.Module, onnx_path: str | Path, inputs: np.ndarray | torch.Tensor) -> ParityReport:
    """Run ``inputs`` through ``model`` and through ``onnx_path`` in ONNX Runtime (CPU); compare.

    ``inputs``: (n, *item_shape) in the ONNX input's dtype, fed as one batch to both. Each output
    is (n, classes); the top class is taken over the last axis.
    """
    import onnxruntime as ort  # serving dependency; imported here so that training need not load it

    array = inputs.numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (onnx_input,) = session.get_inputs()
    got = session.run(None, {onnx_input.name: array})[0]
    model.eval()
    with torch.no_grad():
        want = model(torch.from_numpy(array)).numpy()
    if got.shape != want.shape:
        raise ValueError(f"ONNX output has shape {got.shape}, PyTorch {want.shape}: re-export {onnx_path}")
    diff = float(np.abs(got.astype(np.float64) - want).max()) if got.size else 0.0
    agreement = float((got.argmax(-1) == want.argmax(-1)).mean()) if len(got) else 1.0
    return ParityReport(n=len(array), max_abs_diff=diff, argmax_agreement=agreement)
