"""One tick of rule evaluation: every subscription of every kind against the new snapshots.

::

    tables = SubscriptionTables.from_subscriptions(subs)      # or each kind's from_columns
    market = market_state(snapshots, tables.symbols)         # per-symbol arrays, this tick
    etf = etf_state(report, stale=etf_snapshot_is_stale)
    conds = evaluate_tick(tables, market, etf)                # condition sets, rows = table rows

Each kind's condition set (``conds.cluster``, ...) is aligned with that kind's table and carries
``holds``, ``value``, ``clear`` and ``stale`` for the state machine
(:func:`alerts.state.decide_many`), plus what the notification needs to say why (which cluster,
which window, which reversal). There is no Python loop over subscriptions: the kinds loop over
symbols (and, for clusters, over the three sides), the rest is numpy.

Digest subscriptions are not evaluated per tick: the scheduler sends them on their schedule
(:meth:`alerts.rules.tables.DigestTable.rows`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from alerts.rules.cluster import ClusterConditions, evaluate_cluster
from alerts.rules.cross import CrossConditions, evaluate_cross
from alerts.rules.etf import EtfConditions, evaluate_etf
from alerts.rules.market import EtfState, MarketState, etf_state, market_state
from alerts.rules.spike import SpikeConditions, evaluate_spike
from alerts.rules.tables import SubscriptionTables
from core.etf_report import FlowReport
from core.snapshot import Snapshot

__all__ = ["TickConditions", "evaluate_snapshots", "evaluate_tick"]


@dataclass(frozen=True, eq=False)
class TickConditions:
    """The condition sets of one tick, one per evaluated kind."""

    cluster: ClusterConditions
    cross: CrossConditions
    spike: SpikeConditions
    etf: EtfConditions

    def holding(self) -> dict[str, int]:
        """How many subscriptions of each kind hold now."""
        return {
            "cluster": int(np.count_nonzero(self.cluster.holds)),
            "cross": int(np.count_nonzero(self.cross.holds)),
            "spike": int(np.count_nonzero(self.spike.holds)),
            "etf": int(np.count_nonzero(self.etf.holds)),
        }


def evaluate_tick(tables: SubscriptionTables, market: MarketState, etf: EtfState) -> TickConditions:
    """Evaluate every cluster, cross, spike and etf subscription against one tick.

    ``market`` must be built with ``tables.symbols`` (ValueError otherwise).
    """
    return TickConditions(
        cluster=evaluate_cluster(tables.cluster, market),
        cross=evaluate_cross(tables.cross, market),
        spike=evaluate_spike(tables.spike, market),
        etf=evaluate_etf(tables.etf, etf),
    )


def evaluate_snapshots(
    tables: SubscriptionTables,
    snapshots: Iterable[Snapshot],
    report: FlowReport | None,
    *,
    etf_stale: bool = False,
) -> TickConditions:
    """:func:`evaluate_tick` from the tick's snapshots and ETF report (builds the states)."""
    return evaluate_tick(
        tables, market_state(snapshots, tables.symbols), etf_state(report, stale=etf_stale)
    )
