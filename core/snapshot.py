"""What one tick knows about one symbol: the map's clusters, realized liquidations, freshness.

Built by the leader each tick (alerts/), stored, and read by every command and every rule.
Pure data: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.liqmap import Cluster, CumulativePeaks


@dataclass(frozen=True)
class LiqTotals:
    """Realized liquidations over one window, USD, by side and by venue."""

    window_ms: int
    long_usd: float
    short_usd: float
    by_venue: dict[str, tuple[float, float]] = field(default_factory=dict)  # venue -> (long, short)

    @property
    def total_usd(self) -> float:
        return self.long_usd + self.short_usd


@dataclass(frozen=True)
class Snapshot:
    """One symbol at one tick.

    ``prev_price`` is the price at the previous tick (for level crossings); ``liqs`` holds the
    realized totals of the windows the bot reports (e.g. 1h, 4h, 24h) and of the last tick.
    ``stale`` lists the series that are stale: rules on a stale snapshot stay silent.
    """

    symbol: str
    ts_ms: int
    price: float
    prev_price: float
    venues: tuple[str, ...]
    clusters: tuple[Cluster, ...]
    peaks: CumulativePeaks
    liqs: dict[str, LiqTotals]  # window label ("tick", "1h", "4h", "24h") -> totals
    atr: float = float("nan")
    stale: tuple[str, ...] = ()

    @property
    def is_stale(self) -> bool:
        return bool(self.stale)
