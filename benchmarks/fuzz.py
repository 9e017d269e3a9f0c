"""Command fuzz figures (issue: bad input): N commands, none may crash, each a clear reply.

Runs the fuzz of tests/bot/test_fuzz_commands.py outside pytest: the same Hypothesis
strategies and checks (tests/bot/fuzz_inputs.py), in the same shares (any input 60%, hostile
strings 25%, bad input to the commands that change the store 10%, unknown commands 5%), through
a real CommandRouter over a fresh SQLite store and the in-memory market, every reply rendered
for Telegram and Discord. Nothing stops at the first failure: every case is counted, and each
failing one is printed with its input.

Prints one JSON object: cases, crashes, unclear_messages, over_limit, unescaped,
changed_state, elapsed_s, per-part and per-command counts, and the failures (first
``--show``, each with the command, its arguments, where it came from, and what was wrong).
Exits 1 when any case failed.

Run: .venv/bin/python -m benchmarks.fuzz [--quick] [--cases N] [--seed S] [--real-charts]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, seed, settings

from bot.chat import Command
from tests.bot.fuzz_inputs import CASES_PER_ROUND, COMMAND_NAMES, PARTS, FuzzRig, Outcome, Part

QUICK_CASES = 2_000
SHOWN_CHARS = 200  # of each input string in the report (huge ones are thousands long)
PROBLEM_FIELDS = {
    "crash": "crashes",
    "unclear": "unclear_messages",
    "over_limit": "over_limit",
    "unescaped": "unescaped",
    "changed_state": "changed_state",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.fuzz",
        description=(
            "Fuzz every chat command with plausible, hostile and malformed input and report, "
            "as JSON, how many cases crashed, got an unclear reply, went over a platform limit, "
            "came out unescaped, or changed the store on bad input."
        ),
        epilog="Exit status: 0 when every case passed, 1 otherwise.",
    )
    p.add_argument(
        "--cases",
        type=int,
        default=CASES_PER_ROUND,
        metavar="N",
        help=f"cases to run (default {CASES_PER_ROUND:,}), split over the parts by their share",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"run {QUICK_CASES:,} cases (overrides --cases)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed; without it the run is derandomized (the same cases every time)",
    )
    p.add_argument(
        "--real-charts",
        action="store_true",
        help="draw every /liqmap chart asked for (slow: a few hundred ms each) instead of "
        "drawing the first for real and reusing it",
    )
    p.add_argument(
        "--show",
        type=int,
        default=20,
        metavar="K",
        help="failing cases to include in the output, with their input (default 20)",
    )
    return p


def _shown(text: str) -> str:
    """An input string for the report: whole when short, else its start and its length."""
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def _input(cmd: Command) -> dict[str, Any]:
    """Everything needed to replay the case: ``Command(**this)``, long strings cut."""
    return {
        "name": _shown(cmd.name),
        "args": [_shown(a) for a in cmd.args],
        "platform": cmd.platform,
        "chat_type": cmd.chat_type,
        "chat_id": cmd.chat_id,
        "user_id": cmd.user_id,
        "is_admin": cmd.is_admin,
        "chat_title": _shown(cmd.chat_title),
        "user_name": _shown(cmd.user_name),
        "guild_id": cmd.guild_id,
    }


class Tally:
    def __init__(self, show: int) -> None:
        self.show = show
        self.cases = 0
        self.failed = 0
        self.problems: Counter[str] = Counter()
        self.parts: Counter[str] = Counter()
        self.per_command: dict[str, Counter[str]] = {}
        self.failures: list[dict[str, Any]] = []

    def add(self, part: Part, outcome: Outcome) -> None:
        cmd = outcome.cmd
        self.cases += 1
        self.parts[part.name] += 1
        key = cmd.name if cmd.name in COMMAND_NAMES else "(unknown)"
        counts = self.per_command.setdefault(key, Counter())
        counts["cases"] += 1
        if outcome.reply is not None and outcome.reply.error:
            counts["errors"] += 1
        kinds = {p.kind for p in outcome.problems}
        for kind in kinds:
            self.problems[kind] += 1
            counts[kind] += 1
        if not kinds:
            return
        self.failed += 1
        if len(self.failures) < self.show:
            self.failures.append(
                {
                    "part": part.name,
                    "input": _input(cmd),
                    "reply": None if outcome.reply is None else _shown(outcome.reply.text),
                    "problems": [{"kind": p.kind, "detail": p.detail} for p in outcome.problems],
                }
            )
        # Also at once on stderr, so a crash is seen with its input even if the run is cut short.
        print(
            f"FAILED [{part.name}] {orjson.dumps(_input(cmd)).decode()}\n"
            + "\n".join(f"  {p.kind}: {p.detail}" for p in outcome.problems),
            file=sys.stderr,
        )


def _run_part(rig: FuzzRig, part: Part, n: int, tally: Tally, rng_seed: int | None) -> None:
    if n <= 0:
        return

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=rng_seed is None,
        phases=[Phase.generate],  # count every case; a failure is reported, not shrunk
        suppress_health_check=list(HealthCheck),
    )
    @given(part.strategy())
    def body(cmd: Command) -> None:
        tally.add(part, rig.check(part, cmd))

    if rng_seed is not None:
        body = seed(rng_seed)(body)
    body()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    total = QUICK_CASES if args.quick else args.cases
    if total < 1:
        _parser().error("--cases must be at least 1")
    tally = Tally(args.show)
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        FuzzRig(Path(tmp) / "fuzz.db", real_charts=args.real_charts) as rig,
    ):
        left = total
        for i, part in enumerate(PARTS):
            n = left if i == len(PARTS) - 1 else round(total * part.share / CASES_PER_ROUND)
            _run_part(rig, part, n, tally, args.seed)
            left -= n
    elapsed = time.perf_counter() - start
    out: dict[str, Any] = {
        "cases": tally.cases,
        **{name: tally.problems[kind] for kind, name in PROBLEM_FIELDS.items()},
        "failed_cases": tally.failed,
        "elapsed_s": round(elapsed, 1),
        "cases_per_s": round(tally.cases / elapsed, 1) if elapsed > 0 else None,
        "seed": args.seed,
        "real_charts": args.real_charts,
        "parts": dict(tally.parts),
        "per_command": {k: dict(v) for k, v in sorted(tally.per_command.items())},
        "failures": tally.failures,
    }
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
