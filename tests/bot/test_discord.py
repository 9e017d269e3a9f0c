"""The Discord adapter end to end: the real discord.py client, over real sockets, against the
fake REST API and gateway in tests/fakes/discord_api.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from alerts.notifications import GroupedMessage, LevelCross, Outgoing
from alerts.store import Destination, Store, find_destination, open_store, upsert_destination
from bot.chat import ArgSpec, Command, CommandSpec, Reply
from bot.commands import COMMAND_SPECS, CommandRouter
from bot.discord_app import DiscordBot, build_client, close, configure_endpoints, start
from bot.discord_send import DiscordSender
from bot.pacing import Grant, Lane, Pacer
from core.config import DiscordSettings, Settings
from tests.bot.market import make_services
from tests.fakes import discord_payloads as p
from tests.fakes.discord_api import EPHEMERAL, FakeDiscord, Recorded

TOKEN = "bot-token-secret"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MEMBER = 740_000_000_000_000_001
DM_USER = 740_000_000_000_000_002
OTHER_CHANNEL = 730_000_000_000_000_002  # not in any server the gateway announced
CALLBACK = "POST /interactions/{id}/{token}/callback"
FOLLOWUP = "POST /webhooks/{app}/{token}"
SYNC = "PUT /applications/{app}/commands"


class Recorder:
    """The real command router, with a record of the commands it was given."""

    def __init__(self, store: Store) -> None:
        self.router = CommandRouter(make_services(store).services)
        self.commands: list[Command] = []

    async def __call__(self, cmd: Command) -> Reply:
        self.commands.append(cmd)
        return await self.router.handle(cmd)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'liqbot.db'}")
    yield s
    await s.close()


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    guild = p.guild(channels=(p.text_channel(),))
    async with FakeDiscord(guilds=[guild], users=[p.user(DM_USER, "dmuser")]) as server:
        server.channels[OTHER_CHANNEL] = p.text_channel(OTHER_CHANNEL, name="uncached")
        # configure_endpoints changes class attributes; monkeypatch puts them back afterwards.
        monkeypatch.setattr("discord.http.Route.BASE", "unset")
        monkeypatch.setattr("discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY", "unset")
        configure_endpoints(
            DiscordSettings(api_base=server.api_base, gateway_url=server.gateway_url)
        )
        yield server


Starter = Callable[..., Awaitable[DiscordBot]]


@pytest.fixture
async def run(tmp_path: Path, store: Store, fake: FakeDiscord) -> AsyncIterator[Starter]:
    """Builds and starts bots against ``fake`` (closed at the end), all with one sync-state
    file, the real router (recorded) and the real pacer."""
    bots: list[DiscordBot] = []

    async def starter(
        settings: Settings | None = None, specs: Sequence[CommandSpec] = COMMAND_SPECS
    ) -> DiscordBot:
        settings = settings or Settings()
        pacer = Pacer(settings.pacing.discord)
        bot = build_client(
            settings, Recorder(store), pacer, store, specs=specs, guild_ready_timeout=0.05
        )
        bots.append(bot)
        await start(bot, TOKEN, sync_state=tmp_path / "data" / "discord_commands.sha256")
        return bot

    yield starter
    for bot in bots:
        await close(bot)


def commands_of(bot: DiscordBot) -> list[Command]:
    assert isinstance(bot.handler, Recorder)
    return bot.handler.commands


async def answered(fake: FakeDiscord, payload: p.Json) -> tuple[Recorded, Recorded]:
    """Dispatch an interaction; its callback and its first follow-up."""
    await fake.dispatch("INTERACTION_CREATE", payload)
    token = payload["token"]
    callback = await fake.wait_for(CALLBACK, where=lambda r: r.params["token"] == token)
    followup = await fake.wait_for(FOLLOWUP, where=lambda r: r.params["token"] == token)
    return callback, followup


async def test_liqmap_is_deferred_then_followed_up_with_the_png_in_an_embed(
    fake: FakeDiscord, run: Starter
) -> None:
    bot = await run()
    payload = p.slash("liqmap", {"symbol": "ETH", "venue": "all", "range": "8%"}, user_id=MEMBER)
    callback, followup = await answered(fake, payload)

    assert callback.body["type"] == 5  # deferred: "liqbot is thinking..."
    assert not callback.body.get("data", {}).get("flags", 0) & EPHEMERAL
    [embed] = followup.embeds
    assert embed["title"].startswith("ETH liquidation map")
    assert "Price $" in embed["description"]
    assert embed["image"]["url"] == "attachment://liqmap_eth.png"
    [png] = followup.files
    assert png.filename == "liqmap_eth.png" and png.data.startswith(PNG_MAGIC)
    assert not followup.flags & EPHEMERAL

    [cmd] = commands_of(bot)
    assert cmd.name == "liqmap" and cmd.args == ("ETH", "all", "8%")
    assert (cmd.platform, cmd.chat_type) == ("discord", "group")
    assert cmd.chat_id == str(p.CHANNEL_ID) and cmd.guild_id == str(p.GUILD_ID)
    assert cmd.user_id == str(MEMBER) and not cmd.is_admin
    # interaction calls carry their token in the URL; ordinary ones the bot token.
    assert callback.authorization is None
    assert fake.recorded("GET /users/@me")[0].authorization == f"Bot {TOKEN}"


async def test_subscribe_needs_manage_server(fake: FakeDiscord, run: Starter, store: Store) -> None:
    bot = await run()
    refused = p.slash("subscribe", user_id=MEMBER, permissions=p.SEND_MESSAGES)
    callback, followup = await answered(fake, refused)

    assert callback.body["type"] == 5 and callback.body["data"]["flags"] & EPHEMERAL
    assert followup.flags & EPHEMERAL
    assert followup.embeds[0]["description"] == (
        "/subscribe needs the Manage Server permission in this server."
    )
    assert commands_of(bot) == []
    assert await find_destination(store, "discord", str(p.CHANNEL_ID)) is None

    manager = p.MANAGE_GUILD | p.SEND_MESSAGES
    allowed = p.slash("subscribe", {"what": "etf"}, user_id=MEMBER, permissions=manager)
    _, followup = await answered(fake, allowed)
    assert not followup.flags & EPHEMERAL
    assert "ETF" in followup.embeds[0]["description"]
    [cmd] = commands_of(bot)
    assert cmd.is_admin and cmd.args == ("etf",)
    dest = await find_destination(store, "discord", str(p.CHANNEL_ID))
    assert dest is not None and dest.type == "group"


async def test_a_dm_is_a_private_chat_with_admin_rights(fake: FakeDiscord, run: Starter) -> None:
    bot = await run()
    dm_channel = p.snowflake()
    payload = p.slash("status", user_id=DM_USER, dm=True, channel_id=dm_channel)
    await answered(fake, payload)
    [cmd] = commands_of(bot)
    assert (cmd.chat_type, cmd.chat_id, cmd.guild_id) == ("private", str(dm_channel), None)
    assert cmd.is_admin and cmd.user_id == str(DM_USER)


async def test_guild_only_command_in_a_dm_is_refused(fake: FakeDiscord, run: Starter) -> None:
    bot = await run()
    payload = p.slash("subscribe", user_id=DM_USER, dm=True, channel_id=p.snowflake())
    _, followup = await answered(fake, payload)
    assert "server channel" in followup.embeds[0]["description"]
    assert commands_of(bot) == []


async def test_symbol_autocomplete_offers_matching_symbols(fake: FakeDiscord, run: Starter) -> None:
    settings = Settings.model_validate({"bot": {"symbols": ["BTC", "ETH", "SOL", "BNB", "DOGE"]}})
    await run(settings)
    payload = p.autocomplete("liqmap", "symbol", "b", user_id=MEMBER)
    await fake.dispatch("INTERACTION_CREATE", payload)
    callback = await fake.wait_for(CALLBACK)
    assert callback.body["type"] == 8
    assert callback.body["data"]["choices"] == [
        {"name": "BTC", "value": "BTC"},
        {"name": "BNB", "value": "BNB"},
    ]


async def test_button_press_runs_its_command_line(fake: FakeDiscord, run: Starter) -> None:
    bot = await run()
    _, start_reply = await answered(fake, p.slash("start", user_id=MEMBER))
    buttons = [b for row in start_reply.body["components"] for b in row["components"]]
    assert {"label": "Map BTC", "custom_id": "/liqmap BTC"}.items() <= buttons[0].items()

    callback, followup = await answered(fake, p.button_press("/liqmap BTC", user_id=MEMBER))
    assert callback.body["type"] == 5
    assert followup.embeds[0]["title"].startswith("BTC liquidation map")
    assert followup.files[0].filename == "liqmap_btc.png"
    assert [(c.name, c.args) for c in commands_of(bot)] == [("start", ()), ("liqmap", ("BTC",))]


async def test_hostile_strings_arrive_escaped_and_errors_ephemeral(
    fake: FakeDiscord, run: Starter
) -> None:
    await run()
    payload = p.slash("settings", {"tz": "**x**_y_`z`||s||"}, user_id=MEMBER)
    await fake.dispatch("INTERACTION_CREATE", payload)
    # An error is private: the public "thinking" message goes, an ephemeral one replaces it.
    await fake.wait_for("DELETE /webhooks/{app}/{token}/messages/@original")
    followup = await fake.wait_for(FOLLOWUP)
    assert followup.flags & EPHEMERAL
    text = followup.embeds[0]["description"]
    assert "Unknown time zone" in text
    assert "\\*\\*x\\*\\*\\_y\\_\\`z\\`\\|\\|s\\|\\|" in text
    assert followup.body["allowed_mentions"] == {"parse": []}

    for hostile, mention in (("@everyone", "everyone"), (f"<@{MEMBER}>", str(MEMBER))):
        _, followup = await answered(fake, p.slash("unalert", {"id": hostile}, user_id=MEMBER))
        text = followup.embeds[0]["description"]
        assert "is not an alert id" in text
        assert f"@{mention}" not in text and f"@\u200b{mention}" in text


async def test_commands_sync_on_first_start_and_again_only_when_changed(
    fake: FakeDiscord, run: Starter
) -> None:
    await run()
    put = await fake.wait_for(SYNC)
    assert put.params["app"] == str(p.APP_ID)
    by_name = {c["name"]: c for c in put.body}
    assert set(by_name) == {s.name for s in COMMAND_SPECS}
    symbol, venue, rng = by_name["liqmap"]["options"]
    assert (symbol["name"], symbol["type"], symbol["autocomplete"]) == ("symbol", 3, True)
    assert not venue.get("autocomplete") and not rng["required"]
    [window] = by_name["liqs"]["options"][1:]
    assert [c["value"] for c in window["choices"]] == ["1h", "4h", "24h"]
    kind = by_name["alert"]["options"][0]
    assert kind["name"] == "kind" and kind["required"]
    sub = by_name["subscribe"]
    assert int(sub["default_member_permissions"]) == p.MANAGE_GUILD
    assert sub["contexts"] == [0]  # guild only

    await run()
    assert len(fake.recorded(SYNC)) == 1
    assert len(fake.recorded("GET /oauth2/applications/@me")) == 2

    count = ArgSpec("count", "how many", kind="number")
    changed = (*COMMAND_SPECS, CommandSpec("ping", "Is the bot there", "/ping", args=(count,)))
    bot = await run(specs=changed)
    assert len(fake.recorded(SYNC)) == 2
    assert {c["name"] for c in fake.commands} == {s.name for s in changed}
    [option] = fake.commands[-1]["options"]
    assert (option["name"], option["type"]) == ("count", 10)

    await answered(fake, p.slash("ping", {"count": 3.0}, user_id=MEMBER))
    assert [(c.name, c.args) for c in commands_of(bot)] == [("ping", ("3",))]


async def test_sharded_client_identifies_its_shards(fake: FakeDiscord, run: Starter) -> None:
    settings = Settings.model_validate({"discord": {"shard_ids": [1], "shard_count": 2}})
    bot = await run(settings)
    assert [i["shard"] for i in fake.identifies] == [[1, 2]]
    assert bot.client.shard_count == 2


async def test_removal_from_a_server_disables_its_channels(
    fake: FakeDiscord, run: Starter, store: Store
) -> None:
    await run()
    dest = await upsert_destination(store, "discord", str(p.CHANNEL_ID), "group", 0)
    await fake.dispatch("GUILD_DELETE", {"id": str(p.GUILD_ID)})
    await _until(lambda: _enabled(store, dest.chat_id), False)

    # Added back: a GUILD_CREATE without "unavailable" is a join (discord.py: on_guild_join).
    joined = {k: v for k, v in p.guild(channels=(p.text_channel(),)).items() if k != "unavailable"}
    await fake.dispatch("GUILD_CREATE", joined)
    await _until(lambda: _enabled(store, dest.chat_id), True)


async def test_a_deleted_channel_is_disabled(fake: FakeDiscord, run: Starter, store: Store) -> None:
    await run()
    dest = await upsert_destination(store, "discord", str(p.CHANNEL_ID), "group", 0)
    await fake.dispatch("CHANNEL_DELETE", p.text_channel())
    await _until(lambda: _enabled(store, dest.chat_id), False)


async def test_a_failed_sync_does_not_stop_the_bot_and_is_retried(
    fake: FakeDiscord, run: Starter
) -> None:
    fake.fail_next(SYNC, 403, {"message": "Missing Access", "code": 50001})
    await run()  # ready despite the failure
    await run()
    assert [r.status for r in fake.recorded(SYNC)] == [403, 200]


async def _enabled(store: Store, chat_id: str) -> bool:
    dest = await find_destination(store, "discord", chat_id)
    assert dest is not None
    return dest.enabled


async def _until(probe: Callable[[], Awaitable[bool]], want: bool, tries: int = 200) -> None:
    for _ in range(tries):
        if await probe() == want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never became {want}")


# --- outbox delivery ----------------------------------------------------------------------------

SEND = "POST /channels/{id}/messages"


class RecordingPacer(Pacer):
    def __init__(self) -> None:
        super().__init__(Settings().pacing.discord)
        self.acquired: list[tuple[str, Lane, bool]] = []
        self.backoffs: list[tuple[Lane, str | None, float]] = []

    async def acquire(self, chat_key: str, *, lane: Lane, group: bool = False) -> Grant:
        self.acquired.append((chat_key, lane, group))
        return await super().acquire(chat_key, lane=lane, group=group)

    def backoff(self, lane: Lane, chat_key: str | None, retry_after_s: float) -> None:
        self.backoffs.append((lane, chat_key, retry_after_s))
        super().backoff(lane, chat_key, retry_after_s)


def destination(chat_id: str, chat_type: str = "group") -> Destination:
    return Destination(
        1, "discord", chat_id, chat_type, "", True, "UTC", None, None, None, 0, None, 0
    )


def alert(symbol: str = "BTC", silent: bool = False) -> GroupedMessage:
    cross = LevelCross(symbol, 0, 96_000.0, 96_100.0, 95_900.0)
    return GroupedMessage(1, "1:k", 0, (Outgoing(1, 1, 0, cross),), silent=silent)


async def test_sender_delivers_to_channels_and_dms(fake: FakeDiscord, run: Starter) -> None:
    bot = await run()
    pacer = RecordingPacer()
    send = DiscordSender(bot.client, pacer)

    assert (await send(destination(str(p.CHANNEL_ID)), alert())).ok
    assert (await send(destination(str(OTHER_CHANNEL)), alert(silent=True))).ok
    dm = destination(f"user:{DM_USER}", "private")
    assert (await send(dm, alert())).ok

    cached, fetched, direct = fake.recorded(SEND)
    assert cached.params["id"] == str(p.CHANNEL_ID)
    assert "BTC" in cached.embeds[0]["title"] and not cached.flags & p.SILENT
    assert fetched.params["id"] == str(OTHER_CHANNEL) and fetched.flags & p.SILENT
    assert [r.params["id"] for r in fake.recorded("GET /channels/{id}")] == [str(OTHER_CHANNEL)]
    [opened] = fake.recorded("POST /users/@me/channels")
    assert opened.body == {"recipient_id": DM_USER}
    assert direct.params["id"] in {str(c) for c in fake.channels}
    assert [(lane, group) for _, lane, group in pacer.acquired] == [
        ("broadcast", True),
        ("broadcast", True),
        ("broadcast", False),
    ]


async def test_sender_escapes_data_strings(fake: FakeDiscord, run: Starter) -> None:
    bot = await run()
    send = DiscordSender(bot.client, RecordingPacer())
    assert (await send(destination(str(p.CHANNEL_ID)), alert("**BTC**@everyone"))).ok
    [sent] = fake.recorded(SEND)
    title = sent.embeds[0]["title"]
    assert "\\*\\*BTC\\*\\*@\u200beveryone" in title


async def test_sender_maps_errors(fake: FakeDiscord, run: Starter) -> None:
    bot = await run()
    pacer = RecordingPacer()
    send = DiscordSender(bot.client, pacer)
    channel = destination(str(p.CHANNEL_ID))

    fake.fail_next(SEND, 403, {"message": "Missing Access", "code": 50001})
    forbidden = await send(channel, alert())
    assert not forbidden.ok and forbidden.definitive and "Missing Access" in forbidden.error

    gone = await send(destination("user:740000000000000099", "private"), alert())
    assert not gone.ok and gone.definitive  # no such user: 404
    assert (await send(destination("not-a-snowflake"), alert())).definitive

    fake.fail_next(SEND, 503)
    unavailable = await send(channel, alert())
    assert not unavailable.ok and not unavailable.definitive

    fake.fail_next(SEND, 429, retry_after=90.0)
    limited = await send(channel, alert())
    assert not limited.ok and not limited.definitive and limited.retry_after_s == 90.0
    assert pacer.backoffs == [("broadcast", str(p.CHANNEL_ID), 90.0)]
    assert TOKEN not in " ".join((forbidden.error, gone.error, unavailable.error, limited.error))
