"""The serving library: recordings in, timelines and annotated copies out, models reached through Triton.

Its small public surface::

    from serving import Analyzer, EmotionClient

    with EmotionClient("localhost:8001") as client:
        analysis = Analyzer(client).analyze("session.mp4", "results/", progress=print)
    print(analysis.timeline.verdict())

Every front end shares it: the ``emofuse`` command and its batch pool, and the web gateway. It
imports numpy, PyAV, OpenCV and tritonclient, never torch, ``models``, ``training`` or ``export``
(import-linter checks it; see pyproject.toml). Every error it raises is a :class:`EmofuseError`:
:class:`InputError` when the caller must change the recording, :class:`OutputError` when the
results cannot be written, :class:`UpstreamError` when Triton cannot answer.
"""

from .analysis import MODES, Analysis, Analyzer, Progress
from .errors import (
    EmofuseError,
    InputError,
    ModelCrashed,
    ModelError,
    NoFaceFound,
    NothingToJudge,
    NoVoiceFound,
    OutputError,
    TritonTimeout,
    TritonUnavailable,
    UpstreamError,
)
from .timeline import Timeline, Verdict, WindowResult
from .trials import TrialAnalyzer, TrialResult
from .triton_client import EmotionClient, ModelInfo

__all__ = [
    "MODES",
    "Analysis",
    "Analyzer",
    "EmofuseError",
    "EmotionClient",
    "InputError",
    "ModelCrashed",
    "ModelError",
    "ModelInfo",
    "NoFaceFound",
    "NoVoiceFound",
    "NothingToJudge",
    "OutputError",
    "Progress",
    "Timeline",
    "TrialAnalyzer",
    "TrialResult",
    "TritonTimeout",
    "TritonUnavailable",
    "UpstreamError",
    "Verdict",
    "WindowResult",
]
