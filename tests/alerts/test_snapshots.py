"""Series store and snapshot building (alerts.series, alerts.snapshots).

Unit tests on synthetic bars, then two scenarios over simulated time: the news-item simulation
(three venues) and the real hourly BTCUSDT CSV replayed (skipped when ../shared is absent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from alerts.series import BarSeries, SeriesStore, bars_for_lookback, poll_bars
from alerts.snapshots import (
    SnapshotBuild,
    SnapshotBuilder,
    SnapshotCache,
    make_snapshot,
    tick_window_ms,
)
from core.bars import Bars
from core.clusters import find_clusters
from core.config import MapSettings
from core.errors import InputError
from core.feeds.backfill import IncrementalPoller
from core.feeds.base import RestFeed
from core.feeds.sim_feeds import SimDriver, TapeLiquidationStream, open_replay
from core.feeds.simulator import NEWS_CLUSTER_PRICE, NEWS_SWEEP_MS, news_item_config
from core.feeds.types import Kline, LiqEvent, OpenInterest, Venue
from core.liqmap import combine
from core.mapbuild import build_map
from core.model import estimator_params
from core.snapshot import Snapshot
from core.synthetic import synthetic_bars
from tests.fakes.timing import ManualClock

H = 3_600_000
DAY = 24 * H
CFG = MapSettings()


def hourly(n: int = 200, seed: int = 7, price: float = 95_000.0) -> Bars:
    return synthetic_bars(n, interval_ms=H, seed=seed, start_price=price)


def to_feed(bars: Bars, venue: Venue = "binance") -> tuple[list[Kline], list[OpenInterest]]:
    """The bars as a venue's klines and OI history (stamped at each bar's close)."""
    klines = [
        Kline(venue, "BTC", int(t), float(o), float(h), float(lo), float(c), float(v), float(tb))
        for t, o, h, lo, c, v, tb in zip(
            bars.ts,
            bars.open,
            bars.high,
            bars.low,
            bars.close,
            bars.volume_usd,
            bars.taker_buy_usd,
            strict=True,
        )
    ]
    oi = [
        OpenInterest(venue, "BTC", int(t) + H, float(x) / float(c), float(x))
        for t, x, c in zip(bars.ts, bars.oi_usd, bars.close, strict=True)
    ]
    return klines, oi


def end_of(bars: Bars) -> int:
    return int(bars.ts[-1]) + H


def store_with(
    venues: Sequence[Venue] = ("binance", "bybit"), n: int = 200, cfg: MapSettings = CFG
) -> tuple[SeriesStore, dict[str, Bars]]:
    store = SeriesStore.from_settings(cfg)
    data: dict[str, Bars] = {}
    for k, venue in enumerate(venues):
        bars = hourly(n, seed=7)  # venues quote the same market, with a touch of basis
        scale = 1 + 0.0002 * k
        bars = Bars(
            **{
                **{f: getattr(bars, f) for f in bars.__dataclass_fields__},
                "open": bars.open * scale,
                "high": bars.high * scale,
                "low": bars.low * scale,
                "close": bars.close * scale,
            }
        )
        store.add_bars(venue, "BTC", bars)
        data[venue] = bars
    return store, data


# -- BarSeries --------------------------------------------------------------------------------


def test_series_joins_klines_with_oi_that_arrives_later() -> None:
    bars = hourly(10)
    klines, oi = to_feed(bars)
    s = BarSeries("binance", "BTC", "1h", max_bars=50)
    assert s.add_klines(klines[:6]) == 0 and s.pending == 6  # no OI yet
    assert s.add_oi(oi[:4]) == 4 and s.pending == 2
    assert s.add_oi(oi[4:6]) == 2 and s.pending == 0
    assert s.add_klines(klines[:6]) == 0  # already joined: never twice
    assert s.add_oi(oi[6:]) == 0 and s.add_klines(klines[6:]) == 4
    assert s.bars is not None
    np.testing.assert_array_equal(s.bars.ts, bars.ts)
    np.testing.assert_allclose(s.bars.oi_usd, bars.oi_usd)
    np.testing.assert_allclose(s.bars.taker_buy_usd, bars.taker_buy_usd)
    assert s.freshness.last_update_ms == end_of(bars)  # the close of the last bar
    assert s.last_close == pytest.approx(float(bars.close[-1]))


def test_series_leaves_out_the_forming_bar_and_drops_bars_whose_oi_never_comes() -> None:
    bars = hourly(6)
    klines, oi = to_feed(bars)
    s = BarSeries("binance", "BTC", "1h", max_bars=50)
    s.add_klines(klines, now_ms=int(bars.ts[-1]) + H // 2)  # the last bar is still forming
    assert s.pending == 5
    del oi[2]  # the venue skipped bar 2's sample; bar 3's arrives
    assert s.add_oi(oi) == 4
    assert s.pending == 0  # bar 2 can never join: a newer sample exists
    assert s.bars is not None and int(bars.ts[2]) not in s.bars.ts.tolist()
    with pytest.raises(InputError, match="does not belong"):
        s.add_klines([Kline("okx", "BTC", 0, 1, 1, 1, 1, 1, None)])


def test_series_is_bounded_and_goes_stale_after_two_intervals() -> None:
    bars = hourly(100)
    s = BarSeries("okx", "BTC", "1h", max_bars=30)
    assert s.is_stale(end_of(bars))  # no data yet
    assert s.freshness.describe(end_of(bars)) == "no data yet"
    s.add_bars(bars.slice(0, 60))
    assert s.add_bars(bars) == 40 and len(s) == 30
    np.testing.assert_array_equal(s.bars.ts, bars.ts[-30:])  # type: ignore[union-attr]
    end = end_of(bars)
    assert not s.is_stale(end + 2 * H) and s.is_stale(end + 2 * H + 1)
    assert bars_for_lookback("7d", "1h") == 170 and bars_for_lookback(DAY, H) == 26


def test_store_routes_events_and_tracks_stream_freshness() -> None:
    store = SeriesStore(stream_interval_ms=60_000)
    store.track("bybit", "BTC")
    store.track_stream("bybit")
    assert store.stale(0) == ["bybit:BTC:bars:1h", "bybit:liqs"]
    n = store.add_events(
        [
            LiqEvent("bybit", "BTC", "short", 1.0, 1.0, 5.0, 1_000),
            LiqEvent("bybit", "ETH", "long", 1.0, 1.0, 7.0, 2_000),
        ]
    )
    assert n == 2 and store.ledger("ETH").totals(3_000, H).long_usd == 7.0
    assert not store.streams()[0].is_stale(2_000 + 120_000)  # the events proved it alive
    store.stream_alive("bybit", 500_000)
    assert store.streams()[0].last_update_ms == 500_000
    with pytest.raises(InputError, match="one interval per series"):
        store.track("bybit", "BTC", "5m")
    assert store.liq_retention_ms >= DAY + H  # the 24h window always fits


def test_realized_bars_give_each_venue_its_own_stream_per_bar() -> None:
    store, data = store_with(("binance", "bybit"), n=30)
    t = int(data["bybit"].ts[-2])
    store.track_stream("bybit", covered_from_ms=int(data["bybit"].ts[-5]))
    store.add_events(
        [
            LiqEvent("bybit", "BTC", "short", 1.0, 1.0, 11.0, t + 5),
            LiqEvent("binance", "BTC", "short", 1.0, 1.0, 99.0, t + 6),
        ]
    )
    bars = store.realized_bars("bybit", "BTC")
    assert bars is not None
    assert bars.liq_short_usd[-2] == 11.0 and bars.liq_short_usd[-1] == 0.0
    assert math.isnan(bars.liq_short_usd[0])  # before listening began
    assert store.realized_bars("okx", "BTC") is None


async def test_poll_bars_fills_the_store_from_a_rest_feed() -> None:
    bars = hourly(60)
    clock = ManualClock(1_000_000.0)
    replay = open_replay(bars, start_bar=40, clock=clock, sleep=clock.sleep, speed=3600)
    store = SeriesStore(max_bars=100)
    poller = IncrementalPoller(first_fetch_bars=100)
    now = replay.clock.now_ms()
    assert await poll_bars(store, replay.rest, poller, "BTC", now) == 40
    clock.now += 2.5  # two and a half hours
    assert await poll_bars(store, replay.rest, poller, "BTC", replay.clock.now_ms()) == 2
    s = store.series("binance", "BTC")
    assert s is not None and s.bars is not None
    np.testing.assert_array_equal(s.bars.ts, bars.ts[:42])
    np.testing.assert_allclose(s.bars.oi_usd, bars.oi_usd[:42])


# -- snapshots on synthetic bars ------------------------------------------------------------


def test_snapshot_is_the_map_the_cli_draws() -> None:
    store, data = store_with()
    now = end_of(data["binance"]) + 60_000
    build = make_snapshot("BTC", store.for_symbol("BTC"), store.ledger("BTC"), CFG, now)
    snap = build.snapshot
    lookback = 7 * DAY
    bin_size = 100.0
    oracle = (
        combine(
            [
                build_map(
                    b.up_to(now, lookback),
                    estimator_params(CFG, H),
                    symbol="BTC",
                    venue=v,
                    bin_size=bin_size,
                )
                for v, b in data.items()
            ]
        )
        .window(CFG.range_pct)
        .banded()
    )
    assert build.map is not None
    np.testing.assert_allclose(build.map.long_usd, oracle.long_usd)
    assert snap.venues == ("binance", "bybit") and snap.stale == ()
    assert snap.clusters == tuple(find_clusters(oracle, k=CFG.cluster_k))
    assert snap.clusters, "synthetic market has clusters"
    assert snap.peaks == oracle.cumulative_peaks()
    assert snap.price == pytest.approx(oracle.price) and snap.atr == pytest.approx(oracle.atr)
    assert math.isnan(snap.prev_price)  # no previous snapshot: no crossing can be seen
    assert set(snap.liqs) == {"tick", "1h", "4h", "24h"}
    assert snap.liqs["24h"].window_ms == DAY and snap.liqs["tick"].total_usd == 0.0


def test_stale_and_missing_venues_are_left_out_and_named() -> None:
    store, data = store_with(("binance", "bybit"))
    old = data["binance"].slice(0, 150)
    stale_store = SeriesStore.from_settings(CFG)
    stale_store.add_bars("binance", "BTC", old)  # stopped 50 hours ago
    stale_store.add_bars("bybit", "BTC", data["bybit"])
    stale_store.track("okx", "BTC")  # never answered
    stale_store.track_stream("bybit")  # tracked, never heard from
    now = end_of(data["bybit"]) + 1
    snap = make_snapshot(
        "BTC", stale_store.for_symbol("BTC"), None, CFG, now, streams=stale_store.streams()
    ).snapshot
    assert snap.venues == ("bybit",)
    assert snap.stale == ("binance:BTC:bars:1h", "okx:BTC:bars:1h", "bybit:liqs")
    assert snap.is_stale
    alone = make_snapshot("BTC", [stale_store.for_symbol("BTC")[1]], None, CFG, now).snapshot
    assert alone.clusters == snap.clusters  # the stale venue added nothing
    fresh = make_snapshot("BTC", store.for_symbol("BTC"), None, CFG, now).snapshot
    assert fresh.venues == ("binance", "bybit") and not fresh.is_stale


def test_no_usable_venue_still_gives_a_nan_safe_snapshot() -> None:
    store, data = store_with(("binance",))
    later = end_of(data["binance"]) + 5 * H
    build = make_snapshot("BTC", store.for_symbol("BTC"), store.ledger("BTC"), CFG, later)
    snap = build.snapshot
    assert build.map is None and build.render_key is None
    assert snap.venues == () and snap.clusters == () and snap.stale == ("binance:BTC:bars:1h",)
    assert snap.price == pytest.approx(float(data["binance"].close[-1]))  # last known close
    assert snap.peaks.long_usd == 0.0 and snap.peaks.short_price == snap.price
    assert math.isnan(snap.atr)
    empty = make_snapshot("ETH", [], None, CFG, later).snapshot
    assert math.isnan(empty.price) and empty.clusters == () and empty.stale == ()
    one_bar = SeriesStore()
    one_bar.add_bars("okx", "BTC", data["binance"].slice(0, 1))
    snap = make_snapshot(
        "BTC", one_bar.for_symbol("BTC"), None, CFG, end_of(data["binance"])
    ).snapshot
    assert snap.venues == ()


def test_price_tick_window_and_prev_price() -> None:
    store, data = store_with(("bybit",))
    led = store.ledger("BTC")
    t0 = end_of(data["bybit"])
    led.extend([LiqEvent("bybit", "BTC", "short", 1.0, 1.0, 5.0, t0 + 10_000)])
    first = make_snapshot(
        "BTC", store.for_symbol("BTC"), led, CFG, t0 + 30_000, tick_ms=60_000, mark_price=95_500.0
    ).snapshot
    assert first.price == 95_500.0 and first.liqs["tick"].window_ms == 60_000
    assert first.liqs["tick"].short_usd == 5.0
    second = make_snapshot(
        "BTC",
        store.for_symbol("BTC"),
        led,
        CFG,
        t0 + 90_000,
        prev=first,
        tick_ms=60_000,
        mark_price=float("nan"),
    ).snapshot
    assert second.prev_price == 95_500.0
    assert second.price == pytest.approx(float(data["bybit"].close[-1]))  # NaN mark ignored
    assert second.liqs["tick"].window_ms == 60_000 and second.liqs["tick"].short_usd == 0.0
    assert second.liqs["1h"].short_usd == 5.0
    # A previous snapshot from long ago (a restart) does not widen the tick window.
    assert tick_window_ms(first, t0 + 10 * H, 60_000) == 60_000
    assert tick_window_ms(first, t0 + 30_000 + 100_000, 60_000) == 100_000
    assert tick_window_ms(None, t0, 60_000) == 60_000


def test_render_key_changes_only_with_the_map() -> None:
    store, data = store_with(("binance",), n=120)
    now = end_of(data["binance"])
    series, led = store.for_symbol("BTC"), store.ledger("BTC")
    a = make_snapshot("BTC", series, led, CFG, now + 60_000)
    b = make_snapshot("BTC", series, led, CFG, now + 120_000, prev=a.snapshot)
    assert a.render_key is not None and a.render_key == b.render_key
    assert a.render_key.startswith(f"BTC:{now}:binance:100:")
    other = make_snapshot("BTC", series, led, MapSettings(tiers="coinglass"), now + 120_000)
    assert other.render_key != a.render_key
    extra = hourly(121)
    store.add_bars("binance", "BTC", extra.slice(120, 121))
    c = make_snapshot("BTC", series, led, CFG, now + H + 60_000, prev=b.snapshot)
    assert c.render_key != a.render_key


def test_cache_keeps_the_newest_per_symbol() -> None:
    cache = SnapshotCache()
    store, data = store_with(("binance",), n=60)
    now = end_of(data["binance"])
    new = make_snapshot("BTC", store.for_symbol("BTC"), None, CFG, now + 2)
    old = make_snapshot("BTC", store.for_symbol("BTC"), None, CFG, now + 1)
    cache.put(new)
    cache.put(old)
    assert cache.get("BTC") is new.snapshot and cache.build("BTC") is new
    assert cache.get("ETH") is None and cache.symbols() == ["BTC"] and len(cache) == 1
    restored = SnapshotCache()
    restored.seed(new.snapshot)
    assert restored.get("BTC") == new.snapshot
    build = restored.build("BTC")
    assert build is not None and build.map is None


def test_builder_builds_every_symbol_and_chains_prev() -> None:
    store, data = store_with(("binance",), n=60)
    eth = hourly(60, seed=3, price=3_300.0)
    store.add_bars("okx", "ETH", eth)
    builder = SnapshotBuilder(store, CFG, tick_ms=60_000)
    now = end_of(data["binance"])
    first = builder.tick(now + 1_000, marks={"BTC": 95_100.0})
    assert [b.snapshot.symbol for b in first] == ["BTC", "ETH"]
    assert first[0].snapshot.price == 95_100.0
    assert first[1].snapshot.venues == ("okx",)
    second = builder.tick(now + 61_000)
    assert second[0].snapshot.prev_price == 95_100.0
    assert builder.cache.get("ETH") is second[1].snapshot


# -- simulated time --------------------------------------------------------------------------


@dataclass
class Rig:
    """Feeds -> store -> snapshots, one step per call, as the scheduled jobs will run them."""

    rests: dict[str, RestFeed]
    streams: dict[str, TapeLiquidationStream]
    store: SeriesStore
    builder: SnapshotBuilder
    poller: IncrementalPoller
    last_ms: int

    async def step(self, now: int, symbols: Sequence[str] = ("BTC",)) -> Snapshot:
        for venue, rest in self.rests.items():
            for symbol in symbols:
                await poll_bars(self.store, rest, self.poller, symbol, now)
            self.store.add_events(self.streams[venue].source.events_between(self.last_ms, now))
            self.store.stream_alive(venue, now)
        self.last_ms = now
        build: SnapshotBuild = self.builder.build("BTC", now)
        return build.snapshot


def make_rig(
    rests: dict[str, RestFeed], streams: dict[str, TapeLiquidationStream], now: int
) -> Rig:
    store = SeriesStore.from_settings(CFG)
    for venue, stream in streams.items():
        store.track_stream(venue, covered_from_ms=now - DAY)
        store.add_events(stream.recent(now - DAY))  # a day of history for the 24h window
    builder = SnapshotBuilder(store, CFG, tick_ms=H)
    return Rig(rests, streams, store, builder, IncrementalPoller(first_fetch_bars=200), now)


def ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


async def test_news_item_snapshots_see_the_cluster_then_the_squeeze() -> None:
    clock = ManualClock()
    driver = SimDriver(news_item_config(), speed=3600, clock=clock, sleep=clock.sleep)
    venues: tuple[Venue, ...] = driver.sim.market.venues
    rig = make_rig(
        {v: driver.rest(v) for v in venues},
        {v: driver.liquidation_stream(v) for v in venues},
        driver.now_ms(),
    )
    snaps: dict[int, Snapshot] = {}
    while driver.now_ms() <= NEWS_SWEEP_MS + H:
        now = driver.now_ms()
        snaps[now] = await rig.step(now)
        clock.now += 1.0  # one hour of data time
    before = snaps[NEWS_SWEEP_MS]  # every bar before the sweep hour has closed
    assert set(before.venues) == set(venues)
    assert before.stale == ()
    shorts = [c for c in before.clusters if c.side == "short"]
    assert shorts and abs(shorts[0].price - NEWS_CLUSTER_PRICE) < 0.003 * NEWS_CLUSTER_PRICE
    assert 0 < shorts[0].distance_pct < 2
    assert shorts[0].usd > 300e6
    assert before.price < NEWS_CLUSTER_PRICE

    after = snaps[NEWS_SWEEP_MS + H]  # the sweep hour has closed
    hour = after.liqs["1h"]
    assert hour.short_usd > 100e6 > hour.long_usd
    assert set(hour.by_venue) == set(venues)
    assert after.liqs["tick"].short_usd == pytest.approx(hour.short_usd)  # hourly ticks
    quiet = [s.liqs["1h"].short_usd for t, s in snaps.items() if t <= NEWS_SWEEP_MS]
    assert max(quiet) < hour.short_usd / 10  # a spike, not the usual
    assert after.prev_price == before.price
    assert after.price > NEWS_CLUSTER_PRICE  # the cluster was swept


async def test_real_data_replay_cluster_before_and_realized_squeeze(market_csv: Path) -> None:
    clock = ManualClock()
    start = ms(2026, 1, 13, 12)
    replay = open_replay(market_csv, start_ms=start, clock=clock, sleep=clock.sleep, speed=3600)
    rig = make_rig({"binance": replay.rest}, {"binance": replay.stream}, start)
    snaps: dict[int, Snapshot] = {}
    while replay.clock.now_ms() <= ms(2026, 1, 13, 23):
        now = replay.clock.now_ms()
        snaps[now] = await rig.step(now)
        clock.now += 1.0

    at21 = snaps[ms(2026, 1, 13, 21)]
    assert at21.venues == ("binance",) and at21.stale == ()
    assert at21.price == pytest.approx(94_349.1)  # the 20:00 bar's close
    above = [c for c in at21.clusters if c.side == "short" and 0 < c.distance_pct <= 3]
    assert above, at21.clusters
    assert all(c.price > at21.price for c in above)

    at23 = snaps[ms(2026, 1, 13, 23)]  # the 22:00 bar has closed
    hour = at23.liqs["1h"]
    assert hour.short_usd == pytest.approx(108_990_315.00, rel=1e-9)
    assert hour.long_usd == pytest.approx(9_910_779.11, rel=1e-9)
    assert hour.by_venue == {"binance": (hour.long_usd, hour.short_usd)}
    assert at23.liqs["24h"].short_usd > hour.short_usd
    assert snaps[ms(2026, 1, 13, 22)].liqs["1h"].short_usd < 1e6  # the hour before was quiet
