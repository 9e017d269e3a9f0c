"""Vectorized rule evaluation: hand-made cases per kind, and equality with the plain loop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.rules import (
    DataStatus,
    ReversalStage,
    SubscriptionTables,
    TickConditions,
    etf_state,
    evaluate_cluster,
    evaluate_snapshots,
    market_state,
)
from alerts.rules.loop_reference import LoopResult, evaluate_loop
from alerts.subscriptions import Kind, Subscription, Timing
from core.etf import EtfFlows
from core.etf_report import FlowReport, flow_report
from core.liqmap import Cluster, CumulativePeaks
from core.snapshot import LiqTotals, Snapshot

NAN = math.nan
INF = math.inf
H1, H4, H24, M1 = 3_600_000, 14_400_000, 86_400_000, 60_000
PEAKS = CumulativePeaks(0.0, 0.0, 0.0, 0.0)


def cluster(side: str, price: float, usd: float) -> Cluster:
    return Cluster(side=side, price=price, price_low=price, price_high=price, usd=usd)


def snap(
    symbol: str = "BTC",
    price: float = 100.0,
    prev: float = 100.0,
    clusters: Sequence[Cluster] = (),
    liqs: dict[str, LiqTotals] | None = None,
    stale: tuple[str, ...] = (),
) -> Snapshot:
    return Snapshot(
        symbol=symbol,
        ts_ms=0,
        price=price,
        prev_price=prev,
        venues=("binance",),
        clusters=tuple(clusters),
        peaks=PEAKS,
        liqs={} if liqs is None else liqs,
        stale=stale,
    )


def csub(sid: int, pct: float, min_usd: float, side: Any = "any", **kw: Any) -> Subscription:
    return Subscription(
        sid, 1, Kind.CLUSTER, kw.pop("symbol", "BTC"), pct=pct, min_usd=min_usd, side=side, **kw
    )


FIELDS = {
    "cluster": ("distance_pct", "cluster_idx", "cluster_price", "cluster_usd"),
    "cross": ("crossed", "distance_pct"),
    "spike": ("window_ms",),
    "etf": ("stage", "event_day"),
}


def _same(a: Any, b: Any) -> bool:
    """Equal to the last bit, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def vector_rows(tables: SubscriptionTables, conds: TickConditions) -> dict[int, dict[str, Any]]:
    """Every evaluated row as a dict of plain values, by subscription id."""
    out: dict[int, dict[str, Any]] = {}
    for kind, extra in FIELDS.items():
        table, c = getattr(tables, kind), getattr(conds, kind)
        assert len(c) == len(table)
        for i, sid in enumerate(table.ids.tolist()):
            out[sid] = {
                "holds": bool(c.holds[i]),
                "status": int(c.status[i]),
                "stale": bool(c.stale[i]),
                "value": float(c.value[i]),
                "clear": float(c.clear[i]),
            } | {f: getattr(c, f)[i].item() for f in extra}
    return out


def loop_rows(loop: dict[int, LoopResult], tables: SubscriptionTables) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for kind, extra in FIELDS.items():
        for sid in getattr(tables, kind).ids.tolist():
            r = loop[sid]
            out[sid] = {
                "holds": r.holds,
                "status": int(r.status),
                "stale": r.stale,
                "value": float(r.value),
                "clear": float(r.clear),
            } | {f: getattr(r, f) for f in extra}
    return out


def evaluate_both(
    subs: list[Subscription],
    snaps: list[Snapshot],
    report: FlowReport | None = None,
    *,
    etf_stale: bool = False,
    symbols: Sequence[str] | None = None,
) -> dict[int, dict[str, Any]]:
    """Vectorized rows by id, after checking they equal the loop's to the last bit."""
    tables = SubscriptionTables.from_subscriptions(subs, symbols=symbols)
    conds = evaluate_snapshots(tables, snaps, report, etf_stale=etf_stale)
    got = vector_rows(tables, conds)
    want = loop_rows(
        evaluate_loop(subs, {s.symbol: s for s in snaps}, report, etf_stale=etf_stale), tables
    )
    assert got.keys() == want.keys()
    for sid, row in got.items():
        bad = {k: (row[k], want[sid][k]) for k in row if not _same(row[k], want[sid][k])}
        assert not bad, f"subscription {sid}: (vectorized, loop) differ in {bad}"
    return got


