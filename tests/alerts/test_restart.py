"""Restarts (issue 4): a real bot-like process is SIGKILLed between the outbox write and the send,
and between the send and ``mark_sent``; a new process on the same database delivers the rest.
Nothing is lost, and at most the one message in flight at the kill is delivered twice.

The process is ``tests/alerts/restart_worker.py``; "sending" appends the key to a file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from alerts.store import Store, logged_keys, stats
from alerts.store.models import OutboxRow
from tests.alerts.restart_worker import KEYS, STOP_INDEX

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60.0


async def start(url: str, sent_file: Path, stop_at: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.alerts.restart_worker",
        url,
        str(sent_file),
        "--stop-at",
        stop_at,
        "--lease-ms",
        "500",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_line(proc: asyncio.subprocess.Process, prefix: str) -> str:
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT_S)).decode().strip()
        if not line:
            err = b"" if proc.stderr is None else await proc.stderr.read()
            raise AssertionError(f"worker exited before {prefix!r}:\n{err.decode()}")
        if line.startswith(prefix):
            return line


async def run_to_end(url: str, sent_file: Path) -> int:
    proc = await start(url, sent_file, "none")
    line = await wait_for_line(proc, "DONE")
    assert await asyncio.wait_for(proc.wait(), TIMEOUT_S) == 0
    return int(line.split()[1])


def delivered(sent_file: Path) -> Counter[str]:
    lines = sent_file.read_text(encoding="utf-8").split() if sent_file.exists() else []
    return Counter(lines)


@pytest.mark.parametrize(
    ("point", "sent_before_kill", "repeated"),
    [
        ("enqueued", 0, {}),  # between the outbox write and the send
        ("claimed", 2, {}),  # leased, not yet sent: the lease expires, no repeat
        ("sent", 3, {KEYS[STOP_INDEX]: 2}),  # sent, not marked: that one message repeats
    ],
)
async def test_a_killed_process_loses_nothing_and_repeats_at_most_the_one_in_flight(
    store: Store,
    store_url: str,
    tmp_path: Path,
    point: str,
    sent_before_kill: int,
    repeated: dict[str, int],
) -> None:
    sent_file = tmp_path / "sent.txt"
    proc = await start(store_url, sent_file, point)
    await wait_for_line(proc, f"STOP {point}")
    os.kill(proc.pid, signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), TIMEOUT_S) == -signal.SIGKILL
    assert sum(delivered(sent_file).values()) == sent_before_kill

    await run_to_end(store_url, sent_file)  # the restart, on the same database

    counts = delivered(sent_file)
    assert set(counts) == set(KEYS), "a notification was lost"
    assert {k: n for k, n in counts.items() if n > 1} == repeated
    assert await logged_keys(store, KEYS) == set(KEYS)
    s = await stats(store, 0)
    assert (s.pending, s.dead, s.sent) == (0, 0, len(KEYS))
    async with store.read() as conn:
        rows = (await conn.execute(select(OutboxRow.dedup_key, OutboxRow.attempts))).all()
    attempts = {key: n for key, n in rows}
    in_flight = 2 if point in ("claimed", "sent") else 1  # the dead lease, then the retry
    assert attempts == {k: in_flight if k == KEYS[STOP_INDEX] else 1 for k in KEYS}

    # A further restart re-evaluates, finds everything in the log, and sends nothing.
    assert await run_to_end(store_url, sent_file) == 0
    assert delivered(sent_file) == counts
