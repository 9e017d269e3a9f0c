"""/mute, /quiet, /settings, /subscribe, /unsubscribe: chat-wide, for admins in groups."""

from __future__ import annotations

import pytest

from alerts.store import Store, find_destination, list_subscriptions
from alerts.subscriptions import Kind
from bot.chat import ChatType, Reply
from bot.commands import CommandRouter
from core.config import AlertSettings, Settings
from tests.bot.market import NOW_MS, Market, make_services
from tests.bot.test_commands_support import assert_specific_error, dump, run


@pytest.fixture
def router(market: Market) -> CommandRouter:
    return CommandRouter(market.services)


async def in_chat(
    router: CommandRouter, line: str, *, admin: bool, chat_type: ChatType = "group"
) -> Reply:
    return await run(
        router, line, platform="telegram", chat_id="-100", chat_type=chat_type, is_admin=admin
    )


async def test_mute_and_unmute(router: CommandRouter, market: Market) -> None:
    reply = await in_chat(router, "/mute 2h", admin=True)
    assert reply.text == (
        "Muted until 2026-01-13 10:00 UTC. Alerts still arrive, without sound; /mute off ends it."
    )
    dest = await find_destination(market.services.store, "telegram", "-100")
    assert dest is not None and dest.muted_until_ms == NOW_MS + 2 * 3_600_000
    listed = await in_chat(router, "/alerts", admin=True)
    assert listed.text.startswith("Alerts")
    off = await in_chat(router, "/mute off", admin=True)
    assert off.text.startswith("Unmuted")
    dest = await find_destination(market.services.store, "telegram", "-100")
    assert dest is not None and dest.muted_until_ms is None


async def test_mute_defaults_to_an_hour(router: CommandRouter, market: Market) -> None:
    await run(router, "/mute")
    dest = await find_destination(market.services.store, "console", "console")
    assert dest is not None and dest.muted_until_ms == NOW_MS + 3_600_000


async def test_quiet_hours_with_zone(router: CommandRouter, market: Market) -> None:
    reply = await in_chat(router, "/quiet 23:00 - 07:00 europe/berlin", admin=True)
    assert reply.text.startswith("Quiet hours 23:00-07:00 Europe/Berlin: alerts then arrive")
    dest = await find_destination(market.services.store, "telegram", "-100")
    assert dest is not None
    assert (dest.quiet_start, dest.quiet_end, dest.timezone) == (1380, 420, "Europe/Berlin")
    shown = await in_chat(router, "/quiet", admin=False)  # reading is for everyone
    assert "Quiet hours: 23:00-07:00" in shown.lines
    await in_chat(router, "/quiet off", admin=True)
    dest = await find_destination(market.services.store, "telegram", "-100")
    assert dest is not None and dest.quiet_start is None and dest.quiet_end is None


async def test_settings_show_and_timezone(router: CommandRouter, market: Market) -> None:
    shown = await run(router, "/settings")
    assert shown.lines[:3] == ("Time zone: UTC", "Quiet hours: off", "Mute: off")
    changed = await run(router, "/settings tz america/new_york")
    assert changed.title == "Time zone set" and "Time zone: America/New_York" in changed.lines
    again = await run(router, "/settings Asia/Tokyo")
    assert "Time zone: Asia/Tokyo" in again.lines


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/mute 5x", "'5x' is not a mute duration; try 30m, 1h, 2d or 1w."),
        ("/mute 31d", "A mute lasts at most 30d; try /mute 7d."),
        ("/mute 1h 2h", "Give one duration"),
        ("/mute 12 1h", "Give one duration"),
        ("/quiet 25:00-07:00", "'25:00-07:00' is not a time range; try 23:00-07:00."),
        ("/quiet 23:00-07:00 Mars/Olympus", "Unknown time zone 'Mars/Olympus'"),
        ("/quiet 7-7", "Quiet hours need a start and an end that differ"),
        ("/settings tz", "Say which time zone"),
        ("/settings tz Nowhere", "Unknown time zone 'Nowhere'"),
        ("/settings colour blue", "is not a setting"),
    ],
)
async def test_settings_bad_input_changes_nothing(
    router: CommandRouter, market: Market, line: str, message: str
) -> None:
    await run(router, "/start")
    before = await dump(market.services.store)
    reply = await run(router, line)
    assert_specific_error(reply, message, "Usage: /")
    assert await dump(market.services.store) == before


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/mute 1h", "Only chat admins can change this chat's settings."),
        ("/mute off", "Only chat admins can change this chat's settings."),
        ("/quiet 23:00-07:00", "Only chat admins can change this chat's settings."),
        ("/settings tz Europe/Berlin", "Only chat admins can change this chat's settings."),
        ("/subscribe", "Only chat admins can put this chat on broadcasts."),
        ("/subscribe etf", "Only chat admins can put this chat on broadcasts."),
        ("/unsubscribe", "Only chat admins can put this chat on broadcasts."),
    ],
)
@pytest.mark.parametrize("chat_type", ["group", "channel"])
async def test_admin_refusals_change_nothing(
    router: CommandRouter, market: Market, line: str, message: str, chat_type: ChatType
) -> None:
    await in_chat(router, "/start", admin=True, chat_type=chat_type)
    before = await dump(market.services.store)
    reply = await in_chat(router, line, admin=False, chat_type=chat_type)
    assert_specific_error(reply, message)
    assert "Usage" not in reply.text
    assert await dump(market.services.store) == before
    assert market.changes.calls == 0


