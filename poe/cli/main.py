"""Entry point of the ``poe`` command: dispatches to subcommand modules.

A subcommand module exposes ``register(subparsers)`` which adds its parser and sets
``func`` (called with the parsed namespace, returns an exit code). Errors meant for
the user are raised as ``CliError`` and printed as one line on stderr, exit code 2.

Every parser shows each option's default in ``--help`` (``DefaultsFormatter``); ``poe
--version`` prints the version. Output piped into a reader that stops early (``poe ... |
head``) ends quietly with status 141 (128 + SIGPIPE, as a shell reports a command killed by
it), after the subcommand's own clean-up: never a BrokenPipeError traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand modules, in help order; each must define register(subparsers)
SUBCOMMANDS = ("keygen", "replica", "cluster", "bench", "client", "sim", "ledger")


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


BROKEN_PIPE_STATUS = 128 + 13         # 128 + SIGPIPE


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already names its
    default or there is none worth showing (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default is None or default is False
                or default == [] or default == "" or default is argparse.SUPPRESS
                or not action.option_strings or action.nargs == 0):
            return text
        return f"{text} (default: %(default)s)"


class PoeParser(argparse.ArgumentParser):
    """The ``poe`` parser and all its subcommand parsers (``add_subparsers`` makes parsers
    of the parent's class): every one shows defaults in its help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from poe import __version__

    parser = PoeParser(prog="poe", description="Proof-of-Execution BFT replica")
    parser.add_argument("--version", action="version", version=f"poe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"poe.cli.{name}").register(sub)
    return parser


def _stdout_gone() -> int:
    """The reader of our output went away: point stdout at /dev/null so the interpreter's
    final flush cannot raise again, and end with the SIGPIPE status."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return BROKEN_PIPE_STATUS


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except BrokenPipeError:                     # `poe --help | head -1`
        return _stdout_gone()
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()                      # a broken pipe shows here, not at exit
        return status
    except BrokenPipeError:
        return _stdout_gone()
    except CliError as exc:
        print(f"poe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # subcommands clean up in their own ``finally`` blocks before this is reached
        print(f"poe {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
