"""A model whose process dies is restarted: a real Triton, one of its stub processes killed.

Triton 2.51 itself never restarts a dead Python-backend stub (the last test shows it); the
watchdog of :class:`emofuse.triton_server.TritonServer` does, and the client sends refused
requests again meanwhile. The tests run in file order on one server: the last stops its watchdog.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from emofuse.triton_server import EXIT_WAIT_S, TritonPorts, TritonServer
from emofuse.triton_watchdog import Watchdog, stub_models, stub_processes
from serving import EmotionClient, ModelCrashed
from serving.triton_client import _upstream_error

SPEECH_IN = {
    "LOG_MEL": np.full((2, 64, 156), -40.0, np.float32),
    "AUDIO_16K": (0.1 * np.sin(np.linspace(0, 2000, 57600))).astype(np.float32)[None].repeat(2, 0),
}
SPEECH_OUT = ["EMOTION_PROBS", "VOICE_PRESENT", "VOICED_FRACTION"]


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    counts = tmp_path_factory.mktemp("watchdog") / "restarts.json"
    server = TritonServer(repository, ports=TritonPorts.free(), restart_counts=counts).start()
    yield server
    server.stop()


def _kill_stub(server: TritonServer, model: str) -> None:
    pid = next(pid for pid, name in stub_processes(server.watchdog.stub).items() if name == model)
    os.kill(pid, signal.SIGKILL)


def test_counts_that_cannot_be_written_do_not_stop_the_watchdog(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A counts file in a folder that is gone: the watchdog says so in the log and goes on."""
    watchdog = Watchdog("http://127.0.0.1:1", tmp_path / "no-stub", "key", counts=tmp_path / "gone" / "restarts.json").start()
    try:
        assert watchdog._thread.is_alive()
        assert "Triton restarts not written" in caplog.text
    finally:
        watchdog.stop()


def test_a_dead_stub_is_named_in_the_error() -> None:
    refused = InferenceServerException("in ensemble 'emotion_speech', Stub process 'speech_emotion_0_0' is not healthy.", "StatusCode.INTERNAL")
    err = _upstream_error(refused, "127.0.0.1:1")
    assert isinstance(err, ModelCrashed) and err.model == "speech_emotion"
    assert "restart Triton" in str(err)


def test_the_model_control_api_refuses_requests_without_the_key(server: TritonServer) -> None:
    with EmotionClient(server.grpc_url) as client:
        with pytest.raises(InferenceServerException, match="restricted"):
            client._client.unload_model("speech_emotion")
        assert client._client.is_model_ready("speech_emotion")


def test_a_killed_model_is_restarted_and_its_requests_answered(server: TritonServer) -> None:
    assert server.watchdog.expected["speech_emotion"] == 1 and len(server.watchdog.expected) == 11, "every Python-backend step"
    assert json.loads(server.restart_counts.read_text()) == {}, "written at start: a new Triton, no restarts yet"
    with EmotionClient(server.grpc_url) as client:  # the default waits: 15 s in all, a restart takes about 2.3 s
        before = client.infer("emotion_speech", SPEECH_IN, SPEECH_OUT)["EMOTION_PROBS"]
        _kill_stub(server, "speech_emotion")
        time.sleep(0.2)
        after = client.infer("emotion_speech", SPEECH_IN, SPEECH_OUT)["EMOTION_PROBS"]  # refused at first, then sent again
    np.testing.assert_allclose(after, before, atol=1e-6)
    assert server.watchdog.restarts == {"speech_emotion": 1}
    assert json.loads(server.restart_counts.read_text()) == {"speech_emotion": 1}, "the counts /metrics reads"
    assert stub_models(server.watchdog.stub) == server.watchdog.expected


def test_without_the_watchdog_triton_leaves_the_model_dead(server: TritonServer) -> None:
    server.watchdog.stop()
    _kill_stub(server, "speech_emotion")
    with EmotionClient(server.grpc_url, crash_waits_s=(0.5, 0.5)) as client:
        with pytest.raises(ModelCrashed, match="'speech_emotion'") as caught:
            client.infer("emotion_speech", SPEECH_IN, SPEECH_OUT)
        assert client._client.is_model_ready("speech_emotion"), "Triton still calls it ready"
    assert caught.value.model == "speech_emotion"


def test_a_server_whose_request_failed_on_a_dead_stub_stops_within_its_exit_wait(server: TritonServer) -> None:
    """Triton counts the failed request as still in flight and waits for it on stop: 30 s by its
    default, EXIT_WAIT_S as emofuse starts it; then it exits by itself, not killed."""
    process, started = server._process, time.monotonic()
    server.stop()
    assert time.monotonic() - started < EXIT_WAIT_S + 5
    assert process.returncode != -signal.SIGKILL
