"""`emofuse analyze` end to end: real recordings, a real Triton, real output files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from serving.analysis import Analyzer, Progress
from serving.render import MARGIN, caption_patch
from emofuse.triton_server import free_port


def emofuse(*args: str, triton=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "emofuse.cli", "analyze", *args]
    if triton is not None:
        command += ["--triton", triton.grpc_url]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def face_result(face_video, triton, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("out")
    run = emofuse(str(face_video), "--json", "--out", str(out), triton=triton)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout), out


def test_timeline_of_a_smiling_face(face_result) -> None:
    result, out = face_result
    assert result["recording"]["file"] == "face.mp4" and result["weights"] == "real"
    windows = result["windows"]
    assert [(w["start_s"], w["end_s"]) for w in windows] == [(0.0, 3.6), (3.6, 7.2), (4.4, 8.0)]
    for w in windows:
        assert w["status"] == "ok" and w["face_found"] and w["face_frames"] == 15
        assert sum(w["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert w["label"] == max(w["probabilities"], key=w["probabilities"].get)
    assert result["verdict"]["label"] == "happy", "the astronaut smiles"
    assert set(result["files"]) == {"timeline", "video", "audio"}
    assert json.loads((out / result["files"]["timeline"]).read_text()) == result


def _frames(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return [frame.reformat(format="yuv420p") for frame in container.decode(video=0)]


def test_annotated_video(face_video, face_result) -> None:
    result, out = face_result
    video = out / result["files"]["video"]
    with av.open(str(video)) as container:
        vstream, astream = container.streams.video[0], container.streams.audio[0]
        assert vstream.codec_context.name == "h264" and astream.codec_context.name == "aac"
        assert container.duration / 1e6 == pytest.approx(8.0, abs=0.1)
    source, annotated = _frames(face_video), _frames(video)
    assert len(annotated) == len(source) == 240
    caption = f"happy {round(100 * max(result['windows'][0]['probabilities'].values()))}%"
    expected = cv2.cvtColor(caption_patch(caption, 360), cv2.COLOR_BGR2GRAY).astype(float)
    wrong = cv2.cvtColor(caption_patch("sad 50%", 360), cv2.COLOR_BGR2GRAY).astype(float)
    h, w = expected.shape
    for index in (0, 45, 80):  # frames inside the first window
        luma = annotated[index].to_ndarray()[:360][MARGIN : MARGIN + h, MARGIN : MARGIN + w].astype(float)
        plain = source[index].to_ndarray()[:360][MARGIN : MARGIN + h, MARGIN : MARGIN + w].astype(float)
        # Y is limited range (16-235): compare after mapping the expected grey patch into it.
        target = 16 + expected * 219 / 255
        assert np.abs(luma - target).mean() < 12, "the caption should be drawn in the upper-left corner"
        n = min(w, wrong.shape[1])  # compare on the columns both captions cover
        mismatch = np.abs(luma[:, :n] - (16 + wrong[:, :n] * 219 / 255)).mean()
        assert mismatch > np.abs(luma[:, :n] - target[:, :n]).mean() + 5, "another caption should not fit as well"
        assert np.abs(plain - target).mean() > 25, "the source frame has no caption there"


def test_windows_without_a_face_are_marked(half_face_video, triton, tmp_path) -> None:
    run = emofuse(str(half_face_video), "--json", "--out", str(tmp_path), "--no-video", "--model", "face", triton=triton)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["mode"], result["model"]) == ("face", "emotion_face")
    first, second = result["windows"]
    assert first["status"] == "ok" and first["label"]
    assert second == {**second, "status": "no_face", "label": None, "probabilities": None, "face_found": False}
    assert not list(tmp_path.glob("*.mp4")), "--no-video writes no annotated copy"


def test_voice_answers_alone_where_the_face_is_missing(half_face_video, client, tmp_path) -> None:
    analysis = Analyzer(client).analyze(half_face_video, tmp_path, render=False)
    result = analysis.to_dict()
    assert (result["mode"], result["model"]) == ("av", "emotion_av")
    first, second = result["windows"]
    assert first["face_found"] and first["voice_found"] and 0 < first["models"]["face_expression"] < 1
    assert second["status"] == "ok" and second["label"] in result["labels"]
    assert second["face_found"] is False and second["voice_found"] is True
    assert 0.25 <= second["voiced_fraction"] <= 1, "the voice-activity model heard speech in the window"
    assert second["models"] == {"face_expression": 0.0, "speech_emotion": 1.0}
    assert analysis.timeline.caption(analysis.timeline.windows[1]).endswith("(voice only)")


def test_attention_model_answers_but_is_shown_untrained(half_face_video, triton, tmp_path) -> None:
    """The shipped audio-video attention model learnt only synthetic data: it runs, nothing is shown."""
    run = emofuse(str(half_face_video), "--json", "--out", str(tmp_path), "--no-video", "--model", "attention", triton=triton)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["mode"], result["model"], result["weights"]) == ("attention", "emotion_av_attention", "untrained")
    assert result["labels"] == ["neutral", "calm", "happy", "sad", "angry"] and result["verdict"] is None
    first, second = result["windows"]
    assert first["status"] == second["status"] == "untrained" and first["label"] is None and first["probabilities"] is None
    assert first["face_found"] and second["face_found"] is False and second["voice_found"] is True
    assert first["models"] == second["models"] == {"av_attention": 1.0}


def test_video_without_audio_is_analysed(silent_video, triton, tmp_path) -> None:
    run = emofuse(str(silent_video), "--json", "--out", str(tmp_path), triton=triton)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["recording"]["audio"] is False and "audio" not in result["files"]
    with av.open(str(tmp_path / result["files"]["video"])) as container:
        assert not container.streams.audio


def _sound_file(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write mono float samples with PyAV, in the format the suffix names."""
    codec = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame"}[path.suffix]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def speech_samples() -> np.ndarray:
    from preprocessing.synthesis import speech

    return speech("I can't believe it. This is the best day of my life!", 22_050, 6.0)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3"])
