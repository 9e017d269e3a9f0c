"""Chat-wide commands: ``/mute``, ``/quiet``, ``/settings``, ``/subscribe``, ``/unsubscribe``.

In a group or channel these change what everybody in the chat gets, so they are for chat admins
(the adapter decides who is one). A mute or quiet hours never drop a message: the engine sends
it without sound (DESIGN §6). Broadcasts are presets of subscriptions marked ``broadcast``;
adding them runs in one transaction, so a quota error adds none of them.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alerts.store import (
    KEEP,
    Destination,
    add_subscription,
    delete_subscription,
    list_subscriptions,
    update_destination_settings,
)
from alerts.subscriptions import Kind, Subscription
from bot.chat import ArgSpec, CommandSpec, Reply
from bot.cmd_alert_text import alert_params, label
from bot.cmd_context import Ctx, Handler
from bot.command_parse import (
    ArgError,
    is_off,
    normalize_args,
    parse_duration,
    parse_quiet_range,
    parse_timezone,
    shown,
)

__all__ = ["COMMANDS", "local_time"]

MAX_MUTE_MS = 30 * 86_400_000
_BROADCAST_REFUSAL = "Only chat admins can put this chat on broadcasts."
_PRESETS = ("digest", "etf", "clusters")
_PRESET_KINDS = {"digest": Kind.DIGEST, "etf": Kind.ETF, "clusters": Kind.CLUSTER}
_PRESET_WORDS = {
    "digest": ("digest",),
    "digests": ("digest",),
    "etf": ("etf",),
    "etfs": ("etf",),
    "clusters": ("clusters",),
    "cluster": ("clusters",),
    "all": _PRESETS,
    "everything": _PRESETS,
}


def local_time(ms: int, tz: str) -> str:
    """'2026-01-13 15:00 Europe/Berlin'."""
    when = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(ZoneInfo(tz))
    return f"{when:%Y-%m-%d %H:%M} {tz}"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _chat_state(dest: Destination, now_ms: int) -> tuple[str, ...]:
    quiet = (
        f"{_clock(dest.quiet_start)}-{_clock(dest.quiet_end)}"
        if dest.quiet_start is not None and dest.quiet_end is not None
        else "off"
    )
    muted = dest.muted_until_ms
    mute = f"until {local_time(muted, dest.timezone)}" if muted and muted > now_ms else "off"
    return (f"Time zone: {dest.timezone}", f"Quiet hours: {quiet}", f"Mute: {mute}")


async def mute(ctx: Ctx) -> Reply:
    args = normalize_args(ctx.args)
    if len(args) > 1:
        raise ArgError("Give one duration, e.g. /mute 2h, or /mute off")
    word = args[0] if args else "1h"
    span = None if is_off(word) else parse_duration(word, what="mute duration")
    if span is not None and span > MAX_MUTE_MS:
        raise ArgError("A mute lasts at most 30d; try /mute 7d")
    ctx.require_admin()
    dest = await ctx.destination()
    now = ctx.now_ms()
    until = None if span is None else now + span
    await update_destination_settings(ctx.services.store, dest.id, muted_until_ms=until)
    if until is None:
        return Reply.of("Unmuted: alerts arrive with sound again (outside quiet hours).")
    return Reply.of(
        f"Muted until {local_time(until, dest.timezone)}. Alerts still arrive, without sound; "
        "/mute off ends it."
    )


async def quiet(ctx: Ctx) -> Reply:
    args = normalize_args(ctx.args)
    if not args:
        dest = await ctx.destination()
        return Reply(_chat_state(dest, ctx.now_ms()), title="Quiet hours")
    tz: str | None = None
    if len(args) == 1 and is_off(args[0]):
        hours: tuple[int, int] | None = None
    else:
        if len(args) >= 2 and args[-1][:1].isalpha() and args[-1].lower() != "to":
            tz = parse_timezone(args[-1])
            args = args[:-1]
        hours = parse_quiet_range(" ".join(args))
    ctx.require_admin()
    dest = await ctx.destination()
    changed = await update_destination_settings(
        ctx.services.store, dest.id, quiet_hours=hours, timezone=tz or KEEP
    )
    zone = changed.timezone if changed is not None else dest.timezone
    if hours is None:
        return Reply.of("Quiet hours off.")
    return Reply.of(
        f"Quiet hours {_clock(hours[0])}-{_clock(hours[1])} {zone}: alerts then arrive without "
        "sound. /quiet off ends them; /settings tz <zone> changes the time zone."
    )


async def settings(ctx: Ctx) -> Reply:
    args = normalize_args(ctx.args)
    if args and args[0].lower() in ("tz", "timezone", "zone"):
        args = args[1:]
        if not args:
            raise ArgError("Say which time zone, e.g. /settings tz Europe/Berlin")
    if len(args) > 1:
        raise ArgError(
            f"'{shown(' '.join(args))}' is not a setting; try /settings tz Europe/Berlin"
        )
    tz = parse_timezone(args[0]) if args else None
    if tz is not None:
        ctx.require_admin()
    dest = await ctx.destination()
    if tz is not None:
        dest = await update_destination_settings(ctx.services.store, dest.id, timezone=tz) or dest
    subs = await list_subscriptions(ctx.services.store, dest.id)
    lines = (*_chat_state(dest, ctx.now_ms()), f"Alerts: {len(subs)} (/alerts)")
    return Reply(lines, title="Time zone set" if tz else "Chat settings")


def _presets(ctx: Ctx, names: tuple[str, ...]) -> list[Subscription]:
    syms = [s for s in ctx.symbols if s in ("BTC", "ETH")] or list(ctx.symbols[:1])
    base = Subscription(0, 0, Kind.DIGEST, None, broadcast=True, created_by=ctx.cmd.user_id)
    base = dataclasses.replace(base, timing=ctx.timing())
    out: list[Subscription] = []
    if "digest" in names:
        out.append(dataclasses.replace(base, schedule="daily"))
    if "etf" in names:
        out.append(dataclasses.replace(base, kind=Kind.ETF, etf_mode="reversal"))
    if "clusters" in names:
        out += [
            dataclasses.replace(base, kind=Kind.CLUSTER, symbol=s, pct=1.0, min_usd=100e6)
            for s in syms
        ]
    return out


def _preset_names(args: list[str]) -> tuple[str, ...]:
    if not args:
        return _PRESETS
    names: list[str] = []
    for a in args:
        found = _PRESET_WORDS.get(a.lower())
        if found is None:
            raise ArgError(f"'{shown(a)}' is not a broadcast; choose digest, etf, clusters or all")
        names += found
    return tuple(dict.fromkeys(names))


async def subscribe(ctx: Ctx) -> Reply:
    ctx.require_admin(_BROADCAST_REFUSAL)
    names = _preset_names(normalize_args(ctx.args))
    dest = await ctx.destination()
    store = ctx.services.store
    have = {alert_params(s) for s in await list_subscriptions(store, dest.id)}
    new = [s for s in _presets(ctx, names) if alert_params(s) not in have]
    if not new:
        return Reply.of("This chat already gets those broadcasts; /alerts lists them.")
    async with store.write() as conn:
        added = [
            await add_subscription(
                conn, dataclasses.replace(s, destination_id=dest.id), ctx.quotas(), ctx.now_ms()
            )
            for s in new
        ]
    ctx.services.subscriptions_changed()
    lines = ("This chat now gets:", *(f"#{s.id} {label(s)}" for s in added))
    return Reply(lines, title="Broadcasts on")


async def unsubscribe(ctx: Ctx) -> Reply:
    ctx.require_admin(_BROADCAST_REFUSAL)
    kinds = {_PRESET_KINDS[n] for n in _preset_names(normalize_args(ctx.args))}
    dest = await ctx.destination()
    store = ctx.services.store
    gone = [s for s in await list_subscriptions(store, dest.id) if s.broadcast and s.kind in kinds]
    for s in gone:
        await delete_subscription(store, s.id, dest.id)
    if not gone:
        return Reply.of("This chat has no such broadcasts.")
    ctx.services.subscriptions_changed()
    return Reply(("Stopped:", *(f"#{s.id} {label(s)}" for s in gone)), title="Broadcasts off")


COMMANDS: tuple[tuple[CommandSpec, Handler], ...] = (
    (
        CommandSpec(
            "mute",
            "Mute this chat's alerts for a while (they still arrive, silently)",
            "/mute [duration|off]",
            (ArgSpec("duration", "e.g. 30m, 2h, 1d (default 1h), or off"),),
            asks_admin=True,
        ),
        mute,
    ),
    (
        CommandSpec(
            "quiet",
            "Set daily quiet hours: alerts arrive without sound",
            "/quiet HH:MM-HH:MM [time zone] | /quiet off",
            (
                ArgSpec("hours", "e.g. 23:00-07:00, or off"),
                ArgSpec("zone", "IANA time zone, e.g. Europe/Berlin"),
            ),
            asks_admin=True,
        ),
        quiet,
    ),
    (
        CommandSpec(
            "settings",
            "Show this chat's time zone, quiet hours and mute; change the time zone",
            "/settings [tz <zone>]",
            (ArgSpec("tz", "IANA time zone to set, e.g. Europe/Berlin"),),
            asks_admin=True,
        ),
        settings,
    ),
    (
        CommandSpec(
            "subscribe",
            "Put this chat on broadcasts: daily digest, ETF reversals, big clusters (admins)",
            "/subscribe [digest|etf|clusters|all]",
            (ArgSpec("what", "Which broadcasts", "choice", choices=("all", *_PRESETS)),),
            admin_only=True,
            guild_only=True,
        ),
        subscribe,
    ),
    (
        CommandSpec(
            "unsubscribe",
            "Take this chat off broadcasts (admins)",
            "/unsubscribe [digest|etf|clusters|all]",
            (ArgSpec("what", "Which broadcasts", "choice", choices=("all", *_PRESETS)),),
            admin_only=True,
            guild_only=True,
        ),
        unsubscribe,
    ),
)
