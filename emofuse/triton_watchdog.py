"""Keep the Python-backend models of a running Triton alive: restart a model whose process died.

Triton 2.51 runs each instance of a Python-backend model in a stub process of its own. When a
stub dies (killed for memory, a crash in a native library), Triton goes on reporting the model
READY, answers every request for it, and for every ensemble that uses it, with "Stub process
'<model>_0_0' is not healthy.", and never starts a new stub: the model is lost until Triton
restarts (checked: ``tests/test_triton_watchdog.py``). Loading the model again starts a new stub,
but Triton skips a load whose configuration has not changed. So :class:`Watchdog` counts each
model's stubs once a second and loads a model that lost one with its own configuration plus a
parameter ``restarted_at``, through the model-control API. :class:`~emofuse.triton_server.TritonServer`
opens that API only to requests that carry its key (:data:`CONTROL_HEADER`), and runs a watchdog
for as long as it runs Triton. Clients wait for the restart: :class:`serving.EmotionClient` sends a
request refused for a dead stub again (:class:`serving.errors.ModelCrashed`). With ``counts``, the
watchdog keeps its restarts per model in that JSON file as well, for the gateway's ``/metrics``
(``emofuse_triton_model_restarts_total``, :mod:`gateway.metrics`), which runs in other processes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

__all__ = ["CONTROL_HEADER", "Watchdog", "stub_models", "stub_processes"]

log = logging.getLogger(__name__)

#: The request header that must carry a TritonServer's key for its model-control API to answer.
CONTROL_HEADER = "emofuse-control"


def stub_processes(stub: Path) -> dict[int, str]:
    """The live processes started from ``stub``: process id to the model each runs.

    A stub's command line is ``stub /repository/<model>/<version>/model.py ...``; a stub that died
    and is not yet reaped has an empty one, so it is not listed.
    """
    found: dict[int, str] = {}
    binary = os.fsencode(stub)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if len(argv) > 1 and argv[0] == binary:
            found[int(entry.name)] = Path(os.fsdecode(argv[1])).parent.parent.name
    return found


def stub_models(stub: Path) -> Counter[str]:
    """How many live stub processes each model has among those started from ``stub``."""
    return Counter(stub_processes(stub).values())


class Watchdog:
    """Restarts, once a second, each model of one Triton that has fewer stubs than when it started.

    Parameters
    ----------
    http_url : str
        ``http://host:port`` of that Triton's HTTP endpoint.
    stub : Path
        The stub binary that Triton starts (its backend directory's ``triton_python_backend_stub``):
        it tells this Triton's stubs from any other's.
    key : str
        The value of :data:`CONTROL_HEADER` that its model-control API accepts.
    counts : Path, optional
        A JSON file that holds :attr:`restarts` (``{"model": times}``), written when the watchdog
        starts (``{}``: a new Triton, none yet) and after each restart, whole (never half-written).
    """

    def __init__(self, http_url: str, stub: Path, key: str, *, interval_s: float = 1.0, counts: Path | None = None) -> None:
        self.http_url, self.stub, self.key, self.interval_s, self.counts = http_url, stub, key, interval_s, counts
        self.expected = stub_models(stub)  # every model is loaded when the watchdog starts
        self.restarts: Counter[str] = Counter()  # model: times restarted
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triton-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._write_counts()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            running = stub_models(self.stub)
            for model in sorted(m for m, n in self.expected.items() if running[m] < n):
                if self._stopped.is_set():
                    return
                self._restart(model)

    def _restart(self, model: str) -> None:
        log.warning("the process of Triton model %s has died: restarting the model", model)
        started = time.perf_counter()
        try:
            config = self._call(f"/v2/models/{model}/config")
            config.setdefault("parameters", {})["restarted_at"] = {"string_value": f"{time.time():.3f}"}  # unchanged loads are skipped
            self._call(f"/v2/repository/models/{model}/load", {"parameters": {"config": json.dumps(config)}})
        except (urllib.error.URLError, OSError, ValueError) as err:  # Triton stopping, or the load failed: tried again next round
            log.error("restarting Triton model %s failed: %s", model, err)
            return
        self.restarts[model] += 1
        self._write_counts()
        log.warning("Triton model %s restarted in %.1f s", model, time.perf_counter() - started)

    def _write_counts(self) -> None:
        if self.counts is None:
            return
        written = self.counts.with_name(f".{self.counts.name}.{os.getpid()}")
        try:
            written.write_text(json.dumps(dict(self.restarts), sort_keys=True))
            os.replace(written, self.counts)  # a scrape reads the old counts or the new, never half of them
        except OSError as err:  # a full disk must not end the watchdog: restarting models matters more than counting them
            log.error("Triton restarts not written to %s: %s", self.counts, err)

    def _call(self, path: str, body: dict | None = None) -> dict:
        """GET (or POST ``body`` to) ``path`` of Triton's HTTP API; the JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.http_url}{path}", data=data, headers={CONTROL_HEADER: self.key,
                                         "Content-Type": "application/json"}, method="GET" if body is None else "POST")  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read()
        return json.loads(text) if text else {}
