"""Shared fixtures: a real model repository, a real Triton server, recordings made here, and the
gateway with the servers it may use (PostgreSQL, Redis).

Everything runs for real: the repository is built (every model exported to ONNX and TorchScript
and checked against PyTorch), Triton is the binary from the nvidia-pytriton wheel on free ports,
the recordings are written with PyAV (speech by espeak-ng where installed), and PostgreSQL and
Redis are the distribution's binaries on the loopback (the tests that need one are skipped,
saying why, where it is absent).
"""

from __future__ import annotations

import csv
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import scipy.io

from preprocessing.synthesis import SampleSpec, write_sample_video
from training.synthetic_eeg import SyntheticEEGSpec, synthetic_trial_eeg

# A shell starts background jobs (`pytest &`) with Ctrl-C ignored, and every child would inherit
# that: the Ctrl-C tests' batches would run to the end. The tests' children get the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient
    from sqlalchemy.orm import Session

    from gateway.testing import LoopbackServer

SMALL = dict(width=640, height=360, face_height=200)  # fast to write and read, face still clear


@pytest.fixture(scope="session")
def served_models() -> list:
    """Every model and ensemble, exported from the shipped checkpoints and checked against PyTorch."""
    from export.build import served_models

    return served_models()


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory, served_models: list) -> Path:
    """The python runtime's repository, as `emofuse repo build` writes it."""
    from export.repository import build_repository

    return build_repository(tmp_path_factory.mktemp("repo") / "model_repository", served_models)


@pytest.fixture(scope="session")
def native_repository(tmp_path_factory: pytest.TempPathFactory, served_models: list) -> Path:
    """The same models for a standard Triton: ONNX Runtime backend, no Python."""
    from export.repository import build_repository

    return build_repository(tmp_path_factory.mktemp("native") / "model_repository", served_models, runtime="native")


@pytest.fixture(scope="session")
def triton(repository: Path):
    from emofuse.triton_server import TritonPorts, TritonServer

    with TritonServer(repository, ports=TritonPorts.free()) as server:
        yield server


@pytest.fixture(scope="session")
def client(triton):
    from serving.triton_client import EmotionClient

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


@pytest.fixture(scope="session")
def trial_folder(tmp_path_factory) -> Path:
    """Subject 1: a 14 s video with speech and its EEG; a trial with EEG only; one with 13 EEG channels."""
    root = tmp_path_factory.mktemp("trials")
    (root / "s01").mkdir()
    write_sample_video(root / "s01" / "t1.mp4", SampleSpec(duration_s=14.0, width=640, height=360, face_height=200))
    spec = SyntheticEEGSpec(duration_s=14.0)
    for name, label in (("t1", 2), ("t2", 3)):
        scipy.io.savemat(root / "s01" / f"{name}.mat", {"eeg": synthetic_trial_eeg(spec, 1, label).data})
    scipy.io.savemat(root / "s01" / "t3.mat", {"eeg": synthetic_trial_eeg(spec, 1, 0).data[:13]})
    channels = " ".join(spec.channels)
    rows = [
        {"trial": "t1", "label": "happy", "eeg": "s01/t1.mat", "video": "s01/t1.mp4", "channels": channels},
        {"trial": "t2", "label": "sad", "eeg": "s01/t2.mat", "video": "", "channels": channels},
        {"trial": "t3", "label": "neutral", "eeg": "s01/t3.mat", "video": "", "channels": " ".join(spec.channels[:13])},
    ]
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["subject", "trial", "label", "eeg", "video", "eeg_rate", "mat_key", "channels"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"subject": 1, "eeg_rate": spec.rate, "mat_key": "eeg", **row})
    return root


def _serving(server: type[LoopbackServer]) -> Iterator[LoopbackServer]:
    """A server of the test run's own, started, or the tests that need it skipped, saying why."""
    from gateway.testing import ServerUnavailable

    try:
        started = server().__enter__()
    except ServerUnavailable as err:
        pytest.skip(f"no {server.__name__.removesuffix('Server')} here: {err}")
    yield started
    started.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[LoopbackServer]:
    """A PostgreSQL server of the test run's own, on the loopback (gateway.testing.PostgresServer)."""
    from gateway.testing import PostgresServer

    yield from _serving(PostgresServer)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LoopbackServer]:
    """A Redis of the test run's own, on the loopback (gateway.testing_flow.RedisServer); a test
    that stops it starts it again, and one that needs it empty flushes it."""
    from gateway.testing_flow import RedisServer

    yield from _serving(RedisServer)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The gateway's database, once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'emofuse.sqlite'}"
    return request.getfixturevalue("postgres").create_database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """The gateway on a fresh SQLite database, its files in tmp_path/data."""
    from gateway.testing_flow import gateway_app

    return gateway_app(tmp_path / "data")


@pytest.fixture
def web(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def db(app: Flask) -> Iterator[Session]:
    """A session on the app's database, for setting up records and reading what the views wrote.

    Outside any app context: a context held open across requests would share Flask's ``g``, and
    with it the signed-in user, between test clients.
    """
    from sqlalchemy.orm import Session

    from gateway.db import engine_of

    with Session(engine_of(app), expire_on_commit=False) as session:
        yield session
