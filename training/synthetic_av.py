"""Synthetic audio-video windows whose class shows in the face and in the voice separately.

Each window is what :mod:`preprocessing.windows` cuts from a recording: 15 face crops (a
:class:`~preprocessing.faces.CropSpec` says their size and colour) and 3.6 s of mono audio at
22,050 Hz, turned into the model's 10x156 MFCCs by :func:`preprocessing.audio_features.mfcc`.

- Face: a cartoon face drawn with OpenCV. Its mouth (curvature, opening) and brows (tilt,
  height) follow the class's expression; over the 15 frames the expression builds up and the
  mouth moves with the syllables. Speakers differ in face shape, skin and background colour,
  position and in their own resting expression; every window adds expression noise, head jitter,
  pixel noise, and now and then a frame without a face.
- Voice: a harmonic tone in syllables. Its pitch offset and contour (rising, falling), loudness
  and brightness (harmonic roll-off) follow the class's vocal expression. Speakers differ in base
  pitch, loudness, brightness and speaking rate; every window adds prosody noise and background
  noise.

How much each modality tells is set per modality: ``face_codes[c]`` is the expression class c
shows in the face, ``audio_codes[c]`` the one it shows in the voice. Classes with equal codes
look (or sound) alike, so ``face_codes=(0, 0, 1, 1), audio_codes=(0, 1, 0, 1)`` gives a 4-class
task where the face tells {0, 1} from {2, 3}, the voice {0, 2} from {1, 3}, and only both
together tell all four apart. Codes index eight prototypes loosely modelled on the RAVDESS
emotions (neutral, calm, happy, sad, angry, fearful, disgust, surprised).

Speakers are generated from their id and the seed alone, so the same id gives the same person in
every call: build training and test sets from disjoint ids for speaker-independent splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from preprocessing.audio_features import SAMPLE_RATE, WINDOW_S, WINDOW_SAMPLES, mfcc
from preprocessing.faces import CropSpec
from preprocessing.windows import Window, WindowSpec
from training.av import AVWindows

__all__ = ["SyntheticSpec", "synthetic_window", "make_dataset"]

N_FRAMES = WindowSpec.frames  # 15 frames per window
_CANVAS = 128  # faces are drawn at this size (or the crop's, if larger) and resized to the crop

# Face prototypes: mouth curve (+ smile, - frown), mouth opening (0..1), brow tilt (+ inner ends
# down, as in anger; - inner ends up, as in sadness), brow raise (+ up).
_FACE = np.array([
    [0.0, 0.15, 0.0, 0.0],    # neutral
    [0.45, 0.0, 0.0, -0.5],   # calm: slight smile, relaxed low brows, closed mouth
    [1.0, 0.5, 0.0, 0.3],     # happy
    [-0.8, 0.1, -0.9, 0.0],   # sad
    [-0.5, 0.35, 1.0, -0.6],  # angry
    [-0.3, 0.8, -0.6, 1.0],   # fearful
    [-0.8, 0.3, 0.7, -0.2],   # disgust
    [0.0, 1.0, 0.0, 1.0],     # surprised
], dtype=np.float64)  # fmt: skip
# Voice prototypes: pitch offset (semitones), pitch slope over the window (semitones), loudness
# (dB), harmonic roll-off (amplitude ~ h ** -rolloff; low = bright). The syllable rate is the
# speaker's, not the class's: the mouth moves with the syllables, and a class-dependent rate
# would let the face tell what only the voice should.
_VOICE = np.array([
    [0.0, 0.0, 0.0, 1.6],     # neutral
    [-2.0, -1.0, -8.0, 2.2],  # calm
    [4.0, 4.0, 5.0, 1.2],     # happy
    [-3.0, -4.0, -10.0, 2.4], # sad
    [3.0, -2.0, 10.0, 0.9],   # angry
    [7.0, 2.0, 2.0, 1.4],     # fearful
    [-1.0, -3.0, 0.0, 1.8],   # disgust
    [8.0, 6.0, 6.0, 1.3],     # surprised
], dtype=np.float64)  # fmt: skip
_VOICE_SCALE = np.array([1.0, 1.0, 1.0, 0.2])  # noise units per parameter


@dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic data set looks like.

    Attributes
    ----------
    labels : tuple of str
        Class names; class c is ``labels[c]``.
    face_codes, audio_codes : tuple of int | None
        Expression prototype (0..7) that each class shows in the face / voice; None: class c shows
        prototype c (fully informative). Equal codes make classes indistinguishable in that modality.
    crop : CropSpec
        Size and colour of the face crops.
    expression_noise : float
        Std of the per-window noise on each face and voice parameter, in prototype units: the
        prototypes differ by about 0.5 to 2 units, so 0.3 blurs neighbours a little.
    speaker_spread : float
        Std of each speaker's own offset of every parameter (their resting expression and voice).
    pixel_noise : float
        Std of Gaussian pixel noise, in grey levels.
    snr_db : float
        Mean ratio of voice to background noise power, in dB (each window varies by +-6 dB).
    face_miss_rate : float
        Fraction of frames with no face (zeros, ``face_found`` False), as a detector misses some.
    """

    labels: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry")
    face_codes: tuple[int, ...] | None = None
    audio_codes: tuple[int, ...] | None = None
    crop: CropSpec = field(default_factory=lambda: CropSpec(size=48, grey=False))
    expression_noise: float = 0.3
    speaker_spread: float = 0.25
    pixel_noise: float = 6.0
    snr_db: float = 15.0
    face_miss_rate: float = 0.05

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name in ("face_codes", "audio_codes"):
            codes = getattr(self, name)
            if codes is not None and (len(codes) != n or not all(0 <= c < len(_FACE) for c in codes)):
                raise ValueError(f"{name} needs one code in 0..{len(_FACE) - 1} per class ({n}), got {codes}.")
        if (self.face_codes is None or self.audio_codes is None) and n > len(_FACE):
            raise ValueError(f"at most {len(_FACE)} classes have their own prototype, got {n}.")

    def code(self, modality: str, label: int) -> int:
        codes = self.face_codes if modality == "face" else self.audio_codes
        return label if codes is None else codes[label]

    def to_dict(self) -> dict:
        return {
            "labels": list(self.labels),
            "face_codes": self.face_codes and list(self.face_codes),
            "audio_codes": self.audio_codes and list(self.audio_codes),
            "crop": {"size": self.crop.size, "grey": self.crop.grey, "scale": self.crop.scale},
            "expression_noise": self.expression_noise,
            "speaker_spread": self.speaker_spread,
            "pixel_noise": self.pixel_noise,
            "snr_db": self.snr_db,
            "face_miss_rate": self.face_miss_rate,
        }


