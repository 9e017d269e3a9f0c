"""Subscriptions as struct-of-arrays tables, one per kind (issue 4, deliverable 3).

A million :class:`~alerts.subscriptions.Subscription` objects would take about half a gigabyte;
the same rows as numpy columns take about 65 bytes each, timing included. Every table holds

* ``ids``, ``destination_ids``: int64 (ids are the store's keys: unique, not checked here);
* ``symbol_idx``: int32 index into ``symbols`` (kinds with a symbol);
* the kind's parameters: float64 thresholds and int8 codes (:class:`SideCode`, ...);
* ``timing``: :class:`TimingColumns`, the per-subscription controls the state machine needs;
* ``offsets``: row ranges of the groups the rows are sorted by.

Rows are sorted once, at build time, so that evaluation can work on contiguous slices and use
``np.searchsorted`` on sorted thresholds:

==========  =================================================  ==============================
kind        sort key (then ``id``)                              ``offsets`` groups
==========  =================================================  ==============================
cluster     (symbol, side, min_usd)                             symbol * 3 + side
cross       (symbol, level)                                     symbol
spike       (symbol, side, window_ms, min_usd)                  symbol
etf         (mode, threshold_musd)                              mode
digest      (schedule)                                          schedule
==========  =================================================  ==============================

The row order is therefore not the order given: results of :mod:`alerts.rules.evaluate` are
aligned with the table's rows, and ``ids`` maps a row back to its subscription. Tables are
immutable; adding or removing subscriptions means building the table again (from columns that is
a few hundred milliseconds for a million rows).

Two ways in: :meth:`SubscriptionTables.from_subscriptions` (objects, for tests and small sets) and
each table's ``from_columns`` (what a database loader has). Both give identical tables.
``from_columns`` checks shapes, codes and ranges and raises ``ValueError`` naming the column; it
does not re-run :func:`alerts.subscriptions.validate`, which is for people's input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from alerts.subscriptions import Kind, Subscription, Timing

__all__ = [
    "NO_EXPIRY",
    "ClusterTable",
    "CrossTable",
    "DigestTable",
    "DirectionCode",
    "EtfModeCode",
    "EtfTable",
    "ScheduleCode",
    "SideCode",
    "SpikeTable",
    "SubscriptionTables",
    "TimingColumns",
    "encode_symbols",
]

I8 = NDArray[np.int8]
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

NO_EXPIRY = int(np.iinfo(np.int64).max)  # ``expires_ms`` of a subscription that never expires


class _Code(IntEnum):
    """An int8 code with a lookup from the subscription's string value."""

    @classmethod
    def of(cls, name: str) -> Any:
        try:
            return cls[name.upper().replace("-", "_")]
        except KeyError:
            allowed = ", ".join(c.name.lower().replace("_", "-") for c in cls)
            raise ValueError(f"{name!r} is not one of {allowed}") from None


class SideCode(_Code):
    """``side`` of cluster and spike subscriptions, and of clusters (long below, short above)."""

    ANY = 0
    LONG = 1
    SHORT = 2


class DirectionCode(_Code):
    """``direction`` of cross subscriptions."""

    ANY = 0
    UP = 1
    DOWN = 2


class EtfModeCode(_Code):
    REVERSAL = 0
    THRESHOLD = 1


class ScheduleCode(_Code):
    HOURLY = 0
    DAILY = 1
    AFTER_ETF = 2


# --- timing ---------------------------------------------------------------------------------


def _seconds_to_ms(seconds: float) -> int:
    """Whole ms, as :mod:`alerts.state` rounds them: non-finite or non-positive -> 0 ("off")."""
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return round(seconds * 1000)


