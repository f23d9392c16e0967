"""The consent and purpose page, ``/about``: what the models can and cannot tell, from their cards.

Built at each request from the served model repository (``EMOFUSE_MODEL_REPOSITORY``, by default
``model_repository``) by :func:`serving.cards.read_catalogue`, which reads JSON and text only, so
the page says what is served, not what some code believes is. A model whose config says other
weights than ``real`` learnt synthetic data only: the page says it is untrained, and the rest of
the gateway never shows its answers as emotions.
"""

from __future__ import annotations

from flask import Blueprint, render_template

from serving.cards import read_catalogue

from . import current
from .health import READY_MODELS
from .history import MODE_NAMES

__all__ = ["bp", "read_catalogue"]

bp = Blueprint("about", __name__)


@bp.get("/about")
def about() -> str:
    """What the models can and cannot tell, and what emofuse is not for; no sign-in needed."""
    catalogue = read_catalogue(current.config().model_repository, READY_MODELS)
    return render_template("about.html", catalogue=catalogue, mode_names=MODE_NAMES)
