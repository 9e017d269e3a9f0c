"""A typed command message, from a PTB ``Message`` or straight from a webhook's JSON.

Building PTB's ``Update`` from JSON costs about as much as answering most commands, so the
webhook reads command messages from the raw update (:meth:`CommandMessage.of_update`) and
leaves everything else (buttons, membership, odd shapes) to PTB. Both paths meet here, so who
is an admin and which commands are ours is decided once (:func:`addressed_to_us`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from telegram import Chat, Message, MessageEntity

from bot.chat import ChatType

__all__ = ["CommandMessage", "addressed_to_us", "chat_kind"]


def chat_kind(telegram_type: str) -> ChatType:
    if telegram_type == Chat.PRIVATE:
        return "private"
    return "channel" if telegram_type == Chat.CHANNEL else "group"


@dataclass(frozen=True)
class CommandMessage:
    """What the command layer needs of a message whose text starts with a bot command."""

    update_id: int
    message_id: int
    text: str
    chat_id: int
    chat_type: str  # Telegram's: private, group, supergroup, channel
    chat_title: str
    user_id: int | None  # None: a channel post, or an admin posting as the group
    user_name: str
    sender_chat_id: int | None
    command_length: int  # of the leading bot_command entity, '/name@bot' included

    @property
    def kind(self) -> ChatType:
        return chat_kind(self.chat_type)

    @property
    def quote(self) -> int | None:
        """The message to reply to: in groups, so the reply is tied to its question."""
        return self.message_id if self.chat_type != Chat.PRIVATE else None

    @classmethod
    def of_message(cls, message: Message, update_id: int = 0) -> CommandMessage:
        first = message.entities[0] if message.entities else None
        length = first.length if first is not None and first.offset == 0 else 0
        user = None if message.sender_chat is not None else message.from_user
        chat = message.chat
        return cls(
            update_id=update_id,
            message_id=message.message_id,
            text=message.text or "",
            chat_id=chat.id,
            chat_type=chat.type,
            chat_title=chat.title or "",
            user_id=user.id if user is not None else None,
            user_name=(user.username or user.full_name) if user is not None else "",
            sender_chat_id=message.sender_chat.id if message.sender_chat is not None else None,
            command_length=length,
        )

    @classmethod
    def of_update(cls, data: Mapping[str, Any]) -> CommandMessage | None:
        """The command message of a raw update: a message or channel post whose text opens
        with a bot_command entity. None for anything else or any unexpected shape (PTB then
        parses it the slow, thorough way)."""
        try:
            key = "message" if "message" in data else "channel_post"
            msg = data[key]
            text, entities, chat = msg["text"], msg["entities"], msg["chat"]
            first = entities[0]
            if first["type"] != MessageEntity.BOT_COMMAND or first["offset"] != 0:
                return None
            sender = msg.get("sender_chat")
            user = msg.get("from") if sender is None else None
            out = cls(
                update_id=_int(data["update_id"]),
                message_id=_int(msg["message_id"]),
                text=_str(text),
                chat_id=_int(chat["id"]),
                chat_type=_str(chat["type"]),
                chat_title=_str(chat.get("title") or ""),
                user_id=_int(user["id"]) if user is not None else None,
                user_name=_user_name(user) if user is not None else "",
                sender_chat_id=_int(sender["id"]) if sender is not None else None,
                command_length=_int(first["length"]),
            )
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        return out if out.command_length > 1 else None


def addressed_to_us(msg: CommandMessage, names: Collection[str], bot_username: str | None) -> bool:
    """Whether the command handlers take ``msg``, as PTB's would: one of ``names`` (any chat)
    or, in a private chat, any command; ``/cmd@otherbot`` is never ours."""
    if msg.chat_type == Chat.PRIVATE:
        return True
    name, _, target = msg.text[1 : msg.command_length].partition("@")
    if target and (bot_username is None or target.lower() != bot_username.lower()):
        return False
    return name.lower() in names


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _user_name(user: Mapping[str, Any]) -> str:
    username = user.get("username")
    if username:
        return _str(username)
    first, last = _str(user.get("first_name") or ""), _str(user.get("last_name") or "")
    return f"{first} {last}".strip()
