"""Fault storms on the chat platforms: Telegram or Discord answering 5xx and 429 for a while,
and still no notification is lost (DESIGN §7, §8).

A batch of outbox notifications for several chats is delivered by the outbox drain
(``AlertEngine.drain``, 4 chats in flight as in ``liqbot run``) through the real platform
sender and the real two-lane pacer, with the real client library over real sockets, while the
fake platform answers a scripted *storm*:

* each chat's n-th send gets the n-th step of its script: a stretch of 500/503/502 (refused
  before the message is taken), one 502 *after* the message was taken (the one way a storm may
  duplicate a message: the client cannot tell it arrived), then a stretch of 429s with
  ``retry_after``, successes in between, and all successes after the script;
* once enough sends have gone by, a platform-wide window opens in which every send gets 429
  (Discord: ``"global": true``) with the time left as ``retry_after``;
* a send to a chat still inside a ``retry_after`` it was given gets 429 again, as the platforms
  do (and the test reports it as a violation).

Then: every outbox row is ``sent`` and none dead; each message reached its chat exactly once
plus once per 502-after-accepting it got (the refused 5xx never leave a duplicate); no chat
was sent to before its ``retry_after`` ran out (from the fake's request log; for Discord's
global limit, from the client's own dispatch times, see :class:`Dispatches`); and each chat got
its messages in outbox order (today a known bug: see :data:`ORDER_BUG_OPEN`). The storm is
checked to have happened, so none of this can pass vacuously.

Telegram runs on a manual clock shared by the pacer, the fake and the outbox (pacing and
``retry_after`` waits take no wall time), on SQLite and on PostgreSQL. discord.py handles 5xx
and short 429s itself with real sleeps, so Discord runs on the real clock with short waits:
``max_ratelimit_timeout`` is lowered from 30 s to :data:`DISCORD_MAX_SLEEP_S` so that a
"long" 429 (discord.py raises ``RateLimited``, the sender backs the chat off and the outbox
reschedules) takes under a second.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest

from alerts.delivery import DrainResult, RetryPolicy, Sender
from alerts.engine import AlertEngine
from alerts.notifications import GroupedMessage, LevelCross, Outgoing, message_to_dict
from alerts.store import Envelope, Store, enqueue, open_store, stats, upsert_destination
from alerts.store.repo import ChatType, Platform
from bot.chat import notification_reply
from bot.commands import COMMAND_SPECS, CommandRouter
from bot.discord_app import build_client, close, configure_endpoints, start
from bot.discord_render import render as discord_render
from bot.discord_send import DiscordSender
from bot.pacing import Pacer
from bot.telegram_app import build_application
from bot.telegram_render import render as telegram_render
from bot.telegram_send import TelegramSender
from core.config import DiscordSettings, LaneLimits, Settings, TelegramSettings
from tests.bot.market import make_services
from tests.fakes import discord_api as dc
from tests.fakes import discord_payloads as p
from tests.fakes import telegram_api as tg
from tests.fakes.timing import ManualClock

NOW_MS = 1_768_300_000_000
MESSAGES = 6  # per chat
ENGINE_CONCURRENCY = 4  # AlertEngine.drain's default, as liqbot run uses it
DISCORD_MAX_SLEEP_S = 0.5  # discord.py sleeps through 429s up to this; longer ones raise


# --- the storm ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One scripted answer: 200, or an error; ``accepted``: the platform took the message
    before answering the error; ``internal``: the client library retries it by itself."""

    status: int = 200
    retry_after: float | None = None
    accepted: bool = False
    internal: bool = False
    global_limit: bool = False


OK = Step()


def e5xx(status: int, *, accepted: bool = False, internal: bool = False) -> Step:
    return Step(status, accepted=accepted, internal=internal)


def e429(retry_after: float, *, internal: bool = False) -> Step:
    return Step(429, retry_after, internal=internal)


