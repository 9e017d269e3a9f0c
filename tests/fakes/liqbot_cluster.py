"""Several ``liqbot run`` processes in live mode on one database, every outside service faked.

For the scale-out figures (benchmarks/scale.py) and tests (tests/bot/test_failover.py). What
each instance talks to, all on 127.0.0.1:

* Telegram: the fake Bot API in its own process (:class:`benchmarks.chat.RemoteFake`, over
  tests/fakes/telegram_serve.py), stamping each request as it arrives;
* Binance's REST API (:class:`tests.fakes.venue_api.FakeVenueApi`) and liquidation websocket
  (:class:`tests.fakes.ws_server.FakeWsServer`); ETF flows from a small JSON file.

Several instances mean webhook mode: Telegram lets one client long-poll a bot, so instances
behind a load balancer each serve the webhook (on their own port here) and one leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import orjson
import yaml
from sqlalchemy.engine import make_url

from alerts.leadership import Leadership, LeadershipError
from alerts.notifications import GroupedMessage, LiqSpike, Outgoing, message_to_dict
from alerts.store import Envelope, Store, enqueue, open_store, stats, upsert_destination
from benchmarks.chat import RemoteFake
from tests.fakes.telegram_api import TOKEN
from tests.fakes.venue_api import FakeVenueApi
from tests.fakes.ws_server import FakeWsServer, WsConn

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "cluster_webhook-secret"
T = TypeVar("T")


def write_etf_flows(path: Path) -> None:
    """The last six weekdays before today, as the JSON flows file core/etf_io.py reads."""
    days: list[dict[str, Any]] = []
    day = dt.datetime.now(dt.UTC).date()
    while len(days) < 6:
        day -= dt.timedelta(days=1)
        if day.weekday() < 5:
            ibit, fbtc = 120.0 + 10 * len(days), -30.0 + 5 * len(days)
            funds = {"IBIT": ibit, "FBTC": fbtc}
            days.append({"date": day.isoformat(), "total_musd": ibit + fbtc, "funds": funds})
    path.write_bytes(orjson.dumps({"days": days[::-1]}))


async def quiet_stream(conn: WsConn) -> None:
    await conn.hold()  # connected and silent: liquidations are sparse


@dataclass
class Market:
    """The venue and ETF fakes the instances poll."""

    api: FakeVenueApi
    ws: FakeWsServer
    etf_file: Path

    @classmethod
    async def start(cls, stack: contextlib.AsyncExitStack, tmp: Path) -> Market:
        etf_file = tmp / "flows.json"
        write_etf_flows(etf_file)
        api = stack.enter_context(FakeVenueApi(["BTC"]))
        ws = await stack.enter_async_context(FakeWsServer(quiet_stream))
        return cls(api, ws, etf_file)


def write_config(
    path: Path,
    *,
    telegram_base_url: str,
    telegram_file_url: str,
    market: Market,
    webhook_port: int,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """A config.yaml for one instance: Binance BTC on 5m bars, webhook on ``webhook_port``.

    ``extra`` sections are merged over the defaults (``{"pacing": {...}}``)."""
    config: dict[str, dict[str, Any]] = {
        "map": {"lookback": "1d"},
        "feeds": {
            "binance": {"rest_url": market.api.url, "ws_url": f"{market.ws.url}/market"},
            "timeout_s": 10,
            "etf": {
                "source": "file",
                "file": str(market.etf_file),
                "cache_dir": str(path.parent / "etf-cache"),
            },
        },
        "alerts": {"tick_s": 5, "group_wait_s": 0},
        "bot": {"symbols": ["BTC"], "venues": ["binance"], "interval": "5m", "poll_s": 10},
        "telegram": {
            "base_url": telegram_base_url,
            "base_file_url": telegram_file_url,
            "mode": "webhook",
            "webhook_listen": "127.0.0.1",
            "webhook_port": webhook_port,
            "webhook_path": "tg",
            "webhook_url": "https://bot.example/tg",
        },
    }
    for section, values in (extra or {}).items():
        config.setdefault(section, {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


async def spawn_liqbot(
    cwd: Path,
    config: Path,
    db_url: str,
    env: Mapping[str, str],
    *,
    stdout: int = asyncio.subprocess.PIPE,
    log_level: str | None = None,
) -> asyncio.subprocess.Process:
    """``liqbot run --config config --db db_url`` in ``cwd``: no LIQBOT_ variable of ours
    leaks in (only ``env``'s tokens and secrets), stdin closed, stderr piped."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LIQBOT_") or k == "LIQBOT_TEST_PG_URL"
    }
    clean |= {
        "PYTHONPATH": str(ROOT),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PTB_TIMEDELTA": "1",
        **env,
    }
    cwd.mkdir(parents=True, exist_ok=True)
    code = "import sys; from bot.cli import main; sys.exit(main())"
    args = ["run", "--config", str(config), "--db", db_url]
    if log_level is not None:
        args += ["--log-level", log_level]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        cwd=cwd,
        env=clean,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )


