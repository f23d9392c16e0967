"""A progress bar for training epochs, on standard error, and only when a person watches it.

On a terminal it redraws one line, ``  batch 12/21 [##########..........]``, as batches finish,
and clears it before the epoch's log line; in logs, pipes and CI it writes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["batches"]

T = TypeVar("T")
_WIDTH = 30  # characters of the bar


def batches(items: Iterable[T], total: int, *, stream=None) -> Iterator[T]:
    """``items`` (the batches of one epoch), drawing the bar as each is taken."""
    stream = stream if stream is not None else sys.stderr
    shown = stream.isatty()
    for done, item in enumerate(items, start=1):
        yield item
        if shown:
            filled = round(_WIDTH * done / max(total, 1))
            stream.write(f"\r  batch {done}/{total} [{'#' * filled}{'.' * (_WIDTH - filled)}]")
            stream.flush()
    if shown:
        stream.write("\r" + " " * (_WIDTH + 30) + "\r")
        stream.flush()
