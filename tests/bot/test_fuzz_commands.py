"""The command fuzz: 10,000 commands, none crashes, each gets a clear, escaped, bounded reply.

Every command of COMMAND_SPECS and unknown ones, with plausible, hostile and malformed
arguments, from private chats, groups and channels, by admins and not, through a real
CommandRouter over a SQLite store; every reply rendered for Telegram and Discord. The strategies
and checks are in tests/bot/fuzz_inputs.py (benchmarks/fuzz.py runs the same fuzz and prints
its figures). Derandomized, with no example database: every run tries the same cases.

The properties (each a :class:`~tests.bot.fuzz_inputs.Problem` kind):

* crash: the router raises, or answers with the generic error (a handler raised), or a
  renderer raises;
* unclear: an empty reply, an error that is not a sentence, internals shown (a Python error
  name, a traceback, None or nan), bad input accepted;
* over_limit: over Telegram's 4096/1024 or Discord's embed limits, a reply over 8000
  characters (an error over 1000), button data over 64 bytes;
* unescaped: markup other than our ``<b>``, a bare ``&``, a Discord mention or markdown pair
  that survives, shown text that differs from the reply's, or more than 40 characters of the
  input repeated;
* changed_state: a command that changes the store, given bad input, changed it.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from alerts.store import find_destination
from bot.chat import Button, Command, Reply
from bot.commands import COMMAND_SPECS, GENERIC_ERROR, CommandRouter
from bot.services import EtfView
from bot.telegram_render import Rendered
from tests.bot.fuzz_inputs import (
    CASES_PER_ROUND,
    COMMAND_NAMES,
    PARTS,
    STATEFUL,
    FuzzRig,
    Outcome,
    Part,
    Problem,
    discord_problems,
    reply_problems,
    telegram_problems,
)
from tests.bot.market import Market

with warnings.catch_warnings():  # discord.py 2.7 imports audioop (see bot/discord_render.py)
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord

    from bot.discord_render import DiscordMessage
    from bot.discord_render import render as discord_render

PART = {p.name: p for p in PARTS}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[FuzzRig]:
    with FuzzRig(tmp_path / "fuzz.db") as r:
        yield r


def _cut(text: str, n: int = 120) -> str:
    return text if len(text) <= n else f"{text[:n]}…({len(text)} chars)"


def describe(outcome: Outcome) -> str:
    """A failing case, readable: the command (long arguments cut), where, and what is wrong."""
    cmd = outcome.cmd
    reply = "(raised)" if outcome.reply is None else _cut(outcome.reply.text, 400)
    return (
        f"/{_cut(cmd.name, 40)!r} {[_cut(a) for a in cmd.args]!r} from {cmd.platform} "
        f"{cmd.chat_type} (admin={cmd.is_admin}, user={cmd.user_id!r}, "
        f"title={_cut(cmd.chat_title, 40)!r})\nreply: {reply!r}\n"
        + "\n".join(f"{p.kind}: {p.detail}" for p in outcome.problems)
    )


def fuzz(rig: FuzzRig, part: Part) -> list[Outcome]:
    """Run ``part``'s share of cases; fail (shrunk, with the input) on the first problem."""
    seen: list[Outcome] = []

    @settings(
        max_examples=part.share,
        deadline=None,
        database=None,
        derandomize=True,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )
    @given(cmd=part.strategy())
    def check(cmd: Command) -> None:
        outcome = rig.check(part, cmd)
        assert not outcome.problems, describe(outcome)
        seen.append(outcome)

    check()
    assert len(seen) >= part.share  # every case ran (Hypothesis did not stop early)
    return seen


def test_the_fuzz_is_at_least_10000_cases() -> None:
    assert CASES_PER_ROUND == sum(p.share for p in PARTS) >= 10_000
    assert set(COMMAND_NAMES) == {s.name for s in COMMAND_SPECS}


