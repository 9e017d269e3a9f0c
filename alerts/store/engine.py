"""Opening the store: one async engine on SQLite (aiosqlite) or PostgreSQL (asyncpg), migrated.

``open_store(url)`` checks the URL, creates the SQLite file's directory on first run, connects,
runs the Alembic migrations to head and returns a ``Store``. ``Store.read()`` and
``Store.write()`` hand out a connection inside a transaction; the repository functions accept
either a ``Store`` (they open their own transaction) or such a connection (they join the
caller's, so several writes commit together).

SQLite notes, so the same code behaves the same on both databases:

* SQLAlchemy emits ``BEGIN`` itself (the sqlite3 driver's legacy mode would not begin before a
  SELECT or DDL), and a write transaction begins ``IMMEDIATE``: it takes the write lock up
  front, so two processes (or two connections) that read then write serialize instead of one
  failing with "database is locked" when it upgrades its lock;
* WAL journal (readers never block the writer), foreign keys on, a 30 s busy timeout;
* the write lock is never upgraded to from a read transaction, the one case where SQLite
  fails at once with "database is locked" instead of waiting.

Errors::

    LiqbotError
    ├── ConfigError    database.url is malformed or names an unsupported driver
    └── StoreError     the database cannot be opened, reached or migrated

No message contains the URL's password.

Outages (the server restarts, fails over, drops the session): a ``Store`` outlives them and
needs no reopening. The pool pings a connection before handing it out (``pool_pre_ping``), so
the first call after the server is back replaces the dead connections and succeeds. A call
made while the server is away raises StoreError at once ("cannot reach the database at ...",
no retry: the caller's next run is the retry), and a transaction whose connection drops
midway raises StoreError ("lost the connection ...") and is rolled back by the server. If the
connection drops during the ``COMMIT`` itself, the outcome is unknown to the client; the
writes that run unattended are idempotent (outbox dedup keys, ``mark_sent``, state upserts, job
claims), so the next run repeating them is safe.
Errors of the SQL itself (a constraint, a lock timeout) are SQLAlchemy's own, unchanged.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from core.errors import ConfigError, LiqbotError

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
EXPECTED_URL = "sqlite+aiosqlite:///path/to/liqbot.db or postgresql+asyncpg://user@host:5432/db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_SIZE = 20
PG_CONNECT_TIMEOUT_S = 10.0
# pg_advisory_xact_lock key held while migrating, so instances starting together take turns.
# ("liqmigr" in ASCII; the leadership lock must use a different key.)
MIGRATION_LOCK_KEY = 0x6C_69_71_6D_69_67_72

_WRITE = "liqbot_write"


class StoreError(LiqbotError):
    """The database cannot be opened, reached or migrated."""


def dumps_json(value: Any) -> str:
    """JSON text for payload columns (orjson; NaN and infinities become null)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


