"""What every command handler gets: the command, the services, the caches, and the chat.

A handler is ``async def handler(ctx: Ctx) -> Reply``. It raises ``InputError`` (usually
:class:`bot.command_parse.ArgError`) for bad input; the router turns that into an error reply
with the usage line. ``ctx.destination()`` registers the chat on first use (every command
that touches a chat's alerts or settings calls it first).

Discord DMs are addressed by user, not channel: a Discord private chat's destination is
``user:<user id>``, the same one a ``/alert ... dm`` from a server channel creates, so alerts
set either way are listed and managed together in the DM (the Discord sender opens the DM).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from alerts.store import Db, Destination, find_destination, upsert_destination
from alerts.subscriptions import Quotas, Timing
from bot.chart_cache import ChartCache, VenueMapCache
from bot.chat import Command, Reply
from bot.command_parse import ArgError
from bot.services import BotServices
from core.errors import InputError

__all__ = ["Caches", "Ctx", "Handler", "Refused", "dm_chat_id"]


class Refused(InputError):
    """The caller may not do this here (not an admin, not the alert's creator): answered as an
    error without a usage line, since the input itself was fine."""


@dataclass
class Caches:
    """Per-process caches shared by all commands (see bot/chart_cache.py)."""

    charts: ChartCache = field(default_factory=ChartCache)
    venue_maps: VenueMapCache = field(default_factory=VenueMapCache)


def dm_chat_id(user_id: str) -> str:
    """The destination chat id of a Discord user's DM."""
    return f"user:{user_id}"


@dataclass
class Ctx:
    cmd: Command
    services: BotServices
    caches: Caches
    _dest: Destination | None = None
    _now_ms: int | None = None

    def __post_init__(self) -> None:
        # One "now" per command: a chart rendered meanwhile must not age the data it shows
        # (in a fast demo, render time is minutes of market time).
        self._now_ms = self.services.now_ms()

    @property
    def args(self) -> tuple[str, ...]:
        return self.cmd.args

    @property
    def in_group(self) -> bool:
        """A group or a channel: a chat shared by several people."""
        return self.cmd.chat_type != "private"

    def now_ms(self) -> int:
        """When the command arrived (fixed for the whole command)."""
        assert self._now_ms is not None
        return self._now_ms

    def _chat_id(self) -> str:
        cmd = self.cmd
        if cmd.platform == "discord" and cmd.chat_type == "private" and cmd.user_id:
            return dm_chat_id(cmd.user_id)
        return cmd.chat_id

    async def known_destination(self, db: Db | None = None) -> Destination | None:
        """This chat's destination if it has one, read in ``db`` (a transaction of the
        caller's) or on its own; nothing is created (for commands that only read)."""
        where = self.services.store if db is None else db
        return await find_destination(where, self.cmd.platform, self._chat_id())

    async def destination(self) -> Destination:
        """This chat's destination, created or refreshed (type, title) on first use."""
        if self._dest is None:
            cmd = self.cmd
            # Read first: most commands come from known chats, and a write (a commit) per
            # command would cost more than the command itself.
            found = await self.known_destination()
            if found is not None and (found.type, found.title) == (
                cmd.chat_type,
                cmd.chat_title[:256],
            ):
                self._dest = found
            else:
                self._dest = await upsert_destination(
                    self.services.store,
                    cmd.platform,
                    self._chat_id(),
                    cmd.chat_type,
                    self.now_ms(),
                    cmd.chat_title,
                )
        return self._dest

    async def dm_destination(self) -> Destination:
        """The caller's Discord DM as a destination (``/alert ... dm``)."""
        if self.cmd.platform != "discord" or not self.cmd.user_id:
            raise ArgError("'dm' delivers to your Discord DMs; it works on Discord only")
        return await upsert_destination(
            self.services.store,
            "discord",
            dm_chat_id(self.cmd.user_id),
            "private",
            self.now_ms(),
            self.cmd.user_name,
        )

    def require_admin(
        self, message: str = "Only chat admins can change this chat's settings."
    ) -> None:
        """Refuse a chat-wide change to a non-admin in a group or channel."""
        if self.in_group and not self.cmd.is_admin:
            raise Refused(message)

    def timing(self) -> Timing:
        a = self.services.settings.alerts
        return Timing(
            cooldown_s=a.cooldown_s, repeat_s=a.repeat_interval_s, rearm_margin=a.rearm_margin
        )

    def quotas(self) -> Quotas:
        a = self.services.settings.alerts
        return Quotas(per_chat=a.quota_per_chat, per_chat_per_kind=a.quota_per_chat_per_kind)

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.services.settings.bot.symbols


Handler = Callable[[Ctx], Awaitable[Reply]]
