"""``liqbot run`` in live mode, as a user with a bot token runs it: a real process whose every
outside service is a local fake on 127.0.0.1.

* Telegram: :class:`tests.fakes.telegram_api.FakeTelegram` (the real PTB client long-polls it),
  able to hold an alert's delivery in flight;
* the venues' REST APIs: :class:`tests.fakes.venue_api.FakeVenueApi` on the real clock (it serves
  the bars opened up to now, with open interest);
* the liquidation websockets: one :class:`tests.fakes.ws_server.FakeWsServer` per venue, which
  acknowledges the venue's subscription (and answers its app-level ping); Binance's sends one
  forceOrder frame;
* ETF flows: ``feeds.etf.source: file``, a small JSON flows file.

Commands go in through the fake's getUpdates and the replies are read off its sendMessage and
sendPhoto calls; the subscription made in the chat is read back from the SQLite store after the
process has stopped on SIGTERM. The token must appear nowhere in the process's output. A second
test sends SIGTERM while an alert's delivery is in flight: the delivery must finish and be marked
sent (bot/app.py's shutdown promise), and the exit must still be clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import orjson
import pytest
import yaml
from aiohttp import web

from alerts.store import find_destination, list_subscriptions, open_store, stats
from alerts.subscriptions import Kind
from core.feeds.bybit_ws import PING as BYBIT_PING
from core.feeds.bybit_ws import BybitLiquidationStream
from core.feeds.okx_ws import SUBSCRIBE as OKX_SUBSCRIBE
from tests.fakes.liqbot_cluster import spawn_liqbot, write_etf_flows
from tests.fakes.telegram_api import Call, FakeTelegram
from tests.fakes.telegram_api import _read_params as read_params
from tests.fakes.venue_api import FakeVenueApi
from tests.fakes.ws_server import FakeWsServer, WsConn

# The shape of a real token (bot id, colon, 35 characters), so that redaction by shape is tested
# as well as redaction of the environment variable's value.
TOKEN = "7359012846:AAHfakeSecretOfTheLiveRunTest_0xZ9q"
SECRET = TOKEN.split(":", 1)[1]
CHAT = 4242  # a private chat: chat id == user id
REPLIES = ("sendmessage", "sendphoto", "editmessagetext")
START_S = 90.0  # process start to the first getUpdates: imports, first polls, first snapshot
REPLY_S = 60.0
STOP_S = 30.0

T = TypeVar("T")


# --- the fakes the bot talks to ---------------------------------------------------------------


ALERT_MARK = "Your alert:"  # in a cluster alert's delivery (alerts/notifications.py), no reply


class HoldingTelegram(FakeTelegram):
    """The fake Telegram, able to hold alert deliveries in flight: while ``release`` is clear, a
    sendMessage carrying an alert waits (and ``held`` is set) until ``release.set()``."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.release = asyncio.Event()
        self.release.set()
        self.held = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].lower()
        if method == "sendmessage" and request.content_type != "multipart/form-data":
            params, _ = await read_params(request)  # aiohttp keeps the body: read again below
            if ALERT_MARK in str(params.get("text")) and not self.release.is_set():
                self.held.set()
                await self.release.wait()
        return await super()._handle(request)


def alert_deliveries(tg: FakeTelegram) -> list[Call]:
    return [c for c in tg.calls_to("sendMessage") if ALERT_MARK in str(c.params.get("text"))]


def force_order_frame(ts_ms: int) -> bytes:
    """A Binance combined-stream forceOrder frame (2026 shape): a BTC long liquidated."""
    qty, price = "0.5", "95000"
    order = {
        "s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC", "q": qty, "p": price, "ap": price,
        "X": "FILLED", "l": qty, "z": qty, "T": ts_ms, "ps": "BTCUSDT", "st": 1,
    }  # fmt: skip
    data = {"e": "forceOrder", "E": ts_ms + 5, "o": order}
    return orjson.dumps({"stream": "btcusdt@forceOrder", "data": data})


