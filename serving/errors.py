"""What can go wrong in an analysis, as seen by its callers (the CLI, the web gateway, batch jobs).

Hierarchy::

    EmofuseError
      + InputError            the recording cannot be analysed: the caller must change it
      |   + NothingToJudge    no window holds what the models look at
      |       - NoFaceFound   ... a face (face mode)
      |       - NoVoiceFound  ... a voice (audio mode)
      + UpstreamError         the model server cannot answer: retry later, or tell an operator
          - TritonUnavailable not running, not reachable, or failed to start
          - TritonTimeout     no answer within the client timeout
          - ModelError        the server answered with an error for this request
"""

from __future__ import annotations

__all__ = [
    "EmofuseError",
    "InputError",
    "ModelError",
    "NoFaceFound",
    "NoVoiceFound",
    "NothingToJudge",
    "TritonTimeout",
    "TritonUnavailable",
    "UpstreamError",
]


class EmofuseError(Exception):
    """Base of every error an analysis reports to its caller."""


class InputError(EmofuseError):
    """The recording cannot be analysed as it is."""


class NothingToJudge(InputError):
    """No window holds a face or a voice that the mode's models could judge."""


class NoFaceFound(NothingToJudge):
    """No window of the video shows a face, so the face model has nothing to judge."""


class NoVoiceFound(NothingToJudge):
    """No window of the recording holds a voice, so the speech model has nothing to judge."""


class UpstreamError(EmofuseError):
    """The model server could not produce an answer."""


class TritonUnavailable(UpstreamError):
    """The Triton server is not running, not reachable, or did not start."""


class TritonTimeout(UpstreamError):
    """Timed out waiting for the Triton server to answer."""


class ModelError(UpstreamError):
    """The Triton server answered a request with an error."""
