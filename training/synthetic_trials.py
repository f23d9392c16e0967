"""Synthetic trials: 6 audio-video windows and 21 s of EEG per subject, class and trial, in which
each modality carries only part of the class.

A trial of subject s showing class c (its k-th) is

- 6 windows of :func:`training.synthetic_av.synthetic_window` (the subject as speaker, indices
  ``6 k .. 6 k + 5``), face and voice showing the AV prototype ``av_codes[c]``;
- one raw EEG recording of :func:`training.synthetic_eeg.synthetic_trial_eeg` (index k), its
  band power showing the EEG prototype ``eeg_codes[c]``.

With the default codes over the 5 classes neutral, calm, happy, sad, angry, the AV modality
tells {neutral, calm} from {happy, sad} from angry, and the EEG {neutral, happy} from {calm,
sad} from angry: each alone can reach 0.6 accuracy at best (3 of 5 classes come in pairs it
cannot split), and only both together tell all five apart. A fusion that beats both modalities
alone has therefore combined them.

Subjects are generated from their id and the seed alone, as in the two generators used: train
window models on some subject ids and fusions and tests on others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.card import ModelCard
from preprocessing.audio_features import mfcc
from preprocessing.faces import CropSpec
from preprocessing.trial import TrialSpec
from training.av import AVWindows
from training.eeg import eeg_inputs
from training.fusion import TrialInputs
from training.ravdess import EMOTIONS_5
from training.synthetic_av import SyntheticSpec, synthetic_window
from training.synthetic_eeg import CHANNELS_14, SyntheticEEGSpec, synthetic_trial_eeg

__all__ = ["SyntheticTrialSpec", "synthetic_trials"]


@dataclass(frozen=True)
class SyntheticTrialSpec:
    """What synthetic trials look like.

    Attributes
    ----------
    labels : tuple of str
        Class names.
    av_codes : tuple of int
        The face and voice prototype of :mod:`training.synthetic_av` each class shows (0
        neutral, 2 happy, 4 angry: three looks for five classes).
    eeg_codes : tuple of int
        The band-power prototype of :mod:`training.synthetic_eeg` each class shows (1 calm, 4
        angry, 3 sad: three rhythms for five classes, paired unlike the AV ones).
    crop : CropSpec
        Face crops of the AV windows; the AV model's (``AVConfig.crop``).
    channels : tuple of str
        EEG channels; the EEG model's (its card's ``preprocessing["channels"]``).
    duration_s : float
        Length of each trial's EEG in seconds.
    trial : TrialSpec
        Windows per trial of each modality.
    """

    labels: tuple[str, ...] = EMOTIONS_5
    av_codes: tuple[int, ...] = (0, 0, 2, 2, 4)  # AV groups (0, 0, 1, 1, 2)
    eeg_codes: tuple[int, ...] = (1, 4, 1, 4, 3)  # EEG groups (0, 1, 0, 1, 2)
    crop: CropSpec = field(default_factory=lambda: CropSpec(size=48, grey=False))
    channels: tuple[str, ...] = CHANNELS_14
    duration_s: float = 21.0
    trial: TrialSpec = field(default_factory=TrialSpec)

    @property
    def av(self) -> SyntheticSpec:
        """The audio-video generator's settings (face and voice show the same code)."""
        return SyntheticSpec(labels=self.labels, face_codes=self.av_codes, audio_codes=self.av_codes, crop=self.crop)

    @property
    def eeg(self) -> SyntheticEEGSpec:
        """The EEG generator's settings."""
        return SyntheticEEGSpec(labels=self.labels, codes=self.eeg_codes, channels=self.channels, duration_s=self.duration_s)

    def to_dict(self) -> dict:
        return {"av": self.av.to_dict(), "eeg": self.eeg.to_dict(), "trial": self.trial.to_dict()}


def synthetic_trials(
    spec: SyntheticTrialSpec, subjects: Sequence[int], per_class: int, eeg_card: ModelCard, *, seed: int = 0
) -> TrialInputs:
    """``per_class`` trials of every class for every subject, as the window models' inputs.

    ``eeg_card``: the EEG model's card, whose preprocessing (filters, rate, standardisation)
    makes each trial's EEG windows, exactly as for recorded trials.

    Returns
    -------
    TrialInputs
        N = len(subjects) * len(labels) * per_class trials, every modality present.
    """
    A = spec.trial.av_windows
    av_parts, eeg, labels, owners = [], [], [], []
    for subject in subjects:
        faces, found, audio = [], [], []
        for label in range(len(spec.labels)):
            for k in range(per_class):
                for w in (synthetic_window(spec.av, subject, label, seed=seed, index=A * k + i) for i in range(A)):
                    faces.append(w.faces)
                    found.append(w.face_found)
                    audio.append(w.audio)
                recording = synthetic_trial_eeg(spec.eeg, subject, label, seed=seed, index=k)
                eeg.append(eeg_inputs(recording, eeg_card, count=spec.trial.eeg_windows))
                labels.append(label)
                owners.append(subject)
        n = len(audio)  # one subject at a time: the raw audio is not kept
        av_parts.append((np.stack(faces), np.stack(found), mfcc(np.stack(audio)).astype(np.float32), np.ones(n, bool)))
    faces, found, feats, present = (np.concatenate(p) for p in zip(*av_parts))
    labels, owners = np.array(labels, np.int64), np.array(owners, np.int64)
    av = AVWindows(faces, found, feats, present, np.repeat(labels, A), np.repeat(owners, A), tuple(spec.labels))
    N = len(labels)
    return TrialInputs(av=av, av_present=np.ones(N, bool), eeg=np.stack(eeg), eeg_present=np.ones(N, bool), labels=labels,
                       subjects=owners, label_names=tuple(spec.labels))  # fmt: skip
