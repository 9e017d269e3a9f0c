"""The durable outbox and the notification log (DESIGN §6, §8).

A notification's life::

    enqueue ──► pending ──claim──► in flight (leased to one worker until claimed_until_ms)
                  ▲                   │
                  │  mark_failed(retry_at_ms)        mark_sent ──► sent + notification_log row
                  └───────────────────┤
                   lease expires ─────┘              mark_failed(None) ──► dead (kept)

* ``enqueue`` commits the rows before anything is delivered. ``dedup_key`` is unique in the
  outbox and in the log: enqueuing a key that is queued or already sent is a no-op, so an
  evaluation that runs twice (a restart, a brief double leader) queues nothing twice.
* ``claim`` leases due rows to one worker atomically. On PostgreSQL the candidates are locked
  ``FOR UPDATE SKIP LOCKED``, so concurrent workers take disjoint rows without waiting; on
  SQLite the write transaction begins ``IMMEDIATE`` and holds the database's write lock.
* ``mark_sent`` writes ``sent_ms`` and the notification-log row in one transaction.
* A worker that dies mid-send leaves its rows leased; when the lease expires they are due
  again. Delivery is therefore at least once: after a crash between the send and
  ``mark_sent``, that one message is sent again, and nothing is lost.
* ``sent_keys_since`` reads the log, for the "read the log before the first evaluation after
  a restart" rule.

Nothing here deletes an unsent row; ``purge_sent`` removes only rows already logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, Table, and_, delete, func, or_, select, update

from alerts.store.engine import Db, dialect_insert, transaction
from alerts.store.models import NotificationLogRow, OutboxRow

outbox = cast(Table, OutboxRow.__table__)
notification_log = cast(Table, NotificationLogRow.__table__)

_REASON_CHARS = 512
_CHUNK = 1000


@dataclass(frozen=True)
class Envelope:
    """One chat message to queue (e.g. a serialized ``alerts.notifications.GroupedMessage``).

    ``payload`` is JSON-able, platform-neutral data that bot/ renders. ``dedup_key`` names the
    event, not the attempt: the same alert firing at the same tick must produce the same key
    (``GroupedMessage.key``). ``subscription_id`` is set when the message comes from one.
    """

    dedup_key: str
    destination_id: int
    kind: str
    ts_ms: int
    payload: Any
    subscription_id: int | None = None
    silent: bool = False


@dataclass(frozen=True)
class Claimed:
    """An outbox row leased to ``claimed_by`` until ``claimed_until_ms``."""

    id: int
    dedup_key: str
    destination_id: int
    subscription_id: int | None
    kind: str
    ts_ms: int
    payload: Any
    silent: bool
    created_ms: int
    attempts: int  # including this one
    claimed_by: str
    claimed_until_ms: int
    failed_reason: str | None  # of the previous attempt


@dataclass(frozen=True)
class OutboxStats:
    pending: int  # unsent and not given up, in flight or not
    in_flight: int  # under a live lease
    dead: int  # given up (mark_failed without a retry time)
    sent: int  # still in the outbox (purge_sent removes them)
    oldest_pending_ms: int | None  # created_ms of the oldest pending row


_CLAIMED_COLUMNS = tuple(outbox.c[name] for name in Claimed.__dataclass_fields__)


def _claimed(row: Row[Any]) -> Claimed:
    return Claimed(**row._asdict())


async def enqueue(db: Db, items: Iterable[Envelope], now_ms: int) -> list[str]:
    """Queue these notifications durably (committed on return, when ``db`` is a Store).

    Returns the dedup keys newly queued; keys already queued or already sent are skipped.
    Each row is due at once (``next_attempt_ms = now_ms``).
    """
    batch: dict[str, Envelope] = {}
    for item in items:
        batch.setdefault(item.dedup_key, item)
    if not batch:
        return []
    queued: list[str] = []
    async with transaction(db, write=True) as conn:
        keys = list(batch)
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            sent = select(notification_log.c.dedup_key).where(
                notification_log.c.dedup_key.in_(chunk)
            )
            done = set((await conn.execute(sent)).scalars())
            rows = [
                {
                    "dedup_key": key,
                    "destination_id": batch[key].destination_id,
                    "subscription_id": batch[key].subscription_id,
                    "kind": batch[key].kind,
                    "ts_ms": batch[key].ts_ms,
                    "payload": batch[key].payload,
                    "silent": batch[key].silent,
                    "created_ms": now_ms,
                    "attempts": 0,
                    "next_attempt_ms": now_ms,
                }
                for key in chunk
                if key not in done
            ]
            if not rows:
                continue
            stmt = (
                dialect_insert(conn, outbox)
                .on_conflict_do_nothing(index_elements=["dedup_key"])
                .returning(outbox.c.dedup_key)
            )
            queued.extend((await conn.execute(stmt, rows)).scalars())
    return queued


async def claim(
    db: Db, worker_id: str, now_ms: int, limit: int = 100, lease_ms: int = 60_000
) -> list[Claimed]:
    """Lease up to ``limit`` due rows to ``worker_id`` until ``now_ms + lease_ms``.

    Due: unsent, not given up, ``next_attempt_ms <= now_ms``, and not under a live lease.
    Each claim counts an attempt. Oldest due first. No row is leased to two workers at once.
    """
    c = outbox.c
    # A chat's messages go in outbox order: a row waits while an older one of its chat waits
    # (for a retry, or in another worker's hands). Given up rows do not hold anything back.
    older = outbox.alias("older")
    o = older.c
    held_back = (
        select(o.id)
        .where(
            o.destination_id == c.destination_id,
            o.id < c.id,
            o.sent_ms.is_(None),
            o.next_attempt_ms.is_not(None),
            or_(o.next_attempt_ms > now_ms, o.claimed_until_ms > now_ms),
        )
        .exists()
    )
    due = and_(
        c.sent_ms.is_(None),
        c.next_attempt_ms.is_not(None),
        c.next_attempt_ms <= now_ms,
        or_(c.claimed_until_ms.is_(None), c.claimed_until_ms <= now_ms),
        ~held_back,
    )
    async with transaction(db, write=True) as conn:
        pick = select(c.id).where(due).order_by(c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            # Lock the candidates, skipping rows other workers hold. MATERIALIZED: the pick
            # runs once; a re-scanned ``IN (subquery ... LIMIT)`` could pick more than limit.
            picked = pick.with_for_update(skip_locked=True).cte("picked")
            pick = select(picked.prefix_with("MATERIALIZED").c.id)
        stmt = (
            update(outbox)
            # ``due`` again: a row another worker claimed meanwhile no longer qualifies.
            .where(c.id.in_(pick), due)
            .values(
                claimed_by=worker_id,
                claimed_until_ms=now_ms + lease_ms,
                attempts=c.attempts + 1,
            )
            .returning(*_CLAIMED_COLUMNS)
        )
        rows = (await conn.execute(stmt)).all()
    return sorted((_claimed(r) for r in rows), key=lambda r: r.id)


async def give_back(db: Db, ids: Iterable[int], retry_at_ms: int, *, worker_id: str) -> int:
    """Return claimed rows unsent, due at ``retry_at_ms``, as if never claimed (the attempt
    is not counted): a chat's later messages, held back behind one that must wait."""
    c = outbox.c
    wanted = list(ids)
    if not wanted:
        return 0
    async with transaction(db, write=True) as conn:
        stmt = (
            update(outbox)
            .where(c.id.in_(wanted), c.sent_ms.is_(None), c.claimed_by == worker_id)
            # Still claimed by this worker, so its claim counted an attempt: never below 0.
            .values(claimed_until_ms=None, next_attempt_ms=retry_at_ms, attempts=c.attempts - 1)
        )
        return int((await conn.execute(stmt)).rowcount)


