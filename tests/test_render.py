"""The annotated copy: its caption, its soft caption track, and its place after the timeline.

Frame sizes, codecs and containers are in test_formats.py. Here: the caption's size on every
frame, when each caption is shown, the mov_text track, the timeline reported before the copy is
written, and a copy that cannot be written (a real file-size limit, as a full disk would) costing
the copy only, in `emofuse analyze` and in `emofuse batch`.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from preprocessing.recording import probe
from serving.analysis import Analyzer, Progress
from serving.render import caption_cues, caption_margin, caption_patch, render_video
from serving.timeline import Timeline, WindowResult

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FRAME_SIZES = [(160, 120), (320, 240), (400, 400), (640, 480), (854, 480), (1280, 720), (1920, 1080), (3840, 2160), (360, 640), (1080, 1920), (639, 479)]
LONGEST = ["surprise 100% (voice only)", "no face or voice", "untrained model", "happy 82%"]


@pytest.mark.parametrize("width, height", FRAME_SIZES, ids=lambda v: str(v))
@pytest.mark.parametrize("text", LONGEST)
def test_caption_fits_and_stays_legible(width, height, text) -> None:
    patch = caption_patch(text, height, width)
    margin = caption_margin(height, width)
    assert patch.shape[0] % 2 == 0 and patch.shape[1] % 2 == 0, "whole chroma samples"
    assert patch.shape[0] + 2 * margin <= height and patch.shape[1] + 2 * margin <= width, "inside the frame"
    assert patch.shape[0] <= 0.4 * height, "the caption leaves the picture visible"
    inked = np.flatnonzero((patch.max(axis=2) > 128).any(axis=1))  # rows holding text
    lines = 1 + int((np.diff(inked) > 1).sum())
    line_height = len(inked) / lines
    assert line_height >= 12, "legible on the smallest frame: letters at least 12 px tall"
    assert line_height >= 0.03 * min(width, height), "and growing with the frame up to 4K"


def _timeline(*spans_and_labels: tuple[float, float, int | None]) -> Timeline:
    timeline = Timeline("emotion_av", LABELS, True, "av")
    for i, (start, end, label) in enumerate(spans_and_labels):
        if label is None:
            timeline.windows.append(WindowResult(i, start, end, "no_face_or_voice", None, 0, 15, False, {"face_expression": 0.0}))
            continue
        probs = np.full(len(LABELS), 0.05)
        probs[label] = 0.7
        weights = {"face_expression": 0.5, "speech_emotion": 0.5}
        timeline.windows.append(WindowResult(i, start, end, "ok", probs, 15, 15, True, weights))
    return timeline


def test_each_moment_shows_the_window_nearest_it() -> None:
    """The windows of an 8 s recording: (0, 3.6), (3.6, 7.2), and (4.4, 8.0) aligned to its end."""
    timeline = _timeline((0.0, 3.6, 3), (3.6, 7.2, 4), (4.4, 8.0, 4))
    cues = caption_cues(timeline, 8.0)
    assert [(c.start_s, c.end_s, c.text) for c in cues] == [(0.0, 3.6, "happy 70%"), (3.6, 8.0, "sad 70%")], "equal captions make one cue"
    cues = caption_cues(_timeline((0.0, 3.6, 3), (3.6, 7.2, None), (4.4, 8.0, 4)), 8.0)
    assert [(round(c.start_s, 6), round(c.end_s, 6)) for c in cues] == [(0.0, 3.6), (3.6, 5.8), (5.8, 8.0)], "halfway between centres 1.8, 5.4, 6.2"
    assert [c.text for c in cues] == ["happy 70%", "no face or voice", "sad 70%"]


def _corner(frame: av.VideoFrame, height: int, width: int, text: str) -> float:
    """Mean absolute difference of the frame's upper-left luma and ``text``'s caption."""
    patch = 16 + cv2.cvtColor(caption_patch(text, height, width), cv2.COLOR_BGR2GRAY).astype(float) * 219 / 255
    m = caption_margin(height, width)
    luma = frame.reformat(format="yuv420p").to_ndarray()[:height]
    return float(np.abs(luma[m : m + patch.shape[0], m : m + patch.shape[1]] - patch).mean())


def test_soft_captions_and_burnt_in_captions_agree(face_video, tmp_path) -> None:
    info = probe(face_video)
    timeline = _timeline((0.0, 3.6, 3), (3.6, 7.2, 4), (4.4, 8.0, 0))
    copy = tmp_path / "copy.mp4"
    seen: list[float] = []
    render_video(info, timeline, copy, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) <= 101, "at most once per percent"
    with av.open(str(copy)) as container:
        (track,) = container.streams.subtitles
        assert track.codec_context.name == "mov_text"
        cues = []
        for packet in container.demux(track):
            if packet.duration:  # the muxer puts an empty, instant sample after each cue
                data = bytes(packet)  # a mov_text sample: 16-bit big-endian length, then UTF-8
                text = data[2 : 2 + int.from_bytes(data[:2], "big")].decode()
                cues.append((float(packet.pts * packet.time_base), float(packet.duration * packet.time_base), text))
    assert [(start, text) for start, _, text in cues] == [(0.0, "happy 70%"), (3.6, "sad 70%"), (5.8, "angry 70%")]
    assert [length for _, length, _ in cues] == pytest.approx([3.6, 2.2, 2.2], abs=0.05), "to the end of the recording"
    with av.open(str(copy)) as container:
        frames = {round(f.time, 2): f for f in container.decode(video=0) if round(f.time, 2) in (1.0, 3.5, 3.7, 6.0)}
    for t, shown, other in ((1.0, "happy 70%", "sad 70%"), (3.5, "happy 70%", "sad 70%"), (3.7, "sad 70%", "happy 70%"), (6.0, "angry 70%", "sad 70%")):
        assert _corner(frames[t], 360, 640, shown) + 5 < _corner(frames[t], 360, 640, other), f"{shown!r} at {t} s"


def test_timeline_is_reported_before_the_copy_is_written(short_video, client, tmp_path) -> None:
    events: list[tuple[str, bool]] = []
    reported: list[Timeline] = []

    def progress(p: Progress) -> None:
        events.append((p.stage, any(tmp_path.rglob("*.mp4"))))
        if p.stage == "timeline":
            reported.append(p.timeline)

    analysis = Analyzer(client).analyze(short_video, tmp_path, progress=progress)
    stages = [stage for stage, _ in events]
    first_video = stages.index("video")
    assert stages.count("timeline") == 1 and stages.index("timeline") < first_video
    assert not events[stages.index("timeline")][1], "no copy is being written yet"
    assert reported[0] is analysis.timeline and len(reported[0].windows) == 1, "the complete timeline"
    assert events[-1][0] == "video" and (tmp_path / "short.annotated.mp4").exists()


def _file_size_limit(limit: int):
    """For a child process: files it writes stop at ``limit`` bytes with EFBIG, as on a full disk."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death; inherited across exec

    return apply


