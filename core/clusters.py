"""Dense liquidation clusters: bins whose mass stands out from their neighbourhood.

A bin is dense when it holds at least ``k`` times the median of the non-empty bins of its side
within ``window_pct`` of the price; runs of dense bins (gaps of one bin allowed) form a cluster.
Comparing with the neighbourhood rather than with the map's maximum keeps a cluster near the
price visible even when a larger one sits far away.
"""

from __future__ import annotations

import numpy as np

from core.liqmap import Cluster, LiqMap


def find_clusters(
    m: LiqMap,
    *,
    k: float = 3.0,
    window_pct: float = 10.0,
    max_per_side: int = 5,
    min_usd: float = 0.0,
) -> list[Cluster]:
    """Clusters on both sides of the price, nearest first within each side.

    Long clusters lie below the price, short clusters above it.
    """
    out: list[Cluster] = []
    mids = m.price_low + m.bin_size / 2
    near = np.abs(mids - m.price) <= m.price * window_pct / 100
    for side, per_tier, region in (
        ("long", m.long_usd, mids < m.price),
        ("short", m.short_usd, mids > m.price),
    ):
        total = per_tier.sum(axis=0)
        mass = np.where(region, total, 0.0)
        ref = mass[near & region & (mass > 0)]
        if ref.size == 0:
            continue
        dense = mass >= max(k * float(np.median(ref)), min_usd, np.finfo(float).tiny)
        runs = _runs(dense, max_gap=1)
        found = [_cluster(m, side, per_tier, mass, mids, a, b) for a, b in runs]
        found.sort(key=lambda c: -c.usd)
        found = found[:max_per_side]
        found.sort(key=lambda c: abs(c.distance_pct))
        out.extend(found)
    return out


def _runs(mask: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """[start, stop) index runs of True, merging runs separated by at most ``max_gap`` Falses."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > max_gap + 1)
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    stops = np.concatenate((idx[breaks] + 1, [idx[-1] + 1]))
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _cluster(
    m: LiqMap,
    side: str,
    per_tier: np.ndarray,
    mass: np.ndarray,
    mids: np.ndarray,
    a: int,
    b: int,
) -> Cluster:
    usd = float(mass[a:b].sum())
    price = float((mass[a:b] * mids[a:b]).sum() / usd)
    tier_usd = per_tier[:, a:b].sum(axis=1)
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
