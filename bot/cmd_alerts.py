"""``/alert``, ``/alerts``, ``/unalert``: personal alerts of a chat.

Anyone may set an alert in a group (it goes to that chat); only its creator or a chat admin may
remove it. Broadcasts (``/subscribe``) are listed too but belong to the admins. Mutes are per
chat (the store keeps no per-alert mute), so the list offers one "Mute chat 1h" button rather
than pretending to mute one alert.
"""

from __future__ import annotations

import dataclasses

from alerts.store import add_subscription as store_add
from alerts.store import delete_subscription, list_subscriptions
from alerts.subscriptions import Kind, Subscription, validate
from bot.chat import ArgSpec, Button, CommandSpec, Reply
from bot.cmd_alert_parse import ALERT_USAGE, parse_alert
from bot.cmd_alert_text import alert_params, command_line, label, promise
from bot.cmd_context import Ctx, Handler, Refused
from bot.command_parse import ArgError, normalize_args, parse_id
from core import fmt

__all__ = ["COMMANDS"]

# Discord allows 5 rows of buttons: 4 rows of two alerts each, and the mute row.
_BUTTON_ALERTS = 8


async def alert(ctx: Ctx) -> Reply:
    request = parse_alert(normalize_args(ctx.args), ctx.symbols)
    sub = dataclasses.replace(request.sub, timing=ctx.timing(), created_by=ctx.cmd.user_id)
    validate(sub)  # before touching the store: bad input changes nothing
    dest = await (ctx.dm_destination() if request.dm else ctx.destination())
    store = ctx.services.store
    for old in await list_subscriptions(store, dest.id):
        if alert_params(old) == alert_params(sub):
            return Reply.of(f"That alert is already set here: #{old.id} {label(old)}.")
    stored = await store_add(
        store, dataclasses.replace(sub, destination_id=dest.id), ctx.quotas(), ctx.now_ms()
    )
    ctx.services.subscriptions_changed()
    lines = [promise(stored)]
    snap = ctx.services.snapshots.get(stored.symbol) if stored.symbol else None
    if snap is not None and stored.kind == Kind.CROSS:
        lines.append(f"{snap.symbol} is at {fmt.price(snap.price)} now.")
    if request.dm:
        lines.append(f"Alert #{stored.id}, delivered to your DMs; manage it with /alerts there.")
        return Reply(tuple(lines))
    lines.append(f"Alert #{stored.id}; /alerts lists this chat's alerts.")
    undo = Button(f"Remove #{stored.id}", f"/unalert {stored.id}")
    return Reply(tuple(lines), buttons=((undo,),))


async def alerts(ctx: Ctx) -> Reply:
    args = normalize_args(ctx.args)
    if len(args) > 1:
        raise ArgError("Give at most one alert id, e.g. /alerts 12")
    wanted = parse_id(args[0]) if args else None
    # Read only, in one transaction: listing registers nothing (/start does).
    async with ctx.services.store.read() as conn:
        dest = await ctx.known_destination(conn)
        subs = await list_subscriptions(conn, dest.id) if dest is not None else []
    if wanted is not None:
        return _one(subs, wanted)
    if dest is None or not subs:
        return Reply.of(
            "No alerts in this chat yet. Try /alert cluster BTC 1% 50m, or /help alert.",
            title="Alerts",
        )
    lines = [f"#{s.id} {label(s)}" + (" (broadcast)" if s.broadcast else "") for s in subs]
    now = ctx.now_ms()
    muted = dest.muted_until_ms is not None and dest.muted_until_ms > now
    if muted:
        lines.append("This chat is muted: alerts arrive without sound (/mute off ends it).")
    shown_subs = subs[:_BUTTON_ALERTS]
    if len(subs) > len(shown_subs):
        lines.append(f"Buttons cover the first {len(shown_subs)}; /unalert <id> removes any.")
    rows = [
        tuple(b for s in shown_subs[i : i + 2] for b in _buttons(s))
        for i in range(0, len(shown_subs), 2)
    ]
    rows.append(
        (Button("Unmute chat", "/mute off") if muted else Button("Mute chat 1h", "/mute 1h"),)
    )
    return Reply(tuple(lines), title=f"Alerts ({len(subs)})", buttons=tuple(rows))


