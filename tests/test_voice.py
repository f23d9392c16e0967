"""Voice activity: which windows the speech model may judge, decided in Triton by Silero VAD.

Every scene is 14.4 s (4 windows) of audio made here and written as a 16-bit WAV, then analysed
as the service does: decoded, cut into windows, resampled to 16 kHz, sent to the real Triton.

- Speech: one espeak-ng sentence inside each window (four voices), at peak levels of -6, -26 and
  -46 dBFS, and at -26 dBFS mixed with babble (six other espeak-ng voices talking at once) or with
  street-like noise (rumble and hiss, cars passing) at 10 dB SNR. Every window must be voiced.
- Not speech: digital silence, a quiet room, mains hum (50 Hz and harmonics), rectifier buzz
  (100 Hz and harmonics), instrumental music (chords, a plucked melody, a bass line), street
  noise alone. No window may be voiced.

Where each sentence was placed is known, so each 32 ms chunk's verdict is checked against
espeak-ng's speech spans too (the frame-level agreement, printed with ``-s``). Where the real RAVDESS
speech is at hand, the clips of the actors the speech model never trained on are counted.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
from scipy.signal import lfilter, resample_poly

from preprocessing.recording import probe
from preprocessing.voice import VoiceAudioSpec, voice_audio
from preprocessing.windows import Window, WindowSpec, read_windows
from serving.analysis import FACE_CROP, MODES, Analyzer
from serving.errors import NoVoiceFound

RATE = 22_050
SPEC = WindowSpec()
WINDOW = SPEC.samples  # 79,380: 3.6 s
WINDOWS = 4
CHUNK_S = 512 / 16_000  # Silero's chunk: 32 ms

SENTENCES = (  # (text, espeak-ng voice, start in seconds): one inside each window
    ("Kids are talking by the door.", "en-us", 0.4),
    ("Dogs are sitting by the door.", "en-gb-x-rp+f3", 4.0),
    ("I never thought it would end like this.", "en-us+m3", 7.6),
    ("Please put the blue box on the table.", "en-gb-scotland+f2", 11.1),
)
BABBLE = (
    ("The weather was lovely on the weekend and we went to the beach.", "en-us+m1"),
    ("Could you pass me the salt and pepper please.", "en-gb+f1"),
    ("He said the meeting would start at nine in the morning.", "en-029+m2"),
    ("They are building a new station near the river.", "en-gb-x-rp+f4"),
    ("My sister bought a red bicycle last summer.", "en-us+m7"),
    ("Nobody knows where the old keys were hidden.", "en-gb-scotland+f5"),
)


def espeak(text: str, voice: str, speed: int = 150) -> np.ndarray:
    """``text`` spoken by espeak-ng, mono float32 at 22,050 Hz, trimmed to its first and last sound
    above -50 dB of its peak."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "said.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True, capture_output=True, timeout=60)
        samples, rate = soundfile.read(wav, dtype="float32")
    if rate != RATE:
        samples = resample_poly(samples, RATE // math.gcd(RATE, rate), rate // math.gcd(RATE, rate)).astype(np.float32)
    loud = np.flatnonzero(np.abs(samples) > np.abs(samples).max() * 10 ** (-50 / 20))
    return samples[loud[0] : loud[-1] + 1]


def at_peak(x: np.ndarray, dbfs: float) -> np.ndarray:
    return (x / np.abs(x).max() * 10 ** (dbfs / 20)).astype(np.float32)


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


@dataclass(frozen=True)
class Speech:
    """The four sentences in place (unit peak) and where each is, in seconds."""

    track: np.ndarray
    spans: tuple[tuple[float, float], ...]

    def mixed(self, noise: np.ndarray, snr_db: float) -> np.ndarray:
        """With ``noise`` at ``snr_db`` below the speech's power while it speaks."""
        talking = np.zeros(len(self.track), bool)
        for start, end in self.spans:
            talking[round(start * RATE) : round(end * RATE)] = True
        gain = np.sqrt(_power(self.track[talking]) / _power(noise) / 10 ** (snr_db / 10))
        return self.track + gain * noise

    def truth(self) -> np.ndarray:
        """(windows, chunks) bool: the chunk lies mostly inside a sentence."""
        chunks = -(-round(SPEC.length_s * 16_000) // 512)
        starts = np.arange(WINDOWS)[:, None] * SPEC.length_s + np.arange(chunks)[None] * CHUNK_S
        inside = sum(np.clip(np.minimum(starts + CHUNK_S, end) - np.maximum(starts, start), 0, None) for start, end in self.spans)
        return inside >= CHUNK_S / 2


def speech() -> Speech:
    track, spans = np.zeros(WINDOWS * WINDOW, np.float32), []
    for k, (text, voice, start) in enumerate(SENTENCES):
        said = espeak(text, voice)
        i = round(start * RATE)
        assert i + len(said) <= (k + 1) * WINDOW, f"{text!r} runs past window {k}"
        track[i : i + len(said)] = said / np.abs(said).max()
        spans.append((start, start + len(said) / RATE))
    return Speech(track, tuple(spans))


def babble(n: int) -> np.ndarray:
    """Six espeak-ng voices talking at once, each at the same power, each from its own offset."""
    rng, out = np.random.default_rng(0), np.zeros(n)
    for text, voice in BABBLE:
        said = espeak(text, voice, speed=int(rng.integers(140, 190)))
        said = np.resize(said / np.sqrt(_power(said)), n + len(said))
        start = int(rng.integers(0, len(said) - n))
        out += said[start : start + n]
    return out


def street(n: int) -> np.ndarray:
    """Traffic-like noise: low rumble (brown noise) swelling as five cars pass, and pink hiss."""
    rng = np.random.default_rng(1)
    rumble = lfilter([1, -1], [1, -0.995], np.cumsum(rng.normal(size=n)))  # brown noise without its drift
    hiss = lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786], [1, -2.494956002, 2.017265875, -0.522189400], rng.normal(size=n))
    t = np.arange(n) / RATE
    cars = sum(np.exp(-(((t - c) / 1.2) ** 2)) for c in rng.uniform(0, n / RATE, 5))
    return rumble / rumble.std() * (0.6 + cars) + 0.5 * hiss / hiss.std()


