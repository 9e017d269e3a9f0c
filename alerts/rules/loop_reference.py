"""The rules as a plain loop over subscriptions: the test oracle and the benchmark baseline.

This is what the vectorized evaluation (:mod:`alerts.rules.evaluate`) must equal, written the
obvious way: for each subscription, look up its snapshot and test its condition. It reads the
:class:`~alerts.subscriptions.Subscription` objects and :class:`~core.snapshot.Snapshot` objects
directly, sharing no code with the vectorized path, so a test that holds the two equal also
checks the tables, the market-state arrays and the sort orders. The arithmetic is written in the
same order as the vectorized kernels, so results are equal to the last bit.

Semantics are documented in each kind's module (:mod:`alerts.rules.cluster`, ``cross``,
``spike``, ``etf``) and in :mod:`alerts.rules.market`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alerts.rules.market import DataStatus, ReversalStage
from alerts.subscriptions import Kind, Subscription
from core.etf_report import FlowReport
from core.snapshot import LiqTotals, Snapshot

__all__ = ["LoopResult", "evaluate_loop", "evaluate_one"]

NAN = math.nan
INF = math.inf


@dataclass(frozen=True)
class LoopResult:
    """One subscription's condition; the kind-specific fields keep their defaults elsewhere.

    ``extra`` fields mirror the vectorized condition sets: cluster (``distance_pct``,
    ``cluster_idx``, ``cluster_price``, ``cluster_usd``), cross (``crossed``, ``distance_pct``),
    spike (``window_ms``), etf (``stage``, ``event_day``).
    """

    holds: bool
    value: float
    clear: float
    status: DataStatus
    distance_pct: float = NAN
    cluster_idx: int = -1
    cluster_price: float = NAN
    cluster_usd: float = NAN
    crossed: int = 0
    window_ms: int = 0
    stage: int = 0
    event_day: int = 0

    @property
    def stale(self) -> bool:
        return self.status != DataStatus.OK


_NOT_OK = {
    DataStatus.STALE: LoopResult(False, NAN, NAN, DataStatus.STALE),
    DataStatus.NO_DATA: LoopResult(False, NAN, NAN, DataStatus.NO_DATA),
}


def evaluate_loop(
    subs: Iterable[Subscription],
    snapshots: Mapping[str, Snapshot],
    report: FlowReport | None = None,
    *,
    etf_stale: bool = False,
) -> dict[int, LoopResult]:
    """Condition of every cluster, cross, spike and etf subscription, by subscription id.

    ``snapshots`` maps a symbol to its snapshot; digest subscriptions are skipped.
    """
    out: dict[int, LoopResult] = {}
    for sub in subs:
        if sub.kind == Kind.DIGEST:
            continue
        out[sub.id] = evaluate_one(sub, snapshots, report, etf_stale=etf_stale)
    return out


def evaluate_one(
    sub: Subscription,
    snapshots: Mapping[str, Snapshot],
    report: FlowReport | None,
    *,
    etf_stale: bool = False,
) -> LoopResult:
    """The condition of one subscription (any kind but digest)."""
    if sub.kind == Kind.ETF:
        return _etf(sub, report, etf_stale)
    snap = snapshots.get(sub.symbol or "")
    if snap is None:
        return _NOT_OK[DataStatus.NO_DATA]
    if snap.is_stale:
        return _NOT_OK[DataStatus.STALE]
    if sub.kind == Kind.CLUSTER:
        return _cluster(sub, snap)
    if sub.kind == Kind.CROSS:
        return _cross(sub, snap)
    if sub.kind == Kind.SPIKE:
        return _spike(sub, snap)
    raise ValueError(f"no rule for kind {sub.kind}")


def _price_ok(x: float) -> bool:
    return math.isfinite(x) and x > 0


def _cluster(sub: Subscription, snap: Snapshot) -> LoopResult:
    price = snap.price
    if not _price_ok(price):
        return _NOT_OK[DataStatus.NO_DATA]
    m = sub.timing.rearm_margin
    best_k = -1
    best_d = INF
    best_signed = NAN
    clear = INF
    for k, c in enumerate(snap.clusters):
        if c.side not in ("long", "short") or not (math.isfinite(c.price) and math.isfinite(c.usd)):
            continue
        if sub.side != "any" and c.side != sub.side:
            continue
        signed = (c.price - price) / price * 100
        d = abs(signed)
        clear = min(clear, max(d / sub.pct - (1.0 + m), (1.0 - m) - c.usd / sub.min_usd))
        if c.usd >= sub.min_usd and d < best_d:
            best_k, best_d, best_signed = k, d, signed
    if best_k < 0:
        return LoopResult(False, INF, clear, DataStatus.OK)
    c = snap.clusters[best_k]
    return LoopResult(
        holds=best_d <= sub.pct,
        value=best_d,
        clear=clear,
        status=DataStatus.OK,
        distance_pct=best_signed,
        cluster_idx=best_k,
        cluster_price=c.price,
        cluster_usd=c.usd,
    )


def _cross(sub: Subscription, snap: Snapshot) -> LoopResult:
    price, prev, level = snap.price, snap.prev_price, sub.level
    if not (_price_ok(price) and _price_ok(prev)):
        return _NOT_OK[DataStatus.NO_DATA]
    crossed = 0
    if prev < level <= price:
        crossed = 1
    elif prev > level >= price:
        crossed = -1
    holds = (crossed == 1 and sub.direction in ("up", "any")) or (
        crossed == -1 and sub.direction in ("down", "any")
    )
    distance = (price - level) / level * 100
    return LoopResult(
        holds=holds,
        value=price,
        clear=abs(distance) - sub.timing.rearm_margin,
        status=DataStatus.OK,
        crossed=crossed,
        distance_pct=distance,
    )


def _window(liqs: Iterable[LiqTotals], window_ms: int) -> LiqTotals | None:
    """Shortest window at least ``window_ms`` long, else the longest; first on ties."""
    items = list(liqs)
    if not items:
        return None
    covering = [t for t in items if t.window_ms >= window_ms]
    if covering:
        return min(covering, key=lambda t: t.window_ms)
    return max(items, key=lambda t: t.window_ms)


def _spike(sub: Subscription, snap: Snapshot) -> LoopResult:
    t = _window(snap.liqs.values(), sub.window_ms)
    if t is None:
        return _NOT_OK[DataStatus.NO_DATA]
    total = {"any": t.long_usd + t.short_usd, "long": t.long_usd, "short": t.short_usd}[sub.side]
    if not math.isfinite(total):
        return _NOT_OK[DataStatus.NO_DATA]
    return LoopResult(
        holds=total >= sub.min_usd,
        value=total,
        clear=(1.0 - sub.timing.rearm_margin) - total / sub.min_usd,
        status=DataStatus.OK,
        window_ms=t.window_ms,
    )


def _etf(sub: Subscription, report: FlowReport | None, stale: bool) -> LoopResult:
    if report is None or not math.isfinite(report.latest.total_musd):
        return _NOT_OK[DataStatus.NO_DATA]
    if stale:
        return _NOT_OK[DataStatus.STALE]
    latest = report.latest
    if sub.etf_mode == "threshold":
        flow = abs(latest.total_musd)
        holds = flow >= sub.threshold_musd
        return LoopResult(
            holds=holds,
            value=latest.total_musd,
            clear=(1.0 - sub.timing.rearm_margin) - flow / sub.threshold_musd,
            status=DataStatus.OK,
            event_day=latest.date.toordinal() if holds else 0,
        )
    for r in report.reversals:
        on_day = r.date == latest.date
        confirming = r.next_day is not None and r.next_day.date == latest.date and r.confirmed
        if on_day or confirming:
            stage = ReversalStage.REVERSAL_DAY if on_day else ReversalStage.CONFIRMATION_DAY
            return LoopResult(
                holds=True,
                value=latest.total_musd,
                clear=-INF,
                status=DataStatus.OK,
                stage=int(stage),
                event_day=r.date.toordinal(),
            )
    return LoopResult(False, latest.total_musd, INF, DataStatus.OK)
