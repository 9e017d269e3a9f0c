"""Leader election (DESIGN §8): one leader per database, quick takeover, honest ``/status``.

The PostgreSQL cases run on a fresh database each (advisory locks are per database, so tests
cannot see each other's locks) and skip when no server answers. The ``kill -9`` case runs a real
instance in a subprocess (``tests/alerts/leader_worker.py``) and measures the takeover.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from alerts.leadership import LEADER_LOCK_KEY, Leadership, LeadershipError
from alerts.store.engine import MIGRATION_LOCK_KEY
from core.errors import ConfigError
from tests.alerts.conftest import PgServer

REPO = Path(__file__).resolve().parents[2]
CHECK_S = 0.2  # in-process instances check fast, so the tests are quick
TIMEOUT_S = 20.0  # generous upper bound for anything we wait on
TAKEOVER_REQUIREMENT_S = 10.0  # the product requirement (DESIGN §8: "within seconds")


class Calls:
    """Records callback invocations."""

    def __init__(self) -> None:
        self.elected = 0
        self.deposed = 0

    async def on_elected(self) -> None:
        self.elected += 1

    async def on_deposed(self) -> None:
        self.deposed += 1


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def admin_connect(url: str) -> Any:
    u = make_url(url)
    return await asyncpg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database=u.database
    )


async def sessions(url: str) -> set[str]:
    """application_name of every session on the test database."""
    conn = await admin_connect(url)
    try:
        rows = await conn.fetch(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return {r["application_name"] for r in rows}


@pytest.fixture
def lead_url(pg_server: PgServer) -> str:
    """A fresh, empty PostgreSQL database (no migrations: leadership needs no tables)."""
    return pg_server.create()


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Leadership]]:
    """Builds Leadership objects that are stopped at the end of the test."""
    made: list[Leadership] = []

    def build(url: str, instance: str, **kwargs: Any) -> Leadership:
        kwargs.setdefault("check_every_s", CHECK_S)
        lead = Leadership(url, instance, **kwargs)
        made.append(lead)
        return lead

    yield build
    for lead in made:
        await lead.stop()


def leaders(*instances: Leadership) -> list[str]:
    return [i.instance for i in instances if i.is_leader]


# -- PostgreSQL, in one process ---------------------------------------------------------------


async def test_exactly_one_of_two_leads_and_the_other_takes_over_when_it_stops(
    lead_url: str, make: Callable[..., Leadership]
) -> None:
    calls = {name: Calls() for name in "ab"}
    a, b = (
        make(lead_url, name, on_elected=calls[name].on_elected, on_deposed=calls[name].on_deposed)
        for name in "ab"
    )
    await a.start()
    await b.start()
    await eventually(lambda: len(leaders(a, b)) == 1, "one leader")
    # Both keep checking for a while (several intervals each); never two leaders.
    await eventually(lambda: a.status().last_check_ok and b.status().last_check_ok, "both checking")
    loop = asyncio.get_running_loop()
    end = loop.time() + 5 * CHECK_S
    while loop.time() < end:
        assert len(leaders(a, b)) == 1
        await asyncio.sleep(0.02)

    leader, follower = (a, b) if a.is_leader else (b, a)
    st = leader.status()
    assert (st.is_leader, st.elections, st.depositions, st.last_check_ok) == (True, 1, 0, True)
    assert st.since is not None and leader.leader_since == st.since
    assert follower.leader_since is None and follower.status().elections == 0
    assert calls[leader.instance].elected == 1 and calls[follower.instance].elected == 0

    started = time.monotonic()
    await leader.stop()
    assert not leader.is_leader and leader.leader_since is None
    assert calls[leader.instance].deposed == 1
    assert leader.status().depositions == 0  # a stop is not a deposition
    assert await follower.wait_until_leader(timeout=TIMEOUT_S)
    took = time.monotonic() - started
    assert took < 5 * CHECK_S + 2.0, f"takeover after stop took {took:.2f} s"
    assert calls[follower.instance].elected == 1


async def test_current_leader_names_the_leader_from_any_connection(
    lead_url: str, make: Callable[..., Leadership]
) -> None:
    a, b = make(lead_url, "alpha-1"), make(lead_url, "beta-2")
    observer = make(lead_url, "observer")  # never started: asks on a short-lived connection
    assert await observer.current_leader() is None
    await a.start()
    assert await a.wait_until_leader(timeout=TIMEOUT_S)
    await b.start()
    await eventually(lambda: b.status().last_check_ok, "b campaigning")
    assert not b.is_leader

    assert await observer.current_leader() == "alpha-1"
    assert await b.current_leader() == "alpha-1"  # the follower, on its own connection
    assert await a.current_leader() == "alpha-1"
    assert "liqbot:alpha-1" in await sessions(lead_url)

    await a.stop()
    assert await b.wait_until_leader(timeout=TIMEOUT_S)
    assert await observer.current_leader() == "beta-2"
    await b.stop()
    assert await observer.current_leader() is None


async def test_instances_with_other_keys_do_not_compete(
    lead_url: str, make: Callable[..., Leadership]
) -> None:
    # A negative key checks the pg_locks halves (classid/objid are unsigned there).
    a, b = make(lead_url, "a"), make(lead_url, "b", key=-5)
    await a.start()
    await b.start()
    assert await a.wait_until_leader(timeout=TIMEOUT_S)
    assert await b.wait_until_leader(timeout=TIMEOUT_S)
    assert await a.current_leader() == "a"
    assert await b.current_leader() == "b"


async def test_a_terminated_session_deposes_the_leader_and_another_takes_over(
    lead_url: str, make: Callable[..., Leadership]
) -> None:
    calls = Calls()
    a = make(lead_url, "a", on_elected=calls.on_elected, on_deposed=calls.on_deposed)
    b = make(lead_url, "b")
    await a.start()
    assert await a.wait_until_leader(timeout=TIMEOUT_S)
    await b.start()
    await eventually(lambda: b.status().last_check_ok, "b campaigning")

    admin = await admin_connect(lead_url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'liqbot:a'"
        )
    finally:
        await admin.close()
    assert killed == 1

    await eventually(lambda: calls.deposed == 1, "a's on_deposed")
    assert not a.is_leader and a.leader_since is None
    assert a.status().depositions == 1
    assert await b.wait_until_leader(timeout=TIMEOUT_S)
    # a reconnects and follows; the database names b.
    await eventually(lambda: a.status().last_check_ok, "a campaigning again")
    assert leaders(a, b) == ["b"]
    assert await a.current_leader() == "b"
    assert calls.elected == 1


async def test_connection_failures_are_retried_and_never_lead(
    make: Callable[..., Leadership], caplog: pytest.LogCaptureFixture
) -> None:
    # Port 1 refuses at once: no server needed.
    lead = make("postgresql+asyncpg://postgres@127.0.0.1:1/test", "lonely", connect_timeout_s=1)
    with caplog.at_level(logging.WARNING, logger="alerts.leadership"):
        await lead.start()
        await eventually(
            lambda: sum("campaign failed" in r.getMessage() for r in caplog.records) >= 2,
            "two failed campaigns",
        )
    st = lead.status()
    assert (st.is_leader, st.last_check_ok, st.elections) == (False, False, 0)
    assert not await lead.wait_until_leader(timeout=0.05)
    with pytest.raises(LeadershipError, match="cannot ask the database who leads"):
        await lead.current_leader()
    started = time.monotonic()
    await lead.stop()
    assert time.monotonic() - started < 2.0  # stop wakes the back-off, it does not wait it out


# -- PostgreSQL, kill -9 of a real process ----------------------------------------------------


async def start_worker(url: str, instance: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.alerts.leader_worker",
        url,
        instance,
        "--check-every",
        "0.5",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_line(proc: asyncio.subprocess.Process, expected: str) -> None:
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT_S)).decode().strip()
        if not line:
            err = b"" if proc.stderr is None else await proc.stderr.read()
            raise AssertionError(f"worker exited before {expected!r}:\n{err.decode()}")
        if line == expected:
            return


async def kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), TIMEOUT_S)


@pytest.mark.parametrize("follower_kind", ["in-process", "subprocess"])
async def test_kill_9_of_the_leader_process_hands_over_within_seconds(
    lead_url: str, make: Callable[..., Leadership], follower_kind: str
) -> None:
    procs = [await start_worker(lead_url, "w1")]
    try:
        await wait_for_line(procs[0], "LEADER w1")
        observer = make(lead_url, "observer")
        follower: Leadership | None = None
        if follower_kind == "in-process":
            follower = make(lead_url, "w2", check_every_s=0.5)
            await follower.start()
            await eventually(lambda: follower is not None and follower.status().last_check_ok, "w2")
            assert not follower.is_leader
        else:
            procs.append(await start_worker(lead_url, "w2"))
            await wait_for_line(procs[1], "STARTED w2")
            deadline = time.monotonic() + TIMEOUT_S
            while "liqbot:w2" not in await sessions(lead_url):  # connected, so campaigning
                assert time.monotonic() < deadline, "w2 never connected"
                await asyncio.sleep(0.05)
        assert await observer.current_leader() == "w1"

        killed_at = time.monotonic()
        await kill(procs[0])
        assert procs[0].returncode == -signal.SIGKILL
        if follower is not None:
            assert await follower.wait_until_leader(timeout=TIMEOUT_S)
        else:
            await wait_for_line(procs[1], "LEADER w2")
        takeover = time.monotonic() - killed_at

        print(
            f"\nkill -9 takeover ({follower_kind} follower, checks every 0.5 s): {takeover:.3f} s"
        )
        assert takeover < TAKEOVER_REQUIREMENT_S
        assert await observer.current_leader() == "w2"
    finally:
        for proc in procs:
            await kill(proc)


# -- SQLite and construction ------------------------------------------------------------------


async def test_sqlite_is_always_the_leader(tmp_path: Path, make: Callable[..., Leadership]) -> None:
    calls = Calls()
    url = f"sqlite+aiosqlite:///{tmp_path / 'liqbot.db'}"
    lead = make(
        url, "solo", on_elected=calls.on_elected, on_deposed=calls.on_deposed, clock=lambda: 42.0
    )
    assert not lead.is_leader
    await lead.start()
    assert lead.is_leader and lead.leader_since == 42.0 and calls.elected == 1
    assert await lead.wait_until_leader(timeout=0)
    assert await lead.current_leader() == "solo"
    st = lead.status()
    assert (st.instance, st.is_leader, st.since, st.last_check_ok) == ("solo", True, 42.0, True)
    assert (st.elections, st.depositions) == (1, 0)
    await lead.stop()
    assert not lead.is_leader and calls.deposed == 1
    assert not (tmp_path / "liqbot.db").exists()  # no connection needed on SQLite


async def test_callback_errors_are_logged_not_raised(
    tmp_path: Path, make: Callable[..., Leadership], caplog: pytest.LogCaptureFixture
) -> None:
    async def boom() -> None:
        raise RuntimeError("callback broke")

    lead = make(
        f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", "solo", on_elected=boom, on_deposed=boom
    )
    with caplog.at_level(logging.ERROR, logger="alerts.leadership"):
        await lead.start()
        assert lead.is_leader
        await lead.stop()
        assert not lead.is_leader
    failed = [r.getMessage() for r in caplog.records if r.exc_info]
    assert failed == ["leadership solo: on_elected failed", "leadership solo: on_deposed failed"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigError):
        Leadership("mysql://x/y", "a")
    with pytest.raises(ValueError, match="at most"):
        Leadership("sqlite+aiosqlite:///x.db", "n" * 60)
    with pytest.raises(ValueError, match="printable"):
        Leadership("sqlite+aiosqlite:///x.db", "")
    with pytest.raises(ValueError, match="bigint"):
        Leadership("sqlite+aiosqlite:///x.db", "a", key=2**63)
    assert LEADER_LOCK_KEY != MIGRATION_LOCK_KEY
