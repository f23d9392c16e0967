"""What the audio-video model takes of a recording's windows, the same in training and in service.

    arrays = av_arrays(list(read_windows(info, crop=CropSpec(size=64, grey=True))))
    arrays["faces"].shape   # (W, 15, 64, 64) uint8
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .audio_features import WINDOW_SAMPLES, MfccSpec, mfcc
from .windows import Window

__all__ = ["AV_MFCC", "av_arrays"]

AV_MFCC = MfccSpec()  # the paper's 10 coefficients


def av_arrays(windows: Sequence[Window], audio: Sequence[np.ndarray | None] | None = None, spec: MfccSpec = AV_MFCC) -> dict[str, np.ndarray]:
    """The audio-video model's inputs of ``windows``.

    Parameters
    ----------
    windows : sequence of Window
        Cut with the model's crop settings (:func:`preprocessing.windows.read_windows`).
    audio : sequence of (samples,) arrays or None, optional
        Each window's audio where it comes from elsewhere (a separate track); default ``window.audio``.
    spec : MfccSpec
        The model's MFCC settings.

    Returns
    -------
    dict
        ``faces`` (W, frames, S, S[, 3]) uint8; ``face_found`` (W, frames) bool; ``mfcc``
        (W, n_mfcc, 156) float32, of silence where a window has no audio; ``audio_present`` (W,)
        bool, whether the window has audio at all.
    """
    audio = [w.audio for w in windows] if audio is None else list(audio)
    silent = np.zeros(WINDOW_SAMPLES, np.float32)
    return {
        "faces": np.stack([w.faces for w in windows]),
        "face_found": np.stack([w.face_found for w in windows]),
        "mfcc": mfcc(np.stack([a if a is not None else silent for a in audio]), spec).astype(np.float32),
        "audio_present": np.array([a is not None for a in audio]),
    }
