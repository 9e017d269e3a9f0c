"""Injectable time for the feed tests: a clock the test (or a sleep) moves, a sleep that records.

``ManualClock(now=...)``
    ``clock()`` returns ``now`` (epoch seconds) until the test moves it (``clock.now += 60``) or
    the code under test calls ``await clock.sleep(s)``, which records ``s`` in ``sleeps``, moves
    ``now`` forward by it and yields to the loop once: waits take no wall time but let the clock
    pass, as a real sleep does.
``FastSleep()``
    An async ``sleep(seconds)`` that records ``seconds`` in ``delays`` and yields once, leaving
    every clock alone: backoffs take no time and can be asserted on.
"""

from __future__ import annotations

import asyncio


class ManualClock:
    """Epoch seconds that move only when the test moves them or the code under test sleeps."""

    def __init__(self, now: float = 1_791_565_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FastSleep:
    """Backoff sleeps that take no time, recorded in ``delays``."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class SteppedClock:
    """Epoch seconds that only the test moves (:meth:`advance`); ``sleep`` waits for it.

    For background tasks (a stream's loop) that must see time pass exactly as the test steps
    it: a sleeper wakes when the test's clock reaches its deadline, never earlier, without
    spinning.
    """

    def __init__(self, now: float = 1_791_565_000.0) -> None:
        self.now = now
        self._moved = asyncio.Condition()

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        async with self._moved:
            self._moved.notify_all()
        await asyncio.sleep(0)

    async def sleep(self, seconds: float) -> None:
        deadline = self.now + seconds
        async with self._moved:
            await self._moved.wait_for(lambda: self.now >= deadline)