async def test_subscribe_presets(router: CommandRouter, market: Market) -> None:
    reply = await in_chat(router, "/subscribe", admin=True, chat_type="channel")
    assert reply.title == "Broadcasts on"
    body = reply.text
    assert "the daily digest" in body and "ETF flow reversals" in body
    assert "BTC within 1% of a cluster of at least $100M" in body
    assert "ETH within 1% of a cluster of at least $100M" in body
    dest = await find_destination(market.services.store, "telegram", "-100")
    assert dest is not None and dest.type == "channel"
    subs = await list_subscriptions(market.services.store, dest.id)
    assert len(subs) == 4 and all(s.broadcast for s in subs)
    assert market.changes.calls == 1
    again = await in_chat(router, "/subscribe all", admin=True, chat_type="channel")
    assert again.text == "This chat already gets those broadcasts; /alerts lists them."
    assert len(await list_subscriptions(market.services.store, dest.id)) == 4
    off = await in_chat(router, "/unsubscribe clusters", admin=True, chat_type="channel")
    assert off.title == "Broadcasts off" and len(off.lines) == 3
    left = await list_subscriptions(market.services.store, dest.id)
    assert sorted(s.kind for s in left) == sorted([Kind.DIGEST, Kind.ETF])
    none = await in_chat(router, "/unsubscribe clusters", admin=True, chat_type="channel")
    assert none.text == "This chat has no such broadcasts."


async def test_broadcasts_are_not_personal(router: CommandRouter, market: Market) -> None:
    await in_chat(router, "/subscribe etf", admin=True)
    await run(router, "/alert etf reversal", platform="telegram", chat_id="-100", chat_type="group")
    dest = await find_destination(market.services.store, "telegram", "-100")
    assert dest is not None
    subs = await list_subscriptions(market.services.store, dest.id)
    assert sorted(s.broadcast for s in subs) == [False, True]
    listed = await in_chat(router, "/alerts", admin=False)
    assert any(line.endswith("ETF flow reversals (broadcast)") for line in listed.lines)
    broadcast = next(s for s in subs if s.broadcast)
    refused = await in_chat(router, f"/unalert {broadcast.id}", admin=False)
    assert_specific_error(refused, "Only chat admins can remove this chat's broadcasts")
    removed = await in_chat(router, "/unalert all", admin=True)
    assert removed.text == "Removed 1 alert."  # the personal one; broadcasts stay
    assert [s.broadcast for s in await list_subscriptions(market.services.store, dest.id)] == [True]


async def test_subscribe_is_all_or_nothing_under_quota(store: Store) -> None:
    settings = Settings(alerts=AlertSettings(quota_per_chat=3))
    market = make_services(store, settings)
    router = CommandRouter(market.services)
    before = await dump(store)
    reply = await run(router, "/subscribe")
    assert_specific_error(reply, "This chat has 3 alerts, the most allowed")
    assert (await dump(store))[1] == before[1]
    assert market.changes.calls == 0


async def test_subscribe_bad_preset(router: CommandRouter) -> None:
    reply = await run(router, "/subscribe weather")
    assert_specific_error(
        reply, "'weather' is not a broadcast; choose digest, etf, clusters or all.", "Usage:"
    )
