"""Farside HTML: the real fixture, the whole real history rendered as a Farside page, cell
formats, junk pages, and the client over httpx.MockTransport and a real local socket."""

from __future__ import annotations

import html as htmllib
from pathlib import Path

import httpx
import numpy as np
import pytest

from core.etf import EtfFlows
from core.etf_io import load_flows
from core.feeds.errors import Banned, JunkResponse
from core.feeds.farside import (
    FARSIDE_ALL_DATA_URL,
    farside_client,
    fetch_farside,
    parse_farside_html,
)
from tests.fakes.http_server import FakeHttpServer, Reply
from tests.fakes.timing import ManualClock

FIXTURE = Path("samples") / "farside_btc__fixture.html"
ETF_JSON = Path("data") / "etf" / "btc_etf_flows_farside.json"


@pytest.fixture(scope="module")
def fixture_html(shared_dir: Path) -> str:
    path = shared_dir / FIXTURE
    if not path.is_file():
        pytest.skip(f"missing {FIXTURE} in ../shared")
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def real_flows(shared_dir: Path) -> EtfFlows:
    path = shared_dir / ETF_JSON
    if not path.is_file():
        pytest.skip(f"missing {ETF_JSON} in ../shared")
    return load_flows(path)


# --- the real fixture -----------------------------------------------------------------------


