"""Scheduling (alerts.scheduler): no stacking, coalescing, misfire grace, UTC crons, isolation.

:class:`TickRunner` runs on a fake clock (no test waits for real time). The APScheduler path is
tested with APScheduler's own machinery: jobs are made due by moving their ``next_run_time``
(into the past for coalescing and misfires), so nothing waits for the wall clock either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.scheduler import (
    DAILY_DIGEST_CRON,
    HOURLY_DIGEST_CRON,
    Cron,
    Every,
    Job,
    JobFunc,
    JobRunner,
    PollSpec,
    TickRunner,
    build_scheduler,
    describe_jobs,
    engine_jobs,
)
from core.config import AlertSettings
from core.errors import InputError
from tests.fakes.timing import ManualClock

SETTINGS = AlertSettings(tick_s=60.0, misfire_grace_s=30.0)
MONDAY = datetime(2026, 1, 12, tzinfo=UTC).timestamp()  # 2026-01-12 00:00Z, a Monday


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


class Recorder:
    """Job functions that record the ``now_ms`` they were called with."""

    def __init__(self) -> None:
        self.calls: dict[str, list[int]] = {}

    def job(self, name: str) -> JobFunc:
        async def run(now_ms: int) -> None:
            self.calls.setdefault(name, []).append(now_ms)

        return run


class Gate:
    """A job that runs until the test opens the gate (a slow job, in no real time)."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.open = asyncio.Event()

    async def __call__(self, now_ms: int) -> None:
        self.started += 1
        await self.open.wait()
        self.finished += 1


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


