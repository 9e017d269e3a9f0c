"""/liqmap, /liqs, /etf and /status against the in-memory market."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from alerts.snapshots import SnapshotBuild, SnapshotBuilder
from alerts.store import Store
from bot.commands import CommandRouter
from bot.services import EtfView
from core import fmt
from core.config import BotSettings, Settings
from core.feeds.base import StreamStatus
from core.feeds.staleness import Freshness
from tests.bot.market import NOW_MS, Market, etf_view, make_services
from tests.bot.test_commands_support import assert_specific_error, run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def router(market: Market) -> CommandRouter:
    return CommandRouter(market.services)


def btc(market: Market) -> SnapshotBuild:
    build = market.cache.build("BTC")
    assert build is not None and build.map is not None
    return build


# --- /liqmap --------------------------------------------------------------------------------


async def test_liqmap_chart_and_summary_match_the_snapshot(
    router: CommandRouter, market: Market
) -> None:
    reply = await run(router, "/liqmap")
    snap = btc(market).snapshot
    assert reply.png is not None and reply.png.startswith(PNG)
    assert not reply.error
    assert reply.title == "BTC liquidation map, ±12%, all venues"
    text = reply.text
    assert f"Price {fmt.price(snap.price)}" in text
    p = snap.peaks
    assert (
        f"Cumulative short liquidation leverage peaks at {fmt.usd(p.short_usd)} around "
        f"{fmt.price(p.short_price)}." in text
    )
    assert (
        f"Cumulative long liquidation leverage peaks at {fmt.usd(p.long_usd)} around "
        f"{fmt.price(p.long_price)}." in text
    )
    above = min(
        (c for c in snap.clusters if c.price > snap.price), key=lambda c: c.price - snap.price
    )
    dist = (above.price - snap.price) / snap.price * 100
    assert (
        f"Nearest dense cluster above: {fmt.price(above.price)} ({fmt.pct(dist, signed=True)}), "
        f"{fmt.usd(above.usd)}, mostly " in text
    )
    assert "Nearest dense cluster below: $" in text
    assert "Venues: Binance, Bybit." in text
    assert "Data as of 0s ago." in text
    assert "stale" not in text


async def test_chart_is_rendered_once_per_map(router: CommandRouter, market: Market) -> None:
    first = await run(router, "/liqmap BTC")
    again = await asyncio.gather(
        *(run(router, line) for line in ("/liqmap btc", "/liqmap BTCUSDT all 12%", "/liqmap"))
    )
    assert router.caches.charts.computed == 1
    assert all(r.png == first.png for r in again)
    # A new tick on the same bars keeps the render key: no new drawing.
    settings = market.services.settings
    assert market.services.series is not None
    SnapshotBuilder(market.services.series, settings.map, market.cache).tick(NOW_MS + 60_000)
    market.clock.now += 60
    await run(router, "/liqmap")
    assert router.caches.charts.computed == 1
    # Another range is another chart.
    await run(router, "/liqmap BTC 5%")
    assert router.caches.charts.computed == 2


async def test_liqmap_narrower_range_summarises_that_range(
    router: CommandRouter, market: Market
) -> None:
    reply = await run(router, "/liqmap BTC 5 %")
    assert reply.png is not None
    view = btc(market).map
    assert view is not None
    peaks = view.window(5).cumulative_peaks()
    assert reply.title == "BTC liquidation map, ±5%, all venues"
    if peaks.short_usd > 0:
        assert (
            f"peaks at {fmt.usd(peaks.short_usd)} around {fmt.price(peaks.short_price)}"
            in reply.text
        )


async def test_stale_snapshot_says_stale(router: CommandRouter, market: Market) -> None:
    build = btc(market)
    stale = dataclasses.replace(build.snapshot, stale=("binance:BTC:bars:1h",))
    market.cache.put(SnapshotBuild(stale, build.map, build.render_key))
    reply = await run(router, "/liqmap")
    assert reply.png is not None
    assert "Data is stale: binance:BTC:bars:1h. Alerts on BTC wait until it recovers." in reply.text


async def test_an_old_snapshot_is_stale_too(router: CommandRouter, market: Market) -> None:
    market.clock.now += 600  # no tick for 10 minutes: the leader is gone
    reply = await run(router, "/liqs")
    assert "Data as of 10m ago." in reply.text
    assert "Data is stale: the last snapshot is 10m old." in reply.text


async def test_symbol_without_snapshot(router: CommandRouter) -> None:
    reply = await run(router, "/liqmap sol")
    assert reply.text == "No data for SOL yet; the first snapshot comes within a minute of start."
    assert reply.png is None


async def test_seeded_snapshot_has_no_chart_yet(router: CommandRouter, market: Market) -> None:
    snap = dataclasses.replace(btc(market).snapshot, symbol="SOL")
    market.cache.seed(snap)
    reply = await run(router, "/liqmap SOL")
    assert reply.png is None and not reply.error
    assert "No map to draw yet" in reply.text


async def test_liqmap_one_venue(router: CommandRouter, market: Market) -> None:
    reply = await run(router, "/liqmap BTC binance")
    assert reply.png is not None
    assert reply.title == "BTC liquidation map, ±12%, Binance"
    assert "Venues: Binance." in reply.text
    await run(router, "/liqmap binance btc")
    assert router.caches.venue_maps.computed == 1
    assert router.caches.charts.computed == 1
    okx = await run(router, "/liqmap BTC okx")
    assert okx.error and okx.text == "No OKX bars for BTC yet; try /liqmap BTC all."


async def test_liqmap_venue_without_series(market: Market) -> None:
    market.services.series = None
    router = CommandRouter(market.services)
    reply = await run(router, "/liqmap BTC bybit")
    assert_specific_error(reply, "Only 'all' is available here")
    assert (await run(router, "/liqmap BTC all")).png is not None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/liqmap DOGEX", "Unknown symbol DOGEX. Try BTC, ETH, SOL."),
        ("/liqmap BTC 20%", "The map covers up to ±12% here; ask for 1% to 12%."),
        ("/liqmap BTC 0.5%", "The map covers up to ±12%"),
        ("/liqmap BTC ETH", "Two symbols given (BTC and ETH); give one."),
        ("/liqmap binance bybit", "Two venues given"),
        ("/liqmap 5% 6%", "Two ranges given"),
        ("/liqmap 5x", "'5x' is not a range"),
    ],
)
async def test_liqmap_bad_input(router: CommandRouter, line: str, message: str) -> None:
    reply = await run(router, line)
    assert_specific_error(reply, message, "Usage: /liqmap [symbol] [venue|all] [range%]")
    assert reply.png is None
    assert router.caches.charts.computed == 0


async def test_venue_not_watched(store: Store) -> None:
    settings = Settings(bot=BotSettings(venues=("binance", "bybit")))
    market = make_services(store, settings)
    reply = await run(CommandRouter(market.services), "/liqmap BTC okx")
    assert_specific_error(reply, "Venue okx is not watched here; try binance, bybit or all")


# --- /liqs ----------------------------------------------------------------------------------


async def test_liqs_by_side_and_venue(router: CommandRouter, market: Market) -> None:
    reply = await run(router, "/liqs")
    snap = btc(market).snapshot
    t = snap.liqs["1h"]
    assert reply.title == "BTC realized liquidations"
    assert (
        f"1h: {fmt.usd(t.total_usd)} (longs {fmt.usd(t.long_usd)}, shorts {fmt.usd(t.short_usd)})"
        in reply.text
    )
    assert "  Binance $2.9M, Bybit $1.2M" in reply.lines
    assert any(line.startswith("4h: ") for line in reply.lines)
    assert any(line.startswith("24h: ") for line in reply.lines)
    assert "lower bounds" in reply.text  # Binance contributed


async def test_liqs_one_window(router: CommandRouter) -> None:
    reply = await run(router, "/liqs 4h eth")
    assert reply.title == "ETH realized liquidations"
    assert [line[:3] for line in reply.lines if line[:1].isdigit()] == ["4h:"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/liqs 2h", "'2h' is not a window /liqs shows; choose 1h, 4h or 24h."),
        ("/liqs DOGEX", "Unknown symbol DOGEX."),
        ("/liqs BTC ETH", "Two symbols given"),
    ],
)
async def test_liqs_bad_input(router: CommandRouter, line: str, message: str) -> None:
    assert_specific_error(await run(router, line), message, "Usage: /liqs")


# --- /etf -----------------------------------------------------------------------------------


async def test_etf_table_streak_and_reversal(router: CommandRouter) -> None:
    reply = await run(router, "/etf")
    lines = reply.lines
    assert reply.title == "Bitcoin ETF flows"
    assert lines[0].startswith("Wed Jan 07: -$486.1M")
    assert lines[4] == "Tue Jan 13: +$753.8M (IBIT +$376.9M, FBTC +$263.8M)"
    assert "Streak: 2 trading days of inflows, +$870.5M since Jan 12." in lines
    assert any(
        line.startswith(
            "Reversal on Jan 12, outflows to inflows: +$116.7M after 4 days of outflows"
        )
        for line in lines
    )
    assert any(line.startswith("Confirmed the next day") for line in lines)
    assert "stale" not in reply.text


async def test_etf_days(router: CommandRouter) -> None:
    reply = await run(router, "/etf 10")
    assert sum(1 for line in reply.lines if line[:3] in ("Mon", "Tue", "Wed", "Thu", "Fri")) == 8


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/etf 31", "31 days is out of range; give 1 to 30."),
        ("/etf 0", "0 days is out of range"),
        ("/etf lots", "'lots' is not a number of days"),
        ("/etf 5 6", "Give one number of days"),
    ],
)
async def test_etf_bad_input(router: CommandRouter, line: str, message: str) -> None:
    assert_specific_error(await run(router, line), message, "Usage: /etf")


async def test_etf_stale_and_missing(router: CommandRouter, market: Market) -> None:
    stale = dataclasses.replace(etf_view(), stale=True, fetched_ms=NOW_MS - 2 * 86_400_000)

    async def stale_etf() -> EtfView | None:
        return stale

    async def no_etf() -> EtfView | None:
        return None

    market.services.etf = stale_etf
    reply = await run(router, "/etf")
    assert "Data is stale (last fetched 2d ago): the source has not answered lately." in reply.lines
    market.services.etf = no_etf
    reply = await run(router, "/etf")
    assert not reply.error and reply.text.startswith("No ETF flow data yet")


# --- /status --------------------------------------------------------------------------------


async def test_status(router: CommandRouter, market: Market) -> None:
    reply = await run(router, "/status")
    assert reply.title == "Status"
    assert "Leader: test-1 (this instance)" in reply.lines
    assert "Last tick: 0s ago" in reply.lines
    assert "Outbox: 0 queued, 0 dead letters" in reply.lines
    assert "BTC: snapshot 0s old" in reply.lines
    assert "SOL: no snapshot yet" in reply.lines


async def test_status_names_stale_feeds(router: CommandRouter, market: Market) -> None:
    from bot.services import StatusView

    async def status() -> StatusView:
        return StatusView(
            now_ms=NOW_MS,
            streams=(StreamStatus("bybit", "wss://x", False, 3, None, None, 0, 0, "closed " * 40),),
            series=(
                Freshness("binance:BTC:bars:5m", 300_000, NOW_MS - 3_600_000),
                Freshness("bybit:BTC:bars:5m", 300_000, NOW_MS),
            ),
            leader=None,
            queue_depth=7,
        )

    market.services.status = status
    reply = await run(router, "/status")
    assert "Leader: unknown" in reply.lines
    assert "Outbox: 7 queued, 0 dead letters" in reply.lines
    assert "Series: 1 of 2 fresh; stale: binance:BTC:bars:5m" in reply.lines
    stream = next(line for line in reply.lines if line.startswith("Bybit liquidation stream"))
    assert "disconnected" in stream and len(stream) < 140