def test_fixture_numbers(fixture_html: str) -> None:
    flows = parse_farside_html(fixture_html)
    assert flows.funds == ("IBIT", "FBTC", "GBTC", "BTC")
    assert [str(d) for d in flows.dates] == [
        "2026-07-06", "2026-07-07", "2026-07-08", "2026-07-09",
    ]  # fmt: skip
    expected = np.array(
        [
            [209.4, 9.7, -44.5, 42.3],  # redFont (44.5) is negative
            [54.8, -24.9, 0.0, 0.0],  # a blank cell is 0.0
            [1119.9, 100.0, -10.0, 5.0],  # "1,119.9" has a thousands separator
            [10.0, 10.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_array_equal(flows.flows, expected)
    np.testing.assert_array_equal(flows.total, [216.9, 29.9, 1214.9, 20.0])
    assert flows.notes == ()  # every total agrees with its funds; "Average" is not a day
    assert not flows.is_holiday.any()
    assert flows.source == "farside"


# The fixture's header says its figures are illustrative. Against the real Farside history, its
# first two days are real (for its four funds); 08 and 09 Jul are made up. The totals are the
# sums of its four funds, not the real all-fund totals.
@pytest.mark.parametrize(
    ("day", "real"),
    [("2026-07-06", True), ("2026-07-07", True), ("2026-07-08", False), ("2026-07-09", False)],
)
def test_fixture_against_the_real_history(
    fixture_html: str, real_flows: EtfFlows, day: str, real: bool
) -> None:
    fixture = parse_farside_html(fixture_html)
    common = [d for d in fixture.dates if d in set(real_flows.dates)]
    assert len(common) == 4, "the fixture's days are all in the real history"
    i = int(np.flatnonzero(fixture.dates == np.datetime64(day))[0])
    j = int(np.flatnonzero(real_flows.dates == np.datetime64(day))[0])
    cols = [real_flows.funds.index(f) for f in fixture.funds]
    agrees = bool(np.array_equal(fixture.flows[i], real_flows.flows[j, cols]))
    assert agrees is real, (day, fixture.flows[i], real_flows.flows[j, cols])


# --- the whole real history as a Farside page ------------------------------------------------


def _cell(value: float, zero: str) -> str:
    if value == 0.0:
        return zero
    text = f"{abs(value):,.1f}"
    return f'<span class="redFont">({text})</span>' if value < 0 else text


def farside_page(flows: EtfFlows, *, zero: str = "-") -> str:
    """``flows`` rendered as Farside's all-data table: logo, ticker and fee header rows, a Seed
    row, one row per day (holidays as dashes), and the summary rows at the bottom."""
    td = '<td><div align="right"><span class="tabletext">{}</span></div></td>'
    rows = [
        "<tr><th></th>"
        + "".join(f'<th><img alt="{htmllib.escape(f)} issuer"/></th>' for f in flows.funds)
        + '<th><span class="tabletext">Total</span></th></tr>',
        "<tr><th></th>"
        + "".join(f'<th><span class="tabletext">{f}</span></th>' for f in flows.funds)
        + "<th></th></tr>",
        "<tr><th>Fee</th>" + "<th>0.25%</th>" * len(flows.funds) + "<th></th></tr>",
        "<tr><td>Seed</td>" + td.format("10.0") * len(flows.funds) + td.format("") + "</tr>",
    ]
    for i in range(len(flows)):
        day = flows.date_at(i).strftime("%d %b %Y")
        cells = [td.format(_cell(float(v), zero)) for v in flows.flows[i]]
        cells.append(td.format(_cell(float(flows.total[i]), zero)))
        rows.append(f'<tr><td><span class="tabletext">{day}</span></td>{"".join(cells)}</tr>')
    for label in ("Total", "Average", "Maximum", "Minimum"):
        rows.append(f"<tr><td>{label}</td>" + td.format("1.0") * (len(flows.funds) + 1) + "</tr>")
    return (
        "<html><body><table class='other'><tr><td>menu</td></tr></table>"
        f'<table class="etf">{"".join(rows)}</table></body></html>'
    )


def test_real_history_round_trips_through_a_farside_page(real_flows: EtfFlows) -> None:
    parsed = parse_farside_html(farside_page(real_flows))
    assert parsed.funds == real_flows.funds
    np.testing.assert_array_equal(parsed.dates, real_flows.dates)
    np.testing.assert_array_equal(parsed.flows, real_flows.flows)
    np.testing.assert_array_equal(parsed.total, real_flows.total)
    # Holidays come through as rows of dashes and are kept, marked as core/etf.py expects.
    np.testing.assert_array_equal(parsed.is_holiday, real_flows.is_holiday)
    assert parsed.is_holiday.sum() > 10
    # Days whose total disagrees with the funds are noted the same number of times.
    assert len(parsed.notes) == len(real_flows.notes)


def test_news_item_days_from_the_page(real_flows: EtfFlows) -> None:
    parsed = parse_farside_html(farside_page(real_flows, zero="0.0")).until("2026-01-13")
    assert parsed.total[-1] == pytest.approx(753.8)
    assert parsed.flows[-1, parsed.funds.index("FBTC")] == pytest.approx(351.4)
    assert list(parsed.total[-6:-1]) == pytest.approx([-243.2, -486.1, -398.8, -250.0, 116.7])


# --- cell formats ----------------------------------------------------------------------------

HEAD = (
    '<table class="etf"><tr><th></th><th>IBIT</th><th>FBTC</th><th>Total</th></tr>'
    "<tr><th>Fee</th><th>0.25%</th><th>0.25%</th><th></th></tr>"
)


def _page(*rows: str, head: str = HEAD) -> str:
    return head + "".join(rows) + "</table>"


def _row(day: str, *cells: str) -> str:
    return f"<tr><td>{day}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("12.5", 12.5),
        ("(123.4)", -123.4),
        ('<span class="redFont">(1,119.9)</span>', -1119.9),
        ("1,234.5", 1234.5),
        ("12,345,678.9", 12345678.9),
        ("-", 0.0),
        ("", 0.0),
        ("\u2013", 0.0),  # en dash
        ("\u2014", 0.0),  # em dash
        ("  7.0 ", 7.0),
        ("5.5*", 5.5),  # footnote
        ("\u22125.0", -5.0),  # typographic minus
        ("-5.0", -5.0),
        ("(0.0)", 0.0),
        ("0", 0.0),
    ],
)
def test_cell_formats(cell: str, value: float) -> None:
    flows = parse_farside_html(_page(_row("11 Jan 2024", cell, "1.0", "")))
    assert flows.flows[0, 0] == value
    assert flows.total[0] == pytest.approx(value + 1.0)  # a blank total is the sum of the funds


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("11 Jan 2024", "2024-01-11"),
        ("1 Feb 2024", "2024-02-01"),
        ("06 Sept 2024", "2024-09-06"),
        ("06 September 2024", "2024-09-06"),
        ("2024-03-05", "2024-03-05"),
    ],
)
def test_date_formats(text: str, day: str) -> None:
    flows = parse_farside_html(_page(_row(text, "1.0", "1.0", "2.0")))
    assert str(flows.dates[0]) == day


