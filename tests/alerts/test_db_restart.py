"""Fault test: the database restarts under the bot; it reconnects, and nothing is lost (DESIGN §8).

Every case runs on a private PostgreSQL server (:mod:`tests.fakes.pg_cluster`), never on the
shared one, which other tests use meanwhile; each case has a fresh database on it. Cases skip
with the reason when no private server can run here (no server binaries, or root without a
``postgres`` user).

What is proved:

* **Store.** An open store outlives a restart, clean (``pg_ctl -m fast``) or a crash
  (``-m immediate``): what was committed is all there, and reads, writes, enqueue and drain
  work again without reopening, even though every pooled connection died. While the server is
  down, each call fails at once with StoreError ("cannot reach the database at ..."), and a
  transaction cut by the outage raises StoreError ("lost the connection ...") and leaves nothing.
* **Delivery.** Outbox rows queued before the restart are each delivered exactly once after it;
  a drain attempted during the outage sends nothing and loses nothing. A drain whose database
  dies mid-batch loses nothing either: rows it marked stay sent; rows it claimed but had not
  sent are sent once when their lease expires (no earlier: a drain before that claims nothing);
  a row whose send completed but whose ``mark_sent`` did not commit is sent exactly once more
  after its lease expires. Those are the only duplicates, at most one per send in flight (so at
  most ``concurrency``), never a third copy; with one send at a time, exactly the one message.
* **Leadership.** The leader's session dies with the server: it steps down (``on_deposed``
  runs), keeps campaigning while the server is away without ever leading, and leads again, on
  the new server's lock, once it is back. With two instances, exactly one leads afterwards.
* **The whole bot.** ``liqbot run`` (live mode, local fakes) on the private server survives a
  restart: the process keeps running, logs the outage, is elected again, its jobs run again, and
  a notification that fell due while the server was down is delivered once to the fake Telegram.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from alerts.delivery import RetryPolicy, SendResult, drain
from alerts.engine import AlertEngine
from alerts.leadership import Leadership
from alerts.notifications import (
    GroupedMessage,
    LevelCross,
    Outgoing,
    message_from_dict,
    message_to_dict,
)
from alerts.state import AlertState, Status
from alerts.store import (
    Destination,
    Envelope,
    Store,
    StoreError,
    add_subscription,
    claim,
    claim_job,
    enqueue,
    find_destination,
    get_destination,
    get_log_entry,
    get_state,
    get_subscription,
    logged_keys,
    mark_sent,
    open_store,
    stats,
    upsert_destination,
    upsert_state,
)
from alerts.store.models import JobClaimRow
from alerts.subscriptions import Kind, Quotas, Subscription
from core.config import Settings
from tests.alerts.test_leadership import Calls, eventually
from tests.fakes.pg_cluster import PgCluster, pg_cluster_or_skip

NOW = 1_768_341_600_000
LEASE_MS = 30_000
POLICY = RetryPolicy(base_ms=5_000)
DOWN_S = 1.5  # how long the server stays down in the store case (operations are tried meanwhile)
CHECK_S = 0.2  # leadership checks, fast so the cases are quick
TIMEOUT_S = 20.0  # generous bound on anything awaited


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    """The private PostgreSQL server of this module; skips when none can run here."""
    with pg_cluster_or_skip() as c:
        yield c


@pytest.fixture
def db_url(cluster: PgCluster) -> str:
    """A fresh database on the private server (started again if a failed case left it down)."""
    cluster.start()
    return cluster.create_database()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await open_store(db_url)  # migrated to head
    try:
        yield s
    finally:
        await s.close()


def message(dest: int, key: str, level: float = 100_000.0) -> Envelope:
    """An outbox row for ``dest``: one level-cross notice (its headline names ``level``)."""
    notice = LevelCross("BTC", NOW, level, level + 100.0, level - 100.0)
    msg = GroupedMessage(dest, key, NOW, (Outgoing(dest, 1, NOW, notice),))
    return Envelope(key, dest, "level_cross", NOW, message_to_dict(msg))


async def chat(db: Store, name: str) -> int:
    return (await upsert_destination(db, "console", name, "private", NOW)).id


@dataclass
class Recorder:
    """A platform sender that records each delivery (a send that returned ``sent``).

    ``during(n)``: awaited inside the ``n``-th send (1-based), after the platform has the message
    and before the drain can mark it, e.g. to take the database away at that moment.
    """

    delivered: list[str] = field(default_factory=list)
    started: int = 0
    during: dict[int, Callable[[], Awaitable[None]]] = field(default_factory=dict)

    async def __call__(self, dest: Destination, msg: GroupedMessage) -> SendResult:
        self.started += 1
        hook = self.during.get(self.started)
        await asyncio.sleep(0)
        self.delivered.append(msg.key)
        if hook is not None:
            await hook()
        return SendResult.sent()

    def counts(self) -> Counter[str]:
        return Counter(self.delivered)


async def backends(url: str) -> int:
    """Sessions on ``url``'s database other than the one asking."""
    u = make_url(url)
    conn = await asyncpg.connect(host=u.host, port=u.port, user=u.username, database=u.database)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


