"""ETF flow analytics as dated, typed results: streak, rolling sums, z-score, reversals (DESIGN §5).

These frozen dataclasses are what the CLI prints, what ``/etf`` will answer and what the alert
engine will evaluate, so they carry dates and fund names rather than array indices. Everything
is pure: "as of when" is the last day of the :class:`~core.etf.EtfFlows` passed in (cut it with
``flows.until(day)``) or the ``asof`` argument; no clock is read.

Reversal rule, defaults chosen to catch the January 2026 case (four outflow days of -$1.38B on
Jan 6-9, then +$116.7M on Jan 12 and +$753.8M on Jan 13) without firing on every wobble: a
reversal needs a prior run of at least 3 trading days summing to at least $500M in magnitude.
"Recent" means within the last 5 trading days (one trading week), so a weekly digest or a bot
restarted after a long weekend still sees it, and a stale one stops being reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np

from core.errors import DataError
from core.etf import (
    DateLike,
    EtfFlows,
    IntArray,
    Runs,
    leading_funds,
    reversal_days,
    rolling_sums,
    streak_runs,
    trailing_zscores,
)

Direction = Literal["bullish", "bearish"]


@dataclass(frozen=True)
class FundFlow:
    """One fund's net flow on one day, US$ millions."""

    fund: str
    musd: float


@dataclass(frozen=True)
class DayFlow:
    """One trading day: its total and the funds that led it.

    ``leaders`` are the funds that moved in the direction of the total (inflows on an inflow day),
    largest first; see :func:`core.etf.leading_funds`.
    """

    date: date
    total_musd: float
    leaders: tuple[FundFlow, ...]


@dataclass(frozen=True)
class Streak:
    """A run of consecutive same-sign trading days (holidays skipped).

    ``sign`` is +1 for inflows, -1 for outflows, 0 for flat days; ``sum_musd`` is the run's total.
    """

    sign: int
    days: int
    sum_musd: float
    start: date
    end: date

    @property
    def kind(self) -> str:
        return {1: "inflows", -1: "outflows"}.get(self.sign, "flat")


@dataclass(frozen=True)
class RollingSum:
    """Sum of the last ``days`` trading days up to ``end``; NaN (and no ``start``) if too few."""

    days: int
    sum_musd: float
    start: date | None
    end: date


@dataclass(frozen=True)
class ZScore:
    """The latest total against the ``n`` trading days before it (at most ``window``).

    ``value`` is NaN with fewer than ``min_periods`` prior days or no spread.
    """

    value: float
    window: int
    min_periods: int
    n: int


@dataclass(frozen=True)
class Reversal:
    """A change of sign after a long, large enough streak.

    Attributes
    ----------
    date, total_musd
        The reversal day and its total (US$ millions).
    direction
        ``"bullish"`` when outflows turn to inflows, ``"bearish"`` the other way.
    prior_streak
        The run that was reversed.
    leaders
        Funds that moved in the new direction on the reversal day, largest first.
    next_day
        The following trading day, if the data reaches it (whatever its sign), else None.
    """

    date: date
    direction: Direction
    total_musd: float
    prior_streak: Streak
    leaders: tuple[FundFlow, ...]
    next_day: DayFlow | None

    @property
    def sign(self) -> int:
        return 1 if self.direction == "bullish" else -1

    @property
    def confirmed(self) -> bool:
        """True when the next trading day moved the same way (a second day in the new direction)."""
        return self.next_day is not None and self.next_day.total_musd * self.sign > 0


@dataclass(frozen=True)
class ReversalRule:
    """Thresholds for :class:`Reversal` detection and reporting (see the module docstring)."""

    min_days: int = 3
    min_sum_musd: float = 500.0
    recent_days: int = 5
    top_funds: int = 3

    def __post_init__(self) -> None:
        if self.min_days < 1 or self.recent_days < 1 or self.top_funds < 0:
            raise ValueError("min_days and recent_days must be >= 1, top_funds >= 0")
        if not self.min_sum_musd >= 0:
            raise ValueError("min_sum_musd must be >= 0")


@dataclass(frozen=True)
class FlowReport:
    """Everything ``/etf`` shows, as of ``until``.

    Attributes
    ----------
    until
        The last day of the data (may be a holiday).
    latest
        The last trading day on or before ``until``, with its leaders.
    streak
        The run that ends at ``latest``.
    rolling
        Rolling sums ending at ``latest`` (3 and 5 trading days by default).
    zscore
        ``latest``'s total against the trailing window.
    reversals
        Reversals within the last ``rule.recent_days`` trading days, oldest first.
    """

    until: date
    latest: DayFlow
    streak: Streak
    rolling: tuple[RollingSum, ...]
    zscore: ZScore
    reversals: tuple[Reversal, ...]
    rule: ReversalRule

    @property
    def latest_reversal(self) -> Reversal | None:
        return self.reversals[-1] if self.reversals else None

    @property
    def armed(self) -> bool:
        """True when the current streak already meets the rule: a change of sign next would be a
        reversal. Lets a digest say "watch for a turn" before it happens."""
        return (
            self.streak.sign != 0
            and self.streak.days >= self.rule.min_days
            and abs(self.streak.sum_musd) >= self.rule.min_sum_musd
        )


