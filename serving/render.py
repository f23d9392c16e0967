"""Annotated copies of recordings: the current emotion written in the upper-left corner.

Videos are decoded once more and re-encoded as H.264 (libx264) + AAC in an MP4 that browsers
play; the audio is copied unchanged when it is already AAC. Each caption is drawn once into a
small YUV patch that is pasted into the planes of every frame, so no frame is converted to RGB.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np

from preprocessing.recording import RecordingInfo

from .timeline import Timeline

__all__ = ["caption_patch", "render_image", "render_video"]

log = logging.getLogger(__name__)

MARGIN = 8  # pixels between the frame's corner and the caption
X264_OPTIONS = {"preset": "veryfast", "crf": "23"}  # veryfast: 1.5x the time of ultrafast, half the size


@lru_cache(maxsize=64)
def caption_patch(text: str, frame_height: int) -> np.ndarray:
    """A caption as white text on a dark box, in BGR, shape (h, w, 3) with h and w even."""
    scale = max(0.5, frame_height / 720)
    thickness = max(1, round(2 * scale))
    (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = round(6 * scale)
    height, width = h + baseline + 2 * pad, w + 2 * pad
    patch = np.full((height + height % 2, width + width % 2, 3), 24, np.uint8)
    cv2.putText(patch, text, (pad, pad + h), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return patch


@lru_cache(maxsize=64)
def _yuv_patch(text: str, frame_height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    patch = caption_patch(text, frame_height)
    h, w = patch.shape[:2]
    i420 = cv2.cvtColor(patch, cv2.COLOR_BGR2YUV_I420)  # (h * 3 / 2, w): Y, then U and V quarter planes
    y = i420[:h]
    u = i420[h : h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4 :].reshape(h // 2, w // 2)
    return y, u, v


def _paste(frame: av.VideoFrame, text: str) -> av.VideoFrame:
    """Write the caption into a yuv420p frame's planes, in place (copying first if shared)."""
    if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
        frame = frame.reformat(width=frame.width & ~1, height=frame.height & ~1, format="yuv420p")
    frame.make_writable()  # the decoder may still reference this buffer for later frames
    for plane, patch, offset in zip(frame.planes, _yuv_patch(text, frame.height), (MARGIN, MARGIN // 2, MARGIN // 2)):
        view = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        h = min(patch.shape[0], view.shape[0] - offset)
        w = min(patch.shape[1], plane.width - offset)
        if h > 0 and w > 0:
            view[offset : offset + h, offset : offset + w] = patch[:h, :w]
    return frame


def render_video(
    info: RecordingInfo,
    timeline: Timeline,
    out_path: Path,
    *,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Write ``out_path``: the recording with each frame's caption, H.264 + AAC in MP4.

    Each frame shows the window whose centre is nearest its time. The output has the input's
    frames, timestamps (variable frame rate included) and audio.
    """
    centres = np.array([(w.start_s + w.end_s) / 2 for w in timeline.windows])
    captions = [timeline.caption(w) for w in timeline.windows]
    with av.open(str(info.path)) as source, av.open(str(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        vin = source.streams.video[0]
        vin.thread_type = "AUTO"
        vout = out.add_stream("libx264", rate=vin.average_rate or Fraction(30))
        vout.width, vout.height = info.width & ~1, info.height & ~1
        vout.pix_fmt = "yuv420p"
        vout.options = X264_OPTIONS
        vout.time_base = vin.time_base
        ain = source.streams.audio[0] if info.has_audio else None
        aout, resampler = _audio_output(out, ain)
        streams = [s for s in (vin, ain) if s is not None]
        origin = (source.start_time or 0) / av.time_base
        duration = max(info.duration_s, 1e-6)
        for packet in source.demux(*streams):
            if packet.stream is ain and resampler is None:
                if packet.dts is not None:  # copy AAC as it is; the demuxer's flush packet has no dts
                    packet.stream = aout
                    out.mux(packet)
                continue
            for frame in packet.decode():
                if packet.stream is ain:
                    for chunk in resampler.resample(frame):
                        out.mux(aout.encode(chunk))
                    continue
                t = (frame.time or 0.0) - origin
                annotated = _paste(frame, captions[_nearest(centres, t)])
                annotated.pts, annotated.time_base = frame.pts, frame.time_base
                out.mux(vout.encode(annotated))
                if progress is not None:
                    progress(min(1.0, t / duration))
        out.mux(vout.encode())
        if resampler is not None:
            for chunk in resampler.resample(None):
                out.mux(aout.encode(chunk))
            out.mux(aout.encode())


def _nearest(sorted_values: np.ndarray, x: float) -> int:
    """Index of the value nearest ``x`` in an ascending array."""
    i = int(np.searchsorted(sorted_values, x))
    if i == len(sorted_values) or (i > 0 and x - sorted_values[i - 1] <= sorted_values[i] - x):
        return i - 1
    return i


def _audio_output(
    out: av.container.OutputContainer, ain: av.audio.stream.AudioStream | None
) -> tuple[av.audio.stream.AudioStream | None, av.AudioResampler | None]:
    """An AAC output stream: copied from the input if it is AAC, else with a resampler to encode."""
    if ain is None:
        return None, None
    if ain.codec_context.name == "aac":
        return out.add_stream_from_template(ain), None
    aout = out.add_stream("aac", rate=ain.codec_context.sample_rate or 48_000)
    layout = "stereo" if (ain.codec_context.channels or 1) > 1 else "mono"
    aout.layout = layout
    return aout, av.AudioResampler(format="fltp", layout=layout, rate=aout.rate)


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
        patch = caption_patch(text, rgb.shape[0])
        top, left = max(0, int(y0) - patch.shape[0]), max(0, int(x0))
        h, w = min(patch.shape[0], bgr.shape[0] - top), min(patch.shape[1], bgr.shape[1] - left)
        bgr[top : top + h, left : left + w] = patch[:h, :w]
    if not cv2.imwrite(str(out_path), bgr):
        raise OSError(f"could not write {out_path}")
