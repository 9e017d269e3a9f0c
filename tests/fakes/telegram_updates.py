"""Bot API objects as JSON dicts, for the fake Telegram server and webhook tests, and
Telegram's HTML rules (:func:`visible_length`).

Only the fields python-telegram-bot needs to build its objects (a Message needs
``message_id``, ``date`` and ``chat``; a command needs a ``bot_command`` entity, or
``CommandHandler`` does not match), plus the ones the adapter reads.
"""

from __future__ import annotations

import time
from html.parser import HTMLParser
from typing import Any

Json = dict[str, Any]

# Telegram's stand-in sender for an admin posting anonymously as the group.
ANONYMOUS_ADMIN_BOT = {
    "id": 1087968824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}
CHAT_TYPES = ("private", "group", "supergroup", "channel")


def now() -> int:
    return int(time.time())


def user(user_id: int, first_name: str = "Tester", username: str | None = None) -> Json:
    out: Json = {"id": user_id, "is_bot": False, "first_name": first_name}
    if username:
        out["username"] = username
    return out


def chat(chat_id: int, chat_type: str = "private", title: str | None = None) -> Json:
    if chat_type not in CHAT_TYPES:
        raise ValueError(f"chat type {chat_type!r} is not one of {CHAT_TYPES}")
    out: Json = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        out["first_name"] = title or "Tester"
    else:
        out["title"] = title or f"chat {chat_id}"
    return out


def command_entities(text: str) -> list[Json]:
    """The ``bot_command`` entity of a leading ``/command`` (none for other text)."""
    if not text.startswith("/"):
        return []
    return [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]


def message(
    message_id: int,
    chat_obj: Json,
    text: str,
    *,
    from_user: Json | None = None,
    sender_chat: Json | None = None,
) -> Json:
    out: Json = {"message_id": message_id, "date": now(), "chat": chat_obj, "text": text}
    entities = command_entities(text)
    if entities:
        out["entities"] = entities
    if from_user is not None:
        out["from"] = from_user
    if sender_chat is not None:
        out["sender_chat"] = sender_chat
    return out


def chat_member(member: Json, status: str) -> Json:
    """A ChatMember of ``status`` (creator, administrator, member, restricted, left, kicked)."""
    out: Json = {"user": member, "status": status}
    if status == "creator":
        out["is_anonymous"] = False
    elif status == "administrator":
        out.update(
            dict.fromkeys(
                (
                    "can_be_edited",
                    "is_anonymous",
                    "can_manage_video_chats",
                    "can_restrict_members",
                    "can_promote_members",
                    "can_post_stories",
                    "can_edit_stories",
                    "can_delete_stories",
                ),
                False,
            )
        )
        out.update(
            dict.fromkeys(
                (
                    "can_manage_chat",
                    "can_delete_messages",
                    "can_change_info",
                    "can_invite_users",
                    "can_post_messages",
                ),
                True,
            )
        )
    elif status == "kicked":
        out["until_date"] = 0
    elif status not in ("member", "left"):
        raise ValueError(f"unsupported chat member status {status!r}")
    return out


def my_chat_member(
    chat_obj: Json, by: Json, bot_user: Json, old_status: str, new_status: str
) -> Json:
    """The bot's own membership changed in ``chat_obj`` (added, promoted, kicked, blocked)."""
    return {
        "chat": chat_obj,
        "from": by,
        "date": now(),
        "old_chat_member": chat_member(bot_user, old_status),
        "new_chat_member": chat_member(bot_user, new_status),
    }


def callback_query(query_id: str, from_user: Json, msg: Json, data: str) -> Json:
    return {
        "id": query_id,
        "from": from_user,
        "chat_instance": f"ci-{msg['chat']['id']}",
        "message": msg,
        "data": data,
    }


# Telegram's HTML parse mode: the tags it accepts (anything else is a 400).
_TAGS = "b strong i em u ins s strike del span tg-spoiler a code pre blockquote tg-emoji"
ALLOWED_TAGS = frozenset(_TAGS.split(" "))


class _TagCheck(HTMLParser):
    """Collects what Telegram's HTML parser would refuse, and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.errors: list[str] = []
        self.stack: list[str] = []
        self.visible: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.errors.append(f"unsupported start tag {tag!r}")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unmatched end tag {tag!r}")

    def handle_data(self, data: str) -> None:
        self.visible.append(data)


def visible_length(text: str, parse_mode: str | None) -> tuple[int, str | None]:
    """The UTF-16 length Telegram counts, and why the markup would be refused (or None)."""
    if parse_mode != "HTML":
        return len(text.encode("utf-16-le")) // 2, None
    check = _TagCheck()
    check.feed(text)
    check.close()
    if check.stack:
        check.errors.append(f"unclosed tag {check.stack[-1]!r}")
    shown = "".join(check.visible)  # character references already decoded
    error = f"Bad Request: can't parse entities: {check.errors[0]}" if check.errors else None
    return len(shown.encode("utf-16-le")) // 2, error
