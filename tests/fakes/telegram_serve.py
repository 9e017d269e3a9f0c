"""The fake Telegram Bot API in its own process, with HTTP controls (for benchmarks/chat.py).

A remote Bot API does not share the bot's event loop; run in-process, the fake's handler
would wait behind the bot's own work and stamp requests late. ``python -m
tests.fakes.telegram_serve`` prints ``PORT <n>`` and serves until stdin closes. Controls, all
JSON, times in epoch seconds (``time.time``, comparable across processes):

* ``POST /_ctl/command``  ``{"chat_id", "text", "user_id"}`` queues a command update;
* ``POST /_ctl/rates``    ``{"global_per_s", "per_chat_per_s", "per_group_per_min"}``;
* ``POST /_ctl/chats``    ``{"groups": [ids]}`` marks chats as groups (for the group limit);
* ``GET  /_ctl/wait?method=&chat_id=&n=&timeout=`` the ``n``-th such call's arrival time;
* ``GET  /_ctl/sends``    every sendMessage/sendPhoto as ``[method, chat_id, at]``, and the
  429 count.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from aiohttp import web

from tests.fakes import telegram_updates as tu
from tests.fakes.telegram_api import SENDS, FakeTelegram


class ServedTelegram(FakeTelegram):
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_ctl/command", self._command)
        app.router.add_post("/_ctl/rates", self._rates_ctl)
        app.router.add_post("/_ctl/chats", self._chats_ctl)
        app.router.add_get("/_ctl/wait", self._wait)
        app.router.add_get("/_ctl/sends", self._sends)

    async def _command(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.inject_command(int(body["chat_id"]), str(body["text"]), user_id=int(body["user_id"]))
        return web.json_response({"ok": True})

    async def _rates_ctl(self, request: web.Request) -> web.Response:
        self.enforce_rates(**(await request.json()))
        return web.json_response({"ok": True})

    async def _chats_ctl(self, request: web.Request) -> web.Response:
        for chat_id in (await request.json())["groups"]:
            self.chats[int(chat_id)] = tu.chat(int(chat_id), "group", None)
        return web.json_response({"ok": True})

    async def _wait(self, request: web.Request) -> web.Response:
        q = request.query
        method, chat, n = q["method"].lower(), q["chat_id"], int(q.get("n", "1"))

        def found() -> list[float]:
            return [c.at for c in self.calls if c.method == method and c.chat_id == chat]

        async with asyncio.timeout(float(q.get("timeout", "10"))), self._changed:
            await self._changed.wait_for(lambda: len(found()) >= n)
        return web.json_response({"at": found()[n - 1]})

    async def _sends(self, request: web.Request) -> web.Response:
        sends = [[c.method, c.chat_id, c.at] for c in self.calls if c.method in SENDS]
        return web.json_response({"sends": sends, "rejected_429": self.rejected_429})


async def serve() -> None:
    # A client killed mid-request (the failover benchmark's kill -9) is expected here, not an
    # error worth a traceback on the benchmark's terminal.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    fake = ServedTelegram(clock=time.time)
    await fake.start()
    print(f"PORT {fake.port}", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    await fake.stop()


if __name__ == "__main__":
    asyncio.run(serve())
