"""``/etf`` and ``/status``: ETF flows with their streak and reversal, and the bot's health."""

from __future__ import annotations

import math

from bot.chat import ArgSpec, CommandSpec, Reply
from bot.cmd_context import Ctx, Handler
from bot.cmd_market import venue_name
from bot.command_parse import ArgError, normalize_args, parse_int
from core import fmt
from core.etf_report import DayFlow, FundFlow, Reversal, day_flow

__all__ = ["COMMANDS"]

MAX_DAYS = 30
_REASON_MAX = 80  # feed errors can be long (URLs, tracebacks' last line): keep the gist


def _leaders(leaders: tuple[FundFlow, ...]) -> str:
    return ", ".join(f"{f.fund} {fmt.musd(f.musd, signed=True)}" for f in leaders)


def _day(d: DayFlow) -> str:
    led = _leaders(d.leaders)
    return f"{d.date:%a %b %d}: {fmt.musd(d.total_musd, signed=True)}" + (
        f" ({led})" if led else ""
    )


def _reversal(rev: Reversal) -> list[str]:
    p = rev.prior_streak
    turn = "outflows to inflows" if rev.direction == "bullish" else "inflows to outflows"
    lines = [
        f"Reversal on {rev.date:%b %d}, {turn}: {fmt.musd(rev.total_musd, signed=True)} after "
        f"{p.days} days of {p.kind} totalling {fmt.musd(p.sum_musd, signed=True)}"
        + (f"; led by {_leaders(rev.leaders)}." if rev.leaders else ".")
    ]
    if rev.next_day is None:
        lines.append("The next trading day is not in yet.")
    elif rev.confirmed:
        lines.append(f"Confirmed the next day: {_day(rev.next_day)}.")
    else:
        lines.append(f"Not confirmed the next day: {_day(rev.next_day)}.")
    return lines


async def etf(ctx: Ctx) -> Reply:
    args = normalize_args(ctx.args)
    if len(args) > 1:
        raise ArgError(f"Give one number of days, e.g. /etf 10 (1 to {MAX_DAYS})")
    days = parse_int(args[0], 1, MAX_DAYS, "days") if args else 5
    view = await ctx.services.etf()
    if view is None:
        return Reply.of(
            "No ETF flow data yet; flows are published after the US close (22:00 UTC on weekdays)."
        )
    report = view.report
    flows = view.flows.until(report.until)
    trading = flows.trading_index()
    first = int(trading[max(trading.size - days, 0)]) if trading.size else len(flows)
    lines = []
    for i in range(first, len(flows)):
        if flows.is_holiday[i]:
            lines.append(f"{flows.date_at(i):%a %b %d}: market holiday")
        else:
            lines.append(_day(day_flow(flows, i, top=2)))
    s = report.streak
    lines.append(
        f"Streak: {s.days} trading day{'s' if s.days != 1 else ''} of {s.kind}, "
        f"{fmt.musd(s.sum_musd, signed=True)} since {s.start:%b %d}."
    )
    rolling = [r for r in report.rolling if math.isfinite(r.sum_musd)]
    if rolling:
        lines.append(
            "Rolling: "
            + ", ".join(f"{r.days}d {fmt.musd(r.sum_musd, signed=True)}" for r in rolling)
            + "."
        )
    rev = report.latest_reversal
    if rev is not None:
        lines += _reversal(rev)
    else:
        lines.append(f"No reversal in the last {report.rule.recent_days} trading days.")
        if report.armed:
            lines.append("The current streak is long enough that a turn would be a reversal.")
    if view.stale:
        age = (
            f" (last fetched {fmt.age(ctx.now_ms() - view.fetched_ms)} ago)"
            if view.fetched_ms is not None
            else ""
        )
        lines.append(f"Data is stale{age}: the source has not answered lately.")
    source = f" from {view.source}" if view.source else ""
    lines.append(f"US spot Bitcoin ETF net flows up to {report.until}{source}.")
    return Reply(tuple(lines), title="Bitcoin ETF flows")


def _left(ms: int) -> str:
    """Time left, rounded up to the minute from a minute on: a wait is never under-stated."""
    return fmt.age(-(-ms // 60_000) * 60_000 if ms >= 60_000 else ms)


def _cut(text: str) -> str:
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


async def status(ctx: Ctx) -> Reply:
    v = await ctx.services.status()
    now = v.now_ms
    lines = [f"Mode: {v.mode}"]
    if v.leader is None:
        lines.append("Leader: unknown")
    else:
        lines.append(f"Leader: {v.leader}" + (" (this instance)" if v.is_leader else ""))
    lines.append(
        f"Last tick: {fmt.age(now - v.last_tick_ms)} ago"
        if v.last_tick_ms is not None
        else "Last tick: none yet"
    )
    lines.append(f"Outbox: {v.queue_depth} queued, {v.dead_letters} dead letters")
    for vs in v.venues:
        state = vs.state
        if state == "open" and vs.open_until_ms is not None:
            # "open" is circuit-breaker jargon that reads as "working" in a chat: say that the
            # bot holds off (a ban, a geo-block) and for how long.
            state = f"paused for {_left(vs.open_until_ms - now)} more"
        if vs.reason:
            state += f" ({_cut(vs.reason)})"
        lines.append(f"{venue_name(vs.venue)} API: {state}")
    for st in v.streams:
        if st.connected:
            seen = (
                f", last event {fmt.age(now - st.last_event_ms)} ago"
                if st.last_event_ms is not None
                else ""
            )
            lines.append(f"{venue_name(st.venue)} liquidation stream: connected{seen}")
        else:
            err = f" ({_cut(st.last_error)})" if st.last_error else ""
            lines.append(f"{venue_name(st.venue)} liquidation stream: disconnected{err}")
    stale = [f for f in v.series if f.is_stale(now)]
    if v.series:
        lines.append(
            f"Series: {len(v.series) - len(stale)} of {len(v.series)} fresh"
            + (f"; stale: {', '.join(f.series for f in stale)}" if stale else "")
        )
    for symbol in ctx.symbols:
        snap = ctx.services.snapshots.get(symbol)
        if snap is None:
            lines.append(f"{symbol}: no snapshot yet")
        else:
            note = f", stale: {', '.join(snap.stale)}" if snap.stale else ""
            lines.append(f"{symbol}: snapshot {fmt.age(ctx.now_ms() - snap.ts_ms)} old{note}")
    if ctx.cmd.is_admin and v.jobs:
        lines.append("Jobs: " + ", ".join(f"{job} {_cut(out)}" for job, out in v.jobs.items()))
    return Reply(tuple(lines), title="Status")


COMMANDS: tuple[tuple[CommandSpec, Handler], ...] = (
    (
        CommandSpec(
            "etf",
            "US spot Bitcoin ETF daily flows, the streak, and whether flows reversed",
            f"/etf [days, 1-{MAX_DAYS}]",
            (ArgSpec("days", f"Trading days to show (default 5, at most {MAX_DAYS})"),),
        ),
        etf,
    ),
    (
        CommandSpec(
            "status",
            "Feed health, data freshness, last tick, leader, queue",
            "/status",
            asks_admin=True,  # admins also see the jobs' last outcomes
        ),
        status,
    ),
)
