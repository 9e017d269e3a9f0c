"""Typed, platform-neutral notification payloads (DESIGN §2, §6; issue 4 deliverable 7).

The engine emits these; the outbox stores them as plain dicts; bot/ renders them per platform.
Each payload is a frozen dataclass of structured numbers with a plain-text ``headline`` that says
why it fired, and optional ``details`` lines. No markdown or HTML here: bot/ escapes and styles.

* :class:`ClusterApproach`: "BTC $95,734 is 0.5% below a $157M short cluster at $96,202 (100x 45%,
  50x 38%)"
* :class:`LevelCross`: "BTC crossed above $96,000: now $96,150, was $95,800"
* :class:`LiqSpike`: "BTC liquidations: $182.4M in 1h (shorts $150.1M, longs $32.3M), above your
  $100M alert"
* :class:`EtfReversal`: "ETF flows reversed: +$753.8M today after 4 days of outflows totalling
  -$1.38B; FBTC led with +$351.4M"
* :class:`EtfFlow`: "ETF net flows +$753.8M on 2026-01-13, beyond your $500M threshold; FBTC led
  with +$351.4M"
* :class:`Digest`: "Hourly digest: BTC $95,734, ETH $3,312" plus a line per symbol.

:class:`Outgoing` addresses one payload to one destination for one subscription; grouping
(alerts/grouping.py) turns a chat's outgoing notifications into one :class:`GroupedMessage`.
:func:`to_dict` / :func:`from_dict` (and the ``message_*`` pair) give JSON-safe dicts: NaN is
stored as null, dates as ISO strings, tuples as lists.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from enum import StrEnum
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from core import fmt
from core.etf_report import DayFlow, FlowReport, FundFlow
from core.liqmap import Cluster
from core.snapshot import Snapshot

__all__ = [
    "ClusterApproach",
    "Digest",
    "DigestItem",
    "EtfFlow",
    "EtfReversal",
    "GroupedMessage",
    "LevelCross",
    "LiqSpike",
    "NoticeKind",
    "Notification",
    "Outgoing",
    "from_dict",
    "message_from_dict",
    "message_to_dict",
    "to_dict",
]


class NoticeKind(StrEnum):
    CLUSTER_APPROACH = "cluster_approach"
    LEVEL_CROSS = "level_cross"
    LIQ_SPIKE = "liq_spike"
    ETF_REVERSAL = "etf_reversal"
    ETF_FLOW = "etf_flow"
    DIGEST = "digest"


def _led(leaders: Sequence[FundFlow]) -> str:
    if not leaders:
        return ""
    return f"; {leaders[0].fund} led with {fmt.musd(leaders[0].musd, signed=True)}"


def _others(leaders: Sequence[FundFlow]) -> tuple[str, ...]:
    rest = ", ".join(f"{f.fund} {fmt.musd(f.musd, signed=True)}" for f in leaders[1:])
    return (f"Also: {rest}",) if rest else ()


@dataclass(frozen=True)
class ClusterApproach:
    """Price came within ``threshold_pct`` of a cluster of at least ``min_usd``.

    ``tiers`` are (leverage, share of ``cluster_usd``), largest first (``Cluster.top_tiers``).
    """

    kind: ClassVar[NoticeKind] = NoticeKind.CLUSTER_APPROACH
    symbol: str
    ts_ms: int
    price: float
    side: str  # "long" or "short"
    cluster_price: float
    cluster_usd: float
    tiers: tuple[tuple[float, float], ...] = ()
    threshold_pct: float = math.nan
    min_usd: float = math.nan

    @classmethod
    def from_cluster(
        cls,
        snap: Snapshot,
        cluster: Cluster,
        *,
        threshold_pct: float = math.nan,
        min_usd: float = math.nan,
        n_tiers: int = 2,
    ) -> ClusterApproach:
        return cls(
            symbol=snap.symbol,
            ts_ms=snap.ts_ms,
            price=snap.price,
            side=cluster.side,
            cluster_price=cluster.price,
            cluster_usd=cluster.usd,
            tiers=tuple(cluster.top_tiers(n_tiers)),
            threshold_pct=threshold_pct,
            min_usd=min_usd,
        )

    @property
    def distance_pct(self) -> float:
        """Unsigned distance from the price to the cluster, percent of the price."""
        return abs(self.cluster_price - self.price) / self.price * 100

    @property
    def headline(self) -> str:
        where = "below" if self.price < self.cluster_price else "above"
        tiers = ", ".join(f"{fmt.leverage(lev)} {fmt.share(s)}" for lev, s in self.tiers)
        return (
            f"{self.symbol} {fmt.price(self.price)} is {fmt.pct(self.distance_pct)} {where} a "
            f"{fmt.usd(self.cluster_usd)} {self.side} cluster at {fmt.price(self.cluster_price)}"
            + (f" ({tiers})" if tiers else "")
        )

    @property
    def details(self) -> tuple[str, ...]:
        out = ["Liquidation maps are model estimates, not exchange data."]
        if math.isfinite(self.threshold_pct) and math.isfinite(self.min_usd):
            out.insert(
                0,
                f"Your alert: within {fmt.pct(self.threshold_pct)} of a cluster of at least "
                f"{fmt.usd(self.min_usd)}.",
            )
        return tuple(out)


@dataclass(frozen=True)
class LevelCross:
    """Price crossed ``level`` between the previous tick and this one."""

    kind: ClassVar[NoticeKind] = NoticeKind.LEVEL_CROSS
    symbol: str
    ts_ms: int
    level: float
    price: float
    prev_price: float

    @property
    def direction(self) -> str:
        return "up" if self.price >= self.prev_price else "down"

    @property
    def headline(self) -> str:
        way = "above" if self.direction == "up" else "below"
        return (
            f"{self.symbol} crossed {way} {fmt.price(self.level)}: now {fmt.price(self.price)}, "
            f"was {fmt.price(self.prev_price)}"
        )

    @property
    def details(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class LiqSpike:
    """Realized liquidations over ``window_ms`` reached ``threshold_usd`` on ``side``."""

    kind: ClassVar[NoticeKind] = NoticeKind.LIQ_SPIKE
    symbol: str
    ts_ms: int
    window_ms: int
    long_usd: float
    short_usd: float
    threshold_usd: float
    side: str = "any"  # "any", "long" or "short": what the subscription counts

    @property
    def usd(self) -> float:
        """The amount compared with the threshold."""
        return {"long": self.long_usd, "short": self.short_usd}.get(
            self.side, self.long_usd + self.short_usd
        )

    @property
    def headline(self) -> str:
        window = fmt.duration(self.window_ms)
        alert = f"above your {fmt.usd(self.threshold_usd)} alert"
        if self.side in ("long", "short"):
            return (
                f"{self.symbol} {self.side} liquidations: {fmt.usd(self.usd)} in {window}, {alert}"
            )
        return (
            f"{self.symbol} liquidations: {fmt.usd(self.usd)} in {window} (shorts "
            f"{fmt.usd(self.short_usd)}, longs {fmt.usd(self.long_usd)}), {alert}"
        )

    @property
    def details(self) -> tuple[str, ...]:
        return ("Binance and OKX report at most one liquidation per second: a lower bound.",)


@dataclass(frozen=True)
class EtfReversal:
    """ETF flows changed sign after a long, large streak (``core.etf_report.Reversal``).

    ``date``/``today_musd``/``leaders`` are the latest trading day; ``reversal_date`` is the day
    the sign turned (the same day, or earlier when the new direction already continued).
    """

    kind: ClassVar[NoticeKind] = NoticeKind.ETF_REVERSAL
    date: dt.date
    today_musd: float
    prior_days: int
    prior_sum_musd: float
    leaders: tuple[FundFlow, ...] = ()
    reversal_date: dt.date | None = None
    reversal_musd: float = math.nan

    @classmethod
    def from_report(cls, report: FlowReport) -> EtfReversal | None:
        """The latest reversal of ``report`` as seen on its latest day, or None."""
        rev = report.latest_reversal
        if rev is None:
            return None
        return cls(
            date=report.latest.date,
            today_musd=report.latest.total_musd,
            prior_days=rev.prior_streak.days,
            prior_sum_musd=rev.prior_streak.sum_musd,
            leaders=report.latest.leaders,
            reversal_date=rev.date,
            reversal_musd=rev.total_musd,
        )

    @property
    def symbol(self) -> None:
        return None

    @property
    def headline(self) -> str:
        prior = "outflows" if self.prior_sum_musd < 0 else "inflows"
        days = f"{self.prior_days} day{'s' if self.prior_days != 1 else ''}"
        return (
            f"ETF flows reversed: {fmt.musd(self.today_musd, signed=True)} today after {days} of "
            f"{prior} totalling {fmt.musd(self.prior_sum_musd, signed=True)}{_led(self.leaders)}"
        )

    @property
    def details(self) -> tuple[str, ...]:
        out = list(_others(self.leaders))
        if self.reversal_date is not None and self.reversal_date != self.date:
            out.append(
                f"The turn came on {self.reversal_date.isoformat()} with "
                f"{fmt.musd(self.reversal_musd, signed=True)}."
            )
        return tuple(out)


@dataclass(frozen=True)
class EtfFlow:
    """One day's total ETF flow went beyond +-``threshold_musd``."""

    kind: ClassVar[NoticeKind] = NoticeKind.ETF_FLOW
    date: dt.date
    total_musd: float
    threshold_musd: float
    leaders: tuple[FundFlow, ...] = ()

    @classmethod
    def from_day(cls, day: DayFlow, threshold_musd: float) -> EtfFlow:
        return cls(day.date, day.total_musd, threshold_musd, day.leaders)

    @property
    def symbol(self) -> None:
        return None

    @property
    def headline(self) -> str:
        return (
            f"ETF net flows {fmt.musd(self.total_musd, signed=True)} on {self.date.isoformat()}, "
            f"beyond your {fmt.musd(self.threshold_musd)} threshold{_led(self.leaders)}"
        )

    @property
    def details(self) -> tuple[str, ...]:
        return _others(self.leaders)


