"""Staleness: every series knows when it was last updated, and everything downstream can tell.

A series is stale once more than two of its intervals pass with no update (DESIGN §6: stale
data never alerts). Pure: ``now_ms`` is always an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

STALE_AFTER_INTERVALS = 2


@dataclass(frozen=True)
class Freshness:
    """When a series was last updated and how often it should be."""

    series: str  # e.g. "binance:BTC:oi:5m"
    interval_ms: int
    last_update_ms: int | None = None

    def updated(self, ts_ms: int) -> Freshness:
        """The same series, updated at ``ts_ms`` (an older stamp never moves it back)."""
        last = ts_ms if self.last_update_ms is None else max(self.last_update_ms, ts_ms)
        return Freshness(self.series, self.interval_ms, last)

    def age_ms(self, now_ms: int) -> int | None:
        return None if self.last_update_ms is None else max(now_ms - self.last_update_ms, 0)

    def is_stale(self, now_ms: int) -> bool:
        """True when never updated, or when more than two intervals have passed."""
        age = self.age_ms(now_ms)
        return age is None or age > STALE_AFTER_INTERVALS * self.interval_ms

    def describe(self, now_ms: int) -> str:
        """'fresh (40s old)' / 'STALE (12m old, expected every 5m)' / 'no data yet'."""
        age = self.age_ms(now_ms)
        if age is None:
            return "no data yet"
        text = f"{_human(age)} old"
        if self.is_stale(now_ms):
            return f"STALE ({text}, expected every {_human(self.interval_ms)})"
        return f"fresh ({text})"


def _human(ms: int) -> str:
    s = ms // 1000
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172_800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"
