"""Is someone speaking in this window? An energy-based voice activity check.

A speech model names an emotion for any input, silence included, so windows without a voice are
kept from it. Speech is loud against its own pauses: a frame counts as voiced when its level is
above an absolute floor (-45 dBFS, far above a quiet room's noise in a 16-bit recording) and at
least 15 dB above the window's quietest tenth of frames (its background). A window has a voice
when a tenth of its frames do, about a third of a second of a 3.6 s window.

It tells sound from silence, not speech from other sounds: music or a slammed door counts as voice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["VoiceSpec", "frame_levels", "voice_present"]


@dataclass(frozen=True)
class VoiceSpec:
    """Thresholds of :func:`voice_present`.

    Attributes
    ----------
    frame_s : float
        Frame length in seconds over which the level is measured.
    floor_dbfs : float
        Voiced frames are louder than this, in dB relative to full scale.
    above_background_db : float
        ... and louder by this many dB than the 10th percentile of the window's frame levels.
    min_fraction : float
        Share of voiced frames that makes a window voiced.
    """

    frame_s: float = 0.025
    floor_dbfs: float = -45.0
    above_background_db: float = 15.0
    min_fraction: float = 0.1


def frame_levels(audio: np.ndarray, rate: int, frame_s: float = 0.025) -> np.ndarray:
    """RMS level in dBFS of consecutive frames, shape (frames,); -inf-safe (floor -120 dB).

    Parameters
    ----------
    audio : ndarray, shape (samples,)
        Mono PCM, float in [-1, 1].
    rate : int
        Sampling rate in Hz.
    """
    n = max(1, round(frame_s * rate))
    frames = audio[: len(audio) // n * n].reshape(-1, n).astype(np.float64)
    power = np.mean(frames**2, axis=1) if len(frames) else np.zeros(1)
    return 10 * np.log10(np.maximum(power, 1e-12))


def voice_present(audio: np.ndarray | None, rate: int, spec: VoiceSpec = VoiceSpec()) -> bool:
    """Whether a window's audio holds a voice; False for no audio at all.

    Parameters
    ----------
    audio : ndarray, shape (samples,) | None
        One window's mono PCM, float in [-1, 1] (:attr:`preprocessing.windows.Window.audio`).
    rate : int
        Sampling rate in Hz.
    """
    if audio is None or len(audio) == 0:
        return False
    levels = frame_levels(audio, rate, spec.frame_s)
    background = np.percentile(levels, 10)
    voiced = (levels > spec.floor_dbfs) & (levels > background + spec.above_background_db)
    return bool(voiced.mean() >= spec.min_fraction)
