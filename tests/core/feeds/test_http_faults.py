"""HttpClient against a real local HTTP server: timeouts, 429, bans, 5xx, junk, budgets.

Time is faked where it would otherwise pass: the client gets a fake clock and a fake sleep, and
the tests assert on the sleeps it asked for. Only timeouts take real time (0.2 s each). The
server stamps arrivals with the same fake clock, so its log shows when the client sent.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.feeds.errors import (
    Banned,
    CircuitOpen,
    FeedError,
    FeedUnavailable,
    JunkResponse,
    RateLimited,
    UnknownSymbol,
    VenueError,
)
from core.feeds.http import HttpClient
from core.feeds.limits import VenueLimits, Window
from tests.fakes.http_server import FakeHttpServer, Reply

T0 = 1_774_784_900.0  # 83.8 s before the ban in the Binance 418 sample ends
PATH = "/fapi/v1/premiumIndex"
OK = Reply.json({"symbol": "BTCUSDT", "markPrice": "97000.1"})
ROOMY = VenueLimits({"weight": Window(1_000_000, 60.0)})  # never binds unless a test wants it
SEED = 7


class FakeTime:
    """A clock and a sleep for the client under test.

    ``auto``: each sleep moves the clock forward at once (to at least call time + seconds).
    Manual: sleeps block until the test calls :meth:`advance` far enough.
    """

    def __init__(self, start: float = T0, *, auto: bool = True) -> None:
        self.now = start
        self.auto = auto
        self.sleeps: list[float] = []
        self.sleeping = 0
        self._tick = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        target = self.now + seconds
        if self.auto:
            self.now = max(self.now, target)
            await asyncio.sleep(0)
            return
        self.sleeping += 1
        try:
            while self.now < target:
                tick = self._tick
                await tick.wait()
        finally:
            self.sleeping -= 1

    def advance(self, seconds: float) -> None:
        self.now += seconds
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (real time, briefly) until ``predicate`` holds; fail the test if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def jitter_caps(n: int, base: float = 0.5, cap: float = 30.0) -> list[float]:
    return [min(cap, base * 2**i) for i in range(n)]


def seeded_jitter(n: int) -> list[float]:
    """The full-jitter sleeps a client seeded with SEED draws for its first ``n`` retries."""
    rng = random.Random(SEED)
    return [rng.uniform(0, c) for c in jitter_caps(n)]


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def server(fake: FakeTime, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHttpServer]:
    # httpx honours proxy variables even for 127.0.0.1 (offline-testing.md §1.1)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeHttpServer(clock=fake.clock) as srv:
        yield srv
    assert srv.errors == []


MakeClient = Callable[..., HttpClient]


@pytest.fixture
async def make_client(server: FakeHttpServer, fake: FakeTime) -> AsyncIterator[MakeClient]:
    clients: list[HttpClient] = []

    def make(limits: VenueLimits = ROOMY, **kwargs: Any) -> HttpClient:
        kwargs.setdefault("timeout_s", 2.0)
        kwargs.setdefault("rng", random.Random(SEED))
        client = HttpClient(
            "binance", server.url, limits, clock=fake.clock, sleep=fake.sleep, **kwargs
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def sample(shared_dir: Path, name: str) -> Any:
    return json.loads((shared_dir / "samples" / name).read_text(encoding="utf-8"))


def binance_mapper(status: int, body: Any) -> FeedError | None:
    if isinstance(body, dict) and body.get("code") == -1121:
        return UnknownSymbol("binance", str(body.get("msg")), -1121)
    return None


# timeouts and dropped connections


async def test_timeouts_are_retried_with_backoff_then_unavailable(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.always(PATH, Reply.json({}, delay_s=0.6))
    client = make_client(timeout_s=0.2, max_retries=2)
    with pytest.raises(FeedUnavailable, match="timed out"):
        await client.get_json(PATH)
    assert server.count(PATH) == 3  # the first try and two retries all reached the server
    assert fake.sleeps == pytest.approx(seeded_jitter(2))
    assert all(0 <= s <= c for s, c in zip(fake.sleeps, jitter_caps(2), strict=True))
    status = client.status()
    assert (status.state, status.consecutive_failures) == ("degraded", 3)
    assert status.reason is not None and "timed out" in status.reason


async def test_a_timeout_then_an_answer_succeeds(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.script(PATH, Reply.json({}, delay_s=0.6), OK)
    client = make_client(timeout_s=0.2)
    assert await client.get_json(PATH) == {"symbol": "BTCUSDT", "markPrice": "97000.1"}
    assert server.count(PATH) == 2
    assert len(fake.sleeps) == 1
    assert client.status().state == "ok"
    assert client.status().last_ok_ms == round(fake.now * 1000)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(Reply(close=True), id="closed-without-answer"),
        pytest.param(Reply.json({"data": "x" * 100}, truncate_at=10), id="body-cut-on-the-wire"),
    ],
)
async def test_a_dropped_connection_is_retried(
    broken: Reply, server: FakeHttpServer, make_client: MakeClient
) -> None:
    server.script(PATH, broken, broken, OK)
    client = make_client()
    assert await client.get_json(PATH) == {"symbol": "BTCUSDT", "markPrice": "97000.1"}
    assert server.count(PATH) == 3


async def test_connections_that_always_drop_end_unavailable(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.always(PATH, Reply(close=True))
    client = make_client(max_retries=3)
    with pytest.raises(FeedUnavailable, match="network error"):
        await client.get_json(PATH)
    assert server.count(PATH) == 4
    assert fake.sleeps == pytest.approx(seeded_jitter(3))


# 429


async def test_429_waits_exactly_retry_after_then_succeeds(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.script(PATH, Reply.json({"code": -1003}, status=429, headers={"Retry-After": "3"}), OK)
    client = make_client()
    assert await client.get_json(PATH) == {"symbol": "BTCUSDT", "markPrice": "97000.1"}
    assert fake.sleeps == [3.0]
    first, second = server.requests_to(PATH)
    assert second.at - first.at == pytest.approx(3.0)


async def test_429_makes_later_calls_wait_too(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.script(PATH, Reply(status=429, headers={"Retry-After": "7"}), OK)
    client = make_client(max_retries=0)
    with pytest.raises(RateLimited) as info:
        await client.get_json(PATH)
    assert info.value.retry_after_s == 7.0
    assert fake.sleeps == []
    assert await client.get_json(PATH) == {"symbol": "BTCUSDT", "markPrice": "97000.1"}
    assert fake.sleeps == [7.0]
    assert server.requests_to(PATH)[1].at == pytest.approx(T0 + 7.0)


async def test_429_without_retry_after_backs_off_doubling(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.script(PATH, *[Reply(status=429)] * 4, OK)
    client = make_client()
    assert await client.get_json(PATH) == {"symbol": "BTCUSDT", "markPrice": "97000.1"}
    assert fake.sleeps == [1.0, 2.0, 4.0, 8.0]
    # a success resets the doubling
    server.script(PATH, Reply(status=429), OK)
    await client.get_json(PATH)
    assert fake.sleeps[-1] == 1.0


async def test_429_retry_after_zero_still_pauses(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.script(PATH, Reply(status=429, headers={"Retry-After": "0"}), OK)
    await make_client().get_json(PATH)
    assert fake.sleeps == [0.5]  # backoff_base_s: never an immediate hammer


async def test_429_retry_after_in_the_body(
    shared_dir: Path, server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    body = sample(shared_dir, "sosovalue_v1_rate_limit_429__docs.json")
    server.script(PATH, Reply.json(body, status=429), OK)
    await make_client().get_json(PATH)
    assert fake.sleeps == [45.0]


async def test_429_longer_than_max_wait_fails_fast_and_holds_later_calls(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.script(PATH, Reply(status=429, headers={"Retry-After": "300"}))
    client = make_client(max_wait_s=120.0)
    with pytest.raises(RateLimited):
        await client.get_json(PATH)
    with pytest.raises(RateLimited, match="more than 120s"):
        await client.get_json(PATH)
    assert server.count(PATH) == 1
    assert fake.sleeps == []
    fake.now += 300
    server.script(PATH, OK)
    await client.get_json(PATH)
    assert server.count(PATH) == 2


# bans: 418, 403, 451


async def test_418_ban_opens_the_circuit_until_the_stamp(
    shared_dir: Path, server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    body = sample(shared_dir, "binance_error_418_ipban__test_shape.json")
    server.script(PATH, Reply.json(body, status=418))
    server.always(PATH, OK)
    client = make_client()
    with pytest.raises(Banned) as info:
        await client.get_json(PATH)
    assert info.value.until_ms == 1774784983833
    status = client.status()
    assert (status.state, status.open_until_ms) == ("open", 1774784983833)
    assert status.reason is not None and "418" in status.reason

    for _ in range(3):  # refused locally: nothing reaches the server
        with pytest.raises(CircuitOpen) as refused:
            await client.get_json(PATH)
        assert refused.value.until_ms == 1774784983833
    assert server.count(PATH) == 1
    assert fake.sleeps == []

    fake.now = 1774784983.9  # the ban has passed
    assert client.status().state == "degraded"  # half-open until the probe answers
    assert await client.get_json(PATH) == {"symbol": "BTCUSDT", "markPrice": "97000.1"}
    assert client.status().state == "ok"
    await client.get_json(PATH)
    assert server.count(PATH) == 3


async def test_418_takes_the_later_of_body_stamp_and_retry_after(
    shared_dir: Path, server: FakeHttpServer, make_client: MakeClient
) -> None:
    body = sample(shared_dir, "binance_error_418_ipban__test_shape.json")
    server.script(PATH, Reply.json(body, status=418, headers={"Retry-After": "600"}))
    with pytest.raises(Banned) as info:
        await make_client().get_json(PATH)
    assert info.value.until_ms == round((T0 + 600) * 1000)


@pytest.mark.parametrize(
    ("status", "headers", "body", "open_s", "reason"),
    [
        pytest.param(403, {}, b"<html>403 Forbidden</html>", 600.0, "forbidden", id="403"),
        pytest.param(403, {"Retry-After": "120"}, b"", 120.0, "forbidden", id="403-retry"),
        pytest.param(
            451,
            {},
            b'{"code":0,"msg":"Service unavailable from a restricted location"}',
            3600.0,
            "unavailable from this location",
            id="451",
        ),
        pytest.param(418, {}, b"", 600.0, "IP banned", id="418-no-stamp"),
    ],
)
async def test_ban_statuses_open_the_circuit(
    status: int,
    headers: dict[str, str],
    body: bytes,
    open_s: float,
    reason: str,
    server: FakeHttpServer,
    fake: FakeTime,
    make_client: MakeClient,
) -> None:
    server.script(PATH, Reply(status=status, headers=headers, body=body))
    client = make_client(ban_default_s=600.0)
    with pytest.raises(Banned, match=reason) as info:
        await client.get_json(PATH)
    until_ms = round((T0 + open_s) * 1000)
    assert info.value.until_ms == until_ms
    opened = client.status()
    assert (opened.state, opened.open_until_ms) == ("open", until_ms)
    assert opened.reason is not None and opened.reason.startswith(f"HTTP {status}: {reason}")
    fake.now = T0 + open_s - 1
    with pytest.raises(CircuitOpen):
        await client.get_json(PATH)
    assert server.count(PATH) == 1


async def test_half_open_lets_one_probe_through(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.script(PATH, Reply(status=403, headers={"Retry-After": "60"}))
    client = make_client()
    with pytest.raises(Banned):
        await client.get_json(PATH)
    fake.now += 60
    release = threading.Event()
    server.script(PATH, Reply.json({"probe": True}, gate=release))
    probe = asyncio.create_task(client.get_json(PATH))
    await asyncio.to_thread(server.wait_for_requests, 2, 5.0, PATH)
    with pytest.raises(CircuitOpen, match="probe"):  # a concurrent call waits for the verdict
        await client.get_json(PATH)
    assert server.count(PATH) == 2
    release.set()
    assert await probe == {"probe": True}
    server.always(PATH, OK)
    await asyncio.gather(*(client.get_json(PATH) for _ in range(3)))
    assert server.count(PATH) == 5
    assert client.status().state == "ok"


async def test_a_banned_probe_reopens_the_circuit(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    ban = Reply(status=403, headers={"Retry-After": "60"})
    server.script(PATH, ban, ban)
    client = make_client()
    with pytest.raises(Banned):
        await client.get_json(PATH)
    fake.now += 60
    with pytest.raises(Banned) as info:
        await client.get_json(PATH)
    assert info.value.until_ms == round((T0 + 120) * 1000)
    with pytest.raises(CircuitOpen):
        await client.get_json(PATH)
    assert server.count(PATH) == 2


async def test_no_retry_goes_out_once_a_ban_opened_the_circuit(
    server: FakeHttpServer, make_client: MakeClient
) -> None:
    """A call in flight when another call is banned does not retry into the ban."""
    release = threading.Event()
    server.script("/a", Reply(status=503, gate=release))
    server.script("/b", Reply(status=418, headers={"Retry-After": "120"}))
    client = make_client()
    in_flight = asyncio.create_task(client.get_json("/a"))
    await asyncio.to_thread(server.wait_for_requests, 1, 5.0, "/a")
    with pytest.raises(Banned):
        await client.get_json("/b")
    release.set()
    with pytest.raises(CircuitOpen):
        await in_flight
    assert server.count() == 2


# 5xx


async def test_5xx_is_retried_with_jittered_exponential_backoff(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.script(PATH, Reply(status=500), Reply(status=502), Reply(status=503), OK)
    client = make_client(max_retries=4)
    assert await client.get_json(PATH) == {"symbol": "BTCUSDT", "markPrice": "97000.1"}
    assert server.count(PATH) == 4
    assert fake.sleeps == pytest.approx(seeded_jitter(3))
    assert all(0 <= s <= c for s, c in zip(fake.sleeps, jitter_caps(3), strict=True))
    assert client.status().state == "ok"


@pytest.mark.parametrize("seed", range(5))
async def test_5xx_backoff_stays_within_bounds(
    seed: int, server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.always(PATH, Reply(status=503))
    client = make_client(
        max_retries=6, backoff_base_s=1.0, backoff_max_s=8.0, rng=random.Random(seed)
    )
    with pytest.raises(FeedUnavailable, match="HTTP 503"):
        await client.get_json(PATH)
    assert server.count(PATH) == 7
    caps = jitter_caps(6, base=1.0, cap=8.0)  # 1, 2, 4, 8, 8, 8
    assert all(0 <= s <= c for s, c in zip(fake.sleeps, caps, strict=True))
    status = client.status()
    assert (status.state, status.consecutive_failures) == ("degraded", 7)
    assert status.reason is not None and "HTTP 503" in status.reason


async def test_503_with_retry_after_waits_that_long(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.script(PATH, Reply(status=503, headers={"Retry-After": "5"}), OK)
    await make_client().get_json(PATH)
    assert fake.sleeps == [5.0]


async def test_408_is_retried(server: FakeHttpServer, make_client: MakeClient) -> None:
    server.script(PATH, Reply(status=408), OK)
    await make_client().get_json(PATH)
    assert server.count(PATH) == 2


# bodies: errors on 200, 4xx, junk


@pytest.mark.parametrize("name", ["okx_error_51001.json", "bybit_error_params__nautilus_mock.json"])
async def test_error_envelopes_on_200_are_returned_for_the_venue_layer(
    name: str, shared_dir: Path, server: FakeHttpServer, make_client: MakeClient
) -> None:
    body = sample(shared_dir, name)
    server.script(PATH, Reply.json(body))
    client = make_client()
    assert await client.get_json(PATH) == body
    assert client.status().state == "ok"


async def test_unknown_symbol_maps_through_the_error_mapper(
    shared_dir: Path, server: FakeHttpServer, make_client: MakeClient
) -> None:
    body = sample(shared_dir, "binance_error_invalid_symbol.json")
    server.script(PATH, Reply.json(body, status=400))
    client = make_client(error_mapper=binance_mapper)
    with pytest.raises(UnknownSymbol) as info:
        await client.get_json(PATH, {"symbol": "NOPEUSDT"})
    assert info.value.code == -1121
    assert server.count(PATH) == 1  # not retried
    assert server.requests[0].query == {"symbol": ["NOPEUSDT"]}
    assert client.status().state == "ok"  # the venue answered: it is healthy


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (400, b'{"code":-1121,"msg":"Invalid symbol."}', -1121, "Invalid symbol."),
        (400, b'{"code":-1130,"msg":"Data sent for parameter is not valid."}', -1130, "not valid"),
        (404, b'{"retCode":10017,"retMsg":"route not found"}', 10017, "route not found"),
        (400, b'{"code":400001,"message":"bad param"}', 400001, "bad param"),
        (404, b"<html>not found</html>", None, "no message"),
    ],
)
async def test_4xx_without_a_mapping_is_a_venue_error_with_its_code(
    status: int,
    body: bytes,
    code: int | None,
    message: str,
    server: FakeHttpServer,
    make_client: MakeClient,
) -> None:
    server.script(PATH, Reply(status=status, body=body))
    client = make_client(error_mapper=binance_mapper if code != -1121 else None)
    with pytest.raises(VenueError, match=message) as info:
        await client.get_json(PATH)
    assert type(info.value) is VenueError
    assert info.value.code == code
    assert server.count(PATH) == 1


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(body=b'{"code":"0","data":[["1700000000000","9'), id="truncated-json"),
        pytest.param(Reply(body=b"<html><body>maintenance</body></html>"), id="html"),
        pytest.param(Reply(body=b"\x00\xff\xfe garbage"), id="binary"),
        pytest.param(Reply(body=b""), id="empty"),
        pytest.param(
            Reply(body=b"not gzip at all", headers={"Content-Encoding": "gzip"}), id="bad-gzip"
        ),
    ],
)
async def test_junk_on_200_is_rejected_not_retried(
    reply: Reply, server: FakeHttpServer, make_client: MakeClient
) -> None:
    server.script(PATH, reply)
    client = make_client()
    with pytest.raises(JunkResponse):
        await client.get_json(PATH)
    assert server.count(PATH) == 1
    assert client.status().state == "degraded"


async def test_gzip_bodies_are_decoded(server: FakeHttpServer, make_client: MakeClient) -> None:
    server.script(
        PATH, Reply(body=gzip.compress(b'{"ok":1}'), headers={"Content-Encoding": "gzip"})
    )
    assert await make_client().get_json(PATH) == {"ok": 1}


# budgets


async def test_used_weight_header_near_the_limit_makes_the_next_request_wait(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    limits = VenueLimits({"weight": Window(100, 60.0)})  # safe share: 80
    server.script(PATH, Reply.json({}, headers={"X-MBX-USED-WEIGHT-1M": "78"}))
    server.always(PATH, Reply.json({}, headers={"X-MBX-USED-WEIGHT-1M": "5"}))
    client = make_client(limits)
    await client.get_json(PATH, costs={"weight": 1})
    assert client.status().budget["weight"]["used"] == 78.0
    fake.now += 10
    await client.get_json(PATH, costs={"weight": 5})
    assert fake.sleeps == [pytest.approx(50.0)]  # until the venue's figure leaves the window
    first, second = server.requests_to(PATH)
    assert second.at - first.at == pytest.approx(60.0)


@pytest.mark.parametrize("header", ["12", "garbled", "nan"])
async def test_used_weight_header_below_the_limit_or_garbled_costs_nothing(
    header: str, server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.always(PATH, Reply.json({}, headers={"X-MBX-USED-WEIGHT-1M": header}))
    client = make_client(VenueLimits({"weight": Window(100, 60.0)}))
    for _ in range(3):
        await client.get_json(PATH, costs={"weight": 5})
    assert fake.sleeps == []


async def test_concurrent_calls_share_the_budget(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    fake.auto = False  # the test moves the clock; sleepers wake only then
    server.always(PATH, OK)
    client = make_client(VenueLimits({"w": Window(10, 1.0)}, safety=0.5))  # 5 per second
    calls = [asyncio.create_task(client.get_json(PATH)) for _ in range(12)]

    for sent in (5, 10, 12):

        def settled(sent: int = sent) -> bool:
            done = sum(c.done() for c in calls)
            return server.count(PATH) == done == sent and fake.sleeping == 12 - sent

        await eventually(settled)
        assert server.count(PATH) == sent  # nobody overspent while others slept
        fake.advance(1.0)

    assert len(await asyncio.gather(*calls)) == 12
    arrivals = [round(r.at - T0, 6) for r in server.requests]
    assert arrivals == [0.0] * 5 + [1.0] * 5 + [2.0] * 2
    assert client.requests_sent == 12


async def test_a_budget_wait_beyond_max_wait_raises_rate_limited(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    server.always(PATH, OK)
    client = make_client(VenueLimits({"slow": Window(2, 300.0)}, safety=1.0), max_wait_s=120)
    await client.get_json(PATH)
    await client.get_json(PATH)
    with pytest.raises(RateLimited) as info:
        await client.get_json(PATH)
    assert info.value.retry_after_s == pytest.approx(300.0)
    assert server.count(PATH) == 2


async def test_unknown_cost_window_is_a_programming_error(make_client: MakeClient) -> None:
    with pytest.raises(ValueError, match="unknown budget window"):
        await make_client().get_json(PATH, costs={"wieght": 1})


# status


async def test_status_tracks_ok_degraded_open(
    server: FakeHttpServer, fake: FakeTime, make_client: MakeClient
) -> None:
    client = make_client()
    fresh = client.status()
    assert (fresh.venue, fresh.state, fresh.reason, fresh.open_until_ms) == (
        "binance",
        "ok",
        None,
        None,
    )
    assert (fresh.requests, fresh.last_ok_ms) == (0, None)
    assert set(fresh.budget) == {"weight"}

    server.script(PATH, Reply(status=500), Reply(status=403, headers={"Retry-After": "30"}))
    with pytest.raises(Banned):
        await client.get_json(PATH)
    opened = client.status()
    assert (opened.state, opened.open_until_ms) == ("open", round((fake.now + 30) * 1000))
    assert opened.reason == "HTTP 403: forbidden: IP ban or firewall"
    assert (opened.requests, opened.consecutive_failures) == (2, 2)

    fake.now += 31
    server.script(PATH, Reply(status=500), OK)
    await client.get_json(PATH)
    healed = client.status()
    assert (healed.state, healed.reason, healed.consecutive_failures) == ("ok", None, 0)
    assert healed.last_ok_ms == round(fake.now * 1000)
    assert healed.requests == 4


# the fake server itself


async def test_fake_server_stops_promptly_with_idle_and_delayed_connections() -> None:
    srv = FakeHttpServer().start()
    srv.script("/slow", Reply(delay_s=30.0))
    async with httpx.AsyncClient(base_url=srv.url, trust_env=False) as http:
        missing = await http.get("/nothing", params={"a": "1"})  # keep-alive stays open
        assert missing.status_code == 404
        slow = asyncio.create_task(http.get("/slow"))
        assert await asyncio.to_thread(srv.wait_for_requests, 2, 5.0)
        started = time.monotonic()
        await asyncio.to_thread(srv.stop)
        assert time.monotonic() - started < 2.0  # the 30 s delay was interrupted
        with pytest.raises(httpx.RemoteProtocolError):
            await slow
    first = srv.requests[0]
    assert (first.method, first.path, first.query, first.raw_query) == (
        "GET",
        "/nothing",
        {"a": ["1"]},
        "a=1",
    )
    assert first.headers["host"].startswith("127.0.0.1:")
    srv.stop()  # idempotent
    assert srv.errors == []
