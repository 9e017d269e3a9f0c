"""``/alert`` arguments -> a :class:`Subscription` draft, in any order where that is unambiguous.

Each token is recognised by its form: ``1%`` is a distance, ``50m``/``$50M``/``1,000,000`` an
amount, ``1h`` a window, ``long``/``short``/``any`` a side, ``up``/``down`` a direction, anything
else a symbol. ``50m`` is both fifty million and fifty minutes: in a spike alert the first such
token is the amount and the second the window, as the usage line orders them. A bare number
under 1000 is refused with the forms it could have meant, rather than guessed.

The draft has ``id`` and ``destination_id`` 0; the command fills them when it stores it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from alerts.subscriptions import Direction, Kind, Side, Subscription
from bot.cmd_alert_text import USAGES
from bot.command_parse import (
    AmountTooLarge,
    ArgError,
    is_pct,
    looks_numeric,
    parse_amount,
    parse_direction,
    parse_duration,
    parse_pct,
    parse_side,
    parse_symbol_arg,
    shown,
)

__all__ = ["AlertRequest", "parse_alert"]

ALERT_USAGE = "/alert cluster|cross|spike|etf|digest ... (see /help alert)"

_KINDS: dict[str, Kind] = {
    "cluster": Kind.CLUSTER,
    "clusters": Kind.CLUSTER,
    "cross": Kind.CROSS,
    "level": Kind.CROSS,
    "price": Kind.CROSS,
    "spike": Kind.SPIKE,
    "liqs": Kind.SPIKE,
    "liquidations": Kind.SPIKE,
    "etf": Kind.ETF,
    "etfs": Kind.ETF,
    "flows": Kind.ETF,
    "digest": Kind.DIGEST,
}
_SCHEDULES = {
    "hourly": "hourly",
    "hour": "hourly",
    "daily": "daily",
    "day": "daily",
    "after-etf": "after-etf",
    "after_etf": "after-etf",
    "afteretf": "after-etf",
    "etf": "after-etf",
}
_BARE = re.compile(r"^[0-9]+(?:\.[0-9]+)?$", re.ASCII)
_AMBIGUOUS_M = re.compile(r"^[0-9]+(?:\.[0-9]+)?\s*m$", re.ASCII | re.IGNORECASE)
_WINDOW = re.compile(r"^[0-9]+(?:\.[0-9]+)?\s*(h|hr|hrs|d|w|min|mins)$", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True)
class AlertRequest:
    sub: Subscription
    dm: bool  # deliver to the caller's Discord DM instead of this chat


class _Slots:
    """Collects one value per slot; a second value for a slot is an error naming both."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.values: dict[str, object] = {}
        self.tokens: dict[str, str] = {}

    def put(self, slot: str, token: str, value: object) -> None:
        if slot in self.values:
            raise self.error(
                f"Two {slot}s given ('{shown(self.tokens[slot])}' and '{shown(token)}'); give one"
            )
        self.values[slot] = value
        self.tokens[slot] = token

    def has(self, slot: str) -> bool:
        return slot in self.values

    def num(self, slot: str, default: float) -> float:
        v = self.values.get(slot)
        return float(v) if isinstance(v, int | float) else default

    def text(self, slot: str, default: str) -> str:
        v = self.values.get(slot)
        return v if isinstance(v, str) else default

    def error(self, message: str) -> ArgError:
        return ArgError(message, USAGES[self.kind])


def _unitless(token: str, kind: Kind, meanings: str) -> ArgError:
    return ArgError(f"'{shown(token)}' needs a unit: {meanings}", USAGES[kind])


def parse_alert(args: Sequence[str], symbols: Sequence[str]) -> AlertRequest:
    """The alert these (normalized) arguments ask for; ArgError with the kind's usage if not."""
    words = [a for a in args if a.lower() != "dm"]
    dm = len(words) < len(args)
    kind_at = next((i for i, w in enumerate(words) if w.lower() in _KINDS), None)
    if kind_at is None:
        what = f"'{shown(words[0])}' is not a kind of alert" if words else "Say what to watch"
        raise ArgError(f"{what}; choose cluster, cross, spike, etf or digest", ALERT_USAGE)
    kind = _KINDS[words[kind_at].lower()]
    rest = words[:kind_at] + words[kind_at + 1 :]
    parser = {
        Kind.CLUSTER: _cluster,
        Kind.CROSS: _cross,
        Kind.SPIKE: _spike,
        Kind.ETF: _etf,
        Kind.DIGEST: _digest,
    }[kind]
    return AlertRequest(parser(rest, symbols), dm)


def _symbol(slots: _Slots, token: str, symbols: Sequence[str]) -> None:
    try:
        slots.put("symbol", token, parse_symbol_arg(token, symbols))
    except ArgError as exc:
        raise slots.error(str(exc)) from None