@dataclass
class Storm:
    """Decides the answer to each send; see the module docstring.

    A chat's sends are answered in turn by its script, ``script_for(k)`` for the k-th chat to
    send. After ``global_after`` sends (and only while no chat is inside a retry its client
    library makes by itself, which would not look at a global limit again) a global window of
    ``global_s`` opens once. ``whole_seconds``: retry_after as Telegram gives it (an integer,
    at least 1).
    """

    script_for: Callable[[int], list[Step]]
    global_after: int
    global_s: float
    whole_seconds: bool
    sends: int = 0
    global_until: float | None = None
    scripts: dict[str, list[Step]] = field(default_factory=dict)
    global_hits: list[tuple[str, float]] = field(default_factory=list)  # (chat, when)
    blocked_until: dict[str, float] = field(default_factory=dict)
    answered: Counter[str] = field(default_factory=Counter)
    library_retrying: set[str] = field(default_factory=set)

    def _wait(self, seconds: float) -> float:
        return float(max(1, math.ceil(seconds))) if self.whole_seconds else seconds

    def answer(self, chat: str, now: float) -> Step | None:
        """The answer to a send to ``chat`` arriving at ``now``; None: accept it."""
        self.sends += 1
        self.library_retrying.discard(chat)
        until = self.blocked_until.get(chat, -math.inf)
        if now < until:  # still backed off: the platform refuses it again
            return e429(self._wait(until - now))
        if (
            self.global_until is None
            and self.sends > self.global_after
            and not self.library_retrying
        ):
            self.global_until = now + self.global_s
        if self.global_until is not None and now < self.global_until:
            step = Step(429, self._wait(self.global_until - now), global_limit=True)
            self.global_hits.append((chat, now))
        else:
            if chat not in self.scripts:
                self.scripts[chat] = self.script_for(len(self.scripts))
            script = self.scripts[chat]
            n = self.answered[chat]
            self.answered[chat] += 1
            step = script[n] if n < len(script) else OK
        if step.retry_after is not None:
            self.blocked_until[chat] = now + step.retry_after
        if step.internal:
            self.library_retrying.add(chat)
        return None if step == OK else step


# --- what the fake saw -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One send request as the fake saw it, in arrival order: ``message`` is the index of the
    notification in its chat (the order it was queued in)."""

    chat: str
    at: float
    status: int
    retry_after: float | None
    delivered: bool
    message: int


ROUNDING_S = 1e-6  # float rounding of clock sums (the pacer's own snap), not a timing slack


def early_sends(sends: Sequence[Sent]) -> list[tuple[Sent, Sent]]:
    """(429, send) pairs: a send to the 429's chat, after it, before its retry_after ran out."""
    early = []
    for i, limit in enumerate(sends):
        if limit.status != 429 or limit.retry_after is None:
            continue
        end = limit.at + limit.retry_after - ROUNDING_S
        for later in sends[i + 1 :]:
            if later.chat == limit.chat and later.at < end:
                early.append((limit, later))
    return early


def check_delivery(sends: Sequence[Sent], chats: Sequence[str]) -> None:
    """No chat was sent to inside a retry_after; every message reached its chat exactly once,
    plus once for each 502 it got after the platform had taken it."""
    assert not early_sends(sends), f"sent before retry_after ran out: {early_sends(sends)}"
    for chat in chats:
        mine = [s for s in sends if s.chat == chat]
        got = Counter(s.message for s in mine if s.delivered)
        accepted_then_failed = Counter(s.message for s in mine if s.delivered and s.status >= 500)
        answered_ok = Counter(s.message for s in mine if s.status < 300)
        for n in range(MESSAGES):
            assert answered_ok[n] == 1, f"chat {chat} message {n}: {answered_ok[n]} successes"
            assert got[n] == 1 + accepted_then_failed[n], (
                f"chat {chat} message {n} arrived {got[n]} times; only "
                f"{accepted_then_failed[n]} answer(s) could have hidden an arrival"
            )


