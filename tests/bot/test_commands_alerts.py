"""/alert, /alerts and /unalert: stored as asked, confirmed in words, refused specifically."""

from __future__ import annotations

import pytest

from alerts.store import Store, find_destination, list_subscriptions
from alerts.subscriptions import Kind
from bot.chat import Reply
from bot.commands import CommandRouter
from core.config import AlertSettings, Settings
from tests.bot.market import Market, make_services
from tests.bot.test_commands_support import assert_specific_error, dump, run


async def group(router: CommandRouter, line: str, user: str = "u1", admin: bool = False) -> Reply:
    """``line`` typed in the Telegram group "Traders"."""
    return await run(
        router,
        line,
        platform="telegram",
        chat_id="-100",
        chat_type="group",
        chat_title="Traders",
        user_id=user,
        is_admin=admin,
    )


@pytest.fixture
def router(market: Market) -> CommandRouter:
    return CommandRouter(market.services)


@pytest.mark.parametrize(
    ("line", "promise", "kind"),
    [
        (
            "/alert cluster BTC 1% 50m short",
            "I'll tell you when BTC is within 1% of a short cluster of at least $50M.",
            Kind.CLUSTER,
        ),
        (
            "/alert cluster eth 0.5 % $1.2B",
            "I'll tell you when ETH is within 0.5% of a cluster of at least $1.2B.",
            Kind.CLUSTER,
        ),
        ("/alert cross BTC 96000 up", "I'll tell you when BTC crosses above $96,000.", Kind.CROSS),
        (
            "/alert cross 3.5k ETH",
            "I'll tell you when ETH crosses $3,500 either way.",
            Kind.CROSS,
        ),
        (
            "/alert spike BTC 50m 1h long",
            "I'll tell you when at least $50M of longs is liquidated on BTC within 1h.",
            Kind.SPIKE,
        ),
        (
            "/alert etf reversal",
            "I'll tell you when US spot Bitcoin ETF flows reverse after a streak.",
            Kind.ETF,
        ),
        (
            "/alert etf 500m",
            "I'll tell you when a day's net flow of the US spot Bitcoin ETFs is beyond ±$500M.",
            Kind.ETF,
        ),
        ("/alert digest hourly", "I'll send the hourly digest.", Kind.DIGEST),
    ],
)
async def test_alert_happy_paths(
    router: CommandRouter, market: Market, line: str, promise: str, kind: Kind
) -> None:
    reply = await run(router, line, user_id="42")
    assert not reply.error, reply.text
    assert reply.lines[0] == promise
    dest = await find_destination(market.services.store, "console", "console")
    assert dest is not None
    [sub] = await list_subscriptions(market.services.store, dest.id)
    assert sub.kind == kind and sub.created_by == "42" and not sub.broadcast
    a = market.services.settings.alerts
    assert (sub.timing.cooldown_s, sub.timing.repeat_s) == (a.cooldown_s, a.repeat_interval_s)
    assert f"Alert #{sub.id}" in reply.text
    assert reply.buttons[0][0].data == f"/unalert {sub.id}"
    assert market.changes.calls == 1


async def test_cross_confirmation_shows_the_price(router: CommandRouter, market: Market) -> None:
    reply = await run(router, "/alert cross BTC 96000")
    snap = market.cache.get("BTC")
    assert snap is not None
    assert f"BTC is at ${snap.price:,.0f} now." in reply.lines


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/alert", "Say what to watch; choose cluster, cross, spike, etf or digest."),
        ("/alert cluster BTC 5x 1%", "'5x' is not an amount; try 50m or $1.2B."),
        ("/alert cluster DOGEX 1% 50m", "Unknown symbol DOGEX. Try BTC, ETH, SOL."),
        ("/alert cluster BTC 25% 50m", "Distance must be above 0% and at most 20%, got 25%."),
        ("/alert cluster BTC 1% 50k", "A cluster alert needs a minimum size of at least $100K"),
        ("/alert spike BTC 50m 2d", "A spike window must be between 1m and 24h."),
        ("/alert spike BTC 50k 30m", "A spike alert needs at least $100K, e.g. $25M."),
        ("/alert cross BTC", "Say which price to watch, e.g. 96000."),
        ("/alert digest weekly", "'weekly' is not a digest schedule"),
        (
            "/alert cluster BTC 1% 50m dm",
            "'dm' delivers to your Discord DMs; it works on Discord only.",
        ),
    ],
)
async def test_alert_bad_input_changes_nothing(
    router: CommandRouter, market: Market, line: str, message: str
) -> None:
    before = await dump(market.services.store)
    reply = await run(router, line)
    assert_specific_error(reply, message, "Usage: /alert")
    assert await dump(market.services.store) == before
    assert market.changes.calls == 0


async def test_duplicate_alert_is_not_stored_twice(router: CommandRouter, market: Market) -> None:
    await run(router, "/alert cluster BTC 1% 50m short")
    reply = await run(router, "/alert cluster btcusdt short 50M 1%")
    assert reply.text.startswith("That alert is already set here: #")
    dest = await find_destination(market.services.store, "console", "console")
    assert dest is not None
    assert len(await list_subscriptions(market.services.store, dest.id)) == 1


