"""The Telegram adapter end to end: the real PTB Application, polling (or serving a webhook)
over real sockets against the fake Bot API, answering with the real CommandRouter over the
in-memory market of tests/bot/market.py.

Pacing runs on a manual clock, so per-chat limits and 429 backoffs take no wall time.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from alerts.store import Store, find_destination, list_subscriptions, open_store
from bot.chat import Button, Command, Reply
from bot.commands import COMMAND_SPECS, CommandRouter
from bot.logs import RedactingFormatter
from bot.pacing import Pacer
from bot.telegram_app import FAILED_TEXT, TgApp, build_application
from bot.telegram_run import WEBHOOK_SECRET_ENV, start_application, stop_application
from core.config import LaneLimits, Settings, TelegramSettings
from core.errors import ConfigError
from tests.bot.market import make_services
from tests.fakes.telegram_api import Call, FakeTelegram
from tests.fakes.telegram_updates import visible_length
from tests.fakes.timing import ManualClock

GROUP = -1001234
USER = 1001


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # RetryAfter warns about its coming type otherwise


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'liqbot.db'}")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        yield f


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(now=1000.0)


@pytest.fixture
def pacer(clock: ManualClock) -> Pacer:
    return Pacer(LaneLimits(), clock=clock, sleep=clock.sleep)


def settings_for(fake: FakeTelegram, **telegram: object) -> Settings:
    tg = TelegramSettings(base_url=fake.base_url, base_file_url=fake.base_file_url, **telegram)
    return Settings(telegram=tg)


Answer = Callable[[Command], Awaitable[Reply]]


@dataclass
class Answers:
    """The handler: the real router, recording each Command, unless a test cans a reply."""

    router: CommandRouter
    seen: list[Command] = field(default_factory=list)
    canned: dict[str, Answer] = field(default_factory=dict)

    async def __call__(self, cmd: Command) -> Reply:
        self.seen.append(cmd)
        canned = self.canned.get(cmd.name)
        return await (canned(cmd) if canned else self.router.handle(cmd))


@dataclass
class Bot:
    fake: FakeTelegram
    app: TgApp
    store: Store
    answers: Answers

    @property
    def seen(self) -> list[Command]:
        return self.answers.seen

    async def ask(self, chat_id: int, text: str, n: int = 1, **kw: object) -> list[Call]:
        """Send a command; the ``n`` messages sent to that chat in answer."""
        before = len(sent_to(self.fake, chat_id))
        self.fake.inject_command(chat_id, text, **kw)
        return await replies(self.fake, chat_id, n, after=before)

    async def subscriptions(self, chat_id: int) -> int:
        dest = await find_destination(self.store, "telegram", str(chat_id))
        return 0 if dest is None else len(await list_subscriptions(self.store, dest.id))


def sent_to(fake: FakeTelegram, chat_id: int) -> list[Call]:
    sends = ("sendmessage", "sendphoto")
    return [c for c in fake.calls if c.method in sends and c.chat_id == str(chat_id)]


async def replies(fake: FakeTelegram, chat_id: int, n: int = 1, *, after: int = 0) -> list[Call]:
    """Messages (texts and photos) ``after`` .. ``after + n`` sent to ``chat_id``."""
    await eventually(lambda: len(sent_to(fake, chat_id)) >= after + n)
    return sent_to(fake, chat_id)[after : after + n]


async def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until ``check()`` (or the awaitable it returns) is truthy."""
    async with asyncio.timeout(timeout):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.01)


@pytest.fixture
async def bot(fake: FakeTelegram, store: Store, pacer: Pacer) -> AsyncIterator[Bot]:
    settings = settings_for(fake)
    answers = Answers(CommandRouter(make_services(store, settings).services))
    app = build_application(settings, fake.token, answers, pacer, store, specs=COMMAND_SPECS)
    await start_application(app, settings, poll_timeout_s=1)
    try:
        yield Bot(fake, app, store, answers)
    finally:
        await stop_application(app)


def text_of(call: Call) -> str:
    return str(call.params.get("text") or call.params.get("caption") or "")


# --- start-up ---------------------------------------------------------------------------------


