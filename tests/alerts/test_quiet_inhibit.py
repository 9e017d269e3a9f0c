"""Quiet hours (time zones, midnight, DST), mutes, and inhibition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time

import pytest

from alerts.inhibit import DEFAULT_RULES, InhibitRule, inhibit
from alerts.notifications import (
    ClusterApproach,
    EtfFlow,
    GroupedMessage,
    LevelCross,
    LiqSpike,
    NoticeKind,
    Outgoing,
)
from alerts.quiet import (
    MuteReason,
    Muters,
    MuteUntil,
    QuietHours,
    QuietHoursMuter,
    apply_muter,
    muter_for,
    parse_quiet_hours,
)
from core.errors import InputError

MIN = 60_000


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def quiet_minutes(q: QuietHours, start: str, end: str) -> list[int]:
    """Every UTC minute in [start, end) that is inside ``q``, as epoch ms."""
    return [t for t in range(utc_ms(start), utc_ms(end), MIN) if q.contains(t)]


NIGHT_BERLIN = QuietHours("Europe/Berlin", time(23), time(7))


@pytest.mark.parametrize(
    ("when_utc", "quiet"),
    [
        ("2026-01-15T21:59", False),  # 22:59 CET
        ("2026-01-15T22:00", True),  # 23:00 CET
        ("2026-01-15T23:30", True),  # 00:30, after midnight
        ("2026-01-16T05:59", True),  # 06:59
        ("2026-01-16T06:00", False),  # 07:00: the end is exclusive
        ("2026-01-16T12:00", False),
        ("2026-07-15T20:59", False),  # 22:59 CEST
        ("2026-07-15T21:00", True),  # 23:00 CEST: an hour earlier in UTC in summer
        ("2026-07-16T04:59", True),
        ("2026-07-16T05:00", False),
    ],
)
def test_quiet_hours_across_midnight_in_the_chats_zone(when_utc: str, quiet: bool) -> None:
    assert NIGHT_BERLIN.contains(utc_ms(when_utc)) is quiet


def test_spring_forward_night_is_an_hour_shorter() -> None:
    # Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    minutes = quiet_minutes(NIGHT_BERLIN, "2026-03-28T18:00", "2026-03-29T10:00")
    assert len(minutes) == 7 * 60
    assert minutes[0] == utc_ms("2026-03-28T22:00")  # 23:00 CET
    assert minutes[-1] == utc_ms("2026-03-29T04:59")  # 06:59 CEST


def test_fall_back_night_is_an_hour_longer() -> None:
    # Europe/Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00 UTC).
    minutes = quiet_minutes(NIGHT_BERLIN, "2026-10-24T18:00", "2026-10-25T10:00")
    assert len(minutes) == 9 * 60
    assert minutes[0] == utc_ms("2026-10-24T21:00")  # 23:00 CEST
    assert minutes[-1] == utc_ms("2026-10-25T05:59")  # 06:59 CET


def test_a_window_inside_the_changed_hour() -> None:
    q = QuietHours("Europe/Berlin", time(2), time(3))
    assert quiet_minutes(q, "2026-03-28T12:00", "2026-03-29T12:00") == []  # 02:xx never happens
    assert len(quiet_minutes(q, "2026-10-24T12:00", "2026-10-25T12:00")) == 120  # happens twice


def test_new_york_changes_on_its_own_date() -> None:
    q = QuietHours("America/New_York", time(23), time(7))
    # 2026-03-08: 02:00 EST -> 03:00 EDT; Berlin is still on CET that night.
    assert len(quiet_minutes(q, "2026-03-07T20:00", "2026-03-08T16:00")) == 7 * 60
    assert len(quiet_minutes(NIGHT_BERLIN, "2026-03-07T18:00", "2026-03-08T10:00")) == 8 * 60


@pytest.mark.parametrize(
    ("start", "end", "when_utc", "quiet"),
    [
        (time(13), time(14), "2026-01-15T12:59", False),
        (time(13), time(14), "2026-01-15T13:00", True),
        (time(13), time(14), "2026-01-15T13:59", True),
        (time(13), time(14), "2026-01-15T14:00", False),
        (time(9), time(9), "2026-01-15T09:00", False),  # start == end: never quiet
        (time(0), time(23, 59), "2026-01-15T23:58", True),
    ],
)
def test_windows_in_utc(start: time, end: time, when_utc: str, quiet: bool) -> None:
    assert QuietHours("UTC", start, end).contains(utc_ms(when_utc)) is quiet


def test_minutes_of_the_day_as_the_store_keeps_them() -> None:
    q = QuietHours.from_minutes("Europe/Berlin", 23 * 60, 7 * 60 + 30)
    assert (q.start, q.end) == (time(23), time(7, 30))
    assert q.minutes == (1380, 450)
    with pytest.raises(InputError, match="minutes of the day"):
        QuietHours.from_minutes("UTC", 0, 1440)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [("23:00-07:00", time(23), time(7)), (" 7:30 - 9:05 ", time(7, 30), time(9, 5))],
)
def test_parse_quiet_hours(text: str, start: time, end: time) -> None:
    assert parse_quiet_hours(text, "Asia/Tokyo") == QuietHours("Asia/Tokyo", start, end)


@pytest.mark.parametrize("text", ["", "23-07", "24:00-07:00", "23:60-07:00", "23:00 to 07:00"])
def test_parse_quiet_hours_rejects(text: str) -> None:
    with pytest.raises(InputError, match="expected HH:MM-HH:MM"):
        parse_quiet_hours(text, "UTC")


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../etc/passwd"])
def test_unknown_time_zone_is_refused_early(tz: str) -> None:
    with pytest.raises(InputError, match="IANA"):
        QuietHours(tz, time(23), time(7))


# --- muters ------------------------------------------------------------------------------------

NOW = utc_ms("2026-01-15T23:30")  # 00:30 in Berlin, 23:30 in London


def _msg(dest: int) -> GroupedMessage:
    o = Outgoing(dest, 1, NOW, LevelCross("BTC", NOW, 1.0, 2.0, 0.5))
    return GroupedMessage(dest, f"{dest}:k", NOW, (o,))


def test_mute_until_is_exclusive() -> None:
    m = MuteUntil({1: NOW + MIN})
    assert m.mutes(1, NOW) is MuteReason.MUTED
    assert m.mutes(1, NOW + MIN) is None
    assert m.mutes(2, NOW) is None


def test_an_explicit_mute_wins_over_quiet_hours() -> None:
    m = Muters(MuteUntil({1: NOW + MIN}), QuietHoursMuter({1: NIGHT_BERLIN, 2: NIGHT_BERLIN}))
    assert m.mutes(1, NOW) is MuteReason.MUTED
    assert m.mutes(2, NOW) is MuteReason.QUIET_HOURS
    assert m.mutes(3, NOW) is None


def test_apply_muter_sends_silently_and_drops_nothing() -> None:
    london = QuietHours("Europe/London", time(0), time(7))
    m = QuietHoursMuter({1: NIGHT_BERLIN, 2: london})
    out = apply_muter([_msg(1), _msg(2), _msg(3)], m, NOW)
    assert [(x.destination_id, x.silent, x.mute_reason) for x in out] == [
        (1, True, "quiet_hours"),
        (2, False, None),  # 23:30 in London is before its window
        (3, False, None),
    ]
    assert [x.items for x in out] == [_msg(d).items for d in (1, 2, 3)]


@dataclass(frozen=True)
class Chat:
    id: int
    timezone: str
    quiet_start: int | None
    quiet_end: int | None
    muted_until_ms: int | None


def test_muter_for_chat_settings() -> None:
    chats = [
        Chat(1, "Europe/Berlin", 23 * 60, 7 * 60, None),
        Chat(2, "UTC", None, None, NOW + MIN),
        Chat(3, "UTC", None, None, None),
    ]
    m = muter_for(chats)
    assert [m.mutes(c.id, NOW) for c in chats] == [MuteReason.QUIET_HOURS, MuteReason.MUTED, None]


# --- inhibition --------------------------------------------------------------------------------

T = NOW


def spike(dest: int, symbol: str = "BTC", at: int = T) -> Outgoing:
    return Outgoing(dest, 100 + dest, at, LiqSpike(symbol, at, 3_600_000, 5e7, 1.5e8, 1e8))


def near(dest: int, symbol: str = "BTC", at: int = T, sub: int = 1) -> Outgoing:
    return Outgoing(dest, sub, at, ClusterApproach(symbol, at, 95_734.0, "short", 96_202.0, 1e8))


def test_a_spike_suppresses_the_approach_alert_for_its_symbol() -> None:
    s, a, b = spike(1), near(1), near(1, sub=2)
    res = inhibit([a, s, b])
    assert res.kept == (s,)
    assert [(x.item, x.by, x.reason) for x in res.suppressed] == [
        (a, s, "spike_inhibits_cluster_approach"),
        (b, s, "spike_inhibits_cluster_approach"),
    ]


@pytest.mark.parametrize(
    ("other", "why"),
    [
        (near(1, symbol="ETH"), "another symbol"),
        (near(2), "another destination"),
        (near(1, at=T + MIN), "another tick"),
        (Outgoing(1, 5, T, LevelCross("BTC", T, 96_000.0, 96_100.0, 95_900.0)), "a level cross"),
        (
            Outgoing(1, 6, T, EtfFlow(datetime(2026, 1, 13).date(), 753.8, 500.0)),
            "no symbol",
        ),
    ],
)
def test_what_a_spike_does_not_suppress(other: Outgoing, why: str) -> None:
    res = inhibit([spike(1), other])
    assert res.kept == (spike(1), other), why
    assert res.suppressed == ()


def test_no_spike_no_inhibition_and_order_is_kept() -> None:
    items = [near(1, "ETH"), near(1), near(2)]
    assert inhibit(items).kept == tuple(items)


def test_custom_rules() -> None:
    cross = Outgoing(1, 5, T, LevelCross("BTC", T, 96_000.0, 96_100.0, 95_900.0))
    rule = InhibitRule(
        NoticeKind.LIQ_SPIKE,
        frozenset({NoticeKind.CLUSTER_APPROACH, NoticeKind.LEVEL_CROSS}),
        "spike_inhibits_price_alerts",
    )
    res = inhibit([spike(1), cross, near(1)], [*DEFAULT_RULES, rule])
    assert res.kept == (spike(1),)
    assert [x.reason for x in res.suppressed] == [
        "spike_inhibits_price_alerts",
        "spike_inhibits_cluster_approach",
    ]
    assert inhibit([spike(1), near(1)], []).suppressed == ()
