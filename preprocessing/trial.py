"""Trials: where the windows of each modality lie in one trial of a recording session.

A trial (about 21 s) is judged from 6 audio-video windows of 3.6 s and 4 EEG windows of 5.25 s.
Each modality's windows are spread evenly over the whole trial: the first starts at 0, the last
ends at the trial's end, so at 21 s the EEG windows lie back to back and the AV windows overlap by
0.12 s. Nothing here decodes anything; :func:`av_window_spec` gives the
:class:`~preprocessing.windows.WindowSpec` with which :func:`~preprocessing.windows.read_windows`
cuts a trial's video into exactly these AV windows.

    spec = TrialSpec()
    av_spans(21.0, spec, "s01/t03.mp4")       # [(0.0, 3.6), (3.48, 7.08), ..., (17.4, 21.0)]
    read_windows(info, av_window_spec(info.duration_s, spec, info.path), crop=crop)

A folder of trials is described by a manifest CSV (:func:`read_trial_manifest`), one row per
trial, one folder per subject (``s01/t01.mp4``, ``s01/t01.mat``, ...), with the columns

========  ==============================================================================
subject   the person, a number (splits are by subject)
trial     the trial's name, unique within the subject
label     the class name (any text where the labels are unknown)
eeg       the EEG file (.mat, .edf, .bdf), relative to the manifest's folder
video     the .mp4 (may be empty: EEG only)
audio     a separate .wav (optional column; empty when the video has its own audio)
eeg_rate  the EEG's sampling rate in Hz (checked against EDF/BDF headers)
mat_key   the .mat variable holding (channels, samples); empty for EDF/BDF
channels  channel names separated by spaces or ``;`` (a .mat's rows; picked from EDF/BDF)
========  ==============================================================================
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np

from .eeg import EEG_SUFFIXES, EEGRecording, read_eeg
from .errors import RecordingError
from .windows import WindowSpec

__all__ = ["MANIFEST_COLUMNS", "Trial", "TrialSpec", "av_spans", "av_window_spec", "eeg_spans", "even_spans", "parse_trial_manifest",
           "read_trial_manifest"]


@dataclass(frozen=True)
class TrialSpec:
    """How many windows of which length each modality contributes to one trial.

    Attributes
    ----------
    av_windows : int
        Audio-video windows per trial.
    av_window : WindowSpec
        The AV model's window (3.6 s, 15 frames); its ``hop_s`` is set per trial.
    eeg_windows : int
        EEG windows per trial.
    eeg_window_s : float
        EEG window length in seconds.
    max_overlap : float
        Largest overlap of neighbouring windows, as a fraction of a window: beyond it a
        trial is too short for its windows (they would repeat more than they add).

    Examples
    --------
    >>> TrialSpec().min_duration_s("eeg")  # 5.25 s + 3 hops of 2.625 s
    13.125
    """

    av_windows: int = 6  # the fusion CNN's 6 AV rows
    av_window: WindowSpec = field(default_factory=WindowSpec)
    eeg_windows: int = 4  # the fusion CNN's 4 EEG rows
    eeg_window_s: float = 5.25  # 4 back to back fill a 21 s trial
    max_overlap: float = 0.5

    def __post_init__(self) -> None:
        if self.av_windows < 1 or self.eeg_windows < 1 or self.eeg_window_s <= 0:
            raise ValueError(f"TrialSpec needs at least one window of positive length per modality, got {self}.")
        if not 0 <= self.max_overlap < 1:
            raise ValueError(f"max_overlap must be in [0, 1), got {self.max_overlap}.")

    def windows(self, modality: str) -> tuple[int, float]:
        """Window count and length in seconds of ``modality`` ('av' or 'eeg')."""
        if modality not in ("av", "eeg"):
            raise ValueError(f"modality must be 'av' or 'eeg', got {modality!r}.")
        return (self.av_windows, self.av_window.length_s) if modality == "av" else (self.eeg_windows, self.eeg_window_s)

    def min_duration_s(self, modality: str) -> float:
        """Shortest trial in seconds whose ``modality`` windows overlap by at most ``max_overlap``."""
        count, length = self.windows(modality)
        return length + (count - 1) * length * (1 - self.max_overlap)

    def to_dict(self) -> dict:
        return asdict(self)


def even_spans(duration_s: float, spec: TrialSpec, modality: str, path: str | Path) -> list[tuple[float, float]]:
    """Start and end in seconds of the ``modality`` windows of a trial ``duration_s`` long.

    Raises
    ------
    RecordingError
        The trial is shorter than :meth:`TrialSpec.min_duration_s`; the message names ``path``.
    """
    count, length = spec.windows(modality)
    need = spec.min_duration_s(modality)
    if duration_s < need - 1e-6:
        raise RecordingError(path, f"the trial is {duration_s:.2f} s long; its {count} {modality.upper()} windows of {length:g} s "
                                   f"need {need:.2f} s. Use longer trials or fewer windows (TrialSpec).")  # fmt: skip
    starts = np.linspace(0.0, duration_s - length, count) if count > 1 else np.zeros(1)
    return [(float(s), float(s) + length) for s in starts]


def av_spans(duration_s: float, spec: TrialSpec, path: str | Path) -> list[tuple[float, float]]:
    """The trial's AV windows: :func:`even_spans` of 'av'."""
    return even_spans(duration_s, spec, "av", path)


def eeg_spans(duration_s: float, spec: TrialSpec, path: str | Path) -> list[tuple[float, float]]:
    """The trial's EEG windows: :func:`even_spans` of 'eeg' (as ``preprocessing.eeg.eeg_windows`` with ``count`` cuts them)."""
    return even_spans(duration_s, spec, "eeg", path)