@dataclass(frozen=True)
class _Speaker:
    face_offset: np.ndarray  # (4,) added to every face prototype
    voice_offset: np.ndarray  # (4,) added to every voice prototype
    axes: tuple[float, float]  # face half-width and half-height, fraction of the canvas
    skin: tuple[int, int, int]
    background: tuple[int, int, int]
    centre: tuple[float, float]  # face centre, fraction of the canvas
    f0: float  # base pitch in Hz
    level_db: float  # loudness offset in dB
    rate: float  # syllables per second


def _speaker(speaker: int, seed: int, spread: float) -> _Speaker:
    rng = np.random.default_rng([seed, speaker, 0])
    skin = np.array([225, 185, 150]) * rng.uniform(0.45, 1.05) + rng.normal(0, 12, 3)
    return _Speaker(
        face_offset=rng.normal(0, spread, 4),
        voice_offset=rng.normal(0, spread, 4) * _VOICE_SCALE,
        axes=(rng.uniform(0.3, 0.38), rng.uniform(0.38, 0.46)),
        skin=tuple(int(v) for v in np.clip(skin, 30, 255)),
        background=tuple(int(v) for v in rng.integers(20, 235, 3)),
        centre=(0.5 + rng.uniform(-0.04, 0.04), 0.5 + rng.uniform(-0.04, 0.04)),
        f0=float(rng.choice([rng.uniform(95, 140), rng.uniform(170, 250)])),  # lower and higher voices
        level_db=float(rng.normal(0, 3)),
        rate=float(rng.uniform(2.5, 4.5)),
    )


