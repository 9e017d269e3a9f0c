"""``spike`` rule: realized liquidations on ``side`` within the window reach ``min_usd``.

Semantics (the oracle is :func:`alerts.rules.loop_reference.evaluate_loop`):

* the total is the snapshot's realized liquidations (``Snapshot.liqs``) on the side (``any`` is
  long + short) over the window the subscription's ``window_ms`` maps to: the shortest window
  the snapshot carries that is at least as long, else its longest (see
  :mod:`alerts.rules.market`);
* the condition holds when ``total >= min_usd`` (exactly at the threshold holds);
* ``value`` is the total, USD; ``clear = (1 - m) - total / min_usd``
  (:func:`alerts.state.clearance_above`): >= 0 once the total is back below
  ``min_usd * (1 - m)``.

A spike rule does not need the price: a snapshot with a NaN price is still evaluated, a stale one
is not. A row is NO_DATA when its symbol has no snapshot or no window, or the total is not
finite.

Vectorized: one gather ``liq_usd[symbol, slot, side]`` where ``slot`` is the
``np.searchsorted`` of the subscription's window in the state's window list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from alerts.rules.market import Conditions, DataStatus, MarketState, check_symbols
from alerts.rules.tables import SpikeTable

__all__ = ["SpikeConditions", "evaluate_spike"]


@dataclass(frozen=True, eq=False)
class SpikeConditions(Conditions):
    """Condition set of a :class:`~alerts.rules.tables.SpikeTable` (rows aligned with it).

    Attributes
    ----------
    window_ms : int64 (n,)
        The window the total was read from; 0 when the row is not OK.
    """

    window_ms: NDArray[np.int64]


def evaluate_spike(table: SpikeTable, market: MarketState) -> SpikeConditions:
    """Evaluate every spike subscription against one tick (rows aligned with ``table``)."""
    check_symbols(table.symbols, market)
    n = len(table)
    status = np.repeat(market.status, np.diff(table.offsets))
    n_windows = int(market.liq_windows_ms.shape[0])
    if n_windows == 0:
        status = np.where(status == DataStatus.OK, np.int8(DataStatus.NO_DATA), status)
        nan = np.full(n, np.nan)
        return SpikeConditions(
            holds=np.zeros(n, np.bool_),
            value=nan,
            clear=nan.copy(),
            stale=np.ones(n, np.bool_),
            status=status.astype(np.int8),
            window_ms=np.zeros(n, np.int64),
        )
    slot = np.searchsorted(market.liq_windows_ms, table.window_ms, side="left")
    np.minimum(slot, n_windows - 1, out=slot)
    cell = table.symbol_idx.astype(np.intp) * n_windows + slot
    total = market.liq_usd.reshape(-1, 3)[cell, table.side]
    status = np.where(
        (status == DataStatus.OK) & ~np.isfinite(total), np.int8(DataStatus.NO_DATA), status
    ).astype(np.int8)
    ok = status == DataStatus.OK
    total = np.where(ok, total, np.nan)
    return SpikeConditions(
        holds=total >= table.min_usd,  # NaN compares False
        value=total,
        clear=(1.0 - table.timing.rearm_margin) - total / table.min_usd,
        stale=~ok,
        status=status,
        window_ms=np.where(ok, market.liq_window_ms.reshape(-1)[cell], 0).astype(np.int64),
    )
