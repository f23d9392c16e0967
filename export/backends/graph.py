"""Run one exported graph for Triton's Python backend: ONNX Runtime on CPU, TorchScript on GPU.

The model's version folder holds ``model.onnx`` and ``model.pt``, the same module exported twice
(:mod:`export.artefact`). A ``KIND_CPU`` instance runs the ONNX file in ONNX Runtime; a
``KIND_GPU`` instance loads the TorchScript file with torch on its device and exchanges tensors
with Triton through DLPack, so GPU memory is never copied through the host by this code.

Dynamic batching hands over several requests at once: those whose inputs have the same shapes
(all of them, usually) are concatenated and run as one batch, and the outputs split back.
Config parameter ``intra_op_thread_count`` (the name Triton's ONNX Runtime backend reads too): ONNX
Runtime's threads per run (0: its choice, a spinning pool as wide as the machine).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


class Graph:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / args["model_version"]
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        self.dtypes = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["output"]}
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        if args["model_instance_kind"] == "GPU":
            import torch

            self.device = torch.device(f"cuda:{args['model_instance_device_id']}")
            self.module = torch.jit.load(str(folder / "model.pt"), map_location=self.device).eval()
            self.run = self._run_torch
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = int(params.get("intra_op_thread_count", "0"))
            self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
            self.run = self._run_onnx

    def _run_onnx(self, requests: list[Any]) -> list[list[Any]]:
        arrays = [[pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs] for r in requests]
        batch = {n: np.concatenate([a[i] for a in arrays]) for i, n in enumerate(self.inputs)}
        outputs = self.session.run(self.outputs, batch)
        sizes = np.cumsum([len(a[0]) for a in arrays])[:-1]
        split = [np.split(y, sizes) for y in outputs]
        return [
            [pb_utils.Tensor(n, np.ascontiguousarray(split[j][i].astype(self.dtypes[n], copy=False))) for j, n in enumerate(self.outputs)]
            for i in range(len(requests))
        ]

    def _run_torch(self, requests: list[Any]) -> list[list[Any]]:
        import torch
        from torch.utils.dlpack import from_dlpack, to_dlpack

        def tensor(request: Any, name: str) -> torch.Tensor:
            return from_dlpack(pb_utils.get_input_tensor_by_name(request, name).to_dlpack()).to(self.device)

        batch = [torch.cat([tensor(r, n) for r in requests]) for n in self.inputs]
        with torch.inference_mode():
            outputs = self.module(*batch)
        outputs = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
        sizes = [len(pb_utils.get_input_tensor_by_name(r, self.inputs[0]).as_numpy()) for r in requests]
        split = [y.split(sizes) for y in outputs]
        return [
            [pb_utils.Tensor.from_dlpack(n, to_dlpack(split[j][i].contiguous())) for j, n in enumerate(self.outputs)]
            for i in range(len(requests))
        ]

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        for group in _same_shapes(requests, self.inputs):
            try:
                outputs = self.run([requests[i] for i in group])
            except Exception as err:  # noqa: BLE001 - the runtimes' errors share no base class
                error = pb_utils.TritonError(f"{type(err).__name__}: {err}", pb_utils.TritonError.INVALID_ARG)
                for i in group:
                    responses[i] = pb_utils.InferenceResponse(error=error)
                continue
            for i, tensors in zip(group, outputs, strict=True):
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def finalize(self) -> None:
        self.session = self.module = None


def _same_shapes(requests: list[Any], inputs: list[str]) -> list[list[int]]:
    """Indices of the requests grouped by the shapes of their inputs past the batch axis."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        key = tuple(pb_utils.get_input_tensor_by_name(r, n).as_numpy().shape[1:] for n in inputs)  # inputs arrive in host memory
        groups.setdefault(key, []).append(i)
    return list(groups.values())
