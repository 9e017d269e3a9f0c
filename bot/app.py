"""``liqbot run``: config -> store -> feeds -> scheduler -> chat adapters, in one asyncio loop.

Start-up, in order: open (and migrate) the store; open the feeds (live venues, or the seeded
simulation with ``--demo``); the chat adapters whose tokens are set (and the console with
``--demo`` or ``--console``), so deliveries have somewhere to go; then leadership
(:mod:`alerts.leadership`). The leader makes a first poll of every feed and a first snapshot
and starts the scheduler (:mod:`bot.leader_duties`); until that first snapshot, ``/liqmap``
answers that the data is coming. The console starts reading only after it.

Shutdown (SIGTERM, SIGINT, ``--duration``): the scheduler stops starting jobs, the runs in
progress finish (a drain finishes its in-flight sends and marks them), the adapters stop, the
streams and feeds close, and the store closes. Everything the bot knows is already in the store
(outbox, log, alert states, snapshots), so nothing is lost between runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerts.delivery import Sender, SendResult
from alerts.engine import AlertEngine
from alerts.leadership import Leadership
from alerts.notifications import GroupedMessage
from alerts.store import (
    Destination,
    Store,
    add_subscription,
    list_subscriptions,
    open_store,
    stats,
    upsert_destination,
)
from alerts.subscriptions import Kind, Quotas, Subscription
from bot.chat import CommandHandler
from bot.commands import COMMAND_SPECS, CommandRouter
from bot.console import CONSOLE_CHAT, ConsoleAdapter
from bot.feeds_setup import MarketFeeds, demo_feeds, live_feeds
from bot.health_server import HealthServer, health_check
from bot.leader_duties import LeaderDuties
from bot.metrics import Metrics
from bot.pacing import Pacer
from bot.pipeline import Pipeline
from bot.services import BotServices
from core.config import Settings
from core.errors import ConfigError

__all__ = ["RunOptions", "run_bot"]

log = logging.getLogger("liqbot")

TELEGRAM_TOKEN_ENV = "LIQBOT_TELEGRAM_TOKEN"
DISCORD_TOKEN_ENV = "LIQBOT_DISCORD_TOKEN"


@dataclass(frozen=True)
class RunOptions:
    demo: bool = False
    console: bool = False
    duration_s: float | None = None  # stop after this many wall seconds (None: until a signal)
    speed: float = 600.0  # demo: data seconds per wall second
    seed: int = 7
    scenario: str = "news"
    db_url: str | None = None  # overrides database.url (demo default: a temporary SQLite file)
    chart_dir: str = "data/charts"
    metrics_port: int | None = None  # serve /metrics and /healthz on 127.0.0.1 (None: off)
    instance: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")


Stop = Callable[[], Awaitable[None]]


class Senders:
    """The outbox Sender: each destination's platform adapter, if it runs in this process."""

    def __init__(self) -> None:
        self.by_platform: dict[str, Sender] = {}

    async def __call__(self, dest: Destination, msg: GroupedMessage) -> SendResult:
        send = self.by_platform.get(dest.platform)
        if send is None:  # e.g. a Telegram chat while only Discord runs: keep it queued
            return SendResult.transient(f"{dest.platform} is not running in this instance", 60.0)
        return await send(dest, msg)


DEMO_ALERTS = (
    Subscription(0, 0, Kind.CLUSTER, "BTC", pct=1.0, min_usd=100e6, side="short"),
    Subscription(0, 0, Kind.SPIKE, "BTC", min_usd=50e6, side="any"),
    Subscription(0, 0, Kind.ETF, None, etf_mode="reversal"),
)


async def _seed_demo_alerts(store: Store, now_ms: int) -> None:
    """The console chat watches the news item's squeeze: short clusters, spikes, ETF reversal."""
    dest = await upsert_destination(store, "console", CONSOLE_CHAT, "private", now_ms, "console")
    if await list_subscriptions(store, dest.id):
        return
    for sub in DEMO_ALERTS:
        mine = dataclasses.replace(sub, destination_id=dest.id, created_by="demo")
        await add_subscription(store, mine, Quotas(), now_ms)


