"""``liqbot etf``: output, JSON shape and the bad-input convention (exit 2, one line)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bot import cli

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FARSIDE_JSON = SHARED / "data" / "etf" / "btc_etf_flows_farside.json"
FARSIDE_CSV = SHARED / "data" / "etf" / "btc_etf_flows_farside.csv"


def _main(argv: list[str]) -> int:
    """The real entry point: parse, run, and turn a LiqbotError into one line and exit 2."""
    return cli.main(argv)


def _day(d: str, **funds: float) -> dict[str, object]:
    return {"date": d, "total_musd": round(sum(funds.values()), 4), "funds": funds}


# Three outflow days (a holiday inside), a bullish turn, a confirming day.
_DAYS = [
    _day("2026-01-02", A=50.0, B=60.0, C=0.0),
    _day("2026-01-05", A=-100.0, B=-200.0, C=0.0),
    _day("2026-01-06", A=-250.0, B=-50.0, C=0.0),
    _day("2026-01-07", A=0.0, B=0.0, C=0.0),
    _day("2026-01-08", A=-290.0, B=-10.0, C=0.0),
    _day("2026-01-09", A=-20.0, B=120.0, C=0.0),
    _day("2026-01-12", A=300.0, B=10.0, C=0.0),
]


@pytest.fixture
def flows_file(tmp_path: Path) -> Path:
    path = tmp_path / "flows.json"
    path.write_bytes(orjson.dumps({"meta": {}, "days": _DAYS}))
    return path


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert _main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("liqbot etf: error: ")
    return err.strip()


def test_text_output(flows_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["etf", "--flows", str(flows_file)]) == 0
    out = capsys.readouterr().out
    assert "2026-01-07 Wed  market holiday" in out
    header = next(line for line in out.splitlines() if line.startswith("date"))
    assert header.split() == ["date", "A", "B", "total"]  # C never moved: no column
    assert "Latest     2026-01-12: +$310.0M, led by A +$300.0M, B +$10.0M" in out
    assert "Streak     2 trading days of inflows, +$410.0M (2026-01-09..2026-01-12)" in out
    assert "Rolling    3d +$110.0M (from 2026-01-08), 5d -$490.0M (from 2026-01-05)" in out
    assert (
        "  2026-01-09 BULLISH: +$100.0M after 3 days of outflows totalling -$900.0M "
        "(2026-01-05..2026-01-08)" in out
    )
    assert "    led by B +$120.0M" in out
    assert "    confirmed 2026-01-12: +$310.0M" in out


def test_days_limits_the_table(flows_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["etf", "--flows", str(flows_file), "--days", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line[:4] == "2026"]
    assert [r[:10] for r in rows] == ["2026-01-09", "2026-01-12"]


def test_json_output(flows_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["etf", "--flows", str(flows_file), "--until", "2026-01-09", "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["until"] == "2026-01-09"
    assert [d["date"] for d in doc["days"]][-2:] == ["2026-01-08", "2026-01-09"]
    assert doc["days"][-1] == {
        "date": "2026-01-09",
        "holiday": False,
        "total_musd": 100.0,
        "funds": {"A": -20.0, "B": 120.0, "C": 0.0},
    }
    assert doc["streak"] == {
        "direction": "inflows",
        "sign": 1,
        "days": 1,
        "sum_musd": 100.0,
        "start": "2026-01-09",
        "end": "2026-01-09",
    }
    assert [(r["days"], r["sum_musd"]) for r in doc["rolling"]] == [(3, -500.0), (5, -690.0)]
    assert set(doc["zscore"]) == {"value", "window", "n"} and doc["zscore"]["value"] is None
    (rev,) = doc["reversals"]
    assert rev == {
        "date": "2026-01-09",
        "direction": "bullish",
        "total_musd": 100.0,
        "prior_streak": {
            "days": 3,
            "sum_musd": -900.0,
            "start": "2026-01-05",
            "end": "2026-01-08",
        },
        "leaders": [{"fund": "B", "musd": 120.0}],
        "next_day": None,
        "confirmed": False,
    }


def test_rule_options(flows_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["etf", "--flows", str(flows_file), "--json", "--min-sum", "1000"]
    assert _main(argv) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["reversals"] == [] and doc["rule"]["min_sum_musd"] == 1000.0


def test_total_mismatch_is_a_note_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "f.csv"
    path.write_text("date,A,total_musd\n2026-01-12,1.0,5.0\n")
    assert _main(["etf", "--flows", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("note: ") and "kept the file's total" in err
    assert orjson.loads(out)["days"][0]["total_musd"] == 5.0


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    err = _one_line_error(capsys, ["etf", "--flows", str(missing)])
    assert err == f"liqbot etf: error: {missing}: no such file"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.json", b'{"days": [}', "bad.json, line 1, column 11: invalid JSON"),
        ("bad.csv", b"date,A,total_musd\n2026-01-12,abc,1\n", "bad.csv, line 2, column 'A'"),
    ],
)
def test_malformed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    err = _one_line_error(capsys, ["etf", "--flows", str(path)])
    assert err.startswith(f"liqbot etf: error: {tmp_path / expected}")


def test_until_before_first_day(flows_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_line_error(capsys, ["etf", "--flows", str(flows_file), "--until", "2025-12-31"])
    assert err == (
        f"liqbot etf: error: --until 2025-12-31 is before the first day in {flows_file} "
        "(2026-01-02)"
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--until", "2026-13-01"], "invalid date '2026-13-01'; expected YYYY-MM-DD"),
        (["--days", "0"], "expected a number >= 1, got '0'"),
    ],
)
def test_bad_arguments_exit_2(
    flows_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    # Without --flows the configured source is used (tests/bot/test_cli_etf_sources.py).
    with pytest.raises(SystemExit) as exc:
        _main(["etf", "--flows", str(flows_file), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert expected in err


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _main(["etf", "--help"])
    assert exc.value.code == 0
    assert "liqbot etf --flows" in capsys.readouterr().out


def test_handler_error_is_one_line(flows_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["etf", "--flows", str(flows_file), "--until", "2025-01-01"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# --- real data (../shared) -------------------------------------------------------------------


@pytest.fixture
def farside_json() -> Path:
    if not FARSIDE_JSON.is_file():
        pytest.skip(f"real ETF data not found at {FARSIDE_JSON} (../shared is absent)")
    return FARSIDE_JSON


def test_real_news_case(farside_json: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["etf", "--flows", str(farside_json), "--until", "2026-01-13"]) == 0
    out = capsys.readouterr().out
    assert (
        "  2026-01-12 BULLISH: +$116.7M after 4 days of outflows totalling -$1.38B "
        "(2026-01-06..2026-01-09)" in out
    )
    assert "confirmed 2026-01-13: +$753.8M, led by FBTC +$351.4M" in out

    assert _main(["etf", "--flows", str(farside_json), "--until", "2026-01-13", "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    (rev,) = doc["reversals"]
    assert (rev["date"], rev["direction"], rev["total_musd"]) == ("2026-01-12", "bullish", 116.7)
    assert rev["prior_streak"] == {
        "days": 4,
        "sum_musd": -1378.1,
        "start": "2026-01-06",
        "end": "2026-01-09",
    }
    assert rev["next_day"]["leaders"][0] == {"fund": "FBTC", "musd": 351.4}
    assert doc["latest"]["leaders"][0] == {"fund": "FBTC", "musd": 351.4}
    assert len(doc["days"]) == 10


def test_real_before_the_turn(farside_json: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["etf", "--flows", str(farside_json), "--until", "2026-01-09", "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert not [r for r in doc["reversals"] if r["direction"] == "bullish"]
    assert doc["streak"]["days"] == 4 and doc["reversal_armed"] is True


def test_real_csv_same_as_json(farside_json: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not FARSIDE_CSV.is_file():
        pytest.skip(f"real ETF data not found at {FARSIDE_CSV} (../shared is absent)")
    outs = []
    for path in (farside_json, FARSIDE_CSV):
        assert _main(["etf", "--flows", str(path), "--until", "2026-01-13", "--json"]) == 0
        doc = orjson.loads(capsys.readouterr().out)
        doc.pop("source")
        outs.append(doc)
    assert outs[0] == outs[1]
