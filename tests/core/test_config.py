"""config.yaml: parsing, precedence, errors that name the key and the file, and the mapping
of settings onto the model's parameters."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from core.calibration import CalibrationParams
from core.config import Settings, config_path, load_settings, parse_settings
from core.errors import ConfigError, InputError
from core.estimator import EstimatorParams
from core.model import calibration_params, estimator_params
from core.tiers import PRESETS

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"
H = 3_600_000


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIQBOT_CONFIG", raising=False)


def test_repo_config_parses_to_the_defaults() -> None:
    settings = load_settings(REPO_CONFIG)
    assert settings == Settings()
    assert settings.map.tiers == "full"
    assert settings.map.lookback == "7d"
    assert settings.map.turnover == 0.2
    assert settings.calibration.scale_half_life_hours == 168.0
    assert settings.etf.reversal_min_streak_musd == 500.0


def test_config_defaults_are_the_estimator_defaults() -> None:
    s = Settings()
    assert estimator_params(s.map, H) == EstimatorParams()
    assert calibration_params(s.calibration) == CalibrationParams()


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(pydantic.ValidationError):
        s.map.turnover = 0.5  # type: ignore[misc]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_empty_config_gives_defaults(text: str) -> None:
    assert parse_settings(text) == Settings()


def test_empty_section_gives_defaults() -> None:
    assert parse_settings("map:\n  # every key deleted\ncalibration:\n") == Settings()


def test_partial_config_overrides_only_its_keys() -> None:
    s = parse_settings(
        "map:\n  tiers: coinglass\n  turnover: 0\ncalibration:\n  intensity_weight: 0\n"
    )
    assert s.map.tiers == "coinglass" and s.map.turnover == 0.0
    assert s.map.entry == "range"
    assert s.calibration.intensity_weight == 0.0
    assert s.calibration.scale_half_life_hours == 168.0


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("map:\n  turnovr: 0.1\n", "map.turnovr", "unknown key"),
        ("maps:\n  turnover: 0.1\n", "maps", "unknown key"),
        ("map:\n  turnover: lots\n", "map.turnover", "number"),
        ("map:\n  turnover: 1.5\n", "map.turnover", "less than 1"),
        ("map:\n  turnover: -0.1\n", "map.turnover", "greater than or equal to 0"),
        ("map:\n  entry_points: 0\n", "map.entry_points", "greater than or equal to 1"),
        ("map:\n  entry_points: 2.5\n", "map.entry_points", "integer"),
        ("map:\n  cluster_k: 1\n", "map.cluster_k", "greater than 1"),
        ("map:\n  tiers: binance\n", "map.tiers", "full"),
        ("map:\n  entry: open\n", "map.entry", "range"),
        ("map:\n  oi_shrink: maybe\n", "map.oi_shrink", "bool"),
        ("map:\n  half_life_hours: 0\n", "map.half_life_hours", "greater than 0"),
        ("map:\n  custom_tiers: {1: 0.5}\n", "map.custom_tiers", "above 1"),
        ("map:\n  custom_tiers: {10: -1}\n", "map.custom_tiers", "must not be negative"),
        ("map: 5\n", "map", "dictionary"),
        ("calibration:\n  intensity_weight: -1\n", "calibration.intensity_weight", "greater"),
        ("etf:\n  recent_days: 0\n", "etf.recent_days", "greater than or equal to 1"),
        # nested sections, wrong types, lists
        ("feeds:\n  binance:\n    rest_urll: http://x\n", "feeds.binance.rest_urll", "unknown key"),
        ("feeds:\n  timeout: 5\n", "feeds.timeout", "unknown key"),
        (
            "pacing:\n  telegram:\n    global_per_s: fast\n",
            "pacing.telegram.global_per_s",
            "number",
        ),
        (
            "pacing:\n  discord:\n    per_chat_per_s: 0\n",
            "pacing.discord.per_chat_per_s",
            "greater than 0",
        ),
        (
            "feeds:\n  okx:\n    rest_url: ftp://x\n    ws_url: wss://y\n",
            "feeds.okx.rest_url",
            "expected an http(s):// or ws(s):// URL",
        ),
        ("feeds:\n  etf:\n    source: bloomberg\n", "feeds.etf.source", "farside"),
        ("bot:\n  venues: [binance, ftx]\n", "bot.venues.1", "'binance', 'okx' or 'bybit'"),
        ("bot:\n  symbols: [BTC, 'b t c']\n", "bot.symbols", "Unknown symbol b t c"),
        ("bot:\n  symbols: []\n", "bot.symbols", "at least one symbol"),
        ("bot: [BTC]\n", "bot", "dictionary"),
        ("database:\n  url: mysql://db/liqbot\n", "database.url", "postgresql+asyncpg://"),
        ("telegram:\n  webhook_port: 70000\n", "telegram.webhook_port", "65535"),
        ("alerts:\n  tick_s: [1, 2]\n", "alerts.tick_s", "number"),
        ("map:\n  custom_tiers: {x: 1}\n", "map.custom_tiers.x.[key]", "number"),
    ],
)
def test_bad_values_name_the_key_and_the_file(text: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "my.yaml")
    message = str(info.value)
    assert message.startswith(f"my.yaml: key '{key}': "), message
    assert fragment in message
    assert "Value error" not in message  # pydantic's prefix says nothing to a person
    assert isinstance(info.value, InputError)


def test_a_misspelt_key_is_named_before_the_key_it_leaves_missing() -> None:
    # rest_urll instead of rest_url: also "rest_url: Field required"; the typo is the cause.
    with pytest.raises(ConfigError) as info:
        parse_settings("feeds:\n  bybit:\n    ws_url: wss://x\n    rest_urll: https://y\n")
    assert str(info.value) == (
        "config.yaml: key 'feeds.bybit.rest_urll': unknown key (check the spelling against "
        "config.yaml's comments) (and 1 more problem(s))"
    )


def test_several_problems_are_counted() -> None:
    with pytest.raises(ConfigError, match=r"\(and 1 more problem\(s\)\)"):
        parse_settings("map:\n  turnover: 5\n  entry_points: 0\n")


def test_bad_lookback_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"my\.yaml: key 'map\.lookback'"):
        parse_settings("map:\n  lookback: 7x\n", "my.yaml")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("map:\n  turnover: [0.1\n", "my.yaml, line "),
        ("map:\n\tturnover: 0.1\n", "my.yaml, line 2"),
        (
            "map:\n  tiers: full\n  turnover: 0.2\n  entry: [range\n",
            "my.yaml, line 5: expected ',' or ']', but got '<stream end>' (while parsing a flow "
            "sequence that starts on line 4)",
        ),
        ("map:\n  tiers: 'full\n", "my.yaml, line 3: found unexpected end of stream"),
        ("map:\n  tiers: full\n   turnover: 0.2\n", "my.yaml, line 3: mapping values are not"),
        ("map:\n  turnover: 0.1\n  turnover: 0.2\n", "my.yaml, line 3: duplicate key 'turnover'"),
        ("map:\n  tiers: full\nbot: {}\nmap:\n  turnover: 0\n", "my.yaml, line 4: duplicate key"),
        (
            "feeds:\n  binance:\n    rest_url: http://a\n    rest_url: http://b\n",
            "my.yaml, line 4: duplicate key 'rest_url'",
        ),
        ("map:\n  custom_tiers: {[1]: 2}\n", "my.yaml, line 2: found unhashable key"),
        ("- a\n- b\n", "my.yaml: expected a mapping of sections at the top level"),
        ("just text\n", "expected a mapping"),
    ],
)
def test_malformed_yaml(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "my.yaml")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_explicit_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == f"{path}: no such config file"


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("map:\n  tiers: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(tmp_path)  # a directory


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("map:\n  turnover: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: key 'map.turnover'")


def test_precedence_explicit_then_env_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_path() is None
    assert load_settings() == Settings()

    (tmp_path / "config.yaml").write_text("map:\n  tiers: coinank\n", encoding="utf-8")
    assert config_path() == Path("config.yaml")
    assert load_settings().map.tiers == "coinank"

    env_file = tmp_path / "env.yaml"
    env_file.write_text("map:\n  tiers: coinglass\n", encoding="utf-8")
    monkeypatch.setenv("LIQBOT_CONFIG", str(env_file))
    assert load_settings().map.tiers == "coinglass"

    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("map:\n  tiers: full\n  turnover: 0.5\n", encoding="utf-8")
    s = load_settings(explicit)
    assert (s.map.tiers, s.map.turnover) == ("full", 0.5)


def test_env_file_that_is_missing_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIQBOT_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match=r"gone\.yaml: no such config file"):
        load_settings()


# --- settings -> model parameters ------------------------------------------------------------


def test_estimator_params_from_settings() -> None:
    s = parse_settings(
        "map:\n  tiers: custom\n  custom_tiers: {10: 1, 50: 3}\n  half_life_hours: 12\n"
        "  side_split: candle\n  entry: vwap\n  turnover: 0\n  oi_shrink: false\n"
    )
    p = estimator_params(s.map, 15 * 60_000)
    assert p.tiers.leverages == (10.0, 50.0)
    assert p.tiers.weights == pytest.approx((0.25, 0.75))
    assert p.half_life_bars == pytest.approx(48.0)  # 12 h of 15-minute bars
    assert (p.side_split, p.entry, p.turnover, p.oi_shrink) == ("candle", "vwap", 0.0, False)
    assert estimator_params(s.map, 0).half_life_bars is None  # unknown interval: no decay


def test_tier_override_wins_over_config() -> None:
    s = parse_settings("map:\n  tiers: coinank\n")
    assert estimator_params(s.map, H).tiers is PRESETS["coinank"]
    assert estimator_params(s.map, H, "coinglass").tiers is PRESETS["coinglass"]


def test_custom_tiers_without_weights_is_an_input_error() -> None:
    s = parse_settings("map:\n  tiers: custom\n")
    with pytest.raises(InputError, match="custom"):
        estimator_params(s.map, H)


def test_calibration_params_from_settings() -> None:
    s = parse_settings("calibration:\n  scale_half_life_hours: 24\n  intensity_weight: 0.1\n")
    c = calibration_params(s.calibration)
    assert (c.scale_half_life_h, c.intensity_half_life_h, c.intensity_weight) == (24.0, 2.0, 0.1)
