"""Settings: config.yaml parsed once into typed, frozen pydantic models.

Precedence: an explicit path, else $LIQBOT_CONFIG, else ./config.yaml when present, else the
defaults below. Secrets never live here: they come from environment variables. An error names
the file, the key and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.durations import parse_duration_ms
from core.errors import ConfigError, InputError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MapSettings(_Frozen):
    tiers: Literal["full", "coinglass", "coinank", "custom"] = "full"
    custom_tiers: dict[float, float] = Field(default_factory=dict)
    side_split: Literal["taker", "candle", "half"] = "taker"
    side_gain: float = Field(2.0, ge=0, le=20)
    candle_tilt: float = Field(0.2, ge=0, le=0.5)
    entry: Literal["range", "vwap", "close"] = "range"
    entry_points: int = Field(9, ge=1, le=64)
    entry_spacing: float = Field(0.001, gt=0, lt=0.1)
    position_usd: float = Field(10_000.0, gt=0)
    turnover: float = Field(0.2, ge=0, lt=1)
    oi_shrink: bool = True
    half_life_hours: float | None = Field(None, gt=0)
    bin_usd: float | None = Field(None, gt=0)
    lookback: str = "7d"
    range_pct: float = Field(12.0, gt=0, le=100)
    cluster_k: float = Field(1.5, gt=1)
    clusters_per_side: int = Field(5, ge=1, le=50)

    @field_validator("custom_tiers")
    @classmethod
    def _tiers_valid(cls, value: dict[float, float]) -> dict[float, float]:
        for lev, weight in value.items():
            if not 1 < lev <= 200:
                raise ValueError(f"leverage {lev:g} must be above 1 and at most 200")
            if weight < 0:
                raise ValueError(f"weight of {lev:g}x must not be negative")
        return value

    @field_validator("lookback")
    @classmethod
    def _lookback_valid(cls, value: str) -> str:
        try:
            parse_duration_ms(value)
        except InputError as exc:
            # pydantic reports ValueErrors with the key; any other exception would escape bare.
            raise ValueError(str(exc)) from None
        return value


class CalibrationSettings(_Frozen):
    scale_half_life_hours: float = Field(168.0, gt=0)
    intensity_half_life_hours: float = Field(2.0, gt=0)
    intensity_weight: float = Field(0.05, ge=0)


class EtfSettings(_Frozen):
    reversal_min_streak_days: int = Field(3, ge=1)
    reversal_min_streak_musd: float = Field(500.0, ge=0)
    recent_days: int = Field(5, ge=1)


class VenueUrls(_Frozen):
    rest_url: str
    ws_url: str

    @field_validator("rest_url", "ws_url")
    @classmethod
    def _url_valid(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError(f"expected an http(s):// or ws(s):// URL, got {value!r}")
        return value


class EtfSourceSettings(_Frozen):
    source: Literal["farside", "sosovalue", "coinglass", "file"] = "farside"
    farside_url: str = "https://farside.co.uk/bitcoin-etf-flow-all-data/"
    file: str | None = None
    cache_dir: str = "data/cache/etf"


class FeedsSettings(_Frozen):
    binance: VenueUrls = VenueUrls(
        rest_url="https://fapi.binance.com", ws_url="wss://fstream.binance.com/market"
    )
    okx: VenueUrls = VenueUrls(
        rest_url="https://www.okx.com", ws_url="wss://ws.okx.com:8443/ws/v5/public"
    )
    bybit: VenueUrls = VenueUrls(
        rest_url="https://api.bybit.com", ws_url="wss://stream.bybit.com/v5/public/linear"
    )
    timeout_s: float = Field(10.0, gt=0, le=120)
    etf: EtfSourceSettings = EtfSourceSettings()


class DatabaseSettings(_Frozen):
    # SQLite by default, created on first run; postgresql+asyncpg://... for scale-out.
    url: str = "sqlite+aiosqlite:///data/liqbot.db"

    @field_validator("url")
    @classmethod
    def _url_valid(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "expected sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db"
            )
        return value


class AlertSettings(_Frozen):
    """Alertmanager-style timing defaults (seconds) and per-chat quotas."""

    tick_s: float = Field(60.0, gt=0)
    group_wait_s: float = Field(10.0, ge=0)
    group_interval_s: float = Field(60.0, ge=0)
    cooldown_s: float = Field(900.0, ge=0)
    repeat_interval_s: float = Field(4 * 3600.0, gt=0)
    rearm_margin: float = Field(0.25, ge=0, lt=1)
    quota_per_chat: int = Field(50, ge=1)
    quota_per_chat_per_kind: int = Field(20, ge=1)
    misfire_grace_s: float = Field(30.0, gt=0)
    hourly_digest_cron: str = "0 * * * *"
    # US spot ETF flows are published after the US close: 22:00 UTC on weekdays.
    daily_digest_cron: str = "0 22 * * mon-fri"


class BotSettings(_Frozen):
    """What the bot tracks and answers for."""

    symbols: tuple[str, ...] = ("BTC", "ETH", "SOL")
    venues: tuple[Literal["binance", "okx", "bybit"], ...] = ("binance", "okx", "bybit")
    interval: Literal["1m", "5m", "15m", "1h"] = "5m"  # bar interval polled for the maps
    poll_s: float = Field(60.0, gt=0)  # how often the bar and open-interest polls run
    commands_per_user_per_min: int = Field(20, ge=1)

    @field_validator("symbols")
    @classmethod
    def _symbols_valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from core.feeds.symbols import parse_symbol  # core.feeds imports this module

        if not value:
            raise ValueError("list at least one symbol, e.g. [BTC]")
        try:
            return tuple(dict.fromkeys(parse_symbol(s) for s in value))
        except InputError as exc:
            raise ValueError(str(exc)) from None


class TelegramSettings(_Frozen):
    """Telegram Bot API. The token is $LIQBOT_TELEGRAM_TOKEN; the webhook secret is
    $LIQBOT_TELEGRAM_WEBHOOK_SECRET."""

    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = Field(8443, ge=1, le=65535)
    webhook_path: str = "telegram"
    webhook_url: str = ""  # the public https URL Telegram posts to (webhook mode)
    webhook_max_connections: int = Field(40, ge=1, le=100)  # Telegram's own bounds
    webhook_inline_replies: bool = True  # one-message replies in the webhook's HTTP answer


class DiscordSettings(_Frozen):
    """Discord REST and gateway. The token is $LIQBOT_DISCORD_TOKEN."""

    api_base: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg"
    # Before shard_ids, so that shard_ids' check can see it (pydantic validates in order).
    shard_count: int | None = Field(None, ge=1)
    shard_ids: tuple[int, ...] | None = None  # this instance's shards (scale-out); None = all

    @field_validator("shard_ids")
    @classmethod
    def _shard_ids_valid(
        cls, value: tuple[int, ...] | None, info: ValidationInfo
    ) -> tuple[int, ...] | None:
        # Instances split the shards between them by this list: an id out of range would never
        # connect, a duplicate would connect twice, and discord.py reads [] as "all shards".
        if value is None:
            return value
        count = info.data.get("shard_count")
        if count is None:
            if "shard_count" not in info.data:
                return value  # shard_count itself is invalid: that error is reported
            raise ValueError("needs discord.shard_count, the number of shards of all instances")
        if not value:
            raise ValueError("list at least one shard id, or leave it null for all shards")
        if bad := [i for i in value if not 0 <= i < count]:
            raise ValueError(
                f"ids must be 0 or more and below discord.shard_count ({count}): {bad}"
            )
        if len(set(value)) != len(value):
            raise ValueError("a shard id is listed more than once")
        return value


class LaneLimits(_Frozen):
    """One platform's send limits (DESIGN §7); broadcasts are paced below them."""

    global_per_s: float = Field(30.0, gt=0)
    per_chat_per_s: float = Field(1.0, gt=0)
    per_group_per_min: float = Field(20.0, gt=0)
    window_margin_s: float = Field(0.002, ge=0, le=1)  # clock rounding; sends count until done