# Known bug: when a message fails transiently, alerts/delivery.py goes on with the chat's
# later messages in the same drain, so they overtake it (and, after a 429, wait out the
# chat's backoff inside the pacer while holding one of the drain's concurrency slots, which
# stalls every other chat). Fixing it needs the outbox too: a claim that skips rows queued
# behind a row still waiting, and a way to give claimed rows back without counting an attempt.
# Until then the order check expects the bug, and fails once the order holds: then set False.
ORDER_BUG_OPEN = False


def check_order(sends: Sequence[Sent], chats: Sequence[str]) -> None:
    """Each chat got its messages in queue order (a duplicate right after its original)."""
    arrivals = {
        chat: [s.message for s in sends if s.chat == chat and s.delivered] for chat in chats
    }
    misordered = {chat: got for chat, got in arrivals.items() if got != sorted(got)}
    if not ORDER_BUG_OPEN:
        assert not misordered, f"chats got their messages out of order: {misordered}"
    elif not misordered:
        pytest.fail("the order now holds through the storm: set ORDER_BUG_OPEN = False")
    else:
        pytest.xfail(f"known bug, a failed message is overtaken by later ones: {misordered}")


def check_storm_happened(sends: Sequence[Sent], storm: Storm, duplicated: int) -> None:
    """The faults were really answered, so the checks above are not vacuous: every kind of
    error, the global window while at least three chats still had messages to get, and the
    expected number of 502s after accepting."""
    statuses = Counter(s.status for s in sends)
    assert {500, 502, 503, 429} <= set(statuses), statuses
    assert storm.global_until is not None and storm.global_hits, "no global window"
    waiting = {s.chat for s in sends if s.delivered and s.at >= storm.global_until}
    assert len(waiting) >= 3, f"only {waiting} had messages left after the global window"
    assert sum(1 for s in sends if s.delivered and s.status >= 500) == duplicated


# --- the outbox ----------------------------------------------------------------------------------


def notification(dest_id: int, chat_no: int, n: int) -> GroupedMessage:
    """Message ``n`` for a chat: a level cross whose numbers name the chat and ``n``."""
    level = 90_000.0 + 100 * chat_no + n
    payload = LevelCross("BTC", NOW_MS + n, level, level + 50, level - 50)
    item = Outgoing(dest_id, 1, NOW_MS + n, payload)
    return GroupedMessage(dest_id, f"storm:{dest_id}:{n}", NOW_MS + n, (item,))


async def queue_batch(
    store: Store, platform: Platform, chats: Sequence[tuple[str, ChatType]]
) -> dict[str, list[GroupedMessage]]:
    """``MESSAGES`` notifications per chat, queued round-robin (so chats interleave in the
    outbox); the messages by chat id, in queue order."""
    out: dict[str, list[GroupedMessage]] = {}
    for i, (chat_id, chat_type) in enumerate(chats):
        dest = await upsert_destination(store, platform, chat_id, chat_type, NOW_MS, "storm")
        out[chat_id] = [notification(dest.id, i, n) for n in range(MESSAGES)]
    envelopes = [
        Envelope(m.key, m.destination_id, "level_cross", m.created_ms, message_to_dict(m))
        for n in range(MESSAGES)
        for msgs in out.values()
        for m in (msgs[n],)
    ]
    assert len(await enqueue(store, envelopes, NOW_MS)) == len(envelopes)
    return out


async def deliver_everything(
    engine: AlertEngine,
    sender: Sender,
    now_ms: Callable[[], int],
    idle: Callable[[], Awaitable[None]],
    rounds: int = 2_000,
) -> list[DrainResult]:
    """Drain until nothing is pending, as the bot's drain job does; ``idle`` passes time while
    only retries not yet due are left."""
    results: list[DrainResult] = []
    for _ in range(rounds):
        if not (await stats(engine.store, now_ms())).pending:
            return results
        result = await engine.drain(sender, now_ms(), "storm", concurrency=ENGINE_CONCURRENCY)
        results.append(result)
        if not result.claimed:
            await idle()
    raise AssertionError(f"the outbox still has pending rows after {rounds} drains")


