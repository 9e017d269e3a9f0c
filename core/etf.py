"""US spot Bitcoin ETF daily net flows: the data type and the numpy kernels (DESIGN §5).

Flows are per fund and per US trading day, in US$ millions (positive = net inflow). Sources such as
Farside list US market holidays as a row of zeros; such a day is not a flat day, so every kernel
here takes a ``holiday`` mask and works on trading days only: a holiday neither breaks nor joins a
streak, and windows count trading days. Kernels return arrays aligned with their input, with
NaN (or 0 / -1 for integer outputs) on holidays.

The kernels are pure: no I/O, no clock. :mod:`core.etf_io` loads files, :mod:`core.etf_report`
turns the kernels' arrays into the dated, typed results that the CLI and the alert engine use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from core.errors import DataError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
DateArray = NDArray[np.datetime64]

DateLike = date | str | np.datetime64


def to_day(value: DateLike) -> np.datetime64:
    """A ``datetime.date``, ``'YYYY-MM-DD'`` or ``datetime64`` as ``datetime64[D]``."""
    if isinstance(value, np.datetime64):
        out: np.datetime64 = value.astype("datetime64[D]")
        return out
    return np.datetime64(value, "D")


def day_to_date(value: np.datetime64) -> date:
    """``datetime64[D]`` -> ``datetime.date``."""
    out = value.astype("datetime64[D]").item()
    if not isinstance(out, date):  # NaT, or a date outside datetime.date's range
        raise ValueError(f"not a calendar date: {value!r}")
    return out


@dataclass(frozen=True, eq=False)
class EtfFlows:
    """Daily net flows per fund, oldest first.

    Attributes
    ----------
    dates : ndarray of datetime64[D], shape (n_days,)
        Strictly increasing.
    funds : tuple of str, length n_funds
        Tickers, in the source's column order.
    flows : ndarray of float64, shape (n_days, n_funds)
        Net flow per day and fund, US$ millions.
    total : ndarray of float64, shape (n_days,)
        The day's total, US$ millions. Usually the sum of ``flows`` along axis 1; a loader may keep
        the source's own total (see ``notes``).
    notes : tuple of str
        Non-fatal remarks from the loader, e.g. a total that disagrees with the sum of the funds.
    source : str
        Where the data came from (a file name), for messages.
    is_holiday : ndarray of bool, shape (n_days,)
        Derived: True where every fund and the total are exactly 0.0 (a US market holiday).

    The arrays are copied and made read-only, so that a shared instance cannot change behind a
    reader's back and the caller's own arrays stay writable.
    """

    dates: DateArray
    funds: tuple[str, ...]
    flows: FloatArray
    total: FloatArray
    notes: tuple[str, ...] = ()
    source: str = ""
    is_holiday: BoolArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        dates = np.array(self.dates, dtype="datetime64[D]")
        flows = np.array(self.flows, dtype=np.float64)
        total = np.array(self.total, dtype=np.float64)
        n = dates.shape[0]
        if dates.ndim != 1 or n == 0:
            raise ValueError("dates must be a non-empty 1-d array")
        if flows.shape != (n, len(self.funds)):
            raise ValueError(f"flows must have shape ({n}, {len(self.funds)}), got {flows.shape}")
        if total.shape != (n,):
            raise ValueError(f"total must have shape ({n},), got {total.shape}")
        if bool(np.any(np.isnat(dates))) or not bool(np.all(dates[1:] > dates[:-1])):
            raise ValueError("dates must be valid and strictly increasing")
        if not (np.all(np.isfinite(flows)) and np.all(np.isfinite(total))):
            raise ValueError("flows and total must be finite")
        holiday = holiday_mask(flows, total)
        for arr in (dates, flows, total, holiday):
            arr.setflags(write=False)
        object.__setattr__(self, "dates", dates)
        object.__setattr__(self, "flows", flows)
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "is_holiday", holiday)

    def __len__(self) -> int:
        return int(self.dates.shape[0])

    @property
    def first_date(self) -> date:
        return day_to_date(self.dates[0])

    @property
    def last_date(self) -> date:
        return day_to_date(self.dates[-1])

    def date_at(self, i: int) -> date:
        """The date of row ``i`` as a ``datetime.date``."""
        return day_to_date(self.dates[i])

    def trading_index(self) -> IntArray:
        """Row indices of the trading (non-holiday) days, shape (n_trading,)."""
        return np.flatnonzero(~self.is_holiday).astype(np.int64)

    def until(self, day: DateLike) -> EtfFlows:
        """The days on or before ``day``.

        Raises
        ------
        DataError
            If ``day`` is before the first day.
        """
        n = int(np.searchsorted(self.dates, to_day(day), side="right"))
        if n == 0:
            raise DataError(
                f"no ETF flows on or before {to_day(day)}; "
                f"{self.source or 'the data'} starts on {self.first_date}"
            )
        if n == len(self):
            return self
        return replace(self, dates=self.dates[:n], flows=self.flows[:n], total=self.total[:n])


class Runs(NamedTuple):
    """Same-sign runs of trading days, per day; see :func:`streak_runs`."""

    sign: IntArray
    length: IntArray
    sum: FloatArray
    start: IntArray


def daily_totals(flows: FloatArray) -> FloatArray:
    """Sum the funds of each day.

    Parameters
    ----------
    flows : ndarray, shape (n_days, n_funds)
        US$ millions.

    Returns
    -------
    ndarray, shape (n_days,)
        US$ millions.
    """
    out: FloatArray = np.asarray(flows, dtype=np.float64).sum(axis=1)
    return out


def holiday_mask(flows: FloatArray, total: FloatArray) -> BoolArray:
    """True for days whose funds and total are all exactly 0.0.

    Farside lists US market holidays as rows of zeros. A real trading day where every fund is flat
    is practically impossible with ten-plus funds, so exact zeros are a safe marker.

    Parameters
    ----------
    flows : ndarray, shape (n_days, n_funds)
    total : ndarray, shape (n_days,)

    Returns
    -------
    ndarray of bool, shape (n_days,)
    """
    zero_funds = np.all(np.asarray(flows) == 0.0, axis=1)
    return np.asarray(zero_funds & (np.asarray(total) == 0.0), dtype=np.bool_)


def streak_runs(total: FloatArray, holiday: BoolArray) -> Runs:
    """The same-sign run of trading days that ends at each day.

    A run is a maximal sequence of consecutive trading days whose totals have the same sign
    (+1 inflow, -1 outflow, 0 flat). Holidays are skipped: they neither end nor extend a run.

    Parameters
    ----------
    total : ndarray, shape (n,)
        Daily totals, US$ millions.
    holiday : ndarray of bool, shape (n,)

    Returns
    -------
    Runs
        Four arrays of shape (n,): ``sign`` of the day's total; ``length``, the number of trading
        days in the run up to and including the day; ``sum``, their total in US$ millions; and
        ``start``, the row index where the run began. On holidays: 0, 0, NaN and -1.
    """
    idx, t = _trading(total, holiday)
    n = total.shape[0]
    sign = np.zeros(n, dtype=np.int64)
    length = np.zeros(n, dtype=np.int64)
    run_sum = np.full(n, np.nan)
    start = np.full(n, -1, dtype=np.int64)
    if t.size == 0:
        return Runs(sign, length, run_sum, start)
    s = np.sign(t).astype(np.int64)
    is_start = np.ones(t.size, dtype=np.bool_)
    is_start[1:] = s[1:] != s[:-1]
    run_id = np.cumsum(is_start) - 1
    first = np.flatnonzero(is_start)[run_id]  # compressed position of each day's run start
    csum = np.cumsum(t)
    sign[idx] = s
    length[idx] = np.arange(t.size) - first + 1
    # Running sum inside the run: cumulative sum minus everything before the run began.
    run_sum[idx] = csum - (csum[first] - t[first])
    start[idx] = idx[first]
    return Runs(sign, length, run_sum, start)


def rolling_sums(total: FloatArray, holiday: BoolArray, window: int) -> FloatArray:
    """Sum of the last ``window`` trading days, ending at each day.

    Parameters
    ----------
    total : ndarray, shape (n,)
        Daily totals, US$ millions.
    holiday : ndarray of bool, shape (n,)
    window : int
        Trading days, >= 1.

    Returns
    -------
    ndarray, shape (n,)
        US$ millions; NaN on holidays and where fewer than ``window`` trading days exist.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    idx, t = _trading(total, holiday)
    out = np.full(total.shape[0], np.nan)
    if t.size >= window:
        csum = np.concatenate(([0.0], np.cumsum(t)))
        out[idx[window - 1 :]] = csum[window:] - csum[:-window]
    return out


