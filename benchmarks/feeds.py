"""Feed figures (issue: venue feeds), printed as JSON.

* parse: liquidation frames -> normalized :class:`LiqEvent` per second, per venue, through each
  venue's pure parser (Binance ``parse_force_order`` on the frame bytes; OKX
  ``parse_liquidation_data`` and Bybit ``parse_all_liquidation`` on the frame's ``data`` after
  ``orjson.loads``, so every venue's figure includes the JSON decode). The frames are the real
  ones in ../shared/samples, compacted as they arrive on the wire and repeated to at least
  200,000 events; the median of several runs. Skipped, with the reason, when ../shared is absent.
* backfill: a 30-day 5m backfill of BTC (8,639 bars, as ``liqbot fetch --days 30`` asks) on each
  venue, with the real REST client against tests/fakes/venue_api.py, a local server that
  emulates the venue's API and meters each documented limit. Time is simulated: client and
  server share a clock that budget waits move forward, so the figure shows the wall time the
  budget imposes without sleeping it. Per venue: requests, Binance weight (total and peak per
  calendar minute vs 2,400) and /futures/data requests per 5 min vs 1,000, OKX and Bybit peak
  requests per window vs the documented limits, violations counted by the server (must be 0),
  simulated wall time, and bars written.

No network. Run: .venv/bin/python -m benchmarks.feeds [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from core.bars_csv import format_bars_csv
from core.feeds.backfill import backfill
from core.feeds.base import RestFeed
from core.feeds.binance import BinanceRest
from core.feeds.binance_ws import parse_force_order
from core.feeds.bybit import BybitRest
from core.feeds.bybit_ws import parse_all_liquidation
from core.feeds.okx import OkxRest
from core.feeds.okx_ws import parse_liquidation_data
from core.feeds.symbols import base_of
from tests.fakes.venue_api import LIMITS, FakeVenueApi, SimClock

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"
MIN_EVENTS = 200_000
STEP_MS = 300_000  # 5m
DAY_MS = 86_400_000
NOW_S = 1_791_565_200 + 12 * 60 + 30  # 2026-10-09 06:12:30 UTC: inside a 5m bar
OKX_CT_VAL = {"BTC": 0.01, "ETH": 0.1}  # others: 1 contract = 1 coin (a stand-in for ctVal)

# --- parse ------------------------------------------------------------------------------------


def _frames(pattern: str) -> list[bytes]:
    """The sample frames matching ``pattern``, compacted as they come over the wire."""
    return [orjson.dumps(orjson.loads(p.read_bytes())) for p in sorted(SAMPLES.glob(pattern))]


def _parsers() -> dict[str, tuple[list[bytes], Callable[[bytes], int]]]:
    """venue -> (frames, parse one frame and return its event count)."""
    binance = _frames("binance_forceOrder*.json")
    okx = _frames("okx_ws_liquidation_orders__*.json")
    bybit = _frames("bybit_ws_allLiquidation__*.json")
    okx_insts = {item["instId"] for f in okx for item in orjson.loads(f)["data"]}
    ct_vals = {inst: OKX_CT_VAL.get(inst.split("-", 1)[0], 1.0) for inst in okx_insts}
    bybit_insts = {d["s"] for f in bybit for d in orjson.loads(f)["data"]}
    instruments = {s: base_of(s) for s in bybit_insts}

    def binance_one(frame: bytes) -> int:
        return parse_force_order(frame) is not None

    def okx_one(frame: bytes) -> int:
        return len(parse_liquidation_data(orjson.loads(frame)["data"], ct_vals)[0])

    def bybit_one(frame: bytes) -> int:
        return len(parse_all_liquidation(orjson.loads(frame)["data"], instruments))

    return {
        "binance": (binance, binance_one),
        "okx": (okx, okx_one),
        "bybit": (bybit, bybit_one),
    }


def parse_rates(runs: int) -> dict[str, Any]:
    if not SAMPLES.is_dir():
        return {"skipped": f"{SAMPLES} is absent (a user's checkout): the parse figures need it"}
    out: dict[str, Any] = {}
    for venue, (frames, one) in _parsers().items():
        per_pass = sum(one(f) for f in frames)  # also checks every sample parses
        if per_pass == 0:
            out[venue] = {"skipped": "no sample frame carries an event"}
            continue
        stream = frames * -(-MIN_EVENTS // per_pass)
        times, events = [], 0
        for _ in range(runs + 1):  # the first run warms caches and is dropped
            t0 = time.perf_counter()
            events = sum(one(f) for f in stream)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times[1:])
        out[venue] = {
            "sample_files": len(frames),
            "frames": len(stream),
            "events": events,
            "runs": runs,
            "median_s": round(median, 4),
            "events_per_s": round(events / median),
        }
    return out


# --- backfill ---------------------------------------------------------------------------------


def _feed(venue: str, url: str, clock: SimClock) -> RestFeed:
    if venue == "binance":
        return BinanceRest(url, clock=clock.time, sleep=clock.sleep)
    if venue == "okx":
        return OkxRest(url, clock=clock.time, sleep=clock.sleep)
    return BybitRest(url, clock=clock.time, sleep=clock.sleep)


def _window(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": report["requests"],
        "peak": report["peak"],
        "limit": report["limit"],
        "per_s": report["seconds"],
        "violations": report["violations"],
    }


async def backfill_one(venue: str, days: int) -> dict[str, Any]:
    clock = SimClock(NOW_S)
    end = int(NOW_S * 1000) // STEP_MS * STEP_MS
    start = end - days * DAY_MS + STEP_MS  # as `liqbot fetch` asks
    with FakeVenueApi(["BTC"], clock=clock.time) as api:
        feed = _feed(venue, api.url, clock)
        real0 = time.perf_counter()
        try:
            bars = await backfill(feed, "BTC", "5m", start, end)
        finally:
            await feed.aclose()
        real_s = time.perf_counter() - real0
        csv_rows = format_bars_csv(bars).count("\n") - 1
        usage = api.usage()[venue]
        series = api.bars("BTC", "5m")
        idx = (bars.ts - api.start_ms) // STEP_MS
        matches = bool(
            np.array_equal(bars.close, series.close[idx])
            and np.allclose(bars.oi_usd, series.oi_usd[idx], rtol=1e-12, atol=0)
        )
        errors = len(api.errors)

    windows = usage["windows"]
    out: dict[str, Any] = {
        "requests": usage["requests"],
        "client_counted_requests": feed.status().requests,
    }
    if venue == "binance":
        weight, stats = windows["weight"], windows["futures_data"]
        out["weight"] = {
            "total": weight["total"],
            "peak_per_minute": weight["peak"],
            "peak_any_60s": weight["peak_sliding"],
            "limit_per_minute": weight["limit"],
            "violations": weight["violations"],
        }
        out["futures_data"] = {
            "requests": stats["requests"],
            "peak_per_5min": stats["peak"],
            "limit_per_5min": stats["limit"],
            "violations": stats["violations"],
        }
    else:
        out["windows"] = {name: _window(w) for name, w in windows.items() if w["requests"]}
    violations = sum(w["violations"] for w in windows.values())
    out.update(
        violations=violations,
        refused=usage["refused"],
        simulated_wall_s=round(clock.time() - NOW_S, 1),
        budget_wait_s=round(clock.slept_s, 1),
        real_s=round(real_s, 2),
        bars_written=csv_rows,
        first_bar_ms=int(bars.ts[0]),
        last_bar_ms=int(bars.ts[-1]),
        matches_server=matches,
        server_errors=errors,
    )
    out["within_limits"] = (
        violations == 0
        and usage["refused"] == 0
        and all(w["peak"] <= LIMITS[venue][name].limit for name, w in windows.items())
    )
    return out


async def backfills(venues: Sequence[str], days: int) -> dict[str, Any]:
    return {venue: await backfill_one(venue, days) for venue in venues}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 parse runs and a 7-day backfill")
    args = ap.parse_args()
    runs, days = (3, 7) if args.quick else (5, 30)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"parse": parse_rates(runs)}
    venues = ("binance", "okx", "bybit")
    result["backfill"] = {
        "symbol": "BTC",
        "interval": "5m",
        "days": days,
        "venues": asyncio.run(backfills(venues, days)),
    }
    result["backfill"]["all_within_limits"] = all(
        v["within_limits"] and v["matches_server"] for v in result["backfill"]["venues"].values()
    )
    result["benchmark_s"] = round(time.perf_counter() - t0, 1)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
