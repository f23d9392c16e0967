"""Voice activity: which windows a speech model may judge."""

from __future__ import annotations

import numpy as np
import pytest

from preprocessing.synthesis import speech
from preprocessing.voice import VoiceSpec, frame_levels, voice_present

RATE = 22_050
SAMPLES = 79_380  # one 3.6 s window


@pytest.fixture(scope="module")
def spoken() -> np.ndarray:
    """One window of espeak-ng speech."""
    return speech("Kids are talking by the door.", RATE, 3.6)[:SAMPLES]


def noise(level_dbfs: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 10 ** (level_dbfs / 20), SAMPLES).astype(np.float32)


def test_speech_is_a_voice(spoken) -> None:
    assert voice_present(spoken, RATE)


def test_speech_over_room_noise_is_a_voice(spoken) -> None:
    assert voice_present(spoken + noise(-50), RATE)


def test_quiet_speech_at_the_end_of_a_window(spoken) -> None:
    """A second of speech, 20 dB down, after 2.6 s of silence."""
    window = np.zeros(SAMPLES, np.float32)
    window[-RATE:] = 0.1 * spoken[RATE : 2 * RATE]
    assert voice_present(window, RATE)


@pytest.mark.parametrize(
    "window",
    [np.zeros(SAMPLES, np.float32), noise(-60), noise(-30), np.full(SAMPLES, 0.3, np.float32)],
    ids=["digital silence", "quiet room", "steady loud noise", "DC offset"],
)
def test_silence_and_steady_noise_are_not(window) -> None:
    assert not voice_present(window, RATE)


def test_no_audio_is_no_voice() -> None:
    assert not voice_present(None, RATE)
    assert not voice_present(np.zeros(0, np.float32), RATE)


def test_frame_levels_in_dbfs() -> None:
    full_scale_sine = np.sin(2 * np.pi * 441 * np.arange(RATE) / RATE)
    np.testing.assert_allclose(frame_levels(full_scale_sine, RATE), -3.01, atol=0.05)
    assert frame_levels(np.zeros(RATE), RATE).min() == -120.0


def test_thresholds_are_settings(spoken) -> None:
    assert not voice_present(spoken, RATE, VoiceSpec(floor_dbfs=0.0))
