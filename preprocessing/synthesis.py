"""Synthetic recordings for demos, tests and benchmarks, written with PyAV.

A real face photo (scikit-image's ``astronaut``, Eileen Collins, smiling) drifts over a textured,
slightly noisy background, and the audio track is espeak-ng speech (a voiced tone where espeak-ng
is not installed). Parameters make the awkward cases: spans without a face, no audio track, a
variable frame rate, a recording shorter than one window.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import soundfile

__all__ = ["SampleSpec", "astronaut_face", "repeat_video", "speech", "write_sample_video"]

DEFAULT_SPEECH = "Kids are talking by the door. I am so happy to see you all today. What a wonderful surprise."


def astronaut_face() -> np.ndarray:
    """The smiling face of scikit-image's astronaut photo, shape (190, 180, 3) uint8 RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[20:210, 150:330])


def speech(text: str, rate: int, duration_s: float) -> np.ndarray:
    """``text`` spoken by espeak-ng, repeated to fill ``duration_s``, mono float32 at ``rate`` Hz.

    Without espeak-ng, a voiced tone with a syllable-like envelope takes its place.
    """
    n = round(duration_s * rate)
    voice = _espeak(text, rate) if shutil.which("espeak-ng") else None
    if voice is None or len(voice) == 0:
        t = np.arange(n) / rate
        envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) * (np.sin(2 * np.pi * 0.25 * t) > -0.3)
        return (0.3 * envelope * np.sin(2 * np.pi * (140 + 20 * np.sin(2 * np.pi * 0.5 * t)) * t)).astype(np.float32)
    return np.resize(voice, n).astype(np.float32)


def _espeak(text: str, rate: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True, timeout=60)
        samples, source_rate = soundfile.read(wav, dtype="float32")
    import librosa

    return librosa.resample(samples, orig_sr=source_rate, target_sr=rate) if source_rate != rate else samples


@dataclass(frozen=True)
class SampleSpec:
    """What a synthetic video shows.

    Attributes
    ----------
    duration_s : float
    width, height : int
        Frame size in pixels.
    fps : float
        Frames per second (the mean rate when ``variable_frame_rate``).
    face_spans : sequence of (start_s, end_s)
        When the face is on screen; None: all the time.
    face_height : int
        Height of the face in pixels.
    audio : 'speech' | 'tone' | None
        Audio track: espeak-ng speech, a voiced tone, or none.
    audio_rate : int
        Hz.
    variable_frame_rate : bool
        Frame intervals alternate between 0.5 and 1.5 times the mean.
    noise : float
        Standard deviation of per-frame sensor noise, in 8-bit grey levels.
    codec : str
        FFmpeg encoder of the video stream.
    """

    duration_s: float = 12.0
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    face_spans: Sequence[tuple[float, float]] | None = None
    face_height: int = 300
    audio: str | None = "speech"
    audio_rate: int = 44_100
    variable_frame_rate: bool = False
    noise: float = 4.0
    codec: str = "libx264"


def _frame_times(spec: SampleSpec) -> np.ndarray:
    step = 1 / spec.fps
    if not spec.variable_frame_rate:
        return np.arange(0, spec.duration_s - 1e-9, step)
    intervals = np.resize([0.5 * step, 1.5 * step], int(spec.duration_s * spec.fps) + 2)
    times = np.concatenate([[0.0], np.cumsum(intervals)])
    return times[times < spec.duration_s - 1e-9]


