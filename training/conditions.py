"""Recording conditions: what a real microphone adds to RAVDESS's clean studio speech.

RAVDESS was recorded close to a studio microphone in a quiet room, at a steady level. Real
sessions are quieter or louder, have a room around the voice, background noise, and sometimes
come through a telephone line. Each function here degrades a batch of 3.6 s windows as one of
those would; :class:`Condition` names a fixed degradation (for measuring a model under it) and
:func:`degrade` draws random ones (for training).

All functions take and return float32 audio of shape (B, samples) at ``sr`` Hz, in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

__all__ = ["CONDITIONS", "KINDS", "STUDIO", "Condition", "RealRecordings", "add_noise", "degrade", "gain", "reverberate", "telephone"]

_FULL_SCALE = 32767  # 16-bit PCM, as nearly every recording is stored


def gain(audio: np.ndarray, db: np.ndarray | float) -> np.ndarray:
    """Scale each window by ``db`` decibels (B,) and store it as 16-bit PCM would (rounded, clipped).

    The speech model's log-mel is relative to the window's loudest cell, so a gain changes its
    input only through what stays fixed in absolute terms: 16-bit rounding and the noise added
    after it. A -30 dB voice keeps about 60 dB above the rounding.
    """
    scale = np.power(10.0, np.asarray(db, np.float64) / 20.0).reshape(-1, 1)
    scaled = np.clip(np.round(audio * scale * _FULL_SCALE), -_FULL_SCALE, _FULL_SCALE)
    return (scaled / _FULL_SCALE).astype(np.float32)


def _coloured_noise(shape: tuple[int, int], exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power falls as 1 / f**exponent (0 white, 1 pink, 2 brown), unit RMS per row."""
    spectrum = np.fft.rfft(rng.standard_normal(shape), axis=1)
    f = np.arange(spectrum.shape[1], dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spectrum / f ** (exponent / 2), n=shape[1], axis=1)
    return noise / np.maximum(noise.std(axis=1, keepdims=True), 1e-12)