# --- market state ----------------------------------------------------------------------------


def test_market_state_arrays() -> None:
    snaps = [
        snap(
            "ETH",
            200.0,
            190.0,
            [
                cluster("long", 198.0, 1e6),
                cluster("up", 1.0, 1.0),
                cluster("short", NAN, 1e6),
                cluster("short", 204.0, 3e6),
            ],
            {"1h": LiqTotals(H1, 1.0, 2.0), "tick": LiqTotals(M1, 0.5, 0.25)},
        ),
        snap("BTC", stale=("binance:oi",), liqs={"4h": LiqTotals(H4, 7.0, 8.0)}),
        snap("DOGE"),  # nobody subscribes: ignored
    ]
    m = market_state(snaps, ("BTC", "ETH", "SOL"))
    assert m.status.tolist() == [DataStatus.STALE, DataStatus.OK, DataStatus.NO_DATA]
    assert m.price[:2].tolist() == [100.0, 200.0] and math.isnan(m.price[2])
    assert m.liq_windows_ms.tolist() == [M1, H1, H4]
    # ETH: tick, 1h, and the 4h slot resolves to its longest (1h); BTC: 4h everywhere.
    assert m.liq_window_ms.tolist() == [[H4, H4, H4], [M1, H1, H1], [0, 0, 0]]
    assert m.liq_usd[1, 0].tolist() == [0.75, 0.5, 0.25]
    assert m.liq_usd[1, 2].tolist() == [3.0, 1.0, 2.0]
    assert np.isnan(m.liq_usd[2]).all()
    # Clusters: the invalid side and the NaN price are left out; positions are kept.
    assert m.cluster_offsets.tolist() == [0, 0, 2, 2]
    assert m.cluster_index.tolist() == [0, 3]
    assert m.cluster_side.tolist() == [1, 2]
    assert m.cluster_distance_pct.tolist() == [-1.0, 2.0]


def test_market_state_symbol_lists_must_match() -> None:
    tables = SubscriptionTables.from_subscriptions([csub(1, 1.0, 1e6)])
    with pytest.raises(ValueError, match="different symbol lists"):
        evaluate_cluster(tables.cluster, market_state([snap()], ("BTC", "ETH")))


# --- cluster ---------------------------------------------------------------------------------

# Price 100. Longs below, shorts above. Distances are exact: 1%, 2%, 3%, 0.5%.
CLUSTERS = [
    cluster("long", 99.0, 5e7),  # 0: -1%, $50M
    cluster("short", 102.0, 2e8),  # 1: +2%, $200M
    cluster("long", 97.0, 3e8),  # 2: -3%, $300M
    cluster("short", 100.5, 1e7),  # 3: +0.5%, $10M
]


@pytest.mark.parametrize(
    ("pct", "min_usd", "side", "holds", "idx", "value"),
    [
        (1.0, 5e7, "any", True, 0, 1.0),  # exactly at both thresholds
        (0.999, 5e7, "any", False, 0, 1.0),  # just outside: still reports the nearest
        (0.5, 1e6, "any", True, 3, 0.5),  # smallest cluster is the nearest
        (2.0, 1e8, "any", True, 1, 2.0),  # the $50M at 1% does not qualify
        (2.0, 1e8, "long", False, 2, 3.0),  # long side only: the $300M at 3%
        (3.0, 1e8, "long", True, 2, 3.0),
        (5.0, 2.5e8, "short", False, -1, INF),  # no short cluster that large
        (5.0, 1e9, "any", False, -1, INF),
        (0.5, 1e7, "short", True, 3, 0.5),
    ],
)
def test_cluster_semantics(
    pct: float, min_usd: float, side: str, holds: bool, idx: int, value: float
) -> None:
    row = evaluate_both([csub(1, pct, min_usd, side)], [snap(clusters=CLUSTERS)])[1]
    assert (row["holds"], row["cluster_idx"], row["value"]) == (holds, idx, value)
    assert row["status"] == DataStatus.OK
    if idx >= 0:
        c = CLUSTERS[idx]
        assert (row["cluster_price"], row["cluster_usd"]) == (c.price, c.usd)
        assert row["distance_pct"] == (c.price - 100.0) / 100.0 * 100
        assert row["clear"] <= 0 if holds else True


