"""The router: specs, /start and /help, unknown commands, the rate limit, unexpected errors, and
properties over arbitrary input (nothing crashes; bad input gets a specific error)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.store import Store, find_destination, open_store
from bot.chat import ChatType, Command, Platform, Reply
from bot.commands import COMMAND_SPECS, GENERIC_ERROR, CommandRouter, RateLimiter
from bot.services import EtfView
from core.config import BotSettings, Settings
from tests.bot.market import Market, make_services
from tests.bot.test_commands_support import assert_specific_error, check_reply, run

NAME = re.compile(r"^[a-z0-9_]{1,32}$")


@pytest.fixture
def router(market: Market) -> CommandRouter:
    return CommandRouter(market.services)


def test_specs_fit_the_platforms() -> None:
    names = [s.name for s in COMMAND_SPECS]
    assert len(names) == len(set(names))
    assert {"start", "help", "liqmap", "liqs", "etf", "alert", "alerts", "unalert", "mute"} <= set(
        names
    )
    assert {"quiet", "subscribe", "unsubscribe", "status", "settings"} <= set(names)
    for spec in COMMAND_SPECS:
        assert NAME.match(spec.name), spec.name
        assert 0 < len(spec.summary) <= 100, spec.name
        assert spec.usage.startswith(f"/{spec.name}")
        required = [a.required for a in spec.args]
        assert required == sorted(required, reverse=True), "required options come first"
        for arg in spec.args:
            assert NAME.match(arg.name), arg.name
            assert 0 < len(arg.description) <= 100, arg.name
    admin = {s.name for s in COMMAND_SPECS if s.admin_only}
    assert admin == {"subscribe", "unsubscribe"}


async def test_start_registers_the_chat(router: CommandRouter, market: Market) -> None:
    reply = await run(
        router, "/start", platform="telegram", chat_id="-5", chat_type="group", chat_title="Desk"
    )
    assert reply.title == "liqbot" and "/liqmap BTC" in reply.text
    dest = await find_destination(market.services.store, "telegram", "-5")
    assert dest is not None and (dest.type, dest.title) == ("group", "Desk")
    assert [b.data for row in reply.buttons for b in row] == ["/liqmap BTC", "/etf", "/help"]


async def test_help(router: CommandRouter) -> None:
    overview = await run(router, "/help")
    assert len(overview.lines) == len(COMMAND_SPECS) + 1
    assert all(any(line.startswith(s.usage) for line in overview.lines) for s in COMMAND_SPECS)
    one = await run(router, "/help /ALERT")
    assert one.title == "/alert"
    assert "  /alert cluster BTC 1% 50m short" in one.lines
    sub = await run(router, "/help subscribe")
    assert "In groups and channels, for chat admins only." in sub.lines
    assert_specific_error(await run(router, "/help nope"), "There is no /nope command")


async def test_unknown_command(router: CommandRouter) -> None:
    reply = await run(router, "/liqmapp BTC")
    assert_specific_error(reply, "I don't know /liqmapp. /help lists the commands.")
    long = await router.handle(Command("x" * 5000))
    assert long.error and len(long.text) < 120


async def test_rate_limit(store: Store) -> None:
    market = make_services(store, Settings(bot=BotSettings(commands_per_user_per_min=3)))
    router = CommandRouter(market.services)
    for _ in range(3):
        assert not (await run(router, "/help", user_id="a")).error
        market.clock.now += 10
    limited = await run(router, "/help", user_id="a")
    assert limited.text == "You're sending commands too fast; try again in 30s."
    assert limited.error and limited.private
    assert not (await run(router, "/help", user_id="b")).error  # per user
    assert not (await run(router, "/help", user_id="a", platform="discord")).error  # per platform
    market.clock.now += 31
    assert not (await run(router, "/help", user_id="a")).error  # the first hit left the window


async def test_rate_limit_without_user_counts_the_chat(store: Store) -> None:
    market = make_services(store, Settings(bot=BotSettings(commands_per_user_per_min=1)))
    router = CommandRouter(market.services)
    assert not (await run(router, "/help", user_id="", chat_id="c1")).error
    assert (await run(router, "/help", user_id="", chat_id="c1")).error
    assert not (await run(router, "/help", user_id="", chat_id="c2")).error


def test_rate_limiter_forgets_idle_keys() -> None:
    limiter = RateLimiter(1, window_s=60)
    for i in range(10_001):
        assert limiter.hit(f"early{i}", 0.0) == 0
    assert limiter.hit("early0", 59.5) == pytest.approx(0.5)
    for i in range(10_002):  # the keys double: a sweep drops the idle early ones
        assert limiter.hit(f"late{i}", 120.0) == 0
    assert len(limiter) == 10_002


async def test_unexpected_errors_are_generic(
    router: CommandRouter, market: Market, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> EtfView | None:
        raise RuntimeError("connection to db at postgres://admin:hunter2@10.0.0.1 lost")

    market.services.etf = broken
    with caplog.at_level(logging.ERROR, logger="bot.commands"):
        reply = await run(router, "/etf")
    assert reply.text == GENERIC_ERROR and reply.error
    assert "hunter2" not in reply.text
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)


# --- properties -------------------------------------------------------------------------------

COMMAND_NAMES = [s.name for s in COMMAND_SPECS]
TOKENS = [
    "btc", "ETH", "SOL", "DOGEX", "1%", "0.5", "%", "50m", "$1.2B", "1,000,000", "1h", "30m",
    "all", "binance", "okx", "long", "short", "up", "down", "off", "dm", "23:00-07:00",
    "Europe/Berlin", "reversal", "hourly", "cluster", "cross", "spike", "etf", "digest", "tz",
    "#1", "all", "5x", "",
]  # fmt: skip
token = st.one_of(
    st.sampled_from(TOKENS),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(500, 5000)),
)
# Tokens no command can take: punctuation and odd symbols only (no letter, digit, '%' or '$').
garbage = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("L", "N", "Z", "Cc", "Cs"), exclude_characters="%$"
    ),
    min_size=1,
    max_size=40,
).filter(lambda t: t.strip() != "" and not any(c.isalnum() for c in t))
WHERE: list[tuple[Platform, ChatType, bool]] = [
    ("console", "private", True),
    ("telegram", "group", False),
    ("telegram", "channel", True),
    ("discord", "group", True),
    ("discord", "private", True),
]


@pytest.fixture
def loop_and_router(tmp_path: Path) -> Iterator[tuple[asyncio.Runner, CommandRouter]]:
    """A router over a fresh SQLite store, driven by its own event loop (Hypothesis calls the
    test body many times, synchronously)."""
    with asyncio.Runner() as runner:
        store = runner.run(open_store(f"sqlite+aiosqlite:///{tmp_path / 'prop.db'}"))
        unlimited = Settings(bot=BotSettings(commands_per_user_per_min=10**9))
        router = CommandRouter(make_services(store, unlimited).services)
        try:
            yield runner, router
        finally:
            runner.run(store.close())


def _check(reply: Reply) -> None:
    check_reply(reply)
    assert GENERIC_ERROR not in reply.text, reply.text
    assert len(reply.text) < 20_000  # hostile input cannot blow a reply up
    if reply.error:
        assert reply.lines[0].strip() and reply.lines[0] != GENERIC_ERROR


def test_router_never_crashes(loop_and_router: tuple[asyncio.Runner, CommandRouter]) -> None:
    runner, router = loop_and_router

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        name=st.one_of(st.sampled_from(COMMAND_NAMES), st.text(max_size=40)),
        args=st.lists(token, max_size=8),
        where=st.sampled_from(WHERE),
        user=st.sampled_from(["", "u1", "u2"]),
    )
    def check(
        name: str, args: list[str], where: tuple[Platform, ChatType, bool], user: str
    ) -> None:
        platform, chat_type, admin = where
        cmd = Command(
            name, tuple(args), platform, f"{platform}-{chat_type}", chat_type, user, "", admin
        )
        _check(runner.run(router.handle(cmd)))

    check()


def test_bad_input_gets_a_specific_error(
    loop_and_router: tuple[asyncio.Runner, CommandRouter],
) -> None:
    runner, router = loop_and_router
    takes_args = [
        "/help", "/liqmap", "/liqmap BTC", "/liqs", "/etf", "/alert", "/alert cluster BTC 1% 50m",
        "/alert cross BTC", "/alert spike BTC 50m", "/alert etf", "/alert digest", "/alerts",
        "/unalert", "/mute", "/quiet", "/quiet 23:00-07:00", "/settings tz", "/subscribe",
        "/unsubscribe",
    ]  # fmt: skip

    @settings(max_examples=200, deadline=None)
    @given(line=st.sampled_from(takes_args), bad=garbage)
    def check(line: str, bad: str) -> None:
        name, *args = line[1:].split()
        reply = runner.run(router.handle(Command(name, (*args, bad))))
        _check(reply)
        assert reply.error, (line, bad, reply.text)

    check()


class AdminVerdict:
    """An ``is_admin`` that records being looked at (it reads as False: not an admin)."""

    def __init__(self) -> None:
        self.looked = False

    def __bool__(self) -> bool:
        self.looked = True
        return False


async def test_only_flagged_commands_look_at_the_admin_verdict(router: CommandRouter) -> None:
    """Telegram asks getChatMember only for commands flagged ``needs_admin_verdict``: every
    other command, with each of its /help examples in a group, must never look at it."""
    group = {"platform": "telegram", "chat_id": "-42", "chat_type": "group"}
    # An alert of someone else's in the group, so /unalert has one to judge.
    await run(router, "/alert cross BTC 96000 up", **group, user_id="owner")  # type: ignore[arg-type]
    looked_at: set[str] = set()
    for i, spec in enumerate(COMMAND_SPECS):
        examples = [line.strip() for line in (await run(router, f"/help {spec.name}")).lines]
        lines = [f"/{spec.name}", *(e for e in examples if e.startswith(f"/{spec.name} "))]
        for j, line in enumerate(lines):
            verdict = AdminVerdict()
            cmd = Command.parse(line, **group, user_id=f"u{i}-{j}", is_admin=verdict)
            check_reply(await router.handle(cmd))
            if verdict.looked:
                looked_at.add(spec.name)
                assert spec.needs_admin_verdict, f"{line} looks at is_admin but is not flagged"
    flagged = {s.name for s in COMMAND_SPECS if s.needs_admin_verdict}
    assert looked_at == flagged  # and no flag is superfluous
