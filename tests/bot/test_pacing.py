"""The two-lane pacer in virtual time: sliding windows never exceeded (global, per chat, per
group), interactive priority, no head-of-line blocking, backoffs scoped to their lane and chat,
full throughput when saturated, precise wake-ups and bounded state.

Each test runs on an event loop whose clock is virtual: when every task waits, the loop jumps
straight to the next timer. The pacer gets ``clock=loop.time`` and the real ``asyncio.sleep``,
so its own timer code runs as in production, deterministically and in no wall time. (The
shared ``ManualClock`` moves time once per sleeper, which suits one sleeper only; it is used
where the pacer's timer is the only one.)
"""

from __future__ import annotations

import asyncio
import itertools
import selectors
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.pacing import Lane, Pacer, window
from core.config import LaneLimits
from tests.fakes.timing import ManualClock

T = TypeVar("T")

TELEGRAM = LaneLimits()  # 30/s, 1/s per chat, 20/min per group, 0.002 s margin
W = 1.0 + TELEGRAM.window_margin_s  # every window's span, in s (the group one: 60 + margin)
GROUP_W = 60.0 + TELEGRAM.window_margin_s
SLOT = W / 30  # a saturated lane frees a global slot this often
EPS = 1e-6  # float rounding of virtual time


# --- a virtual-time event loop -----------------------------------------------------------


class _VirtualSelector(selectors.SelectSelector):
    """No I/O ever becomes ready; a wait for ``timeout`` moves the loop's clock instead."""

    def __init__(self, loop: VirtualLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is set")
        self._loop.now += max(timeout, 0.0)
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self.now


def run(main: Callable[[VirtualLoop], Coroutine[Any, Any, T]]) -> T:
    with asyncio.Runner(loop_factory=VirtualLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, VirtualLoop)
        return runner.run(main(loop))


# --- recording sends ---------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    t: float  # when acquire returned
    lane: Lane
    chat: str
    group: bool
    asked: float  # when acquire was called


@dataclass
class Harness:
    loop: VirtualLoop
    pacer: Pacer
    sends: list[Send] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def send(self, chat: str, lane: Lane, group: bool = False) -> Send:
        asked = self.loop.time()
        await self.pacer.acquire(chat, lane=lane, group=group)
        sent = Send(self.loop.time(), lane, chat, group, asked)
        self.sends.append(sent)
        return sent

    def spawn(self, chat: str, lane: Lane, group: bool = False, at: float = 0.0) -> None:
        async def later() -> None:
            await asyncio.sleep(at - self.loop.time())
            await self.send(chat, lane, group)

        self.tasks.append(self.loop.create_task(later()))

    async def finish(self) -> list[Send]:
        await asyncio.gather(*self.tasks)
        return self.sends

    def of(self, lane: Lane | None = None, chat: str | None = None) -> list[Send]:
        return [
            s
            for s in self.sends
            if (lane is None or s.lane == lane) and (chat is None or s.chat == chat)
        ]


def harness(loop: VirtualLoop, limits: LaneLimits = TELEGRAM) -> Harness:
    return Harness(loop, Pacer(limits, clock=loop.time))


def most_in_window(times: Iterable[float], span: float) -> int:
    """The most sends inside any window of ``span`` s (half-open, as the pacer counts)."""
    ts = sorted(times)
    best = start = 0
    for end, t in enumerate(ts):
        while ts[start] + span <= t + EPS:
            start += 1
        best = max(best, end - start + 1)
    return best


def check_limits(sends: list[Send], limits: LaneLimits) -> None:
    """Every window, over every send: global, per chat, per group."""
    count, span = window(limits.global_per_s, 1.0, limits.window_margin_s)
    assert most_in_window((s.t for s in sends), span) <= count
    chat_count, chat_span = window(limits.per_chat_per_s, 1.0, limits.window_margin_s)
    group_count, group_span = window(limits.per_group_per_min, 60.0, limits.window_margin_s)
    for chat in {s.chat for s in sends}:
        mine = [s for s in sends if s.chat == chat]
        assert most_in_window((s.t for s in mine), chat_span) <= chat_count, chat
        grouped = (s.t for s in mine if s.group)
        assert most_in_window(grouped, group_span) <= group_count, chat


# --- windows -----------------------------------------------------------------------------


def test_window_keeps_the_rate_of_fractional_limits() -> None:
    assert window(30.0, 1.0, 0.02) == pytest.approx((30, 1.02))
    assert window(20.0, 60.0, 0.02) == pytest.approx((20, 60.02))
    assert window(0.5, 1.0, 0.0) == pytest.approx((1, 2.0))  # one per 2 s, not per 1 s
    count, span = window(30.5, 1.0, 0.0)
    assert count == 30 and count / span == pytest.approx(30.5)


def test_the_global_window_is_never_exceeded_across_both_lanes() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        for i in range(150):
            h.spawn(f"b{i}", "broadcast", at=(i % 7) * 0.3)
        for i in range(60):
            h.spawn(f"i{i}", "interactive", at=i * 0.05)
        await h.finish()
        return h

    h = run(main)
    assert len(h.sends) == 210
    check_limits(h.sends, TELEGRAM)
    # Saturated: the window is full, not merely respected.
    assert most_in_window((s.t for s in h.sends), W) == 30
    stats = h.pacer.stats()
    assert stats.sent == {"interactive": 60, "broadcast": 150}
    assert stats.waiting == {"interactive": 0, "broadcast": 0}


def test_one_chat_gets_at_most_its_per_chat_rate_in_either_lane() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        for i in range(4):
            h.spawn("alice", "broadcast")
            h.spawn("alice", "interactive", at=0.1 * i)
        await h.finish()
        return h

    h = run(main)
    times = sorted(s.t for s in h.sends)
    assert times == pytest.approx([i * W for i in range(8)], abs=EPS)
    check_limits(h.sends, TELEGRAM)


def test_a_faster_per_chat_limit_is_a_window_not_a_bucket() -> None:
    discord = LaneLimits(global_per_s=45, per_chat_per_s=4, per_group_per_min=240)

    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop, discord)
        for _ in range(10):
            h.spawn("channel", "interactive")
        await h.finish()
        return h

    h = run(main)
    times = sorted(s.t for s in h.sends)
    # Four at once, four more when the first four leave the window, then two.
    assert times == pytest.approx([0.0] * 4 + [W] * 4 + [2 * W] * 2, abs=EPS)
    check_limits(h.sends, discord)


