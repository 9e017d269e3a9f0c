"""What the running engine reads and writes each tick: alert state, the latest snapshots,
notification-log lookups and job claims.

Same conventions as ``repo.py``: ``db`` is a ``Store`` or a connection inside the caller's
transaction; Core statements with bound parameters. Alert state goes in and out in the state
machine's own types (``alerts.state.AlertState`` and ``StateArrays``), so what
``decide_many`` returns is what gets stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import Row, Table, delete, func, select

from alerts.state import NEVER, AlertState, StateArrays, Status
from alerts.store.engine import Db, dialect_insert, transaction
from alerts.store.map_codec import map_from_dict, map_to_dict
from alerts.store.models import (
    AlertStateRow,
    JobClaimRow,
    NotificationLogRow,
    SnapshotRow,
    SubscriptionRow,
)
from alerts.subscriptions import Kind
from core.liqmap import Cluster, CumulativePeaks, LiqMap
from core.snapshot import LiqTotals, Snapshot

alert_state = cast(Table, AlertStateRow.__table__)
snapshots = cast(Table, SnapshotRow.__table__)
notification_log = cast(Table, NotificationLogRow.__table__)
job_claims = cast(Table, JobClaimRow.__table__)
_subscriptions = cast(Table, SubscriptionRow.__table__)

_CHUNK: Final = 1000  # ids per IN (...) and rows per executemany round
_STATUS_TEXT: Final = {Status.ARMED: "armed", Status.FIRING: "firing"}

# --- alert state --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StoredStates:
    """Stored alert states: ``ids`` (int64, sorted) and their ``StateArrays`` row for row."""

    ids: npt.NDArray[np.int64]
    states: StateArrays

    def __len__(self) -> int:
        return len(self.ids)

    def for_ids(self, ids: npt.NDArray[np.int64]) -> StateArrays:
        """The states of ``ids`` in that order; armed and never fired where none is stored.

        Vectorized (a binary search), so it aligns a million rows of a subscription table.
        """
        fresh = StateArrays.armed(len(ids))
        if len(self.ids) == 0:
            return fresh
        pos = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        found = self.ids[pos] == ids
        s = self.states

        def pick(stored: npt.NDArray[Any], default: npt.NDArray[Any]) -> Any:
            return np.where(found, stored[pos], default)

        return StateArrays(
            status=pick(s.status, fresh.status),
            last_fired_ms=pick(s.last_fired_ms, fresh.last_fired_ms),
            last_notified_ms=pick(s.last_notified_ms, fresh.last_notified_ms),
            fired_count=pick(s.fired_count, fresh.fired_count),
            last_value=pick(s.last_value, fresh.last_value),
        )


def _ms_or_none(v: Any) -> int | None:
    return None if int(v) == NEVER else int(v)


def _value_or_none(v: Any) -> float | None:
    # NaN ("not seen yet") is NULL: SQLite cannot store NaN, and NULL means the same.
    f = float(v)
    return f if math.isfinite(f) else None


async def upsert_states(
    db: Db, ids: npt.NDArray[np.int64] | Iterable[int], states: StateArrays, now_ms: int
) -> int:
    """Insert or replace the states of ``ids`` (row i of ``states`` is ``ids[i]``) in bulk;
    the number written. Pass only the rows that changed.

    States of subscriptions deleted meanwhile are skipped, not an error: on PostgreSQL the
    parent rows are locked ``FOR KEY SHARE`` first, so a concurrent delete waits for this
    transaction instead of breaking it.
    """
    id_list = [int(i) for i in ids]
    if len(id_list) != len(states):
        raise ValueError(f"{len(id_list)} ids for {len(states)} states")
    written = 0
    async with transaction(db, write=True) as conn:
        for start in range(0, len(id_list), _CHUNK):
            chunk = range(start, min(start + _CHUNK, len(id_list)))
            alive = select(_subscriptions.c.id).where(
                _subscriptions.c.id.in_([id_list[i] for i in chunk])
            )
            if conn.dialect.name == "postgresql":
                alive = alive.with_for_update(key_share=True)
            present = set((await conn.execute(alive)).scalars())
            rows = [
                {
                    "subscription_id": id_list[i],
                    "state": _STATUS_TEXT[Status(int(states.status[i]))],
                    "last_value": _value_or_none(states.last_value[i]),
                    "fired_count": int(states.fired_count[i]),
                    "last_fired_ms": _ms_or_none(states.last_fired_ms[i]),
                    "last_notified_ms": _ms_or_none(states.last_notified_ms[i]),
                    "updated_ms": now_ms,
                }
                for i in chunk
                if id_list[i] in present
            ]
            if not rows:
                continue
            stmt = dialect_insert(conn, alert_state)
            updated = {name: stmt.excluded[name] for name in rows[0] if name != "subscription_id"}
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["subscription_id"], set_=updated),
                rows,
            )
            written += len(rows)
    return written


async def upsert_state(db: Db, subscription_id: int, state: AlertState, now_ms: int) -> bool:
    """Store one state; False when the subscription no longer exists."""
    arrays = StateArrays.from_states([state])
    return await upsert_states(db, [subscription_id], arrays, now_ms) == 1


async def get_state(db: Db, subscription_id: int) -> AlertState | None:
    """The stored state of one subscription, None when it has none yet."""
    stored = await load_states(db, ids=[subscription_id])
    return stored.states.state(0) if len(stored) else None


async def load_states(
    db: Db, kind: Kind | None = None, *, ids: Iterable[int] | None = None
) -> StoredStates:
    """Every stored state (of subscriptions of ``kind``, or of these ``ids``), as columns."""
    c = alert_state.c
    stmt = select(
        c.subscription_id,
        (c.state == "firing").label("firing"),
        func.coalesce(c.last_fired_ms, NEVER),
        func.coalesce(c.last_notified_ms, NEVER),
        c.fired_count,
        c.last_value,
    ).order_by(c.subscription_id)
    if kind is not None:
        stmt = stmt.join(_subscriptions, _subscriptions.c.id == c.subscription_id).where(
            _subscriptions.c.kind == str(kind)
        )
    if ids is not None:
        stmt = stmt.where(c.subscription_id.in_(list(ids)))
    async with transaction(db, write=False) as conn:
        rows = (await conn.execute(stmt)).all()
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 6
    return StoredStates(
        ids=np.array(cols[0], dtype=np.int64),
        states=StateArrays(
            status=np.array(cols[1], dtype=np.int8),
            last_fired_ms=np.array(cols[2], dtype=np.int64),
            last_notified_ms=np.array(cols[3], dtype=np.int64),
            fired_count=np.array(cols[4], dtype=np.int64),
            last_value=np.array([math.nan if v is None else v for v in cols[5]], np.float64),
        ),
    )


# --- snapshots ----------------------------------------------------------------------------

SNAPSHOT_FORMAT: Final = 1


def _num(x: float) -> float | None:
    # JSON has no NaN or infinity (orjson would write null silently): say so explicitly.
    return float(x) if math.isfinite(x) else None


def _float(x: float | None) -> float:
    return math.nan if x is None else float(x)


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    """A JSON-safe dict of ``snap`` (NaN as null; dict keys that are numbers as pairs)."""
    return {
        "format": SNAPSHOT_FORMAT,
        "symbol": snap.symbol,
        "ts_ms": snap.ts_ms,
        "price": _num(snap.price),
        "prev_price": _num(snap.prev_price),
        "venues": list(snap.venues),
        "clusters": [
            {
                "side": c.side,
                "price": _num(c.price),
                "price_low": _num(c.price_low),
                "price_high": _num(c.price_high),
                "usd": _num(c.usd),
                "tier_share": [[_num(k), _num(v)] for k, v in c.tier_share.items()],
                "distance_pct": _num(c.distance_pct),
                "distance_atr": _num(c.distance_atr),
            }
            for c in snap.clusters
        ],
        "peaks": {
            "long_usd": _num(snap.peaks.long_usd),
            "long_price": _num(snap.peaks.long_price),
            "short_usd": _num(snap.peaks.short_usd),
            "short_price": _num(snap.peaks.short_price),
        },
        "liqs": {
            label: {
                "window_ms": t.window_ms,
                "long_usd": _num(t.long_usd),
                "short_usd": _num(t.short_usd),
                "by_venue": {v: [_num(lo), _num(sh)] for v, (lo, sh) in t.by_venue.items()},
            }
            for label, t in snap.liqs.items()
        },
        "atr": _num(snap.atr),
        "stale": list(snap.stale),
    }


def snapshot_from_dict(data: Mapping[str, Any]) -> Snapshot:
    """The ``Snapshot`` that ``snapshot_to_dict`` wrote."""
    peaks = data["peaks"]
    return Snapshot(
        symbol=data["symbol"],
        ts_ms=int(data["ts_ms"]),
        price=_float(data["price"]),
        prev_price=_float(data["prev_price"]),
        venues=tuple(data["venues"]),
        clusters=tuple(
            Cluster(
                side=c["side"],
                price=_float(c["price"]),
                price_low=_float(c["price_low"]),
                price_high=_float(c["price_high"]),
                usd=_float(c["usd"]),
                tier_share={_float(k): _float(v) for k, v in c["tier_share"]},
                distance_pct=_float(c["distance_pct"]),
                distance_atr=_float(c["distance_atr"]),
            )
            for c in data["clusters"]
        ),
        peaks=CumulativePeaks(
            long_usd=_float(peaks["long_usd"]),
            long_price=_float(peaks["long_price"]),
            short_usd=_float(peaks["short_usd"]),
            short_price=_float(peaks["short_price"]),
        ),
        liqs={
            label: LiqTotals(
                window_ms=int(t["window_ms"]),
                long_usd=_float(t["long_usd"]),
                short_usd=_float(t["short_usd"]),
                by_venue={v: (_float(lo), _float(sh)) for v, (lo, sh) in t["by_venue"].items()},
            )
            for label, t in data["liqs"].items()
        },
        atr=_float(data["atr"]),
        stale=tuple(data["stale"]),
    )


async def put_snapshots(
    db: Db, snaps: Iterable[Snapshot], views: Mapping[str, tuple[LiqMap, str]] | None = None
) -> None:
    """Store these as the latest snapshot of their symbols (one row per symbol), each with
    its map view and render key from ``views`` (by symbol) when given."""
    views = views or {}
    rows = []
    for s in snaps:
        payload = snapshot_to_dict(s)
        if s.symbol in views:
            payload["map"] = map_to_dict(*views[s.symbol])
        rows.append({"symbol": s.symbol, "ts_ms": s.ts_ms, "payload": payload, "stale": s.is_stale})
    if not rows:
        return
    async with transaction(db, write=True) as conn:
        stmt = dialect_insert(conn, snapshots)
        stmt = stmt.on_conflict_do_update(
            index_elements=["symbol"],
            set_={n: stmt.excluded[n] for n in ("ts_ms", "payload", "stale")},
        )
        await conn.execute(stmt, rows)


async def put_snapshot(db: Db, snap: Snapshot) -> None:
    await put_snapshots(db, [snap])


async def get_snapshot(db: Db, symbol: str) -> Snapshot | None:
    """The latest stored snapshot of ``symbol``."""
    async with transaction(db, write=False) as conn:
        stmt = select(snapshots.c.payload).where(snapshots.c.symbol == symbol)
        payload = (await conn.execute(stmt)).scalar_one_or_none()
        return None if payload is None else snapshot_from_dict(payload)


@dataclass(frozen=True, eq=False)
class StoredSnapshot:
    """A stored snapshot with its map view and render key (None: stored without one)."""

    snapshot: Snapshot
    map: LiqMap | None
    render_key: str | None


async def get_snapshot_views(db: Db) -> dict[str, StoredSnapshot]:
    """The latest stored snapshot of every symbol with its map view, by symbol."""
    async with transaction(db, write=False) as conn:
        payloads = (await conn.execute(select(snapshots.c.payload))).scalars().all()
    out: dict[str, StoredSnapshot] = {}
    for p in payloads:
        snap = snapshot_from_dict(p)
        view, key = map_from_dict(p["map"]) if p.get("map") else (None, None)
        out[snap.symbol] = StoredSnapshot(snap, view, key)
    return out


async def get_snapshots(db: Db) -> dict[str, Snapshot]:
    """The latest stored snapshot of every symbol, by symbol."""
    async with transaction(db, write=False) as conn:
        payloads = (await conn.execute(select(snapshots.c.payload))).scalars().all()
    snaps = (snapshot_from_dict(p) for p in payloads)
    return {s.symbol: s for s in snaps}


# --- notification log ---------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """One sent notification."""

    id: int
    dedup_key: str
    destination_id: int
    subscription_id: int | None
    kind: str
    ts_ms: int
    sent_ms: int
    payload: Any


def _entry(row: Row[Any]) -> LogEntry:
    return LogEntry(**row._asdict())


async def get_log_entry(db: Db, dedup_key: str) -> LogEntry | None:
    """The log entry of the notification sent under ``dedup_key``, if it was sent."""
    async with transaction(db, write=False) as conn:
        stmt = select(notification_log).where(notification_log.c.dedup_key == dedup_key)
        row = (await conn.execute(stmt)).one_or_none()
        return None if row is None else _entry(row)


async def logged_keys(db: Db, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` were sent (are in the log)."""
    wanted = sorted(set(keys))
    found: set[str] = set()
    async with transaction(db, write=False) as conn:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            stmt = select(notification_log.c.dedup_key).where(
                notification_log.c.dedup_key.in_(chunk)
            )
            found.update((await conn.execute(stmt)).scalars())
    return found


