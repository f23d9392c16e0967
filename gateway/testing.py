"""Helpers for the gateway's tests: throwaway servers, a PostgreSQL one, and forms filled as a browser would.

:class:`PostgresServer` runs a real PostgreSQL from the distribution's binaries (Debian's
``postgresql`` package puts them in ``/usr/lib/postgresql/VERSION/bin``) on a free loopback port,
with a cluster in a temporary directory that is removed when it stops::

    with PostgresServer() as server:
        url = server.create_database("emofuse_test")    # postgresql://emofuse@127.0.0.1:PORT/emofuse_test

PostgreSQL refuses to run as root; as root the cluster belongs to, and runs as, the ``postgres``
system user the package creates. :class:`LoopbackServer` is what it shares with
:class:`gateway.testing_flow.RedisServer`: started by ``with``, its folder removed when it closes.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Self

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

__all__ = ["LoopbackServer", "PostgresServer", "PostgresUnavailable", "ServerUnavailable", "csrf_token", "free_port", "sign_in",
           "sign_up", "stop_process"]

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str, **request: Any) -> str:
    """The CSRF token of the form on the page at ``path``, as a browser would find it.

    ``request`` goes to the test client as it is (``base_url="https://localhost"``...), here and below.
    """
    page = client.get(path, **request)
    found = _CSRF.search(page.get_data(as_text=True))
    if found is None:
        raise AssertionError(f"The page at {path} ({page.status}) holds no CSRF token.")
    return found.group(1)


def sign_up(client: FlaskClient, email: str, password: str, confirmation: str | None = None, **request: Any) -> TestResponse:
    form = {"email": email, "password": password, "confirmation": password if confirmation is None else confirmation}
    return client.post("/auth/sign-up", data={"csrf_token": csrf_token(client, "/auth/sign-up", **request), **form}, **request)


def sign_in(client: FlaskClient, email: str, password: str, **request: Any) -> TestResponse:
    form = {"csrf_token": csrf_token(client, "/auth/sign-in", **request), "email": email, "password": password}
    return client.post("/auth/sign-in", data=form, **request)


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen[bytes] | None, timeout_s: float = 60.0) -> None:
    """SIGTERM ``process`` if it still runs, as an operator stops a server (it finishes what it
    holds); SIGKILL once it has not exited within ``timeout_s``, so that no test leaves it behind."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerUnavailable(RuntimeError):
    """A test server cannot run here; the message says what to install."""


class LoopbackServer(ABC):
    """A server of the tests' own on a free loopback port, with a temporary folder ``root``.

    ``with`` starts it and closes it; a start that fails closes it too, so a server missing
    here leaves no folder behind. :meth:`stop` alone keeps the folder: a test may start it again.
    """

    root: Path

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresUnavailable(ServerUnavailable):
    """No PostgreSQL binaries here, or no user to run them as; the message says what to install."""


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if not versions:
        raise PostgresUnavailable("PostgreSQL is not installed: `apt-get install -y postgresql` (Debian) provides it.")
    return Path(versions[-1]).parent


class PostgresServer(LoopbackServer):
    """A PostgreSQL server of its own, for tests: ``initdb``, ``pg_ctl start``, and removal at stop."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.port = free_port()
        self.user = "emofuse"
        self._run_as = None if os.geteuid() != 0 else self._system_user()
        self.root = Path(tempfile.mkdtemp(prefix="emofuse-pg-"))
        if self._run_as is not None:
            os.chown(self.root, self._run_as.pw_uid, self._run_as.pw_gid)

    @staticmethod
    def _system_user() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("PostgreSQL will not run as root and there is no `postgres` user to run it as.") from None

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin / tool), *args]
        return command if self._run_as is None else ["runuser", "-u", self._run_as.pw_name, "--", *command]

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(self._command(tool, *args), capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise PostgresUnavailable(f"{tool} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-U", self.user, "--auth=trust", "--no-sync", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c full_page_writes=off"  # tests: speed over durability
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run(self._command("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"), capture_output=True, timeout=60)

    def create_database(self, name: str) -> str:
        """Create the database ``name`` and return its SQLAlchemy URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"Database name {name!r} is not a plain lower-case identifier.")
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"