def test_a_group_gets_at_most_its_per_minute_rate() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        for _ in range(23):
            h.spawn("-100group", "broadcast", group=True)
        await h.finish()
        return h

    h = run(main)
    times = sorted(s.t for s in h.sends)
    # 1/s for the first 20, then the group window: the 21st once the 1st is 60 s (+margin) old.
    assert times[:20] == pytest.approx([i * W for i in range(20)], abs=EPS)
    assert times[20:] == pytest.approx([GROUP_W, GROUP_W + W, GROUP_W + 2 * W], abs=EPS)
    check_limits(h.sends, TELEGRAM)


# --- lanes -------------------------------------------------------------------------------


def test_interactive_overtakes_waiting_broadcasts_within_one_slot() -> None:
    arrivals = [0.5 + 0.37 * k for k in range(12)]

    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        for i in range(300):  # ten seconds of saturated broadcast, all queued at once
            h.spawn(f"sub{i}", "broadcast")
        for k, at in enumerate(arrivals):
            h.spawn(f"user{k}", "interactive", at=at)
        await h.finish()
        return h

    h = run(main)
    check_limits(h.sends, TELEGRAM)
    replies = h.of("interactive")
    assert len(replies) == len(arrivals)
    for reply in replies:
        assert reply.t - reply.asked <= SLOT + EPS  # one slot at worst, never the queue
        # Broadcasts queued long before it were still waiting when it went.
        assert any(b.t > reply.t for b in h.of("broadcast"))
    # The broadcast lane ran saturated all along: the replies were not spare capacity.
    assert most_in_window((s.t for s in h.sends if s.t < 9.0), W) == 30


def test_an_interactive_reply_with_a_free_slot_does_not_wait_for_queued_broadcasts() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop, LaneLimits(global_per_s=30, per_chat_per_s=1, window_margin_s=0.02))
        for _ in range(50):  # fifty broadcasts to one chat: 49 wait for it
            h.spawn("busy", "broadcast")
        h.spawn("user", "interactive", at=2.5)
        await h.finish()
        return h

    h = run(main)
    (reply,) = h.of("interactive")
    assert reply.t == pytest.approx(2.5, abs=EPS)


