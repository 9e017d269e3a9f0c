"""Maintenance-margin brackets and isolated-margin liquidation prices (DESIGN §4.1 step 4).

Default table: Binance USD-M BTCUSDT. Tiers 1-4 are Binance's public bracket endpoint as of
2025-08-19; tiers 5-12 carry caps and rates from the 2024-10-24 table with the maintenance
amounts recomputed by Binance's continuity rule (see ../shared/reference/liquidation-maps.md §3).
Brackets change; the live bot reads them at run time where it can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Brackets:
    """Notional floors (USD), maintenance-margin rates and maintenance amounts (cum), by tier."""

    floors: tuple[float, ...]
    mmr: tuple[float, ...]
    cum: tuple[float, ...]

    def lookup(self, notional: float) -> tuple[float, float]:
        """(mmr, cum) for a position of ``notional`` USD."""
        idx = int(np.searchsorted(np.asarray(self.floors), notional, side="right")) - 1
        idx = max(idx, 0)
        return self.mmr[idx], self.cum[idx]


def _continuity_cum(floors: tuple[float, ...], mmr: tuple[float, ...]) -> tuple[float, ...]:
    # Binance: cum_n = cum_{n-1} + floor_n * (mmr_n - mmr_{n-1}); keeps the margin continuous.
    cum = [0.0]
    for i in range(1, len(floors)):
        cum.append(cum[-1] + floors[i] * (mmr[i] - mmr[i - 1]))
    return tuple(round(c, 6) for c in cum)


_FLOORS = (0.0, 300e3, 800e3, 3e6, 12e6, 70e6, 100e6, 230e6, 480e6, 600e6, 800e6, 1.2e9)
_MMR = (0.004, 0.005, 0.0065, 0.01, 0.02, 0.025, 0.05, 0.10, 0.125, 0.15, 0.25, 0.50)
BINANCE_BTCUSDT = Brackets(_FLOORS, _MMR, _continuity_cum(_FLOORS, _MMR))


def liq_price_long(
    entry: FloatArray, leverage: FloatArray, mmr: float, cum_per_unit: FloatArray | float = 0.0
) -> FloatArray:
    """Isolated long liquidation price, linear USDT perpetual.

    ``LP = (EP (1 - 1/L) - cum/Q) / (1 - mmr)``; ``cum_per_unit`` is cum/Q in USD. Broadcasts.
    """
    return np.asarray((entry * (1.0 - 1.0 / leverage) - cum_per_unit) / (1.0 - mmr))


def liq_price_short(
    entry: FloatArray, leverage: FloatArray, mmr: float, cum_per_unit: FloatArray | float = 0.0
) -> FloatArray:
    """Isolated short liquidation price: ``LP = (EP (1 + 1/L) + cum/Q) / (1 + mmr)``."""
    return np.asarray((entry * (1.0 + 1.0 / leverage) + cum_per_unit) / (1.0 + mmr))
