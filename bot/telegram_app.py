"""The Telegram adapter: updates in, :class:`~bot.chat.Command` to the handler, replies out.

::

    pacer = Pacer(settings.pacing.telegram)          # shared by replies and broadcasts
    app = build_application(settings, token, router.handle, pacer, store, specs=COMMAND_SPECS)
    await start_application(app, settings)            # bot/telegram_run.py: polling or webhook
    senders.by_platform["telegram"] = TelegramSender(app.bot, store, pacer)
    ...
    await stop_application(app)

What it handles:

* every command of ``specs`` in messages and channel posts (``/cmd@otherbot`` is left alone),
  and in private chats any other command too, so the handler can point to /help;
* inline buttons: their callback data is a command line, run as if typed, answered in the chat;
* the bot's own membership (``my_chat_member``): added to a chat enables its destination,
  removed or blocked disables it, so alerts stop without failed sends first.

Who is an admin (:attr:`Command.is_admin`): everyone in a private chat; a channel post (only
admins can post); an anonymous admin (the message's ``sender_chat`` is the chat itself);
otherwise a ``getChatMember`` status of creator or administrator, cached for ``admin_ttl_s``,
and asked only for the commands whose answer depends on it (``CommandSpec.needs_admin_verdict``).

The bot token is never logged: errors pass :func:`bot.logs.redact`, and httpx (which logs
every request URL, token included, at INFO) is kept at WARNING.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeDefault,
    Chat,
    ChatMember,
    ChatMemberRestricted,
    Update,
    User,
)
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)
from telegram.ext import CommandHandler as TgCommandHandler

from alerts.store import (
    Store,
    disable_destination,
    enable_destination,
    find_destination,
    upsert_destination,
)
from bot.chat import ChatType, Command, CommandHandler, CommandSpec, Reply, split_command
from bot.logs import redact
from bot.pacing import Pacer
from bot.telegram_inbound import CommandMessage, addressed_to_us, chat_kind
from bot.telegram_render import Rendered, render
from bot.telegram_send import PhotoIds, send_reply
from core.config import Settings

__all__ = [
    "ALLOWED_UPDATES",
    "FAILED_TEXT",
    "AdminCache",
    "InlineAnswer",
    "TelegramAdapter",
    "TgApp",
    "adapter_of",
    "bot_commands",
    "build_application",
    "command_of",
]

log = logging.getLogger(__name__)

Ctx = ContextTypes.DEFAULT_TYPE
TgApp = Application[ExtBot[None], Ctx, dict[Any, Any], dict[Any, Any], dict[Any, Any], None]

ALLOWED_UPDATES = ("message", "channel_post", "callback_query", "my_chat_member")
ADMIN_STATUSES = (ChatMember.OWNER, ChatMember.ADMINISTRATOR)
PRESENT_STATUSES = (ChatMember.OWNER, ChatMember.ADMINISTRATOR, ChatMember.MEMBER)
# Updates handled at once: a slow /liqmap in one chat must not hold up the others.
CONCURRENT_UPDATES = 32
FAILED_TEXT = "Sorry, that failed on our side; it has been logged."
_ADAPTER: Final = "liqbot.telegram_adapter"  # its key in the Application's bot_data


def chat_type(chat: Chat) -> ChatType:
    return chat_kind(chat.type)


class AdminCache:
    """``getChatMember`` verdicts per (chat, user), kept ``ttl_s`` seconds.

    Promotions and demotions show up within the TTL; a failed lookup is not cached (and
    counts as not an admin).
    """

    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._seen: dict[tuple[int, int], tuple[float, bool]] = {}

    async def is_admin(self, bot: Bot, chat_id: int, user_id: int) -> bool:
        now = self.clock()
        hit = self._seen.get((chat_id, user_id))
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:
            log.warning("telegram getChatMember failed in chat %s: %s", chat_id, exc.message)
            return False
        verdict = member.status in ADMIN_STATUSES
        if len(self._seen) > 4096:  # bounded: drop what has expired
            self._seen = {k: v for k, v in self._seen.items() if v[0] > now}
        self._seen[(chat_id, user_id)] = (now + self.ttl_s, verdict)
        return verdict


def _user_name(user: User | None) -> str:
    if user is None:
        return ""
    return user.username or user.full_name


def command_of(text: str, chat: Chat, user: User | None, *, is_admin: bool) -> Command:
    """A Command from a command line typed (or pressed) in ``chat`` by ``user`` (None: an
    anonymous admin or a channel)."""
    return Command.parse(
        text,
        platform="telegram",
        chat_id=str(chat.id),
        chat_type=chat_type(chat),
        user_id=str(user.id) if user else "",
        user_name=_user_name(user),
        is_admin=is_admin,
        chat_title=chat.title or "",
    )


@dataclass(frozen=True)
class InlineAnswer:
    """A command handled for a webhook: ``call`` is the Bot API call to answer the update
    with (``{"method": "sendMessage", ...}``), None when the reply went through the API."""

    chat_key: str
    group: bool
    call: dict[str, Any] | None


def inline_call(
    chat_id: int, out: Rendered, reply_to: int | None, photo_id: str | None = None
) -> dict[str, Any] | None:
    """``out`` as one Bot API call: one text message, or a chart Telegram already holds
    (``photo_id``) with its caption. None for anything else."""
    call: dict[str, Any]
    if out.photo is not None:
        if photo_id is None or out.texts:
            return None
        call = {"method": "sendPhoto", "chat_id": chat_id, "photo": photo_id}
        if out.caption:
            call |= {"caption": out.caption, "parse_mode": "HTML"}
    elif len(out.texts) == 1:
        call = {"method": "sendMessage", "chat_id": chat_id, "text": out.texts[0]}
        call["parse_mode"] = "HTML"
    else:
        return None
    if out.silent:
        call["disable_notification"] = True
    if out.markup is not None:
        call["reply_markup"] = out.markup.to_dict()
    if reply_to:
        call["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
    return call


def bot_commands(specs: Sequence[CommandSpec], *, admin: bool) -> list[BotCommand]:
    """The command menu: everyone's commands, or (``admin``) all of them."""
    return [BotCommand(s.name, s.summary) for s in specs if admin or not s.admin_only]