@dataclass(frozen=True)
class DigestItem:
    """One symbol in a digest: price, realized liquidations, nearest cluster on each side."""

    symbol: str
    price: float
    liq_window_ms: int = 3_600_000
    liq_long_usd: float = math.nan
    liq_short_usd: float = math.nan
    short_cluster: tuple[float, float] | None = None  # (price, usd) nearest above
    long_cluster: tuple[float, float] | None = None  # (price, usd) nearest below
    stale: bool = False

    @classmethod
    def from_snapshot(cls, snap: Snapshot, liq_window: str = "1h") -> DigestItem:
        liq = snap.liqs.get(liq_window)

        def nearest(side: str) -> tuple[float, float] | None:
            found = [c for c in snap.clusters if c.side == side]
            c = min(found, key=lambda c: abs(c.price - snap.price), default=None)
            return None if c is None else (c.price, c.usd)

        return cls(
            symbol=snap.symbol,
            price=snap.price,
            liq_window_ms=liq.window_ms if liq else 3_600_000,
            liq_long_usd=liq.long_usd if liq else math.nan,
            liq_short_usd=liq.short_usd if liq else math.nan,
            short_cluster=nearest("short"),
            long_cluster=nearest("long"),
            stale=snap.is_stale,
        )

    @property
    def line(self) -> str:
        parts = [f"{self.symbol} {fmt.price(self.price)}"]
        if self.stale:
            parts[0] += " (stale data)"
        if math.isfinite(self.liq_long_usd) and math.isfinite(self.liq_short_usd):
            total = self.liq_long_usd + self.liq_short_usd
            parts.append(
                f"liquidations {fmt.duration(self.liq_window_ms)} {fmt.usd(total)} "
                f"(longs {fmt.usd(self.liq_long_usd)}, shorts {fmt.usd(self.liq_short_usd)})"
            )
        for side, c in (("short", self.short_cluster), ("long", self.long_cluster)):
            if c is not None:
                away = (c[0] - self.price) / self.price * 100
                parts.append(
                    f"nearest {side} cluster {fmt.usd(c[1])} at {fmt.price(c[0])} "
                    f"({fmt.pct(away, signed=True)})"
                )
        return "; ".join(parts)


