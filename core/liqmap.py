"""The liquidation map: USD that would be force-liquidated, by price bin and leverage tier.

Bins sit on a global grid (edges at whole multiples of ``bin_size``), so maps of several venues
add up bin for bin. Long mass lies below the price (a fall liquidates it), short mass above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from core.errors import InputError

FloatArray = NDArray[np.float64]

# Leverage bands for display: Coinglass's 10/25/50/100x plus Binance's range above 100x.
DEFAULT_BANDS: tuple[float, ...] = (10.0, 25.0, 50.0, 100.0, 150.0)


@dataclass(frozen=True, eq=False)
class LiqMap:
    """A binned liquidation map of one symbol at one time.

    Attributes
    ----------
    long_usd, short_usd : ndarray of shape (n_tiers, n_bins)
        USD notional whose liquidation price falls in each bin, per tier in ``leverages``.
    origin : float
        Lower edge of bin 0; a whole multiple of ``bin_size``.
    atr : float
        Average true range of the bars behind the map, USD; NaN when unknown.
    """

    symbol: str
    venues: tuple[str, ...]
    ts_ms: int
    price: float
    atr: float
    bin_size: float
    origin: float
    leverages: tuple[float, ...]
    long_usd: FloatArray
    short_usd: FloatArray

    @property
    def n_bins(self) -> int:
        return int(self.long_usd.shape[1])

    @property
    def price_low(self) -> FloatArray:
        return self.origin + self.bin_size * np.arange(self.n_bins, dtype=np.float64)

    @property
    def price_high(self) -> FloatArray:
        return self.price_low + self.bin_size

    @property
    def long_total(self) -> FloatArray:
        """Long USD per bin, all tiers; shape (n_bins,)."""
        return np.asarray(self.long_usd.sum(axis=0))

    @property
    def short_total(self) -> FloatArray:
        return np.asarray(self.short_usd.sum(axis=0))

    @property
    def price_bin(self) -> int:
        """Index of the bin holding the current price (may lie outside 0..n_bins-1)."""
        return int(np.floor((self.price - self.origin) / self.bin_size))

    @property
    def cum_long(self) -> FloatArray:
        """Long USD liquidated if price falls to each bin's low: sum over that bin and above.

        Never decreases as price falls, which is what a trader reads off the curve.
        """
        return np.asarray(np.cumsum(self.long_total[::-1])[::-1])

    @property
    def cum_short(self) -> FloatArray:
        """Short USD liquidated if price rises to each bin's high: sum over that bin and below."""
        return np.asarray(np.cumsum(self.short_total))

    def window(self, pct: float) -> LiqMap:
        """The bins within ``pct`` percent of the price (totals outside are dropped)."""
        if pct <= 0:
            raise InputError(f"range must be positive, got {pct:g}%")
        lo = int(np.floor((self.price * (1 - pct / 100) - self.origin) / self.bin_size))
        hi = int(np.ceil((self.price * (1 + pct / 100) - self.origin) / self.bin_size))
        lo, hi = max(lo, 0), min(max(hi, lo + 1), self.n_bins)
        if hi <= lo:
            return _with_bins(self, self.origin, self.long_usd[:, :0], self.short_usd[:, :0])
        return _with_bins(
            self,
            self.origin + lo * self.bin_size,
            self.long_usd[:, lo:hi],
            self.short_usd[:, lo:hi],
        )

    def banded(self, edges: Sequence[float] = DEFAULT_BANDS) -> LiqMap:
        """Tiers grouped into leverage bands, each labelled by its upper edge.

        A tier of L joins the first band with edge >= L (tiers above the last edge join the
        last band). Thirty 5x-wide tiers read like Coinglass's 10/25/50/100x bars this way.
        """
        edges = sorted(edges)
        band = np.searchsorted(np.asarray(edges), np.asarray(self.leverages), side="left")
        band = np.minimum(band, len(edges) - 1)
        used = sorted(set(band.tolist()))
        long_usd = np.zeros((len(used), self.n_bins))
        short_usd = np.zeros((len(used), self.n_bins))
        for row, b in enumerate(used):
            long_usd[row] = self.long_usd[band == b].sum(axis=0)
            short_usd[row] = self.short_usd[band == b].sum(axis=0)
        out = _with_bins(self, self.origin, long_usd, short_usd)
        object.__setattr__(out, "leverages", tuple(float(edges[b]) for b in used))
        return out

    def cumulative_peaks(self) -> CumulativePeaks:
        """Largest cumulative long (below price) and short (above price) totals and where."""
        lows = self.price_low
        below = lows <= self.price
        above = self.price_high >= self.price
        cl, cs = self.cum_long, self.cum_short
        long_usd = float(cl[below].max()) if below.any() else 0.0
        short_usd = float(cs[above].max()) if above.any() else 0.0
        # Where the curve, moving away from the price, reaches its peak: further adds nothing.
        # The long curve grows as the bin index falls, so that is the highest such bin.
        long_hits = np.flatnonzero(below & (cl >= long_usd))
        short_hits = np.flatnonzero(above & (cs >= short_usd))
        long_at = float(lows[long_hits.max()]) if long_usd > 0 else self.price
        short_at = float(self.price_high[short_hits.min()]) if short_usd > 0 else self.price
        return CumulativePeaks(long_usd, long_at, short_usd, short_at)


