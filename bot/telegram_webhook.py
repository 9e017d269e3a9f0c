"""Telegram webhook ingress: updates POSTed by Telegram, command replies in the HTTP answer.

Telegram lets a webhook answer an update with one Bot API call in the response body ("making
requests when getting updates"). A command whose reply is one text message (nearly all of
them: /price, /status, /liqs, /help, an error) is answered that way: no second HTTP request,
no response to parse, which is most of the cost of a reply. Anything else (a chart, a reply
of several messages, buttons pressed, the bot's membership) goes the usual way: replies
through the Bot API, other updates into the PTB Application's queue, with the same handlers
as polling mode.

The answer is still paced (DESIGN §7): it waits for an interactive slot before it is written.
The cost is that Telegram reports nothing back for it, so a reply to a chat that blocked the
bot fails silently; that chat's alerts still go through the Bot API and see the error.
``telegram.webhook_inline_replies: false`` sends every reply through the Bot API instead.

Every instance behind a load balancer runs one of these and registers the same URL with
``setWebhook``; a request without the ``secret_token`` header is refused with 403 before it
is parsed.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson
from aiohttp import web
from telegram import Update

from bot.telegram_app import ALLOWED_UPDATES, TgApp, adapter_of
from bot.telegram_inbound import CommandMessage
from core.config import TelegramSettings

__all__ = ["SECRET_HEADER", "WebhookIngress"]

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1 << 20  # an update is a few KB; anything near this is not from Telegram


class WebhookIngress:
    """The webhook HTTP server of one instance (aiohttp), and its ``setWebhook``."""

    def __init__(self, app: TgApp, settings: TelegramSettings, secret: str) -> None:
        self.app = app
        self.settings = settings
        self._secret = secret.encode()
        self._runner: web.AppRunner | None = None

    @property
    def path(self) -> str:
        return "/" + self.settings.webhook_path.lstrip("/")

    async def start(self) -> None:
        """Listen, then register the webhook (Telegram may post as soon as it is set)."""
        server = web.Application(client_max_size=MAX_UPDATE_BYTES)
        server.router.add_post(self.path, self._post)
        # access_log=None: a line per update at 1,000/s is noise, and aiohttp's is unredacted.
        self._runner = web.AppRunner(server, access_log=None, handle_signals=False)
        await self._runner.setup()
        tg = self.settings
        await web.TCPSite(self._runner, tg.webhook_listen, tg.webhook_port).start()
        await self.app.bot.set_webhook(
            tg.webhook_url,
            secret_token=self._secret.decode(),
            allowed_updates=ALLOWED_UPDATES,
            max_connections=tg.webhook_max_connections,
        )
        where = f"{tg.webhook_listen}:{tg.webhook_port}{self.path}"
        log.info("telegram webhook listening on %s", where)

    async def stop(self) -> None:
        """Stop listening. The webhook stays registered: other instances keep receiving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _to_application(self, data: dict[str, Any]) -> web.Response:
        """Not a command we answer here: PTB parses it and its handlers take it."""
        try:
            update = Update.de_json(data, self.app.bot)
        except Exception:  # PTB raises KeyError, TypeError, ... on a malformed update
            update = None
        if update is None:
            return web.Response(status=400, text="the body is not a Telegram update")
        await self.app.update_queue.put(update)
        return web.Response()

    async def _post(self, request: web.Request) -> web.StreamResponse:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            return web.Response(status=403, text="wrong or missing secret token")
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return web.Response(status=400, text="the body is not a Telegram update")
        bot = self.app.bot
        adapter = adapter_of(self.app)
        msg = CommandMessage.of_update(data) if self.settings.webhook_inline_replies else None
        if msg is None or not adapter.takes(msg, bot):
            return await self._to_application(data)
        answer = await adapter.answer_inline(msg, bot)
        if answer.call is None:
            return web.Response()  # replied through the Bot API (a chart, several messages)
        body: dict[str, Any] = answer.call
        response = web.Response(body=orjson.dumps(body), content_type="application/json")
        async with adapter.pacer.slot(answer.chat_key, lane="interactive", group=answer.group):
            await response.prepare(request)
            await response.write_eof()
        return response