# -- specs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Every(0), "positive"),
        (lambda: Every(60, offset_s=60), "offset"),
        (lambda: Cron("0 22 * *"), "5 fields"),
        (lambda: Cron("0 22 * * 1-5"), "use names"),
        (lambda: Cron("0 25 * * *"), "invalid cron"),
        (lambda: Cron("0 22 * * *", second=60), "second"),
    ],
)
def test_bad_schedules_are_explained(make: Callable[[], object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        make()


def test_duplicate_job_ids_are_refused() -> None:
    rec = Recorder()
    with pytest.raises(InputError, match="two jobs"):
        JobRunner([Job("a", rec.job("a"), Every(60)), Job("a", rec.job("b"), Every(60))])


@pytest.mark.parametrize(
    ("cron", "after", "fires"),
    [
        # Weekdays at 22:00:30 UTC: Friday's, then Monday's (the weekend has no US flows).
        (
            DAILY_DIGEST_CRON,
            utc(2026, 1, 16, 12),
            [utc(2026, 1, 16, 22, 0, 30), utc(2026, 1, 19, 22, 0, 30), utc(2026, 1, 20, 22, 0, 30)],
        ),
        (
            HOURLY_DIGEST_CRON,
            utc(2026, 1, 17, 10, 15),
            [utc(2026, 1, 17, 11, 0, 30), utc(2026, 1, 17, 12, 0, 30)],
        ),
        ("30 21 * * tue,thu", utc(2026, 1, 12), [utc(2026, 1, 13, 21, 30, 30)]),
    ],
)
def test_cron_fire_times_are_utc(cron: str, after: datetime, fires: list[datetime]) -> None:
    trigger = Cron(cron, second=30).trigger(after.timestamp())
    got, prev = [], None
    for _ in fires:
        prev = trigger.get_next_fire_time(prev, prev or after)  # as APScheduler asks
        got.append(prev)
    assert got == fires
    assert all(t.utcoffset() == timedelta(0) for t in got)


def test_every_is_on_the_epoch_grid_plus_offset() -> None:
    trigger = Every(60, offset_s=5).trigger(MONDAY + 1234.5)
    first = trigger.get_next_fire_time(None, datetime.fromtimestamp(MONDAY + 1234.5, UTC))
    assert first == datetime.fromtimestamp(MONDAY + 1265, UTC)  # 00:21:05
    assert Every(60, 5).describe() == "every 60s at +5s"


# -- TickRunner on a fake clock ---------------------------------------------------------------


async def test_jobs_run_on_their_grid_with_now_from_the_clock() -> None:
    clock = ManualClock(MONDAY + 10)
    rec = Recorder()
    tick = TickRunner(
        [Job("poll", rec.job("poll"), Every(60, 2)), Job("drain", rec.job("drain"), Every(20))],
        SETTINGS,
        clock=clock,
    )
    assert tick.next_run("poll") == datetime.fromtimestamp(MONDAY + 62, UTC)
    await tick.run(sleep=clock.sleep, poll_s=1.0, until_s=MONDAY + 130)
    await tick.join()
    assert rec.calls["poll"] == [int((MONDAY + 62) * 1000), int((MONDAY + 122) * 1000)]
    assert rec.calls["drain"] == [int((MONDAY + s) * 1000) for s in (20, 40, 60, 80, 100, 120)]
    assert tick.runner.stats["poll"].runs == 2 and tick.active == 0


async def test_a_slow_job_does_not_stack(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(MONDAY)
    gate = Gate()
    tick = TickRunner([Job("snapshot", gate, Every(60))], SETTINGS, clock=clock)
    clock.now = MONDAY + 60
    assert tick.run_due() == ["snapshot"]
    await settle()
    assert gate.started == 1 and tick.runner.is_running("snapshot")
    clock.now = MONDAY + 120  # the next tick comes while the first still runs
    with caplog.at_level(logging.WARNING, logger="alerts.scheduler"):
        assert tick.run_due() == []
    await settle()
    assert gate.started == 1
    assert tick.runner.stats["snapshot"].skipped_running == 1
    assert "snapshot skipped: the previous run is still going" in caplog.text
    gate.open.set()
    await tick.join()
    assert gate.finished == 1 and not tick.runner.is_running("snapshot")
    clock.now = MONDAY + 180
    assert tick.run_due() == ["snapshot"]  # back to normal
    await tick.join()
    assert gate.finished == 2


async def test_firings_missed_during_a_pause_coalesce_into_one_run() -> None:
    clock = ManualClock(MONDAY)
    rec = Recorder()
    tick = TickRunner([Job("evaluate", rec.job("evaluate"), Every(60))], SETTINGS, clock=clock)
    clock.now = MONDAY + 10 * 60 + 5  # ten firings piled up; the last is 5 s old
    assert tick.run_due() == ["evaluate"]
    await tick.join()
    assert rec.calls["evaluate"] == [int((MONDAY + 605) * 1000)]
    assert tick.next_run("evaluate") == datetime.fromtimestamp(MONDAY + 660, UTC)
    assert tick.run_due() == []  # nothing left over


async def test_a_firing_later_than_the_grace_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(MONDAY)
    rec = Recorder()
    tick = TickRunner([Job("poll", rec.job("poll"), Every(60))], SETTINGS, clock=clock)
    clock.now = MONDAY + 10 * 60 + 45  # the latest firing is 45 s old: beyond 30 s of grace
    with caplog.at_level(logging.WARNING, logger="alerts.scheduler"):
        assert tick.run_due() == []
    assert "poll missed its run time by 45.0s" in caplog.text
    assert tick.runner.stats["poll"].missed == 1 and "poll" not in rec.calls
    clock.now = MONDAY + 11 * 60 + 1  # the next firing, on time
    assert tick.run_due() == ["poll"]
    await tick.join()
    assert len(rec.calls["poll"]) == 1
    # A job may allow more grace than the settings.
    lenient = TickRunner(
        [Job("digest", rec.job("digest"), Every(60), misfire_grace_s=120)], SETTINGS, clock=clock
    )
    clock.now += 60 + 59  # the next firing is 59 s old
    assert lenient.run_due() == ["digest"]
    await lenient.join()


async def test_job_exceptions_are_logged_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(MONDAY)
    rec = Recorder()

    async def broken(now_ms: int) -> None:
        raise RuntimeError("venue said no")

    tick = TickRunner(
        [Job("poll", broken, Every(60), "poll"), Job("drain", rec.job("drain"), Every(60))],
        SETTINGS,
        clock=clock,
    )
    with caplog.at_level(logging.ERROR, logger="alerts.scheduler"):
        for k in (1, 2, 3):
            clock.now = MONDAY + 60 * k
            assert sorted(tick.run_due()) == ["drain", "poll"]
            await tick.join()
    st = tick.runner.stats["poll"]
    assert st.failures == 3 and st.runs == 0 and st.last_error == "RuntimeError: venue said no"
    assert not st.running
    assert len(rec.calls["drain"]) == 3
    assert caplog.text.count("job poll (poll) failed") == 3
    assert "RuntimeError: venue said no" in caplog.text  # with the traceback


async def test_daily_digest_fires_at_22_utc_on_weekdays_over_a_week() -> None:
    clock = ManualClock(MONDAY)
    rec = Recorder()
    jobs = [
        Job("daily", rec.job("daily"), Cron(DAILY_DIGEST_CRON, 30), "digest"),
        Job("hourly", rec.job("hourly"), Cron(HOURLY_DIGEST_CRON, 30), "digest"),
    ]
    tick = TickRunner(jobs, SETTINGS, clock=clock)
    end = MONDAY + 7 * 86_400
    while (nxt := tick.next_wakeup_s()) is not None and nxt < end:
        clock.now = nxt
        tick.run_due()
        await tick.join()
    fired = [datetime.fromtimestamp(ms / 1000, UTC) for ms in rec.calls["daily"]]
    assert fired == [utc(2026, 1, d, 22, 0, 30) for d in (12, 13, 14, 15, 16)]
    assert len(rec.calls["hourly"]) == 7 * 24


async def test_claims_decide_which_instance_runs_a_slot() -> None:
    clock = ManualClock(MONDAY)
    rec = Recorder()
    asked: list[tuple[str, int]] = []

    async def claim(job_id: str, slot_ms: int) -> bool:
        asked.append((job_id, slot_ms))
        return job_id != "evaluate"  # another leader took the evaluation slot

    tick = TickRunner(
        [
            Job("evaluate", rec.job("evaluate"), Every(60)),
            Job("drain", rec.job("drain"), Every(60)),
        ],
        SETTINGS,
        clock=clock,
        claim=claim,
    )
    clock.now = MONDAY + 60.4
    tick.run_due()
    await tick.join()
    slot = int((MONDAY + 60) * 1000)
    assert sorted(asked) == [("drain", slot), ("evaluate", slot)]  # the slot, not "now"
    assert "evaluate" not in rec.calls and rec.calls["drain"] == [int((MONDAY + 60.4) * 1000)]
    assert tick.runner.stats["evaluate"].claimed_elsewhere == 1


async def test_a_failing_claim_skips_the_run_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(MONDAY)
    rec = Recorder()

    async def claim(job_id: str, slot_ms: int) -> bool:
        raise ConnectionError("database is down")

    tick = TickRunner(
        [Job("drain", rec.job("drain"), Every(60))], SETTINGS, clock=clock, claim=claim
    )
    clock.now = MONDAY + 60
    with caplog.at_level(logging.ERROR, logger="alerts.scheduler"):
        tick.run_due()
        await tick.join()
    assert "drain" not in rec.calls and tick.runner.stats["drain"].failures == 1
    assert "claiming slot" in caplog.text and not tick.runner.is_running("drain")


def test_slot_of_a_run_is_the_latest_fire_time_within_the_grace() -> None:
    rec = Recorder()
    runner = JobRunner(
        [
            Job("tick", rec.job("tick"), Every(60, 5)),
            Job("daily", rec.job("daily"), Cron(DAILY_DIGEST_CRON, 30)),
        ],
        settings=SETTINGS,
    )
    at = int((MONDAY + 3 * 3600 + 5 + 12) * 1000)  # 03:00:17, 12 s after 03:00:05
    assert runner.slot_ms("tick", at) == at - 12_000
    late = int((MONDAY + 3 * 3600 + 5 + 40) * 1000)  # beyond the grace: no slot, now
    assert runner.slot_ms("tick", late) == late
    digest = int(utc(2026, 1, 12, 22, 0, 31).timestamp() * 1000)
    assert runner.slot_ms("daily", digest) == digest - 1000
    assert runner.slot_ms("daily", digest + 3_600_000) == digest + 3_600_000


async def test_aclose_cancels_runs_in_progress() -> None:
    clock = ManualClock(MONDAY)
    gate = Gate()
    tick = TickRunner([Job("stuck", gate, Every(60))], SETTINGS, clock=clock)
    clock.now = MONDAY + 60
    tick.run_due()
    await settle()
    await tick.aclose()
    assert tick.active == 0 and gate.finished == 0 and not tick.runner.is_running("stuck")


async def test_engine_jobs_order_polls_snapshot_and_evaluation_within_a_tick() -> None:
    clock = ManualClock(MONDAY + 1)
    order: list[tuple[str, int]] = []

    def job(name: str) -> JobFunc:
        async def run(now_ms: int) -> None:
            order.append((name, now_ms))

        return run

    jobs = engine_jobs(
        SETTINGS,
        polls=[
            PollSpec("poll-binance-1h", job("poll-binance"), 60.0),
            PollSpec("poll-bybit-1h", job("poll-bybit"), 60.0),
        ],
        snapshot=job("snapshot"),
        evaluate=job("evaluate"),
        drain=job("drain"),
        drain_every_s=30.0,
        hourly_digest=job("hourly"),
        daily_digest=job("daily"),
        daily_cron="0 21 * * mon-fri",
    )
    assert [j.kind for j in jobs] == [
        "poll",
        "poll",
        "snapshot",
        "evaluate",
        "drain",
        "digest",
        "digest",
    ]
    assert "digest-daily [digest] cron '0 21 * * mon-fri' UTC" in describe_jobs(jobs)
    tick = TickRunner(jobs, SETTINGS, clock=clock)
    while (nxt := tick.next_wakeup_s()) is not None and nxt < MONDAY + 61:
        clock.now = nxt
        tick.run_due()
        await tick.join()
    seconds: dict[str, float] = {}
    for name, ms in order:
        seconds.setdefault(name, ms / 1000 - MONDAY)  # each job's first run
    assert seconds == {
        "poll-binance": 2,
        "poll-bybit": 2,
        "snapshot": 5,
        "evaluate": 8,
        "drain": 30,
        "hourly": 30,
    }


# -- APScheduler ---------------------------------------------------------------------------------


def jobs_by_id(sched: Any) -> dict[str, Any]:
    return {j.id: j for j in sched.get_jobs()}


async def test_build_scheduler_configures_apscheduler() -> None:
    rec = Recorder()
    jobs = engine_jobs(
        AlertSettings(tick_s=60.0, misfire_grace_s=12.5),
        polls=[PollSpec("poll", rec.job("poll"), 300.0)],
        snapshot=rec.job("snapshot"),
        evaluate=rec.job("evaluate"),
        drain=rec.job("drain"),
        daily_digest=rec.job("daily"),
    )
    sched = build_scheduler(jobs, AlertSettings(misfire_grace_s=12.5))
    assert str(sched.timezone) == "UTC"
    sched.start(paused=True)
    try:
        by_id = jobs_by_id(sched)
        assert set(by_id) == {"poll", "snapshot", "evaluate", "drain", "digest-daily"}
        for job in by_id.values():
            assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 13)
        daily = by_id["digest-daily"].next_run_time.astimezone(UTC)
        assert (daily.hour, daily.minute, daily.second, daily.weekday() < 5) == (22, 0, 30, True)
        assert by_id["poll"].next_run_time.timestamp() % 300 == 2.0  # the grid, +2 s
    finally:
        sched.shutdown(wait=False)
        await settle()


async def test_apscheduler_runs_jobs_with_the_injected_clock() -> None:
    seen: list[int] = []
    done = asyncio.Event()

    async def job(now_ms: int) -> None:
        seen.append(now_ms)
        done.set()

    sched = build_scheduler([Job("j", job, Every(3600))], SETTINGS, clock=lambda: 1234.5)
    sched.start()
    try:
        sched.modify_job("j", next_run_time=datetime.now(UTC))
        await asyncio.wait_for(done.wait(), 5)
        assert seen == [1_234_500]
    finally:
        sched.shutdown(wait=False)
        await settle()


async def test_apscheduler_does_not_stack_a_slow_job(caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate()
    runner = JobRunner([Job("slow", gate, Every(3600))], settings=SETTINGS)
    sched = build_scheduler(runner.jobs, SETTINGS, runner=runner)
    sched.start()
    try:
        sched.modify_job("slow", next_run_time=datetime.now(UTC))
        await settle()
        assert gate.started == 1
        with caplog.at_level(logging.WARNING):
            sched.modify_job("slow", next_run_time=datetime.now(UTC))
            await settle()
        assert gate.started == 1
        assert runner.stats["slow"].skipped_running == 1
        # Counted, not logged: a long drain overlapping its interval is normal, not a warning.
        assert "maximum number of running instances reached" not in caplog.text
        gate.open.set()
        await settle()
        assert gate.finished == 1 and runner.stats["slow"].runs == 1
    finally:
        sched.shutdown(wait=False)
        await settle()


async def test_apscheduler_coalesces_and_honours_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()
    runner = JobRunner(
        [Job("tick", rec.job("tick"), Every(60)), Job("late", rec.job("late"), Every(600))],
        settings=SETTINGS,
    )
    sched = build_scheduler(runner.jobs, SETTINGS, runner=runner)
    sched.start()
    try:
        now = datetime.now(UTC)
        with caplog.at_level(logging.WARNING):
            # Eleven firings of "tick" piled up, the last 5 s ago: one run.
            sched.modify_job("tick", next_run_time=now - timedelta(seconds=605))
            # "late" fired 2 minutes ago: beyond 30 s of grace, skipped.
            sched.modify_job("late", next_run_time=now - timedelta(seconds=120))
            await settle()
        assert len(rec.calls["tick"]) == 1 and runner.stats["tick"].missed == 0
        assert "late" not in rec.calls and runner.stats["late"].missed == 1
        assert "was missed by" in caplog.text
        nxt = jobs_by_id(sched)["tick"].next_run_time
        assert now < nxt <= now + timedelta(seconds=60)
    finally:
        sched.shutdown(wait=False)
        await settle()


async def test_apscheduler_survives_a_failing_job(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def broken(now_ms: int) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("boom")

    runner = JobRunner([Job("bad", broken, Every(3600))], settings=SETTINGS)
    sched = build_scheduler(runner.jobs, SETTINGS, runner=runner)
    sched.start()
    try:
        with caplog.at_level(logging.ERROR, logger="alerts.scheduler"):
            for _ in range(2):
                sched.modify_job("bad", next_run_time=datetime.now(UTC))
                await settle()
        assert calls == 2 and runner.stats["bad"].failures == 2
        assert sched.running
        assert caplog.text.count("job bad (other) failed") == 2
    finally:
        sched.shutdown(wait=False)
        await settle()


def test_build_scheduler_refuses_a_runner_without_the_jobs() -> None:
    rec = Recorder()
    runner = JobRunner([Job("a", rec.job("a"), Every(60))])
    with pytest.raises(InputError, match="does not know"):
        build_scheduler([Job("b", rec.job("b"), Every(60))], SETTINGS, runner=runner)
