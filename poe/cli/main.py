"""Entry point of the ``poe`` command: dispatches to subcommand modules.

A subcommand module exposes ``register(subparsers)`` which adds its parser and sets
``func`` (called with the parsed namespace, returns an exit code). Errors meant for
the user are raised as ``CliError`` and printed as one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand modules, in help order; each must define register(subparsers)
SUBCOMMANDS = ("keygen", "replica", "cluster", "bench", "client", "sim", "ledger")


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poe", description="Proof-of-Execution BFT replica")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"poe.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"poe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # subcommands clean up in their own ``finally`` blocks before this is reached
        print(f"poe {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
