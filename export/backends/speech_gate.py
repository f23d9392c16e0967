"""Turn the speech model's window logits into probabilities, for windows with a voice only.

Inputs ``SPEECH_LOGITS`` (batch, classes) and ``VOICE_PRESENT`` (batch, 1). Output
``EMOTION_PROBS`` (batch, classes): the softmax, all zero for a window without a voice (silence
says nothing about emotion, yet a classifier would still name one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from ._common import softmax


class SpeechGate:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "SPEECH_LOGITS").as_numpy()
            voice = pb_utils.get_input_tensor_by_name(request, "VOICE_PRESENT").as_numpy()
            probs = (softmax(logits) * voice).astype(np.float32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("EMOTION_PROBS", probs)]))
        return responses
