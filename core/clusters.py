"""Dense liquidation clusters: humps of the map that stand out from their neighbourhood.

Per side, the bin totals are smoothed over about 0.3% of the price (real levels are a
continuum, a single bin is noise), then peaks are kept whose height is at least ``k`` times the
median of the side's non-empty bins within ``window_pct`` of the price and whose prominence is
at least that median. A cluster spans its peak's width at half prominence, at most
``max_half_width_pct`` either side of the peak; its USD is the raw mass in that span.
Comparing with the neighbourhood rather than the map's maximum keeps a cluster near the price
visible even when a larger one sits far away.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.signal import find_peaks, peak_widths

from core.liqmap import Cluster, LiqMap

FloatArray = NDArray[np.float64]


def find_clusters(
    m: LiqMap,
    *,
    k: float = 1.5,
    window_pct: float = 10.0,
    max_per_side: int = 5,
    min_usd: float = 0.0,
    smooth_pct: float = 0.3,
    max_half_width_pct: float = 0.5,
) -> list[Cluster]:
    """Clusters on both sides of the price, nearest first within each side.

    Long clusters lie below the price, short clusters above it.
    """
    out: list[Cluster] = []
    if m.n_bins == 0:
        return out
    mids = m.price_low + m.bin_size / 2
    near = np.abs(mids - m.price) <= m.price * window_pct / 100
    width = max(1, round(m.price * smooth_pct / 100 / m.bin_size))
    for side, per_tier, region in (
        ("long", m.long_usd, mids < m.price),
        ("short", m.short_usd, mids > m.price),
    ):
        mass = np.where(region, per_tier.sum(axis=0), 0.0)
        ref = mass[near & region & (mass > 0)]
        if ref.size == 0:
            continue
        base = float(np.median(ref))
        smooth = _smooth(mass, width)
        peaks, _ = find_peaks(smooth, height=k * base * 0.999, prominence=base * 0.999)
        if peaks.size == 0:
            continue
        _, _, left, right = peak_widths(smooth, peaks, rel_height=0.5)
        # A broad hump on a high base is wide at half prominence; a cluster is a dense group.
        half = max(1, round(m.price * max_half_width_pct / 100 / m.bin_size))
        found = []
        for p, a_f, b_f in zip(peaks, left, right, strict=True):
            a = max(int(np.floor(a_f)), int(p) - half)
            b = min(int(np.ceil(b_f)), int(p) + half) + 1
            c = _cluster(m, side, per_tier, mass, mids, a, min(b, m.n_bins))
            if c is not None and c.usd >= min_usd:
                found.append(c)
        found.sort(key=lambda c: -c.usd)
        found = found[:max_per_side]
        found.sort(key=lambda c: abs(c.distance_pct))
        out.extend(found)
    return out


def _smooth(x: FloatArray, width: int) -> FloatArray:
    """Centred moving average over ``width`` bins (odd width keeps peaks in place)."""
    w = width | 1
    return np.convolve(x, np.full(w, 1.0 / w), mode="same")


def _cluster(
    m: LiqMap,
    side: str,
    per_tier: FloatArray,
    mass: FloatArray,
    mids: FloatArray,
    a: int,
    b: int,
) -> Cluster | None:
    usd = float(mass[a:b].sum())
    if usd <= 0:
        return None
    price = float((mass[a:b] * mids[a:b]).sum() / usd)
    region = mass[a:b] > 0
    tier_usd = (per_tier[:, a:b] * region).sum(axis=1)
    share = {lev: float(t / usd) for lev, t in zip(m.leverages, tier_usd, strict=True) if t > 0}
    dist = (price - m.price) / m.price * 100
    atr_dist = (price - m.price) / m.atr if np.isfinite(m.atr) and m.atr > 0 else float("nan")
    return Cluster(
        side=side,
        price=price,
        price_low=float(m.price_low[a]),
        price_high=float(m.price_high[b - 1]),
        usd=usd,
        tier_share=share,
        distance_pct=float(dist),
        distance_atr=float(atr_dist),
    )
