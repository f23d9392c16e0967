"""Faults on the way (issue 12, section 6): output folders that cannot be written, recordings
damaged partway, and `emofuse sample` into a folder that does not exist yet.

Each fault is real: a path through a regular file, a read-only and a full tmpfs (mounted here,
as root; skipped where mounting is not allowed), a file-size limit (RLIMIT_FSIZE, which makes
writes fail with EFBIG even for root), and media files whose bytes are overwritten or cut off
partway. Tests run as root, which ignores permission bits, so no test relies on chmod.

A recording damaged partway gets a one-line error and no files, not a timeline of what came
before the damage: its verdict would speak for the whole recording while judging part of it.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest

import preprocessing.windows
import serving.analysis
from preprocessing.recording import probe
from preprocessing.synthesis import SampleSpec, write_sample_video
from preprocessing.windows import Window, WindowReader
from serving.analysis import Analyzer
from serving.errors import InputError, OutputError

EMOFUSE = Path(sys.executable).with_name("emofuse")  # the installed command, as a user runs it


def emofuse(*args: str, triton=None, limit_file_bytes: int | None = None) -> subprocess.CompletedProcess:
    """Run ``emofuse ARGS``; ``limit_file_bytes``: no file it writes may grow past this (EFBIG)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    env = {**os.environ, "TRITON_URL": triton.grpc_url} if triton is not None else None
    preexec = limit if limit_file_bytes is not None else None
    return subprocess.run([str(EMOFUSE), *args], capture_output=True, text=True, env=env, preexec_fn=preexec, timeout=300)