class Instance:
    """One ``liqbot run`` process; its stderr (the log) is kept as it comes."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.err: list[str] = []
        assert proc.stderr is not None
        self._reader = asyncio.create_task(self._read(proc.stderr))

    @classmethod
    async def start(
        cls,
        name: str,
        workdir: Path,
        config: Path,
        db_url: str,
        *,
        log_level: str = "info",
        env: Mapping[str, str] | None = None,
    ) -> Instance:
        secrets = {
            "LIQBOT_TELEGRAM_TOKEN": TOKEN,
            "LIQBOT_TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            **(env or {}),
        }
        proc = await spawn_liqbot(
            workdir,
            config,
            db_url,
            secrets,
            stdout=asyncio.subprocess.DEVNULL,
            log_level=log_level,
        )
        return cls(name, proc)

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            self.err.append(line.decode(errors="replace"))

    @property
    def log(self) -> str:
        return "".join(self.err)

    def logged(self, text: str) -> Callable[[], bool]:
        """A check for ``until``: ``text`` is in the log."""
        return lambda: text in self.log

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def rss_mb(self) -> float:
        """Resident memory now, MB (from /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def cpu_s(self) -> float:
        """CPU time the process has used so far (user and system), seconds (from /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def until(self, what: str, check: Callable[[], T | None], timeout_s: float) -> T:
        """Poll ``check`` until it gives something; RuntimeError if the process ends first."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = check()
            if got:
                return got
            if not self.alive:
                raise RuntimeError(f"{self.name} exited while waiting for {what}:\n{self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {what} within {timeout_s:g}s:\n{self.log}")
            await asyncio.sleep(0.05)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout_s``); the exit code."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reader, 10)
        return self.proc.returncode


# --- a database of its own ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database on the server of ``admin_url``; its URL. Dropped after.
    Raises OSError (or asyncpg's errors) when no server answers."""
    admin = make_url(admin_url)
    name = f"liqbot_cluster_{uuid.uuid4().hex[:12]}"

    async def admin_conn() -> Any:
        return await asyncpg.connect(
            host=admin.host,
            port=admin.port or 5432,
            user=admin.username,
            password=admin.password,
            database=admin.database,
            timeout=3,
        )

    conn = await admin_conn()
    try:
        # Identifiers cannot be bound parameters; the name is ours (hex), quoted.
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await admin_conn()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the failover scenario --------------------------------------------------------------------


@dataclass(frozen=True)
class FailoverResult:
    """What the fake Telegram saw of a broadcast whose leader was killed (times in seconds)."""

    instances: int
    chats: int
    sent_before_kill: int
    killed: str
    new_leader: str
    takeover_s: float  # kill -9 to another instance holding the leader lock
    delivery_gap_s: float  # kill -9 to the first message delivered after it
    delivered: int  # broadcast messages received, repeats included
    distinct_chats: int
    lost: int  # chats that never got their message, plus outbox rows not marked sent
    duplicated: int  # messages received more than once
    repeated_first_before_kill: bool  # every repeat was of a message sent before the kill
    wall_s: float  # first to last broadcast message

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in vars(self).items()}


async def _enqueue_broadcast(store: Store, chats: int, now_ms: int) -> set[str]:
    """One liquidation-spike alert for each of ``chats`` Telegram chats, in the outbox."""
    ids: set[str] = set()
    envelopes = []
    for i in range(chats):
        chat = 3_000_000 + i
        dest = await upsert_destination(store, "telegram", str(chat), "private", now_ms)
        ids.add(str(chat))
        spike = LiqSpike("BTC", now_ms, 3_600_000, 12e6, 160e6, 50e6, "short")
        item = Outgoing(dest.id, 50_000 + i, now_ms, spike)
        msg = GroupedMessage(dest.id, item.key, now_ms, (item,))
        envelopes.append(
            Envelope(msg.key, dest.id, "liq_spike", now_ms, message_to_dict(msg), 50_000 + i)
        )
    await enqueue(store, envelopes, now_ms)
    return ids


async def _leader(db_url: str) -> str | None:
    return await Leadership(db_url, "observer").current_leader()


