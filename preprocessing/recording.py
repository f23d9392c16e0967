"""Recordings: what a media file holds, and its decoded streams in time order.

A recording is a video with or without audio, an audio file, or a still image. Decoding streams:
packets are demuxed and decoded one at a time, so memory does not grow with the length of the file,
and video frames stay in FFmpeg's own format until a caller converts the few it needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from .errors import UnreadableRecording, UnsupportedMedia

__all__ = [
    "AudioChunk",
    "RecordingInfo",
    "VideoFrame",
    "decode",
    "probe",
    "read_still",
    "MAX_STILL_PIXELS",
]

log = logging.getLogger(__name__)

#: Largest still image accepted, in pixels (a 50-megapixel photo); larger ones are refused before
#: decoding so that a hostile file cannot exhaust memory.
MAX_STILL_PIXELS = 50_000_000

_STILL_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")


@dataclass(frozen=True)
class RecordingInfo:
    """What a media file holds, read from its headers without decoding.

    Attributes
    ----------
    path : Path
    duration_s : float
        Length in seconds; 0 for a still image.
    width, height : int
        Frame size in pixels; 0 without a video stream.
    fps : float
        Nominal frame rate in frames per second (the stream's average); 0 without video.
    audio_rate : int
        Sampling rate of the audio track in Hz; 0 without audio.
    video_codec, audio_codec : str
        FFmpeg codec names, '' where the stream is absent.
    is_still : bool
        A single image (JPEG, PNG, ...), not a video.
    rotation : int
        Degrees (0, 90, 180 or 270) the decoded frames turn counter-clockwise to be shown upright,
        from the stream's display matrix (phone videos); ``width`` and ``height`` are the upright
        size. Every frame :func:`decode` yields is turned by it in :meth:`VideoFrame.rgb`.
    """

    path: Path
    duration_s: float
    width: int
    height: int
    fps: float
    audio_rate: int
    video_codec: str
    audio_codec: str
    is_still: bool
    rotation: int = 0

    @property
    def has_video(self) -> bool:
        return bool(self.video_codec)

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_codec)


@dataclass
class VideoFrame:
    """One decoded video frame, still in FFmpeg's pixel format.

    Attributes
    ----------
    time_s : float
        Presentation time in seconds from the start of the recording.
    frame : av.VideoFrame
        As decoded, possibly on its side; convert only what is needed, e.g. with :meth:`rgb`.
    rotation : int
        Degrees counter-clockwise that turn ``frame`` upright (:attr:`RecordingInfo.rotation`).
    """

    time_s: float
    frame: av.VideoFrame
    rotation: int = 0

    def rgb(self) -> np.ndarray:
        """The frame upright, as an array of shape (height, width, 3), uint8 RGB."""
        rgb = self.frame.to_ndarray(format="rgb24")
        if self.rotation:  # np.rot90 turns counter-clockwise, as the display matrix says
            rgb = np.ascontiguousarray(np.rot90(rgb, self.rotation // 90))
        return rgb


@dataclass
class AudioChunk:
    """Consecutive mono samples, float32 in [-1, 1], resampled to the rate asked for.

    Attributes
    ----------
    start : int
        Index of the first sample, counted at the output rate from the start of the recording.
    samples : ndarray, shape (n_samples,)
    """

    start: int
    samples: np.ndarray


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise UnreadableRecording(path, "no such file.")
    if path.stat().st_size == 0:
        raise UnreadableRecording(path, "the file is empty.")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as err:
        raise UnreadableRecording(path, f"not a readable media file ({_ffmpeg_reason(err)}).") from err


def _ffmpeg_reason(err: av.error.FFmpegError) -> str:
    return getattr(err, "strerror", None) or str(err)


def _decodable(stream: av.stream.Stream) -> bool:
    try:
        return stream.codec_context is not None and stream.codec_context.codec is not None
    except (av.error.FFmpegError, ValueError):
        return False


def probe(path: str | Path) -> RecordingInfo:
    """Read what a media file holds from its headers.

    Raises
    ------
    UnreadableRecording
        Missing, empty, or not a media file.
    UnsupportedMedia
        No video or audio stream that this FFmpeg build can decode.
    """
    path = Path(path)
    with _open(path) as container:
        video = next((s for s in container.streams.video if _decodable(s)), None)
        audio = next((s for s in container.streams.audio if _decodable(s)), None)
        if video is None and audio is None:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise UnsupportedMedia(path, f"no video or audio stream that can be decoded (streams: {kinds}).")
        is_still = video is not None and audio is None and container.format.name in _STILL_FORMATS
        duration = 0.0 if is_still else _duration_s(container)
        rotation = _rotation(path, video) if video else 0
        width, height = (video.codec_context.width, video.codec_context.height) if video else (0, 0)
        if rotation % 180:
            width, height = height, width
        return RecordingInfo(
            path=path,
            duration_s=duration,
            width=width,
            height=height,
            fps=float(video.average_rate or video.guessed_rate or 0) if video else 0.0,
            audio_rate=audio.codec_context.sample_rate if audio else 0,
            video_codec=video.codec_context.name if video else "",
            audio_codec=audio.codec_context.name if audio else "",
            is_still=is_still,
            rotation=rotation,
        )


def _rotation(path: Path, stream: av.video.stream.VideoStream) -> int:
    """The display matrix's rotation, counter-clockwise, rounded to a quarter turn (0 to 270).

    PyAV shows the matrix on decoded frames only, so the first frame is decoded, in a container
    of its own so that the caller's demuxing is untouched. A file that cannot be decoded has 0
    here; :func:`decode` reports what is wrong with it. Flips (mirrored front cameras) are rare
    and left as they are.
    """
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            frame = next(container.decode(container.streams[stream.index]), None)
    except (av.error.FFmpegError, ValueError):
        return 0
    degrees = frame.rotation if frame is not None else 0
    return round(degrees / 90) % 4 * 90


def _duration_s(container: av.container.InputContainer) -> float:
    """Duration from the container header; from the packets' timestamps where the header has none."""
    if container.duration:
        return container.duration / av.time_base
    end = 0.0
    for packet in container.demux():
        if packet.pts is not None and packet.time_base is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return end


def decode(
    info: RecordingInfo,
    *,
    video: bool = True,
    audio_rate: int | None = None,
    skip_nonref: bool = False,
) -> Iterator[VideoFrame | AudioChunk]:
    """Decode a recording's streams in one pass, in the order their packets are stored.

    Parameters
    ----------
    info : RecordingInfo
        From :func:`probe`.
    video : bool
        Decode the video stream (if any).
    audio_rate : int | None
        Decode the audio track (if any) to mono float32 at this rate in Hz; None skips audio.
    skip_nonref : bool
        Let the decoder drop frames that no other frame references (B-frames in most H.264
        files): about a third less work, at the cost of gaps of a frame or two.

    Yields
    ------
    VideoFrame | AudioChunk
        Interleaved; each kind in increasing time order.
    """
    path = info.path
    with _open(path) as container:
        vstream = container.streams.video[0] if video and info.has_video else None
        astream = container.streams.audio[0] if audio_rate and info.has_audio else None
        streams = [s for s in (vstream, astream) if s is not None]
        if not streams:
            return
        if vstream is not None and skip_nonref:
            vstream.codec_context.skip_frame = "NONREF"
        origin = (container.start_time or 0) / av.time_base
        resampler = av.AudioResampler(format="flt", layout="mono", rate=audio_rate) if astream else None
        next_sample: int | None = None
        last_time = -1.0
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if packet.stream is vstream:
                        # Frames without a timestamp (raw bitstreams) follow the nominal rate.
                        t = frame.time - origin if frame.time is not None else last_time + 1 / (info.fps or 25)
                        last_time = t
                        yield VideoFrame(t, frame, info.rotation)
                    else:
                        for chunk in _resampled(resampler, frame, origin, audio_rate, next_sample):
                            next_sample = chunk.start + len(chunk.samples)
                            yield chunk
            if resampler is not None:
                for chunk in _resampled(resampler, None, origin, audio_rate, next_sample):
                    next_sample = chunk.start + len(chunk.samples)
                    yield chunk
        except av.error.FFmpegError as err:
            raise UnreadableRecording(path, f"decoding failed; the file is truncated or corrupt ({_ffmpeg_reason(err)}).") from err


def _resampled(
    resampler: av.AudioResampler, frame: av.AudioFrame | None, origin: float, rate: int, next_sample: int | None
) -> Iterator[AudioChunk]:
    for out in resampler.resample(frame):
        samples = out.to_ndarray().reshape(-1)
        if next_sample is None:
            # The first chunk places the track in time (it may start late, or early for encoder priming).
            start = round(((out.time or 0.0) - origin) * rate) if out.time is not None else 0
        else:
            start = next_sample
        if start < 0:
            samples, start = samples[-start:], 0
        if len(samples):
            yield AudioChunk(start, samples.astype(np.float32, copy=False))


def read_still(info: RecordingInfo) -> np.ndarray:
    """Decode a still image.

    Returns
    -------
    ndarray, shape (height, width, 3)
        uint8 RGB.
    """
    if info.width * info.height > MAX_STILL_PIXELS:
        raise UnsupportedMedia(
            info.path,
            f"the image is {info.width}x{info.height} pixels; scale it below {MAX_STILL_PIXELS // 1_000_000} megapixels.",
        )
    for item in decode(info):
        return item.rgb()
    raise UnreadableRecording(info.path, "the image holds no decodable picture.")
