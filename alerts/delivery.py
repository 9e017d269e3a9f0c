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

Delivery is at least once: a crash between the send and ``mark_sent`` sends that one message
again once its lease expires (alerts/store/outbox.py).
"""

from __future__ import annotations

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

    @property
    def claimed(self) -> int:
        return len(self.sent) + len(self.retried) + len(self.dead)


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
) -> DrainResult:
    """Claim the due outbox rows (up to ``limit``), send each, and record the outcome."""
    policy = policy or RetryPolicy()
    out = DrainResult()
    dests: dict[int, Destination | None] = {}
    for row in await claim(store, worker_id, now_ms, limit=limit, lease_ms=lease_ms):
        if row.destination_id not in dests:
            dests[row.destination_id] = await get_destination(store, row.destination_id)
        dest = dests[row.destination_id]
        if dest is None or not dest.enabled:
            reason = "destination disabled" if dest else "destination unknown"
            if dest is not None and dest.disabled_reason:
                reason += f": {dest.disabled_reason}"
            await mark_failed(store, row.id, reason, None, worker_id=worker_id)
            out.dead.append(row.id)
            continue
        result = await _send(send, dest, row)
        if result.ok:
            if await mark_sent(store, row.id, now_ms):
                out.sent_keys.append(row.dedup_key)
            out.sent.append(row.id)
            if dest.failures:
                await record_success(store, dest.id)
                dests[dest.id] = await get_destination(store, dest.id)
            continue
        if result.definitive:
            after = await record_failure(
                store, dest.id, result.error, disable_after=policy.disable_after
            )
            dests[dest.id] = after
            if after is None or not after.enabled:
                await mark_failed(store, row.id, result.error, None, worker_id=worker_id)
                out.dead.append(row.id)
                out.disabled.append(dest.id)
                continue
        elif row.attempts >= policy.max_attempts:
            await mark_failed(store, row.id, result.error, None, worker_id=worker_id)
            out.dead.append(row.id)
            continue
        wait = backoff_ms(row.attempts, policy)
        if result.retry_after_s is not None and not result.definitive:
            wait = max(int(result.retry_after_s * 1000), 0)
        await mark_failed(store, row.id, result.error, now_ms + wait, worker_id=worker_id)
        out.retried.append(row.id)
    return out