def write_sample_video(path: str | Path, spec: SampleSpec = SampleSpec(), *, seed: int = 0) -> Path:
    """Write a synthetic video (MP4 for libx264, any container PyAV infers from the suffix).

    Missing folders on the way are created. The file appears whole or not at all: it is written
    beside ``path`` under a temporary name and renamed at the end.

    Raises
    ------
    OSError
        The folder cannot be created or written (no permission, disk full, a file in the way).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = _part(path)
    try:
        _write_sample(part, spec, seed)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return part.replace(path)


def _part(path: Path) -> Path:
    """Where ``path`` is written before it is complete; same suffix, so PyAV picks the same container."""
    return path.with_name(f".{path.stem}.part{path.suffix}")


def _write_sample(path: Path, spec: SampleSpec, seed: int) -> None:
    rng = np.random.default_rng(seed)
    face = astronaut_face()
    face = cv2.resize(face, (round(face.shape[1] * spec.face_height / face.shape[0]), spec.face_height), interpolation=cv2.INTER_AREA)
    background = _room(spec.width, spec.height, rng)
    time_base = Fraction(1, 90_000)
    with av.open(str(path), "w") as out:
        video = out.add_stream(spec.codec, rate=Fraction(spec.fps).limit_denominator(1001))
        video.width, video.height = spec.width, spec.height
        video.pix_fmt = "yuv420p"
        video.time_base = video.codec_context.time_base = time_base  # fine enough for any frame time
        if spec.codec == "libx264":
            video.options = {"preset": "veryfast", "crf": "23"}
        audio = _add_audio(out, spec)
        samples = speech(DEFAULT_SPEECH, spec.audio_rate, spec.duration_s) if spec.audio == "speech" else _tone(spec)
        written = 0
        for i, t in enumerate(_frame_times(spec)):
            image = _compose(background, face, t, spec, rng)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(t / time_base), time_base
            out.mux(video.encode(frame))
            if audio is not None:
                written = _write_audio(out, audio, samples, written, min(len(samples), round((t + 1 / spec.fps) * spec.audio_rate)))
        out.mux(video.encode())
        if audio is not None:
            _write_audio(out, audio, samples, written, len(samples))
            out.mux(audio.encode())


def repeat_video(source: str | Path, times: int, path: str | Path) -> Path:
    """Write ``source`` played ``times`` times in a row to ``path``, without re-encoding.

    The packets are copied (remuxed) with their timestamps shifted by the source's length per
    repeat, so an hour-long file is made in seconds from a one-minute one and decodes as a real
    recording of ``times`` times the length. Atomic, as :func:`write_sample_video`.
    """
    source, path = Path(source), Path(path)
    length = _stream_lengths(source)
    part = _part(path)
    try:
        with av.open(str(part), "w") as out:
            with av.open(str(source)) as src:
                streams = {s.index: out.add_stream_from_template(s) for s in src.streams if s.index in length}
            for i in range(times):
                with av.open(str(source)) as src:
                    for packet in src.demux():
                        if packet.dts is None or packet.stream.index not in streams:
                            continue  # the demuxer's end-of-stream flush packets carry nothing
                        shift = i * length[packet.stream.index]
                        packet.dts += shift
                        if packet.pts is not None:
                            packet.pts += shift
                        packet.stream = streams[packet.stream.index]
                        out.mux(packet)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return part.replace(path)


def _stream_lengths(path: Path) -> dict[int, int]:
    """Each stream's span, from its first packet to the end of its last, in its own time base."""
    first: dict[int, int] = {}
    end: dict[int, int] = {}
    with av.open(str(path)) as src:
        for packet in src.demux():
            if packet.dts is not None:
                i = packet.stream.index
                first.setdefault(i, packet.dts)
                end[i] = max(end.get(i, packet.dts), packet.dts + (packet.duration or 0))
    return {i: end[i] - first[i] for i in end}


def _tone(spec: SampleSpec) -> np.ndarray:
    t = np.arange(round(spec.duration_s * spec.audio_rate)) / spec.audio_rate
    return (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _add_audio(out: av.container.OutputContainer, spec: SampleSpec) -> av.audio.stream.AudioStream | None:
    if spec.audio is None:
        return None
    stream = out.add_stream("aac", rate=spec.audio_rate)
    stream.layout = "mono"
    return stream


def _write_audio(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, samples: np.ndarray, start: int, end: int) -> int:
    if end > start:
        frame = av.AudioFrame.from_ndarray(samples[None, start:end], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = stream.rate, start
        out.mux(stream.encode(frame))
    return max(start, end)


def _room(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A plain room: a shaded wall, a few framed rectangles (shelves, pictures) and a desk."""
    shade = np.linspace(150, 110, height)[:, None, None] * np.array([1.0, 0.95, 0.85])
    room = np.broadcast_to(shade, (height, width, 3)).astype(np.uint8).copy()
    for _ in range(6):
        w, h = rng.integers(width // 12, width // 5), rng.integers(height // 12, height // 4)
        x, y = rng.integers(0, width - w), rng.integers(0, height // 2)
        colour = tuple(int(c) for c in rng.integers(40, 220, 3))
        cv2.rectangle(room, (int(x), int(y)), (int(x + w), int(y + h)), colour, -1)
        cv2.rectangle(room, (int(x), int(y)), (int(x + w), int(y + h)), (30, 30, 30), 3)
    room[int(0.8 * height) :] = (92, 64, 45)  # the desk
    return room


def _compose(background: np.ndarray, face: np.ndarray, t: float, spec: SampleSpec, rng: np.random.Generator) -> np.ndarray:
    image = np.roll(background, int(40 * t), axis=1)
    if spec.noise:
        image = np.clip(image + rng.normal(0, spec.noise, image.shape[:2])[..., None], 0, 255).astype(np.uint8)
    visible = spec.face_spans is None or any(a <= t < b for a, b in spec.face_spans)
    if visible:
        fh, fw = face.shape[:2]
        x = int((spec.width - fw) / 2 + 0.2 * (spec.width - fw) / 2 * np.sin(0.5 * t))
        y = int((spec.height - fh) / 2 + 0.1 * (spec.height - fh) / 2 * np.cos(0.4 * t))
        image[y : y + fh, x : x + fw] = face
    return image
