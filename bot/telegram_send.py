"""Sending a Reply to a Telegram chat, paced, and the outbox :data:`~alerts.delivery.Sender`.

Every message goes through the pacer first (DESIGN §7): interactive replies in their own lane,
which the pacer serves before broadcasts, so a person never waits behind an alert burst.

Errors, as python-telegram-bot raises them (``BadRequest`` and ``TimedOut`` are
``NetworkError``s, so the order of the ``except`` clauses matters)::

    TelegramError
    ├── RetryAfter      429: the pacer backs the chat off; a reply is retried once, an outbox
    │                   message is a transient failure due again after retry_after
    ├── Forbidden       403 blocked/kicked: definitive (the drain disables after repeats)
    ├── ChatMigrated    the group became a supergroup: move the destination, send there once
    ├── NetworkError
    │   ├── BadRequest  "chat not found" and friends: definitive; any other: transient
    │   └── TimedOut    transient (the message may have arrived: delivery is at least once)
    └── (others)        transient: a bad token or a conflict is no reason to drop a chat
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator

from telegram import Bot, Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    RetryAfter,
    TelegramError,
)

from alerts.delivery import SendResult
from alerts.notifications import GroupedMessage
from alerts.store import Destination, Store, migrate_destination
from bot.chat import Reply, notification_reply
from bot.pacing import Lane, Pacer
from bot.telegram_render import render

__all__ = ["PhotoIds", "TelegramSender", "result_of", "retry_after_s", "send_reply"]

log = logging.getLogger(__name__)

# Lower-cased BadRequest descriptions that mean the chat cannot receive anything from us.
DEFINITIVE_BAD_REQUESTS = (
    "chat not found",
    "user is deactivated",
    "bot was kicked",
    "bot is not a member",
    "not enough rights to send",
    "have no rights to send",
    "need administrator rights",
    "chat_write_forbidden",
)


def retry_after_s(exc: RetryAfter) -> float:
    """The wait a 429 asks for, in seconds: PTB 22 gives an int, or a timedelta with
    ``PTB_TIMEDELTA=1`` (the coming default, which silences its deprecation warning)."""
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


async def _paced(
    pacer: Pacer, chat_key: str, lane: Lane, group: bool, call: Callable[[], Awaitable[Message]]
) -> Message:
    """One API call after the pacer allows it; a 429 backs the chat off (and, for a reply,
    is retried once after the pacer lets it through again)."""
    try:
        async with pacer.slot(chat_key, lane=lane, group=group):
            return await call()
    except RetryAfter as exc:
        pacer.backoff(lane, chat_key, retry_after_s(exc))
        if lane != "interactive":
            raise
        log.info("telegram 429 on a reply to chat %s; retrying once after the backoff", chat_key)
    async with pacer.slot(chat_key, lane=lane, group=group):
        return await call()


class PhotoIds:
    """The file_ids Telegram gave our uploaded charts, by content, at most ``maxsize`` (least
    recently used dropped). A chart sent again goes by id: no upload, and it fits in a
    webhook's answer. A chart is drawn once per map, so many people get the same bytes.

    One upload per chart: while one is in flight, others asking for the same chart wait for
    its id (``wait_s`` at most) instead of uploading it too. A burst of /liqmap right after a
    new map would otherwise upload it once per person until the first upload returned.
    """

    def __init__(self, maxsize: int = 256, wait_s: float = 10.0) -> None:
        self.maxsize = maxsize
        self.wait_s = wait_s
        self._ids: OrderedDict[bytes, str] = OrderedDict()
        self._uploads: dict[bytes, asyncio.Future[str | None]] = {}

    @staticmethod
    def _key(png: bytes) -> bytes:
        return hashlib.sha1(png, usedforsecurity=False).digest()

    def get(self, png: bytes) -> str | None:
        return self._get(self._key(png))

    def _get(self, key: bytes) -> str | None:
        found = self._ids.get(key)
        if found is not None:
            self._ids.move_to_end(key)
        return found

    async def get_or_wait(self, png: bytes) -> str | None:
        """``get``, or the id an upload of ``png`` in flight gets (None if it fails or takes
        longer than ``wait_s``: then the caller uploads)."""
        key = self._key(png)
        found = self._get(key)
        upload = self._uploads.get(key) if found is None else None
        if upload is None:
            return found
        try:
            return await asyncio.wait_for(asyncio.shield(upload), self.wait_s)
        except TimeoutError:
            return None

    @contextlib.contextmanager
    def uploading(self, png: bytes) -> Iterator[None]:
        """Around an upload of ``png``: ``get_or_wait`` callers wait for its ``put``."""
        key = self._key(png)
        if key in self._uploads:  # a slow one still runs (its waiters gave up): leave it
            yield
            return
        upload: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._uploads[key] = upload
        try:
            yield
        finally:
            del self._uploads[key]
            if not upload.done():
                upload.set_result(self._ids.get(key))  # None: failed, the waiters upload

    def put(self, png: bytes, file_id: str) -> None:
        key = self._key(png)
        self._ids[key] = file_id
        self._ids.move_to_end(key)
        while len(self._ids) > self.maxsize:
            self._ids.popitem(last=False)
        upload = self._uploads.get(key)
        if upload is not None and not upload.done():
            upload.set_result(file_id)

    def forget(self, png: bytes) -> None:
        self._ids.pop(self._key(png), None)


async def send_reply(
    bot: Bot,
    chat_id: str | int,
    reply: Reply,
    pacer: Pacer,
    *,
    lane: Lane,
    group: bool,
    reply_to: int | None = None,
    photo_ids: PhotoIds | None = None,
) -> list[Message]:
    """Send ``reply`` to ``chat_id`` as HTML messages (photo first, buttons on the last one);
    raises the TelegramError of the first message that failed. With ``photo_ids``, a chart
    sent before goes by its file_id, and one being uploaded waits for that upload's id."""
    out = render(reply)
    key = str(chat_id)
    quote = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
    sent: list[Message] = []

    def last() -> bool:
        return len(sent) == out.count - 1

    if out.photo is not None:
        photo = out.photo

        known = await photo_ids.get_or_wait(photo) if photo_ids is not None else None

        async def send_photo(by_id: str | None = known) -> Message:
            return await bot.send_photo(
                chat_id,
                by_id or photo,
                caption=out.caption,
                filename=None if by_id else out.photo_name,
                parse_mode=ParseMode.HTML,
                disable_notification=out.silent,
                reply_markup=out.markup if last() else None,
                reply_parameters=quote,
            )

        async def upload() -> Message:
            if photo_ids is None:
                return await _paced(pacer, key, lane, group, lambda: send_photo(None))
            with photo_ids.uploading(photo):
                message = await _paced(pacer, key, lane, group, lambda: send_photo(None))
                if message.photo:
                    photo_ids.put(photo, message.photo[-1].file_id)  # the largest size
                return message

        by_id: Message | None = None
        if known is not None and photo_ids is not None:
            try:
                by_id = await _paced(pacer, key, lane, group, send_photo)
            except BadRequest:
                photo_ids.forget(photo)  # an id Telegram no longer knows: upload it again
        sent.append(by_id or await upload())
    for text in out.texts:

        async def send_text(text: str = text) -> Message:
            return await bot.send_message(
                chat_id,
                text,
                parse_mode=ParseMode.HTML,
                disable_notification=out.silent,
                reply_markup=out.markup if last() else None,
                reply_parameters=quote if not sent else None,
            )

        sent.append(await _paced(pacer, key, lane, group, send_text))
    return sent


