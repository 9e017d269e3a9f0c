"""The alert store: SQLite by default, PostgreSQL for scale-out (DESIGN §8).

::

    store = await open_store(settings.database.url)   # created and migrated on first run
    dest = await upsert_destination(store, "telegram", "12345", "private", now_ms)
    sub = await add_subscription(store, Subscription(...), quotas, now_ms)
    table = await load_active(store, Kind.CLUSTER)    # numpy columns for the evaluator
    await enqueue(store, [Envelope(...)], now_ms)     # durable before any delivery
    for row in await claim(store, worker_id, now_ms): ...; await mark_sent(store, row.id, t)
    await store.close()

Modules: ``models`` (tables), ``engine`` (open, migrate, transactions), ``repo``
(destinations, subscriptions), ``load`` (the evaluation load as numpy columns), ``runtime``
(alert state, snapshots, log lookups, job claims), ``outbox`` (outbox and notification log).
Several calls can share one transaction: ``async with store.write() as conn:`` and pass
``conn`` instead of ``store``.
"""

from alerts.store.engine import (
    Db,
    Store,
    StoreError,
    current_revision,
    downgrade,
    open_store,
    upgrade,
)
from alerts.store.load import NEVER_EXPIRES, SubscriptionTable, load_active
from alerts.store.outbox import (
    Claimed,
    Envelope,
    OutboxStats,
    claim,
    enqueue,
    give_back,
    holds_lease,
    mark_failed,
    mark_sent,
    purge_sent,
    release_leases,
    requeue_dead,
    sent_keys_since,
    stats,
)
from alerts.store.repo import (
    KEEP,
    Destination,
    add_subscription,
    deactivate_subscription,
    delete_subscription,
    disable_destination,
    enable_destination,
    expire_subscriptions,
    find_destination,
    get_destination,
    get_subscription,
    get_subscriptions,
    list_subscriptions,
    migrate_destination,
    record_failure,
    record_success,
    update_destination_settings,
    upsert_destination,
)
from alerts.store.runtime import (
    LogEntry,
    StoredSnapshot,
    StoredStates,
    claim_job,
    get_log_entry,
    get_snapshot,
    get_snapshot_views,
    get_snapshots,
    get_state,
    last_sent,
    load_states,
    logged_keys,
    purge_job_claims,
    purge_log,
    put_snapshot,
    put_snapshots,
    snapshot_from_dict,
    snapshot_to_dict,
    upsert_state,
    upsert_states,
)

__all__ = [
    "KEEP",
    "NEVER_EXPIRES",
    "Claimed",
    "Db",
    "Destination",
    "Envelope",
    "LogEntry",
    "OutboxStats",
    "Store",
    "StoreError",
    "StoredSnapshot",
    "StoredStates",
    "SubscriptionTable",
    "add_subscription",
    "claim",
    "claim_job",
    "current_revision",
    "deactivate_subscription",
    "delete_subscription",
    "disable_destination",
    "downgrade",
    "enable_destination",
    "enqueue",
    "expire_subscriptions",
    "find_destination",
    "get_destination",
    "get_log_entry",
    "get_snapshot",
    "get_snapshot_views",
    "get_snapshots",
    "get_state",
    "get_subscription",
    "get_subscriptions",
    "give_back",
    "holds_lease",
    "last_sent",
    "list_subscriptions",
    "load_active",
    "load_states",
    "logged_keys",
    "mark_failed",
    "mark_sent",
    "migrate_destination",
    "open_store",
    "purge_job_claims",
    "purge_log",
    "purge_sent",
    "put_snapshot",
    "put_snapshots",
    "record_failure",
    "record_success",
    "release_leases",
    "requeue_dead",
    "sent_keys_since",
    "snapshot_from_dict",
    "snapshot_to_dict",
    "stats",
    "update_destination_settings",
    "upgrade",
    "upsert_destination",
    "upsert_state",
    "upsert_states",
]
