"""gunicorn's settings for the gateway: metrics that add up across workers.

    gunicorn -c gateway/gunicorn_conf.py -b 127.0.0.1:8080 -w 4        # the app: gateway:create_app()

Every worker writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` (:mod:`gateway.metrics`).
This file sets the variable before any worker starts, and so before prometheus-client is first
imported (which is when it decides to use files), making a private temporary directory when the
environment names none; empties the directory when gunicorn starts, as files of an earlier run would
be counted again; tells prometheus-client when a worker exits (``child_exit``); and removes the
directory it made when gunicorn stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

wsgi_app = "gateway:create_app()"

_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_made_here = not os.environ.get(_VARIABLE)
if _made_here:
    os.environ[_VARIABLE] = tempfile.mkdtemp(prefix="emofuse-metrics-")
_DIRECTORY = Path(os.environ[_VARIABLE])


def on_starting(server: Any) -> None:
    """Before the first worker: an empty directory, so counts start at zero with this run."""
    _DIRECTORY.mkdir(parents=True, exist_ok=True)
    for stale in _DIRECTORY.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: its live gauges go; its counters and histograms stay counted."""
    from prometheus_client import multiprocess  # here, in the master: only after the variable is set

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _made_here:
        shutil.rmtree(_DIRECTORY, ignore_errors=True)
