"""``liqbot liqmap`` and ``liqbot backtest`` end to end through ``bot.cli.main``.

Bad input of any kind ends with exit status 2 and a plain message on stderr, never a traceback.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import orjson
import pytest

from bot.cli import main
from core.bars_csv import load_bars_csv
from core.estimator import EstimatorParams
from core.mapbuild import build_map
from core.synthetic import synthetic_bars

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
H = 3_600_000
N_BARS = 400


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config from the environment or the working directory: the defaults apply."""
    monkeypatch.delenv("LIQBOT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def bars_csv(write_bars_csv) -> Path:
    return write_bars_csv(synthetic_bars(N_BARS, interval_ms=H, seed=21), "btc_1h.csv")


@pytest.fixture
def no_liq_csv(write_bars_csv) -> Path:
    cols = ("ts", "open", "high", "low", "close", "oi_usd", "volume_usd", "taker_buy_usd")
    return write_bars_csv(synthetic_bars(N_BARS, interval_ms=H, seed=22), "noliq.csv", cols)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help and bad arguments
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    assert "Traceback" not in err and "Traceback" not in out
    assert err.strip(), "an error message is expected on stderr"
    for fragment in fragments:
        assert fragment in err, err


# --- liqmap ----------------------------------------------------------------------------------


def test_liqmap_json_document(bars_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["liqmap", "--bars", str(bars_csv), "--json"], capsys)
    assert code == 0, err
    doc = orjson.loads(out)
    bars = load_bars_csv(bars_csv)
    assert doc["price"] == bars.close[-1]
    assert doc["bin_size"] == 100.0
    assert doc["bars_used"] == 168  # 7 days of hourly bars
    assert doc["symbol"] == "BTC" and doc["venues"] == ["binance"] and doc["estimated"] is True
    assert set(doc["tiers"]) <= {10.0, 25.0, 50.0, 100.0, 150.0}

    bins = doc["bins"]
    assert bins and all(
        set(b) == {"price_low", "price_high", "long_usd", "short_usd"} for b in bins
    )
    lows = np.array([b["price_low"] for b in bins])
    highs = np.array([b["price_high"] for b in bins])
    np.testing.assert_allclose(highs - lows, 100.0)
    np.testing.assert_allclose(lows[1:], highs[:-1])
    assert lows[0] <= doc["price"] * 0.88 + 100 and highs[-1] >= doc["price"] * 1.12 - 100
    assert all(b["long_usd"] >= 0 and b["short_usd"] >= 0 for b in bins)

    # The same map straight from core: bins within ±12% of the price.
    window = bars.up_to(int(bars.ts[-1]) + H, 7 * 86_400_000)
    m = build_map(window, EstimatorParams(), symbol="BTC", venue="binance").window(12.0)
    assert sum(b["long_usd"] for b in bins) == pytest.approx(m.long_total.sum(), rel=1e-9)
    assert sum(b["short_usd"] for b in bins) == pytest.approx(m.short_total.sum(), rel=1e-9)

    cum = doc["cumulative"]
    assert set(cum) == {"long_peak_usd", "long_peak_price", "short_peak_usd", "short_peak_price"}
    assert cum["long_peak_usd"] > 0 and cum["short_peak_usd"] > 0
    assert cum["long_peak_price"] <= doc["price"] <= cum["short_peak_price"]

    assert isinstance(doc["clusters"], list) and doc["clusters"]
    for c in doc["clusters"]:
        assert c["side"] in ("long", "short")
        assert (c["price"] < doc["price"]) == (c["side"] == "long")
        assert (c["distance_pct"] < 0) == (c["side"] == "long")
        assert c["usd"] > 0
        assert sum(c["tiers"].values()) == pytest.approx(1.0)
        assert all(k.endswith("x") for k in c["tiers"])


def test_liqmap_options(bars_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bars = load_bars_csv(bars_csv)
    code, out, err = run_cli(
        [
            "liqmap",
            "--bars",
            str(bars_csv),
            "--json",
            "--tiers",
            "coinglass",
            "--bin",
            "250",
            "--range",
            "5",
            "--lookback",
            "3d",
            "--at",
            "2026-01-10T00:00Z",
            "--symbol",
            "eth",
            "--venue",
            "okx",
        ],
        capsys,
    )
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["bin_size"] == 250.0 and doc["range_pct"] == 5.0
    assert doc["bars_used"] == 72
    assert doc["at"] == "2026-01-10T00:00Z" and doc["map_time"] == "2026-01-10T00:00Z"
    assert doc["symbol"] == "ETH" and doc["venues"] == ["okx"]
    assert set(doc["tiers"]) <= {10.0, 25.0, 50.0, 100.0}
    i = int(np.searchsorted(bars.ts, 1_768_003_200_000))  # the bar opened at --at
    assert doc["price"] == bars.close[i - 1]
    assert all(b["price_high"] - b["price_low"] == 250.0 for b in doc["bins"])


def test_liqmap_table(bars_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["liqmap", "--bars", str(bars_csv)], capsys)
    assert code == 0, err
    assert "BTC estimated liquidation map at" in out
    assert "cumulative short liquidations peak at $" in out
    assert "cumulative long liquidations peak at $" in out
    assert "side" in out or "no dense clusters" in out
    assert err == ""


def test_liqmap_png(bars_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "map.png"
    code, out, err = run_cli(["liqmap", "--bars", str(bars_csv), "--png", str(png)], capsys)
    assert code == 0, err
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1_000
    assert f"chart written to {png}" in out
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_liqmap_at_before_the_data(bars_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        ["liqmap", "--bars", str(bars_csv), "--at", "2020-01-01T00:00Z"], capsys
    )
    assert_clean_error(code, out, err, "liqbot liqmap: error: ", "closed bar")
    assert len(err.strip().splitlines()) == 1
    assert out == ""


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--lookback", "7x"], ("argument --lookback", "invalid duration '7x'")),
        (["--lookback", "0d"], ("argument --lookback", "must be positive")),
        (["--at", "yesterday"], ("argument --at", "invalid time 'yesterday'", "ISO 8601")),
        (["--bin", "0"], ("argument --bin", "expected a positive number, got '0'")),
        (["--bin", "-5"], ("argument --bin", "expected a positive number")),
        (["--bin", "abc"], ("argument --bin", "expected a number, got 'abc'")),
        (["--bin", "inf"], ("argument --bin", "positive number")),
        (["--range", "0"], ("argument --range", "positive number")),
        (["--tiers", "binance"], ("argument --tiers", "invalid choice")),
    ],
)
def test_liqmap_bad_arguments(
    bars_csv: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragments: tuple[str, ...]
) -> None:
    code, out, err = run_cli(["liqmap", "--bars", str(bars_csv), *extra], capsys)
    assert_clean_error(code, out, err, "liqbot liqmap: error: ", *fragments)
    assert out == ""


def test_liqmap_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.csv"
    code, out, err = run_cli(["liqmap", "--bars", str(path)], capsys)
    assert_clean_error(code, out, err, f"liqbot liqmap: error: {path}: no such file")


def test_liqmap_malformed_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "ts,open,high,low,close,oi_usd\n"
        "1767225600000,100,102,99,101,5e9\n"
        "1767229200000,100,abc,99,101,5e9\n",
        encoding="utf-8",
    )
    code, out, err = run_cli(["liqmap", "--bars", str(path)], capsys)
    assert_clean_error(code, out, err, f"{path}, line 3, column 'high': expected a number")
    assert len(err.strip().splitlines()) == 1