def test_rows_are_sorted_and_holidays_kept() -> None:
    page = _page(
        _row("16 Jan 2024", "1.0", "2.0", "3.0"),
        _row("15 Jan 2024", "-", "-", "-"),
        _row("12 Jan 2024", "(1.0)", "4.0", "3.0"),
        _row("Total", "0.0", "6.0", "6.0"),
    )
    flows = parse_farside_html(page)
    assert [str(d) for d in flows.dates] == ["2024-01-12", "2024-01-15", "2024-01-16"]
    assert flows.is_holiday.tolist() == [False, True, False]
    np.testing.assert_array_equal(flows.total, [3.0, 0.0, 3.0])


def test_disagreeing_total_is_kept_and_noted() -> None:
    flows = parse_farside_html(_page(_row("11 Jan 2024", "1.0", "2.0", "5.0")))
    assert flows.total[0] == 5.0
    assert "total 5.0 differs from the sum of the funds 3.0" in flows.notes[0]


def test_unknown_label_rows_are_skipped_with_a_note() -> None:
    flows = parse_farside_html(
        _page(_row("11 Jan 2024", "1.0", "2.0", "3.0"), _row("Footnote", "a", "b", "c"))
    )
    assert len(flows) == 1
    assert "'Footnote'" in flows.notes[0]


def test_unclosed_cells_and_rows_parse() -> None:
    page = HEAD + "<tr><td>11 Jan 2024<td>1.0<td>2.0<td>3.0<tr><td>12 Jan 2024<td>-<td>1<td>1"
    flows = parse_farside_html(page)
    np.testing.assert_array_equal(flows.flows, [[1.0, 2.0], [0.0, 1.0]])


def test_table_without_total_column() -> None:
    head = '<table class="etf"><tr><th></th><th>IBIT</th><th>FBTC</th></tr>'
    flows = parse_farside_html(_page(_row("11 Jan 2024", "1.0", "2.0"), head=head))
    assert flows.total.tolist() == [3.0]


# --- junk ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("<html><body>no table here</body></html>", "no <table> in the page"),
        (
            "<html><title>Just a moment...</title><body>cf-chl</body></html>",
            "looks like a Cloudflare challenge",
        ),
        ("", "no <table>"),
        (_page(_row("Average", "1", "2", "3")), "no dated rows"),
        (_page(_row("11 Jan 2024", "12.3.4", "1", "1")), "row '11 Jan 2024', column IBIT"),
        (_page(_row("11 Jan 2024", "1", "abc", "1")), "column FBTC: expected US$ millions"),
        (_page(_row("11 Jan 2024", "1", "1", "n.a.")), "column Total"),
        (_page(_row("11 Jan 2024", "1,23.0", "1", "1")), "found '1,23.0'"),
        (_page(_row("11 Jan 2024", "(1.0", "1", "1")), "found '(1.0'"),
        (
            _page(_row("11 Jan 2024", "1", "1", "2"), _row("11 Jan 2024", "2", "2", "4")),
            "date 2024-01-11 is listed twice",
        ),
        (
            _page(_row("11 Jan 2024", "1", "1", "2"), _row("2024-01-11", "2", "2", "4")),
            "listed twice",
        ),
        (_page(_row("32 Jan 2024", "1", "1", "2")), "row '32 Jan 2024': not a valid date"),
        (_page(_row("11 Jnu 2024", "1", "1", "2")), "not a valid date"),
        (
            _page(_row("11 Jan 2024", "1", "1", "2"), _row("12 Jan 2024", "1", "2")),
            "row '12 Jan 2024' has 3 cells, the header has 4 columns",
        ),
        (
            _page(_row("11 Jan 2024", "1", "1", "2"), head='<table class="etf">'),
            "no header row of fund tickers",
        ),
        (
            _page(
                _row("11 Jan 2024", "1", "1", "2"),
                head='<table class="etf"><tr><th></th><th>IBIT</th><th>IBIT</th><th>Total</th>',
            ),
            "ticker IBIT appears twice",
        ),
        (
            _page(
                _row("11 Jan 2024", "1", "1", "2"),
                head='<table class="etf"><tr><th></th><th>IBIT</th><th>?</th><th>Total</th>',
            ),
            "header column 3 has no fund ticker",
        ),
    ],
)
def test_junk_pages(page: str, message: str) -> None:
    with pytest.raises(JunkResponse, match="farside") as info:
        parse_farside_html(page)
    assert message in str(info.value)


