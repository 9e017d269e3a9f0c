"""The console adapter: the same commands in a terminal (``liqbot run --demo``).

Each input line is a command (the leading '/' may be left out); the reply prints as text,
a chart is saved as a PNG file whose path is printed, and buttons print as the command lines
they would run. Alerts for the console chat print as they are delivered.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import IO

from alerts.delivery import SendResult
from alerts.notifications import GroupedMessage
from alerts.store import Destination
from bot.chat import Command, CommandHandler, Reply, notification_reply

__all__ = ["CONSOLE_CHAT", "ConsoleAdapter"]

CONSOLE_CHAT = "console"


class ConsoleAdapter:
    """Reads commands from ``stdin`` and writes replies and alerts to ``out``."""

    def __init__(
        self,
        handler: CommandHandler,
        chart_dir: str | Path,
        *,
        out: IO[str] | None = None,
        user: str = "you",
    ) -> None:
        self.handler = handler
        self.chart_dir = Path(chart_dir)
        self.out = out or sys.stdout
        self.user = user
        self._charts = 0

    def command(self, line: str) -> Command | None:
        """The command typed on ``line``; None for a blank line."""
        text = line.strip()
        if not text:
            return None
        if not text.startswith("/"):
            text = "/" + text
        return Command.parse(
            text,
            platform="console",
            chat_id=CONSOLE_CHAT,
            chat_type="private",
            user_id=self.user,
            user_name=self.user,
            is_admin=True,
        )

    async def run_line(self, line: str) -> Reply | None:
        cmd = self.command(line)
        if cmd is None:
            return None
        if not cmd.name:
            reply = Reply.of("Type a command such as /liqmap BTC, or /help.", error=True)
        else:
            reply = await self.handler(cmd)
        self.print_reply(reply)
        return reply

    def print_reply(self, reply: Reply, prefix: str = "") -> None:
        lines = [prefix + reply.title] if reply.title else []
        lines += list(reply.lines)
        if reply.png is not None:
            lines.append(f"chart: {self._save(reply)}")
        for row in reply.buttons:
            lines.append("  ".join(f"[{b.label}: {b.data}]" for b in row))
        self.out.write("\n".join(lines) + "\n\n")
        self.out.flush()

    def _save(self, reply: Reply) -> Path:
        self.chart_dir.mkdir(parents=True, exist_ok=True)
        self._charts += 1
        stem = Path(reply.png_name).stem or "chart"
        path = self.chart_dir / f"{stem}-{int(time.time())}-{self._charts}.png"
        path.write_bytes(reply.png or b"")
        return path

    async def send(self, dest: Destination, msg: GroupedMessage) -> SendResult:
        """The outbox Sender for the console chat: alerts print as they are delivered."""
        reply = notification_reply(msg)
        self.print_reply(reply, prefix="(silent) " if msg.silent else "ALERT: ")
        return SendResult.sent()

    async def read_stdin(self, stdin: IO[str] | None = None) -> None:
        """Run every line of ``stdin`` until EOF.

        A daemon thread reads it, so the loop never blocks and a terminal waiting for input
        does not keep the process alive at shutdown.
        """
        source = stdin or sys.stdin
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str] = asyncio.Queue()

        def reader() -> None:
            while True:
                line = source.readline()
                try:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
                except RuntimeError:  # the bot has shut down
                    return
                if not line:
                    return

        threading.Thread(target=reader, name="console-stdin", daemon=True).start()
        while line := await lines.get():
            await self.run_line(line)