class PacingSettings(_Frozen):
    telegram: LaneLimits = LaneLimits()
    discord: LaneLimits = LaneLimits(global_per_s=45.0, per_chat_per_s=4.0, per_group_per_min=240)


class Settings(_Frozen):
    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # A section whose lines were all deleted reads as null: it means "all defaults".
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data

    # Frozen models, so one shared default instance is safe.
    map: MapSettings = MapSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    etf: EtfSettings = EtfSettings()
    feeds: FeedsSettings = FeedsSettings()
    database: DatabaseSettings = DatabaseSettings()
    alerts: AlertSettings = AlertSettings()
    bot: BotSettings = BotSettings()
    telegram: TelegramSettings = TelegramSettings()
    discord: DiscordSettings = DiscordSettings()
    pacing: PacingSettings = PacingSettings()


def config_path(explicit: str | Path | None = None) -> Path | None:
    """The config file to read, or None to use the defaults."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("LIQBOT_CONFIG")
    if env:
        return Path(env)
    local = Path("config.yaml")
    return local if local.is_file() else None


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate settings; see the module docstring for where they come from."""
    found = config_path(path)
    if found is None:
        return Settings()
    try:
        text = found.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{found}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{found}: cannot read config ({exc})") from None
    return parse_settings(text, str(found))


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: YAML
    would keep the last silently, so a second ``turnover:`` pasted lower down would win."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # '<<' merges may repeat keys on purpose
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        except TypeError:  # an unhashable key: the constructor below says so
            pass
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _yaml_error(name: str, exc: yaml.YAMLError) -> ConfigError:
    """'config.yaml, line 5: expected ',' or ']', ... (while parsing a flow sequence that
    starts on line 4)': the line where parsing failed, and where the open construct began."""
    mark = getattr(exc, "problem_mark", None)
    where = f", line {mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or "invalid YAML"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and mark is not None and start.line != mark.line:
        problem += f" ({context} that starts on line {start.line + 1})"
    return ConfigError(f"{name}{where}: {problem}")


def parse_settings(text: str, name: str = "config.yaml") -> Settings:
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        raise _yaml_error(name, exc) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping of sections at the top level")
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        # An unknown key first: a misspelt key also leaves the key it meant "missing".
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against config.yaml's comments)"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"{name}: key '{key}': {msg}{more}") from None