@dataclass(frozen=True)
class CumulativePeaks:
    long_usd: float
    long_price: float
    short_usd: float
    short_price: float


@dataclass(frozen=True)
class Cluster:
    """A dense group of liquidation levels on one side of the price."""

    side: str  # "long" (below price, hit by a fall) or "short" (above, hit by a rise)
    price: float  # USD-weighted centre of the cluster's bins
    price_low: float
    price_high: float
    usd: float
    tier_share: dict[float, float] = field(default_factory=dict)  # leverage -> share of usd
    distance_pct: float = 0.0
    distance_atr: float = float("nan")

    def top_tiers(self, n: int = 2) -> list[tuple[float, float]]:
        return sorted(self.tier_share.items(), key=lambda kv: -kv[1])[:n]


def _with_bins(m: LiqMap, origin: float, long_usd: FloatArray, short_usd: FloatArray) -> LiqMap:
    return LiqMap(
        symbol=m.symbol,
        venues=m.venues,
        ts_ms=m.ts_ms,
        price=m.price,
        atr=m.atr,
        bin_size=m.bin_size,
        origin=origin,
        leverages=m.leverages,
        long_usd=long_usd,
        short_usd=short_usd,
    )


def bin_levels(
    prices: FloatArray,
    usd: FloatArray,
    tier_idx: NDArray[np.intp],
    n_tiers: int,
    bin_size: float,
    origin: float,
    n_bins: int,
) -> FloatArray:
    """Sum ``usd`` of levels into a (n_tiers, n_bins) grid; levels off the grid are dropped.

    One ``np.bincount`` over a flattened (tier, bin) index: no loop over levels.
    """
    b = np.floor((prices - origin) / bin_size).astype(np.intp)
    ok = (b >= 0) & (b < n_bins)
    flat = tier_idx[ok] * n_bins + b[ok]
    out = np.bincount(flat, weights=usd[ok], minlength=n_tiers * n_bins).astype(np.float64)
    return out.reshape(n_tiers, n_bins)


def grid_for(prices: FloatArray, price: float, bin_size: float) -> tuple[float, int]:
    """(origin, n_bins) of a grid on whole multiples of ``bin_size`` covering levels and price."""
    if bin_size <= 0:
        raise InputError(f"bin size must be positive, got {bin_size:g}")
    lo = min(float(prices.min()), price) if prices.size else price
    hi = max(float(prices.max()), price) if prices.size else price
    origin = np.floor(lo / bin_size) * bin_size
    if origin > lo:  # floating point can round the edge just above the lowest level
        origin -= bin_size
    n_bins = int(np.floor((hi - origin) / bin_size)) + 1
    return float(origin), n_bins


def combine(maps: Sequence[LiqMap]) -> LiqMap:
    """Add maps of several venues on their common grid.

    The maps must share symbol and bin size; tiers are united. The price and ATR of the result
    are the mean of the inputs' (venues quote within basis points of each other).
    """
    if not maps:
        raise InputError("nothing to combine")
    first = maps[0]
    if any(m.bin_size != first.bin_size for m in maps):
        raise InputError("maps of different bin sizes cannot be added; rebuild them on one bin")
    if any(m.symbol != first.symbol for m in maps):
        raise InputError("maps of different symbols cannot be added")
    bs = first.bin_size
    leverages = tuple(sorted({lev for m in maps for lev in m.leverages}))
    origin = min(m.origin for m in maps)
    end = max(m.origin + m.n_bins * bs for m in maps)
    n_bins = round((end - origin) / bs)
    long_usd = np.zeros((len(leverages), n_bins))
    short_usd = np.zeros((len(leverages), n_bins))
    for m in maps:
        off = round((m.origin - origin) / bs)
        for ti, lev in enumerate(m.leverages):
            row = leverages.index(lev)
            long_usd[row, off : off + m.n_bins] += m.long_usd[ti]
            short_usd[row, off : off + m.n_bins] += m.short_usd[ti]
    venues = tuple(dict.fromkeys(v for m in maps for v in m.venues))
    atrs = [m.atr for m in maps if np.isfinite(m.atr)]
    return LiqMap(
        symbol=first.symbol,
        venues=venues,
        ts_ms=max(m.ts_ms for m in maps),
        price=float(np.mean([m.price for m in maps])),
        atr=float(np.mean(atrs)) if atrs else float("nan"),
        bin_size=bs,
        origin=origin,
        leverages=leverages,
        long_usd=long_usd,
        short_usd=short_usd,
    )