async def holds_lease(db: Db, outbox_id: int, worker_id: str) -> bool:
    """Whether ``worker_id`` still holds the lease on this unsent row: asked right before each
    send, so a deposed leader whose leases a new one released sends nothing more."""
    c = outbox.c
    async with transaction(db, write=False) as conn:
        stmt = select(c.id).where(
            c.id == outbox_id,
            c.sent_ms.is_(None),
            c.claimed_by == worker_id,
            c.claimed_until_ms.is_not(None),
        )
        return (await conn.execute(stmt)).first() is not None


async def release_leases(db: Db) -> int:
    """End every live lease on an unsent row; how many rows were released.

    A newly elected leader calls this before it drains: only the leader drains, so a lease
    still live then is a previous leader's (or this instance's before a restart) that died or
    was deposed mid-drain (DESIGN §8). Its rows are due again at once instead of when the
    lease runs out; a message that was in flight may be sent a second time.
    """
    c = outbox.c
    async with transaction(db, write=True) as conn:
        stmt = (
            update(outbox)
            .where(c.sent_ms.is_(None), c.claimed_until_ms.is_not(None))
            .values(claimed_until_ms=None)
        )
        return int((await conn.execute(stmt)).rowcount)


async def mark_sent(db: Db, outbox_id: int, now_ms: int) -> bool:
    """Record a delivery: ``sent_ms`` and the notification-log row, in one transaction.

    Idempotent: False when the row is unknown or already marked sent.
    """
    c = outbox.c
    async with transaction(db, write=True) as conn:
        stmt = (
            update(outbox)
            .where(c.id == outbox_id, c.sent_ms.is_(None))
            .values(sent_ms=now_ms, claimed_until_ms=None, failed_reason=None)
            .returning(c.dedup_key, c.destination_id, c.subscription_id, c.kind, c.ts_ms, c.payload)
        )
        row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            return False
        log = (
            dialect_insert(conn, notification_log)
            .values(**row._asdict(), sent_ms=now_ms)
            .on_conflict_do_nothing(index_elements=["dedup_key"])
        )
        await conn.execute(log)
        return True


