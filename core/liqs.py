"""Realized liquidations: a rolling ledger of force orders and its window and per-bar totals.

The liquidation streams (DESIGN §4.2) deliver :class:`~core.feeds.types.LiqEvent` one at a time;
``/liqs``, spike alerts and the map's calibration want sums: over the last hour, four hours and
day, by side and venue, and per bar. :class:`LiqLedger` keeps the events of one symbol as a
struct of numpy arrays (time, venue code, side, USD), appends in amortized O(1), forgets what is
older than its retention, and answers a window in two binary searches and one ``np.bincount``:
100k events aggregate in well under a millisecond.

**Lower bounds.** Binance and OKX publish at most one liquidation per symbol per second (the
largest in that second), so their totals are *lower bounds* of what was liquidated; Bybit's
``allLiquidation`` stream sends every one. :data:`SAMPLED_VENUES` names the sampled venues;
whoever shows a total should say "at least" when one of them contributed
(:func:`is_lower_bound`).

Pure: no I/O and no clock; ``now_ms`` is always an argument. Windows are half-open,
``[now - window, now)``, like bars (``[open, open + interval)``), so consecutive ticks partition
time: an event is counted in exactly one tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

from core.errors import InputError
from core.feeds.types import VENUES, LiqEvent
from core.snapshot import LiqTotals

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
CodeArray = NDArray[np.int8]

LONG, SHORT = 0, 1  # side codes: the position that was liquidated
SIDE_CODE: dict[str, int] = {"long": LONG, "short": SHORT}
VENUE_CODE: dict[str, int] = {v: i for i, v in enumerate(VENUES)}
SAMPLED_VENUES: frozenset[str] = frozenset({"binance", "okx"})  # at most 1 event/s/symbol


def is_lower_bound(totals: LiqTotals) -> bool:
    """True when a sampled venue (Binance, OKX) contributed, so the total is a lower bound."""
    return any(v in SAMPLED_VENUES and sum(usd) > 0 for v, usd in totals.by_venue.items())


def window_totals(
    ts: IntArray,
    venue: CodeArray,
    side: CodeArray,
    usd: FloatArray,
    start_ms: int,
    end_ms: int,
    n_venues: int = len(VENUES),
) -> FloatArray:
    """USD liquidated in ``[start_ms, end_ms)``, by venue and side.

    Parameters
    ----------
    ts : ndarray of shape (n,), int64, sorted ascending
        Event times, epoch ms UTC.
    venue, side : ndarray of shape (n,), int8
        Venue codes (index into :data:`core.feeds.types.VENUES`) and side codes (0 long, 1 short).
    usd : ndarray of shape (n,)
        Notional of each event, USD.

    Returns
    -------
    ndarray of shape (n_venues, 2)
        ``out[v, s]`` is the USD of venue ``v`` and side ``s``.
    """
    a = int(np.searchsorted(ts, start_ms, side="left"))
    b = int(np.searchsorted(ts, end_ms, side="left"))
    if b <= a:
        return np.zeros((n_venues, 2))
    flat = venue[a:b].astype(np.intp) * 2 + side[a:b]
    out = np.bincount(flat, weights=usd[a:b], minlength=2 * n_venues)
    return np.asarray(out, dtype=np.float64).reshape(n_venues, 2)


def per_bar_totals(
    ts: IntArray, side: CodeArray, usd: FloatArray, bar_ts: IntArray, interval_ms: int
) -> FloatArray:
    """USD liquidated inside each bar ``[bar_ts[i], bar_ts[i] + interval_ms)``, by side.

    Parameters
    ----------
    ts : ndarray of shape (n,), int64
        Event times (any order).
    bar_ts : ndarray of shape (m,), int64, sorted ascending
        Bar open times; bars may have gaps (events in a gap count nowhere).

    Returns
    -------
    ndarray of shape (m, 2)
        Long USD in column 0, short USD in column 1.
    """
    m = bar_ts.shape[0]
    if m == 0 or ts.size == 0:
        return np.zeros((m, 2))
    idx = np.searchsorted(bar_ts, ts, side="right") - 1
    safe = np.maximum(idx, 0)
    inside = (idx >= 0) & (ts < bar_ts[safe] + interval_ms)
    flat = safe[inside] * 2 + side[inside]
    out = np.bincount(flat, weights=usd[inside], minlength=2 * m)
    return np.asarray(out, dtype=np.float64).reshape(m, 2)


class LiqLedger:
    """Realized liquidations of one symbol, kept for ``retention_ms`` (struct of arrays).

    Events may arrive slightly out of order (several venues' streams interleave); the ledger
    sorts lazily before the next query. Events with a non-finite or non-positive ``usd`` are
    not kept (counted in :attr:`rejected`). ``covered_from_ms`` is when listening started: bars
    before it are reported as unknown (NaN) by :meth:`per_bar`, not as zero.
    """

    def __init__(
        self, retention_ms: int, *, capacity: int = 1024, covered_from_ms: int | None = None
    ) -> None:
        if retention_ms <= 0:
            raise InputError(f"retention must be positive, got {retention_ms} ms")
        self.retention_ms = int(retention_ms)
        self.covered_from_ms = covered_from_ms
        self.rejected = 0
        cap = max(int(capacity), 16)
        self._ts = np.zeros(cap, dtype=np.int64)
        self._venue = np.zeros(cap, dtype=np.int8)
        self._side = np.zeros(cap, dtype=np.int8)
        self._usd = np.zeros(cap, dtype=np.float64)
        self._lo = 0  # live events are rows [_lo, _hi)
        self._hi = 0
        self._sorted = True
        self._forgotten_before: int | None = None

    def __len__(self) -> int:
        return self._hi - self._lo

    @property
    def capacity(self) -> int:
        """Rows allocated (the ledger prunes by retention before it grows)."""
        return int(self._ts.shape[0])

    @property
    def newest_ms(self) -> int | None:
        if not len(self):
            return None
        self._ensure_sorted()
        return int(self._ts[self._hi - 1])

    @property
    def oldest_ms(self) -> int | None:
        if not len(self):
            return None
        self._ensure_sorted()
        return int(self._ts[self._lo])

    # -- appending -------------------------------------------------------------------------

    def append(self, event: LiqEvent) -> bool:
        """Add one event; False when it was rejected (bad USD)."""
        return self.extend((event,)) == 1

    def extend(self, events: Iterable[LiqEvent]) -> int:
        """Add events (any venues, any order); returns how many were kept."""
        rows = list(events)
        if not rows:
            return 0
        try:
            venue = np.fromiter((VENUE_CODE[e.venue] for e in rows), np.int8, len(rows))
            side = np.fromiter((SIDE_CODE[e.side] for e in rows), np.int8, len(rows))
        except KeyError as exc:
            raise InputError(f"unknown venue or side {exc.args[0]!r} in a liquidation") from None
        return self.append_arrays(
            np.fromiter((e.ts_ms for e in rows), np.int64, len(rows)),
            venue,
            side,
            np.fromiter((e.usd for e in rows), np.float64, len(rows)),
        )

    def append_arrays(
        self, ts: IntArray, venue: CodeArray, side: CodeArray, usd: FloatArray
    ) -> int:
        """Add events given as arrays (codes as in :data:`VENUE_CODE`, :data:`SIDE_CODE`)."""
        ts, usd = np.asarray(ts, np.int64), np.asarray(usd, np.float64)
        venue, side = np.asarray(venue, np.int8), np.asarray(side, np.int8)
        ok = np.isfinite(usd) & (usd > 0)
        self.rejected += int((~ok).sum())
        if not ok.all():
            ts, venue, side, usd = ts[ok], venue[ok], side[ok], usd[ok]
        n = int(ts.shape[0])
        if n == 0:
            return 0
        self._reserve(n, newest=int(ts.max()))  # may prune and sort what is there
        before_last = len(self) > 0 and int(ts.min()) < int(self._ts[self._hi - 1])
        if before_last or (n > 1 and bool((np.diff(ts) < 0).any())):
            self._sorted = False
        sl = slice(self._hi, self._hi + n)
        self._ts[sl], self._venue[sl], self._side[sl], self._usd[sl] = ts, venue, side, usd
        self._hi += n
        return n

    def _reserve(self, n: int, newest: int) -> None:
        """Room for ``n`` more rows: forget what retention drops, compact, else grow."""
        if self._hi + n <= self._ts.shape[0]:
            return
        if len(self):  # retention relative to the newest event keeps the ledger bounded
            self.prune(max(newest, int(self._ts[self._lo : self._hi].max())))
        live = len(self)
        cap = self._ts.shape[0]
        if live + n > cap // 2:
            cap = max(cap * 2, 2 * (live + n))
        arrays = []
        for arr in (self._ts, self._venue, self._side, self._usd):
            new = np.zeros(cap, dtype=arr.dtype)
            new[:live] = arr[self._lo : self._hi]
            arrays.append(new)
        self._ts, self._venue, self._side, self._usd = arrays
        self._lo, self._hi = 0, live

    def prune(self, now_ms: int) -> int:
        """Forget events older than ``now_ms - retention_ms``; returns how many."""
        self._ensure_sorted()
        cut = now_ms - self.retention_ms
        k = int(np.searchsorted(self._ts[self._lo : self._hi], cut, side="left"))
        self._lo += k
        if k:  # what is older than the cut is no longer known
            self._forgotten_before = max(self._forgotten_before or cut, cut)
        return k

    def _ensure_sorted(self) -> None:
        if self._sorted:
            return
        sl = slice(self._lo, self._hi)
        order = np.argsort(self._ts[sl], kind="stable")
        for arr in (self._ts, self._venue, self._side, self._usd):
            arr[sl] = arr[sl][order]
        self._sorted = True

    # -- queries ---------------------------------------------------------------------------

    def arrays(self) -> tuple[IntArray, CodeArray, CodeArray, FloatArray]:
        """(ts, venue, side, usd) of the live events, time-sorted (views: do not modify)."""
        self._ensure_sorted()
        sl = slice(self._lo, self._hi)
        return self._ts[sl], self._venue[sl], self._side[sl], self._usd[sl]

    def by_venue_side(self, now_ms: int, window_ms: int) -> FloatArray:
        """USD in ``[now - window, now)`` as an array of shape (len(VENUES), 2)."""
        if window_ms <= 0:
            raise InputError(f"window must be positive, got {window_ms} ms")
        if window_ms > self.retention_ms:
            raise InputError(
                f"a {window_ms} ms window is longer than the ledger keeps ({self.retention_ms} ms)"
            )
        ts, venue, side, usd = self.arrays()
        return window_totals(ts, venue, side, usd, now_ms - window_ms, now_ms)

    def totals(self, now_ms: int, window_ms: int) -> LiqTotals:
        """Realized liquidations in ``[now - window, now)``, by side and venue.

        ``by_venue`` lists the venues with any liquidation in the window. Binance and OKX
        totals are lower bounds (see the module docstring).
        """
        grid = self.by_venue_side(now_ms, window_ms)
        by_venue: dict[str, tuple[float, float]] = {
            VENUES[v]: (float(grid[v, LONG]), float(grid[v, SHORT]))
            for v in range(grid.shape[0])
            if grid[v].sum() > 0
        }
        return LiqTotals(
            window_ms=int(window_ms),
            long_usd=float(grid[:, LONG].sum()),
            short_usd=float(grid[:, SHORT].sum()),
            by_venue=by_venue,
        )

    def per_bar(
        self, bar_ts: IntArray, interval_ms: int, venues: Sequence[str] | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Realized (long, short) USD per bar, each of shape (len(bar_ts),).

        To set beside the map's predicted liquidations and to feed
        :func:`core.calibration.calibrate`. ``venues`` restricts to those venues (a venue's
        own bars against its own stream). Bars that start before ``covered_from_ms`` or before
        what retention still holds are NaN: unknown, not zero.
        """
        ts, venue, side, usd = self.arrays()
        if venues is not None:
            try:
                codes = [VENUE_CODE[v] for v in venues]
            except KeyError as exc:
                raise InputError(f"unknown venue {exc.args[0]!r}") from None
            keep = np.isin(venue, np.asarray(codes, dtype=np.int8))
            ts, side, usd = ts[keep], side[keep], usd[keep]
        bar_ts = np.asarray(bar_ts, dtype=np.int64)
        out = per_bar_totals(ts, side, usd, bar_ts, interval_ms)
        known = [t for t in (self.covered_from_ms, self._forgotten_before) if t is not None]
        if known:
            out[bar_ts < max(known)] = np.nan
        return out[:, LONG].copy(), out[:, SHORT].copy()
