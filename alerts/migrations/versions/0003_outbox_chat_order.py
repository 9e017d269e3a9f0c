"""Outbox: an index for keeping each chat's messages in order.

The claim skips a row while an older unsent row of its chat waits (alerts/store/outbox.py);
this index answers "an older unsent row of this chat" without scanning the outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_outbox_destination_id_id"),
        "outbox",
        ["destination_id", "id"],
        postgresql_where=sa.text("sent_ms IS NULL"),
        sqlite_where=sa.text("sent_ms IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_destination_id_id"), table_name="outbox")
