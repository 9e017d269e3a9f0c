"""``liqbot etf``: daily US spot Bitcoin ETF flows, the current streak and recent reversals.

Reads a flows file (JSON or CSV, see :mod:`core.etf_io`), cuts it at ``--until`` and prints the
analytics of :mod:`core.etf_report`: a table of the last days per fund, the streak, rolling sums,
the z-score and reversals with their leading funds. ``--json`` prints the same as one object.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from datetime import date
from typing import Any

from bot.cli_common import emit_json, fmt_usd, iso_date, positive_float
from core.config import EtfSourceSettings, load_settings
from core.errors import InputError
from core.etf import EtfFlows
from core.etf_io import load_flows
from core.etf_report import DayFlow, FlowReport, FundFlow, Reversal, ReversalRule, flow_report

_MAX_FUND_COLUMNS = 8  # beyond this the table no longer fits 100 columns; the rest go to "other"

_EXAMPLE = """\
example:
  liqbot etf --flows ../shared/data/etf/btc_etf_flows_farside.json --until 2026-01-13

A reversal is a change of sign of the daily total after at least --min-days trading days of the
same sign totalling at least --min-sum US$ millions. Market holidays (days listed with all funds
at 0.0) are shown but skipped by every count.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``etf`` subcommand to ``sub``."""
    p = sub.add_parser(
        "etf",
        help="US spot Bitcoin ETF flows: per-fund table, streak, reversals",
        # Raw formatting keeps the example's layout, so the description is wrapped by hand.
        description=(
            "Show daily net flows of US spot Bitcoin ETFs per fund (US$ millions), the current\n"
            "streak, 3- and 5-day rolling sums, a z-score against the previous 90 trading days,\n"
            "and recent flow reversals with the funds that led them."
        ),
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--flows",
        metavar="FILE",
        help="daily flows per fund, JSON ({'days': [...]}) or CSV (date,IBIT,...,total_musd); "
        "without it, flows come from config.yaml's feeds.etf source (Farside by default, "
        "needs internet), cached per day",
    )
    p.add_argument(
        "--until",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="analyse as of this day, ignoring later days (default: the last day in the file)",
    )
    p.add_argument(
        "--days",
        type=_positive_int,
        default=10,
        metavar="N",
        help="trading days to show in the table (default: 10)",
    )
    # Defaults come from config.yaml's etf section (shown as "config").
    p.add_argument(
        "--min-days",
        type=_positive_int,
        metavar="N",
        help="reversal: minimum prior streak, trading days (default: config, 3)",
    )
    p.add_argument(
        "--min-sum",
        type=positive_float,
        metavar="MUSD",
        help="reversal: minimum size of the prior streak's sum, US$M (default: config, 500)",
    )
    p.add_argument(
        "--recent",
        type=_positive_int,
        metavar="N",
        help="report reversals within the last N trading days (default: config, 5)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--config", metavar="FILE", help="config.yaml to use")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load, analyse and print; bad input raises :class:`core.errors.InputError`."""
    settings = load_settings(args.config)
    if args.flows is not None:
        flows, origin = load_flows(args.flows), args.flows
    else:
        flows, origin = _fetch_configured(settings.feeds.etf)
    until: date | None = args.until
    if until is not None:
        if until < flows.first_date:
            raise InputError(
                f"--until {until} is before the first day in {origin} ({flows.first_date})"
            )
        flows = flows.until(until)
    cfg = settings.etf
    rule = ReversalRule(
        min_days=args.min_days or cfg.reversal_min_streak_days,
        min_sum_musd=args.min_sum or cfg.reversal_min_streak_musd,
        recent_days=args.recent or cfg.recent_days,
    )
    report = flow_report(flows, rule)
    rows = _window(flows, args.days)
    for note in flows.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        emit_json(_as_json(flows, rows, report, origin))
    else:
        sys.stdout.write(_as_text(flows, rows, report, origin))
    return 0


