"""HttpClient.get_text, post_json and secret_headers against a real local HTTP server.

The same resilience as get_json (retries, 429 waits, bans) with text or POST, and API keys
masked in every error message the client builds or that is raised inside ``redacting()``.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from core.feeds.errors import Banned, FeedError, FeedUnavailable, JunkResponse, VenueError
from core.feeds.http import HttpClient
from core.feeds.limits import VenueLimits, Window
from tests.fakes.http_server import FakeHttpServer, Reply
from tests.fakes.timing import ManualClock

T0 = 1_790_000_000.0
KEY = "sk-live-0123456789abcdef"
ROOMY = VenueLimits({"default": Window(1_000_000, 60.0)})


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHttpServer]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeHttpServer() as srv:
        yield srv
    assert srv.errors == []


MakeClient = Callable[..., HttpClient]


@pytest.fixture
async def make_client(server: FakeHttpServer) -> AsyncIterator[MakeClient]:
    clients: list[HttpClient] = []
    clock = ManualClock(T0)

    def make(**kwargs: Any) -> HttpClient:
        kwargs.setdefault("rng", random.Random(7))
        client = HttpClient("venue", server.url, ROOMY, clock=clock, sleep=clock.sleep, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


# --- get_text -------------------------------------------------------------------------------------


async def test_get_text_returns_the_page_unparsed(
    server: FakeHttpServer, make_client: MakeClient
) -> None:
    page = "<html><table class='etf'><tr><td>11 Jan 2024</td></tr></table> £ €</html>"
    server.script(
        "/page",
        Reply.text(page, headers={"Content-Type": "text/html; charset=utf-8"}),
        Reply.text('{"looks": "like json"}'),
    )
    client = make_client()
    assert await client.get_text("/page", {"q": "1"}) == page
    assert await client.get_text("/page") == '{"looks": "like json"}'  # text, not a dict
    assert server.requests[0].query == {"q": ["1"]} and server.requests[0].method == "GET"


async def test_get_text_has_the_same_resilience(
    server: FakeHttpServer, make_client: MakeClient
) -> None:
    server.script(
        "/page",
        Reply(status=503),
        Reply.text("slow down", status=429, headers={"Retry-After": "7"}),
        Reply.text("<html>ok</html>"),
    )
    client = make_client()
    assert await client.get_text("/page") == "<html>ok</html>"
    assert server.count("/page") == 3
    assert client.status().state == "ok"


async def test_get_text_errors(server: FakeHttpServer, make_client: MakeClient) -> None:
    server.script("/empty", Reply.text("  \n"))
    server.script("/gone", Reply.json({"code": 42, "msg": "no such page"}, status=404))
    server.script("/banned", Reply.text("<html>Just a moment...</html>", status=403))
    client = make_client()
    with pytest.raises(JunkResponse, match="/empty answered with an empty page"):
        await client.get_text("/empty")
    with pytest.raises(VenueError, match="HTTP 404: no such page") as info:
        await client.get_text("/gone")
    assert info.value.code == 42
    with pytest.raises(Banned):
        await client.get_text("/banned")


# --- post_json ------------------------------------------------------------------------------------


async def test_post_json_sends_the_body_and_parses_the_answer(
    server: FakeHttpServer, make_client: MakeClient
) -> None:
    server.script("/query", Reply(status=502), Reply.json({"code": 0, "data": {"list": [1, 2]}}))
    client = make_client()
    body = {"type": "us-btc-spot", "page": 1}
    assert await client.post_json("/query", body, costs={"default": 1}) == {
        "code": 0,
        "data": {"list": [1, 2]},
    }
    assert [r.method for r in server.requests] == ["POST", "POST"]  # retried as a GET would be
    assert json.loads(server.requests[1].body) == body
    assert server.requests[1].headers["content-type"] == "application/json"


async def test_post_json_junk_is_rejected(server: FakeHttpServer, make_client: MakeClient) -> None:
    server.script("/query", Reply.text("<html>"))
    with pytest.raises(JunkResponse, match="invalid JSON"):
        await make_client().post_json("/query", {})


# --- secret headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "error", "fragment"),
    [
        (Reply.json({"code": 401, "msg": f"bad key {KEY}"}, status=401), VenueError, "bad key ***"),
        (Reply.text(f"<html>{KEY}</html>"), JunkResponse, "invalid JSON: '<html>***</html>'"),
    ],
)
async def test_secret_header_values_are_masked_in_errors(
    server: FakeHttpServer,
    make_client: MakeClient,
    reply: Reply,
    error: type[FeedError],
    fragment: str,
) -> None:
    server.script("/data", reply)
    client = make_client(headers={"X-Api-Key": KEY}, secret_headers=("x-api-key",))
    with pytest.raises(error) as info:
        await client.get_json("/data")
    assert fragment in str(info.value)
    assert KEY not in str(info.value) and KEY not in repr(info.value.args)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert server.requests[0].headers["x-api-key"] == KEY  # the key itself still goes out


async def test_secret_masked_in_status_and_through_the_error_mapper(
    server: FakeHttpServer, make_client: MakeClient
) -> None:
    def mapper(status: int, body: Any) -> FeedError | None:
        return FeedUnavailable("venue", f"mapped: {body}") if status == 400 else None

    server.script("/data", Reply.json({"echo": KEY}, status=400))
    client = make_client(
        headers={"X-Api-Key": KEY},
        secret_headers=("X-API-KEY",),
        error_mapper=mapper,
        max_retries=0,
    )
    with pytest.raises(FeedUnavailable) as info:
        await client.get_json("/data")
    assert "mapped: {'echo': '***'}" in str(info.value)
    reason = client.status().reason
    assert reason is not None and "***" in reason and KEY not in reason


async def test_redacting_masks_errors_raised_inside(make_client: MakeClient) -> None:
    client = make_client(headers={"X-Api-Key": KEY}, secret_headers=("X-Api-Key",))
    assert client.redact(f"a {KEY} b {KEY}") == "a *** b ***"
    with pytest.raises(JunkResponse) as info, client.redacting():
        raise JunkResponse("venue", f"key {KEY} expired")
    assert str(info.value) == "venue: key *** expired"
    with pytest.raises(ValueError, match="untouched"), client.redacting():
        raise ValueError("untouched")
    plain = make_client()  # no secrets: nothing to mask
    assert plain.redact(f"x {KEY}") == f"x {KEY}"
