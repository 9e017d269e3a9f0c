"""`liqbot liqmap` with one --bars file per venue: maps add up on one grid."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bot import cli
from core.synthetic import synthetic_bars
from tests.conftest import BarsCsvWriter


def _doc(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert cli.main(argv) == 0
    out: dict[str, object] = orjson.loads(capsys.readouterr().out)
    return out


@pytest.fixture
def two_venues(write_bars_csv: BarsCsvWriter) -> tuple[Path, Path]:
    hourly = 3_600_000
    a = write_bars_csv(synthetic_bars(300, interval_ms=hourly, seed=1), "binance.csv")
    b = write_bars_csv(synthetic_bars(300, interval_ms=hourly, seed=2), "okx.csv")
    return a, b


def test_maps_of_two_venues_add_up(
    two_venues: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_venues
    common = ["--json", "--bin", "100", "--range", "50"]
    one = _doc(["liqmap", "--bars", str(a), "--venue", "binance", *common], capsys)
    two = _doc(["liqmap", "--bars", str(b), "--venue", "okx", *common], capsys)
    both = _doc(["liqmap", "--bars", str(a), "--bars", str(b), *common], capsys)
    assert both["venues"] == ["binance", "okx"]  # named after the files by default
    assert both["bin_size"] == 100.0

    def total(doc: dict[str, object], key: str) -> float:
        bins = doc["bins"]
        assert isinstance(bins, list)
        return sum(float(row[key]) for row in bins)

    for key in ("long_usd", "short_usd"):
        assert total(both, key) == pytest.approx(total(one, key) + total(two, key), rel=1e-9)


def test_venue_count_must_match_files(
    two_venues: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_venues
    code = cli.main(["liqmap", "--bars", str(a), "--bars", str(b), "--venue", "binance"])
    assert code == 2
    err = capsys.readouterr().err
    assert "2 --bars file(s) but 1 --venue name(s)" in err
    assert err.count("\n") == 1
