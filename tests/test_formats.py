"""The annotated copy for every frame size, codec and container: a matrix of real recordings.

Each recording is written here with PyAV (1 s or less, so the matrix stays fast): the astronaut's
face over a gradient, espeak-ng speech in each channel, then analysed with the real Triton of the
session and its copy checked. The copy is always H.264 (yuv420p, even size) + AAC in MP4 with a
mov_text caption track; it keeps the audio and every source frame at its time, is upright, shows
the source's picture, and carries the caption in its upper-left corner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from preprocessing.faces import FaceDetector, crop_face
from preprocessing.recording import probe
from preprocessing.windows import read_windows
from preprocessing.synthesis import astronaut_face, speech
from serving.analysis import FACE_CROP, Analysis, Analyzer
from serving.render import caption_margin, caption_patch

AAC_RATES = {7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
ENCODER_OPTIONS = {  # the fastest settings of each encoder: the matrix tests decoding, not encoders
    "libx264": {"preset": "ultrafast"},
    "libx265": {"preset": "ultrafast", "x265-params": "log-level=error"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
    "libsvtav1": {"preset": "12"},
}
AUDIO_FORMATS = {"aac": "fltp", "libopus": "flt", "libmp3lame": "fltp", "pcm_s16le": "s16", "vorbis": "fltp"}
AUDIO_FRAME = {"aac": 1024, "libopus": 960, "libmp3lame": 1152, "vorbis": 64}  # samples per encoded frame


@dataclass(frozen=True)
class Clip:
    """A recording to write: its upright picture size, streams and container (by suffix)."""

    width: int = 320
    height: int = 240
    suffix: str = ".mp4"
    video: str = "libx264"
    pix_fmt: str = "yuv420p"
    audio: str | None = "aac"
    layout: str = "mono"
    rate: int = 16_000
    fps: int = 15
    seconds: float = 1.0
    variable_frame_rate: bool = False  # intervals alternate between 0.5 and 1.5 times 1/fps
    rotation: int = 0  # display matrix, degrees counter-clockwise; frames are stored turned back

    @property
    def name(self) -> str:
        audio = f"{self.audio}-{self.layout}-{self.rate}" if self.audio else "silent"
        extra = "-vfr" * self.variable_frame_rate + (f"-rot{self.rotation}" if self.rotation else "")
        return f"{self.width}x{self.height}-{self.video}-{self.pix_fmt}-{audio}{extra}{self.suffix}"

    def times(self) -> np.ndarray:
        """Presentation time of each frame in seconds."""
        step = 1 / self.fps
        if not self.variable_frame_rate:
            return np.arange(round(self.seconds * self.fps)) * step
        intervals = np.resize([0.5 * step, 1.5 * step], round(self.seconds * self.fps))
        return np.concatenate([[0.0], np.cumsum(intervals)[:-1]])


def picture(clip: Clip, index: int) -> np.ndarray:
    """Frame ``index`` as shown upright, shape (height, width, 3) uint8 RGB: the face, moving right."""
    h, w = clip.height, clip.width
    image = np.empty((h, w, 3), np.uint8)
    image[..., 0] = np.linspace(40, 200, w, dtype=np.uint8)[None]
    image[..., 1] = np.linspace(60, 180, h, dtype=np.uint8)[:, None]
    image[..., 2] = 120
    face = astronaut_face()
    size = max(24, int(0.6 * min(h, w)))
    face = cv2.resize(face, (round(face.shape[1] * size / face.shape[0]), size), interpolation=cv2.INTER_AREA)
    x = min(w - face.shape[1], (w - face.shape[1]) // 2 + index % 5)
    y = (h - face.shape[0]) // 2
    image[y : y + face.shape[0], x : x + face.shape[1]] = face
    return image


def write_clip(path: Path, clip: Clip) -> Path:
    """Write ``clip`` to ``path``: each upright picture turned by -rotation, the display matrix
    saying to turn it back, as phones record."""
    turns = clip.rotation // 90
    stored_w, stored_h = (clip.height, clip.width) if turns % 2 else (clip.width, clip.height)
    times = clip.times()
    base = Fraction(1, 1000) if clip.variable_frame_rate else Fraction(1, clip.fps)
    with av.open(str(path), "w") as out:
        video = out.add_stream(clip.video, rate=clip.fps)
        video.width, video.height, video.pix_fmt = stored_w, stored_h, clip.pix_fmt
        video.time_base = video.codec_context.time_base = base
        video.options = ENCODER_OPTIONS.get(clip.video, {})
        if clip.rotation:
            video.set_display_rotation(clip.rotation)
        audio = _audio_stream(out, clip) if clip.audio else None
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(picture(clip, i), -turns)), format="rgb24")
            frame.pts, frame.time_base = round(t / base), base
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if audio is not None:
            _write_audio(out, audio, clip)
    return path


def _audio_stream(out: av.container.OutputContainer, clip: Clip) -> av.audio.stream.AudioStream:
    stream = out.add_stream(clip.audio, rate=clip.rate)
    stream.layout, stream.format = clip.layout, AUDIO_FORMATS[clip.audio]
    if clip.audio == "vorbis":
        stream.codec_context.options = {"strict": "experimental"}  # FFmpeg's own Vorbis encoder
    return stream


def _write_audio(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, clip: Clip) -> None:
    voice = speech("I am so happy to see you all today.", clip.rate, clip.seconds)  # (samples,)
    channels = av.AudioLayout(clip.layout).nb_channels
    samples = np.stack([voice * (1 - 0.1 * c) for c in range(channels)]).astype(np.float32)  # (channels, samples)
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=clip.layout)
    frame.sample_rate, frame.pts = clip.rate, 0
    resampler = av.AudioResampler(format=AUDIO_FORMATS[clip.audio], layout=clip.layout, rate=clip.rate, frame_size=AUDIO_FRAME.get(clip.audio))
    for chunk in resampler.resample(frame) + resampler.resample(None):
        out.mux(stream.encode(chunk))
    out.mux(stream.encode())


# --- what the copy must be -------------------------------------------------------------------


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Limited-range BT.601 luma of an RGB picture, as an encoder stores it, float (h, w)."""
    return 16 + cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) * (219 / 255)