def one_line_error(run: subprocess.CompletedProcess) -> str:
    """The single line a failed command printed; fails unless it exited with 1 and printed just that."""
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emofuse: error: "), run.stderr
    return lines[0]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """``mount(name, options)``: a tmpfs mounted at ``tmp_path/name``, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        run = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True, text=True)
        if run.returncode != 0:
            pytest.skip(f"a tmpfs cannot be mounted here: {run.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


# -- emofuse sample -------------------------------------------------------------------------------


def test_sample_creates_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "sample.mp4"
    run = emofuse("sample", str(path), "--duration", "1")
    assert run.returncode == 0, run.stderr
    assert probe(path).duration_s == pytest.approx(1.0, abs=0.1)
    assert files_under(tmp_path / "new") == [path.parent, path], "no partial file beside it"


def test_sample_through_a_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    line = one_line_error(emofuse("sample", str(tmp_path / "notes.txt" / "sample.mp4"), "--duration", "1"))
    assert f"{tmp_path / 'notes.txt'} is a file, not a folder" in line


def test_sample_into_a_full_disk(tmpfs) -> None:
    disk = tmpfs("disk", "size=32k")  # a 1 s 720p sample is about 70 kB
    line = one_line_error(emofuse("sample", str(disk / "sample.mp4"), "--duration", "1"))
    assert f"cannot write into {disk} (No space left on device); free space there" in line
    assert files_under(disk) == [], "the partial video is removed"


# -- output folders that cannot be written ----------------------------------------------------------


def test_out_through_a_file(face_video: Path, triton, tmp_path: Path) -> None:
    (tmp_path / "results").write_text("a file, not a folder")
    out = tmp_path / "results" / "today"
    line = one_line_error(emofuse("analyze", str(face_video), "--out", str(out), triton=triton))
    assert line == (
        f"emofuse: error: cannot write into {out} ({tmp_path / 'results'} is a file, not a folder); "
        "choose another folder with --out."
    )


def test_out_on_a_read_only_disk(face_video: Path, triton, tmpfs) -> None:
    disk = tmpfs("readonly", "size=1m,ro")
    line = one_line_error(emofuse("analyze", str(face_video), "--out", str(disk / "results"), triton=triton))
    assert f"cannot write into {disk / 'results'} (Read-only file system); choose another folder with --out." in line


@pytest.mark.parametrize("video", [False, True], ids=["no-video", "with-video"])
def test_out_on_a_full_disk(face_video: Path, triton, tmpfs, video: bool) -> None:
    """The 8 s audio track alone (.wav, 353 kB) does not fit: nothing is left, not even the folders made."""
    disk = tmpfs("full", "size=256k")
    out = disk / "results" / "today"
    args = ["analyze", str(face_video), "--out", str(out)] + ([] if video else ["--no-video"])
    line = one_line_error(emofuse(*args, triton=triton))
    assert line == (
        f"emofuse: error: cannot write into {out} (No space left on device); free space there or choose another folder with --out."
    )
    assert files_under(disk) == []


def test_out_past_a_file_size_limit(face_video: Path, triton, tmp_path: Path) -> None:
    out = tmp_path / "results"
    line = one_line_error(emofuse("analyze", str(face_video), "--no-video", "--out", str(out), triton=triton, limit_file_bytes=100_000))
    assert line == f"emofuse: error: cannot write into {out} (File too large); choose another folder with --out."
    assert files_under(tmp_path) == []


def test_library_leaves_nothing_on_a_full_disk(face_video: Path, client, tmpfs) -> None:
    """The library raises an OutputError naming the folder and removes its partial files; the
    folder it was given stays, empty."""
    disk = tmpfs("full", "size=256k")
    with pytest.raises(OutputError) as caught:
        Analyzer(client).analyze(face_video, disk / "results", render=False)
    assert caught.value.full and caught.value.folder == disk / "results"
    assert str(caught.value) == f"cannot write into {disk / 'results'} (No space left on device); free space there or choose another folder."
    assert files_under(disk) == [disk / "results"]


# -- recordings damaged partway ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(media: Path) -> Path:
    """20 s, 640x360, face and speech: 6 windows."""
    path = media / "clip_20s.mp4"
    if not path.exists():
        write_sample_video(path, SampleSpec(duration_s=20.0, width=640, height=360, face_height=200))
    return path


def _remux(source: Path, path: Path) -> Path:
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return path


def _overwritten(source: Path, path: Path) -> Path:
    """``source`` with 100 kB of random bytes over the media data 60 % of the way in (the moov index,
    at the end of these MP4s, is intact: the damage is met while decoding)."""
    data = bytearray(source.read_bytes())
    at = int(0.6 * len(data))
    data[at : at + 100_000] = np.random.default_rng(1).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    return path


def _cut(source: Path, path: Path) -> Path:
    """The first 60 % of a Matroska copy of ``source``: a download that stopped."""
    whole = _remux(source, path.with_name("whole.mkv"))
    data = whole.read_bytes()
    path.write_bytes(data[: int(0.6 * len(data))])
    return path


DAMAGE = {
    "overwritten.mp4": (_overwritten, r"overwritten\.mp4: decoding failed; the file is truncated or corrupt \(.+\)\.$"),
    # Where the video stops depends on the keyframe before the cut: about 12 s.
    "cut.mkv": (_cut, r"cut\.mkv: the video stops at 1[0-3]\.\d s of 20\.0 s; the file is truncated or corrupt\.$"),
}


@pytest.fixture(params=list(DAMAGE))
def damaged(request, clip: Path, tmp_path: Path) -> tuple[Path, str]:
    make, message = DAMAGE[request.param]
    return make(clip, tmp_path / request.param), message


def test_damaged_recording_through_the_command(damaged, triton, tmp_path: Path) -> None:
    path, message = damaged
    out = tmp_path / "results"
    line = one_line_error(emofuse("analyze", str(path), "--json", "--out", str(out), triton=triton))
    assert re.match(f"emofuse: error: {message}", line), line
    assert not out.exists(), "the folder made for the results is removed again"


class CountingReader:
    """A window reader that notes the index of every window it yields."""

    def __init__(self, reader: WindowReader) -> None:
        self.reader, self.yielded = reader, []

    def __len__(self) -> int:
        return len(self.reader)

    def __iter__(self) -> Iterator[Window]:
        for window in self.reader:
            self.yielded.append(window.index)
            yield window


def test_damaged_recording_through_the_library(damaged, client, tmp_path: Path, monkeypatch) -> None:
    """The damage is met partway, after the windows before it were cut and sent to Triton; then
    an InputError, and no files."""
    path, message = damaged
    readers: list[CountingReader] = []

    def counting_read_windows(*args, **kwargs) -> CountingReader:
        readers.append(CountingReader(preprocessing.windows.read_windows(*args, **kwargs)))
        return readers[-1]

    monkeypatch.setattr(serving.analysis, "read_windows", counting_read_windows)
    with pytest.raises(InputError) as caught:
        Analyzer(client).analyze(path, tmp_path / "results")
    assert re.match(message, str(caught.value)), caught.value
    assert readers[0].yielded == [0, 1, 2], "3 of the 6 windows: those before the damage, at about 12 s"
    assert files_under(tmp_path / "results") == []
