"""Cutting recordings into windows: placement, frame sampling, faces and audio."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile

from preprocessing.faces import CropSpec, FaceBox, FaceDetector
from preprocessing.recording import AudioChunk, VideoFrame, decode, probe
from preprocessing.windows import WindowSpec, read_windows

CROP = CropSpec(size=64, grey=True)


@pytest.mark.parametrize(
    ("duration", "hop", "expected"),
    [
        (0.0, 3.6, []),
        (2.0, 3.6, [(0.0, 2.0)]),
        (3.6, 3.6, [(0.0, 3.6)]),
        (7.2, 3.6, [(0.0, 3.6), (3.6, 7.2)]),
        (8.0, 3.6, [(0.0, 3.6), (3.6, 7.2), (4.4, 8.0)]),  # the last aligned to the end
        (7.3, 3.6, [(0.0, 3.6), (3.6, 7.2)]),  # 0.1 s left over: not worth a window
        (5.4, 1.8, [(0.0, 3.6), (1.8, 5.4)]),
    ],
)
def test_spans_cover_the_recording(duration: float, hop: float, expected: list) -> None:
    spans = WindowSpec(hop_s=hop).spans(duration)
    np.testing.assert_allclose(np.reshape(spans, (-1, 2)), np.reshape(expected, (-1, 2)))


def test_frames_sit_at_slice_centres() -> None:
    times = WindowSpec().frame_times(0.0, 3.6)
    assert times.shape == (15,)
    assert times[0] == pytest.approx(0.12) and times[-1] == pytest.approx(3.48)
    assert np.allclose(np.diff(times), 0.24)


def test_spec_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        WindowSpec(hop_s=0)


def test_audio_window_is_the_av_models_length() -> None:
    assert WindowSpec().samples == 79_380


def test_face_video_windows(face_video, tmp_path) -> None:
    info = probe(face_video)
    wav = tmp_path / "audio.wav"
    windows = list(read_windows(info, crop=CROP, wav_path=wav))
    np.testing.assert_allclose([(w.start_s, w.end_s) for w in windows], WindowSpec().spans(info.duration_s))
    for w in windows:
        assert w.faces.shape == (15, 64, 64) and w.faces.dtype == np.uint8
        assert w.face_found.all(), f"window {w.index}: face missed in frames {np.flatnonzero(~w.face_found)}"
        assert w.audio.shape == (79_380,) and w.audio.dtype == np.float32
        assert np.sqrt(np.mean(w.audio**2)) > 0.01, "speech should be audible in every window"
        # The frame used for each sampled time is shown at or just before it.
        assert np.all(w.source_times <= w.frame_times + 1e-6)
        assert np.all(w.frame_times - w.source_times < 0.1)
    samples, rate = soundfile.read(wav)
    assert rate == 22_050
    assert len(samples) / rate == pytest.approx(info.duration_s, abs=0.1)
    assert not (tmp_path / "audio.wav.part").exists()


class WholeFrameDetector(FaceDetector):
    """Searches every frame whole, never near the face of the frame before."""

    def detect_near(self, rgb: np.ndarray, box: FaceBox) -> list[FaceBox]:
        return self.detect(rgb)


def test_following_the_face_gives_the_crops_of_a_whole_frame_search(face_video) -> None:
    info = probe(face_video)
    followed = list(read_windows(info, crop=CROP))
    searched = list(read_windows(info, crop=CROP, detector=WholeFrameDetector()))
    for a, b in zip(followed, searched, strict=True):
        np.testing.assert_array_equal(a.face_found, b.face_found)
        # The same face, framed alike: boxes found in differently placed squares differ by a few
        # pixels (BlazeFace's own jitter; against a hand-marked box both searches score IoU 0.7 on
        # average), which shifts a textured crop enough to lower its correlation to about 0.9.
        similarity = [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a.faces, b.faces)]
        assert min(similarity) > 0.7 and np.mean(similarity) > 0.85, f"window {a.index}: {np.round(similarity, 2)}"


def test_stopping_early_ends_the_decoding_thread(face_video) -> None:
    before = threading.active_count()
    windows = iter(read_windows(probe(face_video), crop=CROP))
    next(windows)
    assert threading.active_count() == before + 1
    windows.close()
    assert threading.active_count() == before


def test_window_audio_matches_the_wav(face_video, tmp_path) -> None:
    info = probe(face_video)
    wav = tmp_path / "audio.wav"
    windows = list(read_windows(info, crop=None, wav_path=wav))
    samples, _ = soundfile.read(wav, dtype="float32")
    second = windows[1]
    start = round(second.start_s * 22_050)
    # The .wav holds 16-bit samples: equal to the window's float samples within one step.
    assert np.abs(samples[start : start + 79_380] - second.audio).max() < 2 / 32768


def test_no_face_is_reported_per_window(half_face_video) -> None:
    windows = list(read_windows(probe(half_face_video), crop=CROP))
    assert len(windows) == 2
    assert windows[0].face_found.sum() >= 14  # the face leaves at 3.6 s; the last sample is at 3.48 s
    assert not windows[1].face_found.any()
    assert not windows[1].faces.any(), "frames without a face carry zero crops"


def test_video_without_audio(silent_video, tmp_path) -> None:
    info = probe(silent_video)
    assert not info.has_audio
    windows = list(read_windows(info, crop=CROP, wav_path=tmp_path / "a.wav"))
    assert windows and all(w.audio is None for w in windows)
    assert not (tmp_path / "a.wav").exists()


def test_short_video_gets_one_short_window(short_video) -> None:
    info = probe(short_video)
    (window,) = read_windows(info, crop=CROP)
    assert window.end_s == pytest.approx(info.duration_s)
    assert window.frame_times.max() < info.duration_s
    assert window.face_found.all()
    speech_end = round(info.duration_s * 22_050)
    assert not window.audio[speech_end + 2048 :].any(), "audio past the end is zero padding"


def test_variable_frame_rate_is_followed(vfr_video) -> None:
    info = probe(vfr_video)
    spec = WindowSpec(skip_nonref=False)
    shown = np.array([item.time_s for item in decode(info) if isinstance(item, VideoFrame)])
    intervals = np.diff(shown)
    assert intervals.min() < 0.6 / 30 and intervals.max() > 1.4 / 30, "the fixture should be variable-rate"
    for window in read_windows(info, spec, crop=CROP):
        for t, used in zip(window.frame_times, window.source_times):
            assert used == shown[shown <= t + 1e-9].max(), f"at {t:.3f} s the frame shown is not the one used"


def test_skipping_nonreference_frames_decodes_less(face_video) -> None:
    info = probe(face_video)
    every = sum(isinstance(i, VideoFrame) for i in decode(info))
    some = sum(isinstance(i, VideoFrame) for i in decode(info, skip_nonref=True))
    assert some < every


def test_audio_only_reading(face_video) -> None:
    info = probe(face_video)
    chunks = [i for i in decode(info, video=False, audio_rate=16_000)]
    assert chunks and all(isinstance(c, AudioChunk) for c in chunks)
    assert sum(len(c.samples) for c in chunks) / 16_000 == pytest.approx(info.duration_s, abs=0.1)