def _draw_face(sp: _Speaker, expr: np.ndarray, mouth_motion: float, shift: np.ndarray, size: int) -> np.ndarray:
    """One RGB frame (size, size, 3) uint8 of the speaker making expression ``expr`` (4,)."""
    curve, opening, tilt, raise_ = expr
    opening = float(np.clip(opening + 0.25 * mouth_motion, 0, 1.2))
    img = np.empty((size, size, 3), np.uint8)
    img[:] = sp.background
    s = size / 100.0  # drawing units: 100 per canvas side

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round((x + shift[0]) * s * 16)), int(round((y + shift[1]) * s * 16))  # 4 fractional bits

    cx, cy = sp.centre[0] * 100, sp.centre[1] * 100
    ax, ay = sp.axes[0] * 100, sp.axes[1] * 100
    aa = dict(lineType=cv2.LINE_AA, shift=4)
    cv2.ellipse(img, pt(cx, cy), (int(ax * s * 16), int(ay * s * 16)), 0, 0, 360, sp.skin, -1, **aa)
    dark = (30, 25, 25)
    eye_y, eye_dx = cy - 0.2 * ay, 0.42 * ax
    for side in (-1, 1):
        ex = cx + side * eye_dx
        cv2.circle(img, pt(ex, eye_y), int(0.1 * ax * s * 16), dark, -1, **aa)
        # brow: inner end near the nose; tilt > 0 pulls it down (anger), < 0 up (sadness)
        by = eye_y - 0.22 * ay - 0.12 * ay * raise_
        inner, outer = (ex - side * 0.2 * ax, by + 0.1 * ay * tilt), (ex + side * 0.25 * ax, by - 0.04 * ay * tilt)
        cv2.line(img, pt(*inner), pt(*outer), dark, max(1, int(round(3 * s))), **aa)
    # mouth: the lips' mid-line bends up at the corners for curve > 0; the lower lip opens below it
    mx, my, half = cx, cy + 0.5 * ay, 0.42 * ax
    xs = np.linspace(-1, 1, 13)
    mid = my - 0.25 * ay * curve * (xs**2 - 0.3)
    upper = [pt(mx + half * x, y - 0.02 * ay) for x, y in zip(xs, mid)]
    lower = [pt(mx + half * x, y + 0.02 * ay + 0.3 * ay * opening * (1 - x**2)) for x, y in zip(xs, mid)]
    cv2.fillPoly(img, [np.array(upper + lower[::-1], np.int32)], (120, 20, 30), **aa)
    return img