def _buttons(sub: Subscription) -> tuple[Button, Button]:
    return Button(f"Delete #{sub.id}", f"/unalert {sub.id}"), Button(
        f"Edit #{sub.id}", f"/alerts {sub.id}"
    )


def _one(subs: list[Subscription], wanted: int) -> Reply:
    sub = next((s for s in subs if s.id == wanted), None)
    if sub is None:
        raise ArgError(f"There is no alert #{wanted} in this chat; /alerts lists them")
    lines = [
        label(sub) + (" (broadcast)" if sub.broadcast else ""),
        "Alerts are not edited in place: send the changed line below, then delete this one.",
        command_line(sub),
    ]
    delete = Button(f"Delete #{sub.id}", f"/unalert {sub.id}")
    return Reply(tuple(lines), title=f"Alert #{sub.id}", buttons=((delete,),))


def _may_delete(ctx: Ctx, sub: Subscription) -> bool:
    if not ctx.in_group or ctx.cmd.is_admin:
        return True
    return not sub.broadcast and bool(ctx.cmd.user_id) and sub.created_by == ctx.cmd.user_id


async def unalert(ctx: Ctx) -> Reply:
    args = normalize_args(ctx.args)
    if len(args) != 1:
        raise ArgError("Say which alert: /unalert 12, or /unalert all")
    everything = args[0].lower() == "all"
    wanted = None if everything else parse_id(args[0])
    dest = await ctx.destination()
    store = ctx.services.store
    subs = await list_subscriptions(store, dest.id)
    if everything:
        # Broadcasts stay: they are the chat's, and /unsubscribe is their way out.
        mine = [s for s in subs if not s.broadcast and _may_delete(ctx, s)]
        for s in mine:
            await delete_subscription(store, s.id, dest.id)
        if mine:
            ctx.services.subscriptions_changed()
        if not mine:
            return Reply.of("You have no alerts here to remove.")
        return Reply.of(f"Removed {len(mine)} alert{'s' if len(mine) != 1 else ''}.")
    sub = next((s for s in subs if s.id == wanted), None)
    if sub is None:
        raise ArgError(f"There is no alert #{wanted} in this chat; /alerts lists them")
    if not _may_delete(ctx, sub):
        if sub.broadcast:
            raise Refused("Only chat admins can remove this chat's broadcasts (/unsubscribe).")
        raise Refused("Only the alert's creator or a chat admin can remove it.")
    await delete_subscription(store, sub.id, dest.id)
    ctx.services.subscriptions_changed()
    return Reply.of(f"Removed alert #{sub.id}: {label(sub)}.")


COMMANDS: tuple[tuple[CommandSpec, Handler], ...] = (
    (
        CommandSpec(
            "alert",
            "Set an alert: cluster approach, price cross, liquidation spike, ETF flows, digest",
            ALERT_USAGE,
            (
                ArgSpec(
                    "kind",
                    "What to watch",
                    "choice",
                    required=True,
                    choices=("cluster", "cross", "spike", "etf", "digest"),
                ),
                ArgSpec("details", "e.g. BTC 1% 50m short, BTC 96000 up, BTC 50m 1h, reversal"),
            ),
        ),
        alert,
    ),
    (
        CommandSpec(
            "alerts",
            "List this chat's alerts, with buttons to delete or edit them",
            "/alerts [id]",
            (ArgSpec("id", "Show one alert and the line to re-create it"),),
        ),
        alerts,
    ),
    (
        CommandSpec(
            "unalert",
            "Remove an alert of this chat, or all of yours",
            "/unalert <id|all>",
            (ArgSpec("id", "The alert's number from /alerts, or all", required=True),),
            asks_admin=True,
        ),
        unalert,
    ),
)
