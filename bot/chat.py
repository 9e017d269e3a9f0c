"""The platform-neutral chat contract (DESIGN §2): a :class:`Command` in, a :class:`Reply` out.

Adapters (Telegram, Discord, console) only translate: a platform update becomes a ``Command``,
:func:`bot.commands.handle` answers with a ``Reply``, and the adapter renders it in its own
markup. Strings in a ``Reply`` are plain text, never markup: every adapter escapes them (HTML
on Telegram, markdown on Discord), so a symbol or a chat title cannot inject formatting.

Buttons carry a command line as their data (``/unalert 12``): pressing one is the same as
typing it, so one code path answers both. Telegram limits ``callback_data`` to 64 bytes and
Discord ``custom_id`` to 100 characters; :data:`BUTTON_DATA_MAX` is the smaller.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from alerts.notifications import GroupedMessage

__all__ = [
    "BUTTON_DATA_MAX",
    "ArgSpec",
    "Button",
    "ChatType",
    "Command",
    "CommandHandler",
    "CommandSpec",
    "Platform",
    "Reply",
    "display_name",
    "notification_reply",
    "split_command",
]

Platform = Literal["telegram", "discord", "console"]
# private: a one-to-one chat (Telegram private, Discord DM, console); group: a group chat or a
# Discord guild channel; channel: a Telegram broadcast channel.
ChatType = Literal["private", "group", "channel"]

BUTTON_DATA_MAX = 64


@dataclass(frozen=True)
class Command:
    """One command as a person typed it (or pressed it), with who and where.

    ``chat_id`` is the platform's id of the chat, as text (a Telegram chat id, a Discord channel
    id, ``"console"``). ``is_admin`` is the adapter's verdict: a Telegram chat administrator (an
    anonymous admin posting as the chat included), a Discord member with ``manage_guild``, and
    always True in private chats and on the console. ``user_id`` is empty for an anonymous admin
    or a channel post.
    """

    name: str  # lower case, no leading '/' and no '@botname'
    args: tuple[str, ...] = ()
    platform: Platform = "console"
    chat_id: str = "console"
    chat_type: ChatType = "private"
    user_id: str = ""
    user_name: str = ""
    is_admin: bool = True
    chat_title: str = ""
    guild_id: str | None = None  # Discord: the server of the channel; None elsewhere

    def __post_init__(self) -> None:
        # The chat's title and the sender's name are stored (a destination's title, a DM's):
        # PostgreSQL refuses a NUL in text and a lone surrogate cannot be encoded, so a hostile
        # name would fail the command. Control characters have no place in a name anyway.
        for name in ("chat_title", "user_name"):
            value = getattr(self, name)
            if not value.isprintable():
                object.__setattr__(self, name, display_name(value))

    @classmethod
    def parse(cls, text: str, **where: object) -> Command:
        """A command from a typed line such as ``/liqmap@liqbot btc all``; see
        :func:`split_command`. ``where`` fills the other fields."""
        name, args = split_command(text)
        return cls(name, args, **where)  # type: ignore[arg-type]


def display_name(text: str) -> str:
    """``text`` with control characters (NUL, line breaks) and lone surrogates replaced by a
    space; everything else kept, emoji sequences and right-to-left marks included."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in text)


def split_command(text: str) -> tuple[str, tuple[str, ...]]:
    """``('/LiqMap@bot BTC  all')`` -> ``('liqmap', ('BTC', 'all'))``; ``('', ())`` when ``text``
    is not a command (no leading '/')."""
    parts = text.strip().split()
    if not parts or not parts[0].startswith("/") or len(parts[0]) < 2:
        return "", ()
    name = parts[0][1:].split("@", 1)[0].lower()
    return name, tuple(parts[1:])


@dataclass(frozen=True)
class Button:
    """An inline button: ``label`` shown, ``data`` a command line run when pressed."""

    label: str
    data: str

    def __post_init__(self) -> None:
        if len(self.data.encode()) > BUTTON_DATA_MAX:
            raise ValueError(f"button data over {BUTTON_DATA_MAX} bytes: {self.data[:70]!r}")


@dataclass(frozen=True)
class Reply:
    """What a command answers: plain text, an optional PNG, optional rows of buttons.

    ``title`` is a short heading (bold on Telegram, the embed title on Discord). ``lines`` is
    the body, one string per line; adapters join and split them (Telegram texts at 4096
    characters, captions at 1024, on line boundaries). ``error`` marks bad input (usage text);
    ``private`` asks for a reply only the caller sees where the platform can (Discord
    ephemeral). ``silent`` sends without a notification sound (quiet hours, mutes).
    """

    lines: tuple[str, ...]
    title: str | None = None
    png: bytes | None = None
    png_name: str = "liqmap.png"
    buttons: tuple[tuple[Button, ...], ...] = ()
    error: bool = False
    private: bool = False
    silent: bool = False
    meta: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def text(self) -> str:
        """Title and body as plain text."""
        head = (self.title,) if self.title else ()
        return "\n".join((*head, *self.lines))

    @classmethod
    def of(cls, text: str, **kw: object) -> Reply:
        return cls(tuple(text.split("\n")), **kw)  # type: ignore[arg-type]


CommandHandler = Callable[[Command], Awaitable[Reply]]
"""What an adapter calls with every command (``bot.commands.CommandRouter.handle``)."""


ArgKind = Literal["symbol", "venue", "text", "number", "choice"]


@dataclass(frozen=True)
class ArgSpec:
    """One argument of a command, for Discord slash options and help texts.

    ``kind`` 'symbol' gets autocomplete from the configured symbols; 'choice' offers
    ``choices``; the others are free text (the command layer parses them forgivingly).
    """

    name: str  # lower case, 1-32 characters (a Discord option name)
    description: str  # at most 100 characters (Discord)
    kind: ArgKind = "text"
    required: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandSpec:
    """A command as the platforms list it: Telegram ``set_my_commands``, Discord slash commands.

    ``summary`` is at most 100 characters (Discord's limit; Telegram allows 256). ``admin_only``
    commands change a whole chat (broadcasts), so adapters list them for admins only and the
    command layer refuses them to others. ``guild_only`` commands make no sense in a DM.
    ``asks_admin`` commands look at :attr:`Command.is_admin` in a group although anyone may
    use them (a chat setting, someone else's alert). Telegram costs a ``getChatMember`` call to
    know, so its adapter asks only for these and the admin-only ones, and passes False
    otherwise: a command that is wrongly left unflagged refuses an admin, it never lets a
    non-admin through.
    """

    name: str
    summary: str
    usage: str  # e.g. "/liqmap [symbol] [venue|all] [range%]"
    args: tuple[ArgSpec, ...] = ()
    admin_only: bool = False
    guild_only: bool = False
    asks_admin: bool = False

    @property
    def needs_admin_verdict(self) -> bool:
        return self.admin_only or self.asks_admin

    def line(self, *words: str) -> str:
        """The command line of this command with ``words`` as arguments."""
        return " ".join((f"/{self.name}", *words))


def notification_reply(msg: GroupedMessage) -> Reply:
    """An outbox message as a Reply (plain text; the adapter escapes it), silent when muted."""
    if len(msg.items) == 1:
        lines = msg.lines
        return Reply(lines=lines[1:], title=lines[0], silent=msg.silent)
    return Reply(
        lines=tuple(f"• {line}" for line in msg.lines), title=msg.headline, silent=msg.silent
    )