def test_every_command_answers_any_input(rig: FuzzRig) -> None:
    seen = fuzz(rig, PART["any_input"])
    cases = Counter(o.cmd.name for o in seen)
    answered = Counter(o.cmd.name for o in seen if o.reply is not None and not o.reply.error)
    failed = Counter(o.cmd.name for o in seen if o.reply is not None and o.reply.error)
    for name in COMMAND_NAMES:  # every command is fuzzed, down both its paths
        assert cases[name] >= 100, (name, cases[name])
        assert answered[name] >= 1, f"/{name} never answered without an error"
    for name in COMMAND_NAMES:
        if name not in ("start", "status"):  # they take no arguments: nothing to refuse
            assert failed[name] >= 1, f"/{name} never refused its input"
    assert sum(n for name, n in cases.items() if name not in COMMAND_NAMES) >= 500  # unknown
    assert rig.market is not None and rig.market.changes.calls > 0  # alerts were set


def test_hostile_strings_come_out_escaped_and_bounded(rig: FuzzRig) -> None:
    seen = fuzz(rig, PART["hostile"])
    assert all(o.reply is not None for o in seen)


def test_bad_input_to_commands_that_change_the_store_changes_nothing(rig: FuzzRig) -> None:
    seen = fuzz(rig, PART["bad_input"])
    assert {o.cmd.name for o in seen} == set(STATEFUL)
    assert all(o.reply is not None and o.reply.error for o in seen)


def test_unknown_commands_point_at_help(rig: FuzzRig) -> None:
    seen = fuzz(rig, PART["unknown"])
    unknown = [o for o in seen if o.cmd.name not in COMMAND_NAMES]
    assert len(unknown) >= PART["unknown"].share // 2
    for o in unknown:
        assert o.reply is not None and o.reply.error
        assert o.reply.text.endswith("/help lists the commands."), o.reply.text


# --- the checks themselves catch what they are for -------------------------------------------


def kinds(problems: Sequence[Problem]) -> set[str]:
    return {p.kind for p in problems}


def test_reply_checks_catch_bad_replies() -> None:
    cmd = Command("alert", ("x" * 500,))
    assert kinds(reply_problems(cmd, Reply.of(GENERIC_ERROR, error=True))) == {"crash"}
    assert kinds(reply_problems(cmd, Reply(("",)))) == {"unclear"}
    assert kinds(reply_problems(cmd, Reply(("Bad input, no full stop",), error=True))) == {
        "unclear"
    }
    assert kinds(reply_problems(cmd, Reply.of("KeyError: 'symbol'", error=True))) == {"unclear"}
    assert kinds(reply_problems(cmd, Reply.of("Price $nan."))) == {"unclear"}
    assert kinds(reply_problems(cmd, Reply.of(f"'{'x' * 41}' is wrong.", error=True))) == {
        "unescaped"
    }
    assert kinds(reply_problems(cmd, Reply.of("y" * 1001 + ".", error=True))) == {"over_limit"}
    # The input's own words may be echoed, even when they look like internals.
    echo = Command("alert", ("KeyError",))
    assert reply_problems(echo, Reply.of("'KeyError' is not a kind of alert.", error=True)) == []


def test_telegram_checks_catch_bad_renderings() -> None:
    reply = Reply(("a <b> & c",))
    assert telegram_problems(reply) == []
    for forged, kind in [
        ("a <b> & c", "unescaped"),  # an unescaped tag (and a bare &)
        ("a &lt;b&gt; &amp; c <i>", "unescaped"),
        ("a &lt;b&gt; &amp; c &amp; d", "unescaped"),  # shows more than the reply
        ("x" * 4097, "over_limit"),
    ]:
        assert kind in kinds(telegram_problems(reply, Rendered(texts=(forged,)))), forged
    photo = Rendered(texts=(), photo=b"png", caption="a &lt;b&gt; &amp; c" + " " * 1020)
    assert "over_limit" in kinds(telegram_problems(reply, photo))


async def test_discord_checks_catch_bad_renderings() -> None:
    reply = Reply(("hi *a* @everyone <@1>",), title="T")
    assert discord_problems(reply, discord_render(reply)) == []

    def msg(desc: str, title: str = "T", n: int = 1) -> list[DiscordMessage]:
        embeds = [discord.Embed(title=title, description=desc) for _ in range(n)]
        return [DiscordMessage(embeds)]

    assert "unescaped" in kinds(discord_problems(reply, msg("hi \\*a\\* @everyone <@\u200b1>")))
    assert "unescaped" in kinds(discord_problems(reply, msg("hi *a* @\u200beveryone <@\u200b1>")))
    assert "unescaped" in kinds(discord_problems(reply, msg("hi \\*a\\* @\u200beveryone <@1>")))
    long = Reply(("x" * 4097,))
    assert "over_limit" in kinds(discord_problems(long, msg("x" * 4097)))
    assert "over_limit" in kinds(discord_problems(reply, msg("", n=11)))
    buttons = Reply(("ok",), buttons=((Button("a", "/a"),),))
    assert "unclear" in kinds(discord_problems(buttons, [DiscordMessage([], ephemeral=True)]))