def trailing_zscores(
    total: FloatArray, holiday: BoolArray, window: int = 90, min_periods: int = 20
) -> FloatArray:
    """Z-score of each day's total against the ``window`` trading days before it.

    The day itself is excluded from its own baseline, so a record day stands out instead of
    inflating the standard deviation it is measured against. Sample standard deviation (ddof=1).

    Parameters
    ----------
    total : ndarray, shape (n,)
        Daily totals, US$ millions.
    holiday : ndarray of bool, shape (n,)
    window : int
        Trailing trading days in the baseline.
    min_periods : int
        Fewer prior trading days than this gives NaN: a mean of a handful of days is noise.

    Returns
    -------
    ndarray, shape (n,)
        Dimensionless; NaN on holidays, with too little history, or with a zero spread.
    """
    if window < 2 or not 2 <= min_periods <= window:
        raise ValueError("need window >= 2 and 2 <= min_periods <= window")
    idx, t = _trading(total, holiday)
    out = np.full(total.shape[0], np.nan)
    if t.size == 0:
        return out
    # Row k of `win` holds t[k-window : k] (NaN-padded on the left): the days strictly before k.
    win = sliding_window_view(np.concatenate((np.full(window, np.nan), t)), window)[: t.size]
    valid = ~np.isnan(win)
    count = valid.sum(axis=1)
    mean = np.divide(
        np.where(valid, win, 0.0).sum(axis=1), count, out=np.zeros(t.size), where=count > 0
    )
    dev = np.where(valid, win - mean[:, None], 0.0)
    var = np.divide((dev**2).sum(axis=1), count - 1, out=np.zeros(t.size), where=count > 1)
    std = np.sqrt(var)
    ok = (count >= min_periods) & (std > 0)
    z = np.divide(t - mean, std, out=np.full(t.size, np.nan), where=ok)
    out[idx] = z
    return out


