"""The chart cache: one computation per key, shared by concurrent callers, bounded, and a failure
is not remembered."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bot.chart_cache import ThreadedLru


async def test_concurrent_callers_share_one_computation() -> None:
    cache: ThreadedLru[str, bytes] = ThreadedLru(4)
    started = threading.Event()
    release = threading.Event()

    def render() -> bytes:
        started.set()
        release.wait(5)
        return b"png"

    first = asyncio.ensure_future(cache.get("k", render))
    await asyncio.to_thread(started.wait, 5)
    second = asyncio.ensure_future(cache.get("k", render))
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(first, second) == [b"png", b"png"]
    assert cache.computed == 1
    assert await cache.get("k", render) == b"png"
    assert cache.computed == 1


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    cache: ThreadedLru[str, int] = ThreadedLru(4)
    release = threading.Event()
    quitter = asyncio.ensure_future(cache.get("k", lambda: release.wait(5) and 7))
    stayer = asyncio.ensure_future(cache.get("k", lambda: 0))
    await asyncio.sleep(0)
    quitter.cancel()
    release.set()
    assert await stayer == 7
    assert "k" in cache


async def test_failures_are_not_cached() -> None:
    cache: ThreadedLru[str, int] = ThreadedLru(4)

    def boom() -> int:
        raise ValueError("render failed")

    with pytest.raises(ValueError, match="render failed"):
        await cache.get("k", boom)
    assert "k" not in cache
    assert await cache.get("k", lambda: 3) == 3
    assert cache.computed == 2


async def test_least_recently_used_is_evicted() -> None:
    cache: ThreadedLru[int, int] = ThreadedLru(2)
    await cache.get(1, lambda: 1)
    await cache.get(2, lambda: 2)
    await cache.get(1, lambda: -1)  # a hit: 1 becomes the most recent
    await cache.get(3, lambda: 3)
    assert 1 in cache and 3 in cache and 2 not in cache
    assert len(cache) == 2
    with pytest.raises(ValueError, match="maxsize"):
        ThreadedLru[int, int](0)
