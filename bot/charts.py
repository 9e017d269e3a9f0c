"""The liquidation-map chart: a :class:`~core.liqmap.LiqMap` drawn the way Coinglass draws it.

Stacked bars per leverage tier (longs below the price, shorts above), the two cumulative curves on
a second axis, the current price, and the top clusters, as PNG bytes for a chat reply.

It builds a :class:`~matplotlib.figure.Figure` directly with the Agg canvas, never pyplot: pyplot
keeps global state, so this way renders can run in worker threads side by side. Styling is passed
per call rather than through ``rcParams`` for the same reason.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import Formatter, MaxNLocator

from core.errors import InputError
from core.liqmap import Cluster, FloatArray, LiqMap

__all__ = ["chart_title", "compact_usd", "render_liqmap_png", "tier_color"]

# 1280x720 px: 16:9 fills a phone screen turned sideways. At 150 dpi a 12 pt label is 25 px tall,
# still legible when Telegram shrinks the picture to the width of a chat bubble.
WIDTH_PX, HEIGHT_PX, DPI = 1280, 720, 150
MAX_BARS = 240  # more bars than this are thinner than ~4 px on the full-size image

BG = "#12151c"
GRID = "#2a303c"
TEXT = "#e8eaf0"
MUTED = "#9aa3b4"
LONG_COLOR = "#ff5b61"  # red: long liquidations are forced sells (Coinglass's convention)
SHORT_COLOR = "#2fd08a"  # green: short liquidations are forced buys
TICK_PT, LABEL_PT, NOTE_PT, TITLE_PT = 12.0, 12.0, 10.5, 15.0

# Tier colour anchors by leverage: 10/25/50/100x get Coinglass-like blue/cyan/yellow/orange, and any
# other leverage (Coinank's 30..90x, custom sets) gets a colour interpolated on log leverage, so one
# leverage has one colour on every chart.
_TIER_ANCHORS = (
    (2.0, "#a78bfa"),
    (10.0, "#4f7cff"),
    (25.0, "#2ec4d6"),
    (50.0, "#f5c542"),
    (100.0, "#ff8a3d"),
    (200.0, "#ff5fa2"),
)
_VENUE_NAMES = {"binance": "Binance", "okx": "OKX", "bybit": "Bybit", "hyperliquid": "Hyperliquid"}


def tier_color(leverage: float) -> tuple[float, float, float]:
    """RGB (0..1) of a leverage tier; interpolated on log leverage between fixed anchors."""
    xs = np.log([lev for lev, _ in _TIER_ANCHORS])
    rgb = np.array([[int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)] for _, c in _TIER_ANCHORS])
    x = math.log(max(leverage, 1.0001))
    r, g, b = (float(np.interp(x, xs, rgb[:, k])) for k in range(3))
    return r, g, b


def compact_usd(value: float, step: float | None = None) -> str:
    """$96.2K, $451M, $1.22B, $0.352: compact money for axis ticks and labels.

    With ``step`` (the spacing of axis ticks) it shows just the decimals that tell the ticks apart
    ($87.5K next to $90K); without, three significant digits.
    """
    if not math.isfinite(value):
        return "n/a"
    sign, a = ("-" if value < 0 else ""), abs(value)
    suffix, scale = next(
        ((s, k) for s, k in (("B", 1e9), ("M", 1e6), ("K", 1e3)) if a >= k * 0.9995), ("", 1.0)
    )
    v = a / scale
    if step is not None and step > 0:
        s = step / scale
        decimals = next((d for d in range(6) if abs(round(s, d) - s) <= 1e-9 * max(s, 1e-12)), 6)
    elif v == 0:
        decimals = 0
    else:
        decimals = max(0, 2 - math.floor(math.log10(v)))
    return f"{sign}${v:,.{decimals}f}{suffix}"


def _fmt_price(price: float) -> str:
    """Full price for the price marker: $95,012 / $182.40 / $0.35210."""
    if price >= 1000:
        return f"${price:,.0f}"
    if price >= 1:
        return f"${price:,.2f}"
    return f"${price:.4g}"


def chart_title(m: LiqMap, title_time: str | None = None) -> str:
    """'BTC liquidation map — 2026-01-13 22:00 UTC — Binance — estimated'."""
    when = title_time or datetime.fromtimestamp(m.ts_ms / 1000, tz=UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    venues = " + ".join(_VENUE_NAMES.get(v.lower(), v) for v in m.venues)
    return " — ".join(p for p in (f"{m.symbol} liquidation map", when, venues, "estimated") if p)


class _UsdFormatter(Formatter):
    """Axis ticks as compact USD, with as many decimals as the tick spacing needs."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return compact_usd(x)

    def format_ticks(self, values: list[float]) -> list[str]:
        locs = np.asarray(values, dtype=np.float64)
        step = float(np.min(np.diff(locs))) if locs.size > 1 else None
        return [compact_usd(float(v), step) for v in locs]


