"""A fake Telegram Bot API server: aiohttp on 127.0.0.1, real sockets, for the real PTB client.

Point python-telegram-bot at it with ``base_url(fake.base_url)`` and
``base_file_url(fake.base_file_url)``. It answers like Telegram does where the client can tell:
the real HTTP status with ``{"ok": false, "error_code", "description", "parameters"}`` on
errors (PTB maps the status, so 403 -> Forbidden, 400 + migrate_to_chat_id -> ChatMigrated,
429 + retry_after -> RetryAfter), valid Message objects, real long polling on getUpdates, and
the checks that catch adapter bugs: HTML that Telegram would not parse, texts over 4096 and
captions over 1024 characters (after entity parsing) are 400s.

API::

    async with FakeTelegram() as fake:          # or start() / stop()
        fake.base_url, fake.base_file_url, fake.token, fake.bot_user
        fake.inject_command(-100, "/liqmap btc", user_id=7, chat_type="supergroup")
        fake.inject_command(-100, "/subscribe", chat_type="supergroup", sender_chat_id=-100)
        update = fake.command_update(42, "/help")  # not queued: to POST to a webhook
        fake.inject_channel_post(-200, "/subscribe"); fake.inject_callback(42, "/alerts")
        fake.inject_my_chat_member(-100, "kicked", old_status="member", chat_type="group")
        fake.set_admins(-100, 7)                 # getChatMember: 7 is an administrator there
        fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
        calls = await fake.wait_for("sendMessage", n=2, timeout=5)   # -> list[Call]
        fake.calls, fake.calls_to("sendPhoto")
        fake.enforce_rates(global_per_s=30, per_chat_per_s=1, per_group_per_min=20)
        fake.rejected_429                        # sends refused by the rate enforcer
        fake.set_faults(plan)                    # plan(call) -> Fault | None, for every call
        fake.exchanges, fake.delivered           # every answer; the messages a chat received
        fake.chats[-100] = {"id": -100, "type": "supergroup", "title": "t"}  # getChat, limits

Rate enforcement (off until ``enforce_rates``) counts sendMessage/sendPhoto in sliding windows:
``global_per_s`` per 1.0 s overall, ``per_chat_per_s`` per 1.0 s per chat, and
``per_group_per_min`` per 60 s per group or supergroup; a send over any of them is a 429 with
``retry_after`` (whole seconds, at least 1, until the window frees) and is not delivered.

Fault injection beyond ``fail_next``: ``set_faults(plan)`` asks ``plan(call)`` about every call
(after any ``fail_next`` queued for it); a :class:`Fault` answers it with that error. By
default the fault is raised *before* the request is accepted (nothing is delivered, as for a
front end refusing it); ``Fault(..., accepted=True)`` first accepts the message (it counts in
``delivered``) and then answers the error, as a 5xx from a gateway that timed out on a backend
that did take it: a client that retries then duplicates it. Every answer is kept in
``exchanges`` (:class:`Exchange`: the call, its status, the error parameters, whether the
message was delivered), in the order the answers were sent.

``clock`` (default ``time.monotonic``) stamps calls and drives the rate enforcer, so a test can
share a manual clock with the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import BodyPartReader, web

from tests.fakes import telegram_updates as tu

Json = dict[str, Any]
SENDS = ("sendmessage", "sendphoto")
TOKEN = "123456:TEST-token-for-the-fake-server"  # the fake's default bot token


@dataclass(frozen=True)
class FilePart:
    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Call:
    """One request: lower-case ``method``, decoded ``params`` (JSON fields parsed), files."""

    method: str
    params: Json
    at: float
    files: dict[str, FilePart] = field(default_factory=dict)

    @property
    def chat_id(self) -> str | None:
        value = self.params.get("chat_id")
        return None if value is None else str(value)


@dataclass(frozen=True)
class Fault:
    """A fault plan's answer to one call (see the module docstring): ``status`` with
    ``description`` and error ``parameters`` (e.g. ``{"retry_after": 3}``); ``accepted``:
    deliver the message first, then answer the error."""

    status: int
    description: str
    parameters: Json = field(default_factory=dict)
    accepted: bool = False


@dataclass(frozen=True)
class Exchange:
    """One answered call: its HTTP ``status``, the error ``parameters`` (empty on success), and
    whether the fake ``delivered`` its message (a send it accepted, whatever the answer)."""

    call: Call
    status: int
    parameters: Json
    delivered: bool

    @property
    def retry_after(self) -> float | None:
        value = self.parameters.get("retry_after")
        return None if value is None else float(value)


FaultPlan = Callable[[Call], Fault | None]


class ApiError(Exception):
    def __init__(self, status: int, description: str, **parameters: Any) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters


class FakeTelegram:
    """The fake server; see the module docstring."""

    def __init__(
        self,
        token: str = TOKEN,
        *,
        username: str = "liqbot_test",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.clock = clock
        self.bot_user: Json = {
            "id": int(token.split(":")[0]),
            "is_bot": True,
            "first_name": "liqbot",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.calls: list[Call] = []
        self.chats: dict[int, Json] = {}
        self.admins: dict[int, set[int]] = defaultdict(set)
        self.rejected_429 = 0
        self.exchanges: list[Exchange] = []
        self.photos: dict[str, bytes] = {}  # file_id -> the uploaded bytes
        self._fault_plan: FaultPlan | None = None
        self._updates: list[Json] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._failures: dict[str, deque[ApiError]] = defaultdict(deque)
        self._changed = asyncio.Condition()
        self._updates_ready = asyncio.Event()
        self._rates: tuple[int, int, int] | None = None
        self._sent_at: deque[float] = deque()
        self._chat_sent_at: dict[str, deque[float]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/bot{token}/{method}", self._handle)
        self.add_routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def add_routes(self, app: web.Application) -> None:
        """More routes before the server starts (tests/fakes/telegram_serve.py's controls)."""

    async def stop(self) -> None:
        self._updates_ready.set()  # a pending long poll answers now instead of at its timeout
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- test controls -----------------------------------------------------------------------

    def set_admins(self, chat_id: int, *user_ids: int) -> None:
        self.admins[chat_id] = set(user_ids)

    def fail_next(
        self, method: str, status: int, description: str, *, times: int = 1, **parameters: Any
    ) -> None:
        """The next ``times`` calls of ``method`` fail with this status and parameters."""
        for _ in range(times):
            self._failures[method.lower()].append(ApiError(status, description, **parameters))

    def set_faults(self, plan: FaultPlan | None) -> None:
        """Ask ``plan(call)`` about every call from now on (None: stop); see the module doc."""
        self._fault_plan = plan

    @property
    def delivered(self) -> list[Call]:
        """The sends a chat received, in the order they were answered (duplicates included)."""
        return [e.call for e in self.exchanges if e.delivered]

    def enforce_rates(
        self, global_per_s: int = 30, per_chat_per_s: int = 1, per_group_per_min: int = 20
    ) -> None:
        """Refuse sends beyond Telegram's limits with a 429 (counted in ``rejected_429``)."""
        self._rates = (global_per_s, per_chat_per_s, per_group_per_min)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method.lower()]

    async def wait_for(self, method: str, n: int = 1, timeout: float = 5.0) -> list[Call]:
        """The first ``n`` calls of ``method`` once they have all arrived."""
        method = method.lower()
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(self.calls_to(method)) >= n)
        except TimeoutError:
            seen = [c.method for c in self.calls if c.method != "getupdates"]
            raise TimeoutError(f"{n} x {method} not called within {timeout}s; saw {seen}") from None
        return self.calls_to(method)[:n]

    # --- updates -----------------------------------------------------------------------------

    def _chat(self, chat_id: int, chat_type: str, title: str | None = None) -> Json:
        self.chats[chat_id] = tu.chat(chat_id, chat_type, title)
        return self.chats[chat_id]

    def inject(self, kind: str, obj: Json) -> int:
        """Queue an update of ``kind`` (message, channel_post, ...); returns its update_id."""
        return self._queue({"update_id": next(self._update_ids), kind: obj})

    def _queue(self, update: Json) -> int:
        self._updates.append(update)
        self._updates_ready.set()
        return int(update["update_id"])

    def command_update(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int = 1001,
        chat_type: str = "private",
        sender_chat_id: int | None = None,
        title: str | None = None,
    ) -> Json:
        """A message update; ``sender_chat_id == chat_id`` is an anonymous group admin."""
        where = self._chat(chat_id, chat_type, title)
        sender = None
        if sender_chat_id is not None:
            sender = where if sender_chat_id == chat_id else tu.chat(sender_chat_id, "channel")
        who = tu.ANONYMOUS_ADMIN_BOT if sender is where else tu.user(user_id)
        msg = tu.message(next(self._message_ids), where, text, from_user=who, sender_chat=sender)
        return {"update_id": next(self._update_ids), "message": msg}

    def inject_command(self, chat_id: int, text: str, **kw: Any) -> int:
        return self._queue(self.command_update(chat_id, text, **kw))

    def inject_channel_post(self, chat_id: int, text: str, title: str | None = None) -> int:
        where = self._chat(chat_id, "channel", title)
        return self.inject(
            "channel_post", tu.message(next(self._message_ids), where, text, sender_chat=where)
        )

    def inject_callback(
        self, chat_id: int, data: str, *, user_id: int = 1001, chat_type: str = "private"
    ) -> int:
        where = self._chat(chat_id, chat_type)
        shown = tu.message(next(self._message_ids), where, "buttons", from_user=self.bot_user)
        query = tu.callback_query(f"cb{next(self._update_ids)}", tu.user(user_id), shown, data)
        return self.inject("callback_query", query)

    def inject_my_chat_member(
        self,
        chat_id: int,
        new_status: str,
        *,
        old_status: str = "member",
        chat_type: str = "group",
        user_id: int = 1001,
    ) -> int:
        where = self._chat(chat_id, chat_type)
        change = tu.my_chat_member(where, tu.user(user_id), self.bot_user, old_status, new_status)
        return self.inject("my_chat_member", change)

    # --- the API -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(ApiError(401, "Unauthorized"))
        method = request.match_info["method"].lower()
        arrived = self.clock()  # a request counts from its arrival, not the end of its upload
        params, files = await _read_params(request)
        call = Call(method, params, arrived, files)
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        delivered = False
        try:
            failures = self._failures[method]
            if failures:
                raise failures.popleft()
            fault = self._fault_plan(call) if self._fault_plan is not None else None
            if fault is not None and not fault.accepted:
                raise ApiError(fault.status, fault.description, **fault.parameters)
            if method == "getupdates":
                return self._exchange(call, _ok(await self._get_updates(params)), delivered)
            result = self._answer(method, params, files, arrived)
            delivered = method in SENDS
            if fault is not None:  # accepted, and yet the client hears of an error
                raise ApiError(fault.status, fault.description, **fault.parameters)
            return self._exchange(call, _ok(result), delivered)
        except ApiError as exc:
            return self._exchange(call, _error(exc), delivered, exc.parameters)

    def _exchange(
        self, call: Call, answer: web.Response, delivered: bool, parameters: Json | None = None
    ) -> web.Response:
        self.exchanges.append(Exchange(call, answer.status, dict(parameters or {}), delivered))
        return answer

    async def _get_updates(self, params: Json) -> list[Json]:
        offset = int(params.get("offset") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        timeout = float(params.get("timeout") or 0)
        if not self._updates and timeout > 0:
            self._updates_ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._updates_ready.wait(), timeout)
        limit = int(params.get("limit") or 100)
        return self._updates[:limit]

    def _answer(self, method: str, params: Json, files: dict[str, FilePart], at: float) -> Any:
        if method == "getme":
            return self.bot_user
        if method in ("setmycommands", "deletewebhook", "setwebhook", "answercallbackquery"):
            return True
        if method == "getchat":
            found = self.chats.get(int(params["chat_id"]))
            if found is None:
                raise ApiError(400, "Bad Request: chat not found")
            return {**found, "accent_color_id": 0, "max_reaction_count": 11}
        if method == "getchatmember":
            chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
            status = "administrator" if user_id in self.admins.get(chat_id, ()) else "member"
            return tu.chat_member(tu.user(user_id), status)
        if method in SENDS:
            return self._send(method, params, files, at)
        if method == "editmessagetext":
            _check_text(params.get("text", ""), params.get("parse_mode"), 4096, "message")
            return self._message(params, {"text": params.get("text", "")})
        raise ApiError(404, "Not Found")

    def _send(self, method: str, params: Json, files: dict[str, FilePart], at: float) -> Json:
        if method == "sendphoto":
            if "photo" in files:  # an upload: Telegram gives it an id to send it again by
                file_id = f"photo-{len(self.photos) + 1}"
                self.photos[file_id] = files["photo"].data
            elif str(params.get("photo")) in self.photos:
                file_id = str(params["photo"])
            else:
                raise ApiError(400, "Bad Request: there is no photo in the request")
            caption = params.get("caption", "")
            _check_text(caption, params.get("parse_mode"), 1024, "message caption")
            sizes = [(file_id + "-small", 320, 240), (file_id, 800, 600)]
            body: Json = {
                "photo": [
                    {"file_id": fid, "file_unique_id": "u" + fid, "width": w, "height": h}
                    for fid, w, h in sizes
                ],
                "caption": caption,
            }
        else:
            text = params.get("text", "")
            if not text.strip():
                raise ApiError(400, "Bad Request: message text is empty")
            _check_text(text, params.get("parse_mode"), 4096, "message")
            body = {"text": text}
        self._check_rate(str(params["chat_id"]), at)
        return self._message(params, body)

    def _check_rate(self, chat_key: str, now: float) -> None:
        if self._rates is None:
            return
        global_n, chat_n, group_n = self._rates
        chat_log = self._chat_sent_at[chat_key]
        is_group = self.chats.get(int(chat_key), {}).get("type") in ("group", "supergroup")
        checks = [(self._sent_at, global_n, 1.0), (chat_log, chat_n, 1.0)]
        if is_group:
            checks.append((chat_log, group_n, 60.0))
        for log, limit, window in checks:
            recent = [t for t in log if t > now - window]
            if len(recent) >= limit:
                self.rejected_429 += 1
                wait = max(1, math.ceil(recent[-limit] + window - now))
                raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        for log in (self._sent_at, chat_log):
            log.append(now)
            while log[0] <= now - 60.0:
                log.popleft()

    def _message(self, params: Json, body: Json) -> Json:
        chat_id = int(params["chat_id"])
        where = self.chats.get(chat_id) or self._chat(
            chat_id, "private" if chat_id > 0 else "group"
        )
        return {
            "message_id": next(self._message_ids),
            "date": tu.now(),
            "chat": where,
            "from": self.bot_user,
            **body,
        }


