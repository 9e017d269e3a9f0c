"""A new leader takes over a dead (or deposed) leader's claimed outbox rows at once, and the
old one, should it still run, sends none of them (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import Counter

from alerts.delivery import SendResult, drain
from alerts.notifications import GroupedMessage
from alerts.store import (
    Destination,
    Store,
    claim,
    enqueue,
    holds_lease,
    release_leases,
    stats,
    upsert_destination,
)
from tests.alerts.test_delivery_concurrency import NOW, message


class Recorder:
    def __init__(self, name: str, sent: Counter[str]) -> None:
        self.name, self.sent = name, sent

    async def __call__(self, dest: Destination, msg: GroupedMessage) -> SendResult:
        self.sent[msg.key] += 1
        return SendResult.sent()


async def queue(store: Store, n: int) -> list[str]:
    dests = [
        (await upsert_destination(store, "console", f"c{i}", "private", NOW)).id for i in range(n)
    ]
    keys = [f"k{i}" for i in range(n)]
    await enqueue(store, [message(d, k) for d, k in zip(dests, keys, strict=True)], NOW)
    return keys


async def test_a_new_leader_sends_what_the_dead_one_had_claimed(store: Store) -> None:
    keys = await queue(store, 6)
    claimed = await claim(store, "old-leader", NOW, limit=4, lease_ms=60_000)
    assert len(claimed) == 4
    # Under a live lease, the claimed rows are not due for anyone else...
    assert len(await claim(store, "probe", NOW + 1, limit=10, lease_ms=1)) == 2
    await release_leases(store)  # ... (and the probe's own two are released too)
    # ... until the new leader releases the leases it finds on election.
    assert not await holds_lease(store, claimed[0].id, "old-leader")
    sent: Counter[str] = Counter()
    result = await drain(store, Recorder("new", sent), NOW + 2, "new-leader", limit=10)
    assert sorted(sent) == sorted(keys) and set(sent.values()) == {1}
    assert len(result.sent) == 6
    assert (await stats(store, NOW + 3)).pending == 0


async def test_a_deposed_leader_sends_nothing_the_new_one_took(store: Store) -> None:
    await queue(store, 5)
    sent: Counter[str] = Counter()
    old_rows = await claim(store, "old-leader", NOW, limit=5, lease_ms=60_000)
    released = await release_leases(store)
    new = await drain(store, Recorder("new", sent), NOW + 1, "new-leader", limit=10)
    assert released == 5 and len(new.sent) == 5
    # The old leader, still alive, now works through the batch it had claimed: the lease
    # check before each send finds every row gone, so nothing goes out twice.
    for row in old_rows:
        assert not await holds_lease(store, row.id, "old-leader")
    assert set(sent.values()) == {1} and len(sent) == 5


async def test_a_drain_stops_sending_once_it_no_longer_leads(store: Store) -> None:
    await queue(store, 5)
    sent: Counter[str] = Counter()
    leading = iter([True, True])  # two sends, then deposed

    def keep_going() -> bool:
        return next(leading, False)

    result = await drain(store, Recorder("a", sent), NOW, "leader", limit=10, keep_going=keep_going)
    assert len(result.sent) == 2 and len(result.left) == 3 and sum(sent.values()) == 2
    # The three left unsent stay leased to it until a new leader releases them.
    assert (await stats(store, NOW + 1)).in_flight == 3
    await release_leases(store)
    again = await drain(store, Recorder("b", sent), NOW + 2, "next-leader", limit=10)
    assert len(again.sent) == 3 and set(sent.values()) == {1} and len(sent) == 5
