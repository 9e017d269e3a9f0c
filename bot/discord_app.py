"""The Discord adapter: slash commands and button presses in, rendered replies out (DESIGN §2, §7).

::

    configure_endpoints(settings.discord)      # process-wide: see the function
    bot = build_client(settings, router.handle, pacer, store, specs=COMMAND_SPECS)
    await start(bot, token, sync_state=Path("data/discord_commands.sha256"))
    ...
    await close(bot)

One slash command per :class:`~bot.chat.CommandSpec` (``bot.commands.COMMAND_SPECS``), its
options from the spec's :class:`~bot.chat.ArgSpec` list (symbols autocompleted from
``settings.bot.symbols``, choices offered). Every interaction is deferred first (Discord wants
an answer within 3 s and a map may take longer), then the handler's :class:`~bot.chat.Reply`
follows up. A button's ``custom_id`` is a command line and runs like typing it. Admin-only
commands are refused in code to members without Manage Server (``default_permissions`` only
hides them, and a server can change that).

Commands are synced to Discord only when their payloads change: a hash of them (and the
application id) is kept in a small file, so restarts do not spend the sync rate limit.

The bot also disables the destinations of a server it is removed from (and of a deleted
channel): Discord itself reports it, so no failed sends are needed to learn it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yarl

from alerts.store import Store, disable_destination, enable_destination, find_destination
from bot.chat import ArgSpec, ChatType, Command, CommandHandler, CommandSpec, Reply
from bot.discord_render import render
from bot.pacing import Pacer
from core.config import DiscordSettings, Settings

with warnings.catch_warnings():  # discord.py 2.7 imports audioop, deprecated since 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord import app_commands


__all__ = [
    "DiscordBot",
    "build_client",
    "close",
    "command_hash",
    "configure_endpoints",
    "start",
    "sync_commands",
]

log = logging.getLogger(__name__)

AUTOCOMPLETE_MAX = 25
REMOVED_REASON = "bot removed from the Discord server"


def configure_endpoints(settings: DiscordSettings) -> None:
    """Point discord.py at ``api_base`` and ``gateway_url``.

    discord.py has no per-client option for this: ``Route.BASE`` and
    ``DiscordWebSocket.DEFAULT_GATEWAY`` are class attributes, so this changes them for every
    client in the process. Call it before a client makes its first request.
    """
    discord.http.Route.BASE = settings.api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


@dataclass
class DiscordBot:
    """The client, its command tree, and what answers the interactions."""

    client: discord.Client
    tree: app_commands.CommandTree[discord.Client]
    handler: CommandHandler
    pacer: Pacer
    store: Store
    specs: dict[str, CommandSpec]
    connection: asyncio.Task[None] | None = None

    async def answer(
        self, interaction: discord.Interaction, name: str, args: Sequence[str]
    ) -> None:
        """Defer, run the command, follow up with its reply."""
        command = command_from_interaction(interaction, name, tuple(args))
        refusal = self._refusal(command)
        try:
            await interaction.response.defer(thinking=True, ephemeral=refusal is not None)
        except discord.HTTPException as exc:  # expired (over 3 s) or already answered
            log.warning("could not defer /%s: %s", name, exc)
            return
        if refusal is not None:
            reply = refusal
        else:
            try:
                reply = await self.handler(command)
            except Exception:
                log.exception("command /%s failed", name)
                reply = Reply.of("Something went wrong; please try again later.", error=True)
        try:
            await self._follow_up(interaction, command, reply, deferred_ephemeral=bool(refusal))
        except discord.DiscordException as exc:  # HTTP errors, a rate limit over 30 s
            log.warning("could not answer /%s: %s", name, exc)

    def _refusal(self, command: Command) -> Reply | None:
        """The platform checks, in code: guild-only commands outside a server, admin-only ones
        for members without Manage Server (the command layer checks too)."""
        spec = self.specs.get(command.name)
        if spec is None:
            return None
        if spec.guild_only and command.guild_id is None:
            return Reply.of(f"/{spec.name} works in a server channel, not here.", error=True)
        if spec.admin_only and not command.is_admin:
            return Reply.of(
                f"/{spec.name} needs the Manage Server permission in this server.", error=True
            )
        return None

    async def _follow_up(
        self,
        interaction: discord.Interaction,
        command: Command,
        reply: Reply,
        *,
        deferred_ephemeral: bool,
    ) -> None:
        messages = render(reply)
        if messages[0].ephemeral and not deferred_ephemeral:
            # The first follow-up replaces the public "thinking" message and keeps its
            # visibility; remove it so that the private reply goes out as a new message.
            await interaction.delete_original_response()
        group = command.chat_type != "private"
        for message in messages:
            async with self.pacer.slot(command.chat_id, lane="interactive", group=group):
                await interaction.followup.send(
                    ephemeral=message.ephemeral, **message.send_kwargs()
                )  # type: ignore[call-overload]

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Button presses: a ``custom_id`` that is a command line runs that command."""
        if interaction.type is not discord.InteractionType.component or not interaction.data:
            return
        custom_id = str(interaction.data.get("custom_id", ""))
        parsed = Command.parse(custom_id)
        if parsed.name:
            await self.answer(interaction, parsed.name, parsed.args)

    async def _set_enabled(self, channel_ids: Sequence[int], enabled: bool, reason: str) -> None:
        for channel_id in channel_ids:
            dest = await find_destination(self.store, "discord", str(channel_id))
            if dest is None:
                continue
            if not enabled and dest.enabled:
                await disable_destination(self.store, dest.id, reason)
                log.info("disabled discord destination %s: %s", dest.id, reason)
            elif enabled and not dest.enabled and dest.disabled_reason == reason:
                await enable_destination(self.store, dest.id)
                log.info("enabled discord destination %s again", dest.id)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        await self._set_enabled(_channel_ids(guild), False, REMOVED_REASON)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._set_enabled(_channel_ids(guild), True, REMOVED_REASON)

    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self._set_enabled([channel.id], False, "Discord channel deleted")


