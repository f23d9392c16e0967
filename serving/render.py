"""Annotated copies of recordings: the current emotion written in the upper-left corner.

The copy is always H.264 (libx264, yuv420p, even width and height) + AAC in an MP4 that browsers
play, whatever the recording was (any size, codec, container, pixel format, rotation). It has
every frame of the source at its own timestamps (a variable frame rate included) and its audio:
copied unchanged when it is AAC already, else re-encoded. Besides the caption burnt into the
picture it carries the captions as a soft subtitle track (mov_text), which players that show
subtitles (VLC, QuickTime, mpv) render without any re-encode.

Each caption is drawn once per frame size into a small YUV patch that is pasted into the planes of
every frame, so no frame is converted to RGB. A phone video whose display matrix says to turn it
is turned here, pixels and all, so that the copy plays upright in every player, including the
ones that ignore the matrix, and the caption sits in the corner a viewer sees as upper-left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np
from av.subtitles.subtitle import SubtitleSet

from preprocessing.recording import RecordingInfo

from .timeline import Timeline

__all__ = ["MARGIN", "X264_OPTIONS", "Cue", "caption_cues", "caption_patch", "caption_scale", "render_image", "render_video"]

log = logging.getLogger(__name__)

MARGIN = 8  # pixels between the frame's corner and the caption, at 720p and below (more above)
#: x264 settings of the copy, chosen by measuring speed, size and PSNR against the source
#: (``benchmarks/render_speed.py``, figures in the README). ultrafast: the fastest, and without
#: adaptive quantisation it spends no bits on sensor noise at crf 26, so the copy is also the
#: smallest; no CABAC and no B-frames make it Constrained Baseline, which every browser plays.
X264_OPTIONS = {"preset": "ultrafast", "crf": "26"}
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MIN_SCALE = 0.5  # Hershey Simplex at 0.5: capitals 12 px tall, the smallest that reads well on a phone
_AAC_RATES = frozenset(av.codec.Codec("aac", "w").audio_rates or ())
# mov_text takes its style from an ASS header; the encoder refuses to open without one.
_ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
    "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    "Style: Default,Sans,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,7,10,10,10,0\n\n"
    "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
).encode()
_SUBTITLE_TIME_BASE = Fraction(1, 1000)  # milliseconds, as mov_text cues are usually stored


# --- captions --------------------------------------------------------------------------------


def caption_scale(frame_height: int, frame_width: int | None = None) -> float:
    """Font scale of the caption for a frame: proportional to its shorter side (1.0 at 720 px),
    so portrait and landscape videos of one resolution get the same text, never below 0.5."""
    short = min(frame_height, frame_width) if frame_width else frame_height
    return max(_MIN_SCALE, short / 720)


def caption_margin(frame_height: int, frame_width: int | None = None) -> int:
    """Pixels between the frame's corner and the caption; even, so chroma planes line up."""
    return 2 * round(max(MARGIN, MARGIN * caption_scale(frame_height, frame_width)) / 2)


def _lines(text: str, scale: float, thickness: int, room: float) -> list[str]:
    """``text`` on one line, or on two broken at the space nearest its middle where one line is
    wider than ``room`` pixels (a long caption on a small frame)."""
    if cv2.getTextSize(text, _FONT, scale, thickness)[0][0] <= room or " " not in text:
        return [text]
    spaces = [i for i, c in enumerate(text) if c == " "]
    cut = min(spaces, key=lambda i: abs(i - len(text) / 2))
    return [text[:cut], text[cut + 1 :]]