@dataclass(frozen=True, eq=False)
class TimingColumns:
    """:class:`~alerts.subscriptions.Timing` of n subscriptions, in the state machine's units.

    Attributes
    ----------
    cooldown_ms, repeat_ms : int64 (n,)
        Whole milliseconds; 0 means off (seconds are rounded as :mod:`alerts.state` does).
    expires_ms : int64 (n,)
        Epoch ms; :data:`NO_EXPIRY` for never.
    rearm_margin : float64 (n,)
        Hysteresis margin, a share of the threshold; the evaluator folds it into ``clear``.
    """

    cooldown_ms: I64
    repeat_ms: I64
    expires_ms: I64
    rearm_margin: F64

    @classmethod
    def from_timings(cls, timings: Sequence[Timing]) -> TimingColumns:
        return cls(
            cooldown_ms=np.array([_seconds_to_ms(t.cooldown_s) for t in timings], np.int64),
            repeat_ms=np.array([_seconds_to_ms(t.repeat_s) for t in timings], np.int64),
            expires_ms=np.array(
                [NO_EXPIRY if t.expires_ms is None else t.expires_ms for t in timings], np.int64
            ),
            rearm_margin=np.array([t.rearm_margin for t in timings], np.float64),
        )

    @classmethod
    def default(cls, n: int) -> TimingColumns:
        """n rows of ``Timing()``."""
        t = Timing()
        return cls(
            cooldown_ms=np.full(n, _seconds_to_ms(t.cooldown_s), np.int64),
            repeat_ms=np.full(n, _seconds_to_ms(t.repeat_s), np.int64),
            expires_ms=np.full(n, NO_EXPIRY, np.int64),
            rearm_margin=np.full(n, t.rearm_margin, np.float64),
        )

    @classmethod
    def from_columns(
        cls,
        n: int,
        *,
        cooldown_ms: ArrayLike | None = None,
        repeat_ms: ArrayLike | None = None,
        expires_ms: ArrayLike | None = None,
        rearm_margin: ArrayLike | None = None,
    ) -> TimingColumns:
        """Columns of length n; a column left out takes ``Timing()``'s value."""
        d = cls.default(n)

        def pick(given: ArrayLike | None, default: NDArray[Any], name: str) -> Any:
            return default if given is None else _col(given, default.dtype.type, n, name)

        out = cls(
            cooldown_ms=pick(cooldown_ms, d.cooldown_ms, "cooldown_ms"),
            repeat_ms=pick(repeat_ms, d.repeat_ms, "repeat_ms"),
            expires_ms=pick(expires_ms, d.expires_ms, "expires_ms"),
            rearm_margin=pick(rearm_margin, d.rearm_margin, "rearm_margin"),
        )
        m = out.rearm_margin
        if not bool(np.all((m >= 0) & (m < 1))):
            raise ValueError("column rearm_margin: every value must be within 0..1")
        if bool(np.any(out.cooldown_ms < 0)) or bool(np.any(out.repeat_ms < 0)):
            raise ValueError("columns cooldown_ms and repeat_ms must not be negative")
        return out

    def take(self, order: NDArray[np.intp]) -> TimingColumns:
        return TimingColumns(
            self.cooldown_ms[order],
            self.repeat_ms[order],
            self.expires_ms[order],
            self.rearm_margin[order],
        )

    @property
    def nbytes(self) -> int:
        return _nbytes(self)


# --- helpers ---------------------------------------------------------------------------------


