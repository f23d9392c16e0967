"""Exported models: ONNX and TorchScript files of one PyTorch module, checked, with their card.

    artefact = export_artefact(module, {"FACE_CROPS": crops}, ["CROP_LOGITS"], card, dynamic={"FACE_CROPS": (1,)})
    artefact.save("out/face_expression")    # model.onnx, model.pt, card.json, artefact.json
    artefact = Artefact.load("out/face_expression")

Both files are traced from the module in eval mode and compared with it on the probe inputs
before anything is written: the largest absolute difference of every float output must stay below
``atol`` and every bool or integer output must agree exactly; otherwise :class:`ParityError`. The
figures go into the card (``metrics["export"]``), so the card travelling with a repository says how
faithful its files are. Inputs and outputs are named after the Triton tensors that carry them, and
axis 0 is the batch everywhere, so the files serve unchanged in Triton's ONNX Runtime backend
(native runtime) and in the Python backend (:mod:`export.backends.graph`).

ONNX is traced with the TorchScript exporter (``dynamo=False``): the dynamo exporter needs
onnxscript, which this project does not install.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from models.card import ModelCard

from .repository import Tensor

__all__ = ["DEFAULT_ATOL", "OPSET", "Artefact", "ParityError", "export_artefact", "onnx_bytes", "write_atomically"]

log = logging.getLogger(__name__)

DEFAULT_ATOL = 1e-4  # largest |difference| accepted between PyTorch and an exported file, in output units
OPSET = 17
_TRITON_TYPES = {torch.uint8: "UINT8", torch.float32: "FP32", torch.bool: "BOOL", torch.int32: "INT32", torch.int64: "INT64"}


class ParityError(RuntimeError):
    """An exported file does not compute what its PyTorch module computes."""


@dataclass(frozen=True)
class Artefact:
    """One model as files: ONNX, TorchScript, and the card that says what they are.

    ``inputs``/``outputs``: the tensors in Triton's terms (dims without the batch axis, -1 where a
    length may vary). ``parity``: per format, the comparison with PyTorch that it passed.
    """

    card: ModelCard
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    onnx: bytes
    torchscript: bytes
    parity: dict[str, dict[str, Any]]
    plan: bytes | None = None  # a TensorRT engine of the ONNX graph, where one was built

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / "model.onnx", self.onnx)
        write_atomically(folder / "model.pt", self.torchscript)
        if self.plan is not None:
            write_atomically(folder / "model.plan", self.plan)
        write_atomically(folder / "artefact.json", json.dumps(self._io(), indent=2).encode() + b"\n")
        self.card.save(folder / "card.json")
        return folder

    def _io(self) -> dict[str, Any]:
        tensors = lambda ts: [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims)} for t in ts]
        return {"inputs": tensors(self.inputs), "outputs": tensors(self.outputs), "parity": self.parity}

    @classmethod
    def load(cls, folder: str | Path) -> Artefact:
        """Read a folder written by :meth:`save`; its card is required."""
        folder = Path(folder)
        if not (folder / "card.json").is_file():
            raise FileNotFoundError(f"{folder} has no card.json: an artefact without its card cannot be served; re-run `emofuse export`.")
        missing = [n for n in ("model.onnx", "model.pt", "artefact.json") if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}; re-run `emofuse export`.")
        io_ = json.loads((folder / "artefact.json").read_text())
        tensors = lambda ts: tuple(Tensor(t["name"], t["dtype"], tuple(t["dims"])) for t in ts)
        return cls(
            card=ModelCard.load(folder / "card.json"),
            inputs=tensors(io_["inputs"]),
            outputs=tensors(io_["outputs"]),
            onnx=(folder / "model.onnx").read_bytes(),
            torchscript=(folder / "model.pt").read_bytes(),
            parity=io_["parity"],
        )


def write_atomically(path: Path, data: bytes) -> None:
    """Write under a temporary name and rename, so that readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _as_tuple(outputs: Any) -> tuple[torch.Tensor, ...]:
    return (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)


def _tensor(name: str, value: torch.Tensor, dynamic: Sequence[int]) -> Tensor:
    if value.dtype not in _TRITON_TYPES:
        raise TypeError(f"{name}: dtype {value.dtype} has no Triton counterpart here; cast it to one of {list(_TRITON_TYPES)}.")
    dims = tuple(-1 if axis in dynamic else n for axis, n in enumerate(value.shape) if axis > 0)
    return Tensor(name, _TRITON_TYPES[value.dtype], dims)


def onnx_bytes(module: nn.Module, example: Mapping[str, torch.Tensor], outputs: Sequence[str], axes: dict[str, dict[int, str]]) -> bytes:
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore")  # the TorchScript exporter's deprecation and tracer notes
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            module, tuple(example.values()), str(path), dynamo=False, input_names=list(example), output_names=list(outputs),
            dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True,
        )  # fmt: skip
        _pin_output_dims(path, axes)
        onnx.checker.check_model(str(path), full_check=True)
        return path.read_bytes()


