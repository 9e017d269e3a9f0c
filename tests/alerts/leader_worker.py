"""A liqbot instance in miniature, for the leadership tests: campaign, report, wait to be killed.

    python -m tests.alerts.leader_worker URL INSTANCE [--check-every S]

Prints ``STARTED <instance>`` once campaigning, ``LEADER <instance>`` when elected and
``DEPOSED <instance>`` when it loses leadership, then sleeps until it is killed (the test
SIGKILLs it, so the kernel, not the process, closes its connection).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from alerts.leadership import Leadership


def say(line: str) -> None:
    print(line, flush=True)


async def run(url: str, instance: str, check_every_s: float) -> int:
    async def elected() -> None:
        say(f"LEADER {instance}")

    async def deposed() -> None:
        say(f"DEPOSED {instance}")

    leadership = Leadership(
        url, instance, check_every_s=check_every_s, on_elected=elected, on_deposed=deposed
    )
    await leadership.start()
    say(f"STARTED {instance}")
    try:
        await asyncio.Event().wait()  # until killed
    finally:
        await leadership.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("instance")
    parser.add_argument("--check-every", type=float, default=0.5)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.url, args.instance, args.check_every))


if __name__ == "__main__":
    sys.exit(main())
