"""Writing results: faults of the disk (full, read-only, a file where a folder should be) as one
:class:`~serving.errors.OutputError` that names the folder, whichever writer met them."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import soundfile

from .errors import OutputError

__all__ = ["output_error", "writing_into"]


@contextlib.contextmanager
def writing_into(folder: Path) -> Iterator[None]:
    """Turn a write fault inside the block into an OutputError naming ``folder``."""
    try:
        yield
    except (OSError, soundfile.SoundFileError) as err:  # the .wav writer's errors are not OSErrors
        raise output_error(folder, err) from err


def output_error(folder: Path, err: Exception) -> OutputError:
    """Why results cannot be written into ``folder``, as the system tells it."""
    blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        return OutputError(folder, f"{blocking} is a file, not a folder", full=False)
    # libsndfile (the .wav writer) says only "System error.": a small write of our own asks the OS.
    fault = err if isinstance(err, OSError) and err.errno else _write_fault(folder)
    if fault is not None:
        return OutputError(folder, fault.strerror or str(fault), full=fault.errno in (errno.ENOSPC, errno.EDQUOT))
    # The space freed by removing the partial results let the small write through.
    return OutputError(folder, f"a write failed: {err}".rstrip("."), full=True)


def _write_fault(folder: Path) -> OSError | None:
    """The OS's error for writing 1 MiB into ``folder``, or None if that works."""
    try:
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(bytes(1 << 20))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        return err
    return None