def _cluster(rest: Sequence[str], symbols: Sequence[str]) -> Subscription:
    s = _Slots(Kind.CLUSTER)
    for tok in rest:
        side = parse_side(tok)
        if side is not None:
            s.put("side", tok, side)
        elif is_pct(tok):
            s.put("distance", tok, parse_pct(tok))
        elif _BARE.match(tok) and float(tok) < 1000:
            raise _unitless(tok, Kind.CLUSTER, f"{tok}% for a distance, {tok}m for ${tok}M")
        elif looks_numeric(tok):
            s.put("size", tok, _amount(s, tok))
        else:
            _symbol(s, tok, symbols)
    if not s.has("distance"):
        raise s.error("Say how close, e.g. 1% (within 1% of the cluster)")
    if not s.has("size"):
        raise s.error("Say how big a cluster, e.g. 50m (at least $50M)")
    return Subscription(
        id=0,
        destination_id=0,
        kind=Kind.CLUSTER,
        symbol=s.text("symbol", symbols[0]),
        pct=s.num("distance", 0.0),
        min_usd=s.num("size", 0.0),
        side=_side(s.text("side", "any")),
    )


def _cross(rest: Sequence[str], symbols: Sequence[str]) -> Subscription:
    s = _Slots(Kind.CROSS)
    for tok in rest:
        direction = parse_direction(tok)
        if direction is not None:
            s.put("direction", tok, direction)
        elif is_pct(tok):
            raise s.error(
                f"'{shown(tok)}' is a percentage; a cross alert needs a price, e.g. 96000"
            )
        elif looks_numeric(tok):
            s.put("price", tok, _amount(s, tok, "a price; try 96000 or 96.5k"))
        else:
            _symbol(s, tok, symbols)
    if not s.has("price"):
        raise s.error("Say which price to watch, e.g. 96000")
    return Subscription(
        id=0,
        destination_id=0,
        kind=Kind.CROSS,
        symbol=s.text("symbol", symbols[0]),
        level=s.num("price", 0.0),
        direction=_direction(s.text("direction", "any")),
    )


def _spike(rest: Sequence[str], symbols: Sequence[str]) -> Subscription:
    s = _Slots(Kind.SPIKE)
    for tok in rest:
        side = parse_side(tok)
        if side is not None:
            s.put("side", tok, side)
        elif _WINDOW.match(tok) or (_AMBIGUOUS_M.match(tok) and s.has("amount")):
            s.put("window", tok, _window(s, tok))
        elif _BARE.match(tok) and float(tok) < 1000:
            raise _unitless(tok, Kind.SPIKE, f"{tok}m for ${tok}M, {tok}h for a window")
        elif is_pct(tok):
            raise s.error(
                f"'{shown(tok)}' is a percentage; a spike alert needs an amount, e.g. 50m"
            )
        elif looks_numeric(tok):
            s.put("amount", tok, _amount(s, tok))
        else:
            _symbol(s, tok, symbols)
    if not s.has("amount"):
        raise s.error("Say how much, e.g. 50m (at least $50M liquidated)")
    return Subscription(
        id=0,
        destination_id=0,
        kind=Kind.SPIKE,
        symbol=s.text("symbol", symbols[0]),
        min_usd=s.num("amount", 0.0),
        window_ms=int(s.num("window", 3_600_000)),
        side=_side(s.text("side", "any")),
    )


def _etf(rest: Sequence[str], symbols: Sequence[str]) -> Subscription:
    s = _Slots(Kind.ETF)
    for tok in rest:
        if tok.lower() in ("reversal", "reversals", "turn", "turns"):
            s.put("mode", tok, "reversal")
        elif _BARE.match(tok) and float(tok) < 100_000:
            raise _unitless(tok, Kind.ETF, f"{tok}m for a daily flow of ${tok}M")
        elif looks_numeric(tok):
            s.put("mode", tok, _amount(s, tok) / 1e6)
        else:
            raise s.error(f"'{shown(tok)}' is not an ETF alert; try reversal or 500m")
    mode = s.values.get("mode", "reversal")
    if isinstance(mode, float):
        return Subscription(0, 0, Kind.ETF, None, etf_mode="threshold", threshold_musd=mode)
    return Subscription(0, 0, Kind.ETF, None, etf_mode="reversal")


def _digest(rest: Sequence[str], symbols: Sequence[str]) -> Subscription:
    s = _Slots(Kind.DIGEST)
    for tok in rest:
        schedule = _SCHEDULES.get(tok.lower())
        if schedule is None:
            raise s.error(
                f"'{shown(tok)}' is not a digest schedule; choose hourly, daily or after-etf"
            )
        s.put("schedule", tok, schedule)
    return Subscription(0, 0, Kind.DIGEST, None, schedule=s.text("schedule", "daily"))


def _amount(s: _Slots, tok: str, expected: str = "an amount; try 50m or $1.2B") -> float:
    try:
        return parse_amount(tok)
    except AmountTooLarge as exc:
        raise s.error(str(exc)) from None
    except ArgError:
        raise s.error(f"'{shown(tok)}' is not {expected}") from None


def _window(s: _Slots, tok: str) -> int:
    try:
        return parse_duration(tok, what="window")
    except ArgError as exc:
        raise s.error(str(exc)) from None


def _side(value: str) -> Side:
    return parse_side(value) or "any"


def _direction(value: str) -> Direction:
    return parse_direction(value) or "any"
