"""The simulated market: determinism, invariants, cascades, ETF streaks, the news-item scenario,
and the feeds on an accelerated fake clock.

Runs are kept short (days, not months) except the ETF model, which is daily and cheap.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.bars import Bars
from core.clusters import find_clusters
from core.errors import InputError
from core.estimator import EstimatorParams, fast
from core.etf import streak_runs
from core.etf_report import find_reversals, flow_report
from core.feeds.backfill import backfill
from core.feeds.errors import UnknownSymbol
from core.feeds.etf_feed import EtfFeed
from core.feeds.sim_feeds import SimDriver
from core.feeds.sim_market import SimulatedMarket, Simulation
from core.feeds.simulator import (
    DAY_MS,
    HOUR_MS,
    NEWS_CLUSTER_PRICE,
    NEWS_SWEEP_MS,
    EtfConfig,
    EtfFlowSim,
    MarketConfig,
    Steer,
    demo_config,
    news_item_config,
)
from core.feeds.types import LiqEvent
from core.liqmap import combine
from core.mapbuild import build_map
from tests.core.feeds.test_replay import FakeClock

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
COLUMNS = (
    "ts",
    "open",
    "high",
    "low",
    "close",
    "oi_usd",
    "volume_usd",
    "taker_buy_usd",
    "funding_rate",
    "liq_long_usd",
    "liq_short_usd",
)


def _run(config: MarketConfig, hours: int) -> SimulatedMarket:
    market = SimulatedMarket(config)
    market.advance_to(config.start_ms + hours * config.interval_ms - 1)
    return market


def _all_events(market: SimulatedMarket) -> list[LiqEvent]:
    return [e for v in market.venues for e in market.events_between(v, 0, 2**62)]


def _same_bars(a: Bars, b: Bars) -> bool:
    return all(np.array_equal(getattr(a, c), getattr(b, c)) for c in COLUMNS)


@pytest.fixture(scope="module")
def month() -> SimulatedMarket:
    return _run(MarketConfig(seed=3), 30 * 24)


@pytest.fixture(scope="module", params=[7, 0, 5], ids=lambda seed: f"seed{seed}")
def news(request: pytest.FixtureRequest) -> Simulation:
    """The news-item scenario on its default seed (7) and two others: the script, not luck."""
    sim = Simulation(news_item_config(request.param))
    sim.advance_to(NEWS_SWEEP_MS + 20 * HOUR_MS)
    return sim


# -- determinism ---------------------------------------------------------------------------


def test_same_seed_same_market_different_seed_different() -> None:
    a, b, c = (_run(MarketConfig(seed=s), 72) for s in (11, 11, 12))
    for symbol in a.symbols:
        for venue in a.venues:
            assert _same_bars(a.bars(symbol, venue), b.bars(symbol, venue))
            assert not np.array_equal(a.bars(symbol, venue).close, c.bars(symbol, venue).close)
    assert _all_events(a) == _all_events(b)
    assert _all_events(a) != _all_events(c)


def test_bars_do_not_depend_on_how_the_market_is_stepped() -> None:
    one = _run(MarketConfig(seed=5), 48)
    other = SimulatedMarket(MarketConfig(seed=5))
    for hour in range(0, 48 * HOUR_MS, 7 * HOUR_MS):  # uneven catch-ups, as a driver makes
        other.advance_to(T0 + hour)
    other.advance_to(T0 + 48 * HOUR_MS - 1)
    assert _same_bars(one.bars("BTC", "okx"), other.bars("BTC", "okx"))


def test_etf_flows_are_seeded_and_causal() -> None:
    a, b = EtfFlowSim(EtfConfig(), 1), EtfFlowSim(EtfConfig(), 1)
    fa, fb = a.until(date(2025, 10, 1)), b.until(date(2025, 10, 1))
    assert fa is not None and fb is not None
    np.testing.assert_array_equal(fa.flows, fb.flows)
    other = EtfFlowSim(EtfConfig(), 2).until(date(2025, 10, 1))
    assert other is not None and not np.array_equal(fa.flows, other.flows)
    # A day is published at 00:00 UTC of the next day, never before.
    day_ms = (date(2025, 9, 3) - date(1970, 1, 1)).days * DAY_MS
    assert a.published(day_ms + DAY_MS - 1).last_date == date(2025, 9, 2)  # type: ignore[union-attr]
    assert a.published(day_ms + DAY_MS).last_date == date(2025, 9, 3)  # type: ignore[union-attr]
    assert EtfFlowSim(EtfConfig(), 1).until(date(2025, 6, 30)) is None


# -- invariants ----------------------------------------------------------------------------


def _check_invariants(market: SimulatedMarket) -> None:
    step = market.config.interval_ms
    for symbol in market.symbols:
        for venue in market.venues:
            b = market.bars(symbol, venue)
            assert (np.diff(b.ts) == step).all()
            assert (b.low > 0).all() and (b.oi_usd > 0).all() and (b.volume_usd > 0).all()
            assert (b.low <= np.minimum(b.open, b.close)).all()
            assert (b.high >= np.maximum(b.open, b.close)).all()
            assert (b.open[1:] == b.close[:-1]).all()  # each venue opens at its own last close
            assert ((b.taker_buy_usd >= 0) & (b.taker_buy_usd <= b.volume_usd)).all()
            events = [e for e in market.events_between(venue, 0, 2**62) if e.symbol == symbol]
            # dtype given: with no events an empty array would default to float64.
            bar = (np.array([e.ts_ms for e in events], dtype=np.int64) - b.ts[0]) // step
            for side, col in (("long", b.liq_long_usd), ("short", b.liq_short_usd)):
                mine = np.array([e.side == side for e in events], dtype=bool)
                usd = np.bincount(bar[mine], [e.usd for e in events if e.side == side], len(b))
                np.testing.assert_allclose(usd, col, rtol=1e-9, atol=1e-6)
            for e, j in zip(events, bar, strict=True):
                assert b.ts[j] <= e.ts_ms < b.ts[j] + step
                assert e.qty * e.price == pytest.approx(e.usd)
                # Longs are liquidated on the way down: inside the bar, at or below its open.
                if e.side == "long":
                    assert b.low[j] - 1e-6 <= e.price <= b.open[j] + 1e-6
                else:
                    assert b.open[j] - 1e-6 <= e.price <= b.high[j] + 1e-6


@settings(deadline=None, max_examples=12)
@given(seed=st.integers(0, 2**31), hours=st.integers(2, 60))
def test_invariants_hold_for_any_seed(seed: int, hours: int) -> None:
    _check_invariants(_run(MarketConfig(seed=seed), hours))


def test_invariants_hold_over_a_month(month: SimulatedMarket) -> None:
    _check_invariants(month)


def test_invariants_hold_on_15_minute_bars() -> None:
    market = _run(MarketConfig(seed=2, interval_ms=15 * 60_000), 4 * 48)
    _check_invariants(market)
    r = np.diff(np.log(market.bars("BTC", "binance").close))
    assert 0.001 < r.std() < 0.006  # about the hourly volatility / 2


def test_the_market_looks_like_a_market(month: SimulatedMarket) -> None:
    b = month.bars("BTC", "binance")
    r = np.diff(np.log(b.close))
    assert 0.003 < r.std() < 0.01  # hourly; the real BTCUSDT data has 0.0054
    kurt = ((r - r.mean()) ** 4).mean() / r.var() ** 2
    assert kurt > 4  # fat tails: jumps and volatility clustering
    vol = np.abs(r)
    assert np.corrcoef(vol[:-1], vol[1:])[0, 1] > 0.05  # volatility clusters
    assert 1.03 < b.close.max() / b.close.min() < 2.0  # a month moves, but rarely doubles
    closes = [month.bars("BTC", v).close for v in month.venues]
    basis = np.abs(closes[1] / closes[0] - 1)
    assert basis.max() < 0.002  # venues quote within a few bp
    eth = np.diff(np.log(month.bars("ETH", "binance").close))
    assert np.corrcoef(r, eth)[0, 1] > 0.4  # one crypto market
    oi = [month.bars("BTC", v).oi_usd[-1] for v in month.venues]
    assert oi[0] > oi[1] > oi[2]  # binance, bybit, okx


def test_positions_are_the_estimators_map_of_the_simulated_bars(month: SimulatedMarket) -> None:
    """The simulated positions are what fast.estimate finds in the simulated bars."""
    b = month.bars("BTC", "binance")
    est = fast.estimate(b, month.config.params)
    book = month.book("BTC", "binance")
    assert book.long_usd.sum() == pytest.approx(est.longs.usd.sum(), rel=0.01)
    assert book.short_usd.sum() == pytest.approx(est.shorts.usd.sum(), rel=0.01)
    bins = np.clip(((est.shorts.price - book.price_low[0]) // book.bin_size).astype(int), 0, None)
    binned = np.bincount(bins, est.shorts.usd, len(book.short_usd))
    near = np.abs(book.price_low / b.close[-1] - 1) < 0.05
    assert np.corrcoef(binned[near], book.short_usd[near])[0, 1] > 0.99


def test_liquidations_follow_the_crossed_map(month: SimulatedMarket) -> None:
    b = month.bars("BTC", "binance")
    est = fast.estimate(b, EstimatorParams())
    from scipy.stats import spearmanr

    for pred, real in ((est.pred_long_usd, b.liq_long_usd), (est.pred_short_usd, b.liq_short_usd)):
        assert spearmanr(pred[24:], real[24:])[0] > 0.7


# -- cascades ------------------------------------------------------------------------------


def _sweep_bar(sim: Simulation, symbol: str = "BTC") -> dict[str, Bars]:
    return {v: sim.market.bars(symbol, v) for v in sim.market.venues}


def test_a_swept_cluster_cascades_and_pushes_price_further(news: Simulation) -> None:
    bars = _sweep_bar(news)
    i = int(np.searchsorted(bars["binance"].ts, NEWS_SWEEP_MS))
    shorts = sum(b.liq_short_usd[i] for b in bars.values())
    quiet = np.median(sum(b.liq_short_usd[i - 48 : i] for b in bars.values()))
    assert shorts > 50 * quiet  # a cascade, not a busy hour
    # The scripted high was 96,750: the forced buying took it further, within the cap.
    high = bars["binance"].high[i]
    cap = news.config.market.impact_cap
    assert 96_750 * 1.001 < high <= 96_750 * np.exp(cap) * 1.001
    # Without price impact the same hour stops at the script's high.
    market = dataclasses.replace(news.config.market, impact=0.0)
    calm = Simulation(dataclasses.replace(news.config, market=market))
    calm.advance_to(NEWS_SWEEP_MS)
    assert calm.market.bars("BTC", "binance").high[i] < high
    # Open interest unwinds after the sweep.
    oi = bars["binance"].oi_usd
    assert oi[i] < oi[i - 1]


def test_a_free_market_sweeps_clusters_too(month: SimulatedMarket) -> None:
    b = month.bars("BTC", "binance")
    total = b.liq_long_usd + b.liq_short_usd
    big = total > 20 * np.median(total)
    assert big.sum() >= 3  # cascades happen without a script
    move = (b.high - b.low) / b.open
    assert move[big].mean() > 2 * move.mean()  # and come with big ranges


# -- ETF flows -----------------------------------------------------------------------------


def test_etf_flows_have_streaks_and_reversals_every_few_weeks() -> None:
    flows = EtfFlowSim(EtfConfig(start=date(2025, 7, 1)), 4).until(date(2025, 12, 31))
    assert flows is not None
    runs = streak_runs(flows.total, flows.is_holiday)
    assert runs.length.max() >= 5
    reversals = find_reversals(flows)
    assert len(reversals) >= 3  # six months
    assert {r.direction for r in reversals} == {"bullish", "bearish"}
    gaps = np.diff([r.date.toordinal() for r in reversals])
    assert np.median(gaps) < 45
    # Holidays are rows of zeros (Christmas), weekends are absent.
    assert flows.is_holiday[flows.dates == np.datetime64("2025-12-25")].all()
    assert all(flows.date_at(i).weekday() < 5 for i in range(len(flows)))
    np.testing.assert_allclose(flows.total, flows.flows.sum(axis=1), atol=0.051)
    assert flows.funds[0] == "IBIT"


# -- the news item -------------------------------------------------------------------------


def test_news_item_short_cluster_near_96200_before_the_sweep(news: Simulation) -> None:
    maps = []
    for venue in news.market.venues:
        bars = news.market.bars("BTC", venue).up_to(NEWS_SWEEP_MS, 7 * DAY_MS)
        maps.append(build_map(bars, EstimatorParams(), symbol="BTC", venue=venue, bin_size=100.0))
    m = combine(maps)
    assert 94_900 < m.price < 96_000  # approaching 96,000
    shorts = [c for c in find_clusters(m) if c.side == "short"]
    nearest = shorts[0]
    assert abs(nearest.price - NEWS_CLUSTER_PRICE) < 0.003 * NEWS_CLUSTER_PRICE
    assert nearest.usd > 300e6
    assert nearest.usd == max(c.usd for c in shorts if c.distance_pct < 5)


def test_news_item_sweep_liquidates_over_100m_of_shorts(news: Simulation) -> None:
    sweep = [
        e
        for v in news.market.venues
        for e in news.market.events_between(v, NEWS_SWEEP_MS - 1, NEWS_SWEEP_MS + HOUR_MS - 1)
        if e.symbol == "BTC"
    ]
    shorts = sum(e.usd for e in sweep if e.side == "short")
    longs = sum(e.usd for e in sweep if e.side == "long")
    assert shorts > 100e6 > longs
    assert {e.venue for e in sweep if e.side == "short"} == set(news.market.venues)
    assert min(e.price for e in sweep if e.side == "short") < NEWS_CLUSTER_PRICE


def test_news_item_etf_reversal_led_by_fbtc(news: Simulation) -> None:
    flows = news.etf_flows(NEWS_SWEEP_MS)  # as the bot sees it during the sweep
    assert flows is not None and flows.last_date == date(2026, 1, 12)
    report = flow_report(flows)
    reversal = report.latest_reversal
    assert reversal is not None and reversal.direction == "bullish"
    assert reversal.date == date(2026, 1, 12) and reversal.total_musd == pytest.approx(116.7)
    assert reversal.prior_streak.days == 4
    assert reversal.prior_streak.sum_musd == pytest.approx(-1378.1)
    assert reversal.leaders[0].fund == "FBTC"
    later = flow_report(news.etf_flows(NEWS_SWEEP_MS + DAY_MS))  # type: ignore[arg-type]
    assert later.latest.total_musd == pytest.approx(753.8)
    assert later.latest.leaders[0].fund == "FBTC"
    assert later.latest_reversal is not None and later.latest_reversal.confirmed


# -- feeds on a fake clock -----------------------------------------------------------------


async def test_driver_serves_closed_bars_as_the_clock_runs() -> None:
    clock = FakeClock()
    driver = SimDriver(demo_config(3, history_days=3), speed=3600, clock=clock, sleep=clock.sleep)
    start = driver.start_ms
    rest = driver.rest("bybit")
    bars = await rest.klines("BTC", "1h", limit=1500)
    assert len(bars) == 72 and bars[-1].ts_ms + HOUR_MS == start
    clock.now += 2.5  # two and a half hours of data time
    bars = await rest.klines("BTC", "1h", limit=1500)
    assert len(bars) == 74
    assert all(k.ts_ms + HOUR_MS <= driver.now_ms() for k in bars)
    market = driver.sim.market.bars("BTC", "bybit")
    assert bars[-1].close == market.close[73] and market.ts[-1] == start + 2 * HOUR_MS
    oi = await rest.open_interest_hist("BTC", "1h", limit=3)
    assert [p.ts_ms for p in oi] == [k.ts_ms + HOUR_MS for k in bars[-3:]]
    mark = await rest.mark_price("ETH")
    current = driver.sim.market.bars("ETH", "bybit")
    assert current.low[-1] <= mark.mark <= current.high[-1]  # on the bar in progress
    assert len(await rest.klines("BTC", "4h", limit=10)) == 10
    with pytest.raises(UnknownSymbol):
        await rest.klines("SOL", "1h")


async def test_backfill_over_the_simulated_rest_gives_the_market_back() -> None:
    clock = FakeClock()
    driver = SimDriver(demo_config(4, history_days=2), speed=600, clock=clock, sleep=clock.sleep)
    got = await backfill(driver.rest("okx"), "ETH", "1h", T0, driver.start_ms)
    want = driver.sim.market.bars("ETH", "okx").slice(0, 48)
    for col in ("ts", "open", "high", "low", "close", "oi_usd", "volume_usd", "taker_buy_usd"):
        np.testing.assert_allclose(getattr(got, col), getattr(want, col), rtol=1e-12)


async def test_stream_plays_liquidations_on_time_and_etf_flows_publish() -> None:
    clock = FakeClock()
    driver = SimDriver(news_item_config(), speed=3600, clock=clock, sleep=clock.sleep)
    stream = driver.liquidation_stream("binance")
    assert stream.recent(driver.start_ms - DAY_MS)  # a day of history for /liqs
    seen: list[LiqEvent] = []
    async for event in stream.events():
        due = driver.clock.accel.wall_at(event.ts_ms)
        assert due <= clock.now + 1e-9 and clock.now - due < 1e-3
        seen.append(event)
        if event.ts_ms >= NEWS_SWEEP_MS + HOUR_MS:
            await stream.aclose()
    assert {e.venue for e in seen} == {"binance"} and {e.symbol for e in seen} == {"BTC", "ETH"}
    assert [e.ts_ms for e in seen] == sorted(e.ts_ms for e in seen)
    assert seen[0].ts_ms >= driver.start_ms
    sweep = [e for e in seen if NEWS_SWEEP_MS <= e.ts_ms < NEWS_SWEEP_MS + HOUR_MS]
    bar = driver.sim.market.bars("BTC", "binance")
    i = int(np.searchsorted(bar.ts, NEWS_SWEEP_MS))
    got = sum(e.usd for e in sweep if e.side == "short" and e.symbol == "BTC")
    assert got == pytest.approx(bar.liq_short_usd[i])
    assert stream.status().events == len(seen)
    flows = await driver.etf().flows()
    assert flows.last_date == date(2026, 1, 12)  # the 13th is published at 00:00 on the 14th
    assert driver.etf().status().state == "ok"


async def test_etf_feed_wraps_the_simulated_source(tmp_path: object) -> None:
    clock = FakeClock()
    driver = SimDriver(demo_config(1), speed=600, clock=clock, sleep=clock.sleep)
    feed = EtfFeed(driver.etf().source(), str(tmp_path), clock=lambda: driver.now_ms() / 1000)
    snap = await feed.get()
    assert snap.flows.source == "simulated" and len(snap.flows) > 60


async def test_driver_run_steps_bars_as_they_open() -> None:
    clock = FakeClock()
    driver = SimDriver(demo_config(2, history_days=1), speed=3600, clock=clock, sleep=clock.sleep)
    until = driver.start_ms + 5 * HOUR_MS
    await driver.run(until)
    assert driver.now_ms() >= until
    assert driver.sim.market.now_ms == until + HOUR_MS  # the bar in progress exists
    assert max(clock.sleeps) <= 1.0


def test_configs_are_checked() -> None:
    with pytest.raises(InputError, match="divisor"):
        MarketConfig(interval_ms=7 * 60_000)
    with pytest.raises(InputError, match="multiple"):
        MarketConfig(start_ms=T0 + 1)
    with pytest.raises(InputError, match="no DOGE"):
        SimulatedMarket().bars("DOGE", "binance")
    steer = Steer("BTC", T0, T0 + 10 * HOUR_MS, 120_000.0)
    market = _run(MarketConfig(seed=1, steers=(steer,)), 10)
    assert market.price("BTC") == pytest.approx(120_000.0, rel=0.02)  # a bridge to the target