def _fetch_configured(cfg: EtfSourceSettings) -> tuple[EtfFlows, str]:
    """Flows from the configured source through the per-day cache; keys from the environment."""
    from core.feeds.etf_feed import KEY_ENV, EtfFeed

    feed = EtfFeed.create(
        cfg.source,
        cfg.cache_dir,
        file=cfg.file,
        farside_url=cfg.farside_url,
        sosovalue_key=os.environ.get(KEY_ENV["sosovalue"]),
        coinglass_key=os.environ.get(KEY_ENV["coinglass"]),
    )

    async def fetch() -> EtfFlows:
        try:
            snap = await feed.get()
        finally:
            await feed.aclose()
        if snap.error is not None:
            print(
                f"note: {cfg.source} failed today ({snap.error}); showing {snap.day}",
                file=sys.stderr,
            )
        return snap.flows

    return asyncio.run(fetch()), f"{cfg.source} (cached in {cfg.cache_dir})"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def _window(flows: EtfFlows, days: int) -> range:
    """Rows of the last ``days`` trading days, with any holidays between them."""
    trading = flows.trading_index()
    first = int(trading[max(trading.size - days, 0)]) if trading.size else 0
    return range(first, len(flows))


# --- text ------------------------------------------------------------------------------------


def _money(musd: float) -> str:
    """US$ millions -> '+$753.8M', '-$1.38B'."""
    if math.isnan(musd):
        return "n/a"
    text = fmt_usd(musd * 1e6)
    return "+" + text if musd > 0 else text


def _cell(musd: float) -> str:
    return "." if musd == 0 else f"{musd:+,.1f}"


def _leaders(leaders: tuple[FundFlow, ...]) -> str:
    return ", ".join(f"{f.fund} {_money(f.musd)}" for f in leaders) or "no fund"


def _day(d: DayFlow) -> str:
    return f"{d.date}: {_money(d.total_musd)}, led by {_leaders(d.leaders)}"


def _fund_columns(flows: EtfFlows, rows: range) -> tuple[list[int], list[int]]:
    """(shown, folded into 'other'): funds that moved in the window, source order kept."""
    window = flows.flows[rows.start : rows.stop]
    moved = [j for j in range(len(flows.funds)) if bool((window[:, j] != 0).any())]
    if len(moved) <= _MAX_FUND_COLUMNS:
        return moved, []
    size = {j: float(abs(window[:, j]).sum()) for j in moved}
    keep = set(sorted(moved, key=lambda j: -size[j])[: _MAX_FUND_COLUMNS - 1])
    return [j for j in moved if j in keep], [j for j in moved if j not in keep]


def _as_text(flows: EtfFlows, rows: range, report: FlowReport, path: str) -> str:
    shown, other = _fund_columns(flows, rows)
    heads = [flows.funds[j] for j in shown] + (["other"] if other else [])
    out = [
        f"US spot Bitcoin ETF net flows, US$ millions ({path}, up to {report.until})",
        "",
        f"{'date':<14}" + "".join(f"{h:>9}" for h in heads) + f"{'total':>10}",
    ]
    for i in rows:
        d = flows.date_at(i)
        label = f"{d} {d:%a}"
        if flows.is_holiday[i]:
            out.append(f"{label:<14}  market holiday (listed with no flows)")
            continue
        row = flows.flows[i]
        cells = [_cell(float(row[j])) for j in shown]
        if other:
            cells.append(_cell(float(row[other].sum())))
        out.append(
            f"{label:<14}" + "".join(f"{c:>9}" for c in cells) + f"{_cell(flows.total[i]):>10}"
        )

    s = report.streak
    roll = ", ".join(
        f"{r.days}d {_money(r.sum_musd)}" + (f" (from {r.start})" if r.start else "")
        for r in report.rolling
    )
    z = report.zscore
    ztext = (
        f"{z.value:+.2f} vs the previous {z.n} trading days"
        if not math.isnan(z.value)
        else f"n/a (needs {z.min_periods} prior trading days, has {z.n})"
    )
    rule = report.rule
    out += [
        "",
        f"Latest     {_day(report.latest)}",
        f"Streak     {s.days} trading day{'s' if s.days != 1 else ''} of {s.kind}, "
        f"{_money(s.sum_musd)} ({s.start}..{s.end})",
        f"Rolling    {roll}",
        f"Z-score    {ztext}",
        f"Reversals  within the last {rule.recent_days} trading days; rule: >= {rule.min_days} "
        f"same-sign days totalling >= {_money(rule.min_sum_musd).lstrip('+')}, then a turn",
    ]
    for rev in report.reversals:
        out += _reversal_lines(rev)
    if not report.reversals:
        out.append("  none")
    if report.armed:
        turn = "bullish" if s.sign < 0 else "bearish"
        out.append(f"  watch: the current streak meets the rule; a turn would be a {turn} reversal")
    return "\n".join(out) + "\n"


