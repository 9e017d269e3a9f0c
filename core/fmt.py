"""Plain-text number formatting shared by alerts/ (notification headlines) and bot/ (replies).

Pure string functions, no markup: bot/ escapes and decorates. One style everywhere, so an alert
and a ``/liqmap`` reply quote the same figure the same way:

* money, compact: ``$157M``, ``$753.8M``, ``-$1.38B``, ``$12.3K``, ``$950`` (:func:`usd`);
* money in US$ millions, as ETF flows come: ``+$753.8M`` from ``753.8`` (:func:`musd`);
* a price: ``$95,734``, ``$3.25``, ``$0.1234`` (:func:`price`);
* a percentage: ``0.5%``, ``+1.4%`` (:func:`pct`); a share: ``45%`` from ``0.45`` (:func:`share`);
* a leverage: ``100x``, ``12.5x`` (:func:`leverage`); a window: ``15m``, ``4h`` (:func:`duration`);
* how old something is, rounded down to one unit: ``40s``, ``12m``, ``3h``, ``2d`` (:func:`age`).

Non-finite numbers print as ``n/a`` rather than ``$nan``.
"""

from __future__ import annotations

import math

__all__ = ["NA", "age", "duration", "leverage", "musd", "pct", "price", "share", "usd"]

NA = "n/a"

# (suffix, scale, decimals): billions get two decimals ($1.38B), the rest one ($753.8M).
_UNITS: tuple[tuple[str, float, int], ...] = (("B", 1e9, 2), ("M", 1e6, 1), ("K", 1e3, 1))


def _sign(value: float, signed: bool) -> str:
    if value < 0:
        return "-"
    return "+" if signed and value > 0 else ""


def _trim(text: str) -> str:
    """'157.0' -> '157', '1.40' -> '1.4'; integers unchanged."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def usd(value: float, *, signed: bool = False, trim: bool = True) -> str:
    """Compact US dollars: ``$157M``, ``$753.8M``, ``-$1.38B``, ``$12.3K``, ``$950``.

    ``signed`` puts ``+`` before positive amounts (flows); ``trim`` drops trailing zeros of the
    decimals (``$157M`` rather than ``$157.0M``). A value that rounds up to the next unit moves
    to it (999.96M reads ``$1B``, not ``$1,000.0M``).
    """
    if not math.isfinite(value):
        return NA
    sign = _sign(value, signed)
    v = abs(value)
    for i, (suffix, scale, decimals) in enumerate(_UNITS):
        if v >= scale:
            text = f"{v / scale:,.{decimals}f}"
            if i > 0 and float(text.replace(",", "")) >= 1000:
                bigger, big_scale, big_dec = _UNITS[i - 1]
                text, suffix = f"{v / big_scale:,.{big_dec}f}", bigger
            return f"{sign}${_trim(text) if trim else text}{suffix}"
    text = f"{v:,.0f}"
    if text == "1,000":  # 999.6 rounds to a thousand: say $1K, as the units above do
        return f"{sign}$1{'' if trim else '.0'}K"
    return f"{sign}${text}"


def musd(value_musd: float, *, signed: bool = False, trim: bool = True) -> str:
    """An amount given in US$ millions (ETF flows): ``musd(-1378.1) == '-$1.38B'``."""
    return usd(value_musd * 1e6, signed=signed, trim=trim)


def price(value: float) -> str:
    """A market price: whole dollars from $1,000 up, cents from $1, four significant digits below.

    ``$95,734``, ``$3,312``, ``$142.35``, ``$0.1234``.
    """
    if not math.isfinite(value):
        return NA
    sign = "-" if value < 0 else ""
    v = abs(value)
    if v >= 1000:
        return f"{sign}${v:,.0f}"
    if v >= 1:
        return f"{sign}${v:,.2f}"
    if v == 0:
        return "$0"
    return f"{sign}${v:.4g}" if v >= 1e-4 else f"{sign}${v:.3e}"


def pct(value: float, *, signed: bool = False, digits: int = 1) -> str:
    """A percentage, given in percent: ``pct(0.4889) == '0.5%'``; signed: ``'+1.4%'``.

    A value that rounds to zero prints without a sign (``0.0%``, never ``-0.0%``).
    """
    if not math.isfinite(value):
        return NA
    text = f"{abs(value):.{digits}f}"
    if float(text) == 0:
        return f"{text}%"
    return f"{_sign(value, signed)}{text}%"


def share(fraction: float) -> str:
    """A fraction as a whole percentage: ``share(0.45) == '45%'``."""
    if not math.isfinite(fraction):
        return NA
    return f"{fraction * 100:.0f}%"


def leverage(value: float) -> str:
    """A leverage tier: ``leverage(100.0) == '100x'``, ``leverage(12.5) == '12.5x'``."""
    if not math.isfinite(value):
        return NA
    return f"{value:g}x"


def duration(ms: int) -> str:
    """A window length: ``15m``, ``1h``, ``24h``, ``3d`` (whole days from 48h), ``90s``."""
    if ms >= 2 * 86_400_000 and ms % 86_400_000 == 0:
        return f"{ms // 86_400_000}d"
    if ms >= 3_600_000 and ms % 3_600_000 == 0:
        return f"{ms // 3_600_000}h"
    if ms >= 60_000 and ms % 60_000 == 0:
        return f"{ms // 60_000}m"
    return f"{ms / 1000:g}s"


def age(ms: int) -> str:
    """An age in its largest whole unit, rounded down: ``40s``, ``12m``, ``3h``, ``2d``.

    Negative ages (a clock a little behind the data) read ``0s``.
    """
    s = max(ms, 0) // 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"
