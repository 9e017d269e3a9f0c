"""Alerts in words: a short label for lists, a promise for confirmations, and the command line
that creates the same alert again (what the "Edit" button shows)."""

from __future__ import annotations

import numpy as np

from alerts.subscriptions import Kind, Subscription
from core import fmt

__all__ = ["USAGES", "alert_params", "amount_arg", "command_line", "label", "promise"]

USAGES: dict[Kind, str] = {
    Kind.CLUSTER: "/alert cluster <symbol> <distance%> <min size> [long|short|any]",
    Kind.CROSS: "/alert cross <symbol> <price> [up|down|any]",
    Kind.SPIKE: "/alert spike <symbol> <amount> [window] [long|short|any]",
    Kind.ETF: "/alert etf reversal | /alert etf <daily flow, e.g. 500m>",
    Kind.DIGEST: "/alert digest hourly|daily|after-etf",
}

_DIGESTS = {
    "hourly": "the hourly digest",
    "daily": "the daily digest",
    "after-etf": "the digest after each day's ETF flows",
}


def amount_arg(usd: float) -> str:
    """An amount as the parser reads it back, exactly: 5e7 -> '50m', 1.25e9 -> '1.25b'."""
    for suffix, scale in (("b", 1e9), ("m", 1e6), ("k", 1e3)):
        v = usd / scale
        if v >= 1 and abs(v - round(v, 3)) < 1e-9 * v:
            return f"{_num(round(v, 3))}{suffix}"  # never an exponent: 1e6 -> '1000000b'
    return _num(usd)


def _num(x: float) -> str:
    """The shortest plain number that reads back as ``x``: no exponent, no trailing zeros."""
    return str(np.format_float_positional(x, trim="-"))


def _cluster_side(sub: Subscription) -> str:
    return "cluster" if sub.side == "any" else f"{sub.side} cluster"


def label(sub: Subscription) -> str:
    """Short, for a list: 'BTC within 1% of a short cluster of at least $50M'."""
    k, sym = sub.kind, sub.symbol or ""
    if k == Kind.CLUSTER:
        size = fmt.usd(sub.min_usd)
        return f"{sym} within {_num(sub.pct)}% of a {_cluster_side(sub)} of at least {size}"
    if k == Kind.CROSS:
        way = {"up": "crosses above", "down": "crosses below"}.get(sub.direction, "crosses")
        return f"{sym} {way} {fmt.price(sub.level)}" + (
            " either way" if sub.direction == "any" else ""
        )
    if k == Kind.SPIKE:
        side = "" if sub.side == "any" else f" {sub.side}"
        return (
            f"{sym}{side} liquidations of at least {fmt.usd(sub.min_usd)} "
            f"within {fmt.duration(sub.window_ms)}"
        )
    if k == Kind.ETF:
        if sub.etf_mode == "reversal":
            return "ETF flow reversals"
        return f"ETF daily net flow beyond ±{fmt.musd(sub.threshold_musd)}"
    return _DIGESTS.get(sub.schedule, f"the {sub.schedule} digest")


def promise(sub: Subscription) -> str:
    """What the bot will do, as a sentence: "I'll tell you when BTC is within 1% of a short
    cluster of at least $50M." """
    k, sym = sub.kind, sub.symbol or ""
    if k == Kind.DIGEST:
        return f"I'll send {label(sub)}."
    if k == Kind.CLUSTER:
        what = (
            f"{sym} is within {_num(sub.pct)}% of a {_cluster_side(sub)} of at least "
            f"{fmt.usd(sub.min_usd)}"
        )
    elif k == Kind.CROSS:
        what = label(sub)
    elif k == Kind.SPIKE:
        side = {"long": " of longs", "short": " of shorts"}.get(sub.side, "")
        what = (
            f"at least {fmt.usd(sub.min_usd)}{side} is liquidated on {sym} within "
            f"{fmt.duration(sub.window_ms)}"
        )
    elif sub.etf_mode == "reversal":
        what = "US spot Bitcoin ETF flows reverse after a streak"
    else:
        what = (
            "a day's net flow of the US spot Bitcoin ETFs is beyond "
            f"±{fmt.musd(sub.threshold_musd)}"
        )
    return f"I'll tell you when {what}."


def command_line(sub: Subscription) -> str:
    """The /alert line that creates this alert: '/alert cluster BTC 1% 50m short'."""
    k, sym = sub.kind, sub.symbol or ""
    if k == Kind.CLUSTER:
        words = [sym, f"{_num(sub.pct)}%", amount_arg(sub.min_usd), sub.side]
    elif k == Kind.CROSS:
        words = [sym, _num(sub.level), sub.direction]
    elif k == Kind.SPIKE:
        words = [sym, amount_arg(sub.min_usd), fmt.duration(sub.window_ms), sub.side]
    elif k == Kind.ETF:
        words = ["reversal" if sub.etf_mode == "reversal" else amount_arg(sub.threshold_musd * 1e6)]
    else:
        words = [sub.schedule]
    return " ".join(("/alert", str(k), *words))


def alert_params(sub: Subscription) -> tuple[object, ...]:
    """What makes two alerts of one chat the same alert (ids, owners and times aside)."""
    return (
        sub.kind,
        sub.symbol,
        sub.pct,
        sub.min_usd,
        sub.side,
        sub.level,
        sub.direction,
        sub.window_ms,
        sub.etf_mode,
        sub.threshold_musd,
        sub.schedule,
        sub.broadcast,
    )
