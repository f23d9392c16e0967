"""Helpers shared by the backend models: configuration parameters, output types, softmax."""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils


def parameters(args: dict[str, str]) -> dict[str, str]:
    """The model's ``parameters { key: ... value: { string_value: ... } }`` from its config."""
    config = json.loads(args["model_config"])
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def output_dtypes(args: dict[str, str]) -> dict[str, np.dtype]:
    """Numpy dtype of every output, as the config states it."""
    config = json.loads(args["model_config"])
    return {out["name"]: pb_utils.triton_string_to_numpy(out["data_type"]) for out in config["output"]}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed stably."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
