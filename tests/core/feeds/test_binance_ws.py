"""Binance liquidation stream: the parser against the real frames in ../shared/samples and
junk, and the stream against a real local websockets server (drops, junk, silence, pings,
the 24-hour rollover with an injected clock, aclose)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.errors import InputError
from core.feeds.binance_ws import (
    MAX_CONNECTION_AGE_S,
    BinanceLiquidationStream,
    parse_force_order,
    stream_names,
)
from core.feeds.errors import JunkResponse
from core.feeds.types import LiqEvent
from tests.fakes.timing import FastSleep, ManualClock
from tests.fakes.ws_server import FakeWsServer, Script, WsConn, closed_url, play

TS = 1791565602120

# --- the parser on the real frames --------------------------------------------------------------


@pytest.fixture(scope="session")
def frames(shared_dir: Path) -> dict[str, bytes]:
    """The real forceOrder frames, by short name ('live_raw' etc.), as bytes."""
    files = sorted((shared_dir / "samples").glob("binance_forceOrder*.json"))
    if not files:
        pytest.skip("../shared/samples has no binance_forceOrder*.json frames to test against")
    return {f.stem.split("__")[-1]: f.read_bytes() for f in files}


EXPECTED = {
    "docs": LiqEvent("binance", "BTC", "long", 9910.0, 0.014, 9910.0 * 0.014, 1568014460893),
    "sdk_2026": LiqEvent("binance", "BTC", "long", 9910.0, 0.014, 9910.0 * 0.014, 1568014460893),
    "live_raw": LiqEvent(
        "binance", "MANTA", "long", 0.0722187, 2049.1, 0.0722187 * 2049.1, 1791091026103
    ),
    "live_combined_symbol": LiqEvent(
        "binance", "XRP", "short", 1.4912, 127.2, 1.4912 * 127.2, 1791091174219
    ),
    "live_combined": LiqEvent("binance", "BTC", "long", 82651.9, 0.19, 82651.9 * 0.19, TS),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_real_frames(frames: dict[str, bytes], name: str) -> None:
    assert parse_force_order(frames[name]) == EXPECTED[name]
    assert parse_force_order(frames[name].decode()) == EXPECTED[name]


def _edit(raw: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    msg = orjson.loads(raw)
    edit(msg)
    return orjson.dumps(msg)


def _order(msg: dict[str, Any]) -> dict[str, Any]:
    order: dict[str, Any] = msg.get("data", msg)["o"]
    return order


def test_fallbacks_to_order_size_and_price(frames: dict[str, bytes]) -> None:
    live = frames["live_combined"]
    unfilled = _edit(live, lambda m: _order(m).update(z="0", ap="0"))
    assert parse_force_order(unfilled) == LiqEvent(
        "binance", "BTC", "long", 82338.3, 0.19, 82338.3 * 0.19, TS
    )
    bare = _edit(live, lambda m: [_order(m).pop(k) for k in ("z", "ap", "l", "ps", "st")])
    assert parse_force_order(bare) == LiqEvent(
        "binance", "BTC", "long", 82338.3, 0.19, 82338.3 * 0.19, TS
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: _order(m).update(st=2, s="BTCUSD_PERP"),  # COIN-M, st inside o (live 2026)
        lambda m: (_order(m).pop("st"), m["data"].update(st=2)),  # st at the top (SDK 2026)
        lambda m: _order(m).update(s="BTCUSDC"),  # USDC-margined
        lambda m: _order(m).update(s="BTCUSDT_260327"),  # dated delivery contract
        lambda m: _order(m).update(s="币安人生USDT"),  # listed, but not a nameable symbol
        lambda m: m["data"].update(e="markPriceUpdate"),  # another event type
    ],
)
def test_frames_with_nothing_for_us(frames: dict[str, bytes], edit: Callable[..., Any]) -> None:
    assert parse_force_order(_edit(frames["live_combined"], edit)) is None


def test_subscription_ack_is_not_junk() -> None:
    assert parse_force_order(b'{"result":null,"id":1}') is None


JUNK: list[tuple[Callable[[bytes], bytes], str]] = [
    (lambda f: f[:-7], "not JSON"),
    (lambda f: b"", "not JSON"),
    (lambda f: b"[" + f + b"]", "JSON list"),
    (lambda f: b"null", "JSON NoneType"),
    (lambda f: _edit(f, lambda m: m.update(data=[m["data"]])), "event is a JSON list"),
    (lambda f: _edit(f, lambda m: m["data"].pop("e")), "missing field 'e'"),
    (lambda f: _edit(f, lambda m: m["data"].pop("o")), "'o' is missing"),
    (lambda f: _edit(f, lambda m: m["data"].update(o=[1])), "'o' is missing or not an object"),
    (lambda f: _edit(f, lambda m: _order(m).pop("s")), "o.s should be a symbol string"),
    (lambda f: _edit(f, lambda m: _order(m).update(s=7)), "o.s should be a symbol string"),
    (lambda f: _edit(f, lambda m: _order(m).update(S="HOLD")), "o.S is 'HOLD'"),
    (lambda f: _edit(f, lambda m: _order(m).update(z="abc")), "o.z is not a number"),
    (lambda f: _edit(f, lambda m: _order(m).update(z=None, q=None)), "o.q is missing or null"),
    (lambda f: _edit(f, lambda m: _order(m).update(ap="0", p=[])), "o.p is not a number"),
    (lambda f: _edit(f, lambda m: _order(m).update(z="0", q="0")), "is not positive"),
    (lambda f: _edit(f, lambda m: _order(m).update(z="NaN", q="NaN")), "is not positive"),
    (lambda f: _edit(f, lambda m: _order(m).update(p="-5", ap="-5")), "is not positive"),
    (lambda f: _edit(f, lambda m: _order(m).pop("T")), "missing field o.T"),
    (lambda f: _edit(f, lambda m: _order(m).update(T=str(TS))), "o.T is not epoch milliseconds"),
    (lambda f: _edit(f, lambda m: _order(m).update(T=TS // 1000)), "o.T is not epoch millisec"),
    (lambda f: _edit(f, lambda m: _order(m).update(st=3)), "unknown st 3"),
]


@pytest.mark.parametrize(("corrupt", "fragment"), JUNK)
def test_junk_frames_raise(
    frames: dict[str, bytes], corrupt: Callable[[bytes], bytes], fragment: str
) -> None:
    with pytest.raises(JunkResponse) as info:
        parse_force_order(corrupt(frames["live_combined"]))
    assert fragment in str(info.value) and str(info.value).startswith("binance: forceOrder frame")


def test_stream_names_and_url() -> None:
    assert stream_names(None) == ["!forceOrder@arr"]
    assert stream_names(["BTC", "eth", "BTCUSDT"]) == ["btcusdt@forceOrder", "ethusdt@forceOrder"]
    stream = BinanceLiquidationStream()
    assert stream.url == "wss://fstream.binance.com/market/stream?streams=!forceOrder@arr"
    assert BinanceLiquidationStream(["SOL", "XRP"], base_url="wss://x.test/market/").url == (
        "wss://x.test/market/stream?streams=solusdt@forceOrder/xrpusdt@forceOrder"
    )
    with pytest.raises(InputError, match="pass None"):
        stream_names([])
    with pytest.raises(InputError, match="not a websocket URL"):
        BinanceLiquidationStream(base_url="https://fstream.binance.com/market")
    status = stream.status()
    assert (status.venue, status.connected, status.connects, status.events) == (
        "binance", False, 0, 0,
    )  # fmt: skip


# --- the stream against a real local server -----------------------------------------------------


def frame(symbol: str = "BTCUSDT", side: str = "SELL", price: str = "100", qty: str = "2") -> bytes:
    """A combined-stream forceOrder frame in the 2026 live shape."""
    order = {
        "s": symbol, "S": side, "o": "LIMIT", "f": "IOC", "q": qty, "p": price, "ap": price,
        "X": "FILLED", "l": qty, "z": qty, "T": TS, "ps": symbol, "st": 1,
    }  # fmt: skip
    data = {"e": "forceOrder", "E": TS + 900, "o": order}
    return orjson.dumps({"stream": "!forceOrder@arr", "data": data})


Start = Callable[..., Awaitable[tuple[FakeWsServer, str]]]


@pytest.fixture
async def fake_binance() -> AsyncIterator[Start]:
    """Starts a scripted FakeWsServer; returns it and its Binance-style base URL."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(*scripts: Script) -> tuple[FakeWsServer, str]:
            fake = await stack.enter_async_context(FakeWsServer(*scripts))
            return fake, f"{fake.url}/market"

        yield start


