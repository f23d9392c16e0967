"""Pool the per-frame logits of each window into one probability vector.

Inputs ``CROP_LOGITS`` (batch, frames, classes) and ``FACE_PRESENT`` (batch, frames): the softmax
of each frame with a face, averaged over those frames. Outputs ``EMOTION_PROBS`` (batch, classes),
all zero for a window without a face, and ``FACES_USED`` (batch, 1), the number of frames averaged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from ._common import softmax


def pool(logits: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean softmax over the frames with a face: (B, F, C), (B, F) -> (B, C), (B, 1)."""
    probs = softmax(logits)  # (B, F, C)
    used = present.sum(axis=1, keepdims=True)  # (B, 1)
    summed = (probs * present[..., None]).sum(axis=1)  # (B, C)
    return (summed / np.maximum(used, 1)).astype(np.float32), used.astype(np.int32)


class WindowPool:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "CROP_LOGITS").as_numpy()
            present = pb_utils.get_input_tensor_by_name(request, "FACE_PRESENT").as_numpy()
            if logits.shape[:2] != present.shape:
                message = f"CROP_LOGITS {logits.shape} and FACE_PRESENT {present.shape} disagree on frames."
                error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            probs, used = pool(logits, present)
            tensors = [pb_utils.Tensor("EMOTION_PROBS", probs), pb_utils.Tensor("FACES_USED", used)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