def _reversal_lines(rev: Reversal) -> list[str]:
    p = rev.prior_streak
    lines = [
        f"  {rev.date} {rev.direction.upper()}: {_money(rev.total_musd)} after {p.days} days of "
        f"{p.kind} totalling {_money(p.sum_musd)} ({p.start}..{p.end})",
        f"    led by {_leaders(rev.leaders)}",
    ]
    if rev.next_day is None:
        lines.append("    next trading day not in the data yet")
    elif rev.confirmed:
        lines.append(f"    confirmed {_day(rev.next_day)}")
    else:
        lines.append(f"    not confirmed: {_day(rev.next_day)}")
    return lines


# --- JSON ------------------------------------------------------------------------------------


def _num(x: float) -> float | None:
    """Round away float noise from sums of 0.1-step figures; NaN becomes null."""
    return None if math.isnan(x) else round(float(x), 4)


def _fund_flows(leaders: tuple[FundFlow, ...]) -> list[dict[str, Any]]:
    return [{"fund": f.fund, "musd": _num(f.musd)} for f in leaders]


def _day_json(d: DayFlow | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {
        "date": d.date.isoformat(),
        "total_musd": _num(d.total_musd),
        "leaders": _fund_flows(d.leaders),
    }


def _as_json(flows: EtfFlows, rows: range, report: FlowReport, path: str) -> dict[str, Any]:
    s, z, rule = report.streak, report.zscore, report.rule
    return {
        "source": path,
        "until": report.until.isoformat(),  # the last day of the data on or before --until
        "rule": {
            "min_days": rule.min_days,
            "min_sum_musd": rule.min_sum_musd,
            "recent_days": rule.recent_days,
        },
        "days": [
            {
                "date": flows.date_at(i).isoformat(),
                "holiday": bool(flows.is_holiday[i]),
                "total_musd": _num(flows.total[i]),
                "funds": {f: _num(flows.flows[i, j]) for j, f in enumerate(flows.funds)},
            }
            for i in rows
        ],
        "latest": _day_json(report.latest),
        "streak": {
            "direction": s.kind,
            "sign": s.sign,
            "days": s.days,
            "sum_musd": _num(s.sum_musd),
            "start": s.start.isoformat(),
            "end": s.end.isoformat(),
        },
        "rolling": [
            {
                "days": r.days,
                "sum_musd": _num(r.sum_musd),
                "start": r.start.isoformat() if r.start else None,
                "end": r.end.isoformat(),
            }
            for r in report.rolling
        ],
        "zscore": {
            "value": None if math.isnan(z.value) else round(z.value, 4),
            "window": z.window,
            "n": z.n,
        },
        "reversal_armed": report.armed,
        "reversals": [
            {
                "date": rev.date.isoformat(),
                "direction": rev.direction,
                "total_musd": _num(rev.total_musd),
                "prior_streak": {
                    "days": rev.prior_streak.days,
                    "sum_musd": _num(rev.prior_streak.sum_musd),
                    "start": rev.prior_streak.start.isoformat(),
                    "end": rev.prior_streak.end.isoformat(),
                },
                "leaders": _fund_flows(rev.leaders),
                "next_day": _day_json(rev.next_day),
                "confirmed": rev.confirmed,
            }
            for rev in report.reversals
        ],
        "notes": list(flows.notes),
    }
