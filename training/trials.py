"""Trials: one person, one stimulus, about 21 s of face, voice and EEG, with a label.

Three sources, each giving labelled EEG recordings (:class:`EEGTrial`) split by subject:

- a **trial manifest** CSV (:func:`preprocessing.trial.read_trial_manifest`, where its columns are
  described), one row per trial, laid out as one folder per subject, e.g. ``s01/t01.mp4``,
  ``s01/t01.wav``, ``s01/t01.mat``;
- a **SEED** folder (:func:`read_seed`) [1]_: one ``.mat`` per session, named
  ``SUBJECT_DATE.mat``, with one variable per film clip (``djc_eeg1`` ... ``djc_eeg15``; the
  prefix is the subject's initials), each 62 channels x samples at 200 Hz (the preprocessed
  release), in uV; labels from ``label.mat`` (variable ``label``) or :data:`SEED_LABELS`;
- a **DEAP** folder (:func:`read_deap`) [2]_: the preprocessed Python release, ``s01.dat`` ...
  ``s32.dat``, each a pickle of ``data`` (40 trials, 40 channels, 8064 samples at 128 Hz; the
  first 32 channels are EEG, in uV, and the first 3 s are a pre-trial baseline, dropped here)
  and ``labels`` (40 trials x valence, arousal, dominance, liking ratings 1..9).

The original system trained on subjects 1-30, validated on 31-36 and tested on 37-42
(:data:`PAPER_SUBJECTS`); :func:`subject_split` keeps that split where the data has those
subjects and otherwise splits in the same proportions (:func:`ordered_split`). A
:class:`SubjectSplit` is also how RAVDESS actors and audio-video speakers are split, and its
:meth:`~SubjectSplit.indices` picks the examples of each subset.

References
----------
.. [1] Zheng W.-L., Lu B.-L. (2015). Investigating critical frequency bands and channels for
       EEG-based emotion recognition with deep neural networks. IEEE TAMD 7(3).
.. [2] Koelstra S. et al. (2012). DEAP: a database for emotion analysis using physiological
       signals. IEEE Trans. Affective Computing 3(1).
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from preprocessing.eeg import EEGRecording
from preprocessing.trial import Trial

__all__ = [
    "DEAP_CHANNELS",
    "DEAP_RATE",
    "DEAP_TARGETS",
    "PAPER_SUBJECTS",
    "SEED_CHANNELS",
    "SEED_CLASSES",
    "SEED_LABELS",
    "SEED_RATE",
    "SUBSETS",
    "EEGTrial",
    "SubjectSplit",
    "deap_classes",
    "load_eeg_trials",
    "ordered_split",
    "parse_subjects",
    "read_deap",
    "read_seed",
    "subject_split",
]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class EEGTrial:
    """A labelled EEG recording of one trial of one subject."""

    subject: int
    trial: str
    label: str
    recording: EEGRecording


def load_eeg_trials(trials: Iterable[Trial]) -> list[EEGTrial]:
    """Read the EEG of every trial (:meth:`Trial.read_eeg`), in order."""
    return [EEGTrial(t.subject, t.trial, t.label, t.read_eeg()) for t in trials]


def parse_subjects(text: str) -> tuple[int, ...]:
    """Subject numbers of a command-line setting: '1-30', '1,2,5' or '1-3,7'."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return tuple(out)


#: The subsets of a split, in the order a split lists them.
SUBSETS = ("train", "val", "test")


