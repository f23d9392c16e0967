"""Run an ONNX classifier with ONNX Runtime on CPU, for every item of every request at once.

Config parameters: ``onnx_file`` (in the version folder) and ``intra_op_threads`` (0: ONNX
Runtime's choice). The single input may carry extra leading axes (a window's 15 face crops, say):
they are flattened into one ONNX Runtime batch and restored on the output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from ._common import output_dtypes, parameters


class OnnxClassifier:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = parameters(args)
        path = Path(args["model_repository"]) / args["model_version"] / params["onnx_file"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (onnx_input,) = self.session.get_inputs()
        self.onnx_input, self.item_shape = onnx_input.name, tuple(onnx_input.shape[1:])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.output_dtype = output_dtypes(args)[self.output_name]

    def execute(self, requests: list[Any]) -> list[Any]:
        # Dynamic batching hands over several requests: one ONNX Runtime run serves them all.
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        leads = [a.shape[: a.ndim - len(self.item_shape)] for a in arrays]
        flat = np.concatenate([a.reshape(-1, *self.item_shape) for a in arrays])
        try:
            logits = self.session.run(None, {self.onnx_input: flat})[0] if len(flat) else flat[:0]
        except Exception as err:  # noqa: BLE001 - ONNX Runtime's errors carry no common base
            error = pb_utils.TritonError(f"ONNX Runtime failed: {err}", pb_utils.TritonError.INTERNAL)
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, offset = [], 0
        for lead in leads:
            n = int(np.prod(lead))
            out = logits[offset : offset + n].reshape(*lead, -1).astype(self.output_dtype)
            offset += n
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, out)]))
        return responses

    def finalize(self) -> None:
        self.session = None
