"""Memory that stays flat however long the recording (issue 12, section 3).

What is counted is what grew: the windows and the input tensors alive at once while a recording
is analysed, through weak references to every one made, so the counts are exact and do not
depend on timing or on the allocator. The recording has several times more windows than the
bound, so keeping them until decoding ends (the old behaviour) fails. `benchmarks/memory.py`
measures the peak RSS itself, for 1-, 10- and 60-minute videos.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import preprocessing.windows
import serving.analysis
from preprocessing.synthesis import SampleSpec, repeat_video, write_sample_video
from preprocessing.windows import Window, WindowReader
from serving.analysis import BATCH_WINDOWS, Analyzer
from serving.triton_client import EmotionClient

IN_FLIGHT = 2  # requests the client keeps outstanding
REPEATS = 25  # a 14.4 s clip (4 windows) 25 times: 6 minutes, 100 windows


@pytest.fixture(scope="module")
def long_video(media: Path) -> Path:
    """6 minutes at 320x240 and 15 fps, face and speech throughout: cheap to decode, 100 windows."""
    path = media / "six_minutes.mp4"
    if not path.exists():
        clip = write_sample_video(media / "clip_14s.mp4", SampleSpec(duration_s=14.4, width=320, height=240, face_height=140, fps=15))
        repeat_video(clip, REPEATS, path)
    return path


class CountingClient(EmotionClient):
    """An EmotionClient that notes, at every request, how many earlier requests' input tensors
    are still alive somewhere in the process."""

    def __init__(self, url: str) -> None:
        super().__init__(url, in_flight=IN_FLIGHT)
        self.sent: list[list[weakref.ref[np.ndarray]]] = []
        self.peak_alive = 0

    def submit(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]):
        self.sent.append([weakref.ref(array) for array in inputs.values()])
        alive = sum(any(ref() is not None for ref in refs) for refs in self.sent)
        self.peak_alive = max(self.peak_alive, alive)
        return super().submit(model, inputs, outputs)


class CountingReader:
    """A window reader that notes the most windows alive at once, each counted from when it is yielded."""

    def __init__(self, reader: WindowReader) -> None:
        self.reader, self.alive, self.yielded, self.peak_alive = reader, list[weakref.ref[Window]](), 0, 0

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def seconds(self) -> dict[str, float]:
        return self.reader.seconds  # where the reader's time went, as the analysis reports it

    def __iter__(self) -> Iterator[Window]:
        for window in self.reader:
            self.alive = [ref for ref in self.alive if ref() is not None] + [weakref.ref(window)]
            self.yielded += 1
            self.peak_alive = max(self.peak_alive, len(self.alive))
            yield window


class CountingAudioBuffer(preprocessing.windows._AudioBuffer):
    """The reader's audio buffer, noting the most samples it ever held."""

    peak_samples = 0

    def append(self, chunk) -> None:
        super().append(chunk)
        held = sum(len(c.samples) for c in self._chunks)
        CountingAudioBuffer.peak_samples = max(CountingAudioBuffer.peak_samples, held)


def test_windows_and_tensors_alive_at_once_stay_bounded(long_video, triton, tmp_path, monkeypatch) -> None:
    readers: list[CountingReader] = []

    def counting_read_windows(*args, **kwargs) -> CountingReader:
        readers.append(CountingReader(preprocessing.windows.read_windows(*args, **kwargs)))
        return readers[-1]

    monkeypatch.setattr(serving.analysis, "read_windows", counting_read_windows)
    monkeypatch.setattr(preprocessing.windows, "_AudioBuffer", CountingAudioBuffer)
    CountingAudioBuffer.peak_samples = 0
    with CountingClient(triton.grpc_url) as client:
        analysis = Analyzer(client).analyze(long_video, tmp_path, mode="av", render=False)
    reader = readers[0]
    windows = len(analysis.timeline.windows)

    assert windows == reader.yielded == len(reader) >= 100, "every window analysed once"
    assert [w.index for w in analysis.timeline.windows] == list(range(windows)), "in order, though answers may come out of order"
    assert sum(w.status == "ok" for w in analysis.timeline.windows) == windows
    # Alive at most: the requests in flight (the client blocks beyond IN_FLIGHT), one answered
    # since the last look, the one being sent, and the batch being filled. Kept until decoding
    # ends, all 100 windows and 13 requests would be.
    bound = IN_FLIGHT + 2
    assert 1 <= client.peak_alive <= bound < len(client.sent) / 3
    assert BATCH_WINDOWS <= reader.peak_alive <= (bound + 1) * BATCH_WINDOWS < windows / 2
    # The audio buffer holds what the windows not yet complete need, not the track.
    window_samples = preprocessing.windows.WindowSpec().samples
    assert window_samples <= CountingAudioBuffer.peak_samples <= 3 * window_samples
    assert analysis.files["audio"].stat().st_size >= 0.95 * 2 * windows * window_samples, "the whole track went to the .wav"
