"""The outbox :data:`~alerts.delivery.Sender` for Discord (DESIGN §7).

A destination's ``chat_id`` is a channel id (a server channel, a thread, a DM channel) or
``user:<user id>`` for a user's DMs (the DM channel is opened on first use). Every message
waits for the pacer's broadcast lane, so interactive replies never queue behind it.

Errors map to the outbox's outcomes: Forbidden (kicked, DMs closed) and NotFound (channel or
user gone) are definitive; a rate limit is transient with its ``retry_after`` (and backs the
pacer off); 5xx, network and any other HTTP errors are transient (a payload we got wrong is
no reason to disable a chat).
"""

from __future__ import annotations

import warnings

import aiohttp

from alerts.delivery import SendResult
from alerts.notifications import GroupedMessage
from alerts.store import Destination
from bot.chat import notification_reply
from bot.discord_render import render
from bot.pacing import Pacer

with warnings.catch_warnings():  # discord.py 2.7 imports audioop, deprecated since 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord


__all__ = ["USER_PREFIX", "DiscordSender"]

USER_PREFIX = "user:"


def _retry_after(exc: discord.HTTPException) -> float | None:
    """A 429's wait, from its header (discord.py keeps only the status and the message)."""
    header = getattr(exc.response, "headers", {}).get("Retry-After")
    try:
        return None if header is None else float(header)
    except ValueError:
        return None


class _Unsendable(Exception):
    """A destination that no retry can reach (a malformed id, a category channel)."""


class DiscordSender:
    """``await sender(destination, message) -> SendResult``; see the module docstring."""

    def __init__(self, client: discord.Client, pacer: Pacer) -> None:
        self.client = client
        self.pacer = pacer

    async def _target(self, chat_id: str) -> discord.abc.Messageable:
        """The channel to send to; raises :class:`_Unsendable` for an id that can never work."""
        is_user = chat_id.startswith(USER_PREFIX)
        try:
            snowflake = int(chat_id.removeprefix(USER_PREFIX))
        except ValueError:
            raise _Unsendable(f"bad discord chat id {chat_id!r}") from None
        if is_user:
            user = self.client.get_user(snowflake) or await self.client.fetch_user(snowflake)
            return user.dm_channel or await user.create_dm()
        channel = self.client.get_channel(snowflake) or await self.client.fetch_channel(snowflake)
        if not isinstance(channel, discord.abc.Messageable):
            raise _Unsendable(f"discord channel {snowflake} cannot hold messages")
        return channel

    async def __call__(self, dest: Destination, msg: GroupedMessage) -> SendResult:
        try:
            target = await self._target(dest.chat_id)
            group = dest.type != "private"
            for message in render(notification_reply(msg)):
                async with self.pacer.slot(dest.chat_id, lane="broadcast", group=group):
                    await target.send(**message.send_kwargs())  # type: ignore[call-overload]
        except _Unsendable as exc:
            return SendResult.failed(str(exc))
        except (discord.Forbidden, discord.NotFound) as exc:
            return SendResult.failed(f"{exc.status} {exc.text or type(exc).__name__}")
        except discord.RateLimited as exc:
            self.pacer.backoff("broadcast", dest.chat_id, exc.retry_after)
            return SendResult.transient("rate limited", exc.retry_after)
        except discord.HTTPException as exc:
            if exc.status == 429:
                wait = _retry_after(exc)
                if wait is not None:
                    self.pacer.backoff("broadcast", dest.chat_id, wait)
                return SendResult.transient("rate limited", wait)
            return SendResult.transient(f"{exc.status} {exc.text or type(exc).__name__}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return SendResult.transient(f"{type(exc).__name__}: {exc}")
        return SendResult.sent()
