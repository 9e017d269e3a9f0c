"""The outbox and the notification log on SQLite and PostgreSQL: durable enqueue with dedup,
leases, concurrent workers, retries and dead letters, and the log written with the send."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from alerts.store import (
    Envelope,
    Store,
    claim,
    enqueue,
    get_log_entry,
    last_sent,
    logged_keys,
    mark_failed,
    mark_sent,
    open_store,
    purge_log,
    purge_sent,
    requeue_dead,
    sent_keys_since,
    stats,
    upsert_destination,
)
from alerts.store.models import NotificationLogRow, OutboxRow

NOW = 1_768_341_600_000
LEASE = 30_000


async def chat(store: Store, chat_id: str = "100") -> int:
    return (await upsert_destination(store, "console", chat_id, "private", NOW)).id


def envelope(dest: int, key: str, **kw: object) -> Envelope:
    fields: dict[str, object] = {
        "kind": "cluster",
        "ts_ms": NOW,
        "payload": {"headline": f"alert {key}", "n": [1, 2.5, None]},
        "subscription_id": 7,
    }
    fields.update(kw)
    return Envelope(dedup_key=key, destination_id=dest, **fields)  # type: ignore[arg-type]


async def count(store: Store, table: type[OutboxRow] | type[NotificationLogRow]) -> int:
    async with store.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_enqueue_is_durable_and_deduplicated(store: Store) -> None:
    dest = await chat(store)
    queued = await enqueue(
        store, [envelope(dest, "a"), envelope(dest, "b"), envelope(dest, "a")], NOW
    )
    assert queued == ["a", "b"]
    assert await enqueue(store, [envelope(dest, "a"), envelope(dest, "c")], NOW + 1) == ["c"]
    assert await enqueue(store, [], NOW) == []
    assert await count(store, OutboxRow) == 3
    # Durable: another connection (another process, after a crash) sees them.
    async with store.read() as conn:
        keys = (await conn.execute(select(OutboxRow.dedup_key).order_by(OutboxRow.id))).scalars()
        assert list(keys) == ["a", "b", "c"]


async def test_a_sent_key_is_never_queued_again_even_after_purge(store: Store) -> None:
    dest = await chat(store)
    await enqueue(store, [envelope(dest, "a")], NOW)
    (row,) = await claim(store, "w1", NOW, 10, LEASE)
    assert await mark_sent(store, row.id, NOW + 5)
    assert await purge_sent(store, NOW + 6) == 1
    assert await count(store, OutboxRow) == 0
    assert await enqueue(store, [envelope(dest, "a")], NOW + 10) == []
    assert await count(store, OutboxRow) == 0


async def test_enqueue_joins_the_callers_transaction(store: Store) -> None:
    dest = await chat(store)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.write() as conn:
            assert await enqueue(conn, [envelope(dest, "a")], NOW) == ["a"]
            raise Boom
    assert await count(store, OutboxRow) == 0


async def test_claim_takes_due_rows_in_order_under_a_lease(store: Store) -> None:
    dest, other = await chat(store), await chat(store, "other")
    await enqueue(store, [envelope(dest, k) for k in "abc"], NOW)
    await enqueue(store, [envelope(other, "later")], NOW + 1_000)  # due at NOW + 1000
    first = await claim(store, "w1", NOW, limit=2, lease_ms=LEASE)
    assert [r.dedup_key for r in first] == ["a", "b"]
    r = first[0]
    assert (r.claimed_by, r.claimed_until_ms, r.attempts, r.silent) == ("w1", NOW + LEASE, 1, False)
    assert r.payload == {"headline": "alert a", "n": [1, 2.5, None]}
    assert (r.kind, r.ts_ms, r.subscription_id, r.destination_id) == ("cluster", NOW, 7, dest)
    # c is due, but its chat's older a and b are in w1's hands: each chat goes in order.
    assert await claim(store, "w2", NOW + 999, 10, LEASE) == []  # (and later is not due yet)
    assert [x.dedup_key for x in await claim(store, "w2", NOW + 1_000, 10, LEASE)] == ["later"]
    s = await stats(store, NOW + 1_000)
    assert (s.pending, s.in_flight, s.dead, s.sent, s.oldest_pending_ms) == (4, 3, 0, 0, NOW)
    await mark_sent(store, first[0].id, NOW + 1_001)
    await mark_sent(store, first[1].id, NOW + 1_001)
    assert [x.dedup_key for x in await claim(store, "w2", NOW + 1_002, 10, LEASE)] == ["c"]


async def test_an_expired_lease_makes_the_row_claimable_again(store: Store) -> None:
    """Crash recovery: a worker that claimed and died holds its rows only until the lease ends."""
    dest = await chat(store)
    await enqueue(store, [envelope(dest, "a")], NOW)
    (row,) = await claim(store, "dead-worker", NOW, 10, LEASE)
    assert await claim(store, "w2", NOW + LEASE - 1, 10, LEASE) == []
    (again,) = await claim(store, "w2", NOW + LEASE, 10, LEASE)
    assert (again.id, again.claimed_by, again.attempts) == (row.id, "w2", 2)
    # The dead worker's late report cannot release the new lease...
    assert not await mark_failed(store, row.id, "late", NOW, worker_id="dead-worker")
    assert await claim(store, "w3", NOW + LEASE + 1, 10, LEASE) == []
    # ...and the send is logged once whoever marks it.
    assert await mark_sent(store, again.id, NOW + LEASE + 2)
    assert not await mark_sent(store, row.id, NOW + LEASE + 3)
    assert await count(store, NotificationLogRow) == 1


async def test_mark_sent_writes_the_log_in_the_same_transaction(store: Store) -> None:
    dest = await chat(store)
    await enqueue(store, [envelope(dest, "a", silent=True, subscription_id=None)], NOW)
    (row,) = await claim(store, "w1", NOW, 10, LEASE)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.write() as conn:
            assert await mark_sent(conn, row.id, NOW + 5)
            raise Boom
    assert await get_log_entry(store, "a") is None  # rolled back together...
    assert (await stats(store, NOW)).sent == 0  # ...with sent_ms

    assert await mark_sent(store, row.id, NOW + 5)
    entry = await get_log_entry(store, "a")
    assert entry is not None
    assert (entry.destination_id, entry.subscription_id, entry.kind) == (dest, None, "cluster")
    assert (entry.ts_ms, entry.sent_ms, entry.payload) == (NOW, NOW + 5, row.payload)
    assert await claim(store, "w1", NOW + LEASE * 2, 10, LEASE) == []
    assert await sent_keys_since(store, NOW + 5) == {"a"}
    assert await sent_keys_since(store, NOW + 6) == set()
    assert await logged_keys(store, ["a", "b"]) == {"a"}
    last = await last_sent(store, dest)
    assert last is not None and last.dedup_key == "a"
    assert await purge_log(store, NOW + 6) == 1 and await sent_keys_since(store, 0) == set()


async def test_failures_retry_later_or_go_dead_but_are_never_lost(store: Store) -> None:
    dest = await chat(store)
    await enqueue(store, [envelope(dest, "retry"), envelope(dest, "dead")], NOW)
    retry, dead = await claim(store, "w1", NOW, 10, LEASE)
    assert await mark_failed(store, retry.id, "429 Too Many Requests", NOW + 5_000)
    assert await mark_failed(store, dead.id, "400 Bad Request: message is too long", None)
    assert await claim(store, "w1", NOW + 4_999, 10, LEASE) == []
    (again,) = await claim(store, "w1", NOW + 5_000, 10, LEASE)
    assert (again.dedup_key, again.attempts, again.failed_reason) == (
        "retry",
        2,
        "429 Too Many Requests",
    )
    s = await stats(store, NOW + 5_000)
    assert (s.pending, s.in_flight, s.dead) == (1, 1, 1)
    assert await count(store, OutboxRow) == 2  # nothing deleted
    assert await requeue_dead(store, NOW + 6_000, destination_id=dest) == 1
    # Revived, it waits behind its chat's older row, still in w1's hands, until that is sent.
    assert await claim(store, "w1", NOW + 6_000, 10, LEASE) == []
    assert await mark_sent(store, again.id, NOW + 6_000)
    (revived,) = await claim(store, "w1", NOW + 6_000, 10, LEASE)
    assert (revived.dedup_key, revived.attempts) == ("dead", 2)
    assert not await mark_failed(store, 999_999, "gone", None)


@pytest.mark.parametrize("workers", [2, 4])
async def test_concurrent_workers_never_claim_the_same_row(
    store: Store, store_url: str, workers: int
) -> None:
    """Several workers, each on its own engine (as separate processes would be), drain one
    outbox at the same time: every row is claimed exactly once."""
    # 30 chats: a chat's rows go one batch at a time (in order), different chats in parallel.
    dests = [await chat(store, f"chat{i}") for i in range(30)]
    keys = [f"k{i}" for i in range(300)]
    await enqueue(store, [envelope(dests[i % 30], k) for i, k in enumerate(keys)], NOW)
    others = [await open_store(store_url) for _ in range(workers - 1)]
    claimed: dict[str, list[str]] = {}
    # Every worker takes a first batch before any goes on, so all of them hold leases while
    # the others claim (SQLite's busy wait could otherwise let one worker take everything).
    started = asyncio.Barrier(workers)

    async def work(name: str, db: Store) -> None:
        got: list[str] = []
        first = True
        while rows := await claim(db, name, NOW, limit=7, lease_ms=LEASE):
            got.extend(r.dedup_key for r in rows)
            if first:
                await started.wait()
                first = False
            for r in rows:  # delivered: the chat's next rows may go
                await mark_sent(db, r.id, NOW)
            await asyncio.sleep(0)
        claimed[name] = got

    try:
        await asyncio.gather(*(work(f"w{i}", db) for i, db in enumerate([store, *others])))
    finally:
        for db in others:
            await db.close()
    every = [k for got in claimed.values() for k in got]
    assert sorted(every) == sorted(keys)  # all claimed, none twice
    assert len(set(every)) == len(every)
    assert all(claimed.values()), "every worker claimed rows"
