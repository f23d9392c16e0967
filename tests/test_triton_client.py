"""The gRPC client against a real Triton, and the failures it must tell apart."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from serving.errors import ModelError, TritonTimeout, TritonUnavailable
from serving.triton_client import EmotionClient, ModelInfo
from emofuse.triton_server import TritonPorts, TritonServer, free_port


def test_model_description(client) -> None:
    model = client.model("emotion_face")
    assert model.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert model.trained and model.max_batch_size == 16


def test_input_settings_are_read_with_their_types(client) -> None:
    from preprocessing.eeg import EEGSpec
    from preprocessing.faces import CropSpec

    model = ModelInfo("m", ("a",), "real", 4, {"crop": "grey=False;scale=1.4;size=224", "eeg": client.model("emotion_av_eeg").parameters["eeg"]})
    assert model.settings("crop", CropSpec) == CropSpec(size=224, grey=False, scale=1.4)  # "False" is False, not a true string
    assert model.settings("eeg", EEGSpec) == EEGSpec()  # hop_s=None, notch_hz=50.0, ... as the shipped EEG model's card
    with pytest.raises(ModelError, match="states no mfcc settings"):
        model.settings("mfcc", CropSpec)
    with pytest.raises(ModelError, match="unreadable crop settings"):
        ModelInfo("m", ("a",), "real", 4, {"crop": "sides=4"}).settings("crop", CropSpec)


def test_windows_are_answered_in_one_request(client) -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 15, 64, 64), dtype=np.uint8)
    present = np.ones((3, 15), bool)
    present[1] = False
    present[2, 5:] = False
    out = client.infer("emotion_face", {"FACE_CROPS": crops, "FACE_PRESENT": present}, ["EMOTION_PROBS", "FACES_USED"])
    assert out["EMOTION_PROBS"].shape == (3, 7)
    assert out["FACES_USED"][:, 0].tolist() == [15, 0, 5]
    assert out["EMOTION_PROBS"][[0, 2]].sum(axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert not out["EMOTION_PROBS"][1].any(), "a window without a face gets no probabilities"


def test_many_requests_in_flight_keep_their_order(client) -> None:
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 256, (2, 15, 64, 64), dtype=np.uint8) for _ in range(12)]
    futures = [client.submit("emotion_face", {"FACE_CROPS": b, "FACE_PRESENT": np.ones((2, 15), bool)}, ["EMOTION_PROBS"]) for b in batches]
    answers = [f.result()["EMOTION_PROBS"] for f in futures]
    for batch, answer in zip(batches[:3], answers[:3]):
        alone = client.infer("emotion_face", {"FACE_CROPS": batch, "FACE_PRESENT": np.ones((2, 15), bool)}, ["EMOTION_PROBS"])
        np.testing.assert_allclose(answer, alone["EMOTION_PROBS"], atol=1e-6)


def test_mismatched_inputs_are_a_model_error(client) -> None:
    crops = np.zeros((1, 15, 64, 64), np.uint8)
    with pytest.raises(ModelError, match=r"emotion_face.*broadcast.* 14 by 15"):
        client.infer("emotion_face", {"FACE_CROPS": crops, "FACE_PRESENT": np.ones((1, 14), bool)}, ["EMOTION_PROBS"])


def test_unknown_model(client) -> None:
    with pytest.raises(TritonUnavailable, match="no_such_model"):
        client.model("no_such_model")


def test_nothing_listening_is_unavailable() -> None:
    with EmotionClient(f"127.0.0.1:{free_port()}", timeout_s=5) as client, pytest.raises(TritonUnavailable, match="not reachable"):
        client.model("emotion_face")


def test_a_server_that_never_answers_times_out() -> None:
    """Fault injection: a socket that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        with EmotionClient(f"127.0.0.1:{listener.getsockname()[1]}", timeout_s=0.5) as client:
            with pytest.raises(TritonTimeout, match="did not answer in time"):
                client.model("emotion_face")
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def test_untrained_model_never_shows_emotions(repository, face_video, tmp_path) -> None:
    """A repository whose models are all marked as trained on synthetic data only."""
    untrained = tmp_path / "repo"
    shutil.copytree(repository, untrained, ignore=shutil.ignore_patterns("__pycache__"))
    for config in untrained.glob("*/config.pbtxt"):
        config.write_text(re.sub(r'(key: "weights" value: \{ string_value: )"real"', r'\1"synthetic"', config.read_text()))
    with TritonServer(untrained, ports=TritonPorts.free()) as server:
        run = subprocess.run(
            [sys.executable, "-m", "emofuse.cli", "analyze", str(face_video), "--json", "--no-video", "--triton", server.grpc_url, "--out", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        human = subprocess.run(
            [sys.executable, "-m", "emofuse.cli", "analyze", str(face_video), "--no-video", "--triton", server.grpc_url, "--out", str(tmp_path / "out2")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["weights"] == "untrained" and result["verdict"] is None
    assert all(w["status"] == "untrained" and w["label"] is None and w["probabilities"] is None for w in result["windows"])
    assert "untrained model" in human.stdout and "happy" not in human.stdout
