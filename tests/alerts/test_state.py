"""The alert state machine: a table of every decision and its reason, time-scripted scenarios with
a fake clock, and decide_many == decide on random inputs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.state import (
    NEVER,
    Action,
    AlertState,
    Condition,
    ConditionArrays,
    Reason,
    StateArrays,
    Status,
    TimingArrays,
    clearance_above,
    clearance_below,
    decide,
    decide_many,
)
from alerts.subscriptions import Timing

T0 = 1_768_300_000_000  # 2026-01-13, epoch ms
MIN = 60_000
HOUR = 3_600_000
TIMING = Timing(cooldown_s=900, repeat_s=4 * 3600, rearm_margin=0.25)

ARMED = AlertState()
FIRING = AlertState(Status.FIRING, last_fired_ms=T0, last_notified_ms=T0, fired_count=1)
HOLDS = Condition(holds=True, value=0.8, clear=-0.45)
NEAR = Condition(holds=False, value=1.1, clear=-0.15)  # left, but inside the re-arm margin
GONE = Condition(holds=False, value=1.4, clear=0.15)  # left by more than the margin
STALE_HOLDS = Condition(holds=True, value=0.8, clear=-0.45, stale=True)
STALE_GONE = Condition(holds=False, value=1.4, clear=0.15, stale=True)


@dataclass(frozen=True)
class Case:
    state: AlertState
    cond: Condition
    now_ms: int
    reason: Reason
    status: Status
    timing: Timing = TIMING


CASES: dict[str, Case] = {
    "armed, condition false": Case(ARMED, NEAR, T0, Reason.STILL_ARMED, Status.ARMED),
    "armed, enters the condition": Case(ARMED, HOLDS, T0, Reason.FIRST_FIRE, Status.FIRING),
    "re-armed, enters within the cooldown": Case(
        AlertState(last_fired_ms=T0, last_notified_ms=T0, fired_count=1),
        HOLDS,
        T0 + 15 * MIN - 1,
        Reason.IN_COOLDOWN,
        Status.ARMED,
    ),
    "re-armed, enters as the cooldown ends": Case(
        AlertState(last_fired_ms=T0, last_notified_ms=T0, fired_count=1),
        HOLDS,
        T0 + 15 * MIN,
        Reason.FIRST_FIRE,
        Status.FIRING,
    ),
    "cooldown counts from the last repeat": Case(
        AlertState(last_fired_ms=T0 - 5 * HOUR, last_notified_ms=T0 - MIN, fired_count=2),
        HOLDS,
        T0,
        Reason.IN_COOLDOWN,
        Status.ARMED,
    ),
    "firing, holds, repeat not due": Case(
        FIRING, HOLDS, T0 + 4 * HOUR - 1, Reason.REPEAT_NOT_DUE, Status.FIRING
    ),
    "firing, holds, repeat due": Case(FIRING, HOLDS, T0 + 4 * HOUR, Reason.REPEAT, Status.FIRING),
    "firing, never notified (restored state)": Case(
        AlertState(Status.FIRING), HOLDS, T0, Reason.REPEAT, Status.FIRING
    ),
    "firing, holds, repeats off (infinite)": Case(
        FIRING,
        HOLDS,
        T0 + 100 * HOUR,
        Reason.STILL_FIRING,
        Status.FIRING,
        Timing(cooldown_s=900, repeat_s=math.inf),
    ),
    "firing, holds, repeats off (zero)": Case(
        FIRING, HOLDS, T0 + HOUR, Reason.STILL_FIRING, Status.FIRING, Timing(0, 0)
    ),
    "firing, left inside the margin": Case(
        FIRING, NEAR, T0 + MIN, Reason.HYSTERESIS_HOLD, Status.FIRING
    ),
    "firing, left by the margin": Case(FIRING, GONE, T0 + MIN, Reason.REARMED, Status.ARMED),
    "firing, exactly at the re-arm boundary": Case(
        FIRING, Condition(False, 1.25, 0.0), T0 + MIN, Reason.REARMED, Status.ARMED
    ),
    "firing, clearance unknown (NaN)": Case(
        FIRING,
        Condition(False, math.nan, math.nan),
        T0 + MIN,
        Reason.HYSTERESIS_HOLD,
        Status.FIRING,
    ),
    "armed, stale data that holds": Case(ARMED, STALE_HOLDS, T0, Reason.STALE, Status.ARMED),
    "firing, stale data that has cleared": Case(
        FIRING, STALE_GONE, T0 + MIN, Reason.STALE, Status.FIRING
    ),
    "firing, stale, repeat due": Case(
        FIRING, STALE_HOLDS, T0 + 5 * HOUR, Reason.STALE, Status.FIRING
    ),
    "expired at the instant": Case(
        ARMED, HOLDS, T0, Reason.EXPIRED, Status.ARMED, Timing(expires_ms=T0)
    ),
    "expired beats stale": Case(
        FIRING, STALE_GONE, T0 + 1, Reason.EXPIRED, Status.FIRING, Timing(expires_ms=T0)
    ),
    "not yet expired": Case(
        ARMED, HOLDS, T0 - 1, Reason.FIRST_FIRE, Status.FIRING, Timing(expires_ms=T0)
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decision_table(case: Case) -> None:
    d = decide(case.state, case.cond, case.now_ms, case.timing)
    assert d.reason is case.reason
    assert d.new_state.status is case.status
    assert d.action is (Action.NOTIFY if case.reason.notifies else Action.NONE)
    assert d.notify == case.reason.notifies


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decide_many_agrees_with_the_table(case: Case) -> None:
    out = decide_many(
        StateArrays.from_states([case.state]),
        ConditionArrays.from_conditions([case.cond]),
        case.now_ms,
        TimingArrays.of(case.timing),
    )
    got, want = out.decision(0), decide(case.state, case.cond, case.now_ms, case.timing)
    assert (got.reason, got.action) == (want.reason, want.action)
    assert _same(got.new_state, want.new_state)


def test_every_reason_is_in_the_table() -> None:
    assert {c.reason for c in CASES.values()} == set(Reason)


def test_first_fire_records_the_episode() -> None:
    d = decide(ARMED, HOLDS, T0, TIMING)
    assert d.new_state == AlertState(Status.FIRING, T0, T0, 1, 0.8)


def test_repeat_keeps_the_episode_start() -> None:
    d = decide(FIRING, HOLDS, T0 + 4 * HOUR, TIMING)
    assert d.new_state == AlertState(Status.FIRING, T0, T0 + 4 * HOUR, 2, 0.8)


def test_rearm_keeps_the_times() -> None:
    d = decide(FIRING, GONE, T0 + MIN, TIMING)
    assert d.new_state == AlertState(Status.ARMED, T0, T0, 1, 1.4)


@pytest.mark.parametrize(
    "cond",
    [STALE_HOLDS, STALE_GONE],
    ids=["holds", "cleared"],
)
@pytest.mark.parametrize("state", [ARMED, FIRING], ids=["armed", "firing"])
def test_stale_and_expired_change_nothing(state: AlertState, cond: Condition) -> None:
    assert decide(state, cond, T0 + 5 * HOUR, TIMING).new_state == state
    fresh = Condition(cond.holds, cond.value, cond.clear)
    expired = Timing(expires_ms=T0)
    assert decide(state, fresh, T0 + 5 * HOUR, expired).new_state == state


@pytest.mark.parametrize(
    ("value", "threshold", "margin", "expected"),
    [
        (1.0, 1.0, 0.25, -0.25),  # at the threshold: inside the band
        (1.25, 1.0, 0.25, 0.0),  # at the re-arm boundary
        (1.5, 1.0, 0.25, 0.25),
        (0.5, 1.0, 0.0, -0.5),
    ],
)
def test_clearance_below(value: float, threshold: float, margin: float, expected: float) -> None:
    assert float(clearance_below(value, threshold, margin)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "threshold", "margin", "expected"),
    [
        (100.0, 100.0, 0.25, -0.25),
        (75.0, 100.0, 0.25, 0.0),
        (50.0, 100.0, 0.25, 0.25),
        (150.0, 100.0, 0.0, -0.5),
    ],
)
def test_clearance_above(value: float, threshold: float, margin: float, expected: float) -> None:
    assert float(clearance_above(value, threshold, margin)) == pytest.approx(expected)


def test_clearance_is_vectorized_and_nan_safe() -> None:
    out = clearance_below(np.array([0.5, 2.0, np.nan]), np.array([1.0, 1.0, 0.0]), np.array(0.25))
    assert out[0] == pytest.approx(-0.75)
    assert out[1] == pytest.approx(0.75)
    assert np.isnan(out[2])


# --- time-scripted scenarios -------------------------------------------------------------------


@dataclass
class Script:
    """Feed (minute, distance %) points to one cluster alert (1% threshold) on a fake clock."""

    timing: Timing = TIMING
    threshold_pct: float = 1.0
    state: AlertState = field(default_factory=AlertState)
    sent: list[int] = field(default_factory=list)  # minutes of notifications
    reasons: list[Reason] = field(default_factory=list)

    def at(self, minute: float, distance_pct: float, *, stale: bool = False) -> Reason:
        clear = float(clearance_below(distance_pct, self.threshold_pct, self.timing.rearm_margin))
        cond = Condition(distance_pct <= self.threshold_pct, distance_pct, clear, stale)
        d = decide(self.state, cond, T0 + round(minute * MIN), self.timing)
        self.state = d.new_state
        self.reasons.append(d.reason)
        if d.notify:
            self.sent.append(round(minute))
        return d.reason

    def run(self, points: Sequence[tuple[float, float]]) -> list[int]:
        for minute, dist in points:
            self.at(minute, dist)
        return self.sent


def test_a_flapping_condition_fires_once() -> None:
    # Price oscillates around the 1% line for an hour without leaving by the 0.25% margin.
    flaps = [(m, 0.9 if m % 2 == 0 else 1.2) for m in range(60)]
    s = Script()
    assert s.run(flaps) == [0]
    assert Reason.HYSTERESIS_HOLD in s.reasons
    assert Reason.REARMED not in s.reasons


def test_leaving_by_the_margin_rearms_and_fires_again_after_the_cooldown() -> None:
    s = Script()
    s.run([(0, 0.9), (5, 1.3), (10, 0.9), (14, 0.9), (15, 0.9), (16, 0.9)])
    assert s.sent == [0, 15]
    assert s.reasons == [
        Reason.FIRST_FIRE,
        Reason.REARMED,
        Reason.IN_COOLDOWN,
        Reason.IN_COOLDOWN,
        Reason.FIRST_FIRE,
        Reason.REPEAT_NOT_DUE,
    ]


def test_a_persistent_condition_repeats_only_after_repeat_s() -> None:
    s = Script()
    assert s.run([(m, 0.5) for m in range(0, 9 * 60 + 1)]) == [0, 240, 480]
    assert s.state.fired_count == 3
    assert s.state.last_fired_ms == T0  # one episode


def test_a_condition_that_clears_during_the_cooldown_does_not_fire_twice() -> None:
    s = Script(timing=Timing(cooldown_s=3600, repeat_s=4 * 3600))
    s.run([(0, 0.5), (1, 2.0), (2, 0.5), (30, 2.0), (40, 0.5), (59, 2.0)])
    assert s.sent == [0]
    s.run([(61, 0.5)])
    assert s.sent == [0, 61]


def test_expiry_silences_for_good() -> None:
    s = Script(timing=Timing(cooldown_s=60, repeat_s=600, expires_ms=T0 + 30 * MIN))
    s.run([(0, 0.5), (10, 0.5), (15, 2.0), (20, 0.5), (30, 0.5), (31, 2.0), (40, 0.5)])
    assert s.sent == [0, 10, 20]
    assert s.reasons[-3:] == [Reason.EXPIRED] * 3


def test_stale_data_never_fires_and_never_rearms() -> None:
    s = Script()
    for m in range(10):
        assert s.at(m, 0.5, stale=True) is Reason.STALE
    assert s.sent == []
    s.at(10, 0.5)
    assert s.sent == [10]
    # The data goes stale while "clear": that must not re-arm, so no second fire afterwards.
    for m in range(11, 40):
        s.at(m, 3.0, stale=True)
    assert s.state.status is Status.FIRING
    s.at(40, 0.5)
    assert s.sent == [10]


def test_state_survives_a_round_trip_through_arrays() -> None:
    """A restart reloads the state from the store mid-cooldown; the outcome is unchanged."""
    points = [(0, 0.5), (3, 2.0), (6, 0.5), (9, 0.5), (16, 0.5)]
    straight = Script().run(points)
    s = Script()
    for i, (m, d) in enumerate(points):
        if i == 2:  # "restart": the state goes through the array form the store keeps
            s.state = StateArrays.from_states([s.state]).state(0)
        s.at(m, d)
    assert s.sent == straight == [0, 16]


# --- decide_many == decide ---------------------------------------------------------------------

_ms = st.one_of(st.none(), st.integers(-40_000, 40_000).map(lambda d: T0 - d))
_states = st.builds(
    AlertState,
    status=st.sampled_from(Status),
    last_fired_ms=_ms,
    last_notified_ms=_ms,
    fired_count=st.integers(0, 5),
    last_value=st.one_of(st.floats(-10, 10), st.just(math.nan)),
)
_conds = st.builds(
    Condition,
    holds=st.booleans(),
    value=st.one_of(st.floats(-10, 10), st.just(math.nan)),
    clear=st.one_of(st.sampled_from([0.0, -0.0, 0.1, -0.1, math.nan]), st.floats(-1, 1)),
    stale=st.booleans(),
)
_timings = st.builds(
    Timing,
    cooldown_s=st.sampled_from([0.0, 1.0, 10.0, 15.5, 30.0]),
    repeat_s=st.sampled_from([0.0, 10.0, 20.0, 30.0, 40.0, math.inf]),
    rearm_margin=st.just(0.25),
    expires_ms=st.one_of(st.none(), st.integers(-5_000, 5_000).map(lambda d: T0 + d)),
)
_nows = st.integers(-1_000, 1_000).map(lambda d: T0 + d)


def _same(a: AlertState, b: AlertState) -> bool:
    nan_ok = math.isnan(a.last_value) and math.isnan(b.last_value)
    return (a.status, a.last_fired_ms, a.last_notified_ms, a.fired_count) == (
        b.status,
        b.last_fired_ms,
        b.last_notified_ms,
        b.fired_count,
    ) and (nan_ok or a.last_value == b.last_value)


def _check(
    rows: Sequence[tuple[AlertState, Condition, Timing]],
    now: int,
    timing_arrays: Callable[[Sequence[Timing]], TimingArrays],
) -> None:
    states, conds, timings = zip(*rows, strict=True) if rows else ((), (), ())
    out = decide_many(
        StateArrays.from_states(states),
        ConditionArrays.from_conditions(conds),
        now,
        timing_arrays(timings),
    )
    assert len(out.state) == len(rows)
    for i, (s, c, t) in enumerate(rows):
        want = decide(s, c, now, t)
        got = out.decision(i)
        assert got.reason is want.reason
        assert got.action is want.action
        assert _same(got.new_state, want.new_state)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_states, _conds, _timings), max_size=40), _nows)
def test_decide_many_equals_decide(
    rows: list[tuple[AlertState, Condition, Timing]], now: int
) -> None:
    _check(rows, now, TimingArrays.from_timings)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_states, _conds), min_size=1, max_size=40), _timings, _nows)
def test_decide_many_with_a_shared_timing(
    rows: list[tuple[AlertState, Condition]], timing: Timing, now: int
) -> None:
    _check([(s, c, timing) for s, c in rows], now, lambda _: TimingArrays.of(timing))


def test_decide_many_does_not_modify_its_inputs() -> None:
    states = StateArrays.from_states([ARMED, FIRING])
    before = states.last_notified_ms.copy()
    out = decide_many(
        states, ConditionArrays.from_conditions([HOLDS, GONE]), T0 + MIN, TimingArrays.of(TIMING)
    )
    assert np.array_equal(states.last_notified_ms, before)
    assert out.notify.tolist() == [True, False]
    assert [Reason(int(r)) for r in out.reason] == [Reason.FIRST_FIRE, Reason.REARMED]


def test_armed_arrays_are_fresh_states() -> None:
    arr = StateArrays.armed(3)
    assert all(_same(arr.state(i), AlertState()) for i in range(3))
    assert int(arr.last_notified_ms[0]) == NEVER


def test_a_million_subscriptions_in_one_call() -> None:
    """Correctness at scale (timing is for benchmarks/): counts match the masks."""
    n = 1_000_000
    rng = np.random.default_rng(7)
    cond = ConditionArrays(
        holds=rng.random(n) < 0.1,
        value=rng.random(n),
        clear=rng.random(n) - 0.5,
        stale=rng.random(n) < 0.01,
    )
    out = decide_many(StateArrays.armed(n), cond, T0, TimingArrays.of(TIMING))
    fired = cond.holds & ~cond.stale
    assert np.array_equal(out.notify, fired)
    assert int((out.reason == Reason.FIRST_FIRE).sum()) == int(fired.sum())
    assert int((out.state.status == Status.FIRING).sum()) == int(fired.sum())


def test_decide_many_equals_decide_on_a_large_random_batch_covering_every_reason() -> None:
    rng = np.random.default_rng(11)
    n = 4000

    def ms() -> int | None:
        return None if rng.random() < 0.2 else T0 - int(rng.integers(-5_000, 40_000))

    rows = [
        (
            AlertState(Status(int(rng.integers(2))), ms(), ms(), int(rng.integers(3)), 0.0),
            Condition(
                bool(rng.random() < 0.5),
                float(rng.normal()),
                float(rng.choice([math.nan, 0.0, rng.normal()])),
                bool(rng.random() < 0.1),
            ),
            Timing(
                float(rng.choice([0.0, 10.0, 20.0])),
                float(rng.choice([0.0, 20.0, 30.0, math.inf])),
                0.25,
                None if rng.random() < 0.8 else T0 + int(rng.integers(-2_000, 2_000)),
            ),
        )
        for _ in range(n)
    ]
    _check(rows, T0, TimingArrays.from_timings)
    reasons = {decide(s, c, T0, t).reason for s, c, t in rows}
    assert reasons == set(Reason)
