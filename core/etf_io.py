"""Loading ETF flow files (JSON or CSV) into :class:`core.etf.EtfFlows`.

Two shapes are read, both daily net flows per fund in US$ millions, oldest day first:

- JSON: ``{"meta": {...}, "days": [{"date": "2026-01-13", "total_musd": 753.8,
  "funds": {"IBIT": 126.3, ...}}, ...]}`` (a bare list of days is accepted too). Funds may differ
  between days, as they launch; the fund set is the union in order of first appearance, and a
  fund absent from a day counts 0.0 that day. Other keys (``meta``, ``provenance``) are ignored.
- CSV: a header ``date,IBIT,FBTC,...,total_musd``, then one row per day. Every column other than
  ``date`` and ``total_musd`` is a fund.

The format comes from the extension (``.json``, ``.csv``); any other name is sniffed from the
first character (``{`` or ``[`` means JSON).

A malformed file raises :class:`core.errors.FlowsFormatError` naming the file, the line (CSV, and
JSON syntax) or the day index and date (JSON), the field, and what was expected.

Totals: sources round each fund and the total to 0.1 separately, so the total may differ from
the sum of the funds by a few tenths. When it differs by more than ``TOTAL_TOLERANCE_MUSD`` the
loader keeps the file's total (the source's headline figure, which may include a fund it does not
itemize) and records a note in ``EtfFlows.notes`` instead of failing: one odd day should not stop
the whole history from loading, and the note lets the caller show it.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path

import numpy as np
import orjson

from core.errors import FlowsFormatError
from core.etf import EtfFlows

TOTAL_TOLERANCE_MUSD = 0.15

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAY_KEYS = ("date", "total_musd", "funds")


def load_flows(path: str | Path) -> EtfFlows:
    """Read an ETF flows file, JSON or CSV (see the module docstring).

    Raises
    ------
    FlowsFormatError
        The file is missing, unreadable or malformed; the message says where and what was expected.
    """
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise FlowsFormatError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise FlowsFormatError(f"{name}: is a directory, expected a JSON or CSV file") from None
    except OSError as exc:
        raise FlowsFormatError(f"{name}: cannot read the file ({exc.strerror})") from None
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM from spreadsheet exports
    if not data.strip():
        raise FlowsFormatError(f"{name}: the file is empty; expected ETF flows as JSON or CSV")
    suffix = Path(name).suffix.lower()
    if suffix == ".json":
        return parse_flows_json(data, name)
    if suffix != ".csv" and data.lstrip()[:1] in (b"{", b"["):
        try:
            return parse_flows_json(data, name)
        except FlowsFormatError as exc:
            # A guess was made; say so, since the file may be something else entirely (TOML...).
            raise FlowsFormatError(
                f"{exc} (read as JSON because it starts with {data.lstrip()[:1].decode()!r}; "
                "expected a .json or .csv flows file)"
            ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FlowsFormatError(f"{name}: is not UTF-8 text ({exc.reason})") from None
    return parse_flows_csv(io.StringIO(text, newline=""), name)


def parse_flows_json(data: bytes | str, name: str = "<json>") -> EtfFlows:
    """Parse ETF flows JSON text; see :func:`load_flows`."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FlowsFormatError(
            f"{name}, line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})"
        ) from None
    if isinstance(doc, dict):
        if "days" not in doc:
            raise FlowsFormatError(f"{name}: missing key 'days'; expected a list of daily flows")
        days = doc["days"]
    else:
        days = doc
    if not isinstance(days, list):
        raise FlowsFormatError(
            f"{name}: 'days' must be a list of objects, found {_json_type(days)}"
        )
    if not days:
        raise FlowsFormatError(f"{name}: 'days' is empty; expected at least one day")

    dates: list[date] = []
    totals: list[float] = []
    rows: list[Mapping[str, float]] = []
    funds: dict[str, None] = {}  # an ordered set: funds in order of first appearance
    for k, day in enumerate(days):
        where = f"{name}: day {k}"
        if not isinstance(day, dict):
            raise FlowsFormatError(f"{where}: expected an object, found {_json_type(day)}")
        missing = [key for key in _DAY_KEYS if key not in day]
        if missing:
            raise FlowsFormatError(
                f"{where}: missing key(s) {', '.join(map(repr, missing))}; "
                f"expected {', '.join(_DAY_KEYS)}"
            )
        raw_date = day["date"]
        if not isinstance(raw_date, str):
            raise FlowsFormatError(
                f"{where}, field 'date': expected YYYY-MM-DD, found {_json_type(raw_date)}"
            )
        d = _parse_date(raw_date, f"{where}, field 'date'")
        where = f"{name}: day {k} ({d})"
        _check_order(d, dates, where)
        totals.append(_json_number(day["total_musd"], f"{where}, field 'total_musd'"))
        raw_funds = day["funds"]
        if not isinstance(raw_funds, dict):
            raise FlowsFormatError(
                f"{where}, field 'funds': expected an object of fund: US$ millions, "
                f"found {_json_type(raw_funds)}"
            )
        row = {f: _json_number(v, f"{where}, field 'funds.{f}'") for f, v in raw_funds.items()}
        funds.update(dict.fromkeys(row))
        rows.append(row)
        dates.append(d)

    names = tuple(funds)
    matrix = np.array([[row.get(f, 0.0) for f in names] for row in rows], dtype=np.float64)
    matrix = matrix.reshape(len(rows), len(names))
    labels = [f"day {k} ({d})" for k, d in enumerate(dates)]
    return _build(name, dates, names, matrix, totals, labels)


