"""Concurrent outbox delivery on SQLite and PostgreSQL: up to ``concurrency`` sends in flight,
each destination served one message at a time in outbox order, every message sent once, and
the sent / retried / dead / disabled outcomes exactly those of a one-at-a-time drain."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

import alerts.delivery
from alerts.delivery import DrainResult, RetryPolicy, SendResult, drain
from alerts.notifications import GroupedMessage, LevelCross, Outgoing, message_to_dict
from alerts.store import (
    Destination,
    Envelope,
    Store,
    enqueue,
    get_destination,
    get_log_entry,
    mark_sent,
    record_failure,
    upsert_destination,
)
from alerts.store.models import OutboxRow
from tests.alerts.conftest import clear

NOW = 1_768_341_600_000
POLICY = RetryPolicy(base_ms=5_000, disable_after=3)


def message(dest: int, key: str) -> Envelope:
    notice = LevelCross("BTC", NOW, 100_000.0, 100_100.0, 99_900.0)
    msg = GroupedMessage(dest, key, NOW, (Outgoing(dest, 1, NOW, notice),))
    return Envelope(key, dest, "level_cross", NOW, message_to_dict(msg))


async def chat(store: Store, name: str) -> int:
    return (await upsert_destination(store, "console", name, "private", NOW)).id


async def queue_round_robin(store: Store, chats: dict[str, int], per_chat: int) -> list[str]:
    """``per_chat`` messages to each chat, interleaved (row ids alternate between chats)."""
    keys = [f"{name}-{i}" for i in range(per_chat) for name in chats]
    await enqueue(store, [message(chats[k.rsplit("-", 1)[0]], k) for k in keys], NOW)
    return keys


@dataclass
class Sender:
    """Answers by message key (default: sent); tracks what is in flight.

    ``gate``: the first ``gate`` calls wait until that many are in flight together, which
    proves that many run at once. ``hold``: keys whose send never returns (until cancelled).
    """

    answers: dict[str, SendResult | Exception] = field(default_factory=dict)
    gate: int = 0
    hold: frozenset[str] = frozenset()
    calls: list[tuple[int, str]] = field(default_factory=list)
    in_flight: Counter[int] = field(default_factory=Counter)
    peak: int = 0
    peak_per_chat: int = 0
    cancelled: list[str] = field(default_factory=list)
    holding: asyncio.Event = field(default_factory=asyncio.Event)  # set: every hold key is held
    _held: int = 0
    _opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, dest: Destination, msg: GroupedMessage) -> SendResult:
        self.calls.append((dest.id, msg.key))
        self.in_flight[dest.id] += 1
        self.peak = max(self.peak, sum(self.in_flight.values()))
        self.peak_per_chat = max(self.peak_per_chat, self.in_flight[dest.id])
        try:
            if len(self.calls) <= self.gate:
                if sum(self.in_flight.values()) >= self.gate:
                    self._opened.set()
                await self._opened.wait()
            if msg.key in self.hold:
                self._held += 1
                if self._held == len(self.hold):
                    self.holding.set()
                await asyncio.Event().wait()
            for _ in range(len(msg.key) % 4):  # finish in a scrambled order
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled.append(msg.key)
            raise
        finally:
            self.in_flight[dest.id] -= 1
        answer = self.answers.get(msg.key, SendResult.sent())
        if isinstance(answer, Exception):
            raise answer
        return answer


async def rows_by_key(store: Store) -> dict[str, tuple[int | None, int | None, str | None]]:
    """Each outbox row's (sent_ms, next_attempt_ms, failed_reason), by dedup key."""
    async with store.read() as conn:
        rows = await conn.execute(
            select(
                OutboxRow.dedup_key,
                OutboxRow.sent_ms,
                OutboxRow.next_attempt_ms,
                OutboxRow.failed_reason,
            )
        )
        return {r.dedup_key: (r.sent_ms, r.next_attempt_ms, r.failed_reason) for r in rows}


async def test_each_destination_gets_its_messages_in_order_one_at_a_time(store: Store) -> None:
    chats = {f"chat{i}": await chat(store, f"chat{i}") for i in range(12)}
    keys = await queue_round_robin(store, chats, per_chat=8)
    sender = Sender(gate=8)

    result = await drain(store, sender, NOW, "w", limit=500, policy=POLICY, concurrency=8)

    assert sorted(result.sent_keys) == sorted(keys) and len(result.sent) == len(keys)
    assert result.retried == [] and result.dead == []
    sent = Counter(key for _, key in sender.calls)
    assert set(sent.values()) == {1} and len(sent) == len(keys)  # each exactly once
    assert sender.peak == 8  # eight at once (the gate), never more (the semaphore)
    assert sender.peak_per_chat == 1  # one chat: one at a time
    by_chat: dict[int, list[str]] = defaultdict(list)
    for dest, key in sender.calls:
        by_chat[dest].append(key)
    for name, dest in chats.items():
        assert by_chat[dest] == [f"{name}-{i}" for i in range(8)]  # outbox order
    for key in keys:
        assert await get_log_entry(store, key) is not None
    # Nothing left to send.
    assert (await drain(store, sender, NOW + 1, "w", concurrency=8)).claimed == 0


async def test_concurrency_one_sends_in_claim_order(store: Store) -> None:
    chats = {f"chat{i}": await chat(store, f"chat{i}") for i in range(3)}
    keys = await queue_round_robin(store, chats, per_chat=3)
    sender = Sender()
    result = await drain(store, sender, NOW, "w", policy=POLICY)
    assert [key for _, key in sender.calls] == keys  # interleaved, as claimed
    assert result.sent_keys == keys and sender.peak == 1


