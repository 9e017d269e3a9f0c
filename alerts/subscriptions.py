"""Subscription kinds and their validation (issue: alert engine, deliverable 2).

A subscription belongs to a destination (a chat on a platform) and says what to watch:

* ``cluster``: price within ``pct`` % of a cluster of at least ``min_usd``, on ``side``.
* ``cross``: price crosses ``level`` (``direction`` up, down or any).
* ``spike``: realized liquidations of at least ``min_usd`` within ``window`` on ``side``.
* ``etf``: an ETF flow reversal, or a daily total flow beyond ``threshold_musd``.
* ``digest``: a scheduled summary (``schedule``: hourly, daily, or 'after-etf').

Validation is pure and gives one clear message per problem; quotas are per chat.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from core.errors import InputError

Side = Literal["any", "long", "short"]
Direction = Literal["up", "down", "any"]
EtfMode = Literal["reversal", "threshold"]


class Kind(StrEnum):
    CLUSTER = "cluster"
    CROSS = "cross"
    SPIKE = "spike"
    ETF = "etf"
    DIGEST = "digest"


@dataclass(frozen=True)
class Timing:
    """Per-subscription controls; seconds. ``expires_ms`` None means never."""

    cooldown_s: float = 900.0
    repeat_s: float = 4 * 3600.0
    rearm_margin: float = 0.25  # hysteresis: leave the condition by this share of its threshold
    expires_ms: int | None = None


@dataclass(frozen=True)
class Subscription:
    """One alert a chat asked for. Fields not used by ``kind`` keep their defaults."""

    id: int
    destination_id: int
    kind: Kind
    symbol: str | None  # None for etf and digest
    pct: float = 0.0  # cluster: distance threshold, percent
    min_usd: float = 0.0  # cluster, spike
    side: Side = "any"  # cluster, spike
    level: float = 0.0  # cross
    direction: Direction = "any"  # cross
    window_ms: int = 3_600_000  # spike
    etf_mode: EtfMode = "reversal"  # etf
    threshold_musd: float = 0.0  # etf threshold mode
    schedule: str = ""  # digest
    timing: Timing = Timing()
    created_ms: int = 0
    created_by: str = ""  # the platform user who set it ("" for a channel post)
    broadcast: bool = False  # one of the chat's broadcasts (/subscribe), not a personal alert


@dataclass(frozen=True)
class Quotas:
    per_chat: int = 50
    per_chat_per_kind: int = 20


def validate(sub: Subscription) -> Subscription:
    """The subscription unchanged, or InputError saying what is wrong and what is allowed."""
    k = sub.kind
    if k in (Kind.CLUSTER, Kind.CROSS, Kind.SPIKE) and not sub.symbol:
        raise InputError(f"a {k} alert needs a symbol, e.g. BTC")
    if k == Kind.CLUSTER:
        if not 0 < sub.pct <= 20:
            raise InputError(f"distance must be above 0% and at most 20%, got {sub.pct:g}%")
        if sub.min_usd < 1e5:
            raise InputError("a cluster alert needs a minimum size of at least $100K, e.g. $50M")
    elif k == Kind.CROSS:
        if not sub.level > 0:
            raise InputError("a cross alert needs a positive price level, e.g. 96000")
    elif k == Kind.SPIKE:
        if sub.min_usd < 1e5:
            raise InputError("a spike alert needs at least $100K, e.g. $25M")
        if not 60_000 <= sub.window_ms <= 86_400_000:
            raise InputError("a spike window must be between 1m and 24h")
    elif k == Kind.ETF:
        if sub.etf_mode == "threshold" and not sub.threshold_musd > 0:
            raise InputError("an ETF threshold alert needs a flow size, e.g. 500m")
    elif k == Kind.DIGEST and sub.schedule not in ("hourly", "daily", "after-etf"):
        raise InputError("a digest runs hourly, daily or after-etf")
    t = sub.timing
    if t.cooldown_s < 0 or t.repeat_s < t.cooldown_s:
        raise InputError("repeat interval must be at least the cooldown, and neither negative")
    if not 0 <= t.rearm_margin < 1:
        raise InputError("re-arm margin must be within 0..1")
    return sub


def check_quota(existing: list[Subscription], new: Subscription, quotas: Quotas) -> None:
    """InputError when the chat already has as many alerts as its quota allows."""
    mine = [s for s in existing if s.destination_id == new.destination_id]
    if len(mine) >= quotas.per_chat:
        raise InputError(f"this chat has {len(mine)} alerts, the most allowed; remove one first")
    same = sum(1 for s in mine if s.kind == new.kind)
    if same >= quotas.per_chat_per_kind:
        raise InputError(f"this chat has {same} {new.kind} alerts, the most allowed for that kind")