async def test_quota(store: Store) -> None:
    settings = Settings(alerts=AlertSettings(quota_per_chat=3, quota_per_chat_per_kind=2))
    market = make_services(store, settings)
    router = CommandRouter(market.services)
    await run(router, "/alert cross BTC 90000")
    await run(router, "/alert cross BTC 91000")
    reply = await run(router, "/alert cross BTC 92000")
    assert_specific_error(reply, "This chat has 2 cross alerts, the most allowed for that kind.")
    await run(router, "/alert etf reversal")
    before = await dump(store)
    reply = await run(router, "/alert digest daily")
    assert_specific_error(reply, "This chat has 3 alerts, the most allowed; remove one first.")
    assert await dump(store) == before


async def test_discord_dm_alert_goes_to_the_users_dm(router: CommandRouter, market: Market) -> None:
    reply = await run(
        router,
        "/alert cluster BTC 1% 50m dm",
        platform="discord",
        chat_id="555",
        chat_type="group",
        user_id="77",
        is_admin=False,
    )
    assert not reply.error and "delivered to your DMs" in reply.text
    dm = await find_destination(market.services.store, "discord", "user:77")
    assert dm is not None and dm.type == "private"
    [sub] = await list_subscriptions(market.services.store, dm.id)
    assert sub.created_by == "77"
    # The channel got nothing; in the DM itself, /alerts lists it.
    assert await find_destination(market.services.store, "discord", "555") is None
    listed = await run(router, "/alerts", platform="discord", chat_id="dm-9", user_id="77")
    assert f"#{sub.id} BTC within 1% of a cluster of at least $50M" in listed.lines


async def test_alerts_list_with_buttons(router: CommandRouter, market: Market) -> None:
    empty = await run(router, "/alerts")
    assert empty.text.endswith(
        "No alerts in this chat yet. Try /alert cluster BTC 1% 50m, or /help alert."
    )
    for level in range(90_000, 90_010):
        await run(router, f"/alert cross BTC {level}")
        market.clock.now += 10  # stay under the command rate limit
    reply = await run(router, "/alerts")
    assert reply.title == "Alerts (10)"
    assert reply.lines[0].endswith("BTC crosses $90,000 either way")
    assert len(reply.buttons) == 5  # Discord's limit: 4 rows of alerts, 1 row to mute
    ids = [line.split()[0][1:] for line in reply.lines[:8]]
    data = [b.data for row in reply.buttons[:4] for b in row]
    assert data == [d for i in ids for d in (f"/unalert {i}", f"/alerts {i}")]
    assert reply.buttons[-1][0].data == "/mute 1h"
    assert "Buttons cover the first 8; /unalert <id> removes any." in reply.lines
    edit = await run(router, reply.buttons[0][1].data)
    assert edit.lines[-1] == "/alert cross BTC 90000 any"
    assert edit.buttons[0][0].data == reply.buttons[0][0].data


async def test_alerts_bad_id(router: CommandRouter) -> None:
    assert_specific_error(await run(router, "/alerts 99"), "There is no alert #99 in this chat")
    assert_specific_error(await run(router, "/alerts x"), "'x' is not an alert id")


async def test_unalert_in_group_creator_or_admin(router: CommandRouter, market: Market) -> None:
    await group(router, "/alert cross BTC 90000", "alice", False)
    dest = await find_destination(market.services.store, "telegram", "-100")
    assert dest is not None and dest.title == "Traders" and dest.type == "group"
    [sub] = await list_subscriptions(market.services.store, dest.id)
    before = await dump(market.services.store)
    refused = await group(router, f"/unalert {sub.id}", "bob", False)
    assert_specific_error(refused, "Only the alert's creator or a chat admin can remove it.")
    assert "Usage" not in refused.text
    assert await dump(market.services.store) == before
    none = await group(router, "/unalert all", "bob", False)
    assert none.text == "You have no alerts here to remove."
    ok = await group(router, f"/unalert #{sub.id}", "alice", False)
    assert ok.text == f"Removed alert #{sub.id}: BTC crosses $90,000 either way."
    assert await list_subscriptions(market.services.store, dest.id) == []
    await group(router, "/alert cross BTC 91000", "alice", False)
    admin = await group(router, "/unalert all", "carol", True)
    assert admin.text == "Removed 1 alert."


async def test_unalert_only_this_chats_alerts(router: CommandRouter, market: Market) -> None:
    await group(router, "/alert cross BTC 90000")
    dest = await find_destination(market.services.store, "telegram", "-100")
    assert dest is not None
    [sub] = await list_subscriptions(market.services.store, dest.id)
    before = await dump(market.services.store)
    reply = await run(router, f"/unalert {sub.id}", chat_id="other")
    assert_specific_error(reply, f"There is no alert #{sub.id} in this chat; /alerts lists them.")
    assert (await dump(market.services.store))[1] == before[1]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/unalert", "Say which alert"),
        ("/unalert 1 2", "Say which alert"),
        ("/unalert one", "'one' is not an alert id"),
    ],
)
async def test_unalert_bad_input(router: CommandRouter, line: str, message: str) -> None:
    assert_specific_error(await run(router, line), message, "Usage: /unalert <id|all>")
