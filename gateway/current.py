"""The running application's settings and storage, for views: ``current.config().triton_url``."""

from __future__ import annotations

from flask import Flask, current_app

from .config import Config
from .storage import Storage

__all__ = ["config", "init_app", "storage"]

_CONFIG, _STORAGE = "emofuse.config", "emofuse.storage"


def init_app(app: Flask, config: Config) -> None:
    app.extensions[_CONFIG] = config
    app.extensions[_STORAGE] = Storage(config.storage_dir)


def config(app: Flask | None = None) -> Config:
    """The settings of ``app``, by default the one handling the current request."""
    return (app or current_app).extensions[_CONFIG]


def storage(app: Flask | None = None) -> Storage:
    """The users' files of ``app``, by default the one handling the current request."""
    return (app or current_app).extensions[_STORAGE]
