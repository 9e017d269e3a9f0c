"""Discord API v10 payloads for the fake server (tests/fakes/discord_api.py) and its tests.

Only the fields discord.py 2.7 reads, with the values a real server would send; the required
ones (``attachment_size_limit`` in an interaction, ``recipients`` of a DM) are noted in
/work/shared/reference/offline-testing.md §2. Ids are snowflake-sized (18+ digits), so that a
mention such as ``<@id>`` in a test string is a real one.
"""

from __future__ import annotations

import itertools
from typing import Any

Json = dict[str, Any]

APP_ID = 710_000_000_000_000_001
BOT_ID = 710_000_000_000_000_002
GUILD_ID = 720_000_000_000_000_001
CHANNEL_ID = 730_000_000_000_000_001
MANAGE_GUILD = 0x20
SILENT = 4096  # message flag: SUPPRESS_NOTIFICATIONS
SEND_MESSAGES = 0x800
JOINED = "2026-01-01T00:00:00+00:00"

_ids = itertools.count(900_000_000_000_000_000)


def snowflake() -> int:
    """A fresh id (messages, interactions, DM channels)."""
    return next(_ids)


def user(user_id: int, name: str, *, bot: bool = False) -> Json:
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
        "bot": bot,
    }


BOT_USER = user(BOT_ID, "liqbot", bot=True)


def application(app_id: int = APP_ID) -> Json:
    return {
        "id": str(app_id),
        "name": "liqbot",
        "description": "",
        "icon": None,
        "bot_public": True,
        "bot_require_code_grant": False,
        "verify_key": "00",
        "owner": user(700_000_000_000_000_001, "owner"),
        "flags": 0,
        "team": None,
    }


def text_channel(
    channel_id: int = CHANNEL_ID, guild_id: int = GUILD_ID, name: str = "alerts"
) -> Json:
    return {
        "id": str(channel_id),
        "type": 0,
        "guild_id": str(guild_id),
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
    }


def dm_channel(channel_id: int, recipient: Json) -> Json:
    return {"id": str(channel_id), "type": 1, "recipients": [recipient], "last_message_id": None}


def guild(guild_id: int = GUILD_ID, channels: tuple[Json, ...] = ()) -> Json:
    """A GUILD_CREATE payload: the server, its @everyone role and channels."""
    everyone = {
        "id": str(guild_id),
        "name": "@everyone",
        "permissions": str(SEND_MESSAGES),
        "position": 0,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
    }
    return {
        "id": str(guild_id),
        "name": "Derivs",
        "icon": None,
        "owner_id": "700000000000000001",
        "roles": [everyone],
        "channels": list(channels),
        "threads": [],
        "members": [],
        "member_count": 2,
        "features": [],
        "emojis": [],
        "stickers": [],
        "unavailable": False,
        "large": False,
        "joined_at": JOINED,
        "voice_states": [],
        "presences": [],
    }


def message(
    channel_id: int, author: Json, body: Json, attachments: list[Json], *, webhook: int | None
) -> Json:
    """The message a send created, echoing what was sent."""
    data: Json = {
        "id": str(snowflake()),
        "channel_id": str(channel_id),
        "author": author,
        "content": body.get("content") or "",
        "timestamp": JOINED,
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": attachments,
        "embeds": body.get("embeds") or [],
        "components": body.get("components") or [],
        "pinned": False,
        "type": 0,
        "flags": body.get("flags", 0),
    }
    if webhook is not None:
        data["webhook_id"] = str(webhook)
    return data


def _option(name: str, value: object, focused: bool = False) -> Json:
    kind = 10 if isinstance(value, float | int) else 3
    option: Json = {"name": name, "type": kind, "value": value}
    if focused:
        option["focused"] = True
    return option


def interaction(
    kind: int,
    data: Json,
    *,
    user_id: int,
    permissions: int = SEND_MESSAGES,
    dm: bool = False,
    channel_id: int = CHANNEL_ID,
    guild_id: int = GUILD_ID,
    app_id: int = APP_ID,
    message: Json | None = None,
) -> Json:
    """An INTERACTION_CREATE payload from ``user_id``: a server member with ``permissions``
    (a channel in ``guild_id``), or with ``dm`` the user in a DM with the bot."""
    person = user(user_id, f"user{user_id % 1000}")
    iid = snowflake()
    payload: Json = {
        "id": str(iid),
        "application_id": str(app_id),
        "type": kind,
        "token": f"itok-{iid}",
        "version": 1,
        "attachment_size_limit": 8 * 1024 * 1024,
        "app_permissions": str(SEND_MESSAGES),
        "entitlements": [],
        "locale": "en-US",
        "data": data,
    }
    if dm:
        payload["channel"] = dm_channel(channel_id, person)
        payload["channel_id"] = str(channel_id)
        payload["user"] = person
        payload["context"] = 1
        payload["authorizing_integration_owners"] = {"0": str(user_id)}
    else:
        payload["channel"] = text_channel(channel_id, guild_id)
        payload["channel_id"] = str(channel_id)
        payload["guild_id"] = str(guild_id)
        payload["guild_locale"] = "en-US"
        payload["member"] = {
            "user": person,
            "roles": [],
            "joined_at": JOINED,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": str(permissions),
        }
        payload["context"] = 0
        payload["authorizing_integration_owners"] = {"0": str(guild_id)}
    if message is not None:
        payload["message"] = message
    return payload


def slash(name: str, options: dict[str, object] | None = None, **where: Any) -> Json:
    """``/name option:value ...`` (strings as type 3, numbers as type 10)."""
    data = {
        "id": str(snowflake()),
        "name": name,
        "type": 1,
        "options": [_option(k, v) for k, v in (options or {}).items()],
    }
    return interaction(2, data, **where)


def autocomplete(
    name: str, focused: str, typed: str, options: dict[str, object] | None = None, **where: Any
) -> Json:
    """The user typing ``typed`` into option ``focused`` of ``/name``."""
    opts = [_option(k, v) for k, v in (options or {}).items()]
    opts.append(_option(focused, typed, focused=True))
    data = {"id": str(snowflake()), "name": name, "type": 1, "options": opts}
    return interaction(4, data, **where)


def button_press(custom_id: str, **where: Any) -> Json:
    """A press of the button ``custom_id`` on a message the bot sent earlier."""
    channel_id = int(where.get("channel_id", CHANNEL_ID))
    msg = message(channel_id, BOT_USER, {}, [], webhook=None)
    data = {"custom_id": custom_id, "component_type": 2}
    return interaction(3, data, message=msg, **where)
