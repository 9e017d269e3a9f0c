"""ETF flows: kernels (tables, invariants), reports, loader errors and the real Farside data."""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import DataError, FlowsFormatError
from core.etf import (
    EtfFlows,
    daily_totals,
    holiday_mask,
    leading_funds,
    reversal_days,
    rolling_sums,
    streak_runs,
    trailing_zscores,
)
from core.etf_io import load_flows, parse_flows_csv, parse_flows_json
from core.etf_report import ReversalRule, find_reversals, flow_report, recent_reversals

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ETF_DIR = SHARED / "data" / "etf"

H = None  # marks a holiday in the hand-made tables below


def _series(values: list[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """Totals and holiday mask from a list where ``H`` (None) is a holiday."""
    holiday = np.array([v is None for v in values], dtype=bool)
    total = np.array([0.0 if v is None else v for v in values], dtype=np.float64)
    return total, holiday


def _flows(rows: list[dict[str, float]], start: date = date(2026, 1, 5)) -> EtfFlows:
    """EtfFlows on consecutive calendar days; a row of zeros is a holiday."""
    funds = tuple(rows[0])
    matrix = np.array([[r[f] for f in funds] for r in rows], dtype=np.float64)
    dates = np.array([start + timedelta(days=k) for k in range(len(rows))], dtype="datetime64[D]")
    return EtfFlows(dates=dates, funds=funds, flows=matrix, total=daily_totals(matrix))


def _one_fund(values: list[float | None], start: date = date(2026, 1, 5)) -> EtfFlows:
    return _flows([{"X": 0.0 if v is None else v} for v in values], start)


# --- kernels: tables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "sign", "length", "total"),
    [
        ([1.0, 2.0, 3.0], 1, 3, 6.0),
        ([1.0, -2.0, -3.0], -1, 2, -5.0),
        ([-1.0, H, -2.0], -1, 2, -3.0),  # a holiday does not break a streak
        ([5.0, H, H, 5.0, -1.0, H], -1, 1, -1.0),  # ...nor start one
        ([-5.0, 0.0, -1.0], -1, 1, -1.0),  # a flat trading day does break it
        ([3.0, 0.0, 0.0], 0, 2, 0.0),
        ([-243.2, -486.1, -398.8, -250.0], -1, 4, -1378.1),
    ],
)
def test_streak_table(values: list[float | None], sign: int, length: int, total: float) -> None:
    t, hol = _series(values)
    runs = streak_runs(t, hol)
    last = int(np.flatnonzero(~hol)[-1])
    assert (runs.sign[last], runs.length[last]) == (sign, length)
    assert runs.sum[last] == pytest.approx(total)


def test_streak_on_holidays_is_empty() -> None:
    runs = streak_runs(*_series([1.0, H, 2.0]))
    assert (runs.sign[1], runs.length[1], runs.start[1]) == (0, 0, -1)
    assert math.isnan(runs.sum[1])
    assert list(runs.start) == [0, -1, 0]


@pytest.mark.parametrize(
    ("values", "window", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 3, [np.nan, np.nan, 6.0, 9.0]),
        ([1.0, 2.0, H, 3.0, 4.0], 3, [np.nan, np.nan, np.nan, 6.0, 9.0]),
        ([1.0, H, -2.0], 1, [1.0, np.nan, -2.0]),
        ([1.0, 2.0], 5, [np.nan, np.nan]),
    ],
)
def test_rolling_table(values: list[float | None], window: int, expected: list[float]) -> None:
    got = rolling_sums(*_series(values), window)
    np.testing.assert_allclose(got, expected, equal_nan=True)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # window 3, min_periods 2: day 2 vs [1, 2] -> (3 - 1.5) / 0.7071; day 3 vs [1, 2, 3] -> 8.
        ([1.0, 2.0, 3.0, 10.0], [np.nan, np.nan, 1.5 / math.sqrt(0.5), 8.0]),
        ([1.0, H, 2.0, H, 3.0, 10.0], [np.nan] * 4 + [1.5 / math.sqrt(0.5), 8.0]),
        ([5.0, 5.0, 5.0, 9.0], [np.nan] * 4),  # no spread, no z-score
        # only the last 3 trading days count: day 4 vs [2, 3, 4] -> (0 - 3) / 1.
        (
            [100.0, 2.0, 3.0, 4.0, 0.0],
            [np.nan, np.nan, -48 / math.sqrt(4802), -31 / math.sqrt(3169), -3.0],
        ),
    ],
)
def test_zscore_table(values: list[float | None], expected: list[float]) -> None:
    got = trailing_zscores(*_series(values), window=3, min_periods=2)
    np.testing.assert_allclose(got, expected, equal_nan=True, rtol=1e-4)


