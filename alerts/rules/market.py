"""What the rules see each tick: per-symbol arrays built from the Snapshots, and the ETF report.

:func:`market_state` turns one tick's :class:`~core.snapshot.Snapshot` objects into
:class:`MarketState`, aligned with the tables' symbol list; :func:`etf_state` does the same for a
:class:`~core.etf_report.FlowReport`. Both are loops over symbols and clusters (about 50 and 500),
never over subscriptions.

Data status per row of every result (:class:`DataStatus`): ``OK``; ``STALE`` when the snapshot
(or ETF report) says its data is stale; ``NO_DATA`` when there is nothing to evaluate: no snapshot
for the symbol, a price that is not a positive finite number (cluster, cross), no previous price
(cross), no realized-liquidation window (spike), no report (etf). A row that is not ``OK`` never
holds, and its ``clear`` is NaN, so the state machine neither fires nor re-arms on it.

Liquidation windows. A snapshot carries realized totals for a few windows (``liqs``: e.g. the
tick, 1h, 4h, 24h). A spike subscription's window is mapped to **the shortest window the
snapshot has that is at least as long** (so a burst inside the requested window is never
missed; a 15m alert reads the 1h total until the feeds add a 15m window to ``Snapshot.liqs``,
which this picks up with no change). A window longer than all of them reads the longest.
``MarketState`` resolves that per symbol once: ``liq_usd[s, j]`` holds the totals of the window
that a request of exactly ``liq_windows_ms[j]`` resolves to on symbol s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from alerts.rules.tables import SideCode
from core.etf_report import FlowReport
from core.snapshot import LiqTotals, Snapshot

__all__ = [
    "Conditions",
    "DataStatus",
    "EtfState",
    "MarketState",
    "ReversalStage",
    "check_symbols",
    "etf_state",
    "market_state",
    "price_status",
    "resolve_window",
]

I8 = NDArray[np.int8]
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]


class DataStatus(IntEnum):
    """Why a row was (not) evaluated; int8 codes in the result arrays."""

    OK = 0
    STALE = 1
    NO_DATA = 2


class ReversalStage(IntEnum):
    """Where the latest ETF day stands relative to a reversal."""

    NONE = 0
    REVERSAL_DAY = 1  # the latest trading day is a reversal day
    CONFIRMATION_DAY = 2  # the latest trading day confirms the reversal of the day before


def _valid_price(x: float) -> bool:
    return math.isfinite(x) and x > 0


def resolve_window(liqs: Iterable[LiqTotals], window_ms: int) -> LiqTotals | None:
    """The totals a spike window reads: the shortest at least ``window_ms`` long, else the
    longest; None when there is none. Ties keep the first in iteration order."""
    best: LiqTotals | None = None
    longest: LiqTotals | None = None
    for t in liqs:
        if t.window_ms >= window_ms and (best is None or t.window_ms < best.window_ms):
            best = t
        if longest is None or t.window_ms > longest.window_ms:
            longest = t
    return best if best is not None else longest


@dataclass(frozen=True, eq=False)
class MarketState:
    """One tick of every symbol, as arrays (S symbols, W windows, C clusters in all).

    Attributes
    ----------
    symbols : tuple of str, length S
        The tables' symbol list.
    status : int8 (S,)
        :class:`DataStatus` of each symbol's snapshot: NO_DATA when absent, STALE when stale.
    price, prev_price : float64 (S,)
        USD; NaN when absent.
    liq_windows_ms : int64 (W,)
        Every window any snapshot carries, ascending.
    liq_usd : float64 (S, W, 3)
        Realized liquidations, USD, of the window a request of ``liq_windows_ms[j]`` resolves to on
        symbol s (see the module docstring), by :class:`~alerts.rules.tables.SideCode`
        (any = long + short); NaN when the symbol has no window.
    liq_window_ms : int64 (S, W)
        That resolved window; 0 when none.
    cluster_offsets : int64 (S + 1,)
        Clusters of symbol s are rows ``cluster_offsets[s]:cluster_offsets[s+1]`` of the arrays
        below, in the snapshot's order. Clusters with a non-finite price or USD, or a side other
        than long/short, are left out.
    cluster_index : int32 (C,)
        Position of the cluster in ``Snapshot.clusters``.
    cluster_side : int8 (C,)
        ``SideCode.LONG`` or ``SideCode.SHORT``.
    cluster_price, cluster_usd : float64 (C,)
    cluster_distance_pct : float64 (C,)
        ``(cluster_price - price) / price * 100`` with the snapshot's price (signed; equal to
        ``Cluster.distance_pct`` when the map was built at that price). NaN when the price is not
        valid.
    """

    symbols: tuple[str, ...]
    status: I8
    price: F64
    prev_price: F64
    liq_windows_ms: I64
    liq_usd: F64
    liq_window_ms: I64
    cluster_offsets: I64
    cluster_index: I32
    cluster_side: I8
    cluster_price: F64
    cluster_usd: F64
    cluster_distance_pct: F64

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)


def market_state(snapshots: Iterable[Snapshot], symbols: Sequence[str]) -> MarketState:
    """Per-symbol arrays of one tick, aligned with ``symbols`` (the tables' list).

    Snapshots of symbols not in ``symbols`` are ignored (nobody subscribes to them); symbols
    without a snapshot get ``DataStatus.NO_DATA``. When two snapshots share a symbol, the last
    one wins.
    """
    syms = tuple(symbols)
    by_symbol: dict[str, Snapshot] = {}
    index = {s: i for i, s in enumerate(syms)}
    for given in snapshots:
        if given.symbol in index:
            by_symbol[given.symbol] = given
    n = len(syms)
    status = np.full(n, DataStatus.NO_DATA, np.int8)
    price = np.full(n, np.nan)
    prev = np.full(n, np.nan)
    windows = sorted({t.window_ms for snap in by_symbol.values() for t in snap.liqs.values()})
    n_w = len(windows)
    liq = np.full((n, n_w, 3), np.nan)
    liq_win = np.zeros((n, n_w), np.int64)
    offsets = np.zeros(n + 1, np.int64)
    c_index: list[int] = []
    c_side: list[int] = []
    c_price: list[float] = []
    c_usd: list[float] = []
    c_dist: list[float] = []
    for i, sym in enumerate(syms):
        snap = by_symbol.get(sym)
        if snap is not None:
            status[i] = DataStatus.STALE if snap.is_stale else DataStatus.OK
            price[i] = snap.price
            prev[i] = snap.prev_price
            for j, w in enumerate(windows):
                t = resolve_window(snap.liqs.values(), w)
                if t is not None:
                    liq[i, j] = (t.long_usd + t.short_usd, t.long_usd, t.short_usd)
                    liq_win[i, j] = t.window_ms
            p = float(snap.price)
            for k, c in enumerate(snap.clusters):
                if c.side not in ("long", "short"):
                    continue
                if not (math.isfinite(c.price) and math.isfinite(c.usd)):
                    continue
                c_index.append(k)
                c_side.append(SideCode.LONG if c.side == "long" else SideCode.SHORT)
                c_price.append(c.price)
                c_usd.append(c.usd)
                c_dist.append((c.price - p) / p * 100 if _valid_price(p) else math.nan)
        offsets[i + 1] = len(c_index)
    return MarketState(
        symbols=syms,
        status=status,
        price=price,
        prev_price=prev,
        liq_windows_ms=np.array(windows, np.int64),
        liq_usd=liq,
        liq_window_ms=liq_win,
        cluster_offsets=offsets,
        cluster_index=np.array(c_index, np.int32),
        cluster_side=np.array(c_side, np.int8),
        cluster_price=np.array(c_price, np.float64),
        cluster_usd=np.array(c_usd, np.float64),
        cluster_distance_pct=np.array(c_dist, np.float64),
    )


@dataclass(frozen=True)
class EtfState:
    """The ETF report reduced to what etf subscriptions test.

    Attributes
    ----------
    status : DataStatus
        NO_DATA without a report or with a non-finite latest total; STALE when the feed says so.
    latest_day : int
        ``date.toordinal()`` of the latest trading day; 0 without a report.
    latest_total_musd : float
        That day's total, US$ millions (NaN without a report).
    stage : ReversalStage
        Whether the latest day is a reversal day or the day confirming one.
    reversal_day : int
        Ordinal of that reversal's day (0 when ``stage`` is NONE). A reversal and its confirmation
        share it, so the state machine can treat them as one event.
    """

    status: DataStatus
    latest_day: int
    latest_total_musd: float
    stage: ReversalStage
    reversal_day: int


def etf_state(report: FlowReport | None, *, stale: bool = False) -> EtfState:
    """Reduce a flow report (None when there is none) for :func:`~alerts.rules.etf.evaluate_etf`.

    Reversal mode holds on the reversal day itself **and** on the next trading day when that day
    moves the same way (``Reversal.confirmed``): the January 2026 case is a small +$116.7M turn on
    the 12th confirmed by +$753.8M on the 13th, and an alert should not be lost because the bot
    was down on the 12th. Both days carry the same ``reversal_day``; the state machine's
    hysteresis sees one condition over two days, so it fires once.
    """
    if report is None:
        return EtfState(DataStatus.NO_DATA, 0, math.nan, ReversalStage.NONE, 0)
    latest = report.latest
    status = DataStatus.STALE if stale else DataStatus.OK
    if not math.isfinite(latest.total_musd):
        status = DataStatus.NO_DATA
    stage, rev_day = ReversalStage.NONE, 0
    for r in reversed(report.reversals):
        if r.date == latest.date:
            stage, rev_day = ReversalStage.REVERSAL_DAY, r.date.toordinal()
            break
        if r.next_day is not None and r.next_day.date == latest.date and r.confirmed:
            stage, rev_day = ReversalStage.CONFIRMATION_DAY, r.date.toordinal()
            break
    return EtfState(status, latest.date.toordinal(), latest.total_musd, stage, rev_day)


# --- what every kind's evaluation returns ----------------------------------------------------


@dataclass(frozen=True, eq=False)
class Conditions:
    """The condition set of one kind, aligned with its table's rows (n rows).

    ``holds``, ``value``, ``clear`` and ``stale`` are the fields of
    :class:`alerts.state.ConditionArrays`, with the same meaning:

    Attributes
    ----------
    holds : bool (n,)
        The condition is true now. Never true for a row whose status is not OK.
    value : float64 (n,)
        The watched number (per kind: a distance %, a price, USD, US$ millions).
    clear : float64 (n,)
        How far the value is past the re-arm boundary, with the subscription's
        ``rearm_margin`` applied: >= 0 means it has left the condition by at least the margin,
        so a firing alert may re-arm. The state machine reads it only where ``holds`` is False;
        where it holds it is <= 0 for every kind but cross (whose ``clear`` is the distance
        from the level). NaN when the row is not OK.
    stale : bool (n,)
        ``status != OK``: the state machine must change nothing for this row.
    status : int8 (n,)
        :class:`DataStatus`, the reason a row was not evaluated.
    """

    holds: NDArray[np.bool_]
    value: F64
    clear: F64
    stale: NDArray[np.bool_]
    status: I8

    def __len__(self) -> int:
        return int(self.holds.shape[0])


def check_symbols(symbols: tuple[str, ...], market: MarketState) -> None:
    """ValueError unless a table and the market state use the same symbol list."""
    if symbols is not market.symbols and symbols != market.symbols:
        raise ValueError(
            "the table and the market state use different symbol lists; build the state with "
            "market_state(snapshots, tables.symbols)"
        )


def price_status(market: MarketState, *, need_prev: bool = False) -> I8:
    """Per-symbol :class:`DataStatus` for rules on the price: NO_DATA where the snapshot is OK but
    its price (and, with ``need_prev``, its previous price) is not a positive finite number."""
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(market.price) & (market.price > 0)
        if need_prev:
            valid &= np.isfinite(market.prev_price) & (market.prev_price > 0)
    return np.where(
        (market.status == DataStatus.OK) & ~valid, np.int8(DataStatus.NO_DATA), market.status
    ).astype(np.int8)
