"""The per-symbol :class:`~core.snapshot.Snapshot` of a tick, and the latest-snapshot cache.

One tick, for one symbol (DESIGN §2):

1. every tracked venue series that is fresh and has at least two closed bars in the lookback
   gets a map (:func:`core.mapbuild.build_map` with :func:`core.model.estimator_params`), all on
   one bin size so they add up (:func:`core.liqmap.combine`);
2. the combined map is cut to ``range_pct`` around the price and grouped into leverage bands,
   as ``/liqmap`` draws it; clusters (:func:`core.clusters.find_clusters`) and cumulative peaks
   come from that view;
3. realized liquidations from the symbol's ledger over the last tick, 1h, 4h and 24h;
4. ``stale`` names every series that is stale or unusable: a stale or missing venue is left
   out of the map and named, and a stale liquidation stream is named too. Rules on a stale
   snapshot stay silent (DESIGN §6).

The price is the mark price when one is given, else the mean of the venues' latest closes (the
map's price); ``prev_price`` is the previous snapshot's price, NaN when there is none (a crossing
needs two known prices, and every comparison with NaN is False). Cluster distances are measured
from the map's price.

:class:`SnapshotCache` keeps the latest :class:`SnapshotBuild` per symbol: the snapshot, the map
view that was drawn from, and a *render key* that changes only when the map does (new bar,
other venues, other settings), so the chat layer can cache one chart per key instead of one per
tick.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from alerts.series import BarSeries, SeriesStore
from core.clusters import find_clusters
from core.config import MapSettings
from core.durations import parse_duration_ms
from core.errors import DataError
from core.feeds.staleness import Freshness
from core.liqmap import CumulativePeaks, LiqMap, combine
from core.liqs import LiqLedger
from core.mapbuild import build_map, nice_bin_size
from core.model import estimator_params
from core.snapshot import LiqTotals, Snapshot

HOUR_MS = 3_600_000
WINDOWS: Mapping[str, int] = {"1h": HOUR_MS, "4h": 4 * HOUR_MS, "24h": 24 * HOUR_MS}
TICK = "tick"


@dataclass(frozen=True, eq=False)
class SnapshotBuild:
    """A snapshot with what it was drawn from.

    ``map`` is the combined map cut to the configured range and banded (what ``/liqmap`` draws),
    None when no venue could be mapped. ``render_key`` identifies that map: equal keys draw
    equal charts.
    """

    snapshot: Snapshot
    map: LiqMap | None
    render_key: str | None


def settings_digest(cfg: MapSettings) -> str:
    """A short stable digest of the map settings (part of the render key)."""
    return hashlib.sha1(cfg.model_dump_json().encode(), usedforsecurity=False).hexdigest()[:10]


def render_key(m: LiqMap | None, cfg: MapSettings) -> str | None:
    """``BTC:1768341600000:binance+bybit:100:3f2a...``, None without a map."""
    if m is None:
        return None
    return f"{m.symbol}:{m.ts_ms}:{'+'.join(m.venues)}:{m.bin_size:g}:{settings_digest(cfg)}"


def tick_window_ms(prev: Snapshot | None, now_ms: int, tick_ms: int) -> int:
    """The "tick" window: since the previous snapshot, so ticks partition time.

    Without a previous snapshot, or one older than two ticks (a restart, a stall), one tick:
    a day's liquidations must not look like one tick's spike.
    """
    if prev is None:
        return tick_ms
    since = now_ms - prev.ts_ms
    return since if 0 < since <= 2 * tick_ms else tick_ms


def make_snapshot(
    symbol: str,
    series: Sequence[BarSeries],
    ledger: LiqLedger | None,
    cfg: MapSettings,
    now_ms: int,
    *,
    prev: Snapshot | None = None,
    tick_ms: int = 60_000,
    streams: Sequence[Freshness] = (),
    mark_price: float | None = None,
) -> SnapshotBuild:
    """Build the snapshot of ``symbol`` at ``now_ms`` (see the module docstring)."""
    lookback = parse_duration_ms(cfg.lookback)
    stale: list[str] = []
    windows = []
    for s in series:
        if s.is_stale(now_ms):
            stale.append(s.name)
            continue
        try:
            windows.append((s, s.window(now_ms, lookback)))
        except DataError:  # too few bars yet: as good as missing
            stale.append(s.name)
    stale += [f.series for f in streams if f.is_stale(now_ms)]

    full: LiqMap | None = None
    if windows:
        ref = next((float(w.close[-1]) for _, w in windows if math.isfinite(w.close[-1])), None)
        if ref is not None and ref > 0:
            bin_size = cfg.bin_usd or nice_bin_size(ref)
            maps = []
            for s, w in windows:
                try:
                    maps.append(
                        build_map(
                            w,
                            estimator_params(cfg, s.interval_ms),
                            symbol=symbol,
                            venue=s.venue,
                            bin_size=bin_size,
                        )
                    )
                except DataError:  # e.g. a bar without OI: leave the venue out, say so
                    stale.append(s.name)
            full = combine(maps) if maps else None
        else:
            stale += [s.name for s, _ in windows]
    view = full.window(cfg.range_pct).banded() if full is not None else None

    price = _price(mark_price, view, series)
    if view is not None and view.n_bins:
        clusters = tuple(find_clusters(view, k=cfg.cluster_k, max_per_side=cfg.clusters_per_side))
        peaks = view.cumulative_peaks()
    else:
        clusters, peaks = (), CumulativePeaks(0.0, price, 0.0, price)

    liqs = _realized(ledger, now_ms, tick_window_ms(prev, now_ms, tick_ms))
    snap = Snapshot(
        symbol=symbol,
        ts_ms=now_ms,
        price=price,
        prev_price=prev.price if prev is not None else float("nan"),
        venues=view.venues if view is not None else (),
        clusters=clusters,
        peaks=peaks,
        liqs=liqs,
        atr=view.atr if view is not None else float("nan"),
        stale=tuple(dict.fromkeys(stale)),
    )
    return SnapshotBuild(snap, view, render_key(view, cfg))


def _price(mark: float | None, view: LiqMap | None, series: Sequence[BarSeries]) -> float:
    if mark is not None and math.isfinite(mark) and mark > 0:
        return float(mark)
    if view is not None and math.isfinite(view.price):
        return view.price
    # No map: the newest known close, even of a stale series (the snapshot says it is stale).
    best: tuple[int, float] | None = None
    for s in series:
        close, at = s.last_close, s.last_open_ms
        if close is not None and at is not None and (best is None or at > best[0]):
            best = (at, close)
    return best[1] if best is not None else float("nan")


def _realized(ledger: LiqLedger | None, now_ms: int, tick_ms: int) -> dict[str, LiqTotals]:
    spans = {TICK: tick_ms, **WINDOWS}
    if ledger is None:
        return {label: LiqTotals(ms, 0.0, 0.0) for label, ms in spans.items()}
    return {label: ledger.totals(now_ms, ms) for label, ms in spans.items()}


class SnapshotCache:
    """The latest :class:`SnapshotBuild` per symbol (what commands read before the store)."""

    def __init__(self) -> None:
        self._latest: dict[str, SnapshotBuild] = {}

    def put(self, build: SnapshotBuild) -> None:
        """Keep ``build`` unless a newer one of the symbol is already here."""
        cur = self._latest.get(build.snapshot.symbol)
        if cur is None or cur.snapshot.ts_ms <= build.snapshot.ts_ms:
            self._latest[build.snapshot.symbol] = build

    def seed(self, snapshot: Snapshot, view: LiqMap | None = None, key: str | None = None) -> None:
        """Take a stored snapshot (after a restart, or a follower's copy of the leader's), with
        its map view and render key when stored; without, the next tick draws one."""
        self.put(SnapshotBuild(snapshot, view, key if view is not None else None))

    def get(self, symbol: str) -> Snapshot | None:
        build = self._latest.get(symbol)
        return None if build is None else build.snapshot

    def build(self, symbol: str) -> SnapshotBuild | None:
        return self._latest.get(symbol)

    def symbols(self) -> list[str]:
        return sorted(self._latest)

    def __len__(self) -> int:
        return len(self._latest)


class SnapshotBuilder:
    """The snapshot job's body: every symbol of a :class:`SeriesStore`, into a cache.

    ``marks`` optionally gives mark prices per symbol (e.g. from a mark-price poll).
    """

    def __init__(
        self,
        store: SeriesStore,
        cfg: MapSettings,
        cache: SnapshotCache | None = None,
        *,
        tick_ms: int = 60_000,
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.cache = cache if cache is not None else SnapshotCache()
        self.tick_ms = tick_ms

    def build(self, symbol: str, now_ms: int, mark_price: float | None = None) -> SnapshotBuild:
        """Build, cache and return the snapshot of ``symbol`` at ``now_ms``."""
        ledger = self.store.ledger(symbol)
        ledger.prune(now_ms)
        build = make_snapshot(
            symbol,
            self.store.for_symbol(symbol),
            ledger,
            self.cfg,
            now_ms,
            prev=self.cache.get(symbol),
            tick_ms=self.tick_ms,
            streams=self.store.streams(),
            mark_price=mark_price,
        )
        self.cache.put(build)
        return build

    def tick(self, now_ms: int, marks: Mapping[str, float] | None = None) -> list[SnapshotBuild]:
        """Snapshots of every tracked symbol at ``now_ms``."""
        marks = marks or {}
        return [self.build(sym, now_ms, marks.get(sym)) for sym in self.store.symbols()]
