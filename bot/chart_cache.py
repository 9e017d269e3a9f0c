"""Bounded LRU caches whose values are computed once, in a worker thread.

``/liqmap`` draws a chart per (render key, venue, range): a snapshot's render key changes only
when its map does (alerts/snapshots.py), so a chart is drawn once per new map however many
people ask, and never on the event loop (a render takes a few hundred ms of matplotlib).
Concurrent requests for a key that is being computed wait for that one computation instead of
starting their own. A failed computation is not cached: the next request tries again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from alerts.snapshots import SnapshotBuild

__all__ = ["ChartCache", "ChartKey", "ThreadedLru", "VenueMapCache", "VenueMapKey"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ThreadedLru(Generic[K, V]):
    """At most ``maxsize`` values, least recently used evicted first.

    ``computed`` counts computations started (a test can check that a chart was drawn once).
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.computed = 0
        self._done: OrderedDict[K, V] = OrderedDict()
        self._running: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._done)

    def __contains__(self, key: K) -> bool:
        return key in self._done

    async def get(self, key: K, compute: Callable[[], V]) -> V:
        """The value of ``key``, computing it with ``compute()`` in a thread when missing."""
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        task = self._running.get(key)
        if task is None:
            self.computed += 1
            task = asyncio.ensure_future(asyncio.to_thread(compute))
            self._running[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        # shield: a caller that gives up (a cancelled interaction) does not cancel the others'.
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        self._running.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return
        self._done[key] = task.result()
        self._done.move_to_end(key)
        while len(self._done) > self.maxsize:
            self._done.popitem(last=False)


ChartKey = tuple[str, str, float]
"""(render key, venue or 'all', range %)."""

VenueMapKey = tuple[str, str, int, bool]
"""(symbol, venue, open time of the latest bar, stale): a new bar or staleness rebuilds."""


class ChartCache(ThreadedLru[ChartKey, bytes]):
    """PNG charts by (render key, venue, range); ~100 KB each, so 64 is a few MB."""

    def __init__(self, maxsize: int = 64) -> None:
        super().__init__(maxsize)


class VenueMapCache(ThreadedLru[VenueMapKey, SnapshotBuild]):
    """One venue's map of a symbol, built from the held bars (``/liqmap BTC binance``)."""

    def __init__(self, maxsize: int = 32) -> None:
        super().__init__(maxsize)
