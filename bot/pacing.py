"""Send pacing below the platform limits, in two lanes (DESIGN §7).

Every outgoing message is sent inside ``async with pacer.slot(chat_key, lane=..., group=...)``
(or between ``acquire`` and ``settle``). A send counts from its grant while it is in flight and
from its completion once done: the platform counts it on arrival, somewhere in between, and the
completion is the latest that can be. So a slow upload (a chart) cannot arrive so late that it
shares a platform window with 30 sends granted a second after it. The limits are sliding
windows (no token bucket, no refill burst), each a count of sends allowed in any window of
``period + window_margin_s``:

* all chats, both lanes: ``global_per_s`` per ``1 + margin`` s;
* one chat, both lanes: ``per_chat_per_s`` per ``1 + margin`` s;
* one group chat (``group=True``), additionally ``per_group_per_min`` per ``60 + margin`` s.

A fractional rate keeps its rate: ``r`` per period becomes ``max(1, floor(r))`` sends per
``period * count / r + margin`` s (0.5/s is one send per 2 s plus the margin).

Lanes:

* **interactive** (replies to a person) has strict priority: while an interactive acquire that
  only lacks a global slot is waiting, no broadcast takes a global slot, nor a per-chat slot
  of a chat an interactive acquire is waiting for. It never waits for the broadcast queue.
* **broadcast** (alerts, digests) is served FIFO, but a broadcast waiting for its own chat's
  limit or backoff does not hold up broadcasts to other chats. Its sends are spread at least
  ``window / global count`` apart, so a saturated lane still reaches the full rate while a slot
  frees every 1/rate seconds: an interactive reply arriving meanwhile waits at most about one
  such slot instead of up to a whole window behind a burst.

``backoff(lane, chat_key, s)`` (a 429's ``retry_after``) silences that chat in that lane (or,
with ``chat_key=None``, the whole lane) for ``s`` seconds; the other lane and other chats carry
on. A single timer sleeps exactly until the earliest moment something can change (a window
entry expiring, a backoff ending, the next broadcast spacing): there is no polling tick.
Memory is bounded: windows keep only the sends still inside them and a chat's state is dropped
once it has no waiter, no send inside a window and no backoff.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, cast, get_args

from core.config import LaneLimits

__all__ = ["LANES", "Grant", "Lane", "Pacer", "PacerStats"]

Lane = Literal["interactive", "broadcast"]
LANES: tuple[Lane, ...] = get_args(Lane)

# A timer may wake a hair before its deadline (float rounding of ``now + delay``, a clock's
# resolution): within this, the deadline counts as reached instead of sleeping again for ~0 s.
_SNAP_S = 1e-6
_MAX_BACKOFF_S = 86_400.0  # a retry_after beyond a day is a platform bug; cap it


def window(rate: float, period_s: float, margin_s: float) -> tuple[int, float]:
    """``rate`` sends per ``period_s`` as (count, span): at most count sends in any span.

    An integer rate gives ``(rate, period + margin)``; a fractional one keeps its average rate
    with a whole count, since a window can only admit whole sends.
    """
    count = max(1, math.floor(rate + 1e-9))
    return count, period_s * count / rate + margin_s


@dataclass(frozen=True)
class PacerStats:
    """A snapshot for /status and logs."""

    sent: Mapping[Lane, int]  # acquires granted since start
    waiting: Mapping[Lane, int]  # acquires waiting now
    backoffs: int  # backoff() calls with a positive wait
    window_used: int  # sends inside the current global window
    window_limit: int  # sends the global window admits
    window_s: float  # its span
    chats: int  # chats with state kept (bounded: dropped when idle)


class _Window:
    """The send times still inside one sliding window (oldest first)."""

    __slots__ = ("count", "sends", "span")

    def __init__(self, count: int, span: float) -> None:
        self.count = count
        self.span = span
        self.sends: deque[float] = deque()

    def trim(self, now: float) -> None:
        sends, span = self.sends, self.span
        while sends and sends[0] + span <= now:
            sends.popleft()

    def free_at(self, now: float) -> float:
        """When the next send fits (``<= now``: it fits now). Call ``trim(now)`` first."""
        sends = self.sends
        if len(sends) < self.count:
            return now
        return sends[len(sends) - self.count] + self.span


@dataclass(frozen=True)
class Grant:
    """One granted send (``Pacer.acquire``'s answer), to ``settle`` when the send is done."""

    chat: str
    group: bool
    at: float


def _move(sends: deque[float], old: float, new: float) -> None:
    """Re-stamp one send of a window from ``old`` to the later ``new``, keeping the order."""
    # ``old`` was granted moments ago, so it is near the newest end: look from there (a busy
    # global window holds a second of sends; deque.remove would scan all of them).
    for i in range(len(sends) - 1, -1, -1):
        stamp = sends[i]
        if stamp == old:
            break
        if stamp < old:
            return  # already out of the window (the send took longer than the window)
    else:
        return
    del sends[i]
    bisect.insort(sends, new)


class _Waiter:
    __slots__ = ("chat", "future", "group", "seq")

    def __init__(self, chat: str, group: bool, seq: int, future: asyncio.Future[float]) -> None:
        self.chat = chat
        self.group = group
        self.seq = seq
        self.future = future


class _Chat:
    """One chat's windows (shared by both lanes), backoffs and queued acquires per lane."""

    __slots__ = ("entry", "group", "per_chat", "queues", "until")

    def __init__(self, per_chat: tuple[int, float], per_group: tuple[int, float]) -> None:
        self.per_chat = _Window(*per_chat)
        self.group = _Window(*per_group)
        self.until: dict[Lane, float] = {}
        self.queues: dict[Lane, deque[_Waiter]] = {"interactive": deque(), "broadcast": deque()}
        # The id of this chat's live entry in each lane's ready/blocked heap (None: none).
        self.entry: dict[Lane, int | None] = {"interactive": None, "broadcast": None}

    def idle(self, now: float) -> bool:
        self.per_chat.trim(now)
        self.group.trim(now)
        return (
            not self.per_chat.sends
            and not self.group.sends
            and not any(q for q in self.queues.values())
            and all(t <= now for t in self.until.values())
        )


class _LaneState:
    """One lane's waiters, by chat: heads that may go now (by arrival) and heads that wait
    for their chat until a known time."""

    __slots__ = ("blocked", "last", "ready", "sent", "until", "waiting")

    def __init__(self) -> None:
        self.ready: list[tuple[int, int, str]] = []  # (head seq, entry id, chat)
        self.blocked: list[tuple[float, int, str]] = []  # (free at, entry id, chat)
        self.until = -math.inf  # lane-wide backoff
        self.last = -math.inf  # the slot of the last grant (broadcast spacing)
        self.sent = 0
        self.waiting = 0


class Pacer:
    """Paces sends of one platform (one bot token) below ``limits``; see the module doc.

    ``clock`` and ``sleep`` are injectable (a virtual clock in tests); ``sleep`` is awaited
    only by the pacer's one timer task, so a fake that advances its clock when slept on works.
    """

    def __init__(
        self,
        limits: LaneLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        margin = limits.window_margin_s
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._global = _Window(*window(limits.global_per_s, 1.0, margin))
        self._per_chat = window(limits.per_chat_per_s, 1.0, margin)
        self._per_group = window(limits.per_group_per_min, 60.0, margin)
        self._spacing = self._global.span / self._global.count
        self._lanes: dict[Lane, _LaneState] = {lane: _LaneState() for lane in LANES}
        self._chats: dict[str, _Chat] = {}
        self._idle_checks: list[tuple[float, str]] = []  # (when to look, chat)
        self._seq = 0
        self._entries = 0
        self._backoffs = 0
        self._timer: asyncio.Task[None] | None = None
        self._timer_at = math.inf

    # --- public ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def slot(self, chat_key: str, *, lane: Lane, group: bool = False) -> AsyncIterator[Grant]:
        """``acquire`` on entry, ``settle`` on exit (whatever the send's outcome)."""
        grant = await self.acquire(chat_key, lane=lane, group=group)
        try:
            yield grant
        finally:
            self.settle(grant)

    def settle(self, grant: Grant) -> None:
        """The send of ``grant`` is done: it counts from now (the latest it can have reached the
        platform) instead of from its grant. Only ever moves a send later, so nothing waiting
        can become due earlier: no pump is needed."""
        now = self._clock()
        if not now > grant.at:
            return
        _move(self._global.sends, grant.at, now)
        chat = self._chats.get(grant.chat)
        if chat is None:
            return
        _move(chat.per_chat.sends, grant.at, now)
        if grant.group:
            _move(chat.group.sends, grant.at, now)
        self._check_idle_after(chat, grant.chat, grant.group, now)

    async def acquire(self, chat_key: str, *, lane: Lane, group: bool = False) -> Grant:
        """Wait until a send to ``chat_key`` in ``lane`` fits every limit; it counts as sent now
        (until ``settle``).

        Cancelling the wait gives up the place in the queue; a slot already granted stays used.
        """
        state = self._lane(lane)
        if lane == "interactive":
            grant = self._grant_at_once(chat_key, group)
            if grant is not None:
                return grant
        self._seq += 1
        waiter = _Waiter(chat_key, group, self._seq, asyncio.get_running_loop().create_future())
        chat = self._chat(chat_key)
        queue = chat.queues[lane]
        queue.append(waiter)
        state.waiting += 1
        if len(queue) == 1:
            self._push_ready(lane, chat, waiter)
        self._pump()
        try:
            granted_at = await waiter.future
        except asyncio.CancelledError:
            if not (waiter.future.done() and not waiter.future.cancelled()):
                self._remove(lane, waiter)
                self._pump()
            raise
        return Grant(chat_key, group, granted_at)

    def _grant_at_once(self, key: str, group: bool) -> Grant | None:
        """The grant ``_pump`` would give an interactive acquire at once, or None when it must
        queue. Most replies go this way, without a future, a heap entry or a pump.

        It may go when no earlier interactive acquire could go now (none is ready; every one
        waiting is blocked by its own chat until later) and every limit lets it go; a
        broadcast never outranks a reply, so that lane needs no look.
        """
        now = self._clock()
        inter = self._lanes["interactive"]
        if inter.until > now or inter.ready or (inter.blocked and inter.blocked[0][0] <= now):
            return None
        chat = self._chats.get(key)
        if chat is not None and (
            chat.queues["interactive"] or self._chat_free_at("interactive", chat, group, now) > now
        ):
            return None
        self._global.trim(now)
        if self._global.free_at(now) > now:
            return None
        self._count_send(inter, chat or self._chat(key), key, group, now)
        self._drop_idle(now)
        return Grant(key, group, now)

    def backoff(self, lane: Lane, chat_key: str | None, retry_after_s: float) -> None:
        """Send nothing to ``chat_key`` (None: to anyone) in ``lane`` for ``retry_after_s``.

        For a 429: only the lane and chat it concerns stop. Extends, never shortens, a backoff
        already running; a non-positive or NaN wait is ignored.
        """
        state = self._lane(lane)
        if not retry_after_s > 0:
            return
        now = self._clock()
        until = now + min(retry_after_s, _MAX_BACKOFF_S)
        if chat_key is None:
            state.until = max(state.until, until)
        else:
            chat = self._chat(chat_key)
            chat.until[lane] = max(chat.until.get(lane, -math.inf), until)
            heapq.heappush(self._idle_checks, (until, chat_key))
        self._backoffs += 1
        if any(s.waiting for s in self._lanes.values()):
            self._pump()

    def stats(self) -> PacerStats:
        now = self._clock()
        self._global.trim(now)
        self._drop_idle(now)
        return PacerStats(
            sent={lane: s.sent for lane, s in self._lanes.items()},
            waiting={lane: s.waiting for lane, s in self._lanes.items()},
            backoffs=self._backoffs,
            window_used=len(self._global.sends),
            window_limit=self._global.count,
            window_s=self._global.span,
            chats=len(self._chats),
        )

    # --- bookkeeping -------------------------------------------------------------------------

    def _lane(self, lane: str) -> _LaneState:
        state = self._lanes.get(cast(Lane, lane))
        if state is None:
            raise ValueError(f"lane must be one of {LANES}, got {lane!r}")
        return state

    def _chat(self, key: str) -> _Chat:
        chat = self._chats.get(key)
        if chat is None:
            chat = self._chats[key] = _Chat(self._per_chat, self._per_group)
        return chat

    def _entry(self, lane: Lane, chat: _Chat) -> int:
        """A new heap entry id for ``chat`` in ``lane``; any older entry becomes stale."""
        self._entries += 1
        chat.entry[lane] = self._entries
        return self._entries

    def _push_ready(self, lane: Lane, chat: _Chat, head: _Waiter) -> None:
        entry = self._entry(lane, chat)
        heapq.heappush(self._lanes[lane].ready, (head.seq, entry, head.chat))

    def _live(self, lane: Lane, entry: int, key: str) -> _Chat | None:
        chat = self._chats.get(key)
        return chat if chat is not None and chat.entry[lane] == entry else None

    def _pop_head(self, lane: Lane, chat: _Chat) -> None:
        """The head left the queue (granted or cancelled): queue the next one, if any."""
        queue = chat.queues[lane]
        queue.popleft()
        self._lanes[lane].waiting -= 1
        if queue:
            self._push_ready(lane, chat, queue[0])
        else:
            chat.entry[lane] = None

    def _remove(self, lane: Lane, waiter: _Waiter) -> None:
        chat = self._chats.get(waiter.chat)
        if chat is None:
            return
        queue = chat.queues[lane]
        if queue and queue[0] is waiter:
            self._pop_head(lane, chat)
        else:
            try:
                queue.remove(waiter)
            except ValueError:
                return
            self._lanes[lane].waiting -= 1
        if chat.idle(self._clock()):
            del self._chats[waiter.chat]

    # --- scheduling --------------------------------------------------------------------------

    def _chat_free_at(self, lane: Lane, chat: _Chat, group: bool, now: float) -> float:
        """When a send in ``lane`` (to a group: ``group``) may go as far as its chat is
        concerned (``<= now``: now)."""
        at = chat.until.get(lane, -math.inf)
        chat.per_chat.trim(now)
        at = max(at, chat.per_chat.free_at(now))
        if group:
            chat.group.trim(now)
            at = max(at, chat.group.free_at(now))
        if lane == "broadcast" and at <= now:
            # A reply waiting for this chat's slot gets it first.
            rival = chat.queues["interactive"]
            lane_i = self._lanes["interactive"]
            if rival and lane_i.until <= now and chat.until.get("interactive", -math.inf) <= now:
                at = max(at, self._chat_free_at("interactive", chat, rival[0].group, now))
        return at

    def _next(self, lane: Lane, now: float) -> tuple[_Chat, _Waiter] | None:
        """The first-come head in ``lane`` that its chat lets go now (left in the heap)."""
        state = self._lanes[lane]
        ready, blocked = state.ready, state.blocked
        while blocked and blocked[0][0] <= now:
            _, entry, key = heapq.heappop(blocked)
            chat = self._live(lane, entry, key)
            if chat is not None:
                self._push_ready(lane, chat, chat.queues[lane][0])
        while ready:
            _, entry, key = ready[0]
            chat = self._live(lane, entry, key)
            if chat is None:
                heapq.heappop(ready)
                continue
            head = chat.queues[lane][0]
            if head.future.done():  # cancelled, its task not yet resumed
                heapq.heappop(ready)
                self._pop_head(lane, chat)
                continue
            at = self._chat_free_at(lane, chat, head.group, now)
            if at > now:
                heapq.heappop(ready)
                heapq.heappush(blocked, (at, self._entry(lane, chat), key))
                continue
            return chat, head
        return None

    def _grant(self, lane: Lane, chat: _Chat, head: _Waiter, now: float) -> None:
        state = self._lanes[lane]
        heapq.heappop(state.ready)  # head's entry: _next just returned it from the top
        self._pop_head(lane, chat)
        self._count_send(state, chat, head.chat, head.group, now)
        due = state.last + self._spacing
        # Keep to the schedule through a timer that woke a little late, so wake-up latency does
        # not add up over a long broadcast; after a pause (or a wait on a window) start afresh.
        state.last = due if now - due < self._spacing / 2 else now
        head.future.set_result(now)

    def _count_send(
        self, state: _LaneState, chat: _Chat, key: str, group: bool, now: float
    ) -> None:
        """A send granted at ``now``: into every window it counts against."""
        self._global.sends.append(now)
        chat.per_chat.sends.append(now)
        if group:
            chat.group.sends.append(now)
        self._check_idle_after(chat, key, group, now)
        state.sent += 1

    def _pump(self, deadline: float | None = None) -> None:
        """Grant every acquire that may go now, then set the timer for the next change."""
        now = self._clock()
        if deadline is not None and now < deadline <= now + _SNAP_S:
            now = deadline
        self._global.trim(now)
        wake = math.inf
        held = False  # an interactive acquire waits for a global slot: broadcasts wait too
        inter = self._lanes["interactive"]
        if inter.waiting:
            if inter.until > now:
                wake = inter.until
            else:
                while (found := self._next("interactive", now)) is not None:
                    at = self._global.free_at(now)
                    if at > now:
                        held = True
                        wake = min(wake, at)
                        break
                    self._grant("interactive", *found, now)
                if inter.blocked:
                    wake = min(wake, inter.blocked[0][0])
        bcast = self._lanes["broadcast"]
        if bcast.waiting and not held:
            if bcast.until > now:
                wake = min(wake, bcast.until)
            else:
                while (found := self._next("broadcast", now)) is not None:
                    at = max(
                        self._global.free_at(now),
                        self._headroom_at(now),
                        bcast.last + self._spacing,
                    )
                    if at > now:
                        wake = min(wake, at)
                        break
                    self._grant("broadcast", *found, now)
                if bcast.blocked:
                    wake = min(wake, bcast.blocked[0][0])
        for state in self._lanes.values():
            if not state.waiting:  # only stale entries left (cancelled waiters)
                state.ready.clear()
                state.blocked.clear()
        self._drop_idle(now)
        self._arm(wake)

    def _headroom_at(self, now: float) -> float:
        """When a broadcast may go and still leave a slot that frees within one spacing.

        A broadcast may leave at most ``count - 1`` sends in the last ``span - spacing`` s, so
        whenever the global window is full its oldest send is at most one spacing from leaving
        it: a reply arriving after a broadcast waits one slot at worst. An evenly spaced
        saturated lane meets this exactly, so it costs no throughput.
        """
        keep = self._global.count - 1
        sends = self._global.sends
        if keep == 0 or len(sends) < keep:
            return now
        return sends[len(sends) - keep] + self._global.span - self._spacing

    def _check_idle_after(self, chat: _Chat, key: str, group: bool, sent: float) -> None:
        """Look at dropping ``chat`` once its send at ``sent`` has left its windows."""
        span = max(chat.per_chat.span, chat.group.span) if group else chat.per_chat.span
        heapq.heappush(self._idle_checks, (sent + span, key))

    def _drop_idle(self, now: float) -> None:
        checks = self._idle_checks
        while checks and checks[0][0] <= now:
            _, key = heapq.heappop(checks)
            chat = self._chats.get(key)
            if chat is not None and chat.idle(now):
                del self._chats[key]

    def _arm(self, at: float) -> None:
        """Have the timer pump at ``at`` (inf: nothing to wait for); an earlier one may stay."""
        timer = self._timer
        if timer is not None and not timer.done():
            if self._timer_at <= at and at != math.inf:
                return
            timer.cancel()
        self._timer = None
        self._timer_at = at
        if at != math.inf:
            self._timer = asyncio.get_running_loop().create_task(self._wake(at))

    async def _wake(self, at: float) -> None:
        await self._sleep(max(at - self._clock(), 0.0))
        self._timer = None
        self._pump(deadline=at)