async def test_startup_publishes_the_command_menus(bot: Bot, fake: FakeTelegram) -> None:
    await fake.wait_for("getUpdates")
    methods = [c.method for c in fake.calls]
    assert methods[:4] == ["getme", "setmycommands", "setmycommands", "deletewebhook"]
    everyone, admins = fake.calls_to("setMyCommands")
    assert everyone.params["scope"] == {"type": "default"}
    assert admins.params["scope"] == {"type": "all_chat_administrators"}
    admin_only = {s.name for s in COMMAND_SPECS if s.admin_only}
    assert admin_only and "subscribe" in admin_only
    assert {c["command"] for c in everyone.params["commands"]} == {
        s.name for s in COMMAND_SPECS if not s.admin_only
    }
    assert [c["command"] for c in admins.params["commands"]] == [s.name for s in COMMAND_SPECS]
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING


# --- commands ---------------------------------------------------------------------------------


async def test_liqmap_answers_with_a_png_and_an_escaped_caption(bot: Bot) -> None:
    (photo,) = await bot.ask(USER, "/liqmap BTC")
    assert photo.method == "sendphoto"
    part = photo.files["photo"]
    assert part.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert part.filename == "liqmap_btc.png" and part.content_type == "image/png"
    caption = photo.params["caption"]
    assert photo.params["parse_mode"] == "HTML"
    assert caption.startswith("<b>BTC liquidation map")
    length, error = visible_length(caption, "HTML")
    assert error is None and length <= 1024
    assert bot.seen[-1] == Command(
        "liqmap",
        ("BTC",),
        platform="telegram",
        chat_id=str(USER),
        chat_type="private",
        user_id=str(USER),
        user_name="Tester",
        is_admin=True,
    )


async def test_a_chart_sent_before_goes_by_file_id(bot: Bot, fake: FakeTelegram) -> None:
    (first,) = await bot.ask(USER, "/liqmap BTC")
    (second,) = await bot.ask(USER + 7, "/liqmap BTC")
    assert first.files["photo"].data.startswith(b"\x89PNG")
    assert not second.files and second.params["photo"] == "photo-1"  # no second upload
    assert second.params["caption"] == first.params["caption"]
    fake.photos.clear()  # Telegram forgot it: the next one is uploaded again
    refused, uploaded = await bot.ask(USER + 8, "/liqmap BTC", n=2)
    assert refused.params["photo"] == "photo-1" and not refused.files  # 400: unknown id
    assert uploaded.files["photo"].data == first.files["photo"].data
    assert list(fake.photos) == ["photo-1"]  # the new upload's id (the fake counts from 1)


async def test_alert_is_stored_and_its_button_removes_it(bot: Bot, fake: FakeTelegram) -> None:
    (reply,) = await bot.ask(USER, "/alert cross BTC 96000 up")
    assert "Alert #" in text_of(reply)
    assert await bot.subscriptions(USER) == 1
    (row,) = reply.params["reply_markup"]["inline_keyboard"]
    data = row[0]["callback_data"]
    assert data.startswith("/unalert ")

    fake.inject_callback(USER, data)
    await fake.wait_for("answerCallbackQuery")
    await replies(fake, USER, after=1)
    assert await bot.subscriptions(USER) == 0
    assert bot.seen[-1].name == "unalert" and bot.seen[-1].is_admin


async def test_a_member_may_not_subscribe_a_group(bot: Bot, fake: FakeTelegram) -> None:
    (reply,) = await bot.ask(GROUP, "/subscribe", user_id=7, chat_type="supergroup")
    assert "Only chat admins" in text_of(reply)
    assert reply.params["reply_parameters"]["message_id"]  # answers the command it refuses
    assert await bot.subscriptions(GROUP) == 0
    assert not bot.seen[-1].is_admin
    assert [c.params["user_id"] for c in fake.calls_to("getChatMember")] == ["7"]


async def test_only_commands_that_use_it_ask_for_the_admin_verdict(
    bot: Bot, fake: FakeTelegram
) -> None:
    """getChatMember costs a Bot API call: /liqs in a group does not need it, /status does
    (admins see the jobs), and a button pressed is judged the same way."""
    await bot.ask(GROUP, "/liqs BTC", user_id=9, chat_type="supergroup")
    assert not fake.calls_to("getChatMember") and not bot.seen[-1].is_admin
    fake.set_admins(GROUP, 9)
    await bot.ask(GROUP, "/status", user_id=9, chat_type="supergroup")
    assert [c.params["user_id"] for c in fake.calls_to("getChatMember")] == ["9"]
    assert bot.seen[-1].is_admin
    for data, asked in (("/liqs ETH", 1), ("/mute off", 2)):  # buttons pressed by user 10
        fake.inject_callback(GROUP, data, user_id=10, chat_type="supergroup")
        pressed = tuple(data.split()[1:])
        await eventually(lambda pressed=pressed: bot.seen[-1].args == pressed)  # type: ignore[misc]
        assert len(fake.calls_to("getChatMember")) == asked
        assert not bot.seen[-1].is_admin