async def last_sent(db: Db, destination_id: int) -> LogEntry | None:
    """The latest notification sent to a chat (group_interval spacing after a restart)."""
    async with transaction(db, write=False) as conn:
        stmt = (
            select(notification_log)
            .where(notification_log.c.destination_id == destination_id)
            .order_by(notification_log.c.sent_ms.desc(), notification_log.c.id.desc())
            .limit(1)
        )
        row = (await conn.execute(stmt)).one_or_none()
        return None if row is None else _entry(row)


async def purge_log(db: Db, before_ms: int) -> int:
    """Delete log entries sent before ``before_ms`` (retention); how many."""
    async with transaction(db, write=True) as conn:
        stmt = delete(notification_log).where(notification_log.c.sent_ms < before_ms)
        return (await conn.execute(stmt)).rowcount


# --- job claims ---------------------------------------------------------------------------


async def claim_job(db: Db, job_name: str, fire_ms: int, worker_id: str) -> bool:
    """True for exactly one caller per (job, firing time), across instances (DESIGN §8)."""
    async with transaction(db, write=True) as conn:
        stmt = (
            dialect_insert(conn, job_claims)
            .values(job_name=job_name, fire_ms=fire_ms, claimed_by=worker_id)
            .on_conflict_do_nothing(index_elements=["job_name", "fire_ms"])
            .returning(job_claims.c.job_name)
        )
        return (await conn.execute(stmt)).one_or_none() is not None


async def purge_job_claims(db: Db, before_ms: int) -> int:
    """Delete claims of firings before ``before_ms``; how many."""
    async with transaction(db, write=True) as conn:
        stmt = delete(job_claims).where(job_claims.c.fire_ms < before_ms)
        return (await conn.execute(stmt)).rowcount
