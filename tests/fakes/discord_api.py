"""A fake Discord REST API and gateway on 127.0.0.1, for the real discord.py client (DESIGN §9).

::

    async with FakeDiscord(guilds=[guild(channels=(text_channel(),))]) as fake:
        configure_endpoints(DiscordSettings(api_base=fake.api_base, gateway_url=fake.gateway_url))
        ...  # start the client
        await fake.dispatch("INTERACTION_CREATE", slash("liqmap", {"symbol": "BTC"}, user_id=1))
        followup = await fake.wait_for("POST /webhooks/{app}/{token}")
        assert followup.files[0].filename == "liqmap.png"

REST under ``/api/v10`` (the routes are listed in :data:`ROUTES`): the login calls, command
sync (``PUT .../commands``, the last upload kept in ``commands``), interaction callbacks (200
with an InteractionCallback body, as discord.py requires), follow-ups and ``@original``,
channel messages, channel and user lookups, DM creation. Every request is recorded
(:class:`Recorded`: route, JSON body or multipart ``payload_json``, files, arrival time on
``clock``, the answer's status); ``await wait_for(route)`` waits for one.
``fail_next(route, status)`` makes the next request to a route fail (a 429 gets ``Via`` and
``retry_after``, without which discord.py reads a Cloudflare ban). Responses carry
``Content-Type: application/json`` exactly: discord.py parses nothing else.

Fault injection beyond ``fail_next``: ``set_faults(plan)`` asks ``plan(request)`` about every
REST request (after any ``fail_next``); a :class:`Fault` answers it with its status (a 429
with its ``retry_after`` and ``global`` flag). The fault is answered *before* the message is
accepted, unless ``Fault(..., accepted=True)``: then the message is created first (a 5xx from
a gateway that timed out on a backend that took it), so a client that retries duplicates it.
``Recorded.accepted`` says whether a message-creating request left a message.

The gateway at ``/gateway`` speaks JSON text frames: HELLO, heartbeat ACKs, IDENTIFY -> READY
(the shard the client asked for) and a GUILD_CREATE per server of that shard, RESUME ->
RESUMED. ``dispatch(event, data)`` sends an event to the shard of its ``guild_id`` (shard 0
for DMs).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.fakes import discord_payloads as p

Json = dict[str, Any]
EPHEMERAL = 64

ROUTES = (
    "GET /users/@me",
    "GET /oauth2/applications/@me",
    "GET /gateway/bot",
    "PUT /applications/{app}/commands",
    "POST /interactions/{id}/{token}/callback",
    "POST /webhooks/{app}/{token}",
    "GET /webhooks/{app}/{token}/messages/@original",
    "PATCH /webhooks/{app}/{token}/messages/@original",
    "DELETE /webhooks/{app}/{token}/messages/@original",
    "POST /users/@me/channels",
    "GET /users/{id}",
    "POST /channels/{id}/messages",
    "GET /channels/{id}",
)
MESSAGE_ROUTES = ("POST /channels/{id}/messages", "POST /webhooks/{app}/{token}")
_PARTS = {"{app}": r"(?P<app>\d+)", "{id}": r"(?P<id>\d+)", "{token}": r"(?P<token>[^/]+)"}


def _pattern(route: str) -> tuple[str, re.Pattern[str]]:
    method, path = route.split()
    rx = re.escape(path)
    for part, sub in _PARTS.items():
        rx = rx.replace(re.escape(part), sub)
    return method, re.compile(rx + "$")


_COMPILED = {route: _pattern(route) for route in ROUTES}


def _match(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    for route, (want, rx) in _COMPILED.items():
        m = rx.match(path)
        if m and want == method:
            return route, m.groupdict()
    return None


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Recorded:
    """One request: ``route`` is its :data:`ROUTES` key, ``params`` the ids in its path."""

    route: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any  # the JSON body, or a multipart request's payload_json
    files: list[Attachment] = field(default_factory=list)
    authorization: str | None = None
    status: int = 200
    at: float = 0.0  # arrival, on the fake's clock
    accepted: bool = False  # a message-creating request that left a message
    retry_after: float | None = None  # of a 429 answer
    global_limit: bool = False  # a 429 answer flagged global

    @property
    def embeds(self) -> list[Json]:
        return list((self.body or {}).get("embeds") or [])

    @property
    def flags(self) -> int:
        return int((self.body or {}).get("flags") or 0)


@dataclass
class _Shard:
    ws: web.WebSocketResponse
    shard: tuple[int, int] = (0, 1)
    seq: int = 0

    async def send(self, event: str, data: Any) -> None:
        self.seq += 1
        await self.ws.send_str(json.dumps({"op": 0, "t": event, "s": self.seq, "d": data}))


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    head = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(status=status, body=json.dumps(data).encode(), headers=head)


@dataclass(frozen=True)
class Fault:
    """A fault plan's answer to one request (see the module docstring)."""

    status: int
    retry_after: float = 60.0  # a 429's
    global_limit: bool = False  # a 429's "global" flag: discord.py then holds every request
    accepted: bool = False  # create the message first, then answer the error
    body: Json | None = None