def _y(frame: av.VideoFrame) -> np.ndarray:
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8, count=plane.line_size * plane.height).reshape(plane.height, -1)[:, : plane.width]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255**2 / max(1e-6, float(np.mean(np.square(a.astype(np.float32) - b)))))


def _source_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [frame.time for frame in container.decode(video=0)]


def check_copy(clip: Clip, source: Path, analysis: Analysis) -> None:
    """Everything the annotated copy of ``source`` must be; see the module docstring."""
    assert not analysis.failures and "video" in analysis.files, analysis.failures
    copy = analysis.files["video"]
    width, height = clip.width & ~1, clip.height & ~1
    source_times = _source_times(source)
    with av.open(str(copy)) as container:
        assert container.format.name.startswith("mov,mp4")
        video = container.streams.video[0]
        assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
        assert video.codec_context.profile in {"Constrained Baseline", "Baseline", "Main", "High"}, "a profile browsers play"
        assert (video.width, video.height) == (width, height), "upright, the odd last column or row dropped"
        assert [s.codec_context.name for s in container.streams.subtitles] == ["mov_text"]
        frames, times = [], []
        for frame in container.decode(video):
            assert frame.rotation == 0, "the pixels are turned: no display matrix left to honour"
            times.append(frame.time)
            frames.append(_y(frame).copy())
    assert len(frames) == len(source_times) == len(clip.times()), "every source frame"
    relative = np.array(times) - times[0]
    assert np.allclose(relative, np.array(source_times) - source_times[0], atol=1.5e-3), "the source's timestamps"
    text = analysis.timeline.caption(analysis.timeline.windows[0])
    patch = _luma(cv2.cvtColor(caption_patch(text, height, width), cv2.COLOR_BGR2RGB))
    margin = caption_margin(height, width)
    ph, pw = patch.shape
    assert ph + 2 * margin <= height and pw + 2 * margin <= width, "the caption fits inside the frame"
    for i in (0, len(frames) - 1):
        corner = frames[i][margin : margin + ph, margin : margin + pw]
        assert np.abs(corner - patch).mean() < 10, f"frame {i}: the caption in the upper-left corner"
        below = slice(ph + 2 * margin, height)
        assert _psnr(frames[i][below], _luma(picture(clip, i))[:height, :width][below]) > 24, f"frame {i}: the source's picture, upright"
    _check_audio(clip, source, copy)


def _audio_seconds(path: Path) -> float:
    """Length of the decoded audio track in seconds (an MP3 in AVI has its encoder's padding)."""
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(audio)) / audio.codec_context.sample_rate


def _check_audio(clip: Clip, source: Path, copy: Path) -> None:
    with av.open(str(copy)) as container:
        if clip.audio is None:
            assert not container.streams.audio
            return
        (audio,) = container.streams.audio
        assert audio.codec_context.name == "aac"
        channels = av.AudioLayout(clip.layout).nb_channels
        copied = clip.audio == "aac"  # AAC from MP4/MKV is copied as it is; the rest re-encoded, at most stereo
        assert audio.codec_context.channels == (channels if copied else min(channels, 2))
        assert audio.codec_context.sample_rate == (clip.rate if clip.rate in AAC_RATES else 48_000)
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio)])
    rate = audio.codec_context.sample_rate
    seconds = len(samples) / rate / audio.codec_context.channels
    # Within one AAC frame (1024 samples) of encoder priming or padding, and a few ms.
    assert seconds == pytest.approx(_audio_seconds(source), abs=0.01 + 1024 / rate), "the whole audio track"
    assert np.sqrt(np.mean(np.square(samples))) > 0.01, "the voice, not silence"