async def check_outbox(store: Store, results: Sequence[DrainResult], total: int) -> None:
    counts = await stats(store, NOW_MS)
    assert (counts.sent, counts.pending, counts.dead) == (total, 0, 0)
    assert not [row for r in results for row in r.dead]
    assert sum(len(r.sent) for r in results) == total
    assert sum(len(r.retried) for r in results) > 0  # the storm made the outbox retry


# --- Telegram ------------------------------------------------------------------------------------

TG_CHATS: list[tuple[str, ChatType]] = [
    ("42", "private"),
    ("43", "private"),
    ("44", "private"),
    ("45", "private"),
    ("-1001", "group"),
    ("-1002", "group"),
]


def telegram_script(i: int) -> list[Step]:
    """5xx first (one 502 after accepting), then 429s of a few seconds, successes between."""
    return [
        e5xx(500),
        e5xx(503),
        e5xx(502),
        OK,
        e5xx(502, accepted=True),
        OK,
        e429(3 + i % 2),
        e429(2),
        OK,
        e5xx(503),
        OK,
        e429(1),
        OK,
    ]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # RetryAfter warns about its coming type otherwise


def _telegram_plan(storm: Storm, fake: tg.FakeTelegram) -> Callable[[tg.Call], tg.Fault | None]:
    def plan(call: tg.Call) -> tg.Fault | None:
        if call.method not in tg.SENDS or call.chat_id is None:
            return None
        step = storm.answer(call.chat_id, fake.clock())
        if step is None:
            return None
        if step.status == 429:
            wait = int(step.retry_after or 1)
            return tg.Fault(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
        return tg.Fault(step.status, f"Internal Server Error {step.status}", {}, step.accepted)

    return plan


def telegram_sends(fake: tg.FakeTelegram, messages: dict[str, list[GroupedMessage]]) -> list[Sent]:
    texts: dict[tuple[str, str], int] = {}
    for chat, msgs in messages.items():
        for n, msg in enumerate(msgs):
            rendered = telegram_render(notification_reply(msg))
            assert rendered.photo is None and len(rendered.texts) == 1  # one request each
            texts[(chat, rendered.texts[0])] = n
    answers = {id(e.call): e for e in fake.exchanges}
    sends = []
    for call in fake.calls:  # in arrival order
        if call.method not in tg.SENDS:
            continue
        answer = answers[id(call)]
        chat = str(call.chat_id)
        message = texts[(chat, str(call.params["text"]))]
        sends.append(
            Sent(chat, call.at, answer.status, answer.retry_after, answer.delivered, message)
        )
    return sends


async def test_telegram_storm_loses_nothing(store: Store) -> None:
    """Telegram through a 5xx stretch, per-chat 429s and a flood window: on SQLite and
    PostgreSQL (the store fixture of tests/alerts, skipping when no server answers)."""
    clock = ManualClock(now=1000.0)
    start_s = clock.now

    def now_ms() -> int:
        return NOW_MS + round((clock.now - start_s) * 1000)

    storm = Storm(
        telegram_script,
        global_after=12,  # early: every chat still has messages due within the window
        global_s=10.0,  # longer than any wait the outbox or a 429 imposes meanwhile
        whole_seconds=True,
    )
    async with tg.FakeTelegram(clock=clock) as fake:
        for chat, kind in TG_CHATS:
            if kind == "group":
                fake.chats[int(chat)] = {"id": int(chat), "type": "supergroup", "title": "g"}
        settings = Settings(
            telegram=TelegramSettings(base_url=fake.base_url, base_file_url=fake.base_file_url)
        )
        pacer = Pacer(LaneLimits(), clock=clock, sleep=clock.sleep)
        router = CommandRouter(make_services(store, settings).services)
        app = build_application(
            settings, fake.token, router.handle, pacer, store, specs=COMMAND_SPECS
        )
        messages = await queue_batch(store, "telegram", TG_CHATS)
        fake.set_faults(_telegram_plan(storm, fake))
        engine = AlertEngine(
            store, settings, retry=RetryPolicy(base_ms=1_000, max_ms=8_000, max_attempts=12)
        )
        await app.initialize()
        try:
            results = await deliver_everything(
                engine,
                TelegramSender(app.bot, store, pacer),
                now_ms,
                lambda: clock.sleep(0.25),
            )
        finally:
            await app.shutdown()

    sends = telegram_sends(fake, messages)
    await check_outbox(store, results, MESSAGES * len(TG_CHATS))
    check_delivery(sends, [chat for chat, _ in TG_CHATS])
    check_storm_happened(sends, storm, duplicated=len(TG_CHATS))
    # Telegram has no global flag: each chat learns of the flood from its own 429 (how many
    # chats try within the window depends on the drain; see ORDER_BUG_OPEN).
    assert len({chat for chat, _ in storm.global_hits}) >= 2
    assert pacer.stats().backoffs > 0  # the sender backed the pacer off on the 429s
    check_order(sends, [chat for chat, _ in TG_CHATS])


# --- Discord -------------------------------------------------------------------------------------

DC_CHANNELS = [p.CHANNEL_ID + i for i in range(4)]
DM_USER = 740_000_000_000_000_002
SEND = "POST /channels/{id}/messages"


def discord_script(i: int) -> list[Step]:
    """503s (the outbox retries), a 500 and a 502-after-accepting (discord.py retries those
    after 1 s itself), short 429s (discord.py sleeps) and a long one (RateLimited: the sender
    backs the chat off and the outbox reschedules), successes between."""
    short = DISCORD_MAX_SLEEP_S * 0.6
    return [
        e5xx(503),
        e5xx(503),
        e5xx(503),
        e5xx(500, internal=True),
        OK,
        e5xx(502, accepted=True, internal=True),
        OK,
        e429(short, internal=True),
        e429(short / 2 + 0.01 * i, internal=True),
        OK,
        e429(DISCORD_MAX_SLEEP_S * 1.6),
        OK,
        e5xx(503),
        OK,
    ]


class Dispatches:
    """The client's own view, from an aiohttp trace on discord.py's session: when each REST
    request was started, and when a global 429 reached it.

    A request already under way when the platform answered a global 429 cannot know of it;
    one *started* after the client got that answer and before the window ends ignored it.
    """

    def __init__(self) -> None:
        self.started: list[float] = []
        self.global_seen: list[float] = []
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_start.append(self._start)
        self.trace.on_request_end.append(self._end)

    async def _start(
        self,
        _s: aiohttp.ClientSession,
        _c: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        if "/api/v10/" in str(params.url):
            self.started.append(time.monotonic())

    async def _end(
        self, _s: aiohttp.ClientSession, _c: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if params.response.status == 429 and params.response.headers.get("X-RateLimit-Global"):
            self.global_seen.append(time.monotonic())

    def ignored_global(self, opened: float, until: float) -> list[float]:
        """Requests started after the client heard of the window opened at ``opened`` and
        before it ended."""
        seen = min((t for t in self.global_seen if t >= opened), default=math.inf)
        return [t for t in self.started if seen < t < until]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'liqbot.db'}")
    try:
        yield s
    finally:
        await s.close()


def _discord_plan(storm: Storm) -> Callable[[dc.Recorded], dc.Fault | None]:
    def plan(request: dc.Recorded) -> dc.Fault | None:
        if request.route != SEND:
            return None
        step = storm.answer(request.params["id"], request.at)
        if step is None:
            return None
        if step.status == 429:
            return dc.Fault(
                429, retry_after=step.retry_after or 0.0, global_limit=step.global_limit
            )
        return dc.Fault(step.status, accepted=step.accepted)

    return plan


def discord_sends(fake: dc.FakeDiscord, messages: dict[str, list[GroupedMessage]]) -> list[Sent]:
    """The sends by chat id (a DM's destination is ``user:<id>``: mapped from its channel)."""
    embeds: dict[tuple[str, str], int] = {}
    for chat, msgs in messages.items():
        for n, msg in enumerate(msgs):
            (rendered,) = discord_render(notification_reply(msg))  # one request each
            (embed,) = rendered.embeds
            embeds[(chat, f"{embed.title}\n{embed.description}")] = n
    chat_of = {str(c): str(c) for c in DC_CHANNELS}
    for cid, channel in fake.channels.items():
        if channel.get("type") == 1:
            chat_of[str(cid)] = f"user:{channel['recipients'][0]['id']}"
    sends = []
    for r in sorted(fake.recorded(SEND), key=lambda r: r.at):
        chat = chat_of[r.params["id"]]
        (sent,) = r.embeds
        message = embeds[(chat, f"{sent.get('title')}\n{sent.get('description')}")]
        sends.append(Sent(chat, r.at, r.status, r.retry_after, r.accepted, message))
    return sends


async def test_discord_storm_loses_nothing(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discord through 5xx (some retried by discord.py itself), per-channel 429s short and
    long, and a global 429 window: on SQLite."""
    store = sqlite_store
    chats: list[tuple[str, ChatType]] = [(str(c), "group") for c in DC_CHANNELS]
    chats.append((f"user:{DM_USER}", "private"))
    # The global window opens early, in the 503 stretch: no chat is then inside a retry of
    # discord.py's own (those do not look at a global limit again).
    storm = Storm(discord_script, global_after=8, global_s=0.4, whole_seconds=False)
    guild = p.guild(channels=tuple(p.text_channel(c, name=f"c{c % 10}") for c in DC_CHANNELS))
    async with dc.FakeDiscord(guilds=[guild], users=[p.user(DM_USER, "dmuser")]) as fake:
        monkeypatch.setattr("discord.http.Route.BASE", "unset")
        monkeypatch.setattr("discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY", "unset")
        configure_endpoints(DiscordSettings(api_base=fake.api_base, gateway_url=fake.gateway_url))
        settings = Settings()
        pacer = Pacer(settings.pacing.discord)
        router = CommandRouter(make_services(store, settings).services)
        bot = build_client(
            settings, router.handle, pacer, store, specs=COMMAND_SPECS, guild_ready_timeout=0.05
        )
        # What build_client sets to 30 s (discord.py's floor): lowered, so that a 429 the
        # client will not sleep through costs under a second here.
        bot.client.http.max_ratelimit_timeout = DISCORD_MAX_SLEEP_S
        dispatches = Dispatches()
        bot.client.http.http_trace = dispatches.trace
        messages = await queue_batch(store, "discord", chats)
        engine = AlertEngine(
            store, settings, retry=RetryPolicy(base_ms=100, max_ms=800, max_attempts=12)
        )
        await start(bot, "bot-token", sync_state=tmp_path / "discord_commands.sha256")
        try:
            fake.set_faults(_discord_plan(storm))
            started = time.monotonic()

            def now_ms() -> int:
                return NOW_MS + round((time.monotonic() - started) * 1000)

            results = await deliver_everything(
                engine, DiscordSender(bot.client, pacer), now_ms, lambda: asyncio.sleep(0.02)
            )
        finally:
            await close(bot)

    sends = discord_sends(fake, messages)
    await check_outbox(store, results, MESSAGES * len(chats))
    check_delivery(sends, [chat for chat, _ in chats])
    check_storm_happened(sends, storm, duplicated=len(chats))
    assert storm.global_until is not None
    opened = storm.global_until - storm.global_s
    assert any(r.global_limit for r in fake.recorded(SEND))
    assert not dispatches.ignored_global(opened, storm.global_until)
    check_order(sends, [chat for chat, _ in chats])
