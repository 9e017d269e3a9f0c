"""The CLI progress line: redrawn on a terminal, one line per finished stage elsewhere."""

from __future__ import annotations

import io

from bot.progress import ProgressLine


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_gets_one_line_per_stage_even_when_a_stage_ends_early() -> None:
    out = io.StringIO()
    p = ProgressLine(out, width=4)
    p.update("bars", 1, 3)
    p.update("bars", 2, 3)  # the venue ran out of data: the stage ends at 2 of 3
    p.update("open interest", 1, 1)
    p.done()
    assert out.getvalue().splitlines() == ["[##..] 2/3 bars", "[####] 1/1 open interest"]


def test_a_stage_cut_short_at_the_end_is_reported_by_done() -> None:
    out = io.StringIO()
    p = ProgressLine(out, width=4)
    p.update("bars", 1, 4)
    p.done()
    assert out.getvalue() == "[#...] 1/4 bars\n"


def test_terminal_redraws_in_place_and_ends_the_line() -> None:
    out = _Tty()
    p = ProgressLine(out, width=2)
    p.update("bars", 1, 2)
    p.update("bars", 2, 2)
    p.done()
    assert out.getvalue() == "\r[#.] 1/2 bars\r[##] 2/2 bars\n"


def test_disabled_writes_nothing() -> None:
    out = _Tty()
    p = ProgressLine(out, enabled=False)
    p.update("bars", 1, 2)
    p.done()
    assert out.getvalue() == ""
