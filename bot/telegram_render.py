"""A :class:`~bot.chat.Reply` as Telegram messages: HTML text chunks, a photo caption, buttons.

Telegram parses HTML, so every string from a Reply (a symbol, a chat title, a person's input)
is escaped here; the only markup is the ``<b>`` around the title. Lengths are counted the way
Telegram counts them, in UTF-16 code units, and on the HTML itself: that is never less than
what Telegram measures after parsing, so a chunk that fits here fits there.

A photo carries as many whole lines as fit in a 1024-character caption; the rest follows as
text messages of at most 4096 characters, split on line boundaries. A single line too long for
one message is cut (never inside an ``&amp;`` entity or a tag). The buttons go on the last
message, under everything they refer to.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.chat import Reply

__all__ = ["CAPTION_MAX", "TEXT_MAX", "Rendered", "markup", "render", "split_lines", "tg_len"]

CAPTION_MAX = 1024
TEXT_MAX = 4096
_BOLD = ("<b>", "</b>")


@dataclass(frozen=True)
class Rendered:
    """What to send for one Reply, in order: the photo (with ``caption``), then ``texts``."""

    texts: tuple[str, ...]
    photo: bytes | None = None
    photo_name: str = "liqmap.png"
    caption: str | None = None
    markup: InlineKeyboardMarkup | None = None
    silent: bool = False

    @property
    def count(self) -> int:
        """How many messages this is."""
        return len(self.texts) + (self.photo is not None)


def tg_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: an emoji outside the BMP is 2)."""
    return len(text.encode("utf-16-le")) // 2


def _line(raw: str, bold: bool) -> str:
    text = html.escape(raw, quote=False)
    return f"{_BOLD[0]}{text}{_BOLD[1]}" if bold else text


def _cut(raw: str, bold: bool, limit: int) -> list[str]:
    """``raw`` in plain pieces whose renderings (escaped, bold) are at most ``limit`` each."""
    room = limit - (tg_len("".join(_BOLD)) if bold else 0)
    if tg_len(html.escape(raw, quote=False)) <= room:  # nearly every line: no per-char walk
        return [raw]
    pieces: list[str] = []
    start, used = 0, 0
    for i, ch in enumerate(raw):
        width = tg_len(html.escape(ch, quote=False))
        if used + width > room and i > start:
            pieces.append(raw[start:i])
            start, used = i, 0
        used += width
    pieces.append(raw[start:])
    return pieces


def _pack(lines: list[str], limit: int) -> list[str]:
    """Whole lines joined with newlines into chunks of at most ``limit`` (lines already fit)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        width = tg_len(line) + (1 if current else 0)
        if current and size + width > limit:
            chunks.append("\n".join(current))
            current, size, width = [], 0, tg_len(line)
        current.append(line)
        size += width
    if current:
        chunks.append("\n".join(current))
    return [c for c in chunks if c.strip()]


def _segments(reply: Reply) -> list[tuple[str, bool]]:
    head = [(reply.title, True)] if reply.title else []
    return head + [(line, False) for line in reply.lines]


def split_lines(segments: list[tuple[str, bool]], limit: int = TEXT_MAX) -> list[str]:
    """(plain line, bold) pairs as HTML chunks of at most ``limit``, split on line boundaries."""
    lines: list[str] = []
    for raw, bold in segments:
        lines.extend(_line(piece, bold) for piece in _cut(raw, bold, limit))
    return _pack(lines, limit)


def _caption(segments: list[tuple[str, bool]]) -> tuple[str, list[tuple[str, bool]]]:
    """The caption (whole lines that fit in 1024) and the segments left for the texts."""
    taken: list[str] = []
    size = 0
    for i, (raw, bold) in enumerate(segments):
        line = _line(raw, bold)
        width = tg_len(line) + (1 if taken else 0)
        if size + width > CAPTION_MAX:
            if not taken:  # one line longer than a caption: its first piece is the caption
                first = _cut(raw, bold, CAPTION_MAX)[0]
                return _line(first, bold), [(raw[len(first) :], bold), *segments[i + 1 :]]
            return "\n".join(taken), segments[i:]
        taken.append(line)
        size += width
    return "\n".join(taken), []


def markup(reply: Reply) -> InlineKeyboardMarkup | None:
    """Reply.buttons as an inline keyboard; each button's callback data is its command line."""
    if not reply.buttons:
        return None
    rows = reply.buttons
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(b.label, callback_data=b.data) for b in row] for row in rows]
    )


def render(reply: Reply) -> Rendered:
    """The messages for ``reply``; see the module docstring for the rules."""
    segments = _segments(reply)
    caption: str | None = None
    if reply.png is not None:
        caption, segments = _caption(segments)
    return Rendered(
        texts=tuple(split_lines(segments)),
        photo=reply.png,
        photo_name=reply.png_name,
        caption=caption or None,
        markup=markup(reply),
        silent=reply.silent,
    )