# --- the store ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_the_store_reconnects_by_itself_and_keeps_what_was_committed(
    cluster: PgCluster, store: Store, db_url: str, mode: str
) -> None:
    # Work before the outage: a chat, its alert and the alert's state, the outbox and the
    # notification log, a job claim.
    dest = await chat(store, "100")
    sub = await add_subscription(
        store,
        Subscription(0, dest, Kind.CLUSTER, "BTC", pct=1.0, min_usd=50e6),
        Quotas(),
        NOW,
    )
    fired = AlertState(Status.FIRING, NOW, NOW, fired_count=1, last_value=0.8)
    assert await upsert_state(store, sub.id, fired, NOW)
    assert await enqueue(store, [message(dest, k) for k in ("a", "b", "c")], NOW) == ["a", "b", "c"]
    (first, *_) = await claim(store, "w", NOW, limit=1, lease_ms=LEASE_MS)
    assert await mark_sent(store, first.id, NOW + 1)
    assert await claim_job(store, "tick", NOW, "w")
    # Several pooled connections, all of which a restart kills.
    await asyncio.gather(*(get_destination(store, dest) for _ in range(4)))
    assert await backends(db_url) >= 2

    # A restart while the store is idle: the same store, not reopened, works again at once,
    # for several callers together (each dead pooled connection is replaced), and everything
    # committed before is there.
    await cluster.arestart(down_s=DOWN_S, mode=mode)  # type: ignore[arg-type]
    got = await asyncio.gather(*(get_destination(store, dest) for _ in range(4)))
    assert {d.chat_id if d else None for d in got} == {"100"}
    assert await get_subscription(store, sub.id) == sub
    assert await get_state(store, sub.id) == fired
    assert await logged_keys(store, ["a", "b", "c"]) == {"a"}
    entry = await get_log_entry(store, "a")
    assert entry is not None and entry.sent_ms == NOW + 1
    st = await stats(store, NOW + 2)
    assert (st.pending, st.sent, st.in_flight) == (2, 1, 0)
    assert not await claim_job(store, "tick", NOW, "other")  # the claim row survived

    # A transaction in progress when the server goes away: it fails, and leaves nothing.
    with pytest.raises(StoreError, match="lost the connection to the database"):
        async with store.write() as conn:
            await upsert_destination(conn, "console", "uncommitted", "private", NOW)
            await cluster.astop(mode)  # type: ignore[arg-type]

    # While it is down: every call fails at once, with a clear error; nothing is sent.
    sender = Recorder()
    for call in (
        lambda: get_destination(store, dest),
        lambda: enqueue(store, [message(dest, "during")], NOW),
        lambda: drain(store, sender, NOW + 2, "w", policy=POLICY),
    ):
        with pytest.raises(StoreError, match=r"cannot reach the database at postgresql\+asyncpg"):
            await call()
    assert sender.delivered == []
    await cluster.astart()

    # Back: the cut transaction left nothing; reads, writes, enqueue and drain all work.
    assert await find_destination(store, "console", "uncommitted") is None
    assert await chat(store, "200") != dest
    assert await enqueue(store, [message(dest, "after")], NOW + 2) == ["after"]
    result = await drain(store, sender, NOW + 3, "w", policy=POLICY, concurrency=4)
    assert sorted(result.sent_keys) == ["after", "b", "c"]
    assert sender.counts() == {"after": 1, "b": 1, "c": 1}
    assert await logged_keys(store, ["a", "b", "c", "after"]) == {"a", "b", "c", "after"}
    assert await get_state(store, sub.id) == fired