# --- the client -------------------------------------------------------------------------------


class FakeClock(ManualClock):
    def __init__(self, now: float = 1_783_382_400.0) -> None:
        super().__init__(now)


async def test_client_fetches_with_browser_headers(fixture_html: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text=fixture_html, headers={"content-type": "text/html"})

    clock = FakeClock()
    http = farside_client(transport=httpx.MockTransport(handler), clock=clock, sleep=clock.sleep)
    async with http:
        flows = await fetch_farside(http)
        assert len(flows) == 4
        assert flows.source == FARSIDE_ALL_DATA_URL
        assert str(seen[0].url) == FARSIDE_ALL_DATA_URL
        assert seen[0].headers["user-agent"].startswith("Mozilla/5.0")
        assert "text/html" in seen[0].headers["accept"]
        # The budget is six pages a minute: five more go at once, the seventh waits for the
        # window (on the fake clock).
        for _ in range(5):
            await fetch_farside(http)
        assert clock.now == 1_783_382_400.0
        await fetch_farside(http)
        assert clock.now >= 1_783_382_400.0 + 60.0


async def test_client_base_url_and_headers_are_configurable(fixture_html: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text=fixture_html)

    http = farside_client(
        "https://mirror.example/btc/",
        headers={"User-Agent": "custom/1.0"},
        transport=httpx.MockTransport(handler),
    )
    async with http:
        await fetch_farside(http)
    assert str(seen[0].url) == "https://mirror.example/btc/"
    assert seen[0].headers["user-agent"] == "custom/1.0"


async def test_client_cloudflare_403_opens_the_circuit() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(403, text="<html><title>Just a moment...</title></html>")

    clock = FakeClock()
    http = farside_client(transport=httpx.MockTransport(handler), clock=clock, sleep=clock.sleep)
    async with http:
        with pytest.raises(Banned):
            await fetch_farside(http)
        with pytest.raises(Exception, match="circuit open"):
            await fetch_farside(http)
    assert calls == 1  # the second call never left


async def test_client_challenge_page_on_200_is_junk() -> None:
    page = "<html><head><title>Just a moment...</title></head><body>cf-chl</body></html>"
    http = farside_client(transport=httpx.MockTransport(lambda r: httpx.Response(200, text=page)))
    async with http:
        with pytest.raises(JunkResponse, match="Cloudflare challenge"):
            await fetch_farside(http)


async def test_client_empty_page_is_junk() -> None:
    http = farside_client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    async with http:
        with pytest.raises(JunkResponse, match="empty page"):
            await fetch_farside(http)


async def test_client_over_a_real_socket(fixture_html: str) -> None:
    async with FakeHttpServer() as server:
        server.script("/btc/", Reply.text(fixture_html))
        http = farside_client(f"{server.url}/btc/")
        async with http:
            flows = await fetch_farside(http)
        assert flows.total.tolist() == [216.9, 29.9, 1214.9, 20.0]
        assert server.requests[0].headers["user-agent"].startswith("Mozilla/5.0")
