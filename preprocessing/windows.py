"""Windows: the unit every emofuse model sees, cut from a recording in one streaming pass.

A window is 3.6 s of a recording: 15 video frames sampled evenly inside it, each reduced to the
crop of the face it shows, and the audio of those 3.6 s as mono PCM. The audio-video model of
Chumachenko, Iosifidis & Gabbouj (ICPR 2022) takes exactly this; training and serving both cut
windows here, so a model sees in service what it saw in training.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Full, Queue
from typing import TypeVar

import numpy as np
import soundfile

from .errors import UnreadableRecording, UnsupportedMedia
from .faces import CropSpec, FaceBox, FaceDetector, crop_face
from .recording import AudioChunk, RecordingInfo, VideoFrame, decode

__all__ = ["Window", "WindowSpec", "WindowReader", "read_windows"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_FOLLOW_S = 1.0  # a face is followed from one searched frame to the next at most this far apart


@dataclass(frozen=True)
class WindowSpec:
    """How a recording is cut into windows.

    Attributes
    ----------
    length_s : float
        Window length in seconds.
    frames : int
        Video frames per window, sampled at the centres of ``frames`` equal slices of the window.
    hop_s : float
        Seconds between the starts of consecutive windows; ``hop_s < length_s`` overlaps them.
    audio_rate : int
        Audio sampling rate in Hz.
    skip_nonref : bool
        Decode without the frames no other frame references (see :func:`~preprocessing.recording.decode`).

    Examples
    --------
    >>> WindowSpec().samples  # audio samples per window: 3.6 s at 22,050 Hz
    79380
    """

    length_s: float = 3.6  # the AV model's window (Chumachenko et al. 2022)
    frames: int = 15  # the AV model's frames per window
    hop_s: float = 3.6  # back to back: each moment is analysed once
    audio_rate: int = 22_050  # librosa's default rate; 10 MFCCs over 3.6 s give 10x156
    skip_nonref: bool = True  # a third less decoding; the nearest earlier frame stands in

    def __post_init__(self) -> None:
        if not (self.length_s > 0 and self.hop_s > 0 and self.frames > 0 and self.audio_rate > 0):
            raise ValueError(f"WindowSpec values must be positive, got {self}.")

    @property
    def samples(self) -> int:
        """Audio samples in one window."""
        return round(self.length_s * self.audio_rate)

    def spans(self, duration_s: float) -> list[tuple[float, float]]:
        """Start and end in seconds of each window of a recording ``duration_s`` long.

        Windows start every ``hop_s``; if the last one ends noticeably before the recording does,
        one more is aligned to the end, so that every second is covered. A recording shorter
        than one window gets a single short window.
        """
        if duration_s <= 0:
            return []
        if duration_s <= self.length_s:
            return [(0.0, duration_s)]
        n = int((duration_s - self.length_s) / self.hop_s + 1e-9) + 1
        spans = [(i * self.hop_s, i * self.hop_s + self.length_s) for i in range(n)]
        if duration_s - spans[-1][1] > 0.05 * self.length_s:
            spans.append((duration_s - self.length_s, duration_s))
        return spans

    def frame_times(self, start_s: float, end_s: float) -> np.ndarray:
        """Times in seconds of the frames sampled in a window, shape (frames,)."""
        step = (end_s - start_s) / self.frames
        return start_s + (np.arange(self.frames) + 0.5) * step


@dataclass
class Window:
    """One window of a recording, ready for the models.

    Attributes
    ----------
    index : int
        Position in the recording, from 0.
    start_s, end_s : float
        Span in seconds; shorter than the spec's length only for a recording shorter than one window.
    frame_times : ndarray, shape (frames,)
        Seconds at which the frames were sampled.
    source_times : ndarray, shape (frames,)
        Presentation time in seconds of the decoded frame shown at each sampled time; NaN if none.
    faces : ndarray, shape (frames, size, size) or (frames, size, size, 3)
        uint8 face crops as the :class:`CropSpec` says; zeros where no face was found.
    face_found : ndarray of bool, shape (frames,)
    audio : ndarray, shape (samples,) | None
        float32 mono PCM at the spec's rate, zero-padded past the end of the track; None if the
        recording has no audio track.
    """

    index: int
    start_s: float
    end_s: float
    frame_times: np.ndarray
    source_times: np.ndarray
    faces: np.ndarray
    face_found: np.ndarray
    audio: np.ndarray | None = None
    _pending: int = field(default=0, repr=False)

    @property
    def has_face(self) -> bool:
        return bool(self.face_found.any())


class _AudioBuffer:
    """The samples still needed by windows not yet emitted; older samples are dropped."""

    def __init__(self) -> None:
        self._chunks: list[AudioChunk] = []
        self.end = 0

    def append(self, chunk: AudioChunk) -> None:
        self._chunks.append(chunk)
        self.end = chunk.start + len(chunk.samples)

    def read(self, start: int, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        for chunk in self._chunks:
            lo, hi = max(start, chunk.start), min(start + n, chunk.start + len(chunk.samples))
            if lo < hi:
                out[lo - start : hi - start] = chunk.samples[lo - chunk.start : hi - chunk.start]
        return out

    def discard_before(self, start: int) -> None:
        self._chunks = [c for c in self._chunks if c.start + len(c.samples) > start]


class WindowReader:
    """Iterates over the windows of a recording as soon as each is complete.

    Use :func:`read_windows` to make one. ``len(reader)`` is known before decoding starts, so a
    caller can report progress. ``seconds`` adds up, as the windows are read, the wall time the
    reader spent waiting for decoded frames and audio ("decoding") and finding and cropping faces
    ("faces"), so a caller can say where a recording's time went.
    """

    def __init__(
        self,
        info: RecordingInfo,
        spec: WindowSpec,
        crop: CropSpec | None,
        detector: FaceDetector | None,
        wav_path: Path | None,
    ) -> None:
        if not info.has_video and not info.has_audio:
            raise UnsupportedMedia(info.path, "no video or audio stream to cut into windows.")
        if info.is_still:
            raise UnsupportedMedia(info.path, "a still image has no windows; analyse it as an image.")
        self.info, self.spec, self.crop, self.wav_path = info, spec, crop, wav_path
        self.detector = detector if crop is not None and info.has_video else None
        self.spans = spec.spans(info.duration_s)
        self.seconds = {"decoding": 0.0, "faces": 0.0}

    def __len__(self) -> int:
        return len(self.spans)

    def __iter__(self) -> Iterator[Window]:
        wav = _open_wav(self.wav_path, self.spec.audio_rate) if self.wav_path and self.info.has_audio else None
        try:
            yield from self._windows(wav)
        except BaseException:
            if wav is not None:
                wav.close()
                Path(wav.name).unlink(missing_ok=True)
            raise
        if wav is not None:
            wav.close()
            Path(wav.name).replace(self.wav_path)

    def _new_window(self, index: int) -> Window:
        start, end = self.spans[index]
        shape = self.crop.shape if self.crop else (0, 0)
        track = self.detector is not None
        return Window(
            index=index,
            start_s=start,
            end_s=end,
            frame_times=self.spec.frame_times(start, end),
            source_times=np.full(self.spec.frames, np.nan),
            faces=np.zeros((self.spec.frames, *shape), np.uint8),
            face_found=np.zeros(self.spec.frames, bool),
            _pending=self.spec.frames if track else 0,
        )

    def _windows(self, wav: soundfile.SoundFile | None) -> Iterator[Window]:
        spec, rate = self.spec, self.spec.audio_rate
        # Sampled times of all windows, flat (window * frames + slot), and their order in time.
        times = np.array([self.spec.frame_times(*span) for span in self.spans]).reshape(-1)
        order = np.argsort(times, kind="stable") if self.detector is not None else np.zeros(0, int)
        active: dict[int, Window] = {}  # created at their first frame, dropped once yielded
        audio = _AudioBuffer() if self.info.has_audio else None
        next_target, next_window = 0, 0
        previous: VideoFrame | None = None
        # The last frame searched for a face, its crop (0 if none) and the face's box.
        resolved: tuple[VideoFrame | None, np.ndarray | int, FaceBox | None] = (None, 0, None)

        def window(index: int) -> Window:
            if index not in active:
                active[index] = self._new_window(index)
            return active[index]

        def resolve(target: int, frame: VideoFrame | None) -> None:
            nonlocal resolved
            slot = target % spec.frames
            if frame is not None and resolved[0] is not frame:
                # Follow the face of the frame just searched, unless this frame starts a window
                # (where any face may be the best) or comes long after it.
                last, _, box = resolved
                follow = box is not None and slot > 0 and frame.time_s - last.time_s <= _FOLLOW_S
                resolved = (frame, *self._face(frame, box if follow else None))
            w = window(target // spec.frames)
            if frame is not None:
                w.faces[slot], w.face_found[slot] = resolved[1], resolved[2] is not None
                w.source_times[slot] = frame.time_s
            w._pending -= 1

        def ready(index: int, finished: bool) -> bool:
            audio_done = audio is None or finished or audio.end >= round(self.spans[index][1] * rate)
            return window(index)._pending == 0 and audio_done

        def emit(finished: bool) -> Iterator[Window]:
            nonlocal next_window
            while next_window < len(self.spans) and ready(next_window, finished):
                w = active.pop(next_window)
                next_window += 1
                if audio is not None:
                    w.audio = audio.read(round(w.start_s * rate), spec.samples)
                    later = self.spans[next_window][0] if next_window < len(self.spans) else w.end_s
                    audio.discard_before(round(later * rate))
                yield w

        stream = _read_ahead(
            decode(
                self.info,
                video=self.detector is not None,
                audio_rate=rate if audio is not None else None,
                skip_nonref=spec.skip_nonref,
            )
        )
        for item in _timed(stream, self.seconds, "decoding"):
            if isinstance(item, AudioChunk):
                audio.append(item)
                if wav is not None:
                    wav.write(item.samples)
            else:
                # A sampled time before this frame is shown by the previous frame.
                while next_target < len(order) and times[order[next_target]] < item.time_s:
                    resolve(int(order[next_target]), previous or item)
                    next_target += 1
                previous = item
            yield from emit(finished=False)
        self._check_complete(previous, audio)
        for target in order[next_target:]:
            resolve(int(target), previous)  # past the last frame: the last frame is on screen
        yield from emit(finished=True)

    def _check_complete(self, last_frame: VideoFrame | None, audio: _AudioBuffer | None) -> None:
        """Refuse a recording whose streams end well before its header says (a truncated file)."""
        duration = self.info.duration_s
        slack = max(1.0, 0.05 * duration)
        ends = []
        if self.detector is not None:
            ends.append(("video", last_frame.time_s if last_frame else 0.0))
        if audio is not None:
            ends.append(("audio", audio.end / self.spec.audio_rate))
        for kind, end in ends:
            if duration - end > slack:
                raise UnreadableRecording(
                    self.info.path, f"the {kind} stops at {end:.1f} s of {duration:.1f} s; the file is truncated or corrupt."
                )

    def _face(self, frame: VideoFrame, near: FaceBox | None) -> tuple[np.ndarray | int, FaceBox | None]:
        """The crop of the best face in ``frame`` (0 if none) and its box; ``near``: search
        around this box first, the whole frame only if the face is not there."""
        started = time.perf_counter()
        try:
            return self._find_face(frame, near)
        finally:
            self.seconds["faces"] += time.perf_counter() - started

    def _find_face(self, frame: VideoFrame, near: FaceBox | None) -> tuple[np.ndarray | int, FaceBox | None]:
        rgb = frame.rgb()
        boxes = self.detector.detect_near(rgb, near) if near is not None else []
        boxes = boxes or self.detector.detect(rgb)
        if not boxes:
            return 0, None
        return crop_face(rgb, boxes[0], self.crop), boxes[0]


def _timed(items: Generator[T, None, None], seconds: dict[str, float], key: str) -> Iterator[T]:
    """``items``, adding the wall time spent waiting for each to ``seconds[key]``; closing
    this closes ``items`` (the decoding thread stops at once)."""
    with contextlib.closing(items):
        while True:
            started = time.perf_counter()
            item = next(items, _END)
            seconds[key] += time.perf_counter() - started
            if item is _END:
                return
            yield item


_END = object()


def _read_ahead(items: Iterator[T], depth: int = 16) -> Iterator[T]:
    """``items``, produced by a thread of their own up to ``depth`` ahead of the consumer.

    Decoding (FFmpeg) and face detection (TFLite) both release the GIL, so the two run on two
    cores at once. An exception in the producer is raised here; closing this generator stops it.
    """
    queue: Queue[tuple[bool, object]] = Queue(depth)
    stop = threading.Event()

    def offer(message: tuple[bool, object]) -> bool:
        """Queue ``message`` unless the consumer has gone; False once it has."""
        while not stop.is_set():
            with contextlib.suppress(Full):
                queue.put(message, timeout=0.1)
                return True
        return False

    def produce() -> None:
        try:
            with contextlib.closing(items):
                if all(offer((True, item)) for item in items):
                    offer((False, None))
        except BaseException as err:  # handed to the consumer, which raises it
            offer((False, err))

    thread = threading.Thread(target=produce, name="decode", daemon=True)
    thread.start()
    try:
        while True:
            more, item = queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _open_wav(path: Path, rate: int) -> soundfile.SoundFile:
    part = path.with_name(path.name + ".part")
    return soundfile.SoundFile(part, "w", samplerate=rate, channels=1, subtype="PCM_16", format="WAV")


def read_windows(
    info: RecordingInfo,
    spec: WindowSpec = WindowSpec(),
    *,
    crop: CropSpec | None = None,
    detector: FaceDetector | None = None,
    wav_path: str | Path | None = None,
) -> WindowReader:
    """Cut a recording into windows, decoding it once as a stream.

    Parameters
    ----------
    info : RecordingInfo
        From :func:`~preprocessing.recording.probe`.
    spec : WindowSpec
        Window length, frames per window, hop and audio rate.
    crop : CropSpec | None
        How each sampled frame's face becomes a crop; None reads audio only.
    detector : FaceDetector | None
        Finds the faces; one is made with its defaults if ``crop`` is given and this is None.
    wav_path : str | Path | None
        Also write the whole audio track, mono 16-bit PCM at ``spec.audio_rate``, to this .wav.

    Returns
    -------
    WindowReader
        An iterable of :class:`Window`, in order, each yielded as soon as decoding has passed it.

    Notes
    -----
    The frame sampled at time t is the last decoded frame shown at or before t, so a variable
    frame rate is followed exactly. Only the sampled frames are converted to RGB and searched
    for faces (15 of about 108 frames of a 30 fps window); the best-scoring face is cropped.
    """
    if crop is not None and detector is None:
        detector = FaceDetector()
    return WindowReader(info, spec, crop, detector, Path(wav_path) if wav_path else None)

