"""The platform-neutral command layer: :class:`CommandRouter` answers a ``Command`` with a
``Reply``.

Adapters call ``await router.handle(cmd)`` and render what comes back; it never raises::

    handle(cmd)
    ├── rate limit (settings.bot.commands_per_user_per_min, sliding minute, per user or chat)
    ├── unknown command              -> a reply naming it and pointing at /help
    └── the command's handler (bot/cmd_*.py)
        ├── InputError (ArgError)    -> error reply: the specific message + the usage line
        ├── Refused                  -> error reply: the message (not an admin, not yours)
        ├── DataError                -> error reply: the message
        └── anything else            -> logged with its traceback; a generic error reply
                                        that shows no internals

Handlers live by concern: market data (``cmd_market``: /liqmap, /liqs), information
(``cmd_info``: /etf, /status), personal alerts (``cmd_alerts``), chat-wide settings and
broadcasts (``cmd_admin``). :data:`COMMAND_SPECS` lists every command for the platforms' menus
(Telegram ``set_my_commands``, Discord slash commands).
"""

from __future__ import annotations

import logging
import math
from collections import deque

from bot import cmd_admin, cmd_alerts, cmd_info, cmd_market
from bot.chat import ArgSpec, Button, Command, CommandSpec, Reply
from bot.cmd_context import Caches, Ctx, Handler, Refused
from bot.command_parse import ArgError, normalize_args, shown
from bot.services import BotServices
from core.errors import DataError, InputError

__all__ = ["COMMAND_SPECS", "GENERIC_ERROR", "CommandRouter", "RateLimiter"]

log = logging.getLogger(__name__)

GENERIC_ERROR = "Something went wrong on our side; please try again."
_MESSAGE_MAX = 400  # an error message longer than this is cut (it may quote input)

_EXAMPLES: dict[str, tuple[str, ...]] = {
    "liqmap": ("/liqmap", "/liqmap eth", "/liqmap BTC binance 5%"),
    "liqs": ("/liqs", "/liqs ETH 4h"),
    "etf": ("/etf", "/etf 10"),
    "alert": (
        "/alert cluster BTC 1% 50m short",
        "/alert cross BTC 96000 up",
        "/alert spike ETH 25m 1h long",
        "/alert etf reversal",
        "/alert etf 500m",
        "/alert digest daily",
        "On Discord, add dm to get it in your DMs.",
    ),
    "unalert": ("/unalert 12", "/unalert all"),
    "mute": ("/mute 2h", "/mute off"),
    "quiet": ("/quiet 23:00-07:00 Europe/Berlin", "/quiet off"),
    "settings": ("/settings", "/settings tz America/New_York"),
    "subscribe": ("/subscribe", "/subscribe etf"),
}


async def start(ctx: Ctx) -> Reply:
    await ctx.destination()  # /start registers the chat
    first = ctx.symbols[0]
    lines = (
        "I show estimated liquidation maps, realized liquidations and Bitcoin ETF flows, "
        "and send alerts.",
        f"/liqmap {first}: the map and its dense clusters",
        f"/liqs {first}: realized liquidations",
        "/etf: ETF flows, streak and reversals",
        f"/alert cluster {first} 1% 50m: tell me when price nears a big cluster",
        "/help lists everything.",
    )
    buttons = (
        (Button(f"Map {first}", f"/liqmap {first}"), Button("ETF flows", "/etf")),
        (Button("Help", "/help"),),
    )
    return Reply(lines, title="liqbot", buttons=buttons)


async def help_(ctx: Ctx) -> Reply:
    args = normalize_args(ctx.args)
    if not args:
        lines = [f"{s.usage}: {s.summary}" for s in COMMAND_SPECS]
        lines.append("/help <command> shows examples.")
        return Reply(tuple(lines), title="Commands")
    name = args[0].lower().lstrip("/")
    spec = _SPECS.get(name)
    if spec is None:
        raise ArgError(f"There is no /{shown(name)} command; /help lists them")
    lines = [spec.summary, f"Usage: {spec.usage}"]
    if spec.admin_only:
        lines.append("In groups and channels, for chat admins only.")
    lines += [f"  {ex}" for ex in _EXAMPLES.get(name, ())]
    return Reply(tuple(lines), title=f"/{name}")