# --- delivery -----------------------------------------------------------------------------------


async def test_notifications_queued_before_the_restart_are_delivered_once_after_it(
    cluster: PgCluster, store: Store
) -> None:
    chats = [await chat(store, f"chat{i}") for i in range(3)]
    keys = [f"chat{i}-{n}" for n in range(3) for i in range(3)]
    await enqueue(store, [message(chats[int(k[4])], k) for k in keys], NOW)
    engine = AlertEngine(store, Settings(), lambda: NOW / 1000)
    sender = Recorder()

    await cluster.astop("fast")
    with pytest.raises(StoreError, match="cannot reach the database"):
        await engine.drain(sender, NOW, "w", lease_ms=LEASE_MS)  # claims nothing, sends nothing
    await cluster.astart()

    result = await engine.drain(sender, NOW + 1, "w", lease_ms=LEASE_MS)
    assert sorted(result.sent_keys) == sorted(keys) and result.retried == result.dead == []
    assert sender.counts() == dict.fromkeys(keys, 1)
    # Nothing left, nothing sent twice, now or once every lease would have expired.
    assert (await engine.drain(sender, NOW + 2, "w")).claimed == 0
    assert (await engine.drain(sender, NOW + 10 * LEASE_MS, "w")).claimed == 0
    assert sender.counts() == dict.fromkeys(keys, 1)
    assert await logged_keys(store, keys) == set(keys)


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_a_drain_cut_by_the_outage_loses_nothing_and_resends_only_the_unmarked(
    cluster: PgCluster, store: Store, concurrency: int
) -> None:
    chats = [await chat(store, f"chat{i}") for i in range(3)]
    keys = [f"chat{i}-{n}" for n in range(3) for i in range(3)]  # claim order: round robin
    await enqueue(store, [message(chats[int(k[4])], k) for k in keys], NOW)
    engine = AlertEngine(store, Settings(), lambda: NOW / 1000)

    async def outage() -> None:
        await cluster.astop("immediate")

    # The fourth send reaches the platform, then the server dies before it can be marked.
    sender = Recorder(during={4: outage})
    with pytest.raises(StoreError):
        await engine.drain(sender, NOW, "w", lease_ms=LEASE_MS, concurrency=concurrency)
    before = list(sender.delivered)
    assert len(before) >= 4 and len(set(before)) == len(before)
    await cluster.astart()

    # Every row the drain claimed is leased to it: nothing is due again before the lease ends.
    assert (await engine.drain(sender, NOW + 1, "w", concurrency=concurrency)).claimed == 0
    after = await engine.drain(sender, NOW + LEASE_MS, "w", concurrency=concurrency)
    assert after.retried == after.dead == []

    counts = sender.counts()
    assert set(counts) == set(keys)  # nothing lost
    twice = sorted(k for k, n in counts.items() if n == 2)
    assert set(counts.values()) <= {1, 2}  # never a third copy
    assert set(twice) <= set(before)  # only rows already delivered when the server died
    assert len(twice) <= min(concurrency, len(chats))  # at most one per send in flight
    if concurrency == 1:
        assert before == keys[:4] and twice == [keys[3]]  # exactly the one not yet marked
    st = await stats(store, NOW + LEASE_MS)
    assert (st.pending, st.sent) == (0, len(keys))
    assert await logged_keys(store, keys) == set(keys)
    assert (await engine.drain(sender, NOW + 10 * LEASE_MS, "w")).claimed == 0


