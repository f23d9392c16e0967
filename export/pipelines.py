"""emofuse's served models, described for :func:`export.repository.build_repository`.

Three ensembles answer for one 3.6 s window each (a request carries a batch of windows):

============== ======================================= =========================================
ensemble       inputs per window                       outputs per window
============== ======================================= =========================================
emotion_face   FACE_CROPS uint8 (frames, 64, 64),      EMOTION_PROBS (7, FER-2013 labels),
               FACE_PRESENT bool (frames,)             FACES_USED (1,)
emotion_speech LOG_MEL fp32 (64, 156),                 EMOTION_PROBS (8, RAVDESS labels)
               VOICE_PRESENT bool (1,)
emotion_av     all four of the above                   EMOTION_PROBS (7, shared labels),
                                                       MODEL_WEIGHTS (2: face, speech), FACES_USED
============== ======================================= =========================================

Probabilities are all zero for a window whose model had nothing to judge (no face, no voice).
Every config carries the card's ``labels``, ``weights`` ("real", "synthetic", "none") and ``model``
as parameters, so a client can label outputs, and withhold untrained ones, from the config alone;
those taking ``LOG_MEL`` also carry ``log_mel``, the settings to compute it with
(``name=value;...``, :class:`preprocessing.audio_features.LogMelSpec`).
"""

from __future__ import annotations

from models.card import ModelCard
from models.emotions import to_shared

from .repository import Ensemble, PythonModel, Step, Tensor

__all__ = ["av_models", "face_models", "speech_models"]

VOICE_PRESENT = Tensor("VOICE_PRESENT", "BOOL", (1,))
FACES_USED = Tensor("FACES_USED", "INT32", (1,))


def _card_parameters(card: ModelCard) -> tuple[tuple[str, str], ...]:
    """What a client needs to label outputs honestly and to make inputs as the model was trained
    on them, readable from the config over gRPC: labels, weights, name, log-mel settings."""
    params = (("labels", ",".join(card.labels)), ("weights", card.weights), ("model", card.name))
    if "log_mel" in card.preprocessing:
        settings = ";".join(f"{k}={v}" for k, v in sorted(card.preprocessing["log_mel"].items()))
        params += (("log_mel", settings),)
    return params


def _onnx_model(name: str, doc: str, inputs: Tensor, outputs: Tensor, card: ModelCard, onnx: bytes) -> PythonModel:
    return PythonModel(
        name=name,
        doc=doc,
        implementation="onnx_classifier:OnnxClassifier",
        inputs=(inputs,),
        outputs=(outputs,),
        parameters=(("onnx_file", "model.onnx"), ("intra_op_threads", "0")) + _card_parameters(card),
        card=card,
        files=(("model.onnx", onnx),),
    )


def _face_crops(card: ModelCard) -> tuple[Tensor, Tensor]:
    size = card.inputs["FACE_CROPS"]["shape"][-1]
    return Tensor("FACE_CROPS", "UINT8", (-1, size, size)), Tensor("FACE_PRESENT", "BOOL", (-1,))


def _log_mel(card: ModelCard) -> Tensor:
    return Tensor("LOG_MEL", "FP32", tuple(card.inputs["LOG_MEL"]["shape"]))


def _face_steps(probs: str) -> tuple[Step, Step]:
    """The face model on every crop, then the window pool; its probabilities go to ``probs``."""
    return (
        Step("face_expression", (("FACE_CROPS", "FACE_CROPS"),), (("CROP_LOGITS", "crop_logits"),)),
        Step(
            "face_window_pool",
            (("CROP_LOGITS", "crop_logits"), ("FACE_PRESENT", "FACE_PRESENT")),
            (("EMOTION_PROBS", probs), ("FACES_USED", "FACES_USED")),
        ),
    )


SPEECH_STEP = Step("speech_emotion", (("LOG_MEL", "LOG_MEL"),), (("SPEECH_LOGITS", "speech_logits"),))


def face_models(onnx: bytes, card: ModelCard) -> list[PythonModel | Ensemble]:
    """The face pipeline: crops of each window's frames -> that window's probabilities.

    Parameters
    ----------
    onnx : bytes
        The exported mini-Xception: input ``pixels`` uint8 (n, 64, 64), output ``logits`` (n, 7).
    card : ModelCard
        Its card; labels and weights travel into the configs.
    """
    classes = len(card.labels)
    crops, present = _face_crops(card)
    probs = Tensor("EMOTION_PROBS", "FP32", (classes,), labels=True)
    return [
        _onnx_model(
            "face_expression",
            "Facial expression of grey 64x64 face crops: mini-Xception (FER-2013) in ONNX Runtime.",
            crops,
            Tensor("CROP_LOGITS", "FP32", (-1, classes), labels=True),
            card,
            onnx,
        ),
        PythonModel(
            name="face_window_pool",
            doc="Average the softmax of a window's frames that show a face.",
            implementation="window_pool:WindowPool",
            inputs=(Tensor("CROP_LOGITS", "FP32", (-1, classes)), present),
            outputs=(probs, FACES_USED),
            max_queue_delay_us=0,  # cheap: batching would only add latency
            card=card,
        ),
        Ensemble(
            name="emotion_face",
            inputs=(crops, present),
            outputs=(probs, FACES_USED),
            steps=_face_steps("EMOTION_PROBS"),
            parameters=_card_parameters(card),
            card=card,
        ),
    ]