@dataclass(frozen=True)
class SubjectSplit:
    """Subjects of each subset; no subject is in two."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    def __post_init__(self) -> None:
        a, b, c = set(self.train), set(self.val), set(self.test)
        overlap = (a & b) | (a & c) | (b & c)
        if overlap:
            raise ValueError(f"subjects {sorted(overlap)} are in more than one subset of the split.")

    def subset(self, subject: int) -> str | None:
        """'train', 'val', 'test' or None."""
        for name in SUBSETS:
            if subject in getattr(self, name):
                return name
        return None

    def indices(self, subjects: np.ndarray) -> dict[str, np.ndarray]:
        """Indices of the examples of each subset, given each example's subject (N,); examples
        of subjects in no subset are in none."""
        return {name: np.flatnonzero(np.isin(subjects, getattr(self, name))) for name in SUBSETS}

    def to_dict(self) -> dict[str, list[int]]:
        return {name: list(getattr(self, name)) for name in SUBSETS}


#: The original system's split: subjects 1-30 train, 31-36 validate, 37-42 test.
PAPER_SUBJECTS = SubjectSplit(tuple(range(1, 31)), tuple(range(31, 37)), tuple(range(37, 43)))


def subject_split(subjects: Iterable[int], split: SubjectSplit = PAPER_SUBJECTS) -> SubjectSplit:
    """``split`` over the subjects present, or a split of the same proportions.

    Where each of ``split``'s subsets has a subject present, those present make the split and
    the others are left out (logged). Otherwise the sorted subjects are split in ``split``'s
    proportions (6/42 each for validation and test, at least one each): the last ones test,
    the ones before them validate, the rest train.

    Raises
    ------
    ValueError
        Fewer than 3 subjects.
    """
    present = sorted({int(s) for s in subjects})
    kept = SubjectSplit(*(tuple(s for s in getattr(split, n) if s in present) for n in SUBSETS))
    if kept.train and kept.val and kept.test:
        left = [s for s in present if kept.subset(s) is None]
        if left:
            log.warning("subjects %s are in no subset of the split and are left out", left)
        return kept
    if len(present) < 3:
        raise ValueError(f"{len(present)} subjects cannot be split into training, validation and test subjects; give 3 or more.")
    total = len(split.train) + len(split.val) + len(split.test)
    n_test = max(1, round(len(present) * len(split.test) / total))
    n_val = max(1, round(len(present) * len(split.val) / total))
    return ordered_split(present, min(n_val, len(present) - n_test - 1), n_test)


def ordered_split(subjects: Iterable[int], n_val: int, n_test: int) -> SubjectSplit:
    """The sorted subjects: the last ``n_test`` test, the ``n_val`` before them validate, the rest train.

    Raises
    ------
    ValueError
        Too few subjects to leave one for training.
    """
    present = sorted({int(s) for s in subjects})
    if len(present) < n_val + n_test + 1:
        raise ValueError(f"{len(present)} subjects cannot give {n_val} validation, {n_test} test and any training subjects.")
    cut = len(present) - n_val - n_test
    return SubjectSplit(tuple(present[:cut]), tuple(present[cut : cut + n_val]), tuple(present[cut + n_val :]))


# --- SEED -------------------------------------------------------------------------------------

#: SEED's label of each of its 15 film clips: 1 positive, 0 neutral, -1 negative.
SEED_LABELS = (1, 0, -1, -1, 0, 1, -1, 0, 1, 1, 0, -1, 0, 1, -1)
#: Class names in index order; SEED's label v is class v + 1.
SEED_CLASSES = ("negative", "neutral", "positive")
SEED_RATE = 200.0  # Hz, the preprocessed release
#: The 62 channels of SEED's ESI NeuroScan cap, in the files' row order (its channel-order.xlsx).
SEED_CHANNELS = (
    "FP1", "FPZ", "FP2", "AF3", "AF4", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "FT7", "FC5",
    "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8",
    "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8", "P7", "P5", "P3", "P1", "PZ", "P2", "P4",
    "P6", "P8", "PO7", "PO5", "PO3", "POZ", "PO4", "PO6", "PO8", "CB1", "O1", "OZ", "O2", "CB2"
)  # fmt: skip
_SEED_TRIAL = re.compile(r"^[A-Za-z]+_eeg(\d+)$")


def read_seed(folder: str | Path, labels: Sequence[int] | None = None) -> list[EEGTrial]:
    """The film-clip trials of a SEED folder (``Preprocessed_EEG``), labelled.

    Parameters
    ----------
    folder : str | Path
        Holds ``SUBJECT_DATE.mat`` sessions (e.g. ``1_20131027.mat``) and optionally
        ``label.mat``.
    labels : sequence of int | None
        SEED labels (1, 0, -1) of the trials in order; None: ``label.mat``'s, or
        :data:`SEED_LABELS`.

    Returns
    -------
    list of EEGTrial
        Labels named by :data:`SEED_CLASSES`; trial ``"DATE/N"`` (session and clip number).

    Raises
    ------
    ValueError
        No session files, a session without trial variables, a trial without a label, or a
        trial that is not 62 x samples; the message names the file.
    """
    import scipy.io

    folder = Path(folder)
    if labels is None:
        label_file = folder / "label.mat"
        labels = np.ravel(scipy.io.loadmat(label_file)["label"]).astype(int).tolist() if label_file.is_file() else SEED_LABELS
    sessions = sorted(p for p in folder.glob("*.mat") if re.fullmatch(r"\d+_\d+", p.stem))
    if not sessions:
        raise ValueError(f"{folder}: no SEED sessions (SUBJECT_DATE.mat, e.g. 1_20131027.mat); give the Preprocessed_EEG folder.")
    out = []
    for path in sessions:
        subject, date = path.stem.split("_")
        variables = scipy.io.loadmat(path)
        found = sorted((int(m.group(1)), k) for k in variables if (m := _SEED_TRIAL.match(k)))
        if not found:
            raise ValueError(
                f"{path.name}: no trial variables like djc_eeg1; it has {sorted(k for k in variables if not k.startswith('__'))}."
            )
        for number, key in found:
            if not 1 <= number <= len(labels):
                raise ValueError(f"{path.name}: {key} has no label ({len(labels)} labels given); give one label per trial.")
            data = np.asarray(variables[key], np.float64)
            if data.ndim != 2 or len(data) != len(SEED_CHANNELS):
                raise ValueError(f"{path.name}: {key} has shape {data.shape}; SEED trials are {len(SEED_CHANNELS)} channels x samples.")
            label = SEED_CLASSES[labels[number - 1] + 1]
            out.append(EEGTrial(int(subject), f"{date}/{number}", label, EEGRecording(data, SEED_RATE, tuple(SEED_CHANNELS), path)))
    return out


# --- DEAP -------------------------------------------------------------------------------------

#: The 32 EEG channels of DEAP's preprocessed files (Geneva order), rows 0..31 of ``data``.
DEAP_CHANNELS = (
    "Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1", "Oz", "Pz",
    "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2", "P4", "P8", "PO4", "O2"
)  # fmt: skip
DEAP_RATE = 128.0  # Hz
_DEAP_BASELINE_S = 3.0  # each preprocessed trial starts with 3 s before the video
#: Class sets for DEAP's ratings: high means a rating above 5 (of 1..9).
DEAP_TARGETS = {
    "quadrant": ("LVLA", "LVHA", "HVLA", "HVHA"),  # low/high valence x low/high arousal
    "valence": ("low valence", "high valence"),
    "arousal": ("low arousal", "high arousal"),
}


def deap_classes(ratings: np.ndarray, target: str = "quadrant") -> np.ndarray:
    """Class indices into ``DEAP_TARGETS[target]`` of DEAP ratings.

    ``ratings``: (n_trials, 4) valence, arousal, dominance, liking on 1..9; a rating above 5
    is high. Quadrant index = 2 * high valence + high arousal.
    """
    if target not in DEAP_TARGETS:
        raise ValueError(f"target must be one of {sorted(DEAP_TARGETS)}, got {target!r}.")
    high = np.asarray(ratings)[:, :2] > 5
    return {"quadrant": 2 * high[:, 0] + high[:, 1], "valence": high[:, 0], "arousal": high[:, 1]}[target].astype(np.int64)


def read_deap(folder: str | Path, target: str = "quadrant") -> list[EEGTrial]:
    """The trials of DEAP's preprocessed Python files (``sXX.dat``) in ``folder``, labelled.

    Returns
    -------
    list of EEGTrial
        The 32 EEG channels (:data:`DEAP_CHANNELS`) at 128 Hz in uV, without the 3 s baseline;
        subject XX; trial ``"1"``..``"40"``; labels named by ``DEAP_TARGETS[target]``.

    Raises
    ------
    ValueError
        No ``sXX.dat`` files, or one that is not a pickle of ``data`` (trials, >= 32 channels,
        samples) and ``labels`` (trials, 4); the message names the file.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.glob("s*.dat") if re.fullmatch(r"s\d+", p.stem))
    if not files:
        raise ValueError(f"{folder}: no DEAP files (s01.dat ...); give the data_preprocessed_python folder.")
    names = DEAP_TARGETS.get(target)
    out = []
    for path in files:
        try:
            with path.open("rb") as f:
                content = pickle.load(f, encoding="latin1")  # written by Python 2
            data, ratings = np.asarray(content["data"], np.float64), np.asarray(content["labels"])
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path.name}: not a DEAP preprocessed file ({e!r}); it must pickle a dict of 'data' and 'labels'.") from e
        if data.ndim != 3 or data.shape[1] < len(DEAP_CHANNELS) or ratings.shape != (len(data), 4):
            raise ValueError(f"{path.name}: data {data.shape} and labels {ratings.shape}; DEAP has (trials, 40, samples) and (trials, 4).")
        classes = deap_classes(ratings, target)
        start = int(_DEAP_BASELINE_S * DEAP_RATE)
        subject = int(path.stem[1:])
        for i, trial in enumerate(data):
            recording = EEGRecording(trial[: len(DEAP_CHANNELS), start:], DEAP_RATE, tuple(DEAP_CHANNELS), path)
            out.append(EEGTrial(subject, str(i + 1), names[classes[i]], recording))
    return out
