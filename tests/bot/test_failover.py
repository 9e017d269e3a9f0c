"""Three ``liqbot run`` instances on one PostgreSQL; the leader gets ``kill -9`` in the middle of
a broadcast (tests/fakes/liqbot_cluster.py). Another instance takes over, every message reaches
the fake Telegram, and a message is repeated only if it was in flight when the leader died.
benchmarks/scale.py measures the same scenario at 600 chats, with times."""

from __future__ import annotations

import asyncio
import inspect
import os
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url

from alerts.engine import AlertEngine
from tests.fakes.liqbot_cluster import run_failover

PG_ADMIN_URL = os.environ.get(
    "LIQBOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# Sends the running bot's drain keeps in flight at once, at most.
DRAIN_CONCURRENCY = inspect.signature(AlertEngine.drain).parameters["concurrency"].default


async def _server_answers() -> str | None:
    url = make_url(PG_ADMIN_URL)
    try:
        conn = await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            database=url.database,
            timeout=3,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        return f"no PostgreSQL at {url.render_as_string(hide_password=True)}: {exc}"
    await conn.close()
    return None


async def test_killing_the_leader_mid_broadcast_loses_nothing(tmp_path: Path) -> None:
    if (reason := await _server_answers()) is not None:
        pytest.skip(reason)
    result = await asyncio.wait_for(
        run_failover(tmp_path, PG_ADMIN_URL, instances=3, chats=60, kill_after=20), 300
    )
    assert result.sent_before_kill >= 20
    assert result.new_leader != result.killed
    assert result.lost == 0 and result.distinct_chats == 60
    # A repeat can only be a message the dead leader had sent but not yet marked.
    assert result.repeated_first_before_kill
    assert result.duplicated <= DRAIN_CONCURRENCY