@pytest.mark.parametrize(
    ("values", "min_days", "min_sum", "expected"),
    [
        ([-200.0, -200.0, -200.0, 10.0], 3, 500.0, [3]),
        ([200.0, 200.0, 200.0, -1.0], 3, 500.0, [3]),
        ([-100.0, -100.0, -100.0, 10.0], 3, 500.0, []),  # streak too small
        ([-300.0, -300.0, 10.0], 3, 500.0, []),  # streak too short
        ([-200.0, -200.0, H, -200.0, 10.0], 3, 500.0, [4]),  # holiday skipped inside
        ([-200.0, -200.0, -200.0, H, 10.0], 3, 500.0, [4]),  # ...and before the turn
        ([-200.0, -200.0, -200.0, 0.0, 10.0], 3, 500.0, []),  # a flat day is not a turn
        ([1.0, -1.0, 1.0, 1.0, -1.0], 1, 0.0, [1, 2, 4]),
        ([-243.2, -486.1, -398.8, -250.0, 116.7, 753.8], 3, 500.0, [4]),
    ],
)
def test_reversal_table(
    values: list[float | None], min_days: int, min_sum: float, expected: list[int]
) -> None:
    assert list(reversal_days(*_series(values), min_days, min_sum)) == expected


@pytest.mark.parametrize(
    ("row", "sign", "top", "expected"),
    [
        ([5.0, -3.0, 7.0, 0.0, 7.0], 1, 3, [2, 4, 0]),  # ties keep column order
        ([5.0, -3.0, 7.0, 0.0, 7.0], -1, 3, [1]),  # funds moving the other way never lead
        ([5.0, -3.0, 7.0], 1, 1, [2]),
        ([5.0, -3.0, 7.0], 0, 3, []),
    ],
)
def test_leading_funds_table(row: list[float], sign: int, top: int, expected: list[int]) -> None:
    assert list(leading_funds(np.array(row), sign, top)) == expected


def test_holiday_mask_needs_all_zero() -> None:
    flows = np.array([[0.0, 0.0], [1.0, -1.0], [0.0, 2.0]])
    assert list(holiday_mask(flows, daily_totals(flows))) == [True, False, False]


# --- kernels: invariants ---------------------------------------------------------------------

# Tenths of a million, like the source; None is a holiday.
_days = st.lists(st.one_of(st.none(), st.integers(-3000, 3000).map(lambda v: v / 10)), max_size=60)


def _naive_runs(values: list[float]) -> list[tuple[int, int, float]]:
    out: list[tuple[int, int, float]] = []
    for v in values:
        s = int(np.sign(v))
        if out and out[-1][0] == s:
            out.append((s, out[-1][1] + 1, out[-1][2] + v))
        else:
            out.append((s, 1, v))
    return out


@settings(max_examples=200, deadline=None)
@given(_days)
def test_streak_matches_naive_and_ignores_holidays(values: list[float | None]) -> None:
    t, hol = _series(values)
    runs = streak_runs(t, hol)
    idx = np.flatnonzero(~hol)
    trading = [float(t[i]) for i in idx]
    for i, (sign, length, total) in zip(idx, _naive_runs(trading), strict=True):
        assert (runs.sign[i], runs.length[i]) == (sign, length)
        assert runs.sum[i] == pytest.approx(total, abs=1e-6)
        # The streak's sum is the sum of its own days, from its start row to this one.
        span = [float(t[j]) for j in idx if runs.start[i] <= j <= i]
        assert len(span) == length
        assert runs.sum[i] == pytest.approx(sum(span), abs=1e-6)
    assert np.all(runs.length[hol] == 0)


