"""Prometheus metrics for the running bot: what it ticks, fires, delivers and answers.

One :class:`Metrics` owns its own :class:`~prometheus_client.CollectorRegistry`, never the
process-global one, so tests and several instances in one process never collide. The bot
feeds it from the places that already know the numbers (see each ``observe_*``), and
:mod:`bot.health_server` serves :meth:`Metrics.render` on ``/metrics``.

Label values are kept bounded (a scrape target's cost grows with its series): platforms and
kinds come from the code, command names outside the known set count as ``unknown``, and
outcomes are checked against fixed sets.

Delivery counts, ``liqbot_deliveries_total{platform,result}``, come from two places that see
different things, each result value from exactly one of them (so nothing is counted twice):

* ``sent``, ``retried``, ``failed``: each send attempt as the platform answered it, from
  :meth:`Metrics.timed_sender` (``failed`` is a definitive failure: blocked, kicked, not found);
* ``dead``: rows the outbox gave up on, from :meth:`Metrics.observe_drain` (only the drain
  knows that a transient failure was the last attempt, or that a chat got disabled).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from alerts.delivery import DrainResult, Sender, SendResult
from alerts.engine import TickResult
from alerts.notifications import GroupedMessage
from alerts.store import Destination, OutboxStats
from bot.chat import Command, CommandHandler, Reply
from core.feeds.staleness import Freshness

__all__ = [
    "COMMAND_OUTCOMES",
    "DELIVERY_RESULTS",
    "Metrics",
    "send_result_label",
]

DELIVERY_RESULTS: Final = frozenset({"sent", "retried", "failed", "dead"})
COMMAND_OUTCOMES: Final = frozenset({"ok", "bad_input", "error"})
UNKNOWN_COMMAND: Final = "unknown"

# A tick is sub-second when healthy; a send may wait on the platform pacer for many seconds.
TICK_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DELIVERY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def send_result_label(result: SendResult) -> str:
    """``sent`` / ``retried`` (transient) / ``failed`` (definitive), as alerts.delivery reads it."""
    if result.ok:
        return "sent"
    return "failed" if result.definitive else "retried"


class Metrics:
    """The bot's metrics in a registry of their own.

    ``clock`` (monotonic seconds) times the sends of :meth:`timed_sender`; tests pass a fake
    one so they assert exact values, never wall-clock time. ``runtime`` adds the standard
    ``process_*`` and ``python_info`` metrics (memory, CPU, open files) to this registry.
    ``commands`` is the set of known command names (default: :data:`bot.commands.COMMAND_SPECS`
    when the first command is counted); any other name is counted as ``unknown``, so users
    typing random ``/words`` cannot grow the number of series.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.perf_counter,
        runtime: bool = True,
        commands: Collection[str] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._commands: frozenset[str] | None = None if commands is None else frozenset(commands)
        self._feed_series: set[str] = set()
        r = self.registry
        if runtime:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        # --- the tick -------------------------------------------------------------------
        self.ticks = Counter("liqbot_ticks", "Snapshot + evaluation ticks run.", registry=r)
        self.tick_seconds = Histogram(
            "liqbot_tick_seconds",
            "Duration of a tick (snapshots, store write, alert evaluation).",
            buckets=TICK_BUCKETS,
            registry=r,
        )
        self.last_tick = Gauge(
            "liqbot_last_tick_timestamp_seconds",
            "Data time of the latest tick (epoch seconds; demo mode runs a simulated clock).",
            registry=r,
        )
        # --- feeds ----------------------------------------------------------------------
        self.feed_age = Gauge(
            "liqbot_feed_age_seconds",
            "Seconds since the series was last updated (+Inf when never).",
            ["series"],
            registry=r,
        )
        self.feed_stale = Gauge(
            "liqbot_feed_stale",
            "1 when the series is stale (no update for two intervals, or never), else 0.",
            ["series"],
            registry=r,
        )
        # --- alerts ---------------------------------------------------------------------
        self.alerts_fired = Counter(
            "liqbot_alerts_fired",
            "Subscriptions that notified, per kind (before inhibition and grouping).",
            ["kind"],
            registry=r,
        )
        self.notifications_queued = Counter(
            "liqbot_notifications_queued",
            "Grouped messages newly written to the outbox.",
            registry=r,
        )
        # --- delivery -------------------------------------------------------------------
        self.deliveries = Counter(
            "liqbot_deliveries",
            "Send attempts by outcome (sent|retried|failed), and outbox rows given up (dead).",
            ["platform", "result"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "liqbot_delivery_seconds",
            "Duration of one send, pacing waits included.",
            ["platform"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.destinations_disabled = Counter(
            "liqbot_destinations_disabled",
            "Chats disabled after repeated definitive failures.",
            ["platform"],
            registry=r,
        )
        # --- outbox ---------------------------------------------------------------------
        self.outbox_pending = Gauge(
            "liqbot_outbox_pending", "Outbox rows not yet sent nor given up.", registry=r
        )
        self.outbox_dead = Gauge(
            "liqbot_outbox_dead", "Outbox rows given up (dead letters, kept).", registry=r
        )
        self.outbox_oldest = Gauge(
            "liqbot_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending outbox row (0 when none).",
            registry=r,
        )
        # --- process role and commands ---------------------------------------------------
        self.leader = Gauge(
            "liqbot_leader",
            "1 while this instance leads (ticks and drains), else 0.",
            ["instance"],
            registry=r,
        )
        self.commands = Counter(
            "liqbot_commands",
            "Chat commands answered, by outcome (ok|bad_input|error).",
            ["platform", "command", "outcome"],
            registry=r,
        )

    # --- observations ---------------------------------------------------------------------

    def observe_tick(self, seconds: float, result: TickResult | None, now_ms: int) -> None:
        """One tick took ``seconds``; ``result`` is the engine's (None when it did not run)."""
        self.ticks.inc()
        self.tick_seconds.observe(max(seconds, 0.0))
        self.last_tick.set(now_ms / 1000)
        if result is None:
            return
        for kind, n in result.notified.items():
            if n:
                self.alerts_fired.labels(kind=str(kind)).inc(n)
        if result.queued:
            self.notifications_queued.inc(len(result.queued))

    def observe_freshness(self, series: Iterable[Freshness], now_ms: int) -> None:
        """Age and staleness of every series; a series no longer listed is dropped."""
        seen: set[str] = set()
        for f in series:
            age = f.age_ms(now_ms)
            self.feed_age.labels(series=f.series).set(math.inf if age is None else age / 1000)
            self.feed_stale.labels(series=f.series).set(1 if f.is_stale(now_ms) else 0)
            seen.add(f.series)
        for gone in self._feed_series - seen:
            self.feed_age.remove(gone)
            self.feed_stale.remove(gone)
        self._feed_series = seen

    def observe_delivery(self, platform: str, seconds: float | None, result: str) -> None:
        """One send attempt (``seconds`` None: count it without timing, e.g. a dead row)."""
        if result not in DELIVERY_RESULTS:
            raise ValueError(f"delivery result {result!r} is not one of {sorted(DELIVERY_RESULTS)}")
        self.deliveries.labels(platform=platform, result=result).inc()
        if seconds is not None:
            self.delivery_seconds.labels(platform=platform).observe(max(seconds, 0.0))

    def observe_drain(self, platform: str, result: DrainResult) -> None:
        """What only the drain knows: rows given up (``dead``) and chats it disabled.

        Sends themselves (sent, retried, failed) are counted by :meth:`timed_sender`, so they
        are not counted again here. ``platform`` labels the drain: ``"all"`` when one drain
        serves every platform (bot.app's ``Senders``).
        """
        if result.dead:
            self.deliveries.labels(platform=platform, result="dead").inc(len(result.dead))
        if result.disabled:
            self.destinations_disabled.labels(platform=platform).inc(len(result.disabled))

    def observe_outbox(self, stats: OutboxStats, now_ms: int) -> None:
        """Outbox depth, dead letters and the age of the oldest pending row."""
        self.outbox_pending.set(stats.pending)
        self.outbox_dead.set(stats.dead)
        oldest = stats.oldest_pending_ms
        self.outbox_oldest.set(0.0 if oldest is None else max(now_ms - oldest, 0) / 1000)

    def set_leader(self, instance: str, is_leader: bool) -> None:
        self.leader.labels(instance=instance).set(1 if is_leader else 0)

    def observe_command(self, platform: str, command: str, outcome: str) -> None:
        """One command answered; unknown names are counted as ``unknown``."""
        if outcome not in COMMAND_OUTCOMES:
            raise ValueError(
                f"command outcome {outcome!r} is not one of {sorted(COMMAND_OUTCOMES)}"
            )
        name = command.lower() if command.lower() in self._known_commands() else UNKNOWN_COMMAND
        self.commands.labels(platform=platform, command=name, outcome=outcome).inc()

    def render(self) -> bytes:
        """Everything in this registry, in the Prometheus text exposition format."""
        return generate_latest(self.registry)

    # --- wrappers -------------------------------------------------------------------------

    def timed_sender(self, platform: str, sender: Sender) -> Sender:
        """``sender``, timed and counted per send (see :func:`send_result_label`).

        A sender that raises is counted as ``retried`` (alerts.delivery retries it) and the
        exception goes on; a cancelled send (shutdown) is not counted: it did not finish.
        """

        async def send(dest: Destination, msg: GroupedMessage) -> SendResult:
            start = self._clock()
            try:
                result = await sender(dest, msg)
            except Exception:
                self.observe_delivery(platform, self._clock() - start, "retried")
                raise
            self.observe_delivery(platform, self._clock() - start, send_result_label(result))
            return result

        return send

    def counted_handler(self, handler: CommandHandler) -> CommandHandler:
        """``handler`` (``CommandRouter.handle``) with every answer counted by outcome.

        The router never raises and marks every refusal with ``Reply.error``: its generic
        error reply is an ``error`` (a bug, logged by the router), any other error reply is
        ``bad_input`` (usage, unknown command, rate limit, refused, no data), the rest ``ok``.
        """
        from bot.commands import GENERIC_ERROR  # here: bot.commands imports matplotlib

        async def handle(cmd: Command) -> Reply:
            try:
                reply = await handler(cmd)
            except Exception:
                self.observe_command(cmd.platform, cmd.name, "error")
                raise
            if not reply.error:
                outcome = "ok"
            elif reply.lines == (GENERIC_ERROR,):
                outcome = "error"
            else:
                outcome = "bad_input"
            self.observe_command(cmd.platform, cmd.name, outcome)
            return reply

        return handle

    def _known_commands(self) -> frozenset[str]:
        if self._commands is None:
            from bot.commands import COMMAND_SPECS  # lazily: it imports matplotlib

            self._commands = frozenset(spec.name for spec in COMMAND_SPECS)
        return self._commands
