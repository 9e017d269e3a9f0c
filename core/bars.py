"""Bars as a struct of numpy arrays (DESIGN §3).

One array per column keeps every analytic vectorised: the estimator never touches a Python
object per bar. Optional columns are NaN where the source did not have them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from core.errors import DataError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

REQUIRED_COLUMNS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "oi_usd")
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "volume_usd",
    "taker_buy_usd",
    "funding_rate",
    "liq_long_usd",
    "liq_short_usd",
)


@dataclass(frozen=True, eq=False)
class Bars:
    """Bars of one venue and symbol, oldest first.

    All arrays have shape ``(n,)``. ``ts`` is the bar open time in epoch ms UTC; prices and
    notionals are USD. Optional columns are all-NaN when absent, and NaN in a row where the
    source left the cell empty.
    """

    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    oi_usd: FloatArray
    volume_usd: FloatArray
    taker_buy_usd: FloatArray
    funding_rate: FloatArray
    liq_long_usd: FloatArray
    liq_short_usd: FloatArray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def interval_ms(self) -> int:
        """The most common spacing between bars (bars may have gaps)."""
        if len(self) < 2:
            return 0
        diffs = np.diff(self.ts)
        values, counts = np.unique(diffs, return_counts=True)
        return int(values[np.argmax(counts)])

    def slice(self, start: int, stop: int) -> Bars:
        """Rows ``start:stop`` as new Bars (views, no copy)."""
        return Bars(**{f.name: getattr(self, f.name)[start:stop] for f in fields(self)})

    def up_to(self, at_ms: int, lookback_ms: int | None = None) -> Bars:
        """Bars that had closed by ``at_ms``, optionally only the last ``lookback_ms`` of them.

        A bar opened at ``ts`` closes at ``ts + interval``; using only closed bars is what keeps
        a map built "at" a time causal.
        """
        interval = self.interval_ms
        stop = int(np.searchsorted(self.ts + interval, at_ms, side="right"))
        start = 0
        if lookback_ms is not None:
            start = int(np.searchsorted(self.ts, at_ms - lookback_ms, side="left"))
        if stop - start < 2:
            first, last = _iso(int(self.ts[0])), _iso(int(self.ts[-1]) + interval)
            raise DataError(
                f"only {max(stop - start, 0)} closed bar(s) in the window ending at "
                f"{_iso(at_ms)}; a map needs at least 2 (the bars cover {first} to {last})"
            )
        return self.slice(start, stop)

    def has(self, column: str) -> bool:
        """Whether an optional column has any value at all."""
        values: FloatArray = getattr(self, column)
        return bool(np.isfinite(values).any())


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def make_bars(**columns: object) -> Bars:
    """Build Bars from arrays, filling absent optional columns with NaN.

    Used by tests, the simulator and feeds; the CSV loader validates before calling it.
    """
    ts = np.asarray(columns["ts"], dtype=np.int64)
    n = ts.shape[0]
    out: dict[str, object] = {"ts": ts}
    for name in REQUIRED_COLUMNS[1:]:
        out[name] = np.asarray(columns[name], dtype=np.float64)
    for name in OPTIONAL_COLUMNS:
        value = columns.get(name)
        out[name] = np.full(n, np.nan) if value is None else np.asarray(value, dtype=np.float64)
    for name, arr in out.items():
        shape = np.asarray(arr).shape
        if shape != (n,):
            raise ValueError(f"column {name} has shape {shape}, expected ({n},)")
    return Bars(**out)  # type: ignore[arg-type]
