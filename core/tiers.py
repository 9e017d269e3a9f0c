"""Leverage tiers: which leverages new positions are assumed to use, and in what shares.

Nobody publishes the real mix. The presets mirror what the commercial maps draw (Coinglass:
10/25/50/100x bars; Coinank: 25..100x arrays) with weights chosen as explained in README
("The model"), not fitted to any date.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.errors import InputError


@dataclass(frozen=True)
class TierSet:
    """Leverages (x) and the share of new notional assumed at each; shares sum to 1."""

    name: str
    leverages: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.leverages:
            raise InputError("a tier set needs at least one leverage")
        if len(self.leverages) != len(self.weights):
            raise InputError("tier leverages and weights must have the same length")
        if len(set(self.leverages)) != len(self.leverages):
            raise InputError("tier leverages must be distinct")
        for lev in self.leverages:
            if not 1 < lev <= 200:
                raise InputError(
                    f"leverage {lev:g}x is out of range; expected more than 1x, at most 200x"
                )
        if not all(math.isfinite(w) for w in self.weights):
            raise InputError("tier weights must be finite numbers")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise InputError("tier weights must be non-negative and not all zero")
        total = float(sum(self.weights))
        object.__setattr__(self, "weights", tuple(float(w) / total for w in self.weights))

    @property
    def weight_array(self) -> np.ndarray:
        return np.asarray(self.weights, dtype=np.float64)

    @property
    def leverage_array(self) -> np.ndarray:
        return np.asarray(self.leverages, dtype=np.float64)


# Shares lean to the higher leverages: retail perp flow concentrates at 20-100x, and those are the
# levels close enough to price to matter within days. Low leverage (10x) still carries the most
# notional per trader, so it keeps a real share.
_FULL = tuple(float(x) for x in range(5, 151, 5))

PRESETS: dict[str, TierSet] = {
    # Every 5x from 5x to 150x (Binance's maximum for a small BTCUSDT position), with weights
    # falling as 1/L: leverage use thins out as it rises. A continuum, not four spikes, is what
    # real positions form, and it places mass close to the price where small moves reach it.
    "full": TierSet("full", _FULL, tuple(1.0 / lev for lev in _FULL)),
    "coinglass": TierSet("coinglass", (10.0, 25.0, 50.0, 100.0), (0.25, 0.30, 0.25, 0.20)),
    "coinank": TierSet(
        "coinank",
        (25.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0),
        (0.16, 0.12, 0.12, 0.14, 0.09, 0.08, 0.08, 0.08, 0.13),
    ),
}


def tier_set(name: str, custom: Mapping[float, float] | None = None) -> TierSet:
    """A preset by name, or ``custom`` ({leverage: weight}) when name is ``custom``."""
    if name == "custom":
        if not custom:
            raise InputError("tiers 'custom' needs a mapping of leverage to weight")
        levs = tuple(sorted(float(k) for k in custom))
        return TierSet("custom", levs, tuple(float(custom[k]) for k in sorted(custom)))
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join([*PRESETS, "custom"])
        raise InputError(f"unknown tier preset {name!r}; expected one of {known}") from None
