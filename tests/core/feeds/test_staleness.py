"""Staleness: a series is stale past two intervals without an update (DESIGN §6)."""

from __future__ import annotations

import pytest

from core.feeds.backfill import IncrementalPoller
from core.feeds.staleness import Freshness

MIN = 60_000


@pytest.mark.parametrize(
    ("last", "now", "stale", "text"),
    [
        (None, 10 * MIN, True, "no data yet"),
        (0, 5 * MIN, False, "fresh (5m old)"),
        (0, 90_000, False, "fresh (90s old)"),
        (0, 10 * MIN, False, "fresh (10m old)"),  # exactly two intervals: still fresh
        (0, 10 * MIN + 1, True, "STALE (10m old, expected every 5m)"),
        (0, 3 * 3_600_000, True, "STALE (3h old, expected every 5m)"),
        (10 * MIN, 5 * MIN, False, "fresh (0s old)"),  # a clock behind the data is not stale
    ],
)
def test_staleness_table(last: int | None, now: int, stale: bool, text: str) -> None:
    f = Freshness("binance:BTC:oi:5m", 5 * MIN, last)
    assert f.is_stale(now) is stale
    assert f.describe(now) == text


def test_an_older_update_never_moves_freshness_back() -> None:
    f = Freshness("s", MIN).updated(10 * MIN).updated(3 * MIN)
    assert f.last_update_ms == 10 * MIN


def test_poller_freshness_before_any_poll_is_stale() -> None:
    poller = IncrementalPoller()
    f = poller.freshness("binance", "BTC", "5m")
    assert f.series == "binance:BTC:klines:5m"
    assert f.interval_ms == 5 * MIN
    assert f.is_stale(0)
