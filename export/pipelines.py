"""emofuse's served pipelines, assembled from exported artefacts for :func:`export.repository.build_repository`.

Five ensembles; a request carries a batch of windows (or of trials, for ``emotion_av_eeg``):

==================== ============================================= ==============================================
ensemble             inputs per item                               outputs per item
==================== ============================================= ==============================================
emotion_face         FACE_CROPS uint8 (frames, 64, 64),            EMOTION_PROBS (7, FER-2013 labels),
                     FACE_PRESENT bool (frames,)                   FACES_USED int32 (1,)
emotion_speech       LOG_MEL fp32 (64, 156),                       EMOTION_PROBS (8, RAVDESS labels),
                     AUDIO_16K fp32 (57600,)                       VOICE_PRESENT bool (1,), VOICED_FRACTION (1,)
emotion_av           the four above                                EMOTION_PROBS (7, shared labels),
                                                                   MODEL_WEIGHTS (2: face, speech), FACES_USED,
                                                                   VOICE_PRESENT, VOICED_FRACTION
emotion_av_attention FACE_CROPS, FACE_PRESENT (15 frames),         EMOTION_PROBS (the AV model's labels),
                     MFCC fp32 (10, 156), AUDIO_PRESENT bool (1,), MODALITIES_USED bool (2: face, audio),
                     AUDIO_16K                                     VOICE_PRESENT, VOICED_FRACTION
emotion_av_eeg       a trial: FACE_CROPS (6, 15, 64, 64),          TRIAL_PROBS (fusion CNN), WAVER_PROBS,
                     FACE_PRESENT (6, 15), MFCC (6, 10, 156),      AV_WINDOW_PROBS (6, classes),
                     AUDIO_PRESENT (6, 1), EEG fp32 (4, ch, n),    EEG_WINDOW_PROBS (4, classes),
                     EEG_PRESENT bool (1,)                         MODALITIES_USED bool (2: av, eeg)
==================== ============================================= ==============================================

Probabilities are all zero where a model had nothing to judge (no face, no voice, no EEG).
Whether a window holds a voice is decided inside the ensembles that listen, by their
``voice_activity`` step (Silero VAD on AUDIO_16K, the window's audio at 16 kHz): its chunk
probabilities gate the speech model, and its verdict, VOICE_PRESENT with VOICED_FRACTION, is
returned. The attention model keeps AUDIO_PRESENT ("the window has audio"), as it was trained;
there VOICE_PRESENT is only reported.
Every config carries its card's ``labels``, ``weights`` ("real", "synthetic", "none") and
``model`` as parameters, so a client labels outputs, and withholds untrained ones, from the
config alone. They also carry the settings to make their inputs with (``crop``, ``log_mel``,
``mfcc``, ``eeg``: ``name=value;...``; ``channels``: the EEG channels in order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from models.card import ModelCard

from .artefact import Artefact
from .repository import Ensemble, GraphModel, Step, Tensor

__all__ = ["Artefacts", "card_parameters", "pipelines"]

FRAMES = 15  # face crops per window: the warm-up requests' length of the frames axis


def _settings(values: dict) -> str:
    return ";".join(f"{k}={','.join(map(str, v)) if isinstance(v, list | tuple) else v}" for k, v in sorted(values.items()))


def input_parameters(card: ModelCard) -> tuple[tuple[str, str], ...]:
    """The settings a client makes a model's inputs with: face crops, audio features, EEG and its channels."""
    keys = ("crop", "log_mel", "mfcc", "voice_audio", "eeg")
    params = tuple((key, _settings(card.preprocessing[key])) for key in keys if key in card.preprocessing)
    if "channels" in card.preprocessing:  # EEG: the input's channels, in order
        params += (("channels", ",".join(card.preprocessing["channels"])),)
    return params


def card_parameters(card: ModelCard) -> tuple[tuple[str, str], ...]:
    """What a client needs to label outputs honestly and to make inputs as the model was trained
    on them, readable from the config over gRPC: labels, weights, name, input settings."""
    return (("labels", ",".join(card.labels)), ("weights", card.weights), ("model", card.name)) + input_parameters(card)


