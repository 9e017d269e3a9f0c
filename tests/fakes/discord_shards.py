"""The fake Discord gateway, watched session by session: for tests where several processes
share one bot's shards (DESIGN §8).

::

    async with ShardedFakeDiscord(guilds=[guild(guild_on_shard(0, 2)), ...]) as fake:
        ...  # processes connect, each with its shard_ids
        await fake.wait_ready(shards=2)
        session = await fake.dispatch_to("INTERACTION_CREATE", slash("status", ...))
        assert session.shard == (0, 2)
        await fake.wait_closed((1, 2))  # the process holding shard 1 went away

:class:`~tests.fakes.discord_api.FakeDiscord` already splits the servers by Discord's rule,
``shard_id = (guild_id >> 22) % shard_count``: READY and the GUILD_CREATEs after it carry only
the servers of the shard the client identified as, and ``dispatch`` sends an event to the
session of its server's shard (this subclass also routes GUILD_DELETE and the like, whose
server id is ``id``, by that id). This subclass keeps, for every gateway connection, a
:class:`Session`: the shard it identified as, every event it was sent, and whether it is still
open, so that a test can tell which connection (and so which process) got what.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tests.fakes.discord_api import FakeDiscord, Json, _Shard

__all__ = ["Session", "ShardedFakeDiscord", "guild_on_shard", "shard_of"]

GUILD_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


def shard_of(guild_id: int, shard_count: int) -> int:
    """Discord's rule: the shard that receives a server's events."""
    return (guild_id >> 22) % shard_count


def guild_on_shard(shard_id: int, shard_count: int, start: int = 720_000_000_000_000_001) -> int:
    """The first snowflake-sized server id from ``start`` on that lands on ``shard_id``."""
    guild_id = start
    while shard_of(guild_id, shard_count) != shard_id:
        guild_id += 1 << 22
    return guild_id


@dataclass
class Session(_Shard):
    """One gateway connection: ``shard`` is what it identified as ((0, 1) until then)."""

    events: list[tuple[str, Json]] = field(default_factory=list)
    identified: bool = False
    open: bool = True

    async def send(self, event: str, data: Json) -> None:
        self.events.append((event, data))
        await super().send(event, data)

    def guilds_created(self) -> list[int]:
        return [int(d["id"]) for e, d in self.events if e == "GUILD_CREATE"]


class ShardedFakeDiscord(FakeDiscord):
    """See the module docstring; ``sessions`` holds every gateway connection, in order."""

    @property
    def sessions(self) -> list[Session]:
        return [s for s in self.shards if isinstance(s, Session)]

    def open_sessions(self, shard: tuple[int, int]) -> list[Session]:
        return [s for s in self.sessions if s.identified and s.open and s.shard == shard]

    async def dispatch(self, event: str, data: Json) -> None:
        """As the base class's, but a GUILD_CREATE, GUILD_UPDATE or GUILD_DELETE goes to the
        shard of its ``id``: those carry the server's id there, not in ``guild_id`` (the base
        class sends them to shard 0, right only with one shard)."""
        guild_id = int(data.get("guild_id") or (data["id"] if event in GUILD_EVENTS else 0))
        for session in reversed(self.sessions):
            shard_id, count = session.shard
            live = session.identified and not session.ws.closed
            if live and shard_of(guild_id, count) == shard_id:
                await session.send(event, data)
                return
        raise RuntimeError(f"no gateway session for {event} (guild {guild_id})")

    async def dispatch_to(self, event: str, data: Json) -> Session:
        """``dispatch``, returning the session the event went to."""
        before = {id(s): len(s.events) for s in self.sessions}
        await self.dispatch(event, data)
        [session] = [s for s in self.sessions if len(s.events) > before[id(s)]]
        return session

    async def wait_closed(self, shard: tuple[int, int], timeout_s: float = 10.0) -> None:
        """Until no open session has identified as ``shard``."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: not self.open_sessions(shard))

    # The base class's handler, with a Session for each connection and a notice when it ends.
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = Session(ws)
        self.shards.append(session)
        try:
            await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                msg = json.loads(frame.data)
                if msg["op"] == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif msg["op"] == 2:
                    session.identified = True
                    await self._identify(session, msg["d"])
                elif msg["op"] == 6:
                    await session.send("RESUMED", {})
        finally:
            async with self._changed:
                session.open = False
                self._changed.notify_all()
        return ws
