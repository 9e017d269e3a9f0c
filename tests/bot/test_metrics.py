"""Metrics and the health server (bot.metrics, bot.health_server), over real HTTP.

The server runs on an ephemeral port in the test's loop; ``/metrics`` is parsed with
prometheus_client's own parser, so the tests read what a Prometheus server would. Send
latency comes from a fake clock: the values asserted are exact, never wall-clock time.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from alerts.delivery import DrainResult, SendResult
from alerts.engine import TickResult
from alerts.notifications import GroupedMessage
from alerts.rules.evaluate import TickConditions
from alerts.store import Destination, OutboxStats, Store
from alerts.subscriptions import Kind
from bot.chat import Command, Reply
from bot.commands import GENERIC_ERROR, CommandRouter
from bot.health_server import (
    HealthReport,
    HealthServer,
    health_check,
    health_from_status,
    ping_store,
)
from bot.metrics import Metrics
from bot.services import StatusView
from core.feeds.staleness import Freshness
from tests.bot.market import Market

NOW_MS = 1_800_000_000_000
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by (sample name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def value(parsed: Samples, name: str, **labels: str) -> float:
    return parsed[key(name, **labels)]


class FakeClock:
    """Monotonic seconds that move only when the test (or a fake sender) says so."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def destination(platform: str = "telegram") -> Destination:
    return Destination(1, platform, "42", "private", "", True, "UTC", None, None, None, 0, None, 0)


MESSAGE = GroupedMessage(1, "1:k", NOW_MS, ())


def tick_result(notified: dict[Kind, int], queued: tuple[str, ...]) -> TickResult:
    return TickResult(
        now_ms=NOW_MS,
        conditions=cast(TickConditions, None),  # metrics never read the conditions
        notified=notified,
        items=(),
        suppressed=(),
        messages=(),
        queued=queued,
        states_written=0,
    )


def healthy() -> Callable[[], Awaitable[HealthReport]]:
    async def check() -> HealthReport:
        return HealthReport(True, [], {"mode": "demo"})

    return check


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(clock=FakeClock(), commands={"liqmap", "status"})


@contextlib.asynccontextmanager
async def serve(
    metrics: Metrics, health: Callable[[], Awaitable[HealthReport]], **kw: object
) -> AsyncIterator[tuple[HealthServer, httpx.AsyncClient]]:
    server = HealthServer(metrics, health, port=0, **kw)  # type: ignore[arg-type]
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
            yield server, client
    finally:
        await server.stop()


# --- /metrics ----------------------------------------------------------------------------