def test_sound_files_are_judged_by_the_voice(suffix, speech_samples, triton, tmp_path) -> None:
    path = _sound_file(tmp_path / f"speech{suffix}", speech_samples, 22_050)
    run = emofuse(str(path), "--json", "--out", str(tmp_path / "out"), triton=triton)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["recording"]["kind"] == "audio" and (result["mode"], result["model"]) == ("audio", "emotion_speech")
    assert result["weights"] == "real" and "calm" in result["labels"]
    assert set(result["files"]) == {"timeline", "audio"}, "no picture, no annotated copy"
    for w in result["windows"]:
        assert w["status"] == "ok" and w["voice_found"] and w["face_found"] is None
        assert w["models"] == {"speech_emotion": 1.0}
        assert sum(w["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert result["verdict"]["label"] in result["labels"]


def test_silence_has_no_voice(triton, tmp_path) -> None:
    path = _sound_file(tmp_path / "silence.wav", np.zeros(22_050 * 5), 22_050)
    run = emofuse(str(path), "--out", str(tmp_path / "out"), triton=triton)
    assert run.returncode == 1 and run.stderr.strip() == "emofuse: error: silence.wav: no voice was heard in any of its 2 windows."
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    ("fixture", "model", "message"),
    [
        ("silent_video", "audio", "silent.mp4: no audio track for audio mode; try --model face."),
        ("silent_video", "av", "silent.mp4: no audio track for av mode; try --model face."),
        ("speech_wav", "face", "speech.wav: no video track for face mode; try --model audio."),
    ],
)
def test_a_mode_the_recording_cannot_feed(fixture, model, message, request, triton, tmp_path) -> None:
    run = emofuse(str(request.getfixturevalue(fixture)), "--model", model, "--out", str(tmp_path), triton=triton)
    assert run.returncode == 1 and run.stderr.strip() == f"emofuse: error: {message}"


@pytest.fixture
def speech_wav(speech_samples, tmp_path) -> Path:
    return _sound_file(tmp_path / "speech.wav", speech_samples, 22_050)


def test_human_readable_output(face_video, triton, tmp_path) -> None:
    run = emofuse(str(face_video), "--out", str(tmp_path), "--no-video", triton=triton)
    assert run.returncode == 0
    assert run.stdout.splitlines()[0] == "face.mp4: happy"


def _bad_files(tmp: Path, face_video: Path) -> dict[str, Path]:
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "notes.mp4").write_text("just text\n" * 50)
    (tmp / "half.mp4").write_bytes(face_video.read_bytes()[: face_video.stat().st_size // 2])
    return {
        "missing": tmp / "missing.mp4",
        "empty": tmp / "empty.mp4",
        "text": tmp / "notes.mp4",
        "truncated": tmp / "half.mp4",
    }


@pytest.mark.parametrize("case", ["missing", "empty", "text", "truncated", "no-face"])
def test_bad_input_gives_one_line_and_no_files(case, face_video, no_face_video, triton, tmp_path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    path = no_face_video if case == "no-face" else _bad_files(inputs, face_video)[case]
    out = tmp_path / "out"
    face_only = ["--model", "face"] if case == "no-face" else []  # in av mode its voice would answer
    run = emofuse(str(path), "--out", str(out), *face_only, triton=triton)
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"emofuse: error: {path.name}: ")
    assert "Traceback" not in run.stderr
    assert not out.exists() or not any(out.iterdir()), "nothing may be half-written"


def test_still_image_faces(triton, tmp_path) -> None:
    from skimage import data

    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    run = emofuse(str(image), "--json", "--out", str(tmp_path / "out"), triton=triton)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["recording"]["kind"] == "image"
    (face,) = result["windows"]
    x0, y0, x1, y1 = face["box"]
    assert 120 < (x0 + x1) / 2 < 330 and 40 < (y0 + y1) / 2 < 200, "the box should be on her face"
    assert face["label"] == "happy" and result["verdict"]["label"] == "happy"
    assert cv2.imread(str(tmp_path / "out" / result["files"]["image"])).shape == (512, 512, 3)


def test_whole_image_is_one_face_crop(triton, tmp_path) -> None:
    from preprocessing.synthesis import astronaut_face

    crop = tmp_path / "crop.jpg"
    cv2.imwrite(str(crop), cv2.cvtColor(astronaut_face(), cv2.COLOR_RGB2BGR))
    run = emofuse(str(crop), "--json", "--whole-image", "--out", str(tmp_path / "out"), triton=triton)
    assert run.returncode == 0, run.stderr
    (face,) = json.loads(run.stdout)["windows"]
    assert face["box"] == [0.0, 0.0, 180.0, 190.0] and face["label"] == "happy"


def test_image_without_a_face(triton, tmp_path) -> None:
    image = tmp_path / "wall.png"
    cv2.imwrite(str(image), np.full((200, 300, 3), 128, np.uint8))
    run = emofuse(str(image), "--out", str(tmp_path / "out"), triton=triton)
    assert run.returncode == 1 and "no face was found" in run.stderr and "--whole-image" in run.stderr


def test_library_call_reports_progress(face_video, client, tmp_path) -> None:
    seen: list[Progress] = []
    result = Analyzer(client).analyze(face_video, tmp_path, progress=seen.append)
    stages = [p.stage for p in seen]
    assert stages[0] == "windows" and stages[-1] == "video"
    windows = [p for p in seen if p.stage == "windows"]
    assert windows[-1].done == windows[-1].total == len(result.timeline.windows)
    fractions = [p.done for p in seen if p.stage == "video"]
    assert fractions == sorted(fractions) and fractions[-1] > 0.95


def test_unreachable_triton_is_an_upstream_error(face_video, tmp_path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "emofuse.cli", "analyze", str(face_video), "--triton", f"127.0.0.1:{free_port()}", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 3
    assert "not reachable" in run.stderr and "Traceback" not in run.stderr


def test_closeup_photo_is_found_without_whole_image(triton, tmp_path) -> None:
    """A face filling the photo: the video detector misses it, the close-up detector does not."""
    from preprocessing.synthesis import astronaut_face

    photo = tmp_path / "closeup.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut_face(), cv2.COLOR_RGB2BGR))
    run = emofuse(str(photo), "--json", "--out", str(tmp_path / "out"), triton=triton)
    assert run.returncode == 0, run.stderr
    (face,) = json.loads(run.stdout)["windows"]
    assert face["label"] == "happy"
