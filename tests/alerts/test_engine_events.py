"""ETF alerts as one notification per event, and scheduled digests, through the whole engine
on SQLite and PostgreSQL with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from alerts.digests import after_etf_slot_ms
from alerts.engine import AlertEngine
from alerts.notifications import Digest, EtfFlow, EtfReversal
from alerts.scheduler import TickRunner, engine_jobs
from alerts.store import (
    Store,
    add_subscription,
    disable_destination,
    update_destination_settings,
)
from alerts.subscriptions import EtfMode, Kind, Subscription, Timing
from core.config import AlertSettings, Settings
from core.etf import EtfFlows
from core.etf_report import FlowReport, flow_report
from core.snapshot import Snapshot
from tests.alerts.test_engine import QUOTAS, chat, near, outbox_rows
from tests.fakes.timing import ManualClock

H = 3_600_000
DAY = 24 * H
JAN = [
    ("2025-12-29", 100.0),
    ("2025-12-30", 50.0),
    ("2025-12-31", -20.0),
    ("2026-01-02", 300.0),
    ("2026-01-05", 200.0),
    ("2026-01-06", -312.0),
    ("2026-01-07", -486.1),
    ("2026-01-08", -398.9),
    ("2026-01-09", -250.0),
    ("2026-01-12", 116.7),
    ("2026-01-13", 753.8),
    ("2026-01-14", 840.6),
    ("2026-01-15", -90.0),
    ("2026-01-16", -120.0),
    ("2026-01-20", -260.0),
    ("2026-01-21", -275.0),
    ("2026-01-22", 410.0),
]


def report(asof: str) -> FlowReport:
    total = np.array([t for _, t in JAN])
    flows = EtfFlows(
        dates=np.array([d for d, _ in JAN], dtype="datetime64[D]"),
        funds=("IBIT", "FBTC"),
        flows=np.stack([total * 0.6, total * 0.4], axis=1),
        total=total,
    )
    return flow_report(flows, asof=asof)


def ms(day: str, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    d = datetime.fromisoformat(day).replace(hour=hour, minute=minute, second=second, tzinfo=UTC)
    return int(d.timestamp() * 1000)


async def etf_sub(store: Store, dest: int, mode: EtfMode = "reversal", thr: float = 0.0) -> int:
    sub = Subscription(
        0, dest, Kind.ETF, None, etf_mode=mode, threshold_musd=thr, timing=Timing(repeat_s=3600)
    )
    return (await add_subscription(store, sub, QUOTAS, ms("2026-01-01"))).id


async def digest_sub(store: Store, dest: int, schedule: str, expires_ms: int | None = None) -> int:
    sub = Subscription(
        0, dest, Kind.DIGEST, None, schedule=schedule, timing=Timing(expires_ms=expires_ms)
    )
    return (await add_subscription(store, sub, QUOTAS, ms("2026-01-01"))).id


def engine(store: Store, now: int) -> AlertEngine:
    clock = ManualClock(now / 1000)
    return AlertEngine(store, Settings(alerts=AlertSettings(group_interval_s=0)), clock)


def reversal_day(payload: object) -> str:
    assert isinstance(payload, EtfReversal)
    return (payload.reversal_date or payload.date).isoformat()


# --- ETF alerts: one per event ------------------------------------------------------------------


async def test_an_etf_reversal_is_announced_once_however_long_the_report_holds_it(
    store: Store,
) -> None:
    dest = await chat(store)
    await etf_sub(store, dest)
    eng = engine(store, ms("2026-01-12"))
    fired: list[tuple[int, EtfReversal]] = []
    # Hourly ticks from the reversal day's report through the confirming day's, far past the
    # subscription's 1 h repeat interval: the report holds the reversal all along.
    for day in ("2026-01-12", "2026-01-13"):
        rep = report(day)
        for hour in range(24):
            now = ms(day, hour) + DAY  # the report of a day is published the day after
            result = await eng.tick(now, [], rep)
            fired += [(now, i.payload) for i in result.items if isinstance(i.payload, EtfReversal)]
    assert len(fired) == 1
    assert reversal_day(fired[0][1]) == "2026-01-12"
    assert len(await outbox_rows(store)) == 1


async def test_the_next_etf_reversal_fires_again(store: Store) -> None:
    dest = await chat(store)
    await etf_sub(store, dest)
    eng = engine(store, ms("2026-01-13"))
    days = []
    for day in ("2026-01-12", "2026-01-13", "2026-01-14", "2026-01-16", "2026-01-22"):
        for hour in (0, 6, 12):
            result = await eng.tick(ms(day, hour) + DAY, [], report(day))
            days += [reversal_day(i.payload) for i in result.items]
    # The bullish reversal of 01-12, then the bearish one of 01-15 (confirmed 01-16), then the
    # bullish one of 01-22: each once.
    assert days == ["2026-01-12", "2026-01-15", "2026-01-22"]


async def test_an_etf_threshold_fires_once_per_trading_day(store: Store) -> None:
    dest = await chat(store)
    await etf_sub(store, dest, "threshold", 500.0)
    eng = engine(store, ms("2026-01-13"))
    seen: list[float] = []
    for day in ("2026-01-12", "2026-01-13", "2026-01-14", "2026-01-15"):
        for hour in range(0, 24, 3):
            result = await eng.tick(ms(day, hour) + DAY, [], report(day))
            seen += [i.payload.total_musd for i in result.items]  # type: ignore[union-attr]
    assert seen == [753.8, 840.6]  # two days beyond $500M, one alert each; 01-12 and 01-15 not


async def test_an_etf_event_already_announced_is_not_repeated_after_a_restart(
    store: Store,
) -> None:
    dest = await chat(store)
    await etf_sub(store, dest)
    first = engine(store, ms("2026-01-13"))
    assert len((await first.tick(ms("2026-01-13", 1), [], report("2026-01-12"))).items) == 1
    again = engine(store, ms("2026-01-13", 2))  # a new process: states come from the store
    for hour in range(2, 24):
        assert (await again.tick(ms("2026-01-13", hour), [], report("2026-01-13"))).items == ()


async def test_an_etf_payload_says_why_with_numbers(store: Store) -> None:
    dest = await chat(store)
    await etf_sub(store, dest, "threshold", 500.0)
    eng = engine(store, ms("2026-01-14"))
    (item,) = (await eng.tick(ms("2026-01-14"), [], report("2026-01-13"))).items
    assert isinstance(item.payload, EtfFlow)
    assert "+$753.8M" in item.payload.headline and "$500M" in item.payload.headline


# --- digests ------------------------------------------------------------------------------------


def snaps(now: int) -> list[Snapshot]:
    return [near(now)]


async def test_a_digest_goes_once_per_slot_to_each_live_subscriber(store: Store) -> None:
    now = ms("2026-01-13", 9, 0, 30)
    a, b, off, gone = [await chat(store, c) for c in ("1", "2", "3", "4")]
    await digest_sub(store, a, "hourly")
    await digest_sub(store, b, "hourly")
    await digest_sub(store, b, "daily")
    await digest_sub(store, off, "hourly")
    await digest_sub(store, gone, "hourly", expires_ms=now - 1)
    await disable_destination(store, off, "blocked the bot")
    eng = engine(store, now)
    slot = ms("2026-01-13", 9)
    keys = await eng.digest("hourly", slot, snaps(now), report("2026-01-12"), now_ms=now)
    assert len(keys) == 2
    rows = await outbox_rows(store)
    assert sorted(r.destination_id for r in rows) == [a, b]
    payload = rows[0].message.items[0].payload
    assert isinstance(payload, Digest)
    assert payload.schedule == "hourly" and payload.items[0].symbol == "BTC"
    assert "Hourly digest: BTC $96,200" in rows[0].message.text
    assert "ETF flows +$116.7M on 2026-01-12" in rows[0].message.text
    # The same slot again (a retry, a restart): nothing new.
    assert await eng.digest("hourly", slot, snaps(now), now_ms=now + 5_000) == ()
    assert len(await outbox_rows(store)) == 2


async def test_a_digest_in_quiet_hours_is_sent_silently(store: Store) -> None:
    now = ms("2026-01-13", 2)
    dest = await chat(store)
    await digest_sub(store, dest, "hourly")
    await update_destination_settings(store, dest, quiet_hours=(60, 7 * 60))
    keys = await engine(store, now).digest("hourly", now, snaps(now), now_ms=now)
    assert len(keys) == 1
    (row,) = await outbox_rows(store)
    assert row.silent and row.message.mute_reason is not None


async def test_an_after_etf_digest_goes_once_per_trading_day(store: Store) -> None:
    dest = await chat(store)
    await digest_sub(store, dest, "after-etf")
    eng = engine(store, ms("2026-01-13"))
    sent: list[str] = []
    for day, at in (("2026-01-12", 1), ("2026-01-12", 5), ("2026-01-13", 1), ("2026-01-13", 9)):
        now = ms(day, at) + DAY
        sent += await eng.digest("after-etf", now, snaps(now), report(day), now_ms=now)
    assert len(sent) == 2
    assert await eng.digest("after-etf", 0, snaps(0), None) == ()  # no report, no digest
    rows = await outbox_rows(store)
    slots = [r.message.items[0].payload.ts_ms for r in rows]
    assert slots == [after_etf_slot_ms(report(d)) for d in ("2026-01-12", "2026-01-13")]


async def test_cron_jobs_send_the_hourly_and_daily_digests_on_schedule(store: Store) -> None:
    dest = await chat(store)
    await digest_sub(store, dest, "hourly")
    await digest_sub(store, dest, "daily")
    start = ms("2026-01-12")  # a Monday
    clock = ManualClock(start / 1000)
    settings = AlertSettings(tick_s=60.0)
    eng = AlertEngine(store, Settings(alerts=settings), clock)

    async def inputs() -> tuple[list[Snapshot], FlowReport | None]:
        return snaps(int(clock() * 1000)), report("2026-01-09")

    async def idle(now_ms: int) -> None:
        return None

    jobs = engine_jobs(
        settings,
        polls=[],
        snapshot=idle,
        evaluate=idle,
        drain=idle,
        drain_every_s=3600.0,
        hourly_digest=eng.digest_job("hourly", inputs),
        daily_digest=eng.digest_job("daily", inputs),
    )
    runner = TickRunner(jobs, settings, clock=clock)
    while (nxt := runner.next_wakeup_s()) is not None and nxt < start / 1000 + 2 * 86_400:
        clock.now = nxt
        runner.run_due()
        await runner.join()
    rows = await outbox_rows(store)
    kinds = [r.message.items[0].payload.schedule for r in rows]  # type: ignore[union-attr]
    assert kinds.count("hourly") == 48 and kinds.count("daily") == 2
    daily = [r.message.items[0].payload.ts_ms for r in rows if "Daily" in r.message.text]
    assert daily == [ms("2026-01-12", 22), ms("2026-01-13", 22)]  # 22:00 UTC on weekdays
