"""Reading recordings: what probe() tells, and the clear errors for files it cannot read."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from preprocessing.errors import UnreadableRecording, UnsupportedMedia
from preprocessing.recording import probe, read_still


def test_probe_video(face_video) -> None:
    info = probe(face_video)
    assert (info.width, info.height, info.fps) == (640, 360, 30)
    assert info.duration_s == pytest.approx(8.0, abs=0.1)
    assert info.has_video and info.has_audio and not info.is_still
    assert info.video_codec == "h264" and info.audio_codec == "aac"


def test_probe_still(tmp_path) -> None:
    import cv2
    from skimage import data

    path = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    info = probe(path)
    assert info.is_still and (info.width, info.height) == (512, 512)
    assert read_still(info).shape == (512, 512, 3)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated(source: Path, tmp_path: Path) -> Path:
    path = tmp_path / "truncated.mp4"
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return path


def _unknown_codec(tmp_path: Path) -> Path:
    """An AVI whose video stream is tagged with a codec no decoder knows."""
    path = tmp_path / "unknown.avi"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    data = path.read_bytes()
    assert b"FMP4" in data
    path.write_bytes(data.replace(b"FMP4", b"QQQQ"))
    return path


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda tmp, video: tmp / "missing.mp4", UnreadableRecording, "no such file"),
        (lambda tmp, video: _write(tmp / "empty.mp4", b""), UnreadableRecording, "empty"),
        (lambda tmp, video: _write(tmp / "notes.mp4", b"not a video\n" * 100), UnreadableRecording, "not a readable media file"),
        (lambda tmp, video: _truncated(video, tmp), UnreadableRecording, "not a readable media file"),
        (lambda tmp, video: _unknown_codec(tmp), UnsupportedMedia, "no video or audio stream that can be decoded"),
    ],
    ids=["missing", "empty", "text", "truncated", "unknown-codec"],
)
def test_bad_files_give_clear_errors(tmp_path, face_video, make, error, message) -> None:
    path = make(tmp_path, face_video)
    with pytest.raises(error, match=message) as caught:
        probe(path)
    assert str(caught.value).startswith(path.name + ": ")
    assert "\n" not in str(caught.value)


def test_truncated_streamable_file_is_refused(face_video, tmp_path) -> None:
    """With the index at the front (faststart) a cut file still opens: the windows notice the cut."""
    from preprocessing.faces import CropSpec
    from preprocessing.windows import read_windows

    streamable = tmp_path / "streamable.mp4"
    with av.open(str(face_video)) as source, av.open(str(streamable), "w", options={"movflags": "+faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(streamable.read_bytes()[: streamable.stat().st_size // 2])
    info = probe(cut)
    with pytest.raises(UnreadableRecording, match="truncated"):
        list(read_windows(info, crop=CropSpec()))