@lru_cache(maxsize=64)
def caption_patch(text: str, frame_height: int, frame_width: int | None = None) -> np.ndarray:
    """A caption as white text on a dark box, in BGR, shape (h, w, 3) with h and w even.

    The text grows with the frame (:func:`caption_scale`); on a frame too narrow for it, it is
    broken onto two lines, then shrunk until the box fits inside the frame with its margins.
    ``frame_width`` None: as wide as the text needs.
    """
    scale = caption_scale(frame_height, frame_width)
    margin = caption_margin(frame_height, frame_width)
    room_w = (frame_width or 1 << 30) - 2 * margin
    room_h = frame_height - 2 * margin
    while True:
        thickness, pad = max(1, round(2 * scale)), round(6 * scale)
        lines = _lines(text, scale, thickness, room_w - 2 * pad)
        sizes = [cv2.getTextSize(line, _FONT, scale, thickness) for line in lines]
        line_h = max(h + baseline for (_, h), baseline in sizes)
        width = max(w for (w, _), _ in sizes) + 2 * pad
        height = line_h * len(lines) + 2 * pad
        if (width <= room_w and height <= room_h) or scale < 0.1:
            break
        scale *= 0.9  # a frame smaller than 160x120: smaller text rather than a clipped one
    patch = np.full((height + height % 2, width + width % 2, 3), 24, np.uint8)
    for i, (line, ((_, h), _)) in enumerate(zip(lines, sizes)):
        cv2.putText(patch, line, (pad, pad + i * line_h + h), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return patch


@lru_cache(maxsize=64)
def _yuv_patch(text: str, frame_height: int, frame_width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The caption as YUV 4:2:0 planes, shapes (h, w), (h/2, w/2), (h/2, w/2), in video range
    (Y 16-235), as OpenCV's I420 conversion gives and as the encoder and players expect."""
    patch = caption_patch(text, frame_height, frame_width)
    h, w = patch.shape[:2]
    i420 = cv2.cvtColor(patch, cv2.COLOR_BGR2YUV_I420)  # (h * 3/2, w): Y, then U and V
    # U and V are (h/2, w/2) each but stored one after the other in rows of w: split the flat
    # buffer, since splitting rows only works when h is a multiple of 4 (the crash of issue 12).
    u, v = i420[h:].reshape(2, h // 2, w // 2)
    return i420[:h], u, v


@dataclass(frozen=True)
class Cue:
    """A caption on screen from ``start_s`` to ``end_s`` (seconds from the start of the recording)."""

    start_s: float
    end_s: float
    text: str


def caption_cues(timeline: Timeline, duration_s: float) -> list[Cue]:
    """What the copy shows when: each moment gets the window whose centre is nearest, so cues
    change halfway between window centres; consecutive windows with one caption make one cue."""
    windows = sorted(timeline.windows, key=lambda w: w.start_s + w.end_s)
    centres = [(w.start_s + w.end_s) / 2 for w in windows]
    bounds = [0.0] + [(a + b) / 2 for a, b in zip(centres, centres[1:])] + [max(duration_s, centres[-1] if centres else 0.0)]
    cues: list[Cue] = []
    for window, start, end in zip(windows, bounds, bounds[1:]):
        text = timeline.caption(window)
        if cues and cues[-1].text == text:
            cues[-1] = Cue(cues[-1].start_s, end, text)
        elif end > start:
            cues.append(Cue(start, end, text))
    return cues


def _cue_at(cues: list[Cue], starts: np.ndarray, t: float) -> Cue:
    """The cue on screen at ``t`` seconds; ``starts`` are the cues' start times, ascending."""
    return cues[max(0, int(np.searchsorted(starts, t, side="right")) - 1)]


# --- frames ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Geometry:
    """How a decoded frame becomes a frame of the copy.

    Attributes
    ----------
    turns : int
        Quarter turns counter-clockwise that make the decoded frame upright (0 to 3).
    width, height : int
        The copy's frame size: the upright size rounded down to even (H.264 4:2:0 needs it); a
        dropped last column or row costs less than scaling every pixel.
    source : (int, int)
        Width and height of the decoded frames as the recording's header gives them.
    """

    turns: int
    width: int
    height: int
    source: tuple[int, int]

    @classmethod
    def of(cls, info: RecordingInfo) -> _Geometry:
        turns = info.rotation // 90 % 4
        source = (info.height, info.width) if turns % 2 else (info.width, info.height)
        return cls(turns, info.width & ~1, info.height & ~1, source)

    @property
    def stored(self) -> tuple[int, int]:
        """The copy's size before turning: width and height of a decoded frame, made even."""
        return (self.height, self.width) if self.turns % 2 else (self.width, self.height)


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Writable views of a yuv420p frame's planes: Y (h, w), U and V (ceil(h/2), ceil(w/2))."""
    views = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8, count=plane.line_size * plane.height).reshape(plane.height, plane.line_size)
        views.append(rows[:, : plane.width])
    return views


def _paste(planes: list[np.ndarray], patch: tuple[np.ndarray, ...], margin: int) -> None:
    """Write the caption's YUV planes into a frame's, clipped to the frame."""
    for plane, part, offset in zip(planes, patch, (margin, margin // 2, margin // 2)):
        h, w = min(part.shape[0], plane.shape[0] - offset), min(part.shape[1], plane.shape[1] - offset)
        if h > 0 and w > 0:
            plane[offset : offset + h, offset : offset + w] = part[:h, :w]


def _annotated(frame: av.VideoFrame, geometry: _Geometry, text: str) -> av.VideoFrame:
    """The copy's frame: ``frame`` upright, yuv420p, of the geometry's size, with the caption."""
    if (frame.width, frame.height) != geometry.source:  # the stream changed size midway (WebRTC recordings do)
        width, height = geometry.stored
        frame = frame.reformat(width=width, height=height, format="yuv420p")
    elif frame.format.name != "yuv420p":  # 10-bit, 4:2:2 (MJPEG), RGB...: one swscale pass
        frame = frame.reformat(format="yuv420p")
    patch = _yuv_patch(text, geometry.height, geometry.width)
    margin = caption_margin(geometry.height, geometry.width)
    if not geometry.turns and (frame.width, frame.height) == (geometry.width, geometry.height):
        frame.make_writable()  # the decoder may still reference this buffer for later frames
        _paste(_planes(frame), patch, margin)
        return frame
    # Turned or cropped: build the frame from its planes (phone videos, odd sizes).
    planes = [
        np.ascontiguousarray(np.rot90(p, geometry.turns)[: geometry.height >> s, : geometry.width >> s])
        for p, s in zip(_planes(frame), (0, 1, 1))
    ]
    _paste(planes, patch, margin)
    i420 = np.concatenate([p.reshape(-1) for p in planes]).reshape(geometry.height * 3 // 2, geometry.width)
    return av.VideoFrame.from_ndarray(i420, format="yuv420p")


# --- the copy --------------------------------------------------------------------------------


def render_video(
    info: RecordingInfo,
    timeline: Timeline,
    out_path: Path,
    *,
    progress: Callable[[float], None] | None = None,
    x264_options: dict[str, str] | None = None,
) -> None:
    """Write ``out_path``: the recording with each frame's caption, H.264 + AAC + mov_text in MP4.

    Each frame shows the window whose centre is nearest its time (:func:`caption_cues`). The copy
    has the input's frames, timestamps (variable frame rate included) and audio, upright.

    Parameters
    ----------
    progress : callable(float) | None
        Called with the fraction of the recording written, 0 to 1, at most once per percent.
    x264_options : dict | None
        libx264 private options; :data:`X264_OPTIONS` if None.

    Raises
    ------
    av.error.FFmpegError, OSError
        The recording could not be decoded again, or the copy could not be written.
    """
    geometry = _Geometry.of(info)
    cues = caption_cues(timeline, info.duration_s)
    starts = np.array([c.start_s for c in cues])
    with av.open(str(info.path), metadata_errors="ignore") as source, _output(out_path) as out:
        vin = source.streams.video[0]
        vin.thread_type = "AUTO"  # frame threads: the decoder keeps both cores busy beside x264
        vout = _video_output(out, vin, geometry, x264_options or X264_OPTIONS)
        ain = source.streams.audio[0] if info.has_audio else None
        audio = _AudioCopy(out, ain) if ain is not None else None
        subtitles = _subtitle_output(out)
        origin = (source.start_time or 0) / av.time_base
        for cue in cues:  # a few packets, muxed first: the muxer interleaves them by time
            out.mux(_cue_packet(subtitles, cue, origin))
        timestamps = _Timestamps(vin)
        base = timestamps.base  # not vout.time_base: the muxer replaces that once it writes the header
        reported = -1
        for packet in source.demux(*(s for s in (vin, ain) if s is not None)):
            if packet.stream is ain:
                audio.add(packet)
                continue
            for frame in packet.decode():
                pts = timestamps.next(frame)
                t = float(pts * base) - origin
                annotated = _annotated(frame, geometry, _cue_at(cues, starts, t).text if cues else "")
                annotated.pts, annotated.time_base = pts, base
                out.mux(vout.encode(annotated))
                if progress is not None and (percent := int(100 * min(1.0, t / max(info.duration_s, 1e-6)))) > reported:
                    progress(percent / 100)
                    reported = percent
        out.mux(vout.encode())
        if audio is not None:
            audio.flush()
    if progress is not None and reported < 100:
        progress(1.0)


def _output(path: Path) -> av.container.OutputContainer:
    # faststart: the index goes first, so a browser starts playing before the whole file arrives.
    return av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})


def _video_output(
    out: av.container.OutputContainer, vin: av.video.stream.VideoStream, geometry: _Geometry, options: dict[str, str]
) -> av.video.stream.VideoStream:
    vout = out.add_stream("libx264", rate=vin.average_rate or vin.guessed_rate or Fraction(30))
    vout.width, vout.height, vout.pix_fmt = geometry.width, geometry.height, "yuv420p"
    vout.options = dict(options)
    # The source's time base keeps its timestamps exact; raw streams without one get 90 kHz.
    # The encoder's too: left alone it takes 1/rate, which rounds a variable frame rate away.
    vout.time_base = vout.codec_context.time_base = vin.time_base or Fraction(1, 90_000)
    return vout


class _Timestamps:
    """Each decoded frame's pts in the source time base, strictly increasing as x264 requires:
    a frame without one (raw streams) or repeating one (rounded VFR) gets the next free tick."""

    def __init__(self, vin: av.video.stream.VideoStream) -> None:
        self.base = base = vin.time_base or Fraction(1, 90_000)
        rate = vin.average_rate or vin.guessed_rate or Fraction(30)
        self.step = max(1, round(1 / (rate * base)))  # one frame, in ticks
        self.last: int | None = None

    def next(self, frame: av.VideoFrame) -> int:
        pts = frame.pts
        if pts is None:
            pts = 0 if self.last is None else self.last + self.step
        elif self.last is not None and pts <= self.last:
            pts = self.last + 1
        self.last = pts
        return pts


class _AudioCopy:
    """The copy's AAC track: packets copied as they are when the source is AAC with its
    configuration in the header (MP4, MOV, MKV); otherwise decoded, resampled (mono stays mono,
    more channels become stereo, a rate AAC lacks becomes 48 kHz) and encoded."""

    def __init__(self, out: av.container.OutputContainer, ain: av.audio.stream.AudioStream) -> None:
        self.out, self.ain = out, ain
        context = ain.codec_context
        # ADTS AAC (MPEG-TS, raw .aac) has no extradata: MP4 needs it, so that is re-encoded.
        self.copy = context.name == "aac" and bool(context.extradata)
        if self.copy:
            self.stream = out.add_stream_from_template(ain)
            return
        rate = context.sample_rate if context.sample_rate in _AAC_RATES else 48_000
        self.stream = out.add_stream("aac", rate=rate)
        self.stream.layout = layout = "mono" if (context.channels or 1) == 1 else "stereo"
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=self.stream.codec_context.frame_size or 1024)
        self.next_pts: int | None = None

    def add(self, packet: av.Packet) -> None:
        if self.copy:
            if packet.dts is not None:  # the demuxer's flush packet has no dts
                packet.stream = self.stream
                self.out.mux(packet)
            return
        for frame in packet.decode():
            if self.next_pts is None:  # the track starts where the source's first frame does
                self.next_pts = round((frame.time or 0.0) * self.stream.rate)
            self._encode(self.resampler.resample(frame))

    def flush(self) -> None:
        if not self.copy:
            self._encode(self.resampler.resample(None))
            self.out.mux(self.stream.encode(None))

    def _encode(self, chunks: list[av.AudioFrame]) -> None:
        # Chunks of the encoder's frame size, back to back from the first frame's time.
        for chunk in chunks:
            chunk.pts, chunk.time_base = self.next_pts, Fraction(1, self.stream.rate)
            self.next_pts += chunk.samples
            self.out.mux(self.stream.encode(chunk))


def _subtitle_output(out: av.container.OutputContainer) -> av.subtitles.stream.SubtitleStream:
    stream = out.add_stream("mov_text")
    stream.codec_context.subtitle_header = _ASS_HEADER
    stream.codec_context.time_base = stream.time_base = _SUBTITLE_TIME_BASE
    stream.metadata["language"] = "eng"
    stream.metadata["handler_name"] = "emotion"
    return stream


def _cue_packet(stream: av.subtitles.stream.SubtitleStream, cue: Cue, origin: float) -> av.Packet:
    start = round((cue.start_s + origin) / _SUBTITLE_TIME_BASE)
    length = max(1, round((cue.end_s - cue.start_s) / _SUBTITLE_TIME_BASE))
    # ASS dialogue fields before the text: ReadOrder, Layer, Style, Name, MarginL, MarginR, MarginV, Effect.
    packet = stream.codec_context.encode_subtitle(SubtitleSet.create(b"0,0,Default,,0,0,0,," + cue.text.encode(), 0, length, pts=start))
    packet.stream = stream
    packet.pts = packet.dts = start
    packet.duration, packet.time_base = length, _SUBTITLE_TIME_BASE
    return packet


# --- still images ----------------------------------------------------------------------------


def render_image(rgb: np.ndarray, boxes: list[tuple[float, float, float, float]], captions: list[str], out_path: Path) -> None:
    """Write ``out_path`` (PNG or JPEG): the image with each face boxed and captioned.

    Parameters
    ----------
    rgb : ndarray, shape (height, width, 3)
        uint8 RGB.
    boxes : list of (x0, y0, x1, y1)
        Face boxes in pixels.
    captions : list of str
        One per box.
    """
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for (x0, y0, x1, y1), text in zip(boxes, captions):
        cv2.rectangle(bgr, (int(x0), int(y0)), (int(x1), int(y1)), (80, 220, 80), max(1, rgb.shape[0] // 300))
        patch = caption_patch(text, rgb.shape[0], rgb.shape[1])
        top, left = max(0, int(y0) - patch.shape[0]), max(0, int(x0))
        h, w = min(patch.shape[0], bgr.shape[0] - top), min(patch.shape[1], bgr.shape[1] - left)
        bgr[top : top + h, left : left + w] = patch[:h, :w]
    if not cv2.imwrite(str(out_path), bgr):
        raise OSError(f"could not write {out_path}")