@pytest.mark.parametrize(
    ("clusters", "margin", "clear"),
    [
        ([], 0.25, INF),  # no candidate at all
        ([cluster("long", 98.75, 1e8)], 0.25, 0.0),  # 1.25% = pct * (1 + m): re-arms
        ([cluster("long", 98.8, 1e8)], 0.25, 1.2 / 1.0 - 1.25),  # 1.2%: not yet
        ([cluster("long", 99.5, 7e6)], 0.25, 0.75 - 0.7),  # near but shrank below 75% of min
        ([cluster("long", 99.5, 8e6)], 0.25, 0.75 - 0.8),  # shrank, not by the margin
        ([cluster("long", 99.5, 7e6), cluster("long", 98.8, 1e8)], 0.25, 1.2 - 1.25),
    ],
)
def test_cluster_clear_is_the_rearm_distance(
    clusters: list[Cluster], margin: float, clear: float
) -> None:
    sub = csub(1, 1.0, 1e7, timing=Timing(rearm_margin=margin))
    row = evaluate_both([sub], [snap(clusters=clusters)])[1]
    assert row["clear"] == pytest.approx(clear, abs=1e-12)
    assert not row["holds"] or row["clear"] <= 0


def test_cluster_ties_take_the_first_in_snapshot_order() -> None:
    clusters = [cluster("short", 101.0, 5e7), cluster("long", 99.0, 5e7)]
    assert evaluate_both([csub(1, 1.0, 1e6)], [snap(clusters=clusters)])[1]["cluster_idx"] == 0
    rows = evaluate_both([csub(1, 1.0, 1e6)], [snap(clusters=clusters[::-1])])
    assert rows[1]["cluster_idx"] == 0


def test_cluster_distance_is_taken_from_the_current_price() -> None:
    c = Cluster("short", 101.0, 100.0, 102.0, 1e8, distance_pct=5.0)  # stored at an older price
    row = evaluate_both([csub(1, 1.0, 1e6)], [snap(clusters=[c])])[1]
    assert row["holds"] and row["distance_pct"] == 1.0


@pytest.mark.parametrize(
    ("snapshot", "status"),
    [
        (snap(clusters=CLUSTERS, stale=("okx:liqs",)), DataStatus.STALE),
        (snap(price=NAN, clusters=CLUSTERS), DataStatus.NO_DATA),
        (snap(price=0.0, clusters=CLUSTERS), DataStatus.NO_DATA),
        (snap(price=NAN, clusters=CLUSTERS, stale=("x",)), DataStatus.STALE),
        (snap(symbol="ETH", clusters=CLUSTERS), DataStatus.NO_DATA),  # no BTC snapshot
    ],
)
def test_cluster_never_holds_without_fresh_data(snapshot: Snapshot, status: DataStatus) -> None:
    row = evaluate_both([csub(1, 10.0, 1e6)], [snapshot], symbols=("BTC", "ETH"))[1]
    assert not row["holds"] and row["stale"] and row["status"] == status
    assert math.isnan(row["clear"]) and math.isnan(row["value"]) and row["cluster_idx"] == -1


def test_symbols_with_no_subscriptions_and_stale_neighbours() -> None:
    subs = [csub(1, 1.0, 1e6, symbol="ETH"), csub(2, 1.0, 1e6, symbol="SOL")]
    snaps = [
        snap("BTC", clusters=CLUSTERS),  # nobody subscribes to BTC
        snap("ETH", 200.0, clusters=[cluster("long", 199.0, 2e6)]),
        snap("SOL", 50.0, clusters=[cluster("long", 49.9, 2e6)], stale=("bybit:oi",)),
    ]
    rows = evaluate_both(subs, snaps, symbols=("ADA", "BTC", "ETH", "SOL", "XRP"))
    assert rows[1]["holds"] and rows[1]["value"] == 0.5
    assert not rows[2]["holds"] and rows[2]["status"] == DataStatus.STALE


# --- cross -----------------------------------------------------------------------------------


def xsub(sid: int, level: float, direction: Any = "any", symbol: str = "BTC") -> Subscription:
    return Subscription(sid, 1, Kind.CROSS, symbol, level=level, direction=direction)