def hum(n: int, f0: float, harmonics: int) -> np.ndarray:
    t = np.arange(n) / RATE
    return sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, harmonics + 1))


def _note(freq: float, seconds: float, decay: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.minimum(1, t / 0.02) * np.exp(-decay * t) * sum(np.sin(2 * np.pi * freq * k * t) / k**1.5 for k in range(1, 9))


def _pluck(freq: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A plucked string (Karplus-Strong)."""
    period, n = round(RATE / freq), round(seconds * RATE)
    buffer, out = rng.uniform(-1, 1, period), np.empty(n)
    for i in range(n):
        out[i] = buffer[i % period]
        buffer[i % period] = 0.498 * (buffer[i % period] + buffer[(i + 1) % period])
    return out


def music(n: int) -> np.ndarray:
    """Piano-like chords (C, G, Am, F, two seconds each) over a held bass, and a plucked melody in eighths."""
    out, rng = np.zeros(n + 2 * RATE), np.random.default_rng(2)
    chords = ((261.6, 329.6, 392.0), (196.0, 246.9, 293.7), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6))
    melody = (523.3, 587.3, 659.3, 784.0, 880.0, 1046.5)
    for beat in range(int(n / RATE / 0.5)):
        i = round(beat * 0.5 * RATE)
        if beat % 4 == 0:
            chord = chords[beat // 4 % 4]
            for f in chord:
                out[i : i + 2 * RATE] += 0.3 * _note(f, 2.0, decay=3.0)
            out[i : i + 2 * RATE] += 0.3 * _note(chord[0] / 2, 2.0, decay=0.3)
        out[i : i + RATE // 2] += 0.5 * _pluck(melody[rng.integers(len(melody))], 0.5, rng)
    return out[:n]


def _scenes() -> dict[str, np.ndarray]:
    said, n = speech(), WINDOWS * WINDOW
    return {
        **{f"speech at {d} dBFS": at_peak(said.track, d) for d in (-6, -26, -46)},
        "speech in babble at 10 dB SNR": at_peak(said.mixed(babble(n), 10), -26),
        "speech in street noise at 10 dB SNR": at_peak(said.mixed(street(n), 10), -26),
        "digital silence": np.zeros(n, np.float32),
        "quiet room": at_peak(np.random.default_rng(3).normal(size=n), -50),
        "mains hum 50 Hz": at_peak(hum(n, 50, 7), -10),
        "rectifier buzz 100 Hz": at_peak(hum(n, 100, 11), -10),
        "music": at_peak(music(n), -6),
        "quiet music": at_peak(music(n), -36),
        "street noise": at_peak(street(n), -10),
    }


SPOKEN = [f"speech at {d} dBFS" for d in (-6, -26, -46)] + ["speech in babble at 10 dB SNR", "speech in street noise at 10 dB SNR"]
NOT_SPOKEN = ["digital silence", "quiet room", "mains hum 50 Hz", "rectifier buzz 100 Hz", "music", "quiet music", "street noise"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every scene as a 16-bit mono WAV at 22,050 Hz, as a recording would come."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng makes the speech of these tests")
    folder = tmp_path_factory.mktemp("voices")
    paths = {}
    for name, samples in _scenes().items():
        paths[name] = folder / f"{name.replace(' ', '_')}.wav"
        soundfile.write(paths[name], samples, RATE, subtype="PCM_16")
    return paths


def _windows(path: Path) -> list[Window]:
    return list(read_windows(probe(path), SPEC))


def _chunk_probs(client, windows: list[Window]) -> np.ndarray:
    """(windows, 113) speech probability of each chunk, from the served voice_activity model."""
    spec = client.model("voice_activity").settings("voice_audio", VoiceAudioSpec)
    audio = voice_audio(np.stack([w.audio for w in windows]), SPEC.audio_rate, spec)
    return client.infer("voice_activity", {"AUDIO_16K": audio}, ["VOICE_PROBS"])["VOICE_PROBS"]


# ---------------------------------------------------------------------------------------------
# Resampling (preprocessing, no model)


def test_voice_audio_is_the_window_at_16_khz() -> None:
    t = np.arange(WINDOW) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = voice_audio(tone, RATE)
    assert out.shape == (57_600,) and out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out))
    assert np.fft.rfftfreq(len(out), 1 / 16_000)[spectrum.argmax()] == pytest.approx(1000, abs=1)
    assert np.abs(out[1000:-1000]).max() == pytest.approx(0.5, abs=0.01), "the level is kept"
    batch = voice_audio(np.stack([tone, 0.1 * tone]), RATE)
    np.testing.assert_array_equal(batch[0], out)  # a batch gives each window what it gets alone
    np.testing.assert_array_equal(voice_audio(out, 16_000), out)
    with pytest.raises(ValueError, match="positive"):
        voice_audio(tone, 0)


# ---------------------------------------------------------------------------------------------
# Through Triton


@pytest.mark.parametrize("scene", SPOKEN)
def test_speech_is_voiced_in_every_window(scene: str, scenes: dict[str, Path], client, tmp_path: Path) -> None:
    analysis = Analyzer(client).analyze(scenes[scene], tmp_path, mode="audio", render=False)
    windows = analysis.timeline.windows
    assert len(windows) == WINDOWS
    assert [w.voice for w in windows] == [True] * WINDOWS, scene
    assert all(w.status == "ok" and w.probabilities is not None for w in windows), "each voiced window reaches the speech model"


@pytest.mark.parametrize("scene", NOT_SPOKEN)
def test_silence_hum_music_and_noise_are_not_a_voice(scene: str, scenes: dict[str, Path], client, tmp_path: Path) -> None:
    with pytest.raises(NoVoiceFound, match=f"no voice was heard in any of its {WINDOWS} windows"):
        Analyzer(client).analyze(scenes[scene], tmp_path, mode="audio", render=False)


def test_every_listening_ensemble_reports_the_voice(scenes: dict[str, Path], face_video: Path, client) -> None:
    """emotion_speech, emotion_av and emotion_av_attention each run voice_activity and return its verdict."""
    voiced, silent = _windows(scenes["speech at -46 dBFS"]), _windows(scenes["music"])
    faces = next(iter(read_windows(probe(face_video), SPEC, crop=FACE_CROP)))  # a face, for the modes that look
    batch = [replace(faces, audio=w.audio) for w in voiced[:2] + silent[:2]]
    analyzer = Analyzer(client)
    for mode in ("audio", "av", "attention"):
        result = client.infer(MODES[mode].model, analyzer.inputs(MODES[mode], batch), MODES[mode].outputs)
        np.testing.assert_array_equal(result["VOICE_PRESENT"][:, 0], [True, True, False, False])
        assert (result["VOICED_FRACTION"][:2, 0] > 0.2).all() and (result["VOICED_FRACTION"][2:, 0] < 0.05).all()
        if mode == "av":  # without a voice the speech model weighs nothing, and the face answers alone
            np.testing.assert_allclose(result["MODEL_WEIGHTS"][2:], [[1, 0], [1, 0]], atol=1e-6)
    speech = client.infer("emotion_speech", analyzer.inputs(MODES["audio"], batch), ["EMOTION_PROBS"])["EMOTION_PROBS"]
    np.testing.assert_allclose(speech.sum(axis=1), [1, 1, 0, 0], atol=1e-5)  # no voice, no emotion


def test_a_few_quiet_words_at_the_end_of_a_window(client, tmp_path: Path) -> None:
    """1.3 s of speech at -40 dBFS after 2.2 s of silence."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng makes the speech of this test")
    words = espeak("Yes, I see.", "en-us+f2")
    window = np.zeros(WINDOW, np.float32)
    window[-len(words) - RATE // 10 : -RATE // 10] = at_peak(words, -40)
    path = tmp_path / "words.wav"
    soundfile.write(path, window, RATE, subtype="PCM_16")
    (analysed,) = Analyzer(client).analyze(path, tmp_path / "out", mode="audio", render=False).timeline.windows
    assert analysed.voice and analysed.status == "ok"


def test_served_vad_is_silero_run_chunk_by_chunk(scenes: dict[str, Path], client) -> None:
    """The served graph gives the probabilities of the silero-vad wheel's own ONNX file, run chunk by
    chunk with its state as the wheel runs it."""
    from export.silero import reference_probabilities

    windows = [w for name in ("speech at -46 dBFS", "speech in street noise at 10 dB SNR", "music") for w in _windows(scenes[name])[:2]]
    served = _chunk_probs(client, windows)
    audio = voice_audio(np.stack([w.audio for w in windows]), SPEC.audio_rate)
    np.testing.assert_allclose(served, reference_probabilities(audio), atol=1e-4)


# Frame-level agreement with espeak-ng's spans, per scene: the least accepted (measured here, this
# test's table with -s: 0.971, 0.971 and 0.878 clean; 0.954 in street noise). Babble is speech
# itself, so there only the sentences' chunks count (recall; measured 0.940).
LEAST_AGREEMENT = {"speech at -6 dBFS": 0.94, "speech at -26 dBFS": 0.94, "speech at -46 dBFS": 0.84,
                   "speech in street noise at 10 dB SNR": 0.92}  # fmt: skip
LEAST_RECALL = 0.9


def test_frame_level_agreement_with_espeak_spans(scenes: dict[str, Path], client) -> None:
    truth = speech().truth()
    rows = []
    for scene in SPOKEN:
        voiced = _chunk_probs(client, _windows(scenes[scene])) >= 0.5
        hits = (voiced & truth).sum()
        figures = {"agreement": (voiced == truth).mean(), "recall": hits / truth.sum(), "precision": hits / max(voiced.sum(), 1),
                   "false alarms": (voiced & ~truth).sum() / (~truth).sum()}  # fmt: skip
        rows.append((scene, figures))
        if scene in LEAST_AGREEMENT:
            assert figures["agreement"] >= LEAST_AGREEMENT[scene], (scene, figures)
        else:
            assert figures["recall"] >= LEAST_RECALL, (scene, figures)
    print(f"\nchunks of 32 ms against espeak-ng's spans ({truth.sum()} of {truth.size} chunks speech):")
    for scene, figures in rows:
        print(f"  {scene:38s}" + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()))


# ---------------------------------------------------------------------------------------------
# Real speech: RAVDESS actors the speech model never trained on

REAL_DATA = Path(os.environ.get("EMOFUSE_RAVDESS", Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess-speech"))
# Measured here: 477 of the 480 clips of the validation and test actors (11, 13, 18, 20; 3, 10,
# 16, 19) have a voiced window; the energy rule this replaced heard 432. The three left are
# strong-intensity shouts (actors 18 and 20) on which Silero stays below 0.5.
LEAST_JUDGED = 470


@pytest.mark.skipif(not (REAL_DATA / "labels.csv").is_file(), reason=f"RAVDESS speech not at {REAL_DATA}")
def test_held_out_ravdess_actors_are_heard(client) -> None:
    from training import ravdess

    clips = ravdess.read_clips(REAL_DATA)
    split = ravdess.derive_split(sorted({c.actor for c in clips}))
    held_out = [c for c in clips if split.subset(c.actor) in ("val", "test")]
    analyzer, mode = Analyzer(client), MODES["audio"]
    pending = []
    for clip in held_out:
        windows = _windows(clip.path)
        pending.append((clip, client.submit(mode.model, analyzer.inputs(mode, windows), mode.outputs)))
    heard = {clip.path.name: bool(future.result()["VOICE_PRESENT"].any()) for clip, future in pending}
    missed = sorted(name for name, voiced in heard.items() if not voiced)
    print(f"\nRAVDESS validation and test actors: {len(heard) - len(missed)} of {len(heard)} clips heard; not heard: {missed}")
    assert len(heard) == 480
    assert len(heard) - len(missed) >= LEAST_JUDGED, missed