@dataclass(frozen=True)
class Digest:
    """A scheduled summary (``schedule``: hourly, daily or after-etf) of several symbols."""

    kind: ClassVar[NoticeKind] = NoticeKind.DIGEST
    schedule: str
    ts_ms: int
    items: tuple[DigestItem, ...] = ()
    etf: DayFlow | None = None  # the latest trading day's ETF flows
    etf_streak_days: int = 0
    etf_streak_musd: float = math.nan

    @classmethod
    def build(
        cls,
        schedule: str,
        ts_ms: int,
        snapshots: Sequence[Snapshot],
        etf: FlowReport | None = None,
        liq_window: str = "1h",
    ) -> Digest:
        return cls(
            schedule=schedule,
            ts_ms=ts_ms,
            items=tuple(DigestItem.from_snapshot(s, liq_window) for s in snapshots),
            etf=None if etf is None else etf.latest,
            etf_streak_days=0 if etf is None else etf.streak.days * etf.streak.sign,
            etf_streak_musd=math.nan if etf is None else etf.streak.sum_musd,
        )

    @property
    def symbol(self) -> None:
        return None

    @property
    def headline(self) -> str:
        title = {"hourly": "Hourly digest", "daily": "Daily digest"}.get(
            self.schedule, "ETF digest"
        )
        prices = ", ".join(f"{i.symbol} {fmt.price(i.price)}" for i in self.items)
        return f"{title}: {prices}" if prices else title

    @property
    def details(self) -> tuple[str, ...]:
        out = [i.line for i in self.items]
        if self.etf is not None:
            line = f"ETF flows {fmt.musd(self.etf.total_musd, signed=True)} on {self.etf.date}"
            if self.etf_streak_days:
                kind = "inflows" if self.etf_streak_days > 0 else "outflows"
                n = abs(self.etf_streak_days)
                line += (
                    f", {n} day{'s' if n != 1 else ''} of {kind} totalling "
                    f"{fmt.musd(self.etf_streak_musd, signed=True)}"
                )
            out.append(line + _led(self.etf.leaders))
        return tuple(out)