def speech_models(onnx: bytes, card: ModelCard) -> list[PythonModel | Ensemble]:
    """The speech pipeline: each window's log-mel spectrogram -> its probabilities.

    Parameters
    ----------
    onnx : bytes
        The exported speech CNN: input ``log_mel`` float32 (n, 64, 156), output ``logits`` (n, 8).
    card : ModelCard
        Its card, with the ``LOG_MEL`` input.
    """
    classes = len(card.labels)
    log_mel, probs = _log_mel(card), Tensor("EMOTION_PROBS", "FP32", (classes,), labels=True)
    logits = Tensor("SPEECH_LOGITS", "FP32", (classes,), labels=True)
    return [
        _onnx_model(
            "speech_emotion",
            "Emotion in the voice of a 3.6 s window: speech CNN (RAVDESS) in ONNX Runtime.",
            log_mel,
            logits,
            card,
            onnx,
        ),
        PythonModel(
            name="speech_gate",
            doc="Softmax of the speech logits of windows with a voice; zeros for the others.",
            implementation="speech_gate:SpeechGate",
            inputs=(Tensor("SPEECH_LOGITS", "FP32", (classes,)), VOICE_PRESENT),
            outputs=(probs,),
            max_queue_delay_us=0,
            card=card,
        ),
        Ensemble(
            name="emotion_speech",
            inputs=(log_mel, VOICE_PRESENT),
            outputs=(probs,),
            steps=(
                SPEECH_STEP,
                Step(
                    "speech_gate",
                    (("SPEECH_LOGITS", "speech_logits"), ("VOICE_PRESENT", "VOICE_PRESENT")),
                    (("EMOTION_PROBS", "EMOTION_PROBS"),),
                ),
            ),
            parameters=_card_parameters(card),
            card=card,
        ),
    ]


def av_models(face: ModelCard, speech: ModelCard, fusion: ModelCard) -> list[PythonModel | Ensemble]:
    """Late fusion of the face and speech pipelines, window by window, on the shared labels.

    Needs the models of :func:`face_models` and :func:`speech_models` in the same repository.
    Each model weighs its validation accuracy (``metrics["validation_accuracy"]`` of its card);
    a model without a face or a voice to judge in a window weighs nothing there.
    """
    crops, present = _face_crops(face)
    shared = len(fusion.labels)
    face_probs = Tensor("FACE_PROBS", "FP32", (len(face.labels),))
    probs = Tensor("EMOTION_PROBS", "FP32", (shared,), labels=True)
    weights = Tensor("MODEL_WEIGHTS", "FP32", (2,))
    return [
        PythonModel(
            name="av_late_fusion",
            doc="Weighted mean of the face and speech probabilities of a window, on shared labels.",
            implementation="late_fusion:LateFusion",
            inputs=(face_probs, FACES_USED, Tensor("SPEECH_LOGITS", "FP32", (len(speech.labels),)), VOICE_PRESENT),
            outputs=(probs, weights),
            max_queue_delay_us=0,
            parameters=(
                ("face_targets", ",".join(map(str, to_shared(face.labels)))),
                ("speech_targets", ",".join(map(str, to_shared(speech.labels)))),
                ("face_accuracy", str(face.metrics["validation_accuracy"])),
                ("speech_accuracy", str(speech.metrics["validation_accuracy"])),
            ),
            card=fusion,
        ),
        Ensemble(
            name="emotion_av",
            inputs=(crops, present, _log_mel(speech), VOICE_PRESENT),
            outputs=(probs, weights, FACES_USED),
            steps=(
                *_face_steps("face_probs"),
                SPEECH_STEP,
                Step(
                    "av_late_fusion",
                    (
                        ("FACE_PROBS", "face_probs"),
                        ("FACES_USED", "FACES_USED"),
                        ("SPEECH_LOGITS", "speech_logits"),
                        ("VOICE_PRESENT", "VOICE_PRESENT"),
                    ),
                    (("EMOTION_PROBS", "EMOTION_PROBS"), ("MODEL_WEIGHTS", "MODEL_WEIGHTS")),
                ),
            ),
            parameters=_card_parameters(fusion),
            card=fusion,
        ),
    ]