def _col(values: ArrayLike, dtype: type[np.generic], n: int | None, name: str) -> Any:
    """``values`` as a 1-d array of ``dtype`` (of length ``n`` when given), or ValueError."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"column {name}: expected a 1-d array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"column {name}: expected {n} values, got {arr.shape[0]}")
    if arr.size and arr.dtype.kind not in "biuf":
        raise ValueError(f"column {name}: expected numbers, got dtype {arr.dtype}")
    if np.dtype(dtype).kind in "iu" and arr.dtype.kind == "f" and arr.size:
        whole = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2.0**62)
        if not bool(np.all(whole)):
            raise ValueError(f"column {name}: expected whole numbers")
    return np.asarray(arr, dtype=dtype)


def _codes(values: ArrayLike, n: int, name: str, allowed: type[IntEnum]) -> I8:
    arr: I64 = _col(values, np.int64, n, name)  # check before narrowing: 256 must not become 0
    ok = np.isin(arr, np.array([int(c) for c in allowed], np.int64))
    if not bool(np.all(ok)):
        bad = int(arr[~ok][0])
        names = ", ".join(f"{int(c)}={c.name.lower()}" for c in allowed)
        raise ValueError(f"column {name}: code {bad} is not one of {names}")
    return arr.astype(np.int8)


def _positive(values: ArrayLike, n: int, name: str) -> F64:
    arr: F64 = _col(values, np.float64, n, name)
    if not bool(np.all(np.isfinite(arr) & (arr > 0))):
        raise ValueError(f"column {name}: every value must be finite and above 0")
    return arr


def _symbol_idx(values: ArrayLike, n: int, n_symbols: int) -> I32:
    arr: I64 = _col(values, np.int64, n, "symbol_idx")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n_symbols):
        raise ValueError(
            f"column symbol_idx: every value must be within 0..{n_symbols - 1} "
            f"(the symbol list has {n_symbols})"
        )
    return arr.astype(np.int32)


def _offsets(group: NDArray[Any], n_groups: int) -> I64:
    """Row ranges of sorted group ids 0..n_groups-1: rows of group g are offsets[g]:offsets[g+1]."""
    counts = np.bincount(group, minlength=n_groups) if group.size else np.zeros(n_groups, np.int64)
    out = np.zeros(n_groups + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _base(ids: ArrayLike, destination_ids: ArrayLike) -> tuple[I64, I64, int]:
    ids_a: I64 = _col(ids, np.int64, None, "ids")
    n = int(ids_a.shape[0])
    return ids_a, _col(destination_ids, np.int64, n, "destination_ids"), n


def _timing(timing: TimingColumns | None, n: int) -> TimingColumns:
    if timing is None:
        return TimingColumns.default(n)
    for f in fields(timing):
        if getattr(timing, f.name).shape != (n,):
            raise ValueError(f"timing column {f.name}: expected {n} values")
    return timing


def _nbytes(obj: object) -> int:
    total = 0
    for f in fields(obj):  # type: ignore[arg-type]
        v = getattr(obj, f.name)
        if isinstance(v, np.ndarray):
            total += int(v.nbytes)
        elif isinstance(v, TimingColumns):
            total += v.nbytes
    return total


def encode_symbols(
    names: Sequence[str], symbols: Sequence[str] | None = None
) -> tuple[I32, tuple[str, ...]]:
    """Symbol names as int32 codes into a symbol list.

    ``symbols`` defaults to the sorted distinct names. A name not in a given ``symbols`` is a
    ValueError.
    """
    syms = tuple(sorted(set(names))) if symbols is None else tuple(symbols)
    index = {s: i for i, s in enumerate(syms)}
    try:
        codes = np.fromiter((index[n] for n in names), np.int32, count=len(names))
    except KeyError as e:
        raise ValueError(f"symbol {e.args[0]!r} is not in the symbol list") from None
    return codes, syms


class _Table:
    """What every table has: ``__len__``, ``nbytes`` and column-wise ``equals``."""

    ids: I64

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays."""
        return _nbytes(self)

    def equals(self, other: object) -> bool:
        """Same type, symbols and every column equal (NaN never occurs in a valid table)."""
        if type(other) is not type(self):
            return False
        for f in fields(self):  # type: ignore[arg-type]
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, TimingColumns):
                if not all(
                    np.array_equal(getattr(a, g.name), getattr(b, g.name)) for g in fields(a)
                ):
                    return False
            elif isinstance(a, np.ndarray):
                if a.dtype != b.dtype or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True


# --- the tables ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ClusterTable(_Table):
    """``cluster`` subscriptions, sorted by (symbol, side, min_usd, id).

    Attributes
    ----------
    symbols : tuple of str
    ids, destination_ids : int64 (n,)
    symbol_idx : int32 (n,)
    side : int8 (n,)   :class:`SideCode`
    pct : float64 (n,)   distance threshold, percent of the price
    min_usd : float64 (n,)   minimum cluster size, USD
    timing : TimingColumns
    offsets : int64 (len(symbols) * 3 + 1,)
        Rows of (symbol s, side c) are ``offsets[s*3+c] : offsets[s*3+c+1]``.
    """

    symbols: tuple[str, ...]
    ids: I64
    destination_ids: I64
    symbol_idx: I32
    side: I8
    pct: F64
    min_usd: F64
    timing: TimingColumns
    offsets: I64

    @classmethod
    def from_columns(
        cls,
        symbols: Sequence[str],
        ids: ArrayLike,
        destination_ids: ArrayLike,
        symbol_idx: ArrayLike,
        side: ArrayLike,
        pct: ArrayLike,
        min_usd: ArrayLike,
        timing: TimingColumns | None = None,
    ) -> ClusterTable:
        syms = tuple(symbols)
        ids_a, dest, n = _base(ids, destination_ids)
        sym = _symbol_idx(symbol_idx, n, len(syms))
        side_a = _codes(side, n, "side", SideCode)
        pct_a = _positive(pct, n, "pct")
        min_a = _positive(min_usd, n, "min_usd")
        tim = _timing(timing, n)
        group = sym.astype(np.int64) * 3 + side_a
        order = np.lexsort((ids_a, min_a, group))
        return cls(
            symbols=syms,
            ids=ids_a[order],
            destination_ids=dest[order],
            symbol_idx=sym[order],
            side=side_a[order],
            pct=pct_a[order],
            min_usd=min_a[order],
            timing=tim.take(order),
            offsets=_offsets(group[order], len(syms) * 3),
        )

    @classmethod
    def empty(cls, symbols: Sequence[str]) -> ClusterTable:
        return cls.from_columns(symbols, [], [], [], [], [], [])


