"""``/liqmap`` and ``/liqs``: the latest snapshot of a symbol, as a chart and in words.

Nothing is computed here when a fresh snapshot exists (DESIGN §2): the default request reads the
snapshot's map, clusters and peaks as they are; a narrower range cuts that map; a single venue
builds that venue's map from the held bars once per bar (:class:`bot.chart_cache.VenueMapCache`).
Charts are drawn once per (render key, venue, range) in a worker thread
(:class:`bot.chart_cache.ChartCache`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from alerts.snapshots import SnapshotBuild, make_snapshot
from bot.charts import render_liqmap_png, tier_label
from bot.chat import ArgSpec, CommandSpec, Reply
from bot.cmd_context import Ctx, Handler, Refused
from bot.command_parse import (
    ArgError,
    is_pct,
    looks_numeric,
    normalize_args,
    parse_pct,
    parse_symbol_arg,
    parse_venue,
    shown,
)
from core import fmt
from core.clusters import find_clusters
from core.liqmap import Cluster, CumulativePeaks
from core.liqs import is_lower_bound
from core.snapshot import Snapshot

__all__ = ["COMMANDS", "freshness_lines", "venue_name"]

_VENUE_NAMES = {"binance": "Binance", "okx": "OKX", "bybit": "Bybit"}
_LIQ_WINDOWS = {"1h": "1h", "60m": "1h", "4h": "4h", "24h": "24h", "1d": "24h", "day": "24h"}
_ESTIMATE = "Estimated from open interest and prices; not exchange data."


def venue_name(venue: str) -> str:
    return _VENUE_NAMES.get(venue, venue)


def no_data(symbol: str) -> Reply:
    return Reply.of(f"No data for {symbol} yet; the first snapshot comes within a minute of start.")


def freshness_lines(ctx: Ctx, snap: Snapshot) -> list[str]:
    """How old the data is and, when any series is stale, which ones (rules stay silent)."""
    age = ctx.now_ms() - snap.ts_ms
    lines = [f"Data as of {fmt.age(age)} ago."]
    stale = list(snap.stale)
    if age > 3 * ctx.services.settings.alerts.tick_s * 1000:
        stale.insert(0, f"the last snapshot is {fmt.age(age)} old")
    if stale:
        lines.append(
            f"Data is stale: {', '.join(stale)}. Alerts on {snap.symbol} wait until it recovers."
        )
    return lines


def _parse_liqmap(ctx: Ctx) -> tuple[str, str, float]:
    cfg = ctx.services.settings
    symbol: str | None = None
    venue: str | None = None
    rng: float | None = None
    for tok in normalize_args(ctx.args):
        v = parse_venue(tok, cfg.bot.venues)
        if v is not None:
            if venue is not None:
                raise ArgError(f"Two venues given ('{venue}' and '{shown(tok)}'); give one or all")
            venue = v
        elif is_pct(tok) or looks_numeric(tok):
            if rng is not None:
                raise ArgError(f"Two ranges given ('{rng:g}%' and '{shown(tok)}'); give one")
            rng = parse_pct(tok if is_pct(tok) else _as_pct(tok))
        else:
            if symbol is not None:
                raise ArgError(f"Two symbols given ({symbol} and {shown(tok)}); give one")
            symbol = parse_symbol_arg(tok, cfg.bot.symbols)
    top = cfg.map.range_pct
    rng = top if rng is None else rng
    if not 1 <= rng <= top:
        raise ArgError(f"The map covers up to ±{top:g}% here; ask for 1% to {top:g}%")
    return symbol or cfg.bot.symbols[0], venue or "all", rng


def _as_pct(tok: str) -> str:
    try:
        float(tok)
    except ValueError:
        raise ArgError(f"'{shown(tok)}' is not a range; try 5% or 12%") from None
    return tok + "%"


async def _venue_build(ctx: Ctx, symbol: str, venue: str) -> SnapshotBuild:
    series = ctx.services.series
    if series is None:
        raise Refused(
            f"Only 'all' is available here: this instance holds no per-venue bars. "
            f"Try /liqmap {symbol} all."
        )
    s = series.series(venue, symbol)
    last = s.last_open_ms if s is not None else None
    if s is None or last is None:
        raise Refused(f"No {venue_name(venue)} bars for {symbol} yet; try /liqmap {symbol} all.")
    now = ctx.now_ms()
    cfg, tick_ms = ctx.services.settings.map, int(ctx.services.settings.alerts.tick_s * 1000)
    key = (symbol, venue, last, s.is_stale(now))
    return await ctx.caches.venue_maps.get(
        key, lambda: make_snapshot(symbol, [s], None, cfg, now, tick_ms=tick_ms)
    )


def _tiers(c: Cluster) -> str:
    tiers = [tier_label(lev) for lev, share in c.top_tiers(2) if share >= 0.15]
    return f", mostly {' and '.join(tiers)}" if tiers else ""


def _nearest(clusters: Sequence[Cluster], price: float, above: bool) -> Cluster | None:
    side = [c for c in clusters if (c.price > price) == above and c.price != price]
    return min(side, key=lambda c: abs(c.price - price), default=None)


def summary_lines(
    snap: Snapshot, clusters: Sequence[Cluster], peaks: CumulativePeaks, rng: float
) -> list[str]:
    """Price, cumulative peaks and the nearest dense cluster on each side, as sentences."""
    price = snap.price
    lines = [f"Price {fmt.price(price)}"]
    if peaks.short_usd > 0:
        lines.append(
            f"Cumulative short liquidation leverage peaks at {fmt.usd(peaks.short_usd)} "
            f"around {fmt.price(peaks.short_price)}."
        )
    if peaks.long_usd > 0:
        lines.append(
            f"Cumulative long liquidation leverage peaks at {fmt.usd(peaks.long_usd)} "
            f"around {fmt.price(peaks.long_price)}."
        )
    for above, where in ((True, "above"), (False, "below")):
        c = _nearest(clusters, price, above)
        if c is None or not math.isfinite(price) or price <= 0:
            lines.append(f"No dense cluster {where} within ±{rng:g}%.")
            continue
        dist = (c.price - price) / price * 100
        lines.append(
            f"Nearest dense cluster {where}: {fmt.price(c.price)} ({fmt.pct(dist, signed=True)}), "
            f"{fmt.usd(c.usd)}{_tiers(c)}."
        )
    return lines


async def liqmap(ctx: Ctx) -> Reply:
    symbol, venue, rng = _parse_liqmap(ctx)
    build = ctx.services.snapshots.build(symbol)
    if build is None:
        return no_data(symbol)
    source = build if venue == "all" else await _venue_build(ctx, symbol, venue)
    snap, view = source.snapshot, source.map
    where = "all venues" if venue == "all" else venue_name(venue)
    title = f"{symbol} liquidation map, ±{rng:g}%, {where}"
    if view is None or source.render_key is None:
        lines = [f"Price {fmt.price(snap.price)}", *freshness_lines(ctx, snap)]
        lines.insert(1, "No map to draw yet: it comes with the next snapshot of fresh data.")
        return Reply(tuple(lines), title=title)
    cfg = ctx.services.settings.map
    if rng == cfg.range_pct:
        m, clusters, peaks = view, list(snap.clusters), snap.peaks
    else:
        m = view.window(rng)
        clusters = find_clusters(m, k=cfg.cluster_k, max_per_side=cfg.clusters_per_side)
        peaks = m.cumulative_peaks()
    png = await ctx.caches.charts.get(
        (source.render_key, venue, rng),
        lambda: render_liqmap_png(m, clusters, range_pct=rng),
    )
    venues = ", ".join(venue_name(v) for v in snap.venues) or "none"
    lines = [
        *summary_lines(snap, clusters, peaks, rng),
        f"Venues: {venues}.",
        *freshness_lines(ctx, snap),
        _ESTIMATE,
    ]
    return Reply(tuple(lines), title=title, png=png, png_name=f"liqmap_{symbol.lower()}.png")


async def liqs(ctx: Ctx) -> Reply:
    symbols = ctx.symbols
    symbol: str | None = None
    window: str | None = None
    for tok in normalize_args(ctx.args):
        if tok.lower() in _LIQ_WINDOWS:
            window = _LIQ_WINDOWS[tok.lower()]
        elif looks_numeric(tok):
            raise ArgError(f"'{shown(tok)}' is not a window /liqs shows; choose 1h, 4h or 24h")
        elif symbol is None:
            symbol = parse_symbol_arg(tok, symbols)
        else:
            raise ArgError(f"Two symbols given ({symbol} and {shown(tok)}); give one")
    symbol = symbol or symbols[0]
    snap = ctx.services.snapshots.get(symbol)
    if snap is None:
        return no_data(symbol)
    lines: list[str] = []
    lower_bound = False
    for label in (window,) if window else ("1h", "4h", "24h"):
        t = snap.liqs.get(label)
        if t is None:
            continue
        lower_bound = lower_bound or is_lower_bound(t)
        lines.append(
            f"{label}: {fmt.usd(t.total_usd)} (longs {fmt.usd(t.long_usd)}, "
            f"shorts {fmt.usd(t.short_usd)})"
        )
        by_venue = sorted(t.by_venue.items(), key=lambda kv: -sum(kv[1]))
        parts = [f"{venue_name(v)} {fmt.usd(sum(usd))}" for v, usd in by_venue if sum(usd) > 0]
        if parts:
            lines.append("  " + ", ".join(parts))
    if not lines:
        lines.append("No realized liquidation totals in this snapshot yet.")
    if lower_bound:
        lines.append("Binance and OKX report at most one liquidation a second: lower bounds.")
    lines += freshness_lines(ctx, snap)
    return Reply(tuple(lines), title=f"{symbol} realized liquidations")


COMMANDS: tuple[tuple[CommandSpec, Handler], ...] = (
    (
        CommandSpec(
            "liqmap",
            "Liquidation map chart and summary: cumulative peaks, nearest dense clusters",
            "/liqmap [symbol] [venue|all] [range%]",
            (
                ArgSpec("symbol", "e.g. BTC (default: the first watched symbol)", "symbol"),
                ArgSpec("venue", "One venue, or all (default)", "venue"),
                ArgSpec("range", "Half-width around the price, e.g. 5%"),
            ),
        ),
        liqmap,
    ),
    (
        CommandSpec(
            "liqs",
            "Realized liquidations over 1h, 4h and 24h, by side and venue",
            "/liqs [symbol] [1h|4h|24h]",
            (
                ArgSpec("symbol", "e.g. BTC", "symbol"),
                ArgSpec(
                    "window",
                    "One window (default: all three)",
                    "choice",
                    choices=("1h", "4h", "24h"),
                ),
            ),
        ),
        liqs,
    ),
)