def test_a_reply_waiting_for_its_chat_does_not_hold_up_replies_to_others() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        await h.send("alice", "interactive")
        h.spawn("alice", "interactive")  # waits W for alice
        for i in range(5):
            h.spawn(f"user{i}", "interactive", at=0.1 * (i + 1))
        await h.finish()
        return h

    h = run(main)
    others = [s for s in h.of("interactive") if s.chat != "alice"]
    assert [s.t for s in others] == pytest.approx([s.asked for s in others], abs=EPS)
    assert max(s.t for s in h.of("interactive", "alice")) == pytest.approx(W, abs=EPS)


async def test_a_reply_does_not_overtake_one_that_is_due_before_the_timer_wakes() -> None:
    """A reply that may go at once still goes after an earlier one whose chat has just become
    free, even if the pacer's timer has not woken for it yet (it wakes late under load)."""
    now = [0.0]
    never = asyncio.Event()

    async def late_timer(_: float) -> None:
        await never.wait()

    pacer = Pacer(TELEGRAM, clock=lambda: now[0], sleep=late_timer)
    await pacer.acquire("alice", lane="interactive")
    alice = asyncio.create_task(pacer.acquire("alice", lane="interactive"))
    await asyncio.sleep(0)  # alice waits for her chat, until W
    assert not alice.done()
    now[0] = W + 0.01  # due, and the timer has not fired
    bob = await pacer.acquire("bob", lane="interactive")
    await asyncio.sleep(0)  # alice's task resumes: it was granted in bob's pump, first
    assert alice.done() and alice.result().at == bob.at
    quick = await pacer.acquire("carol", lane="interactive")  # nothing due: at once
    assert quick.at == now[0]


def test_a_reply_takes_the_chat_slot_before_a_broadcast_to_that_chat() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        h.spawn("alice", "broadcast")  # t=0, then alice is full until W
        h.spawn("alice", "broadcast", at=0.1)
        h.spawn("alice", "interactive", at=0.2)  # asked later, goes first
        await h.finish()
        return h

    h = run(main)
    order = [(s.lane, round(s.t, 6)) for s in sorted(h.sends, key=lambda s: s.t)]
    assert order == [
        ("broadcast", 0.0),
        ("interactive", round(W, 6)),
        ("broadcast", round(2 * W, 6)),
    ]


def test_a_reply_waiting_for_its_own_chat_does_not_hold_up_broadcasts() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        await h.send("alice", "interactive")
        h.spawn("alice", "interactive")  # waits W for alice, not for a global slot
        for i in range(5):
            h.spawn(f"sub{i}", "broadcast")
        await h.finish()
        return h

    h = run(main)
    assert sorted(s.t for s in h.of("broadcast")) == pytest.approx(
        [SLOT * i for i in range(5)], abs=EPS
    )
    assert max(s.t for s in h.of("interactive")) == pytest.approx(W, abs=EPS)


def test_a_broadcast_waiting_for_its_chat_does_not_block_other_chats() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        h.spawn("slow", "broadcast")
        h.spawn("slow", "broadcast")  # waits W for its chat
        for i in range(5):
            h.spawn(f"other{i}", "broadcast")  # queued behind it, FIFO
        await h.finish()
        return h

    h = run(main)
    second_slow = max(s.t for s in h.of(chat="slow"))
    assert second_slow == pytest.approx(W, abs=EPS)
    others = sorted(s.t for s in h.sends if s.chat.startswith("other"))
    assert others == pytest.approx([SLOT * (i + 1) for i in range(5)], abs=EPS)
    assert all(t < second_slow for t in others)
    # FIFO among broadcasts that may go: other0 .. other4 in the order they asked.
    assert [s.chat for s in h.sends if s.chat.startswith("other")] == [
        f"other{i}" for i in range(5)
    ]


def test_broadcasts_are_spread_one_slot_apart_at_full_rate() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        for i in range(600):
            h.spawn(f"sub{i % 200}", "broadcast")  # three rounds over 200 chats
        await h.finish()
        return h

    h = run(main)
    times = sorted(s.t for s in h.sends)
    rate = (len(times) - 1) / (times[-1] - times[0])
    limit = TELEGRAM.global_per_s / W
    assert rate >= 0.97 * limit
    assert rate <= limit + EPS
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= SLOT - EPS  # no bursts
    check_limits(h.sends, TELEGRAM)


# --- backoff -----------------------------------------------------------------------------


