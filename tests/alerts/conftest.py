"""Store fixtures: every store test runs on SQLite (a file in tmp_path) and on PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 (DESIGN §9), or the admin URL in
``LIQBOT_TEST_PG_URL`` (``postgresql+asyncpg://user@host:port/db``; that database is only used
to create and drop others). Each test session creates a fresh database, migrated once, and
drops it at the end; each test starts from empty tables. When no server answers, the
PostgreSQL cases skip with the reason.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy import delete
from sqlalchemy.engine import URL, make_url

from alerts.store import Store, open_store
from alerts.store.models import Base

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get(
    "LIQBOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")


def _in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # Sync fixtures must not touch the event loop pytest-asyncio gives the tests.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


async def _admin(url: URL) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
        timeout=3,
    )


class PgServer:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self, admin_url: str) -> None:
        self.admin = make_url(admin_url)
        self.created: list[str] = []

    def create(self) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        name = f"liqbot_test_{uuid.uuid4().hex[:12]}"

        async def run() -> None:
            conn = await _admin(self.admin)
            try:
                # Identifiers cannot be bound parameters; the name is ours (hex), quoted.
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        _in_thread(run)
        self.created.append(name)
        return self.admin.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        async def run() -> None:
            conn = await _admin(self.admin)
            try:
                for name in self.created:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        if self.created:
            _in_thread(run)
            self.created.clear()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The PostgreSQL test server; skips when none answers."""
    server = PgServer(PG_ADMIN_URL)
    safe = server.admin.render_as_string(hide_password=True)

    async def probe() -> None:
        conn = await _admin(server.admin)
        await conn.close()

    try:
        _in_thread(probe)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.skip(
            f"PostgreSQL is not reachable at {safe} ({type(exc).__name__}: {exc}); "
            "the PostgreSQL store tests need it (set LIQBOT_TEST_PG_URL to use another server)"
        )
    try:
        yield server
    finally:
        server.drop_all()


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """One database for the session's store tests."""
    return pg_server.create()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of the test's database (SQLite: a new file; PostgreSQL: the session's)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'liqbot.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of an empty database that nothing has migrated yet."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'liqbot.db'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.create()


async def clear(store: Store) -> None:
    """Delete every row, children first."""
    async with store.write() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(delete(table))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open, migrated, empty store."""
    s = await open_store(store_url)
    try:
        await clear(s)
        yield s
    finally:
        await s.close()
