"""OKX and Bybit liquidation streams against a real local websockets server (DESIGN §9).

Each test runs a ``websockets`` server on 127.0.0.1 port 0 (``tests.fakes.ws_server``) that
the test drives frame by frame: subscribe messages are checked, real sample frames are sent,
connections are dropped, frames are malformed, the server goes silent, and the venues' app-level
ping/pong is exercised. The backoff sleep is injected, so reconnects take no wall time; every
wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from core.feeds.bybit_ws import BybitLiquidationStream, parse_all_liquidation
from core.feeds.errors import JunkResponse
from core.feeds.okx import OkxRest
from core.feeds.okx_ws import SUBSCRIBE, OkxLiquidationStream
from core.feeds.types import LiqEvent
from core.feeds.ws import WsLiquidationStream
from tests.fakes.timing import FastSleep
from tests.fakes.ws_server import FakeWsServer, closed_url

CT = {"BTC-USDT-SWAP": 0.01}
LIMIT_S = 5.0  # every wait in these tests is bounded by this


@pytest.fixture(scope="session")
def frame(shared_dir: Path) -> Callable[[str], str]:
    samples = shared_dir / "samples"
    if not samples.is_dir():
        pytest.skip("../shared/samples is absent: the stream tests send the real payloads there")

    def read(name: str) -> str:  # the file's text, sent as the frame
        return (samples / f"{name}.json").read_text(encoding="utf-8")

    return read


@pytest.fixture
async def venue() -> AsyncIterator[FakeWsServer]:
    async with FakeWsServer() as fake:
        yield fake


def options(sleep: FastSleep | None = None, **extra: Any) -> dict[str, Any]:
    return {"proxy": None, "sleep": sleep or FastSleep(), "rng": random.Random(7), **extra}


class Consumer:
    """Runs ``stream.events()`` in a task and collects what it yields."""

    def __init__(self, stream: WsLiquidationStream) -> None:
        self.stream = stream
        self.events: list[LiqEvent] = []
        self.got = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with contextlib.aclosing(self.stream.events()) as events:
            async for event in events:
                self.events.append(event)
                self.got.set()

    async def wait_for(self, n: int) -> list[LiqEvent]:
        async with asyncio.timeout(LIMIT_S):
            while len(self.events) < n:
                self.got.clear()
                await self.got.wait()
        return self.events

    async def close(self) -> None:
        await self.stream.aclose()
        await asyncio.wait_for(self.task, LIMIT_S)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(LIMIT_S):
        while not condition():
            await asyncio.sleep(0.01)


# --- OKX -------------------------------------------------------------------------------------


async def test_okx_subscribe_parse_and_filter(
    venue: FakeWsServer, frame: Callable[[str], str]
) -> None:
    stream = OkxLiquidationStream(["BTC"], ct_vals=CT, url=venue.url, **options())
    consumer = Consumer(stream)
    conn = await venue.next_conn()
    assert json.loads(await conn.expect()) == {
        "op": "subscribe",
        "args": [{"channel": "liquidation-orders", "instType": "SWAP"}],
    }
    await conn.send(
        frame("okx_ws_subscribe_ack__docs"),
        frame("okx_ws_liquidation_orders__live_celo"),  # another swap: filtered out
        frame("okx_ws_liquidation_orders__docs"),  # IOST: filtered out
        frame("okx_ws_liquidation_orders__live_btc"),
    )
    [event] = await consumer.wait_for(1)
    assert (event.venue, event.symbol, event.side, event.ts_ms) == (
        "okx",
        "BTC",
        "long",
        1791565600771,
    )
    assert event.qty == pytest.approx(0.0855) and event.usd == pytest.approx(82655.7 * 0.0855)
    status = stream.status()
    assert status.connected and status.connects == 1 and status.events == 1
    assert status.dropped_frames == 0 and stream.skipped_unknown == 0
    await consumer.close()
    assert not stream.status().connected


async def test_okx_all_swaps_skips_unknown_ctval(
    venue: FakeWsServer, frame: Callable[[str], str]
) -> None:
    stream = OkxLiquidationStream(None, ct_vals=CT, url=venue.url, **options())
    consumer = Consumer(stream)
    conn = await venue.next_conn()
    await conn.expect()
    await conn.send(
        frame("okx_ws_liquidation_orders__live_celo"), frame("okx_ws_liquidation_orders__live_btc")
    )
    [event] = await consumer.wait_for(1)
    assert event.symbol == "BTC" and stream.skipped_unknown == 1  # CELO: no ctVal, no guess
    await consumer.close()


async def test_okx_drop_reconnects_and_resubscribes(
    venue: FakeWsServer, frame: Callable[[str], str]
) -> None:
    sleep = FastSleep()
    stream = OkxLiquidationStream(["BTC"], ct_vals=CT, url=venue.url, **options(sleep))
    consumer = Consumer(stream)
    first = await venue.next_conn()
    assert await first.expect() == SUBSCRIBE
    await first.send(frame("okx_ws_liquidation_orders__live_btc"))
    await consumer.wait_for(1)
    await first.drop()  # the TCP connection dies without a close frame
    second = await venue.next_conn()
    assert await second.expect() == SUBSCRIBE
    await second.send(frame("okx_ws_liquidation_orders__live_btc"))
    await consumer.wait_for(2)
    assert stream.status().connects == 2 and len(sleep.delays) == 1
    assert 0.25 <= sleep.delays[0] <= 0.5  # first backoff: base 0.5 s, jittered 50-100 %
    await consumer.close()


async def test_okx_malformed_frames_are_dropped(
    venue: FakeWsServer, frame: Callable[[str], str]
) -> None:
    stream = OkxLiquidationStream(["BTC"], ct_vals=CT, url=venue.url, **options())
    consumer = Consumer(stream)
    conn = await venue.next_conn()
    await conn.expect()
    good = json.loads(frame("okx_ws_liquidation_orders__live_btc"))
    bad = json.loads(frame("okx_ws_liquidation_orders__live_btc"))
    bad["data"][0]["details"][0]["sz"] = "lots"
    await conn.send(
        '{"arg":{"channel":"liquidation-orders"',  # truncated
        "garbage",
        "[1, 2]",
        json.dumps(bad),
        json.dumps({"arg": {"channel": "tickers"}, "data": []}),
        json.dumps({"event": "mystery"}),
        json.dumps(good),
    )
    [event] = await consumer.wait_for(1)
    assert event.qty == pytest.approx(0.0855)
    status = stream.status()
    assert status.dropped_frames == 6 and status.events == 1 and status.connects == 1
    assert status.last_error is not None and "dropped frame" in status.last_error
    await consumer.close()


async def test_okx_notice_and_error_events(
    venue: FakeWsServer, frame: Callable[[str], str]
) -> None:
    stream = OkxLiquidationStream(["BTC"], ct_vals=CT, url=venue.url, **options())
    consumer = Consumer(stream)
    first = await venue.next_conn()
    await first.expect()
    await first.send(frame("okx_ws_error__docs"))
    await until(lambda: "60009" in (stream.status().last_error or ""))
    await first.send(frame("okx_ws_notice__docs"))  # upgrade ahead: reconnect now
    second = await venue.next_conn()
    assert await second.expect() == SUBSCRIBE
    assert "64008" in (stream.status().last_error or "")
    assert stream.status().dropped_frames == 0
    await consumer.close()


async def test_okx_text_ping_pong_keeps_the_connection() -> None:
    async with FakeWsServer(pong={"ping": "pong"}) as fake:
        stream = OkxLiquidationStream(
            ["BTC"],
            ct_vals=CT,
            url=fake.url,
            **options(ping_interval_s=0.05, pong_timeout_s=0.5, silence_timeout_s=1.0),
        )
        consumer = Consumer(stream)
        conn = await fake.next_conn()
        await conn.expect()  # subscribe
        for _ in range(4):  # pings keep coming on an idle connection and are answered
            assert await conn.expect() == "ping"
        assert stream.status().connects == 1 and stream.status().dropped_frames == 0
        await consumer.close()


async def test_okx_missing_pong_reconnects(venue: FakeWsServer) -> None:
    stream = OkxLiquidationStream(
        ["BTC"],
        ct_vals=CT,
        url=venue.url,
        **options(ping_interval_s=0.05, pong_timeout_s=0.1, silence_timeout_s=5.0),
    )
    consumer = Consumer(stream)
    first = await venue.next_conn()
    assert await first.expect() == SUBSCRIBE
    assert await first.expect() == "ping"  # and the server says nothing
    second = await venue.next_conn()
    assert await second.expect() == SUBSCRIBE
    assert "no pong" in (stream.status().last_error or "")
    await consumer.close()


async def test_okx_silence_reconnects(venue: FakeWsServer) -> None:
    stream = OkxLiquidationStream(
        ["BTC"],
        ct_vals=CT,
        url=venue.url,
        **options(ping_interval_s=10.0, silence_timeout_s=0.2),
    )
    consumer = Consumer(stream)
    await (await venue.next_conn()).expect()
    second = await venue.next_conn()
    assert await second.expect() == SUBSCRIBE
    assert "no message for 0.2s" in (stream.status().last_error or "")
    await consumer.close()


async def test_okx_fetches_ctval_through_rest(
    venue: FakeWsServer, frame: Callable[[str], str], shared_dir: Path
) -> None:
    instruments = (shared_dir / "samples" / "okx_instruments_swap__live2022.json").read_bytes()
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=instruments)

    rest = OkxRest(transport=httpx.MockTransport(handler))
    stream = OkxLiquidationStream(["BTC"], rest=rest, url=venue.url, **options())
    consumer = Consumer(stream)
    conn = await venue.next_conn()
    await conn.expect()
    await conn.send(frame("okx_ws_liquidation_orders__live_btc"))
    [event] = await consumer.wait_for(1)
    assert event.qty == pytest.approx(0.0855)
    assert len(calls) == 1 and calls[0].url.params["instType"] == "SWAP"
    await consumer.close()
    await rest.aclose()


async def test_okx_status_counts_filtered_skipped_and_subscription(
    venue: FakeWsServer, frame: Callable[[str], str]
) -> None:
    stream = OkxLiquidationStream(None, ct_vals=CT, url=venue.url, **options(ping_interval_s=10.0))
    consumer = Consumer(stream)
    conn = await venue.next_conn()
    await conn.expect()
    await until(lambda: stream.status().connected)
    assert not stream.status().subscribed  # sent, not yet confirmed
    await conn.send(frame("okx_ws_subscribe_ack__docs"))
    await until(lambda: stream.status().subscribed)
    await conn.send(
        frame("okx_ws_liquidation_orders__live_celo"),  # in scope, no ctVal: skipped
        "garbage",  # dropped
        frame("okx_ws_liquidation_orders__live_btc"),
    )
    await consumer.wait_for(1)
    status = stream.status()
    assert (status.filtered_frames, status.skipped, status.dropped_frames) == (2, 1, 1)
    assert status.skipped == stream.skipped_unknown
    await conn.drop()
    second = await venue.next_conn()
    await second.expect()
    assert not stream.status().subscribed  # a new connection starts unconfirmed
    await consumer.close()
    assert not stream.status().subscribed and not stream.status().connected


def test_okx_needs_contract_values() -> None:
    with pytest.raises(ValueError, match="ct_vals"):
        OkxLiquidationStream(["BTC"])


# --- Bybit -----------------------------------------------------------------------------------


def test_bybit_parser_samples(frame: Callable[[str], str]) -> None:
    btc = orjson.loads(frame("bybit_ws_allLiquidation__live_btc"))
    events = parse_all_liquidation(btc["data"], {"BTCUSDT": "BTC"})
    assert [(e.side, e.price, e.qty, e.ts_ms) for e in events] == [
        ("long", 82396.9, 0.006, 1791565600992),  # S=Buy: a long position was liquidated
        ("long", 82394.3, 0.038, 1791565601058),
    ]
    assert events[0].usd == pytest.approx(82396.9 * 0.006)
    strk = orjson.loads(frame("bybit_ws_allLiquidation__live_strk"))
    assert parse_all_liquidation(strk["data"], {"BTCUSDT": "BTC"}) == []  # not asked for
    [e] = parse_all_liquidation(strk["data"], {"STRKUSDT": "STRK"})
    assert (e.symbol, e.qty, e.price) == ("STRK", 2084.9, 0.05165)
    docs = orjson.loads(frame("bybit_ws_allLiquidation__docs"))
    [rose] = parse_all_liquidation(docs["data"], {"ROSEUSDT": "ROSE"})
    assert rose.side == "short"  # S=Sell: a short position was liquidated
    with pytest.raises(JunkResponse):  # the deprecated topic: one object, other field names
        parse_all_liquidation(
            orjson.loads(frame("bybit_ws_liquidation_deprecated__docs"))["data"], {"BTCUSDT": "BTC"}
        )


@pytest.mark.parametrize(
    "item",
    [
        {"s": "BTCUSDT", "S": "Buy", "v": "0.1", "p": "x", "T": 1791565600992},
        {"s": "BTCUSDT", "S": "Long", "v": "0.1", "p": "1", "T": 1791565600992},
        {"s": "BTCUSDT", "S": "Buy", "v": "0", "p": "1", "T": 1791565600992},
        {"s": "BTCUSDT", "S": "Buy", "v": "0.1", "p": "1", "T": 1791565600.992},
        {"s": "BTCUSDT", "S": "Buy", "v": "0.1", "p": "1"},
        {"s": ["BTCUSDT"], "S": "Buy", "v": "0.1", "p": "1", "T": 1791565600992},
        "item",
    ],
)
def test_bybit_parser_junk(item: Any) -> None:
    with pytest.raises(JunkResponse):
        parse_all_liquidation([item], {"BTCUSDT": "BTC"})


async def test_bybit_subscribe_ping_and_parse(
    venue: FakeWsServer, frame: Callable[[str], str]
) -> None:
    venue.pong = {'{"op":"ping"}': frame("bybit_ws_pong_linear__docs")}
    stream = BybitLiquidationStream(["ETH", "btc"], url=venue.url, **options(ping_interval_s=0.05))
    consumer = Consumer(stream)
    conn = await venue.next_conn()
    assert json.loads(await conn.expect()) == {
        "op": "subscribe",
        "args": ["allLiquidation.BTCUSDT", "allLiquidation.ETHUSDT"],
    }
    await conn.send(
        frame("bybit_ws_subscribe_ack__nautilus"), frame("bybit_ws_allLiquidation__live_btc")
    )
    events = await consumer.wait_for(2)
    assert [e.symbol for e in events] == ["BTC", "BTC"] and events[0].venue == "bybit"
    # Pings go out on a timer even while data flows, and the pong is not a dropped frame.
    assert await conn.expect() == '{"op":"ping"}'
    assert await conn.expect() == '{"op":"ping"}'
    assert stream.status().dropped_frames == 0 and stream.status().connects == 1
    await consumer.close()


async def test_bybit_subscribe_failure_is_reported(
    venue: FakeWsServer, frame: Callable[[str], str]
) -> None:
    stream = BybitLiquidationStream(["BTC"], url=venue.url, **options())
    consumer = Consumer(stream)
    conn = await venue.next_conn()
    await conn.expect()
    await conn.send(frame("bybit_ws_subscribe_failure__nautilus"))
    await until(lambda: stream.subscribe_failures == 1)
    assert "Invalid topic" in (stream.status().last_error or "")
    assert stream.status().connects == 1
    await consumer.close()


async def test_bybit_subscription_ack_sets_subscribed(
    venue: FakeWsServer, frame: Callable[[str], str]
) -> None:
    stream = BybitLiquidationStream(["BTC"], url=venue.url, **options(ping_interval_s=10.0))
    consumer = Consumer(stream)
    conn = await venue.next_conn()
    await conn.expect()
    await conn.send(frame("bybit_ws_subscribe_ack__nautilus"))
    await until(lambda: stream.status().subscribed)
    assert stream.status().filtered_frames == 1 and stream.status().skipped == 0
    await consumer.close()


async def test_bybit_drop_malformed_and_silence(
    venue: FakeWsServer, frame: Callable[[str], str]
) -> None:
    sleep = FastSleep()
    stream = BybitLiquidationStream(
        ["BTC"], url=venue.url, **options(sleep, silence_timeout_s=0.3, ping_interval_s=10.0)
    )
    consumer = Consumer(stream)
    first = await venue.next_conn()
    await first.expect()
    await first.send(
        "{not json",
        '{"topic":"allLiquidation.BTCUSDT","data":{"s":"BTCUSDT"}}',  # the old object shape
        '{"topic":"tickers.BTCUSDT","data":[]}',  # a topic never asked for
        frame("bybit_ws_allLiquidation__live_btc"),
    )
    await consumer.wait_for(2)
    assert stream.status().dropped_frames == 3
    await first.close()  # a clean close is a drop too
    second = await venue.next_conn()
    assert json.loads(await second.expect())["args"] == ["allLiquidation.BTCUSDT"]
    await second.send(frame("bybit_ws_allLiquidation__live_btc"))
    await consumer.wait_for(4)
    third = await venue.next_conn()  # then the server goes silent: a dead connection
    assert json.loads(await third.expect())["op"] == "subscribe"
    assert "no message" in (stream.status().last_error or "")
    assert stream.status().connects == 3 and stream.status().events == 4
    await consumer.close()


# --- the reconnect loop ----------------------------------------------------------------------


async def test_backoff_grows_with_jitter_and_aclose_stops_it() -> None:
    sleep = FastSleep()
    url = closed_url()  # nothing listens: every attempt is refused
    stream = BybitLiquidationStream(
        ["BTC"], url=url, **options(sleep, backoff_base_s=0.5, backoff_max_s=4.0)
    )
    consumer = Consumer(stream)
    await until(lambda: len(sleep.delays) >= 7)
    await consumer.close()
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    for delay, cap in zip(sleep.delays, caps, strict=False):
        assert cap / 2 <= delay <= cap
    status = stream.status()
    assert status.connects == 0 and not status.connected and status.last_error
    assert consumer.events == []


async def test_aclose_interrupts_a_long_backoff() -> None:
    url = closed_url()
    stream = OkxLiquidationStream(["BTC"], ct_vals=CT, url=url, proxy=None, backoff_base_s=60.0)
    consumer = Consumer(stream)  # real asyncio.sleep: a 30-60 s wait after the first refusal
    await until(lambda: stream.status().last_error is not None)
    await consumer.close()  # returns at once, not after the backoff


async def test_events_cannot_be_iterated_twice(venue: FakeWsServer) -> None:
    stream = OkxLiquidationStream(["BTC"], ct_vals=CT, url=venue.url, **options())
    consumer = Consumer(stream)
    await (await venue.next_conn()).expect()
    with pytest.raises(RuntimeError, match="already"):
        await anext(stream.events())
    await consumer.close()
