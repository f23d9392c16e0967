"""What an uploaded file is, told from its content alone: magic bytes first, then FFmpeg's own reading.

A client's file name and ``Content-Type`` decide nothing: a program renamed ``.mp4`` is still a
program. :func:`sniff` names the container from the first bytes; :func:`inspect_media` then opens
the file with PyAV (:func:`preprocessing.recording.probe`) and decodes a frame at its start and
near its end, so a file cut short is refused before any record is made::

    facts = inspect_media(path, slot="recording", max_duration_s=1800)
    facts.kind, facts.media_type, facts.suffix      # 'video', 'video/mp4', '.mp4'

:func:`combine` puts a video and a separate sound file into one Matroska file, streams copied.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from preprocessing.errors import RecordingError
from preprocessing.recording import MAX_STILL_PIXELS, RecordingInfo, probe

from .errors import ApiError

__all__ = [
    "AUDIO_SUFFIXES",
    "EEGFacts",
    "IMAGE_SUFFIXES",
    "MediaFacts",
    "UnprocessableUpload",
    "UnsupportedUpload",
    "VIDEO_SUFFIXES",
    "combine",
    "inspect_eeg",
    "inspect_media",
    "sniff",
    "sniff_eeg",
]

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac")
IMAGE_SUFFIXES = (".jpg", ".png", ".webp")
KIND_NAMES = {"video": "a video", "audio": "a sound file", "image": "a photo"}
HEAD_BYTES = 64  # enough for every signature below (Matroska's DocType sits in the first 40 bytes)
_END_CHECK_S = 1.0  # how far before the end a frame must still decode


class UnsupportedUpload(ApiError):
    """The file is not a video, sound file or photo that emofuse reads, whatever its name says."""

    status = 415
    code = "unsupported_media_type"


class UnprocessableUpload(ApiError):
    """The file is of a known kind but cannot be analysed: damaged, cut short, too long, no stream."""

    status = 422
    code = "unprocessable_recording"


@dataclass(frozen=True)
class Sniffed:
    """A container named by its first bytes; ``family`` is what it usually holds."""

    media_type: str
    suffix: str
    family: str  # video, audio, image


@dataclass(frozen=True)
class MediaFacts:
    """What an upload holds, as stored with its recording."""

    kind: str  # video, audio, image
    media_type: str
    suffix: str
    duration_s: float | None
    has_video: bool
    has_audio: bool


def sniff(head: bytes) -> Sniffed | None:
    """The container that the first bytes of a file announce; None for anything else."""
    box = head[4:8]
    if box == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return Sniffed("audio/mp4", ".m4a", "audio")
        if brand == b"qt  ":
            return Sniffed("video/quicktime", ".mov", "video")
        if brand[:3] in (b"hei", b"mif", b"avi"):  # HEIF and AVIF photos share the box: not read here
            return None
        return Sniffed("video/mp4", ".mp4", "video")
    if box in (b"moov", b"mdat", b"wide", b"free", b"skip"):  # QuickTime files older than the ftyp box
        return Sniffed("video/quicktime", ".mov", "video")
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, or WebM, which names itself in its DocType
        return Sniffed("video/webm", ".webm", "video") if b"webm" in head[:HEAD_BYTES] else Sniffed("video/x-matroska", ".mkv", "video")
    if head[:4] == b"RIFF":
        return {b"AVI ": Sniffed("video/x-msvideo", ".avi", "video"), b"WAVE": Sniffed("audio/wav", ".wav", "audio"),
                b"WEBP": Sniffed("image/webp", ".webp", "image")}.get(head[8:12])  # fmt: skip
    if head[:4] == b"fLaC":
        return Sniffed("audio/flac", ".flac", "audio")
    if head[:4] == b"OggS":
        return Sniffed("audio/ogg", ".ogg", "audio")
    if head[:3] == b"ID3":
        return Sniffed("audio/mpeg", ".mp3", "audio")
    if head[:3] == b"\xff\xd8\xff":
        return Sniffed("image/jpeg", ".jpg", "image")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame's sync word
        if head[1] & 0x06 == 0:  # layer bits 00: ADTS, raw AAC
            return Sniffed("audio/aac", ".aac", "audio")
        return Sniffed("audio/mpeg", ".mp3", "audio")
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return Sniffed("image/png", ".png", "image")
    return None


def inspect_media(path: Path, *, slot: str, max_duration_s: float) -> MediaFacts:
    """Check the upload at ``path`` from its content, for the form's ``slot``.

    ``slot`` is ``recording`` (a video, a sound file or a photo) or ``sound`` (a sound file to go
    with a video). Messages never name ``path``: it is a generated name the uploader never saw.

    Raises
    ------
    UnsupportedUpload
        The first bytes name no container emofuse reads, or the kind does not fit the slot (415).
    UnprocessableUpload
        Empty, damaged, cut short, longer than ``max_duration_s``, a photo too large, or no
        stream that can be decoded (422).
    """
    with path.open("rb") as file:
        head = file.read(HEAD_BYTES)
    if not head:
        raise UnprocessableUpload("The file is empty.")
    sniffed = sniff(head)
    if sniffed is None:
        raise UnsupportedUpload(_unsupported(slot))
    try:
        info = probe(path)
        _check_decodes(info)
    except RecordingError as err:
        raise UnprocessableUpload(f"The file could not be read as a {sniffed.family}: {err.reason.rstrip('.')}.") from err
    kind = "image" if info.is_still else "video" if info.has_video else "audio"
    if slot == "sound" and kind != "audio":
        raise UnsupportedUpload(f"The sound file holds {KIND_NAMES[kind]}, not sound alone; send the video as the recording.")
    if kind == "image" and info.width * info.height > MAX_STILL_PIXELS:
        raise UnprocessableUpload(f"The photo has {info.width * info.height / 1e6:.0f} megapixels; the limit is {MAX_STILL_PIXELS / 1e6:.0f}.")
    if info.duration_s > max_duration_s:
        raise UnprocessableUpload(f"The recording lasts {_clock(info.duration_s)}; the limit is {_clock(max_duration_s)}.")
    return MediaFacts(kind, sniffed.media_type, sniffed.suffix, None if info.is_still else round(info.duration_s, 3),
                      info.has_video, info.has_audio and not info.is_still)  # fmt: skip


def _unsupported(slot: str) -> str:
    if slot == "sound":
        return f"The sound file is not one emofuse reads; send {', '.join(AUDIO_SUFFIXES)}."
    return (f"The file is not a video, sound file or photo that emofuse reads; send a video ({', '.join(VIDEO_SUFFIXES)}), "
            f"a sound file ({', '.join(AUDIO_SUFFIXES)}) or a photo (JPEG, PNG, WebP).")  # fmt: skip


def _clock(seconds: float) -> str:
    """``1 h 2 min``, ``30 min``, ``12 s``: a duration as a person says it."""
    seconds = math.ceil(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes) + [f"{secs} s"] * bool(secs)
    return " ".join(parts) or "0 s"


def _check_decodes(info: RecordingInfo) -> None:
    """Decode the first frame of the main stream, and check its last packets are in the file.

    Headers alone say nothing of what follows them: an MP4 whose index comes first still has it
    when the file was cut off halfway. The tail check seeks to the last second and demuxes from
    the keyframe before it, so it reads a few packets, not the file.
    """
    if info.is_still:
        return
    size = info.path.stat().st_size
    try:
        with av.open(str(info.path), metadata_errors="ignore") as container:
            stream = _main_stream(container, info)
            if _first_frame(container, stream) is None:
                raise RecordingError(info.path, "no frame can be decoded")
        with av.open(str(info.path), metadata_errors="ignore") as container:
            stream = _main_stream(container, info)
            length = float(stream.duration * stream.time_base) if stream.duration else info.duration_s
            if length > 2 * _END_CHECK_S:
                container.seek(int((length - _END_CHECK_S) / stream.time_base) + (stream.start_time or 0), stream=stream)
            last = 0.0
            for packet in container.demux(stream):
                if not packet.size:
                    continue  # the demuxer's closing packet
                if packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size:
                    break  # the index points past the end of the file
                last = max(last, _seconds(packet) - float((stream.start_time or 0) * stream.time_base))
            if last < length - _END_CHECK_S - 0.5:
                raise RecordingError(info.path, f"it is cut short (it ends at {_clock(last)} of the {_clock(length)} its header announces)")
    except av.error.FFmpegError as err:
        raise RecordingError(info.path, f"it is damaged ({getattr(err, 'strerror', None) or err})") from err


def _main_stream(container: av.container.InputContainer, info: RecordingInfo) -> av.stream.Stream:
    return container.streams.video[0] if info.has_video else container.streams.audio[0]


def _first_frame(container: av.container.InputContainer, stream: av.stream.Stream) -> av.frame.Frame | None:
    try:
        return next(container.decode(stream), None)
    except (av.error.InvalidDataError, av.error.EOFError):
        return None


@dataclass(frozen=True)
class EEGFacts:
    """What an uploaded EEG file holds, read whole by :func:`preprocessing.eeg.read_eeg`."""

    suffix: str  # .mat, .edf, .bdf
    duration_s: float
    rate: float
    channels: tuple[str, ...]


def sniff_eeg(head: bytes) -> str | None:
    """The EEG format that the first bytes announce (its suffix), or None."""
    if head.startswith(b"MATLAB 5.0 MAT-file") or head.startswith(b"\x89HDF\r\n\x1a\n"):  # v5-v7, v7.3 (HDF5)
        return ".mat"
    if head[:8] == b"0       ":  # EDF's version field
        return ".edf"
    if head[:8] == b"\xffBIOSEMI":
        return ".bdf"
    return None


def inspect_eeg(path: Path, *, mat_key: str | None, rate: float | None, channels: tuple[str, ...] | None) -> EEGFacts:
    """Check an uploaded EEG file from its content and read it as the job will.

    ``path`` must end with the suffix :func:`sniff_eeg` gave (the reader goes by it).

    Raises
    ------
    UnsupportedUpload
        Not a .mat, EDF or BDF file, whatever its name (415).
    UnprocessableUpload
        It cannot be read: no such variable, the wrong channel count, a rate that differs from its
        header, no samples (422).
    """
    from preprocessing.eeg import read_eeg  # scipy, h5py and mne load only for EEG uploads

    try:
        recording = read_eeg(path, rate=rate, mat_key=mat_key, channels=channels)
    except RecordingError as err:
        reason = err.reason.rstrip(".").replace("(mat_key)", "(eeg_variable)").replace("mat_key", "eeg_variable")
        raise UnprocessableUpload(f"The EEG file {reason}.") from err
    return EEGFacts(path.suffix, round(recording.duration_s, 3), float(recording.rate), tuple(recording.channels))


def combine(video: Path, sound: Path, out: Path, *, limit_s: float | None = None) -> Path:
    """A QuickTime file at ``out`` with the video stream of ``video``, copied, and the sound of
    ``sound`` as 16-bit PCM (mono, at its own rate up to 48 kHz), cut at the video's end.

    The video is copied, never re-encoded; the sound is decoded because QuickTime takes FLAC,
    Opus and Vorbis only as experiments, and PCM needs no encoder. ``limit_s`` stops after that
    many seconds: a dry run at upload, which tells whether the two can be combined at all.

    Raises
    ------
    RecordingError
        A stream cannot be read, decoded or copied into the file.
    """
    try:
        with av.open(str(video), metadata_errors="ignore") as pictures, av.open(str(sound), metadata_errors="ignore") as voice, \
                av.open(str(out), "w", format="mov") as output:  # fmt: skip
            video_in, audio_in = pictures.streams.video[0], voice.streams.audio[0]
            video_out = output.add_stream_from_template(video_in)
            rate = min(audio_in.codec_context.sample_rate or 48000, 48000)
            audio_out = output.add_stream("pcm_s16le", rate=rate, layout="mono")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            end_s = float(pictures.duration / av.time_base) if pictures.duration else math.inf
            end_s = min(end_s, limit_s) if limit_s is not None else end_s
            for packet in _interleaved(pictures.demux(video_in), voice.demux(audio_in)):
                if _seconds(packet) > end_s:
                    if packet.stream is video_in and limit_s is not None:
                        break
                    continue
                if packet.stream is video_in:
                    packet.stream = video_out
                    output.mux(packet)
                    continue
                for frame in packet.decode():
                    for pcm in resampler.resample(frame):
                        output.mux(audio_out.encode(pcm))
            output.mux(audio_out.encode(None))
    except (av.error.FFmpegError, ValueError, IndexError) as err:
        out.unlink(missing_ok=True)
        reason = getattr(err, "strerror", None) or str(err)
        raise RecordingError(video, f"the video and the sound file cannot be combined ({reason})") from err
    return out


def _seconds(packet: av.Packet) -> float:
    time = packet.dts if packet.dts is not None else packet.pts
    return float(time * packet.time_base) if time is not None else 0.0


def _interleaved(*demuxers: Iterator[av.Packet]) -> Iterator[av.Packet]:
    """Packets of several demuxers, earliest first; the flushing packets (no data) are left out.

    FFmpeg's muxer interleaves only what it is given close together: feeding it one whole stream
    and then the other would make it hold the first in memory until the second caught up.
    """
    streams = [(packet for packet in demuxer if packet.size) for demuxer in demuxers]
    heads = [next(stream, None) for stream in streams]
    while any(head is not None for head in heads):
        pick = min((i for i, head in enumerate(heads) if head is not None), key=lambda i: _seconds(heads[i]))
        yield heads[pick]
        heads[pick] = next(streams[pick], None)