_BASIC: tuple[tuple[CommandSpec, Handler], ...] = (
    (CommandSpec("start", "Register this chat and see what I can do", "/start"), start),
    (
        CommandSpec(
            "help",
            "List the commands, or show one with examples",
            "/help [command]",
            (ArgSpec("command", "A command to explain, e.g. alert"),),
        ),
        help_,
    ),
)
_ALL = (
    *_BASIC,
    *cmd_market.COMMANDS,
    *cmd_info.COMMANDS[:1],
    *cmd_alerts.COMMANDS,
    *cmd_admin.COMMANDS,
    *cmd_info.COMMANDS[1:],
)
COMMAND_SPECS: tuple[CommandSpec, ...] = tuple(spec for spec, _ in _ALL)
_SPECS = {spec.name: spec for spec in COMMAND_SPECS}
_HANDLERS: dict[str, Handler] = {spec.name: handler for spec, handler in _ALL}


class RateLimiter:
    """At most ``limit`` hits per key in any ``window_s`` seconds (a sliding window)."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}
        self._sweep_at = 10_000  # key count that triggers forgetting idle keys

    def __len__(self) -> int:
        """Keys being tracked."""
        return len(self._hits)

    def hit(self, key: str, now: float) -> float:
        """Count a hit at ``now``; 0 when allowed, else the seconds until one would be."""
        q = self._hits.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if len(q) >= self.limit:
            return q[0] + self.window_s - now
        q.append(now)
        if len(self._hits) > self._sweep_at:  # forget idle keys: memory stays bounded
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self.window_s}
            self._sweep_at = max(10_000, 2 * len(self._hits))  # amortized O(1) per hit
        return 0.0


def _sentence(message: str) -> str:
    text = message.strip() or "That did not work"
    text = text[:1].upper() + text[1:]
    if len(text) > _MESSAGE_MAX:
        text = text[: _MESSAGE_MAX - 1] + "…"
    return text if text.endswith((".", "!", "?", "…")) else text + "."


class CommandRouter:
    """Answers every :class:`~bot.chat.Command` with a :class:`~bot.chat.Reply`; never raises."""

    def __init__(self, services: BotServices, caches: Caches | None = None) -> None:
        self.services = services
        self.caches = caches or Caches()
        self.limiter = RateLimiter(services.settings.bot.commands_per_user_per_min)

    async def handle(self, cmd: Command) -> Reply:
        try:
            return await self._handle(cmd)
        except Exception:
            log.exception("command /%s failed", cmd.name[:32])
            return Reply.of(GENERIC_ERROR, error=True, private=True)

    async def _handle(self, cmd: Command) -> Reply:
        who = cmd.user_id or f"chat:{cmd.chat_id}"
        wait = self.limiter.hit(f"{cmd.platform}:{who}", self.services.clock())
        if wait > 0:
            return Reply.of(
                f"You're sending commands too fast; try again in {math.ceil(wait)}s.",
                error=True,
                private=True,
            )
        name = cmd.name.lower()
        handler = _HANDLERS.get(name)
        if handler is None:
            what = f"I don't know /{shown(name)}." if name else "That is not a command."
            return Reply.of(f"{what} /help lists the commands.", error=True, private=True)
        spec = _SPECS[name]
        try:
            return await handler(Ctx(cmd, self.services, self.caches))
        except Refused as exc:
            return Reply.of(_sentence(str(exc)), error=True, private=True)
        except InputError as exc:
            usage = exc.usage if isinstance(exc, ArgError) and exc.usage else spec.usage
            lines = (_sentence(str(exc)), f"Usage: {usage}")
            return Reply(lines, error=True, private=True)
        except DataError as exc:
            return Reply.of(_sentence(str(exc)), error=True, private=True)