# --- leadership ---------------------------------------------------------------------------------


def leadership(url: str, instance: str, calls: Calls) -> Leadership:
    return Leadership(
        url,
        instance,
        check_every_s=CHECK_S,
        on_elected=calls.on_elected,
        on_deposed=calls.on_deposed,
    )


async def test_the_leader_steps_down_with_the_server_and_leads_again_after_it(
    cluster: PgCluster, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()
    lead = leadership(db_url, "solo", calls)
    try:
        await lead.start()
        assert await lead.wait_until_leader(timeout=TIMEOUT_S)
        assert await lead.current_leader() == "solo"

        with caplog.at_level(logging.WARNING, logger="alerts.leadership"):
            await cluster.astop("immediate")
            await eventually(lambda: calls.deposed == 1, "on_deposed once the server is gone")
            assert not lead.is_leader and lead.leader_since is None
            assert lead.status().depositions == 1
            # It keeps trying while the server is away, and never leads without the lock.
            await eventually(
                lambda: sum("campaign failed" in r.getMessage() for r in caplog.records) >= 2,
                "two failed campaigns during the outage",
            )
            assert not lead.is_leader and not lead.status().last_check_ok
        await cluster.astart()

        assert await lead.wait_until_leader(timeout=TIMEOUT_S)
        assert (calls.elected, calls.deposed) == (2, 1)
        assert lead.status().elections == 2
        assert await lead.current_leader() == "solo"  # the new server's lock is ours
    finally:
        await lead.stop()
    assert calls.deposed == 2  # stop() steps down too


async def test_exactly_one_of_two_instances_leads_after_the_restart(
    cluster: PgCluster, db_url: str
) -> None:
    calls = {name: Calls() for name in "ab"}
    a, b = (leadership(db_url, name, calls[name]) for name in "ab")
    observer = Leadership(db_url, "observer")  # never started: asks on its own connection
    try:
        await a.start()
        assert await a.wait_until_leader(timeout=TIMEOUT_S)
        await b.start()
        await eventually(lambda: b.status().last_check_ok, "b campaigning")
        assert not b.is_leader

        await cluster.astop("fast")
        await eventually(lambda: not a.is_leader and calls["a"].deposed == 1, "a deposed")
        await eventually(
            lambda: not a.status().last_check_ok and not b.status().last_check_ok,
            "both failing to reach the server",
        )
        assert not a.is_leader and not b.is_leader
        await cluster.astart()

        await eventually(lambda: a.is_leader or b.is_leader, "a leader after the restart")
        await eventually(
            lambda: a.status().last_check_ok and b.status().last_check_ok, "both checking again"
        )
        # Several check intervals of each: always exactly one leader.
        loop = asyncio.get_running_loop()
        end = loop.time() + 5 * CHECK_S
        while loop.time() < end:
            assert [x.is_leader for x in (a, b)].count(True) == 1
            await asyncio.sleep(0.02)
        leader = a if a.is_leader else b
        assert await observer.current_leader() == leader.instance
        assert calls[leader.instance].elected == (2 if leader is a else 1)
        assert calls["b"].deposed == 0  # b never led, so it had nothing to step down from
    finally:
        await a.stop()
        await b.stop()


# --- the whole bot ------------------------------------------------------------------------------


async def test_liqbot_run_survives_a_database_restart(
    cluster: PgCluster, db_url: str, tmp_path: Path
) -> None:
    # Imported here: the live-run helpers (and their fakes) only matter to this case.
    from tests.bot.test_run_live import (
        CHAT,
        REPLY_S,
        SECRET,
        START_S,
        STOP_S,
        TOKEN,
        Liqbot,
        binance_script,
        write_config,
        write_etf_flows,
    )
    from tests.fakes.telegram_api import FakeTelegram
    from tests.fakes.venue_api import FakeVenueApi
    from tests.fakes.ws_server import FakeWsServer

    async def start_bot(config: Path) -> Liqbot:
        return await Liqbot.start(tmp_path, config, db_url)

    def now_ms() -> int:
        return time.time_ns() // 1_000_000

    def deliveries(tg: FakeTelegram, env: Envelope) -> int:
        headline = message_from_dict(env.payload).headline
        return sum(
            headline in str(c.params.get("text"))
            for c in tg.calls_to("sendMessage")
            if c.chat_id == str(CHAT)
        )

    async with contextlib.AsyncExitStack() as stack:
        etf_file = tmp_path / "flows.json"
        write_etf_flows(etf_file)
        tg = await stack.enter_async_context(FakeTelegram(TOKEN))
        api = stack.enter_context(FakeVenueApi(["BTC"]))
        ws = await stack.enter_async_context(FakeWsServer(binance_script))
        config = tmp_path / "config.yaml"
        write_config(
            config,
            venues=("binance",),
            telegram=tg,
            rest_url=api.url,
            ws_urls={"binance": f"{ws.url}/market"},
            etf_file=etf_file,
            cache_dir=tmp_path / "etf-cache",
        )
        bot = await start_bot(config)
        stack.push_async_callback(bot.kill)
        store = await open_store(db_url, migrate=False)
        stack.push_async_callback(store.close)

        def logged(text: str) -> Callable[[], int]:
            return lambda: bot.stderr.count(text)

        await bot.until("the scheduler started", logged("leading: scheduler started"), START_S)
        dest = (await upsert_destination(store, "telegram", str(CHAT), "private", now_ms())).id

        # Before the outage: the bot delivers from the outbox on this server.
        n0 = message(dest, "before", level=90_000.0)
        assert await enqueue(store, [n0], now_ms()) == ["before"]
        await bot.until("the first delivery", lambda: deliveries(tg, n0), REPLY_S)

        # Queued before the outage, due while the server is down: only a bot that reconnects
        # and leads again can deliver it.
        due = now_ms() + 2_500
        n1 = message(dest, "across", level=91_000.0)
        assert await enqueue(store, [n1], due) == ["across"]
        await cluster.astop("fast")
        await bot.until(
            "the outage in the log", logged("lease check failed, stepping down"), REPLY_S
        )
        await bot.until("a failed campaign", logged("campaign failed"), REPLY_S)
        await asyncio.sleep(max(0.0, (due - now_ms()) / 1000) + 0.5)
        assert bot.proc.returncode is None, bot.stderr
        assert deliveries(tg, n1) == 0  # it fell due during the outage, so it is still queued
        restarted_ms = now_ms()
        await cluster.astart()

        await bot.until("the delivery after the restart", lambda: deliveries(tg, n1), REPLY_S)

        async def state() -> tuple[int, int, int]:
            st = await stats(store, now_ms())
            async with store.read() as conn:
                fired = await conn.execute(
                    select(JobClaimRow.job_name).where(JobClaimRow.fire_ms >= restarted_ms)
                )
                return st.sent, st.pending, len(fired.all())

        # Both marked sent (so never sent again), and claimed jobs (polls, ticks) fire again.
        deadline = time.monotonic() + REPLY_S
        while (got := await state())[:2] != (2, 0) or got[2] == 0:
            assert bot.proc.returncode is None, bot.stderr
            assert time.monotonic() < deadline, f"outbox (sent, pending, jobs since) = {got}"
            await asyncio.sleep(0.2)
        assert deliveries(tg, n0) == 1 and deliveries(tg, n1) == 1
        assert bot.stderr.count("elected leader") >= 2, bot.stderr
        assert bot.stderr.count("leading: scheduler started") >= 2, bot.stderr

        bot.proc.send_signal(signal.SIGTERM)
        code = await bot.finish(STOP_S)
        assert code == 0, bot.stderr
        assert "stopping" in bot.stderr
        assert TOKEN not in bot.stdout + bot.stderr and SECRET not in bot.stdout + bot.stderr