def test_liqmap_bad_config(
    bars_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("map:\n  turnover: 2\n", encoding="utf-8")
    code, out, err = run_cli(["liqmap", "--bars", str(bars_csv), "--config", str(cfg)], capsys)
    assert_clean_error(code, out, err, "key 'map.turnover'", str(cfg))


def test_liqmap_png_not_written_on_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "m.png"
    code, out, err = run_cli(
        ["liqmap", "--bars", str(tmp_path / "x.csv"), "--png", str(png)], capsys
    )
    assert_clean_error(code, out, err, "no such file")
    assert not png.exists()


def test_liqmap_on_real_data_at_the_squeeze(
    market_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        ["liqmap", "--bars", str(market_csv), "--at", "2026-01-13T22:00Z", "--json"], capsys
    )
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["price"] == 94_040.0 and doc["bars_used"] == 168
    near = [c for c in doc["clusters"] if c["side"] == "short" and 0 < c["distance_pct"] <= 2]
    assert near and all(c["price"] < 96_863.7 for c in near)


# --- backtest --------------------------------------------------------------------------------


def _read_predictions(path: Path) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    return rows[0], rows[1:]


def test_backtest_writes_predictions_and_prints_metrics(
    bars_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "pred.csv"
    code, out, err = run_cli(["backtest", "--bars", str(bars_csv), "--out", str(out_csv)], capsys)
    assert code == 0, err
    header, rows = _read_predictions(out_csv)
    assert header == ["ts", "pred_long_usd", "pred_short_usd"]
    assert len(rows) == N_BARS
    bars = load_bars_csv(bars_csv)
    assert [int(r[0]) for r in rows] == bars.ts.tolist()
    assert all(float(r[1]) >= 0 and float(r[2]) >= 0 for r in rows)
    assert any(float(r[1]) > 0 for r in rows)
    assert f"{N_BARS} bars, tiers full, predictions written to {out_csv}" in out
    assert "conditional Spearman (headline)" in out
    assert "map alone, conditional Spearman" in out
    assert "scored after a 168-bar warm-up" in out


def test_backtest_json(bars_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_csv = tmp_path / "pred.csv"
    code, out, err = run_cli(
        [
            "backtest",
            "--bars",
            str(bars_csv),
            "--out",
            str(out_csv),
            "--json",
            "--tiers",
            "coinglass",
        ],
        capsys,
    )
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["bars"] == N_BARS and doc["warmup_bars"] == 168 and doc["tiers"] == "coinglass"
    assert doc["calibrated"] is True and doc["predictions"] == str(out_csv)
    for side in ("long", "short"):
        s = doc[side]
        assert isinstance(s["conditional_spearman"], float)
        assert -1 <= s["conditional_spearman"] <= 1
        assert s["n_bars"] == N_BARS - 168
        assert isinstance(doc["map_only"][side]["conditional_spearman"], float)
    assert out_csv.is_file()


def test_backtest_without_liquidation_columns(
    no_liq_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "pred.csv"
    code, out, err = run_cli(["backtest", "--bars", str(no_liq_csv), "--out", str(out_csv)], capsys)
    assert code == 0, err
    assert "nothing to score" in out
    header, rows = _read_predictions(out_csv)
    assert header == ["ts", "pred_long_usd", "pred_short_usd"] and len(rows) == N_BARS

    code, out, err = run_cli(
        ["backtest", "--bars", str(no_liq_csv), "--out", str(out_csv), "--json"], capsys
    )
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["calibrated"] is False and doc["long"] is None and doc["short"] is None


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (None, ("no such file",)),
        ("ts,open,high,low,close\n1767225600000,1,1,1,1\n", ("column 'oi_usd'",)),
        ("ts,open,high,low,close,oi_usd\n1767225600000,1,1,1,1,5\n", ("at least 2 bars",)),
        (
            "ts,open,high,low,close,oi_usd\n1767225600000,1,1,1,1,5\n1767225600000,1,1,1,1,5\n",
            ("line 3, column 'ts'", "timestamps must increase"),
        ),
    ],
)
def test_backtest_bad_input_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    fragments: tuple[str, ...],
) -> None:
    src = tmp_path / "in.csv"
    if content is not None:
        src.write_text(content, encoding="utf-8")
    out_csv = tmp_path / "pred.csv"
    code, out, err = run_cli(["backtest", "--bars", str(src), "--out", str(out_csv)], capsys)
    assert_clean_error(code, out, err, "liqbot backtest: error: ", *fragments)
    assert len(err.strip().splitlines()) == 1
    assert not out_csv.exists()


def test_backtest_unwritable_output(
    bars_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "missing-dir" / "pred.csv"
    code, out, err = run_cli(["backtest", "--bars", str(bars_csv), "--out", str(out_csv)], capsys)
    assert_clean_error(code, out, err, "cannot write")


def test_backtest_requires_out(bars_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["backtest", "--bars", str(bars_csv)], capsys)
    assert_clean_error(code, out, err, "--out")


def test_backtest_predictions_match_core(
    bars_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.backtest import run_backtest

    out_csv = tmp_path / "p.csv"
    code, _, err = run_cli(["backtest", "--bars", str(bars_csv), "--out", str(out_csv)], capsys)
    assert code == 0, err
    _, rows = _read_predictions(out_csv)
    r = run_backtest(load_bars_csv(bars_csv), EstimatorParams())
    np.testing.assert_allclose([float(x[1]) for x in rows], r.pred_long_usd, atol=0.006)
    np.testing.assert_allclose([float(x[2]) for x in rows], r.pred_short_usd, atol=0.006)


# --- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["--help"], ["liqmap", "--help"], ["backtest", "--help"], ["etf", "--help"]]
)
def test_help_exits_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(argv, capsys)
    assert code == 0
    assert out.startswith("usage: liqbot")


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli([], capsys)
    assert_clean_error(code, out, err, "liqbot: error:", "--help")