async def test_admins_may_subscribe_a_group_and_the_verdict_is_cached(
    bot: Bot, fake: FakeTelegram
) -> None:
    fake.set_admins(GROUP, 8)
    await bot.ask(GROUP, "/subscribe etf", user_id=8, chat_type="supergroup")
    await bot.ask(GROUP, "/subscribe digest", user_id=8, chat_type="supergroup")
    assert await bot.subscriptions(GROUP) == 2
    assert len(fake.calls_to("getChatMember")) == 1


async def test_an_anonymous_admin_may_subscribe_a_group(bot: Bot, fake: FakeTelegram) -> None:
    (reply,) = await bot.ask(GROUP, "/subscribe", chat_type="supergroup", sender_chat_id=GROUP)
    assert "Broadcasts on" in text_of(reply)
    assert await bot.subscriptions(GROUP) > 0
    cmd = bot.seen[-1]
    assert cmd.is_admin and cmd.user_id == "" and cmd.chat_type == "group"
    assert not fake.calls_to("getChatMember")


async def test_posting_as_another_channel_is_not_an_admin(bot: Bot, fake: FakeTelegram) -> None:
    (reply,) = await bot.ask(GROUP, "/subscribe", chat_type="supergroup", sender_chat_id=-777)
    assert "Only chat admins" in text_of(reply)
    assert not fake.calls_to("getChatMember")


async def test_a_channel_post_is_an_admin_command(bot: Bot, fake: FakeTelegram) -> None:
    channel = -1009999
    fake.inject_channel_post(channel, "/subscribe etf")
    (reply,) = await replies(fake, channel)
    assert "Broadcasts on" in text_of(reply)
    assert bot.seen[-1].chat_type == "channel" and bot.seen[-1].is_admin


async def test_commands_for_other_bots_and_unknown_ones_in_groups_are_ignored(
    bot: Bot, fake: FakeTelegram
) -> None:
    fake.inject_command(GROUP, "/help@someotherbot", chat_type="supergroup")
    fake.inject_command(GROUP, "/frobnicate", chat_type="supergroup")
    fake.inject_command(USER, "/frobnicate")  # private: the router points to /help
    (reply,) = await replies(fake, USER)
    assert "/help" in text_of(reply)
    assert [c.name for c in bot.seen] == ["frobnicate"]


# --- rendering over the wire --------------------------------------------------------------------


async def test_long_replies_split_on_lines_and_hostile_text_is_escaped(bot: Bot) -> None:
    lines = tuple(f"line {i:04d} <script>alert('x')</script> & co" for i in range(200))

    async def long_reply(cmd: Command) -> Reply:
        return Reply(lines, title="<b>BTC</b> & <i>you</i>", buttons=((Button("ok", "/help"),),))

    bot.answers.canned["status"] = long_reply
    sent = await bot.ask(USER, "/status", n=3)
    texts = [text_of(c) for c in sent]
    assert all(visible_length(t, "HTML")[1] is None for t in texts)
    assert all(len(t) <= 4096 for t in texts)
    assert texts[0].startswith("<b>&lt;b&gt;BTC&lt;/b&gt; &amp; &lt;i&gt;you&lt;/i&gt;</b>\n")
    escaped = [f"line {i:04d} &lt;script&gt;alert('x')&lt;/script&gt; &amp; co" for i in range(200)]
    assert "\n".join(texts).split("\n")[1:] == escaped
    assert [("reply_markup" in c.params) for c in sent] == [False, False, True]


