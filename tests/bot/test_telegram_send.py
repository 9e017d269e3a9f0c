"""The Telegram outbox sender over real sockets: PTB's Bot against the fake Bot API.

Pacing runs on a manual clock (its waits take no wall time); where the fake enforces
Telegram's rate limits it shares that clock, so "the pacer stays under the limits" is checked
exactly, without timing anything.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from telegram import Bot

from alerts.delivery import RetryPolicy, drain
from alerts.notifications import GroupedMessage, LevelCross, Outgoing, message_to_dict
from alerts.store import (
    Destination,
    Envelope,
    Store,
    enqueue,
    find_destination,
    get_destination,
    open_store,
    upsert_destination,
)
from alerts.store.repo import ChatType
from bot.pacing import Pacer
from bot.telegram_send import PhotoIds, TelegramSender
from core.config import LaneLimits
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.timing import ManualClock

NOW_MS = 1_768_300_000_000
GROUP = -1001
PRIVATE = 42


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # RetryAfter warns about its coming type otherwise


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'liqbot.db'}")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(now=1000.0)


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=clock) as f:
        yield f


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as b:
        yield b


@pytest.fixture
def pacer(clock: ManualClock) -> Pacer:
    return Pacer(LaneLimits(), clock=clock, sleep=clock.sleep)


def cross(dest: Destination, n: int = 0, symbol: str = "BTC") -> GroupedMessage:
    payload = LevelCross(symbol, NOW_MS, 96_000.0 + n, 96_150.0 + n, 95_800.0)
    item = Outgoing(dest.id, 1, NOW_MS + n, payload)
    return GroupedMessage(dest.id, f"k{dest.id}:{n}", NOW_MS + n, (item,))


async def queue(store: Store, *msgs: GroupedMessage) -> None:
    await enqueue(
        store,
        [
            Envelope(m.key, m.destination_id, "level_cross", m.created_ms, message_to_dict(m))
            for m in msgs
        ],
        NOW_MS,
    )


async def destination(store: Store, chat_id: int, chat_type: ChatType = "group") -> Destination:
    return await upsert_destination(store, "telegram", str(chat_id), chat_type, NOW_MS, "t")


async def test_a_firing_alert_arrives_as_an_escaped_html_message(
    fake: FakeTelegram, bot: Bot, store: Store, pacer: Pacer
) -> None:
    dest = await destination(store, GROUP)
    await queue(store, cross(dest, symbol="<b>BTC&co</b>"))
    result = await drain(store, TelegramSender(bot, store, pacer), NOW_MS, "w1")
    assert len(result.sent) == 1
    (call,) = fake.calls_to("sendMessage")
    assert call.chat_id == str(GROUP)
    assert call.params["parse_mode"] == "HTML"
    assert call.params["text"].startswith("<b>&lt;b&gt;BTC&amp;co&lt;/b&gt; crossed above")
    assert "disable_notification" not in call.params or not call.params["disable_notification"]


async def test_a_silent_message_is_sent_without_notification(
    fake: FakeTelegram, bot: Bot, store: Store, pacer: Pacer
) -> None:
    dest = await destination(store, PRIVATE, "private")
    msg = cross(dest)
    await queue(store, GroupedMessage(msg.destination_id, msg.key, msg.created_ms, msg.items, True))
    await drain(store, TelegramSender(bot, store, pacer), NOW_MS, "w1")
    (call,) = fake.calls_to("sendMessage")
    assert call.params["disable_notification"] is True


async def test_retry_after_is_a_transient_failure_due_after_the_wait(
    fake: FakeTelegram, bot: Bot, store: Store, pacer: Pacer
) -> None:
    dest = await destination(store, GROUP)
    sender = TelegramSender(bot, store, pacer)
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    result = await sender(dest, cross(dest))
    assert not result.ok and not result.definitive
    assert result.retry_after_s == 1.0
    assert pacer.stats().backoffs == 1

    await queue(store, cross(dest))
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    first = await drain(store, sender, NOW_MS, "w1")
    assert first.retried and not first.sent
    assert not (await drain(store, sender, NOW_MS + 2_999, "w1")).claimed
    assert (await drain(store, sender, NOW_MS + 3_000, "w1")).sent == first.retried


async def test_forbidden_disables_the_destination_after_repeated_failures(
    fake: FakeTelegram, bot: Bot, store: Store, pacer: Pacer
) -> None:
    dest = await destination(store, PRIVATE, "private")
    policy = RetryPolicy(base_ms=1, disable_after=3)
    fake.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user", times=3)
    await queue(store, cross(dest))
    sender = TelegramSender(bot, store, pacer)
    outcomes = []
    for i in range(policy.disable_after):
        result = await drain(store, sender, NOW_MS + 60_000 * i, "w1", policy=policy)
        outcomes.append((len(result.retried), len(result.dead)))
        state = await get_destination(store, dest.id)
        assert state is not None
        assert state.enabled == (i < policy.disable_after - 1)
    assert outcomes == [(1, 0), (1, 0), (0, 1)]
    final = await get_destination(store, dest.id)
    assert final is not None and final.disabled_reason is not None
    assert "blocked" in final.disabled_reason
    assert len(fake.calls_to("sendMessage")) == 3


async def test_chat_not_found_is_definitive(
    fake: FakeTelegram, bot: Bot, store: Store, pacer: Pacer
) -> None:
    dest = await destination(store, GROUP)
    fake.fail_next("sendMessage", 400, "Bad Request: chat not found")
    result = await TelegramSender(bot, store, pacer)(dest, cross(dest))
    assert result.definitive and "chat not found" in result.error.lower()

    fake.fail_next("sendMessage", 400, "Bad Request: message to edit not found")
    assert not (await TelegramSender(bot, store, pacer)(dest, cross(dest))).definitive


async def test_chat_migrated_moves_the_destination_and_delivers_there(
    fake: FakeTelegram, bot: Bot, store: Store, pacer: Pacer
) -> None:
    dest = await destination(store, -555)
    new_id = -1009876543210
    fake.fail_next(
        "sendMessage",
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        migrate_to_chat_id=new_id,
    )
    await queue(store, cross(dest))
    result = await drain(store, TelegramSender(bot, store, pacer), NOW_MS, "w1")
    assert len(result.sent) == 1
    assert [c.chat_id for c in fake.calls_to("sendMessage")] == ["-555", str(new_id)]
    moved = await find_destination(store, "telegram", str(new_id))
    assert moved is not None and moved.id == dest.id and moved.enabled
    assert await find_destination(store, "telegram", "-555") is None


async def test_a_network_failure_is_transient(
    fake: FakeTelegram, bot: Bot, store: Store, pacer: Pacer
) -> None:
    dest = await destination(store, GROUP)
    fake.fail_next("sendMessage", 502, "Bad Gateway")
    result = await TelegramSender(bot, store, pacer)(dest, cross(dest))
    assert not result.ok and not result.definitive and result.retry_after_s is None


async def test_broadcasts_stay_under_telegram_limits(
    fake: FakeTelegram, bot: Bot, store: Store, pacer: Pacer, clock: ManualClock
) -> None:
    """25 alerts to one group: the 20/min group limit holds the last 5 back (virtual time)."""
    fake.enforce_rates()
    dest = await destination(store, GROUP)
    fake.chats[GROUP] = {"id": GROUP, "type": "supergroup", "title": "g"}
    await queue(store, *(cross(dest, n) for n in range(25)))
    result = await drain(store, TelegramSender(bot, store, pacer), NOW_MS, "w1")
    assert len(result.sent) == 25
    assert fake.rejected_429 == 0
    times = [c.at for c in fake.calls_to("sendMessage")]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
    assert times[20] - times[0] >= 60.0


async def test_a_429_backs_the_chat_off_for_retry_after(
    fake: FakeTelegram, bot: Bot, store: Store, clock: ManualClock
) -> None:
    """With limits too high to pace anything, the fake refuses the second message to a chat
    within a second. The third is held back behind it (not sent out of order); the next drain,
    once the retry is due, sends both in order, the pacer having waited out the backoff."""
    fake.enforce_rates()
    unlimited = Pacer(
        LaneLimits(global_per_s=1e6, per_chat_per_s=1e6, per_group_per_min=1e6),
        clock=clock,
        sleep=clock.sleep,
    )
    dest = await destination(store, PRIVATE, "private")
    await queue(store, *(cross(dest, n) for n in range(3)))
    sender = TelegramSender(bot, store, unlimited)
    result = await drain(store, sender, NOW_MS, "w1")
    assert (len(result.sent), len(result.retried), len(result.held)) == (1, 1, 1)
    assert fake.rejected_429 == 1
    retry_at = NOW_MS + 1_000  # the fake's retry_after
    assert (await drain(store, sender, retry_at - 1, "w1")).claimed == 0  # not due yet
    for t in range(retry_at, retry_at + 5_000, 1_000):  # (the third may meet a 429 too)
        await drain(store, sender, t, "w1")
    assert clock.sleeps and sum(clock.sleeps) >= 1.0
    assert len(fake.delivered) == 3
    prices = [int(str(c.params["text"]).split("96,")[1][:3]) for c in fake.delivered]
    assert prices == sorted(prices) and len(prices) == 3  # 96,000, 96,001, 96,002: in order


# --- PhotoIds: one upload per chart ------------------------------------------------------------

PNG = b"\x89PNG chart bytes"


async def test_an_upload_in_flight_is_waited_for_not_repeated() -> None:
    ids = PhotoIds()
    release = asyncio.Event()
    uploads = 0

    async def send(who: str) -> str:
        nonlocal uploads
        known = await ids.get_or_wait(PNG)
        if known is not None:
            return f"{who} by {known}"
        with ids.uploading(PNG):
            uploads += 1
            await release.wait()
            ids.put(PNG, "file-1")
        return f"{who} uploaded"

    first = asyncio.create_task(send("a"))
    await asyncio.sleep(0)  # a claims the upload
    others = [asyncio.create_task(send(w)) for w in "bcd"]
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in others)  # waiting for a's id, not uploading
    release.set()
    assert await first == "a uploaded"
    assert [await t for t in others] == ["b by file-1", "c by file-1", "d by file-1"]
    assert uploads == 1 and ids.get(PNG) == "file-1"


async def test_a_failed_upload_lets_the_waiters_upload() -> None:
    ids = PhotoIds()
    started = asyncio.Event()

    async def failing() -> None:
        with ids.uploading(PNG):
            started.set()
            await asyncio.sleep(0.01)
            raise ConnectionError("upload failed")

    upload = asyncio.create_task(failing())
    await started.wait()
    assert await ids.get_or_wait(PNG) is None  # the caller uploads it itself
    with pytest.raises(ConnectionError):
        await upload
    assert ids.get(PNG) is None


async def test_a_slow_upload_is_waited_for_at_most_wait_s() -> None:
    ids = PhotoIds(wait_s=0.05)
    with ids.uploading(PNG):
        assert await ids.get_or_wait(PNG) is None  # gave up waiting: uploads itself
        with ids.uploading(PNG):  # that second upload does not take over the first's waiters
            ids.put(PNG, "file-2")
    assert await ids.get_or_wait(PNG) == "file-2"
