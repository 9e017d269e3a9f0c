"""Per-venue request budgets, kept well inside each venue's documented limits.

Binance: 2,400 request weight per minute per IP (tracked from X-MBX-USED-WEIGHT-1M too), and
1,000 requests per 5 minutes on /futures/data/*. OKX: 20 requests per 2 s on candles and most
public market endpoints, 5 per 2 s on history-candles. Bybit: 600 requests per 5 s per IP.
We budget a safety share of each so normal operation never reaches a limit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Window:
    """At most ``limit`` units per ``seconds``."""

    limit: float
    seconds: float


@dataclass(frozen=True)
class VenueLimits:
    """Named windows of a venue; a request names the windows it counts against."""

    windows: dict[str, Window]
    safety: float = 0.8  # use at most this share of each documented budget


BINANCE = VenueLimits(
    {
        "weight": Window(2400, 60.0),
        "futures_data": Window(1000, 300.0),
    }
)
OKX = VenueLimits(
    {
        "market": Window(20, 2.0),
        "history": Window(5, 2.0),
        "public": Window(20, 2.0),
        "rubik": Window(5, 2.0),
    }
)
BYBIT = VenueLimits({"ip": Window(600, 5.0)})
DEFAULT = VenueLimits({"default": Window(10, 1.0)})


@dataclass
class Budget:
    """Sliding-window accounting of what a venue has been sent.

    ``delay(now, costs)`` says how long to wait before sending a request of ``costs``; ``spend``
    records it. ``observe_used`` folds in a venue's own count (Binance's used-weight header),
    which also catches weight spent by other processes on the same IP.
    """

    limits: VenueLimits
    _spent: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    _observed: dict[str, tuple[float, float]] = field(default_factory=dict)

    def used(self, name: str, now: float) -> float:
        window = self.limits.windows[name]
        q = self._spent.setdefault(name, deque())
        while q and q[0][0] <= now - window.seconds:
            q.popleft()
        own = sum(cost for _, cost in q)
        seen_at, seen = self._observed.get(name, (0.0, 0.0))
        # The venue's figure counts for the rest of its window (a minute for Binance's header).
        venue = seen if now - seen_at < window.seconds else 0.0
        return max(own, venue)

    def delay(self, now: float, costs: dict[str, float]) -> float:
        wait = 0.0
        for name, cost in costs.items():
            window = self.limits.windows[name]
            cap = window.limit * self.limits.safety
            if self.used(name, now) + cost <= cap:
                continue
            q = self._spent.get(name, deque())
            # Wait until enough of our own spend leaves the window, else for the window to roll.
            freed, until = self.used(name, now), now + window.seconds
            for ts, c in q:
                freed -= c
                if freed + cost <= cap:
                    until = ts + window.seconds
                    break
            wait = max(wait, until - now)
        return max(wait, 0.0)

    def spend(self, now: float, costs: dict[str, float]) -> None:
        for name, cost in costs.items():
            self._spent.setdefault(name, deque()).append((now, cost))

    def observe_used(self, name: str, now: float, used: float) -> None:
        self._observed[name] = (now, used)

    def snapshot(self, now: float) -> dict[str, dict[str, float]]:
        return {
            name: {"used": self.used(name, now), "limit": w.limit, "seconds": w.seconds}
            for name, w in self.limits.windows.items()
        }
