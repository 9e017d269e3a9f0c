"""A bot process in miniature, for the restart test: evaluate, enqueue, deliver, mark sent.

    python -m tests.alerts.restart_worker URL SENT_FILE [--stop-at POINT] [--lease-ms MS]

1. Reads the notification log, then "evaluates": the same five notifications every run
   (``msg-0`` .. ``msg-4``, keys fixed as a real tick's would be), skipping keys already sent,
   and enqueues them (the outbox ignores keys already queued).
2. Drains the outbox: claim one row, "send" it by appending its key to SENT_FILE (flushed
   and fsynced: what is in the file was delivered), then ``mark_sent``. Rows leased by a dead
   process are waited for until their lease expires.

``--stop-at`` makes the process print ``STOP <point>`` and hang at that point, for the test
to SIGKILL it there: ``enqueued`` (after the outbox write, before any send), ``claimed``
(the third message leased, not sent), ``sent`` (the third message sent, not marked).
Prints ``DONE <n sent by this run>`` and exits 0 once the outbox is drained.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from alerts.store import (
    Envelope,
    claim,
    enqueue,
    mark_sent,
    open_store,
    sent_keys_since,
    stats,
    upsert_destination,
)

KEYS = tuple(f"msg-{i}" for i in range(5))
STOP_INDEX = 2  # the in-flight message: the third


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def say(line: str) -> None:
    print(line, flush=True)


async def hang(point: str) -> None:
    say(f"STOP {point}")
    while True:
        await asyncio.sleep(3600)


def deliver(path: Path, key: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(key + "\n")
        f.flush()
        os.fsync(f.fileno())


async def run(url: str, sent_file: Path, stop_at: str, lease_ms: int) -> int:
    store = await open_store(url)
    try:
        dest = await upsert_destination(store, "console", "restart-test", "private", now_ms())
        already = await sent_keys_since(store, 0)  # the log, before the first evaluation
        fresh = [
            Envelope(key, dest.id, "cluster", 0, {"text": key})
            for key in KEYS
            if key not in already
        ]
        await enqueue(store, fresh, now_ms())
        say("enqueued")
        if stop_at == "enqueued":
            await hang(stop_at)
        sent = 0
        worker = f"pid-{os.getpid()}"
        while True:
            rows = await claim(store, worker, now_ms(), limit=1, lease_ms=lease_ms)
            if not rows:
                if (await stats(store, now_ms())).pending == 0:
                    break
                await asyncio.sleep(0.05)  # a dead worker's lease has not expired yet
                continue
            row = rows[0]
            last = row.dedup_key == KEYS[STOP_INDEX]
            if last and stop_at == "claimed":
                await hang(stop_at)
            deliver(sent_file, row.dedup_key)
            if last and stop_at == "sent":
                await hang(stop_at)
            await mark_sent(store, row.id, now_ms())
            sent += 1
        say(f"DONE {sent}")
        return 0
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("sent_file", type=Path)
    parser.add_argument(
        "--stop-at", choices=["none", "enqueued", "claimed", "sent"], default="none"
    )
    parser.add_argument("--lease-ms", type=int, default=500)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.url, args.sent_file, args.stop_at, args.lease_ms))


if __name__ == "__main__":
    sys.exit(main())