def _demo_settings(settings: Settings, speed: float) -> Settings:
    """Hourly simulated bars: tick and poll every 5 data minutes (the demo runs fast), and a
    misfire grace of two wall seconds in data time (the scheduler's check is in wall time)."""
    grace = max(settings.alerts.misfire_grace_s, 2.0 * speed)
    alerts = settings.alerts.model_copy(
        update={"tick_s": 300.0, "group_wait_s": 0.0, "misfire_grace_s": grace}
    )
    bot = settings.bot.model_copy(update={"poll_s": 300.0})
    return settings.model_copy(update={"alerts": alerts, "bot": bot})


def drain_every_s(opts: RunOptions) -> float:
    """How often the outbox drains, in data seconds: every second live, and every quarter of a
    wall second in a demo, whose data time runs ``speed`` times faster."""
    return max(1.0, 0.25 * opts.speed) if opts.demo else 1.0


def _freeze_startup_heap() -> None:
    """Keep what starting built (modules, clients, the first snapshot) out of the garbage
    collector's full scans: it lives as long as the process. Under webhook load a full
    collection otherwise scanned ~300k objects and stalled the loop for 150-200 ms."""
    gc.collect()
    gc.freeze()


async def run_bot(settings: Settings, opts: RunOptions) -> int:
    """Run until a signal or ``opts.duration_s``; returns the process exit code."""
    tokens = {
        p: os.environ.get(env, "").strip()
        for p, env in (("telegram", TELEGRAM_TOKEN_ENV), ("discord", DISCORD_TOKEN_ENV))
    }
    if not opts.demo and not opts.console and not any(tokens.values()):
        raise ConfigError(
            f"no chat platform to run: set {TELEGRAM_TOKEN_ENV} and/or {DISCORD_TOKEN_ENV}, "
            "or add --console (terminal), or try --demo (offline, simulated market)"
        )
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if opts.demo:
        settings = _demo_settings(settings, opts.speed)
        feeds: MarketFeeds = demo_feeds(speed=opts.speed, seed=opts.seed, scenario=opts.scenario)
    else:
        feeds = live_feeds(settings)
    db_url = opts.db_url or settings.database.url
    if opts.demo and opts.db_url is None:
        tmp = tempfile.TemporaryDirectory(prefix="liqbot-demo-")
        db_url = f"sqlite+aiosqlite:///{tmp.name}/demo.db"
    elif db_url.startswith("sqlite+aiosqlite:///") and not db_url.startswith(
        "sqlite+aiosqlite:////"
    ):
        Path(db_url.removeprefix("sqlite+aiosqlite:///")).parent.mkdir(parents=True, exist_ok=True)

    # A signal from here on stops the bot gracefully, even while it is still starting.
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    store = await open_store(db_url)
    stops: list[Stop] = []
    try:
        metrics = Metrics()
        engine = AlertEngine(store, settings, feeds.clock)
        pipeline = Pipeline(settings, feeds, store, engine, instance=opts.instance)
        pipeline.metrics = metrics
        if opts.demo:
            await _seed_demo_alerts(store, pipeline.now_ms())
        await engine.start(pipeline.now_ms())
        pipeline.start_streams()
        stops.append(pipeline.stop_streams)
        services = BotServices(
            settings=settings,
            store=store,
            snapshots=pipeline.builder.cache,
            etf=pipeline.etf_view,
            status=pipeline.status,
            series=pipeline.series,
            subscriptions_changed=engine.subscriptions_changed,
            clock=feeds.clock,
        )
        handle = metrics.counted_handler(CommandRouter(services).handle)
        senders = Senders()
        console: ConsoleAdapter | None = None
        if opts.demo or opts.console:
            console = ConsoleAdapter(handle, opts.chart_dir)
            senders.by_platform["console"] = console.send
        for platform, token in tokens.items():
            if token:
                stops.append(
                    await _start_platform(platform, token, settings, handle, store, senders)
                )
        senders.by_platform = {
            p: metrics.timed_sender(p, s) for p, s in senders.by_platform.items()
        }

        # Only the leader runs the jobs; on SQLite this process leads at once.
        jobs = pipeline.jobs(senders, drain_every_s=drain_every_s(opts))
        duties = LeaderDuties(pipeline, jobs, settings, data_clock=opts.demo, clock=feeds.clock)

        leading: set[asyncio.Task[None]] = set()

        async def elected() -> None:
            metrics.set_leader(opts.instance, True)
            # In a task: the first poll may take a while and the lease checks must go on.
            task = asyncio.create_task(duties.lead())
            leading.add(task)
            task.add_done_callback(leading.discard)

        async def deposed() -> None:
            metrics.set_leader(opts.instance, False)
            await duties.follow()

        leadership = Leadership(db_url, opts.instance, on_elected=elected, on_deposed=deposed)
        pipeline.leadership = leadership
        await leadership.start()
        stops.append(leadership.stop)
        # Leading at once (SQLite, or a free lock): commands find the first snapshot ready.
        await asyncio.gather(*list(leading))
        background: list[asyncio.Task[Any]] = [
            asyncio.create_task(duties.refresh_while_following(settings.alerts.tick_s))
        ]
        if opts.metrics_port is not None:
            stops.append(
                await _serve_metrics(metrics, pipeline, store, settings, opts.metrics_port)
            )
        if console is not None:  # last: the first command finds the scheduler running
            background.append(asyncio.create_task(console.read_stdin()))
            print(
                "liqbot is running. Type /help, /liqmap BTC, /alerts ... (Ctrl-C to stop)",
                flush=True,
            )
        _freeze_startup_heap()
        log.info("running (%s mode, instance %s)", feeds.mode, opts.instance)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), opts.duration_s)
        log.info("stopping: no new jobs; finishing the ones in progress")
        for task in background:
            task.cancel()
        for task in list(leading):  # a start still loading its first data
            task.cancel()
        await duties.follow()
        return 0
    finally:
        for stop in reversed(stops):
            try:
                await stop()
            except Exception:
                log.exception("error while stopping")
        await feeds.aclose()
        await store.close()
        if tmp is not None:
            tmp.cleanup()