@pytest.mark.parametrize(
    ("prev", "price", "level", "direction", "holds", "crossed"),
    [
        (99.0, 101.0, 100.0, "up", True, 1),
        (99.0, 100.0, 100.0, "up", True, 1),  # reaching the level counts
        (100.0, 101.0, 100.0, "up", False, 0),  # starting on it does not
        (101.0, 99.0, 100.0, "up", False, -1),
        (101.0, 99.0, 100.0, "down", True, -1),
        (101.0, 100.0, 100.0, "down", True, -1),
        (100.0, 99.0, 100.0, "down", False, 0),
        (99.0, 101.0, 100.0, "down", False, 1),
        (99.0, 101.0, 100.0, "any", True, 1),
        (101.0, 99.0, 100.0, "any", True, -1),
        (100.0, 100.0, 100.0, "any", False, 0),  # no move
        (99.0, 101.0, 102.0, "any", False, 0),  # not reached
    ],
)
def test_cross_semantics(
    prev: float, price: float, level: float, direction: str, holds: bool, crossed: int
) -> None:
    row = evaluate_both([xsub(1, level, direction)], [snap(price=price, prev=prev)])[1]
    assert (row["holds"], row["crossed"]) == (holds, crossed)
    assert row["value"] == price
    assert row["clear"] == abs((price - level) / level * 100) - 0.25  # margin read in percent


