"""Quiet hours and mutes: when a chat's messages go out silently (DESIGN §6).

Inside a chat's quiet hours, or while it is muted (``/mute 2h``), a message is delivered with
the platform's "no sound" flag; it is never dropped (users want to read it in the morning).

Like Alertmanager's silencer, each rule is a :class:`Muter`; :class:`Muters` asks several in
turn, and :func:`apply_muter` marks grouped messages silent. Everything is pure: ``now_ms`` is an
argument.

Quiet hours are wall-clock times in the chat's IANA time zone (``zoneinfo``), so they follow
daylight saving: 23:00-07:00 in Europe/Berlin is 22:00-06:00 UTC in winter and 21:00-05:00 UTC
in summer, and the night of a change is an hour shorter or longer. A window whose start is after
its end crosses midnight. On the night clocks go back, a wall-clock time inside the window that
occurs twice is quiet both times.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time
from enum import StrEnum
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.notifications import GroupedMessage
from core.errors import InputError

__all__ = [
    "ChatSettings",
    "MuteReason",
    "MuteUntil",
    "Muter",
    "Muters",
    "QuietHours",
    "QuietHoursMuter",
    "apply_muter",
    "muter_for",
    "parse_quiet_hours",
    "zone",
]


class MuteReason(StrEnum):
    QUIET_HOURS = "quiet_hours"
    MUTED = "muted"


class Muter(Protocol):
    """Says whether a destination's messages go out silently at ``now_ms``, and why."""

    def mutes(self, destination_id: int, now_ms: int) -> MuteReason | None: ...


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or InputError saying what is expected."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC"
        ) from None


@dataclass(frozen=True)
class QuietHours:
    """A daily wall-clock window ``[start, end)`` in time zone ``tz``; empty when start == end."""

    tz: str
    start: time
    end: time

    def __post_init__(self) -> None:
        zone(self.tz)  # fail at construction, not at 3 am

    @classmethod
    def from_minutes(cls, tz: str, start_min: int, end_min: int) -> QuietHours:
        """From minutes of the local day (0..1439), as the store keeps them."""
        if not (0 <= start_min < 1440 and 0 <= end_min < 1440):
            raise InputError("quiet hours are minutes of the day, from 00:00 to 23:59")
        return cls(tz, time(start_min // 60, start_min % 60), time(end_min // 60, end_min % 60))

    @property
    def minutes(self) -> tuple[int, int]:
        """(start, end) in minutes of the local day."""
        return (self.start.hour * 60 + self.start.minute, self.end.hour * 60 + self.end.minute)

    def contains(self, now_ms: int) -> bool:
        """True when ``now_ms`` (epoch ms UTC) falls inside the window, in the chat's local time."""
        local = datetime.fromtimestamp(now_ms / 1000, tz=UTC).astimezone(zone(self.tz))
        t = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # crosses midnight


_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_quiet_hours(text: str, tz: str) -> QuietHours:
    """``"23:00-07:00"`` in ``tz`` -> QuietHours, or InputError with the expected form."""
    m = _RANGE.match(text)
    bad = InputError(f"invalid quiet hours {text!r}; expected HH:MM-HH:MM such as 23:00-07:00")
    if not m:
        raise bad
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if not (h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60):
        raise bad
    return QuietHours(tz, time(h1, m1), time(h2, m2))


@dataclass(frozen=True)
class QuietHoursMuter:
    """Per-destination quiet hours (destinations without an entry are never quiet)."""

    hours: Mapping[int, QuietHours]

    def mutes(self, destination_id: int, now_ms: int) -> MuteReason | None:
        q = self.hours.get(destination_id)
        return MuteReason.QUIET_HOURS if q is not None and q.contains(now_ms) else None


@dataclass(frozen=True)
class MuteUntil:
    """Per-destination ``/mute``: silent until an epoch ms (exclusive)."""

    until_ms: Mapping[int, int]

    def mutes(self, destination_id: int, now_ms: int) -> MuteReason | None:
        until = self.until_ms.get(destination_id)
        return MuteReason.MUTED if until is not None and now_ms < until else None


class Muters:
    """Several muters; the first that mutes gives the reason (an explicit mute before quiet)."""

    def __init__(self, *muters: Muter) -> None:
        self.muters: tuple[Muter, ...] = muters

    def mutes(self, destination_id: int, now_ms: int) -> MuteReason | None:
        for m in self.muters:
            reason = m.mutes(destination_id, now_ms)
            if reason is not None:
                return reason
        return None


class ChatSettings(Protocol):
    """What a muter needs of a destination (``alerts.store.repo.Destination`` has it)."""

    @property
    def id(self) -> int: ...
    @property
    def timezone(self) -> str: ...
    @property
    def quiet_start(self) -> int | None: ...
    @property
    def quiet_end(self) -> int | None: ...
    @property
    def muted_until_ms(self) -> int | None: ...


def muter_for(chats: Iterable[ChatSettings]) -> Muters:
    """The muter of these chats: their ``/mute`` first, then their quiet hours."""
    chats = list(chats)
    hours = {
        c.id: QuietHours.from_minutes(c.timezone, c.quiet_start, c.quiet_end)
        for c in chats
        if c.quiet_start is not None and c.quiet_end is not None
    }
    until = {c.id: c.muted_until_ms for c in chats if c.muted_until_ms is not None}
    return Muters(MuteUntil(until), QuietHoursMuter(hours))


def apply_muter(
    messages: Iterable[GroupedMessage], muter: Muter, now_ms: int
) -> Sequence[GroupedMessage]:
    """The same messages, the muted ones marked ``silent`` with their reason; none dropped."""
    out = []
    for msg in messages:
        reason = muter.mutes(msg.destination_id, now_ms)
        out.append(msg if reason is None else replace(msg, silent=True, mute_reason=str(reason)))
    return tuple(out)
