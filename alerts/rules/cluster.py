"""``cluster`` rule: price within ``pct`` % of a cluster of at least ``min_usd`` on ``side``.

Semantics (the oracle is :func:`alerts.rules.loop_reference.evaluate_loop`):

* candidate clusters: those of the subscription's symbol whose side matches (``any`` takes both;
  long clusters lie below the price, short ones above, but the cluster's own label decides);
* a candidate *qualifies* when ``usd >= min_usd``;
* distance = ``|cluster_price - price| / price * 100`` with the snapshot's current price;
* the reported cluster is the nearest qualifying one (ties: first in ``Snapshot.clusters``);
* the condition holds when its distance is ``<= pct`` (exactly at the threshold holds).

``clear`` (hysteresis; see :class:`~alerts.rules.market.Conditions`): with margin m, a cluster
has *left* once it is beyond ``pct * (1 + m)`` or smaller than ``min_usd * (1 - m)``; per
cluster that is ``max(d / pct - (1 + m), (1 - m) - usd / min_usd)`` (the two forms of
:func:`alerts.state.clearance_below` / ``clearance_above``) and ``clear`` is the minimum over the
candidates: >= 0 once every candidate has left. +inf when there is no candidate.

How it is vectorized, per (symbol, side) group of subscriptions (at most 150 groups; the rows of
a group are contiguous because the table is sorted by (symbol, side, min_usd)):

1. Sort the group's candidate clusters by distance and take the running maximum of their USD,
   ``M``. The nearest cluster with ``usd >= min_usd`` is the first position where
   ``M >= min_usd``: one ``np.searchsorted(M, min_usd)`` for every subscription of the group.
2. Only clusters that raise the running maximum (the Pareto front: no other cluster is both
   nearer and larger) can give the minimum in ``clear``, since a dominated cluster has a larger
   distance term and a larger size term. The front is a handful of clusters, so ``clear`` is
   a running minimum over one 1-d pass per front cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from alerts.rules.market import (
    Conditions,
    DataStatus,
    MarketState,
    check_symbols,
    price_status,
)
from alerts.rules.tables import ClusterTable, SideCode

__all__ = ["ClusterConditions", "evaluate_cluster"]

F64 = NDArray[np.float64]
I32 = NDArray[np.int32]


@dataclass(frozen=True, eq=False)
class ClusterConditions(Conditions):
    """Condition set of a :class:`~alerts.rules.tables.ClusterTable` (rows aligned with it).

    ``value`` is the absolute distance, %, to the nearest qualifying cluster (+inf when none
    qualifies, NaN when the row is not OK).

    Attributes
    ----------
    distance_pct : float64 (n,)
        Signed distance of that cluster, ``(cluster_price - price) / price * 100``; NaN when none.
    cluster_idx : int32 (n,)
        Its position in the symbol's ``Snapshot.clusters``; -1 when none.
    cluster_price, cluster_usd : float64 (n,)
        Its price and size, USD; NaN when none.
    """

    distance_pct: F64
    cluster_idx: I32
    cluster_price: F64
    cluster_usd: F64


def evaluate_cluster(table: ClusterTable, market: MarketState) -> ClusterConditions:
    """Evaluate every cluster subscription against one tick.

    Parameters
    ----------
    table : ClusterTable of n rows
    market : MarketState built with ``table.symbols``

    Returns
    -------
    ClusterConditions of n rows, aligned with ``table``. A loop over symbols and sides only.
    """
    check_symbols(table.symbols, market)
    n = len(table)
    sym_status = price_status(market)
    # offsets has 3 * S + 1 entries (a group per symbol and side); every third bounds a symbol.
    per_symbol = np.diff(table.offsets[::3])
    status = np.repeat(sym_status, per_symbol)
    holds = np.zeros(n, np.bool_)
    value = np.full(n, np.nan)
    clear = np.full(n, np.nan)
    distance = np.full(n, np.nan)
    c_idx = np.full(n, -1, np.int32)
    c_price = np.full(n, np.nan)
    c_usd = np.full(n, np.nan)
    out = _Out(holds, value, clear, distance, c_idx, c_price, c_usd)
    co = market.cluster_offsets
    for s in np.flatnonzero((sym_status == DataStatus.OK) & (per_symbol > 0)).tolist():
        a, b = int(co[s]), int(co[s + 1])
        dist = market.cluster_distance_pct[a:b]
        side = market.cluster_side[a:b]
        for code in SideCode:
            g = s * 3 + int(code)
            lo, hi = int(table.offsets[g]), int(table.offsets[g + 1])
            if lo == hi:
                continue
            sel = np.arange(b - a) if code == SideCode.ANY else np.flatnonzero(side == code)
            _group(table, out, lo, hi, dist[sel], a + sel, market)
    return ClusterConditions(
        holds=holds,
        value=value,
        clear=clear,
        stale=status != DataStatus.OK,
        status=status,
        distance_pct=distance,
        cluster_idx=c_idx,
        cluster_price=c_price,
        cluster_usd=c_usd,
    )


@dataclass(frozen=True, eq=False)
class _Out:
    holds: NDArray[np.bool_]
    value: F64
    clear: F64
    distance: F64
    c_idx: I32
    c_price: F64
    c_usd: F64


def _group(
    table: ClusterTable,
    out: _Out,
    lo: int,
    hi: int,
    dist: F64,
    rows: NDArray[np.intp],
    market: MarketState,
) -> None:
    """Fill rows lo:hi (one symbol and side) from its candidate clusters (``rows`` into market)."""
    if rows.size == 0:
        out.value[lo:hi] = np.inf
        out.clear[lo:hi] = np.inf
        return
    absd = np.abs(dist)
    order = np.argsort(absd, kind="stable")  # ties keep the snapshot's order, like the loop
    ds = absd[order]
    src = rows[order]
    us = market.cluster_usd[src]
    run_max = np.maximum.accumulate(us)
    min_usd = table.min_usd[lo:hi]
    pct = table.pct[lo:hi]
    # Position of the nearest qualifying cluster; == size when none. Each per-cluster array
    # gets one sentinel at the end ("none"), so the gathers need no masks.
    j = np.searchsorted(run_max, min_usd, side="left")
    near = np.append(ds, np.inf)[j]
    np.less_equal(near, pct, out=out.holds[lo:hi])
    out.value[lo:hi] = near
    out.distance[lo:hi] = np.append(dist[order], np.nan)[j]
    out.c_idx[lo:hi] = np.append(market.cluster_index[src], np.int32(-1))[j]
    out.c_price[lo:hi] = np.append(market.cluster_price[src], np.nan)[j]
    out.c_usd[lo:hi] = np.append(us, np.nan)[j]
    # clear: the minimum over the Pareto front (clusters that raise the running maximum of USD
    # in distance order), one 1-d pass per front cluster; the front is a few clusters.
    front = np.empty(ds.size, np.bool_)
    front[0] = True
    front[1:] = run_max[1:] > run_max[:-1]
    one_plus = 1.0 + table.timing.rearm_margin[lo:hi]
    one_minus = 1.0 - table.timing.rearm_margin[lo:hi]
    acc = out.clear[lo:hi]
    acc.fill(np.inf)
    far = np.empty(hi - lo)
    small = np.empty(hi - lo)
    for d, u in zip(ds[front].tolist(), us[front].tolist(), strict=True):
        np.divide(d, pct, out=far)
        far -= one_plus
        np.divide(u, min_usd, out=small)
        np.subtract(one_minus, small, out=small)
        np.maximum(far, small, out=far)
        np.minimum(acc, far, out=acc)
