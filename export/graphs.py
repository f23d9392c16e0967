"""Every step of every served pipeline as a small PyTorch module, so that it exports to ONNX and
TorchScript like the networks themselves.

A network (the face, speech, audio-video, EEG models) answers one item at a time; Triton's
ensembles also need glue around them: pooling a window's frames, gating silence, fusing models.
Writing the glue as graphs instead of Python-backend code means a standard Triton (ONNX Runtime
or TensorRT backends, no Python) can serve the very same ensembles (the "native" runtime of
:mod:`export.repository`), and the Python runtime runs the same files.

Shapes below leave out nothing: B is the batch (windows, or trials), F frames, C classes.
Missing evidence (no face, no voice, no EEG) always gives all-zero probabilities, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["AVGate", "AVWindow", "Folded", "LateFusion", "SpeechGate", "Standardised", "TrialFusion", "VoiceActivity", "VoiceVerdict", "WindowPool",
           "waver"]


class Folded(nn.Module):
    """Run ``net`` on every item of a leading axis: inputs (B, K, ...) -> outputs (B, K, ...).

    Serves per-crop networks on a window's frames (K = frames) and per-window networks on a
    trial's windows (K = windows): the K axis is folded into the batch and restored after.
    ``items``: the dims of one item of each input, past (B, K), as plain numbers, so that the
    exported graph knows every channel count (batch norm needs it); only B and K stay dynamic.
    """

    def __init__(self, net: nn.Module, items: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.net = net
        self.items = [tuple(int(d) for d in item) for item in items]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        B, K = inputs[0].shape[:2]
        outputs = self.net(*(x.reshape(-1, *item) for x, item in zip(inputs, self.items, strict=True)))
        if isinstance(outputs, torch.Tensor):
            return outputs.unflatten(0, (B, K))
        return tuple(y.unflatten(0, (B, K)) for y in outputs)


class AVWindow(nn.Module):
    """The audio-video model (:class:`models.av.AVModel`) with Triton's tensors.

    Inputs: FACES uint8 (B, 15, S, S[, 3]), MFCC (B, 10, 156), FACE_PRESENT bool (B, 15),
    AUDIO_PRESENT bool (B, 1). Outputs: AV_LOGITS (B, C) and MODALITIES_USED bool (B, 2).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, faces: torch.Tensor, mfcc: torch.Tensor, face_present: torch.Tensor, audio_present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(faces, mfcc, face_present, audio_present[:, 0])
        return out.logits, out.used


