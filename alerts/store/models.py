"""The store's tables: SQLAlchemy 2 declarative models, one schema for SQLite and PostgreSQL.

The repository (``repo.py``, ``outbox.py``) runs Core statements against these tables and hands
out frozen dataclasses, never ORM instances: nothing lazy-loads behind an ``await``.

Conventions:

* times are epoch milliseconds UTC in ``BIGINT`` columns (``*_ms``), durations are seconds;
* ids are ``BIGINT`` on PostgreSQL and ``INTEGER`` on SQLite, where only ``INTEGER PRIMARY KEY``
  is the auto-incrementing rowid;
* JSON payloads are ``JSONB`` on PostgreSQL and JSON text on SQLite, serialized with orjson
  (see ``engine.py``);
* constraints are named by ``NAMING_CONVENTION``, so later migrations (and Alembic's batch mode
  on SQLite) can address them by name on both databases.

Any change here needs a new revision under ``alerts/migrations/versions``; the test suite
compares the migrated schema with these models on both databases.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT ids on PostgreSQL; SQLite auto-increments only an ``INTEGER PRIMARY KEY`` (the rowid).
Id: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
Payload: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")

PLATFORMS = ("telegram", "discord", "console")
CHAT_TYPES = ("private", "group", "channel", "guild_channel", "dm")
KINDS = ("cluster", "cross", "spike", "etf", "digest")
ALERT_STATES = ("armed", "firing")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    # Constant SQL from the module's own literals (never from input), for a CHECK constraint.
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DestinationRow(Base):
    """A chat on a platform that receives notifications, with its settings."""

    __tablename__ = "destinations"
    __table_args__ = (
        UniqueConstraint("platform", "chat_id"),
        CheckConstraint(_one_of("platform", PLATFORMS), name="platform"),
        CheckConstraint(_one_of("type", CHAT_TYPES), name="type"),
        CheckConstraint("quiet_start >= 0 AND quiet_start < 1440", name="quiet_start"),
        CheckConstraint("quiet_end >= 0 AND quiet_end < 1440", name="quiet_end"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(256), default="", server_default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    quiet_start: Mapped[int | None] = mapped_column(Integer)  # minute of day, local time
    quiet_end: Mapped[int | None] = mapped_column(Integer)
    muted_until_ms: Mapped[int | None] = mapped_column(BigInteger)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    disabled_reason: Mapped[str | None] = mapped_column(String(512))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class SubscriptionRow(Base):
    """One ``alerts.subscriptions.Subscription``: its numeric params and timing as columns."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(_one_of("kind", KINDS), name="kind"),
        # "All active of a kind" is the evaluation load: an index range scan.
        Index(None, "kind", "active"),
        Index(None, "destination_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    destination_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("destinations.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))
    symbol: Mapped[str | None] = mapped_column(String(32))
    pct: Mapped[float] = mapped_column(Double, default=0.0)
    min_usd: Mapped[float] = mapped_column(Double, default=0.0)
    side: Mapped[str] = mapped_column(String(8), default="any")
    level: Mapped[float] = mapped_column(Double, default=0.0)
    direction: Mapped[str] = mapped_column(String(8), default="any")
    window_ms: Mapped[int] = mapped_column(BigInteger, default=3_600_000)
    etf_mode: Mapped[str] = mapped_column(String(16), default="reversal")
    threshold_musd: Mapped[float] = mapped_column(Double, default=0.0)
    schedule: Mapped[str] = mapped_column(String(32), default="")
    cooldown_s: Mapped[float] = mapped_column(Double)
    repeat_s: Mapped[float] = mapped_column(Double)
    rearm_margin: Mapped[float] = mapped_column(Double)
    expires_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Who set it (platform user id; "" for a channel post or anonymous admin), and whether it
    # is one of the chat's broadcasts (``/subscribe``, admins only) rather than a personal alert.
    created_by: Mapped[str] = mapped_column(String(64), default="", server_default="")
    broadcast: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AlertStateRow(Base):
    """The state machine's memory of one subscription."""

    __tablename__ = "alert_state"
    __table_args__ = (CheckConstraint(_one_of("state", ALERT_STATES), name="state"),)

    subscription_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(8))
    last_value: Mapped[float | None] = mapped_column(Double)
    fired_count: Mapped[int] = mapped_column(Integer, default=0)
    last_fired_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_notified_ms: Mapped[int | None] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class NotificationLogRow(Base):
    """What was sent: read before the first evaluation after a restart (DESIGN §6).

    ``subscription_id`` has no foreign key on purpose: the log is history and outlives the
    subscription it came from.
    """

    __tablename__ = "notification_log"
    __table_args__ = (Index(None, "sent_ms"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    destination_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("destinations.id", ondelete="CASCADE")
    )
    subscription_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    ts_ms: Mapped[int] = mapped_column(BigInteger)  # the tick that produced it
    sent_ms: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[Any] = mapped_column(Payload)


class OutboxRow(Base):
    """A notification written durably before delivery, claimed by a worker under a lease.

    Pending: ``sent_ms`` NULL and ``next_attempt_ms`` set. Sent: ``sent_ms`` set. Given up
    (dead letter, kept for inspection): ``sent_ms`` and ``next_attempt_ms`` both NULL.
    ``subscription_id``, ``kind`` and ``ts_ms`` are copied into the log row when it is sent.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # The claim query: due, unsent rows in order.
        Index(
            None,
            "next_attempt_ms",
            postgresql_where=text("sent_ms IS NULL"),
            sqlite_where=text("sent_ms IS NULL"),
        ),
        # The claim's "an older unsent row of this chat waits" (each chat in order).
        Index(
            None,
            "destination_id",
            "id",
            postgresql_where=text("sent_ms IS NULL"),
            sqlite_where=text("sent_ms IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    destination_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("destinations.id", ondelete="CASCADE")
    )
    subscription_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[Any] = mapped_column(Payload)
    silent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_ms: Mapped[int | None] = mapped_column(BigInteger)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until_ms: Mapped[int | None] = mapped_column(BigInteger)
    sent_ms: Mapped[int | None] = mapped_column(BigInteger)
    failed_reason: Mapped[str | None] = mapped_column(String(512))


class SnapshotRow(Base):
    """The latest ``core.snapshot.Snapshot`` per symbol (``repo.snapshot_to_dict``)."""

    __tablename__ = "snapshots"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[Any] = mapped_column(Payload)
    stale: Mapped[bool] = mapped_column(Boolean, default=False)


class JobClaimRow(Base):
    """One row per job firing (DESIGN §8): a brief double leader cannot run it twice."""

    __tablename__ = "job_claims"

    job_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    fire_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    claimed_by: Mapped[str] = mapped_column(String(128))