FaultPlan = Callable[["Recorded"], Fault | None]


def _failure(fault: Fault) -> web.Response:
    """An error response as Discord sends it: a 429 carries ``Via`` (else discord.py reads a
    Cloudflare ban), ``retry_after`` and ``global`` in the body and ``Retry-After``."""
    body, headers = fault.body, {}
    if fault.status == 429:
        body = dict(body or {"message": "You are being rate limited."})
        body.setdefault("retry_after", fault.retry_after)
        body.setdefault("global", fault.global_limit)
        headers = {"Via": "1.1 google", "Retry-After": str(fault.retry_after)}
        if fault.global_limit:
            headers["X-RateLimit-Global"] = "true"
            headers["X-RateLimit-Scope"] = "global"
    return _json(body or {"message": f"fake {fault.status}", "code": 0}, fault.status, headers)


class FakeDiscord:
    """See the module docstring. ``guilds`` are GUILD_CREATE payloads sent after READY;
    ``channels`` and ``users`` (id -> payload) answer the lookups (the guilds' channels are
    added)."""

    def __init__(
        self,
        guilds: Sequence[Json] = (),
        users: Sequence[Json] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.guilds = list(guilds)
        self.channels: dict[int, Json] = {
            int(c["id"]): {**c, "guild_id": g["id"]} for g in self.guilds for c in g["channels"]
        }
        self.users: dict[int, Json] = {int(u["id"]): u for u in users}
        self.requests: list[Recorded] = []
        self.identifies: list[Json] = []
        self.commands: list[Json] = []  # the last PUT .../commands
        self.shards: list[_Shard] = []
        self._failures: dict[str, list[Fault]] = {}
        self._fault_plan: FaultPlan | None = None
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base = ""

    @property
    def api_base(self) -> str:
        return f"{self.base}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"{self.base.replace('http', 'ws', 1)}/gateway"

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        app.router.add_get("/gateway", self._gateway)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for shard in self.shards:
            await shard.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- test controls --------------------------------------------------------------------

    def fail_next(
        self, route: str, status: int, body: Json | None = None, *, retry_after: float = 60.0
    ) -> None:
        """The next request to ``route`` gets ``status`` (a 429: a rate limit discord.py
        honours, ``retry_after`` seconds; over 30 s it raises RateLimited at once)."""
        if route not in ROUTES:
            raise KeyError(f"unknown route {route!r}; see ROUTES")
        fault = Fault(status, retry_after, body=body)
        self._failures.setdefault(route, []).append(fault)

    def set_faults(self, plan: FaultPlan | None) -> None:
        """Ask ``plan(request)`` about every REST request from now on (None: stop)."""
        self._fault_plan = plan

    @property
    def delivered(self) -> list[Recorded]:
        """The message-creating requests that left a message, in arrival order (duplicates
        included)."""
        return sorted((r for r in self.requests if r.accepted), key=lambda r: r.at)

    def recorded(
        self, route: str, where: Callable[[Recorded], bool] | None = None
    ) -> list[Recorded]:
        return [r for r in self.requests if r.route == route and (where is None or where(r))]

    async def wait_for(
        self,
        route: str,
        *,
        n: int = 1,
        where: Callable[[Recorded], bool] | None = None,
        timeout_s: float = 10.0,
    ) -> Recorded:
        """The ``n``-th request to ``route`` (matching ``where``), once it has arrived."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: len(self.recorded(route, where)) >= n)
        return self.recorded(route, where)[n - 1]

    async def wait_ready(self, shards: int = 1, timeout_s: float = 10.0) -> None:
        """Until ``shards`` gateway sessions have been sent READY."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: len(self.identifies) >= shards)

    async def dispatch(self, event: str, data: Json) -> None:
        """Send a gateway event to the shard that owns ``data['guild_id']`` (shard 0 without);
        of several sessions of that shard, the newest."""
        guild_id = int(data.get("guild_id") or 0)
        for shard in reversed(self.shards):
            shard_id, count = shard.shard
            if (guild_id >> 22) % count == shard_id and not shard.ws.closed:
                await shard.send(event, data)
                return
        raise RuntimeError(f"no gateway session for {event} (guild {guild_id})")

    async def _record(self, rec: Recorded) -> None:
        async with self._changed:
            self.requests.append(rec)
            self._changed.notify_all()

    # -- REST -----------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        arrived = self.clock()
        path = "/" + request.match_info["tail"]
        found = _match(request.method, path)
        if found is None:
            return _json({"message": f"fake: no route {request.method} {path}", "code": 0}, 404)
        key, params = found
        body, files = await _read_body(request)
        rec = Recorded(
            key,
            path,
            params,
            dict(request.query),
            body,
            files,
            request.headers.get("Authorization"),
            at=arrived,
        )
        failures = self._failures.get(key)
        fault = failures.pop(0) if failures else None
        if fault is None and self._fault_plan is not None:
            fault = self._fault_plan(rec)
        if fault is None or fault.accepted:
            response = await self._answer(rec)
            rec.accepted = key in MESSAGE_ROUTES and response.status < 300
        if fault is not None:
            response = _failure(fault)
            if fault.status == 429:
                rec.retry_after, rec.global_limit = fault.retry_after, fault.global_limit
        rec.status = response.status
        await self._record(rec)
        return response

    async def _answer(self, rec: Recorded) -> web.Response:
        route, params, body = rec.route, rec.params, rec.body
        if route == "GET /users/@me":
            return _json(p.BOT_USER)
        if route == "GET /oauth2/applications/@me":
            return _json(p.application())
        if route == "GET /gateway/bot":
            limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
            return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})
        if route == "PUT /applications/{app}/commands":
            self.commands = [
                {**c, "id": str(p.snowflake()), "application_id": params["app"], "version": "1"}
                for c in body
            ]
            return _json(self.commands)
        if route == "POST /interactions/{id}/{token}/callback":
            return _json(self._callback(params["id"], body))
        if route in ("POST /webhooks/{app}/{token}", "POST /channels/{id}/messages"):
            channel = int(params.get("id", p.CHANNEL_ID))
            webhook = int(params["app"]) if "app" in params else None
            author = p.user(p.APP_ID, "liqbot", bot=True) if webhook else p.BOT_USER
            return _json(p.message(channel, author, body or {}, _attachments(rec), webhook=webhook))
        if route.endswith("@original"):
            if route.startswith("DELETE"):
                return web.Response(status=204)
            return _json(p.message(p.CHANNEL_ID, p.BOT_USER, body or {}, [], webhook=p.APP_ID))
        if route == "POST /users/@me/channels":
            recipient = self.users.get(int(body["recipient_id"]))
            if recipient is None:
                return _json({"message": "Unknown User", "code": 10013}, 404)
            dm = p.dm_channel(p.snowflake(), recipient)
            self.channels[int(dm["id"])] = dm
            return _json(dm)
        table: dict[int, Json] = self.users if route == "GET /users/{id}" else self.channels
        found = table.get(int(params["id"]))
        if found is None:
            return _json({"message": "Unknown", "code": 10003}, 404)
        return _json(found)

    def _callback(self, interaction_id: str, body: Json) -> Json:
        kind = int(body["type"])
        flags = int((body.get("data") or {}).get("flags") or 0)
        resource: Json = {"type": kind}
        message_id = None
        if kind in (4, 5):
            msg = p.message(p.CHANNEL_ID, p.BOT_USER, body.get("data") or {}, [], webhook=p.APP_ID)
            resource["message"] = msg
            message_id = msg["id"]
        return {
            "interaction": {
                "id": interaction_id,
                "type": 2,
                "response_message_id": message_id,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            },
            "resource": resource,
        }

    # -- gateway --------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        shard = _Shard(ws)
        self.shards.append(shard)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                continue
            msg = json.loads(frame.data)
            if msg["op"] == 1:
                await ws.send_str(json.dumps({"op": 11}))
            elif msg["op"] == 2:
                await self._identify(shard, msg["d"])
            elif msg["op"] == 6:
                await shard.send("RESUMED", {})
        return ws

    async def _identify(self, shard: _Shard, data: Json) -> None:
        shard_id, count = data.get("shard") or (0, 1)
        shard.shard = (shard_id, count)
        mine = [g for g in self.guilds if (int(g["id"]) >> 22) % count == shard_id]
        ready = {
            "v": 10,
            "user": p.BOT_USER,
            "guilds": [{"id": g["id"], "unavailable": True} for g in mine],
            "session_id": f"sess-{shard_id}",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(p.APP_ID), "flags": 0},
            "shard": [shard_id, count],
        }
        await shard.send("READY", ready)
        for g in mine:
            await shard.send("GUILD_CREATE", g)
        async with self._changed:
            self.identifies.append(data)
            self._changed.notify_all()


async def _read_body(request: web.Request) -> tuple[Any, list[Attachment]]:
    """The JSON body, or a multipart request's ``payload_json`` and its files."""
    if not request.can_read_body:
        return None, []
    if not request.content_type.startswith("multipart/"):
        return await request.json(), []
    body: Any = None
    files: list[Attachment] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "payload_json":
            body = json.loads(await part.text())
        else:
            ctype = part.headers.get("Content-Type", "")
            files.append(Attachment(part.filename or "", ctype, bytes(await part.read())))
    return body, files


def _attachments(rec: Recorded) -> list[Json]:
    return [
        {
            "id": str(p.snowflake()),
            "filename": f.filename,
            "size": len(f.data),
            "url": f"https://cdn.invalid/{f.filename}",
            "proxy_url": f"https://cdn.invalid/{f.filename}",
        }
        for f in rec.files
    ]