def _channel_ids(guild: discord.Guild) -> list[int]:
    return [c.id for c in guild.channels] + [t.id for t in guild.threads]


def command_from_interaction(
    interaction: discord.Interaction, name: str, args: tuple[str, ...]
) -> Command:
    """Who and where, as the command layer sees it. ``is_admin`` is Manage Server (or
    Administrator) in the member's resolved permissions, which Discord computes for the
    interaction (owner and roles included); always True in a DM."""
    channel = interaction.channel
    private = interaction.guild_id is None and isinstance(channel, discord.DMChannel)
    chat_type: ChatType = "private" if private else "group"
    perms = interaction.permissions
    title = getattr(channel, "name", None) or ""
    return Command(
        name=name,
        args=args,
        platform="discord",
        chat_id=str(interaction.channel_id),
        chat_type=chat_type,
        user_id=str(interaction.user.id),
        user_name=interaction.user.display_name,
        is_admin=private or perms.manage_guild or perms.administrator,
        chat_title=str(title),
        guild_id=None if interaction.guild_id is None else str(interaction.guild_id),
    )


def _arg_text(value: object) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _symbol_autocomplete(
    symbols: Sequence[str],
) -> Callable[[discord.Interaction, str], Any]:
    async def complete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.strip().upper()
        starts = [s for s in symbols if s.startswith(typed)]
        contains = [s for s in symbols if typed in s and s not in starts]
        return [
            app_commands.Choice(name=s, value=s) for s in (starts + contains)[:AUTOCOMPLETE_MAX]
        ]

    return complete


def _parameter(arg: ArgSpec) -> inspect.Parameter:
    annotation: type = float if arg.kind == "number" else str
    default = inspect.Parameter.empty if arg.required else None
    kind = inspect.Parameter.KEYWORD_ONLY
    return inspect.Parameter(arg.name, kind, annotation=annotation, default=default)


def slash_command(
    spec: CommandSpec, bot: DiscordBot, symbols: Sequence[str]
) -> app_commands.Command[Any, ..., None]:
    """The slash command for ``spec``. discord.py reads options from the callback's
    signature, so the callback gets one built from the spec's arguments."""

    async def callback(interaction: discord.Interaction, **values: object) -> None:
        # Options in spec order, each split into words as if typed: a free-text option such
        # as /alert's "details" holds several arguments.
        args = [
            word
            for a in spec.args
            if values.get(a.name) is not None
            for word in _arg_text(values[a.name]).split()
        ]
        await bot.answer(interaction, spec.name, args)

    first = inspect.Parameter(
        "interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction
    )
    params = [first, *(_parameter(a) for a in spec.args)]
    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    if spec.args:
        app_commands.describe(**{a.name: a.description[:100] for a in spec.args})(callback)
    choices = {
        a.name: [app_commands.Choice(name=c, value=c) for c in a.choices[:AUTOCOMPLETE_MAX]]
        for a in spec.args
        if a.kind == "choice" and a.choices
    }
    if choices:
        app_commands.choices(**choices)(callback)
    complete = _symbol_autocomplete(symbols)
    symbol_args = {a.name: complete for a in spec.args if a.kind == "symbol"}
    if symbol_args:
        app_commands.autocomplete(**symbol_args)(callback)
    if spec.guild_only:
        app_commands.guild_only(callback)
    if spec.admin_only:
        app_commands.default_permissions(manage_guild=True)(callback)
    return app_commands.Command(name=spec.name, description=spec.summary[:100], callback=callback)