def test_a_chat_backoff_stops_only_that_chat_in_that_lane() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        h.pacer.backoff("broadcast", "alice", 5.0)
        h.spawn("alice", "broadcast")
        h.spawn("bob", "broadcast")
        h.spawn("alice", "interactive", at=2.0)
        await h.finish()
        return h

    h = run(main)
    when = {(s.lane, s.chat): s.t for s in h.sends}
    assert when[("broadcast", "alice")] == pytest.approx(5.0, abs=EPS)
    assert when[("broadcast", "bob")] == pytest.approx(0.0, abs=EPS)
    assert when[("interactive", "alice")] == pytest.approx(2.0, abs=EPS)
    assert h.pacer.stats().backoffs == 1


def test_a_lane_backoff_stops_the_whole_lane_and_not_the_other() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        for i in range(3):
            h.spawn(f"sub{i}", "broadcast")
            h.spawn(f"user{i}", "interactive", at=0.5)
        await asyncio.sleep(0.05)
        h.pacer.backoff("broadcast", None, 3.0)  # a 429 without a chat: the lane waits
        h.pacer.backoff("interactive", "user9", 60.0)  # another chat: nobody here cares
        await h.finish()
        await asyncio.sleep(1.0)
        h.pacer.backoff("interactive", None, 2.0)
        h.spawn("sub8", "broadcast", at=loop.time())
        h.spawn("user8", "interactive", at=loop.time())
        await asyncio.gather(*h.tasks)
        return h

    h = run(main)
    first = [s for s in h.sends if s.chat not in ("sub8", "user8")]
    broadcasts = sorted(s.t for s in first if s.lane == "broadcast")
    # Two went a slot apart before the 429; the third waited for the lane's backoff.
    assert broadcasts == pytest.approx([0.0, SLOT, 3.05], abs=EPS)
    assert all(s.t == pytest.approx(0.5, abs=EPS) for s in first if s.lane == "interactive")
    # Interactive lane backed off: broadcasts carry on; the reply waits its 2 s.
    (late_b,) = h.of(chat="sub8")
    (late_i,) = h.of(chat="user8")
    assert late_b.t == pytest.approx(late_b.asked, abs=EPS)
    assert late_i.t == pytest.approx(late_i.asked + 2.0, abs=EPS)


def test_a_backoff_only_extends() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        h.pacer.backoff("broadcast", "alice", 4.0)
        h.pacer.backoff("broadcast", "alice", 1.0)  # shorter: ignored
        h.pacer.backoff("broadcast", "alice", 0.0)
        h.pacer.backoff("broadcast", "alice", float("nan"))
        h.spawn("alice", "broadcast")
        await h.finish()
        return h

    h = run(main)
    assert h.sends[0].t == pytest.approx(4.0, abs=EPS)
    assert h.pacer.stats().backoffs == 2


# --- timing, cancellation, memory --------------------------------------------------------


async def test_wake_ups_sleep_exactly_until_the_next_slot() -> None:
    clock = ManualClock()
    pacer = Pacer(TELEGRAM, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(4):
        await pacer.acquire("alice", lane="broadcast")
    # One sleep per wait, each exactly until the chat's window frees: no polling ticks.
    assert clock.sleeps == pytest.approx([W, W, W], abs=EPS)
    assert clock.now - start == pytest.approx(3 * W, abs=EPS)
    await pacer.acquire("bob", lane="interactive")
    assert len(clock.sleeps) == 3


def test_a_cancelled_acquire_gives_up_its_place() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        await h.send("alice", "broadcast")
        waiting = loop.create_task(h.send("alice", "interactive"))
        h.spawn("alice", "broadcast")
        await asyncio.sleep(0.5)
        assert h.pacer.stats().waiting == {"interactive": 1, "broadcast": 1}
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert h.pacer.stats().waiting == {"interactive": 0, "broadcast": 1}
        await h.finish()
        return h

    h = run(main)
    assert [(s.lane, round(s.t, 6)) for s in h.sends] == [
        ("broadcast", 0.0),
        ("broadcast", round(W, 6)),  # took the slot the cancelled reply would have had
    ]


def test_idle_chats_are_forgotten_and_windows_stay_bounded() -> None:
    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop)
        for i in range(500):
            h.spawn(f"sub{i}", "broadcast", group=i % 2 == 0)
        h.pacer.backoff("broadcast", "gone", 5.0)
        await h.finish()
        assert h.pacer.stats().chats > 0
        await asyncio.sleep(GROUP_W + 1)
        return h

    h = run(main)
    stats = h.pacer.stats()
    assert stats.chats == 0
    assert stats.window_used == 0 and stats.window_limit == 30
    assert stats.sent["broadcast"] == 500


