"""``emofuse serve``: the whole product on one machine, from one command.

Three processes share one working directory (``var/`` by default), which is the gateway's data
directory (``EMOFUSE_DATA_DIR``): the SQLite database, users' files, the secret key, the sample
video, the metrics files and the logs::

    var/emofuse.sqlite   var/users/   var/secret_key (0600)   var/sample.mp4   var/metrics/   var/logs/

1. the model repository is built if missing, the sample video written if missing, the secret key
   made on the first start and kept (``SECRET_KEY`` in the environment wins), and the database
   migrated, all before any process starts, so none of them races another to do it;
2. Triton starts on its three ports (log: ``logs/triton.log``);
3. the gateway starts under gunicorn (``gateway/gunicorn_conf.py``) on ``--host``/``--port``
   (log: ``logs/gateway.log``); once it answers ``/readyz``,
4. the job worker starts: ``emofuse worker`` in a process of its own, polling the database, with
   Triton's gRPC address (log: ``logs/worker.log``). It starts after gunicorn because gunicorn
   empties ``PROMETHEUS_MULTIPROC_DIR`` when it starts, and the worker's metrics files live there
   too;
5. the address to open is printed.

Ctrl-C or SIGTERM stops the gateway and the worker (which gives a running job back), then Triton.
Each child gets SIGTERM should this process die (``PR_SET_PDEATHSIG``), and runs in a process
group of its own, so a Ctrl-C reaches this process alone and the order above holds. If a child
exits on its own, the others are stopped and ``serve`` exits with status 1 and a line naming it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from serving.errors import InputError

from .triton_server import TritonPorts, TritonServer, die_with_parent

__all__ = ["serve"]

READY_TIMEOUT_S = 120.0  # gunicorn's workers import the gateway and check Triton's ensembles
STOP_TIMEOUT_S = 45.0  # gunicorn waits up to 30 s (its graceful timeout) for requests in flight
GATEWAY, WORKER, TRITON = "the gateway (gunicorn)", "the job worker", "Triton"


class ChildExited(Exception):
    """One of the service's processes exited on its own: the message names it, how it ended and
    its log; ``tail`` is the log's last lines."""

    def __init__(self, message: str, tail: str) -> None:
        super().__init__(message)
        self.tail = tail


class _Children:
    """The gateway's and the worker's processes, each with its log file under ``logs``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, command: list[str], env: dict[str, str], log_name: str) -> None:
        log_path = self.logs / log_name
        with log_path.open("wb") as log_file:  # the child keeps its own descriptor
            process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                       preexec_fn=die_with_parent, process_group=0)  # fmt: skip
        self.running[name] = (process, log_path)

    def exited(self) -> tuple[str, int, Path] | None:
        """The first child that has exited: its name, status and log; None while all run."""
        for name, (process, log_path) in self.running.items():
            if (code := process.poll()) is not None:
                return name, code, log_path
        return None

    def stop(self) -> None:
        """SIGTERM to all at once, then wait for each; SIGKILL for one that outlasts STOP_TIMEOUT_S."""
        for process, _ in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process, _ in self.running.values():
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve(args: argparse.Namespace) -> int:
    """Run the service until Ctrl-C or SIGTERM (the caller turns SIGTERM into SystemExit); 1 when a process died."""
    ports = TritonPorts(args.grpc_port, args.http_port, args.metrics_port)
    _check_port(args.host, args.port, ports)
    workdir, repository = args.workdir.absolute(), args.repository.absolute()
    env = _prepare(workdir, repository, triton_url=f"127.0.0.1:{ports.grpc}")
    logs = workdir / "logs"
    from gateway.metrics import TRITON_RESTARTS_FILE  # the gateway's /metrics reads the watchdog's counts there

    restarts = workdir / "metrics" / TRITON_RESTARTS_FILE
    server, children = TritonServer(repository, ports=ports, log_path=logs / "triton.log", restart_counts=restarts), _Children(logs)
    address = f"http://{_authority(_local(args.host), args.port)}"
    try:
        server.start()
        print(f"Triton ready: gRPC {server.grpc_url}, HTTP {server.http_url}, metrics {server.metrics_url}", flush=True)
        check = _checker(server, children)
        children.start(GATEWAY, _gunicorn_command(args.host, args.port, args.web_workers), env, "gateway.log")
        _wait_ready(f"{address}/readyz", check)
        children.start(WORKER, [sys.executable, "-m", "emofuse.cli", "worker", "--triton", server.grpc_url], env, "worker.log")
        print(f"Data in {workdir}, logs in {logs}", flush=True)
        print(f"Open {address}/ in a browser: sign up, then press “Analyse the sample video”. Ctrl-C stops everything.", flush=True)
        while True:
            check()
            time.sleep(0.5)
    except ChildExited as err:
        print(f"emofuse serve: {err}; stopping the others.", file=sys.stderr)
        print("".join(f"    {line}\n" for line in err.tail.splitlines()), end="", file=sys.stderr, flush=True)
        return 1
    finally:
        _stop(server, children)


def _prepare(workdir: Path, repository: Path, *, triton_url: str) -> dict[str, str]:
    """Everything before the first process: repository, sample, key, migrated database, folders; the children's environment."""
    workdir.mkdir(parents=True, exist_ok=True)
    for folder in ("logs", "metrics"):
        (workdir / folder).mkdir(exist_ok=True)
    _build_if_missing(repository)
    env = _environment(workdir, repository, _sample(workdir), secret_key=_secret_key(workdir), triton_url=triton_url)
    _migrate(env)
    return env


