"""``poe replica --config poe.toml --id N``: run one replica until SIGTERM or SIGINT.

Also installed as ``poe-replica`` (the same arguments). Loads and checks the configuration
and the keys first: any problem is one line on stderr and exit status 2; a port that cannot
be bound is exit status 1. Logs JSON lines on stderr (or ``--log FILE``).

A damaged store (``replica.data_dir``) is one line naming what is wrong and the repair
(``poe ledger quarantine``, then restart: it abstains until a state transfer), exit status 2.
A store written for another configuration or replica is one line saying what differs, and
no repair (the configuration is the likely mistake), exit status 2. A ``data_dir`` that is a
file or not writable, or a secret file of another replica, is one line, exit status 2.

Must never: start with a configuration or key problem or on a damaged store, use fake crypto without
``--insecure-bench``, or print a secret.
"""
from __future__ import annotations

import argparse
import sys

from poe.cli.main import CliError


def register(sub) -> None:
    p = sub.add_parser("replica", help="run one replica (until SIGTERM/SIGINT)",
                       description="Run replica N of the cluster described by the "
                                   "configuration file until SIGTERM or SIGINT.")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE",
                   help="poe.toml from `poe keygen` (or its cluster.toml: default settings)")
    p.add_argument("--id", type=int, required=True, metavar="N", help="this replica's id")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE",
                   help="override one setting for this run (repeatable)")
    p.add_argument("--log", metavar="FILE", help="append log lines to FILE instead of stderr")
    p.add_argument("--profile", metavar="FILE",
                   help="run under cProfile and write the statistics to FILE at exit")
    p.add_argument("--insecure-bench", action="store_true",
                   help="use the FAKE crypto backend (anyone can forge anything): "
                        "benchmarks of the non-crypto path only")


def run(args: argparse.Namespace) -> int:
    from poe.config import ConfigFileError, load_config
    from poe.crypto.errors import CryptoError
    from poe.runtime.log import Log
    from poe.runtime.replica import ReplicaRuntime
    from poe.storage.store import StoreError, StoreMismatch, StoreVersionError

    try:
        config = load_config(args.config, args.set)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    stream = None
    if args.log:
        try:
            # open for the life of the process: the replica logs until it exits
            stream = open(args.log, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise CliError(f"--log {args.log}: {exc.strerror}") from None
    log = Log(stream, level=config.replica.log_level)
    try:
        runtime = ReplicaRuntime(config, args.id, insecure_bench=args.insecure_bench, log=log)
    except StoreMismatch as exc:
        log.error("store-mismatch", detail=str(exc))
        raise CliError(str(exc)) from None
    except StoreVersionError as exc:
        log.error("store-version", detail=str(exc))
        raise CliError(str(exc)) from None
    except StoreError as exc:
        log.error("store-damaged", detail=str(exc))
        raise CliError(str(exc)) from None
    except (CryptoError, ValueError) as exc:
        raise CliError(str(exc)) from None
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        return runtime.run()
    except OSError as exc:
        print(f"poe replica: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)


def main(argv: list[str] | None = None) -> int:
    """``poe-replica ARGS`` = ``poe replica ARGS``."""
    from poe.cli.main import main as poe_main

    return poe_main(["replica", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
