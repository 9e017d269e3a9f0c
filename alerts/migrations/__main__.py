"""Developer entry point for the migrations (the bot itself migrates in ``open_store``).

    python -m alerts.migrations revision -m "add x" [--autogenerate --url URL]
    python -m alerts.migrations upgrade|current|history [--url URL]

``--autogenerate`` diffs the models against the database at URL (migrate it to head first).
"""

from __future__ import annotations

import argparse

from alembic import command

from alerts.store.engine import alembic_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m alerts.migrations")
    parser.add_argument("action", choices=["revision", "upgrade", "current", "history"])
    parser.add_argument("-m", "--message", default="")
    parser.add_argument("--autogenerate", action="store_true")
    parser.add_argument("--url", default="")
    args = parser.parse_args(argv)
    cfg = alembic_config()
    if args.url:
        cfg.set_main_option("sqlalchemy.url", args.url.replace("%", "%%"))
    if args.action == "revision":
        command.revision(cfg, message=args.message, autogenerate=args.autogenerate)
    elif args.action == "upgrade":
        command.upgrade(cfg, "head")
    elif args.action == "current":
        command.current(cfg)
    else:
        command.history(cfg)


if __name__ == "__main__":
    main()
