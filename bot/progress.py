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
        # A stage not yet reported complete (non-TTY): (its name, its last line).
        self._pending: tuple[str, str] | None = None

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
        else:
            # A stage may end early (an empty page); report it when the next one starts.
            if self._pending is not None and self._pending[0] != what:
                self._stream.write(self._pending[1] + "\n")
            self._pending = None
            if done >= total:
                self._stream.write(line + "\n")
            else:
                self._pending = (what, line)
        self._stream.flush()

    def done(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._drawn = False
        if self._pending is not None:
            self._stream.write(self._pending[1] + "\n")
            self._pending = None
        self._stream.flush()
