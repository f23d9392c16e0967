"""Recording conditions for training and measuring the speech model (training.conditions).

Each degradation is checked against the quantity it claims: the level of a gain, the SNR and
colour of added noise, the reverberation time of a room, the pass band of a telephone line.
"""

from __future__ import annotations

import numpy as np
import pytest

from training.conditions import CONDITIONS, KINDS, STUDIO, Condition, RealRecordings, _room_response, add_noise, degrade, gain, reverberate, telephone

SR = 22_050
N = 79_380  # one 3.6 s window


def _tone(freq: float, n: int = N, level: float = 0.5) -> np.ndarray:
    return (level * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)[None, :]


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2)))


def _bursts() -> np.ndarray:
    """Two windows of 'speech': tone bursts in half of the 23 ms frames, silence between."""
    rng = np.random.default_rng(0)
    x = np.zeros((2, N), np.float32)
    for row in x:
        for start in range(0, N - 2048, 4096):
            row[start : start + 2048] = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * np.arange(2048) / SR)
    return x


def test_gain_scales_the_level_and_stores_16_bit_samples() -> None:
    x = _tone(440.0)
    quiet = gain(x, -30.0)
    assert _db(quiet) - _db(x) == pytest.approx(-30.0, abs=0.01)
    np.testing.assert_allclose(quiet * 32767, np.round(quiet * 32767), atol=1e-3)  # on the 16-bit grid
    assert np.abs(gain(x, 20.0)).max() <= 1.0, "clipped as a recorder would"
    assert gain(np.vstack([x, x]), np.array([0.0, -6.0])).shape == (2, N), "a gain per window"


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_noise_is_added_at_the_snr_asked_below_the_speech(snr: float) -> None:
    speech = _bursts()
    noisy = add_noise(speech, snr, 1.0, np.random.default_rng(1))
    noise = noisy - speech
    loud = np.abs(speech) > 0  # the bursts: the speech level is that of its louder frames
    speech_db = 10 * np.log10(np.mean(speech[loud].astype(np.float64) ** 2))
    assert speech_db - _db(noise) == pytest.approx(snr, abs=0.6)


def test_noise_colours_fall_by_their_exponent() -> None:
    """Power in 2-4 kHz against 200-400 Hz: white 0 dB, pink -3 dB per octave (x10 band), brown -6."""
    silence_with_a_level = np.full((1, N), 0.1, np.float32)
    for exponent, expected_db in ((0.0, 10.0), (1.0, 0.0), (2.0, -10.0)):
        noise = add_noise(silence_with_a_level, 0.0, exponent, np.random.default_rng(2)) - 0.1
        power = np.abs(np.fft.rfft(noise[0])) ** 2
        f = np.fft.rfftfreq(N, 1 / SR)
        band = lambda lo, hi: power[(f >= lo) & (f < hi)].sum()  # noqa: E731
        assert 10 * np.log10(band(2000, 4000) / band(200, 400)) == pytest.approx(expected_db, abs=1.0)


@pytest.mark.parametrize("rt60", [0.2, 0.6])
def test_a_room_decays_60_db_in_its_reverberation_time(rt60: float) -> None:
    """Schroeder's backward integral of the impulse response falls 60 dB at RT60 (fitted -5 to -25 dB, T20)."""
    h = _room_response(rt60, SR, np.random.default_rng(3))
    edc = 10 * np.log10(np.cumsum((h**2)[::-1])[::-1] / np.sum(h**2))
    t = np.arange(len(h)) / SR
    fit = (edc <= -5) & (edc >= -25)
    slope = np.polyfit(t[fit], edc[fit], 1)[0]  # dB per second
    assert -60 / slope == pytest.approx(rt60, rel=0.15)
    wet = reverberate(_bursts(), rt60, SR, np.random.default_rng(3))
    assert wet.shape == (2, N) and np.abs(wet).max() == pytest.approx(np.abs(_bursts()).max(), rel=1e-5), "peak level kept"
    assert np.abs(wet[:, 2048 + 200 : 4096]).max() > 0.01, "the pauses fill with the room's tail"


@pytest.mark.parametrize(("freq", "passes"), [(100.0, False), (1000.0, True), (2500.0, True), (6000.0, False)])
def test_the_telephone_band_passes_300_to_3400_hz(freq: float, passes: bool) -> None:
    x = _tone(freq)
    change = _db(telephone(x, SR)[:, SR // 2 :]) - _db(x[:, SR // 2 :])  # after the filter settles
    assert (abs(change) < 1.0) if passes else (change < -20.0), change


def test_training_draws_are_seeded_and_keep_shapes() -> None:
    x = _bursts()
    a, b = (degrade(x, RealRecordings(), SR, np.random.default_rng(7)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == np.float32 and np.abs(a).max() <= 1.0
    assert not np.array_equal(a, x)
    levels = [_db(degrade(x[:1], RealRecordings(reverb_prob=0, noise_prob=0, telephone_prob=0), SR, np.random.default_rng(s)))
              for s in range(40)]  # fmt: skip
    assert min(levels) >= _db(x[:1]) - 30.1 and max(levels) <= _db(x[:1]) + 0.1 and np.std(levels) > 5, "gains drawn in -30..0 dB"
    assert not STUDIO.enabled and RealRecordings().enabled


def test_every_measured_condition_changes_the_audio_but_clean() -> None:
    x = _bursts()
    assert [c.name for c in CONDITIONS][0] == "clean" and len({c.name for c in CONDITIONS}) == len(CONDITIONS)
    for c in CONDITIONS:
        y = c.apply(x, SR, seed=5)
        assert y.shape == x.shape and y.dtype == np.float32
        assert np.array_equal(y, x) == (c.name == "clean"), c.name
    assert np.array_equal(Condition("n", snr_db=10).apply(x, SR, seed=5), Condition("n", snr_db=10).apply(x, SR, seed=5))


def test_keeping_some_kinds_turns_only_the_others_off() -> None:
    real = RealRecordings()
    assert real.keeping(KINDS) == real and real.keeping([]) == STUDIO
    level = real.keeping(["level"])
    assert level.gain_db == real.gain_db and level.reverb_prob == level.noise_prob == level.telephone_prob == 0
    noise = real.keeping(["noise"])
    assert noise.noise_prob == real.noise_prob and noise.gain_db == (0.0, 0.0) and noise.reverb_prob == 0 and noise.enabled
    with pytest.raises(ValueError, match="unknown recording condition 'echo'; choose from level, room, noise, telephone"):
        real.keeping(["level", "echo"])