def _speech_rms(audio: np.ndarray) -> np.ndarray:
    """RMS of each window over its louder half of 23 ms frames (B, 1): the level of the speech, not of the pauses."""
    b, n = audio.shape
    frame = 512
    frames = audio[:, : n - n % frame].reshape(b, -1, frame)
    power = np.sort((frames.astype(np.float64) ** 2).mean(axis=2), axis=1)
    return np.sqrt(power[:, power.shape[1] // 2 :].mean(axis=1, keepdims=True))


def add_noise(audio: np.ndarray, snr_db: np.ndarray | float, exponent: np.ndarray | float, rng: np.random.Generator) -> np.ndarray:
    """Add noise of colour ``exponent`` (0 white .. 2 brown; (B,) or scalar) at ``snr_db`` (B,)
    below the speech level of each window (:func:`_speech_rms`); the result is clipped to [-1, 1]."""
    b, n = audio.shape
    exponents = np.broadcast_to(np.asarray(exponent, np.float64), (b,))
    noise = np.stack([_coloured_noise((1, n), float(e), rng)[0] for e in exponents])
    level = _speech_rms(audio) * np.power(10.0, -np.asarray(snr_db, np.float64).reshape(-1, 1) / 20.0)
    return np.clip(audio + noise * level, -1.0, 1.0).astype(np.float32)


def _room_response(rt60: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: the direct sound, then exponentially decaying noise
    that falls 60 dB in ``rt60`` seconds (Schroeder's diffuse tail); unit energy."""
    n = max(2, int(rt60 * sr))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.power(10.0, -3.0 * t / rt60)  # -60 dB at t = rt60
    tail[: int(0.003 * sr)] = 0.0  # the first reflections arrive a few ms after the direct sound
    response = tail * 0.3
    response[0] = 1.0
    return response / np.sqrt(np.sum(response**2))


def reverberate(audio: np.ndarray, rt60: np.ndarray | float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Play each window in a room of reverberation time ``rt60`` seconds ((B,) or scalar);
    the level of its loudest sample is kept."""
    b, n = audio.shape
    rt60s = np.broadcast_to(np.asarray(rt60, np.float64), (b,))
    out = np.empty_like(audio)
    for i, r in enumerate(rt60s):
        wet = fftconvolve(audio[i], _room_response(float(r), sr, rng))[:n]
        peak_in, peak_out = np.abs(audio[i]).max(), np.abs(wet).max()
        out[i] = wet * (peak_in / peak_out if peak_out > 0 else 0.0)
    return out


def telephone(audio: np.ndarray, sr: int) -> np.ndarray:
    """Band-limit to the telephone band, 300-3,400 Hz (4th-order Butterworth, as G.712's mask)."""
    sos = butter(4, (300.0, 3400.0), btype="bandpass", fs=sr, output="sos")
    return sosfilt(sos, audio, axis=1).astype(np.float32)


@dataclass(frozen=True)
class Condition:
    """One fixed recording condition; :meth:`apply` degrades windows (B, samples) with it.

    Degradations apply in the order sound meets them: the room, then background noise, then the
    line, then the recording level.
    """

    name: str
    rt60: float = 0.0  # seconds; 0: no room
    snr_db: float | None = None  # speech-to-noise ratio; None: no noise
    noise_exponent: float = 1.0  # pink
    telephone: bool = False
    gain_db: float = 0.0

    def apply(self, audio: np.ndarray, sr: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        x = np.asarray(audio, np.float32)
        if self.rt60 > 0:
            x = reverberate(x, self.rt60, sr, rng)
        if self.snr_db is not None:
            x = add_noise(x, self.snr_db, self.noise_exponent, rng)
        if self.telephone:
            x = telephone(x, sr)
        return gain(x, self.gain_db) if self.gain_db else x


# The conditions a model is measured under (training.speech_folds): each one at a level a real
# session may bring, one at a time, then all of them together.
CONDITIONS: tuple[Condition, ...] = (
    Condition("clean"),
    Condition("quiet (-30 dB)", gain_db=-30.0),
    Condition("pink noise at 10 dB SNR", snr_db=10.0),
    Condition("room (RT60 0.6 s)", rt60=0.6),
    Condition("telephone band", telephone=True),
    Condition("all together", rt60=0.6, snr_db=10.0, telephone=True, gain_db=-30.0),
)


@dataclass(frozen=True)
class RealRecordings:
    """Random recording conditions for training windows; each probability is per window.

    ``gain_db`` applies to every window (a uniform draw in the range); the others each with their
    probability, at a uniform draw in their range.
    """

    reverb_prob: float = 0.3
    rt60: tuple[float, float] = (0.2, 0.8)  # seconds: a small office to a large room
    noise_prob: float = 0.3
    snr_db: tuple[float, float] = (5.0, 30.0)
    telephone_prob: float = 0.1
    gain_db: tuple[float, float] = (-30.0, 0.0)

    @property
    def enabled(self) -> bool:
        return self.reverb_prob > 0 or self.noise_prob > 0 or self.telephone_prob > 0 or self.gain_db != (0.0, 0.0)

    def keeping(self, kinds: Collection[str]) -> RealRecordings:
        """These conditions with only ``kinds`` (of :data:`KINDS`) left on: to measure each one's share.

        Raises
        ------
        ValueError
            If a kind is not one of :data:`KINDS`.
        """
        if unknown := sorted(set(kinds) - set(KINDS)):
            raise ValueError(f"unknown recording condition {', '.join(map(repr, unknown))}; choose from {', '.join(KINDS)}.")
        off = {"level": {"gain_db": (0.0, 0.0)}, "room": {"reverb_prob": 0.0}, "noise": {"noise_prob": 0.0},
               "telephone": {"telephone_prob": 0.0}}  # fmt: skip
        return replace(self, **{field: value for kind in KINDS if kind not in kinds for field, value in off[kind].items()})


KINDS = ("level", "room", "noise", "telephone")  # the kinds of RealRecordings, as RealRecordings.keeping names them


STUDIO = RealRecordings(reverb_prob=0.0, noise_prob=0.0, telephone_prob=0.0, gain_db=(0.0, 0.0))  # RAVDESS as recorded


def _some(rng: np.random.Generator, n: int, prob: float) -> np.ndarray:
    """Indices of the windows (of ``n``) drawn with probability ``prob`` each."""
    return np.flatnonzero(rng.random(n) < prob)


def degrade(audio: np.ndarray, spec: RealRecordings, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Windows (B, samples) each under random conditions drawn from ``spec`` (a new array)."""
    x = np.array(audio, np.float32)
    b = len(x)
    if len(i := _some(rng, b, spec.reverb_prob)):
        x[i] = reverberate(x[i], rng.uniform(*spec.rt60, len(i)), sr, rng)
    if len(i := _some(rng, b, spec.noise_prob)):
        x[i] = add_noise(x[i], rng.uniform(*spec.snr_db, len(i)), rng.uniform(0.0, 2.0, len(i)), rng)
    if len(i := _some(rng, b, spec.telephone_prob)):
        x[i] = telephone(x[i], sr)
    return gain(x, rng.uniform(*spec.gain_db, b))