@dataclass(frozen=True, eq=False)
class CrossTable(_Table):
    """``cross`` subscriptions, sorted by (symbol, level, id).

    Attributes
    ----------
    level : float64 (n,)   USD price level
    direction : int8 (n,)   :class:`DirectionCode`
    offsets : int64 (len(symbols) + 1,)   rows of symbol s are ``offsets[s]:offsets[s+1]``
    """

    symbols: tuple[str, ...]
    ids: I64
    destination_ids: I64
    symbol_idx: I32
    level: F64
    direction: I8
    timing: TimingColumns
    offsets: I64

    @classmethod
    def from_columns(
        cls,
        symbols: Sequence[str],
        ids: ArrayLike,
        destination_ids: ArrayLike,
        symbol_idx: ArrayLike,
        level: ArrayLike,
        direction: ArrayLike,
        timing: TimingColumns | None = None,
    ) -> CrossTable:
        syms = tuple(symbols)
        ids_a, dest, n = _base(ids, destination_ids)
        sym = _symbol_idx(symbol_idx, n, len(syms))
        level_a = _positive(level, n, "level")
        dir_a = _codes(direction, n, "direction", DirectionCode)
        tim = _timing(timing, n)
        order = np.lexsort((ids_a, level_a, sym))
        return cls(
            symbols=syms,
            ids=ids_a[order],
            destination_ids=dest[order],
            symbol_idx=sym[order],
            level=level_a[order],
            direction=dir_a[order],
            timing=tim.take(order),
            offsets=_offsets(sym[order], len(syms)),
        )

    @classmethod
    def empty(cls, symbols: Sequence[str]) -> CrossTable:
        return cls.from_columns(symbols, [], [], [], [], [])


@dataclass(frozen=True, eq=False)
class SpikeTable(_Table):
    """``spike`` subscriptions, sorted by (symbol, side, window_ms, min_usd, id).

    Attributes
    ----------
    side : int8 (n,)   :class:`SideCode`
    min_usd : float64 (n,)   realized liquidations that trigger, USD
    window_ms : int32 (n,)   the window asked for (at most 24 days fit in int32 ms)
    offsets : int64 (len(symbols) + 1,)
    """

    symbols: tuple[str, ...]
    ids: I64
    destination_ids: I64
    symbol_idx: I32
    side: I8
    min_usd: F64
    window_ms: I32
    timing: TimingColumns
    offsets: I64

    @classmethod
    def from_columns(
        cls,
        symbols: Sequence[str],
        ids: ArrayLike,
        destination_ids: ArrayLike,
        symbol_idx: ArrayLike,
        side: ArrayLike,
        min_usd: ArrayLike,
        window_ms: ArrayLike,
        timing: TimingColumns | None = None,
    ) -> SpikeTable:
        syms = tuple(symbols)
        ids_a, dest, n = _base(ids, destination_ids)
        sym = _symbol_idx(symbol_idx, n, len(syms))
        side_a = _codes(side, n, "side", SideCode)
        min_a = _positive(min_usd, n, "min_usd")
        win64: I64 = _col(window_ms, np.int64, n, "window_ms")
        if not bool(np.all((win64 > 0) & (win64 <= np.iinfo(np.int32).max))):
            raise ValueError("column window_ms: every value must be above 0 and below 2**31")
        win = win64.astype(np.int32)
        tim = _timing(timing, n)
        order = np.lexsort((ids_a, min_a, win, side_a, sym))
        return cls(
            symbols=syms,
            ids=ids_a[order],
            destination_ids=dest[order],
            symbol_idx=sym[order],
            side=side_a[order],
            min_usd=min_a[order],
            window_ms=win[order],
            timing=tim.take(order),
            offsets=_offsets(sym[order], len(syms)),
        )

    @classmethod
    def empty(cls, symbols: Sequence[str]) -> SpikeTable:
        return cls.from_columns(symbols, [], [], [], [], [], [])


