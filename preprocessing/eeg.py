"""EEG recordings in, model windows out: reading, filtering, resampling, windows, standardisation.

Shared by training and serving, so that a model sees in service exactly what it saw in training::

    recording = read_eeg("s01/t03.edf", rate=512, channels=names)   # (C, T) microvolts
    prep = EEGPreprocessing.from_dict(card.preprocessing)            # the model card's settings
    x = prep.inputs(recording, count=4)                              # (4, C, S) float32, standardised

Units: samples are **microvolts** (uV) everywhere. EDF and BDF files are read through MNE, which
gives volts, and scaled to uV; ``.mat`` variables are taken as they are, in uV (as SEED's and
DEAP's are). Rates are in Hz, durations in seconds.

The pipeline of :func:`eeg_windows`: zero-phase Butterworth band-pass and IIR notch filtering at
the recording's rate (:func:`filter_eeg`), polyphase resampling to the model's rate
(:func:`resample_eeg`), then windows of ``window_s`` seconds. Standardisation subtracts each
channel's mean and divides by its standard deviation, both measured on the training windows and
stored in the model card (:class:`ChannelStats`). Nothing here imports torch.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy import signal

from preprocessing.errors import RecordingError, UnreadableRecording, UnsupportedMedia

__all__ = [
    "EEG_SUFFIXES",
    "ChannelStats",
    "EEGPreprocessing",
    "EEGRecording",
    "EEGSpec",
    "channel_stats",
    "eeg_windows",
    "filter_eeg",
    "nonstandard_channels",
    "read_eeg",
    "resample_eeg",
    "standardise",
]

log = logging.getLogger(__name__)

#: File types :func:`read_eeg` reads.
EEG_SUFFIXES = (".mat", ".edf", ".bdf")
_RATE_TOLERANCE = 1e-3  # relative: 256 Hz and 256.0001 Hz are the same rate


@dataclass(frozen=True)
class EEGRecording:
    """A multichannel EEG recording.

    Attributes
    ----------
    data : ndarray of float64, shape (n_channels, n_samples)
        Samples in microvolts.
    rate : float
        Sampling rate in Hz.
    channels : tuple of str
        Channel names in row order (10-20 names where known, e.g. ``Fp1``, ``Cz``).
    path : Path
        The file it was read from (for messages); generated recordings name what made them.
    """

    data: np.ndarray
    rate: float
    channels: tuple[str, ...]
    path: Path

    @property
    def duration_s(self) -> float:
        return self.data.shape[1] / self.rate

    def pick(self, names: tuple[str, ...] | list[str]) -> EEGRecording:
        """The recording with only the channels ``names``, in that order.

        Raises
        ------
        RecordingError
            A channel is not in the recording; the message lists the ones it has.
        """
        missing = [n for n in names if n not in self.channels]
        if missing:
            odd = nonstandard_channels(self.channels)
            hint = f" ({odd[:5]} are not 10-20 names: rename them as the model's card names them)" if odd else ""
            raise RecordingError(self.path, f"has no channel {missing}; it has {list(self.channels)}{hint}. Record or name those channels.")
        rows = [self.channels.index(n) for n in names]
        return EEGRecording(self.data[rows], self.rate, tuple(names), self.path)


def read_eeg(
    path: str | Path, *, rate: float | None = None, mat_key: str | None = None, channels: tuple[str, ...] | list[str] | None = None
) -> EEGRecording:
    """Read an EEG recording from ``.mat``, ``.edf`` or ``.bdf``.

    Parameters
    ----------
    path : str | Path
        The file. ``.mat``: MATLAB v4-v7 (scipy) or v7.3 (HDF5, h5py); ``.edf``/``.bdf``: MNE.
    rate : float | None
        Sampling rate in Hz. Required for ``.mat`` (the file does not say); for EDF/BDF it is
        checked against the header when given.
    mat_key : str | None
        Name of the ``.mat`` variable holding the samples, (channels, samples) in uV. None: the
        file's only numeric matrix (vectors do not count).
    channels : sequence of str | None
        Channel names. ``.mat``: names of the rows (their count is checked); None: ``EEG 1``,
        ``EEG 2``... EDF/BDF: the channels to keep, in this order; None: all of the file's.

    Returns
    -------
    EEGRecording
        ``data`` (n_channels, n_samples) float64 in uV.

    Raises
    ------
    UnreadableRecording
        The file is missing, empty or not a valid file of its type.
    UnsupportedMedia
        A wrong ``.mat`` key (the message lists the file's variables), a wrong channel count, a
        rate that differs from the file's, data that is not 2-D, or an unknown suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EEG_SUFFIXES:
        raise UnsupportedMedia(path, f"is not an EEG file emofuse reads; give a {', '.join(EEG_SUFFIXES)} file.")
    if not path.is_file():
        raise UnreadableRecording(path, f"not found at {path}; check the path (a manifest's paths are relative to the manifest).")
    if path.stat().st_size == 0:
        raise UnreadableRecording(path, "is empty (0 bytes); copy the recording again.")
    if rate is not None and not rate > 0:
        raise UnsupportedMedia(path, f"sampling rate {rate} Hz is not positive; give the rate the EEG was recorded at.")
    if suffix == ".mat":
        if rate is None:
            raise UnsupportedMedia(path, "a .mat file does not store its sampling rate; give it (the manifest's eeg_rate).")
        recording = _read_mat(path, mat_key, float(rate), channels)
    else:
        recording = _read_mne(path, rate, channels)
    if recording.data.shape[1] == 0:
        raise UnsupportedMedia(path, "holds no samples; export the recording again.")
    return recording


def _read_mat(path: Path, key: str | None, rate: float, channels: tuple[str, ...] | list[str] | None) -> EEGRecording:
    variables = _mat_variables(path)
    arrays = {k: v for k, v in variables.items() if isinstance(v, np.ndarray) and v.dtype.kind in "fiu"}
    if key is None:
        two_d = [k for k, v in arrays.items() if v.ndim == 2 and min(v.shape) > 1]  # MATLAB vectors are 1 x n
        if len(two_d) != 1:
            raise UnsupportedMedia(path, f"holds the variables {sorted(variables)}; name the one with the EEG (mat_key).")
        key = two_d[0]
    if key not in variables:
        raise UnsupportedMedia(path, f"has no variable {key!r}; it has {sorted(variables)}. Set mat_key to one of them.")
    if key not in arrays:
        raise UnsupportedMedia(path, f"variable {key!r} is not a numeric array; name the EEG variable (it has {sorted(variables)}).")
    data = np.asarray(arrays[key], np.float64)
    if data.ndim != 2:
        raise UnsupportedMedia(path, f"variable {key!r} has shape {data.shape}; it must be 2-D (channels, samples).")
    if channels is None:
        channels = tuple(f"EEG {i + 1}" for i in range(len(data)))
    elif len(channels) != len(data):
        flipped = " (the array may be samples x channels: save it transposed)" if data.shape[1] == len(channels) else ""
        raise UnsupportedMedia(
            path, f"variable {key!r} has {len(data)} channels (rows), but {len(channels)} channel names were given{flipped}."
        )
    return EEGRecording(data, rate, tuple(channels), path)


def _mat_variables(path: Path) -> dict[str, Any]:
    """The variables of a MATLAB file: v4-v7 through scipy, v7.3 (HDF5) through h5py."""
    import scipy.io

    try:
        return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    except NotImplementedError:  # "Please use HDF reader for matlab v7.3 files"
        import h5py

        with h5py.File(path, "r") as f:
            # MATLAB stores arrays column-major: the transpose gives (channels, samples) back
            return {k: np.asarray(v).T for k, v in f.items() if isinstance(v, h5py.Dataset)}
    except (ValueError, TypeError, OSError) as e:
        raise UnreadableRecording(path, f"is not a readable MATLAB file ({e}); save it again with MATLAB's save or scipy.io.savemat.")


def _read_mne(path: Path, rate: float | None, channels: tuple[str, ...] | list[str] | None) -> EEGRecording:
    import mne

    reader = mne.io.read_raw_edf if path.suffix.lower() == ".edf" else mne.io.read_raw_bdf
    try:
        raw = reader(path, preload=True, verbose="error")
    except Exception as e:  # MNE raises ValueError, RuntimeError, OSError... for damaged headers
        raise UnreadableRecording(path, f"is not a readable {path.suffix[1:].upper()} file ({e}); export it again.") from e
    file_rate = float(raw.info["sfreq"])
    if rate is not None and abs(file_rate - rate) > _RATE_TOLERANCE * rate:
        raise UnsupportedMedia(path, f"is sampled at {file_rate:g} Hz, but the rate given is {rate:g} Hz; correct the manifest's eeg_rate.")
    names = tuple(raw.ch_names)
    if channels is not None:
        missing = [c for c in channels if c not in names]
        if missing:
            raise UnsupportedMedia(path, f"has {len(names)} channels {list(names)}, none named {missing}; correct the channel names.")
        names = tuple(channels)
    data = raw.get_data(picks=list(names)) * 1e6  # volts -> uV
    return EEGRecording(np.asarray(data, np.float64), file_rate, names, path)


@dataclass(frozen=True)
class EEGSpec:
    """How recordings become model windows.

    Attributes
    ----------
    low_hz, high_hz : float
        Band-pass edges in Hz (4th-order Butterworth, applied forwards and backwards). 1 Hz
        removes drift and most of a blink's slow wave; 45 Hz keeps the gamma band and stays
        below the Nyquist frequency of the 128 Hz model rate.
    notch_hz : float | None
        Mains frequency in Hz (50 in Europe, 60 in America), notched with its harmonics below
        the recording's Nyquist frequency; None: no notch.
    rate : float
        Rate of the model's input in Hz; recordings are resampled to it.
    window_s : float
        Window length in seconds; 5.25 s cuts a 21 s trial into 4.
    hop_s : float | None
        Start-to-start distance of windows in seconds; None: ``window_s`` (no overlap).
    """

    low_hz: float = 1.0
    high_hz: float = 45.0
    notch_hz: float | None = 50.0
    rate: float = 128.0
    window_s: float = 5.25
    hop_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.low_hz < self.high_hz < self.rate / 2:
            raise ValueError(f"need 0 < low_hz < high_hz < rate / 2 = {self.rate / 2:g} Hz, got {self.low_hz:g} and {self.high_hz:g}.")
        if self.samples < 32:
            raise ValueError(f"a window of {self.window_s:g} s at {self.rate:g} Hz has {self.samples} samples; EEGNet needs 32 or more.")
        if self.hop_s is not None and self.hop_s <= 0:
            raise ValueError(f"hop_s must be positive, got {self.hop_s}.")

    @property
    def samples(self) -> int:
        """Samples per window at ``rate`` (672 for 5.25 s at 128 Hz)."""
        return round(self.window_s * self.rate)

    @property
    def hop(self) -> int:
        """Samples from one window's start to the next's at ``rate``."""
        return round((self.window_s if self.hop_s is None else self.hop_s) * self.rate)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EEGSpec:
        return cls(**d)


@lru_cache(maxsize=32)
def _band_pass(low: float, high: float, rate: float) -> np.ndarray:
    return signal.butter(4, [low, high], btype="bandpass", fs=rate, output="sos")


def filter_eeg(data: np.ndarray, rate: float, spec: EEGSpec) -> np.ndarray:
    """Zero-phase band-pass and notch filtering along the last axis.

    Parameters
    ----------
    data : ndarray, shape (..., n_samples)
        Samples in uV.
    rate : float
        Their sampling rate in Hz.
    spec : EEGSpec
        ``low_hz``, ``high_hz``, ``notch_hz``. The high edge is lowered to 0.45 ``rate`` where
        the recording's Nyquist frequency is below it; harmonics of the notch frequency are
        notched up to the Nyquist frequency.

    Returns
    -------
    ndarray of float64, shape (..., n_samples)
    """
    high = min(spec.high_hz, 0.45 * rate)
    out = signal.sosfiltfilt(_band_pass(spec.low_hz, high, rate), data, axis=-1)
    if spec.notch_hz:
        for f0 in np.arange(spec.notch_hz, rate / 2, spec.notch_hz):
            if f0 < 0.98 * rate / 2:  # a notch at the Nyquist frequency itself is not defined
                b, a = signal.iirnotch(f0, Q=30.0, fs=rate)
                out = signal.filtfilt(b, a, out, axis=-1)
    return out


def resample_eeg(data: np.ndarray, rate: float, target: float) -> np.ndarray:
    """Resample along the last axis from ``rate`` to ``target`` Hz (polyphase, scipy).

    The ratio ``target / rate`` is made rational (e.g. 128/200 = 16/25); the output has
    ``ceil(n_samples * target / rate)`` samples. Same array back when the rates are equal.
    """
    if abs(rate - target) <= _RATE_TOLERANCE * target:
        return data
    ratio = Fraction(target / rate).limit_denominator(1000)
    return signal.resample_poly(data, ratio.numerator, ratio.denominator, axis=-1)


def eeg_windows(recording: EEGRecording, spec: EEGSpec, count: int | None = None) -> np.ndarray:
    """Filter, resample and cut a recording into windows.

    Parameters
    ----------
    recording : EEGRecording
    spec : EEGSpec
    count : int | None
        None: windows every ``spec.hop`` samples from the start, as many as fit. An int: exactly
        that many, spread evenly: the first starts at 0, the last ends at the end of the
        recording, hop = (T - window) / (count - 1) (a 21 s trial and count 4: no overlap).

    Returns
    -------
    ndarray of float32, shape (n_windows, n_channels, spec.samples)
        In uV, not standardised.

    Raises
    ------
    RecordingError
        The recording is shorter than one window: the message gives both lengths.
    """
    size = spec.samples
    if round(recording.duration_s * spec.rate) < size:  # checked before filtering, which needs some length too
        raise RecordingError(
            recording.path,
            f"is {recording.duration_s:.2f} s long, shorter than one {spec.window_s:g} s window; use a longer trial or a shorter window_s.",
        )
    x = resample_eeg(filter_eeg(recording.data, recording.rate, spec), recording.rate, spec.rate)
    total = x.shape[1]
    if count is None:
        starts = np.arange(0, total - size + 1, spec.hop)
    elif count < 1:
        raise ValueError(f"count must be 1 or more, got {count}.")
    else:
        starts = np.round(np.linspace(0, total - size, count)).astype(int) if count > 1 else np.array([0])
    return np.stack([x[:, s : s + size] for s in starts]).astype(np.float32)


class ChannelStats(NamedTuple):
    """Per-channel mean and standard deviation in uV, each of shape (n_channels,)."""

    mean: np.ndarray
    std: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> ChannelStats:
        return cls(np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64))


