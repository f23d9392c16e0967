"""Real preprocessed windows to check exported models on, made without any data set.

A 14.4 s video is generated (:mod:`preprocessing.synthesis`: a photographed face over a room,
espeak-ng speech, H.264 + AAC) and cut into 3.6 s windows by the same preprocessing the service
runs: decoding, face detection and crops, audio features. Its first face is hidden for a while and
its last window is silent, so that the probes hold windows with and without each modality. No
EEG recording exists here: EEG probes are synthetic trials, filtered and windowed by
:mod:`preprocessing.eeg` as in service.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from preprocessing.audio_features import LogMelSpec, MfccSpec, log_mel, mfcc
from preprocessing.eeg import EEGPreprocessing, EEGRecording, eeg_windows
from preprocessing.faces import CropSpec
from preprocessing.recording import probe
from preprocessing.synthesis import SampleSpec, write_sample_video
from preprocessing.voice import VoiceAudioSpec, voice_audio
from preprocessing.windows import Window, WindowSpec, read_windows

__all__ = ["EEG_PROBES_ARE", "PROBES_ARE", "VOICE_PROBES_ARE", "eeg_trials", "face_windows", "log_mel_windows", "mfcc_windows", "voice_windows"]

PROBES_ARE = "real preprocessed windows of a generated 14.4 s video (photographed face, espeak-ng speech)"
VOICE_PROBES_ARE = f"{PROBES_ARE}, at 16 kHz, and its 3 spoken windows again 40 dB quieter"
EEG_PROBES_ARE = "2 trials of generated 21 s EEG at 256 Hz (1/f noise, alpha, 50 Hz hum), filtered and windowed by preprocessing.eeg"
GREY_64 = CropSpec(size=64, grey=True)  # the face model's crops
_SAMPLE = SampleSpec(duration_s=14.4, width=640, height=360, face_height=200, face_spans=((2.0, 14.4),))


@functools.cache
def _windows(crop: CropSpec) -> tuple[Window, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sample_video(Path(tmp) / "probe.mp4", _SAMPLE)
        return tuple(read_windows(probe(path), WindowSpec(), crop=crop))


def face_windows(crop: CropSpec) -> tuple[np.ndarray, np.ndarray]:
    """Face crops (4, 15, S, S[, 3]) uint8 and which frames found a face (4, 15) bool."""
    windows = _windows(crop)
    return np.stack([w.faces for w in windows]), np.stack([w.face_found for w in windows])


def _audio(crop: CropSpec) -> np.ndarray:
    """(4, samples) float32, the last window silenced."""
    audio = np.stack([w.audio for w in _windows(crop)]).astype(np.float32)
    audio[-1] = 0.0
    return audio


def log_mel_windows(spec: LogMelSpec, crop: CropSpec = GREY_64) -> np.ndarray:
    """Log-mel spectrograms (4, n_mels, frames) float32 of the windows' audio."""
    return log_mel(_audio(crop), spec)


def mfcc_windows(spec: MfccSpec, crop: CropSpec = GREY_64) -> np.ndarray:
    """MFCCs (4, n_mfcc, frames) float32 of the windows' audio."""
    return mfcc(_audio(crop), spec)


def voice_windows(spec: VoiceAudioSpec, crop: CropSpec = GREY_64) -> np.ndarray:
    """The windows' audio as the voice-activity model takes it (7, samples) float32: the 4 windows
    (the last silent), then the 3 spoken ones at a hundredth of their amplitude (-40 dB)."""
    audio = voice_audio(_audio(crop), WindowSpec().audio_rate, spec)
    return np.concatenate([audio, 0.01 * audio[:-1]]).astype(np.float32)


def eeg_trials(prep: EEGPreprocessing, windows: int, duration_s: float = 21.0, rate: float = 256.0) -> np.ndarray:
    """(2, windows, channels, samples) float32: two generated trials as :func:`eeg_windows` cuts them
    for a model with ``prep``'s channels and settings (in microvolts, not standardised)."""
    rng = np.random.default_rng(0)
    n, t = int(duration_s * rate), np.arange(int(duration_s * rate)) / rate
    trials = []
    for alpha in (5.0, 20.0):  # microvolts of 10 Hz rhythm: a quiet and a strong one
        spectrum = np.fft.rfft(rng.normal(size=(len(prep.channels), n)))
        pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / rate), 1.0)), n) * 10.0
        data = pink + alpha * np.sin(2 * np.pi * 10.0 * t) + 20.0 * np.sin(2 * np.pi * 50.0 * t)
        recording = EEGRecording(data=data, rate=rate, channels=prep.channels, path=Path("generated.eeg"))
        trials.append(eeg_windows(recording, prep.spec, windows))
    return np.stack(trials).astype(np.float32)