async def test_a_handler_failure_is_reported_and_logged_without_the_token(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(cmd: Command) -> Reply:
        raise RuntimeError(f"boom while calling {bot.fake.base_url}{bot.fake.token}/x")

    bot.answers.canned["status"] = broken
    with caplog.at_level(logging.ERROR, logger="bot.telegram_app"):
        (reply,) = await bot.ask(USER, "/status")
    assert text_of(reply) == FAILED_TEXT
    (record,) = [r for r in caplog.records if r.name == "bot.telegram_app"]
    assert "boom" in record.getMessage() and bot.fake.token not in record.getMessage()


async def test_our_log_lines_never_show_the_token(
    fake: FakeTelegram, store: Store, pacer: Pacer
) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        settings = settings_for(fake)
        router = CommandRouter(make_services(store, settings).services)
        app = build_application(settings, fake.token, router.handle, pacer, store, specs=())
        await start_application(app, settings, poll_timeout_s=1)
        try:
            fake.inject_command(USER, "/help")
            await replies(fake, USER)
        finally:
            await stop_application(app)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logged = out.getvalue()
    assert "getUpdates" in logged or "getupdates" in logged.lower()
    assert fake.token not in logged and fake.token.split(":")[1] not in logged


# --- pacing and errors ------------------------------------------------------------------------


async def test_a_429_on_a_reply_backs_off_and_retries_once(
    bot: Bot, fake: FakeTelegram, pacer: Pacer, clock: ManualClock
) -> None:
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 2", retry_after=2)
    fake.inject_command(USER, "/help")
    first, second = await fake.wait_for("sendMessage", n=2)  # refused, then sent
    assert "Commands" in text_of(first) and first.params == second.params
    assert pacer.stats().backoffs == 1
    assert sum(clock.sleeps) >= 2.0  # the retry waited out retry_after (in virtual time)


async def test_a_refused_reply_is_logged_not_retried(
    bot: Bot, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
    with caplog.at_level(logging.ERROR, logger="bot.telegram_app"):
        fake.inject_command(USER, "/help")
        await fake.wait_for("sendMessage")
        await eventually(lambda: caplog.records)
    assert "Forbidden" in caplog.records[0].getMessage()
    assert len(fake.calls_to("sendMessage")) == 1


# --- membership -------------------------------------------------------------------------------


async def test_the_bot_added_enables_and_kicked_disables_the_destination(
    bot: Bot, fake: FakeTelegram, store: Store
) -> None:
    async def enabled() -> bool:
        dest = await find_destination(store, "telegram", str(GROUP))
        return dest is not None and dest.enabled

    async def disabled() -> bool:
        dest = await find_destination(store, "telegram", str(GROUP))
        return dest is not None and not dest.enabled

    fake.inject_my_chat_member(GROUP, "member", old_status="left", chat_type="supergroup")
    await eventually(enabled)
    fake.inject_my_chat_member(GROUP, "kicked", old_status="member", chat_type="supergroup")
    await eventually(disabled)
    dest = await find_destination(store, "telegram", str(GROUP))
    assert dest is not None and dest.disabled_reason is not None
    assert "removed" in dest.disabled_reason
    fake.inject_my_chat_member(GROUP, "administrator", old_status="kicked", chat_type="supergroup")
    await eventually(enabled)


async def test_a_user_blocking_the_bot_disables_their_chat(
    bot: Bot, fake: FakeTelegram, store: Store
) -> None:
    await bot.ask(USER, "/start")
    fake.inject_my_chat_member(USER, "kicked", old_status="member", chat_type="private")

    async def disabled() -> bool:
        dest = await find_destination(store, "telegram", str(USER))
        return dest is not None and not dest.enabled and dest.disabled_reason is not None

    await eventually(disabled)
    dest = await find_destination(store, "telegram", str(USER))
    assert dest is not None and dest.disabled_reason == "the user blocked the bot"


# --- webhook ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_mode_refuses_to_start_without_a_secret(
    fake: FakeTelegram, store: Store, pacer: Pacer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(WEBHOOK_SECRET_ENV, raising=False)
    settings = settings_for(fake, mode="webhook", webhook_url="https://bot.example/telegram")
    router = CommandRouter(make_services(store, settings).services)
    app = build_application(settings, fake.token, router.handle, pacer, store, specs=COMMAND_SPECS)
    with pytest.raises(ConfigError, match=WEBHOOK_SECRET_ENV):
        await start_application(app, settings)
    with pytest.raises(ConfigError, match="A-Z"):
        await start_application(app, settings, environ={WEBHOOK_SECRET_ENV: "no spaces allowed"})
    assert fake.calls == []


@dataclass
class Hook:
    """A bot in webhook mode: ``post`` plays Telegram, delivering an update to the webhook."""

    fake: FakeTelegram
    app: TgApp
    answers: Answers
    url: str
    secret: str
    http: aiohttp.ClientSession

    async def post(
        self, update: object, *, secret: str | None = None, raw: bytes | None = None
    ) -> tuple[int, dict[str, object] | None]:
        """The webhook's status and the Bot API call in its answer (None: an empty answer)."""
        header = self.secret if secret is None else secret
        headers = {"X-Telegram-Bot-Api-Secret-Token": header} if header else {}
        body = raw if raw is not None else json.dumps(update).encode()
        headers["Content-Type"] = "application/json"
        async with self.http.post(self.url, data=body, headers=headers) as resp:
            data = await resp.read()
            if resp.status != 200 or not data:
                return resp.status, None
            answer = json.loads(data)
            assert isinstance(answer, dict)
            return resp.status, answer


@asynccontextmanager
async def webhook_bot(
    fake: FakeTelegram, store: Store, pacer: Pacer, **telegram: object
) -> AsyncIterator[Hook]:
    port = free_port()
    settings = settings_for(
        fake,
        mode="webhook",
        webhook_listen="127.0.0.1",
        webhook_port=port,
        webhook_path="tg-hook",
        webhook_url="https://bot.example/tg-hook",
        **telegram,
    )
    answers = Answers(CommandRouter(make_services(store, settings).services))
    app = build_application(settings, fake.token, answers, pacer, store, specs=COMMAND_SPECS)
    secret = "s3cret_-value"
    await start_application(app, settings, environ={WEBHOOK_SECRET_ENV: secret})
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/tg-hook"
            yield Hook(fake, app, answers, url, secret, http)
    finally:
        await stop_application(app)


async def test_webhook_accepts_only_updates_with_the_secret(
    fake: FakeTelegram, store: Store, pacer: Pacer
) -> None:
    async with webhook_bot(fake, store, pacer) as hook:
        (registered,) = fake.calls_to("setWebhook")
        assert registered.params["url"] == "https://bot.example/tg-hook"
        assert registered.params["secret_token"] == hook.secret
        assert registered.params["max_connections"] in (40, "40")  # form-encoded
        answers = [
            await hook.post(fake.command_update(USER, f"/help {i}"), secret=header)
            for i, header in enumerate(("", "wrong", hook.secret))
        ]
        assert [status for status, _ in answers] == [403, 403, 200]
        call = answers[2][1]
        assert call is not None and call["method"] == "sendMessage"
        assert call["chat_id"] == USER and call["parse_mode"] == "HTML"
        assert "/2" in str(call["text"])  # the third update: "/help 2" (there is no /2 command)
        assert [c.args for c in hook.answers.seen] == [("2",)]  # the refused two did nothing
        assert not fake.calls_to("sendMessage") and not fake.calls_to("getUpdates")


async def test_webhook_answers_like_polling_does(
    fake: FakeTelegram, store: Store, pacer: Pacer
) -> None:
    """The webhook reads command messages from the raw JSON: the Commands it builds (admin
    checks included) are the ones PTB's polling path builds for the same updates."""
    fake.admins[GROUP] = {7}
    updates = [
        fake.command_update(USER, "/liqs BTC"),
        fake.command_update(GROUP, "/subscribe cluster BTC", user_id=7, chat_type="supergroup"),
        fake.command_update(GROUP, "/subscribe cluster BTC", user_id=8, chat_type="supergroup"),
        fake.command_update(GROUP, "/status", chat_type="supergroup", sender_chat_id=GROUP),
        fake.command_update(GROUP, "/status@liqbot_test", chat_type="supergroup"),
        fake.command_update(GROUP, "/status@some_other_bot", chat_type="supergroup"),
        fake.command_update(GROUP, "/nosuchcommand", chat_type="supergroup"),
        fake.command_update(USER, "/nosuchcommand"),
    ]
    async with webhook_bot(fake, store, pacer) as hook:
        calls = [await hook.post(u) for u in updates]
        seen_by_webhook = list(hook.answers.seen)
    assert [status for status, _ in calls] == [200] * len(updates)
    answered = [call is not None for _, call in calls]
    assert answered == [True, True, True, True, True, False, False, True]
    group_call = calls[1][1]
    assert group_call is not None and group_call["reply_parameters"] == {
        "message_id": updates[1]["message"]["message_id"],
        "allow_sending_without_reply": True,
    }
    assert "reply_parameters" not in (calls[0][1] or {})  # private chats are not quoted

    settings = settings_for(fake)
    answers = Answers(CommandRouter(make_services(store, settings).services))
    app = build_application(settings, fake.token, answers, pacer, store, specs=COMMAND_SPECS)
    await start_application(app, settings, poll_timeout_s=1)
    try:
        for update in updates:
            fake._queue(update)
        await eventually(lambda: len(answers.seen) >= len(seen_by_webhook))
        await asyncio.sleep(0.2)  # anything extra (an ignored update answered) would show
    finally:
        await stop_application(app)
    # Polling handles updates concurrently, so in any order.
    assert sorted(map(repr, answers.seen)) == sorted(map(repr, seen_by_webhook))
    assert [c.is_admin for c in seen_by_webhook] == [True, True, False, True, False, True]


async def test_webhook_sends_charts_and_long_replies_through_the_api(
    fake: FakeTelegram, store: Store, pacer: Pacer
) -> None:
    async with webhook_bot(fake, store, pacer) as hook:
        status, call = await hook.post(fake.command_update(USER, "/liqmap BTC"))
        assert (status, call) == (200, None)
        (photo,) = fake.calls_to("sendPhoto")
        assert photo.chat_id == str(USER) and photo.files["photo"].data.startswith(b"\x89PNG")
        # The same chart again: Telegram holds it, so it goes by file_id in the answer.
        status, call = await hook.post(fake.command_update(USER + 1, "/liqmap BTC"))
        assert status == 200 and call is not None
        assert call["method"] == "sendPhoto" and call["chat_id"] == USER + 1
        assert call["photo"] == "photo-1" and call["photo"] in fake.photos
        assert str(call["caption"]).startswith("<b>BTC liquidation map")
        assert len(fake.calls_to("sendPhoto")) == 1  # one upload in all


async def test_webhook_uploads_a_new_chart_once_for_a_burst_of_requests(
    fake: FakeTelegram, store: Store, pacer: Pacer
) -> None:
    """Five people ask for the same new map at once: one upload; the others wait for its
    file_id and get the chart by id in their answers."""
    async with webhook_bot(fake, store, pacer) as hook:
        users = [USER + i for i in range(5)]
        calls = await asyncio.gather(
            *(hook.post(fake.command_update(u, "/liqmap BTC")) for u in users)
        )
        (upload,) = fake.calls_to("sendPhoto")
        assert upload.files["photo"].data.startswith(b"\x89PNG")
        by_id = {c["chat_id"]: c["photo"] for _, c in calls if c is not None}
        assert set(by_id.values()) == {"photo-1"} and len(by_id) == 4
        assert set(by_id) | {int(upload.chat_id)} == set(users)


async def test_webhook_passes_other_updates_to_the_application(
    fake: FakeTelegram, store: Store, pacer: Pacer
) -> None:
    """A button press is not a command message: PTB's handlers take it, as when polling."""
    async with webhook_bot(fake, store, pacer) as hook:
        fake.inject_callback(USER, "/liqs ETH")
        (update,) = fake._updates  # queued for getUpdates, which nobody calls: post it instead
        status, call = await hook.post(update)
        assert (status, call) == (200, None)
        (reply,) = await replies(fake, USER)
        assert "ETH" in text_of(reply)
        await fake.wait_for("answerCallbackQuery")


async def test_webhook_refuses_bodies_that_are_not_updates(
    fake: FakeTelegram, store: Store, pacer: Pacer
) -> None:
    async with webhook_bot(fake, store, pacer) as hook:
        bad: list[bytes] = [b"not json", b"[1, 2]", b'{"message": {"text": "/help"}}', b"{"]
        statuses = [(await hook.post(None, raw=body))[0] for body in bad]
        assert statuses == [400, 400, 400, 400]
        assert hook.answers.seen == [] and not fake.calls_to("sendMessage")
        status, call = await hook.post(fake.command_update(USER, "/help"))
        assert status == 200 and call is not None  # and it carries on


async def test_webhook_can_send_every_reply_through_the_api(
    fake: FakeTelegram, store: Store, pacer: Pacer
) -> None:
    async with webhook_bot(fake, store, pacer, webhook_inline_replies=False) as hook:
        status, call = await hook.post(fake.command_update(USER, "/liqs BTC"))
        assert (status, call) == (200, None)
        (reply,) = await replies(fake, USER)
        assert "BTC" in text_of(reply)


async def test_a_rejected_token_is_a_config_error_that_does_not_quote_it(
    fake: FakeTelegram, store: Store, pacer: Pacer
) -> None:
    wrong = "999999:WRONG-token-that-the-fake-server-refuses"
    settings = settings_for(fake)
    router = CommandRouter(make_services(store, settings).services)
    app = build_application(settings, wrong, router.handle, pacer, store, specs=COMMAND_SPECS)
    with pytest.raises(ConfigError, match="rejected the bot token") as caught:
        await start_application(app, settings)
    assert wrong not in str(caught.value) and caught.value.__cause__ is None
    assert [c.method for c in fake.calls] == []  # refused at the door: a 401 records nothing