def make_stream(url: str, **kwargs: Any) -> BinanceLiquidationStream:
    kwargs.setdefault("sleep", FastSleep())
    return BinanceLiquidationStream(
        base_url=url, proxy=None, rng=random.Random(7), close_timeout_s=1.0, **kwargs
    )


async def take(events: AsyncIterator[LiqEvent], n: int) -> list[LiqEvent]:
    async with asyncio.timeout(5):
        return [await anext(events) for _ in range(n)]


async def test_real_frames_over_a_socket(fake_binance: Start, frames: dict[str, bytes]) -> None:
    names = sorted(EXPECTED)
    fake, url = await fake_binance(play(*(frames[n] for n in names)))
    clock = ManualClock()
    stream = make_stream(url, clock=clock)
    async with contextlib.aclosing(stream.events()) as events:
        assert await take(events, len(names)) == [EXPECTED[n] for n in names]
        status = stream.status()
        assert (status.connected, status.connects, status.events, status.dropped_frames) == (
            True, 1, 5, 0,
        )  # fmt: skip
        assert status.last_message_ms == status.last_event_ms == int(clock.now * 1000)
    await stream.aclose()
    assert fake.paths == ["/market/stream?streams=!forceOrder@arr"]


async def test_per_symbol_path(fake_binance: Start) -> None:
    fake, url = await fake_binance(play(frame("ETHUSDT")))
    stream = BinanceLiquidationStream(["eth", "BTC"], base_url=url, proxy=None)
    async with contextlib.aclosing(stream.events()) as events:
        [event] = await take(events, 1)
    await stream.aclose()
    assert event.symbol == "ETH"
    assert fake.paths == ["/market/stream?streams=ethusdt@forceOrder/btcusdt@forceOrder"]


