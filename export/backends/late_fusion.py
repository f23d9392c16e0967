"""Late fusion of the face and speech models for one window, WAVER-style, on shared labels.

Inputs: ``FACE_PROBS`` (batch, face classes) and ``FACES_USED`` (batch, 1) from the face window
pool; ``SPEECH_LOGITS`` (batch, speech classes) and ``VOICE_PRESENT`` (batch, 1). Config
parameters: ``face_targets`` and ``speech_targets``, for each class of a model the index of the
shared label it counts towards (comma-separated); ``face_accuracy`` and ``speech_accuracy``, each
model's validation accuracy, its weight.

Outputs: ``EMOTION_PROBS`` (batch, shared labels), the weighted mean of the two models' shared
probabilities over the models that had something to judge; ``MODEL_WEIGHTS`` (batch, 2), the
weights the face and the speech model got (summing to 1, or both 0 with neither face nor voice).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from ._common import parameters, softmax


def projection(targets: list[int], shared: int) -> np.ndarray:
    """(classes, shared) 0/1 matrix adding each class's probability to its shared label."""
    matrix = np.zeros((len(targets), shared), np.float32)
    matrix[np.arange(len(targets)), targets] = 1.0
    return matrix


def fuse(
    face: np.ndarray, face_used: np.ndarray, speech: np.ndarray, voice: np.ndarray, accuracy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of shared-label probabilities.

    face, speech: (B, shared) probabilities; face_used, voice: (B, 1) whether each model judged
    the window; accuracy: (2,) the face and speech weights. Returns probabilities (B, shared)
    and the normalised weights (B, 2).
    """
    weights = np.concatenate([face_used > 0, voice.astype(bool)], axis=1) * accuracy  # (B, 2)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    return (weights[:, :1] * face + weights[:, 1:] * speech).astype(np.float32), weights.astype(np.float32)


class LateFusion:
    def initialize(self, args: dict[str, str]) -> None:
        params = parameters(args)
        face, speech = ([int(i) for i in params[f"{m}_targets"].split(",")] for m in ("face", "speech"))
        shared = max(face + speech) + 1
        self.face, self.speech = projection(face, shared), projection(speech, shared)
        self.accuracy = np.array([float(params["face_accuracy"]), float(params["speech_accuracy"])], np.float32)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            get = lambda name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()  # noqa: E731
            probs, weights = fuse(
                get("FACE_PROBS") @ self.face,
                get("FACES_USED"),
                softmax(get("SPEECH_LOGITS")) @ self.speech,
                get("VOICE_PRESENT"),
                self.accuracy,
            )
            tensors = [pb_utils.Tensor("EMOTION_PROBS", probs), pb_utils.Tensor("MODEL_WEIGHTS", weights)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