def result_of(exc: TelegramError) -> SendResult:
    """The delivery outcome a Telegram error means (see the module docstring)."""
    error = f"{type(exc).__name__}: {exc.message}"
    if isinstance(exc, RetryAfter):
        return SendResult.transient(error, retry_after_s(exc))
    if isinstance(exc, Forbidden):
        return SendResult.failed(error)
    if isinstance(exc, BadRequest):
        text = exc.message.lower()
        if any(reason in text for reason in DEFINITIVE_BAD_REQUESTS):
            return SendResult.failed(error)
    return SendResult.transient(error)


class TelegramSender:
    """The outbox Sender for Telegram destinations (``alerts.delivery.drain(store, sender)``)."""

    def __init__(self, bot: Bot, store: Store, pacer: Pacer) -> None:
        self.bot = bot
        self.store = store
        self.pacer = pacer

    async def _send(self, chat_id: str, reply: Reply, group: bool) -> None:
        await send_reply(self.bot, chat_id, reply, self.pacer, lane="broadcast", group=group)

    async def __call__(self, dest: Destination, msg: GroupedMessage) -> SendResult:
        reply = notification_reply(msg)
        group = dest.type != "private"
        try:
            await self._send(dest.chat_id, reply, group)
        except ChatMigrated as moved:
            new_id = str(moved.new_chat_id)
            await migrate_destination(self.store, dest.id, new_id)
            log.info(
                "telegram chat %s became %s; destination %s moved", dest.chat_id, new_id, dest.id
            )
            try:
                await self._send(new_id, reply, group)
            except TelegramError as exc:
                return result_of(exc)
        except TelegramError as exc:
            return result_of(exc)
        return SendResult.sent()