Notification = ClusterApproach | LevelCross | LiqSpike | EtfReversal | EtfFlow | Digest


@dataclass(frozen=True)
class Outgoing:
    """One payload for one destination, from one subscription, created at one tick.

    ``key`` identifies it for the notification log and the outbox: the same subscription firing
    at the same tick always gives the same key.
    """

    destination_id: int
    subscription_id: int
    created_ms: int
    payload: Notification

    @property
    def key(self) -> str:
        return f"{self.subscription_id}:{self.payload.kind}:{self.created_ms}"

    @property
    def symbol(self) -> str | None:
        return self.payload.symbol


@dataclass(frozen=True)
class GroupedMessage:
    """One chat message carrying one or more notifications (see alerts/grouping.py).

    ``key`` is deterministic in (destination, members), so the outbox can dedupe a regrouping
    after a restart. ``silent`` asks the platform to deliver without a sound (quiet hours or a
    mute, named by ``mute_reason``); a silent message is still delivered.
    """

    destination_id: int
    key: str
    created_ms: int
    items: tuple[Outgoing, ...]
    silent: bool = False
    mute_reason: str | None = None

    @property
    def headline(self) -> str:
        if len(self.items) == 1:
            return self.items[0].payload.headline
        symbols = sorted({i.symbol for i in self.items if i.symbol})
        about = f" ({', '.join(symbols)})" if symbols else ""
        return f"{len(self.items)} alerts{about}"

    @property
    def lines(self) -> tuple[str, ...]:
        """Plain-text body lines: the headline and details of each notification, in order."""
        if len(self.items) == 1:
            p = self.items[0].payload
            return (p.headline, *p.details)
        return tuple(i.payload.headline for i in self.items)

    @property
    def text(self) -> str:
        """The whole message as plain text (bot/ renders its own markup from the parts)."""
        if len(self.items) == 1:
            return "\n".join(self.lines)
        return "\n".join((self.headline, *(f"- {line}" for line in self.lines)))


