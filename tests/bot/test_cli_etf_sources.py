"""`liqbot etf` without --flows: flows from the source config.yaml names, cached per day."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bot import cli
from tests.fakes.http_server import FakeHttpServer, Reply


def _config(tmp_path: Path, etf: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"feeds:\n  etf:\n{etf}    cache_dir: {tmp_path / 'cache'}\n")
    return path


def test_file_source_from_config(
    tmp_path: Path, etf_json: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, f"    source: file\n    file: {etf_json}\n")
    assert cli.main(["etf", "--config", str(cfg), "--until", "2026-01-13", "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    [rev] = [r for r in doc["reversals"] if r["direction"] == "bullish"]
    assert rev["date"] == "2026-01-12"


def test_farside_over_http_is_parsed_and_cached(
    tmp_path: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = (shared_dir / "samples" / "farside_btc__fixture.html").read_text(encoding="utf-8")
    with FakeHttpServer() as server:
        server.always("/", Reply.text(html, headers={"Content-Type": "text/html"}))
        cfg = _config(tmp_path, f"    source: farside\n    farside_url: {server.url}/\n")
        assert cli.main(["etf", "--config", str(cfg), "--json"]) == 0
        first = orjson.loads(capsys.readouterr().out)
        assert cli.main(["etf", "--config", str(cfg), "--json"]) == 0  # same day: the cache
        second = orjson.loads(capsys.readouterr().out)
        assert server.count("/") == 1
    assert first["days"] == second["days"] and first["days"]
    assert list((tmp_path / "cache").glob("etf-farside-*.json"))


def test_keyed_source_without_key_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LIQBOT_COINGLASS_KEY", raising=False)
    cfg = _config(tmp_path, "    source: coinglass\n")
    assert cli.main(["etf", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "LIQBOT_COINGLASS_KEY" in err and err.count("\n") == 1


def test_failing_source_with_nothing_cached_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeHttpServer() as server:
        server.always("/", Reply.text("gone", status=404))
        cfg = _config(tmp_path, f"    source: farside\n    farside_url: {server.url}/\n")
        assert cli.main(["etf", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("liqbot etf: error: farside: ") and err.count("\n") == 1
    assert "404" in err
