"""Vectorized alert rules: subscription tables, per-tick market arrays, condition sets.

Modules:

* :mod:`~alerts.rules.tables`: one struct-of-arrays table per kind, built from subscription
  objects or from a loader's columns.
* :mod:`~alerts.rules.market`: the tick's snapshots and ETF report as arrays; data status.
* :mod:`~alerts.rules.cluster`, :mod:`~alerts.rules.cross`, :mod:`~alerts.rules.spike`,
  :mod:`~alerts.rules.etf`: one rule each, numpy over every subscription of the kind.
* :mod:`~alerts.rules.evaluate`: one tick, every kind.
* :mod:`~alerts.rules.loop_reference`: the same rules as a plain loop (oracle and baseline).

The output is the *condition* set (does each subscription's condition hold now, with what value,
and how far it is from re-arming); firing, re-arming, cooldown and grouping are the state
machine's (:mod:`alerts.state`).
"""

from alerts.rules.cluster import ClusterConditions, evaluate_cluster
from alerts.rules.cross import CrossConditions, evaluate_cross
from alerts.rules.etf import EtfConditions, evaluate_etf
from alerts.rules.evaluate import TickConditions, evaluate_snapshots, evaluate_tick
from alerts.rules.market import (
    Conditions,
    DataStatus,
    EtfState,
    MarketState,
    ReversalStage,
    etf_state,
    market_state,
)
from alerts.rules.spike import SpikeConditions, evaluate_spike
from alerts.rules.tables import (
    NO_EXPIRY,
    ClusterTable,
    CrossTable,
    DigestTable,
    DirectionCode,
    EtfModeCode,
    EtfTable,
    ScheduleCode,
    SideCode,
    SpikeTable,
    SubscriptionTables,
    TimingColumns,
    encode_symbols,
)

__all__ = [
    "NO_EXPIRY",
    "ClusterConditions",
    "ClusterTable",
    "Conditions",
    "CrossConditions",
    "CrossTable",
    "DataStatus",
    "DigestTable",
    "DirectionCode",
    "EtfConditions",
    "EtfModeCode",
    "EtfState",
    "EtfTable",
    "MarketState",
    "ReversalStage",
    "ScheduleCode",
    "SideCode",
    "SpikeConditions",
    "SpikeTable",
    "SubscriptionTables",
    "TickConditions",
    "TimingColumns",
    "encode_symbols",
    "etf_state",
    "evaluate_cluster",
    "evaluate_cross",
    "evaluate_etf",
    "evaluate_snapshots",
    "evaluate_spike",
    "evaluate_tick",
    "market_state",
]
