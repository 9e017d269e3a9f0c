"""Shared payload checks (core.feeds.parse): what passes, and the precise reason for a failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from core.errors import InputError
from core.feeds.errors import JunkResponse
from core.feeds.parse import (
    MAX_MS,
    MIN_MS,
    Fields,
    chunks,
    epoch_ms,
    finite,
    funding_per_8h,
    non_negative,
    oldest_first,
    positive,
    span,
)

TS = 1_791_565_600_771


@pytest.mark.parametrize(("value", "expected"), [("82655.7", 82655.7), (3, 3.0), (0.5, 0.5)])
def test_positive_accepts_numbers_and_number_strings(value: Any, expected: float) -> None:
    assert positive(value) == expected


@pytest.mark.parametrize(
    ("value", "error", "reason"),
    [
        (None, TypeError, "expected a number string, got NoneType"),
        (True, TypeError, "expected a number string, got bool"),
        ([1], TypeError, "expected a number string, got list"),
        ("abc", ValueError, "could not convert"),
        ("0", ValueError, "not a positive finite number: '0'"),
        ("-1", ValueError, "not a positive finite number: '-1'"),
        ("nan", ValueError, "not a positive finite number: 'nan'"),
        ("inf", ValueError, "not a positive finite number: 'inf'"),
    ],
)
def test_positive_rejects(value: Any, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason):
        positive(value)


def test_finite_and_non_negative_bounds() -> None:
    assert non_negative("0") == 0.0 and finite("-2.5") == -2.5 and finite("4", 1.0) == 4.0
    with pytest.raises(ValueError, match=r"not a finite number >= 0: '-5'"):
        non_negative("-5")
    with pytest.raises(ValueError, match=r"not a finite number >= 1: 0.5"):
        finite(0.5, 1.0)
    with pytest.raises(ValueError, match=r"not a finite number: 'nan'"):
        finite("nan")


def test_epoch_ms() -> None:
    assert epoch_ms(TS) == epoch_ms(str(TS)) == TS
    assert epoch_ms(MIN_MS) == MIN_MS
    for seconds_or_far in (TS // 1000, MAX_MS, "1791565600"):
        with pytest.raises(ValueError, match="not a plausible epoch-ms timestamp"):
            epoch_ms(seconds_or_far)
    for wrong in (float(TS), True, None):
        with pytest.raises(TypeError, match="expected epoch ms"):
            epoch_ms(wrong)
    with pytest.raises(ValueError):
        epoch_ms("soon")


def test_funding_per_8h() -> None:
    assert funding_per_8h(0.0001, 8) == 0.0001
    assert funding_per_8h(-0.000212, 4) == pytest.approx(-0.000424)
    assert funding_per_8h(0.00001, 1) == pytest.approx(0.00008)
    with pytest.raises(ValueError, match="positive number of hours"):
        funding_per_8h(0.0001, 0)


F = Fields("binance")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: F.number("abc", "klines[0] high"),
            "binance: klines[0] high is not a number: 'abc'",
        ),
        (
            lambda: F.number(None, "x.open"),
            "binance: x.open should be a number string, got NoneType",
        ),
        (lambda: F.number(False, "x.open"), "binance: x.open should be a number string, got bool"),
        (lambda: F.number("NaN", "x.close"), "binance: x.close is not finite: 'NaN'"),
        (lambda: F.non_negative("-5", "x.vol"), "binance: x.vol is negative: -5.0"),
        (lambda: F.epoch_ms(1.5e12, "x.T"), "binance: x.T should be epoch milliseconds, got 1500"),
        (lambda: F.epoch_ms(TS // 1000, "x.T"), "binance: x.T is not a plausible epoch-ms"),
        (lambda: F.get({}, "symbol", "oi"), "binance: oi: missing field 'symbol'"),
        (lambda: F.typed([], dict, "oi"), "binance: oi: expected a JSON dict, got list"),
        (lambda: F.rows({}, list, "klines"), "binance: klines: expected a JSON list, got dict"),
        (lambda: F.rows([[1], {}], list, "klines"), "binance: klines[1]: expected list, got dict"),
    ],
)
def test_fields_name_the_field(call: Any, message: str) -> None:
    with pytest.raises(JunkResponse) as info:
        call()
    assert str(info.value).startswith(message)
    assert info.value.venue == "binance"


def test_fields_accept_good_values() -> None:
    assert F.number("1.5", "w") == 1.5 and F.number(2, "w") == 2.0
    assert F.non_negative("0", "w") == 0.0
    assert F.epoch_ms(TS, "w") == F.epoch_ms(str(TS), "w") == TS
    assert F.get({"a": None}, "a", "w") is None
    assert F.rows([[1], [2]], list, "w") == [[1], [2]]


@dataclass(frozen=True)
class Row:
    ts_ms: int


def test_oldest_first_sorts_and_rejects_repeats() -> None:
    assert oldest_first([Row(3), Row(1), Row(2)], "okx", "candles") == [Row(1), Row(2), Row(3)]
    with pytest.raises(JunkResponse, match="okx: candles: timestamp 2 appears twice"):
        oldest_first([Row(2), Row(1), Row(2)], "okx", "candles")


def test_span_and_chunks() -> None:
    hour = 3_600_000
    assert span(10 * hour + 5, hour, None, None, 3, 300) == (8 * hour, 10 * hour)
    assert span(10 * hour, hour, hour + 1, None, 2, 300) == (2 * hour, 3 * hour)
    # Inside the 10:00 bar: closed_only stops at the 09:00 bar, the last one that has closed.
    assert span(10 * hour + 5, hour, None, None, 3, 300, closed_only=True) == (7 * hour, 9 * hour)
    with pytest.raises(InputError, match="at least 1"):
        span(10 * hour, hour, None, None, 0, 300)
    assert list(chunks(0, 9 * hour, hour, 4)) == [
        (6 * hour, 9 * hour),
        (2 * hour, 5 * hour),
        (0, hour),
    ]
    assert list(chunks(5, 4, hour, 4)) == []