async def _serve_metrics(
    metrics: Metrics, pipeline: Pipeline, store: Store, settings: Settings, port: int
) -> Stop:
    """``/metrics`` and ``/healthz`` on 127.0.0.1:``port``; returns the server's stop."""

    async def refresh() -> None:
        view = await pipeline.status()
        metrics.observe_freshness(view.series, view.now_ms)
        now = pipeline.now_ms()
        metrics.observe_outbox(await stats(store, now), now)

    health = health_check(pipeline.status, store, max_tick_age_s=3 * settings.alerts.tick_s)
    server = HealthServer(metrics, health, port=port, on_scrape=refresh)
    await server.start()
    return server.stop


async def _start_platform(
    platform: str,
    token: str,
    settings: Settings,
    handler: CommandHandler,
    store: Store,
    senders: Senders,
) -> Stop:
    """Start one chat platform in this loop, register its outbox sender; returns its stop."""
    if platform == "telegram":
        from bot.telegram_app import build_application
        from bot.telegram_run import start_application, stop_application
        from bot.telegram_send import TelegramSender

        tg_pacer = Pacer(settings.pacing.telegram)
        app = build_application(settings, token, handler, tg_pacer, store, specs=COMMAND_SPECS)
        await start_application(app, settings)
        senders.by_platform["telegram"] = TelegramSender(app.bot, store, tg_pacer)

        async def stop_telegram() -> None:
            await stop_application(app)

        return stop_telegram
    from bot.discord_app import build_client, close, configure_endpoints, start
    from bot.discord_send import DiscordSender

    dc_pacer = Pacer(settings.pacing.discord)
    configure_endpoints(settings.discord)
    bot = build_client(settings, handler, dc_pacer, store, specs=COMMAND_SPECS)
    try:
        await start(bot, token, sync_state=Path("data/discord_commands.sha256"))
    except BaseException:
        await close(bot)
        raise
    senders.by_platform["discord"] = DiscordSender(bot.client, dc_pacer)

    async def stop_discord() -> None:
        await close(bot)

    return stop_discord
