"""Discord shards split across ``liqbot run`` processes by config (DESIGN §8).

Two real processes in live mode share one database and one fake Discord
(:class:`tests.fakes.discord_shards.ShardedFakeDiscord`); instance ``i`` runs with
``discord.shard_ids: [i]`` and ``discord.shard_count: 2``, and the fake has one server on each
shard (Discord's rule: ``shard = (guild_id >> 22) % shard_count``). The markets are the local
fakes of tests/bot/test_run_live.py (Binance only). The database is a fresh one on the
PostgreSQL test server (127.0.0.1:5432 or $LIQBOT_TEST_PG_URL, as in tests/alerts/conftest.py),
the scale-out setup, with one leader; when no server answers, a SQLite file, where each process
leads itself (fine for commands, which is what these tests send).

The two processes start together and are shared by the tests of this module (a process start
costs seconds of imports). Which process answered an interaction is read off its reply:
``/status`` names the leader and adds "(this instance)" when that is the process answering, so
the replies of the two processes differ on either database.

When an instance dies, its shards stay dark: shard ids are static config, and nothing takes them
over. Interactions in those servers go unanswered (Discord tells the user the interaction
failed) until an instance with the same ``shard_ids`` starts again. Leadership does move (on
PostgreSQL within seconds), so polling, alerts and deliveries go on: Discord deliveries are REST
calls, which any instance can make for any channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import yaml

from alerts.store import Store, find_destination, open_store
from core.config import parse_settings
from core.errors import ConfigError
from tests.alerts.conftest import PG_ADMIN_URL, PgServer
from tests.bot.test_run_live import Liqbot, binance_script, write_etf_flows
from tests.fakes import discord_payloads as p
from tests.fakes.discord_api import EPHEMERAL, Recorded
from tests.fakes.discord_shards import ShardedFakeDiscord, guild_on_shard
from tests.fakes.venue_api import FakeVenueApi
from tests.fakes.ws_server import FakeWsServer

TOKEN = "MTAxfake.shards.Discord-token_0123456789abcdef"
SHARD_COUNT = 2
GUILDS = [guild_on_shard(i, SHARD_COUNT) for i in range(SHARD_COUNT)]
CHANNELS = [730_000_000_000_000_101 + i for i in range(SHARD_COUNT)]
MEMBER = 740_000_000_000_000_001
ADMIN = p.MANAGE_GUILD | p.SEND_MESSAGES
FOLLOWUP = "POST /webhooks/{app}/{token}"
START_S = 60.0  # process start to "running": imports, first poll, first snapshot
REPLY_S = 30.0
STOP_S = 30.0
LEADER_LINE = re.compile(r"Leader: (\S+)( \(this instance\))?")


# --- the processes, and the fakes they share -----------------------------------------------------


@dataclass
class Cluster:
    """The fakes, one store on the shared database, and ``liqbot run`` processes started on
    them (``bots[i]`` runs shard ``i``)."""

    tmp_path: Path
    db_url: str
    store: Store
    discord: ShardedFakeDiscord
    venue_url: str
    ws_url: str
    bots: dict[int, Liqbot] = field(default_factory=dict)
    identified_at_start: list[list[int]] = field(default_factory=list)

    def instance(self, shard: int) -> str:
        """The instance name bot/app.py gives the process (RunOptions.instance)."""
        return f"{os.uname().nodename}-{self.bots[shard].proc.pid}"

    @property
    def instances(self) -> list[str]:
        return [self.instance(shard) for shard in sorted(self.bots)]

    async def launch(self, shard: int) -> Liqbot:
        """``liqbot run`` with ``shard_ids: [shard]``, in a directory of its own."""
        cwd = self.tmp_path / f"instance{shard}"
        cwd.mkdir(exist_ok=True)
        etf_file = cwd / "flows.json"
        write_etf_flows(etf_file)
        config = {
            "map": {"lookback": "1d"},
            "feeds": {
                "binance": {"rest_url": self.venue_url, "ws_url": self.ws_url},
                "etf": {"source": "file", "file": str(etf_file), "cache_dir": str(cwd / "etf")},
            },
            "bot": {"symbols": ["BTC"], "venues": ["binance"], "interval": "5m", "poll_s": 5},
            "discord": {
                "api_base": self.discord.api_base,
                "gateway_url": self.discord.gateway_url,
                "shard_ids": [shard],
                "shard_count": SHARD_COUNT,
            },
        }
        (cwd / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        tokens = {"LIQBOT_DISCORD_TOKEN": TOKEN}
        self.bots[shard] = await Liqbot.start(cwd, cwd / "config.yaml", self.db_url, tokens)
        return self.bots[shard]

    async def running(self, shard: int) -> None:
        """Until the process logs that it runs: its client is ready on all its shards then, so
        every IDENTIFY it makes at start has been made."""
        bot = self.bots[shard]
        await bot.until("'running' in the log", lambda: "running (live" in bot.stderr, START_S)

    async def stop_all(self) -> None:
        """SIGTERM to every live process; each must exit cleanly without leaking the token."""
        live = [b for b in self.bots.values() if b.proc.returncode is None]
        for bot in live:
            bot.proc.send_signal(signal.SIGTERM)
        for bot in live:
            code = await bot.finish(STOP_S)
            assert code == 0, bot.stderr
            assert "Traceback" not in bot.stderr, bot.stderr
            assert TOKEN not in bot.stdout + bot.stderr

    async def kill_all(self) -> None:
        for bot in self.bots.values():
            await bot.kill()


def shared_database(tmp_path: Path, stack: contextlib.ExitStack) -> str:
    """A fresh PostgreSQL database on the test server (DESIGN §8's scale-out), or, when none
    answers, a SQLite file."""
    server = PgServer(PG_ADMIN_URL)
    try:
        url = server.create()
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    stack.callback(server.drop_all)
    return url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    """Both instances, started together, until both run; stopped (cleanly) at the end."""
    tmp_path = tmp_path_factory.mktemp("shards")
    guilds = [
        p.guild(g, channels=(p.text_channel(c, g),)) for g, c in zip(GUILDS, CHANNELS, strict=True)
    ]
    with contextlib.ExitStack() as sync_stack:
        db_url = shared_database(tmp_path, sync_stack)
        async with contextlib.AsyncExitStack() as stack:
            discord = await stack.enter_async_context(ShardedFakeDiscord(guilds=guilds))
            api = stack.enter_context(FakeVenueApi(["BTC"]))
            ws = await stack.enter_async_context(FakeWsServer(binance_script))
            store = await open_store(db_url)  # migrated once, before two processes race to
            stack.push_async_callback(store.close)
            c = Cluster(tmp_path, db_url, store, discord, api.url, f"{ws.url}/market")
            stack.push_async_callback(c.kill_all)
            for shard in range(SHARD_COUNT):
                await c.launch(shard)
            for shard in range(SHARD_COUNT):
                await c.running(shard)
            c.identified_at_start = identified(discord)
            yield c
            await c.stop_all()


# --- talking to the processes through the fake Discord ---------------------------------------


def identified(fake: ShardedFakeDiscord) -> list[list[int]]:
    """The ``[shard_id, shard_count]`` of every IDENTIFY so far, in order."""
    return [list(i["shard"]) for i in fake.identifies]


async def interact(fake: ShardedFakeDiscord, payload: p.Json) -> tuple[tuple[int, int], Recorded]:
    """Send an interaction by its server's shard; the shard of the session that got it and the
    first follow-up answering it."""
    session = await fake.dispatch_to("INTERACTION_CREATE", payload)
    token = payload["token"]
    followup = await fake.wait_for(
        FOLLOWUP, where=lambda r: r.params["token"] == token, timeout_s=REPLY_S
    )
    return session.shard, followup


def text_of(followup: Recorded) -> str:
    parts = [str(followup.body.get("content") or "")]
    parts += [str(e.get("description") or "") for e in followup.embeds]
    return "\n".join(parts).replace("\\", "")  # markdown escapes (bot/discord_render.py)


def leader_line(followup: Recorded) -> tuple[str, bool]:
    """What a /status reply says: the leader, and whether that is the instance replying."""
    found = LEADER_LINE.search(text_of(followup))
    assert found is not None, text_of(followup)
    return found.group(1), found.group(2) is not None


def answered_by(followup: Recorded, instances: list[str]) -> str:
    """The instance that wrote a /status reply, out of two: the one it names as itself, or
    else the one that is not the leader it names."""
    leader, itself = leader_line(followup)
    if itself:
        return leader
    [other] = [name for name in instances if name != leader]
    return other


def status_in(shard: int) -> p.Json:
    return p.slash("status", user_id=MEMBER, guild_id=GUILDS[shard], channel_id=CHANNELS[shard])


async def until(
    what: str,
    check: Callable[[], Awaitable[bool]],
    bots: list[Liqbot],
    timeout_s: float = REPLY_S,
) -> None:
    """Until ``await check()`` holds; fails if one of ``bots`` ends first."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        for bot in bots:
            if bot.proc.returncode is not None:
                pytest.fail(f"liqbot exited while waiting for {what}:\n{bot.stderr}")
        if asyncio.get_running_loop().time() > deadline:
            logs = "\n".join(f"stderr of an instance:\n{b.stderr}" for b in bots)
            pytest.fail(f"no {what} within {timeout_s:g}s\n{logs}")
        await asyncio.sleep(0.1)


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
async def test_each_instance_runs_only_its_shard_and_answers_its_servers(cluster: Cluster) -> None:
    """Two IDENTIFYs in all, one per shard; and process i answers what came on shard i's
    session, so the IDENTIFY of shard i was process i's: each process identified exactly its
    own shard."""
    fake = cluster.discord
    # Both instances ready: each shard identified once, none twice.
    assert sorted(cluster.identified_at_start) == [[0, 2], [1, 2]]
    for shard in (0, 1):
        # One live session per shard, given only the servers of its shard.
        [session] = fake.open_sessions((shard, SHARD_COUNT))
        assert session.guilds_created() == [GUILDS[shard]]
        # An interaction in a server of shard i goes to shard i's session; process i answers.
        got, followup = await interact(fake, status_in(shard))
        assert got == (shard, SHARD_COUNT)
        answering = answered_by(followup, cluster.instances)
        assert answering == cluster.instance(shard), text_of(followup)


@pytest.mark.asyncio(loop_scope="module")
async def test_each_instance_holds_only_its_servers(cluster: Cluster) -> None:
    """Removed from a server, the bot disables its channels (bot/discord_app.py
    on_guild_remove). The GUILD_DELETE goes to the server's shard only, and discord.py calls
    on_guild_remove only for a server in its cache: so this works only if the process of that
    shard holds the server. The subscriptions are made through both processes, in the shared
    database."""
    fake = cluster.discord
    for shard in (0, 1):
        subscribe = p.slash(
            "subscribe",
            {"what": "etf"},
            user_id=MEMBER,
            permissions=ADMIN,
            guild_id=GUILDS[shard],
            channel_id=CHANNELS[shard],
        )
        _, followup = await interact(fake, subscribe)
        assert not followup.flags & EPHEMERAL, text_of(followup)  # not a refusal
        assert await enabled(cluster.store, CHANNELS[shard])

    session = await fake.dispatch_to("GUILD_DELETE", {"id": str(GUILDS[1])})
    assert session.shard == (1, SHARD_COUNT)

    async def disabled() -> bool:
        return not await enabled(cluster.store, CHANNELS[1])

    await until("shard 1's server disabled", disabled, list(cluster.bots.values()))
    assert await enabled(cluster.store, CHANNELS[0])  # the other server is untouched


async def enabled(store: Store, channel: int) -> bool:
    dest = await find_destination(store, "discord", str(channel))
    assert dest is not None
    return dest.enabled


@pytest.mark.asyncio(loop_scope="module")
async def test_a_dead_instance_s_shard_is_not_taken_over(cluster: Cluster) -> None:
    """The leader is killed (on SQLite each instance leads itself: instance 0's). The other
    instance leads from then on, but does not take the dead one's shard: that shard's servers
    have no session, until an instance configured with that shard starts again (which is how
    any instance gets its shard: the first test). The dead process stays dead for the rest of
    the module, so this test comes last."""
    fake = cluster.discord
    _, followup = await interact(fake, status_in(0))
    leader, _ = leader_line(followup)
    dead = cluster.instances.index(leader)
    alive = 1 - dead
    cluster.bots[dead].proc.kill()
    await fake.wait_closed((dead, SHARD_COUNT))
    before = identified(fake)

    # The survivor leads (at once on SQLite; once the lock is free on PostgreSQL), which also
    # shows it has gone on handling events since the other one died.
    survivor = cluster.instance(alive)

    async def survivor_leads() -> bool:
        _, followup = await interact(fake, status_in(alive))
        return leader_line(followup) == (survivor, True)

    await until("the survivor leading", survivor_leads, [cluster.bots[alive]])
    assert identified(fake) == before  # nobody identified as the dead one's shard
    assert fake.open_sessions((dead, SHARD_COUNT)) == []
    with pytest.raises(RuntimeError, match="no gateway session"):
        await fake.dispatch("INTERACTION_CREATE", status_in(dead))


# --- config validation -------------------------------------------------------------------------


IDS = "discord.shard_ids"


@pytest.mark.parametrize(
    ("discord", "key", "says"),
    [
        ({"shard_ids": [0, 2], "shard_count": 2}, IDS, "below discord.shard_count (2): [2]"),
        ({"shard_ids": [1]}, IDS, "needs discord.shard_count"),
        ({"shard_ids": [0, 0], "shard_count": 2}, IDS, "more than once"),
        ({"shard_ids": [], "shard_count": 2}, IDS, "at least one"),
        (
            {"shard_ids": [-1], "shard_count": 2},
            IDS,
            "0 or more and below discord.shard_count (2): [-1]",
        ),
        ({"shard_ids": [0], "shard_count": 0}, "discord.shard_count", "greater than or equal"),
    ],
    ids=["id-too-high", "no-count", "duplicate", "empty", "negative", "count-zero"],
)
def test_bad_shard_config_is_rejected_naming_the_key(
    discord: dict[str, object], key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(yaml.safe_dump({"discord": discord}), "shards.yaml")
    message = str(err.value)
    assert message.startswith(f"shards.yaml: key '{key}':"), message
    assert says in message, message


@pytest.mark.parametrize(
    ("discord", "ids", "count"),
    [
        ({}, None, None),
        ({"shard_count": 4}, None, 4),  # one process, all four shards
        ({"shard_ids": [3, 1], "shard_count": 4}, (3, 1), 4),
    ],
)
def test_good_shard_config_is_kept(
    discord: dict[str, object], ids: tuple[int, ...] | None, count: int | None
) -> None:
    settings = parse_settings(yaml.safe_dump({"discord": discord}))
    assert (settings.discord.shard_ids, settings.discord.shard_count) == (ids, count)
