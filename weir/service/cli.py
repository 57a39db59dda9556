"""The `weir` command line: `local up|down|status`, `worker`, `status`, `replay`, `demo`.

Errors a user can act on end the command with one readable line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _local(args: argparse.Namespace) -> int:
    from weir.service.local import LocalStack

    stack = LocalStack()
    if args.action == "up":
        ep = stack.up()
        print(f"kafka     {ep.bootstrap_servers}")
        print(f"postgres  {ep.postgres_dsn}")
    elif args.action == "down":
        stack.down()
        print("local Kafka and PostgreSQL stopped")
    else:
        for name, line in stack.status().items():
            print(f"{name:<9} {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `weir` command."""
    parser = argparse.ArgumentParser(prog="weir", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    local = sub.add_parser(
        "local",
        help="start, stop or show the local Kafka and PostgreSQL",
        description="The local Kafka broker (KRaft, from Apache Kafka's jars) and PostgreSQL "
        "for development and tests, kept under $WEIR_HOME (default .weir), bound to "
        "127.0.0.1.",
    )
    local.add_argument(
        "action",
        choices=["up", "down", "status"],
        help="up: start both (a no-op when running) and record where they listen; down: stop "
        "them; status: show whether they run and where",
    )
    local.set_defaults(func=_local)

    from weir.service import commands, status_command

    commands.register(sub)
    status_command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `weir` command; return its exit status. Modules named on the command line are
    found in the current directory first, as `python -m` finds them."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    parser = build_parser()
    args = parser.parse_args(argv)
    from pydantic import ValidationError

    from weir.service.endpoints import NotConfiguredError
    from weir.service.local.proc import LocalStartError
    from weir.service.settings import settings_error

    try:
        return int(args.func(args) or 0)
    except (LocalStartError, NotConfiguredError) as exc:
        print(f"weir: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:  # a setting is wrong: one line, exit 2 (a usage error)
        print(f"weir: {settings_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