def channel_stats(windows: np.ndarray) -> ChannelStats:
    """Mean and standard deviation of each channel over all windows and samples.

    ``windows``: (n_windows, n_channels, n_samples) in uV. A flat channel gets std 1, so that
    standardising it gives zeros rather than NaN.
    """
    mean = windows.mean(axis=(0, 2), dtype=np.float64)
    std = windows.std(axis=(0, 2), dtype=np.float64)
    return ChannelStats(mean, np.where(std > 1e-6, std, 1.0))


def standardise(windows: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(windows - mean) / std`` per channel: (n, C, S) in uV -> (n, C, S) float32, unitless."""
    if windows.shape[1] != len(mean):
        raise ValueError(f"windows have {windows.shape[1]} channels, the statistics {len(mean)}.")
    return ((windows - mean[:, None]) / std[:, None]).astype(np.float32)


@dataclass(frozen=True)
class EEGPreprocessing:
    """Everything between a recording and an EEG model's input; a model card's ``preprocessing``.

    Attributes
    ----------
    spec : EEGSpec
        Filters, rate and windows.
    channels : tuple of str
        The model's input channels, in order; picked by name from each recording.
    stats : ChannelStats
        Standardisation statistics of the training windows, one per channel.
    """

    spec: EEGSpec
    channels: tuple[str, ...]
    stats: ChannelStats

    def __post_init__(self) -> None:
        if not len(self.channels) == len(self.stats.mean) == len(self.stats.std):
            raise ValueError(f"{len(self.channels)} channels but statistics for {len(self.stats.mean)}.")

    def inputs(self, recording: EEGRecording, count: int | None = None) -> np.ndarray:
        """Model inputs of ``recording``: channels picked, :func:`eeg_windows`, standardised.

        Returns
        -------
        ndarray of float32, shape (n_windows, n_channels, spec.samples)
        """
        picked = recording if recording.channels == self.channels else recording.pick(self.channels)
        return standardise(eeg_windows(picked, self.spec, count), *self.stats)

    def to_dict(self) -> dict[str, Any]:
        return {"eeg": self.spec.to_dict(), "channels": list(self.channels), "rate": self.spec.rate,
                "standardisation": self.stats.to_dict()}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EEGPreprocessing:
        return cls(EEGSpec.from_dict(d["eeg"]), tuple(d["channels"]), ChannelStats.from_dict(d["standardisation"]))


@lru_cache(maxsize=1)
def _standard_1020() -> frozenset[str]:
    import mne

    return frozenset(n.lower() for n in mne.channels.make_standard_montage("standard_1020").ch_names)


def nonstandard_channels(names: tuple[str, ...] | list[str]) -> list[str]:
    """The names that are not in MNE's ``standard_1020`` montage (case-insensitive), in order."""
    known = _standard_1020()
    return [n for n in names if n.lower() not in known]
