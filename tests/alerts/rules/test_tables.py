"""Subscription tables: from objects == from columns, sort orders, validation, memory."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.rules.tables import (
    NO_EXPIRY,
    ClusterTable,
    CrossTable,
    DigestTable,
    DirectionCode,
    EtfModeCode,
    EtfTable,
    ScheduleCode,
    SideCode,
    SpikeTable,
    SubscriptionTables,
    TimingColumns,
    encode_symbols,
)
from alerts.subscriptions import Kind, Subscription, Timing

SYMS = ("BTC", "ETH", "SOL")


def _subs() -> list[Subscription]:
    t = Timing(cooldown_s=60.0, repeat_s=600.0, rearm_margin=0.1, expires_ms=1_700_000_000_000)
    return [
        Subscription(7, 70, Kind.CLUSTER, "ETH", pct=1.0, min_usd=5e7, side="long"),
        Subscription(3, 30, Kind.CLUSTER, "BTC", pct=2.0, min_usd=1e8, side="any", timing=t),
        Subscription(4, 30, Kind.CLUSTER, "BTC", pct=0.5, min_usd=1e7, side="any"),
        Subscription(9, 90, Kind.CLUSTER, "BTC", pct=0.5, min_usd=1e7, side="short"),
        Subscription(5, 50, Kind.CLUSTER, "BTC", pct=3.0, min_usd=1e7, side="any"),
        Subscription(11, 10, Kind.CROSS, "BTC", level=96_000.0, direction="up"),
        Subscription(12, 10, Kind.CROSS, "ETH", level=3_000.0, direction="down", timing=t),
        Subscription(13, 10, Kind.CROSS, "BTC", level=94_000.0),
        Subscription(21, 20, Kind.SPIKE, "SOL", min_usd=5e6, side="short", window_ms=900_000),
        Subscription(22, 20, Kind.SPIKE, "BTC", min_usd=2.5e7, window_ms=3_600_000),
        Subscription(23, 20, Kind.SPIKE, "BTC", min_usd=1e7, window_ms=3_600_000, side="long"),
        Subscription(31, 30, Kind.ETF, None, etf_mode="threshold", threshold_musd=500.0),
        Subscription(32, 30, Kind.ETF, None),
        Subscription(33, 31, Kind.ETF, None, etf_mode="threshold", threshold_musd=250.0),
        Subscription(41, 40, Kind.DIGEST, None, schedule="after-etf"),
        Subscription(42, 41, Kind.DIGEST, None, schedule="hourly"),
    ]


def _columns(subs: list[Subscription], kind: Kind, symbols: tuple[str, ...]) -> dict[str, Any]:
    """What a database loader would hand over for one kind, in the given row order."""
    rows = [s for s in subs if s.kind == kind]
    idx = {s: i for i, s in enumerate(symbols)}
    cols: dict[str, Any] = {
        "ids": np.array([s.id for s in rows], np.int64),
        "destination_ids": np.array([s.destination_id for s in rows], np.int64),
        "timing": TimingColumns.from_columns(
            len(rows),
            cooldown_ms=[round(s.timing.cooldown_s * 1000) for s in rows],
            repeat_ms=[round(s.timing.repeat_s * 1000) for s in rows],
            expires_ms=[
                NO_EXPIRY if s.timing.expires_ms is None else s.timing.expires_ms for s in rows
            ],
            rearm_margin=[s.timing.rearm_margin for s in rows],
        ),
    }
    if kind in (Kind.CLUSTER, Kind.CROSS, Kind.SPIKE):
        cols["symbol_idx"] = [idx[s.symbol or ""] for s in rows]
    if kind in (Kind.CLUSTER, Kind.SPIKE):
        cols["side"] = [int(SideCode.of(s.side)) for s in rows]
        cols["min_usd"] = [s.min_usd for s in rows]
    if kind == Kind.CLUSTER:
        cols["pct"] = [s.pct for s in rows]
    if kind == Kind.CROSS:
        cols["level"] = [s.level for s in rows]
        cols["direction"] = [int(DirectionCode.of(s.direction)) for s in rows]
    if kind == Kind.SPIKE:
        cols["window_ms"] = [s.window_ms for s in rows]
    if kind == Kind.ETF:
        cols["mode"] = [int(EtfModeCode.of(s.etf_mode)) for s in rows]
        cols["threshold_musd"] = [s.threshold_musd for s in rows]
    if kind == Kind.DIGEST:
        cols["schedule"] = [int(ScheduleCode.of(s.schedule)) for s in rows]
    return cols


def _from_columns(subs: list[Subscription], symbols: tuple[str, ...]) -> SubscriptionTables:
    return SubscriptionTables(
        symbols,
        ClusterTable.from_columns(symbols, **_columns(subs, Kind.CLUSTER, symbols)),
        CrossTable.from_columns(symbols, **_columns(subs, Kind.CROSS, symbols)),
        SpikeTable.from_columns(symbols, **_columns(subs, Kind.SPIKE, symbols)),
        EtfTable.from_columns(**_columns(subs, Kind.ETF, symbols)),
        DigestTable.from_columns(**_columns(subs, Kind.DIGEST, symbols)),
    )


# --- objects == columns ----------------------------------------------------------------------


def test_from_subscriptions_equals_from_columns_in_any_row_order() -> None:
    subs = _subs()
    want = SubscriptionTables.from_subscriptions(subs)
    assert want.symbols == SYMS  # sorted distinct symbols
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(subs))
        shuffled = [subs[i] for i in order]
        assert _from_columns(shuffled, SYMS).equals(want)
        assert SubscriptionTables.from_subscriptions(shuffled).equals(want)


@pytest.mark.parametrize("kind", ["cluster", "cross", "spike", "etf", "digest"])
def test_each_kind_holds_its_rows(kind: str) -> None:
    subs = _subs()
    tables = SubscriptionTables.from_subscriptions(subs)
    table = getattr(tables, kind)
    want = sorted(s.id for s in subs if s.kind == kind)
    assert sorted(table.ids.tolist()) == want
    assert len(tables) == len(subs)


def test_columns_and_dtypes() -> None:
    t = SubscriptionTables.from_subscriptions(_subs())
    assert t.cluster.ids.dtype == np.int64
    assert t.cluster.destination_ids.dtype == np.int64
    assert t.cluster.symbol_idx.dtype == np.int32
    assert t.cluster.side.dtype == np.int8
    assert t.cluster.pct.dtype == np.float64
    assert t.cross.direction.dtype == np.int8
    assert t.spike.window_ms.dtype == np.int32
    assert t.etf.mode.dtype == np.int8
    assert t.digest.schedule.dtype == np.int8
    assert t.cluster.timing.rearm_margin.dtype == np.float64


def test_timing_columns_follow_the_state_machine_units() -> None:
    t = SubscriptionTables.from_subscriptions(_subs()).cluster
    row = int(np.flatnonzero(t.ids == 3)[0])
    assert t.timing.cooldown_ms[row] == 60_000
    assert t.timing.repeat_ms[row] == 600_000
    assert t.timing.expires_ms[row] == 1_700_000_000_000
    assert t.timing.rearm_margin[row] == 0.1
    default = int(np.flatnonzero(t.ids == 4)[0])
    assert t.timing.cooldown_ms[default] == 900_000
    assert t.timing.repeat_ms[default] == 4 * 3_600_000
    assert t.timing.expires_ms[default] == NO_EXPIRY


@pytest.mark.parametrize(
    ("timing", "cooldown_ms", "repeat_ms"),
    [
        (Timing(cooldown_s=0.0, repeat_s=0.0), 0, 0),
        (Timing(cooldown_s=1.0006, repeat_s=math.inf), 1001, 0),  # inf repeat: off
        (Timing(cooldown_s=30.0, repeat_s=30.0), 30_000, 30_000),
    ],
)
def test_timing_rounding(timing: Timing, cooldown_ms: int, repeat_ms: int) -> None:
    cols = TimingColumns.from_timings([timing])
    assert int(cols.cooldown_ms[0]) == cooldown_ms
    assert int(cols.repeat_ms[0]) == repeat_ms


# --- sort orders -----------------------------------------------------------------------------


def test_cluster_rows_sorted_by_symbol_side_min_usd_with_group_offsets() -> None:
    t = SubscriptionTables.from_subscriptions(_subs()).cluster
    keys = list(
        zip(t.symbol_idx.tolist(), t.side.tolist(), t.min_usd.tolist(), t.ids.tolist(), strict=True)
    )
    assert keys == sorted(keys)
    assert t.offsets.shape == (len(SYMS) * 3 + 1,)
    for s in range(len(SYMS)):
        for c in SideCode:
            g = s * 3 + int(c)
            rows = slice(int(t.offsets[g]), int(t.offsets[g + 1]))
            assert (t.symbol_idx[rows] == s).all()
            assert (t.side[rows] == c).all()
    # BTC any: min_usd 1e7 (ids 4, 5: tie broken by id), then 1e8.
    btc_any = slice(int(t.offsets[0]), int(t.offsets[1]))
    assert t.ids[btc_any].tolist() == [4, 5, 3]


def test_cross_spike_etf_digest_orders() -> None:
    t = SubscriptionTables.from_subscriptions(_subs())
    assert t.cross.ids.tolist() == [13, 11, 12]  # BTC 94k, BTC 96k, ETH
    assert t.cross.offsets.tolist() == [0, 2, 3, 3]
    assert t.spike.ids.tolist() == [22, 23, 21]  # BTC any, BTC long, SOL
    assert t.spike.offsets.tolist() == [0, 2, 2, 3]
    assert t.etf.ids.tolist() == [32, 33, 31]  # reversal, then thresholds ascending
    assert t.etf.offsets.tolist() == [0, 1, 3]
    assert t.digest.ids[t.digest.rows(ScheduleCode.AFTER_ETF)].tolist() == [41]
    assert t.digest.ids[t.digest.rows(ScheduleCode.HOURLY)].tolist() == [42]
    assert t.digest.ids[t.digest.rows(ScheduleCode.DAILY)].tolist() == []


def test_given_symbol_list_with_symbols_nobody_subscribes_to() -> None:
    syms = ("ADA", "BTC", "DOGE", "ETH", "SOL", "XRP")
    t = SubscriptionTables.from_subscriptions(_subs(), symbols=syms)
    assert t.symbols == syms
    assert t.cross.offsets.tolist() == [0, 0, 2, 2, 3, 3, 3]
    assert [syms[i] for i in t.cross.symbol_idx.tolist()] == ["BTC", "BTC", "ETH"]


def test_empty_tables() -> None:
    t = SubscriptionTables.from_subscriptions([], symbols=SYMS)
    assert len(t) == 0
    assert t.cluster.offsets.tolist() == [0] * 10
    assert t.etf.offsets.tolist() == [0, 0, 0]
    assert ClusterTable.empty(SYMS).equals(t.cluster)
    assert CrossTable.empty(SYMS).equals(t.cross)
    assert SpikeTable.empty(SYMS).equals(t.spike)
    assert EtfTable.empty().equals(t.etf)
    assert DigestTable.empty().equals(t.digest)


def test_equals_sees_a_difference() -> None:
    a = SubscriptionTables.from_subscriptions(_subs())
    changed = [
        Subscription(4, 30, Kind.CLUSTER, "BTC", pct=0.6, min_usd=1e7) if s.id == 4 else s
        for s in _subs()
    ]
    b = SubscriptionTables.from_subscriptions(changed)
    assert not a.equals(b)
    assert not a.cluster.equals(b.cross)


# --- validation ------------------------------------------------------------------------------


def _cluster_cols(**over: Any) -> dict[str, Any]:
    cols: dict[str, Any] = {
        "ids": [1, 2],
        "destination_ids": [10, 20],
        "symbol_idx": [0, 2],
        "side": [0, 2],
        "pct": [1.0, 2.0],
        "min_usd": [1e6, 2e6],
    }
    cols.update(over)
    return cols


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"destination_ids": [10]}, "destination_ids: expected 2 values"),
        ({"symbol_idx": [0, 3]}, "symbol_idx: every value must be within 0..2"),
        ({"symbol_idx": [-1, 0]}, "symbol_idx"),
        ({"side": [0, 3]}, "side: code 3 is not one of 0=any, 1=long, 2=short"),
        ({"side": [0, 256]}, "side: code 256"),  # would wrap to 0 in int8
        ({"pct": [0.0, 1.0]}, "pct: every value must be finite and above 0"),
        ({"pct": [math.nan, 1.0]}, "pct"),
        ({"min_usd": [1e6, -1.0]}, "min_usd"),
        ({"ids": [1.5, 2.0]}, "ids: expected whole numbers"),
        ({"ids": [[1, 2]]}, "ids: expected a 1-d array"),
        ({"side": ["any", "long"]}, "side: expected numbers"),
    ],
)
def test_cluster_columns_are_checked(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterTable.from_columns(SYMS, **_cluster_cols(**over))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CrossTable.from_columns(SYMS, [1], [1], [0], [0.0], [1]), "level"),
        (lambda: CrossTable.from_columns(SYMS, [1], [1], [0], [1.0], [5]), "direction"),
        (lambda: SpikeTable.from_columns(SYMS, [1], [1], [0], [0], [1e6], [0]), "window_ms"),
        (lambda: SpikeTable.from_columns(SYMS, [1], [1], [0], [0], [1e6], [2**31]), "window_ms"),
        (lambda: EtfTable.from_columns([1], [1], [1], [0.0]), "threshold_musd"),
        (lambda: EtfTable.from_columns([1], [1], [2], [1.0]), "mode"),
        (lambda: DigestTable.from_columns([1], [1], [3]), "schedule"),
        (
            lambda: TimingColumns.from_columns(1, rearm_margin=[1.0]),
            "rearm_margin: every value must be within 0..1",
        ),
        (lambda: TimingColumns.from_columns(1, cooldown_ms=[-1]), "must not be negative"),
        (
            lambda: ClusterTable.from_columns(
                SYMS, [1], [1], [0], [0], [1.0], [1e6], TimingColumns.default(2)
            ),
            "timing column cooldown_ms: expected 1 values",
        ),
    ],
)
def test_other_columns_are_checked(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_reversal_mode_takes_any_threshold() -> None:
    t = EtfTable.from_columns([1, 2], [1, 1], [0, 0], [0.0, 12.0])
    assert len(t) == 2


@pytest.mark.parametrize(
    ("sub", "message"),
    [
        (Subscription(1, 1, Kind.CLUSTER, None, pct=1.0, min_usd=1e6), "needs a symbol"),
        (Subscription(1, 1, Kind.CROSS, "XRP", level=1.0), "'XRP' is not in the symbol list"),
        (Subscription(1, 1, Kind.DIGEST, None, schedule="weekly"), "digest schedule 'weekly'"),
        (
            Subscription(1, 1, Kind.SPIKE, "BTC", min_usd=1e6, side="both"),  # type: ignore[arg-type]
            "'both' is not one of any, long, short",
        ),
    ],
)
def test_bad_subscriptions_are_refused(sub: Subscription, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SubscriptionTables.from_subscriptions([sub], symbols=SYMS)


def test_tables_must_share_one_symbol_list() -> None:
    t = SubscriptionTables.from_subscriptions(_subs())
    with pytest.raises(ValueError, match="same symbol list"):
        SubscriptionTables(SYMS, ClusterTable.empty(("BTC",)), t.cross, t.spike, t.etf, t.digest)


def test_encode_symbols() -> None:
    codes, syms = encode_symbols(["ETH", "BTC", "ETH"])
    assert syms == ("BTC", "ETH")
    assert codes.tolist() == [1, 0, 1]
    assert codes.dtype == np.int32
    codes, syms = encode_symbols(["ETH"], ("SOL", "ETH"))
    assert codes.tolist() == [1]
    with pytest.raises(ValueError, match="'DOGE' is not in the symbol list"):
        encode_symbols(["DOGE"], SYMS)


def test_codes_from_names() -> None:
    assert ScheduleCode.of("after-etf") is ScheduleCode.AFTER_ETF
    assert SideCode.of("Short") is SideCode.SHORT
    assert DirectionCode.of("down") is DirectionCode.DOWN
    assert EtfModeCode.of("threshold") is EtfModeCode.THRESHOLD


# --- memory ----------------------------------------------------------------------------------


def test_memory_per_row_is_lean() -> None:
    """About 70 bytes per row including timing: 1M subscriptions are well under 100 MB."""
    n = 20_000
    rng = np.random.default_rng(0)
    t = ClusterTable.from_columns(
        SYMS,
        np.arange(n),
        rng.integers(0, 100, n),
        rng.integers(0, len(SYMS), n),
        rng.integers(0, 3, n),
        rng.uniform(0.1, 5, n),
        rng.uniform(1e6, 1e8, n),
    )
    assert t.nbytes / n <= 72
    c = CrossTable.from_columns(
        SYMS, np.arange(n), np.zeros(n), np.zeros(n, np.int32), np.ones(n), np.zeros(n, np.int8)
    )
    assert c.nbytes / n <= 64


# --- properties ------------------------------------------------------------------------------


_sub_strategy = st.builds(
    lambda kind, i, sym, pct, usd, side, level, direction, window, mode, thr, sched, margin: (
        Subscription(
            id=i,
            destination_id=i % 7,
            kind=kind,
            symbol=sym if kind in (Kind.CLUSTER, Kind.CROSS, Kind.SPIKE) else None,
            pct=pct,
            min_usd=usd,
            side=side,
            level=level,
            direction=direction,
            window_ms=window,
            etf_mode=mode,
            threshold_musd=thr if mode == "threshold" else 0.0,
            schedule=sched,
            timing=Timing(rearm_margin=margin),
        )
    ),
    st.sampled_from(list(Kind)),
    st.integers(0, 10**12),
    st.sampled_from(SYMS),
    st.sampled_from([0.5, 1.0, 2.0]),
    st.sampled_from([1e6, 5e6, 1e7]),
    st.sampled_from(["any", "long", "short"]),
    st.sampled_from([90.0, 100.0, 110.0]),
    st.sampled_from(["any", "up", "down"]),
    st.sampled_from([60_000, 3_600_000]),
    st.sampled_from(["reversal", "threshold"]),
    st.sampled_from([100.0, 500.0]),
    st.sampled_from(["hourly", "daily", "after-etf"]),
    st.sampled_from([0.0, 0.25]),
)


@settings(max_examples=60, deadline=None)
@given(
    subs=st.lists(_sub_strategy, max_size=40, unique_by=lambda s: s.id),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_objects_equal_columns_in_any_order(subs: list[Subscription], seed: int) -> None:
    want = SubscriptionTables.from_subscriptions(subs, symbols=SYMS)
    order = np.random.default_rng(seed).permutation(len(subs))
    shuffled = [subs[i] for i in order]
    assert _from_columns(shuffled, SYMS).equals(want)
    c = want.cluster
    keys = list(
        zip(c.symbol_idx.tolist(), c.side.tolist(), c.min_usd.tolist(), c.ids.tolist(), strict=True)
    )
    assert keys == sorted(keys)
    assert int(c.offsets[-1]) == len(c)
