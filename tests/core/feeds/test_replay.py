"""Replay of a bar CSV: causality, the accelerated clock, synthetic events, and the real CSV.

The pure tape is tested with ``now_ms`` as an argument; the feeds with :class:`FakeClock`, whose
``sleep`` moves the clock instead of waiting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.bars import Bars, make_bars
from core.bars_csv import load_bars_csv
from core.errors import InputError
from core.feeds.backfill import backfill
from core.feeds.errors import FeedUnavailable, UnknownSymbol
from core.feeds.replay import (
    AcceleratedClock,
    BarTape,
    ReplayTape,
    path_price,
    split_liquidations,
    touch_fraction,
)
from core.feeds.sim_feeds import open_replay
from core.feeds.types import LiqEvent
from tests.conftest import BarsCsvWriter

H = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z, a multiple of 4h
WALL0 = 1_000_000.0


class FakeClock:
    """Wall clock for the feeds: ``sleep`` advances it and records what was asked."""

    def __init__(self, now: float = WALL0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _bars(n: int = 12, *, seed: int = 0, liqs: bool = True) -> Bars:
    rng = np.random.default_rng(seed)
    close = 95_000 * np.exp(np.cumsum(rng.normal(0, 0.005, n)))
    open_ = np.concatenate(([95_000.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.004, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.004, n))
    liq = rng.uniform(0, 5e6, (2, n)) if liqs else np.full((2, n), np.nan)
    liq[:, ::5] = 0.0  # some quiet bars
    return make_bars(
        ts=T0 + H * np.arange(n),
        open=open_,
        high=high,
        low=low,
        close=close,
        oi_usd=8e9 + 1e7 * np.arange(n),
        volume_usd=np.full(n, 3e8),
        taker_buy_usd=np.full(n, 1.5e8),
        funding_rate=np.full(n, 1e-4),
        liq_long_usd=liq[0],
        liq_short_usd=liq[1],
    )


# -- the pure parts ------------------------------------------------------------------------


def test_accelerated_clock_maps_both_ways() -> None:
    clock = AcceleratedClock(T0, WALL0, 3600.0)
    assert clock.data_ms(WALL0) == T0
    assert clock.data_ms(WALL0 + 1.0) == T0 + H  # one wall second is one hour of bars
    assert clock.wall_at(T0 + 2 * H) == pytest.approx(WALL0 + 2.0)
    with pytest.raises(InputError, match="speed"):
        AcceleratedClock(T0, WALL0, 0.0)


@pytest.mark.parametrize(
    ("ohlc", "frac", "price"),
    [
        ((100.0, 110.0, 90.0, 105.0), 0.0, 100.0),  # rising: open -> low -> high -> close
        ((100.0, 110.0, 90.0, 105.0), 1 / 3, 90.0),
        ((100.0, 110.0, 90.0, 105.0), 2 / 3, 110.0),
        ((100.0, 110.0, 90.0, 105.0), 1.0, 105.0),
        ((100.0, 110.0, 90.0, 95.0), 1 / 3, 110.0),  # falling: open -> high -> low -> close
        ((100.0, 110.0, 90.0, 95.0), 0.5, 100.0),
        ((100.0, 110.0, 90.0, 95.0), 2 / 3, 90.0),
    ],
)
def test_path_price(ohlc: tuple[float, float, float, float], frac: float, price: float) -> None:
    assert path_price(*ohlc, frac) == pytest.approx(price)


@pytest.mark.parametrize(
    ("ohlc", "side", "price", "frac", "met"),
    [
        ((100.0, 110.0, 90.0, 105.0), "long", 95.0, 1 / 6, 95.0),  # halfway down leg one
        ((100.0, 110.0, 90.0, 105.0), "short", 110.0, 2 / 3, 110.0),
        ((100.0, 110.0, 90.0, 95.0), "long", 100.0, 0.5, 100.0),  # falling: back at the open
        ((100.0, 110.0, 90.0, 95.0), "short", 105.0, 1 / 6, 105.0),
        ((100.0, 110.0, 90.0, 95.0), "long", 120.0, 0.5, 100.0),  # clipped into [low, open]
        ((100.0, 110.0, 90.0, 105.0), "short", 95.0, 0.5, 100.0),  # clipped; met on the way up
    ],
)
def test_touch_fraction_is_on_the_path(
    ohlc: tuple[float, float, float, float], side: str, price: float, frac: float, met: float
) -> None:
    got = touch_fraction(*ohlc, np.array([price]), "long" if side == "long" else "short")
    assert got[0] == pytest.approx(frac)
    assert path_price(*ohlc, float(got[0])) == pytest.approx(met)


@settings(deadline=None, max_examples=80)
@given(
    o=st.floats(50, 150),
    up=st.floats(0, 0.1),
    down=st.floats(0, 0.1),
    body=st.floats(-1, 1),
    total=st.floats(0.01, 1e9),
    k=st.integers(1, 8),
)
def test_split_liquidations_sum_and_stay_inside_the_bar(
    o: float, up: float, down: float, body: float, total: float, k: int
) -> None:
    h, lo = o * (1 + up), o * (1 - down)
    c = lo + (h - lo) * (body + 1) / 2
    for side in ("long", "short"):
        prices, usd = split_liquidations(o, h, lo, total, side, k)
        assert usd.sum() == pytest.approx(total, rel=1e-12)
        assert (usd > 0).all() and (np.diff(usd) >= -1e-6 * total).all()  # grow to the extreme
        if side == "long":
            assert (prices <= o + 1e-9).all() and (prices >= lo - 1e-9).all()
        else:
            assert (prices >= o - 1e-9).all() and (prices <= h + 1e-9).all()
        frac = touch_fraction(o, h, lo, c, prices, side)
        assert ((frac >= 0) & (frac <= 1)).all()
        assert (np.diff(frac) >= -1e-12).all()  # met in order along the path


@settings(deadline=None, max_examples=120)
@given(offset=st.integers(-2 * H, 14 * H), loop=st.booleans())
def test_tape_is_causal(offset: int, loop: bool) -> None:
    bars = _bars()
    tape = BarTape(bars, venue="binance", symbol="BTC", loop=loop)
    now = T0 + offset
    closed = max(0, min((now - T0) // H, len(bars) if not loop else 10**9))
    klines = tape.klines(now, H, None, None, 1500)
    assert len(klines) == closed
    assert all(k.ts_ms + H <= now for k in klines)  # never the bar in progress
    oi = tape.oi_hist(now, H, None, None, 500)
    assert [p.ts_ms for p in oi] == [k.ts_ms + H for k in klines]
    assert all(p.ts_ms <= now for p in oi)
    if klines and not loop:
        last = len(klines) - 1
        assert klines[-1].close == bars.close[last]
        assert tape.oi_now(now).oi_usd == bars.oi_usd[last]
    events = ReplayTape(bars, loop=loop).events_between(T0 - H, now)
    assert all(e.ts_ms <= now for e in events)


def test_start_end_limit_follow_binance() -> None:
    tape = BarTape(_bars(), venue="binance", symbol="BTC")
    now = T0 + 12 * H
    assert [k.ts_ms for k in tape.klines(now, H, None, None, 3)] == [
        T0 + 9 * H,
        T0 + 10 * H,
        T0 + 11 * H,
    ]
    assert [k.ts_ms for k in tape.klines(now, H, T0 + 2 * H, None, 2)] == [T0 + 2 * H, T0 + 3 * H]
    got = tape.klines(now, H, T0 + H, T0 + 3 * H, 100)
    assert [k.ts_ms for k in got] == [T0 + H, T0 + 2 * H, T0 + 3 * H]
    oi = tape.oi_hist(now, H, T0 + 2 * H, T0 + 3 * H, 100)  # bounds on the stamp (bar close)
    assert [p.ts_ms for p in oi] == [T0 + 2 * H, T0 + 3 * H]


def test_coarser_intervals_aggregate_complete_buckets_only() -> None:
    bars = _bars()
    tape = BarTape(bars, venue="binance", symbol="BTC")
    now = T0 + 10 * H + 1  # two full 4h buckets; the third has only two bars closed
    k4 = tape.klines(now, 4 * H, None, None, 10)
    assert [k.ts_ms for k in k4] == [T0, T0 + 4 * H]
    first = k4[0]
    assert first.open == bars.open[0] and first.close == bars.close[3]
    assert first.high == bars.high[:4].max() and first.low == bars.low[:4].min()
    assert first.volume_usd == pytest.approx(bars.volume_usd[:4].sum())
    oi4 = tape.oi_hist(now, 4 * H, None, None, 10)
    assert [(p.ts_ms, p.oi_usd) for p in oi4] == [
        (T0 + 4 * H, bars.oi_usd[3]),
        (T0 + 8 * H, bars.oi_usd[7]),
    ]
    with pytest.raises(InputError, match="whole multiple"):
        tape.klines(now, 5 * 60_000, None, None, 10)


def test_loop_shifts_each_pass_forward() -> None:
    bars = _bars(6)
    tape = ReplayTape(bars, loop=True)
    now = T0 + 9 * H
    klines = tape.klines(now, H, None, None, 1500)
    assert [k.ts_ms for k in klines] == [T0 + i * H for i in range(9)]
    assert klines[6].open == bars.open[0]  # the second pass replays row 0
    first_pass = tape.bar_events(0)
    again = tape.bar_events(6)
    assert [e.ts_ms - 6 * H for e in again] == [e.ts_ms for e in first_pass]
    assert tape.end_ms is None


def test_mark_price_follows_the_bar_in_progress() -> None:
    bars = _bars()
    tape = BarTape(bars, venue="binance", symbol="BTC")
    mark = tape.mark(T0 + 2 * H + H // 3)
    o, h, lo, c = (float(x[2]) for x in (bars.open, bars.high, bars.low, bars.close))
    assert mark.mark == pytest.approx(path_price(o, h, lo, c, 1 / 3))
    assert bars.low[2] <= mark.mark <= bars.high[2]
    assert mark.funding_rate == pytest.approx(1e-4)
    assert mark.next_funding_ms is not None and mark.next_funding_ms > mark.ts_ms
    assert tape.mark(T0 + 40 * H).mark == bars.close[-1]  # after the end: the last close
    with pytest.raises(FeedUnavailable):
        tape.oi_now(T0 + H - 1)


def test_events_of_a_bar_sum_to_its_realized_totals() -> None:
    bars = _bars(20)
    tape = ReplayTape(bars, events_per_bar=5)
    for j in range(len(bars)):
        events = tape.bar_events(j)
        for side, col in (("long", bars.liq_long_usd), ("short", bars.liq_short_usd)):
            mine = [e for e in events if e.side == side]
            assert len(mine) == (5 if col[j] > 0 else 0)
            assert sum(e.usd for e in mine) == pytest.approx(col[j], rel=1e-12)
            for e in mine:
                assert bars.ts[j] <= e.ts_ms < bars.ts[j] + H
                assert e.qty * e.price == pytest.approx(e.usd)
                if side == "long":
                    assert bars.low[j] <= e.price <= bars.open[j]
                else:
                    assert bars.open[j] <= e.price <= bars.high[j]
        assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events)
    assert ReplayTape(_bars(liqs=False)).events_between(T0 - 1, T0 + 40 * H) == []


# -- the feeds on a fake clock -------------------------------------------------------------


async def test_rest_reveals_one_bar_per_wall_second_at_speed_3600() -> None:
    clock = FakeClock()
    replay = open_replay(_bars(), speed=3600, start_bar=3, clock=clock, sleep=clock.sleep)
    rest = replay.rest
    assert len(await rest.klines("BTC", "1h")) == 3  # history before the start
    clock.now += 0.999
    assert len(await rest.klines("btc", "1h")) == 3  # the fourth bar is not closed yet
    clock.now += 0.001
    got = await rest.klines("BTCUSDT", "1h")
    assert len(got) == 4 and got[-1].ts_ms == T0 + 3 * H
    assert (await rest.open_interest("BTC")).oi_usd == replay.tape.bars.oi_usd[3]
    assert len(await rest.open_interest_hist("BTC", "1h", limit=2)) == 2
    assert (await rest.mark_price("BTC")).ts_ms == T0 + 4 * H
    assert rest.status().requests == 6 and rest.status().state == "ok"
    with pytest.raises(UnknownSymbol):
        await rest.klines("ETH", "1h")
    with pytest.raises(InputError, match="limit"):
        await rest.klines("BTC", "1h", limit=0)


async def test_stream_yields_each_event_when_the_clock_reaches_it() -> None:
    clock = FakeClock()
    bars = _bars(8)
    replay = open_replay(bars, speed=3600, start_bar=2, clock=clock, sleep=clock.sleep)
    seen: list[tuple[LiqEvent, float]] = []
    async for event in replay.stream.events():
        seen.append((event, clock.now))
    assert seen, "the bars have liquidations"
    for event, wall in seen:
        due = replay.clock.accel.wall_at(event.ts_ms)
        assert due <= wall + 1e-9  # never early ...
        assert wall - due < 1e-3  # ... and not late: the sleep ended at its time
    assert max(clock.sleeps) <= 1.0  # slept in short steps, so aclose() is prompt
    got = [e for e, _ in seen]
    assert [e.ts_ms for e in got] == sorted(e.ts_ms for e in got)
    for j in range(2, 8):  # every bar from the start on, and its totals exactly
        in_bar = [e for e in got if bars.ts[j] <= e.ts_ms < bars.ts[j] + H]
        assert sum(e.usd for e in in_bar if e.side == "long") == pytest.approx(bars.liq_long_usd[j])
        assert sum(e.usd for e in in_bar if e.side == "short") == pytest.approx(
            bars.liq_short_usd[j]
        )
    assert all(e.ts_ms >= bars.ts[2] for e in got)  # nothing from before the start
    status = replay.stream.status()
    assert status.events == len(got) and not status.connected  # the tape has ended
    assert sum(e.usd for e in replay.stream.recent(T0)) == pytest.approx(
        np.nansum(bars.liq_long_usd) + np.nansum(bars.liq_short_usd)
    )


async def test_a_looping_stream_runs_until_closed() -> None:
    clock = FakeClock()
    replay = open_replay(_bars(4), speed=3600, loop=True, clock=clock, sleep=clock.sleep)
    count = 0
    async for event in replay.stream.events():
        count += 1
        if event.ts_ms > T0 + 9 * H:  # well into the third pass
            await replay.stream.aclose()
    assert count > 0 and not replay.stream.status().connected


def test_open_replay_checks_its_start(write_bars_csv: BarsCsvWriter) -> None:
    path = write_bars_csv(_bars(4))
    assert open_replay(path, start_bar=3).clock.accel.data0_ms == T0 + 3 * H
    with pytest.raises(InputError, match="start_bar"):
        open_replay(path, start_bar=4)


# -- the real CSV --------------------------------------------------------------------------

SQUEEZE_MS = 1_768_341_600_000  # 2026-01-13T22:00Z


@pytest.fixture(scope="module")
def real_bars(market_csv: Path) -> Bars:
    return load_bars_csv(market_csv)


async def test_real_csv_replays_the_squeeze_hour(market_csv: Path, real_bars: Bars) -> None:
    clock = FakeClock()
    i = int(np.searchsorted(real_bars.ts, SQUEEZE_MS))
    replay = open_replay(
        market_csv, speed=3600, start_ms=SQUEEZE_MS, clock=clock, sleep=clock.sleep
    )
    before = await replay.rest.klines("BTC", "1h", limit=1)
    assert before[-1].ts_ms == SQUEEZE_MS - H  # the squeeze bar is not out yet
    shorts = 0.0
    async for event in replay.stream.events():
        if event.ts_ms >= SQUEEZE_MS + H:
            break
        if event.side == "short":
            shorts += event.usd
            assert 94_040.0 <= event.price <= 96_863.7
    assert shorts == pytest.approx(108_990_315.0)  # the $109.0M of PROVENANCE.md
    after = await replay.rest.klines("BTC", "1h", limit=1)
    assert after[-1].ts_ms == SQUEEZE_MS and after[-1].high == real_bars.high[i]


async def test_real_csv_backfills_back_to_itself(market_csv: Path, real_bars: Bars) -> None:
    """The backfill a live bot runs, on the replay, gives the CSV's bars back (gaps and all)."""
    clock = FakeClock()
    end = int(real_bars.ts[400])
    replay = open_replay(real_bars, speed=3600, start_ms=end, clock=clock, sleep=clock.sleep)
    got = await backfill(replay.rest, "BTC", "1h", int(real_bars.ts[0]), end)
    want = real_bars.slice(0, 400)  # every bar closed before the start, OI at each close
    np.testing.assert_array_equal(got.ts, want.ts)
    for col in ("open", "high", "low", "close", "oi_usd", "volume_usd", "taker_buy_usd"):
        np.testing.assert_allclose(getattr(got, col), getattr(want, col), rtol=1e-12)
    missing = np.diff(real_bars.ts[:400]) != H
    assert missing.any() == bool((np.diff(got.ts) != H).any())