def build_client(
    settings: Settings,
    handler: CommandHandler,
    pacer: Pacer,
    store: Store,
    *,
    specs: Sequence[CommandSpec],
    guild_ready_timeout: float = 2.0,
) -> DiscordBot:
    """A client (an ``AutoShardedClient`` when shards are configured) with the slash commands.

    Call :func:`configure_endpoints` first when ``settings.discord`` points elsewhere than
    discord.com. Mentions never ping (``AllowedMentions.none()``): replies carry data, not
    calls for attention. Rate limits over 30 s raise instead of sleeping, so the outbox
    reschedules instead of blocking.
    """
    ds = settings.discord
    options: dict[str, Any] = {
        "intents": discord.Intents(guilds=True),
        "allowed_mentions": discord.AllowedMentions.none(),
        "guild_ready_timeout": guild_ready_timeout,
        "max_ratelimit_timeout": 30.0,
    }
    client: discord.Client
    if ds.shard_ids is not None or ds.shard_count is not None:
        if ds.shard_ids is not None and ds.shard_count is None:
            raise ValueError("discord.shard_ids needs discord.shard_count")
        if ds.shard_ids is not None:
            options["shard_ids"] = list(ds.shard_ids)
        client = discord.AutoShardedClient(shard_count=ds.shard_count, **options)
    else:
        client = discord.Client(**options)
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
    bot = DiscordBot(client, tree, handler, pacer, store, {s.name: s for s in specs})
    for spec in specs:
        tree.add_command(slash_command(spec, bot, settings.bot.symbols))
    client.event(bot.on_interaction)
    client.event(bot.on_guild_remove)
    client.event(bot.on_guild_join)
    client.event(bot.on_guild_channel_delete)
    return bot


def command_hash(bot: DiscordBot) -> str:
    """A stable hash of what ``tree.sync()`` would upload, and for which application."""
    payloads = sorted(
        (cmd.to_dict(bot.tree) for cmd in bot.tree.get_commands()), key=lambda p: p["name"]
    )
    blob = json.dumps(
        {"application_id": bot.client.application_id, "commands": payloads},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


async def sync_commands(bot: DiscordBot, state: Path) -> bool:
    """``tree.sync()`` when the commands differ from the last sync recorded in ``state``;
    whether it synced. The hash is written only after a successful sync."""
    digest = command_hash(bot)
    with contextlib.suppress(OSError):
        if state.read_text().strip() == digest:
            return False
    await bot.tree.sync()
    state.parent.mkdir(parents=True, exist_ok=True)
    tmp = state.with_name(state.name + ".tmp")
    tmp.write_text(digest + "\n")
    os.replace(tmp, state)
    log.info("synced %d Discord commands", len(bot.tree.get_commands()))
    return True


async def start(
    bot: DiscordBot, token: str, *, sync_state: Path, ready_timeout_s: float | None = 60.0
) -> None:
    """Log in, sync the commands if they changed, connect in a task and wait until ready.

    For use inside a running loop (``client.run`` would own it). The token is passed on to
    discord.py and never logged.
    """
    await bot.client.login(token)
    try:
        await sync_commands(bot, sync_state)
    except discord.DiscordException as exc:  # the commands registered before still work
        log.warning("Discord command sync failed, retried at the next start: %s", exc)
    bot.connection = asyncio.create_task(bot.client.connect(), name="discord-gateway")
    ready = asyncio.create_task(bot.client.wait_until_ready())
    done, _ = await asyncio.wait(
        {ready, bot.connection}, timeout=ready_timeout_s, return_when=asyncio.FIRST_COMPLETED
    )
    if ready not in done:
        ready.cancel()
        if bot.connection in done:
            bot.connection.result()  # raises the connection's error (bad token, no gateway)
        raise TimeoutError("Discord gateway not ready")


async def close(bot: DiscordBot) -> None:
    """Close the gateway and the HTTP session; wait for the connection task to end."""
    await bot.client.close()
    if bot.connection is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await bot.connection
        bot.connection = None
