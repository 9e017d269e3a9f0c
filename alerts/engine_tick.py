"""The pure parts of one engine tick: tables from the store, state alignment, payloads.

* :func:`load_tables`: every active subscription of every kind, from the store's columns
  (:func:`alerts.store.load_active`) into :class:`~alerts.rules.tables.SubscriptionTables`,
  with the store's text codes mapped onto the tables' code books (``recode``).
* :func:`align_states`: alert states of one table's rows, from states kept by id (stored ones
  at start, the previous tables' after a reload); armed where none is known.
* :func:`outgoing`: the payloads of the rows that notify this tick. The only per-row Python
  code of a tick, and it runs on the (few) notifying rows only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alerts.notifications import (
    ClusterApproach,
    EtfFlow,
    EtfReversal,
    LevelCross,
    LiqSpike,
    Notification,
    Outgoing,
)
from alerts.rules import (
    ClusterConditions,
    ClusterTable,
    CrossConditions,
    CrossTable,
    DigestTable,
    DirectionCode,
    EtfConditions,
    EtfModeCode,
    EtfTable,
    ScheduleCode,
    SideCode,
    SpikeConditions,
    SpikeTable,
    SubscriptionTables,
    TimingColumns,
)
from alerts.rules.market import resolve_window
from alerts.state import ConditionArrays, StateArrays, Status, TimingArrays
from alerts.store import Db, SubscriptionTable, load_active
from alerts.store.runtime import StoredStates
from alerts.subscriptions import Kind
from core.etf_report import FlowReport
from core.snapshot import Snapshot

__all__ = [
    "EVALUATED",
    "TickInputs",
    "align_states",
    "changed_rows",
    "etf_episodes",
    "load_tables",
    "outgoing",
    "states_by_id",
    "take_states",
]

I64 = NDArray[np.int64]

EVALUATED: tuple[Kind, ...] = (Kind.CLUSTER, Kind.CROSS, Kind.SPIKE, Kind.ETF)
"""Kinds evaluated each tick (digests run on their cron schedule instead)."""


# --- tables from the store -------------------------------------------------------------------


def _ms(seconds: NDArray[Any]) -> I64:
    """Seconds to whole ms as the state machine rounds them: non-finite or <= 0 is 0 (off)."""
    s = np.asarray(seconds, np.float64)
    ok = np.isfinite(s) & (s > 0)
    return np.where(ok, np.round(np.where(ok, s, 0.0) * 1000), 0).astype(np.int64)


def _timing(t: SubscriptionTable) -> TimingColumns:
    return TimingColumns.from_columns(
        len(t),
        cooldown_ms=_ms(t["cooldown_s"]),
        repeat_ms=_ms(t["repeat_s"]),
        expires_ms=t["expires_ms"],
        rearm_margin=t["rearm_margin"],
    )


def _codes(t: SubscriptionTable, name: str, of: Callable[[str], Any]) -> Any:
    """Column ``name`` in a code book of the rules (``of`` is e.g. ``SideCode.of``)."""
    return t.recode(name, {label: int(of(label or "")) for label in t.labels[name]})


def _symbols(t: SubscriptionTable, symbols: Mapping[str, int]) -> Any:
    return t.recode("symbol", {s: symbols[s] for s in t.labels["symbol"] if s}, np.int32)


async def load_tables(db: Db) -> SubscriptionTables:
    """Every active subscription, one table per kind, on one shared symbol list."""
    raw = {k: await load_active(db, k) for k in Kind}
    names = sorted(
        {s for k in (Kind.CLUSTER, Kind.CROSS, Kind.SPIKE) for s in raw[k].labels["symbol"] if s}
    )
    index = {s: i for i, s in enumerate(names)}
    cl, cr, sp, et, dg = (raw[k] for k in Kind)
    return SubscriptionTables(
        symbols=tuple(names),
        cluster=ClusterTable.from_columns(
            names,
            cl["id"],
            cl["destination_id"],
            _symbols(cl, index),
            _codes(cl, "side", SideCode.of),
            cl["pct"],
            cl["min_usd"],
            _timing(cl),
        ),
        cross=CrossTable.from_columns(
            names,
            cr["id"],
            cr["destination_id"],
            _symbols(cr, index),
            cr["level"],
            _codes(cr, "direction", DirectionCode.of),
            _timing(cr),
        ),
        spike=SpikeTable.from_columns(
            names,
            sp["id"],
            sp["destination_id"],
            _symbols(sp, index),
            _codes(sp, "side", SideCode.of),
            sp["min_usd"],
            sp["window_ms"],
            _timing(sp),
        ),
        etf=EtfTable.from_columns(
            et["id"],
            et["destination_id"],
            _codes(et, "etf_mode", EtfModeCode.of),
            et["threshold_musd"],
            _timing(et),
        ),
        digest=DigestTable.from_columns(
            dg["id"], dg["destination_id"], _codes(dg, "schedule", ScheduleCode.of), _timing(dg)
        ),
    )


# --- states ----------------------------------------------------------------------------------


def take_states(s: StateArrays, rows: NDArray[Any]) -> StateArrays:
    """Rows ``rows`` (indices or a mask) of ``s``."""
    return StateArrays(
        status=s.status[rows],
        last_fired_ms=s.last_fired_ms[rows],
        last_notified_ms=s.last_notified_ms[rows],
        fired_count=s.fired_count[rows],
        last_value=s.last_value[rows],
    )


def states_by_id(ids: I64, states: StateArrays) -> StoredStates:
    """States of rows ``ids`` (any order) as a lookup by id."""
    order = np.argsort(ids, kind="stable")
    return StoredStates(ids[order], take_states(states, order))


def align_states(known: StoredStates, ids: I64) -> StateArrays:
    """The states of ``ids`` in that order (a table's rows); armed where none is known."""
    return known.for_ids(np.asarray(ids, np.int64))


def changed_rows(old: StateArrays, new: StateArrays) -> NDArray[np.intp]:
    """Rows whose stored state must be written: status, notification times or count changed.

    ``last_value`` alone is not a change worth a write per row and tick (it is kept in memory
    and written with the row's next real change).
    """
    diff = (
        (old.status != new.status)
        | (old.last_fired_ms != new.last_fired_ms)
        | (old.last_notified_ms != new.last_notified_ms)
        | (old.fired_count != new.fired_count)
    )
    return np.flatnonzero(diff)


def etf_episodes(
    state: StateArrays, cond: EtfConditions, timing: TimingArrays
) -> tuple[StateArrays, ConditionArrays, TimingArrays]:
    """ETF alerts as events: one notification per event day, never a repeat of the same day.

    A reversal (or a day beyond a threshold) stays true in the report for a day or two, so the
    state machine's repeats would announce the same event every repeat interval. Here an ETF
    row's ``value`` is its event day (``EtfConditions.event_day``), kept in ``last_value`` while
    it holds; repeats are off; and a row still FIRING when a *new* event day holds starts a new
    episode (re-armed before the decision), so the next reversal is not lost behind the last.
    """
    holds = cond.holds
    day = np.where(holds, cond.event_day.astype(np.float64), state.last_value)
    new_event = holds & (state.status == np.int8(Status.FIRING)) & (day != state.last_value)
    rearmed = replace(state, status=np.where(new_event, np.int8(Status.ARMED), state.status))
    arrays = ConditionArrays(holds, day, cond.clear, cond.stale)
    no_repeat = TimingArrays(timing.cooldown_ms, np.zeros_like(timing.repeat_ms), timing.expires_ms)
    return rearmed, arrays, no_repeat


# --- payloads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickInputs:
    """What payloads are built from: this tick's snapshots by symbol and the ETF report."""

    now_ms: int
    snapshots: Mapping[str, Snapshot]
    report: FlowReport | None


def _cluster(t: ClusterTable, c: ClusterConditions, i: int, x: TickInputs) -> Notification | None:
    snap = x.snapshots.get(t.symbols[int(t.symbol_idx[i])])
    k = int(c.cluster_idx[i])
    if snap is None or not 0 <= k < len(snap.clusters):
        return None
    return ClusterApproach.from_cluster(
        snap, snap.clusters[k], threshold_pct=float(t.pct[i]), min_usd=float(t.min_usd[i])
    )


def _cross(t: CrossTable, c: CrossConditions, i: int, x: TickInputs) -> Notification | None:
    snap = x.snapshots.get(t.symbols[int(t.symbol_idx[i])])
    if snap is None:
        return None
    return LevelCross(snap.symbol, snap.ts_ms, float(t.level[i]), snap.price, snap.prev_price)


def _spike(t: SpikeTable, c: SpikeConditions, i: int, x: TickInputs) -> Notification | None:
    snap = x.snapshots.get(t.symbols[int(t.symbol_idx[i])])
    if snap is None:
        return None
    totals = resolve_window(snap.liqs.values(), int(t.window_ms[i]))
    if totals is None:
        return None
    return LiqSpike(
        symbol=snap.symbol,
        ts_ms=snap.ts_ms,
        window_ms=totals.window_ms,
        long_usd=totals.long_usd,
        short_usd=totals.short_usd,
        threshold_usd=float(t.min_usd[i]),
        side=SideCode(int(t.side[i])).name.lower(),
    )


def _etf(t: EtfTable, c: EtfConditions, i: int, x: TickInputs) -> Notification | None:
    if x.report is None:
        return None
    if int(t.mode[i]) == EtfModeCode.REVERSAL:
        return EtfReversal.from_report(x.report)
    return EtfFlow.from_day(x.report.latest, float(t.threshold_musd[i]))


def outgoing(
    kind: Kind,
    table: ClusterTable | CrossTable | SpikeTable | EtfTable,
    cond: Any,
    rows: NDArray[np.intp],
    x: TickInputs,
) -> list[Outgoing]:
    """The notifications of ``rows`` (the rows that notify) of one kind's table.

    A row whose payload cannot be built (its snapshot vanished: never with the snapshots it
    was evaluated on) is left out.
    """
    build: Any = {Kind.CLUSTER: _cluster, Kind.CROSS: _cross, Kind.SPIKE: _spike, Kind.ETF: _etf}[
        kind
    ]
    out: list[Outgoing] = []
    for i in rows.tolist():
        payload = build(table, cond, i, x)
        if payload is not None:
            out.append(
                Outgoing(int(table.destination_ids[i]), int(table.ids[i]), x.now_ms, payload)
            )
    return out
