"""A private, throwaway PostgreSQL server for fault tests that stop and restart it (DESIGN §9).

The shared test server on 127.0.0.1:5432 is used by other tests at the same time, so a test
that takes the database away must have its own: :class:`PgCluster` runs ``initdb`` into a
temporary directory and ``pg_ctl`` on a free TCP port of 127.0.0.1 (no Unix socket), with
``trust`` authentication for the superuser ``postgres``. It is a real server: restarting it
drops every session, as a crash, a failover or a maintenance restart would.

Usage::

    from tests.fakes.pg_cluster import PgCluster, pg_cluster_or_skip

    @pytest.fixture(scope="module")
    def cluster() -> Iterator[PgCluster]:
        with pg_cluster_or_skip() as c:  # skips when no server can be run here
            yield c

    async def test_outage(cluster: PgCluster) -> None:
        url = cluster.create_database()       # a fresh database, as a SQLAlchemy URL
        ...
        await cluster.astop("fast")           # every session is dropped
        ...                                   # the database is down: connections are refused
        await cluster.astart()                # same port, same data
        # or: await cluster.arestart(down_s=2.0, mode="immediate")

API
---
``PgCluster(bin_dir=None, port=None)``
    ``bin_dir``: where ``initdb``, ``pg_ctl``, ``postgres`` and ``createdb`` are (default:
    ``$LIQBOT_TEST_PG_BIN``, else the newest ``/usr/lib/postgresql/*/bin``, else ``pg_ctl``'s
    directory on ``PATH``). ``port``: default a free one. Nothing runs until ``start()``.
``start()`` / ``stop(mode="fast")`` / ``restart(down_s=0.0, mode="fast")``
    Blocking (they wait for the server to be up or down), and one at a time: a start waits for
    a stop still running in another thread. ``start()`` runs ``initdb`` the first time.
    ``mode`` is ``pg_ctl``'s: ``"fast"`` (sessions are terminated, a clean shutdown) or
    ``"immediate"`` (the server is killed; crash recovery on the next start; committed
    transactions survive since the WAL reaches the OS before COMMIT returns).
``astart()`` / ``astop(mode)`` / ``arestart(down_s, mode)``
    The same from async code, in a thread, so the event loop (and the code under test) keeps
    running meanwhile. Cancelling the awaiting task does not cancel the thread's work.
``close()``
    Stops the server (``immediate``) and deletes the directory; ``with`` does it at the end.
``url(database="postgres")`` / ``create_database()``
    A ``postgresql+asyncpg://postgres@127.0.0.1:<port>/<db>`` URL; a fresh database's URL.
``running`` / ``port`` / ``log_text()``
    Whether the server is up; its port; the server log (for failure messages).

The directory is ``$LIQBOT_TEST_PG_DIR``, else ``/dev/shm`` when it has room (a tmpfs: creating
and deleting the cluster is instant), else the system's temporary directory.

Running as root: ``initdb`` and ``postgres`` refuse to, so the binaries run as the ``postgres``
user (``subprocess``'s ``user=``/``group=``), which owns the temporary directory. As any other
user they run as that user.

:func:`unavailable_reason` says why no private server can run here (no binaries, or root without
a ``postgres`` user), for a clear ``pytest.skip``; :func:`pg_cluster_or_skip` starts one or skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

Mode = Literal["fast", "immediate"]

BIN_ENV = "LIQBOT_TEST_PG_BIN"
DIR_ENV = "LIQBOT_TEST_PG_DIR"
SHM_MIN = 1 << 30  # bytes free on /dev/shm before the server's files go there
RUN_AS = "postgres"  # the user the server runs as when the tests run as root
SUPERUSER = "postgres"
EXECUTABLES = ("initdb", "pg_ctl", "postgres", "createdb")
START_TIMEOUT_S = 60
# Fast to start and to restart; durability of committed data is unaffected by fsync=off as long
# as the machine itself does not crash (the kernel keeps what the server wrote).
SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1",
    "-c unix_socket_directories=''",
    "-c fsync=off",
    "-c full_page_writes=off",
    "-c max_connections=50",
    "-c shared_buffers=16MB",
    "-c log_min_messages=warning",
)


class PgClusterError(RuntimeError):
    """The private server could not be created, started or stopped (the log is attached)."""


def find_bin_dir() -> Path | None:
    """The directory holding the server's executables (``EXECUTABLES``), or None."""
    env = os.environ.get(BIN_ENV)
    candidates: list[Path] = [Path(env)] if env else []
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += versions
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for cand in candidates:
        if all((cand / exe).is_file() for exe in EXECUTABLES):
            return cand
    return None