async def mark_failed(
    db: Db,
    outbox_id: int,
    reason: str,
    retry_at_ms: int | None,
    *,
    worker_id: str | None = None,
) -> bool:
    """Record a failed attempt and release the lease; the row is kept either way.

    ``retry_at_ms`` makes it due again at that time (a 429's retry_after, a backoff); None
    gives up on it (a dead letter, kept with its reason: ``requeue_dead`` revives it). With
    ``worker_id``, only the worker still holding the lease may do this. False when nothing
    changed (unknown, already sent, or leased to another worker).
    """
    c = outbox.c
    where: list[ColumnElement[bool]] = [c.id == outbox_id, c.sent_ms.is_(None)]
    if worker_id is not None:
        where.append(c.claimed_by == worker_id)
    async with transaction(db, write=True) as conn:
        stmt = (
            update(outbox)
            .where(*where)
            .values(
                claimed_until_ms=None,
                failed_reason=reason[:_REASON_CHARS],
                next_attempt_ms=retry_at_ms,
            )
        )
        return (await conn.execute(stmt)).rowcount > 0


async def requeue_dead(db: Db, now_ms: int, destination_id: int | None = None) -> int:
    """Make given-up rows (of one chat, or all) due again; how many."""
    c = outbox.c
    where: list[ColumnElement[bool]] = [c.sent_ms.is_(None), c.next_attempt_ms.is_(None)]
    if destination_id is not None:
        where.append(c.destination_id == destination_id)
    async with transaction(db, write=True) as conn:
        stmt = update(outbox).where(*where).values(next_attempt_ms=now_ms)
        return (await conn.execute(stmt)).rowcount


async def sent_keys_since(db: Db, since_ms: int) -> set[str]:
    """Dedup keys of every notification sent at or after ``since_ms`` (from the log)."""
    async with transaction(db, write=False) as conn:
        stmt = select(notification_log.c.dedup_key).where(notification_log.c.sent_ms >= since_ms)
        return set((await conn.execute(stmt)).scalars())


async def stats(db: Db, now_ms: int) -> OutboxStats:
    """Counts for /status and the logs, in one query."""
    c = outbox.c
    unsent = c.sent_ms.is_(None)
    pending = and_(unsent, c.next_attempt_ms.is_not(None))
    stmt = select(
        func.count().filter(pending),
        func.count().filter(pending, c.claimed_until_ms > now_ms),
        func.count().filter(unsent, c.next_attempt_ms.is_(None)),
        func.count().filter(c.sent_ms.is_not(None)),
        func.min(c.created_ms).filter(pending),
    )
    async with transaction(db, write=False) as conn:
        row = (await conn.execute(stmt)).one()
    return OutboxStats(
        pending=int(row[0]),
        in_flight=int(row[1]),
        dead=int(row[2]),
        sent=int(row[3]),
        oldest_pending_ms=None if row[4] is None else int(row[4]),
    )


async def purge_sent(db: Db, before_ms: int) -> int:
    """Delete outbox rows sent before ``before_ms`` (the log keeps the record); how many."""
    async with transaction(db, write=True) as conn:
        stmt = delete(outbox).where(outbox.c.sent_ms.is_not(None), outbox.c.sent_ms < before_ms)
        return (await conn.execute(stmt)).rowcount
