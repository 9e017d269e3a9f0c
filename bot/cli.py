"""The ``liqbot`` command line: one subcommand per module, one error convention.

Bad input of any kind ends with one plain line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.errors import LiqbotError

_SUBCOMMANDS = ("bot.cli_run", "bot.cli_liqmap", "bot.cli_backtest", "bot.cli_etf", "bot.cli_fetch")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's default prints the whole usage block; one line plus a hint reads better.
        self.exit(2, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(
        prog="liqbot",
        description=(
            "Liquidation maps, liquidation alerts and ETF flows for crypto-derivatives "
            "communities. Every subcommand has --help."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except LiqbotError as exc:
        print(f"liqbot {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