@settings(max_examples=200, deadline=None)
@given(_days, st.integers(1, 7))
def test_rolling_matches_naive_loop(values: list[float | None], window: int) -> None:
    t, hol = _series(values)
    got = rolling_sums(t, hol, window)
    idx = [int(i) for i in np.flatnonzero(~hol)]
    for i in range(len(values)):
        if hol[i] or idx.index(i) < window - 1:
            assert math.isnan(got[i])
        else:
            k = idx.index(i)
            assert got[i] == pytest.approx(sum(t[j] for j in idx[k - window + 1 : k + 1]), abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(_days)
def test_zscore_matches_naive_loop(values: list[float | None]) -> None:
    t, hol = _series(values)
    got = trailing_zscores(t, hol, window=8, min_periods=3)
    trading = t[~hol]
    expected = np.full(trading.size, np.nan)
    for k in range(trading.size):
        base = trading[max(0, k - 8) : k]
        if base.size >= 3 and base.std(ddof=1) > 0:
            expected[k] = (trading[k] - base.mean()) / base.std(ddof=1)
    np.testing.assert_allclose(got[~hol], expected, equal_nan=True, rtol=1e-7, atol=1e-7)
    assert np.all(np.isnan(got[hol]))


@settings(max_examples=200, deadline=None)
@given(_days, st.integers(1, 4), st.sampled_from([0.0, 50.0, 500.0]))
def test_holidays_never_change_the_answer(
    values: list[float | None], min_days: int, min_sum: float
) -> None:
    """Dropping the holiday rows gives the same streaks, windows and reversals on trading days."""
    t, hol = _series(values)
    idx = np.flatnonzero(~hol)
    bare = t[idx]
    no_hol = np.zeros(bare.size, dtype=bool)
    a, b = streak_runs(t, hol), streak_runs(bare, no_hol)
    assert list(a.sign[idx]) == list(b.sign) and list(a.length[idx]) == list(b.length)
    np.testing.assert_allclose(a.sum[idx], b.sum, atol=1e-6)
    np.testing.assert_allclose(rolling_sums(t, hol, 3)[idx], rolling_sums(bare, no_hol, 3))
    rev = reversal_days(t, hol, min_days, min_sum)
    assert list(rev) == [int(idx[k]) for k in reversal_days(bare, no_hol, min_days, min_sum)]


# --- EtfFlows and reports on hand-made data --------------------------------------------------

# -300 x3 (one holiday inside), then +100 (bullish reversal), then -20 (not confirmed).
_SMALL = [
    {"A": 50.0, "B": 60.0},
    {"A": -100.0, "B": -200.0},
    {"A": -250.0, "B": -50.0},
    {"A": 0.0, "B": 0.0},
    {"A": -290.0, "B": -10.0},
    {"A": -20.0, "B": 120.0},
    {"A": -30.0, "B": 10.0},
]


def test_flows_holidays_until_and_readonly() -> None:
    flows = _flows(_SMALL)
    assert list(flows.is_holiday) == [False, False, False, True, False, False, False]
    cut = flows.until(date(2026, 1, 8))
    assert len(cut) == 4 and cut.last_date == date(2026, 1, 8)
    assert flows.until("2030-01-01") is flows
    with pytest.raises(DataError, match=re.escape("no ETF flows on or before 2026-01-04")):
        flows.until(date(2026, 1, 4))
    with pytest.raises(ValueError):
        flows.total[0] = 1.0


def test_flows_copies_its_inputs() -> None:
    matrix = np.array([[1.0, 2.0]])
    flows = EtfFlows(
        np.array(["2026-01-05"], dtype="datetime64[D]"), ("A", "B"), matrix, matrix[:, 0]
    )
    matrix[0, 0] = 9.0  # the caller's array stays writable and does not leak into the flows
    assert flows.flows[0, 0] == 1.0 and flows.total[0] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"funds": ("A",)}, "flows must have shape (2, 1)"),
        ({"total": np.zeros(3)}, "total must have shape (2,)"),
        ({"dates": np.array(["2026-01-02", "2026-01-01"], dtype="datetime64[D]")}, "increasing"),
        ({"dates": np.array(["NaT", "2026-01-01"], dtype="datetime64[D]")}, "valid"),
        ({"flows": np.array([[np.nan, 0.0], [0.0, 0.0]])}, "finite"),
    ],
)
def test_flows_validation(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "dates": np.array(["2026-01-01", "2026-01-02"], dtype="datetime64[D]"),
        "funds": ("A", "B"),
        "flows": np.zeros((2, 2)),
        "total": np.zeros(2),
    }
    with pytest.raises(ValueError, match=re.escape(message)):
        EtfFlows(**(base | kwargs))  # type: ignore[arg-type]