def test_cross_many_levels_at_once() -> None:
    levels = [95.0, 97.0, 98.0, 99.0, 100.0, 101.0, 103.0]
    subs = [xsub(i, lv) for i, lv in enumerate(levels)] + [xsub(100, 98.0, "up")]
    rows = evaluate_both(subs, [snap(price=97.0, prev=100.0)])
    assert [rows[i]["holds"] for i in range(len(levels))] == [
        False,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert not rows[100]["holds"]


@pytest.mark.parametrize(
    ("snapshot", "status"),
    [
        (snap(price=101.0, prev=NAN), DataStatus.NO_DATA),  # first tick: no previous price
        (snap(price=NAN, prev=99.0), DataStatus.NO_DATA),
        (snap(price=101.0, prev=99.0, stale=("binance:price",)), DataStatus.STALE),
    ],
)
def test_cross_needs_both_prices(snapshot: Snapshot, status: DataStatus) -> None:
    row = evaluate_both([xsub(1, 100.0)], [snapshot])[1]
    assert not row["holds"] and row["status"] == status and math.isnan(row["clear"])


# --- spike -----------------------------------------------------------------------------------

LIQS = {
    "tick": LiqTotals(M1, 1e6, 2e6),
    "1h": LiqTotals(H1, 1e7, 2e7),
    "4h": LiqTotals(H4, 4e7, 2e7),
    "24h": LiqTotals(H24, 1e8, 1e8),
}


def ssub(sid: int, min_usd: float, window_ms: int, side: Any = "any", **kw: Any) -> Subscription:
    return Subscription(
        sid,
        1,
        Kind.SPIKE,
        kw.pop("symbol", "BTC"),
        min_usd=min_usd,
        window_ms=window_ms,
        side=side,
        **kw,
    )


@pytest.mark.parametrize(
    ("window_ms", "side", "min_usd", "holds", "window", "total"),
    [
        (H1, "any", 3e7, True, H1, 3e7),  # exactly at the threshold
        (H1, "any", 3.0001e7, False, H1, 3e7),
        (H1, "long", 1e7, True, H1, 1e7),
        (H1, "short", 2.5e7, False, H1, 2e7),
        (M1, "any", 3e6, True, M1, 3e6),
        (5 * M1, "any", 3e6, True, H1, 3e7),  # 5m reads the next longer window, 1h
        (15 * M1, "short", 2e7, True, H1, 2e7),
        (2 * H1, "long", 4e7, True, H4, 4e7),
        (H24, "any", 2e8, True, H24, 2e8),
        (2 * H24, "any", 2e8, True, H24, 2e8),  # longer than all: the longest
    ],
)
def test_spike_semantics(
    window_ms: int, side: str, min_usd: float, holds: bool, window: int, total: float
) -> None:
    row = evaluate_both([ssub(1, min_usd, window_ms, side)], [snap(liqs=LIQS)])[1]
    assert (row["holds"], row["window_ms"], row["value"]) == (holds, window, total)
    assert row["clear"] == 0.75 - total / min_usd


def test_spike_windows_resolve_per_snapshot() -> None:
    """ETH lacks the 1h window BTC has: its 15m alert reads its next longer one, 4h."""
    eth = {"tick": LiqTotals(M1, 1.0, 1.0), "4h": LiqTotals(H4, 5e6, 5e6)}
    subs = [ssub(1, 1e6, 15 * M1), ssub(2, 1e6, 15 * M1, symbol="ETH")]
    rows = evaluate_both(subs, [snap(liqs=LIQS), snap("ETH", liqs=eth)])
    assert (rows[1]["window_ms"], rows[2]["window_ms"]) == (H1, H4)


@pytest.mark.parametrize(
    ("snapshot", "status", "holds"),
    [
        (snap(liqs=LIQS, stale=("bybit:liqs",)), DataStatus.STALE, False),
        (snap(liqs={}), DataStatus.NO_DATA, False),
        (snap(liqs={"1h": LiqTotals(H1, NAN, 1e9)}), DataStatus.NO_DATA, False),
        (snap(price=NAN, liqs=LIQS), DataStatus.OK, True),  # a spike needs no price
    ],
)
def test_spike_data_status(snapshot: Snapshot, status: DataStatus, holds: bool) -> None:
    row = evaluate_both([ssub(1, 1e6, H1)], [snapshot])[1]
    assert (row["status"], row["holds"]) == (status, holds)


def test_spike_without_any_window_anywhere() -> None:
    rows = evaluate_both([ssub(1, 1e6, H1), csub(2, 1.0, 1e6)], [snap(liqs={})])
    assert rows[1]["status"] == DataStatus.NO_DATA and rows[2]["status"] == DataStatus.OK


# --- etf -------------------------------------------------------------------------------------

JAN = [
    ("2025-12-29", 100.0),
    ("2025-12-30", 50.0),
    ("2025-12-31", -20.0),
    ("2026-01-02", 300.0),
    ("2026-01-05", 200.0),
    ("2026-01-06", -312.0),
    ("2026-01-07", -486.1),
    ("2026-01-08", -398.9),
    ("2026-01-09", -250.0),
    ("2026-01-12", 116.7),
    ("2026-01-13", 753.8),
    ("2026-01-14", 840.6),
]


def report(asof: str) -> FlowReport:
    total = np.array([t for _, t in JAN])
    flows = EtfFlows(
        dates=np.array([d for d, _ in JAN], dtype="datetime64[D]"),
        funds=("IBIT", "FBTC"),
        flows=np.stack([total * 0.6, total * 0.4], axis=1),
        total=total,
    )
    return flow_report(flows, asof=asof)


def esub(sid: int, threshold: float | None = None, margin: float = 0.25) -> Subscription:
    if threshold is None:
        return Subscription(sid, 1, Kind.ETF, None, timing=Timing(rearm_margin=margin))
    return Subscription(
        sid,
        1,
        Kind.ETF,
        None,
        etf_mode="threshold",
        threshold_musd=threshold,
        timing=Timing(rearm_margin=margin),
    )


D12, D13 = date(2026, 1, 12).toordinal(), date(2026, 1, 13).toordinal()


@pytest.mark.parametrize(
    ("asof", "holds", "stage", "event_day", "value"),
    [
        ("2026-01-09", False, 0, 0, -250.0),  # outflow streak, no turn yet
        ("2026-01-12", True, ReversalStage.REVERSAL_DAY, D12, 116.7),
        ("2026-01-13", True, ReversalStage.CONFIRMATION_DAY, D12, 753.8),  # same event
        ("2026-01-14", False, 0, 0, 840.6),  # the turn is old news
    ],
)
def test_etf_reversal_mode(
    asof: str, holds: bool, stage: int, event_day: int, value: float
) -> None:
    row = evaluate_both([esub(1)], [], report(asof))[1]
    assert (row["holds"], row["stage"], row["event_day"], row["value"]) == (
        holds,
        stage,
        event_day,
        value,
    )
    assert row["clear"] == (-INF if holds else INF)


@pytest.mark.parametrize(
    ("asof", "threshold", "holds"),
    [
        ("2026-01-13", 753.8, True),  # exactly at the threshold
        ("2026-01-13", 753.9, False),
        ("2026-01-07", 400.0, True),  # outflows count by magnitude
        ("2026-01-07", 500.0, False),
    ],
)
def test_etf_threshold_mode(asof: str, threshold: float, holds: bool) -> None:
    r = report(asof)
    row = evaluate_both([esub(1, threshold)], [], r)[1]
    assert row["holds"] == holds
    assert row["event_day"] == (r.latest.date.toordinal() if holds else 0)
    assert row["clear"] == 0.75 - abs(r.latest.total_musd) / threshold


def test_etf_many_thresholds_at_once() -> None:
    subs = [esub(i, t) for i, t in enumerate([100.0, 500.0, 753.8, 800.0, 1000.0])] + [esub(9)]
    rows = evaluate_both(subs, [], report("2026-01-13"))
    assert [rows[i]["holds"] for i in range(5)] == [True, True, True, False, False]
    assert rows[9]["holds"]


@pytest.mark.parametrize(
    ("rep", "stale", "status"),
    [(None, False, DataStatus.NO_DATA), ("2026-01-12", True, DataStatus.STALE)],
)
def test_etf_without_fresh_report(rep: str | None, stale: bool, status: DataStatus) -> None:
    r = None if rep is None else report(rep)
    rows = evaluate_both([esub(1), esub(2, 10.0)], [], r, etf_stale=stale)
    for row in rows.values():
        assert not row["holds"] and row["status"] == status and math.isnan(row["clear"])


def test_etf_state_reduces_the_report() -> None:
    s = etf_state(report("2026-01-13"))
    assert (s.status, s.stage, s.reversal_day, s.latest_day) == (
        DataStatus.OK,
        ReversalStage.CONFIRMATION_DAY,
        D12,
        D13,
    )
    assert s.latest_total_musd == 753.8


# --- one tick, all kinds ---------------------------------------------------------------------


def test_evaluate_snapshots_covers_every_kind_and_skips_digests() -> None:
    subs = [
        csub(1, 1.0, 5e7),
        xsub(2, 100.0),
        ssub(3, 1e6, H1),
        esub(4),
        Subscription(5, 1, Kind.DIGEST, None, schedule="daily"),
    ]
    tables = SubscriptionTables.from_subscriptions(subs)
    conds = evaluate_snapshots(
        tables, [snap("BTC", 101.0, 99.0, CLUSTERS, LIQS)], report("2026-01-12")
    )
    assert conds.holding() == {"cluster": 1, "cross": 1, "spike": 1, "etf": 1}
    assert 5 not in evaluate_loop(subs, {}, None)


# --- vectorized == loop on random inputs -----------------------------------------------------

SYMBOLS = ("AAA", "BBB", "CCC", "DDD")  # DDD: in the list, never in a snapshot
GRID = [97.0, 98.0, 99.0, 99.5, 100.0, 100.5, 101.0, 102.0, 103.0]
USD = [1e6, 5e6, 1e7, 5e7, 1e8]
WINDOW_SET = [M1, H1, H4, H24]

_cluster = st.builds(
    cluster,
    st.sampled_from(["long", "short", "long", "short", "other"]),
    st.sampled_from([*GRID, NAN]),
    st.sampled_from([*USD, 0.0, NAN]),
)
_liqs = st.dictionaries(
    st.sampled_from(["tick", "1h", "4h", "24h", "24h-copy"]),
    st.tuples(st.sampled_from([0.0, 1e6, 5e6, 1e7, NAN]), st.sampled_from([0.0, 1e6, 5e7])),
    max_size=4,
).map(
    lambda d: {
        k: LiqTotals({"tick": M1, "1h": H1, "4h": H4, "24h": H24, "24h-copy": H24}[k], *v)
        for k, v in d.items()
    }
)


@st.composite
def _snapshots(draw: st.DrawFn) -> list[Snapshot]:
    out = []
    for sym in SYMBOLS[:3]:
        if draw(st.booleans()) and draw(st.booleans()):
            continue  # a quarter of the symbols have no snapshot
        out.append(
            snap(
                sym,
                draw(st.sampled_from([*GRID, NAN])),
                draw(st.sampled_from([*GRID, NAN])),
                draw(st.lists(_cluster, max_size=7)),
                draw(_liqs),
                ("feed",) if draw(st.integers(0, 5)) == 0 else (),
            )
        )
    return out


_timing = st.sampled_from([0.0, 0.1, 0.25, 0.5]).map(lambda m: Timing(rearm_margin=m))


@st.composite
def _subscription(draw: st.DrawFn, sid: int) -> Subscription:
    kind = draw(st.sampled_from([Kind.CLUSTER, Kind.CROSS, Kind.SPIKE, Kind.ETF, Kind.DIGEST]))
    sym = draw(st.sampled_from(SYMBOLS))
    timing = draw(_timing)
    side = draw(st.sampled_from(["any", "long", "short"]))
    if kind == Kind.CLUSTER:
        pct = draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]))
        return csub(sid, pct, draw(st.sampled_from(USD)), side, symbol=sym, timing=timing)
    if kind == Kind.CROSS:
        direction: Any = draw(st.sampled_from(["any", "up", "down"]))
        return Subscription(
            sid, 1, kind, sym, level=draw(st.sampled_from(GRID)), direction=direction, timing=timing
        )
    if kind == Kind.SPIKE:
        window = draw(st.sampled_from([M1, 5 * M1, H1, 2 * H1, H4, H24, 2 * H24]))
        return ssub(sid, draw(st.sampled_from(USD)), window, side, symbol=sym, timing=timing)
    if kind == Kind.ETF:
        if draw(st.booleans()):
            return Subscription(sid, 1, kind, None, timing=timing)
        thr = draw(st.sampled_from([100.0, 116.7, 250.0, 753.8, 1000.0]))
        return Subscription(
            sid, 1, kind, None, etf_mode="threshold", threshold_musd=thr, timing=timing
        )
    return Subscription(sid, 1, kind, None, schedule="hourly")


