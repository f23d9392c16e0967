"""A window's audio as the voice-activity model takes it: mono PCM at 16 kHz.

Whether a window holds a voice is decided in Triton, by the ``voice_activity`` step of the
ensembles that listen (Silero VAD; see :mod:`export.silero`): a level rule cannot tell a quiet
voice from a quiet room, nor music from speech. What stays here is the model-free part, bringing
a window's audio to the rate that model was trained at. The rate is part of the served model's
config (parameter ``voice_audio``), so a client reads it from there, as it reads ``log_mel``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

__all__ = ["VoiceAudioSpec", "voice_audio"]


@dataclass(frozen=True)
class VoiceAudioSpec:
    """How a window's audio is made for the voice-activity model.

    Attributes
    ----------
    rate : int
        Sampling rate in Hz: Silero VAD judges 16 kHz audio in 512-sample (32 ms) chunks.
    """

    rate: int = 16_000


def voice_audio(audio: np.ndarray, rate: int, spec: VoiceAudioSpec = VoiceAudioSpec()) -> np.ndarray:
    """Resample windows' audio to ``spec.rate``.

    Parameters
    ----------
    audio : ndarray, shape (samples,) or (B, samples)
        Mono PCM, float in [-1, 1] (:attr:`preprocessing.windows.Window.audio`).
    rate : int
        Its sampling rate in Hz.

    Returns
    -------
    ndarray, shape (..., ceil(samples * spec.rate / rate)), float32
        A 3.6 s window at 22,050 Hz (79,380 samples) gives 57,600 samples at 16 kHz.

    Notes
    -----
    Polyphase filtering (:func:`scipy.signal.resample_poly`, its default Kaiser-windowed FIR) by
    the exact ratio of the two rates (320/441 for 22,050 Hz to 16 kHz): the same samples always
    give the same output, and a batch gives each window what it gets alone.
    """
    if rate <= 0 or spec.rate <= 0:
        raise ValueError(f"Sampling rates must be positive, got {rate} Hz to {spec.rate} Hz.")
    audio = np.asarray(audio, dtype=np.float32)
    if rate == spec.rate:
        return audio.copy()
    g = math.gcd(rate, spec.rate)
    return resample_poly(audio, spec.rate // g, rate // g, axis=-1).astype(np.float32)