def test_report_on_small_data() -> None:
    flows = _flows(_SMALL)
    report = flow_report(flows, asof=date(2026, 1, 10))  # the +100 day
    (rev,) = report.reversals
    assert (rev.date, rev.direction, rev.total_musd) == (date(2026, 1, 10), "bullish", 100.0)
    p = rev.prior_streak
    assert (p.sign, p.days, p.sum_musd, p.start, p.end) == (
        -1,
        3,
        -900.0,
        date(2026, 1, 6),
        date(2026, 1, 9),
    )
    assert [(f.fund, f.musd) for f in rev.leaders] == [("B", 120.0)]
    assert rev.next_day is None and not rev.confirmed
    assert report.streak.days == 1 and not report.armed
    assert [r.sum_musd for r in report.rolling] == pytest.approx([-500.0, -690.0])

    later = flow_report(flows)
    (rev,) = later.reversals
    assert rev.next_day is not None and rev.next_day.total_musd == -20.0 and not rev.confirmed
    assert [(f.fund, f.musd) for f in later.latest.leaders] == [("A", -30.0)]
    assert flow_report(flows, asof=date(2026, 1, 9)).armed


def test_recent_window_counts_trading_days() -> None:
    flows = _flows(_SMALL)
    assert len(recent_reversals(flows, ReversalRule(recent_days=2))) == 1
    assert recent_reversals(flows, ReversalRule(recent_days=1)) == ()
    assert len(find_reversals(flows)) == 1
    assert recent_reversals(flows, ReversalRule(min_sum_musd=901.0)) == ()


def test_report_needs_a_trading_day() -> None:
    flows = _one_fund([H, H, 5.0])
    with pytest.raises(DataError, match="only market holidays"):
        flow_report(flows, asof=date(2026, 1, 6))


def test_short_history_gives_nan_not_errors() -> None:
    report = flow_report(_one_fund([5.0, -1.0]))
    assert math.isnan(report.zscore.value) and report.zscore.n == 1
    assert all(math.isnan(r.sum_musd) and r.start is None for r in report.rolling)


# --- loader ----------------------------------------------------------------------------------


def _day(d: str, total: object, **funds: object) -> dict[str, object]:
    return {"date": d, "total_musd": total, "funds": funds}


_GOOD_DAYS = [_day("2026-01-12", 116.7, A=111.7, B=5.0), _day("2026-01-13", 753.8, A=753.8, B=0.0)]


def test_json_and_csv_loaders(tmp_path: Path) -> None:
    j = tmp_path / "f.json"
    j.write_bytes(orjson.dumps({"meta": {"x": 1}, "days": _GOOD_DAYS}))
    c = tmp_path / "f.csv"
    c.write_text("date,A,B,total_musd\n2026-01-12,111.7,5.0,116.7\n\n2026-01-13,753.8,0,753.8\n")
    a, b = load_flows(j), load_flows(c)
    assert a.funds == b.funds == ("A", "B")
    np.testing.assert_array_equal(a.flows, b.flows)
    np.testing.assert_array_equal(a.dates, b.dates)
    assert a.notes == b.notes == () and a.source == str(j)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("flows.txt", b' \n[{"date": "2026-01-12", "total_musd": 1, "funds": {"A": 1}}]'),
        ("flows", b"date,A,total_musd\n2026-01-12,1,1\n"),
    ],
)
def test_format_is_sniffed_without_extension(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + content)
    assert load_flows(path).funds == ("A",)