async def test_metrics_endpoint_carries_the_values_fed_in(metrics: Metrics) -> None:
    metrics.observe_tick(0.2, tick_result({Kind.CLUSTER: 2, Kind.SPIKE: 1}, ("a", "b")), NOW_MS)
    metrics.observe_tick(0.3, None, NOW_MS + 60_000)
    fresh = Freshness("binance:BTC:bars:1h", 3_600_000, NOW_MS + 60_000 - 40_000)
    stale = Freshness("bybit:BTC:oi:1h", 3_600_000, NOW_MS - 3 * 3_600_000)
    never = Freshness("okx:BTC:bars:1h", 3_600_000, None)
    metrics.observe_freshness([fresh, stale, never], NOW_MS + 60_000)
    metrics.observe_outbox(OutboxStats(5, 1, 2, 9, NOW_MS - 30_000), NOW_MS)
    metrics.set_leader("host-1", True)
    metrics.observe_command("telegram", "liqmap", "ok")
    metrics.observe_command("telegram", "LiqMap", "ok")
    metrics.observe_command("discord", "whatever", "bad_input")  # not a known command
    metrics.observe_drain("all", DrainResult(sent=[1, 2], retried=[3], dead=[4, 5], disabled=[9]))

    async with serve(metrics, healthy()) as (server, client):
        assert server.port > 0
        resp = await client.get("/metrics")
        assert resp.status_code == 200
        assert resp.headers["content-type"] == CONTENT_TYPE_LATEST
        got = samples(resp.text)

    assert value(got, "liqbot_ticks_total") == 2
    assert value(got, "liqbot_tick_seconds_count") == 2
    assert value(got, "liqbot_tick_seconds_sum") == pytest.approx(0.5)
    assert value(got, "liqbot_tick_seconds_bucket", le="0.25") == 1
    assert value(got, "liqbot_last_tick_timestamp_seconds") == (NOW_MS + 60_000) / 1000
    assert value(got, "liqbot_alerts_fired_total", kind="cluster") == 2
    assert value(got, "liqbot_alerts_fired_total", kind="spike") == 1
    assert value(got, "liqbot_notifications_queued_total") == 2
    assert value(got, "liqbot_feed_age_seconds", series=fresh.series) == 40
    assert value(got, "liqbot_feed_stale", series=fresh.series) == 0
    assert value(got, "liqbot_feed_age_seconds", series=stale.series) == 3 * 3600 + 60
    assert value(got, "liqbot_feed_stale", series=stale.series) == 1
    assert math.isinf(value(got, "liqbot_feed_age_seconds", series=never.series))
    assert value(got, "liqbot_feed_stale", series=never.series) == 1
    assert value(got, "liqbot_outbox_pending") == 5
    assert value(got, "liqbot_outbox_dead") == 2
    assert value(got, "liqbot_outbox_oldest_pending_age_seconds") == 30
    assert value(got, "liqbot_leader", instance="host-1") == 1
    commands = {"platform": "telegram", "command": "liqmap", "outcome": "ok"}
    assert value(got, "liqbot_commands_total", **commands) == 2  # names are case-folded
    unknown = {"platform": "discord", "command": "unknown", "outcome": "bad_input"}
    assert value(got, "liqbot_commands_total", **unknown) == 1
    # The drain adds only what the sender cannot see: dead rows and disabled chats.
    assert value(got, "liqbot_deliveries_total", platform="all", result="dead") == 2
    assert key("liqbot_deliveries_total", platform="all", result="sent") not in got
    assert value(got, "liqbot_destinations_disabled_total", platform="all") == 1
    assert any(name.startswith("process_") for name, _ in got)  # runtime collectors


async def test_a_series_no_longer_listed_is_dropped(metrics: Metrics) -> None:
    a = Freshness("binance:BTC:bars:1h", 3_600_000, NOW_MS)
    b = Freshness("bybit:BTC:bars:1h", 3_600_000, NOW_MS)
    metrics.observe_freshness([a, b], NOW_MS)
    metrics.observe_freshness([a], NOW_MS)
    got = samples(metrics.render().decode())
    assert key("liqbot_feed_age_seconds", series=a.series) in got
    assert key("liqbot_feed_age_seconds", series=b.series) not in got
    assert key("liqbot_feed_stale", series=b.series) not in got


async def test_leadership_and_an_empty_outbox(metrics: Metrics) -> None:
    metrics.set_leader("host-1", True)
    metrics.set_leader("host-1", False)
    metrics.observe_outbox(OutboxStats(0, 0, 0, 0, None), NOW_MS)
    got = samples(metrics.render().decode())
    assert value(got, "liqbot_leader", instance="host-1") == 0
    assert value(got, "liqbot_outbox_oldest_pending_age_seconds") == 0


async def test_labels_outside_the_fixed_sets_are_refused(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="delivery result"):
        metrics.observe_delivery("telegram", 0.1, "exploded")
    with pytest.raises(ValueError, match="command outcome"):
        metrics.observe_command("telegram", "liqmap", "meh")


async def test_a_failing_scrape_refresh_still_serves_the_last_values(metrics: Metrics) -> None:
    calls: list[int] = []

    async def refresh() -> None:
        calls.append(1)
        if len(calls) == 1:
            metrics.observe_outbox(OutboxStats(3, 0, 0, 0, None), NOW_MS)
            return
        raise RuntimeError("database is locked")

    async with serve(metrics, healthy(), on_scrape=refresh) as (_, client):
        first = samples((await client.get("/metrics")).text)
        second = await client.get("/metrics")
    assert value(first, "liqbot_outbox_pending") == 3
    assert second.status_code == 200
    assert value(samples(second.text), "liqbot_outbox_pending") == 3
    assert len(calls) == 2


