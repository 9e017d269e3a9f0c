"""A small in-memory market for bot tests: seeded bars on two venues, snapshots, ETF flows.

``make_services(store)`` gives :class:`bot.services.BotServices` whose snapshot cache holds a
fresh BTC and ETH snapshot (with maps, so ``/liqmap`` can draw), a stale SOL one, an ETF
history with the January 2026 reversal, and a status view. Nothing here touches the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from alerts.series import SeriesStore
from alerts.snapshots import SnapshotBuilder, SnapshotCache
from alerts.store import Store
from bot.services import BotServices, EtfView, StatusView
from core.bars import Bars
from core.config import MapSettings, Settings
from core.etf import EtfFlows
from core.etf_report import flow_report
from core.feeds.types import LiqEvent, Side, Venue
from core.synthetic import synthetic_bars

H = 3_600_000
CFG = MapSettings()
START_MS = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)
N_BARS = 200
NOW_MS = START_MS + N_BARS * H  # the close of the last bar: snapshots at NOW_MS are fresh

JAN = [
    ("2026-01-02", 300.0),
    ("2026-01-05", 200.0),
    ("2026-01-06", -312.0),
    ("2026-01-07", -486.1),
    ("2026-01-08", -398.9),
    ("2026-01-09", -250.0),
    ("2026-01-12", 116.7),
    ("2026-01-13", 753.8),
]


def _bars(seed: int, price: float, scale: float = 1.0) -> Bars:
    b = synthetic_bars(N_BARS, interval_ms=H, seed=seed, start_price=price, start_ts=START_MS)
    fields = {f: getattr(b, f) for f in b.__dataclass_fields__}
    for f in ("open", "high", "low", "close"):
        fields[f] = fields[f] * scale
    return Bars(**fields)


EVENTS: tuple[tuple[Venue, Side, float], ...] = (
    ("binance", "short", 2.5e6),
    ("bybit", "long", 1.2e6),
    ("binance", "long", 0.4e6),
)


def series_store(
    symbols: Sequence[tuple[str, float]] = (("BTC", 95_000.0), ("ETH", 3_300.0)),
) -> SeriesStore:
    """Bars of each symbol on binance and bybit, and a few liquidations in the last hour."""
    store = SeriesStore.from_settings(CFG)
    for k, (symbol, price) in enumerate(symbols):
        for j, venue in enumerate(("binance", "bybit")):
            store.add_bars(venue, symbol, _bars(7 + k, price, 1 + 0.0002 * j))
        ledger = store.ledger(symbol)
        for i, (venue, side, usd) in enumerate(EVENTS):
            ts = NOW_MS - 600_000 + i * 1000
            ledger.append(LiqEvent(venue, symbol, side, price, usd / price, usd, ts))
    return store


def etf_view(asof: str = "2026-01-13") -> EtfView:
    total = np.array([t for _, t in JAN])
    flows = EtfFlows(
        dates=np.array([d for d, _ in JAN], dtype="datetime64[D]"),
        funds=("IBIT", "FBTC", "ARKB"),
        flows=np.stack([total * 0.5, total * 0.35, total * 0.15], axis=1),
        total=total,
    )
    return EtfView(flows, flow_report(flows, asof=asof), fetched_ms=NOW_MS, source="test")


@dataclass
class FakeClock:
    now: float = NOW_MS / 1000

    def __call__(self) -> float:
        return self.now


@dataclass
class Changes:
    """Counts ``subscriptions_changed`` calls."""

    calls: int = 0

    def __call__(self) -> None:
        self.calls += 1


@dataclass
class Market:
    services: BotServices
    clock: FakeClock
    changes: Changes
    cache: SnapshotCache = field(default_factory=SnapshotCache)


def make_services(store: Store, settings: Settings | None = None) -> Market:
    """Services over the in-memory market above, at ``NOW_MS`` (BTC, ETH fresh; no SOL)."""
    settings = settings or Settings()
    series = series_store()
    builder = SnapshotBuilder(series, settings.map, tick_ms=60_000)
    builder.tick(NOW_MS)
    clock = FakeClock()
    changes = Changes()
    view = etf_view()

    async def etf() -> EtfView | None:
        return view

    async def status() -> StatusView:
        return StatusView(now_ms=int(clock() * 1000), last_tick_ms=NOW_MS, leader="test-1")

    services = BotServices(
        settings=settings,
        store=store,
        snapshots=builder.cache,
        etf=etf,
        status=status,
        series=series,
        subscriptions_changed=changes,
        clock=clock,
    )
    return Market(services, clock, changes, builder.cache)