def _stop(server: TritonServer, children: _Children) -> None:
    """The gateway and the worker first (the worker gives its job back while Triton still answers), then Triton.

    A second Ctrl-C or SIGTERM meanwhile is ignored: it must not leave a child running.
    """
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        children.stop()
        server.stop()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _checker(server: TritonServer, children: _Children) -> Callable[[], None]:
    """A check that raises ChildExited once one of the processes has exited."""

    def check() -> None:
        if (code := server.poll()) is not None:
            raise ChildExited(f"{TRITON} {_ended(code)} (log: {server.log_path})", server.log_tail(5))
        if (found := children.exited()) is not None:
            name, code, log_path = found
            raise ChildExited(f"{name} {_ended(code)} (log: {log_path})", _tail(log_path))

    return check


def _ended(code: int) -> str:
    """How a process ended, from its Popen return code (negative: the signal that killed it)."""
    if code >= 0:
        return f"exited with status {code}"
    with contextlib.suppress(ValueError):
        return f"was killed by {signal.Signals(-code).name}"
    return f"was killed by signal {-code}"


def _tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _check_port(host: str, port: int, triton: TritonPorts) -> None:
    """Refuse, before anything starts, a gateway port that Triton takes or that something else listens on."""
    if port in (triton.grpc, triton.http, triton.metrics):
        raise InputError(f"Port {port} is one of Triton's ({triton.grpc}, {triton.http}, {triton.metrics}); choose another with --port.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: a port in TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as err:
            raise InputError(f"The gateway cannot listen on {_authority(host, port)}: {err.strerror}; choose another with --port.") from None


def _build_if_missing(repository: Path) -> None:
    if not (repository / "face_expression" / "1" / "model.onnx").is_file():
        from export.build import build_default_repository

        print(f"Building the model repository in {repository} ...", flush=True)
        build_default_repository(repository)


def _sample(workdir: Path) -> Path:
    from preprocessing.synthesis import write_sample_video

    sample = workdir / "sample.mp4"
    if not sample.is_file():
        write_sample_video(sample)
    return sample


def _secret_key(workdir: Path) -> str:
    """``SECRET_KEY`` from the environment, or the key kept in the workdir, made on the first start."""
    from gateway.config import SECRET_KEY_FILE, kept_secret_key

    if os.environ.get("SECRET_KEY"):
        print("Secret key: SECRET_KEY from the environment", flush=True)
        return os.environ["SECRET_KEY"]
    path = workdir / SECRET_KEY_FILE
    made = not path.exists()
    key = kept_secret_key(path)
    print(f"Secret key: {'made and kept' if made else 'kept from an earlier start'} in {path} (mode 0600)", flush=True)
    return key


def _environment(workdir: Path, repository: Path, sample: Path, *, secret_key: str, triton_url: str) -> dict[str, str]:
    """The settings gunicorn and the worker share: one data directory, database, key, Triton and metrics directory.

    Jobs are embedded (the worker polls the database): ``REDIS_URL`` is not passed on.
    """
    env = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}
    env.update({
        "EMOFUSE_DATA_DIR": str(workdir),
        "DATABASE_URL": f"sqlite:///{workdir / 'emofuse.sqlite'}",
        "SECRET_KEY": secret_key,
        "TRITON_URL": triton_url,
        "EMOFUSE_MODEL_REPOSITORY": str(repository),
        "EMOFUSE_SAMPLE_VIDEO": str(sample),
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
    })  # fmt: skip
    return env


def _migrate(env: dict[str, str]) -> None:
    """Bring the database to the newest migration, once, before the gateway's workers and the job worker open it."""
    from gateway.config import Config
    from gateway.db import make_engine, upgrade
    from gateway.errors import ConfigError

    try:
        config = Config.from_env(env)
    except ConfigError as err:
        raise InputError(str(err)) from err
    engine = make_engine(config.database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def _gunicorn_command(host: str, port: int, workers: int) -> list[str]:
    spec = importlib.util.find_spec("gateway")  # finds the package without importing it
    conf = Path(spec.origin).with_name("gunicorn_conf.py")
    return [sys.executable, "-m", "gunicorn", "-c", str(conf), "-b", _authority(host, port), "-w", str(workers), "gateway:create_app()"]


def _wait_ready(url: str, check: Callable[[], None]) -> None:
    """Until ``url`` answers 200; ChildExited if a process dies meanwhile, InputError after READY_TIMEOUT_S."""
    deadline, answer = time.monotonic() + READY_TIMEOUT_S, "no answer"
    while time.monotonic() < deadline:
        check()
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError as err:
            answer = f"{err.code}: {_read(err)}"
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise InputError(f"The gateway was not ready within {READY_TIMEOUT_S:.0f} s ({url} answered {answer}).")


def _read(response: IO[bytes]) -> str:
    with contextlib.suppress(OSError):
        return response.read(2000).decode(errors="replace")
    return ""


def _local(host: str) -> str:
    """Where this machine reaches a server bound to ``host`` (every address: the loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
