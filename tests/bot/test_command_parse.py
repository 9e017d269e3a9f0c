"""Forgiving argument parsing: the forms people type, and specific errors for everything else."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from alerts.subscriptions import Kind
from bot.cmd_alert_parse import parse_alert
from bot.cmd_alert_text import command_line
from bot.command_parse import (
    MAX_ARGS,
    MAX_ECHO,
    ArgError,
    normalize_args,
    parse_amount,
    parse_direction,
    parse_duration,
    parse_id,
    parse_int,
    parse_pct,
    parse_quiet_range,
    parse_side,
    parse_symbol_arg,
    parse_timezone,
    parse_venue,
    shown,
)

SYMBOLS = ("BTC", "ETH", "SOL")
VENUES = ("binance", "okx", "bybit")


@pytest.mark.parametrize(
    ("text", "usd"),
    [
        ("50m", 50e6),
        ("$50M", 50e6),
        ("1.2b", 1.2e9),
        ("$1.2B", 1.2e9),
        ("250k", 250e3),
        ("1,000,000", 1e6),
        ("96000", 96e3),
        ("$ 5 mn", 5e6),
        ("2bn", 2e9),
        ("10musd".replace("musd", "m"), 10e6),
        (".5m", 0.5e6),
        ("100usd", 100.0),
    ],
)
def test_amounts(text: str, usd: float) -> None:
    assert parse_amount(text) == pytest.approx(usd)


@pytest.mark.parametrize("text", ["5x", "1e9", "m", "$", "50mm5", "1,00", "-5m", "0", "0m", "５m"])
def test_bad_amounts(text: str) -> None:
    with pytest.raises(ArgError, match="amount; try 50m or"):
        parse_amount(text)


def test_amount_error_names_the_token() -> None:
    with pytest.raises(ArgError) as err:
        parse_amount("5x")
    assert str(err.value) == "'5x' is not an amount; try 50m or $1.2B"


@pytest.mark.parametrize(("text", "pct"), [("1%", 1.0), ("0.5%", 0.5), (".5 %", 0.5), ("12%", 12)])
def test_percentages(text: str, pct: float) -> None:
    assert parse_pct(text) == pct


@pytest.mark.parametrize(("text", "match"), [("1", "not a percentage"), ("0%", "out of range")])
def test_bad_percentages(text: str, match: str) -> None:
    with pytest.raises(ArgError, match=match):
        parse_pct(text)


def test_normalize_joins_split_tokens() -> None:
    assert normalize_args(["0.5", "%", "$", "50M", " ", "btc"]) == ["0.5%", "$50M", "btc"]
    assert normalize_args(["%"]) == ["%"]  # nothing to join to: left for the parser to refuse
    with pytest.raises(ArgError, match="Too many arguments"):
        normalize_args(["x"] * (MAX_ARGS + 1))


@pytest.mark.parametrize(
    ("text", "symbol"),
    [
        ("btc", "BTC"),
        ("BTCUSDT", "BTC"),
        ("BTC-USDT-SWAP", "BTC"),
        ("$eth", "ETH"),
        ("SOL/USDT", "SOL"),
    ],
)
def test_symbols(text: str, symbol: str) -> None:
    assert parse_symbol_arg(text, SYMBOLS) == symbol


def test_unknown_symbol_lists_the_configured_ones() -> None:
    with pytest.raises(ArgError) as err:
        parse_symbol_arg("DOGEX", SYMBOLS)
    assert str(err.value) == "Unknown symbol DOGEX. Try BTC, ETH, SOL."
    with pytest.raises(ArgError) as err:
        parse_symbol_arg("doge", SYMBOLS)  # a real coin, but not watched here
    assert str(err.value) == "Unknown symbol DOGE. Try BTC, ETH, SOL."


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30m", 1_800_000),
        ("1h", 3_600_000),
        ("2d", 172_800_000),
        ("1w", 604_800_000),
        ("90 min", 5_400_000),
        ("2hrs", 7_200_000),
        ("1.5h", 5_400_000),
    ],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("5x", "not a duration"),
        ("0h", "not a duration"),
        ("1.5m", "whole number of minutes"),
        ("h", "not a"),
    ],
)
def test_bad_durations(text: str, match: str) -> None:
    with pytest.raises(ArgError, match=match):
        parse_duration(text)


def test_venues() -> None:
    assert parse_venue("Binance", VENUES) == "binance"
    assert parse_venue("all", VENUES) == "all"
    assert parse_venue("btc", VENUES) is None
    with pytest.raises(ArgError, match="Venue okx is not watched here; try binance, bybit or all"):
        parse_venue("OKX", ("binance", "bybit"))


def test_words() -> None:
    assert parse_side("Shorts") == "short"
    assert parse_side("both") == "any"
    assert parse_side("up") is None
    assert parse_direction("above") == "up"
    assert parse_direction("below") == "down"
    assert parse_direction("long") is None


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("23:00-07:00", (1380, 420)),
        ("23-7", (1380, 420)),
        ("22:30 to 6:45", (1350, 405)),
        ("0:00-8:00", (0, 480)),
    ],
)
def test_quiet_ranges(text: str, minutes: tuple[int, int]) -> None:
    assert parse_quiet_range(text) == minutes


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("24:00-07:00", "not a time range"),
        ("23:60-01:00", "not a time range"),
        ("7:00-7:00", "differ"),
        ("night", "not a time range"),
    ],
)
def test_bad_quiet_ranges(text: str, match: str) -> None:
    with pytest.raises(ArgError, match=match):
        parse_quiet_range(text)


def test_timezones() -> None:
    assert parse_timezone("europe/berlin") == "Europe/Berlin"
    assert parse_timezone("UTC") == "UTC"
    for bad in ("Mars/Olympus", "../../etc/passwd", "Europe/Berlin\x00", "+02:00"):
        with pytest.raises(ArgError, match="Unknown time zone"):
            parse_timezone(bad)


def test_ids_and_ints() -> None:
    assert parse_id("#12") == 12
    assert parse_int("10d", 1, 30, "days") == 10
    with pytest.raises(ArgError, match="not an alert id"):
        parse_id("twelve")
    with pytest.raises(ArgError, match="31 days is out of range; give 1 to 30"):
        parse_int("31", 1, 30, "days")


def test_echo_is_bounded_and_printable() -> None:
    assert shown("x" * 5000) == "x" * MAX_ECHO + "…"
    assert shown("a\nb\x1b[31m") == "a?b?[31m"
    assert shown("   ") == "(empty)"


# --- /alert grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("cluster BTC 1% 50m short", "/alert cluster BTC 1% 50m short"),
        ("cluster 50m short 1% btc", "/alert cluster BTC 1% 50m short"),  # any order
        ("btc cluster $50M 0.5%", "/alert cluster BTC 0.5% 50m any"),
        ("cluster 1% 1,000,000", "/alert cluster BTC 1% 1m any"),  # default symbol
        ("cross BTC 96000 up", "/alert cross BTC 96000 up"),
        ("cross eth 3.5k below", "/alert cross ETH 3500 down"),
        ("spike BTC 50m 1h long", "/alert spike BTC 50m 1h long"),
        ("spike BTC 30m 50m", "/alert spike BTC 30m 50m any"),  # first 'Nm' is the amount
        ("spike BTC 4h 50m", "/alert spike BTC 50m 4h any"),  # an hour window is unambiguous
        ("spike ETH $2.5M", "/alert spike ETH 2.5m 1h any"),
        ("etf", "/alert etf reversal"),
        ("etf reversal", "/alert etf reversal"),
        ("etf 500m", "/alert etf 500m"),
        ("digest hourly", "/alert digest hourly"),
        ("digest after-etf", "/alert digest after-etf"),
        ("digest", "/alert digest daily"),
    ],
)
def test_alert_forms(args: str, expected: str) -> None:
    request = parse_alert(normalize_args(args.split()), SYMBOLS)
    assert command_line(request.sub) == expected
    assert not request.dm
    # The command line reads back to the same alert.
    again = parse_alert(expected.split()[1:], SYMBOLS)
    assert again.sub == request.sub


def test_alert_dm_word() -> None:
    request = parse_alert(["cluster", "BTC", "1%", "50m", "dm"], SYMBOLS)
    assert request.dm and request.sub.kind == Kind.CLUSTER


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("", "Say what to watch"),
        ("BTC 1% 50m", "'BTC' is not a kind of alert"),
        ("cluster BTC 1 50m", "'1' needs a unit: 1% for a distance, 1m for $1M"),
        ("cluster BTC 5x 1%", "'5x' is not an amount; try 50m or $1.2B"),
        ("cluster DOGEX 1% 50m", "Unknown symbol DOGEX. Try BTC, ETH, SOL."),
        ("cluster BTC 1% 2% 50m", "Two distances given ('1%' and '2%'); give one"),
        ("cluster BTC 50m", "Say how close"),
        ("cluster BTC 1%", "Say how big a cluster"),
        ("cluster BTC ETH 1% 50m", "Two symbols given"),
        ("cross BTC", "Say which price"),
        ("cross BTC 1% up", "'1%' is a percentage"),
        ("cross BTC 96k sideways", "Unknown symbol SIDEWAYS"),
        ("spike BTC 1h", "Say how much"),
        ("spike BTC 50 1h", "'50' needs a unit"),
        ("spike BTC 50m 1h 2h", "Two windows given"),
        ("etf 500", "'500' needs a unit"),
        ("etf sometimes", "'sometimes' is not an ETF alert"),
        ("digest weekly", "'weekly' is not a digest schedule"),
    ],
)
def test_alert_errors(args: str, message: str) -> None:
    with pytest.raises(ArgError) as err:
        parse_alert(normalize_args(args.split()), SYMBOLS)
    assert message in str(err.value)
    assert err.value.usage  # the kind's usage, or /alert's


# --- properties -------------------------------------------------------------------------------

PARSERS: list[Callable[[str], object]] = [
    parse_amount,
    parse_pct,
    parse_duration,
    parse_id,
    parse_quiet_range,
    parse_timezone,
    lambda t: parse_symbol_arg(t, SYMBOLS),
    lambda t: parse_venue(t, VENUES),
    lambda t: parse_int(t, 1, 30, "days"),
]

odd_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=50),
    st.text(alphabet="0123456789.,$%kKmMbBhdw:- ", max_size=30),
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=5), st.integers(1000, 20_000)),
)


@given(text=odd_text, which=st.integers(0, len(PARSERS) - 1))
def test_parsers_never_crash(text: str, which: int) -> None:
    """Any text parses or raises ArgError with a short, specific message."""
    try:
        PARSERS[which](text)
    except ArgError as exc:
        msg = str(exc)
        assert msg.strip()
        assert len(msg) < 200  # the echo of the input is bounded


@given(args=st.lists(odd_text, max_size=MAX_ARGS + 2))
@example(args=["cluster", "0.123456789%", "1234567.5"])
@example(args=["cross", "0.00000001", "eth"])
@example(args=["spike", "100000.5", "1.5h", "short"])
def test_alert_parser_never_crashes(args: list[str]) -> None:
    try:
        request = parse_alert(normalize_args(args), SYMBOLS)
    except ArgError as exc:
        assert str(exc).strip() and len(str(exc)) < 250
    else:
        # Whatever was understood reads back to itself through its command line.
        again = parse_alert(command_line(request.sub).split()[1:], SYMBOLS)
        assert again.sub == request.sub
