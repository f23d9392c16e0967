"""The training progress bar: drawn on a terminal, silent elsewhere."""

from __future__ import annotations

import io

from training.progress import batches


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_is_drawn_on_a_terminal_and_cleared() -> None:
    screen = Terminal()
    assert list(batches(range(4), 4, stream=screen)) == [0, 1, 2, 3]
    frames = screen.getvalue().split("\r")
    assert "batch 1/4 [" in frames[1] and "batch 4/4 [" + "#" * 30 + "]" in frames[4]
    assert frames[-1] == "" and frames[-2].strip() == "", "the last frame is blanked for the epoch's log line"


def test_nothing_is_written_to_a_pipe_or_log() -> None:
    log = io.StringIO()
    assert list(batches(iter("abc"), 3, stream=log)) == ["a", "b", "c"]
    assert log.getvalue() == ""