class Standardised(nn.Module):
    """Per-channel standardisation, then ``net``: x (B, channels, samples) -> ``net`` outputs.

    ``mean`` and ``std`` (channels,) come from the training split (the EEG model's card), so a
    client sends filtered, resampled EEG in its own units and never handles the statistics.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)[:, None])
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class WindowPool(nn.Module):
    """A window's per-frame face logits -> its probabilities.

    Inputs: CROP_LOGITS (B, F, C), FACE_PRESENT bool (B, F). Outputs: EMOTION_PROBS (B, C), the
    softmax averaged over the frames with a face (zeros without one); FACES_USED int32 (B, 1).
    """

    def forward(self, logits: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = present.float()[..., None]  # (B, F, 1)
        used = mask.sum(dim=1)  # (B, 1)
        probs = (logits.softmax(dim=-1) * mask).sum(dim=1) / used.clamp(min=1.0)
        return probs, used.to(torch.int32)


class VoiceVerdict(nn.Module):
    """Does a window hold a voice? VOICE_PROBS (B, N), a voice-activity network's speech
    probability of each of the window's N chunks -> VOICE_PRESENT bool (B, 1), VOICED_FRACTION (B, 1).

    A chunk is voiced when its probability is ``threshold`` or more; a window has a voice when its
    voiced chunks add up to ``min_voiced_s`` seconds (chunks of ``chunk_s``). The defaults are
    those of Silero's own ``get_speech_timestamps``: speech from probability 0.5, lasting 250 ms.
    The chunks need not be consecutive: a few short words are a voice.
    """

    def __init__(self, *, chunk_s: float, threshold: float = 0.5, min_voiced_s: float = 0.25) -> None:
        super().__init__()
        self.threshold = threshold
        self.min_chunks = math.ceil(min_voiced_s / chunk_s - 1e-9)  # 0.25 s of 32 ms chunks: 8

    def forward(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        voiced = (probs >= self.threshold).float().sum(dim=1, keepdim=True)  # (B, 1)
        return voiced >= self.min_chunks, voiced / probs.shape[1]


class VoiceActivity(nn.Module):
    """A voice-activity network and its verdict on each window.

    Input: AUDIO_16K (B, S) float32, the window's mono audio at 16 kHz. Outputs: VOICE_PRESENT
    bool (B, 1) and VOICED_FRACTION (B, 1) (:class:`VoiceVerdict`), VOICE_PROBS (B, N), each
    chunk's speech probability. ``vad``: (B, S) -> (B, N), e.g. :class:`export.silero.SileroVAD`.
    """

    def __init__(self, vad: nn.Module, verdict: VoiceVerdict) -> None:
        super().__init__()
        self.vad, self.verdict = vad, verdict

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        probs = self.vad(audio)  # (B, N)
        present, fraction = self.verdict(probs)
        return present, fraction, probs


class SpeechGate(nn.Module):
    """SPEECH_LOGITS (B, C), VOICE_PROBS (B, N) -> EMOTION_PROBS (B, C): the softmax, zeros for a
    window without a voice by ``verdict`` (silence says nothing about emotion, yet a classifier
    names one).

    The gate takes the chunk probabilities and applies the verdict itself, rather than taking
    VOICE_PRESENT, so that no ensemble output is also a step's input: Triton (2.51) prunes the
    steps of a request that asks for some outputs only, and it would prune the step making such
    a tensor (its backward pass counts the tensor as unwanted), leaving the ensemble waiting.
    """

    def __init__(self, verdict: VoiceVerdict) -> None:
        super().__init__()
        self.verdict = verdict

    def forward(self, logits: torch.Tensor, voice_probs: torch.Tensor) -> torch.Tensor:
        present, _ = self.verdict(voice_probs)
        return logits.softmax(dim=-1) * present.float()


class AVGate(nn.Module):
    """The audio-video model's answer as probabilities.

    Inputs: AV_LOGITS (B, C), MODALITIES_USED bool (B, 2) [face, audio]. Output: EMOTION_PROBS
    (B, C), zeros where the window had neither modality.
    """

    def forward(self, logits: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1) * used.any(dim=1, keepdim=True).float()


def _projection(targets: Sequence[int], shared: int) -> torch.Tensor:
    """(classes, shared) 0/1 matrix adding each class's probability to its shared label."""
    matrix = torch.zeros(len(targets), shared)
    matrix[torch.arange(len(targets)), torch.tensor(targets)] = 1.0
    return matrix


def waver(probs: Sequence[torch.Tensor], present: Sequence[torch.Tensor], accuracy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """WAVER: the weighted mean of each model's probabilities over the models that answered.

    probs: per model (B, C); present: per model (B, 1) bool or 0/1; accuracy: (models,), each
    model's validation accuracy. Returns probabilities (B, C) and the normalised weights
    (B, models), summing to 1 (or all 0 when no model answered).
    """
    weights = torch.cat([p.float() for p in present], dim=1) * accuracy  # (B, models)
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)
    fused = sum(weights[:, i : i + 1] * p for i, p in enumerate(probs))
    return fused, weights