# --- /healthz ----------------------------------------------------------------------------


async def test_healthz_is_200_when_healthy_and_503_with_reasons_when_not(
    metrics: Metrics,
) -> None:
    state = {"ok": True}

    async def check() -> HealthReport:
        if state["ok"]:
            return HealthReport(True, [], {"mode": "live", "age": math.inf})
        return HealthReport(False, ["last tick 900s ago (limit 180s)"], {"mode": "live"})

    async with serve(metrics, check) as (_, client):
        ok = await client.get("/healthz")
        state["ok"] = False
        bad = await client.get("/healthz")
    assert ok.status_code == 200
    assert ok.json() == {"status": "ok", "reasons": [], "mode": "live", "age": None}
    assert bad.status_code == 503
    assert bad.json()["status"] == "unhealthy"
    assert bad.json()["reasons"] == ["last tick 900s ago (limit 180s)"]


async def test_a_health_check_that_raises_is_unhealthy(metrics: Metrics) -> None:
    async def check() -> HealthReport:
        raise RuntimeError("boom")

    async with serve(metrics, check) as (_, client):
        resp = await client.get("/healthz")
    assert resp.status_code == 503
    assert resp.json()["reasons"] == ["health check failed: RuntimeError: boom"]


def status(**kw: object) -> StatusView:
    base: dict[str, object] = {
        "now_ms": NOW_MS,
        "last_tick_ms": NOW_MS - 60_000,
        "is_leader": True,
        "leader": "host-1",
        "series": (Freshness("bybit:BTC:oi:1h", 3_600_000, None),),
    }
    return StatusView(**{**base, **kw})  # type: ignore[arg-type]


def test_health_from_status() -> None:
    ok = health_from_status(status(), max_tick_age_s=180)
    assert ok.ok and ok.reasons == []
    assert ok.details["last_tick_age_s"] == 60
    assert ok.details["stale_series"] == ["bybit:BTC:oi:1h"]  # reported, not held against it

    late = health_from_status(status(last_tick_ms=NOW_MS - 900_000), max_tick_age_s=180)
    assert not late.ok
    assert late.reasons == ["last tick 900s ago (limit 180s)"]

    never = health_from_status(status(last_tick_ms=None), max_tick_age_s=180)
    assert never.reasons == ["no tick has run yet"]

    follower = health_from_status(status(last_tick_ms=None, is_leader=False), max_tick_age_s=180)
    assert follower.ok  # a follower does not tick

    down = health_from_status(status(), max_tick_age_s=180, store_error="OperationalError: x")
    assert not down.ok
    assert down.reasons == ["store unreachable: OperationalError: x"]
    assert down.details["store"] == "error"