def test_sniffed_json_error_says_it_guessed(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text("[build-system]\n")
    with pytest.raises(FlowsFormatError, match=re.escape("(read as JSON because it starts with")):
        load_flows(path)


def test_json_funds_may_vary_between_days() -> None:
    flows = parse_flows_json(
        orjson.dumps([_day("2026-01-12", 1.0, A=1.0), _day("2026-01-13", 3.0, A=1.0, NEW=2.0)])
    )
    assert flows.funds == ("A", "NEW")
    assert flows.flows.tolist() == [[1.0, 0.0], [1.0, 2.0]]


def test_total_mismatch_keeps_file_total_with_a_note() -> None:
    flows = parse_flows_csv(
        ["date,A,B,total_musd", "2026-01-12,1.0,2.0,3.1", "2026-01-13,1,2,4"], "x.csv"
    )
    assert list(flows.total) == [3.1, 4.0]  # 0.1 is rounding; 1.0 is kept but noted
    assert flows.notes == (
        "x.csv: line 3 (2026-01-13): total_musd 4.0 differs from the sum of the funds 3.0 by "
        "1.00; kept the file's total",
    )


def _bad_json(days: object) -> bytes:
    return orjson.dumps({"days": days})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "f.json: the file is empty; expected ETF flows as JSON or CSV"),
        (b'{"days": [', "f.json, line 1, column 11: invalid JSON"),
        (b'{"meta": {}}', "f.json: missing key 'days'; expected a list of daily flows"),
        (_bad_json({"a": 1}), "f.json: 'days' must be a list of objects, found an object"),
        (_bad_json([]), "f.json: 'days' is empty; expected at least one day"),
        (_bad_json([1]), "f.json: day 0: expected an object, found a number"),
        (
            _bad_json([{"date": "2026-01-12", "funds": {}}]),
            "f.json: day 0: missing key(s) 'total_musd'; expected date, total_musd, funds",
        ),
        (
            _bad_json([_day("2026-13-01", 1.0)]),
            "f.json: day 0, field 'date': expected a date YYYY-MM-DD, found '2026-13-01'",
        ),
        (
            _bad_json([_day("20260112", 1.0)]),
            "f.json: day 0, field 'date': expected a date YYYY-MM-DD, found '20260112'",
        ),
        (
            _bad_json([{"date": 20260112, "total_musd": 1, "funds": {}}]),
            "f.json: day 0, field 'date': expected YYYY-MM-DD, found a number",
        ),
        (
            _bad_json([_GOOD_DAYS[0], _day("2026-01-13", 1.0, A="12.5")]),
            "f.json: day 1 (2026-01-13), field 'funds.A': expected a number (US$ millions), "
            'found a string "12.5"',
        ),
        (
            _bad_json([_day("2026-01-13", None, A=1.0)]),
            "f.json: day 0 (2026-01-13), field 'total_musd': expected a number (US$ millions), "
            "found null",
        ),
        (
            _bad_json([_day("2026-01-13", 1.0, A=True)]),
            "f.json: day 0 (2026-01-13), field 'funds.A': expected a number (US$ millions), "
            "found a boolean true",
        ),
        (
            _bad_json([_day("2026-01-13", 1.0, A=1.0), _day("2026-01-13", 1.0, A=1.0)]),
            "f.json: day 1 (2026-01-13): duplicate date 2026-01-13; expected one row per day",
        ),
        (
            _bad_json([_day("2026-01-13", 1.0, A=1.0), _day("2026-01-12", 1.0, A=1.0)]),
            "f.json: day 1 (2026-01-12): dates must increase (oldest first); "
            "2026-01-12 comes after 2026-01-13",
        ),
        (
            _bad_json([{"date": "2026-01-13", "total_musd": 1, "funds": [1, 2]}]),
            "f.json: day 0 (2026-01-13), field 'funds': expected an object of fund: US$ millions, "
            "found a list",
        ),
    ],
)
def test_json_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(FlowsFormatError) as err:
        load_flows(path)
    assert str(err.value).startswith(str(tmp_path / message))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("\n\n", "f.csv: the file is empty; expected ETF flows as JSON or CSV"),
        ("date,A,total_musd\n", "f.csv: has a header but no day rows"),
        ("date,A,B\n", "f.csv, line 1: the header lacks column 'total_musd'; expected date,"),
        ("date,A,A,total_musd\n", "f.csv, line 1, column 'A': appears twice in the header"),
        ("date,,total_musd\n", "f.csv, line 1: column 2 has an empty name"),
        (
            "date,A,total_musd\n2026-01-12,1\n",
            "f.csv, line 2: expected 3 fields as in the header, found 2",
        ),
        (
            "date,A,total_musd\n2026-01-12,1,1\n2026-01-13,x,1\n",
            "f.csv, line 3, column 'A': expected a number (US$ millions), found 'x'",
        ),
        (
            "date,A,total_musd\n2026-01-12, ,1\n",
            "f.csv, line 2, column 'A': expected a number (US$ millions), found an empty cell",
        ),
        (
            "date,A,total_musd\n2026-01-12,1,nan\n",
            "f.csv, line 2, column 'total_musd': expected a finite number, found 'nan'",
        ),
        (
            "date,A,total_musd\n01/12/2026,1,1\n",
            "f.csv, line 2, column 'date': expected a date YYYY-MM-DD, found '01/12/2026'",
        ),
        (
            "date,A,total_musd\n2026-01-12,1,1\n2026-01-12,1,1\n",
            "f.csv, line 3: duplicate date 2026-01-12; expected one row per day",
        ),
        (
            "date,A,total_musd\n2026-01-12,1,1\n2026-01-09,1,1\n",
            "f.csv, line 3: dates must increase (oldest first); 2026-01-09 comes after 2026-01-12",
        ),
    ],
)
def test_csv_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text(content)
    with pytest.raises(FlowsFormatError) as err:
        load_flows(path)
    assert str(err.value).startswith(str(tmp_path / message))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FlowsFormatError, match=re.escape(f"{tmp_path / 'no.json'}: no such file")):
        load_flows(tmp_path / "no.json")
    with pytest.raises(FlowsFormatError, match="is a directory"):
        load_flows(tmp_path)


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"date,A,total_musd\n2026-01-12,\xff,1\n")
    with pytest.raises(FlowsFormatError, match="is not UTF-8 text"):
        load_flows(path)


