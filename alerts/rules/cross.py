"""``cross`` rule: the price crossed ``level`` between the previous tick and this one.

Semantics (the oracle is :func:`alerts.rules.loop_reference.evaluate_loop`), with ``prev`` the
snapshot's ``prev_price`` and ``price`` its price:

* up: ``prev < level <= price`` (touching the level from below counts; starting on it does not);
* down: ``prev > level >= price``;
* any: either.

The condition is an event: it holds on the tick of the crossing only. ``value`` is the price.

``clear``: a crossing alert re-arms once the price has moved away from the level. A share of the
level itself (the default margin 0.25 would be 25% of the price) would never re-arm, so for this
kind ``rearm_margin`` is read **in percent of the level**: ``clear = |price - level| / level * 100
- rearm_margin``, >= 0 once the price is at least that many percent away (0.25 -> 0.25%). A
price that hovers around the level therefore fires once.

Vectorized: the table is sorted by (symbol, level), so the levels crossed on one symbol form one
contiguous run of rows, found by two ``np.searchsorted`` calls per symbol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from alerts.rules.market import Conditions, DataStatus, MarketState, check_symbols, price_status
from alerts.rules.tables import CrossTable, DirectionCode

__all__ = ["CrossConditions", "evaluate_cross"]


@dataclass(frozen=True, eq=False)
class CrossConditions(Conditions):
    """Condition set of a :class:`~alerts.rules.tables.CrossTable` (rows aligned with it).

    Attributes
    ----------
    crossed : int8 (n,)
        +1 when the price crossed the level upward this tick, -1 downward, 0 not (whatever the
        subscription's direction; ``holds`` applies it).
    distance_pct : float64 (n,)
        ``(price - level) / level * 100``, signed; NaN when the row is not OK.
    """

    crossed: NDArray[np.int8]
    distance_pct: NDArray[np.float64]


def evaluate_cross(table: CrossTable, market: MarketState) -> CrossConditions:
    """Evaluate every cross subscription against one tick (rows aligned with ``table``).

    A row is NO_DATA when its symbol's price or previous price is not a positive finite number
    (the first tick after a start has no previous price).
    """
    check_symbols(table.symbols, market)
    n = len(table)
    sym_status = price_status(market, need_prev=True)
    per_symbol = np.diff(table.offsets)
    status = np.repeat(sym_status, per_symbol)
    crossed = np.zeros(n, np.int8)
    level = table.level
    for s in np.flatnonzero((sym_status == DataStatus.OK) & (per_symbol > 0)).tolist():
        lo, hi = int(table.offsets[s]), int(table.offsets[s + 1])
        levels = level[lo:hi]
        prev, now = float(market.prev_price[s]), float(market.price[s])
        if prev < now:  # up: prev < level <= now
            i0 = int(np.searchsorted(levels, prev, side="right"))
            i1 = int(np.searchsorted(levels, now, side="right"))
            crossed[lo + i0 : lo + i1] = 1
        elif prev > now:  # down: now <= level < prev
            i0 = int(np.searchsorted(levels, now, side="left"))
            i1 = int(np.searchsorted(levels, prev, side="left"))
            crossed[lo + i0 : lo + i1] = -1
    d = table.direction
    holds = ((crossed == 1) & (d != DirectionCode.DOWN)) | (
        (crossed == -1) & (d != DirectionCode.UP)
    )
    ok = status == DataStatus.OK
    price = np.where(ok, np.repeat(market.price, per_symbol), np.nan)
    distance = (price - level) / level * 100
    clear = np.abs(distance) - table.timing.rearm_margin
    return CrossConditions(
        holds=holds,
        value=price,
        clear=clear,
        stale=~ok,
        status=status,
        crossed=crossed,
        distance_pct=distance,
    )
