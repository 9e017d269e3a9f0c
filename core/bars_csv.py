"""Loader for the canonical bar CSV (DESIGN §3).

A malformed file is reported once, precisely: the file, the 1-based line, the column and what was
expected. It never produces a traceback or, worse, a silently wrong map.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from core.bars import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, Bars, make_bars
from core.errors import BarsFormatError

_PRICE_COLUMNS = ("open", "high", "low", "close")
_NON_NEGATIVE = ("oi_usd", "volume_usd", "taker_buy_usd", "liq_long_usd", "liq_short_usd")


def load_bars_csv(path: str | Path) -> Bars:
    """Read a canonical bar CSV into :class:`Bars`.

    Raises
    ------
    BarsFormatError
        With the file, line and column of the first problem and what was expected there.
    """
    name = str(path)
    try:
        # utf-8-sig: tolerate the BOM of Excel's "CSV UTF-8".
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return parse_bars_csv(fh, name)
    except FileNotFoundError:
        raise BarsFormatError(name, None, None, "no such file") from None
    except IsADirectoryError:
        raise BarsFormatError(name, None, None, "is a directory, expected a CSV file") from None
    except UnicodeDecodeError as exc:
        raise BarsFormatError(name, None, None, f"is not UTF-8 text ({exc.reason})") from None


def parse_bars_csv(lines: Iterable[str], name: str = "<bars>") -> Bars:
    """Parse canonical bar CSV text; see :func:`load_bars_csv`."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        raise BarsFormatError(name, 1, None, "the file is empty; expected a header row")
    index = _header_index([cell.strip() for cell in header], name)

    columns: dict[str, list[float]] = {c: [] for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
    width = len(header)
    prev_ts: int | None = None
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank lines are harmless
        if len(row) != width:
            raise BarsFormatError(
                name, line, None, f"expected {width} fields as in the header, found {len(row)}"
            )
        ts = _parse_ts(row[index["ts"]], name, line)
        if prev_ts is not None and ts <= prev_ts:
            raise BarsFormatError(
                name, line, "ts", f"timestamps must increase (oldest first); {ts} <= {prev_ts}"
            )
        prev_ts = ts
        columns["ts"].append(ts)
        for col in REQUIRED_COLUMNS[1:]:
            columns[col].append(_parse_number(row[index[col]], name, line, col, required=True))
        for col in OPTIONAL_COLUMNS:
            pos = index.get(col)
            raw = row[pos] if pos is not None else ""
            columns[col].append(_parse_number(raw, name, line, col, required=False))
        _check_ohlc(columns, name, line)

    if not columns["ts"]:
        raise BarsFormatError(name, None, None, "has a header but no bar rows")
    return make_bars(**{k: np.asarray(v) for k, v in columns.items()})


def _header_index(header: Sequence[str], name: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for pos, col in enumerate(header):
        if col in index:
            raise BarsFormatError(name, 1, col, "the column appears twice in the header")
        index[col] = pos
    missing = [c for c in REQUIRED_COLUMNS if c not in index]
    if missing:
        raise BarsFormatError(
            name,
            1,
            missing[0],
            f"the header lacks required column(s) {', '.join(missing)}; expected at least "
            f"{','.join(REQUIRED_COLUMNS)}",
        )
    return index


def _parse_ts(raw: str, name: str, line: int) -> int:
    text = raw.strip()
    if not text.isdigit():
        raise BarsFormatError(
            name, line, "ts", f"expected epoch milliseconds (a whole number), found {raw!r}"
        )
    ts = int(text)
    # 1e11 ms is 1973; anything smaller is almost surely seconds, which would misplace every bar.
    if ts < 100_000_000_000:
        raise BarsFormatError(
            name, line, "ts", f"expected epoch milliseconds, found {ts} (seconds?)"
        )
    return ts


def _parse_number(raw: str, name: str, line: int, col: str, *, required: bool) -> float:
    text = raw.strip()
    if not text:
        if required:
            raise BarsFormatError(name, line, col, "expected a number, found an empty cell")
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise BarsFormatError(name, line, col, f"expected a number, found {raw!r}") from None
    if not math.isfinite(value):
        raise BarsFormatError(name, line, col, f"expected a finite number, found {raw!r}")
    if col in _PRICE_COLUMNS and value <= 0:
        raise BarsFormatError(name, line, col, f"expected a positive price, found {raw!r}")
    if col in _NON_NEGATIVE and value < 0:
        raise BarsFormatError(name, line, col, f"expected a non-negative USD amount, found {raw!r}")
    return value


def _check_ohlc(columns: dict[str, list[float]], name: str, line: int) -> None:
    o, h, lo, c = (columns[k][-1] for k in _PRICE_COLUMNS)
    if h < max(o, c, lo):
        raise BarsFormatError(name, line, "high", f"expected high >= open, close and low; high={h}")
    if lo > min(o, c):
        raise BarsFormatError(name, line, "low", f"expected low <= open and close; low={lo}")


def format_bars_csv(bars: Bars) -> str:
    """Canonical CSV text of ``bars``: required columns, then the optional ones that have data.

    NaN cells are left empty, as the format allows; the loader reads the text back unchanged.
    """
    optional = [c for c in OPTIONAL_COLUMNS if bars.has(c)]
    cols = [*REQUIRED_COLUMNS, *optional]
    arrays = [getattr(bars, c) for c in cols]
    lines = [",".join(cols)]
    for row in zip(*(a.tolist() for a in arrays), strict=True):
        cells = [str(row[0])]
        cells.extend("" if math.isnan(v) else repr(v) for v in row[1:])
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"
