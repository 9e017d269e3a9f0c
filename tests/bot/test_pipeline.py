"""The running bot's job set over the demo market, on a fake clock (bot.pipeline, bot.app).

The seeded news-item simulation runs through the same jobs ``liqbot run --demo`` schedules:
polls, ETF flows, snapshots + evaluation, draining to the console chat. Over the ten data
hours to the 22:00 squeeze and two after it, the console chat's demo alerts fire: the short
cluster approach before the squeeze, the liquidation spike in it, and the ETF reversal.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from alerts.engine import AlertEngine
from alerts.scheduler import JobRunner, TickRunner
from alerts.store import Store, find_destination, get_snapshots
from bot.app import RunOptions, Senders, _demo_settings, _seed_demo_alerts, drain_every_s
from bot.chat import Reply
from bot.console import ConsoleAdapter
from bot.feeds_setup import demo_feeds
from bot.leader_duties import warm_up
from bot.pipeline import Pipeline
from core.config import Settings
from core.feeds.simulator import NEWS_SWEEP_MS
from tests.fakes.timing import SteppedClock

H = 3_600_000
SPEED = 600.0


async def no_commands(cmd: object) -> Reply:
    raise AssertionError("no command is typed in this test")


async def test_the_demo_jobs_fire_the_news_item_alerts(store: Store, tmp_path: Path) -> None:
    wall = SteppedClock(1_800_000_000.0)
    # The streams sleep on the stepped clock: they wake as the test moves it.
    feeds = demo_feeds(speed=SPEED, clock=wall, sleep=wall.sleep)
    settings = _demo_settings(Settings(), SPEED)
    engine = AlertEngine(store, settings, feeds.clock)
    pipeline = Pipeline(settings, feeds, store, engine, instance="test")
    out = io.StringIO()
    console = ConsoleAdapter(no_commands, tmp_path, out=out)
    senders = Senders()
    senders.by_platform["console"] = console.send
    try:
        start = pipeline.now_ms()
        await _seed_demo_alerts(store, start)
        await engine.start(start)
        pipeline.start_streams()
        await warm_up(pipeline)
        assert {s.symbol for s in pipeline.latest_snapshots()} == {"BTC", "ETH"}
        assert set(await get_snapshots(store)) == {"BTC", "ETH"}  # stored for followers
        jobs = pipeline.jobs(
            senders, drain_every_s=drain_every_s(RunOptions(demo=True, speed=SPEED))
        )
        runner = JobRunner(jobs, feeds.clock, None, settings.alerts)
        ticker = TickRunner(jobs, settings.alerts, clock=feeds.clock, runner=runner)
        until = NEWS_SWEEP_MS + 2 * H
        while (nxt := ticker.next_wakeup_s()) is not None and nxt * 1000 <= until:
            await wall.advance(max(nxt - feeds.clock(), 0.0) / SPEED + 1e-6)
            await asyncio.sleep(0)  # the streams deliver what is due first
            ticker.run_due()
            await ticker.join()
        stats = runner.stats
        assert all(st.failures == 0 for st in stats.values()), {
            k: st.last_error for k, st in stats.items() if st.failures
        }
        assert stats["snapshot"].runs >= 100 and stats["drain"].runs > 0
        status = await pipeline.status()
        assert status.mode == "demo" and status.queue_depth == 0 and status.last_tick_ms
        assert {v.venue for v in status.venues} == {"binance", "bybit", "okx"}
        view = await pipeline.etf_view()
        assert view is not None and not view.stale
    finally:
        await pipeline.stop_streams()
        await feeds.aclose()

    text = out.getvalue()
    alerts = [block for block in text.split("\n\n") if block.startswith("ALERT: ")]
    assert any("short cluster" in a for a in alerts)
    assert any("liquidations" in a and "above your $50M alert" in a for a in alerts)
    assert any("ETF flows reversed" in a for a in alerts)
    dest = await find_destination(store, "console", "console")
    assert dest is not None and dest.enabled
