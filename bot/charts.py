"""The liquidation-map chart: a :class:`~core.liqmap.LiqMap` drawn the way Coinglass draws it.

Stacked bars per leverage tier (longs below the price, shorts above), the two cumulative curves on
a second axis, the current price, and the top clusters, as PNG bytes for a chat reply.

It builds a :class:`~matplotlib.figure.Figure` directly on the Agg canvas, never pyplot: pyplot
keeps global state, so this way renders can run in worker threads side by side. Styling is passed
per call rather than through ``rcParams`` for the same reason.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import Formatter, MaxNLocator

from core.errors import InputError
from core.liqmap import Cluster, FloatArray, LiqMap

__all__ = ["chart_title", "compact_usd", "render_liqmap_png", "tier_color", "tier_label"]

# 1280x720 px: 16:9 fills a phone screen turned sideways. At 150 dpi a 12 pt label is 25 px tall,
# still legible when Telegram shrinks the picture to the width of a chat bubble.
WIDTH_PX, HEIGHT_PX, DPI = 1280, 720, 150
MAX_BARS = 240  # more bars than this are thinner than ~4 px on the full-size image
MAX_CLUSTER_LABELS = 4

BG, GRID, TEXT, MUTED = "#12151c", "#2a303c", "#e8eaf0", "#9aa3b4"
LONG_COLOR = "#ff5b61"  # red: long liquidations are forced sells (Coinglass's convention)
SHORT_COLOR = "#2fd08a"  # green: short liquidations are forced buys
TICK_PT, LABEL_PT, NOTE_PT, TITLE_PT = 12.0, 12.0, 10.5, 15.0
_OFFSET = "offset points"

# Tier colours by leverage: 10/25/50/100x get Coinglass-like blue/cyan/yellow/orange; any other
# leverage (Coinank's 30..90x, custom sets) is interpolated on log leverage between anchors, so a
# leverage has the same colour on every chart. The curves keep pure red and green to themselves.
_TIER_ANCHORS = (
    (2.0, "#a78bfa"),
    (10.0, "#4f7cff"),
    (25.0, "#2ec4d6"),
    (37.0, "#b4e06a"),
    (50.0, "#f5c542"),
    (70.0, "#ff7eb6"),
    (100.0, "#ff8a3d"),
    (200.0, "#c77dff"),
)
_VENUE_NAMES = {"binance": "Binance", "okx": "OKX", "bybit": "Bybit", "hyperliquid": "Hyperliquid"}


def tier_color(leverage: float) -> str:
    """'#rrggbb' of a leverage tier."""
    xs = np.log([lev for lev, _ in _TIER_ANCHORS])
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for _, c in _TIER_ANCHORS])
    x = math.log(max(leverage, 1.0001))
    return "#" + "".join(f"{round(float(np.interp(x, xs, rgb[:, k]))):02x}" for k in range(3))


def tier_label(leverage: float) -> str:
    """'25x' for a leverage tier; 'n/a' for a tier of unknown leverage.

    A map whose source gives no leverage (CoinGlass's aggregated map and heatmap) puts its mass
    on one tier labelled 0.0 (``core.feeds.coinglass.UNKNOWN_LEVERAGE``), which is no leverage.
    """
    return f"{leverage:g}x" if math.isfinite(leverage) and leverage > 0 else "n/a"


def compact_usd(value: float, step: float | None = None, *, compact_from: float = 1e3) -> str:
    """$96.2K, $451M, $1.22B, $3,312, $0.352: compact money for axis ticks and labels.

    With ``step`` (the spacing of axis ticks) it shows just the decimals that tell the ticks apart
    ($87.5K next to $90K); without, three significant digits. Values under ``compact_from`` get no
    K/M/B suffix (prices read better as $3,150 than $3.15K).
    """
    if not math.isfinite(value):
        return "n/a"
    sign, a = ("-" if value < 0 else ""), abs(value)
    units = (("B", 1e9), ("M", 1e6), ("K", 1e3))
    # 0.9995: $999.6K rounds to 3 digits as $1M, not $1,000K.
    suffix, scale = next(((u, k) for u, k in units if a >= max(k, compact_from) * 0.9995), ("", 1))
    v = a / scale
    if step is not None and step > 0:
        s = step / scale
        decimals = next((d for d in range(8) if abs(round(s, d) - s) <= 1e-9 * s), 8)
        return f"{sign}${v:,.{decimals}f}{suffix}"
    text = f"{v:,.{max(0, 2 - math.floor(math.log10(v))) if v > 0 else 0}f}"
    if "." in text:  # $97M, not $97.0M
        text = text.rstrip("0").rstrip(".")
    return f"{sign}${text}{suffix}"


def _price_short(price: float) -> str:
    return compact_usd(price, compact_from=1e4)


def _price_full(price: float) -> str:
    """The price marker's label: $95,012 / $182.40 / $0.3521."""
    if price >= 1000:
        return f"${price:,.0f}"
    return f"${price:,.2f}" if price >= 1 else f"${price:.4g}"


def chart_title(m: LiqMap, title_time: str | None = None) -> str:
    """'BTC liquidation map — 2026-01-13 22:00 UTC — Binance — estimated'."""
    when = title_time or datetime.fromtimestamp(m.ts_ms / 1000, tz=UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    venues = " + ".join(_VENUE_NAMES.get(v.lower(), v) for v in m.venues)
    return " — ".join(p for p in (f"{m.symbol} liquidation map", when, venues, "estimated") if p)


class _UsdFormatter(Formatter):
    """Axis ticks as compact USD, with as many decimals as the tick spacing needs."""

    def __init__(self, compact_from: float = 1e3) -> None:
        self.compact_from = compact_from

    def __call__(self, x: float, pos: int | None = None) -> str:
        return compact_usd(x, compact_from=self.compact_from)

    def format_ticks(self, values: list[float]) -> list[str]:
        locs = np.asarray(values, dtype=np.float64)
        step = float(np.min(np.diff(locs))) if locs.size > 1 else None
        return [compact_usd(float(v), step, compact_from=self.compact_from) for v in locs]


def _display_bins(w: LiqMap) -> tuple[FloatArray, FloatArray, FloatArray, float]:
    """(lefts, long, short, width) with adjacent bins summed so there are at most MAX_BARS bars.

    Display only: the curves and labels use the full-resolution map.
    """
    k = max(1, math.ceil(w.n_bins / MAX_BARS))
    pad = ((0, 0), (0, (-w.n_bins) % k))
    long_usd = np.pad(w.long_usd, pad).reshape(len(w.leverages), -1, k).sum(axis=2)
    short_usd = np.pad(w.short_usd, pad).reshape(len(w.leverages), -1, k).sum(axis=2)
    width = w.bin_size * k
    lefts = w.origin + width * np.arange(long_usd.shape[1], dtype=np.float64)
    return lefts, long_usd, short_usd, width


def _bars(
    ax: Axes,
    lefts: FloatArray,
    width: float,
    values: FloatArray,
    base: FloatArray,
    colors: list[str],
) -> FloatArray:
    """Stack ``values`` (tiers x bins) on ``base``; returns the new tops.

    One PolyCollection per tier, not ``ax.bar``: bar() makes a Python Rectangle per bar, which
    would be most of the render time at a few hundred bins.
    """
    x0, x1 = lefts + 0.12 * width, lefts + 0.88 * width
    top = base.copy()
    for row, color in zip(values, colors, strict=True):
        bottom, top = top, top + row
        on = row > 0
        if on.any():
            verts = np.empty((int(on.sum()), 4, 2))
            verts[:, :, 0] = np.column_stack([x0[on], x0[on], x1[on], x1[on]])
            verts[:, :, 1] = np.column_stack([bottom[on], top[on], top[on], bottom[on]])
            ax.add_collection(PolyCollection(list(verts), facecolors=color, linewidths=0))
    return top


def _style_axes(ax: Axes, *, grid: bool) -> None:
    ax.set_facecolor(BG)
    ax.tick_params(colors=MUTED, labelcolor=TEXT, labelsize=TICK_PT, length=4)
    for side, spine in ax.spines.items():
        spine.set_color(GRID)
        spine.set_visible(side == "bottom")
    if grid:
        ax.grid(axis="y", color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)


def _value_axis(a: Axes, top: float, caption: str, *, left: bool) -> None:
    """A USD y axis from 0 to ``top`` with a caption above it; bare when there is nothing on it."""
    if not top > 0:
        a.set_ylim(0, 1)
        a.set_yticks([])
        return
    a.set_ylim(0, top)
    a.yaxis.set_major_locator(MaxNLocator(nbins=5, min_n_ticks=3))
    a.yaxis.set_major_formatter(_UsdFormatter())
    # Captions sit above the axes: rotated side labels would cost plot width.
    a.annotate(
        caption,
        (0.0 if left else 1.0, 1.0),
        xycoords="axes fraction",
        xytext=(0, 8),
        textcoords=_OFFSET,
        ha="left" if left else "right",
        va="bottom",
        fontsize=NOTE_PT,
        color=MUTED,
    )


def _draw_curves(ax2: Axes, w: LiqMap) -> float:
    """Draw the cumulative curves and label their peaks; returns the higher peak (0 if none)."""
    lows, highs = w.price_low, w.price_high
    below, above = lows <= w.price, highs >= w.price
    peaks = w.cumulative_peaks()
    mid = sum(ax2.get_xlim()) / 2
    longs = (lows[below][::-1], w.cum_long[below][::-1], peaks.long_usd, peaks.long_price)
    shorts = (highs[above], w.cum_short[above], peaks.short_usd, peaks.short_price)
    for (x, y, usd, at), color, text in (
        (longs, LONG_COLOR, "longs {}\ndown to {}"),
        (shorts, SHORT_COLOR, "shorts {}\nup to {}"),
    ):
        if usd <= 0:
            continue
        # Both curves start at zero at the price: nothing is liquidated until the price moves.
        x, y = np.concatenate([[w.price], x]), np.concatenate([[0.0], y])
        ax2.plot(x, y, color=color, linewidth=2.2, solid_joinstyle="round")
        ax2.fill_between(x, y, color=color, alpha=0.07, linewidth=0)
        ax2.plot([at], [usd], "o", color=color, markersize=6, markeredgecolor=BG)
        ax2.annotate(
            text.format(compact_usd(usd), _price_short(at)),
            (at, usd),
            xytext=(8 if at < mid else -8, 6),
            textcoords=_OFFSET,
            ha="left" if at < mid else "right",
            va="bottom",
            fontsize=LABEL_PT,
            fontweight="bold",
            color=color,
            linespacing=1.05,
        )
    return max(peaks.long_usd, peaks.short_usd)


def _label_clusters(
    ax: Axes,
    top_ax: Axes,
    clusters: Sequence[Cluster],
    bars: tuple[FloatArray, FloatArray, float],
) -> None:
    """Mark the few largest clusters in view; skip any that would crowd a bigger one's label.

    Positions are in the bar axes; the labels live on ``top_ax`` so the curves don't cross them.
    """
    lefts, tops, width = bars
    lo, hi = ax.get_xlim()
    shown: list[float] = []
    for c in sorted(clusters, key=lambda c: -c.usd):
        if len(shown) == MAX_CLUSTER_LABELS:
            break
        if not lo < c.price < hi or any(abs(c.price - p) < 0.09 * (hi - lo) for p in shown):
            continue
        inside = (lefts + width > c.price_low) & (lefts < c.price_high)
        edge = LONG_COLOR if c.side == "long" else SHORT_COLOR
        top_ax.annotate(
            f"{compact_usd(c.usd)}\n{_price_short(c.price)}",
            (c.price, float(tops[inside].max()) if inside.any() else 0.0),
            xycoords=ax.transData,
            xytext=(0, 4),
            textcoords=_OFFSET,
            ha="center",
            va="bottom",
            fontsize=NOTE_PT,
            color=TEXT,
            linespacing=1.1,
            bbox={"boxstyle": "round,pad=0.25", "fc": BG, "ec": edge, "lw": 0.8, "alpha": 0.85},
        )
        shown.append(c.price)


def _price_marker(ax: Axes, price: float) -> None:
    """Dashed line with the price on top and which side is which beside it; each side gets a faint
    tint of its colour, since longs and shorts share the tier colours as on Coinglass."""
    lo, hi = ax.get_xlim()
    ax.axvspan(lo, price, color=LONG_COLOR, alpha=0.035, lw=0, zorder=0)
    ax.axvspan(price, hi, color=SHORT_COLOR, alpha=0.035, lw=0, zorder=0)
    ax.axvline(price, color=TEXT, linestyle=(0, (4, 3)), linewidth=1.2, zorder=5)
    at_top = ax.get_xaxis_transform()  # x in data, y in axes fraction
    ax.annotate(
        _price_full(price),
        (price, 1.0),
        xycoords=at_top,
        ha="center",
        va="bottom",
        fontsize=LABEL_PT,
        fontweight="bold",
        color=BG,
        bbox={"boxstyle": "round,pad=0.3", "fc": TEXT, "ec": "none"},
    )
    for text, color, dx in (("◀ longs", LONG_COLOR, -6), ("shorts ▶", SHORT_COLOR, 6)):
        ax.annotate(
            text,
            (price, 0.97),
            xycoords=at_top,
            xytext=(dx, 0),
            textcoords=_OFFSET,
            ha="right" if dx < 0 else "left",
            va="top",
            fontsize=LABEL_PT,
            color=color,
        )


def _legends(fig: Figure, leverages: Sequence[float], colors: list[str]) -> None:
    """Tier swatches at the left, the two curves at the right, both just under the title."""
    style: dict[str, Any] = dict(
        frameon=False,
        fontsize=LABEL_PT,
        labelcolor=TEXT,
        handlelength=1.2,
        handletextpad=0.4,
        columnspacing=1.0,
        borderaxespad=0.0,
        labelspacing=0.3,
    )
    tiers = [Patch(color=c, label=tier_label(v)) for v, c in zip(leverages, colors, strict=True)]
    ncol = max(1, len(tiers) if len(tiers) <= 6 else math.ceil(len(tiers) / 2))
    fig.legend(handles=tiers, loc="upper left", bbox_to_anchor=(0.085, 0.925), ncol=ncol, **style)
    curves = [
        Line2D([], [], color=LONG_COLOR, linewidth=2.2, label="cum. longs"),
        Line2D([], [], color=SHORT_COLOR, linewidth=2.2, label="cum. shorts"),
    ]
    # Beside more than four tiers the curve entries stack in two rows (the axes sit lower then).
    ncol = 2 if len(tiers) <= 4 else 1
    fig.legend(handles=curves, loc="upper right", bbox_to_anchor=(0.905, 0.925), ncol=ncol, **style)


def _title(fig: Figure, text: str) -> None:
    """Title at the top left, shrunk to fit the width when a list of venues makes it long."""
    t = fig.text(0.012, 0.975, text, va="top", fontsize=TITLE_PT, fontweight="bold", color=TEXT)
    room, used = 0.97 * WIDTH_PX, t.get_window_extent().width
    if used > room:
        t.set_fontsize(max(9.0, 0.98 * TITLE_PT * room / used))


def render_liqmap_png(
    m: LiqMap,
    clusters: Sequence[Cluster] = (),
    *,
    range_pct: float = 12.0,
    title_time: str | None = None,
) -> bytes:
    """Draw the liquidation map within ``range_pct`` percent of the price as a 1280x720 PNG.

    Parameters
    ----------
    m : LiqMap
        The map; only bins within ``range_pct`` of ``m.price`` are drawn. An empty window gives
        an empty chart with a note, not an error.
    clusters : sequence of Cluster
        The largest few inside the view are labelled with USD and price.
    range_pct : float
        Half-width of the view, percent of the price.
    title_time : str, optional
        Replaces the UTC time taken from ``m.ts_ms`` in the title.

    Raises
    ------
    InputError
        If the price is not a positive number or ``range_pct`` is not positive.
    """
    buf = io.BytesIO()
    _liqmap_figure(m, clusters, range_pct, title_time).savefig(buf, format="png")
    return buf.getvalue()


def _liqmap_figure(
    m: LiqMap, clusters: Sequence[Cluster], range_pct: float, title_time: str | None
) -> Figure:
    """The chart of :func:`render_liqmap_png` as a Figure (drawn, not yet saved)."""
    if not (math.isfinite(m.price) and m.price > 0):
        raise InputError(f"cannot chart a map whose price is {m.price!r}")
    w = m.window(range_pct)
    lefts, long_usd, short_usd, width = _display_bins(w)
    colors = [tier_color(lev) for lev in w.leverages]

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor=BG)
    FigureCanvasAgg(fig)  # attaches itself: Agg whatever the process-wide backend is
    # Fixed margins, not tight_layout: the same geometry on every chart and no layout warnings.
    top = 0.80 if len(w.leverages) <= 4 else 0.75  # more tiers take a second legend row
    fig.subplots_adjust(left=0.085, right=0.905, top=top, bottom=0.095)
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    _style_axes(ax, grid=True)
    _style_axes(ax2, grid=False)
    # The view is the range around the price, widened to whole bins so the edge bins and the
    # curves' far ends (where the peaks sit) are not cut off.
    span = m.price * range_pct / 100
    lo, hi = m.price - span, m.price + span
    if w.n_bins:
        lo, hi = min(lo, w.origin), max(hi, w.origin + w.n_bins * w.bin_size)
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=7))
    ax.xaxis.set_major_formatter(_UsdFormatter(compact_from=1e4))

    # Longs from zero, shorts on top of them: only the price bin can hold both.
    tops = _bars(ax, lefts, width, long_usd, np.zeros(lefts.size), colors)
    tops = _bars(ax, lefts, width, short_usd, tops, colors)
    peak = _draw_curves(ax2, w)
    bar_top = float(tops.max()) if tops.size else 0.0
    # Headroom above the tallest bar and the higher peak for their labels.
    _value_axis(ax, bar_top * 1.32, f"per {compact_usd(width)} bin", left=True)
    _value_axis(ax2, peak * 1.32, "cumulative", left=False)
    if bar_top > 0:
        _label_clusters(ax, ax2, clusters, (lefts, tops, width))
    else:
        note = "no estimated liquidation levels in range"
        box = {"boxstyle": "round,pad=0.5", "fc": BG, "ec": GRID}  # drawn over the price line
        style: dict[str, Any] = {"ha": "center", "va": "center", "color": MUTED, "zorder": 6}
        ax.text(0.5, 0.45, note, transform=ax.transAxes, bbox=box, fontsize=13, **style)
    _price_marker(ax, m.price)
    _legends(fig, w.leverages, colors)
    _title(fig, chart_title(m, title_time))
    return fig