def reversal_days(
    total: FloatArray, holiday: BoolArray, min_days: int = 3, min_sum_musd: float = 500.0
) -> IntArray:
    """Row indices of reversal days.

    A reversal day is a trading day whose total has the opposite, non-zero sign of the run of
    trading days just before it, when that run lasted at least ``min_days`` days and summed to at
    least ``min_sum_musd`` in magnitude. A flat day (total exactly 0) is a run of its own, so it
    cannot be reversed from. Holidays are skipped.

    Parameters
    ----------
    total : ndarray, shape (n,)
        Daily totals, US$ millions.
    holiday : ndarray of bool, shape (n,)
    min_days : int
        Minimum length of the prior run, trading days.
    min_sum_musd : float
        Minimum magnitude of the prior run's sum, US$ millions.

    Returns
    -------
    ndarray of int64, shape (n_reversals,)
        Increasing row indices.
    """
    runs = streak_runs(total, holiday)
    idx = np.flatnonzero(~holiday)
    if idx.size < 2:
        return np.zeros(0, dtype=np.int64)
    cur, prev = idx[1:], idx[:-1]
    hit = (
        (runs.sign[cur] != 0)
        & (runs.sign[cur] == -runs.sign[prev])
        & (runs.length[prev] >= min_days)
        & (np.abs(runs.sum[prev]) >= min_sum_musd)
    )
    out: IntArray = cur[hit].astype(np.int64)
    return out


def leading_funds(row: FloatArray, sign: int, top: int = 3) -> IntArray:
    """Funds that moved most in direction ``sign`` on one day.

    Parameters
    ----------
    row : ndarray, shape (n_funds,)
        One day's flows, US$ millions.
    sign : int
        +1 for inflows, -1 for outflows; 0 gives no leaders.
    top : int
        At most this many funds.

    Returns
    -------
    ndarray of int64, shape (<= top,)
        Fund indices, largest move first; ties keep the source's column order. Funds that moved
        the other way or not at all are never leaders.
    """
    moved = np.asarray(row, dtype=np.float64) * sign
    candidates = np.flatnonzero(moved > 0)
    order = candidates[np.argsort(-moved[candidates], kind="stable")]
    out: IntArray = order[: max(top, 0)].astype(np.int64)
    return out


def _trading(total: FloatArray, holiday: BoolArray) -> tuple[IntArray, FloatArray]:
    total = np.asarray(total, dtype=np.float64)
    holiday = np.asarray(holiday, dtype=np.bool_)
    if total.ndim != 1 or holiday.shape != total.shape:
        raise ValueError(
            f"total and holiday must be 1-d of one shape: {total.shape}, {holiday.shape}"
        )
    idx = np.flatnonzero(~holiday).astype(np.int64)
    return idx, total[idx]
