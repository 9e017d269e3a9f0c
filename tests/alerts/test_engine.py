"""The alert engine, time-scripted with a fake clock, on SQLite and PostgreSQL: fire once, repeat
after the interval, grouping, inhibition, quiet hours, restarts, and delivery with retries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from alerts.delivery import SendResult
from alerts.engine import AlertEngine
from alerts.notifications import (
    ClusterApproach,
    GroupedMessage,
    LevelCross,
    LiqSpike,
    NoticeKind,
    message_from_dict,
)
from alerts.state import Status
from alerts.store import (
    Destination,
    Store,
    add_subscription,
    get_destination,
    get_log_entry,
    load_states,
    open_store,
    update_destination_settings,
    upsert_destination,
)
from alerts.store.models import OutboxRow
from alerts.subscriptions import Kind, Quotas, Side, Subscription
from core.config import AlertSettings, Settings
from core.liqmap import Cluster, CumulativePeaks
from core.snapshot import LiqTotals, Snapshot
from tests.alerts.conftest import clear
from tests.fakes.timing import ManualClock

MIN = 60_000
H = 3_600_000
T0 = int(datetime(2026, 1, 13, 8, tzinfo=UTC).timestamp() * 1000)
SETTINGS = Settings(alerts=AlertSettings(group_wait_s=10, group_interval_s=60))
QUOTAS = Quotas()


# --- helpers ---------------------------------------------------------------------------------


def short_cluster(price: float, usd: float = 300e6) -> Cluster:
    return Cluster("short", price, price * 0.999, price * 1.001, usd, {100.0: 0.45, 50.0: 0.38})


def snap(
    ts: int,
    price: float,
    *,
    symbol: str = "BTC",
    clusters: Sequence[Cluster] = (),
    short_1h: float = 0.0,
    long_1h: float = 0.0,
    prev: float = math.nan,
    stale: tuple[str, ...] = (),
) -> Snapshot:
    hour = LiqTotals(H, long_1h, short_1h)
    return Snapshot(
        symbol=symbol,
        ts_ms=ts,
        price=price,
        prev_price=prev,
        venues=("binance",),
        clusters=tuple(clusters),
        peaks=CumulativePeaks(0.0, price, 0.0, price),
        liqs={"tick": LiqTotals(MIN, 0.0, 0.0), "1h": hour, "24h": LiqTotals(24 * H, 0.0, 0.0)},
        stale=stale,
    )


def near(ts: int, **kw: Any) -> Snapshot:
    """BTC 0.83% below a $300M short cluster at 97,000."""
    return snap(ts, 96_200.0, clusters=[short_cluster(97_000.0)], **kw)


def far(ts: int, **kw: Any) -> Snapshot:
    """BTC 2.1% below it."""
    return snap(ts, 95_000.0, clusters=[short_cluster(97_000.0)], **kw)


async def chat(store: Store, chat_id: str = "100") -> int:
    return (await upsert_destination(store, "console", chat_id, "private", T0)).id


async def cluster_sub(store: Store, dest: int, side: Side = "short", pct: float = 1.0) -> int:
    sub = Subscription(0, dest, Kind.CLUSTER, "BTC", pct=pct, min_usd=100e6, side=side)
    return (await add_subscription(store, sub, QUOTAS, T0)).id


async def spike_sub(store: Store, dest: int, symbol: str = "BTC") -> int:
    sub = Subscription(0, dest, Kind.SPIKE, symbol, min_usd=50e6, side="short")
    return (await add_subscription(store, sub, QUOTAS, T0)).id


async def cross_sub(store: Store, dest: int, level: float = 96_000.0) -> int:
    sub = Subscription(0, dest, Kind.CROSS, "BTC", level=level, direction="up")
    return (await add_subscription(store, sub, QUOTAS, T0)).id


@dataclass(frozen=True)
class Row:
    id: int
    dedup_key: str
    destination_id: int
    silent: bool
    sent_ms: int | None
    next_attempt_ms: int | None
    message: GroupedMessage


async def outbox_rows(store: Store) -> list[Row]:
    c = OutboxRow.__table__.c
    stmt = select(
        c.id, c.dedup_key, c.destination_id, c.silent, c.sent_ms, c.next_attempt_ms, c.payload
    ).order_by(c.id)
    async with store.read() as conn:
        rows = (await conn.execute(stmt)).all()
    return [Row(*r[:6], message_from_dict(r[6])) for r in rows]


@dataclass
class FakeSender:
    """Answers from ``script`` (then "sent"), recording every call."""

    script: list[SendResult | Exception] = field(default_factory=list)
    calls: list[tuple[int, GroupedMessage]] = field(default_factory=list)

    async def __call__(self, dest: Destination, msg: GroupedMessage) -> SendResult:
        self.calls.append((dest.id, msg))
        answer = self.script.pop(0) if self.script else SendResult.sent()
        if isinstance(answer, Exception):
            raise answer
        return answer


async def started(store: Store, now: int = T0) -> AlertEngine:
    engine = AlertEngine(store, SETTINGS, ManualClock(now / 1000))
    await engine.start(now)
    return engine


# --- firing and repeating ----------------------------------------------------------------------


async def test_cluster_alert_fires_once_and_again_after_the_repeat_interval(store: Store) -> None:
    dest = await chat(store)
    sub = await cluster_sub(store, dest)
    engine = await started(store)

    assert (await engine.tick(T0, [far(T0)])).messages == ()
    fired = await engine.tick(T0 + MIN, [near(T0 + MIN)])
    assert fired.notified[Kind.CLUSTER] == 1 and len(fired.queued) == 1
    (msg,) = fired.messages
    (item,) = msg.items
    assert item.subscription_id == sub and item.destination_id == dest
    payload = item.payload
    assert isinstance(payload, ClusterApproach)
    assert payload.cluster_price == 97_000.0 and payload.cluster_usd == 300e6
    assert payload.threshold_pct == 1.0 and payload.min_usd == 100e6
    assert msg.headline == (
        "BTC $96,200 is 0.8% below a $300M short cluster at $97,000 (100x 45%, 50x 38%)"
    )

    # Holding for almost four hours: not again (the repeat interval is 4h).
    for t in range(T0 + 16 * MIN, T0 + MIN + 4 * H, 15 * MIN):
        assert (await engine.tick(t, [near(t)])).queued == ()
    again = await engine.tick(T0 + MIN + 4 * H, [near(T0 + MIN + 4 * H)])
    assert len(again.queued) == 1
    rows = await outbox_rows(store)
    assert [r.message.created_ms for r in rows] == [T0 + MIN, T0 + MIN + 4 * H]
    stored = (await load_states(store, Kind.CLUSTER)).states.state(0)
    assert stored.status == Status.FIRING and stored.fired_count == 2


async def test_a_stale_snapshot_never_fires(store: Store) -> None:
    dest = await chat(store)
    await cluster_sub(store, dest)
    engine = await started(store)
    stale = await engine.tick(T0, [near(T0, stale=("binance:BTC:1h",))])
    assert stale.notified[Kind.CLUSTER] == 0 and stale.messages == ()
    assert len(await outbox_rows(store)) == 0
    assert len((await engine.tick(T0 + MIN, [near(T0 + MIN)])).queued) == 1


# --- grouping, inhibition, quiet hours ----------------------------------------------------------


async def test_a_chats_notifications_of_one_tick_are_one_message(store: Store) -> None:
    a, b = await chat(store, "a"), await chat(store, "b")
    await cluster_sub(store, a)
    await cross_sub(store, a, 96_000.0)
    await spike_sub(store, a, "ETH")
    await cluster_sub(store, b)
    engine = await started(store)
    await engine.tick(T0, [far(T0), snap(T0, 3_300.0, symbol="ETH")])
    t = T0 + MIN
    eth = snap(t, 3_250.0, symbol="ETH", short_1h=80e6)
    result = await engine.tick(t, [near(t, prev=95_000.0), eth])
    assert result.notified == {Kind.CLUSTER: 2, Kind.CROSS: 1, Kind.SPIKE: 1, Kind.ETF: 0}
    assert [m.destination_id for m in result.messages] == [a, b]
    first = result.messages[0]
    assert [type(i.payload) for i in first.items] == [LiqSpike, ClusterApproach, LevelCross]
    assert first.headline == "3 alerts (BTC, ETH)"
    rows = await outbox_rows(store)
    assert sorted(r.destination_id for r in rows) == [a, b]
    assert {r.dedup_key for r in rows} == {m.key for m in result.messages}


async def test_a_spike_inhibits_the_approach_alert_of_the_same_symbol_and_tick(
    store: Store,
) -> None:
    dest = await chat(store)
    cluster = await cluster_sub(store, dest)
    await spike_sub(store, dest)
    engine = await started(store)
    result = await engine.tick(T0, [near(T0, short_1h=120e6)])
    assert result.notified[Kind.CLUSTER] == 1 and result.notified[Kind.SPIKE] == 1
    (suppressed,) = result.suppressed
    assert suppressed.item.subscription_id == cluster
    assert suppressed.by.payload.kind == NoticeKind.LIQ_SPIKE
    (msg,) = result.messages
    assert [i.payload.kind for i in msg.items] == [NoticeKind.LIQ_SPIKE]
    assert msg.headline == "BTC short liquidations: $120M in 1h, above your $50M alert"


async def test_quiet_hours_send_silently(store: Store) -> None:
    dest = await chat(store)
    await update_destination_settings(
        store, dest, timezone="Europe/Berlin", quiet_hours=(23 * 60, 7 * 60)
    )
    await cluster_sub(store, dest)
    night = int(datetime(2026, 1, 13, 0, 30, tzinfo=UTC).timestamp() * 1000)  # 01:30 Berlin
    engine = await started(store, night)
    (msg,) = (await engine.tick(night, [near(night)])).messages
    assert msg.silent and msg.mute_reason == "quiet_hours"
    sender = FakeSender()
    drained = await engine.drain(sender, night + 1_000, "w1")
    assert len(drained.sent) == 1
    ((_, sent),) = sender.calls
    assert sent.silent and sent.key == msg.key  # delivered, without a sound
    (row,) = await outbox_rows(store)
    assert row.silent and row.sent_ms == night + 1_000

    day = night + 8 * H  # 09:30 Berlin
    await engine.tick(day - 60 * MIN, [far(day - 60 * MIN)])  # leaves by the margin: re-arms
    (loud,) = (await engine.tick(day, [near(day)])).messages
    assert not loud.silent and loud.mute_reason is None


async def test_a_message_within_group_interval_is_delayed_durably(store: Store) -> None:
    dest = await chat(store)
    await cluster_sub(store, dest)
    await spike_sub(store, dest, "ETH")
    settings = Settings(alerts=AlertSettings(group_wait_s=10, group_interval_s=600))
    engine = AlertEngine(store, settings, ManualClock(T0 / 1000))
    await engine.start(T0)
    await engine.tick(T0, [near(T0), snap(T0, 3_300.0, symbol="ETH")])
    t = T0 + MIN
    later = await engine.tick(t, [near(t), snap(t, 3_250.0, symbol="ETH", short_1h=80e6)])
    (msg,) = later.messages
    rows = await outbox_rows(store)
    assert [r.next_attempt_ms for r in rows] == [T0, T0 + 600_000]  # 10 min after the first
    sender = FakeSender()
    assert len((await engine.drain(sender, t + 1_000, "w")).sent) == 1
    assert len((await engine.drain(sender, T0 + 599_000, "w")).sent) == 0
    assert (await engine.drain(sender, T0 + 600_000, "w")).sent_keys == [msg.key]


# --- subscriptions change, restarts -------------------------------------------------------------


async def test_reload_keeps_the_states_of_known_subscriptions(store: Store) -> None:
    dest = await chat(store)
    await cluster_sub(store, dest)
    engine = await started(store)
    assert len((await engine.tick(T0, [near(T0)])).queued) == 1
    await cluster_sub(store, dest, pct=2.0)  # a second chat alert, added while running
    engine.subscriptions_changed()
    t = T0 + MIN
    result = await engine.tick(t, [near(t)])
    assert result.notified[Kind.CLUSTER] == 1  # the new one; the first is still firing
    (item,) = result.messages[0].items
    assert isinstance(item.payload, ClusterApproach) and item.payload.threshold_pct == 2.0


async def test_a_restart_repeats_nothing(store_url: str) -> None:
    first = await open_store(store_url)
    try:
        await clear(first)
        dest = await chat(first)
        await cluster_sub(first, dest)
        await spike_sub(first, dest, "ETH")
        engine = await started(first)
        fired = await engine.tick(T0, [near(T0), snap(T0, 3_300.0, symbol="ETH", short_1h=90e6)])
        assert len(fired.queued) == 1
        await engine.drain(FakeSender(), T0 + 1_000, "w1")  # sent and logged
    finally:
        await first.close()

    second = await open_store(store_url)  # a new process on the same database
    try:
        engine = await started(second, T0 + 5 * MIN)
        assert engine.states[Kind.CLUSTER].status.tolist() == [Status.FIRING]
        # The same tick evaluated again (a crash before the scheduler recorded it) and later
        # ticks with the conditions still holding: nothing new is queued or sent.
        for t in (T0, T0 + 5 * MIN, T0 + 2 * H):
            eth = snap(t, 3_300.0, symbol="ETH", short_1h=90e6)
            result = await engine.tick(t, [near(t), eth])
            assert result.queued == () and result.messages == ()
        sender = FakeSender()
        assert (await engine.drain(sender, T0 + 2 * H, "w2")).claimed == 0
        assert sender.calls == []
        assert len(await outbox_rows(second)) == 1
    finally:
        await second.close()


# --- delivery ------------------------------------------------------------------------------------


async def test_drain_marks_sent_and_retries_transient_failures(store: Store) -> None:
    dest = await chat(store)
    await cluster_sub(store, dest)
    engine = await started(store)
    (msg,) = (await engine.tick(T0, [near(T0)])).messages
    sender = FakeSender([SendResult.transient("timeout"), RuntimeError("socket closed")])

    first = await engine.drain(sender, T0 + 1_000, "w")
    assert len(first.retried) == 1 and first.sent == []
    (row,) = await outbox_rows(store)
    assert row.sent_ms is None and row.next_attempt_ms == T0 + 1_000 + 5_000
    assert (await engine.drain(sender, T0 + 2_000, "w")).claimed == 0  # not due yet
    second = await engine.drain(sender, T0 + 6_000, "w")  # the sender raised: transient too
    assert len(second.retried) == 1
    (row,) = await outbox_rows(store)
    assert row.next_attempt_ms == T0 + 6_000 + 10_000  # backoff doubles
    third = await engine.drain(sender, T0 + 16_000, "w")
    assert third.sent_keys == [msg.key] and len(sender.calls) == 3
    entry = await get_log_entry(store, msg.key)
    assert entry is not None and entry.sent_ms == T0 + 16_000
    destination = await get_destination(store, dest)
    assert destination is not None and destination.enabled


async def test_a_definitive_failure_disables_the_chat_only_when_repeated(store: Store) -> None:
    dest = await chat(store)
    await cluster_sub(store, dest)
    engine = await started(store)
    await engine.tick(T0, [near(T0)])
    blocked = SendResult.failed("Forbidden: bot was blocked by the user")
    sender = FakeSender([blocked, blocked, blocked])
    now = T0 + 1_000
    for attempt in (1, 2):
        result = await engine.drain(sender, now, "w")
        assert len(result.retried) == 1 and result.disabled == []
        d = await get_destination(store, dest)
        assert d is not None and d.enabled and d.failures == attempt
        (row,) = await outbox_rows(store)
        now = row.next_attempt_ms or 0
    last = await engine.drain(sender, now, "w")
    assert len(last.dead) == 1 and last.disabled == [dest]
    d = await get_destination(store, dest)
    assert d is not None and not d.enabled and d.disabled_reason == blocked.error
    (row,) = await outbox_rows(store)
    assert row.sent_ms is None and row.next_attempt_ms is None  # kept, as a dead letter
    # A disabled chat gets no new messages.
    t = now + 5 * H
    await engine.tick(t - H, [far(t - H)])
    assert (await engine.tick(t, [near(t)])).messages == ()


async def test_a_success_resets_the_failure_count(store: Store) -> None:
    dest = await chat(store)
    await cluster_sub(store, dest)
    engine = await started(store)
    await engine.tick(T0, [near(T0)])
    sender = FakeSender([SendResult.failed("chat not found")])
    await engine.drain(sender, T0 + 1_000, "w")
    d = await get_destination(store, dest)
    assert d is not None and d.failures == 1
    assert len((await engine.drain(sender, T0 + 10_000, "w")).sent) == 1
    d = await get_destination(store, dest)
    assert d is not None and d.failures == 0 and d.enabled


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_tick_starts_the_engine_when_not_started(store: Store) -> None:
    dest = await chat(store)
    await cluster_sub(store, dest)
    engine = AlertEngine(store, SETTINGS, ManualClock(T0 / 1000))
    assert not engine.started
    assert len((await engine.tick(None, [near(T0)])).queued) == 1  # now from the clock
    assert engine.started