def _display_bins(w: LiqMap) -> tuple[FloatArray, FloatArray, FloatArray, float]:
    """(lefts, long, short, width) with adjacent bins summed so there are at most MAX_BARS bars.

    Display only: the curves and labels use the full-resolution map.
    """
    k = max(1, math.ceil(w.n_bins / MAX_BARS))
    pad = (-w.n_bins) % k
    long_usd = np.pad(w.long_usd, ((0, 0), (0, pad))).reshape(len(w.leverages), -1, k).sum(axis=2)
    short_usd = np.pad(w.short_usd, ((0, 0), (0, pad))).reshape(len(w.leverages), -1, k).sum(axis=2)
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

    One PolyCollection per tier instead of ``ax.bar``: bar() makes a Python Rectangle per bar,
    which is most of the render time at a few hundred bins.
    """
    x0, x1 = lefts + 0.12 * width, lefts + 0.88 * width
    top = base.copy()
    for row, color in zip(values, colors, strict=True):
        bottom, top = top, top + row
        on = row > 0
        if not on.any():
            continue
        verts = np.empty((int(on.sum()), 4, 2))
        verts[:, :, 0] = np.column_stack([x0[on], x0[on], x1[on], x1[on]])
        verts[:, :, 1] = np.column_stack([bottom[on], top[on], top[on], bottom[on]])
        ax.add_collection(PolyCollection(list(verts), facecolors=color, linewidths=0))
    return top


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def _style_axes(ax: Axes, *, grid: bool) -> None:
    ax.set_facecolor(BG)
    ax.tick_params(colors=MUTED, labelcolor=TEXT, labelsize=TICK_PT, length=4)
    for side, spine in ax.spines.items():
        spine.set_color(GRID)
        spine.set_visible(side == "bottom")
    if grid:
        ax.grid(axis="y", color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)


def _label_clusters(
    ax: Axes,
    top_ax: Axes,
    clusters: Sequence[Cluster],
    tops: FloatArray,
    lefts: FloatArray,
    width: float,
) -> None:
    """Mark the few largest clusters in view; skip any crowding a bigger one's label.

    Positions are in the bar axes, but the labels live on ``top_ax`` so the curves don't cross them.
    """
    lo, hi = ax.get_xlim()
    min_gap = 0.09 * (hi - lo)
    shown: list[float] = []
    for c in sorted(clusters, key=lambda c: -c.usd):
        if len(shown) == 4:
            break
        if not lo < c.price < hi or any(abs(c.price - p) < min_gap for p in shown):
            continue
        inside = (lefts + width > c.price_low) & (lefts < c.price_high)
        y = float(tops[inside].max()) if inside.any() else 0.0
        color = LONG_COLOR if c.side == "long" else SHORT_COLOR
        top_ax.annotate(
            f"{compact_usd(c.usd)}\n{compact_usd(c.price)}",
            (c.price, y),
            xycoords=ax.transData,
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=NOTE_PT,
            color=TEXT,
            linespacing=1.1,
            bbox={"boxstyle": "round,pad=0.25", "fc": BG, "ec": color, "lw": 0.8, "alpha": 0.85},
        )
        shown.append(c.price)


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
        textcoords="offset points",
        ha="left" if left else "right",
        va="bottom",
        fontsize=NOTE_PT,
        color=MUTED,
    )


def _draw_curves(ax2: Axes, w: LiqMap) -> float:
    """Draw the cumulative curves and label their peaks; returns the highest value drawn."""
    lows, highs = w.price_low, w.price_high
    below, above = lows <= w.price, highs >= w.price
    # Both curves start at zero at the price: nothing is liquidated until price moves.
    xl = np.concatenate([[w.price], lows[below][::-1]])
    yl = np.concatenate([[0.0], w.cum_long[below][::-1]])
    xs = np.concatenate([[w.price], highs[above]])
    ys = np.concatenate([[0.0], w.cum_short[above]])
    xlo, xhi = ax2.get_xlim()
    mid = (xlo + xhi) / 2
    peaks = w.cumulative_peaks()
    for x, y, color, usd, at, text in (
        (xl, yl, LONG_COLOR, peaks.long_usd, peaks.long_price, "longs {}\ndown to {}"),
        (xs, ys, SHORT_COLOR, peaks.short_usd, peaks.short_price, "shorts {}\nup to {}"),
    ):
        if usd <= 0:
            continue
        ax2.plot(x, y, color=color, linewidth=2.2, solid_joinstyle="round")
        ax2.fill_between(x, y, color=color, alpha=0.07, linewidth=0)
        ax2.plot([at], [usd], "o", color=color, markersize=6, markeredgecolor=BG)
        ax2.annotate(
            text.format(compact_usd(usd), compact_usd(at)),
            (at, usd),
            xytext=(8 if at < mid else -8, 6),
            textcoords="offset points",
            ha="left" if at < mid else "right",
            va="bottom",
            fontsize=LABEL_PT,
            fontweight="bold",
            color=color,
            linespacing=1.05,
        )
    return max(peaks.long_usd, peaks.short_usd)


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
        The map; only bins within ``range_pct`` of ``m.price`` are drawn.
    clusters : sequence of Cluster
        The largest few inside the view are labelled with USD and price.
    title_time : str, optional
        Replaces the UTC time taken from ``m.ts_ms`` in the title.

    Raises
    ------
    InputError
        If the price is not a positive number or ``range_pct`` is not positive.
    """
    if not (math.isfinite(m.price) and m.price > 0):
        raise InputError(f"cannot chart a map whose price is {m.price!r}")
    w = m.window(range_pct)
    lefts, long_usd, short_usd, width = _display_bins(w)
    colors = [_hex(tier_color(lev)) for lev in w.leverages]

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor=BG)
    canvas = FigureCanvasAgg(fig)
    # Fixed margins, not tight_layout: same geometry on every chart and no layout warnings.
    fig.subplots_adjust(left=0.085, right=0.905, top=0.80, bottom=0.095)
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    _style_axes(ax, grid=True)
    _style_axes(ax2, grid=False)
    # The view is the range around the price, widened to whole bins so edge bins and the curves'
    # end points (where the peaks sit) are not cut off.
    span = m.price * range_pct / 100
    lo, hi = m.price - span, m.price + span
    if w.n_bins:
        lo, hi = min(lo, w.origin), max(hi, w.origin + w.n_bins * w.bin_size)
    ax.set_xlim(lo, hi)

    # Longs from zero, shorts on top of them: only the price bin can hold both.
    tops = _bars(ax, lefts, width, long_usd, np.zeros(lefts.size), colors)
    tops = _bars(ax, lefts, width, short_usd, tops, colors)
    peak = _draw_curves(ax2, w)

    bar_top = float(tops.max()) if tops.size else 0.0
    # Headroom above the tallest bar and the curve peaks for their labels.
    _value_axis(ax, bar_top * 1.32, f"per {compact_usd(width)} bin", left=True)
    _value_axis(ax2, peak * 1.32, "cumulative" if peak > 0 else "", left=False)
    if bar_top > 0:
        _label_clusters(ax, ax2, clusters, tops, lefts, width)
    else:
        ax.text(
            0.5,
            0.45,
            "no estimated liquidation levels in range",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=LABEL_PT + 1,
            color=MUTED,
        )
    ax.xaxis.set_major_locator(MaxNLocator(nbins=7))
    ax.xaxis.set_major_formatter(_UsdFormatter())

    # The price: a dashed line with a label, and which side is which next to it.
    ax.axvspan(ax.get_xlim()[0], m.price, color=LONG_COLOR, alpha=0.035, lw=0, zorder=0)
    ax.axvspan(m.price, ax.get_xlim()[1], color=SHORT_COLOR, alpha=0.035, lw=0, zorder=0)
    ax.axvline(m.price, color=TEXT, linestyle=(0, (4, 3)), linewidth=1.2, zorder=5)
    ptrans = ax.get_xaxis_transform()
    ax.text(
        m.price,
        1.0,
        _fmt_price(m.price),
        transform=ptrans,
        ha="center",
        va="bottom",
        fontsize=LABEL_PT,
        fontweight="bold",
        color=BG,
        bbox={"boxstyle": "round,pad=0.3", "fc": TEXT, "ec": "none"},
        zorder=6,
    )
    for text, color, dx, ha in (
        ("◀ longs", LONG_COLOR, -6, "right"),
        ("shorts ▶", SHORT_COLOR, 6, "left"),
    ):
        ax.annotate(
            text,
            (m.price, 0.97),
            xycoords=ptrans,
            xytext=(dx, 0),
            textcoords="offset points",
            ha=ha,
            va="top",
            fontsize=LABEL_PT,
            color=color,
        )

    handles: list[object] = [
        Patch(facecolor=c, label=f"{lev:g}x") for lev, c in zip(w.leverages, colors, strict=True)
    ]
    handles += [
        Line2D([], [], color=LONG_COLOR, linewidth=2.2, label="cum. longs"),
        Line2D([], [], color=SHORT_COLOR, linewidth=2.2, label="cum. shorts"),
    ]
    ncol = len(handles) if len(handles) <= 8 else math.ceil(len(handles) / 2)
    fig.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0.075, 0.855),
        ncol=ncol,
        frameon=False,
        fontsize=LABEL_PT,
        labelcolor=TEXT,
        handlelength=1.2,
        handletextpad=0.4,
        columnspacing=1.1,
        handler_map={tuple: HandlerTuple(ndivide=None, pad=0)},
    )
    _title(fig, canvas, chart_title(m, title_time))

    buf = io.BytesIO()
    canvas.print_png(buf)
    return buf.getvalue()


def _title(fig: Figure, canvas: FigureCanvasAgg, text: str) -> None:
    """Title at the top left, shrunk to fit the width when venues make it long."""
    t = fig.text(0.012, 0.975, text, ha="left", va="top", fontsize=TITLE_PT, fontweight="bold")
    t.set_color(TEXT)
    room = 0.976 * WIDTH_PX
    used = t.get_window_extent(canvas.get_renderer()).width
    if used > room:
        t.set_fontsize(max(9.0, TITLE_PT * room / used))
