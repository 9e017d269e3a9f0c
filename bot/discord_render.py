"""A :class:`~bot.chat.Reply` as Discord messages: embeds, a PNG attachment, buttons (DESIGN §7).

A Reply's strings are plain text, so every one is escaped here (markdown and mentions): a
symbol, a chat title or a data value cannot format or ping. The title becomes the embed title,
the lines the description; a body over Discord's limits (4096 characters per description, 6000
per message) is split on line boundaries into several embeds and, when needed, several
messages. The PNG goes as an attachment that the first embed shows
(``attachment://<png_name>``); the buttons go with the last message, each ``custom_id`` the
command line it runs. Error and private replies are ephemeral.

Views are created stopped: discord.py then sends their components without keeping them in its
view store, because presses are answered by command line (``bot.discord_app``), not per view.

discord.py 2.7 imports ``audioop``, deprecated since Python 3.11; the Discord modules import it
with exactly that warning silenced, so that test runs with warnings as errors can import them.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

from bot.chat import Reply

with warnings.catch_warnings():  # discord.py 2.7 imports audioop, deprecated since 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord


__all__ = [
    "CUSTOM_ID_MAX",
    "DESCRIPTION_MAX",
    "DiscordMessage",
    "escape",
    "render",
]

DESCRIPTION_MAX = 4096
TITLE_MAX = 256
MESSAGE_CHARS_MAX = 6000  # title + description of all embeds in one message
CUSTOM_ID_MAX = 100
LABEL_MAX = 80
BUTTONS_PER_ROW = 5
ROWS_MAX = 5

COLOUR = discord.Colour.blurple()
ERROR_COLOUR = discord.Colour.red()


@dataclass
class DiscordMessage:
    """One message to send: keyword arguments for ``followup.send`` / ``channel.send``."""

    embeds: list[discord.Embed]
    file: discord.File | None = None
    view: discord.ui.View | None = None
    ephemeral: bool = False
    silent: bool = False

    def send_kwargs(self) -> dict[str, object]:
        """The arguments both ``Webhook.send`` and ``Messageable.send`` accept (no ephemeral)."""
        kw: dict[str, object] = {"embeds": self.embeds, "silent": self.silent}
        if self.file is not None:
            kw["file"] = self.file
        if self.view is not None:
            kw["view"] = self.view
        return kw


# @everyone, @here, and user and role mentions of any id: discord.utils.escape_mentions breaks
# only 17-20 digit ids, so '<@123>' would still render as a mention.
_MENTION = re.compile(r"@(everyone|here|[!&]?[0-9]+)")


def escape(text: str) -> str:
    """Plain text made inert on Discord: markdown escaped, @everyone/@here/user/role pings
    broken with a zero-width space (allowed_mentions stops pings too; this keeps the text
    from even looking like one)."""
    return _MENTION.sub("@\u200b\\1", discord.utils.escape_markdown(text))


def _pack(lines: list[str], limit: int) -> list[str]:
    """``lines`` (escaped) joined into pieces of at most ``limit`` characters, split between
    lines; a single longer line is cut hard (never right after a ``\\``, which would escape
    the cut)."""
    out: list[str] = []
    cur: str | None = None
    for whole in lines:
        line = whole
        while len(line) > limit:
            cut = limit
            while cut > 1 and line[cut - 1] == "\\":
                cut -= 1
            if cur is not None:
                out.append(cur)
                cur = None
            out.append(line[:cut])
            line = line[cut:]
        if cur is None:
            cur = line
        elif len(cur) + 1 + len(line) <= limit:
            cur = f"{cur}\n{line}"
        else:
            out.append(cur)
            cur = line
    if cur is not None:
        out.append(cur)
    return out


def _view(reply: Reply) -> discord.ui.View | None:
    """The reply's button rows (5 per row, 5 rows, unique custom_ids), stopped; see module."""
    seen: set[str] = set()
    rows: list[list[discord.ui.Button[discord.ui.View]]] = []
    for row in reply.buttons:
        buttons = []
        for b in row:
            if b.data in seen or len(b.data) > CUSTOM_ID_MAX:
                continue
            seen.add(b.data)
            label = b.label[:LABEL_MAX] or b.data[:LABEL_MAX]
            buttons.append(
                discord.ui.Button[discord.ui.View](
                    label=label, custom_id=b.data, style=discord.ButtonStyle.secondary
                )
            )
        rows.extend(
            buttons[i : i + BUTTONS_PER_ROW] for i in range(0, len(buttons), BUTTONS_PER_ROW)
        )
    if not rows:
        return None
    view = discord.ui.View(timeout=None)
    for index, row_buttons in enumerate(rows[:ROWS_MAX]):
        for button in row_buttons:
            button.row = index
            view.add_item(button)
    view.stop()
    return view


def render(reply: Reply) -> list[DiscordMessage]:
    """The messages that show ``reply``, in order (at least one). Call from a running event
    loop (discord.py views need one)."""
    ephemeral = reply.error or reply.private
    colour = ERROR_COLOUR if reply.error else COLOUR
    title = escape(reply.title)[:TITLE_MAX] if reply.title else None

    # A message holds at most 6000 characters of embed text (the title included, so room for
    # the longest title is kept) and a description 4096: cut the body into messages first,
    # then each message into embeds.
    body = [escape(line) for line in reply.lines]
    messages: list[DiscordMessage] = []
    for part in _pack(body, MESSAGE_CHARS_MAX - TITLE_MAX) or [""]:
        descriptions: list[str | None] = [None]
        if part:
            descriptions = list(_pack(part.split("\n"), DESCRIPTION_MAX))
        embeds = [discord.Embed(description=text, colour=colour) for text in descriptions]
        messages.append(DiscordMessage(embeds, ephemeral=ephemeral, silent=reply.silent))
    messages[0].embeds[0].title = title

    if reply.png is not None:
        first = messages[0]
        first.embeds[0].set_image(url=f"attachment://{reply.png_name}")
        first.file = discord.File(io.BytesIO(reply.png), filename=reply.png_name)
    messages[-1].view = _view(reply)
    return messages