def day_flow(flows: EtfFlows, i: int, top: int = 3) -> DayFlow:
    """Row ``i`` as a :class:`DayFlow`, with up to ``top`` leaders in the total's direction."""
    total = float(flows.total[i])
    sign = int(np.sign(total))
    return DayFlow(flows.date_at(i), total, _leaders(flows, i, sign, top))


def find_reversals(flows: EtfFlows, rule: ReversalRule | None = None) -> tuple[Reversal, ...]:
    """Every reversal in ``flows``, oldest first (``rule.recent_days`` is not applied)."""
    rule = rule or ReversalRule()
    return tuple(
        _reversals(
            flows,
            rule,
            reversal_days(flows.total, flows.is_holiday, rule.min_days, rule.min_sum_musd),
        )
    )


def recent_reversals(
    flows: EtfFlows, rule: ReversalRule | None = None, *, asof: DateLike | None = None
) -> tuple[Reversal, ...]:
    """Reversals within the last ``rule.recent_days`` trading days on or before ``asof``.

    ``asof`` defaults to the last day of ``flows``. Days after it are ignored, so the answer is the
    one a live bot would have given that day (a reversal on ``asof`` has ``next_day=None``).
    """
    rule = rule or ReversalRule()
    if asof is not None:
        flows = flows.until(asof)
    trading = flows.trading_index()
    if trading.size == 0:
        return ()
    cutoff = int(trading[max(trading.size - rule.recent_days, 0)])
    days = reversal_days(flows.total, flows.is_holiday, rule.min_days, rule.min_sum_musd)
    return tuple(_reversals(flows, rule, days[days >= cutoff]))


def flow_report(
    flows: EtfFlows,
    rule: ReversalRule | None = None,
    *,
    asof: DateLike | None = None,
    rolling_windows: tuple[int, ...] = (3, 5),
    zscore_window: int = 90,
    zscore_min_periods: int = 20,
) -> FlowReport:
    """Streak, rolling sums, z-score and recent reversals as of ``asof`` (default: the last day).

    Raises
    ------
    DataError
        If there is no trading day on or before ``asof``.
    """
    rule = rule or ReversalRule()
    if asof is not None:
        flows = flows.until(asof)
    trading = flows.trading_index()
    if trading.size == 0:
        raise DataError(f"no trading day on or before {flows.last_date}, only market holidays")
    last = int(trading[-1])
    streak = _streak_at(flows, streak_runs(flows.total, flows.is_holiday), last)
    rolling = []
    for w in rolling_windows:
        value = float(rolling_sums(flows.total, flows.is_holiday, w)[last])
        start = flows.date_at(int(trading[-w])) if trading.size >= w else None
        rolling.append(RollingSum(w, value, start, flows.date_at(last)))
    z = float(
        trailing_zscores(flows.total, flows.is_holiday, zscore_window, zscore_min_periods)[last]
    )
    zscore = ZScore(z, zscore_window, zscore_min_periods, min(trading.size - 1, zscore_window))
    return FlowReport(
        until=flows.last_date,
        latest=day_flow(flows, last, rule.top_funds),
        streak=streak,
        rolling=tuple(rolling),
        zscore=zscore,
        reversals=recent_reversals(flows, rule),
        rule=rule,
    )


def _leaders(flows: EtfFlows, i: int, sign: int, top: int) -> tuple[FundFlow, ...]:
    row = flows.flows[i]
    return tuple(FundFlow(flows.funds[j], float(row[j])) for j in leading_funds(row, sign, top))


def _streak_at(flows: EtfFlows, runs: Runs, i: int) -> Streak:
    """The run that ends at trading row ``i``."""
    return Streak(
        sign=int(runs.sign[i]),
        days=int(runs.length[i]),
        sum_musd=float(runs.sum[i]),
        start=flows.date_at(int(runs.start[i])),
        end=flows.date_at(i),
    )


def _reversals(flows: EtfFlows, rule: ReversalRule, days: IntArray) -> list[Reversal]:
    runs = streak_runs(flows.total, flows.is_holiday)
    trading = flows.trading_index()
    out = []
    for i in (int(d) for d in days):
        pos = int(np.searchsorted(trading, i))
        prev = int(trading[pos - 1])  # a reversal day always has a trading day before it
        nxt = int(trading[pos + 1]) if pos + 1 < trading.size else None
        sign = int(runs.sign[i])
        prior = _streak_at(flows, runs, prev)
        out.append(
            Reversal(
                date=flows.date_at(i),
                direction="bullish" if sign > 0 else "bearish",
                total_musd=float(flows.total[i]),
                prior_streak=prior,
                leaders=_leaders(flows, i, sign, rule.top_funds),
                next_day=None if nxt is None else day_flow(flows, nxt, rule.top_funds),
            )
        )
    return out
