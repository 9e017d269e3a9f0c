"""The store on SQLite and PostgreSQL: migrations, destinations, subscriptions and quotas, the
evaluation load, alert state, snapshots and job claims. Every test runs on both databases."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from alerts.state import NEVER, AlertState, StateArrays, Status
from alerts.store import (
    KEEP,
    NEVER_EXPIRES,
    Store,
    StoreError,
    add_subscription,
    claim_job,
    current_revision,
    deactivate_subscription,
    delete_subscription,
    downgrade,
    enable_destination,
    expire_subscriptions,
    find_destination,
    get_destination,
    get_snapshot,
    get_snapshots,
    get_state,
    get_subscription,
    get_subscriptions,
    list_subscriptions,
    load_active,
    load_states,
    open_store,
    purge_job_claims,
    put_snapshot,
    record_failure,
    record_success,
    snapshot_from_dict,
    snapshot_to_dict,
    update_destination_settings,
    upgrade,
    upsert_destination,
    upsert_state,
    upsert_states,
)
from alerts.store.models import Base, DestinationRow
from alerts.subscriptions import Kind, Quotas, Subscription, Timing
from core.errors import ConfigError, InputError
from core.liqmap import Cluster, CumulativePeaks
from core.snapshot import LiqTotals, Snapshot

NOW = 1_768_341_600_000  # 2026-01-13 22:00 UTC
TABLES = {
    "destinations",
    "subscriptions",
    "alert_state",
    "notification_log",
    "outbox",
    "snapshots",
    "job_claims",
}


def cluster(dest: int, symbol: str = "BTC", **kw: object) -> Subscription:
    params: dict[str, object] = {"pct": 1.0, "min_usd": 5e7, "side": "short"}
    params.update(kw)
    return Subscription(id=0, destination_id=dest, kind=Kind.CLUSTER, symbol=symbol, **params)  # type: ignore[arg-type]


async def chat(store: Store, chat_id: str = "100") -> int:
    return (await upsert_destination(store, "telegram", chat_id, "private", NOW)).id


# --- migrations and opening ---------------------------------------------------------------


HEAD = "0003"


def _schema(conn: Connection) -> tuple[set[str], list[object]]:
    tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
    diff = compare_metadata(
        MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
    )
    return tables, diff


async def test_migrations_create_the_schema_from_empty_and_are_idempotent(fresh_url: str) -> None:
    first = await open_store(fresh_url)
    try:
        assert await current_revision(first) == HEAD
        async with first.read() as conn:
            tables, diff = await conn.run_sync(_schema)
        assert tables == TABLES
        assert diff == [], "the migration and the models disagree"
        await upgrade(first)  # at head: nothing to do
        second = await open_store(fresh_url)  # a second start runs upgrade again
        await second.close()
        assert await current_revision(first) == HEAD
        await downgrade(first, "base")
        async with first.read() as conn:
            tables, _ = await conn.run_sync(_schema)
        assert tables == set()
        assert await current_revision(first) is None
        await upgrade(first, "0001")  # a database of the first release upgrades in place
        assert await current_revision(first) == "0001"
        await upgrade(first)
        assert await current_revision(first) == HEAD
    finally:
        await first.close()


async def test_instances_starting_together_migrate_once(fresh_url: str) -> None:
    opened = await asyncio.gather(
        *(open_store(fresh_url) for _ in range(3)), return_exceptions=True
    )
    stores = [s for s in opened if isinstance(s, Store)]
    try:
        assert len(stores) == 3, [str(e) for e in opened if not isinstance(e, Store)]
        for s in stores:
            assert await current_revision(s) == HEAD
    finally:
        for s in stores:
            await s.close()


async def test_sqlite_file_and_directory_are_created_on_first_run(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "liqbot.db"
    store = await open_store(f"sqlite+aiosqlite:///{path}")
    await store.close()
    assert path.is_file()


async def test_sqlite_writers_of_one_process_queue_in_turn(tmp_path: Path) -> None:
    """Writers wait their turn on the store, not in SQLite's busy handler (which sleeps up to
    100 ms between tries): while one write transaction is open, the others hold no
    connection, and they then run in the order they came."""
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    order: list[int] = []
    try:
        release = asyncio.Event()

        async def holder() -> None:
            async with store.write():
                await release.wait()

        async def writer(i: int) -> None:
            async with store.write() as conn:
                await upsert_destination(conn, "telegram", str(i), "private", 0)
                order.append(i)

        first = asyncio.create_task(holder())
        await asyncio.sleep(0.05)
        others = []
        for i in range(5):
            others.append(asyncio.create_task(writer(i)))
            await asyncio.sleep(0.01)
        assert store.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        assert order == []
        release.set()
        await asyncio.gather(first, *others)
        assert order == [0, 1, 2, 3, 4]
        async with store.read() as conn:
            assert await find_destination(conn, "telegram", "4") is not None
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "mysql+aiomysql://u:pw@localhost/db",
        "sqlite:///data/liqbot.db",  # the sync driver
        "postgresql+asyncpg://u@localhost",  # no database
    ],
)
async def test_a_bad_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"database\.url"):
        await open_store(url)


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    url = "postgresql+asyncpg://liqbot:s3cr%40t-pw@127.0.0.1:1/liqbot"
    with pytest.raises(StoreError, match="cannot open the database") as info:
        await open_store(url)
    message = str(info.value)
    assert "s3cr" not in message and "127.0.0.1:1" in message and "***" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_an_unwritable_sqlite_directory_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the directory"):
        await open_store(f"sqlite+aiosqlite:///{blocker / 'sub' / 'liqbot.db'}")


# --- destinations -------------------------------------------------------------------------


async def test_destination_upsert_get_and_unique_platform_chat(store: Store) -> None:
    a = await upsert_destination(store, "telegram", "-1001", "group", NOW, title="Traders")
    assert (a.enabled, a.timezone, a.failures, a.created_ms) == (True, "UTC", 0, NOW)
    again = await upsert_destination(store, "telegram", "-1001", "channel", NOW + 5, title="New")
    assert again.id == a.id and again.type == "channel" and again.title == "New"
    assert again.created_ms == NOW
    other = await upsert_destination(store, "discord", "-1001", "guild_channel", NOW)
    assert other.id != a.id
    assert await get_destination(store, a.id) == again
    assert await find_destination(store, "discord", "-1001") == other
    assert await find_destination(store, "console", "-1001") is None
    async with store.write() as conn:  # the unique key holds in the database itself
        with pytest.raises(IntegrityError):
            await conn.execute(
                insert(DestinationRow).values(
                    platform="telegram", chat_id="-1001", type="group", created_ms=NOW
                )
            )


async def test_destination_check_constraints(store: Store) -> None:
    async with store.write() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(
                insert(DestinationRow).values(
                    platform="icq", chat_id="1", type="private", created_ms=NOW
                )
            )


async def test_destination_settings(store: Store) -> None:
    dest = await chat(store)
    got = await update_destination_settings(
        store, dest, timezone="Europe/Berlin", quiet_hours=(22 * 60, 7 * 60)
    )
    assert got is not None
    assert (got.timezone, got.quiet_start, got.quiet_end) == ("Europe/Berlin", 1320, 420)
    got = await update_destination_settings(store, dest, muted_until_ms=NOW + 1)
    assert got is not None and got.muted_until_ms == NOW + 1 and got.timezone == "Europe/Berlin"
    got = await update_destination_settings(store, dest, quiet_hours=None, muted_until_ms=None)
    assert got is not None and (got.quiet_start, got.quiet_end, got.muted_until_ms) == (
        None,
        None,
        None,
    )
    with pytest.raises(InputError, match="unknown timezone 'Mars/Olympus'"):
        await update_destination_settings(store, dest, timezone="Mars/Olympus")
    with pytest.raises(InputError, match="minutes of the day"):
        await update_destination_settings(store, dest, quiet_hours=(0, 1440))
    assert await update_destination_settings(store, 999_999, timezone=KEEP) is None


async def test_definitive_failures_disable_after_repeats_and_success_resets(store: Store) -> None:
    dest = await chat(store)
    first = await record_failure(store, dest, "Forbidden: bot was blocked", disable_after=3)
    assert first is not None and (first.failures, first.enabled) == (1, True)
    await record_success(store, dest)
    got = await get_destination(store, dest)
    assert got is not None and got.failures == 0
    for _ in range(2):
        got = await record_failure(store, dest, "chat not found", disable_after=3)
        assert got is not None and got.enabled
    got = await record_failure(store, dest, "chat not found", disable_after=3)
    assert got is not None
    assert (got.failures, got.enabled, got.disabled_reason) == (3, False, "chat not found")
    await add_subscription(store, cluster(dest), Quotas(), NOW)  # subscriptions are kept
    got = await enable_destination(store, dest)
    assert got is not None and (got.enabled, got.failures, got.disabled_reason) == (True, 0, None)
    assert len(await list_subscriptions(store, dest)) == 1


# --- subscriptions ------------------------------------------------------------------------


async def test_subscription_round_trip(store: Store) -> None:
    dest = await chat(store)
    sub = Subscription(
        id=0,
        destination_id=dest,
        kind=Kind.SPIKE,
        symbol="ETH",
        min_usd=2.5e7,
        side="long",
        window_ms=900_000,
        timing=Timing(cooldown_s=60.0, repeat_s=600.0, rearm_margin=0.1, expires_ms=NOW + 10),
    )
    stored = await add_subscription(store, sub, Quotas(), NOW)
    assert stored.id > 0 and stored.created_ms == NOW
    assert stored == Subscription(**{**sub.__dict__, "id": stored.id, "created_ms": NOW})
    assert await get_subscription(store, stored.id) == stored
    assert await list_subscriptions(store, dest) == [stored]
    assert await get_subscriptions(store, [stored.id, 12345]) == {stored.id: stored}


async def test_invalid_subscription_is_rejected_before_the_database(store: Store) -> None:
    dest = await chat(store)
    with pytest.raises(InputError, match="distance must be"):
        await add_subscription(store, cluster(dest, pct=50.0), Quotas(), NOW)
    with pytest.raises(InputError, match="not registered"):
        await add_subscription(store, cluster(424242), Quotas(), NOW)
    assert await list_subscriptions(store, dest) == []


async def test_quotas_per_chat_and_per_kind(store: Store) -> None:
    dest, other = await chat(store, "1"), await chat(store, "2")
    quotas = Quotas(per_chat=3, per_chat_per_kind=2)
    await add_subscription(store, cluster(dest), quotas, NOW)
    await add_subscription(store, cluster(dest, "ETH"), quotas, NOW)
    with pytest.raises(InputError, match="2 cluster alerts"):
        await add_subscription(store, cluster(dest, "SOL"), quotas, NOW)
    cross = Subscription(id=0, destination_id=dest, kind=Kind.CROSS, symbol="BTC", level=1e5)
    await add_subscription(store, cross, quotas, NOW)
    with pytest.raises(InputError, match="3 alerts, the most allowed"):
        await add_subscription(store, Subscription(0, dest, Kind.ETF, None), quotas, NOW)
    await add_subscription(store, cluster(other), quotas, NOW)  # another chat's own quota
    # Inactive subscriptions do not count.
    first = (await list_subscriptions(store, dest))[0]
    assert await deactivate_subscription(store, first.id)
    await add_subscription(store, cluster(dest, "SOL"), quotas, NOW)


async def test_quota_holds_under_concurrent_adds(store: Store) -> None:
    """Twelve adds race on separate connections; the quota of five is checked in the same
    transaction as the insert, so exactly five land."""
    dest = await chat(store)
    quotas = Quotas(per_chat=5, per_chat_per_kind=5)

    async def add(i: int) -> bool:
        try:
            await add_subscription(store, cluster(dest, f"S{i}"), quotas, NOW)
        except InputError:
            return False
        return True

    results = await asyncio.gather(*(add(i) for i in range(12)))
    assert sum(results) == 5
    assert len(await list_subscriptions(store, dest)) == 5


async def test_deactivate_delete_are_scoped_to_the_owner_and_expire(store: Store) -> None:
    mine, theirs = await chat(store, "1"), await chat(store, "2")
    a = await add_subscription(store, cluster(mine), Quotas(), NOW)
    b = await add_subscription(
        store, cluster(mine, "ETH", timing=Timing(expires_ms=NOW + 1000)), Quotas(), NOW
    )
    c = await add_subscription(
        store, cluster(mine, "SOL", timing=Timing(expires_ms=NOW + 5000)), Quotas(), NOW
    )
    assert not await deactivate_subscription(store, a.id, destination_id=theirs)
    assert not await delete_subscription(store, a.id, destination_id=theirs)
    assert await deactivate_subscription(store, a.id, destination_id=mine)
    assert not await deactivate_subscription(store, a.id)  # already inactive
    assert [s.id for s in await list_subscriptions(store, mine)] == [b.id, c.id]
    assert len(await list_subscriptions(store, mine, active_only=False)) == 3
    assert await expire_subscriptions(store, NOW + 999) == []
    assert await expire_subscriptions(store, NOW + 1000) == [b.id]
    assert await expire_subscriptions(store, NOW + 1000) == []
    assert await delete_subscription(store, c.id, destination_id=mine)
    assert await get_subscription(store, c.id) is None
    assert [s.id for s in await list_subscriptions(store, mine)] == []


async def test_load_active_returns_numpy_columns_of_one_kind(store: Store) -> None:
    d1, d2 = await chat(store, "1"), await chat(store, "2")
    q = Quotas()
    s1 = await add_subscription(store, cluster(d1, "BTC", side="short", pct=0.5), q, NOW)
    s2 = await add_subscription(
        store, cluster(d2, "ETH", side="any", timing=Timing(expires_ms=NOW + 1)), q, NOW
    )
    s3 = await add_subscription(store, cluster(d2, "BTC", side="long", min_usd=2e8), q, NOW)
    off = await add_subscription(store, cluster(d1, "SOL"), q, NOW)
    await deactivate_subscription(store, off.id)
    await add_subscription(
        store, Subscription(0, d1, Kind.CROSS, "BTC", level=96_000.0, direction="up"), q, NOW
    )

    table = await load_active(store, Kind.CLUSTER)
    assert len(table) == 3
    assert table["id"].dtype == np.int64 and table["pct"].dtype == np.float64
    assert table["id"].tolist() == [s1.id, s2.id, s3.id]
    assert table["destination_id"].tolist() == [d1, d2, d2]
    assert table["pct"].tolist() == [0.5, 1.0, 1.0]
    assert table["min_usd"].tolist() == [5e7, 5e7, 2e8]
    assert table["expires_ms"].tolist() == [NEVER_EXPIRES, NOW + 1, NEVER_EXPIRES]
    assert table["cooldown_s"].tolist() == [900.0] * 3
    assert table["symbol"].dtype == np.int32
    assert table.decode("symbol").tolist() == ["BTC", "ETH", "BTC"]
    assert table.decode("side").tolist() == ["short", "any", "long"]
    assert table.code("symbol", "ETH") == table["symbol"][1]
    assert table.code("symbol", "DOGE") == -1
    sides = table.recode("side", {"any": 0, "long": 1, "short": 2})
    assert sides.dtype == np.int8 and sides.tolist() == [2, 0, 1]
    assert "level" not in table.columns  # only the kind's own parameters

    cross = await load_active(store, Kind.CROSS)
    assert cross["level"].tolist() == [96_000.0] and cross.decode("direction").tolist() == ["up"]
    empty = await load_active(store, Kind.SPIKE)
    assert len(empty) == 0 and empty["window_ms"].dtype == np.int64
    assert empty.recode("side", {}).tolist() == []


# --- alert state --------------------------------------------------------------------------


async def test_alert_state_bulk_round_trip_and_alignment(store: Store) -> None:
    dest = await chat(store)
    subs = [await add_subscription(store, cluster(dest, f"S{i}"), Quotas(), NOW) for i in range(4)]
    ids = np.array([s.id for s in subs], dtype=np.int64)
    states = StateArrays(
        status=np.array([1, 0, 1, 0], np.int8),
        last_fired_ms=np.array([NOW, NEVER, NOW - 5, NEVER], np.int64),
        last_notified_ms=np.array([NOW, NEVER, NOW - 1, NEVER], np.int64),
        fired_count=np.array([1, 0, 7, 0], np.int64),
        last_value=np.array([0.4, np.nan, 1.5, 2.0]),
    )
    assert await upsert_states(store, ids[:3], _take(states, [0, 1, 2]), NOW) == 3
    stored = await load_states(store)
    assert stored.ids.tolist() == ids[:3].tolist()
    assert stored.states.status.tolist() == [1, 0, 1]
    assert stored.states.last_fired_ms.tolist() == [NOW, NEVER, NOW - 5]
    assert stored.states.fired_count.tolist() == [1, 0, 7]
    assert math.isnan(stored.states.last_value[1]) and stored.states.last_value[2] == 1.5

    # Overwrite one, and align to a table's order with an id that has no state yet.
    changed = _take(states, [2])
    changed = StateArrays(
        status=np.array([0], np.int8),
        last_fired_ms=changed.last_fired_ms,
        last_notified_ms=changed.last_notified_ms,
        fired_count=changed.fired_count,
        last_value=np.array([9.0]),
    )
    await upsert_states(store, ids[2:3], changed, NOW + 1)
    aligned = (await load_states(store)).for_ids(ids[::-1].copy())
    assert aligned.status.tolist() == [0, 0, 0, 1]
    assert aligned.last_value[1] == 9.0 and aligned.fired_count.tolist() == [0, 7, 0, 1]
    assert aligned.last_fired_ms[0] == NEVER  # subs[3]: armed, never fired

    single = AlertState(Status.FIRING, last_fired_ms=NOW, last_notified_ms=NOW, last_value=1.0)
    assert await upsert_state(store, subs[3].id, single, NOW)
    assert await get_state(store, subs[3].id) == single
    assert await get_state(store, 999_999) is None


async def test_alert_state_of_deleted_subscriptions_is_skipped_and_cascades(store: Store) -> None:
    dest = await chat(store)
    a = await add_subscription(store, cluster(dest), Quotas(), NOW)
    b = await add_subscription(store, cluster(dest, "ETH"), Quotas(), NOW)
    await delete_subscription(store, b.id)
    ids = np.array([a.id, b.id], np.int64)
    assert await upsert_states(store, ids, StateArrays.armed(2), NOW) == 1
    assert (await load_states(store)).ids.tolist() == [a.id]
    await delete_subscription(store, a.id)
    assert len(await load_states(store)) == 0


async def test_load_states_by_kind(store: Store) -> None:
    dest = await chat(store)
    a = await add_subscription(store, cluster(dest), Quotas(), NOW)
    b = await add_subscription(
        store, Subscription(0, dest, Kind.CROSS, "BTC", level=1.0), Quotas(), NOW
    )
    await upsert_states(store, [a.id, b.id], StateArrays.armed(2), NOW)
    assert (await load_states(store, Kind.CROSS)).ids.tolist() == [b.id]


def _take(s: StateArrays, rows: list[int]) -> StateArrays:
    return StateArrays(
        status=s.status[rows],
        last_fired_ms=s.last_fired_ms[rows],
        last_notified_ms=s.last_notified_ms[rows],
        fired_count=s.fired_count[rows],
        last_value=s.last_value[rows],
    )


# --- snapshots ----------------------------------------------------------------------------


def snapshot(symbol: str = "BTC", ts_ms: int = NOW, stale: tuple[str, ...] = ()) -> Snapshot:
    return Snapshot(
        symbol=symbol,
        ts_ms=ts_ms,
        price=95_734.5,
        prev_price=math.nan,
        venues=("binance", "okx"),
        clusters=(
            Cluster(
                side="short",
                price=96_202.0,
                price_low=96_000.0,
                price_high=96_400.0,
                usd=1.57e8,
                tier_share={100.0: 0.45, 50.0: 0.38, 25.0: 0.17},
                distance_pct=0.49,
            ),
        ),
        peaks=CumulativePeaks(
            long_usd=3e8, long_price=93_000.0, short_usd=4.51e8, short_price=96_202.0
        ),
        liqs={"1h": LiqTotals(3_600_000, 1.2e7, 3.4e7, {"binance": (1e7, 3e7), "okx": (2e6, 4e6)})},
        atr=math.inf,
        stale=stale,
    )


def _same(a: Snapshot, b: Snapshot) -> bool:
    # NaN != NaN, so compare the JSON-safe forms (which also pin the codec).
    return snapshot_to_dict(a) == snapshot_to_dict(b)


async def test_snapshot_codec_round_trip() -> None:
    snap = snapshot()
    back = snapshot_from_dict(snapshot_to_dict(snap))
    assert _same(back, snap)
    assert math.isnan(back.prev_price) and math.isnan(back.atr)  # infinity is not JSON either
    assert math.isnan(back.clusters[0].distance_atr)
    assert back.clusters[0].tier_share == {100.0: 0.45, 50.0: 0.38, 25.0: 0.17}
    assert back.liqs["1h"].by_venue["okx"] == (2e6, 4e6)


async def test_snapshots_latest_per_symbol(store: Store) -> None:
    assert await get_snapshot(store, "BTC") is None
    await put_snapshot(store, snapshot("BTC", NOW))
    await put_snapshot(store, snapshot("ETH", NOW, stale=("okx:oi",)))
    await put_snapshot(store, snapshot("BTC", NOW + 60_000))
    latest = await get_snapshot(store, "BTC")
    assert latest is not None and latest.ts_ms == NOW + 60_000
    assert _same(latest, snapshot("BTC", NOW + 60_000))
    every = await get_snapshots(store)
    assert sorted(every) == ["BTC", "ETH"] and every["ETH"].is_stale
    from alerts.store.models import SnapshotRow

    async with store.read() as conn:
        rows = (await conn.execute(select(SnapshotRow.symbol, SnapshotRow.stale))).all()
    assert sorted((s, bool(st)) for s, st in rows) == [("BTC", False), ("ETH", True)]


# --- job claims ---------------------------------------------------------------------------


async def test_job_claims_once_per_firing_across_instances(store: Store, store_url: str) -> None:
    other = await open_store(store_url)
    try:
        results = await asyncio.gather(
            *(claim_job(s, "evaluate", NOW, f"w{i}") for i, s in enumerate([store, other] * 4))
        )
        assert sorted(results) == [False] * 7 + [True]
        assert await claim_job(other, "evaluate", NOW + 60_000, "w1")
        assert await claim_job(store, "drain", NOW, "w0")
        assert await purge_job_claims(store, NOW + 1) == 2
        assert await claim_job(store, "evaluate", NOW, "w0")  # purged, so claimable again
    finally:
        await other.close()


async def test_writes_need_a_write_connection(store: Store) -> None:
    async with store.read() as conn:
        with pytest.raises(ValueError, match=r"store\.write\(\)"):
            await upsert_destination(conn, "console", "1", "private", NOW)
    async with store.write() as conn:  # several calls, one transaction
        dest = await upsert_destination(conn, "console", "1", "private", NOW)
        await add_subscription(conn, cluster(dest.id), Quotas(), NOW)
    assert len(await list_subscriptions(store, dest.id)) == 1