def parse_flows_csv(lines: Iterable[str], name: str = "<csv>") -> EtfFlows:
    """Parse ETF flows CSV text (``date,FUND,...,total_musd``); see :func:`load_flows`."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        raise FlowsFormatError(f"{name}, line 1: the file is empty; expected a header row")
    columns = [cell.strip() for cell in header]
    for pos, col in enumerate(columns):
        if not col:
            raise FlowsFormatError(f"{name}, line 1: column {pos + 1} has an empty name")
        if col in columns[:pos]:
            raise FlowsFormatError(f"{name}, line 1, column '{col}': appears twice in the header")
    for required in ("date", "total_musd"):
        if required not in columns:
            raise FlowsFormatError(
                f"{name}, line 1: the header lacks column '{required}'; "
                "expected date,<fund tickers...>,total_musd"
            )
    i_date, i_total = columns.index("date"), columns.index("total_musd")
    fund_pos = [p for p in range(len(columns)) if p not in (i_date, i_total)]
    names = tuple(columns[p] for p in fund_pos)

    dates: list[date] = []
    totals: list[float] = []
    rows: list[list[float]] = []
    labels: list[str] = []
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank lines are harmless
        if len(row) != len(columns):
            raise FlowsFormatError(
                f"{name}, line {line}: expected {len(columns)} fields as in the header, "
                f"found {len(row)}"
            )
        d = _parse_date(row[i_date], f"{name}, line {line}, column 'date'")
        _check_order(d, dates, f"{name}, line {line}")
        totals.append(_csv_number(row[i_total], f"{name}, line {line}, column 'total_musd'"))
        rows.append(
            [_csv_number(row[p], f"{name}, line {line}, column '{columns[p]}'") for p in fund_pos]
        )
        dates.append(d)
        labels.append(f"line {line} ({d})")
    if not dates:
        raise FlowsFormatError(f"{name}: has a header but no day rows")
    matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    return _build(name, dates, names, matrix, totals, labels)


def _build(
    name: str,
    dates: list[date],
    funds: tuple[str, ...],
    matrix: np.ndarray,
    totals: list[float],
    labels: list[str],
) -> EtfFlows:
    total = np.array(totals, dtype=np.float64)
    gap = np.abs(total - matrix.sum(axis=1))
    notes = tuple(
        f"{name}: {labels[k]}: total_musd {total[k]:.1f} differs from the sum of the funds "
        f"{matrix[k].sum():.1f} by {gap[k]:.2f}; kept the file's total"
        for k in np.flatnonzero(gap > TOTAL_TOLERANCE_MUSD + 1e-9)
    )
    return EtfFlows(
        dates=np.array(dates, dtype="datetime64[D]"),
        funds=funds,
        flows=matrix,
        total=total,
        notes=notes,
        source=name,
    )


def _parse_date(raw: str, where: str) -> date:
    text = raw.strip()
    if _DATE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise FlowsFormatError(f"{where}: expected a date YYYY-MM-DD, found {raw!r}")


def _check_order(d: date, seen: list[date], where: str) -> None:
    if not seen:
        return
    if d == seen[-1]:
        raise FlowsFormatError(f"{where}: duplicate date {d}; expected one row per day")
    if d < seen[-1]:
        raise FlowsFormatError(
            f"{where}: dates must increase (oldest first); {d} comes after {seen[-1]}"
        )


def _json_number(value: object, where: str) -> float:
    # bool is an int subclass in Python; true/false in a flows file is a mistake, not 1/0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FlowsFormatError(
            f"{where}: expected a number (US$ millions), found {_json_type(value)} "
            f"{orjson.dumps(value).decode()[:40]}"
        )
    number = float(value)
    if not math.isfinite(number):
        raise FlowsFormatError(f"{where}: expected a finite number, found {value!r}")
    return number


def _csv_number(raw: str, where: str) -> float:
    text = raw.strip()
    if not text:
        raise FlowsFormatError(f"{where}: expected a number (US$ millions), found an empty cell")
    try:
        value = float(text)
    except ValueError:
        raise FlowsFormatError(
            f"{where}: expected a number (US$ millions), found {raw!r}"
        ) from None
    if not math.isfinite(value):
        raise FlowsFormatError(f"{where}: expected a finite number, found {raw!r}")
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
