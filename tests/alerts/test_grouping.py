"""Grouping per chat: group_wait, group_interval, deterministic keys; scenarios on a fake clock."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.grouping import Flush, GroupTiming, due_ms, flush, group_key, order
from alerts.notifications import ClusterApproach, LevelCross, LiqSpike, NoticeKind, Outgoing
from core.config import AlertSettings

T0 = 1_768_300_000_000
SEC = 1000
TIMING = GroupTiming(group_wait_ms=10 * SEC, group_interval_ms=60 * SEC)


def cross(dest: int, sub: int, at: int, symbol: str = "BTC") -> Outgoing:
    return Outgoing(dest, sub, at, LevelCross(symbol, at, 96_000.0, 96_100.0, 95_900.0))


def spike(dest: int, sub: int, at: int, symbol: str = "BTC") -> Outgoing:
    return Outgoing(dest, sub, at, LiqSpike(symbol, at, 3_600_000, 1e6, 2e6, 1e6))


def approach(dest: int, sub: int, at: int, symbol: str = "BTC") -> Outgoing:
    return Outgoing(dest, sub, at, ClusterApproach(symbol, at, 95_000.0, "short", 96_000.0, 1e8))


def test_timing_from_settings() -> None:
    s = AlertSettings(group_wait_s=2.5, group_interval_s=90)
    assert GroupTiming.from_settings(s) == GroupTiming(2_500, 90_000)


@pytest.mark.parametrize(
    ("first", "last_sent", "due"),
    [
        (T0, None, T0 + 10 * SEC),  # group_wait after the oldest member
        (T0, T0 - 5 * SEC, T0 + 55 * SEC),  # group_interval after the last message
        (T0, T0 - 120 * SEC, T0 + 10 * SEC),  # long ago: group_wait decides
        (T0, T0 - 50 * SEC, T0 + 10 * SEC),  # both give the same time
    ],
)
def test_due_ms(first: int, last_sent: int | None, due: int) -> None:
    assert due_ms(first, last_sent, TIMING) == due


def test_one_tick_for_one_chat_is_one_message_after_group_wait() -> None:
    batch = [cross(1, 11, T0), approach(1, 12, T0), spike(1, 13, T0, "ETH")]
    early = flush(batch, {}, T0, TIMING)
    assert early.messages == ()
    assert set(early.waiting) == set(batch)
    assert early.next_due_ms == T0 + 10 * SEC
    due = flush(early.waiting, {}, T0 + 10 * SEC, TIMING)
    assert len(due.messages) == 1
    msg = due.messages[0]
    assert msg.destination_id == 1 and msg.created_ms == T0 + 10 * SEC
    assert [o.subscription_id for o in msg.items] == [13, 12, 11]  # spike, approach, cross
    assert due.waiting == () and due.next_due_ms is None
    assert due.last_sent == {1: T0 + 10 * SEC}


def test_zero_group_wait_sends_within_the_tick() -> None:
    out = flush([cross(1, 11, T0)], {}, T0, GroupTiming(0, 60 * SEC))
    assert len(out.messages) == 1


def test_each_chat_gets_its_own_message_in_destination_order() -> None:
    out = flush([cross(2, 21, T0), cross(1, 11, T0), cross(2, 22, T0)], {}, T0 + 10 * SEC, TIMING)
    assert [m.destination_id for m in out.messages] == [1, 2]
    assert [len(m.items) for m in out.messages] == [1, 2]


def test_group_interval_holds_later_notifications_and_merges_them() -> None:
    sent = {1: T0}
    a = flush([cross(1, 11, T0 + 10 * SEC)], sent, T0 + 20 * SEC, TIMING)
    assert a.messages == () and a.next_due_ms == T0 + 60 * SEC
    b = flush([*a.waiting, spike(1, 12, T0 + 30 * SEC)], a.last_sent, T0 + 40 * SEC, TIMING)
    assert b.messages == ()
    c = flush(b.waiting, b.last_sent, T0 + 60 * SEC, TIMING)
    assert len(c.messages) == 1
    assert [o.subscription_id for o in c.messages[0].items] == [12, 11]


def test_a_quiet_chat_does_not_delay_another() -> None:
    out = flush([cross(1, 11, T0), cross(2, 21, T0)], {1: T0 - 5 * SEC}, T0 + 10 * SEC, TIMING)
    assert [m.destination_id for m in out.messages] == [2]
    assert [o.destination_id for o in out.waiting] == [1]
    assert out.next_due_ms == T0 + 55 * SEC
    assert out.last_sent == {1: T0 - 5 * SEC, 2: T0 + 10 * SEC}


def test_duplicates_count_once() -> None:
    o = cross(1, 11, T0)
    out = flush([o, o, cross(1, 11, T0)], {}, T0 + 10 * SEC, TIMING)
    assert len(out.messages[0].items) == 1


def test_group_key_is_deterministic() -> None:
    a, b, c = cross(1, 11, T0), approach(1, 12, T0), spike(1, 13, T0)
    assert group_key(1, [a, b]) == group_key(1, [b, a]) == group_key(1, [a, b, a])
    assert group_key(1, [a, b]) != group_key(1, [a, b, c])
    assert group_key(1, [a]) != group_key(2, [a])
    assert group_key(1, [a]).startswith("1:")
    # Regrouping after a restart gives the same outbox key.
    first = flush([a, b], {}, T0 + 10 * SEC, TIMING).messages[0]
    again = flush([b, a], {}, T0 + 11 * SEC, TIMING).messages[0]
    assert first.key == again.key


def test_order_puts_spikes_first_and_digests_last() -> None:
    items = [cross(1, 1, T0, "ETH"), approach(1, 2, T0), spike(1, 3, T0, "SOL"), cross(1, 4, T0)]
    kinds = [(o.payload.kind, o.symbol) for o in order(items)]
    assert kinds == [
        (NoticeKind.LIQ_SPIKE, "SOL"),
        (NoticeKind.CLUSTER_APPROACH, "BTC"),
        (NoticeKind.LEVEL_CROSS, "BTC"),
        (NoticeKind.LEVEL_CROSS, "ETH"),
    ]


def _simulate(
    arrivals: Sequence[Outgoing], timing: GroupTiming, tick_ms: int
) -> list[tuple[int, int, tuple[str, ...], int]]:
    """Drive flush on a fake clock: at each arrival, each tick and each next_due_ms.

    Returns (sent_ms, destination, member keys, oldest member's created_ms) per message.
    """
    times = sorted({o.created_ms for o in arrivals})
    end = (times[-1] if times else T0) + 10 * timing.group_interval_ms + timing.group_wait_ms
    clock = sorted({*times, *range(T0, end, tick_ms)})
    waiting: tuple[Outgoing, ...] = ()
    last: dict[int, int] = {}
    log = []
    i = 0
    while clock:
        now = clock.pop(0)
        new = [o for o in arrivals if o.created_ms == now]
        res: Flush = flush([*waiting, *new], last, now, timing)
        for m in res.messages:
            oldest = min(o.created_ms for o in m.items)
            log.append((now, m.destination_id, tuple(o.key for o in m.items), oldest))
        waiting, last = res.waiting, dict(res.last_sent)
        if res.next_due_ms is not None and res.next_due_ms not in clock:
            clock = sorted([*clock, res.next_due_ms])
        i += 1
        assert i < 10_000
    assert waiting == ()
    return log


def test_scripted_minute_ticks_for_a_busy_chat() -> None:
    # A chat gets something every 20 s for 3 minutes: messages at most once a minute, none lost.
    arrivals = [cross(1, k, T0 + k * 20 * SEC) for k in range(10)]
    log = _simulate(arrivals, TIMING, tick_ms=20 * SEC)
    times = [t for t, *_ in log]
    assert times == [T0 + 10 * SEC, T0 + 70 * SEC, T0 + 130 * SEC, T0 + 190 * SEC]
    sent = [k for _, _, keys, _ in log for k in keys]
    assert sorted(sent) == sorted(o.key for o in arrivals)


arrival = st.tuples(st.integers(1, 3), st.integers(0, 50), st.integers(0, 600))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(arrival, max_size=40),
    st.integers(0, 30),
    st.integers(0, 120),
    st.sampled_from([1, 5, 60]),
)
def test_grouping_invariants(
    raw: list[tuple[int, int, int]], wait_s: int, interval_s: int, tick_s: int
) -> None:
    timing = GroupTiming(wait_s * SEC, interval_s * SEC)
    arrivals = list(
        {
            o.key + str(o.destination_id): o for o in (cross(d, s, T0 + t * SEC) for d, s, t in raw)
        }.values()
    )
    log = _simulate(arrivals, timing, tick_s * SEC)
    # Nothing is lost and nothing is sent twice.
    sent = sorted((d, k) for _, d, keys, _ in log for k in keys)
    assert sent == sorted((o.destination_id, o.key) for o in arrivals)
    for dest in {d for _, d, _, _ in log}:
        times = [t for t, d, _, _ in log if d == dest]
        # At most one message per group_interval per chat.
        assert all(b - a >= timing.group_interval_ms for a, b in pairwise(times))
    # No message leaves before group_wait has passed for its oldest member.
    assert all(t >= oldest + timing.group_wait_ms for t, _, _, oldest in log)
