"""Hostile and plausible command input, and the checks every reply must pass.

Shared by the fuzz tests (tests/bot/test_fuzz_commands.py) and the fuzz benchmark
(benchmarks/fuzz.py), so both run the same cases against the same properties.

* Strategies: :func:`tokens` mixes plausible arguments (symbols, venues, numbers, durations,
  prices like ``96k``, percentages, keywords), garbage, HTML and markdown injection, huge
  strings and odd Unicode (RTL and zero-width marks, combining characters, astral emoji, NUL,
  line breaks); :data:`GRAMMAR` gives each command mostly valid arguments, so success paths
  are fuzzed too; :func:`commands` builds a :class:`~bot.chat.Command` from them, typed as a
  line (the adapters' path) or with raw arguments, from a private chat, a group or a channel,
  by an admin or not. :data:`PARTS` splits every 10,000 cases between the distributions.
* Checks: :func:`reply_problems`, :func:`telegram_problems` and :func:`discord_problems` say
  what is wrong with a reply, as :class:`Problem` s (crash, unclear, over_limit, unescaped;
  and changed_state for bad input that changed the store); none means the reply is fine.
* :class:`FuzzRig` runs commands through a real :class:`~bot.commands.CommandRouter` over a
  SQLite store and the in-memory market of tests/bot/market.py, synchronously (Hypothesis
  calls a test body many times), and renders every reply for both platforms.

Charts: a ``/liqmap`` chart takes a few hundred ms of matplotlib, and a fuzz asks for many
ranges. Unless ``real_charts`` is set, the rig draws the first chart for real and hands that
PNG back for the other keys; everything before the drawing (parsing, the map window, the
clusters, the summary) still runs for every case.
"""

from __future__ import annotations

import asyncio
import functools
import html
import itertools
import logging
import re
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hypothesis import strategies as st

from alerts.store import Store, open_store, upsert_destination
from bot.chart_cache import ChartCache, ChartKey
from bot.chat import BUTTON_DATA_MAX, ChatType, Command, Platform, Reply
from bot.cmd_context import Caches, dm_chat_id
from bot.command_parse import MAX_ECHO, shown
from bot.commands import COMMAND_SPECS, GENERIC_ERROR, CommandRouter
from bot.telegram_render import CAPTION_MAX, TEXT_MAX, Rendered, tg_len
from bot.telegram_render import render as telegram_render
from core.config import BotSettings, Settings
from tests.bot.market import Market, make_services
from tests.bot.test_commands_support import dump
from tests.fakes.telegram_updates import visible_length

with warnings.catch_warnings():  # discord.py 2.7 imports audioop (see bot/discord_render.py)
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from bot.discord_render import DiscordMessage
    from bot.discord_render import render as discord_render

__all__ = [
    "CASES_PER_ROUND",
    "COMMAND_NAMES",
    "ERROR_TEXT_MAX",
    "GRAMMAR",
    "INJECTION",
    "ODD_UNICODE",
    "PARTS",
    "PLAUSIBLE",
    "REPLY_TEXT_MAX",
    "STATEFUL",
    "FuzzRig",
    "Outcome",
    "Part",
    "Problem",
    "ProblemKind",
    "Where",
    "bad_input_commands",
    "bad_tokens",
    "commands",
    "discord_problems",
    "hostile_tokens",
    "reply_problems",
    "telegram_problems",
    "token_lists",
    "tokens",
]

COMMAND_NAMES: tuple[str, ...] = tuple(s.name for s in COMMAND_SPECS)
# Commands that change the store (subscriptions or a chat's settings).
STATEFUL: tuple[str, ...] = (
    "alert",
    "unalert",
    "mute",
    "quiet",
    "settings",
    "subscribe",
    "unsubscribe",
)

REPLY_TEXT_MAX = 8000  # no reply says more than two Telegram messages' worth
ERROR_TEXT_MAX = 1000  # an error is a sentence and a usage line
ECHO_MAX = 2 * MAX_ECHO  # longest run of a person's input a reply may repeat verbatim

# --- tokens -----------------------------------------------------------------------------------

