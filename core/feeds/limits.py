"""Per-venue request budgets, kept well inside each venue's documented limits.

Binance: 2,400 request weight per minute per IP (tracked from X-MBX-USED-WEIGHT-1M too), and
1,000 requests per 5 minutes on /futures/data/*. OKX: 40 requests per 2 s on candles, 20 on
history-candles and most public endpoints, 10 on the rubik open-interest history. Bybit: 600
requests per 5 s per IP.
We budget a safety share of each so normal operation never reaches a limit.

A window is sliding: a unit spent at ``t`` counts until ``t + seconds``. A venue's own figure
(``observe_used``) counts for a whole window after it was seen, plus whatever we spent after
seeing it. Venues such as Binance reset at fixed minute boundaries, so this is conservative:
near the limit we may wait up to one window longer than strictly needed, never less.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

# Below this, a window's usage counts as empty (guards float residue from running sums).
_EPS = 1e-9


@dataclass(frozen=True)
class Window:
    """At most ``limit`` units per ``seconds``."""

    limit: float
    seconds: float

    def __post_init__(self) -> None:
        if not (self.limit > 0 and self.seconds > 0):
            raise ValueError(f"a window needs limit > 0 and seconds > 0, got {self}")


@dataclass(frozen=True)
class VenueLimits:
    """Named windows of a venue; a request names the windows it counts against."""

    windows: dict[str, Window]
    safety: float = 0.8  # use at most this share of each documented budget

    def __post_init__(self) -> None:
        if not 0 < self.safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {self.safety}")


BINANCE = VenueLimits(
    {
        "weight": Window(2400, 60.0),
        "futures_data": Window(1000, 300.0),
    }
)
OKX = VenueLimits(
    {
        "market": Window(40, 2.0),  # /market/candles
        "history": Window(20, 2.0),  # /market/history-candles
        "public": Window(20, 2.0),
        "rubik": Window(10, 2.0),  # /rubik/stat/contracts/open-interest-history
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

    A request costing more than a window's whole safe share may go once that window is empty,
    rather than never.
    """

    limits: VenueLimits
    _spent: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    _observed: dict[str, tuple[float, float]] = field(default_factory=dict)

    def check(self, costs: Mapping[str, float]) -> None:
        """Raise ValueError if ``costs`` names a window this venue does not have."""
        unknown = sorted(set(costs) - set(self.limits.windows))
        if unknown:
            known = ", ".join(sorted(self.limits.windows))
            raise ValueError(f"unknown budget window(s) {unknown}; this venue has: {known}")

    def cap(self, name: str) -> float:
        """The safe share of window ``name``: what we allow ourselves to use."""
        return self.limits.windows[name].limit * self.limits.safety

    def used(self, name: str, now: float) -> float:
        """Units counted against window ``name`` at ``now`` (ours, or the venue's figure)."""
        q = self._prune(name, now)
        own = sum(cost for _, cost in q)
        return max(own, self._venue_figure(name, now, q))

    def delay(self, now: float, costs: Mapping[str, float]) -> float:
        """Seconds to wait until a request of ``costs`` fits every window it names."""
        self.check(costs)
        return max((self._delay_one(name, now, cost) for name, cost in costs.items()), default=0.0)

    def spend(self, now: float, costs: Mapping[str, float]) -> None:
        self.check(costs)
        for name, cost in costs.items():
            if cost > 0:
                self._spent.setdefault(name, deque()).append((now, float(cost)))

    def observe_used(self, name: str, now: float, used: float) -> None:
        """Record the venue's own count of window ``name`` (non-finite figures are ignored)."""
        if math.isfinite(used):
            self._observed[name] = (now, max(used, 0.0))

    def snapshot(self, now: float) -> dict[str, dict[str, float]]:
        return {
            name: {
                "used": self.used(name, now),
                "cap": self.cap(name),
                "limit": w.limit,
                "seconds": w.seconds,
            }
            for name, w in self.limits.windows.items()
        }

    def _prune(self, name: str, now: float) -> deque[tuple[float, float]]:
        seconds = self.limits.windows[name].seconds
        q = self._spent.setdefault(name, deque())
        while q and q[0][0] <= now - seconds:
            q.popleft()
        return q

    def _venue_figure(self, name: str, at: float, q: deque[tuple[float, float]]) -> float:
        """The venue's last figure plus our spend since, while that figure is current at ``at``."""
        seen = self._observed.get(name)
        if seen is None or at - seen[0] >= self.limits.windows[name].seconds:
            return 0.0
        seen_at, figure = seen
        # Spends at or before the observation are already in the venue's figure.
        return figure + sum(cost for ts, cost in q if ts > seen_at)

    def _delay_one(self, name: str, now: float, cost: float) -> float:
        if cost <= 0:
            return 0.0
        seconds = self.limits.windows[name].seconds
        cap = self.cap(name)
        q = self._prune(name, now)
        own = sum(c for _, c in q)
        venue = self._venue_figure(name, now, q)
        venue_ends = self._observed[name][0] + seconds if venue else now

        def fits(used: float) -> bool:
            return used + cost <= cap or used <= _EPS

        if fits(max(own, venue)):
            return 0.0
        # Usage only falls when one of our spends leaves the window, or when the venue's figure
        # expires; try those moments in time order. Spends after the figure expire after it too,
        # so the figure stays constant until it ends.
        events = sorted([(ts + seconds, c) for ts, c in q] + [(venue_ends, 0.0)])
        for at, freed in events:
            own -= freed
            current_venue = venue if at < venue_ends else 0.0
            if at > now and fits(max(own, current_venue)):
                return at - now
        return seconds  # unreachable: once everything has expired the window is empty