@st.composite
def _subscriptions(draw: st.DrawFn) -> list[Subscription]:
    n = draw(st.integers(0, 60))
    return [draw(_subscription(i)) for i in range(n)]


_REPORTS = {d: report(d) for d in ("2026-01-09", "2026-01-12", "2026-01-13", "2026-01-14")}


@settings(max_examples=300, deadline=None)
@given(
    subs=_subscriptions(),
    snaps=_snapshots(),
    asof=st.sampled_from([None, *_REPORTS]),
    etf_stale=st.booleans(),
)
def test_property_vectorized_equals_loop(
    subs: list[Subscription], snaps: list[Snapshot], asof: str | None, etf_stale: bool
) -> None:
    rep = None if asof is None else _REPORTS[asof]
    rows = evaluate_both(subs, snaps, rep, etf_stale=etf_stale, symbols=SYMBOLS)
    kinds = {s.id: s.kind for s in subs}
    for sid, row in rows.items():
        assert not (row["holds"] and row["stale"])  # stale data never holds
        if row["holds"] and kinds[sid] != Kind.CROSS:  # a cross's clear is about the level
            assert row["clear"] <= 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_property_vectorized_equals_loop_on_larger_random_tables(seed: int) -> None:
    """Continuous random values: hundreds of subscriptions per (symbol, side) group."""
    rng = np.random.default_rng(seed)
    snaps = []
    for sym in SYMBOLS[:3]:
        p = float(rng.uniform(50, 150))
        clusters = [
            cluster(
                str(rng.choice(["long", "short"])),
                float(p * (1 + rng.uniform(-0.06, 0.06))),
                float(rng.lognormal(17, 1)),
            )
            for _ in range(int(rng.integers(0, 12)))
        ]
        liqs = {
            str(w): LiqTotals(w, float(rng.lognormal(15, 1)), float(rng.lognormal(15, 1)))
            for w in WINDOW_SET
        }
        snaps.append(snap(sym, p, float(p * (1 + rng.normal(0, 0.01))), clusters, liqs))
    subs: list[Subscription] = []
    for i in range(600):
        sym = str(rng.choice(SYMBOLS[:3]))
        side = str(rng.choice(["any", "long", "short"]))
        timing = Timing(rearm_margin=float(rng.uniform(0, 0.5)))
        k = i % 3
        if k == 0:
            pct, usd = float(rng.uniform(0.1, 6)), float(rng.lognormal(17, 1))
            subs.append(csub(i, pct, usd, side, symbol=sym, timing=timing))
        elif k == 1:
            p = next(s.price for s in snaps if s.symbol == sym)
            lv = float(p * (1 + rng.normal(0, 0.01)))
            subs.append(Subscription(i, 1, Kind.CROSS, sym, level=lv, timing=timing))
        else:
            w = int(rng.integers(M1, 2 * H24))
            subs.append(ssub(i, float(rng.lognormal(15.5, 1)), w, side, symbol=sym, timing=timing))
    rows = evaluate_both(subs, snaps, symbols=SYMBOLS)
    assert any(r["holds"] for r in rows.values())