def test_the_rig_reports_a_crash_with_its_traceback(rig: FuzzRig) -> None:
    async def broken() -> EtfView | None:
        raise RuntimeError("the ETF cache is gone")

    assert rig.market is not None
    rig.market.services.etf = broken
    outcome = rig.run(Command("etf"))
    assert outcome.crashed
    assert any("the ETF cache is gone" in p.detail for p in outcome.problems)


def test_the_rig_reports_a_changed_store(rig: FuzzRig) -> None:
    fine = Command("mute", ("1h",), platform="telegram", chat_id="t1")
    outcome = rig.check(PART["bad_input"], fine)  # good input, checked as if it were bad
    assert kinds(outcome.problems) == {"unclear", "changed_state"}


# --- what the fuzz found ----------------------------------------------------------------------


def test_a_short_mention_is_broken_on_discord(rig: FuzzRig) -> None:
    # discord.py breaks only 17-20 digit ids; '<@123>' would still render as a mention.
    outcome = rig.run(Command("help", ("<@123>",), platform="discord", chat_type="group"))
    assert outcome.problems == [] and outcome.reply is not None
    [message] = discord_render(outcome.reply)
    assert "There is no /<@\u200b123> command" in (message.embeds[0].description or "")


def test_an_absurd_amount_is_refused_not_shown_with_float_noise(rig: FuzzRig) -> None:
    # 999999999999b was accepted and shown as "$999,999,999,999,000,051,712".
    outcome = rig.run(Command.parse("/alert cross BTC 999999999999b"))
    assert outcome.problems == [] and outcome.reply is not None and outcome.reply.error
    assert (
        outcome.reply.lines[0] == "'999999999999b' is too large; amounts here are at most 1000000b."
    )


def test_the_largest_amount_reads_back_from_its_edit_line(rig: FuzzRig) -> None:
    # The "edit" line of an alert of $1e15 said 1e+06b, which no parser reads.
    created = rig.run(Command.parse("/alert spike BTC 1000000b 2h"))
    assert created.reply is not None and not created.reply.error, created.reply
    shown = rig.run(Command.parse(created.reply.buttons[0][0].data.replace("unalert", "alerts")))
    assert shown.reply is not None
    line = shown.reply.lines[-1]
    assert line == "/alert spike BTC 1000000b 2h any"
    again = rig.run(Command.parse(line))
    assert again.reply is not None and again.reply.text.startswith("That alert is already set")


async def test_a_hostile_chat_title_or_name_is_stored_on_every_backend(market: Market) -> None:
    # PostgreSQL refused a NUL in a chat title or a Discord name ("invalid byte sequence for
    # encoding UTF8: 0x00"): /start and /alert ... dm failed with the generic error.
    router = CommandRouter(market.services)
    title = "Desk\x00\n\ud800 🏳️\u200d🌈 \u202eRTL"
    start = await router.handle(
        Command("start", platform="telegram", chat_id="-7", chat_type="group", chat_title=title)
    )
    assert not start.error, start.text
    dest = await find_destination(market.services.store, "telegram", "-7")
    assert dest is not None and dest.title == "Desk" + " " * 4 + "🏳️\u200d🌈 \u202eRTL"
    dm = await router.handle(
        Command(
            "alert",
            ("cluster", "BTC", "1%", "50m", "dm"),
            platform="discord",
            chat_id="9",
            chat_type="group",
            user_id="7",
            user_name="x\x00y",
            guild_id="g",
        )
    )
    assert not dm.error, dm.text
    dm_dest = await find_destination(market.services.store, "discord", "user:7")
    assert dm_dest is not None and dm_dest.title == "x y"
