"""What the command layer reads and changes, passed in (no globals, fakes are easy).

``bot.app`` builds one :class:`BotServices` for the running bot; tests build their own with an
in-memory market. Commands never compute a map when a fresh snapshot exists: ``snapshots``
holds the latest per symbol (the leader's tick writes it; a follower seeds it from the store).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from alerts.series import SeriesStore
from alerts.snapshots import SnapshotCache
from alerts.store import Store
from core.config import Settings
from core.etf import EtfFlows
from core.etf_report import FlowReport
from core.feeds.base import StreamStatus
from core.feeds.http import VenueStatus
from core.feeds.staleness import Freshness

__all__ = ["BotServices", "EtfView", "StatusView"]


@dataclass(frozen=True)
class EtfView:
    """The ETF flows the bot has, their report, and whether they are current."""

    flows: EtfFlows
    report: FlowReport
    fetched_ms: int | None = None
    stale: bool = False
    source: str = ""


@dataclass(frozen=True)
class StatusView:
    """What ``/status`` shows: feed health, the scheduler, the outbox, who leads."""

    now_ms: int
    venues: tuple[VenueStatus, ...] = ()
    streams: tuple[StreamStatus, ...] = ()
    series: tuple[Freshness, ...] = ()  # bar/oi series freshness
    last_tick_ms: int | None = None
    leader: str | None = None  # instance id of the leader; None when unknown
    is_leader: bool = True
    queue_depth: int = 0  # outbox rows not yet sent
    dead_letters: int = 0
    mode: str = "live"  # "live" or "demo"
    jobs: Mapping[str, str] = field(default_factory=dict)  # job id -> last outcome, for admins


@dataclass
class BotServices:
    """The running bot's parts, as commands see them.

    ``etf`` and ``status`` are async getters (they may read a cache or the store).
    ``subscriptions_changed`` tells the alert engine to reload before its next tick.
    ``series`` lets ``/liqmap <symbol> <venue>`` draw one venue's map (the snapshot combines
    all venues); None where bars are not held (a follower), and then only ``all`` is offered.
    """

    settings: Settings
    store: Store
    snapshots: SnapshotCache
    etf: Callable[[], Awaitable[EtfView | None]]
    status: Callable[[], Awaitable[StatusView]]
    series: SeriesStore | None = None
    subscriptions_changed: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.time

    def now_ms(self) -> int:
        return int(self.clock() * 1000)
