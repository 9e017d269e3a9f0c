"""Chat figures (issue 5), against the fake Telegram Bot API over real sockets, printed as JSON.

* liqmap: ``/liqmap BTC`` from a fresh snapshot, end to end: the update is queued on the fake
  server, the real python-telegram-bot Application long-polls it, the command layer answers
  (the chart from the per-snapshot cache after the first), and the latency is taken when the
  fake server has received the whole ``sendPhoto``. One chat per command (Telegram allows one
  message per second per chat). p50, p95 and max over the runs; the first (cold, rendering the
  chart) is reported apart.
* broadcast: 600 alerts for 600 chats in the durable outbox, delivered by the outbox drain
  (``AlertEngine.drain``, 4 chats in flight as in ``liqbot run``) through the Telegram sender
  and the two-lane pacer, to a fake that enforces 30 messages/s overall (any 1.0 s window),
  1/s per chat and 20/min per group, answering 429 to anything over. The fake runs in its own
  process (tests/fakes/telegram_serve.py), as a remote API does, stamping each request when it
  arrives. Meanwhile 50 people send ``/liqmap`` from 50 other chats, spread over the
  broadcast; each reply's latency is measured as above. Rate = broadcast messages received
  over the time from the first to the last; lost = outbox rows not marked sent, or chats the
  fake never received a message for.

The in-memory market of tests/bot/market.py stands in for the feeds (no network anywhere).
Run: .venv/bin/python -m benchmarks.chat [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from alerts.engine import AlertEngine
from alerts.notifications import GroupedMessage, LiqSpike, Outgoing, message_to_dict
from alerts.store import Envelope, Store, enqueue, open_store, stats, upsert_destination
from bot.commands import COMMAND_SPECS, CommandRouter
from bot.pacing import Pacer
from bot.telegram_app import TgApp, build_application
from bot.telegram_run import start_application, stop_application
from bot.telegram_send import TelegramSender
from core.config import Settings, TelegramSettings
from tests.bot.market import NOW_MS, make_services
from tests.fakes.telegram_api import TOKEN

BROADCAST_CHATS = 600
INTERACTIVE = 50
H = 3_600_000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(_pct(values, 50) * 1000, 1),
        "p95": round(_pct(values, 95) * 1000, 1),
        "max": round(max(values) * 1000, 1),
    }


class RemoteFake:
    """tests/fakes/telegram_serve.py in a child process, driven over its HTTP controls."""

    token = TOKEN

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.ctl: httpx.AsyncClient | None = None

    async def __aenter__(self) -> RemoteFake:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.telegram_serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        self.port = int(line.split()[1])
        self.ctl = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}/_ctl", timeout=30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ctl is not None:
            await self.ctl.aclose()
        if self.proc is not None:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.close()
            self.proc.wait(10)
            self.proc.stdout.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    async def post(self, path: str, body: dict[str, Any]) -> None:
        assert self.ctl is not None
        (await self.ctl.post(path, json=body)).raise_for_status()

    async def get(self, path: str, **params: Any) -> Any:
        assert self.ctl is not None
        answer = await self.ctl.get(path, params=params)
        answer.raise_for_status()
        return answer.json()


class Bench:
    """A store with the in-memory market, the fake server and the real PTB Application."""

    def __init__(self, store: Store, fake: RemoteFake) -> None:
        self.store, self.fake = store, fake
        tg = TelegramSettings(base_url=fake.base_url, base_file_url=fake.base_file_url)
        bot = Settings().bot.model_copy(update={"commands_per_user_per_min": 1000})
        self.settings = Settings(telegram=tg, bot=bot)
        self.router = CommandRouter(make_services(store, self.settings).services)
        self.pacer = Pacer(self.settings.pacing.telegram)
        self.app: TgApp = build_application(
            self.settings, fake.token, self.router.handle, self.pacer, store, specs=COMMAND_SPECS
        )

    async def liqmap(self, chat_id: int, user_id: int) -> float:
        """Seconds from queuing ``/liqmap BTC`` to the fake receiving the photo (a new chat
        each time: the fake's clock and ours are both ``time.time``)."""
        t0 = time.time()
        await self.fake.post(
            "/command", {"chat_id": chat_id, "text": "/liqmap BTC", "user_id": user_id}
        )
        got = await self.fake.get("/wait", method="sendPhoto", chat_id=chat_id, n=1)
        return float(got["at"]) - t0


async def liqmap_latency(bench: Bench, runs: int) -> dict[str, Any]:
    cold = await bench.liqmap(1, 1)
    warm = [await bench.liqmap(100 + i, 100 + i) for i in range(runs)]
    return {
        "runs": runs,
        "cold_first_ms": round(cold * 1000, 1),
        "cached_chart_ms": _ms(warm),
        "target_p95_ms": 150,
    }


async def _outbox(bench: Bench, n: int) -> list[int]:
    """``n`` chats (every third a group) with one spike alert each in the outbox."""
    dests: list[int] = []
    envelopes = []
    for i in range(n):
        group = i % 3 == 0
        chat = -(2_000_000 + i) if group else 2_000_000 + i
        dest = await upsert_destination(
            bench.store, "telegram", str(chat), "group" if group else "private", NOW_MS
        )
        dests.append(chat)
        spike = LiqSpike("BTC", NOW_MS, H, 12e6, 160e6, 50e6, "short")
        item = Outgoing(dest.id, 10_000 + i, NOW_MS, spike)
        msg = GroupedMessage(dest.id, item.key, NOW_MS, (item,))
        envelopes.append(
            Envelope(msg.key, dest.id, "liq_spike", NOW_MS, message_to_dict(msg), 10_000 + i)
        )
    await enqueue(bench.store, envelopes, NOW_MS)
    await bench.fake.post("/chats", {"groups": [c for c in dests if c < 0]})
    return dests


async def broadcast(bench: Bench, n: int, interactive: int) -> dict[str, Any]:
    chats = await _outbox(bench, n)
    await bench.fake.post(
        "/rates", {"global_per_s": 30, "per_chat_per_s": 1, "per_group_per_min": 20}
    )
    sender = TelegramSender(bench.app.bot, bench.store, bench.pacer)
    engine = AlertEngine(bench.store, bench.settings)  # its drain, as the running bot's
    started = time.monotonic()

    def now_ms() -> int:  # data time moves with the wall clock (a retry becomes due again)
        return NOW_MS + round((time.monotonic() - started) * 1000)

    async def deliver() -> None:
        while (await stats(bench.store, now_ms())).pending:
            result = await engine.drain(sender, now_ms(), "bench", limit=200)
            if not result.claimed:  # only retries waiting for their time
                await asyncio.sleep(0.05)

    async def people() -> list[float]:
        spacing = n / 28.0 / (interactive + 1)  # spread over the broadcast's expected span
        tasks = []
        for i in range(interactive):
            await asyncio.sleep(spacing)
            tasks.append(asyncio.create_task(bench.liqmap(900_000 + i, 900_000 + i)))
        return list(await asyncio.gather(*tasks))

    _, latencies = await asyncio.gather(deliver(), people())
    elapsed = time.monotonic() - started
    chat_ids = {str(c) for c in chats}
    log = await bench.fake.get("/sends")
    sent = [(chat, at) for method, chat, at in log["sends"] if chat in chat_ids]
    times = sorted(at for _, at in sent)
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    left = await stats(bench.store, now_ms())
    return {
        "chats": n,
        "delivered": len(sent),
        "distinct_chats_reached": len({chat for chat, _ in sent}),
        "lost": n - len({chat for chat, _ in sent}) + left.pending + left.dead,
        "rate_msg_per_s": round(rate, 2),
        "target_rate": 27,
        "fake_429s": log["rejected_429"],
        "wall_s": round(elapsed, 2),
        "interactive_liqmap": {"runs": interactive, **_ms(latencies), "target_p95_ms": 1000},
        "pacer": {k: v for k, v in vars(bench.pacer.stats()).items() if k != "chats"},
    }


async def main_async(quick: bool) -> dict[str, Any]:
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    with tempfile.TemporaryDirectory(prefix="liqbot-chat-bench-") as tmp:
        store = await open_store(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        try:
            async with RemoteFake() as fake:
                bench = Bench(store, fake)
                await start_application(bench.app, bench.settings, poll_timeout_s=10)
                try:
                    result = {"liqmap": await liqmap_latency(bench, 20 if quick else 100)}
                    n = 120 if quick else BROADCAST_CHATS
                    result["broadcast"] = await broadcast(bench, n, 10 if quick else INTERACTIVE)
                finally:
                    await stop_application(bench.app)
        finally:
            await store.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="20 /liqmap, 120 chats (CI)")
    args = ap.parse_args()
    result = asyncio.run(main_async(args.quick))
    sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
