"""Notification payloads: the exact headlines, details, grouped text, and dict round trips; plus
the shared number formatting in core/fmt.py."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pytest

from alerts.notifications import (
    ClusterApproach,
    Digest,
    DigestItem,
    EtfFlow,
    EtfReversal,
    GroupedMessage,
    LevelCross,
    LiqSpike,
    NoticeKind,
    Notification,
    Outgoing,
    from_dict,
    message_from_dict,
    message_to_dict,
    to_dict,
)
from core import fmt
from core.etf_report import (
    DayFlow,
    FlowReport,
    FundFlow,
    Reversal,
    ReversalRule,
    RollingSum,
    Streak,
    ZScore,
)
from core.liqmap import Cluster, CumulativePeaks
from core.snapshot import LiqTotals, Snapshot

TS = 1_768_341_600_000  # 2026-01-13T22:00Z
CLUSTER_HEADLINE = "BTC $95,734 is 0.5% below a $157M short cluster at $96,202 (100x 45%, 50x 38%)"
REVERSAL_HEADLINE = (
    "ETF flows reversed: +$753.8M today after 4 days of outflows totalling -$1.38B; "
    "FBTC led with +$351.4M"
)


def _snapshot(clusters: tuple[Cluster, ...] = (), stale: tuple[str, ...] = ()) -> Snapshot:
    return Snapshot(
        symbol="BTC",
        ts_ms=TS,
        price=95_734.0,
        prev_price=95_100.0,
        venues=("binance",),
        clusters=clusters,
        peaks=CumulativePeaks(0.0, 95_734.0, 451e6, 96_202.0),
        liqs={"1h": LiqTotals(3_600_000, 8.1e6, 4.2e6)},
        stale=stale,
    )


SHORT = Cluster(
    side="short",
    price=96_202.0,
    price_low=96_100.0,
    price_high=96_300.0,
    usd=157e6,
    tier_share={100.0: 0.45, 50.0: 0.38, 25.0: 0.17},
    distance_pct=0.49,
)
LONG = Cluster(
    side="long",
    price=93_500.0,
    price_low=93_400.0,
    price_high=93_600.0,
    usd=2.1e9,
    tier_share={25.0: 1.0},
)
FLOWS_0113 = DayFlow(
    date(2026, 1, 13),
    753.8,
    (FundFlow("FBTC", 351.4), FundFlow("BITB", 159.4), FundFlow("IBIT", 126.3)),
)
OUTFLOWS = Streak(-1, 4, -1378.1, date(2026, 1, 6), date(2026, 1, 9))


def _report() -> FlowReport:
    """The /etf report of 2026-01-13, built by hand."""
    rev = Reversal(
        date=date(2026, 1, 12),
        direction="bullish",
        total_musd=116.7,
        prior_streak=OUTFLOWS,
        leaders=(FundFlow("FBTC", 111.7),),
        next_day=FLOWS_0113,
    )
    return FlowReport(
        until=date(2026, 1, 13),
        latest=FLOWS_0113,
        streak=Streak(1, 2, 870.5, date(2026, 1, 12), date(2026, 1, 13)),
        rolling=(RollingSum(3, -180.0, date(2026, 1, 9), date(2026, 1, 13)),),
        zscore=ZScore(2.1, 90, 20, 90),
        reversals=(rev,),
        rule=ReversalRule(),
    )


# --- the two headlines the issue quotes ---------------------------------------------------------


def test_cluster_approach_headline_from_a_snapshot_and_cluster() -> None:
    n = ClusterApproach.from_cluster(_snapshot((SHORT,)), SHORT, threshold_pct=1.0, min_usd=100e6)
    assert n.headline == CLUSTER_HEADLINE
    assert n.distance_pct == pytest.approx(0.4889, abs=1e-4)
    assert n.details[0] == "Your alert: within 1.0% of a cluster of at least $100M."


def test_etf_reversal_headline_from_a_hand_built_report() -> None:
    n = EtfReversal.from_report(_report())
    assert n is not None
    assert n.headline == REVERSAL_HEADLINE
    assert n.details == (
        "Also: BITB +$159.4M, IBIT +$126.3M",
        "The turn came on 2026-01-12 with +$116.7M.",
    )


def test_etf_reversal_headline_on_the_real_data(etf_json: Path) -> None:
    from core.etf_io import load_flows
    from core.etf_report import flow_report

    report = flow_report(load_flows(etf_json), asof="2026-01-13")
    n = EtfReversal.from_report(report)
    assert n is not None
    assert n.headline == REVERSAL_HEADLINE


def test_no_reversal_no_payload() -> None:
    report = _report()
    quiet = FlowReport(
        report.until,
        report.latest,
        report.streak,
        report.rolling,
        report.zscore,
        (),
        report.rule,
    )
    assert EtfReversal.from_report(quiet) is None


# --- every kind --------------------------------------------------------------------------------

PAYLOADS: dict[str, tuple[Notification, str]] = {
    "cluster above price": (
        ClusterApproach("ETH", TS, 3_312.4, "long", 3_280.0, 42.5e6, ((25.0, 0.6),)),
        "ETH $3,312 is 1.0% above a $42.5M long cluster at $3,280 (25x 60%)",
    ),
    "cluster without tiers": (
        ClusterApproach("SOL", TS, 142.35, "short", 145.0, 1.2e6),
        "SOL $142.35 is 1.9% below a $1.2M short cluster at $145.00",
    ),
    "cross up": (
        LevelCross("BTC", TS, 96_000.0, 96_150.0, 95_800.0),
        "BTC crossed above $96,000: now $96,150, was $95,800",
    ),
    "cross down": (
        LevelCross("BTC", TS, 90_000.0, 89_950.0, 90_400.0),
        "BTC crossed below $90,000: now $89,950, was $90,400",
    ),
    "spike, both sides": (
        LiqSpike("BTC", TS, 3_600_000, 32.3e6, 150.1e6, 100e6),
        "BTC liquidations: $182.4M in 1h (shorts $150.1M, longs $32.3M), above your $100M alert",
    ),
    "spike, shorts only": (
        LiqSpike("BTC", TS, 900_000, 32.3e6, 150.1e6, 100e6, side="short"),
        "BTC short liquidations: $150.1M in 15m, above your $100M alert",
    ),
    "etf reversal, bearish, no leaders": (
        EtfReversal(date(2025, 3, 3), -420.5, 5, 2_050.0),
        "ETF flows reversed: -$420.5M today after 5 days of inflows totalling +$2.05B",
    ),
    "etf flow threshold": (
        EtfFlow.from_day(FLOWS_0113, 500.0),
        "ETF net flows +$753.8M on 2026-01-13, beyond your $500M threshold; FBTC led with +$351.4M",
    ),
    "digest": (
        Digest.build("hourly", TS, [_snapshot((SHORT, LONG))], _report()),
        "Hourly digest: BTC $95,734",
    ),
    "empty digest": (Digest("daily", TS), "Daily digest"),
}


@pytest.mark.parametrize(("payload", "headline"), PAYLOADS.values(), ids=PAYLOADS.keys())
def test_headlines(payload: Notification, headline: str) -> None:
    assert payload.headline == headline
    assert "<" not in payload.headline and "*" not in payload.headline  # plain text only


def test_digest_lines() -> None:
    d = Digest.build("hourly", TS, [_snapshot((SHORT, LONG), stale=("oi",))], _report())
    assert d.details == (
        "BTC $95,734 (stale data); liquidations 1h $12.3M (longs $8.1M, shorts $4.2M); "
        "nearest short cluster $157M at $96,202 (+0.5%); "
        "nearest long cluster $2.1B at $93,500 (-2.3%)",
        "ETF flows +$753.8M on 2026-01-13, 2 days of inflows totalling +$870.5M; "
        "FBTC led with +$351.4M",
    )


def test_digest_item_without_liquidations_or_clusters() -> None:
    snap = _snapshot()
    item = DigestItem.from_snapshot(snap, liq_window="4h")
    assert item.line == "BTC $95,734"


def test_spike_details_say_the_figures_are_a_lower_bound() -> None:
    assert "lower bound" in LiqSpike("BTC", TS, 3_600_000, 1.0, 1.0, 1.0).details[0]


def test_kinds_are_distinct() -> None:
    kinds = {type(p).kind for p, _ in PAYLOADS.values()}
    assert kinds == set(NoticeKind)


# --- serialization -----------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [p for p, _ in PAYLOADS.values()], ids=PAYLOADS.keys())
def test_round_trip_through_json(payload: Notification) -> None:
    d = to_dict(payload)
    text = json.dumps(d, allow_nan=False)  # JSON-safe: NaN became null
    back = from_dict(json.loads(text))
    assert type(back) is type(payload)
    assert to_dict(back) == d
    assert back.headline == payload.headline == d["headline"]


def test_nan_round_trips_as_nan() -> None:
    p = ClusterApproach("BTC", TS, 95_734.0, "short", 96_202.0, 157e6)
    d = to_dict(p)
    assert d["threshold_pct"] is None
    back = from_dict(d)
    assert isinstance(back, ClusterApproach)
    assert math.isnan(back.threshold_pct)


def test_from_dict_refuses_unknown_versions_and_kinds() -> None:
    d = to_dict(PAYLOADS["cross up"][0])
    with pytest.raises(ValueError, match="version"):
        from_dict({**d, "v": 99})
    with pytest.raises(ValueError):
        from_dict({**d, "kind": "telepathy"})


def _out(dest: int, sub: int, payload: Notification) -> Outgoing:
    return Outgoing(dest, sub, TS, payload)


def test_grouped_message_text_and_round_trip() -> None:
    spike = _out(7, 2, PAYLOADS["spike, both sides"][0])
    approach = _out(7, 1, ClusterApproach.from_cluster(_snapshot(), SHORT))
    reversal = _out(7, 3, EtfReversal.from_report(_report()) or PAYLOADS["cross up"][0])
    msg = GroupedMessage(7, "7:abc", TS, (spike, approach, reversal), silent=True)
    assert msg.headline == "3 alerts (BTC)"
    assert msg.text.splitlines() == [
        "3 alerts (BTC)",
        "- " + PAYLOADS["spike, both sides"][1],
        "- " + CLUSTER_HEADLINE,
        "- " + REVERSAL_HEADLINE,
    ]
    d = message_to_dict(msg)
    back = message_from_dict(json.loads(json.dumps(d, allow_nan=False)))
    assert message_to_dict(back) == d
    assert back.silent and back.items[1].key == approach.key == f"1:cluster_approach:{TS}"


def test_single_item_message_carries_the_details() -> None:
    reversal = EtfReversal.from_report(_report())
    assert reversal is not None
    msg = GroupedMessage(7, "7:abc", TS, (_out(7, 3, reversal),))
    assert msg.headline == REVERSAL_HEADLINE
    assert msg.text.splitlines() == [REVERSAL_HEADLINE, *reversal.details]


def test_message_from_dict_refuses_unknown_versions() -> None:
    msg = GroupedMessage(1, "k", TS, ())
    with pytest.raises(ValueError, match="version"):
        message_from_dict({**message_to_dict(msg), "v": 0})


# --- core/fmt ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "signed", "trim", "text"),
    [
        (157e6, False, True, "$157M"),
        (157e6, False, False, "$157.0M"),
        (753.8e6, True, True, "+$753.8M"),
        (-1_378.1e6, True, True, "-$1.38B"),
        (-1_378.1e6, False, True, "-$1.38B"),
        (1.4e9, False, True, "$1.4B"),
        (1.4e9, False, False, "$1.40B"),
        (12_345.0, False, True, "$12.3K"),
        (950.0, False, True, "$950"),
        (999_960_000.0, False, True, "$1B"),
        (999_960.0, False, True, "$1M"),
        (999.6, False, True, "$1K"),
        (0.0, True, True, "$0"),
        (math.nan, False, True, "n/a"),
        (2.5e12, False, True, "$2,500B"),
    ],
)
def test_fmt_usd(value: float, signed: bool, trim: bool, text: str) -> None:
    assert fmt.usd(value, signed=signed, trim=trim) == text


@pytest.mark.parametrize(
    ("fn", "value", "text"),
    [
        (fmt.price, 95_734.2, "$95,734"),
        (fmt.price, 142.349, "$142.35"),
        (fmt.price, 0.123456, "$0.1235"),
        (fmt.price, 0.0, "$0"),
        (fmt.price, 0.00001234, "$1.234e-05"),
        (fmt.price, math.inf, "n/a"),
        (fmt.pct, 0.4889, "0.5%"),
        (fmt.pct, -0.04, "0.0%"),
        (fmt.pct, -2.34, "-2.3%"),
        (fmt.share, 0.45, "45%"),
        (fmt.leverage, 100.0, "100x"),
        (fmt.leverage, 12.5, "12.5x"),
        (fmt.musd, -1378.1, "-$1.38B"),
    ],
)
def test_fmt_others(fn: object, value: float, text: str) -> None:
    assert callable(fn)
    assert fn(value) == text


def test_fmt_signed_pct_and_durations() -> None:
    assert fmt.pct(1.44, signed=True) == "+1.4%"
    assert fmt.musd(753.8, signed=True) == "+$753.8M"
    assert [
        fmt.duration(ms) for ms in (90_000, 900_000, 3_600_000, 86_400_000, 3 * 86_400_000)
    ] == [
        "90s",
        "15m",
        "1h",
        "24h",
        "3d",
    ]