# --- real data (../shared) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def farside() -> tuple[EtfFlows, EtfFlows]:
    """The Farside flows as (JSON, CSV); skips where ../shared is not checked out."""
    paths = [ETF_DIR / "btc_etf_flows_farside.json", ETF_DIR / "btc_etf_flows_farside.csv"]
    for p in paths:
        if not p.is_file():
            pytest.skip(f"real ETF data not found at {p} (../shared is absent in this checkout)")
    return load_flows(paths[0]), load_flows(paths[1])


def test_real_data_loads_cleanly(farside: tuple[EtfFlows, EtfFlows]) -> None:
    flows, _ = farside
    assert len(flows) == 671 and flows.notes == ()
    assert flows.first_date == date(2024, 1, 11) and flows.last_date == date(2026, 8, 21)
    assert int(flows.is_holiday.sum()) == 16
    jan = flows.until(date(2026, 1, 9)).total[-4:]
    np.testing.assert_allclose(jan, [-243.2, -486.1, -398.8, -250.0])


def test_real_news_case_bullish_reversal(farside: tuple[EtfFlows, EtfFlows]) -> None:
    report = flow_report(farside[0], asof=date(2026, 1, 13))
    (rev,) = [r for r in report.reversals if r.direction == "bullish"]
    assert rev.date == date(2026, 1, 12) and rev.total_musd == pytest.approx(116.7)
    p = rev.prior_streak
    assert p.days == 4 and p.sum_musd == pytest.approx(-1378.1, abs=0.5)
    assert (p.start, p.end) == (date(2026, 1, 6), date(2026, 1, 9))
    assert rev.confirmed and rev.next_day is not None
    assert rev.next_day.date == date(2026, 1, 13)
    assert rev.next_day.total_musd == pytest.approx(753.8)
    lead = rev.next_day.leaders[0]
    assert lead.fund == "FBTC" and lead.musd == pytest.approx(351.4)
    assert report.latest.leaders[0] == lead
    assert [f.fund for f in report.latest.leaders] == ["FBTC", "BITB", "IBIT"]
    assert rev.leaders[0].fund == "FBTC"


def test_real_no_reversal_before_the_turn(farside: tuple[EtfFlows, EtfFlows]) -> None:
    report = flow_report(farside[0], asof=date(2026, 1, 9))
    assert not [r for r in report.reversals if r.direction == "bullish"]
    assert report.streak.days == 4 and report.armed


def test_real_reversal_pending_on_its_own_day(farside: tuple[EtfFlows, EtfFlows]) -> None:
    (rev,) = flow_report(farside[0], asof=date(2026, 1, 12)).reversals
    assert rev.next_day is None and not rev.confirmed


@pytest.mark.parametrize("asof", ["2024-03-01", "2025-01-21", "2026-01-09", "2026-01-13", None])
def test_real_json_and_csv_agree(farside: tuple[EtfFlows, EtfFlows], asof: str | None) -> None:
    j, c = farside
    assert j.funds == c.funds
    np.testing.assert_array_equal(j.flows, c.flows)
    np.testing.assert_array_equal(j.total, c.total)
    assert flow_report(j, asof=asof) == flow_report(c, asof=asof)
    assert find_reversals(j) == find_reversals(c)
