"""Scale-out figures (issue 6): failover and webhook load, printed as JSON.

* failover: three ``liqbot run`` processes in live mode on one fresh PostgreSQL database
  (tests/fakes/liqbot_cluster.py: fake Binance, fake Telegram in its own process enforcing
  30 messages/s and 1/s per chat). 600 liquidation-spike alerts for 600 chats go into the
  outbox; once the fake Telegram has received 200 of them, the leader gets ``kill -9``.
  Reported: the takeover (kill to another instance holding the leader lock), the delivery gap
  (kill to the next message received), lost messages (chats never reached, rows not marked
  sent) and duplicates (messages received twice), and whether every repeat was of a message
  already sent before the kill (the one in flight). Targets: takeover <= 10 s, 0 lost, <= 1
  duplicated.
* load: one ``liqbot run`` in live mode (SQLite), Telegram in webhook mode, takes command
  updates from a local load generator (this process) at 1,000/s for 60 s, open loop (a slow
  answer does not slow the posting). The mix is what a busy community types: /liqs, /status,
  /help, /etf, /alerts, /start, /liqmap and typos, from 30,000 people in private chats and
  1,000 groups (a typo only in private chats: groups ignore unknown commands).
  A reply that is one message comes back in the webhook's HTTP answer (bot/telegram_webhook.py);
  its latency is the request's round trip. A chart's first upload goes through the Bot API
  (latency up to the fake Telegram receiving the sendPhoto); later ones go by file_id in the
  answer.
  Telegram's own limits stay in force, except one. The global limit (30 messages/s, 1,000/s
  with paid broadcasts) is raised to 2,000/s, so the bot is measured rather than the limit.
  Kept: 1 message/s per chat and 20 a minute per group. So the generator does not break them
  by chance:
    - one person's commands are at least ``PERSON_GAP_S`` apart;
    - there are enough groups for 3 commands a minute each.
  Otherwise those replies would wait for the platform, as they must.
  Reported:
    - every update answered (an answer later than 60 s is a timeout, as Telegram would give up
      and retry);
    - latency percentiles, overall, per command and the p99 of each 10 s of the run;
    - the bot's CPU time per update;
    - its resident memory, sampled every second.
  Targets: all answered, p99 <= 1 s, less than 10% RSS growth over the last 30 s.

Needs PostgreSQL (127.0.0.1:5432, or ``$LIQBOT_TEST_PG_URL``) for the failover part.
Run: .venv/bin/python -m benchmarks.scale [--quick] [--only failover|load]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from alerts.store import open_store
from benchmarks.chat import RemoteFake
from bot.cli_run import run_event_loop
from tests.fakes import telegram_updates as tu
from tests.fakes.liqbot_cluster import (
    WEBHOOK_SECRET,
    Instance,
    Market,
    free_port,
    run_failover,
    scratch_database,
    write_config,
)

PG_ADMIN_URL = os.environ.get(
    "LIQBOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# (command, share of the updates): what a busy community types, charts included.
MIX: tuple[tuple[str, float], ...] = (
    ("/liqs BTC", 0.28),
    ("/liqs BTC 4h", 0.10),
    ("/status", 0.14),
    ("/help", 0.14),
    ("/etf", 0.10),
    ("/alerts", 0.08),
    ("/start", 0.06),
    ("/liqmpa BTC", 0.05),  # a typo: answered with a pointer to /help
    ("/liqmap BTC", 0.05),
)
# A group's typo is not the bot's business (only private chats get "I don't know /x").
GROUP_COMMANDS = frozenset(c for c, _ in MIX if not c.startswith("/liqmpa"))
PEOPLE = 30_000
# 1,000 groups: 5% of 1,000/s is 3 commands a minute per group. With 200, a group's bursts
# passed Telegram's 20 messages a minute, and the pacer made those replies wait, as it must.
GROUPS = 1000
# A person reads a reply before typing again: two commands of one person in a private chat
# are at least this far apart. Drawn at random, 3% of commands came within a second of the
# same person's last one, and Telegram's 1 message/s per chat delays the second reply.
PERSON_GAP_S = 2.0
# Telegram's global limit raised (it is 30/s; 1,000/s with paid broadcasts) to measure the bot.
GLOBAL_PER_S = 2000.0


def _say(msg: str) -> None:
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {f"p{q}": round(_pct(values, q) * 1000, 1) for q in (50, 95, 99)} | {
        "max": round(max(values) * 1000, 1)
    }


# --- failover -------------------------------------------------------------------------------


async def failover(quick: bool) -> dict[str, Any]:
    chats, kill_after = (150, 50) if quick else (600, 200)
    with tempfile.TemporaryDirectory(prefix="liqbot-failover-") as tmp:
        result = await run_failover(
            Path(tmp), PG_ADMIN_URL, chats=chats, kill_after=kill_after, progress=_say
        )
    return result.as_dict() | {
        "target_takeover_s": 10,
        "target_lost": 0,
        "target_duplicated_max": 1,
    }


# --- load -----------------------------------------------------------------------------------


@dataclass
class Update:
    body: bytes
    chat: int
    command: str
    chart: bool  # answered through the Bot API (sendPhoto), not in the webhook's answer


def _updates(n: int, rate: float, person_gap_s: float, seed: int = 11) -> list[Update]:
    """``n`` command updates for posting at ``rate``/s, built before the run so the generator
    only posts bytes."""
    rng = random.Random(seed)
    commands, weights = zip(*MIX, strict=True)
    out: list[Update] = []
    last_at: dict[int, float] = {}  # person -> when their last command is posted
    for i in range(n):
        text = rng.choices(commands, weights)[0]
        at = i / rate
        user = 10_000_000 + rng.randrange(PEOPLE)
        while last_at.get(user, -math.inf) > at - person_gap_s:
            user = 10_000_000 + rng.randrange(PEOPLE)
        chart = text.startswith("/liqmap")
        if chart:
            chat = tu.chat(20_000_000 + i)  # a chat of its own: its sendPhoto is unambiguous
            sender = tu.user(20_000_000 + i)
        elif rng.random() < 0.05 and text in GROUP_COMMANDS:
            chat = tu.chat(-(1_000_000_000 + rng.randrange(GROUPS)), "supergroup")
            sender = tu.user(user)
        else:
            chat, sender = tu.chat(user), tu.user(user)
            last_at[user] = at
        msg = tu.message(i + 1, chat, text, from_user=sender)
        body = orjson.dumps({"update_id": i + 1, "message": msg})
        out.append(Update(body, int(chat["id"]), text, chart))
    return out


@dataclass
class LoadLog:
    started: dict[int, float] = field(default_factory=dict)  # update index -> time.time()
    inline: list[float] = field(default_factory=list)
    inline_at: list[float] = field(default_factory=list)  # when each was posted (time.time())
    by_command: dict[str, list[float]] = field(default_factory=dict)
    via_api: dict[int, int] = field(default_factory=dict)  # chat -> update index
    errors: dict[str, int] = field(default_factory=dict)
    empty_answers: int = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def _post_all(
    urls: list[str],
    updates: list[Update],
    rate: float,
    log: LoadLog,
    rss: list[tuple[float, list[float]]],
    bots: list[Instance],
) -> float:
    """Post ``updates`` at ``rate`` per second (open loop: a slow answer does not slow the
    generator), update i to ``urls[i % len(urls)]`` (round robin, as a load balancer would);
    each bot's RSS sampled every second. Returns the wall time of the posting."""
    headers = {
        "Content-Type": "application/json",
        "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET,
    }
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=400)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def one(i: int, u: Update) -> None:
            t0 = time.time()
            log.started[i] = t0
            try:
                url = urls[i % len(urls)]
                async with http.post(url, data=u.body, headers=headers) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        log.error(f"HTTP {resp.status}")
                    elif body:  # the reply, in the answer (a chart Telegram holds, too)
                        log.inline.append(time.time() - t0)
                        log.inline_at.append(t0)
                        log.by_command.setdefault(u.command, []).append(log.inline[-1])
                    elif u.chart:  # uploaded through the Bot API: timed at the fake
                        log.via_api[u.chat] = i
                    else:
                        log.empty_answers += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.error(type(exc).__name__)

        begin = time.monotonic()
        next_rss = begin
        sent = 0
        while sent < len(updates):
            now = time.monotonic()
            if now >= next_rss:
                rss.append((now - begin, [b.rss_mb() for b in bots]))
                next_rss += 1.0
            due = min(len(updates), int((now - begin) * rate) + 1)
            while sent < due:
                task = asyncio.create_task(one(sent, updates[sent]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.001)
        posting_s = time.monotonic() - begin
        await asyncio.gather(*tasks)
        rss.append((time.monotonic() - begin, [b.rss_mb() for b in bots]))
    return posting_s


async def load(
    quick: bool, rate: float, seconds: float, person_gap_s: float, instances: int
) -> dict[str, Any]:
    if quick:
        rate, seconds = min(rate, 300.0), min(seconds, 10.0)
    n = int(rate * seconds)
    updates = _updates(n, rate, person_gap_s)
    with tempfile.TemporaryDirectory(prefix="liqbot-load-") as tmp_name:
        tmp = Path(tmp_name)
        async with contextlib.AsyncExitStack() as stack:
            if instances == 1:
                db = f"sqlite+aiosqlite:///{tmp / 'bot.db'}"
            else:  # several instances share PostgreSQL (README: scale-out)
                db = await stack.enter_async_context(scratch_database(PG_ADMIN_URL))
                store = await open_store(db)  # migrated once, before they start
                await store.close()
            market = await Market.start(stack, tmp)
            tg = await stack.enter_async_context(RemoteFake())
            bots: list[Instance] = []
            urls: list[str] = []
            for i in range(instances):
                port = free_port()
                config = tmp / f"bot{i}" / "config.yaml"
                write_config(
                    config,
                    telegram_base_url=tg.base_url,
                    telegram_file_url=tg.base_file_url,
                    market=market,
                    webhook_port=port,
                    # One bot's global limit, shared by its instances (README: scale-out).
                    extra={"pacing": {"telegram": {"global_per_s": GLOBAL_PER_S / instances}}},
                )
                bot = await Instance.start(
                    f"bot{i}", tmp / f"bot{i}", config, db, log_level="warning"
                )
                stack.push_async_callback(bot.stop)
                bots.append(bot)
                urls.append(f"http://127.0.0.1:{port}/tg")
            for bot, url in zip(bots, urls, strict=True):
                await _wait_ready(bot, url)
            _say(f"posting {n} updates at {rate:g}/s to {instances} instance(s)")
            log = LoadLog()
            rss: list[tuple[float, list[float]]] = []
            cpu_before = sum(b.cpu_s() for b in bots)
            posting_s = await _post_all(urls, updates, rate, log, rss, bots)
            cpu_s = sum(b.cpu_s() for b in bots) - cpu_before  # all answered but chart uploads
            charts = await _chart_latencies(tg, log, len(log.via_api))
            for bot in bots:
                if bot.err:  # warnings and errors only (--log-level warning)
                    _say(f"{bot.name} logged:\n" + "".join(bot.err[-20:]))
        answered = len(log.inline) + len(charts)
        last30 = [mbs for t, mbs in rss if t >= seconds - 30]
        growth = [
            round((last30[-1][i] - last30[0][i]) / last30[0][i] * 100, 2)
            if len(last30) > 1
            else 0.0
            for i in range(instances)
        ]
        latencies = log.inline + charts
        return {
            "instances": instances,
            "database": "sqlite" if instances == 1 else "postgresql",
            "updates": n,
            "rate_target_per_s": rate,
            "rate_posted_per_s": round(n / posting_s, 1),
            "seconds": seconds,
            "person_gap_s": person_gap_s,
            "answered": answered,
            "unanswered": n - answered,
            "errors": log.errors,
            "latency_ms": _ms(latencies),
            "inline_replies": len(log.inline),
            "p99_ms_by_10s": _p99_by_window(log, 10.0),
            "bot_cpu_ms_per_update": round(cpu_s / n * 1000, 3),
            "p99_ms_by_command": {c: _ms(v)["p99"] for c, v in sorted(log.by_command.items())},
            "chart_replies": {"count": len(charts), **_ms(charts)},
            "rss_mb": {
                "start": [round(mb, 1) for mb in rss[0][1]],
                "at_last_30s_start": [round(mb, 1) for mb in last30[0]] if last30 else None,
                "end": [round(mb, 1) for mb in rss[-1][1]],
                "growth_last_30s_pct": growth,
            },
            "target_p99_ms": 1000,
            "target_growth_pct_max": 10,
        }


def _p99_by_window(log: LoadLog, window_s: float) -> list[float]:
    """p99 of the inline replies posted in each ``window_s`` of the run: flat when the bot
    keeps up, rising when a backlog builds."""
    if not log.inline_at:
        return []
    begin = min(log.inline_at)
    buckets: dict[int, list[float]] = {}
    for at, latency in zip(log.inline_at, log.inline, strict=True):
        buckets.setdefault(int((at - begin) // window_s), []).append(latency)
    return [round(_pct(buckets[k], 99) * 1000, 1) for k in sorted(buckets)]


async def _wait_ready(bot: Instance, url: str) -> None:
    """Until the webhook answers (403 without the secret) and the first snapshot is in."""
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.post(url, data=b"{}") as resp:
                    if resp.status == 403:
                        break
            if not bot.alive or time.monotonic() > deadline:
                raise RuntimeError(f"the bot did not start:\n{bot.log}")
            await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)  # the first snapshot follows the first poll


async def _chart_latencies(tg: RemoteFake, log: LoadLog, expected: int) -> list[float]:
    """Seconds from posting each /liqmap to its sendPhoto arriving at the fake."""
    deadline = time.monotonic() + 30
    while True:
        sends = (await tg.get("/sends"))["sends"]
        photos = {int(chat): at for method, chat, at in sends if method == "sendphoto"}
        if len(photos) >= expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    return [photos[c] - log.started[i] for c, i in log.via_api.items() if c in photos]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.only in (None, "failover"):
        out["failover"] = await failover(args.quick)
    if args.only in (None, "load"):
        out["load"] = await load(
            args.quick, args.rate, args.seconds, args.person_gap, args.instances
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="150 chats; 300 updates/s for 10 s (CI)")
    ap.add_argument("--only", choices=("failover", "load"), help="run one of the two")
    ap.add_argument("--rate", type=float, default=1000.0, help="load: updates/s (default 1000)")
    ap.add_argument("--seconds", type=float, default=60.0, help="load: duration (default 60)")
    ap.add_argument(
        "--instances",
        type=int,
        default=1,
        help="load: liqbot instances behind round-robin (default 1, on SQLite; more share a "
        "PostgreSQL database)",
    )
    ap.add_argument(
        "--person-gap",
        type=float,
        default=PERSON_GAP_S,
        help=f"load: least seconds between one person's commands (default {PERSON_GAP_S:g}; "
        "0: people drawn at random)",
    )
    args = ap.parse_args()
    if args.instances < 1:
        ap.error(f"--instances must be at least 1, got {args.instances}")
    result = run_event_loop(main_async(args))  # uvloop: a cheaper generator, as the bot's
    sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