LIMIT = 32_000  # bytes: room for a timeline and a results line, not for a 4 s video


@pytest.fixture(scope="module")
def copy_size(silent_video, client, tmp_path_factory) -> int:
    """The size of the silent video's copy when nothing is in the way."""
    analysis = Analyzer(client).analyze(silent_video, tmp_path_factory.mktemp("unlimited"))
    return analysis.files["video"].stat().st_size


def test_failed_copy_keeps_the_timeline(silent_video, triton, copy_size, tmp_path) -> None:
    assert copy_size > 4 * LIMIT, "the limit stops the copy and nothing else"
    run = subprocess.run(
        [sys.executable, "-m", "emofuse.cli", "analyze", str(silent_video), "--json", "--out", str(tmp_path), "--triton", triton.grpc_url],
        capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(LIMIT),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "annotated copy could not be written" in run.stderr
    result = json.loads(run.stdout)
    assert "File too large" in result["failures"]["video"]
    assert set(result["files"]) == {"timeline"} and len(result["windows"]) == 2
    assert all(w["status"] == "ok" for w in result["windows"]), "the timeline is complete"
    assert [p.name for p in tmp_path.iterdir()] == ["silent.timeline.json"], "no partial copy, no staging left"
    assert json.loads((tmp_path / "silent.timeline.json").read_text()) == result


def test_batch_keeps_the_timeline_when_the_copy_fails(silent_video, triton, copy_size, tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(silent_video, folder / "a.mp4")
    results = tmp_path / "results.jsonl"
    run = subprocess.run(
        [sys.executable, "-m", "emofuse.cli", "batch", str(folder), "--triton", triton.grpc_url, "--out", str(results), "--workers", "1"],
        capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(LIMIT),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    (line,) = [json.loads(text) for text in results.read_text().splitlines()]
    assert "error" not in line and len(line["windows"]) == 2, "the timeline is kept"
    assert "File too large" in line["failures"]["video"] and set(line["files"]) == {"timeline"}
    assert "annotated copy failed" in run.stderr and "unexpected failure" not in run.stderr
    assert Path(results.parent / line["files"]["timeline"]).is_file()


def test_failed_image_copy_keeps_the_faces(triton, tmp_path) -> None:
    """A photo's annotated copy that cannot be written (past a file-size limit, as on a full
    disk) is reported beside the faces' results, which are kept."""
    from skimage import data

    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    assert image.stat().st_size > 4 * LIMIT, "the limit stops the copy and nothing else"
    run = subprocess.run(
        [sys.executable, "-m", "emofuse.cli", "analyze", str(image), "--json", "--out", str(tmp_path / "out"), "--triton", triton.grpc_url],
        capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(LIMIT),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    result = json.loads(run.stdout)
    assert "image" in result["failures"] and set(result["files"]) == {"timeline"}
    assert result["windows"][0]["label"] == "happy", "the face's result is kept"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["astronaut.timeline.json"]