async def test_reconnects_after_the_server_drops(fake_binance: Start) -> None:
    fake, url = await fake_binance(
        play(frame(price="1"), frame(price="2"), then="abort"),
        play(frame(price="3"), then="close"),
        play(frame(price="4")),
    )
    sleeps = FastSleep()
    stream = make_stream(url, sleep=sleeps)
    async with contextlib.aclosing(stream.events()) as events:
        assert [e.price for e in await take(events, 4)] == [1.0, 2.0, 3.0, 4.0]
    status = stream.status()
    await stream.aclose()
    assert status.connects == 3 and status.events == 4
    assert status.last_error is not None and "connection closed" in status.last_error
    # Each dropped connection had delivered frames, so the backoff starts over: base 1 s.
    assert len(sleeps.delays) == 2 and all(0.5 <= d <= 1.0 for d in sleeps.delays)
    assert len(fake.paths) == 3


async def test_malformed_frames_are_dropped_and_counted(fake_binance: Start) -> None:
    _, url = await fake_binance(
        play(
            frame(price="1"),
            frame()[:-9],  # truncated (binary frame)
            "[]",  # text frame
            '{"e":"forceOrder","E":1}',
            '{"result":null,"id":1}',  # an ack: valid, nothing for us
            frame(symbol="BTCUSDC"),  # valid, not a USDT perpetual
            frame(price="2").decode(),  # text frame
        )
    )
    stream = make_stream(url)
    async with contextlib.aclosing(stream.events()) as events:
        assert [e.price for e in await take(events, 2)] == [1.0, 2.0]
    status = stream.status()
    await stream.aclose()
    assert (status.connects, status.events, status.dropped_frames) == (1, 2, 3)
    assert stream.filtered_frames == 2
    assert status.last_error is not None and status.last_error.startswith(
        "dropped a frame: binance: forceOrder frame"
    )


async def test_status_fields_of_the_shared_loop(fake_binance: Start) -> None:
    _, url = await fake_binance(play('{"result":null,"id":1}', frame(symbol="BTCUSDC"), frame()))
    stream = make_stream(url)
    assert not stream.status().subscribed
    async with contextlib.aclosing(stream.events()) as events:
        await take(events, 1)
        status = stream.status()
        # The streams are in the URL: a connection is subscribed as soon as it is open.
        assert status.subscribed and status.filtered_frames == 2 and status.skipped == 0
    await stream.aclose()
    assert not stream.status().subscribed


async def test_silence_reconnects_with_growing_backoff(fake_binance: Start) -> None:
    fake, url = await fake_binance(play(), play(), play(frame()))
    sleeps = FastSleep()
    stream = make_stream(url, sleep=sleeps, silence_timeout_s=0.15)
    async with contextlib.aclosing(stream.events()) as events:
        [event] = await take(events, 1)
    status = stream.status()
    await stream.aclose()
    assert event.side == "long" and status.connects == 3
    assert status.last_error == "silent for 0.15s; reconnecting"
    # Two connections in a row failed before any frame: the second wait is longer.
    assert len(sleeps.delays) == 2
    assert 0.5 <= sleeps.delays[0] <= 1.0 and 1.0 <= sleeps.delays[1] <= 2.0
    await asyncio.sleep(0.05)
    assert fake.closes[:2] == [(1000, "reconnecting"), (1000, "reconnecting")]


