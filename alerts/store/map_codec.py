"""A snapshot's map view as JSON, so followers draw ``/liqmap`` from the shared store.

The leader stores, with each symbol's latest snapshot, the banded map cut to the configured
range (what ``/liqmap`` draws) and its render key; a follower reads both back and answers with
the same chart the leader would draw. USD amounts are rounded to whole dollars (the chart and
the clusters read millions): a banded view of a few hundred bins stays a few tens of KB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from core.liqmap import LiqMap

__all__ = ["map_from_dict", "map_to_dict"]


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None  # JSON has no NaN


def map_to_dict(m: LiqMap, render_key: str) -> dict[str, Any]:
    return {
        "render_key": render_key,
        "symbol": m.symbol,
        "venues": list(m.venues),
        "ts_ms": m.ts_ms,
        "price": _num(m.price),
        "atr": _num(m.atr),
        "bin_size": m.bin_size,
        "origin": m.origin,
        "leverages": list(m.leverages),
        "long_usd": np.rint(m.long_usd).astype(np.int64).tolist(),
        "short_usd": np.rint(m.short_usd).astype(np.int64).tolist(),
    }


def map_from_dict(data: Mapping[str, Any]) -> tuple[LiqMap, str]:
    """The map and render key ``map_to_dict`` wrote."""
    leverages = tuple(float(x) for x in data["leverages"])
    shape = (len(leverages), -1)
    long_usd = np.asarray(data["long_usd"], dtype=np.float64).reshape(shape)
    short_usd = np.asarray(data["short_usd"], dtype=np.float64).reshape(shape)
    m = LiqMap(
        symbol=str(data["symbol"]),
        venues=tuple(data["venues"]),
        ts_ms=int(data["ts_ms"]),
        price=math.nan if data["price"] is None else float(data["price"]),
        atr=math.nan if data["atr"] is None else float(data["atr"]),
        bin_size=float(data["bin_size"]),
        origin=float(data["origin"]),
        leverages=leverages,
        long_usd=long_usd,
        short_usd=short_usd,
    )
    return m, str(data["render_key"])