SYMBOLS = (
    "btc", "BTC", "Btc", "eth", "ETHUSDT", "BTC-USDT-SWAP", "btc/usdt", "$btc", "sol", "SOLUSDT",
    "doge", "XRP", "BTCUSDTUSDT", "B", "BTC1", "ſol", "ＢＴＣ", "btc.", "-btc",
)  # fmt: skip
VENUES = ("binance", "okx", "bybit", "all", "combined", "BINANCE", "Okx", "ftx", "coinbase")
NUMBERS = (
    "0", "1", "5", "12", "13", "0.5", ".5", "5.", "96000", "96,000", "$96,000", "96k", "96.5k",
    "1e5", "1e400", "-5", "+3", "nan", "inf", "-inf", "00", "0x10", "1_000", "9" * 40,
    "9" * 41, "1,00", "١٢٣", "１２", "½", "Ⅻ", "³",
)  # fmt: skip
AMOUNTS = (
    "50m", "$50M", "50M$", "1.2b", "$1.2B", "250k", "1bn", "5mm", "2mn", "50musd", "0m", "$",
    "1,000k", "1,000,000", "$0", "0.0001m", "999999999999b", ".5b", "50 m",
)  # fmt: skip
PCTS = ("1%", "0.5%", "%", "100%", "101%", "0%", "12%", "1.5%", "-1%", "1.%", "%5", "5%%")
DURATIONS = (
    "30m", "1h", "2d", "1w", "90min", "2hrs", "1hr", "0m", "1.5h", "0.5m", "0.01h", "31d",
    "24h", "25h", "60m", "1d", "day", "4h", "1h30m", "9999999w", "1W", "30 m",
)  # fmt: skip
WORDS = (
    "long", "short", "longs", "any", "both", "either", "up", "down", "above", "below", "off",
    "none", "stop", "clear", "dm", "DM", "all", "reversal", "turns", "hourly", "daily",
    "after-etf", "cluster", "cross", "spike", "etf", "digest", "level", "liqs", "tz",
    "timezone", "zone", "Europe/Berlin", "europe/berlin", "America/New_York", "UTC", "utc",
    "Mars/Olympus", "Etc/GMT+5", "../../etc/passwd", "23:00-07:00", "23-7", "22:30", "to",
    "06:45", "25:00-07:00", "23:00–07:00", "7-7", "#1", "#0", "#99999999999", "2", "3",
    "digests", "clusters", "everything", "liqmap", "/alert", "help", "/help", "@liqbot",
    "everyone", "1h", "4h", "24h",
)  # fmt: skip
PLAUSIBLE: tuple[str, ...] = (
    *SYMBOLS,
    *VENUES,
    *NUMBERS,
    *AMOUNTS,
    *PCTS,
    *DURATIONS,
    *WORDS,
)
INJECTION: tuple[str, ...] = (
    "<b>", "</b>", "<b>bold", "</code>", "<code>", "<pre>", "<i>x</i>", "<tg-spoiler>",
    '<a href="tg://user?id=1">x</a>', "<script>alert(1)</script>", "<>", "<", ">", "&",
    "&amp;", "&lt;b&gt;", "&#0;", "&#x1F680;", "&nbsp", "*", "**bold**", "*a*", "_it_",
    "__u__", "~~s~~", "||spoiler||", "`", "`code`", "```py", "\\", "\\*", "\\\\", "[x](http://e.vil)",
    "> quote", ">>>", "# head", "-# small", "- item", "@everyone", "@here", "<@123>",
    "<@!123456789012345678>", "<@&123456789012345678>", "<#123>", "<t:1:R>", "</liqmap:1>",
    "https://e.vil/*a*_b_", "'", '"', "%s", "{}", "{0}", "${x}", "'; DROP TABLE subscriptions;--",
)  # fmt: skip
ODD_UNICODE: tuple[str, ...] = (
    "\u200f", "\u202e", "\u202ebtc", "\u200b", "b\u200btc", "\ufeff", "\u2060", "e\u0301",
    "\u0301" * 60, "a" + "\u0336" * 30, "👍🏽", "🏳️‍🌈", "\U0001f680", "🚀" * 50, "𝟙𝟚", "ǅ", "ß",
    "ﬁ", "İ", "\U0010fffd", "\ue000", "\x00", "\x00btc", "\x1b[31m", "\x7f", "\r", "\n", "\t",
    "\u2028", "\u0085", "\u3000", "\u00a0", "\ufffd", "\ufdd0",
)  # fmt: skip

# Odd characters anywhere: every category but lone surrogates (no platform delivers those).
_ANY_CHAR = st.characters(codec="utf-8")  # utf-8 cannot encode a lone surrogate
_TEXT = st.text(_ANY_CHAR, max_size=24)
_SOME_TEXT = st.text(_ANY_CHAR, min_size=1, max_size=60)
_SEED_TEXT = st.text(_ANY_CHAR, min_size=1, max_size=4)
_REPEAT = st.integers(50, 3000)
_BOOL = st.booleans()
_PIECE = st.sampled_from(PLAUSIBLE + INJECTION + ODD_UNICODE)

# Generating a case costs Hypothesis about a millisecond plus a little per draw, more than most
# commands take to answer; so one draw picks from a pool whose entries carry the weights
# (a fixed token repeated, or a marker for a strategy to draw from), rather than a draw for the
# branch and another for the value. Pools list the plainest entries first: a failure shrinks
# towards plausible input.


class _Draw:
    """A pool entry: draw the value from ``strategy``."""

    def __init__(self, strategy: st.SearchStrategy[str]) -> None:
        self.strategy = strategy


Pool = tuple[str | _Draw, ...]


