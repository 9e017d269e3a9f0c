"""Leader election between liqbot instances sharing one PostgreSQL (DESIGN §8).

Only the leader polls, evaluates and delivers; followers answer commands from the shared
snapshots. :class:`Leadership` decides which instance that is.

Protocol (PostgreSQL)
---------------------
1. Open a **dedicated** asyncpg connection (not from SQLAlchemy's pool: a session-level lock
   must live exactly as long as the session we watch), with ``application_name`` set to
   ``liqbot:<instance>`` and server-side TCP keepalives so the server notices a vanished peer.
2. Campaign: ``SELECT pg_try_advisory_lock(key)`` every ``check_every_s`` until it returns true.
   The lock is per database, so instances on one database compete and those on another do not.
3. Lead: every ``check_every_s`` a lease check (``SELECT 1`` with a timeout) on that connection.
   While the session lives, the lock is ours; once it dies, the server has released the lock.
4. Any error or timeout on the connection deposes the instance at once: the connection is
   aborted, ``on_deposed`` runs, and after a short back-off (two check intervals, so a healthy
   follower gets the lock first) it campaigns again on a new connection.
5. :meth:`Leadership.stop` unlocks, closes the connection and runs ``on_deposed``.

Who leads is published without any table: :meth:`Leadership.current_leader` reads ``pg_locks``
(advisory lock with our key, granted, in this database; a bigint key shows as ``classid`` = high
32 bits, ``objid`` = low 32 bits, ``objsubid = 1``) joined with ``pg_stat_activity`` on the pid,
and returns the holder's ``application_name`` without its ``liqbot:`` prefix. Every role may read
both views' columns used here, so followers need no extra privileges.

On SQLite there is one process by construction: it is the leader as soon as it starts.

Numbers (defaults): checks every 1 s with a 2 s timeout; keepalives on the server side after 3 s
idle, every 1 s, 3 probes (a dead peer is noticed in about 6 s), ``tcp_user_timeout`` 6 s.
A killed process (``kill -9``, a crash) has its socket closed by the kernel, so the server
releases the lock at once and a follower takes over within one check interval; a host that
vanishes from the network (no FIN) is noticed by the keepalives, about 6 s + one interval.
Both are inside the 10 s the product requires.

Caveats:

* Session advisory locks do **not** work through PgBouncer in transaction or statement pooling
  mode (the lock would belong to whichever client borrowed the server session). Connect directly
  or use session pooling. ``server_settings`` (keepalives, application_name) need a direct
  connection too.
* Two leaders can briefly overlap: between the server dropping a session (terminated, timed out)
  and the old leader's next failing check, up to ``check_every_s`` + the check timeout. That is
  why every job firing also takes a claim row (:func:`alerts.store.runtime.claim_job`, the
  scheduler's ``claim`` hook): a double leader cannot run one firing twice.
* Needs PostgreSQL 12+ (``tcp_user_timeout``). Keepalive settings are ignored on Unix sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import URL

from alerts.store.engine import parse_url
from core.errors import LiqbotError

log = logging.getLogger(__name__)

# "liqlead" in ASCII; distinct from the migration lock (engine.MIGRATION_LOCK_KEY, "liqmigr").
LEADER_LOCK_KEY = 0x6C_69_71_6C_65_61_64
APP_PREFIX = "liqbot:"
MAX_APP_NAME = 63  # PostgreSQL truncates application_name beyond NAMEDATALEN - 1 bytes
CHECK_TIMEOUT_S = 2.0
# Server-side: notice a peer that vanished without closing its socket within about 6 s.
SERVER_SETTINGS = {
    "tcp_keepalives_idle": "3",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "6000",  # ms: unacknowledged data (a reply to a dead peer) times out
}

_LEADER_SQL = """
SELECT a.application_name, l.pid
FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory'
  AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = $1
  AND l.objid::bigint = $2
  AND l.objsubid = 1
LIMIT 1
"""

Callback = Callable[[], Awaitable[None]]


class LeadershipError(LiqbotError):
    """The database could not be asked who leads."""


@dataclass(frozen=True, slots=True)
class LeaderStatus:
    """This instance's view of the election, for ``/status`` and logs."""

    instance: str
    is_leader: bool
    since: float | None  # clock() when this instance was elected; None while following
    last_check_ok: bool  # the last lock attempt or lease check succeeded
    elections: int  # times this instance won the lock
    depositions: int  # times it lost leadership involuntarily (stop() not counted)