@pytest.fixture(scope="module")
def analyzer(client) -> Analyzer:
    return Analyzer(client)


def _analysed(clip: Clip, analyzer: Analyzer, tmp_path: Path) -> tuple[Path, Analysis]:
    source = write_clip(tmp_path / clip.name, clip)
    return source, analyzer.analyze(source, tmp_path / "out")


# --- the matrix ------------------------------------------------------------------------------

SIZES = [
    Clip(160, 120),
    Clip(320, 240),
    Clip(400, 400),  # crashed: caption height not a multiple of 4
    Clip(640, 480),  # crashed
    Clip(854, 480),  # crashed
    Clip(1280, 720),
    Clip(1920, 1080, seconds=0.4),
    Clip(3840, 2160, seconds=0.2),
    Clip(360, 640),  # portrait
    Clip(1080, 1920, seconds=0.4),  # portrait phone video: crashed
    Clip(640, 480, ".webm", "libvpx-vp9", audio="libopus", rate=48_000),  # crashed
    Clip(639, 479, ".webm", "libvpx-vp9", audio="libopus", rate=48_000),  # odd sizes a decoder produces
    Clip(639, 479, ".avi", "mjpeg", "yuvj422p", audio="pcm_s16le"),
]


@pytest.mark.parametrize("clip", SIZES, ids=lambda c: c.name)
def test_every_frame_size(clip, analyzer, tmp_path) -> None:
    check_copy(clip, *_analysed(clip, analyzer, tmp_path))


FORMATS = [
    Clip(audio="aac", layout="stereo", rate=44_100),
    Clip(audio="aac", layout="mono", rate=8_000),
    Clip(suffix=".mov", audio="pcm_s16le", layout="stereo", rate=16_000),
    Clip(suffix=".mkv", video="libx265", audio="aac", layout="5.1", rate=48_000),
    Clip(suffix=".mp4", video="libx265", pix_fmt="yuv420p10le", audio="aac", layout="stereo", rate=44_100),
    Clip(suffix=".webm", video="libvpx", audio="vorbis", layout="stereo", rate=44_100),
    Clip(suffix=".webm", video="libvpx-vp9", audio="libopus", layout="mono", rate=48_000),
    Clip(suffix=".mkv", video="libsvtav1", audio="libopus", layout="5.1", rate=48_000),
    Clip(suffix=".avi", video="mpeg4", audio="libmp3lame", layout="stereo", rate=22_050),
    Clip(suffix=".avi", video="mjpeg", pix_fmt="yuvj422p", audio="pcm_s16le", layout="mono", rate=8_000),
    Clip(suffix=".mkv", audio="libmp3lame", layout="stereo", rate=32_000),
    Clip(audio=None),
    Clip(seconds=2.0, variable_frame_rate=True, audio="aac", layout="stereo", rate=44_100),
    Clip(suffix=".mkv", video="libvpx-vp9", seconds=2.0, variable_frame_rate=True, audio="libopus", layout="stereo", rate=48_000),
]


@pytest.mark.parametrize("clip", FORMATS, ids=lambda c: c.name)
def test_every_codec_and_container(clip, analyzer, tmp_path) -> None:
    assert av.codec.Codec(clip.video, "w"), f"the bundled FFmpeg encodes {clip.video}"
    check_copy(clip, *_analysed(clip, analyzer, tmp_path))


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_phone_video_is_searched_and_copied_upright(rotation, analyzer, tmp_path) -> None:
    clip = Clip(360, 640, rotation=rotation, seconds=1.0)
    source, analysis = _analysed(clip, analyzer, tmp_path)
    info = probe(source)
    assert (info.width, info.height, info.rotation) == (360, 640, rotation), "the upright size, and the turn to get there"
    (result,) = analysis.timeline.windows
    assert result.face_frames == result.frames == 15, "a face in every sampled frame"
    # What the face model is sent: the crop of the upright face, not of the stored one.
    detector = FaceDetector()
    (window,) = read_windows(info, crop=FACE_CROP, detector=detector)
    upright = picture(clip, 0)  # the frame on screen at the first sampled time, 1/30 s
    expected = crop_face(upright, detector.detect(upright)[0], FACE_CROP).astype(float)
    sent = window.faces[0].astype(float)
    assert np.corrcoef(sent.ravel(), expected.ravel())[0, 1] > 0.9
    turned = np.rot90(expected, -rotation // 90)
    assert np.corrcoef(sent.ravel(), turned.ravel())[0, 1] < 0.7, "a crop on its side would not match: the test can fail"
    check_copy(clip, source, analysis)