@functools.cache
def _sampled(values: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


@functools.cache
def _below(n: int) -> st.SearchStrategy[int]:
    """0..n-1, built once per n."""
    return st.integers(0, n - 1)


def _from(draw: st.DrawFn, pool: Pool) -> str:
    entry = draw(_sampled(pool))
    return draw(entry.strategy) if isinstance(entry, _Draw) else entry


@st.composite
def _huge(draw: st.DrawFn) -> str:
    """A piece repeated into a long string: up to 12,000 characters."""
    piece = draw(_PIECE) if draw(_BOOL) else draw(_SEED_TEXT)
    return (piece * draw(_REPEAT))[:12_000]


@st.composite
def _glued(draw: st.DrawFn) -> str:
    """Two or three pieces run together: '50m<b>', 'b\u200btc', '🚀96k'."""
    return "".join(draw(_PIECE) for _ in range(2 + draw(_BOOL)))


_HUGE, _GLUED = _Draw(_huge()), _Draw(_glued())
_RANDOM, _RANDOM_LONGER = _Draw(_TEXT), _Draw(_SOME_TEXT)
# About half plausible, a sixth injection, a tenth odd Unicode, the rest random, glued or huge.
TOKEN_POOL: Pool = (
    *PLAUSIBLE, *INJECTION, *ODD_UNICODE, *(_RANDOM,) * 35, *(_GLUED,) * 30, *(_HUGE,) * 15,
    *(_RANDOM_LONGER,) * 10,
)  # fmt: skip
HOSTILE_POOL: Pool = (
    *INJECTION,
    *ODD_UNICODE,
    *(_HUGE,) * 30,
    *(_GLUED,) * 15,
    *(_RANDOM_LONGER,) * 10,
)


@st.composite
def _token(draw: st.DrawFn) -> str:
    return _from(draw, TOKEN_POOL)


@st.composite
def _hostile(draw: st.DrawFn) -> str:
    return _from(draw, HOSTILE_POOL)


_ONE_TOKEN = _token()
_ONE_HOSTILE = _hostile()


def tokens() -> st.SearchStrategy[str]:
    """One argument: half plausible, the rest injection, odd Unicode, random, glued, huge."""
    return _ONE_TOKEN


def hostile_tokens() -> st.SearchStrategy[str]:
    """Injection, odd Unicode, huge strings (up to 12,000 characters), random text."""
    return _ONE_HOSTILE


@st.composite
def _token_lists(draw: st.DrawFn, token: st.SearchStrategy[str], most: int) -> list[str]:
    return [draw(token) for _ in range(draw(_below(most + 1)))]


def token_lists(
    token: st.SearchStrategy[str] | None = None, most: int = 8
) -> st.SearchStrategy[list[str]]:
    """Up to ``most`` arguments, each from ``token`` (default :func:`tokens`)."""
    return _token_lists(_ONE_TOKEN if token is None else token, most)


# Tokens no command can take: punctuation and symbols only (no letter, digit, '%' or '$'), and
# not a lone dash (which joins a quiet-hours range: "/quiet 23 - 7").
_DASHES = frozenset("-–—")


def bad_tokens() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(("<b>", "</code>", "@everyone", "<@123>", "***", "||", "`", "&", "\\")),
        st.text(
            st.characters(exclude_categories=("L", "N", "Z", "Cc", "Cs"), exclude_characters="%$"),
            min_size=1,
            max_size=30,
        ),
    ).filter(lambda t: t.strip() != "" and not any(c.isalnum() for c in t) and t not in _DASHES)


# Per command, the forms its arguments take; a form is a sequence of slots, each a pool of
# mostly valid values, required (left out one time in eight) or optional (left out half the
# time). A case picks a form and fills it, in order or reversed, sometimes with a stray token,
# so that valid commands (and so the store, long lists, edit lines) are common, not only errors.
@dataclass(frozen=True)
class Slot:
    pool: tuple[str, ...]
    required: bool = True
    skips: int | None = None  # None entries in the pool: how often it is left out


def _opt(*pool: str) -> Slot:
    return Slot(pool, required=False)


def _req(*pool: str) -> Slot:
    return Slot(pool)


_SYMBOL = _req("btc", "BTC", "eth", "ETHUSDT", "BTC-USDT-SWAP", "$btc", "Eth", "sol", "doge", "ſol")
_PCT = _req("1%", "0.5%", "2%", "5%", "1.5%", "20%", "25%", "0%", ".5%", "1")
_SIZE = _req("50m", "$50M", "100m", "1b", "250k", "1.2b", "$5M", "10k", "1,000,000", "1000000b",
             "999999999999b", "50")  # fmt: skip
_PRICE = _req("96000", "96k", "96.5k", "$96,000", "3300", "150", "0.5", "1e5", "-5", "5%")
_WINDOW = _opt("1h", "30m", "4h", "24h", "90min", "2hrs", "25h", "0m", "1.5h", "1w")
_SIDE = _opt("long", "short", "any", "longs", "both")
_WAY = _opt("up", "down", "above", "below", "any")
_DM = Slot(("dm",), required=False, skips=5)  # on Discord: deliver to my DMs
_ZONE = _opt("Europe/Berlin", "europe/berlin", "America/New_York", "UTC", "Asia/Tokyo",
             "Mars/Olympus", "Etc/GMT+5")  # fmt: skip
