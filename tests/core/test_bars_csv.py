"""The canonical bar CSV loader (DESIGN §3): values, optional columns and precise errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from core.bars import OPTIONAL_COLUMNS, make_bars
from core.bars_csv import load_bars_csv, parse_bars_csv
from core.errors import BarsFormatError, InputError
from core.synthetic import synthetic_bars

HEADER = "ts,open,high,low,close,oi_usd"
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
H = 3_600_000


def _row(
    i: int, o: float = 100, h: float = 102, lo: float = 99, c: float = 101, oi: float = 5e9
) -> str:
    return f"{T0 + i * H},{o},{h},{lo},{c},{oi}"


def _text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def _parse(text: str, name: str = "bars.csv"):
    return parse_bars_csv(io.StringIO(text, newline=""), name)


# --- good files ------------------------------------------------------------------------------


def test_required_columns_are_read_exactly() -> None:
    bars = _parse(_text(_row(0), _row(1, 101, 105, 100.5, 104, 6e9)))
    assert bars.ts.tolist() == [T0, T0 + H]
    assert bars.ts.dtype == np.int64
    assert bars.open.tolist() == [100.0, 101.0]
    assert bars.high.tolist() == [102.0, 105.0]
    assert bars.low.tolist() == [99.0, 100.5]
    assert bars.close.tolist() == [101.0, 104.0]
    assert bars.oi_usd.tolist() == [5e9, 6e9]
    assert bars.interval_ms == H


def test_absent_optional_columns_are_all_nan() -> None:
    bars = _parse(_text(_row(0), _row(1)))
    for col in OPTIONAL_COLUMNS:
        values = getattr(bars, col)
        assert values.shape == (2,)
        assert np.isnan(values).all(), col
        assert not bars.has(col)


def test_empty_optional_cell_is_nan_and_the_rest_is_read() -> None:
    header = HEADER + ",volume_usd,liq_long_usd"
    bars = _parse(_text(_row(0) + ",1000,", _row(1) + ",,25.5", header=header))
    assert bars.volume_usd[0] == 1000.0
    assert np.isnan(bars.volume_usd[1])
    assert np.isnan(bars.liq_long_usd[0])
    assert bars.liq_long_usd[1] == 25.5
    assert bars.has("volume_usd") and bars.has("liq_long_usd")
    assert np.isnan(bars.taker_buy_usd).all()


def test_columns_may_come_in_any_order_and_extra_columns_are_ignored() -> None:
    header = "close,oi_usd,note,ts,low,high,open"
    bars = _parse(
        _text(f"101,5e9,hello,{T0},99,102,100", f"103,6e9,x,{T0 + H},100,104,101", header=header)
    )
    assert bars.close.tolist() == [101.0, 103.0]
    assert bars.open.tolist() == [100.0, 101.0]
    assert bars.ts.tolist() == [T0, T0 + H]


def test_blank_lines_and_padding_are_tolerated() -> None:
    text = f" ts , open,high,low,close,oi_usd\n\n{_row(0)}\n\n  \n{T0 + H}, 100 ,102,99,101,5e9\n\n"
    bars = _parse(text)
    assert len(bars) == 2
    assert bars.open.tolist() == [100.0, 100.0]


def test_round_trip_of_synthetic_bars(write_bars_csv) -> None:
    bars = synthetic_bars(50, interval_ms=H, seed=3)
    loaded = load_bars_csv(write_bars_csv(bars))
    for col in ("ts", "open", "high", "low", "close", "oi_usd", *OPTIONAL_COLUMNS):
        np.testing.assert_array_equal(getattr(loaded, col), getattr(bars, col), err_msg=col)


def test_load_accepts_str_and_path(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text(_text(_row(0), _row(1)), encoding="utf-8")
    assert len(load_bars_csv(path)) == len(load_bars_csv(str(path))) == 2


# --- malformed files: the message names the file, the line and the column -------------------

BAD = [
    pytest.param(
        _text(_row(0), f"{T0 + H},100,abc,99,101,5e9"),
        3,
        "high",
        "expected a number, found 'abc'",
        id="non-numeric-high-line-3",
    ),
    pytest.param(
        _text(_row(0), header="ts,open,high,low,close"),
        1,
        "oi_usd",
        "lacks required column",
        id="missing-required-column",
    ),
    pytest.param(
        _text(_row(0), header="ts,open,high,close,volume_usd"),
        1,
        "low",
        "low, oi_usd",
        id="missing-two-columns-names-both",
    ),
    pytest.param(
        _text(_row(0), header="ts,open,high,low,close,oi_usd,open"),
        1,
        "open",
        "appears twice",
        id="duplicate-column",
    ),
    pytest.param(
        _text(_row(0), f"{T0 + H},100,102,99"),
        3,
        None,
        "expected 6 fields as in the header, found 4",
        id="too-few-fields",
    ),
    pytest.param(
        _text(_row(0) + ",7"),
        2,
        None,
        "expected 6 fields as in the header, found 7",
        id="too-many-fields",
    ),
    pytest.param(_text(_row(1), _row(0)), 3, "ts", "timestamps must increase", id="decreasing-ts"),
    pytest.param(_text(_row(0), _row(0)), 3, "ts", "timestamps must increase", id="repeated-ts"),
    pytest.param(_text("1767225600,100,102,99,101,5e9"), 2, "ts", "(seconds?)", id="ts-in-seconds"),
    pytest.param(
        _text("1.7672256e12,100,102,99,101,5e9"), 2, "ts", "whole number", id="ts-not-integer"
    ),
    pytest.param(_text(",100,102,99,101,5e9"), 2, "ts", "whole number", id="ts-empty"),
    pytest.param(_text(_row(0, oi=-1)), 2, "oi_usd", "non-negative", id="negative-oi"),
    pytest.param(
        _text(_row(0, h=99, lo=101)),
        2,
        "high",
        "expected high >= open, close and low",
        id="high-below-low",
    ),
    pytest.param(
        _text(_row(0, o=100, h=105, lo=101, c=102)),
        2,
        "low",
        "expected low <= open and close",
        id="low-above-open",
    ),
    pytest.param(
        _text(_row(0, o=100, h=101, lo=99, c=102)), 2, "high", "high=101", id="high-below-close"
    ),
    pytest.param(_text(f"{T0},100,102,99,,5e9"), 2, "close", "empty cell", id="empty-close"),
    pytest.param(_text(_row(0, c=float("nan"))), 2, "close", "finite", id="nan-close"),
    pytest.param(_text(_row(0, o=0)), 2, "open", "positive price", id="zero-open"),
    pytest.param(
        _text(_row(0) + ",-5", header=HEADER + ",liq_long_usd"),
        2,
        "liq_long_usd",
        "non-negative",
        id="negative-optional",
    ),
    pytest.param(
        _text(_row(0) + ",lots", header=HEADER + ",volume_usd"),
        2,
        "volume_usd",
        "'lots'",
        id="non-numeric-optional",
    ),
    pytest.param("", 1, None, "the file is empty", id="empty-file"),
    pytest.param("\n", 1, None, "the file is empty", id="blank-first-line"),
]


@pytest.mark.parametrize(("text", "line", "column", "expected"), BAD)
def test_malformed_csv_names_file_line_and_column(
    tmp_path: Path, text: str, line: int, column: str | None, expected: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BarsFormatError) as info:
        load_bars_csv(path)
    err = info.value
    assert isinstance(err, InputError)
    assert (err.path, err.line, err.column) == (str(path), line, column)
    where = f"{path}, line {line}" + (f", column '{column}'" if column else "")
    message = str(err)
    assert message.startswith(where + ": "), message
    assert expected in message
    assert "\n" not in message


def test_non_numeric_high_on_line_3_full_message() -> None:
    with pytest.raises(BarsFormatError) as info:
        _parse(_text(_row(0), f"{T0 + H},100,abc,99,101,5e9"), "my.csv")
    assert str(info.value) == "my.csv, line 3, column 'high': expected a number, found 'abc'"


def test_line_numbers_count_blank_lines() -> None:
    with pytest.raises(BarsFormatError) as info:
        _parse(_text(_row(0), "", "", f"{T0 + H},100,x,99,101,5e9"))
    assert info.value.line == 5


def test_header_only_has_no_bar_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text(HEADER + "\n", encoding="utf-8")
    with pytest.raises(BarsFormatError) as info:
        load_bars_csv(path)
    assert str(info.value) == f"{path}: has a header but no bar rows"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(BarsFormatError) as info:
        load_bars_csv(path)
    assert str(info.value) == f"{path}: no such file"
    assert info.value.line is None and info.value.column is None


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(BarsFormatError, match="is a directory"):
        load_bars_csv(tmp_path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes((_text(_row(0)) + "# caf\xe9\n").encode("latin-1"))
    with pytest.raises(BarsFormatError) as info:
        load_bars_csv(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "not UTF-8" in message


def test_utf8_bom_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _text(_row(0), _row(1)).encode())
    assert len(load_bars_csv(path)) == 2


def test_make_bars_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="open"):
        make_bars(
            ts=[T0, T0 + H],
            open=[1.0],
            high=[1.0, 1.0],
            low=[1.0, 1.0],
            close=[1.0, 1.0],
            oi_usd=[1.0, 1.0],
        )
