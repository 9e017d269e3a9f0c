"""Destinations and subscriptions: typed async repository functions.

Every function takes ``db``: a ``Store`` (it opens and commits its own transaction) or an
``AsyncConnection`` from ``store.write()``/``store.read()`` (it joins that transaction, so
several calls commit together). Statements are SQLAlchemy Core with bound parameters; no SQL is
built from strings. Results are frozen dataclasses (``Destination``, ``Subscription``).

The evaluation load (numpy columns) is in ``load.py``; alert state, snapshots, the
notification log and job claims in ``runtime.py``; the outbox in ``outbox.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, Row, Table, case, delete, false, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from alerts.store.engine import Db, dialect_insert, transaction
from alerts.store.models import DestinationRow, SubscriptionRow
from alerts.subscriptions import Kind, Quotas, Subscription, Timing, check_quota, validate
from core.errors import InputError

Platform = Literal["telegram", "discord", "console"]
ChatType = Literal["private", "group", "channel", "guild_channel", "dm"]

destinations = cast(Table, DestinationRow.__table__)
subscriptions = cast(Table, SubscriptionRow.__table__)


# --- destinations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """A chat that receives notifications, with its settings (quiet hours in local minutes)."""

    id: int
    platform: str
    chat_id: str
    type: str
    title: str
    enabled: bool
    timezone: str
    quiet_start: int | None
    quiet_end: int | None
    muted_until_ms: int | None
    failures: int
    disabled_reason: str | None
    created_ms: int


def _destination(row: Row[Any]) -> Destination:
    return Destination(**row._asdict())


async def upsert_destination(
    db: Db, platform: Platform, chat_id: str, chat_type: ChatType, now_ms: int, title: str = ""
) -> Destination:
    """The destination for (platform, chat_id), created on first sight; type and title follow
    the platform. Settings, ``enabled`` and failures are left as they are."""
    async with transaction(db, write=True) as conn:
        stmt = dialect_insert(conn, destinations).values(
            platform=platform,
            chat_id=str(chat_id),
            type=chat_type,
            title=title[:256],
            created_ms=now_ms,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["platform", "chat_id"],
            set_={"type": stmt.excluded.type, "title": stmt.excluded.title},
        )
        row = (await conn.execute(stmt.returning(*destinations.c))).one()
        return _destination(row)


async def get_destination(db: Db, destination_id: int) -> Destination | None:
    async with transaction(db, write=False) as conn:
        stmt = select(destinations).where(destinations.c.id == destination_id)
        row = (await conn.execute(stmt)).one_or_none()
        return None if row is None else _destination(row)


async def find_destination(db: Db, platform: str, chat_id: str) -> Destination | None:
    async with transaction(db, write=False) as conn:
        stmt = select(destinations).where(
            destinations.c.platform == platform, destinations.c.chat_id == str(chat_id)
        )
        row = (await conn.execute(stmt)).one_or_none()
        return None if row is None else _destination(row)


class _Keep:
    """Marker: leave a setting as it is."""


KEEP: Final = _Keep()


async def update_destination_settings(
    db: Db,
    destination_id: int,
    *,
    timezone: str | _Keep = KEEP,
    quiet_hours: tuple[int, int] | _Keep | None = KEEP,
    muted_until_ms: int | _Keep | None = KEEP,
) -> Destination | None:
    """Change a chat's settings; None when there is no such destination.

    ``timezone`` is an IANA name (``Europe/Berlin``); ``quiet_hours`` is (start, end) in
    minutes of the local day (end may be before start: quiet over midnight) or None for none.
    """
    values: dict[str, Any] = {}
    if not isinstance(timezone, _Keep):
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InputError(
                f"unknown timezone {timezone!r}; use an IANA name such as Europe/Berlin or UTC"
            ) from None
        values["timezone"] = timezone
    if not isinstance(quiet_hours, _Keep):
        if quiet_hours is not None and not all(0 <= m < 1440 for m in quiet_hours):
            raise InputError("quiet hours are minutes of the day, from 00:00 to 23:59")
        values["quiet_start"], values["quiet_end"] = quiet_hours or (None, None)
    if not isinstance(muted_until_ms, _Keep):
        values["muted_until_ms"] = muted_until_ms
    return await _update_destination(db, destination_id, values)


async def _update_destination(
    db: Db, destination_id: int, values: Mapping[str, Any]
) -> Destination | None:
    async with transaction(db, write=True) as conn:
        stmt = update(destinations).where(destinations.c.id == destination_id)
        # With nothing to change, a no-op SET still answers with the row.
        stmt = stmt.values(**values) if values else stmt.values(id=destinations.c.id)
        row = (await conn.execute(stmt.returning(*destinations.c))).one_or_none()
        return None if row is None else _destination(row)


async def disable_destination(db: Db, destination_id: int, reason: str) -> Destination | None:
    """Stop delivering to a chat (its subscriptions stay: enabling it again resumes them)."""
    values = {"enabled": False, "disabled_reason": reason[:512]}
    return await _update_destination(db, destination_id, values)


async def enable_destination(db: Db, destination_id: int) -> Destination | None:
    """Deliver to a chat again; its failure count starts over."""
    values = {"enabled": True, "disabled_reason": None, "failures": 0}
    return await _update_destination(db, destination_id, values)


async def migrate_destination(db: Db, destination_id: int, new_chat_id: str) -> Destination | None:
    """Move a chat to a new id on its platform (a Telegram group upgraded to a supergroup).

    When the new id is already known (the bot saw the supergroup first), the old chat's
    subscriptions and queued messages move to it and the old row is disabled; otherwise the
    row simply takes the new id. Returns the destination that now holds the chat.
    """
    from alerts.store.outbox import outbox  # outbox imports this module's tables

    async with transaction(db, write=True) as conn:
        old_row = (
            await conn.execute(select(destinations).where(destinations.c.id == destination_id))
        ).one_or_none()
        if old_row is None:
            return None
        old = _destination(old_row)
        existing = (
            await conn.execute(
                select(destinations).where(
                    destinations.c.platform == old.platform,
                    destinations.c.chat_id == str(new_chat_id),
                )
            )
        ).one_or_none()
        if existing is None:
            stmt = update(destinations).where(destinations.c.id == destination_id)
            row = (
                await conn.execute(stmt.values(chat_id=str(new_chat_id)).returning(*destinations.c))
            ).one()
            return _destination(row)
        target = int(existing.id)
        await conn.execute(
            update(subscriptions)
            .where(subscriptions.c.destination_id == destination_id)
            .values(destination_id=target)
        )
        await conn.execute(
            update(outbox)
            .where(outbox.c.destination_id == destination_id, outbox.c.sent_ms.is_(None))
            .values(destination_id=target)
        )
        await conn.execute(
            update(destinations)
            .where(destinations.c.id == destination_id)
            .values(enabled=False, disabled_reason=f"migrated to chat {new_chat_id}")
        )
        return _destination(existing)


async def record_failure(
    db: Db, destination_id: int, reason: str, *, disable_after: int = 3
) -> Destination | None:
    """Count one *definitive* delivery failure (blocked, kicked, chat not found).

    The destination is disabled with ``reason`` when this makes ``disable_after`` in a row
    (DESIGN §7). Transient errors (timeouts, 5xx, 429) must not be recorded here; a success
    resets the count (``record_success``). Atomic: one UPDATE.
    """
    failures = destinations.c.failures + 1
    trips = failures >= disable_after
    values = {
        "failures": failures,
        "enabled": case((trips, false()), else_=destinations.c.enabled),
        "disabled_reason": case((trips, reason[:512]), else_=destinations.c.disabled_reason),
    }
    return await _update_destination(db, destination_id, values)


async def record_success(db: Db, destination_id: int) -> None:
    """A delivery succeeded: the consecutive-failure count starts over."""
    async with transaction(db, write=True) as conn:
        await conn.execute(
            update(destinations)
            .where(destinations.c.id == destination_id, destinations.c.failures != 0)
            .values(failures=0)
        )


# --- subscriptions ------------------------------------------------------------------------


def _subscription_values(sub: Subscription) -> dict[str, Any]:
    values = {
        f.name: getattr(sub, f.name)
        for f in dataclasses.fields(sub)
        if f.name not in ("id", "timing", "kind")
    }
    values["kind"] = str(sub.kind)
    values.update(dataclasses.asdict(sub.timing))
    return values


_TIMING_FIELDS = tuple(f.name for f in dataclasses.fields(Timing))


def _subscription(row: Row[Any]) -> Subscription:
    data = row._asdict()
    data.pop("active", None)
    timing = Timing(**{name: data.pop(name) for name in _TIMING_FIELDS})
    return Subscription(**{**data, "kind": Kind(data["kind"]), "timing": timing})


async def _active_of(conn: AsyncConnection, destination_id: int) -> list[Subscription]:
    stmt = (
        select(subscriptions)
        .where(subscriptions.c.destination_id == destination_id, subscriptions.c.active)
        .order_by(subscriptions.c.id)
    )
    return [_subscription(row) for row in await conn.execute(stmt)]


async def add_subscription(db: Db, sub: Subscription, quotas: Quotas, now_ms: int) -> Subscription:
    """Store a new subscription: validated, and counted against the chat's quotas in the same
    transaction as the insert, so two concurrent adds cannot both slip under the quota.

    ``sub.id`` and ``sub.created_ms`` are ignored; the stored subscription is returned.
    Raises InputError (invalid, over quota, or no such destination).
    """
    validate(sub)
    async with transaction(db, write=True) as conn:
        # Serialize adds for one chat: PostgreSQL locks the destination row; SQLite's write
        # transaction (BEGIN IMMEDIATE) already holds the database's write lock.
        lock = select(destinations.c.id).where(destinations.c.id == sub.destination_id)
        if conn.dialect.name == "postgresql":
            lock = lock.with_for_update()
        if (await conn.execute(lock)).one_or_none() is None:
            raise InputError("this chat is not registered; send /start first")
        check_quota(await _active_of(conn, sub.destination_id), sub, quotas)
        stored = dataclasses.replace(sub, id=0, created_ms=now_ms)
        values = _subscription_values(stored)
        insert = subscriptions.insert().values(**values).returning(subscriptions.c.id)
        new_id = (await conn.execute(insert)).scalar_one()
        return dataclasses.replace(stored, id=int(new_id))


async def get_subscription(db: Db, subscription_id: int) -> Subscription | None:
    async with transaction(db, write=False) as conn:
        stmt = select(subscriptions).where(subscriptions.c.id == subscription_id)
        row = (await conn.execute(stmt)).one_or_none()
        return None if row is None else _subscription(row)


async def get_subscriptions(db: Db, ids: Iterable[int]) -> dict[int, Subscription]:
    """The subscriptions with these ids (active or not), by id; unknown ids are left out."""
    wanted = sorted(set(ids))
    found: dict[int, Subscription] = {}
    async with transaction(db, write=False) as conn:
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            stmt = select(subscriptions).where(subscriptions.c.id.in_(chunk))
            for row in await conn.execute(stmt):
                sub = _subscription(row)
                found[sub.id] = sub
    return found


async def list_subscriptions(
    db: Db, destination_id: int, *, active_only: bool = True
) -> list[Subscription]:
    """A chat's subscriptions, oldest first."""
    async with transaction(db, write=False) as conn:
        if active_only:
            return await _active_of(conn, destination_id)
        stmt = (
            select(subscriptions)
            .where(subscriptions.c.destination_id == destination_id)
            .order_by(subscriptions.c.id)
        )
        return [_subscription(row) for row in await conn.execute(stmt)]


