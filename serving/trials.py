"""Judge trials: a recording of a person with the EEG recorded at the same time, one verdict each.

    analyzer = TrialAnalyzer(EmotionClient("localhost:8001"))
    for trial in read_trial_manifest("session/manifest.csv"):
        print(analyzer.analyze(trial).to_dict())

Each trial goes to Triton's ``emotion_av_eeg`` ensemble as one request: its 6 audio-video windows
(15 face crops and 10 MFCCs each) and its 4 EEG windows (filtered and resampled), made by the same
preprocessing as in training, with the settings the ensemble's config states. A trial without
video, or without EEG, is judged from the other modality alone, and the result says which
modalities were used. Models that never saw real data are "untrained": their answers are withheld.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from preprocessing.audio_features import MfccSpec
from preprocessing.av_inputs import av_arrays
from preprocessing.eeg import EEGRecording, EEGSpec, eeg_windows
from preprocessing.errors import RecordingError
from preprocessing.faces import CropSpec, FaceDetector
from preprocessing.recording import probe
from preprocessing.trial import Trial, TrialSpec, av_spans, av_window_spec, eeg_spans
from preprocessing.windows import read_windows

from .errors import InputError
from .triton_client import EmotionClient

__all__ = ["TRIAL_MODEL", "TrialAnalyzer", "TrialResult"]

TRIAL_MODEL = "emotion_av_eeg"
TRIAL = TrialSpec()  # 6 AV windows of 3.6 s and 4 EEG windows of 5.25 s per trial
OUTPUTS = ["TRIAL_PROBS", "WAVER_PROBS", "AV_WINDOW_PROBS", "EEG_WINDOW_PROBS", "MODALITIES_USED"]


@dataclass(frozen=True)
class TrialResult:
    """The answer for one trial.

    ``probabilities`` (fusion CNN), ``waver``: (classes,) or None where withheld (untrained models)
    or where the trial had nothing to judge; ``av_windows`` (6, classes) and ``eeg_windows``
    (4, classes) likewise; ``used``: (av, eeg) modalities that took part.
    """

    trial: Trial
    labels: tuple[str, ...]
    trained: bool
    used: tuple[bool, bool]
    probabilities: np.ndarray | None
    waver: np.ndarray | None
    av_windows: np.ndarray | None
    eeg_windows: np.ndarray | None
    av_spans: list[tuple[float, float]]
    eeg_spans: list[tuple[float, float]]

    def to_dict(self) -> dict[str, Any]:
        """As ``emofuse analyze --json`` gives a recording: ``verdict`` (the fusion CNN's), ``waver``,
        and ``windows``, the 6 AV windows then the 4 EEG windows, each with its ``modality``."""

        def judged(p: np.ndarray | None) -> dict[str, Any] | None:
            if p is None:
                return None
            return {"label": self.labels[int(np.argmax(p))], "probabilities": {k: round(float(v), 4) for k, v in zip(self.labels, p)}}

        windows = []
        for modality, spans, probs in (("av", self.av_spans, self.av_windows), ("eeg", self.eeg_spans, self.eeg_windows)):
            for i, (start, end) in enumerate(spans):
                answer = judged(None if probs is None else probs[i]) or {"label": None, "probabilities": None}
                windows.append({"modality": modality, "index": i, "start_s": round(start, 3), "end_s": round(end, 3), **answer})
        return {
            "subject": self.trial.subject, "trial": self.trial.trial, "model": TRIAL_MODEL, "mode": "trial",
            "weights": "real" if self.trained else "untrained", "labels": list(self.labels),
            "modalities": {"av": self.used[0], "eeg": self.used[1]},
            "verdict": judged(self.probabilities), "waver": judged(self.waver), "windows": windows,
        }  # fmt: skip


class TrialAnalyzer:
    """Judges trials with the ``emotion_av_eeg`` ensemble of one Triton server."""

    def __init__(self, client: EmotionClient, *, spec: TrialSpec = TRIAL, detector: FaceDetector | None = None) -> None:
        self.client, self.spec = client, spec
        self.detector = detector or FaceDetector()
        self.model = client.model(TRIAL_MODEL)
        self.crop = self.model.settings("crop", CropSpec)
        self.mfcc = self.model.settings("mfcc", MfccSpec)
        self.eeg = self.model.settings("eeg", EEGSpec)
        self.channels = tuple(self.model.parameters["channels"].split(","))

    def inputs(self, trial: Trial) -> tuple[dict[str, np.ndarray], list[tuple[float, float]], list[tuple[float, float]]]:
        """The ensemble's tensors for one trial (batch of 1), and the spans of its AV and EEG windows."""
        av, spans = self._av(trial)
        recording = trial.read_eeg()
        eeg = self._eeg(recording)
        return {**av, "EEG": eeg[None], "EEG_PRESENT": np.ones((1, 1), bool)}, spans, eeg_spans(recording.duration_s, self.spec, recording.path)

    def _av(self, trial: Trial) -> tuple[dict[str, np.ndarray], list[tuple[float, float]]]:
        A, frames, size = self.spec.av_windows, self.spec.av_window.frames, self.crop.size
        if trial.video is None:  # EEG only: nothing seen, nothing heard
            crops = (A, frames, size, size) if self.crop.grey else (A, frames, size, size, 3)
            arrays = {"faces": np.zeros(crops, np.uint8), "face_found": np.zeros((A, frames), bool),
                      "mfcc": np.zeros((A, self.mfcc.n_mfcc, 156), np.float32), "audio_present": np.zeros(A, bool)}  # fmt: skip
            return _named(arrays), []
        info = probe(trial.video)
        window_spec = av_window_spec(info.duration_s, self.spec, trial.video)
        windows = list(read_windows(info, window_spec, crop=self.crop, detector=self.detector))
        audio = None
        if trial.audio is not None:  # a separate track, cut the same way
            track = [w.audio for w in read_windows(probe(trial.audio), window_spec)]
            audio = [track[i] if i < len(track) else None for i in range(len(windows))]
        return _named(av_arrays(windows[:A], audio and audio[:A], self.mfcc)), av_spans(info.duration_s, self.spec, trial.video)

    def _eeg(self, recording: EEGRecording) -> np.ndarray:
        """(4, channels, samples): the model's channels picked by name, filtered, resampled (microvolts)."""
        picked = recording if recording.channels == self.channels else recording.pick(self.channels)
        return eeg_windows(picked, self.eeg, self.spec.eeg_windows)

    def analyze(self, trial: Trial) -> TrialResult:
        """Judge one trial.

        Raises
        ------
        InputError
            A file of the trial cannot be read, has the wrong channels, or is shorter than its windows.
        UpstreamError
            Triton could not answer.
        """
        try:
            inputs, av_at, eeg_at = self.inputs(trial)
        except (RecordingError, ValueError) as err:
            raise InputError(str(err)) from err
        out = self.client.infer(TRIAL_MODEL, inputs, OUTPUTS)
        used = (bool(out["MODALITIES_USED"][0, 0]), bool(out["MODALITIES_USED"][0, 1]))
        shown = self.model.trained and any(used)

        def keep(name: str) -> np.ndarray | None:  # withheld unless trained
            return out[name][0] if shown else None

        return TrialResult(trial, self.model.labels, self.model.trained, used, keep("TRIAL_PROBS"), keep("WAVER_PROBS"),
                           keep("AV_WINDOW_PROBS") if used[0] else None, keep("EEG_WINDOW_PROBS"), av_at, eeg_at)  # fmt: skip


def _named(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`av_arrays` of a trial's windows as the ensemble's tensors, batch of 1."""
    return {
        "FACE_CROPS": arrays["faces"][None],
        "FACE_PRESENT": arrays["face_found"][None],
        "MFCC": arrays["mfcc"][None],
        "AUDIO_PRESENT": arrays["audio_present"][None, :, None],
    }