# --- serialization -----------------------------------------------------------------------------
# Generic over the dataclass fields and their annotations, so a field added to a payload is
# serialized without touching this code. Only the shapes the payloads use are supported.

Json = dict[str, Any]
VERSION = 1
_KINDS: dict[NoticeKind, type[Notification]] = {
    c.kind: c for c in (ClusterApproach, LevelCross, LiqSpike, EtfReversal, EtfFlow, Digest)
}


def _enc(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, tuple):
        return [_enc(x) for x in v]
    if is_dataclass(v) and not isinstance(v, type):
        return {f.name: _enc(getattr(v, f.name)) for f in fields(v)}
    raise TypeError(f"cannot serialize {type(v).__name__} in a notification")


def _dec(tp: Any, v: Any) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):  # X | None
        inner = [a for a in args if a is not type(None)]
        return None if v is None else _dec(inner[0], v)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_dec(args[0], x) for x in v)
        return tuple(_dec(a, x) for a, x in zip(args, v, strict=True))
    if tp is float:
        return math.nan if v is None else float(v)
    if tp in (int, str, bool):
        return tp(v)
    if tp is dt.date:
        return dt.date.fromisoformat(v)
    if is_dataclass(tp) and isinstance(tp, type):
        hints = get_type_hints(tp)
        return tp(**{f.name: _dec(hints[f.name], v[f.name]) for f in fields(tp)})
    raise TypeError(f"cannot deserialize a {tp!r} in a notification")


def to_dict(n: Notification) -> Json:
    """A JSON-safe dict: ``v``, ``kind``, the fields, and ``headline`` for people reading it."""
    out: Json = {"v": VERSION, "kind": str(n.kind), "headline": n.headline}
    out.update(_enc(n))
    return out


def from_dict(d: Mapping[str, Any]) -> Notification:
    """The payload :func:`to_dict` wrote; ValueError on an unknown kind or version."""
    if d.get("v") != VERSION:
        raise ValueError(f"unsupported notification version {d.get('v')!r}, expected {VERSION}")
    cls = _KINDS[NoticeKind(d["kind"])]
    payload: Notification = _dec(cls, d)
    return payload


def message_to_dict(m: GroupedMessage) -> Json:
    """A JSON-safe dict of a grouped message and its notifications (what the outbox stores)."""
    return {
        "v": VERSION,
        "destination_id": m.destination_id,
        "key": m.key,
        "created_ms": m.created_ms,
        "silent": m.silent,
        "mute_reason": m.mute_reason,
        "items": [
            {
                "destination_id": o.destination_id,
                "subscription_id": o.subscription_id,
                "created_ms": o.created_ms,
                "payload": to_dict(o.payload),
            }
            for o in m.items
        ],
    }


def message_from_dict(d: Mapping[str, Any]) -> GroupedMessage:
    """The message :func:`message_to_dict` wrote; ValueError on an unknown version or kind."""
    if d.get("v") != VERSION:
        raise ValueError(f"unsupported message version {d.get('v')!r}, expected {VERSION}")
    return GroupedMessage(
        destination_id=int(d["destination_id"]),
        key=str(d["key"]),
        created_ms=int(d["created_ms"]),
        items=tuple(
            Outgoing(
                int(o["destination_id"]),
                int(o["subscription_id"]),
                int(o["created_ms"]),
                from_dict(o["payload"]),
            )
            for o in d["items"]
        ),
        silent=bool(d["silent"]),
        mute_reason=None if d["mute_reason"] is None else str(d["mute_reason"]),
    )