def _ensemble_outputs(model: GraphModel, labelled: Sequence[str]) -> tuple[Tensor, ...]:
    return tuple(replace(t, labels=t.name in labelled) for t in model.artefact.outputs)


# What the voice tensors hold, written above them in every config that has them, so that a batch
# client sending its own tensors straight to Triton knows how to make AUDIO_16K and read the rest.
TENSOR_DOCS = {
    "AUDIO_16K": ("the window's mono audio resampled to 16 kHz, float32 in [-1, 1], 57,600 samples for 3.6 s "
                  "(preprocessing.voice.voice_audio; the rate is the parameter voice_audio)"),
    "VOICE_PRESENT": "the window holds a voice: voice_activity (Silero VAD) judged at least 0.25 s of its 32 ms chunks speech",
    "VOICED_FRACTION": "share of the window's 32 ms chunks whose speech probability is 0.5 or more (Silero VAD)",
    "VOICE_PROBS": "speech probability of each 512-sample (32 ms) chunk of the window, in order; the last chunk padded with zeros",
}  # fmt: skip


def _documented(tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    return tuple(replace(t, doc=TENSOR_DOCS.get(t.name, t.doc)) for t in tensors)


# One ONNX Runtime thread per model: an ensemble's models run at once, and several requests at once,
# so Triton keeps the cores busy; wider, spinning pools fight over them (measured on 2 cores:
# emotion_av 98 windows/s with ONNX Runtime's default threads, 154 with one; benchmarks/triton_throughput.py).
THREADS = (("intra_op_thread_count", "1"),)


def _graph(name: str, doc: str, artefact: Artefact, *, glue: bool = False, labelled: Sequence[str] = (), frames: int = 0) -> GraphModel:
    """A model of the repository; glue is cheap, so batching would only add latency to it."""
    warmup = {t.name: tuple(frames if d == -1 else d for d in t.dims) for t in artefact.inputs if -1 in t.dims}
    artefact = replace(artefact, inputs=_documented(artefact.inputs), outputs=_documented(artefact.outputs))
    return GraphModel(
        name=name, doc=doc, artefact=artefact, network=not glue, labelled=tuple(labelled), warmup=warmup,
        max_queue_delay_us=0 if glue else 2000, parameters=THREADS + card_parameters(artefact.card),
    )  # fmt: skip


def _step(model: GraphModel, renamed: dict[str, str] | None = None, *, dropped: Sequence[str] = ()) -> Step:
    """A step whose tensors keep their names in the ensemble, except those ``renamed``; outputs
    ``dropped`` are not passed on."""
    renamed = renamed or {}
    return Step(
        model.name,
        tuple((t.name, renamed.get(t.name, t.name)) for t in model.artefact.inputs),
        tuple((t.name, renamed.get(t.name, t.name)) for t in model.artefact.outputs if t.name not in dropped),
    )


class Artefacts:
    """The exported artefacts a repository serves, by role (see :mod:`export.build`)."""

    def __init__(self, **artefacts: Artefact) -> None:
        self.__dict__.update(artefacts)


def pipelines(a: Artefacts, av_fusion: ModelCard) -> list[GraphModel | Ensemble]:
    """Every model and ensemble of the repository.

    ``a`` holds the artefacts: networks ``face`` (per frame, folded over frames), ``speech``,
    ``voice`` (voice activity), ``av`` (per window), ``av_trial`` and ``eeg_trial`` (folded over a trial's windows); glue
    ``face_pool``, ``speech_gate``, ``late_fusion``, ``av_gate`` and ``trial_fusion``.
    ``av_fusion``: the card of the late fusion (``emotion_av``).
    """
    face = _graph("face_expression", "Facial expression of each grey 64x64 face crop of a window: mini-Xception.", a.face,
                  labelled=["CROP_LOGITS"], frames=FRAMES)  # fmt: skip
    pool = _graph("face_window_pool", "Mean softmax over a window's frames with a face.", a.face_pool, glue=True, frames=FRAMES)
    speech = _graph("speech_emotion", "Emotion in the voice of a 3.6 s window: speech CNN on log-mel.", a.speech, labelled=["SPEECH_LOGITS"])
    voice = _graph("voice_activity", "Speech probability of each 32 ms of a window's 16 kHz audio, and whether it holds a voice: Silero VAD.",
                   a.voice)  # fmt: skip
    gate = _graph("speech_gate", "Softmax of the speech logits of windows with a voice; zeros for the others.", a.speech_gate, glue=True)
    late = _graph("av_late_fusion", "Face and speech answers of a window on shared labels, weighted by validation accuracy.",
                  a.late_fusion, glue=True)  # fmt: skip
    av = _graph("av_attention", "Audio-video model with intermediate attention fusion, one 3.6 s window.", a.av,
                labelled=["AV_LOGITS"], frames=FRAMES)  # fmt: skip
    av_gate = _graph("av_attention_gate", "Softmax of the audio-video logits; zeros for windows with neither face nor voice.",
                     a.av_gate, glue=True)  # fmt: skip
    av_trial = _graph("av_trial", "The audio-video model over a trial's 6 windows.", a.av_trial, frames=FRAMES)
    eeg_trial = _graph("eeg_trial", "The EEG model over a trial's 4 windows.", a.eeg_trial)
    fusion = _graph("trial_fusion", "Fusion CNN over a trial's 10x5 window logits, with WAVER beside it.", a.trial_fusion, glue=True)

    # The VAD's verdict goes back to the client; the speech gate and the fusion take its chunk
    # probabilities and apply the same rule (no ensemble output may feed a step: see SpeechGate).
    voiced = tuple(t for t in voice.tensors("output") if t.name in ("VOICE_PRESENT", "VOICED_FRACTION"))
    listens = input_parameters(voice.card)
    ensembles = [
        Ensemble("emotion_face", "Face expression of each window: crops -> frame logits -> pooled probabilities.",
                 face.tensors("input") + pool.tensors("input")[1:], _ensemble_outputs(pool, ["EMOTION_PROBS"]),
                 (_step(face), _step(pool)), face.card, parameters=card_parameters(face.card)),
        Ensemble("emotion_speech", "Emotion in the voice of each window (audio-only mode); windows without a voice get zeros.",
                 speech.tensors("input") + voice.tensors("input"), _ensemble_outputs(gate, ["EMOTION_PROBS"]) + voiced,
                 (_step(speech), _step(voice), _step(gate)), speech.card, parameters=card_parameters(speech.card) + listens),
        Ensemble("emotion_av", "Face and voice of each window, late fusion of the face and speech models.",
                 face.tensors("input") + pool.tensors("input")[1:] + speech.tensors("input") + voice.tensors("input"),
                 _ensemble_outputs(late, ["EMOTION_PROBS"]) + pool.tensors("output")[1:] + voiced,
                 (_step(face), _step(pool, {"EMOTION_PROBS": "FACE_PROBS"}), _step(speech), _step(voice), _step(late)),
                 av_fusion, parameters=card_parameters(av_fusion)),
        # voice_activity first: Triton's pruning (see SpeechGate) charges pruned ensemble inputs to step 0.
        Ensemble("emotion_av_attention", "Face and voice of each window through the audio-video attention model.",
                 av.tensors("input") + voice.tensors("input"), _ensemble_outputs(av_gate, ["EMOTION_PROBS"]) + av.tensors("output")[1:] + voiced,
                 (_step(voice, dropped=["VOICE_PROBS"]), _step(av), _step(av_gate)), av.card, parameters=card_parameters(av.card) + listens),
        Ensemble("emotion_av_eeg", "One trial: 6 audio-video and 4 EEG windows -> window probabilities and the fused verdict.",
                 av_trial.tensors("input") + eeg_trial.tensors("input") + fusion.tensors("input")[3:],
                 _ensemble_outputs(fusion, ["TRIAL_PROBS", "WAVER_PROBS"]),
                 (_step(av_trial, {"MODALITIES_USED": "AV_USED"}), _step(eeg_trial), _step(fusion)),
                 fusion.card, max_batch_size=4,
                 parameters=card_parameters(fusion.card) + input_parameters(av_trial.card) + input_parameters(eeg_trial.card)),
    ]  # fmt: skip
    return [face, pool, speech, voice, gate, late, av, av_gate, av_trial, eeg_trial, fusion, *ensembles]