@dataclass(frozen=True, eq=False)
class EtfTable(_Table):
    """``etf`` subscriptions (no symbol), sorted by (mode, threshold_musd, id).

    Attributes
    ----------
    mode : int8 (n,)   :class:`EtfModeCode`
    threshold_musd : float64 (n,)   threshold mode: |daily total| that triggers, US$ millions;
        ignored (any value, usually 0) in reversal mode
    offsets : int64 (3,)   rows of mode m are ``offsets[m]:offsets[m+1]``
    """

    ids: I64
    destination_ids: I64
    mode: I8
    threshold_musd: F64
    timing: TimingColumns
    offsets: I64

    @classmethod
    def from_columns(
        cls,
        ids: ArrayLike,
        destination_ids: ArrayLike,
        mode: ArrayLike,
        threshold_musd: ArrayLike,
        timing: TimingColumns | None = None,
    ) -> EtfTable:
        ids_a, dest, n = _base(ids, destination_ids)
        mode_a = _codes(mode, n, "mode", EtfModeCode)
        thr: F64 = _col(threshold_musd, np.float64, n, "threshold_musd")
        thr_mode = mode_a == EtfModeCode.THRESHOLD
        if not bool(np.all(np.isfinite(thr) & (~thr_mode | (thr > 0)))):
            raise ValueError(
                "column threshold_musd: must be finite, and above 0 for threshold mode"
            )
        tim = _timing(timing, n)
        order = np.lexsort((ids_a, thr, mode_a))
        return cls(
            ids=ids_a[order],
            destination_ids=dest[order],
            mode=mode_a[order],
            threshold_musd=thr[order],
            timing=tim.take(order),
            offsets=_offsets(mode_a[order], len(EtfModeCode)),
        )

    @classmethod
    def empty(cls) -> EtfTable:
        return cls.from_columns([], [], [], [])


@dataclass(frozen=True, eq=False)
class DigestTable(_Table):
    """``digest`` subscriptions, sorted by (schedule, id).

    Digests are not conditions: the scheduler's cron jobs send them (issue 4, deliverable 6) and
    take their recipients from :meth:`rows`. They are here so that one loader fills one set of
    tables and the memory figure counts them.
    """

    ids: I64
    destination_ids: I64
    schedule: I8
    timing: TimingColumns
    offsets: I64

    @classmethod
    def from_columns(
        cls,
        ids: ArrayLike,
        destination_ids: ArrayLike,
        schedule: ArrayLike,
        timing: TimingColumns | None = None,
    ) -> DigestTable:
        ids_a, dest, n = _base(ids, destination_ids)
        sched = _codes(schedule, n, "schedule", ScheduleCode)
        tim = _timing(timing, n)
        order = np.lexsort((ids_a, sched))
        return cls(
            ids=ids_a[order],
            destination_ids=dest[order],
            schedule=sched[order],
            timing=tim.take(order),
            offsets=_offsets(sched[order], len(ScheduleCode)),
        )

    @classmethod
    def empty(cls) -> DigestTable:
        return cls.from_columns([], [], [])

    def rows(self, schedule: ScheduleCode) -> slice:
        """The rows of one schedule (a slice into every column)."""
        s = int(schedule)
        return slice(int(self.offsets[s]), int(self.offsets[s + 1]))


