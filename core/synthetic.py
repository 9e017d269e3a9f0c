"""Seeded synthetic bars: realistic enough to exercise every code path and benchmark it.

Price is a geometric random walk with volatility clustering and rare jumps; open interest builds
with trends and unwinds after jumps; volume tracks volatility; taker flow leans with the candle.
Pure: the seed decides everything.
"""

from __future__ import annotations

import numpy as np

from core.bars import Bars, make_bars


def synthetic_bars(
    n: int,
    *,
    interval_ms: int = 60_000,
    seed: int = 7,
    start_price: float = 95_000.0,
    start_oi_usd: float = 8e9,
    start_ts: int = 1_767_225_600_000,  # 2026-01-01T00:00Z
) -> Bars:
    """``n`` bars of ``interval_ms`` each, with realized liquidations for backtests."""
    rng = np.random.default_rng(seed)
    per_day = 86_400_000 / interval_ms
    base_vol = 0.025 / np.sqrt(per_day)  # ~2.5% daily volatility
    # Volatility clustering: a slowly mean-reverting log-vol factor.
    logv = _ar1(rng.normal(0, 0.08, n), 1 - 1 / (per_day / 4))
    vol = base_vol * np.exp(logv)
    jumps = (rng.random(n) < 2 / per_day) * rng.normal(0, 0.012, n)
    ret = rng.standard_t(5, n) * vol * 0.8 + jumps
    close = start_price * np.exp(np.cumsum(ret))
    open_ = np.concatenate(([start_price], close[:-1]))
    wick = np.abs(rng.normal(0, 1, (2, n))) * vol * open_ * 0.6
    high = np.maximum(open_, close) + wick[0]
    low = np.minimum(open_, close) - wick[1]
    # OI: follows the trend, unwinds on jumps, mean-reverts to its start.
    d_oi = 0.5 * ret - 6 * np.abs(jumps) + rng.normal(0, 0.8, n) * vol
    oi = start_oi_usd * np.exp(_ar1(d_oi, 1 - 1 / (per_day * 3)))
    volume = start_oi_usd * 0.02 / (per_day / 24) * np.exp(logv * 1.5) * (1 + 40 * np.abs(ret))
    body = (close - open_) / np.maximum(high - low, 1e-9)
    taker = np.clip(0.5 + 0.1 * body + rng.normal(0, 0.02, n), 0.05, 0.95) * volume
    move_l, move_s = (open_ - low) / open_, (high - open_) / open_
    liq_l = oi * 0.02 * move_l**1.5 * np.exp(rng.normal(0, 0.5, n))
    liq_s = oi * 0.02 * move_s**1.5 * np.exp(rng.normal(0, 0.5, n))
    return make_bars(
        ts=start_ts + interval_ms * np.arange(n, dtype=np.int64),
        open=open_,
        high=high,
        low=low,
        close=close,
        oi_usd=oi,
        volume_usd=volume,
        taker_buy_usd=taker,
        funding_rate=np.full(n, 0.0001),
        liq_long_usd=liq_l,
        liq_short_usd=liq_s,
    )


def _ar1(shocks: np.ndarray, phi: float) -> np.ndarray:
    """x_t = phi x_{t-1} + e_t, vectorised through scipy's linear filter."""
    from scipy.signal import lfilter

    return np.asarray(lfilter([1.0], [1.0, -phi], shocks))