def test_an_unknown_lane_is_refused() -> None:
    pacer = Pacer(TELEGRAM)
    with pytest.raises(ValueError, match="lane"):
        pacer.backoff("bulk", None, 1.0)  # type: ignore[arg-type]


# --- property: no interleaving breaks a window -------------------------------------------


@dataclass(frozen=True)
class Op:
    at: float
    lane: Lane
    chat: str | None  # None: a lane-wide backoff
    backoff_s: float | None  # None: an acquire


CHATS = ("p1", "p2", "p3", "g1", "g2")  # g*: groups
TIGHT = LaneLimits(global_per_s=4, per_chat_per_s=2, per_group_per_min=3, window_margin_s=0.05)

ops = st.lists(
    st.builds(
        Op,
        at=st.floats(0.0, 8.0).map(lambda t: round(t, 2)),
        lane=st.sampled_from(("interactive", "broadcast")),
        chat=st.sampled_from(CHATS),
        backoff_s=st.none(),
    )
    | st.builds(
        Op,
        at=st.floats(0.0, 8.0).map(lambda t: round(t, 2)),
        lane=st.sampled_from(("interactive", "broadcast")),
        chat=st.sampled_from((*CHATS, None)),
        backoff_s=st.floats(0.1, 3.0),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, limits=st.sampled_from((TIGHT, TELEGRAM)))
def test_no_interleaving_of_acquires_and_backoffs_breaks_a_window(
    ops: list[Op], limits: LaneLimits
) -> None:
    backoffs: list[tuple[float, Op]] = []

    async def main(loop: VirtualLoop) -> Harness:
        h = harness(loop, limits)

        async def back_off(op: Op) -> None:
            await asyncio.sleep(op.at)
            assert op.backoff_s is not None
            h.pacer.backoff(op.lane, op.chat, op.backoff_s)
            backoffs.append((loop.time(), op))

        for op in ops:
            if op.backoff_s is None:
                assert op.chat is not None
                h.spawn(op.chat, op.lane, group=op.chat.startswith("g"), at=op.at)
            else:
                h.tasks.append(loop.create_task(back_off(op)))
        await h.finish()
        return h

    h = run(main)
    assert len(h.sends) == sum(op.backoff_s is None for op in ops)  # everyone got through
    check_limits(h.sends, limits)
    for send in h.sends:
        for t, op in backoffs:
            assert op.backoff_s is not None
            if op.lane == send.lane and op.chat in (None, send.chat):
                assert not t + EPS < send.t < t + op.backoff_s - EPS, (send, op)
    stats = h.pacer.stats()
    assert stats.waiting == {"interactive": 0, "broadcast": 0}


# --- sends count until they are done ------------------------------------------------------


def test_a_settled_send_counts_from_its_completion() -> None:
    """A slow upload that reaches the platform late must not share a window with the sends
    granted a window after its grant: it holds its slot until it is done."""
    limits = LaneLimits(global_per_s=2, per_chat_per_s=10, window_margin_s=0.0)

    async def main(loop: VirtualLoop) -> list[float]:
        pacer = Pacer(limits, clock=loop.time)
        granted: list[float] = []

        async def upload(chat: str, takes: float) -> None:
            async with pacer.slot(chat, lane="interactive"):
                granted.append(loop.time())
                await asyncio.sleep(takes)

        await asyncio.gather(upload("a", 0.3), upload("b", 0.0))
        await upload("c", 0.0)  # b's slot frees at 1.0; a's, counted from 0.3, at 1.3
        await upload("d", 0.0)
        return granted

    assert run(main) == pytest.approx([0.0, 0.0, 1.0, 1.3])


def test_slot_settles_even_when_the_send_fails() -> None:
    limits = LaneLimits(global_per_s=1, per_chat_per_s=10, window_margin_s=0.0)

    async def main(loop: VirtualLoop) -> float:
        pacer = Pacer(limits, clock=loop.time)
        with pytest.raises(RuntimeError):
            async with pacer.slot("a", lane="broadcast"):
                await asyncio.sleep(0.5)
                raise RuntimeError("the platform refused it")
        await pacer.acquire("b", lane="broadcast")
        return loop.time()

    assert run(main) == pytest.approx(1.5)
