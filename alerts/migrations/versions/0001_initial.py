"""Initial schema: destinations, subscriptions, alert state, notification log, outbox,
snapshots, job claims.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in alerts.store.models as of this revision.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PAYLOAD = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _fk(table: str, column: str, referred: str, ondelete: str) -> sa.ForeignKeyConstraint:
    name = op.f(f"fk_{table}_{column}_{referred}")
    return sa.ForeignKeyConstraint([column], [f"{referred}.id"], name=name, ondelete=ondelete)


def upgrade() -> None:
    op.create_table(
        "destinations",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("chat_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("title", sa.String(256), server_default="", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("timezone", sa.String(64), server_default="UTC", nullable=False),
        sa.Column("quiet_start", sa.Integer(), nullable=True),
        sa.Column("quiet_end", sa.Integer(), nullable=True),
        sa.Column("muted_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("disabled_reason", sa.String(512), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "platform IN ('telegram', 'discord', 'console')", name=op.f("ck_destinations_platform")
        ),
        sa.CheckConstraint(
            "type IN ('private', 'group', 'channel', 'guild_channel', 'dm')",
            name=op.f("ck_destinations_type"),
        ),
        sa.CheckConstraint(
            "quiet_start >= 0 AND quiet_start < 1440", name=op.f("ck_destinations_quiet_start")
        ),
        sa.CheckConstraint(
            "quiet_end >= 0 AND quiet_end < 1440", name=op.f("ck_destinations_quiet_end")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_destinations")),
        sa.UniqueConstraint("platform", "chat_id", name=op.f("uq_destinations_platform_chat_id")),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("destination_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=True),
        sa.Column("pct", sa.Double(), nullable=False),
        sa.Column("min_usd", sa.Double(), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("level", sa.Double(), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("window_ms", sa.BigInteger(), nullable=False),
        sa.Column("etf_mode", sa.String(16), nullable=False),
        sa.Column("threshold_musd", sa.Double(), nullable=False),
        sa.Column("schedule", sa.String(32), nullable=False),
        sa.Column("cooldown_s", sa.Double(), nullable=False),
        sa.Column("repeat_s", sa.Double(), nullable=False),
        sa.Column("rearm_margin", sa.Double(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('cluster', 'cross', 'spike', 'etf', 'digest')",
            name=op.f("ck_subscriptions_kind"),
        ),
        _fk("subscriptions", "destination_id", "destinations", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
    )
    op.create_index(op.f("ix_subscriptions_kind_active"), "subscriptions", ["kind", "active"])
    op.create_index(op.f("ix_subscriptions_destination_id"), "subscriptions", ["destination_id"])
    op.create_table(
        "alert_state",
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("last_value", sa.Double(), nullable=True),
        sa.Column("fired_count", sa.Integer(), nullable=False),
        sa.Column("last_fired_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_notified_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("state IN ('armed', 'firing')", name=op.f("ck_alert_state_state")),
        _fk("alert_state", "subscription_id", "subscriptions", "CASCADE"),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_alert_state")),
    )
    op.create_table(
        "notification_log",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("destination_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("sent_ms", sa.BigInteger(), nullable=False),
        sa.Column("payload", PAYLOAD, nullable=False),
        _fk("notification_log", "destination_id", "destinations", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_log")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_notification_log_dedup_key")),
    )
    op.create_index(op.f("ix_notification_log_sent_ms"), "notification_log", ["sent_ms"])
    op.create_table(
        "outbox",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("destination_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("payload", PAYLOAD, nullable=False),
        sa.Column("silent", sa.Boolean(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claimed_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("sent_ms", sa.BigInteger(), nullable=True),
        sa.Column("failed_reason", sa.String(512), nullable=True),
        _fk("outbox", "destination_id", "destinations", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_outbox_dedup_key")),
    )
    op.create_index(
        op.f("ix_outbox_next_attempt_ms"),
        "outbox",
        ["next_attempt_ms"],
        postgresql_where=sa.text("sent_ms IS NULL"),
        sqlite_where=sa.text("sent_ms IS NULL"),
    )
    op.create_table(
        "snapshots",
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("payload", PAYLOAD, nullable=False),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_snapshots")),
    )
    op.create_table(
        "job_claims",
        sa.Column("job_name", sa.String(128), nullable=False),
        sa.Column("fire_ms", sa.BigInteger(), nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("job_name", "fire_ms", name=op.f("pk_job_claims")),
    )


def downgrade() -> None:
    for table in (
        "job_claims",
        "snapshots",
        "outbox",
        "notification_log",
        "alert_state",
        "subscriptions",
        "destinations",
    ):
        op.drop_table(table)