async def test_the_default_check_pings_the_store(store: Store, tmp_path: Path) -> None:
    assert await ping_store(store) is None

    async def view() -> StatusView:
        return status()

    async def broken_view() -> StatusView:
        raise RuntimeError("outbox unreadable")

    good = await health_check(view, store, max_tick_age_s=180)()
    assert good.ok

    url = make_url(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    unreachable = Store(create_async_engine(url), url)
    try:
        bad = await health_check(view, unreachable, max_tick_age_s=180)()
        assert not bad.ok
        assert bad.reasons[0].startswith("store unreachable: OperationalError")
        worse = await health_check(broken_view, store, max_tick_age_s=180)()
        assert worse.reasons == ["status unavailable: RuntimeError: outbox unreadable"]
    finally:
        await unreachable.close()


# --- the timed sender and the counted handler --------------------------------------------


async def test_the_timed_sender_counts_results_and_observes_latency() -> None:
    clock = FakeClock()
    metrics = Metrics(clock=clock, runtime=False)
    answers = [
        (0.25, SendResult.sent()),
        (1.5, SendResult.transient("429", retry_after_s=3.0)),
        (0.5, SendResult.failed("blocked")),
        (0.75, SendResult.sent()),
    ]
    seen: list[tuple[Destination, GroupedMessage]] = []

    async def platform_send(dest: Destination, msg: GroupedMessage) -> SendResult:
        seen.append((dest, msg))
        took, result = answers[len(seen) - 1]
        clock.t += took
        return result

    async def raising_send(dest: Destination, msg: GroupedMessage) -> SendResult:
        clock.t += 2.0
        raise ConnectionError("reset")

    send = metrics.timed_sender("telegram", platform_send)
    results = [await send(destination(), MESSAGE) for _ in answers]
    assert results == [r for _, r in answers]  # passed through untouched
    assert seen == [(destination(), MESSAGE)] * 4
    with pytest.raises(ConnectionError):
        await metrics.timed_sender("discord", raising_send)(destination("discord"), MESSAGE)

    got = samples(metrics.render().decode())
    assert value(got, "liqbot_deliveries_total", platform="telegram", result="sent") == 2
    assert value(got, "liqbot_deliveries_total", platform="telegram", result="retried") == 1
    assert value(got, "liqbot_deliveries_total", platform="telegram", result="failed") == 1
    assert value(got, "liqbot_delivery_seconds_count", platform="telegram") == 4
    assert value(got, "liqbot_delivery_seconds_sum", platform="telegram") == 3.0
    assert value(got, "liqbot_delivery_seconds_bucket", platform="telegram", le="0.5") == 2
    assert value(got, "liqbot_delivery_seconds_bucket", platform="telegram", le="1.0") == 3
    assert value(got, "liqbot_deliveries_total", platform="discord", result="retried") == 1
    assert value(got, "liqbot_delivery_seconds_sum", platform="discord") == 2.0
    assert not any(name.startswith("process_") for name, _ in got)


async def test_the_counted_handler_classifies_replies(metrics: Metrics) -> None:
    replies = {
        "liqmap": Reply.of("a map"),
        "status": Reply.of(GENERIC_ERROR, error=True, private=True),
        "nope": Reply.of("I don't know /nope.", error=True, private=True),
    }

    async def handler(cmd: Command) -> Reply:
        return replies[cmd.name]

    handle = metrics.counted_handler(handler)
    for name in replies:
        assert await handle(Command(name, platform="telegram")) is replies[name]
    got = samples(metrics.render().decode())
    counts = {
        dict(labels)["command"]: dict(labels)["outcome"]
        for (name, labels), v in got.items()
        if name == "liqbot_commands_total" and v == 1
    }
    assert counts == {"liqmap": "ok", "status": "error", "unknown": "bad_input"}


async def test_the_counted_router_over_a_real_market(market: Market) -> None:
    metrics = Metrics(runtime=False)  # the known commands: bot.commands.COMMAND_SPECS
    handle = metrics.counted_handler(CommandRouter(market.services).handle)
    await handle(Command("help", platform="console"))
    await handle(Command("liqmap", ("NOPE",), platform="console"))
    await handle(Command("frobnicate", platform="console"))
    got = samples(metrics.render().decode())
    outcomes = {"help": "ok", "liqmap": "bad_input", "unknown": "bad_input"}
    for command, outcome in outcomes.items():
        labels = {"platform": "console", "command": command, "outcome": outcome}
        assert value(got, "liqbot_commands_total", **labels) == 1


# --- isolation ---------------------------------------------------------------------------


async def test_two_instances_do_not_collide() -> None:
    a, b = Metrics(), Metrics()  # the same names twice in one process: no duplicate error
    a.observe_tick(0.1, None, NOW_MS)
    a.set_leader("a", True)
    b.set_leader("b", False)
    got_a, got_b = samples(a.render().decode()), samples(b.render().decode())
    assert value(got_a, "liqbot_ticks_total") == 1
    assert value(got_b, "liqbot_ticks_total") == 0
    assert key("liqbot_leader", instance="b") not in got_a
    assert value(got_b, "liqbot_leader", instance="b") == 0

    async with (
        serve(a, healthy()) as (server_a, client_a),
        serve(b, healthy()) as (
            server_b,
            client_b,
        ),
    ):
        assert server_a.port != server_b.port
        ticks_a = value(samples((await client_a.get("/metrics")).text), "liqbot_ticks_total")
        ticks_b = value(samples((await client_b.get("/metrics")).text), "liqbot_ticks_total")
    assert (ticks_a, ticks_b) == (1, 0)