async def binance_script(conn: WsConn) -> None:
    await conn.send(force_order_frame(int(time.time() * 1000)))
    await conn.hold()


def okx_ws() -> FakeWsServer:
    ack = {"event": "subscribe", "arg": {"channel": "liquidation-orders", "instType": "SWAP"}}
    return FakeWsServer(pong={OKX_SUBSCRIBE: orjson.dumps(ack).decode(), "ping": "pong"})


def bybit_ws() -> FakeWsServer:
    [subscribe] = BybitLiquidationStream(["BTC"]).subscribe_messages()
    ack = {"success": True, "ret_msg": "", "conn_id": "fake", "op": "subscribe"}
    pong = {"success": True, "ret_msg": "pong", "conn_id": "fake", "op": "pong"}
    return FakeWsServer(
        pong={subscribe: orjson.dumps(ack).decode(), BYBIT_PING: orjson.dumps(pong).decode()}
    )


def write_config(
    path: Path,
    *,
    venues: tuple[str, ...],
    telegram: FakeTelegram,
    rest_url: str,
    ws_urls: dict[str, str],
    etf_file: Path,
    cache_dir: Path,
) -> None:
    config = {
        "map": {"lookback": "1d"},
        "feeds": {
            **{v: {"rest_url": rest_url, "ws_url": ws_urls[v]} for v in ws_urls},
            "timeout_s": 10,
            "etf": {"source": "file", "file": str(etf_file), "cache_dir": str(cache_dir)},
        },
        "alerts": {"tick_s": 2, "group_wait_s": 0},
        "bot": {"symbols": ["BTC"], "venues": list(venues), "interval": "5m", "poll_s": 5},
        "telegram": {
            "base_url": telegram.base_url,
            "base_file_url": telegram.base_file_url,
            "mode": "polling",
        },
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


# --- the process --------------------------------------------------------------------------------


class Liqbot:
    """``liqbot run`` as a subprocess, its stdout and stderr read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.out)),
            asyncio.create_task(self._read(proc.stderr, self.err)),
        ]

    @classmethod
    async def start(
        cls,
        cwd: Path,
        config: Path,
        db_path: Path | str,
        env: Mapping[str, str] | None = None,
    ) -> Liqbot:
        """``liqbot run`` on ``config``; ``db_path`` a SQLite file or a database URL; ``env``
        the tokens (default: the Telegram token)."""
        db_url = db_path if isinstance(db_path, str) else f"sqlite+aiosqlite:///{db_path}"
        tokens = {"LIQBOT_TELEGRAM_TOKEN": TOKEN} if env is None else env
        return cls(await spawn_liqbot(cwd, config, db_url, tokens))

    @staticmethod
    async def _read(stream: asyncio.StreamReader, into: list[str]) -> None:
        async for line in stream:
            into.append(line.decode(errors="replace"))

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    async def until(self, what: str, check: Callable[[], T | None], timeout_s: float) -> T:
        """Poll ``check`` until it gives something; fail early if the process ends first."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = check()
            if got:
                return got
            if self.proc.returncode is not None:
                await self.finish()
                pytest.fail(
                    f"liqbot exited with {self.proc.returncode} while waiting for {what}; "
                    f"stderr:\n{self.stderr}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout_s:g}s; stderr so far:\n{self.stderr}")
            await asyncio.sleep(0.1)

    async def finish(self, timeout_s: float = STOP_S) -> int:
        """Wait for the exit and the end of both pipes; the exit code."""
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        await asyncio.wait_for(asyncio.gather(*self._readers), timeout_s)
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        with contextlib.suppress(Exception):
            await self.finish(10.0)


# --- talking to it through the fake Telegram -----------------------------------------------------


def replies_since(tg: FakeTelegram, mark: int) -> list[Call]:
    return [c for c in tg.calls[mark:] if c.method in REPLIES and c.chat_id == str(CHAT)]


def text_of(calls: list[Call]) -> str:
    return "\n".join(str(c.params.get("text") or c.params.get("caption") or "") for c in calls)


async def ask(
    bot: Liqbot, tg: FakeTelegram, command: str, done: Callable[[list[Call]], bool]
) -> list[Call]:
    """Send ``command`` from the private chat; the replies once ``done`` holds for them."""
    mark = len(tg.calls)
    tg.inject_command(CHAT, command, user_id=CHAT)

    def answered() -> list[Call] | None:
        calls = replies_since(tg, mark)
        return calls if calls and done(calls) else None

    return await bot.until(f"reply to {command!r}", answered, REPLY_S)


def has_photo(calls: list[Call]) -> bool:
    return any(c.method == "sendphoto" for c in calls)


NO_DATA = "No data for BTC yet"  # bot/cmd_market.py: before the first snapshot


async def liqmap_when_ready(bot: Liqbot, tg: FakeTelegram) -> list[Call]:
    """``/liqmap BTC`` until it answers with a chart: Telegram may start before the first
    snapshot, and until then the bot says it has no data yet (as a user would, ask again)."""
    deadline = time.monotonic() + REPLY_S
    while True:
        calls = await ask(bot, tg, "/liqmap BTC", lambda c: has_photo(c) or NO_DATA in text_of(c))
        if has_photo(calls):
            return calls
        if time.monotonic() > deadline:
            pytest.fail(f"no chart within {REPLY_S:g}s, only {text_of(calls)!r}")
        await asyncio.sleep(0.5)


def mentions(*fragments: str) -> Callable[[list[Call]], bool]:
    return lambda calls: all(f in text_of(calls) for f in fragments)


# --- the stack: the fakes, the config and the process ---------------------------------------


VENUE_NAMES = {"binance": "Binance", "okx": "OKX", "bybit": "Bybit"}


@dataclass
class Stack:
    tg: HoldingTelegram
    api: FakeVenueApi
    ws: dict[str, FakeWsServer]
    bot: Liqbot
    db_path: Path


async def start_stack(
    stack: contextlib.AsyncExitStack, tmp_path: Path, venues: tuple[str, ...]
) -> Stack:
    """Every fake, a config pointing at them, and ``liqbot run`` started on it."""
    etf_file = tmp_path / "flows.json"
    write_etf_flows(etf_file)
    tg = await stack.enter_async_context(HoldingTelegram(TOKEN))
    stack.callback(tg.release.set)  # before the server stops: no request stays held
    api = stack.enter_context(FakeVenueApi(["BTC"]))
    ws = {
        "binance": await stack.enter_async_context(FakeWsServer(binance_script)),
        "okx": await stack.enter_async_context(okx_ws()),
        "bybit": await stack.enter_async_context(bybit_ws()),
    }
    ws_urls = {
        "binance": f"{ws['binance'].url}/market",
        "okx": f"{ws['okx'].url}/ws/v5/public",
        "bybit": f"{ws['bybit'].url}/v5/public/linear",
    }
    config = tmp_path / "config.yaml"
    write_config(
        config,
        venues=venues,
        telegram=tg,
        rest_url=api.url,
        ws_urls=ws_urls,
        etf_file=etf_file,
        cache_dir=tmp_path / "etf-cache",
    )
    db_path = tmp_path / "liqbot.db"
    bot = await Liqbot.start(tmp_path, config, db_path)
    stack.push_async_callback(bot.kill)
    await bot.until("getUpdates", lambda: tg.calls_to("getUpdates"), START_S)
    return Stack(tg, api, ws, bot, db_path)


def assert_clean_exit(code: int, out: str, err: str) -> None:
    assert code == 0, err
    assert "stopping" in err, err
    assert "Traceback" not in err and "raised an exception" not in err, err
    assert TOKEN not in out + err and SECRET not in out + err


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "venues",
    [("binance",), ("binance", "okx", "bybit")],
    ids=["binance", "all-venues"],
)
async def test_live_run_answers_telegram_and_stops_on_sigterm(
    tmp_path: Path, venues: tuple[str, ...]
) -> None:
    names = [VENUE_NAMES[v] for v in venues]
    async with contextlib.AsyncExitStack() as stack:
        s = await start_stack(stack, tmp_path, venues)
        bot, tg = s.bot, s.tg

        liqmap = await liqmap_when_ready(bot, tg)
        [photo] = [c for c in liqmap if c.method == "sendphoto"]
        assert photo.files["photo"].data.startswith(b"\x89PNG\r\n\x1a\n")
        assert "BTC liquidation map" in text_of(liqmap)
        assert f"Venues: {', '.join(names)}." in text_of(liqmap)

        status = text_of(await ask(bot, tg, "/status", mentions("Mode: live")))
        for name in names:
            assert f"{name} API: ok" in status, status
            assert f"{name} liquidation stream: connected" in status, status
        assert "Binance liquidation stream: connected, last event" in status  # the forceOrder
        assert "BTC: snapshot" in status and "stale" not in status, status

        promise = "I'll tell you when BTC is within 1% of a cluster of at least $50M."
        await ask(bot, tg, "/alert cluster BTC 1% 50m", mentions(promise))
        listed = text_of(await ask(bot, tg, "/alerts", mentions("Alerts (1)")))
        assert "#1 BTC within 1% of a cluster of at least $50M" in listed, listed

        bot.proc.send_signal(signal.SIGTERM)
        code = await bot.finish(STOP_S)
        assert_clean_exit(code, bot.stdout, bot.stderr)
        assert "running (live mode" in bot.stderr
        # Every configured venue was polled, within its limits, and the fake saw no server error.
        for venue in venues:
            assert s.api.count(venue=venue) > 0, venue
            assert s.ws[venue].conns, f"no connection to the {venue} liquidation stream"
        assert s.api.violations() == 0 and not s.api.errors

    store = await open_store(f"sqlite+aiosqlite:///{s.db_path}", migrate=False)
    try:
        dest = await find_destination(store, "telegram", str(CHAT))
        assert dest is not None
        [sub] = await list_subscriptions(store, dest.id)
        assert (sub.kind, sub.symbol, sub.pct, sub.min_usd) == (Kind.CLUSTER, "BTC", 1.0, 50e6)
    finally:
        await store.close()