async def _failure_scenario(store: Store, concurrency: int) -> tuple[DrainResult, Sender]:
    """Chats that succeed, fail definitively, fail transiently, and one already disabled."""
    chats = {name: await chat(store, name) for name in ("ok1", "ok2", "ok3", "blocked", "flaky")}
    gone = await chat(store, "gone")
    for _ in range(POLICY.disable_after):
        await record_failure(store, gone, "Forbidden: bot was kicked", disable_after=3)
    await queue_round_robin(store, {**chats, "gone": gone}, per_chat=4)
    blocked = SendResult.failed("Forbidden: bot was blocked by the user")
    sender = Sender(
        answers={
            **{f"blocked-{i}": blocked for i in range(4)},
            "flaky-1": SendResult.transient("429 Too Many Requests", retry_after_s=7.0),
            "flaky-2": RuntimeError("socket closed"),
            "flaky-3": SendResult.transient("502 Bad Gateway"),
        }
    )
    result = await drain(store, sender, NOW, "w", limit=500, policy=POLICY, concurrency=concurrency)
    return result, sender


async def test_failures_keep_their_semantics_under_concurrency(store: Store) -> None:
    result, sender = await _failure_scenario(store, concurrency=8)
    rows = await rows_by_key(store)
    async with store.read() as conn:
        key_of = {i: k for k, i in (await conn.execute(select(OutboxRow.dedup_key, OutboxRow.id)))}

    def keys(ids: list[int]) -> set[str]:
        return {key_of[i] for i in ids}

    ok = {f"ok{c}-{i}" for c in (1, 2, 3) for i in range(4)}
    assert keys(result.sent) == ok | {"flaky-0"} == set(result.sent_keys)
    # A failed row holds back the rest of its chat, so nothing overtakes it: they go back to
    # the outbox unsent, due with it, their attempt not counted. A disabled chat's rows die.
    assert keys(result.retried) == {"blocked-0", "flaky-1"}
    assert keys(result.held) == {"blocked-1", "blocked-2", "blocked-3", "flaky-2", "flaky-3"}
    assert keys(result.dead) == {f"gone-{i}" for i in range(4)}
    assert result.disabled == []
    tried = sorted(key for _, key in sender.calls if key.startswith(("blocked", "flaky")))
    assert tried == ["blocked-0", "flaky-0", "flaky-1"]  # nothing behind a failed row
    assert not any(key.startswith("gone") for _, key in sender.calls)
    assert rows["flaky-1"][1] == NOW + 7_000  # the platform's retry_after ...
    assert rows["flaky-2"][1] == rows["flaky-3"][1] == NOW + 7_000  # ... and the rows behind it
    assert rows["blocked-0"][1] == rows["blocked-3"][1] == NOW + 5_000  # backoff
    assert "destination disabled" in (rows["gone-0"][2] or "")
    assert sender.peak_per_chat == 1

    # The same outbox drained one at a time ends in exactly the same state.
    concurrent = rows
    await clear(store)
    await _failure_scenario(store, concurrency=1)
    assert await rows_by_key(store) == concurrent


async def test_a_blocked_chat_is_disabled_over_retries_and_its_queue_dies(store: Store) -> None:
    """Definitive failures count against the chat: its first row is retried (its later rows
    held behind it) until the third failure disables the chat; the rest are never tried."""
    blocked = await chat(store, "blocked")
    await queue_round_robin(store, {"blocked": blocked}, per_chat=4)
    sender = Sender(
        answers={f"blocked-{i}": SendResult.failed("Forbidden: blocked") for i in range(4)}
    )
    t = NOW
    for _ in range(6):
        await drain(store, sender, t, "w", policy=POLICY, concurrency=4)
        t += 60_000
    assert [key for _, key in sender.calls] == ["blocked-0"] * POLICY.disable_after
    dest = await get_destination(store, blocked)
    assert dest is not None and not dest.enabled
    rows = await rows_by_key(store)
    assert all(
        rows[f"blocked-{i}"][1] is None and rows[f"blocked-{i}"][0] is None for i in range(4)
    )


async def test_a_store_failure_stops_every_chat_and_propagates(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    chats = {f"chat{i}": await chat(store, f"chat{i}") for i in range(4)}
    await queue_round_robin(store, chats, per_chat=2)
    sender = Sender(hold=frozenset({"chat1-0", "chat2-0", "chat3-0"}))

    async def failing_mark_sent(db: Store, outbox_id: int, now_ms: int) -> bool:
        if outbox_id == failing_id:
            await sender.holding.wait()  # fail while the other chats are mid-send
            raise RuntimeError("database went away")
        return await mark_sent(db, outbox_id, now_ms)

    async with store.read() as conn:
        ids = dict((await conn.execute(select(OutboxRow.dedup_key, OutboxRow.id))).all())
    failing_id = ids["chat0-0"]
    monkeypatch.setattr(alerts.delivery, "mark_sent", failing_mark_sent)

    with pytest.raises(RuntimeError, match="went away"):
        await drain(store, sender, NOW, "w", policy=POLICY, concurrency=4)
    # The other chats' sends were cancelled, not left running after drain returned.
    assert sorted(sender.cancelled) == ["chat1-0", "chat2-0", "chat3-0"]
    assert sum(sender.in_flight.values()) == 0


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_concurrency_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        await drain(store, Sender(), NOW, "w", concurrency=0)