async def run_failover(
    tmp: Path,
    admin_url: str,
    *,
    instances: int = 3,
    chats: int = 600,
    kill_after: int = 200,
    timeout_s: float = 240.0,
    progress: Callable[[str], None] = lambda _: None,
) -> FailoverResult:
    """``instances`` × ``liqbot run`` on a scratch database; ``chats`` alerts in the outbox;
    ``kill -9`` of the leader once the fake Telegram has ``kill_after`` of them; then wait
    until every row is sent. The fake enforces Telegram's limits (30/s, 1/s per chat)."""
    async with contextlib.AsyncExitStack() as stack:
        db_url = await stack.enter_async_context(scratch_database(admin_url))
        store = await open_store(db_url)  # migrates the new database
        stack.push_async_callback(store.close)
        market = await Market.start(stack, tmp)
        tg = await stack.enter_async_context(RemoteFake())
        await tg.post("/rates", {"global_per_s": 30, "per_chat_per_s": 1, "per_group_per_min": 20})
        procs: list[Instance] = []
        for i in range(instances):
            name = f"instance-{i}"
            config = tmp / name / "config.yaml"
            write_config(
                config,
                telegram_base_url=tg.base_url,
                telegram_file_url=tg.base_file_url,
                market=market,
                webhook_port=free_port(),
            )
            proc = await Instance.start(name, tmp / name, config, db_url)
            stack.push_async_callback(proc.stop)
            procs.append(proc)
        progress(f"started {instances} instances; waiting for a leader")
        for proc in procs:
            await proc.until("start-up", proc.logged("running (live mode"), 120)
        leader_name = None
        deadline = time.monotonic() + 60
        while leader_name is None or not any("leading: scheduler started" in p.log for p in procs):
            if time.monotonic() > deadline:
                raise RuntimeError("no instance started leading within 60 s")
            leader_name = await _leader(db_url)
            await asyncio.sleep(0.1)
        leader = _by_name(procs, leader_name)
        progress(f"{leader.name} leads; queueing {chats} alerts")

        broadcast = await _enqueue_broadcast(store, chats, int(time.time() * 1000))

        async def received() -> list[tuple[str, float]]:
            log = await tg.get("/sends")
            return [(chat, at) for method, chat, at in log["sends"] if chat in broadcast]

        while len(await received()) < kill_after:
            if not leader.alive:
                raise RuntimeError(f"{leader.name} died on its own:\n{leader.log}")
            await asyncio.sleep(0.02)
        before = len(await received())
        leader.kill9()
        killed_at = time.time()
        progress(f"kill -9 {leader.name} after {before} messages")
        new_name = None
        while new_name is None or new_name == leader_name:
            if time.time() - killed_at > 60:
                raise RuntimeError("no instance took over within 60 s")
            with contextlib.suppress(LeadershipError):
                new_name = await _leader(db_url)
            await asyncio.sleep(0.02)
        takeover_s = time.time() - killed_at
        new_leader = _by_name(procs, new_name)
        progress(f"{new_leader.name} took over after {takeover_s:.2f} s; waiting for the rest")

        deadline = time.monotonic() + timeout_s
        while True:
            got = await received()
            pending = (await stats(store, int(time.time() * 1000))).pending
            if len({c for c, _ in got}) >= chats and pending == 0:
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)  # a repeat still in flight would arrive now
        got = await received()
        left = await stats(store, int(time.time() * 1000))
        after = sorted(at for _, at in got if at > killed_at)
        times = sorted(at for _, at in got)
        distinct = len({c for c, _ in got})
        first: dict[str, float] = {}
        for c, at in sorted(got, key=lambda g: g[1]):
            first.setdefault(c, at)
        repeats = [c for c in {c for c, _ in got} if sum(1 for g, _ in got if g == c) > 1]
        return FailoverResult(
            instances=instances,
            chats=chats,
            sent_before_kill=before,
            killed=leader.name,
            new_leader=new_leader.name,
            takeover_s=takeover_s,
            delivery_gap_s=(after[0] - killed_at) if after else float("nan"),
            delivered=len(got),
            distinct_chats=distinct,
            lost=chats - distinct + left.pending + left.dead,
            duplicated=len(got) - distinct,
            repeated_first_before_kill=all(first[c] <= killed_at for c in repeats),
            wall_s=times[-1] - times[0] if times else 0.0,
        )


def _by_name(procs: list[Instance], leader: str | None) -> Instance:
    """The instance whose leader name (``host-pid``) this is."""
    for p in procs:
        if leader is not None and leader.endswith(f"-{p.pid}"):
            return p
    raise RuntimeError(f"the leader {leader!r} is none of the instances started")