_ALERT_IDS = ("1", "2", "3", "5", "8", "13", "21", "#3", "#8", "0", "#", "99999999999999")
_PRESETS = ("digest", "etf", "clusters", "all", "everything", "cluster", "digests", "news")
GRAMMAR: dict[str, tuple[tuple[Slot, ...], ...]] = {
    "start": ((),),
    "status": ((),),
    "help": ((_opt(*COMMAND_NAMES, "/alert", "ALERT", "nope"),),),
    "liqmap": (
        (
            _opt("btc", "BTC", "eth", "ETHUSDT", "$btc", "sol", "doge"),
            _opt("binance", "bybit", "all", "combined", "okx", "BINANCE", "ftx"),
            _opt("1%", "2.5%", "5%", "7.5", "12%", "12", "3", "0.5%", "13%", "100%", "1.25%"),
        ),
    ),
    "liqs": ((_opt(*SYMBOLS[:9]), _opt("1h", "4h", "24h", "1d", "day", "60m", "2h")),),
    "etf": ((_opt("1", "5", "10", "30", "10d", "31", "0", "-1", "5.5"),),),
    "alert": (
        (_req("cluster", "clusters"), _SYMBOL, _PCT, _SIZE, _SIDE, _DM),
        (_req("cross", "level", "price"), _SYMBOL, _PRICE, _WAY, _DM),
        (_req("spike", "liqs", "liquidations"), _SYMBOL, _SIZE, _WINDOW, _SIDE, _DM),
        (_req("etf", "flows"), _opt("reversal", "reversals", "500m", "1b", "250m", "50", "turn")),
        (_req("digest"), _opt("hourly", "daily", "after-etf", "etf", "weekly"), _DM),
    ),
    "alerts": ((_opt(*_ALERT_IDS),),),
    "unalert": ((_req(*_ALERT_IDS, "all", "all"),),),
    "mute": (
        (_opt("30m", "1h", "2h", "1d", "7d", "30d", "31d", "off", "none", "0m", "1w", "1.5h"),),
    ),
    "quiet": (
        (_req("23:00-07:00", "23-7", "22:30-06:45", "0-24", "9:5-10", "7-7", "12:00-13:00"), _ZONE),
        (
            _req("23:00", "22:30", "23", "9:5"),
            _req("to", "-", "–"),
            _req("07:00", "6:45", "7"),
            _ZONE,
        ),
        (_req("off", "none"),),
    ),
    "settings": ((_req("tz", "timezone", "zone"), _ZONE), (_ZONE,), ()),
    "subscribe": ((_opt(*_PRESETS), _opt(*_PRESETS[:4])),),
    "unsubscribe": ((_opt(*_PRESETS), _opt(*_PRESETS[:4])),),
}
_ORDER = ("forward", "forward", "forward", "forward", "reversed", "stray")