def _owned(subscription_id: int, destination_id: int | None) -> list[ColumnElement[bool]]:
    where = [subscriptions.c.id == subscription_id]
    if destination_id is not None:  # a chat may only touch its own alerts
        where.append(subscriptions.c.destination_id == destination_id)
    return where


async def deactivate_subscription(
    db: Db, subscription_id: int, destination_id: int | None = None
) -> bool:
    """Stop evaluating a subscription (kept for history). False when not found or not owned."""
    async with transaction(db, write=True) as conn:
        stmt = (
            update(subscriptions)
            .where(*_owned(subscription_id, destination_id), subscriptions.c.active)
            .values(active=False)
        )
        return (await conn.execute(stmt)).rowcount > 0


async def delete_subscription(
    db: Db, subscription_id: int, destination_id: int | None = None
) -> bool:
    """Delete a subscription and its alert state. False when not found or not owned."""
    async with transaction(db, write=True) as conn:
        stmt = delete(subscriptions).where(*_owned(subscription_id, destination_id))
        return (await conn.execute(stmt)).rowcount > 0


async def expire_subscriptions(db: Db, now_ms: int) -> list[int]:
    """Deactivate every active subscription whose ``expires_ms`` has passed; their ids."""
    async with transaction(db, write=True) as conn:
        stmt = (
            update(subscriptions)
            .where(
                subscriptions.c.active,
                subscriptions.c.expires_ms.is_not(None),
                subscriptions.c.expires_ms <= now_ms,
            )
            .values(active=False)
            .returning(subscriptions.c.id)
        )
        return sorted(int(i) for i in (await conn.execute(stmt)).scalars())
