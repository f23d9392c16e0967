"""What can go wrong in an analysis, as seen by its callers (the CLI, the web gateway, batch jobs).

Hierarchy::

    EmofuseError
      + InputError            the recording cannot be analysed: the caller must change it
      |   + NothingToJudge    no window holds what the models look at
      |       - NoFaceFound   ... a face (face mode)
      |       - NoVoiceFound  ... a voice (audio mode)
      + OutputError           the results cannot be written where asked: free space or choose another place
      + UpstreamError         the model server cannot answer: retry later, or tell an operator
          - TritonUnavailable not running, not reachable, or failed to start
          |   - ModelCrashed  a model's process died, and no one restarted it in time
          - TritonTimeout     no answer within the client timeout
          - ModelError        the server answered with an error for this request
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "EmofuseError",
    "InputError",
    "ModelCrashed",
    "ModelError",
    "NoFaceFound",
    "NoVoiceFound",
    "NothingToJudge",
    "OutputError",
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


class OutputError(EmofuseError):
    """The results cannot be written into ``folder``: disk full, read-only, a file in the way.

    Attributes
    ----------
    folder : Path
    reason : str
        What the system said, e.g. 'No space left on device'.
    full : bool
        Whether freeing space there would help.
    """

    def __init__(self, folder: Path, reason: str, *, full: bool) -> None:
        self.folder, self.reason, self.full = folder, reason, full
        super().__init__(self.describe())

    def describe(self, how: str = "") -> str:
        """The one-line message; ``how`` says how to choose another folder (e.g. 'with --out')."""
        advice = "free space there or choose another folder" if self.full else "choose another folder"
        return f"cannot write into {self.folder} ({self.reason}); {advice}{' ' + how if how else ''}."


class UpstreamError(EmofuseError):
    """The model server could not produce an answer."""


class TritonUnavailable(UpstreamError):
    """The Triton server is not running, not reachable, or did not start."""


class ModelCrashed(TritonUnavailable):
    """A model's process on the Triton server died; the server answers no request for it until
    the model is loaded again (a Triton started by emofuse does that within seconds).

    Attributes
    ----------
    model : str
        The model whose process died (a step of the ensemble asked for, perhaps).
    """

    def __init__(self, message: str, model: str) -> None:
        super().__init__(message)
        self.model = model


class TritonTimeout(UpstreamError):
    """Timed out waiting for the Triton server to answer."""


class ModelError(UpstreamError):
    """The Triton server answered a request with an error."""
