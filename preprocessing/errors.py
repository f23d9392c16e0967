"""Errors raised while reading recordings.

Hierarchy::

    RecordingError (ValueError)
      + UnreadableRecording   the file is missing, empty, truncated or not a media file
      + UnsupportedMedia      readable, but holds nothing emofuse can analyse
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RecordingError", "UnreadableRecording", "UnsupportedMedia"]


class RecordingError(ValueError):
    """A recording cannot be analysed; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")


class UnreadableRecording(RecordingError):
    """The file is missing, empty, truncated, or not a media file at all."""


class UnsupportedMedia(RecordingError):
    """The file is media, but no stream in it can be decoded or analysed."""
