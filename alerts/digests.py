"""Scheduled digests (issue 4, deliverables 2 and 6): who gets one, and under which key.

A digest is not a condition: the scheduler's cron jobs send it. ``hourly`` and ``daily`` run on
``alerts.hourly_digest_cron`` and ``alerts.daily_digest_cron``; ``after-etf`` runs whenever the
ETF report holds a trading day not yet digested (its job can run every tick: the key makes one
digest per trading day).

The key of a digest names its slot, never the attempt: the scheduled fire time (hourly, daily)
or the ETF trading day (after-etf). A job that runs twice for one slot (a retry, a restart, a
brief double leader) therefore queues it once, because the outbox and the log refuse a key
they already hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time

import numpy as np
from numpy.typing import NDArray

from alerts.rules.tables import DigestTable, ScheduleCode
from core.errors import InputError
from core.etf_report import FlowReport

__all__ = ["SCHEDULES", "Recipients", "after_etf_slot_ms", "recipients", "schedule_code"]

SCHEDULES = ("hourly", "daily", "after-etf")


def schedule_code(schedule: str) -> ScheduleCode:
    """The table code of a schedule name; InputError naming the ones allowed."""
    if schedule not in SCHEDULES:
        raise InputError(f"unknown digest schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
    code: ScheduleCode = ScheduleCode.of(schedule)
    return code


@dataclass(frozen=True)
class Recipients:
    """The live digest subscriptions of one schedule: ids and their destinations (aligned)."""

    subscription_ids: NDArray[np.int64]
    destination_ids: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.subscription_ids.shape[0])


def recipients(table: DigestTable, schedule: str, now_ms: int) -> Recipients:
    """The subscriptions of ``schedule`` that have not expired at ``now_ms``."""
    rows = table.rows(schedule_code(schedule))
    live = table.timing.expires_ms[rows] > now_ms
    return Recipients(table.ids[rows][live], table.destination_ids[rows][live])


def after_etf_slot_ms(report: FlowReport) -> int:
    """The slot of an after-etf digest: its trading day, as epoch ms of 00:00 UTC."""
    return int(datetime.combine(report.latest.date, time(), UTC).timestamp() * 1000)