async def test_sigterm_lets_the_alert_delivery_in_progress_finish(tmp_path: Path) -> None:
    """An alert fires and Telegram holds its delivery; SIGTERM comes while the drain waits on it.
    bot/app.py: on shutdown "the runs in progress finish (a drain finishes its in-flight sends
    and marks them)". So once Telegram answers, the delivery is marked sent in the outbox (no
    duplicate on the next start) and the bot exits cleanly, with no job cancelled."""
    async with contextlib.AsyncExitStack() as stack:
        s = await start_stack(stack, tmp_path, ("binance",))
        await liqmap_when_ready(s.bot, s.tg)  # the first snapshot is there: the rule can fire
        s.tg.release.clear()
        # Within 10% of a cluster of at least $1M: true at once, so it fires on the next tick.
        await ask(s.bot, s.tg, "/alert cluster BTC 10% 1m", mentions("within 10% of a cluster"))
        await s.bot.until("an alert delivery held by Telegram", s.tg.held.is_set, REPLY_S)
        s.bot.proc.send_signal(signal.SIGTERM)
        await s.bot.until("'stopping' in the log", lambda: "stopping" in s.bot.stderr, STOP_S)
        s.tg.release.set()  # Telegram answers now: the drain in progress can finish
        code = await s.bot.finish(STOP_S)
        assert_clean_exit(code, s.bot.stdout, s.bot.stderr)
        assert len(alert_deliveries(s.tg)) == 1

    store = await open_store(f"sqlite+aiosqlite:///{s.db_path}", migrate=False)
    try:
        outbox = await stats(store, int(time.time() * 1000))
    finally:
        await store.close()
    assert (outbox.sent, outbox.pending) == (1, 0), outbox