class TelegramAdapter:
    """The update callbacks; :func:`build_application` wires them into an Application."""

    def __init__(
        self,
        handler: CommandHandler,
        pacer: Pacer,
        store: Store,
        specs: Sequence[CommandSpec],
        token: str,
        admins: AdminCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.handler = handler
        self.pacer = pacer
        self.store = store
        self.specs = tuple(specs)
        self.admins = admins
        self.clock = clock
        self._token = token
        self._names = frozenset(s.name.lower() for s in self.specs)
        # Only these need getChatMember in a group (see CommandSpec.asks_admin).
        self._asks_admin = frozenset(s.name.lower() for s in self.specs if s.needs_admin_verdict)
        self.photos = PhotoIds()  # charts Telegram holds: sent again by file_id

    def install(self, app: TgApp) -> None:
        messages = filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST
        names = [s.name for s in self.specs]
        private = filters.COMMAND & filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
        app.add_handler(TgCommandHandler(names, self.on_command, filters=messages))
        app.add_handler(MessageHandler(private, self.on_command))
        app.add_handler(CallbackQueryHandler(self.on_callback))
        app.add_handler(ChatMemberHandler(self.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
        app.add_error_handler(self.on_error)

    async def post_init(self, app: TgApp) -> None:
        """Publish the command menu: admin-only commands only in administrators' menus."""
        await app.bot.set_my_commands(
            bot_commands(self.specs, admin=False), scope=BotCommandScopeDefault()
        )
        await app.bot.set_my_commands(
            bot_commands(self.specs, admin=True), scope=BotCommandScopeAllChatAdministrators()
        )

    async def sender_is_admin(self, bot: Bot, msg: CommandMessage) -> bool:
        """The sender's admin verdict, asked of Telegram only for a command that uses it: in a
        group, any other command gets False without a getChatMember call."""
        if msg.chat_type in (Chat.PRIVATE, Chat.CHANNEL):
            return True
        if msg.sender_chat_id is not None:
            # Posting as the group itself is an anonymous admin; as another chat, nobody.
            return msg.sender_chat_id == msg.chat_id
        if msg.user_id is None or split_command(msg.text)[0] not in self._asks_admin:
            return False
        return await self.admins.is_admin(bot, msg.chat_id, msg.user_id)

    async def _reply(self, bot: Bot, chat: Chat, reply: Reply, reply_to: int | None) -> None:
        await self._reply_to(bot, chat.id, chat.type != Chat.PRIVATE, reply, reply_to)

    async def _reply_to(
        self, bot: Bot, chat_id: int, group: bool, reply: Reply, reply_to: int | None
    ) -> None:
        await send_reply(
            bot,
            chat_id,
            reply,
            self.pacer,
            lane="interactive",
            group=group,
            reply_to=reply_to,
            photo_ids=self.photos,
        )

    async def _answer(self, bot: Bot, msg: CommandMessage) -> Reply:
        cmd = Command.parse(
            msg.text,
            platform="telegram",
            chat_id=str(msg.chat_id),
            chat_type=msg.kind,
            user_id=str(msg.user_id) if msg.user_id is not None else "",
            user_name=msg.user_name,
            is_admin=await self.sender_is_admin(bot, msg),
            chat_title=msg.chat_title,
        )
        return await self.handler(cmd)

    async def on_command(self, update: Update, context: Ctx) -> None:
        message = update.effective_message
        if message is None or not message.text:
            return
        msg = CommandMessage.of_message(message, update.update_id)
        reply = await self._answer(context.bot, msg)
        await self._reply(context.bot, message.chat, reply, msg.quote)

    def takes(self, msg: CommandMessage, bot: Bot) -> bool:
        """Whether this adapter's command handlers would take ``msg`` (``/cmd@other`` not)."""
        return addressed_to_us(msg, self._names, bot.username)

    async def answer_inline(self, msg: CommandMessage, bot: Bot) -> InlineAnswer:
        """A webhook's command, answered: a one-message reply as the call to put in the HTTP
        response, anything longer through the Bot API."""
        group = msg.chat_type != Chat.PRIVATE
        try:
            reply = await self._answer(bot, msg)
        except Exception as exc:  # what on_error does for polled updates
            log.error(
                "telegram update %s failed: %s",
                msg.update_id,
                redact(f"{type(exc).__name__}: {exc}", (self._token,)),
                exc_info=exc,
            )
            reply = Reply.of(FAILED_TEXT, error=True)
        out = render(reply)
        photo_id = await self.photos.get_or_wait(out.photo) if out.photo is not None else None
        call = inline_call(msg.chat_id, out, msg.quote, photo_id)
        if call is None:
            try:
                await self._reply_to(bot, msg.chat_id, group, reply, msg.quote)
            except TelegramError as exc:  # answered 200 all the same: a retry would repeat it
                log.warning("telegram: reply to chat %s failed: %s", msg.chat_id, exc.message)
        return InlineAnswer(str(msg.chat_id), group, call)

    async def on_callback(self, update: Update, context: Ctx) -> None:
        query = update.callback_query
        if query is None:
            return
        await query.answer()  # stops the button's spinner; not a chat message, so not paced
        if not query.data or query.message is None:
            return
        chat = query.message.chat
        is_admin = chat.type == Chat.PRIVATE or (
            split_command(query.data)[0] in self._asks_admin
            and await self.admins.is_admin(context.bot, chat.id, query.from_user.id)
        )
        cmd = command_of(query.data, chat, query.from_user, is_admin=is_admin)
        if cmd.name:
            await self._reply(context.bot, chat, await self.handler(cmd), None)

    async def on_my_chat_member(self, update: Update, context: Ctx) -> None:
        change = update.my_chat_member
        if change is None:
            return
        chat, member = change.chat, change.new_chat_member
        can_send = member.status in PRESENT_STATUSES or (
            isinstance(member, ChatMemberRestricted) and member.can_send_messages
        )
        if can_send:
            now_ms = int(self.clock() * 1000)
            where = (str(chat.id), chat_type(chat), now_ms, chat.title or "")
            dest = await upsert_destination(self.store, "telegram", *where)
            if not dest.enabled:
                await enable_destination(self.store, dest.id)
                log.info("telegram chat %s: bot is back, destination %s enabled", chat.id, dest.id)
            return
        found = await find_destination(self.store, "telegram", str(chat.id))
        if found is None or not found.enabled:
            return
        if chat.type == Chat.PRIVATE:
            reason = "the user blocked the bot"
        elif member.status == ChatMember.RESTRICTED:
            reason = "the bot may not send messages in this chat"
        else:
            reason = f"the bot was removed from the chat ({member.status})"
        await disable_destination(self.store, found.id, reason)
        log.info("telegram chat %s: %s; destination %s disabled", chat.id, reason, found.id)

    async def on_error(self, update: object, context: Ctx) -> None:
        """Log the error (token redacted); a person whose command failed is told so."""
        error = context.error
        update_id = update.update_id if isinstance(update, Update) else None
        log.error(
            "telegram update %s failed: %s",
            update_id,
            redact(f"{type(error).__name__}: {error}", (self._token,)),
            exc_info=error,
        )
        if isinstance(error, TelegramError) or not isinstance(update, Update):
            return
        chat = update.effective_chat
        if chat is None:
            return
        try:
            await self._reply(context.bot, chat, Reply.of(FAILED_TEXT, error=True), None)
        except TelegramError as exc:
            log.warning("telegram: could not report a failure to chat %s: %s", chat.id, exc.message)


def build_application(
    settings: Settings,
    token: str,
    handler: CommandHandler,
    pacer: Pacer,
    store: Store,
    *,
    specs: Sequence[CommandSpec],
    admin_ttl_s: float = 60.0,
) -> TgApp:
    """The PTB Application for ``token`` at ``settings.telegram.base_url``, handlers wired.

    Nothing is contacted until :func:`bot.telegram_run.start_application`.
    """
    # httpx logs each request URL, with the token in it, at INFO.
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    adapter = TelegramAdapter(handler, pacer, store, specs, token, AdminCache(admin_ttl_s))
    tg = settings.telegram
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(tg.base_url)
        .base_file_url(tg.base_file_url)
        .job_queue(None)
        .concurrent_updates(CONCURRENT_UPDATES)
        .post_init(adapter.post_init)
        .build()
    )
    adapter.install(app)
    app.bot_data[_ADAPTER] = adapter
    return app


def adapter_of(app: TgApp) -> TelegramAdapter:
    """The adapter :func:`build_application` installed in ``app``."""
    adapter = app.bot_data[_ADAPTER]
    assert isinstance(adapter, TelegramAdapter)
    return adapter
