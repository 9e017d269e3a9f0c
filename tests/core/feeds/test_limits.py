"""Budget: sliding windows, delays, the safety share and the venue's own usage figure."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.feeds.limits import BINANCE, BYBIT, DEFAULT, OKX, Budget, VenueLimits, Window

T0 = 1_700_000_000.0
ONE = VenueLimits({"w": Window(10, 1.0)}, safety=1.0)  # 10 units per second, no margin
HALF = VenueLimits({"w": Window(10, 1.0)}, safety=0.5)  # 5 of 10 per second
TWO = VenueLimits({"a": Window(4, 1.0), "b": Window(100, 10.0)}, safety=1.0)


def _budget(limits: VenueLimits, spends: list[tuple[float, dict[str, float]]]) -> Budget:
    budget = Budget(limits)
    for at, costs in spends:
        budget.spend(T0 + at, costs)
    return budget


@pytest.mark.parametrize(
    ("spends", "at", "expected"),
    [
        ([], 0.0, 0.0),
        ([(0.0, {"w": 3})], 0.0, 3.0),
        ([(0.0, {"w": 3}), (0.5, {"w": 2})], 0.9, 5.0),
        # a unit counts until exactly `seconds` later, then leaves the window
        ([(0.0, {"w": 3}), (0.5, {"w": 2})], 1.0, 2.0),
        ([(0.0, {"w": 3}), (0.5, {"w": 2})], 1.5, 0.0),
        ([(0.0, {"w": 0})], 0.0, 0.0),
    ],
)
def test_used_is_a_sliding_window(
    spends: list[tuple[float, dict[str, float]]], at: float, expected: float
) -> None:
    assert _budget(ONE, spends).used("w", T0 + at) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("limits", "spends", "at", "costs", "expected"),
    [
        pytest.param(ONE, [], 0.0, {"w": 1}, 0.0, id="empty"),
        pytest.param(ONE, [(0.0, {"w": 9})], 0.0, {"w": 1}, 0.0, id="exactly-fills"),
        pytest.param(ONE, [(0.0, {"w": 10})], 0.2, {"w": 1}, 0.8, id="full-wait-oldest"),
        # 4+4 spent; 3 more fit only once the first 4 leave (at 1.0)
        pytest.param(ONE, [(0.0, {"w": 4}), (0.5, {"w": 4})], 0.6, {"w": 3}, 0.4, id="one-leaves"),
        # 9 more need both earlier spends gone (the second leaves at 1.5)
        pytest.param(ONE, [(0.0, {"w": 4}), (0.5, {"w": 4})], 0.6, {"w": 9}, 0.9, id="two-leave"),
        pytest.param(HALF, [(0.0, {"w": 4})], 0.0, {"w": 1}, 0.0, id="safety-fits"),
        pytest.param(HALF, [(0.0, {"w": 5})], 0.0, {"w": 1}, 1.0, id="safety-share-caps"),
        # heavier than the whole safe share: goes once the window is empty, never "never"
        pytest.param(HALF, [], 0.0, {"w": 8}, 0.0, id="oversize-empty"),
        pytest.param(HALF, [(0.3, {"w": 1})], 0.5, {"w": 8}, 0.8, id="oversize-waits-empty"),
        pytest.param(ONE, [(0.0, {"w": 10})], 0.0, {"w": 0}, 0.0, id="zero-cost"),
        pytest.param(ONE, [(0.0, {"w": 10})], 0.0, {}, 0.0, id="no-windows"),
        # several windows: the longest wait wins
        pytest.param(TWO, [(0.0, {"a": 4, "b": 1})], 0.0, {"a": 1, "b": 1}, 1.0, id="a-binds"),
        pytest.param(TWO, [(0.0, {"b": 100})], 0.0, {"a": 1, "b": 1}, 10.0, id="b-binds"),
    ],
)
def test_delay(
    limits: VenueLimits,
    spends: list[tuple[float, dict[str, float]]],
    at: float,
    costs: dict[str, float],
    expected: float,
) -> None:
    budget = _budget(limits, spends)
    wait = budget.delay(T0 + at, costs)
    assert wait == pytest.approx(expected)
    if wait > 0:  # a hair earlier it does not fit, after waiting it does (time runs forward)
        assert budget.delay(T0 + at + wait - 1e-3, costs) > 0
        assert budget.delay(T0 + at + wait, costs) == 0.0


@pytest.mark.parametrize(
    ("figure", "own_after", "at", "costs", "expected_used", "expected_wait"),
    [
        # the venue's figure beats our own count (other processes on the same IP)
        pytest.param(7.0, 0.0, 0.1, {"w": 3}, 7.0, 0.0, id="figure-fits"),
        pytest.param(8.0, 0.0, 0.1, {"w": 3}, 8.0, 0.9, id="figure-waits-its-window"),
        # our spend after the observation adds on top of the figure
        pytest.param(6.0, 2.0, 0.1, {"w": 3}, 8.0, 0.9, id="figure-plus-own-after"),
        # once a window has passed since the observation, only our own spend counts
        pytest.param(9.0, 2.0, 1.0, {"w": 3}, 2.0, 0.0, id="figure-expired"),
    ],
)
def test_observed_usage(
    figure: float,
    own_after: float,
    at: float,
    costs: dict[str, float],
    expected_used: float,
    expected_wait: float,
) -> None:
    budget = Budget(ONE)
    budget.spend(T0, {"w": 1})  # included in the figure: it was sent before the observation
    budget.observe_used("w", T0, figure)
    if own_after:
        budget.spend(T0 + 0.05, {"w": own_after})
    assert budget.used("w", T0 + at) == pytest.approx(expected_used)
    assert budget.delay(T0 + at, costs) == pytest.approx(expected_wait)


@pytest.mark.parametrize("figure", [math.nan, math.inf, -math.inf])
def test_non_finite_figures_are_ignored(figure: float) -> None:
    budget = Budget(ONE)
    budget.observe_used("w", T0, figure)
    assert budget.used("w", T0) == 0.0
    assert budget.delay(T0, {"w": 1}) == 0.0


def test_negative_figure_counts_as_zero() -> None:
    budget = Budget(ONE)
    budget.spend(T0, {"w": 2})
    budget.observe_used("w", T0, -5.0)
    assert budget.used("w", T0) == 2.0


def test_latest_observation_replaces_the_previous_one() -> None:
    budget = Budget(ONE)
    budget.observe_used("w", T0, 9.0)
    budget.observe_used("w", T0 + 0.5, 1.0)
    assert budget.used("w", T0 + 0.6) == 1.0


def test_snapshot_reports_every_window() -> None:
    budget = Budget(HALF)
    budget.spend(T0, {"w": 2})
    assert budget.snapshot(T0 + 0.5) == {
        "w": {"used": 2.0, "cap": 5.0, "limit": 10.0, "seconds": 1.0}
    }
    assert budget.snapshot(T0 + 1.0)["w"]["used"] == 0.0


@pytest.mark.parametrize("method", ["delay", "spend"])
def test_unknown_window_is_a_programming_error(method: str) -> None:
    budget = Budget(BINANCE)
    with pytest.raises(ValueError, match=r"unknown budget window.*wieght.*weight"):
        getattr(budget, method)(T0, {"wieght": 1})


@pytest.mark.parametrize(
    "make",
    [
        lambda: Window(0, 1.0),
        lambda: Window(10, 0.0),
        lambda: VenueLimits({"w": Window(1, 1)}, safety=0.0),
        lambda: VenueLimits({"w": Window(1, 1)}, safety=1.5),
    ],
)
def test_invalid_limits_are_rejected(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("limits", "name", "cap"),
    [
        (BINANCE, "weight", 1920.0),
        (BINANCE, "futures_data", 800.0),
        (OKX, "market", 32.0),  # candles: 40 per 2 s
        (OKX, "history", 16.0),  # history-candles: 20 per 2 s
        (OKX, "rubik", 8.0),  # open-interest-history: 10 per 2 s
        (BYBIT, "ip", 480.0),
        (DEFAULT, "default", 8.0),
    ],
)
def test_venue_caps_keep_a_safety_margin(limits: VenueLimits, name: str, cap: float) -> None:
    assert Budget(limits).cap(name) == pytest.approx(cap)


@settings(max_examples=60, deadline=None)
@given(
    costs=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=40),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.4), min_size=40, max_size=40),
)
def test_obeying_delay_never_overspends(costs: list[int], gaps: list[float]) -> None:
    """Invariant: a client that waits as told never has more than the cap in any window."""
    budget = Budget(HALF)  # cap 5 per 1 s
    now, sent = T0, []
    for cost, gap in zip(costs, gaps, strict=False):
        now += gap
        now += budget.delay(now, {"w": cost})
        budget.spend(now, {"w": cost})
        sent.append((now, cost))
    for t, _ in sent:
        in_window = sum(c for ts, c in sent if t - 1.0 < ts <= t)
        largest = max(c for ts, c in sent if t - 1.0 < ts <= t)
        assert in_window <= max(5, largest) + 1e-9
