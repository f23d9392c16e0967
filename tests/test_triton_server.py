"""The Triton launcher: a real tritonserver from the nvidia-pytriton wheel, started and stopped."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from serving.errors import TritonUnavailable
from emofuse.triton_server import TritonPorts, TritonServer, free_port


def test_every_model_is_ready(client, triton, repository) -> None:
    served = {path.parent.name for path in repository.glob("*/config.pbtxt")}
    assert len(served) == 16  # 11 steps (voice_activity too) and 5 ensembles
    assert all(client._client.is_model_ready(name) for name in served)
    assert triton.ready()


def test_metrics_endpoint_serves_prometheus_text(triton) -> None:
    import urllib.request

    with urllib.request.urlopen(triton.metrics_url, timeout=5) as response:
        text = response.read().decode()
    assert "nv_inference_request_success" in text


def test_missing_repository_is_reported(tmp_path) -> None:
    with pytest.raises(TritonUnavailable, match="does not exist; run `emofuse repo build`"):
        TritonServer(tmp_path / "nowhere").start()


def test_broken_model_stops_startup_with_its_log(tmp_path) -> None:
    broken = tmp_path / "repo" / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nmax_batch_size: 0\n')
    (broken / "1" / "model.py").write_text("raise RuntimeError('this model cannot load')\n")
    with pytest.raises(TritonUnavailable, match="this model cannot load"):
        TritonServer(tmp_path / "repo", ports=TritonPorts.free()).start(timeout_s=60)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_cli_runs_triton_until_sigterm(repository) -> None:
    ports = TritonPorts.free()
    command = [
        sys.executable, "-m", "emofuse.cli", "triton", "start", "--repository", str(repository),
        "--grpc-port", str(ports.grpc), "--http-port", str(ports.http), "--metrics-port", str(ports.metrics),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert "Triton ready" in line, line
        assert _listening(ports.grpc)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        process.kill()
    deadline = time.monotonic() + 10
    while _listening(ports.grpc) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _listening(ports.grpc), "the Triton child must stop with its launcher"


def test_free_port_is_free() -> None:
    port = free_port()
    assert 1024 <= port < 65536 and not _listening(port)
