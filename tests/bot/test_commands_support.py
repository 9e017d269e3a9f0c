"""Helpers shared by the test_commands* modules (no tests here)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from alerts.store import Store
from alerts.store.models import DestinationRow, SubscriptionRow
from bot.chat import BUTTON_DATA_MAX, ChatType, Command, Platform, Reply
from bot.commands import GENERIC_ERROR, CommandRouter


async def run(
    router: CommandRouter,
    line: str,
    *,
    platform: Platform = "console",
    chat_id: str = "console",
    chat_type: ChatType = "private",
    user_id: str = "u1",
    is_admin: bool = True,
    chat_title: str = "",
) -> Reply:
    """The reply to a typed command line, checked for what every reply must satisfy."""
    cmd = Command.parse(
        line,
        platform=platform,
        chat_id=chat_id,
        chat_type=chat_type,
        user_id=user_id,
        is_admin=is_admin,
        chat_title=chat_title,
    )
    reply = await router.handle(cmd)
    check_reply(reply)
    return reply


def check_reply(reply: Reply) -> None:
    assert reply.text.strip(), "every reply says something"
    for row in reply.buttons:
        for b in row:
            assert len(b.data.encode()) <= BUTTON_DATA_MAX
            assert b.data.startswith("/")


def assert_specific_error(reply: Reply, *fragments: str) -> None:
    """An error reply with a specific message (not the generic one) containing ``fragments``."""
    assert reply.error, reply.text
    assert GENERIC_ERROR not in reply.text
    for f in fragments:
        assert f in reply.text, (f, reply.text)


async def dump(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every destination and subscription row, to check that a command changed nothing."""
    async with store.read() as conn:
        dests = [tuple(r) for r in await conn.execute(select(DestinationRow.__table__))]
        subs = [tuple(r) for r in await conn.execute(select(SubscriptionRow.__table__))]
    return sorted(dests), sorted(subs)
