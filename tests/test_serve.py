"""`emofuse serve`: the README's first command after setup, run as a user would."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from emofuse.triton_server import TritonPorts


def test_serve_analyses_the_sample_then_serves_until_sigterm(repository, tmp_path) -> None:
    ports = TritonPorts.free()
    command = [
        sys.executable, "-m", "emofuse.cli", "serve", "--repository", str(repository), "--workdir", str(tmp_path),
        "--grpc-port", str(ports.grpc), "--http-port", str(ports.http), "--metrics-port", str(ports.metrics),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [process.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("Triton ready: gRPC 127.0.0.1:"), lines
        assert lines[1].startswith(f"Sample {tmp_path / 'sample.mp4'}: happy"), lines
        assert lines[2].startswith(f"Try: TRITON_URL=127.0.0.1:{ports.grpc} emofuse analyze"), lines
        # While it serves, another process analyses through it.
        run = subprocess.run(
            [sys.executable, "-m", "emofuse.cli", "analyze", str(tmp_path / "sample.mp4"), "--json", "--no-video", "--out", str(tmp_path / "again")],
            capture_output=True, text=True, timeout=300, env={"TRITON_URL": f"127.0.0.1:{ports.grpc}", "PATH": ""},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["verdict"]["label"] == "happy"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        process.kill()
    results = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert results == ["sample.annotated.mp4", "sample.timeline.json", "sample.wav"]