# --- all kinds -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SubscriptionTables:
    """One table per kind, sharing one symbol list (``MarketState`` must use the same list)."""

    symbols: tuple[str, ...]
    cluster: ClusterTable
    cross: CrossTable
    spike: SpikeTable
    etf: EtfTable
    digest: DigestTable

    def __post_init__(self) -> None:
        for t in (self.cluster, self.cross, self.spike):
            if t.symbols != self.symbols:
                raise ValueError("every table must use the same symbol list")

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables())

    def tables(self) -> tuple[_Table, ...]:
        return (self.cluster, self.cross, self.spike, self.etf, self.digest)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tables())

    def equals(self, other: SubscriptionTables) -> bool:
        return self.symbols == other.symbols and all(
            a.equals(b) for a, b in zip(self.tables(), other.tables(), strict=True)
        )

    @classmethod
    def from_subscriptions(
        cls, subs: Iterable[Subscription], symbols: Sequence[str] | None = None
    ) -> SubscriptionTables:
        """Tables from subscription objects.

        ``symbols`` defaults to the sorted distinct symbols of the cluster, cross and spike
        subscriptions; a subscription on a symbol not in a given list is a ValueError, as is one of
        those kinds without a symbol.
        """
        by_kind: dict[Kind, list[Subscription]] = {k: [] for k in Kind}
        for s in subs:
            by_kind[s.kind].append(s)
        with_symbol = by_kind[Kind.CLUSTER] + by_kind[Kind.CROSS] + by_kind[Kind.SPIKE]
        for s in with_symbol:
            if not s.symbol:
                raise ValueError(f"subscription {s.id}: a {s.kind} subscription needs a symbol")
        names = [s.symbol or "" for s in with_symbol]
        syms = tuple(sorted(set(names))) if symbols is None else tuple(symbols)

        def common(rows: list[Subscription]) -> tuple[list[int], list[int], I32, TimingColumns]:
            codes, _ = encode_symbols([s.symbol or "" for s in rows], syms)
            return (
                [s.id for s in rows],
                [s.destination_id for s in rows],
                codes,
                TimingColumns.from_timings([s.timing for s in rows]),
            )

        cl = by_kind[Kind.CLUSTER]
        ids, dest, sym, tim = common(cl)
        cluster = ClusterTable.from_columns(
            syms,
            np.array(ids, np.int64),
            np.array(dest, np.int64),
            sym,
            np.array([SideCode.of(s.side) for s in cl], np.int8),
            np.array([s.pct for s in cl], np.float64),
            np.array([s.min_usd for s in cl], np.float64),
            tim,
        )
        cr = by_kind[Kind.CROSS]
        ids, dest, sym, tim = common(cr)
        cross = CrossTable.from_columns(
            syms,
            np.array(ids, np.int64),
            np.array(dest, np.int64),
            sym,
            np.array([s.level for s in cr], np.float64),
            np.array([DirectionCode.of(s.direction) for s in cr], np.int8),
            tim,
        )
        sp = by_kind[Kind.SPIKE]
        ids, dest, sym, tim = common(sp)
        spike = SpikeTable.from_columns(
            syms,
            np.array(ids, np.int64),
            np.array(dest, np.int64),
            sym,
            np.array([SideCode.of(s.side) for s in sp], np.int8),
            np.array([s.min_usd for s in sp], np.float64),
            np.array([s.window_ms for s in sp], np.int64),
            tim,
        )
        et = by_kind[Kind.ETF]
        etf = EtfTable.from_columns(
            np.array([s.id for s in et], np.int64),
            np.array([s.destination_id for s in et], np.int64),
            np.array([EtfModeCode.of(s.etf_mode) for s in et], np.int8),
            np.array([s.threshold_musd for s in et], np.float64),
            TimingColumns.from_timings([s.timing for s in et]),
        )
        dg = by_kind[Kind.DIGEST]
        digest = DigestTable.from_columns(
            np.array([s.id for s in dg], np.int64),
            np.array([s.destination_id for s in dg], np.int64),
            np.array([_schedule_code(s) for s in dg], np.int8),
            TimingColumns.from_timings([s.timing for s in dg]),
        )
        return cls(syms, cluster, cross, spike, etf, digest)


def _schedule_code(s: Subscription) -> int:
    try:
        return int(ScheduleCode.of(s.schedule))
    except ValueError as e:
        raise ValueError(f"subscription {s.id}: digest schedule {e}") from None