async def test_24h_rollover_with_an_injected_clock(fake_binance: Start) -> None:
    fake, url = await fake_binance(play(frame(price="1"), frame(price="2")), play(frame(price="3")))
    clock, sleeps = ManualClock(), FastSleep()
    stream = make_stream(url, clock=clock, sleep=sleeps)
    async with contextlib.aclosing(stream.events()) as events:
        assert [e.price for e in await take(events, 1)] == [1.0]
        clock.now += MAX_CONNECTION_AGE_S - 60  # 23h49m: still the same connection
        assert [e.price for e in await take(events, 1)] == [2.0]
        assert stream.status().connects == 1
        clock.now += 61  # past 23h50m: roll over to a fresh connection, no backoff
        assert [e.price for e in await take(events, 1)] == [3.0]
        assert stream.status().connects == 2 and stream.status().connected
    await stream.aclose()
    assert sleeps.delays == [] and stream.status().last_error is None
    await asyncio.sleep(0.05)
    assert fake.closes[0] == (1000, "24h rollover")


async def test_rollover_also_fires_on_a_quiet_connection(fake_binance: Start) -> None:
    """With the real clock: the age limit, not a frame, ends a quiet connection."""
    fake, url = await fake_binance(play(), play(frame()))
    sleeps = FastSleep()
    stream = make_stream(url, sleep=sleeps, max_connection_age_s=0.15, silence_timeout_s=30)
    async with contextlib.aclosing(stream.events()) as events:
        await take(events, 1)
    await stream.aclose()
    assert stream.status().connects == 2 and sleeps.delays == []
    await asyncio.sleep(0.05)
    assert fake.closes[0] == (1000, "24h rollover")


async def test_one_consumer_only(fake_binance: Start) -> None:
    _, url = await fake_binance(play(frame()))
    stream = make_stream(url)
    async with contextlib.aclosing(stream.events()) as first:
        await take(first, 1)
        with pytest.raises(RuntimeError, match="one consumer"):
            await anext(stream.events())
    await stream.aclose()


async def test_pings_are_answered_by_the_library(fake_binance: Start) -> None:
    latencies: list[float] = []

    async def ping_first(conn: WsConn) -> None:
        pong = await conn.ws.ping(b"binance")
        latencies.append(await asyncio.wait_for(pong, 2))
        await play(frame())(conn)

    _, url = await fake_binance(ping_first)
    # Our own keepalive is off: the pong can only be the automatic answer to the server's ping.
    stream = make_stream(url, ping_interval_s=None)
    async with contextlib.aclosing(stream.events()) as events:
        await take(events, 1)
    await stream.aclose()
    assert len(latencies) == 1 and stream.status().connects == 1


async def test_aclose_ends_a_waiting_consumer(fake_binance: Start) -> None:
    _, url = await fake_binance(play())
    stream = make_stream(url)
    events = stream.events()
    waiting = asyncio.ensure_future(anext(events))
    async with asyncio.timeout(5):
        while not stream.status().connected:
            await asyncio.sleep(0.01)
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await waiting
    assert not stream.status().connected and stream.status().last_error is None


async def test_connect_failures_back_off_exponentially() -> None:
    stream: BinanceLiquidationStream

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 6:
            await stream.aclose()

    delays: list[float] = []
    stream = make_stream(closed_url("/market"), sleep=sleep)
    async with asyncio.timeout(5), contextlib.aclosing(stream.events()) as events:
        with pytest.raises(StopAsyncIteration):
            await anext(events)
    assert len(delays) == 6
    for attempt, delay in enumerate(delays):
        ceiling = min(60.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    status = stream.status()
    assert status.connects == 0 and status.last_error is not None
    assert status.last_error.startswith("connect failed")


async def test_aclose_interrupts_a_backoff_wait() -> None:
    never = asyncio.Event()

    async def sleep_forever(_: float) -> None:
        await never.wait()

    stream = make_stream(closed_url("/market"), sleep=sleep_forever)
    waiting = asyncio.ensure_future(anext(stream.events()))
    async with asyncio.timeout(5):
        while stream.status().last_error is None:
            await asyncio.sleep(0.01)
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await waiting
