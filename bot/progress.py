"""A one-line progress display for long CLI work, redrawn in place on a terminal."""

from __future__ import annotations

from typing import TextIO


class ProgressLine:
    """``update(what, done, total)`` draws '[#####.....] 5/10 binance bars'.

    On a terminal the line is redrawn in place; elsewhere (a log, CI) a line is written only when
    a stage finishes, so logs stay readable.
    """

    def __init__(self, stream: TextIO, *, enabled: bool = True, width: int = 30) -> None:
        self._stream = stream
        self._enabled = enabled
        self._tty = enabled and stream.isatty()
        self._width = width
        self._drawn = False

    def update(self, what: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        total = max(total, 1)
        filled = self._width * min(done, total) // total
        bar = "#" * filled + "." * (self._width - filled)
        line = f"[{bar}] {done}/{total} {what}"
        if self._tty:
            self._stream.write("\r" + line)
            self._drawn = True
        elif done >= total:
            self._stream.write(line + "\n")
        self._stream.flush()

    def done(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False
