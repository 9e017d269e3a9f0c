"""Farside Investors' Bitcoin ETF flow table (HTML, no key) -> :class:`core.etf.EtfFlows`.

The page (``<table class="etf">``) has a few header rows (issuer logos with a "Total" column,
the tickers, the fees), one row per US trading day whose first cell is ``DD Mon YYYY``, and
summary rows (Total, Average, Maximum, Minimum, Seed) that are skipped. Cells are US$ millions:
``(44.5)`` is negative, ``1,119.9`` has a thousands separator, and ``-``, ``–``, ``—`` or an empty
cell mean no flow (or a fund not yet launched) and read as 0.0. A trailing ``*`` footnote is
dropped. Market holidays come as rows of zeros and are kept: :class:`EtfFlows` marks them.

Anything else is rejected whole with :class:`JunkResponse`, naming the row and column: a page
without the table (Cloudflare's challenge page is recognised and said so), a fund cell that is not
a number, a date listed twice, a row whose width differs from the header's.

Farside often answers 403 to non-browser clients, so :func:`farside_client` sends browser-like
headers (any can be overridden), and HttpClient opens the circuit on a 403 so we do not hammer it.
Its budget is one page a minute. The page is fetched with :meth:`HttpClient.get_text`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import date, datetime
from html.parser import HTMLParser
from typing import Any

import httpx
import numpy as np

from core.etf import EtfFlows
from core.etf_io import TOTAL_TOLERANCE_MUSD
from core.feeds.errors import JunkResponse
from core.feeds.http import Clock, HttpClient, Sleep
from core.feeds.limits import VenueLimits, Window

VENUE = "farside"
FARSIDE_ALL_DATA_URL = "https://farside.co.uk/bitcoin-etf-flow-all-data/"
FARSIDE_RECENT_URL = "https://farside.co.uk/btc/"
# A few pages a minute at most: the per-day cache means about one fetch a day, and the retries
# of one failed fetch (up to 5 requests) must not wait a minute each.
FARSIDE_LIMITS = VenueLimits({"page": Window(6, 60.0)}, safety=1.0)
BROWSER_HEADERS: Mapping[str, str] = {
    "User-Agent": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0 Safari/537.36"
    ),
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-GB,en;q=0.9",
}

SUMMARY_LABELS = frozenset({"total", "average", "maximum", "minimum", "seed", "median", "sum"})
_EMPTY = frozenset({"", "-", "–", "—", "‒", "n/a"})  # hyphen and dash variants
_DATE_SHAPE = re.compile(r"^\d{1,2}\s+[A-Za-z]{3,9}\.?\s+\d{4}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMBER = re.compile(r"^(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$")
_TICKER = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")


def parse_farside_html(html: str, source: str = VENUE) -> EtfFlows:
    """Parse a Farside flow page into daily flows per fund, US$ millions, oldest day first.

    Parameters
    ----------
    html : str
        The page, as served.
    source : str
        Named in messages and kept as ``EtfFlows.source`` (the URL, say).

    Raises
    ------
    JunkResponse
        The page holds no usable flow table, or a cell, date or row is malformed; the message
        names the row (by its date) and the column (by its ticker).
    """
    tables = _Tables.parse(html)
    if not tables:
        hint = (
            "; the page looks like a Cloudflare challenge, not Farside's table"
            if _looks_like_challenge(html)
            else ""
        )
        raise JunkResponse(
            VENUE, f"{source}: no <table> in the page ({len(html)} characters){hint}"
        )
    preferred = [t for t in tables if "etf" in t.classes] or tables
    table = max(preferred, key=lambda t: sum(_row_date(r, source) is not None for r in t.rows))
    first_dated = next(
        (i for i, row in enumerate(table.rows) if _row_date(row, source) is not None), None
    )
    if first_dated is None:
        raise JunkResponse(
            VENUE,
            f"{source}: the flow table has no dated rows; expected a first cell like '11 Jan 2024'",
        )
    width = max(len(r) for r in table.rows[: first_dated + 1])
    funds, fund_cols, total_col = _columns(table.rows[:first_dated], width, source)

    seen: dict[date, str] = {}
    flows: list[list[float]] = []
    totals: list[float] = []
    notes: list[str] = []
    for row in table.rows[first_dated:]:
        day = _row_date(row, source)
        label = row[0].strip() if row else ""
        if day is None:
            if label.lower().rstrip(":") not in SUMMARY_LABELS and any(c.strip() for c in row):
                notes.append(
                    f"{source}: skipped a row that is neither a day nor a summary: {label!r}"
                )
            continue
        if day in seen:
            raise JunkResponse(
                VENUE, f"{source}: date {day} is listed twice (rows {seen[day]!r} and {label!r})"
            )
        seen[day] = label
        if len(row) != width:
            raise JunkResponse(
                VENUE,
                f"{source}: row {label!r} has {len(row)} cells, the header has {width} columns",
            )
        values = [_cell(row[j], label, funds[k], source) for k, j in enumerate(fund_cols)]
        fund_sum = float(sum(values))
        total = fund_sum
        if total_col is not None:
            raw_total = row[total_col]
            if _clean(raw_total) in _EMPTY:
                if fund_sum != 0.0:
                    notes.append(f"{source}: {day}: no total given; used the sum of the funds")
            else:
                total = _cell(raw_total, label, "Total", source)
                if abs(total - fund_sum) > TOTAL_TOLERANCE_MUSD + 1e-9:
                    notes.append(
                        f"{source}: {day}: total {total:.1f} differs from the sum of the funds "
                        f"{fund_sum:.1f} by {abs(total - fund_sum):.2f}; kept the page's total"
                    )
        flows.append(values)
        totals.append(total)
    order = np.argsort(np.array(list(seen), dtype="datetime64[D]"), kind="stable")
    return EtfFlows(
        dates=np.array(list(seen), dtype="datetime64[D]")[order],
        funds=funds,
        flows=np.array(flows, dtype=np.float64).reshape(len(flows), len(funds))[order],
        total=np.array(totals, dtype=np.float64)[order],
        notes=tuple(notes),
        source=source,
    )


def farside_client(
    url: str = FARSIDE_ALL_DATA_URL,
    *,
    headers: Mapping[str, str] | None = None,
    limits: VenueLimits = FARSIDE_LIMITS,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = time.time,
    sleep: Sleep | None = None,
    **options: Any,
) -> HttpClient:
    """An :class:`HttpClient` for the Farside page at ``url``, with browser-like headers.

    ``headers`` are merged over :data:`BROWSER_HEADERS`; ``options`` go to :class:`HttpClient`
    (timeouts, retries, ...).
    """
    extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    return HttpClient(
        VENUE,
        url,
        limits,
        headers={**BROWSER_HEADERS, **(headers or {})},
        transport=transport,
        clock=clock,
        **extra,
        **options,
    )


async def fetch_farside(http: HttpClient, path: str = "/") -> EtfFlows:
    """GET the page ``path`` under the client's base URL and parse it.

    Raises the client's :class:`FeedError` (403 opens the circuit; see HttpClient), or
    :class:`JunkResponse` when the page holds no usable table.
    """
    html = await http.get_text(path)
    return parse_farside_html(html, source=f"{http.base_url}/{path.lstrip('/')}")


class _Table:
    def __init__(self, classes: tuple[str, ...]) -> None:
        self.classes = classes
        self.rows: list[list[str]] = []
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.colspan = 1

    def close_cell(self) -> None:
        if self.cell is not None and self.row is not None:
            text = " ".join("".join(self.cell).split())
            self.row.extend([text] + [""] * (self.colspan - 1))
        self.cell = None

    def close_row(self) -> None:
        self.close_cell()
        if self.row is not None:
            self.rows.append(self.row)
        self.row = None


class _Tables(HTMLParser):
    """Every ``<table>`` of a page as rows of cell texts; tolerant of unclosed cells and rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.done: list[_Table] = []
        self.open: list[_Table] = []

    @classmethod
    def parse(cls, html: str) -> list[_Table]:
        parser = cls()
        parser.feed(html)
        parser.close()
        while parser.open:
            parser.handle_endtag("table")
        return parser.done

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.open.append(_Table(tuple((dict(attrs).get("class") or "").split())))
            return
        if not self.open:
            return
        table = self.open[-1]
        if tag == "tr":
            table.close_row()
            table.row = []
        elif tag in ("td", "th"):
            table.close_cell()
            if table.row is None:
                table.row = []
            span = dict(attrs).get("colspan") or "1"
            table.colspan = int(span) if span.isdigit() and 0 < int(span) < 100 else 1
            table.cell = []
        elif tag == "br" and table.cell is not None:
            table.cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if not self.open:
            return
        table = self.open[-1]
        if tag in ("td", "th"):
            table.close_cell()
        elif tag == "tr":
            table.close_row()
        elif tag == "table":
            table.close_row()
            self.done.append(self.open.pop())

    def handle_data(self, data: str) -> None:
        if self.open and self.open[-1].cell is not None:
            self.open[-1].cell.append(data)