def _faces(spec: SyntheticSpec, sp: _Speaker, label: int, rate: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(15, S, S[, 3]) uint8 crops and (15,) face_found of one window."""
    crop, canvas = spec.crop, max(_CANVAS, spec.crop.size)
    expr = _FACE[spec.code("face", label)] + sp.face_offset + rng.normal(0, spec.expression_noise, 4)
    t = (np.arange(N_FRAMES) + 0.5) / N_FRAMES * WINDOW_S
    onset = rng.uniform(0.0, 1.5)  # the expression builds up from a neutral face
    strength = np.clip((t - onset) / 0.8, 0.25, 1.0)
    neutral = _FACE[0] + sp.face_offset
    phase = rng.uniform(0, 2 * np.pi)
    found = rng.random(N_FRAMES) >= spec.face_miss_rate
    out = np.zeros((N_FRAMES, *crop.shape), np.uint8)
    for i in np.flatnonzero(found):
        e = neutral + strength[i] * (expr - neutral)
        rgb = _draw_face(sp, e, abs(np.sin(np.pi * rate * t[i] + phase)), rng.normal(0, 1.5, 2), canvas)
        rgb = cv2.resize(rgb, (crop.size, crop.size), interpolation=cv2.INTER_AREA)
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if crop.grey else rgb
        out[i] = np.clip(img + rng.normal(0, spec.pixel_noise, img.shape), 0, 255).astype(np.uint8)
    return out, found


def _voice(spec: SyntheticSpec, sp: _Speaker, label: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """3.6 s of float32 audio at 22,050 Hz, and the syllable rate in Hz (the mouth follows it)."""
    shift, slope, level, rolloff = (
        _VOICE[spec.code("audio", label)] + sp.voice_offset + rng.normal(0, spec.expression_noise, 4) * _VOICE_SCALE
    )
    rate, rolloff = sp.rate * rng.uniform(0.85, 1.15), max(rolloff, 0.5)
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE
    start, stop = rng.uniform(0.0, 0.5), rng.uniform(3.0, WINDOW_S)  # silence around the utterance
    u = np.clip((t - start) / (stop - start), 0, 1)
    semitones = shift + slope * (u - 0.5) + 0.5 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t + rng.uniform(0, 6.3))
    f0 = sp.f0 * 2.0 ** (semitones / 12)
    # one period of the harmonics below 7 kHz as a wavetable, read at the running phase (cycles)
    harmonics = np.arange(1, int(7000 // f0.max()) + 1)
    theta = np.linspace(0, 2 * np.pi, 4096, endpoint=False)
    table = (harmonics[:, None] ** -rolloff * np.sin(harmonics[:, None] * theta)).sum(axis=0)
    cycles = np.cumsum(f0) / SAMPLE_RATE
    voice = table[(cycles % 1.0 * 4096).astype(np.int64) % 4096]
    syllables = np.sin(np.pi * rate * (t - start) + rng.uniform(0, 0.5)) ** 2  # rate syllables per second
    envelope = syllables * ((t > start) & (t < stop))
    amplitude = 0.05 * 10 ** ((level + sp.level_db) / 20)
    signal = amplitude * envelope * voice / np.sqrt(np.mean(voice**2))
    power = np.mean(signal[(t > start) & (t < stop)] ** 2)
    snr = spec.snr_db + rng.uniform(-6, 6)
    noise = rng.normal(0, np.sqrt(power / 10 ** (snr / 10)), t.shape)
    return np.clip(signal + noise, -1, 1).astype(np.float32), rate


def synthetic_window(spec: SyntheticSpec, speaker: int, label: int, *, seed: int = 0, index: int = 0) -> Window:
    """One synthetic window of ``speaker`` showing class ``label``, as preprocessing.windows makes them.

    ``seed`` fixes the speakers' looks and voices; ``(seed, speaker, label, index)`` fixes the window.
    """
    sp = _speaker(speaker, seed, spec.speaker_spread)
    rng = np.random.default_rng([seed, speaker, 1, label, index])
    audio, rate = _voice(spec, sp, label, rng)
    faces, found = _faces(spec, sp, label, rate, rng)
    frame_times = (np.arange(N_FRAMES) + 0.5) / N_FRAMES * WINDOW_S
    return Window(index=index, start_s=0.0, end_s=WINDOW_S, frame_times=frame_times, source_times=frame_times.copy(),
                  faces=faces, face_found=found, audio=audio)  # fmt: skip


def make_dataset(spec: SyntheticSpec, speakers: Sequence[int], per_class: int, *, seed: int = 0) -> AVWindows:
    """``per_class`` windows of every class for every speaker, as model inputs.

    Returns
    -------
    AVWindows
        faces (N, 15, S, S[, 3]) uint8, face_found (N, 15), mfcc (N, 10, 156) float32, audio_present
        (N,) all True, labels (N,), speakers (N,); N = len(speakers) * len(labels) * per_class.
    """
    faces, found, feats, labels, owners = [], [], [], [], []
    for speaker in speakers:
        audio = []
        for label in range(len(spec.labels)):
            for k in range(per_class):
                w = synthetic_window(spec, speaker, label, seed=seed, index=k)
                faces.append(w.faces)
                found.append(w.face_found)
                audio.append(w.audio)
                labels.append(label)
                owners.append(speaker)
        feats.append(mfcc(np.stack(audio)))  # one speaker at a time: the raw audio is not kept
    return AVWindows(
        faces=np.stack(faces),
        face_found=np.stack(found),
        mfcc=np.concatenate(feats),
        audio_present=np.ones(len(labels), bool),
        labels=np.array(labels, np.int64),
        speakers=np.array(owners, np.int64),
        label_names=tuple(spec.labels),
    )