class LateFusion(nn.Module):
    """Face and speech answers of a window, on shared labels, weighted WAVER-style.

    Inputs: FACE_PROBS (B, face classes), FACES_USED int32 (B, 1), SPEECH_LOGITS (B, speech
    classes), VOICE_PROBS (B, N), the voice-activity network's chunk probabilities. Outputs:
    EMOTION_PROBS (B, shared), MODEL_WEIGHTS (B, 2) [face, speech], the weight each model got (0
    for one with nothing to judge: no face, or no voice by ``verdict``, as in :class:`SpeechGate`).

    ``face_targets``/``speech_targets``: for each class of a model, the shared label it counts
    towards (:func:`models.emotions.to_shared`); ``accuracy``: (face, speech) validation accuracies.
    """

    def __init__(self, face_targets: Sequence[int], speech_targets: Sequence[int], accuracy: tuple[float, float], verdict: VoiceVerdict) -> None:
        super().__init__()
        shared = max(*face_targets, *speech_targets) + 1
        self.register_buffer("face", _projection(face_targets, shared))
        self.register_buffer("speech", _projection(speech_targets, shared))
        self.register_buffer("accuracy", torch.tensor(accuracy, dtype=torch.float32))
        self.verdict = verdict

    def forward(
        self, face_probs: torch.Tensor, faces_used: torch.Tensor, speech_logits: torch.Tensor, voice_probs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        speech = speech_logits.softmax(dim=-1) @ self.speech
        voice, _ = self.verdict(voice_probs)
        return waver((face_probs @ self.face, speech), (faces_used > 0, voice), self.accuracy)


class TrialFusion(nn.Module):
    """One trial's window logits -> the fused verdict of the fusion CNN, and WAVER's beside it.

    Inputs: AV_LOGITS (B, 6, C) and AV_USED bool (B, 6, 2) [face, audio] of the audio-video
    windows; EEG_LOGITS (B, 4, C) of the EEG windows and EEG_PRESENT bool (B, 1), whether the
    trial has EEG. The audio-video modality is present when any window used a face or a voice.

    Outputs:

    - TRIAL_PROBS (B, C): the fusion CNN's softmax over the (10, C) logit matrix, a missing
      modality's rows zeroed as in its training;
    - WAVER_PROBS (B, C): each modality's verdict (the softmax of its mean window logits), weighted
      by its validation accuracy (:func:`models.fusion.waver`);
    - AV_WINDOW_PROBS (B, 6, C), EEG_WINDOW_PROBS (B, 4, C): each window's softmax, zeros for a
      window (or a modality) with nothing to judge;
    - MODALITIES_USED bool (B, 2) [av, eeg].

    A trial with neither modality gets zeros everywhere.
    """

    def __init__(self, cnn: nn.Module, accuracy: tuple[float, float]) -> None:
        super().__init__()
        self.cnn = cnn  # models.fusion.FusionCNN
        self.register_buffer("accuracy", torch.tensor(accuracy, dtype=torch.float32))

    def forward(
        self, av: torch.Tensor, av_used: torch.Tensor, eeg: torch.Tensor, eeg_present: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        window_on = av_used.any(dim=2, keepdim=True).float()  # (B, 6, 1)
        av_on = window_on.amax(dim=1)  # (B, 1)
        eeg_on = eeg_present.float()  # (B, 1)
        matrix = torch.cat((av * av_on[:, :, None], eeg * eeg_on[:, :, None]), dim=1)  # (B, 10, C)
        trial = self.cnn(matrix[:, None]).softmax(dim=-1) * (av_on + eeg_on).clamp(max=1.0)
        # WAVER as models.fusion.waver: each modality's verdict is the softmax of its mean window logits.
        verdicts = (av.mean(dim=1).softmax(dim=-1), eeg.mean(dim=1).softmax(dim=-1))
        fused, _ = waver(verdicts, (av_on, eeg_on), self.accuracy)
        av_probs = av.softmax(dim=-1) * window_on
        eeg_probs = eeg.softmax(dim=-1) * eeg_on[:, :, None]
        return trial, fused, av_probs, eeg_probs, torch.cat((av_on, eeg_on), dim=1) > 0