def _columns(
    header: list[list[str]], width: int, source: str
) -> tuple[tuple[str, ...], list[int], int | None]:
    """(tickers, their column indices, the Total column or None) from the header rows."""

    def tickers(row: list[str]) -> int:
        return sum(1 for c in row[1:] if _TICKER.match(c) and c.upper() != "TOTAL")

    best = max(header, key=tickers, default=[])
    if not best or tickers(best) == 0:
        raise JunkResponse(
            VENUE, f"{source}: no header row of fund tickers (IBIT, FBTC, ...) above the first day"
        )
    total_col = next(
        (j for row in header for j, c in enumerate(row) if j > 0 and c.lower() == "total"), None
    )
    funds: list[str] = []
    cols: list[int] = []
    for j in range(1, width):
        name = best[j] if j < len(best) else ""
        if j == total_col:
            continue
        if not _TICKER.match(name):
            raise JunkResponse(
                VENUE,
                f"{source}: header column {j + 1} has no fund ticker (found {name!r}); "
                "expected a ticker such as IBIT in every column but the date and Total",
            )
        if name in funds:
            raise JunkResponse(VENUE, f"{source}: ticker {name} appears twice in the header")
        funds.append(name)
        cols.append(j)
    return tuple(funds), cols, total_col


def _row_date(row: list[str], source: str) -> date | None:
    """The row's day, None for a non-date row; JunkResponse for a date-shaped cell that is bad."""
    text = row[0].strip() if row else ""
    if _ISO_DATE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    elif _DATE_SHAPE.match(text):
        day, month, year = text.replace(".", "").split()
        month = month[:3].title()  # "Sept" and "September" both mean Sep
        try:
            return datetime.strptime(f"{day} {month} {year}", "%d %b %Y").date()
        except ValueError:
            pass
    else:
        return None
    raise JunkResponse(VENUE, f"{source}: row {text!r}: not a valid date (expected '11 Jan 2024')")


def _clean(raw: str) -> str:
    return raw.strip().rstrip("*").strip().replace("\u2212", "-")  # a typographic minus


def _cell(raw: str, row: str, column: str, source: str) -> float:
    text = _clean(raw)
    if text.lower() in _EMPTY:
        return 0.0
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1].strip()
    elif text.startswith("-"):
        negative, text = True, text[1:].strip()
    if not _NUMBER.match(text):
        raise JunkResponse(
            VENUE,
            f"{source}: row {row!r}, column {column}: expected US$ millions such as 12.3, "
            f"(12.3) or 1,234.5, found {raw.strip()!r}",
        )
    value = float(text.replace(",", ""))
    return -value if negative and value else value


def _looks_like_challenge(html: str) -> bool:
    lowered = html[:20_000].lower()
    return any(m in lowered for m in ("just a moment", "cf-chl", "challenge-platform", "cf-ray"))