def av_window_spec(duration_s: float, spec: TrialSpec, path: str | Path) -> WindowSpec:
    """The WindowSpec whose :meth:`~WindowSpec.spans` of a ``duration_s`` recording are :func:`av_spans`.

    The hop between evenly spread windows, ``(duration - length) / (count - 1)``, makes
    ``WindowSpec.spans`` place exactly ``count`` windows, the last ending at ``duration_s``.
    """
    spans = av_spans(duration_s, spec, path)
    hop = spans[1][0] - spans[0][0] if len(spans) > 1 else spec.av_window.length_s
    return replace(spec.av_window, hop_s=max(hop, 1e-6))


#: Columns a trial manifest must have (``audio`` may be left out).
MANIFEST_COLUMNS = ("subject", "trial", "label", "eeg", "video", "eeg_rate", "mat_key", "channels")


@dataclass(frozen=True)
class Trial:
    """One row of a trial manifest: the files of a trial and how to read its EEG.

    Attributes
    ----------
    subject : int
    trial : str
    label : str
    eeg : Path
        Absolute path of the EEG file.
    video, audio : Path | None
        The .mp4 and a separate .wav, where given.
    eeg_rate : float
        Sampling rate of the EEG in Hz.
    mat_key : str | None
        The .mat variable of the EEG; None for EDF/BDF (or a .mat's only 2-D variable).
    channels : tuple of str | None
        Channel names (a .mat's rows, or the EDF/BDF channels to keep); None: all, unnamed.
    """

    subject: int
    trial: str
    label: str
    eeg: Path
    video: Path | None
    audio: Path | None
    eeg_rate: float
    mat_key: str | None
    channels: tuple[str, ...] | None

    def read_eeg(self) -> EEGRecording:
        """The trial's EEG, (channels, samples) in uV (:func:`preprocessing.eeg.read_eeg`)."""
        return read_eeg(self.eeg, rate=self.eeg_rate, mat_key=self.mat_key, channels=self.channels)


def read_trial_manifest(path: str | Path) -> list[Trial]:
    """The trials a manifest CSV lists (see the module docstring for its columns).

    Raises
    ------
    ValueError
        A column is missing; a row lacks a value, has a subject or rate that is not a number,
        repeats a (subject, trial), or names a file that is not there. The message gives the
        manifest's line and the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such manifest; give the CSV that lists the trials.")
    with path.open(newline="") as f:
        return parse_trial_manifest(f, where=str(path), locate=lambda name: _beside(path, name))


def _beside(manifest: Path, name: str) -> Path | None:
    file = (manifest.parent / name).resolve()
    return file if file.is_file() else None


def parse_trial_manifest(lines: Iterable[str], *, where: str, locate: Callable[[str], Path | None]) -> list[Trial]:
    """The trials of a manifest's ``lines``, wherever its files are: ``locate`` turns each file
    name the manifest gives (relative to it) into the file's path, or None where there is none.

    ``where`` names the manifest in messages. :func:`read_trial_manifest` locates files beside
    the manifest on disk; an archive of a trial folder may locate them among its members instead.

    Raises
    ------
    ValueError
        As :func:`read_trial_manifest`.
    """
    reader = csv.DictReader(lines)
    missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(f"{where}: the columns {missing} are missing; a trial manifest has {', '.join(MANIFEST_COLUMNS)} (and audio).")
    trials = [_trial(f"{where}, line {line}", row, locate) for line, row in enumerate(reader, start=2)]
    if not trials:
        raise ValueError(f"{where}: no trials listed.")
    seen: set[tuple[int, str]] = set()
    for line, t in enumerate(trials, start=2):
        if (t.subject, t.trial) in seen:
            raise ValueError(f"{where}, line {line}: subject {t.subject} has trial {t.trial!r} twice; give each trial its own name.")
        seen.add((t.subject, t.trial))
    return trials


def _trial(where: str, row: dict[str, str | None], locate: Callable[[str], Path | None]) -> Trial:
    value = {k: (row.get(k) or "").strip() for k in (*MANIFEST_COLUMNS, "audio")}
    for column in ("subject", "trial", "label", "eeg", "eeg_rate"):
        if not value[column]:
            raise ValueError(f"{where}: {column} is empty; every trial needs subject, trial, label, eeg and eeg_rate.")
    if not value["subject"].isdigit():
        raise ValueError(f"{where}: subject {value['subject']!r} is not a number; number the subjects (1, 2, ...).")
    try:
        rate = float(value["eeg_rate"])
    except ValueError:
        raise ValueError(f"{where}: eeg_rate {value['eeg_rate']!r} is not a number of Hz.") from None
    files = {}
    for column in ("eeg", "video", "audio"):
        if value[column]:
            file = locate(value[column])
            if file is None:
                raise ValueError(f"{where}: the {column} file {value[column]} is not there; correct the path (relative to the manifest).")
            files[column] = file
    # the name the manifest gives, not the located path: an archive's member is unpacked under a generated name
    if PurePosixPath(value["eeg"].replace("\\", "/")).suffix.lower() not in EEG_SUFFIXES:
        raise ValueError(f"{where}: {value['eeg']} is not an EEG file; give a {', '.join(EEG_SUFFIXES)} file.")
    channels = tuple(c for c in re.split(r"[;\s]+", value["channels"]) if c) or None
    return Trial(int(value["subject"]), value["trial"], value["label"], files["eeg"], files.get("video"), files.get("audio"), rate,
                 value["mat_key"] or None, channels)  # fmt: skip