def _pin_output_dims(path: Path, axes: dict[str, dict[int, str]]) -> None:
    """Give the graph's outputs the lengths ONNX's shape inference finds on the axes that are not
    dynamic. The exporter declares an output axis it cannot size itself (one reshaped to a length
    computed in the module) as symbolic; Triton's ONNX Runtime backend would then see another
    shape than the config's."""
    model = onnx.load(str(path))
    unsized = [(output, axis) for output in model.graph.output for axis, dim in enumerate(output.type.tensor_type.shape.dim)
               if axis not in axes.get(output.name, {}) and dim.HasField("dim_param")]  # fmt: skip
    if not unsized:
        return
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for output in probe.graph.output:
        output.type.tensor_type.ClearField("shape")  # let inference size it afresh
    inferred = {o.name: o.type.tensor_type.shape.dim for o in onnx.shape_inference.infer_shapes(probe).graph.output}
    for output, axis in unsized:
        found = inferred.get(output.name)
        if found is not None and axis < len(found) and found[axis].HasField("dim_value"):
            output.type.tensor_type.shape.dim[axis].dim_value = found[axis].dim_value
    onnx.save(model, str(path))


def _torchscript_bytes(module: nn.Module, example: Mapping[str, torch.Tensor]) -> bytes:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # TorchScript is deprecated, yet torch still runs it
        traced = torch.jit.trace(module, tuple(example.values()), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _compare(name: str, want: Sequence[np.ndarray], got: Sequence[np.ndarray], names: Sequence[str], atol: float) -> dict[str, Any]:
    """How far ``got`` (an exported file's outputs) is from ``want`` (PyTorch's); raise if too far."""
    diffs = {}
    for out, w, g in zip(names, want, got, strict=True):
        if w.shape != g.shape:
            raise ParityError(f"{name}: output {out} has shape {g.shape}, PyTorch {w.shape}")
        if w.dtype.kind == "f":
            diffs[out] = float(np.abs(g.astype(np.float64) - w).max()) if w.size else 0.0
        elif not np.array_equal(w, g):
            raise ParityError(f"{name}: output {out} differs from PyTorch's on {int((w != g).sum())} values")
    first = want[0]
    agreement = float((first.argmax(-1) == got[0].argmax(-1)).mean()) if first.dtype.kind == "f" and first.size else 1.0
    largest = max(diffs.values(), default=0.0)
    if largest >= atol or agreement < 1.0:
        raise ParityError(f"{name} disagrees with PyTorch: largest difference {largest:.3g} (tolerance {atol}), top class agreement {agreement:.3f}")
    return {"max_abs_diff": largest, "argmax_agreement": agreement, "tolerance": atol}


def export_artefact(
    module: nn.Module,
    example: Mapping[str, torch.Tensor],
    outputs: Sequence[str],
    card: ModelCard,
    *,
    probes: Mapping[str, torch.Tensor] | None = None,
    probes_are: str = "the example inputs",
    dynamic: Mapping[str, Sequence[int]] | None = None,
    atol: float = DEFAULT_ATOL,
) -> Artefact:
    """Export ``module`` to ONNX and TorchScript, check both against it, and return the artefact.

    Parameters
    ----------
    module : nn.Module
        Positional tensor inputs in the order of ``example``; a tensor or a tuple of tensors out.
        Put in eval mode.
    example : {name: tensor}
        One small batch (two items or more) fixing every input's dtype and shape; names become the
        graph's (and Triton's) tensor names.
    outputs : names
        Names of the outputs, in order.
    probes : {name: tensor} | None
        The inputs the check runs on (real preprocessed windows where there are any), as one batch
        of another size than ``example``'s, so that the batch axis is shown to be dynamic.
    probes_are : str
        What the probes are, for the card.
    dynamic : {name: axes}
        Axes besides the batch (0) whose length may vary, per input and output name.
    atol : float
        Largest absolute difference accepted on float outputs.
    """
    module = module.eval()
    dynamic = dict(dynamic or {})
    axes = {name: {0: "batch", **{a: f"{name.lower()}_{a}" for a in dynamic.get(name, ())}} for name in (*example, *outputs)}
    graph = onnx_bytes(module, example, outputs, axes)
    script = _torchscript_bytes(module, example)
    probes = dict(probes or example)
    with torch.no_grad():
        want = [y.numpy() for y in _as_tuple(module(*probes.values()))]
        example_out = _as_tuple(module(*example.values()))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            loaded = torch.jit.load(io.BytesIO(script))
        scripted = [y.numpy() for y in _as_tuple(loaded(*probes.values()))]
    import onnxruntime as ort  # serving dependency; imported here so that training need not load it

    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    from_onnx = session.run(list(outputs), {k: v.numpy() for k, v in probes.items()})
    on = f"{probes_are}: {len(next(iter(probes.values())))} items"
    parity = {
        "onnx": {**_compare(f"{card.name} ONNX", want, from_onnx, outputs, atol), "on": on, "runtime": f"onnxruntime {ort.__version__} CPU"},
        "torchscript": {**_compare(f"{card.name} TorchScript", want, scripted, outputs, atol), "on": on, "runtime": f"torch {torch.__version__} CPU"},
    }  # fmt: skip
    inputs = tuple(_tensor(k, v, dynamic.get(k, ())) for k, v in example.items())
    outs = tuple(_tensor(k, v, dynamic.get(k, ())) for k, v in zip(outputs, example_out, strict=True))
    # The card records the bound passed, not the exact figures (those vary with the CPU and are in
    # artefact.json), so that a repository's text files are the same on every machine.
    checked = {"max_abs_diff_below": atol, "argmax_agreement": 1.0, "formats": sorted(parity), "on": on}
    card = replace(card, metrics={**card.metrics, "export": {"parity": checked, "opset": OPSET}})
    log.info("exported %s: ONNX %.3g, TorchScript %.3g largest difference", card.name, parity["onnx"]["max_abs_diff"], parity["torchscript"]["max_abs_diff"])
    return Artefact(card=card, inputs=inputs, outputs=outs, onnx=graph, torchscript=script, parity=parity)
