"""RAVDESS speech: file names, labels, the actor-independent split, and the decoded audio.

The data folder (``/work/shared/data/ravdess-speech``, see its README.md) holds 19 of the 24
actors of the Ryerson Audio-Visual Database of Emotional Speech and Song [1]_, speech only,
60 FLAC recordings each at 22,050 Hz, and ``labels.csv``. Licence CC BY-NC-SA 4.0: models trained
on it are for non-commercial use only.

File names have seven two-digit fields, ``03-01-EE-II-SS-RR-AA``: modality (03 audio only),
vocal channel (01 speech), emotion (01-08), intensity (01 normal, 02 strong), statement (01, 02),
repetition (01, 02) and actor (01-24; odd male, even female).

Split
-----
Chumachenko et al. [2]_ test on actors 5, 10, 16, 19 and validate on 11, 13, 18, 22. Actors 5
and 22 are absent here, so :func:`derive_split` replaces each absent actor by the nearest present
actor of the same sex that no split uses yet (ties go to the lower number): 5 -> 3, 22 -> 20.
That gives the same shape, four test and four validation actors, two of each sex in both::

    test        3 M, 10 F, 16 F, 19 M                      240 clips
    validation 11 M, 13 M, 18 F, 20 F                      240 clips
    train       1, 2, 4, 6, 7, 8, 9, 12, 14, 15, 17        660 clips (5 M, 6 F)

Audio
-----
:func:`load_audio` decodes every clip into memory (1,140 clips, about 1.5 s and 370 MB); the
features are computed per window from the audio (see :mod:`training.speech`), so there is no
feature cache that could drift from what serving computes.

References
----------
.. [1] Livingstone S.R., Russo F.A. (2018). The Ryerson Audio-Visual Database of Emotional Speech
       and Song (RAVDESS). PLoS ONE 13(5): e0196391. https://doi.org/10.1371/journal.pone.0196391
.. [2] Chumachenko K., Iosifidis A., Gabbouj M. (2022). Self-attention fusion for audiovisual
       emotion recognition with incomplete data. ICPR. arXiv:2201.11095.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from models.emotions import RAVDESS
from preprocessing.audio_features import SAMPLE_RATE
from training.metrics import per_group
from training.trials import SubjectSplit

__all__ = [
    "EMOTIONS",
    "EMOTIONS_5",
    "EMOTIONS_8",
    "LICENCE",
    "Clip",
    "PAPER_SPLIT",
    "actor_groups",
    "sex_of",
    "parse_name",
    "read_clips",
    "derive_split",
    "read_audio",
    "load_audio",
]

log = logging.getLogger(__name__)

#: The 8-class label set, in the models' output order (class index = emotion code - 1).
EMOTIONS_8 = RAVDESS
#: The 5 classes of the original system's trials: neutral, calm, happy, sad, angry.
EMOTIONS_5 = RAVDESS[:5]
#: Emotion code (file name field 3) -> name, as the RAVDESS documentation numbers them.
EMOTIONS = dict(enumerate(EMOTIONS_8, start=1))
LICENCE = (
    "CC BY-NC-SA 4.0 (RAVDESS, Livingstone & Russo 2018): attribution, non-commercial, share-alike. "
    "These weights were trained on it and are for non-commercial use only."
)


@dataclass(frozen=True)
class Clip:
    """One RAVDESS recording and the seven fields of its name.

    Attributes
    ----------
    path : Path
        Absolute path of the FLAC file.
    modality : int
        1 full AV, 2 video only, 3 audio only.
    channel : int
        1 speech, 2 song.
    emotion : int
        1-8, see :data:`EMOTIONS`.
    intensity : int
        1 normal, 2 strong.
    statement : int
        1 "Kids are talking by the door", 2 "Dogs are sitting by the door".
    repetition : int
        1 or 2.
    actor : int
        1-24; odd actors are male, even female.
    """

    path: Path
    modality: int
    channel: int
    emotion: int
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def sex(self) -> str:
        return sex_of(self.actor)

    @property
    def emotion_name(self) -> str:
        return EMOTIONS[self.emotion]

    @property
    def label(self) -> int:
        """Class index in :data:`EMOTIONS_8` (the model's output order)."""
        return self.emotion - 1


def sex_of(actor: int) -> str:
    """RAVDESS: odd actors are male, even ones female."""
    return "male" if actor % 2 else "female"


def actor_groups(truth: np.ndarray, predicted: np.ndarray, actors: Sequence[int]) -> dict[str, dict[str, float]]:
    """Accuracy per actor ('actor 03 (male)') and per sex of clips (n,) spoken by ``actors`` (n,)."""
    return {"per_actor": per_group(truth, predicted, [f"actor {a:02d} ({sex_of(a)})" for a in actors]),
            "per_sex": per_group(truth, predicted, [sex_of(a) for a in actors])}  # fmt: skip


def parse_name(path: str | Path) -> Clip:
    """Parse a RAVDESS file name such as ``Actor_01/03-01-05-02-01-01-01.flac``.

    Raises
    ------
    ValueError
        If the name does not have seven two-digit fields with values in their ranges.
    """
    path = Path(path)
    parts = path.stem.split("-")
    if len(parts) != 7 or not all(len(p) == 2 and p.isdigit() for p in parts):
        raise ValueError(f"{path.name}: not a RAVDESS name; expected seven two-digit fields like 03-01-05-02-01-01-01.")
    modality, channel, emotion, intensity, statement, repetition, actor = map(int, parts)
    ranges = dict(modality=(1, 3), channel=(1, 2), emotion=(1, 8), intensity=(1, 2), statement=(1, 2),
                  repetition=(1, 2), actor=(1, 24))  # fmt: skip
    values = dict(modality=modality, channel=channel, emotion=emotion, intensity=intensity, statement=statement,
                  repetition=repetition, actor=actor)  # fmt: skip
    for field, (lo, hi) in ranges.items():
        if not lo <= values[field] <= hi:
            raise ValueError(f"{path.name}: {field} {values[field]:02d} is outside {lo:02d}-{hi:02d}.")
    if emotion == 1 and intensity == 2:
        raise ValueError(f"{path.name}: neutral has no strong intensity in RAVDESS.")
    return Clip(path, **values)


def read_clips(root: str | Path) -> list[Clip]:
    """All clips listed in ``root/labels.csv``, checked against their file names.

    Raises
    ------
    FileNotFoundError
        If labels.csv or a file it lists is missing.
    ValueError
        If a row disagrees with its file name.
    """
    root = Path(root)
    labels = root / "labels.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"{labels} not found: --data must be the ravdess-speech folder (README.md, labels.csv).")
    clips = []
    with labels.open(newline="") as f:
        for row in csv.DictReader(f):
            clip = parse_name(root / row["file"])
            if (int(row["actor"]), int(row["emotion_code"]), row["emotion"]) != (
                clip.actor,
                clip.emotion,
                clip.emotion_name,
            ):
                raise ValueError(f"labels.csv row for {row['file']} disagrees with its file name.")
            if not clip.path.is_file():
                raise FileNotFoundError(f"{clip.path} is listed in labels.csv but missing.")
            clips.append(clip)
    return clips


PAPER_SPLIT = SubjectSplit(
    train=(1, 2, 3, 4, 6, 7, 8, 9, 12, 14, 15, 17, 20, 21, 23, 24),
    val=(11, 13, 18, 22),
    test=(5, 10, 16, 19),
)


def derive_split(available: Sequence[int], paper: SubjectSplit = PAPER_SPLIT) -> SubjectSplit:
    """The paper's split, with absent validation/test actors replaced by present ones.

    Each absent actor is replaced by the nearest available actor of the same sex (same parity)
    that is not already a validation or test actor (ties to the lower number); every other
    available actor trains.

    Parameters
    ----------
    available : sequence of int
        Actors present in the data.

    Returns
    -------
    SubjectSplit
        Same number of validation and test actors as ``paper``, same sexes.

    Raises
    ------
    ValueError
        If no replacement of the right sex is left.
    """
    available = sorted(set(available))
    taken = {a for a in (*paper.val, *paper.test) if a in available}
    subsets = {}
    for name in ("test", "val"):
        chosen = []
        for actor in getattr(paper, name):
            if actor not in available:
                candidates = [a for a in available if a % 2 == actor % 2 and a not in taken]
                if not candidates:
                    raise ValueError(f"no available actor of the same sex can replace absent actor {actor}.")
                actor = min(candidates, key=lambda a: (abs(a - actor), a))
                taken.add(actor)
            chosen.append(actor)
        subsets[name] = tuple(sorted(chosen))
    train = tuple(a for a in available if a not in taken)
    return SubjectSplit(train=train, val=subsets["val"], test=subsets["test"])


def read_audio(path: Path) -> np.ndarray:
    """Mono float32 samples of a RAVDESS FLAC at 22,050 Hz, shape (n_samples,)."""
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path.name}: {rate} Hz, expected {SAMPLE_RATE} Hz (the folder was resampled to it).")
    return samples.mean(axis=1)


def load_audio(clips: Sequence[Clip]) -> list[np.ndarray]:
    """The decoded samples of every clip (:func:`read_audio`), in order."""
    log.info("decoding %d clips", len(clips))
    return [read_audio(c.path) for c in clips]
