"""Running the Telegram adapter inside an asyncio loop that also runs other things.

PTB's ``run_polling``/``run_webhook`` own the event loop and its signals; ``liqbot run`` has
feeds, the scheduler and Discord in the same loop, so it calls these instead::

    await start_application(app, settings)     # initialize, post_init, start, poll / serve
    ...
    await stop_application(app)                # the reverse

Webhook mode (:mod:`bot.telegram_webhook`) needs ``$LIQBOT_TELEGRAM_WEBHOOK_SECRET``: it is
registered with setWebhook, Telegram sends it in a header with every update, and the webhook
server answers 403 to a request without it, so nobody else can post updates. Missing, it is a
ConfigError before anything is contacted.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Mapping

from telegram.error import InvalidToken

from bot.telegram_app import ALLOWED_UPDATES, TgApp
from bot.telegram_webhook import WebhookIngress
from core.config import Settings
from core.errors import ConfigError

__all__ = ["WEBHOOK_SECRET_ENV", "start_application", "stop_application", "webhook_secret"]

log = logging.getLogger(__name__)

WEBHOOK_SECRET_ENV = "LIQBOT_TELEGRAM_WEBHOOK_SECRET"
_INGRESS = "liqbot.webhook_ingress"  # the running WebhookIngress, in the app's bot_data


def webhook_secret(environ: Mapping[str, str] = os.environ) -> str:
    """The webhook secret from ``$LIQBOT_TELEGRAM_WEBHOOK_SECRET``; ConfigError when unset or
    not what Telegram accepts (1-256 of A-Z, a-z, 0-9, _ and -)."""
    secret = environ.get(WEBHOOK_SECRET_ENV, "").strip()
    if not secret:
        raise ConfigError(
            f"telegram.mode is 'webhook' but ${WEBHOOK_SECRET_ENV} is not set: set it to a "
            "random string (1-256 characters of A-Z, a-z, 0-9, _ and -) so that only Telegram "
            "can post updates to the webhook"
        )
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
        raise ConfigError(
            f"${WEBHOOK_SECRET_ENV} must be 1-256 characters of A-Z, a-z, 0-9, _ and - "
            "(Telegram refuses other secrets)"
        )
    return secret


async def start_application(
    app: TgApp,
    settings: Settings,
    *,
    environ: Mapping[str, str] = os.environ,
    poll_timeout_s: float = 10.0,
) -> None:
    """Start ``app`` inside the running loop (what ``run_polling``/``run_webhook`` do, without
    owning the loop or its signals): initialize, post_init, start, then poll or serve the
    webhook. Configuration errors are raised before anything is contacted."""
    tg = settings.telegram
    secret = None
    if tg.mode == "webhook":
        secret = webhook_secret(environ)
        if not tg.webhook_url:
            raise ConfigError(
                "telegram.webhook_url must be set in webhook mode: the public https URL "
                "Telegram posts updates to"
            )
    try:
        await app.initialize()
        if app.post_init is not None:
            await app.post_init(app)
        await app.start()
        updater = app.updater
        if updater is None:
            raise RuntimeError("the Telegram application was built without an updater")
        if secret is not None:
            ingress = WebhookIngress(app, tg, secret)
            app.bot_data[_INGRESS] = ingress
            await ingress.start()
        else:
            await updater.start_polling(
                timeout=dt.timedelta(seconds=poll_timeout_s), allowed_updates=ALLOWED_UPDATES
            )
    except BaseException as exc:
        await stop_application(app)
        if isinstance(exc, InvalidToken):  # its message quotes the token
            raise ConfigError(
                "Telegram rejected the bot token in $LIQBOT_TELEGRAM_TOKEN (check it with "
                "@BotFather)"
            ) from None
        raise
    log.info("telegram adapter started (%s)", tg.mode)


async def stop_application(app: TgApp) -> None:
    """Stop polling or the webhook server, the Application, and close its connections.

    The webhook is left registered: other instances behind the same URL keep receiving.
    """
    ingress = app.bot_data.pop(_INGRESS, None)
    if isinstance(ingress, WebhookIngress):
        await ingress.stop()
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    if app.running:
        await app.stop()
    await app.shutdown()
    await app.bot.shutdown()  # closes the connections when initialize() itself failed