def _slot(slot: Slot) -> st.SearchStrategy[str | None]:
    """The slot's values, or None (left out)."""
    skips = slot.skips
    if skips is None:
        skips = max(1, len(slot.pool) // 7) if slot.required else len(slot.pool)
    return st.sampled_from((*slot.pool, *(None,) * skips))


_FORMS = {
    name: st.sampled_from(tuple(tuple(_slot(slot) for slot in form) for form in forms))
    for name, forms in GRAMMAR.items()
}


@st.composite
def _grammar_args(draw: st.DrawFn, name: str) -> list[str]:
    """Plausible arguments for ``name``, in order or reversed, sometimes with a stray token."""
    words = [w for w in (draw(slot) for slot in draw(_FORMS[name])) if w is not None]
    order = draw(_sampled(_ORDER))
    if order == "reversed":
        words.reverse()
    elif order == "stray":
        words.insert(draw(_below(len(words) + 1)), draw(_ONE_TOKEN))
    return words


# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """Who sends a command from where, as an adapter would fill the Command."""

    platform: Platform
    chat_type: ChatType
    is_admin: bool

    def chat_id(self, n: int) -> str:
        return f"{self.platform}-{self.chat_type}-{n}"


WHERE: tuple[Where, ...] = (
    Where("telegram", "private", True),
    Where("telegram", "group", True),
    Where("telegram", "group", False),
    Where("telegram", "channel", True),
    Where("discord", "private", True),
    Where("discord", "group", True),
    Where("discord", "group", False),
    Where("console", "private", True),
)
_USERS = ("", "101", "102")
UNKNOWN_NAMES = ("", "liqmapp", "alertz", "start2", "x" * 40, "helpme", "q", "LIQMAP@", "ℌelp")
UNKNOWN_POOL: Pool = (
    *UNKNOWN_NAMES,
    *(_Draw(_ONE_HOSTILE),) * 6,
    *(_Draw(st.text(_ANY_CHAR, max_size=40)),) * 6,
)
_TITLE_POOL: Pool = ("", "Desk", "BTC traders") * 3 + (_Draw(_ONE_HOSTILE),) * 2  # 2 in 11
_NAME_FORMS = tuple(
    (form, upper)
    for form in ("/{}", "/{}", "/{}", "/{}@liqbot", "/{}@Other_Bot")
    for upper in (False, False, True)
)
# How the line reaches the command layer: typed (split on this whitespace) or, for "raw", as
# given (whitespace inside a token, empty tokens: what a Discord option could carry).
_SEPARATORS = (" ", " ", " ", "  ", "\n", "\t", "\u3000", " \u2028 ", "raw", "raw")
_RAW_EXTRAS = st.sampled_from(((), ("",), (" ",), ("a b",), ("\t", ""), ("btc 1%", "")))


@functools.cache
def _contexts(where: tuple[Where, ...], n_chats: int) -> st.SearchStrategy[tuple[Where, int, str]]:
    return st.sampled_from(tuple(itertools.product(where, range(n_chats), _USERS)))


_UNKNOWN = object()


@st.composite
def _command(
    draw: st.DrawFn,
    names: tuple[str, ...],
    args: st.SearchStrategy[list[str]] | None,
    unknown: bool,
    raw: bool,
    where: tuple[Where, ...],
    n_chats: int,
) -> Command:
    # One in five named otherwise, when unknown names are asked for.
    picked = draw(_sampled((*names, *(_UNKNOWN,) * (len(names) // 4 if unknown else 0))))
    name = _from(draw, UNKNOWN_POOL) if picked is _UNKNOWN else str(picked)
    if args is not None:
        words = draw(args)
    elif name in _FORMS and draw(_BOOL):
        words = draw(_GRAMMAR_ARGS[name])
    else:
        words = draw(_TOKENS)
    sep = draw(_sampled(_SEPARATORS if raw else _SEPARATORS[:-2]))
    if sep == "raw":
        bare = Command(name, (*words, *draw(_RAW_EXTRAS)))
    else:
        form, upper = draw(_sampled(_NAME_FORMS))
        bare = Command.parse(sep.join((form.format(name.upper() if upper else name), *words)))
    w, n, user = draw(_contexts(where, n_chats))
    return _placed(bare, w, n, user, _from(draw, _TITLE_POOL), _from(draw, _TITLE_POOL))


_TOKENS = token_lists()
_GRAMMAR_ARGS = {name: _grammar_args(name) for name in GRAMMAR}


def commands(
    names: Sequence[str] = COMMAND_NAMES,
    *,
    args: st.SearchStrategy[list[str]] | None = None,
    unknown: bool = True,
    raw: bool = True,
    where: Sequence[Where] = WHERE,
    n_chats: int = 2,
) -> st.SearchStrategy[Command]:
    """Commands named from ``names`` (and, with ``unknown``, one in five named otherwise), with
    ``args``, or else half the time plausible arguments for the command (:data:`GRAMMAR`) and
    half the time any :func:`tokens`.

    Most are typed lines parsed as the Telegram adapter parses them (``/Name@bot args``, split
    on any whitespace); with ``raw``, one in five carries its arguments as given. The chat is
    one of ``n_chats`` per place in ``where``, so alerts and settings pile up between cases.
    """
    return _command(tuple(names), args, unknown, raw, tuple(where), n_chats)


def _placed(cmd: Command, w: Where, n: int, user: str, title: str, user_name: str) -> Command:
    return Command(
        cmd.name,
        cmd.args,
        platform=w.platform,
        chat_id=w.chat_id(n),
        chat_type=w.chat_type,
        user_id=user,
        user_name=user_name,
        is_admin=w.is_admin,
        chat_title="" if w.chat_type == "private" else title,
        guild_id="g1" if w.platform == "discord" and w.chat_type != "private" else None,
    )


_BAD = bad_tokens()


@st.composite
def _bad_input(draw: st.DrawFn) -> Command:
    name = draw(_sampled(STATEFUL))
    words = draw(_GRAMMAR_ARGS[name])
    words.insert(draw(_below(len(words) + 1)), draw(_BAD))
    w, n, user = draw(_contexts(WHERE, 2))
    return _placed(Command(name, tuple(words)), w, n, user, "Desk", "Tester")


def bad_input_commands() -> st.SearchStrategy[Command]:
    """A command that changes the store, given plausible arguments and one token it cannot
    take, from a chat with a fixed title (so registering it twice changes nothing)."""
    return _bad_input()


@dataclass(frozen=True)
class Part:
    """One distribution of the fuzz and its share of every 10,000 cases.

    ``bad_input`` cases must be refused with an error that leaves the store as it was.
    """

    name: str
    share: int
    strategy: Callable[[], st.SearchStrategy[Command]]
    bad_input: bool = False


@st.composite
def _hostile_args(draw: st.DrawFn) -> list[str]:
    """A hostile token first (where errors quote it) or last, among up to three others."""
    words = draw(token_lists(most=3))
    words.insert(0 if draw(_BOOL) else len(words), draw(_ONE_HOSTILE))
    return words


PARTS: tuple[Part, ...] = (
    Part("any_input", 6000, commands),
    Part("hostile", 2500, lambda: commands(args=_hostile_args(), unknown=False)),
    Part("bad_input", 1000, bad_input_commands, bad_input=True),
    Part("unknown", 500, lambda: commands(UNKNOWN_NAMES, args=token_lists(_ONE_HOSTILE, 3))),
)
CASES_PER_ROUND = sum(p.share for p in PARTS)  # 10,000


# --- checks -----------------------------------------------------------------------------------

ProblemKind = Literal["crash", "unclear", "over_limit", "unescaped", "changed_state"]


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    detail: str


# Internals a person must never see: Python's words for failures, library names, reprs.
_INTERNALS = re.compile(
    r"Traceback|File \"|object at 0x|<class '|\b[A-Z]\w*(?:Error|Exception)\b|"
    r"sqlalchemy|sqlite|asyncpg|pydantic|NoneType|\bNone\b|\bnan\b|\$nan|\binf\b"
)


def _echoes(cmd: Command) -> list[str]:
    """How the command's own words may appear in a reply (as typed, cut, upper or lower)."""
    words = [cmd.name, *cmd.args]
    out: set[str] = set()
    for w in words:
        for form in (w, shown(w), shown(w).rstrip("…")):
            out.update((form, form.upper(), form.lower()))
    return sorted((w for w in out if w), key=len, reverse=True)


def _longest_echo(text: str, token: str, limit: int) -> bool:
    """True when ``text`` contains more than ``limit`` consecutive characters of ``token``.

    A common run of ``2k - 1`` characters holds a whole block ``text[jk:(j+1)k]``, so blocks of
    ``k = (limit + 2) // 2`` screen cheaply; a hit is then confirmed exactly.
    """
    w = limit + 1
    if len(token) < w or len(text) < w:
        return False
    k = (w + 1) // 2
    if not any(text[j : j + k] in token for j in range(0, len(text) - k + 1, k)):
        return False
    windows = {text[i : i + w] for i in range(len(text) - w + 1)}
    return any(token[i : i + w] in windows for i in range(len(token) - w + 1))


def reply_problems(cmd: Command, reply: Reply) -> list[Problem]:
    """What is wrong with a reply as text: empty, unclear, unbounded, leaking internals."""
    out: list[Problem] = []
    text = reply.text
    if not text.strip() and reply.png is None:
        return [Problem("unclear", "empty reply")]
    if GENERIC_ERROR in text:
        return [Problem("crash", "the generic error reply (the handler raised)")]
    limit = ERROR_TEXT_MAX if reply.error else REPLY_TEXT_MAX
    if len(text) > limit:
        out.append(Problem("over_limit", f"reply of {len(text)} characters (> {limit})"))
    scrubbed = text
    for echo in _echoes(cmd):
        scrubbed = scrubbed.replace(echo, " ")
    leak = _INTERNALS.search(scrubbed)
    if leak:
        out.append(Problem("unclear", f"shows internals: {leak.group(0)!r} in {text[:300]!r}"))
    if reply.error:
        first = reply.lines[0].strip() if reply.lines else ""
        if not first:
            out.append(Problem("unclear", "an error whose first line is empty"))
        elif not first.endswith((".", "!", "?", "…")):
            out.append(Problem("unclear", f"an error that is not a sentence: {first[:200]!r}"))
    for tok in (cmd.name, *cmd.args, cmd.chat_title, cmd.user_name):
        if _longest_echo(text, tok, ECHO_MAX):
            out.append(Problem("unescaped", f"repeats over {ECHO_MAX} characters of input"))
            break
    for row in reply.buttons:
        for b in row:
            if len(b.data.encode()) > BUTTON_DATA_MAX or not b.data.startswith("/"):
                out.append(Problem("over_limit", f"button data {b.data[:80]!r}"))
    return out


_TG_TAG = re.compile(r"</?b>")
_TG_ENTITY = re.compile(r"&(?!(?:amp|lt|gt|quot);)")


def _squash(text: str) -> str:
    return "".join(text.split())


def telegram_problems(reply: Reply, rendered: Rendered | None = None) -> list[Problem]:
    """Render ``reply`` for Telegram (HTML parse mode), or take ``rendered``, and check the
    result: within 4096/1024, well-formed, only ``<b>`` markup, entities escaped, and showing
    exactly the reply's text."""
    out: list[Problem] = []
    r = rendered if rendered is not None else telegram_render(reply)
    chunks: list[tuple[str, int]] = [(t, TEXT_MAX) for t in r.texts]
    if r.caption is not None:
        chunks.insert(0, (r.caption, CAPTION_MAX))
    if not chunks and r.photo is None:
        out.append(Problem("unclear", "telegram: nothing to send"))
    for chunk, limit in chunks:
        shown_len, error = visible_length(chunk, "HTML")
        if error is not None:
            out.append(Problem("unescaped", f"telegram: {error} in {chunk[:200]!r}"))
        if tg_len(chunk) > limit or shown_len > limit:
            out.append(Problem("over_limit", f"telegram: {tg_len(chunk)} UTF-16 units > {limit}"))
        bare = _TG_TAG.sub("", chunk)
        if "<" in bare or ">" in bare:
            out.append(Problem("unescaped", f"telegram: markup besides <b>: {chunk[:200]!r}"))
        if _TG_ENTITY.search(bare):
            out.append(Problem("unescaped", f"telegram: a bare '&': {chunk[:200]!r}"))
        if not html.unescape(bare).strip():
            out.append(Problem("unclear", "telegram: a message with no visible text"))
    seen = _squash("".join(html.unescape(_TG_TAG.sub("", c)) for c, _ in chunks))
    if seen != _squash(reply.text):
        out.append(Problem("unescaped", "telegram: what is shown differs from the reply's text"))
    if r.markup is not None:
        for row in r.markup.inline_keyboard:
            for b in row:
                data = b.callback_data
                if not isinstance(data, str) or len(data.encode()) > BUTTON_DATA_MAX:
                    out.append(Problem("over_limit", f"telegram: callback data {data!r}"))
    return out


# Discord limits (https://discord.com/developers/docs/resources/message#embed-object-limits).
DISCORD_CONTENT_MAX = 2000
DISCORD_EMBEDS_MAX = 10
DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4096
DISCORD_EMBED_TOTAL_MAX = 6000
# discord.py's link pattern: escape_markdown leaves links as they are, and Discord formats
# nothing inside an autolinked URL.
_URL = re.compile(r"<[^: >]+:\/[^ >]+>|(?:https?|steam):\/\/[^\s<]+[^<.,:;\"\'\]\s]")
_MENTION = re.compile(r"@(?:everyone|here)|<@[!&]?[0-9]+>|@[!&]?[0-9]{17,20}")
_ESCAPED = re.compile(r"\\.", re.DOTALL)
# A line start Discord would format: quote, heading, subtext, list item.
_LINE_MARK = re.compile(r"^(?:>|#{1,3} |-# |\s*[-*+] )")


def discord_visible(text: str) -> str:
    """What Discord shows for escaped text: backslash escapes dropped, mention breaks removed."""
    return _ESCAPED.sub(lambda m: m.group(0)[1], text.replace("@\u200b", "@"))


def _markdown_problems(text: str) -> list[str]:
    """Formatting Discord would apply to ``text``: a pair of unescaped delimiters, a line-start
    mark. Single ``*``, ``_`` or a backtick open nothing alone; ``||`` and ``~~`` come in twos."""
    plain = _ESCAPED.sub("E", _URL.sub("U", text))  # links and escaped characters format nothing
    found = []
    for mark, least in (("*", 1), ("_", 1), ("`", 1), ("|", 2), ("~", 2)):
        runs = [r for r in re.findall(re.escape(mark) + "+", plain) if len(r) >= least]
        if len(runs) >= 2:
            found.append(f"unescaped {mark!r} pair")
    for line in plain.split("\n"):
        if _LINE_MARK.match(line):
            found.append(f"line starts with markdown: {line[:40]!r}")
    return found


def discord_problems(reply: Reply, messages: Sequence[DiscordMessage]) -> list[Problem]:
    """Check rendered Discord messages: limits, escaping (no markdown, no mention), and that
    they show exactly the reply's text."""
    out: list[Problem] = []
    if not messages:
        return [Problem("unclear", "discord: no message")]
    bodies: list[str] = []
    for m in messages:
        kw: dict[str, Any] = m.send_kwargs()
        content = kw.get("content")
        if isinstance(content, str) and len(content) > DISCORD_CONTENT_MAX:
            out.append(Problem("over_limit", f"discord: content of {len(content)}"))
        if not 1 <= len(m.embeds) <= DISCORD_EMBEDS_MAX:
            out.append(Problem("over_limit", f"discord: {len(m.embeds)} embeds in a message"))
        total = 0
        for e in m.embeds:
            title, desc = e.title or "", e.description or ""
            total += len(title) + len(desc)
            if len(title) > DISCORD_TITLE_MAX or len(desc) > DISCORD_DESCRIPTION_MAX:
                out.append(Problem("over_limit", f"discord: title {len(title)}, desc {len(desc)}"))
            for part in (title, desc):
                if _MENTION.search(part):
                    out.append(Problem("unescaped", f"discord: a mention in {part[:200]!r}"))
                out += [
                    Problem("unescaped", f"discord: {p} in {part[:200]!r}")
                    for p in _markdown_problems(part)
                ]
            bodies.append(desc)
        if total > DISCORD_EMBED_TOTAL_MAX:
            out.append(Problem("over_limit", f"discord: {total} characters of embeds"))
        if m.view is not None:
            rows = m.view.to_components()
            if len(rows) > 5 or any(len(r["components"]) > 5 for r in rows):
                out.append(Problem("over_limit", "discord: more than 5x5 buttons"))
            for r in rows:
                for c in r["components"]:
                    if len(c.get("custom_id", "")) > 100 or len(c.get("label", "")) > 80:
                        out.append(Problem("over_limit", f"discord: button {c!r}"))
    first = messages[0].embeds[0].title if messages[0].embeds else None
    title = discord_visible(first or "")
    if reply.title and not (title and reply.title.startswith(title)):
        out.append(Problem("unescaped", f"discord: the title shows {title[:80]!r}"))
    if _squash(discord_visible("".join(bodies))) != _squash("".join(reply.lines)):
        out.append(Problem("unescaped", "discord: what is shown differs from the reply's text"))
    if messages[0].ephemeral != (reply.error or reply.private):
        out.append(Problem("unclear", "discord: an error or private reply that is public"))
    return out


# --- the rig ----------------------------------------------------------------------------------


class CannedCharts(ChartCache):
    """A chart cache that draws the first chart for real and returns that PNG for every other
    key: the fuzz asks for many ranges, and each real drawing takes a few hundred ms."""

    def __init__(self) -> None:
        super().__init__(maxsize=4)
        self.png: bytes | None = None
        self.asked = 0

    async def get(self, key: ChartKey, compute: Callable[[], bytes]) -> bytes:
        self.asked += 1
        if self.png is None:
            self.png = await super().get(key, compute)
        return self.png


@dataclass
class Outcome:
    """One command's result: the reply (None when the router raised) and what is wrong."""

    cmd: Command
    reply: Reply | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def crashed(self) -> bool:
        return any(p.kind == "crash" for p in self.problems)


class _Failures(logging.Handler):
    """Collects the tracebacks the router logs when a handler raises."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.records.append("".join(traceback.format_exception(*record.exc_info)))
        else:
            self.records.append(record.getMessage())


class FuzzRig:
    """A router over a fresh SQLite store at ``db_path`` and the in-memory market, with its own
    event loop: ``with FuzzRig(path) as rig: rig.run(cmd)``.

    The rate limit is off (a fuzz sends thousands of commands a second from a few users).
    """

    def __init__(self, db_path: Path, *, real_charts: bool = False) -> None:
        self.db_path = db_path
        self.real_charts = real_charts
        self._runner = asyncio.Runner()
        self._failures = _Failures()
        self._log = logging.getLogger("bot.commands")
        self._propagate = self._log.propagate
        self.store: Store | None = None
        self.market: Market | None = None
        self.router: CommandRouter | None = None
        self._registered: set[tuple[str, str, str]] = set()
        self._clean: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None

    def __enter__(self) -> FuzzRig:
        self._runner.__enter__()
        self.store = self._runner.run(open_store(f"sqlite+aiosqlite:///{self.db_path}"))
        unlimited = Settings(bot=BotSettings(commands_per_user_per_min=10**9))
        self.market = make_services(self.store, unlimited)
        caches = Caches() if self.real_charts else Caches(charts=CannedCharts())
        self.router = CommandRouter(self.market.services, caches)
        self._log.addHandler(self._failures)
        self._log.propagate = False  # the failure is reported with its input, once
        return self

    def __exit__(self, *exc: object) -> None:
        self._log.removeHandler(self._failures)
        self._log.propagate = self._propagate
        if self.store is not None:
            self._runner.run(self.store.close())
        self._runner.__exit__(None, None, None)

    def run(self, cmd: Command) -> Outcome:
        """Answer ``cmd`` and check the reply as text, on Telegram and on Discord."""
        self._clean = None  # the command may change the store
        return self._runner.run(self._run(cmd))

    async def _run(self, cmd: Command) -> Outcome:
        assert self.router is not None
        self._failures.records.clear()
        try:
            reply = await self.router.handle(cmd)
        except Exception:
            return Outcome(cmd, None, [Problem("crash", traceback.format_exc())])
        outcome = Outcome(cmd, reply)
        outcome.problems += [Problem("crash", tb) for tb in self._failures.records]
        outcome.problems += reply_problems(cmd, reply)
        for platform, check in (("telegram", self._telegram), ("discord", self._discord)):
            try:
                outcome.problems += check(reply)
            except Exception:
                outcome.problems.append(
                    Problem("crash", f"rendering for {platform}:\n{traceback.format_exc()}")
                )
        return outcome

    @staticmethod
    def _telegram(reply: Reply) -> list[Problem]:
        return telegram_problems(reply)

    @staticmethod
    def _discord(reply: Reply) -> list[Problem]:
        return discord_problems(reply, discord_render(reply))  # in the loop: views need one

    def check(self, part: Part, cmd: Command) -> Outcome:
        """``run(cmd)``; for a bad-input part, also: the reply is an error, and the store is
        exactly as it was (the chat registered beforehand, as the command would)."""
        if not part.bad_input:
            return self.run(cmd)
        where = (cmd.platform, cmd.chat_id, cmd.user_id)
        if where not in self._registered:
            self.register(cmd)
            self._registered.add(where)
            self._clean = None
        # Unless a case failed, the store is as the last bad-input case left it: read it once.
        before = self._clean if self._clean is not None else self.state()
        outcome = self.run(cmd)
        if outcome.reply is not None and not outcome.reply.error:
            outcome.problems.append(
                Problem("unclear", f"bad input accepted: {outcome.reply.text[:200]!r}")
            )
        after = self.state()
        if after != before:
            outcome.problems.append(Problem("changed_state", "bad input changed the store"))
        self._clean = after
        return outcome

    def state(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Every destination and subscription row."""
        assert self.store is not None
        return self._runner.run(dump(self.store))

    def register(self, cmd: Command) -> None:
        """Create ``cmd``'s chat as the command itself would (so a later error reply must leave
        the destinations table exactly as it is)."""
        assert self.market is not None and self.store is not None
        chat_id = cmd.chat_id
        if cmd.platform == "discord" and cmd.chat_type == "private" and cmd.user_id:
            chat_id = dm_chat_id(cmd.user_id)
        self._runner.run(
            upsert_destination(
                self.store,
                cmd.platform,
                chat_id,
                cmd.chat_type,
                self.market.services.now_ms(),
                cmd.chat_title,
            )
        )
