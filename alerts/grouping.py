"""Grouping: a chat's notifications become one message, at most one per group_interval (DESIGN §6).

Alertmanager's dispatcher, reduced to what a chat needs, as pure functions of ``now_ms``:

* **group_wait.** A chat's group is sent ``group_wait`` after its oldest waiting notification
  was created, so everything emitted around the same tick (evaluation, ETF job, digest) shares
  one message. A tick's batch has one ``created_ms``, so it is always one message.
* **group_interval.** A chat gets at most one message per ``group_interval``: notifications due
  earlier wait and are merged into the next one.
* **Dedup key.** A message's key is a hash of its destination and its members' keys
  (:attr:`~alerts.notifications.Outgoing.key`), so regrouping the same notifications after a
  restart yields the same key, and the outbox's unique key drops the copy.

The repeat interval is the state machine's (alerts/state.py): this module only batches.

The caller keeps the waiting notifications and ``last_sent`` per chat between calls (the outbox
and the notification log, durably) and calls :func:`flush` each tick and again at
:attr:`Flush.next_due_ms`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from alerts.notifications import GroupedMessage, NoticeKind, Outgoing
from core.config import AlertSettings

__all__ = ["Flush", "GroupTiming", "due_ms", "flush", "group_key", "order"]

# Within a message: what needs action first (a spike is happening now), digests last.
_KIND_ORDER = {
    NoticeKind.LIQ_SPIKE: 0,
    NoticeKind.CLUSTER_APPROACH: 1,
    NoticeKind.LEVEL_CROSS: 2,
    NoticeKind.ETF_REVERSAL: 3,
    NoticeKind.ETF_FLOW: 4,
    NoticeKind.DIGEST: 5,
}


@dataclass(frozen=True)
class GroupTiming:
    """Alertmanager's route timing, in ms."""

    group_wait_ms: int = 10_000
    group_interval_ms: int = 60_000

    @classmethod
    def from_settings(cls, s: AlertSettings) -> GroupTiming:
        return cls(round(s.group_wait_s * 1000), round(s.group_interval_s * 1000))


@dataclass(frozen=True)
class Flush:
    """What :func:`flush` decided at ``now_ms``.

    Attributes
    ----------
    messages
        Messages to write to the outbox now, one per chat at most, ordered by destination.
    waiting
        Notifications not yet due; pass them to the next call.
    last_sent
        ``last_sent`` updated with ``now_ms`` for every chat that got a message.
    next_due_ms
        When the earliest waiting group becomes due, or None when nothing waits.
    """

    messages: tuple[GroupedMessage, ...]
    waiting: tuple[Outgoing, ...]
    last_sent: Mapping[int, int] = field(default_factory=dict)
    next_due_ms: int | None = None


def order(items: Iterable[Outgoing]) -> tuple[Outgoing, ...]:
    """Members in message order: by kind (spikes first), symbol, subscription, creation time."""
    return tuple(
        sorted(
            items,
            key=lambda o: (
                _KIND_ORDER[o.payload.kind],
                o.symbol or "",
                o.subscription_id,
                o.created_ms,
            ),
        )
    )


def group_key(destination_id: int, items: Iterable[Outgoing]) -> str:
    """Deterministic dedup key of a message: the destination and its members' keys, hashed.

    Independent of the members' order; ``"<destination>:<24 hex digits>"``.
    """
    digest = hashlib.sha256(str(destination_id).encode())
    for key in sorted({o.key for o in items}):
        digest.update(b"\0" + key.encode())
    return f"{destination_id}:{digest.hexdigest()[:24]}"


def due_ms(first_created_ms: int, last_sent_ms: int | None, timing: GroupTiming) -> int:
    """When a chat's group may be sent: group_wait after its oldest member, and group_interval
    after the chat's last message."""
    due = first_created_ms + timing.group_wait_ms
    if last_sent_ms is not None:
        due = max(due, last_sent_ms + timing.group_interval_ms)
    return due


def flush(
    pending: Sequence[Outgoing],
    last_sent: Mapping[int, int],
    now_ms: int,
    timing: GroupTiming,
) -> Flush:
    """Group ``pending`` per destination and send the groups that are due at ``now_ms``.

    Parameters
    ----------
    pending
        Every notification not yet grouped: this tick's and those still waiting from earlier
        calls. Duplicates (same key and destination) count once.
    last_sent
        Destination id -> epoch ms of its last message (absent: never).
    now_ms
        The current time, epoch ms.
    timing
        group_wait and group_interval.
    """
    by_dest: dict[int, dict[str, Outgoing]] = {}
    for o in pending:
        by_dest.setdefault(o.destination_id, {}).setdefault(o.key, o)
    messages: list[GroupedMessage] = []
    waiting: list[Outgoing] = []
    sent = dict(last_sent)
    next_due: int | None = None
    for dest in sorted(by_dest):
        items = order(by_dest[dest].values())
        due = due_ms(min(o.created_ms for o in items), last_sent.get(dest), timing)
        if now_ms >= due:
            messages.append(GroupedMessage(dest, group_key(dest, items), now_ms, items))
            sent[dest] = now_ms
        else:
            waiting.extend(items)
            next_due = due if next_due is None else min(next_due, due)
    return Flush(tuple(messages), tuple(waiting), sent, next_due)
