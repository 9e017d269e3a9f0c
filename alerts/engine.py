"""The alert engine: subscriptions and states in memory, one tick at a time, durably (issue 4).

::

    engine = AlertEngine(store, settings, clock)
    await engine.start(now_ms)           # log and stored states first: a restart repeats nothing
    result = await engine.tick(now_ms, snapshots, etf_report)
    await engine.drain(send, now_ms, worker_id)

A tick, vectorized over every subscription but for the payloads of the rows that notify:

1. :func:`~alerts.rules.evaluate_tick`: the condition set of every kind (stale snapshots never
   hold: the rules report them STALE and the state machine changes nothing for them);
2. :func:`~alerts.state.decide_many` per kind: new states and the rows that notify;
3. a typed payload per notifying row, with the numbers that explain it
   (:mod:`alerts.engine_tick`);
4. inhibition (a spike suppresses the approach alert of the same chat, symbol and tick);
5. grouping (:func:`alerts.grouping.flush`): one message per chat;
6. quiet hours and mutes mark messages silent (never dropped);
7. **one** store transaction writes the messages to the outbox (dedup key
   ``GroupedMessage.key``; keys already in the notification log are skipped) and the changed
   alert states, so a crash leaves both or neither. The in-memory states advance only after
   the commit; a tick that failed to commit is decided again from the old states.

Grouping and the tick. Every notification of a tick is made by this call and carries the
tick's time, so nothing can join a chat's group after the tick: the group is complete when it
is made. The flush is therefore evaluated at the group's due time, ``now + group_wait``, and
the message goes into the tick's transaction instead of waiting in memory. A chat whose
previous message is less than ``group_interval`` old gets its message delayed instead: it is
written in the same transaction, due at ``last + group_interval`` (the outbox holds it until
then), so it is as durable as the rest. ``group_interval`` thus spaces a chat's messages;
it never merges messages of different ticks.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import select

from alerts.delivery import DrainResult, RetryPolicy, Sender, SendResult, drain
from alerts.digests import after_etf_slot_ms, recipients
from alerts.engine_tick import (
    EVALUATED,
    TickInputs,
    align_states,
    changed_rows,
    etf_episodes,
    load_tables,
    outgoing,
    states_by_id,
    take_states,
)
from alerts.grouping import GroupTiming, due_ms, flush, group_key, order
from alerts.inhibit import Suppressed, inhibit
from alerts.notifications import Digest, GroupedMessage, Outgoing, message_to_dict
from alerts.quiet import apply_muter, muter_for
from alerts.rules import SubscriptionTables, TickConditions, etf_state, evaluate_tick, market_state
from alerts.scheduler import JobFunc
from alerts.state import (
    ConditionArrays,
    DecisionArrays,
    StateArrays,
    TimingArrays,
    decide_many,
)
from alerts.store import (
    Destination,
    Envelope,
    Store,
    enqueue,
    last_sent,
    load_states,
    sent_keys_since,
    upsert_states,
)
from alerts.store.repo import destinations as destinations_table
from alerts.subscriptions import Kind
from core.config import Settings
from core.etf_report import FlowReport
from core.snapshot import Snapshot

__all__ = ["AlertEngine", "Clock", "DrainResult", "SendResult", "Sender", "TickResult"]

Clock = Callable[[], float]  # epoch seconds, as alerts.scheduler's
DigestInputs = Callable[[], Awaitable[tuple[Sequence[Snapshot], FlowReport | None]]]


@dataclass(frozen=True)
class TickResult:
    """What one tick did.

    Attributes
    ----------
    notified
        Rows that notified, per kind (the state machine's decision).
    items
        Their notifications, before inhibition.
    suppressed
        Those inhibited (not sent), with the rule and the notification that suppressed them.
    messages
        The grouped messages written to the outbox (quiet ones marked ``silent``).
    queued
        Their dedup keys that were new (a key already queued or in the log is skipped).
    states_written
        Alert-state rows written.
    """

    now_ms: int
    conditions: TickConditions
    notified: dict[Kind, int]
    items: tuple[Outgoing, ...]
    suppressed: tuple[Suppressed, ...]
    messages: tuple[GroupedMessage, ...]
    queued: tuple[str, ...]
    states_written: int


@dataclass
class _Written:
    messages: list[GroupedMessage] = field(default_factory=list)
    envelopes: list[tuple[Envelope, int]] = field(default_factory=list)  # (row, due ms)


class AlertEngine:
    """Subscription tables and their alert states in memory; the store holds the truth."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock = time.time,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self.timing = GroupTiming.from_settings(settings.alerts)
        self.tables: SubscriptionTables | None = None
        self.states: dict[Kind, StateArrays] = {}
        self._sent: dict[str, int] = {}  # message keys known sent -> when (the log, then drains)
        self._last_sent: dict[int, int] = {}  # destination -> time of its latest message
        self._changed = False

    # --- lifecycle -------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def horizon_ms(self) -> int:
        """How far back the notification log is read: the repeat interval."""
        return round(self.settings.alerts.repeat_interval_s * 1000)

    @property
    def started(self) -> bool:
        return self.tables is not None

    async def start(self, now_ms: int | None = None) -> None:
        """Read the notification log and the stored states, then load the subscriptions.

        Must run before the first evaluation (``tick`` calls it when it has not run): the
        stored states say what already fired, so nothing fires again after a restart.
        """
        now = self.now_ms() if now_ms is None else now_ms
        self._sent = dict.fromkeys(await sent_keys_since(self.store, now - self.horizon_ms), now)
        tables = await load_tables(self.store)
        states: dict[Kind, StateArrays] = {}
        for kind in EVALUATED:
            stored = await load_states(self.store, kind)
            states[kind] = align_states(stored, self._table(tables, kind).ids)
        self.tables, self.states, self._changed = tables, states, False

    def subscriptions_changed(self) -> None:
        """Ask for a reload before the next tick (after an add, a delete, an expiry)."""
        self._changed = True

    async def reload_subscriptions(self) -> SubscriptionTables:
        """Load the active subscriptions again; known states follow their subscriptions."""
        if self.tables is None:
            await self.start()
            assert self.tables is not None
            return self.tables
        tables = await load_tables(self.store)
        states = {}
        for kind in EVALUATED:
            old = self._table(self.tables, kind)
            known = states_by_id(old.ids, self.states[kind])
            states[kind] = align_states(known, self._table(tables, kind).ids)
        self.tables, self.states, self._changed = tables, states, False
        return tables

    @staticmethod
    def _table(tables: SubscriptionTables, kind: Kind) -> Any:
        return getattr(tables, str(kind))

    # --- the tick --------------------------------------------------------------------------

    async def tick(
        self,
        now_ms: int | None,
        snapshots: Sequence[Snapshot],
        etf_report: FlowReport | None = None,
        *,
        etf_stale: bool = False,
    ) -> TickResult:
        """Evaluate every subscription against this tick and write the outcome durably."""
        now = self.now_ms() if now_ms is None else now_ms
        if self.tables is None:
            await self.start(now)
        elif self._changed:
            await self.reload_subscriptions()
        tables = self.tables
        assert tables is not None
        cond = evaluate_tick(
            tables,
            market_state(snapshots, tables.symbols),
            etf_state(etf_report, stale=etf_stale),
        )
        inputs = TickInputs(now, {s.symbol: s for s in snapshots}, etf_report)
        decided: dict[Kind, DecisionArrays] = {}
        items: list[Outgoing] = []
        for kind in EVALUATED:
            table = self._table(tables, kind)
            c = getattr(cond, str(kind))
            t = table.timing
            timing = TimingArrays(t.cooldown_ms, t.repeat_ms, t.expires_ms)
            state = self.states[kind]
            if kind == Kind.ETF:
                state, c, timing = etf_episodes(state, c, timing)
            d = decide_kind(state, c, now, timing)
            decided[kind] = d
            items += outgoing(kind, table, c, np.flatnonzero(d.notify), inputs)
        inhibited = inhibit(items)
        written = await self._group(inhibited.kept, now)
        queued, n_states = await self._commit(tables, decided, written, now)
        for kind, d in decided.items():
            self.states[kind] = d.state
        return TickResult(
            now_ms=now,
            conditions=cond,
            notified={k: int(np.count_nonzero(d.notify)) for k, d in decided.items()},
            items=tuple(items),
            suppressed=inhibited.suppressed,
            messages=tuple(written.messages),
            queued=tuple(queued),
            states_written=n_states,
        )

    async def _group(self, kept: Sequence[Outgoing], now: int) -> _Written:
        """One message per chat (see the module docstring), muted ones silent."""
        out = _Written()
        if not kept:
            return out
        dests = await self._destinations({o.destination_id for o in kept})
        live = [o for o in kept if o.destination_id in dests and dests[o.destination_id].enabled]
        last = {d: await self._last_sent_ms(d) for d in {o.destination_id for o in live}}
        gw = self.timing.group_wait_ms
        fl = flush(live, {d: t for d, t in last.items() if t is not None}, now + gw, self.timing)
        messages = [(replace(m, created_ms=now), now) for m in fl.messages]
        by_dest: dict[int, list[Outgoing]] = {}
        for o in fl.waiting:
            by_dest.setdefault(o.destination_id, []).append(o)
        for dest, members in sorted(by_dest.items()):
            due = due_ms(now, last[dest], self.timing)
            msg = GroupedMessage(dest, group_key(dest, members), now, order(members))
            messages.append((msg, due))
        muter = muter_for(dests.values())
        for msg, due in messages:
            if msg.key in self._sent:
                continue
            (muted,) = apply_muter([msg], muter, due)
            out.messages.append(muted)
            out.envelopes.append((self._envelope(muted, now), due))
        return out

    @staticmethod
    def _envelope(msg: GroupedMessage, now: int) -> Envelope:
        one = msg.items[0] if len(msg.items) == 1 else None
        return Envelope(
            dedup_key=msg.key,
            destination_id=msg.destination_id,
            kind=str(one.payload.kind) if one else "group",
            ts_ms=now,
            payload=message_to_dict(msg),
            subscription_id=one.subscription_id if one else None,
            silent=msg.silent,
        )

    async def _commit(
        self,
        tables: SubscriptionTables,
        decided: dict[Kind, DecisionArrays],
        written: _Written,
        now: int,
    ) -> tuple[list[str], int]:
        """Outbox rows and changed states in one transaction."""
        queued: list[str] = []
        n_states = 0
        async with self.store.write() as conn:
            for env, due in written.envelopes:
                # enqueue makes a row due at its ``now_ms``: a delayed message is due later.
                queued += await enqueue(conn, [env], due)
            for kind, d in decided.items():
                rows = changed_rows(self.states[kind], d.state)
                if rows.size:
                    ids = self._table(tables, kind).ids[rows]
                    n_states += await upsert_states(conn, ids, take_states(d.state, rows), now)
        for env, due in written.envelopes:
            self._last_sent[env.destination_id] = max(
                due, self._last_sent.get(env.destination_id, due)
            )
        return queued, n_states

    async def _destinations(self, ids: Iterable[int]) -> dict[int, Destination]:
        wanted = sorted(set(ids))
        c = destinations_table.c
        async with self.store.read() as conn:
            rows = (await conn.execute(select(destinations_table).where(c.id.in_(wanted)))).all()
        return {int(r.id): Destination(**r._asdict()) for r in rows}

    async def _last_sent_ms(self, destination_id: int) -> int | None:
        """When the chat's latest message went out (or is due): memory, else the log."""
        if destination_id not in self._last_sent:
            entry = await last_sent(self.store, destination_id)
            if entry is None:
                return None
            self._last_sent[destination_id] = entry.sent_ms
        return self._last_sent[destination_id]

    # --- digests ---------------------------------------------------------------------------

    async def digest(
        self,
        schedule: str,
        slot_ms: int,
        snapshots: Sequence[Snapshot],
        etf_report: FlowReport | None = None,
        *,
        now_ms: int | None = None,
    ) -> tuple[str, ...]:
        """Queue the ``schedule`` digest of ``slot_ms`` to its subscribers; the keys queued.

        ``slot_ms`` is the scheduled fire time (the job's slot), or for ``after-etf`` ignored in
        favour of the report's trading day (see :mod:`alerts.digests`); an after-etf digest
        needs a report. One message per subscription, due now, silent in quiet hours or a
        mute; disabled chats get none. Running again for the same slot queues nothing.
        """
        now = self.now_ms() if now_ms is None else now_ms
        if self.tables is None:
            await self.start(now)
        elif self._changed:
            await self.reload_subscriptions()
        assert self.tables is not None
        if schedule == "after-etf":
            if etf_report is None:
                return ()
            slot_ms = after_etf_slot_ms(etf_report)
        who = recipients(self.tables.digest, schedule, now)
        if not len(who):
            return ()
        payload = Digest.build(schedule, slot_ms, snapshots, etf_report)
        dests = await self._destinations(who.destination_ids.tolist())
        items = [
            Outgoing(dest, sub, slot_ms, payload)
            for sub, dest in zip(
                who.subscription_ids.tolist(), who.destination_ids.tolist(), strict=True
            )
            if dest in dests and dests[dest].enabled
        ]
        muter = muter_for(dests.values())
        envelopes = []
        for item in items:
            msg = GroupedMessage(item.destination_id, item.key, now, (item,))
            (muted,) = apply_muter([msg], muter, now)
            envelopes.append(self._envelope(muted, now))
        async with self.store.write() as conn:
            queued = await enqueue(conn, envelopes, now)
        return tuple(queued)

    def digest_job(self, schedule: str, inputs: DigestInputs) -> JobFunc:
        """A scheduler job (``engine_jobs(hourly_digest=..., daily_digest=...)``) sending the
        ``schedule`` digest with what ``inputs()`` returns (the latest snapshots and report).

        Cron digests fire once a minute at most, so the slot is the run's minute: a second run
        in the same minute (a retry, a restart) queues nothing new.
        """

        async def run(now_ms: int) -> None:
            snapshots, report = await inputs()
            slot = now_ms - now_ms % 60_000
            await self.digest(schedule, slot, snapshots, report, now_ms=now_ms)

        return run

    # --- delivery --------------------------------------------------------------------------

    async def drain(
        self,
        send: Sender,
        now_ms: int | None = None,
        worker_id: str = "engine",
        *,
        limit: int = 100,
        lease_ms: int = 60_000,
        concurrency: int = 4,
        keep_going: Callable[[], bool] | None = None,
    ) -> DrainResult:
        """Deliver the due outbox rows with ``send`` (see :mod:`alerts.delivery`), up to
        ``concurrency`` chats at a time (the platform pacer spaces the sends; a few in flight
        keep its slots filled while each waits for its round trip)."""
        now = self.now_ms() if now_ms is None else now_ms
        result = await drain(
            self.store,
            send,
            now,
            worker_id,
            limit=limit,
            lease_ms=lease_ms,
            policy=self.retry,
            concurrency=concurrency,
            keep_going=keep_going,
        )
        for key in result.sent_keys:
            self._sent[key] = now
        cutoff = now - self.horizon_ms
        if len(self._sent) > 10_000:
            self._sent = {k: t for k, t in self._sent.items() if t >= cutoff}
        return result


def decide_kind(state: StateArrays, cond: Any, now_ms: int, timing: TimingArrays) -> DecisionArrays:
    """:func:`~alerts.state.decide_many` on one kind's condition set."""
    arrays = ConditionArrays(cond.holds, cond.value, cond.clear, cond.stale)
    return decide_many(state, arrays, now_ms, timing)
