"""``etf`` rule: an ETF flow reversal, or a daily total beyond a threshold.

Semantics (the oracle is :func:`alerts.rules.loop_reference.evaluate_loop`), on the report's
latest trading day:

* reversal mode holds when that day is a reversal day or the trading day confirming the reversal
  of the day before (see :func:`alerts.rules.market.etf_state` for why both);
  ``clear`` is -inf while it holds and +inf otherwise (an event has no distance);
* threshold mode holds when ``|total| >= threshold_musd`` (inflows or outflows);
  ``clear = (1 - m) - |total| / threshold_musd`` (:func:`alerts.state.clearance_above`).

``value`` is the latest day's total, US$ millions. ``event_day`` names the event so that one
reversal, or one day's flow, is one alert however many ticks see it: the reversal's day
(reversal mode) or the latest day (threshold mode), as ``date.toordinal()``; 0 when the row does
not hold. The report is shared by every row; STALE or NO_DATA apply to all of them.

Vectorized: thresholds are sorted within the threshold-mode rows, so the rows that hold are a
prefix found by one ``np.searchsorted``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from alerts.rules.market import Conditions, DataStatus, EtfState, ReversalStage
from alerts.rules.tables import EtfModeCode, EtfTable

__all__ = ["EtfConditions", "evaluate_etf"]


@dataclass(frozen=True, eq=False)
class EtfConditions(Conditions):
    """Condition set of an :class:`~alerts.rules.tables.EtfTable` (rows aligned with it).

    Attributes
    ----------
    stage : int8 (n,)
        :class:`~alerts.rules.market.ReversalStage` of the latest day, on reversal-mode rows that
        hold; 0 elsewhere.
    event_day : int32 (n,)
        See the module docstring.
    """

    stage: NDArray[np.int8]
    event_day: NDArray[np.int32]


def evaluate_etf(table: EtfTable, etf: EtfState) -> EtfConditions:
    """Evaluate every etf subscription against the latest flow report (rows aligned)."""
    n = len(table)
    holds = np.zeros(n, np.bool_)
    clear = np.full(n, np.nan)
    stage = np.zeros(n, np.int8)
    event_day = np.zeros(n, np.int32)
    ok = etf.status == DataStatus.OK
    if ok:
        r0, r1 = (
            int(table.offsets[EtfModeCode.REVERSAL]),
            int(table.offsets[EtfModeCode.REVERSAL + 1]),
        )
        t0, t1 = (
            int(table.offsets[EtfModeCode.THRESHOLD]),
            int(table.offsets[EtfModeCode.THRESHOLD + 1]),
        )
        if etf.stage != ReversalStage.NONE:
            holds[r0:r1] = True
            clear[r0:r1] = -np.inf
            stage[r0:r1] = etf.stage
            event_day[r0:r1] = etf.reversal_day
        else:
            clear[r0:r1] = np.inf
        flow = abs(etf.latest_total_musd)
        thr = table.threshold_musd[t0:t1]
        k = int(np.searchsorted(thr, flow, side="right"))  # thresholds <= |total| hold
        holds[t0 : t0 + k] = True
        event_day[t0 : t0 + k] = etf.latest_day
        clear[t0:t1] = (1.0 - table.timing.rearm_margin[t0:t1]) - flow / thr
    return EtfConditions(
        holds=holds,
        value=np.full(n, etf.latest_total_musd if ok else np.nan),
        clear=clear,
        stale=np.full(n, not ok),
        status=np.full(n, etf.status, np.int8),
        stage=stage,
        event_day=event_day,
    )