def _run_as() -> pwd.struct_passwd | None:
    """The user to run the server as: ``postgres`` under root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(RUN_AS)


def unavailable_reason(bin_dir: Path | None = None) -> str | None:
    """Why no private PostgreSQL can run here, or None when it can."""
    if (bin_dir or find_bin_dir()) is None:
        return (
            f"no PostgreSQL server binaries ({', '.join(EXECUTABLES)}) in "
            f"/usr/lib/postgresql/*/bin or on PATH; set {BIN_ENV} to their directory to run "
            "the database-restart tests"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            return (
                f"running as root and there is no {RUN_AS!r} user to run a private PostgreSQL "
                "server as (initdb and postgres refuse root)"
            )
    return None


def scratch_dir() -> str | None:
    """Where the server's directory goes: ``$LIQBOT_TEST_PG_DIR``, else ``/dev/shm`` when it is
    a roomy tmpfs (creating and deleting a cluster's few thousand files there is instant, on a
    disk it can take seconds), else the default temporary directory (None)."""
    env = os.environ.get(DIR_ENV)
    if env:
        return env
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= SHM_MIN:
            return str(shm)
    except OSError:
        pass
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """A private PostgreSQL server in a temporary directory; see the module docstring."""

    def __init__(self, bin_dir: Path | None = None, port: int | None = None) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise PgClusterError(str(unavailable_reason()))
        self.bin_dir = found
        self.port = port or free_port()
        self._user = _run_as()
        self.base = Path(tempfile.mkdtemp(prefix="liqbot-pg-", dir=scratch_dir()))
        if self._user is not None:
            os.chown(self.base, self._user.pw_uid, self._user.pw_gid)
        self.data_dir = self.base / "data"
        self.log_file = self.base / "server.log"
        self.running = False
        self._initialized = False
        # One start or stop at a time: a stop whose awaiting task was cancelled still runs in
        # its thread, and a start must wait for it rather than see the server as running.
        self._lock = threading.Lock()

    # -- the server ---------------------------------------------------------------------------

    def _exec(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        """Run one of the binaries as the server's user; PgClusterError with its output."""
        kwargs: dict[str, Any] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        if self._user is not None:
            env["HOME"] = str(self.base)
        # Output to a file, never a pipe: the postmaster that pg_ctl leaves running must not
        # hold our pipe open (we would wait for its end forever).
        out = self.base / f"{args[0]}-{uuid.uuid4().hex[:8]}.out"
        with out.open("wb") as sink:
            if self._user is not None:
                os.chown(out, self._user.pw_uid, self._user.pw_gid)
            proc = subprocess.run(
                [str(self.bin_dir / args[0]), *args[1:]],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                env=env,
                timeout=timeout,
                check=False,
                **kwargs,
            )
        output = out.read_text(errors="replace")
        out.unlink()
        if proc.returncode != 0:
            raise PgClusterError(
                f"{args[0]} failed with exit code {proc.returncode}:\n"
                f"{output}\n--- server log ---\n{self.log_text()}"
            )

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self.running:
            return
        if not self._initialized:
            self._exec(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
            self._initialized = True
        self._exec(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-o",
            " ".join((f"-p {self.port}", *SERVER_OPTIONS)),
        )
        self.running = True

    def stop(self, mode: Mode = "fast") -> None:
        with self._lock:
            self._stop(mode)

    def _stop(self, mode: Mode) -> None:
        if not self.running:
            return
        self._exec(
            "pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", timeout=90
        )
        self.running = False

    def restart(self, down_s: float = 0.0, mode: Mode = "fast") -> None:
        """Stop, stay down ``down_s`` seconds (connections are refused meanwhile), start."""
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self, mode: Mode = "fast") -> None:
        await asyncio.to_thread(self.stop, mode)

    async def arestart(self, down_s: float = 0.0, mode: Mode = "fast") -> None:
        await self.astop(mode)
        await asyncio.sleep(down_s)
        await self.astart()

    def close(self) -> None:
        try:
            with contextlib.suppress(PgClusterError, subprocess.TimeoutExpired):
                self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    # -- databases ----------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database on the running server; its SQLAlchemy URL."""
        name = f"liqbot_{uuid.uuid4().hex[:12]}"
        self._exec("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)
        return self.url(name)


@contextlib.contextmanager
def pg_cluster_or_skip() -> Iterator[PgCluster]:
    """A started private server, closed at the end; ``pytest.skip`` when none can run here."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with PgCluster() as cluster:
        yield cluster
