"""Audio features of one analysis window: MFCCs for the audio-video model, log-mel for speech.

An analysis window is 3.6 s of mono float32 audio at 22,050 Hz, i.e. 79,380 samples (see
:class:`preprocessing.windows.WindowSpec`). Every function here is pure numpy/librosa (no torch),
takes one window of shape ``(79380,)`` or a batch of shape ``(B, 79380)``, and returns features
with 156 frames: a hop of 512 samples (23.2 ms) with centred frames gives
``1 + 79380 // 512 = 156`` columns.

- :func:`mfcc` is *exactly* ``librosa.feature.mfcc(y=window, sr=22050, n_mfcc=10)``, the input of
  the audio-video model of Chumachenko, Iosifidis & Gabbouj (ICPR 2022): absolute level in dB.
- :func:`log_mel` feeds the speech emotion CNN (:mod:`models.speech`). It is measured relative to
  the loudest cell of the window, so it does not depend on microphone gain.

One function, one window: serving computes ``log_mel(window.audio)`` on each window that
:func:`preprocessing.windows.read_windows` cuts, and training computes the same ``log_mel`` on
windows that :func:`cut_window` cuts out of each clip at :func:`window_offsets` (evaluation) or at
random offsets (training). A batch gives each window what it gets alone.

References
----------
.. [1] McFee B. et al. (2015). librosa: Audio and music signal analysis in Python. SciPy.
.. [2] Chumachenko K., Iosifidis A., Gabbouj M. (2022). Self-attention fusion for audiovisual
       emotion recognition with incomplete data. ICPR. arXiv:2201.11095.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import librosa
import numpy as np
import scipy.fft

from .windows import WindowSpec

__all__ = [
    "SAMPLE_RATE",
    "WINDOW_S",
    "WINDOW_SAMPLES",
    "HOP_LENGTH",
    "N_FRAMES",
    "LogMelSpec",
    "MfccSpec",
    "check_window",
    "log_mel",
    "mfcc",
    "window_offsets",
    "cut_window",
]

SAMPLE_RATE = WindowSpec.audio_rate  #: Hz, the rate of every window: 22,050
WINDOW_S = WindowSpec.length_s  #: seconds per analysis window: 3.6
WINDOW_SAMPLES = WindowSpec().samples  #: 79,380
HOP_LENGTH = 512  #: samples between frames (librosa's default): 23.2 ms
N_FRAMES = 1 + WINDOW_SAMPLES // HOP_LENGTH  #: 156 centred frames per window

_AMIN = 1e-10  # power floor before the logarithm (librosa's default)
_AMIN_DB = -100.0  # the same floor in dB


@dataclass(frozen=True)
class LogMelSpec:
    """Settings of :func:`log_mel`; the speech model's checkpoint and card record them.

    Attributes
    ----------
    sr : int
        Sampling rate in Hz.
    n_mels : int
        Mel bands (rows of the output); Slaney scale, area-normalised filters (librosa's defaults).
    n_fft : int
        FFT length in samples: 1024 = 46 ms, enough for the pitch harmonics of low voices.
    hop_length : int
        Samples between frames; 512 gives 156 frames per window, as :func:`mfcc`.
    fmin, fmax : float
        Lowest and highest band edge in Hz; speech energy above 8 kHz carries little emotion.
    top_db : float
        Dynamic range in dB kept below the window's loudest cell; quieter cells are clipped.
    """

    sr: int = SAMPLE_RATE
    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = HOP_LENGTH
    fmin: float = 50.0
    fmax: float = 8000.0
    top_db: float = 80.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MfccSpec:
    """Settings of :func:`mfcc`: librosa's defaults, which the audio-video model was built on.

    Attributes
    ----------
    sr : int
        Sampling rate in Hz.
    n_mfcc : int
        Coefficients kept (rows of the output); 10 for the audio-video model.
    n_mels, n_fft, hop_length : int
        librosa's defaults for ``librosa.feature.mfcc``: 128 bands, 2048-sample FFT, hop 512.
    top_db : float
        ``librosa.power_to_db``'s default clipping, 80 dB below the window's loudest cell.
    """

    sr: int = SAMPLE_RATE
    n_mfcc: int = 10
    n_mels: int = 128
    n_fft: int = 2048
    hop_length: int = HOP_LENGTH
    top_db: float = 80.0

    def to_dict(self) -> dict:
        return asdict(self)


def check_window(window: np.ndarray, sr: int = SAMPLE_RATE, *, name: str = "window") -> np.ndarray:
    """Validate one analysis window or a batch of them.

    Parameters
    ----------
    window : ndarray, shape (n_samples,) or (B, n_samples)
        Mono audio in [-1, 1], any float dtype.
    sr : int
        Sampling rate in Hz; the window must hold ``round(3.6 * sr)`` samples.
    name : str
        What to call the argument in the error message.

    Returns
    -------
    window : ndarray of float32, same shape
        Contiguous float32 copy (or the input itself if it already was).

    Raises
    ------
    ValueError
        Wrong number of dimensions or samples, or non-finite values; the message gives the
        numbers and the fix.
    """
    window = np.asarray(window)
    expected = round(WINDOW_S * sr)
    if window.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be one window of shape ({expected},) or a batch of shape (B, {expected}); "
            f"got shape {window.shape}. Mix down to mono first (e.g. samples.mean(axis=0))."
        )
    n = window.shape[-1]
    if n != expected:
        raise ValueError(
            f"{name} must hold exactly {expected:,} samples ({WINDOW_S} s at {sr:,} Hz), got {n:,} "
            f"samples ({n / sr:.3f} s). Cut recordings with preprocessing.windows.read_windows, or "
            f"fit a clip with preprocessing.audio_features.cut_window(samples, offset) "
            f"(zero-pads a short clip, crops a long one)."
        )
    if not np.issubdtype(window.dtype, np.floating):
        raise ValueError(
            f"{name} must be float audio in [-1, 1], got dtype {window.dtype}. "
            f"Convert 16-bit PCM with samples.astype(np.float32) / 32768."
        )
    window = np.ascontiguousarray(window, dtype=np.float32)
    if not np.isfinite(window).all():
        raise ValueError(f"{name} contains NaN or infinite samples; replace them (np.nan_to_num) first.")
    return window


def _mel_db(
    window: np.ndarray, sr: int, n_mels: int, n_fft: int, hop_length: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Mel power in absolute dB (re 1.0, floor -100 dB), shape (..., n_mels, n_frames), not clipped."""
    power = librosa.feature.melspectrogram(
        y=window, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmin=fmin, fmax=fmax
    )
    return (10.0 * np.log10(np.maximum(power, _AMIN))).astype(np.float32)


def _window_peak(db: np.ndarray) -> np.ndarray:
    """Loudest cell of each window, shape (..., 1, 1)."""
    return db.max(axis=(-2, -1), keepdims=True)


def log_mel(window: np.ndarray, spec: LogMelSpec = LogMelSpec()) -> np.ndarray:
    """Log-mel spectrogram of one 3.6 s window, in dB below the window's loudest cell.

    Parameters
    ----------
    window : ndarray, shape (79380,) or (B, 79380)
        Mono float audio in [-1, 1] at ``spec.sr`` Hz (3.6 s).
    spec : LogMelSpec
        Bands, FFT, hop, band edges and dynamic range; the default is the speech model's input.

    Returns
    -------
    log_mel : ndarray of float32, shape (n_mels, 156) or (B, n_mels, 156)
        Mel power in dB relative to the window's loudest time-frequency cell, clipped to
        [-top_db, 0]; so a change of microphone gain does not change the features. A window of
        digital silence (no cell above the -100 dB floor) is all ``-top_db``.

    Raises
    ------
    ValueError
        If the window does not hold ``round(3.6 * sr)`` samples (see :func:`check_window`).

    Examples
    --------
    >>> import numpy as np
    >>> log_mel(np.zeros(79_380, np.float32)).shape
    (64, 156)
    """
    window = check_window(window, spec.sr)
    db = _mel_db(window, spec.sr, spec.n_mels, spec.n_fft, spec.hop_length, spec.fmin, spec.fmax)
    peak = _window_peak(db)
    rel = np.maximum(db - peak, -spec.top_db)
    return np.where(peak <= _AMIN_DB + 1e-3, np.float32(-spec.top_db), rel).astype(np.float32)


def mfcc(window: np.ndarray, spec: MfccSpec = MfccSpec()) -> np.ndarray:
    """MFCCs of one 3.6 s window: ``librosa.feature.mfcc(y=window, sr=sr, n_mfcc=n_mfcc)``.

    Parameters
    ----------
    window : ndarray, shape (79380,) or (B, 79380)
        Mono float audio in [-1, 1] at ``spec.sr`` Hz (3.6 s).
    spec : MfccSpec
        Coefficients kept and librosa's settings; the audio-video model uses the default (10).

    Returns
    -------
    mfcc : ndarray of float32, shape (n_mfcc, 156) or (B, n_mfcc, 156)
        Orthonormal type-II DCT of the mel power in dB (absolute level, re 1.0), each window
        clipped ``top_db`` below its own maximum. A batch gives each window exactly what a call on
        that window alone gives (a plain batched ``librosa.feature.mfcc`` would clip every window
        relative to the loudest of the batch).

    Raises
    ------
    ValueError
        If the window does not hold ``round(3.6 * sr)`` samples (see :func:`check_window`).
    """
    window = check_window(window, spec.sr)
    db = _mel_db(window, spec.sr, spec.n_mels, spec.n_fft, spec.hop_length)
    clipped = np.maximum(db, _window_peak(db) - spec.top_db)
    return np.matmul(_dct_matrix(spec.n_mels, spec.n_mfcc), clipped)


@functools.lru_cache(maxsize=8)
def _dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """Rows of the orthonormal DCT-II, shape (n_mfcc, n_mels): ``D @ x`` = ``scipy.fft.dct(x, norm="ortho")[:n_mfcc]``."""
    return scipy.fft.dct(np.eye(n_mels, dtype=np.float64), axis=0, type=2, norm="ortho")[:n_mfcc].astype(np.float32)


def window_offsets(n_samples: int, n: int, window: int = WINDOW_SAMPLES) -> np.ndarray:
    """Start offsets of ``n`` evenly spread windows over a clip.

    A clip longer than a window is cropped: offsets run from 0 to ``n_samples - window``. A
    shorter clip is placed inside a zero window: offsets run from ``n_samples - window`` (clip
    at the window's end) to 0 (clip at its start). One window sits in the middle of that range.

    Parameters
    ----------
    n_samples : int
        Clip length in samples.
    n : int
        Number of windows.
    window : int
        Window length in samples.

    Returns
    -------
    offsets : ndarray of int64, shape (n,)
        Start of each window relative to the clip's first sample (negative: zeros come first).
    """
    lo, hi = min(0, n_samples - window), max(0, n_samples - window)
    points = np.array([(lo + hi) / 2]) if n == 1 else np.linspace(lo, hi, n)
    return np.round(points).astype(np.int64)


def cut_window(samples: np.ndarray, offset: int = 0, window: int = WINDOW_SAMPLES) -> np.ndarray:
    """The ``window`` samples of a clip from ``offset`` on, zeros outside the clip.

    Parameters
    ----------
    samples : ndarray, shape (n_samples,)
        Mono clip.
    offset : int
        First sample of the window relative to the clip; negative puts zeros first.
    window : int
        Samples per window.

    Returns
    -------
    window : ndarray of float32, shape (window,)
    """
    out = np.zeros(window, np.float32)
    lo, hi = max(0, offset), min(len(samples), offset + window)
    if lo < hi:
        out[lo - offset : hi - offset] = samples[lo:hi]
    return out
