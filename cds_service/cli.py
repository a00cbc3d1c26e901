"""The ``cds-service`` command line (product-contract.md): exit 0 success, 2 usage or input
error (one line naming the file and what is wrong), 1 anything else."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import StartupError

# Modules under cds_service.commands; each provides register(subparsers).
COMMANDS = ("serve", "replay", "feedback_report", "dev_token", "timeline", "rxnorm_import")


class UsageError(Exception):
    """A user error: bad arguments or an unreadable input file."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cds-service", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"cds_service.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UsageError, StartupError) as exc:
        print(f"cds-service {args.command}: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())
