"""The realized-liquidation ledger (core.liqs): window totals, per-bar series, pruning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import InputError
from core.feeds.types import VENUES, LiqEvent, Side, Venue
from core.liqs import (
    SAMPLED_VENUES,
    LiqLedger,
    is_lower_bound,
    per_bar_totals,
    window_totals,
)
from core.snapshot import LiqTotals

H = 3_600_000
T0 = 1_768_300_000_000 // H * H  # an hour boundary in January 2026


def ev(ts: int, venue: Venue = "bybit", side: Side = "short", usd: float = 1_000.0) -> LiqEvent:
    return LiqEvent(venue, "BTC", side, 95_000.0, usd / 95_000.0, usd, ts)


def brute(events: list[LiqEvent], start: int, end: int) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for e in events:
        if start <= e.ts_ms < end and math.isfinite(e.usd) and e.usd > 0:
            out[(e.venue, e.side)] = out.get((e.venue, e.side), 0.0) + e.usd
    return out


def random_events(n: int, seed: int, span_ms: int = 24 * H) -> list[LiqEvent]:
    rng = np.random.default_rng(seed)
    ts = T0 + rng.integers(0, span_ms, n)
    venues = rng.integers(0, 3, n)
    sides = rng.integers(0, 2, n)
    usd = rng.lognormal(8, 1.5, n)
    return [
        ev(int(t), VENUES[int(v)], "long" if s == 0 else "short", float(u))
        for t, v, s, u in zip(ts, venues, sides, usd, strict=True)
    ]


# -- window totals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "window", "long_usd", "short_usd"),
    [
        (T0 + H, H, 100.0, 2_000.0),  # [T0, T0+H): the event at T0+H is the next window's
        (T0 + H + 1, H, 100.0, 1_500.0),  # ... until now passes it; T0 itself drops out
        (T0 + 2 * H, 2 * H, 100.0, 2_500.0),
        (T0 + H, 1, 0.0, 1_000.0),  # [T0+H-1, T0+H): the one at T0+H-1
        (T0, H, 0.0, 0.0),  # [T0-H, T0): before every event
    ],
)
def test_window_is_half_open(now: int, window: int, long_usd: float, short_usd: float) -> None:
    led = LiqLedger(4 * H)
    led.extend(
        [
            ev(T0, "binance", "short", 1_000.0),
            ev(T0 + 10, "okx", "long", 100.0),
            ev(T0 + H - 1, "bybit", "short", 1_000.0),
            ev(T0 + H, "bybit", "short", 500.0),
        ]
    )
    t = led.totals(now, window)
    assert (t.long_usd, t.short_usd) == pytest.approx((long_usd, short_usd))
    assert t.window_ms == window
    assert t.total_usd == pytest.approx(long_usd + short_usd)


def test_totals_by_venue_and_side() -> None:
    led = LiqLedger(25 * H)
    led.extend(
        [
            ev(T0 + 1, "binance", "long", 10.0),
            ev(T0 + 2, "binance", "short", 20.0),
            ev(T0 + 3, "bybit", "short", 30.0),
            ev(T0 + 4, "bybit", "short", 40.0),
        ]
    )
    t = led.totals(T0 + H, H)
    assert t.by_venue == {"binance": (10.0, 20.0), "bybit": (0.0, 70.0)}  # okx had none
    assert (t.long_usd, t.short_usd) == (10.0, 90.0)
    assert is_lower_bound(t)  # Binance is sampled
    assert not is_lower_bound(LiqTotals(H, 0.0, 70.0, {"bybit": (0.0, 70.0)}))
    assert {"binance", "okx"} == SAMPLED_VENUES


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_totals_match_a_brute_force_sum_in_any_arrival_order(seed: int) -> None:
    events = random_events(5_000, seed)
    led = LiqLedger(25 * H, capacity=16)  # many growths on the way
    for chunk in np.array_split(np.arange(len(events)), 37):  # unsorted chunks, unsorted order
        led.extend([events[i] for i in chunk])
    now = T0 + 24 * H
    for window in (H // 60, H, 4 * H, 24 * H):
        t = led.totals(now, window)
        want = brute(events, now - window, now)
        for venue in VENUES:
            got = t.by_venue.get(venue, (0.0, 0.0))
            assert got[0] == pytest.approx(want.get((venue, "long"), 0.0))
            assert got[1] == pytest.approx(want.get((venue, "short"), 0.0))
    ts, _, _, _ = led.arrays()
    assert (np.diff(ts) >= 0).all()


def test_window_kernel_on_empty_and_one_venue() -> None:
    empty = np.zeros(0, np.int64)
    codes = np.zeros(0, np.int8)
    out = window_totals(empty, codes, codes, np.zeros(0), 0, 10)
    assert out.shape == (3, 2) and not out.any()
    out = window_totals(
        np.array([5], np.int64),
        np.array([2], np.int8),
        np.array([1], np.int8),
        np.array([7.0]),
        0,
        10,
    )
    assert out[2, 1] == 7.0 and out.sum() == 7.0


def test_bad_events_are_rejected_not_counted() -> None:
    led = LiqLedger(H)
    kept = led.extend([ev(T0, usd=float("nan")), ev(T0, usd=-5.0), ev(T0, usd=0.0), ev(T0)])
    assert kept == 1 and led.rejected == 3 and len(led) == 1
    assert led.totals(T0 + 1, H).short_usd == 1_000.0
    with pytest.raises(InputError, match="unknown venue"):
        led.extend([LiqEvent("kraken", "BTC", "long", 1.0, 1.0, 1.0, T0)])  # type: ignore[arg-type]


def test_windows_must_fit_the_retention() -> None:
    led = LiqLedger(H)
    with pytest.raises(InputError, match="longer than the ledger keeps"):
        led.totals(T0, 2 * H)
    with pytest.raises(InputError, match="positive"):
        led.totals(T0, 0)
    with pytest.raises(InputError, match="retention"):
        LiqLedger(0)


# -- pruning and memory -----------------------------------------------------------------------


def test_prune_forgets_what_retention_drops() -> None:
    led = LiqLedger(2 * H)
    led.extend([ev(T0 + k * H // 2) for k in range(10)])  # every half hour for 5 h
    assert len(led) == 10 and led.oldest_ms == T0 and led.newest_ms == T0 + 9 * H // 2
    dropped = led.prune(T0 + 5 * H)
    assert dropped == 6 and led.oldest_ms == T0 + 3 * H
    assert led.totals(T0 + 5 * H, 2 * H).short_usd == 4_000.0


def test_the_ledger_stays_bounded_by_retention_as_events_stream_in() -> None:
    led = LiqLedger(H, capacity=16)
    for k in range(20_000):  # one event a second for 5.5 hours
        led.append(ev(T0 + k * 1000))
    assert len(led) <= led.capacity <= 4 * 3_600  # pruned on growth: memory did not run away
    led.prune(T0 + 20_000 * 1000)
    assert len(led) == 3_600
    assert led.totals(T0 + 20_000 * 1000, H).short_usd == pytest.approx(3_600 * 1_000.0)


def test_empty_ledger_answers_zero() -> None:
    led = LiqLedger(H)
    t = led.totals(T0, H)
    assert (t.long_usd, t.short_usd, t.by_venue) == (0.0, 0.0, {})
    assert led.newest_ms is None and led.oldest_ms is None
    long_usd, short_usd = led.per_bar(np.array([T0], np.int64), H)
    assert long_usd.tolist() == [0.0] and short_usd.tolist() == [0.0]


def test_many_events_aggregate_correctly() -> None:
    """100k events (the figure the issue asks to aggregate in a few ms; see the report)."""
    events = random_events(100_000, 9)
    led = LiqLedger(25 * H)
    assert led.extend(events) == 100_000
    t = led.totals(T0 + 24 * H, 24 * H)
    assert t.total_usd == pytest.approx(sum(e.usd for e in events))


# -- per-bar series ---------------------------------------------------------------------------


def test_per_bar_series_matches_brute_force_with_gaps() -> None:
    events = random_events(3_000, 4, span_ms=10 * H)
    bar_ts = T0 + H * np.array([0, 1, 2, 4, 5, 9], np.int64)  # bars 3, 6-8 missing: a gap
    out = per_bar_totals(
        np.array([e.ts_ms for e in events], np.int64),
        np.array([0 if e.side == "long" else 1 for e in events], np.int8),
        np.array([e.usd for e in events]),
        bar_ts,
        H,
    )
    for i, b in enumerate(bar_ts):
        want = brute(events, int(b), int(b) + H)
        assert out[i, 0] == pytest.approx(sum(v for (_, s), v in want.items() if s == "long"))
        assert out[i, 1] == pytest.approx(sum(v for (_, s), v in want.items() if s == "short"))
    in_gap = sum(e.usd for e in events if T0 + 6 * H <= e.ts_ms < T0 + 9 * H)
    assert in_gap > 0 and out.sum() < sum(e.usd for e in events)


def test_per_bar_by_venue_and_unknown_before_coverage() -> None:
    led = LiqLedger(24 * H, covered_from_ms=T0 + H)
    led.extend(
        [
            ev(T0 + 5, "binance", "long", 1.0),  # before listening began: not trusted
            ev(T0 + H + 5, "binance", "long", 2.0),
            ev(T0 + H + 6, "bybit", "short", 3.0),
            ev(T0 + 2 * H + 1, "okx", "short", 4.0),
        ]
    )
    bars = T0 + H * np.arange(3, dtype=np.int64)
    long_usd, short_usd = led.per_bar(bars, H)
    assert math.isnan(long_usd[0]) and math.isnan(short_usd[0])
    assert long_usd[1:].tolist() == [2.0, 0.0] and short_usd[1:].tolist() == [3.0, 4.0]
    long_b, short_b = led.per_bar(bars, H, ["bybit"])
    assert long_b[1:].tolist() == [0.0, 0.0] and short_b[1:].tolist() == [3.0, 0.0]
    with pytest.raises(InputError, match="unknown venue"):
        led.per_bar(bars, H, ["kraken"])


def test_per_bar_is_unknown_where_events_were_pruned() -> None:
    led = LiqLedger(H)
    led.extend([ev(T0 + 10), ev(T0 + 2 * H + 10)])
    led.prune(T0 + 2 * H + 20)  # forgets the first event
    _, short_usd = led.per_bar(T0 + H * np.arange(3, dtype=np.int64), H)
    assert math.isnan(short_usd[0]) and math.isnan(short_usd[1])  # [T0+H, ...) starts before cut
    assert short_usd[2] == 1_000.0
