"""Synthetic EEG trials whose class shows in band power, for tests and for proving that
:mod:`models.eeg` and the trial fusions learn.

Each trial is a raw multichannel recording in uV, before any filtering, of ``duration_s``
seconds (21 s: four 5.25 s windows):

- rhythms: for each of three regions (left anterior, right anterior, posterior) and each band
  (theta 4-8, alpha around the subject's own alpha peak, beta 13-30, gamma 30-45 Hz) a
  band-limited source whose power, in dB, is the class's prototype plus the subject's offset
  plus trial noise; every channel mixes its region's sources (and a little of the others');
- background: 1/f ("pink") noise per channel, partly shared by all (volume conduction);
- artefacts: blinks (large slow positive deflections, strongest on Fp/AF channels, fading
  towards the back) and mains line noise at 50 Hz.

Class c shows band-power prototype ``codes[c]`` (None: prototype c). Classes with equal codes
look alike in the EEG, so ``codes=(0, 0, 1, 1)`` makes a 4-class task where the EEG tells {0, 1}
from {2, 3} only, as :mod:`training.synthetic_av`'s face and audio codes do for the other
modalities. The eight prototypes are loosely modelled on reports of frontal alpha asymmetry
(valence) and beta/gamma power (arousal), in the order neutral, calm, happy, sad, angry,
fearful, disgust, surprised.

Subjects are generated from their id and the seed alone: the same id gives the same person in
every call, so build training and test sets from disjoint ids for subject-independent splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from preprocessing.eeg import EEGRecording, EEGSpec, eeg_windows
from training.eeg import EEGWindows
from training.ravdess import EMOTIONS_5
from training.trials import DEAP_CHANNELS

__all__ = ["BANDS", "CHANNELS_14", "CHANNELS_32", "SyntheticEEGSpec", "make_eeg_dataset", "synthetic_trial_eeg"]

#: An Emotiv EPOC-like 14-channel montage.
CHANNELS_14 = ("AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4")
#: DEAP's 32-channel 10-20 montage.
CHANNELS_32 = DEAP_CHANNELS
#: Band edges in Hz; alpha is centred on each subject's alpha peak instead (+-2 Hz).
BANDS = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 45.0)}
_RHYTHM_UV = np.array([4.0, 6.0, 3.0, 1.5])  # rms of each band's source at 0 dB, uV
_REGIONS = ("left anterior", "right anterior", "posterior")

# Band power in dB per code (rows), region (left anterior, right anterior, posterior) and band
# (theta, alpha, beta, gamma). Less alpha means more activity: positive valence shows as less
# left-frontal alpha, negative as less right-frontal alpha; arousal raises beta and gamma.
_PROTOTYPES_DB = np.array([
    [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],        # neutral
    [[0, 3, -2, -2], [0, 3, -2, -2], [0, 5, -2, -2]],  # calm: alpha up, fast bands down
    [[0, -4, 3, 4], [0, 1, 3, 4], [0, 0, 2, 2]],       # happy: left alpha down, beta/gamma up
    [[3, 1, -2, -2], [3, -4, -2, -2], [2, 0, -1, -1]], # sad: right alpha down, theta up
    [[0, -1, 5, 4], [0, -3, 5, 4], [0, -3, 3, 2]],     # angry: strong beta/gamma
    [[4, -2, 3, 1], [4, -2, 3, 1], [2, -4, 2, 0]],     # fearful: theta and beta up, alpha down
    [[2, 0, 0, 5], [2, 2, 0, 2], [0, 0, 0, 0]],        # disgust: left gamma
    [[3, -3, 2, 2], [3, -3, 2, 2], [3, -5, 2, 2]],     # surprised: alpha blocked everywhere
], dtype=np.float64)  # fmt: skip


@dataclass(frozen=True)
class SyntheticEEGSpec:
    """What synthetic EEG trials look like.

    Attributes
    ----------
    labels : tuple of str
        Class names; class c is ``labels[c]``.
    codes : tuple of int | None
        Band-power prototype (0..7) each class shows; None: class c shows prototype c. Equal
        codes make classes indistinguishable in the EEG.
    channels : tuple of str
        10-20 channel names; their positions decide region and blink strength.
    rate : float
        Sampling rate in Hz of the raw recording.
    duration_s : float
        Trial length in seconds.
    subject_spread_db : float
        Std of each subject's own offset of every region's band power, in dB (prototypes differ
        by 2 to 6 dB).
    trial_noise_db : float
        Std of each trial's band-power jitter, in dB.
    channel_spread : float
        Std of the log of each subject's channel gains (electrode contact, skull thickness).
    background_uv : float
        rms of the 1/f background per channel, uV.
    blinks_per_s : float
        Mean blink rate; blinks are about 100 uV on Fp channels.
    line_uv : float
        Amplitude of 50 Hz line noise, uV.
    """

    labels: tuple[str, ...] = EMOTIONS_5
    codes: tuple[int, ...] | None = None
    channels: tuple[str, ...] = CHANNELS_14
    rate: float = 256.0
    duration_s: float = 21.0
    subject_spread_db: float = 1.5
    trial_noise_db: float = 1.0
    channel_spread: float = 0.15
    background_uv: float = 8.0
    blinks_per_s: float = 0.25
    line_uv: float = 10.0

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.codes is not None and (len(self.codes) != n or not all(0 <= c < len(_PROTOTYPES_DB) for c in self.codes)):
            raise ValueError(f"codes needs one code in 0..{len(_PROTOTYPES_DB) - 1} per class ({n}), got {self.codes}.")
        if self.codes is None and n > len(_PROTOTYPES_DB):
            raise ValueError(f"at most {len(_PROTOTYPES_DB)} classes have their own prototype, got {n}.")
        if self.rate < 2 * 55:
            raise ValueError(f"rate {self.rate:g} Hz cannot carry gamma (to 45 Hz) and 50 Hz line noise; use 128 Hz or more.")

    def code(self, label: int) -> int:
        return label if self.codes is None else self.codes[label]

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class _Subject:
    band_offset_db: np.ndarray  # (3 regions, 4 bands)
    alpha_peak_hz: float
    mixing: np.ndarray  # (C, 3): each channel's share of each region's sources, with its gain
    blink_weight: np.ndarray  # (C,)


def _region_weights(name: str) -> np.ndarray:
    """(3,) weights of left anterior, right anterior and posterior sources at a 10-20 position."""
    letters = name.rstrip("0123456789zZ").upper()
    side = name[len(letters) :].lower()
    if letters.startswith(("P", "O", "CP", "TP", "CB")):
        return np.array([0.2, 0.2, 1.0])
    if side == "z" or not side:  # midline: both hemispheres
        return np.array([0.6, 0.6, 0.2])
    return np.array([1.0, 0.2, 0.2]) if int(side) % 2 else np.array([0.2, 1.0, 0.2])  # odd numbers: left


def _blink_weight(name: str) -> float:
    """A blink's strength at a channel: large at the eyes, fading backwards."""
    letters = name.rstrip("0123456789zZ").upper()
    return {"FP": 1.0, "AF": 0.7, "F": 0.4, "FC": 0.15, "FT": 0.15}.get(letters, 0.03)


