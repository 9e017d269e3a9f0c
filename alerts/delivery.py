"""Outbox delivery, platform-neutral: claim due messages, send them, mark the outcome.

The platform sender is passed in (``send(destination, message) -> SendResult``; bot/ provides
Telegram and Discord ones), so this module knows nothing of any chat API. Per claimed row:

* **sent**: ``mark_sent`` (the notification-log row in the same transaction) and the chat's
  failure count starts over (``record_success``);
* **transient** failure (timeout, 5xx, 429, a sender that raised): retried at the sender's
  ``retry_after_s`` or with exponential backoff; given up (a dead letter, kept) after
  ``max_attempts``;
* **definitive** failure (blocked, kicked, chat not found): counted against the chat
  (``record_failure``); the chat is disabled only after ``disable_after`` of them in a row, and
  until then the message is retried with backoff. Once the chat is disabled, its messages are
  dead letters (``requeue_dead`` revives them when the chat is enabled again).

``drain(..., concurrency=n)`` keeps up to ``n`` sends in flight (the sender paces them against
the platform limits), while each destination still gets its messages one at a time, in outbox
order.

Delivery is at least once: a crash between the send and ``mark_sent`` sends that one message
again once its lease expires (alerts/store/outbox.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from alerts.notifications import GroupedMessage, message_from_dict
from alerts.store import (
    Claimed,
    Destination,
    Store,
    claim,
    get_destination,
    give_back,
    holds_lease,
    mark_failed,
    mark_sent,
    record_failure,
    record_success,
)

__all__ = ["DrainResult", "RetryPolicy", "SendResult", "Sender", "backoff_ms", "drain"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    """What a platform sender reports for one message.

    ``ok``: delivered. Otherwise ``definitive`` says the chat cannot receive it (blocked,
    kicked, not found) rather than a passing failure; ``retry_after_s`` is the platform's own
    wait (a 429's retry_after) when it gave one.
    """

    ok: bool
    definitive: bool = False
    error: str = ""
    retry_after_s: float | None = None

    @classmethod
    def sent(cls) -> SendResult:
        return cls(True)

    @classmethod
    def transient(cls, error: str, retry_after_s: float | None = None) -> SendResult:
        return cls(False, False, error, retry_after_s)

    @classmethod
    def failed(cls, error: str) -> SendResult:
        """A definitive failure."""
        return cls(False, True, error)


Sender = Callable[[Destination, GroupedMessage], Awaitable[SendResult]]


@dataclass(frozen=True)
class RetryPolicy:
    base_ms: int = 5_000
    max_ms: int = 15 * 60_000
    max_attempts: int = 12  # transient failures before a message is given up
    disable_after: int = 3  # definitive failures in a row before a chat is disabled


def backoff_ms(attempts: int, policy: RetryPolicy) -> int:
    """Wait before attempt ``attempts + 1``: base, 2x base, 4x ... up to ``max_ms``."""
    return int(min(policy.base_ms * 2 ** max(attempts - 1, 0), policy.max_ms))


@dataclass
class DrainResult:
    """Outbox row ids by outcome, for logs, /status and tests."""

    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    disabled: list[int] = field(default_factory=list)  # destinations disabled by this drain
    sent_keys: list[str] = field(default_factory=list)
    left: list[int] = field(default_factory=list)  # not sent: its lease or leadership is gone
    held: list[int] = field(default_factory=list)  # given back behind a retried row of its chat

    @property
    def claimed(self) -> int:
        return len(self.sent) + len(self.retried) + len(self.dead) + len(self.left) + len(self.held)


async def _send(send: Sender, dest: Destination, row: Claimed) -> SendResult:
    try:
        msg = message_from_dict(row.payload)
    except (ValueError, KeyError, TypeError) as exc:
        return SendResult.failed(f"unreadable message: {exc}")
    try:
        return await send(dest, msg)
    except Exception as exc:  # a sender bug or an unmapped error: retry, never lose
        log.warning("sender raised for outbox row %s: %r", row.id, exc)
        return SendResult.transient(f"{type(exc).__name__}: {exc}")


async def drain(
    store: Store,
    send: Sender,
    now_ms: int,
    worker_id: str,
    *,
    limit: int = 100,
    lease_ms: int = 60_000,
    policy: RetryPolicy | None = None,
    concurrency: int = 1,
    keep_going: Callable[[], bool] | None = None,
) -> DrainResult:
    """Claim the due outbox rows (up to ``limit``), send each, and record the outcome.

    ``keep_going`` is asked before each send; once it says no (this instance is no longer
    the leader), the rest are left unsent, leased: the new leader releases such leases when
    it takes over (``alerts.store.release_leases``), so each is sent once, by it.

    With ``concurrency > 1`` up to that many sends are in flight at once (the sender paces
    them, e.g. bot.pacing), but one destination's messages still go one at a time and in
    outbox order: rows are grouped by destination and each group is sent by its own task, so
    a slow or rate-limited chat holds up only its own messages. With 1, the rows go one by one
    in claim order. The outcome lists are in completion order.

    A row that must be retried holds back the chat's later rows: they go back to the outbox
    (``give_back``, no attempt counted) due with it, and the claim skips a chat's rows while an
    older one waits, so each chat gets its messages in outbox order through any failure.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    drainer = _Drainer(store, send, now_ms, worker_id, policy or RetryPolicy(), keep_going)
    rows = await claim(store, worker_id, now_ms, limit=limit, lease_ms=lease_ms)
    if concurrency == 1:
        waiting: dict[int, tuple[int, list[Claimed]]] = {}  # chat -> (due again, held rows)
        for row in rows:
            if row.destination_id in waiting:
                waiting[row.destination_id][1].append(row)
                continue
            retry_at = await drainer.deliver(row)
            if retry_at is not None:
                waiting[row.destination_id] = (retry_at, [])
        for retry_at, held in waiting.values():
            await drainer.hold_back(held, retry_at)
        return drainer.out
    by_dest: dict[int, list[Claimed]] = {}
    for row in rows:  # claim order is id order: outbox order within each destination
        by_dest.setdefault(row.destination_id, []).append(row)
    slots = asyncio.Semaphore(concurrency)

    async def deliver_all(group: list[Claimed]) -> None:
        for i, row in enumerate(group):
            async with slots:  # per send, not per chat: a long queue holds one slot at a time
                retry_at = await drainer.deliver(row)
            if retry_at is not None:  # the rest wait with it, in order (and free the slot)
                await drainer.hold_back(group[i + 1 :], retry_at)
                return

    tasks = [asyncio.create_task(deliver_all(group)) for group in by_dest.values()]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # A store failure (or our own cancellation): stop the other chats' tasks too, so none
        # outlives the drain; their claimed rows come back when the lease expires.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return drainer.out


class _Drainer:
    """One drain's shared state: the outcome lists and the destinations read so far.

    Each destination's rows are handled by one task at a time, so its cache entry is never
    written by two tasks at once.
    """

    def __init__(
        self,
        store: Store,
        send: Sender,
        now_ms: int,
        worker_id: str,
        policy: RetryPolicy,
        keep_going: Callable[[], bool] | None = None,
    ) -> None:
        self.keep_going = keep_going
        self.store = store
        self.send = send
        self.now_ms = now_ms
        self.worker_id = worker_id
        self.policy = policy
        self.out = DrainResult()
        self.dests: dict[int, Destination | None] = {}

    async def deliver(self, row: Claimed) -> int | None:
        """Send one claimed row and record the outcome (sent, retried, dead); the time it is
        due again when it must be retried, else None."""
        store, out, policy, dests = self.store, self.out, self.policy, self.dests
        now_ms, worker_id = self.now_ms, self.worker_id
        if self.keep_going is not None and not self.keep_going():
            out.left.append(row.id)
            return None
        if not await holds_lease(store, row.id, worker_id):
            out.left.append(row.id)  # released to a new leader, who sends it
            return None
        if row.destination_id not in dests:
            dests[row.destination_id] = await get_destination(store, row.destination_id)
        dest = dests[row.destination_id]
        if dest is None or not dest.enabled:
            reason = "destination disabled" if dest else "destination unknown"
            if dest is not None and dest.disabled_reason:
                reason += f": {dest.disabled_reason}"
            await mark_failed(store, row.id, reason, None, worker_id=worker_id)
            out.dead.append(row.id)
            return None
        result = await _send(self.send, dest, row)
        if result.ok:
            if await mark_sent(store, row.id, now_ms):
                out.sent_keys.append(row.dedup_key)
            out.sent.append(row.id)
            if dest.failures:
                await record_success(store, dest.id)
                dests[dest.id] = await get_destination(store, dest.id)
            return None
        if result.definitive:
            after = await record_failure(
                store, dest.id, result.error, disable_after=policy.disable_after
            )
            dests[dest.id] = after
            if after is None or not after.enabled:
                await mark_failed(store, row.id, result.error, None, worker_id=worker_id)
                out.dead.append(row.id)
                out.disabled.append(dest.id)
                return None
        elif row.attempts >= policy.max_attempts:
            await mark_failed(store, row.id, result.error, None, worker_id=worker_id)
            out.dead.append(row.id)
            return None
        wait = backoff_ms(row.attempts, policy)
        if result.retry_after_s is not None and not result.definitive:
            wait = max(int(result.retry_after_s * 1000), 0)
        await mark_failed(store, row.id, result.error, now_ms + wait, worker_id=worker_id)
        out.retried.append(row.id)
        return now_ms + wait

    async def hold_back(self, rows: list[Claimed], until_ms: int) -> None:
        """A chat's rows behind one that must wait: back to the outbox, due with it, so they
        do not overtake it (the attempt is not counted)."""
        if rows:
            await give_back(self.store, [r.id for r in rows], until_ms, worker_id=self.worker_id)
            self.out.held.extend(r.id for r in rows)
