"""`liqbot fetch` end to end: the CLI, the real REST clients and a real local server that
emulates the venues (tests/fakes/venue_api.py), through a config file that points at it.

The CLI's clients read the real clock, so the range ends a little before now (``--end``) and the
server's clock is pinned just after that end: every bar asked for has closed on both sides.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from bot.cli import main
from core.bars_csv import load_bars_csv
from tests.fakes.venue_api import FakeVenueApi

HOUR = 3_600_000
DAY = 24 * HOUR
END_MS = (int(time.time() * 1000) // HOUR - 1) * HOUR  # an hour before the current hour
END_ISO = datetime.fromtimestamp(END_MS / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")
VENUES = ("binance", "okx", "bybit")


@pytest.fixture
def api() -> Iterator[FakeVenueApi]:
    server_now = END_MS / 1000 + 1800  # half way through the bar after the range
    with FakeVenueApi(["BTC", "ETH"], clock=lambda: server_now) as server:
        yield server
    assert server.errors == []


@pytest.fixture
def config(tmp_path: Path, api: FakeVenueApi) -> Path:
    lines = ["feeds:"]
    for venue in VENUES:
        lines += [
            f"  {venue}:",
            f"    rest_url: {api.url}",
            "    ws_url: ws://127.0.0.1:9/unused",
        ]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(*argv: str) -> int:
    """``main(argv)``; argparse's exit for a bad argument becomes the returned status."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def fetch_args(config: Path, out: Path, *extra: str, venue: str = "binance") -> list[str]:
    return [
        "fetch",
        "--venue",
        venue,
        "--symbol",
        "BTC",
        "--days",
        "2",
        "--interval",
        "1h",
        "--end",
        END_ISO,
        "--out",
        str(out),
        "--config",
        str(config),
        *extra,
    ]


@pytest.mark.parametrize("venue", VENUES)
def test_fetch_writes_a_canonical_csv(
    venue: str,
    api: FakeVenueApi,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "bars.csv"
    assert run(*fetch_args(config, out, venue=venue)) == 0

    bars = load_bars_csv(out)
    # Bars opened in [end - 2 days, end): every one has its OI sample (at its close).
    assert len(bars) == 2 * 24
    assert int(bars.ts[0]) == END_MS - 2 * 24 * HOUR
    assert int(bars.ts[-1]) == END_MS - HOUR
    series = api.bars("BTC", "1h")
    idx = (bars.ts - api.start_ms) // HOUR
    np.testing.assert_array_equal(bars.close, series.close[idx])
    np.testing.assert_allclose(bars.oi_usd, series.oi_usd[idx], rtol=1e-12)
    np.testing.assert_array_equal(bars.volume_usd, series.volume_usd[idx])

    captured = capsys.readouterr()
    summary = captured.out.strip().splitlines()
    assert len(summary) == 1
    assert summary[0].startswith(f"48 1h bars of BTC on {venue}, ")
    assert summary[0].endswith(f"written to {out} ({api.count(venue=venue)} requests)")
    # stderr is not a terminal here: one line per finished stage, nothing redrawn.
    progress = captured.err.splitlines()
    assert [line.split("] ", 1)[1] for line in progress] == [
        f"1/1 {venue} bars",
        f"1/1 {venue} open interest",
    ]
    assert all(line.startswith("[" + "#" * 30 + "]") for line in progress)
    assert "\r" not in captured.err
    assert api.violations() == 0


def test_quiet_prints_no_progress(
    api: FakeVenueApi, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bars.csv"
    assert run(*fetch_args(config, out, "--quiet", venue="okx")) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "(2 requests)" in captured.out  # one candles page, one OI page
    assert len(load_bars_csv(out)) == 48


def test_binance_beyond_30_days_leaves_out_bars_without_oi(
    api: FakeVenueApi, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bars.csv"
    args = fetch_args(config, out, "--quiet")
    args[args.index("--days") + 1] = "40"
    before_ms = int(time.time() * 1000)
    assert run(*args) == 0
    after_ms = int(time.time() * 1000)
    bars = load_bars_csv(out)
    # Binance serves the last 30 days of OI from the client's clock, which moves on during the
    # run (and since END_MS was set at import): the first bar opens within those 30 days, at
    # most one bar of slack after the oldest that still has OI.
    first = int(bars.ts[0])
    assert before_ms - 30 * DAY <= first < after_ms - 30 * DAY + HOUR
    assert len(bars) == (END_MS - first) // HOUR
    assert int(bars.ts[-1]) == END_MS - HOUR
    assert (np.diff(bars.ts) == HOUR).all()
    assert capsys.readouterr().out.startswith(f"{len(bars)} 1h bars of BTC on binance, ")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--symbol", "ZZZ"), "Unknown symbol ZZZ. Try BTC"),
        (("--symbol", "SOL"), "Binance does not list SOLUSDT"),  # a known base the venue lacks
        (("--interval", "7x"), "invalid interval '7x'"),
        (("--interval", "2m"), "Binance does not offer kline interval '2m'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    change: tuple[str, str],
    message: str,
    api: FakeVenueApi,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "bars.csv"
    args = fetch_args(config, out)
    args[args.index(change[0]) + 1] = change[1]
    assert run(*args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("liqbot fetch: error: ")
    assert message in lines[0]
    assert captured.out == ""
    assert not out.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--days", "0"), "--days must be 1..365, got 0"),
        (("--days", "400"), "--days must be 1..365, got 400"),
        (("--days", "ten"), "expected a whole number of days, got 'ten'"),
        (("--venue", "kraken"), "invalid choice: 'kraken'"),
    ],
)
def test_bad_argument_is_rejected_before_any_request(
    change: tuple[str, str],
    message: str,
    api: FakeVenueApi,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "bars.csv"
    args = fetch_args(config, out)
    args[args.index(change[0]) + 1] = change[1]
    assert run(*args) == 2
    captured = capsys.readouterr()
    first, *rest = captured.err.strip().splitlines()
    assert first.startswith("liqbot fetch: error: argument ")
    assert message in first
    assert rest == ["(see 'liqbot fetch --help')"]
    assert "Traceback" not in captured.err
    assert not out.exists()
    assert api.count() == 0