def _subject(spec: SyntheticEEGSpec, subject: int, seed: int) -> _Subject:
    rng = np.random.default_rng([seed, subject, 0])
    gains = np.exp(rng.normal(0, spec.channel_spread, len(spec.channels)))
    mixing = np.stack([_region_weights(c) for c in spec.channels]) * gains[:, None]
    return _Subject(
        band_offset_db=rng.normal(0, spec.subject_spread_db, (len(_REGIONS), len(BANDS))),
        alpha_peak_hz=float(rng.uniform(9.0, 11.5)),
        mixing=mixing,
        blink_weight=np.array([_blink_weight(c) for c in spec.channels]) * rng.uniform(0.7, 1.3),
    )


def _shaped_noise(rng: np.random.Generator, shape: tuple[int, ...], n: int, rate: float, gain: np.ndarray) -> np.ndarray:
    """Gaussian noise (*shape, n) whose amplitude spectrum is ``gain`` (n // 2 + 1,), scaled to unit rms."""
    spectrum = (rng.standard_normal((*shape, n // 2 + 1)) + 1j * rng.standard_normal((*shape, n // 2 + 1))) * gain
    x = np.fft.irfft(spectrum, n=n, axis=-1)
    return x / np.maximum(x.std(axis=-1, keepdims=True), 1e-12)


def synthetic_trial_eeg(spec: SyntheticEEGSpec, subject: int, label: int, *, seed: int = 0, index: int = 0) -> EEGRecording:
    """One raw trial of ``subject`` showing class ``label``: (channels, rate * duration_s) in uV.

    ``seed`` fixes the subjects; ``(seed, subject, label, index)`` fixes the trial. The
    recording's path is ``synthetic/sSUBJECT/cLABEL_tINDEX`` (it names no file).
    """
    sub = _subject(spec, subject, seed)
    rng = np.random.default_rng([seed, subject, 1, label, index])
    n, rate = round(spec.duration_s * spec.rate), spec.rate
    freqs = np.fft.rfftfreq(n, 1 / rate)
    edges = dict(BANDS, alpha=(sub.alpha_peak_hz - 2, sub.alpha_peak_hz + 2))
    masks = np.stack([((freqs >= lo) & (freqs < hi)).astype(np.float64) for lo, hi in edges.values()])  # (4, F)
    power_db = _PROTOTYPES_DB[spec.code(label)] + sub.band_offset_db + rng.normal(0, spec.trial_noise_db, (len(_REGIONS), len(BANDS)))
    sources = _shaped_noise(rng, (len(_REGIONS), len(BANDS)), n, rate, masks)  # (3, 4, n) unit rms
    rhythms = np.einsum("rb,rbn->rn", _RHYTHM_UV * 10 ** (power_db / 20), sources)  # (3, n)
    eeg = sub.mixing @ rhythms  # (C, n)

    pink = 1 / np.sqrt(np.maximum(freqs, 0.5))  # amplitude ~ f^-1/2: power ~ 1/f
    shared = _shaped_noise(rng, (1,), n, rate, pink)
    own = _shaped_noise(rng, (len(spec.channels),), n, rate, pink)
    eeg += spec.background_uv * (0.5 * shared + np.sqrt(0.75) * own)

    t = np.arange(n) / rate
    blinks = rng.uniform(0, spec.duration_s, rng.poisson(spec.blinks_per_s * spec.duration_s))
    blink = sum((100 * rng.uniform(0.6, 1.4) * np.exp(-0.5 * ((t - b) / 0.1) ** 2) for b in blinks), np.zeros(n))
    eeg += sub.blink_weight[:, None] * blink
    phases = rng.uniform(0, 2 * np.pi, (len(spec.channels), 1))
    eeg += spec.line_uv * rng.uniform(0.5, 1.5, (len(spec.channels), 1)) * np.sin(2 * np.pi * 50.0 * t + phases)
    return EEGRecording(eeg, rate, tuple(spec.channels), Path(f"synthetic/s{subject:02d}/c{label}_t{index}"))


def make_eeg_dataset(
    spec: SyntheticEEGSpec, subjects: Sequence[int], per_class: int, *, seed: int = 0, eeg: EEGSpec | None = None
) -> EEGWindows:
    """``per_class`` trials of every class for every subject, cut into model windows by ``eeg``
    (None: the default :class:`~preprocessing.eeg.EEGSpec`).

    Returns
    -------
    EEGWindows
        windows (N, C, eeg.samples) float32 in uV (filtered and resampled, not standardised),
        labels, subjects, trials (one id per trial, in the order subject, class, index);
        N = len(subjects) * len(labels) * per_class * windows per trial (4 for 21 s and 5.25 s).
    """
    eeg = eeg or EEGSpec()
    windows, labels, owners, trials = [], [], [], []
    for subject in subjects:
        for label in range(len(spec.labels)):
            for k in range(per_class):
                w = eeg_windows(synthetic_trial_eeg(spec, subject, label, seed=seed, index=k), eeg)
                windows.append(w)
                labels += [label] * len(w)
                owners += [subject] * len(w)
                trials += [len(windows) - 1] * len(w)
    return EEGWindows(np.concatenate(windows), np.array(labels, np.int64), np.array(owners, np.int64), np.array(trials, np.int64),
                      tuple(spec.labels), tuple(spec.channels), eeg.rate)  # fmt: skip