class Store:
    """An open, migrated database. Use ``read()``/``write()`` or pass it to repository calls."""

    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self.engine = engine
        self.url = url
        # SQLite: this process's writers queue here for their turn. Without it they wait in
        # SQLite's busy handler, which sleeps in growing steps (up to 100 ms) between tries, so
        # a burst of writes took seconds where a queue takes their commit times.
        self._sqlite_writers = asyncio.Lock() if self.dialect == "sqlite" else None

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @property
    def safe_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return self.url.render_as_string(hide_password=True)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a read transaction (consistent reads; SQLite: no write lock).

        StoreError when the server cannot be reached or the connection is lost (see the
        module docstring); the next call reconnects.
        """
        async with self._transaction(write=False) as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction: committed on success, rolled back on error.

        StoreError when the server cannot be reached or the connection is lost (see the
        module docstring); the next call reconnects.
        """
        async with self._transaction(write=True) as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        if write and self._sqlite_writers is not None:
            async with self._sqlite_writers, self._connected(write=True) as conn:
                yield conn
        else:
            async with self._connected(write=write) as conn:
                yield conn

    @asynccontextmanager
    async def _connected(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        connecting = True
        try:
            async with self.engine.connect() as conn:
                if write:
                    await conn.execution_options(**{_WRITE: True})
                async with conn.begin():
                    connecting = False
                    yield conn
        except (OSError, TimeoutError, DBAPIError) as exc:
            # Only the database's own failures: an OSError of the caller's code inside the
            # transaction is the caller's. A failed commit is a lost connection too.
            if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                raise StoreError(
                    f"lost the connection to the database at {self.safe_url}: "
                    f"{_message(exc, self.url)}"
                ) from exc
            if connecting and self.dialect == "postgresql":
                raise StoreError(
                    f"cannot reach the database at {self.safe_url}: {_message(exc, self.url)}"
                ) from exc
            raise

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


Db = Store | AsyncConnection
"""What repository functions accept: a store, or a connection inside the caller's transaction."""


@asynccontextmanager
async def transaction(db: Db, *, write: bool) -> AsyncIterator[AsyncConnection]:
    """``db``'s own new transaction when it is a ``Store``; the caller's when a connection.

    A write needs a connection from ``store.write()``: on SQLite, a read transaction that
    starts writing may fail at once with "database is locked" instead of waiting its turn.
    """
    if isinstance(db, AsyncConnection):
        sync = db.sync_connection
        if write and (sync is None or not sync.get_execution_options().get(_WRITE, False)):
            raise ValueError("this call writes: pass a connection from store.write()")
        yield db
    elif write:
        async with db.write() as conn:
            yield conn
    else:
        async with db.read() as conn:
            yield conn


def dialect_insert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` with ``ON CONFLICT`` (do nothing / do update) for the connection's database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def parse_url(url: str) -> URL:
    """The parsed ``database.url``, or ConfigError saying what is expected."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database.url is not a valid URL; expected {EXPECTED_URL}") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if (backend, driver) not in (("sqlite", "aiosqlite"), ("postgresql", "asyncpg")):
        raise ConfigError(
            f"database.url uses {parsed.drivername!r}, which liqbot does not support; "
            f"expected {EXPECTED_URL}"
        )
    if backend == "postgresql" and not parsed.database:
        raise ConfigError(f"database.url names no database; expected {EXPECTED_URL}")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL and in-memory databases."""
    name = url.database
    if (
        url.get_backend_name() != "sqlite"
        or not name
        or name == ":memory:"
        or name.startswith("file:")
    ):
        return None
    return Path(name)


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # SQLAlchemy's documented recipe: the driver emits no BEGIN; _on_sqlite_begin does.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS:d}")
    cursor.close()


async def _sqlite_wal(engine: AsyncEngine) -> None:
    """Switch the file to WAL (persistent, so once per file; a no-op after that).

    The switch needs an exclusive lock, and SQLite answers "database is locked" at once, without
    waiting, when two connections would deadlock on it, e.g. two processes opening a new file
    together: so retry for up to the busy timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            async with engine.connect() as conn:
                raw = await conn.get_raw_connection()
                # The driver's own connection: outside SQLAlchemy's BEGIN, which WAL forbids.
                driver: Any = raw.driver_connection
                cursor = await driver.execute("PRAGMA journal_mode = WAL")
                await cursor.close()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


def _on_sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(url: URL) -> AsyncEngine:
    """The async engine for a parsed URL, with liqbot's SQLite settings and JSON codec."""
    kwargs: dict[str, Any] = {
        "json_serializer": dumps_json,
        "json_deserializer": orjson.loads,
    }
    if url.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"timeout": PG_CONNECT_TIMEOUT_S}
    elif _sqlite_file(url) is not None:
        # Each SQLite connection is a thread of aiosqlite's. With the default 5 kept, a burst of
        # commands opened and closed overflow connections (a thread, a file open, the PRAGMAs)
        # all the time; keeping more is cheap.
        kwargs["pool_size"] = SQLITE_POOL_SIZE
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
    return engine


def _message(exc: BaseException, url: URL) -> str:
    text_ = str(exc).strip() or type(exc).__name__
    # SQLAlchemy appends a help link and the statement; the first line is the reason.
    text_ = text_.splitlines()[0]
    if url.password:
        text_ = text_.replace(str(url.password), "***")
    return text_


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code (no alembic.ini): scripts ship in the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(store: Store, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` (idempotent: at head it changes nothing)."""
    async with store.write() as conn:
        await conn.run_sync(_upgrade, revision)


async def downgrade(store: Store, revision: str) -> None:
    """Run the migrations down to ``revision`` (``"base"`` drops every table)."""
    async with store.write() as conn:
        await conn.run_sync(_downgrade, revision)


async def current_revision(store: Store) -> str | None:
    """The schema's Alembic revision, or None when the database is empty."""
    async with store.read() as conn:
        return await conn.run_sync(_current)


async def open_store(url: str, *, migrate: bool = True) -> Store:
    """The store at ``url``, created and migrated to head on first run.

    Raises ConfigError for a malformed or unsupported URL and StoreError when the database
    cannot be created, reached or migrated; neither message contains the password.
    """
    parsed = parse_url(url)
    safe = parsed.render_as_string(hide_password=True)
    path = _sqlite_file(parsed)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory for {path}: {exc.strerror}") from None
    store = Store(create_engine(parsed), parsed)
    try:
        try:
            async with store.engine.connect():
                pass
            if path is not None:
                await _sqlite_wal(store.engine)
        except (TimeoutError, OSError, SQLAlchemyError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the database at {safe}: {_message(exc, parsed)}"
            ) from None
        if migrate:
            try:
                await upgrade(store)
            except SQLAlchemyError as exc:
                raise StoreError(
                    f"migrating the database at {safe} failed: {_message(exc, parsed)}"
                ) from None
    except BaseException:
        await store.close()
        raise
    return store
