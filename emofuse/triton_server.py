"""Run the Triton Inference Server that ships inside the ``nvidia-pytriton`` wheel.

The wheel carries a complete ``tritonserver`` (2.51) with its shared libraries and the Python
backend, but no model runtimes of its own: emofuse's models run in Python-backend models
(ONNX Runtime inside). :class:`TritonServer` prepares a backend directory with the backend stub
built for this interpreter, starts the binary on the ports asked for, waits until every model is
ready, keeps a :class:`~emofuse.triton_watchdog.Watchdog` that restarts a model whose process
died, and stops it on exit or signal::

    with TritonServer("model_repository") as server:
        client = EmotionClient(server.grpc_url)
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from serving.errors import TritonUnavailable

from .triton_watchdog import CONTROL_HEADER, Watchdog

__all__ = ["EXIT_WAIT_S", "TritonPorts", "TritonServer", "die_with_parent", "free_port"]

log = logging.getLogger(__name__)

DEFAULT_START_TIMEOUT_S = 120.0  # loading the Python-backend models takes a few seconds each
# How long Triton waits on stop for requests still in flight. Its default, 30 s, is spent in full
# after a request failed on a dead stub (Triton still counts it in flight); a window's request takes
# well under a second, so 10 s lets real ones finish.
EXIT_WAIT_S = 10


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class TritonPorts:
    """Ports of the three Triton endpoints; Triton's own defaults unless given.

    ``TritonPorts.free()`` picks unused ones, for tests and side-by-side servers.
    """

    grpc: int = 8001
    http: int = 8000
    metrics: int = 8002

    @classmethod
    def free(cls) -> TritonPorts:
        return cls(grpc=free_port(), http=free_port(), metrics=free_port())


def _pytriton_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonUnavailable("The Triton binary is missing: install it with `pip install nvidia-pytriton==0.7.0`.")
    return Path(spec.submodule_search_locations[0]) / "tritonserver"


def _backend_dir(root: Path) -> Path:
    """A backend directory whose Python backend uses the stub built for this interpreter."""
    tritonserver = _pytriton_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = tritonserver / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonUnavailable(f"nvidia-pytriton ships no Python backend stub for Python {version}.")
    python = root / "python"
    python.mkdir(parents=True, exist_ok=True)
    for source in (tritonserver / "backends" / "python").iterdir():
        if source.is_file():
            shutil.copy2(source, python / source.name)
    shutil.copy2(stub, python / "triton_python_backend_stub")
    return root


def die_with_parent() -> None:
    """In a child (``preexec_fn``): get SIGTERM when the process that started it dies, so none is orphaned."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TritonServer:
    """A ``tritonserver`` process serving one model repository.

    Parameters
    ----------
    model_repository : str | Path
        Folder of models, as written by ``emofuse repo build``.
    ports : TritonPorts | None
        Endpoints to listen on; Triton's defaults (8001 gRPC, 8000 HTTP, 8002 metrics) if None.
    log_path : str | Path | None
        Where the server's output goes; a temporary file if None.
    restart_counts : str | Path | None
        A JSON file where its watchdog keeps how often it restarted each model (``emofuse serve``
        puts it beside the gateway's metrics); none if None.
    """

    def __init__(
        self,
        model_repository: str | Path,
        *,
        ports: TritonPorts | None = None,
        log_path: str | Path | None = None,
        restart_counts: str | Path | None = None,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.ports = ports or TritonPorts()
        self._workdir = Path(tempfile.mkdtemp(prefix="emofuse-triton-"))
        self.log_path = Path(log_path) if log_path else self._workdir / "tritonserver.log"
        self.restart_counts = Path(restart_counts) if restart_counts else None
        self._process: subprocess.Popen | None = None
        self._control_key = secrets.token_urlsafe(24)  # opens the model-control API to the watchdog alone
        self.watchdog: Watchdog | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    def command(self) -> list[str]:
        binary = _pytriton_dir() / "bin" / "tritonserver"
        return [
            str(binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self._workdir / 'backends'}",
            f"--grpc-port={self.ports.grpc}",
            f"--http-port={self.ports.http}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-metrics=true",
            f"--exit-timeout-secs={EXIT_WAIT_S}",
            "--exit-on-error=true",  # a model that fails to load stops the server: no silent half-service
            "--log-verbose=0",
            # Every model is loaded at start, and may be loaded again later: how the watchdog
            # restarts a model whose process died. Only requests with the key may load or unload.
            "--model-control-mode=explicit",
            "--load-model=*",
            f"--grpc-restricted-protocol=model-repository:{CONTROL_HEADER}={self._control_key}",
            f"--http-restricted-api=model-repository:{CONTROL_HEADER}={self._control_key}",
        ]

    def _environment(self) -> dict[str, str]:
        site = Path(sysconfig.get_paths()["purelib"])
        env = dict(os.environ)
        # The binary's shared libraries ship beside the package; the stub imports numpy and
        # emofuse from this interpreter's environment, found through PATH.
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(site / "nvidia_pytriton.libs"), env.get("LD_LIBRARY_PATH")]))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> TritonServer:
        """Start the server and wait until it and all its models are ready.

        Raises
        ------
        TritonUnavailable
            The binary is missing, exited, or was not ready within ``timeout_s``; the message
            carries the end of its log.
        RuntimeError
            It is running already.
        """
        if self.poll() is None:
            raise RuntimeError(f"Triton is already running at {self.grpc_url}; stop it first.")
        if not self.model_repository.is_dir():
            raise TritonUnavailable(f"Model repository {self.model_repository} does not exist; run `emofuse repo build`.")
        stub = _backend_dir(self._workdir / "backends") / "python" / "triton_python_backend_stub"
        log_file = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child, closed in stop()
        self._log_file = log_file
        log.info("starting Triton: grpc %d, http %d, metrics %d", self.ports.grpc, self.ports.http, self.ports.metrics)
        self._process = subprocess.Popen(
            self.command(),
            env=self._environment(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            process_group=0,  # a Ctrl-C reaches the process that started it, which stops it after its own clients
        )
        try:
            self._wait_ready(timeout_s)
        except BaseException:  # not ready, or a signal while it loads: stop it here, __exit__ will not run
            self.stop()
            raise
        self.watchdog = Watchdog(self.http_url, stub, self._control_key, counts=self.restart_counts).start()
        log.info("Triton ready at %s", self.grpc_url)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (code := self._process.poll()) is not None:
                raise TritonUnavailable(f"Triton exited with code {code}:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.2)
        raise TritonUnavailable(f"Triton was not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        """True once the server answers that it and every model are ready."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 10) -> str:
        """Triton's error lines (a model that failed to load says why there), else its last lines."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line for line in text if line.startswith("E") and line[1:5].isdigit() or line.startswith("error:")]
        return "\n".join(errors[-lines:] or text[-lines:])

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout_s``) and remove its work files."""
        if self.watchdog is not None:  # first: it must not restart models while Triton unloads them
            self.watchdog.stop()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("Triton did not stop within %.0f s; killing it", timeout_s)
                process.kill()
                process.wait()
        if getattr(self, "_log_file", None) is not None:
            self._log_file.close()
            self._log_file = None
        shutil.rmtree(self._workdir / "backends", ignore_errors=True)

    def wait(self) -> int:
        """Block until the server exits; returns its exit code."""
        return self._process.wait() if self._process else 0

    def poll(self) -> int | None:
        """The server's exit code if it has exited (0 when it was never started or was stopped), else None."""
        return self._process.poll() if self._process else 0

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
