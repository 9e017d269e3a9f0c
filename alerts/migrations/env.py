"""Alembic environment, configured in code by ``alerts.store.engine`` (there is no alembic.ini).

``open_store`` passes its own connection in ``config.attributes["connection"]``, inside a write
transaction; the migrations join it. Without one (``python -m alerts.migrations`` with
``--url``), this opens the URL itself with liqbot's engine settings.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from alerts.store.engine import create_engine, parse_url
from alerts.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters a table by copying it; later revisions use op.batch_alter_table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_url(url: str) -> None:
    engine = create_engine(parse_url(url))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


def _main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database: pass --url sqlite+aiosqlite:///path.db")
    asyncio.run(_run_url(url))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
_main()