def _lock_halves(key: int) -> tuple[int, int]:
    """``pg_locks``'s (classid, objid) for a bigint key: its unsigned high and low halves."""
    return (key >> 32) & 0xFFFF_FFFF, key & 0xFFFF_FFFF


def _connect_kwargs(url: URL) -> dict[str, Any]:
    """asyncpg keyword arguments for a SQLAlchemy ``postgresql+asyncpg`` URL.

    Only the parts asyncpg understands: SQLAlchemy-only query options would otherwise reach
    the server as unknown settings.
    """
    kwargs: dict[str, Any] = {
        "host": url.host or url.query.get("host"),
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database,
    }
    ssl = url.query.get("ssl") or url.query.get("sslmode")
    if ssl is not None:
        kwargs["ssl"] = ssl if isinstance(ssl, str) else ssl[0]
    return {k: v for k, v in kwargs.items() if v is not None}


class Leadership:
    """Elects one leader among the instances on one database; see the module docstring.

    ``on_elected``/``on_deposed`` run in the election task (keep them short: the lease check
    waits for them); their exceptions are logged, never raised.
    """

    def __init__(
        self,
        url: str,
        instance: str,
        *,
        key: int = LEADER_LOCK_KEY,
        check_every_s: float = 1.0,
        check_timeout_s: float = CHECK_TIMEOUT_S,
        connect_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        on_elected: Callback | None = None,
        on_deposed: Callback | None = None,
    ) -> None:
        if not instance or not instance.isascii() or not instance.isprintable():
            raise ValueError("instance must be a non-empty printable ASCII name")
        if len(APP_PREFIX + instance) > MAX_APP_NAME:
            raise ValueError(f"instance must be at most {MAX_APP_NAME - len(APP_PREFIX)} chars")
        if not -(2**63) <= key < 2**63:
            raise ValueError("key must fit PostgreSQL's bigint")
        if check_every_s <= 0 or check_timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError("intervals and timeouts must be positive")
        parsed = parse_url(url)  # ConfigError for a malformed or unsupported URL
        self.instance = instance
        self.key = key
        self.check_every_s = check_every_s
        self.check_timeout_s = check_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self._clock = clock
        self._postgres = parsed.get_backend_name() == "postgresql"
        self._connect_args = _connect_kwargs(parsed) if self._postgres else {}
        self._conn: Any = None  # asyncpg.Connection (untyped)
        self._io = asyncio.Lock()  # one query at a time on the dedicated connection
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._leading = asyncio.Event()
        self._since: float | None = None
        self._last_check_ok = False
        self._elections = 0
        self._depositions = 0

    # -- public API ------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    @property
    def leader_since(self) -> float | None:
        return self._since

    def status(self) -> LeaderStatus:
        return LeaderStatus(
            instance=self.instance,
            is_leader=self.is_leader,
            since=self._since,
            last_check_ok=self._last_check_ok,
            elections=self._elections,
            depositions=self._depositions,
        )

    async def start(self) -> None:
        """Begin campaigning (PostgreSQL) or lead at once (SQLite)."""
        if self._task is not None or (not self._postgres and self.is_leader):
            raise RuntimeError("Leadership already started")
        self._stopping.clear()
        if not self._postgres:
            self._last_check_ok = True
            await self._elect()
            return
        self._task = asyncio.create_task(self._run(), name=f"leadership:{self.instance}")

    async def stop(self) -> None:
        """Step down: release the lock, close the connection, run ``on_deposed`` if leading."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            await self._step_down(involuntary=False)
            return
        try:
            # The task notices at its next pause; a query in flight gets its own timeout.
            await asyncio.wait_for(asyncio.shield(task), self.check_timeout_s + 1.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_until_leader(self, timeout: float | None = None) -> bool:
        """Whether this instance leads, waiting up to ``timeout`` seconds (None: forever)."""
        if self.is_leader:  # wait_for(timeout=0) would give up before even looking
            return True
        try:
            await asyncio.wait_for(self._leading.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def current_leader(self) -> str | None:
        """The leading instance's name, or None when nobody holds the lock.

        Asks the database (not this object's state), so it names the leader from any instance.
        A holder that is not a liqbot session shows as its raw application_name or ``pid N``.
        Raises LeadershipError when the database cannot be asked.
        """
        if not self._postgres:
            return self.instance if self.is_leader else None
        high, low = _lock_halves(self.key)
        try:
            if self._conn is not None:
                async with self._io:
                    if self._conn is not None:
                        row = await self._conn.fetchrow(
                            _LEADER_SQL, high, low, timeout=self.check_timeout_s
                        )
                        return _leader_name(row)
            conn = await asyncpg.connect(**self._connect_args, timeout=self.connect_timeout_s)
            try:
                row = await conn.fetchrow(_LEADER_SQL, high, low, timeout=self.check_timeout_s)
            finally:
                await conn.close(timeout=self.check_timeout_s)
            return _leader_name(row)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise LeadershipError(
                f"cannot ask the database who leads: {type(exc).__name__}: {exc}"
            ) from None

    # -- election task ---------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    await self._session()
                except Exception as exc:
                    self._last_check_ok = False
                    self._abort()
                    _log_failure(self.instance, self.is_leader, exc)
                    await self._step_down(involuntary=True)
                    # Back off longer than a follower's poll, so a healthy one takes over first.
                    await self._pause(2 * self.check_every_s)
        finally:
            await self._release()

    async def _session(self) -> None:
        """One connection's life: campaign until elected, then check the lease until stopped."""
        self._conn = await asyncpg.connect(
            **self._connect_args,
            timeout=self.connect_timeout_s,
            server_settings={**SERVER_SETTINGS, "application_name": APP_PREFIX + self.instance},
        )
        while not self._stopping.is_set():
            if self.is_leader:
                await self._query("SELECT 1")
                self._last_check_ok = True
            else:
                won = bool(await self._query("SELECT pg_try_advisory_lock($1)", self.key))
                self._last_check_ok = True
                if won:
                    await self._elect()
            await self._pause(self.check_every_s)

    async def _query(self, sql: str, *args: Any) -> Any:
        async with self._io:
            if self._conn is None:
                raise ConnectionError("the leadership connection is closed")
            return await self._conn.fetchval(sql, *args, timeout=self.check_timeout_s)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when stop() is called."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _abort(self) -> None:
        """Drop the connection without a goodbye: it may be dead or wedged."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _release(self) -> None:
        """Unlock and close politely; closing alone would also free the lock server-side."""
        conn = self._conn
        if conn is not None:
            try:
                async with self._io:
                    self._conn = None
                    if self.is_leader:
                        await conn.fetchval(
                            "SELECT pg_advisory_unlock($1)", self.key, timeout=self.check_timeout_s
                        )
                    await conn.close(timeout=self.check_timeout_s)
            except Exception as exc:
                log.info("leadership %s: closing the connection failed: %s", self.instance, exc)
                conn.terminate()
        await self._step_down(involuntary=False)

    async def _elect(self) -> None:
        self._since = self._clock()
        self._elections += 1
        self._leading.set()
        log.info("leadership %s: elected leader", self.instance)
        await self._call(self.on_elected, "on_elected")

    async def _step_down(self, *, involuntary: bool) -> None:
        if not self.is_leader:
            return
        self._leading.clear()
        self._since = None
        if involuntary:
            self._depositions += 1
            log.warning("leadership %s: deposed", self.instance)
        else:
            log.info("leadership %s: stepped down", self.instance)
        await self._call(self.on_deposed, "on_deposed")

    async def _call(self, callback: Callback | None, name: str) -> None:
        if callback is None:
            return
        try:
            await callback()
        except Exception:
            log.exception("leadership %s: %s failed", self.instance, name)


def _leader_name(row: Any) -> str | None:
    if row is None:
        return None
    app: str = row["application_name"] or ""
    if app.startswith(APP_PREFIX):
        return app[len(APP_PREFIX) :]
    return app or f"pid {row['pid']}"


def _log_failure(instance: str, leading: bool, exc: Exception) -> None:
    expected = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
    what = "lease check failed, stepping down" if leading else "campaign failed"
    if isinstance(exc, expected):
        log.warning("leadership %s: %s: %s: %s", instance, what, type(exc).__name__, exc)
    else:
        log.exception("leadership %s: %s", instance, what)