def _check_text(text: str, parse_mode: str | None, limit: int, what: str) -> None:
    length, error = tu.visible_length(text, parse_mode)
    if error:
        raise ApiError(400, error)
    if length > limit:
        raise ApiError(400, f"Bad Request: {what} is too long")


def _decode(value: str) -> Any:
    # PTB form-encodes every value; non-strings arrive JSON-encoded.
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return {"true": True, "false": False}.get(value, value)


async def _read_params(request: web.Request) -> tuple[Json, dict[str, FilePart]]:
    files: dict[str, FilePart] = {}
    if request.content_type == "application/json":
        body = await request.json() if request.can_read_body else {}
        return dict(body), files
    if request.content_type == "multipart/form-data":
        params: Json = {}
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            data = await part.read()
            if part.filename:
                kind = part.headers.get("Content-Type", "application/octet-stream")
                files[part.name] = FilePart(part.filename, kind, bytes(data))
            else:
                params[part.name] = _decode(bytes(data).decode())
        return params, files
    form = await request.post()
    return {k: _decode(str(v)) for k, v in form.items()}, files


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(exc: ApiError) -> web.Response:
    body: Json = {"ok": False, "error_code": exc.status, "description": exc.description}
    if exc.parameters:
        body["parameters"] = exc.parameters
    return web.json_response(body, status=exc.status)
