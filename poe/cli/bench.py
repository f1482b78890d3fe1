"""``poe bench --config poe.toml``: drive a running cluster with YCSB load and report.

Closed-loop clients (``--clients``, each with ``--outstanding`` client messages of
``--ops-per-message`` requests in flight) run in ``--client-procs`` worker processes; after
``--warmup`` seconds the next ``--duration`` seconds are measured. Prints a live progress
line (stderr), the final table (stdout) and writes the whole record as JSON (``--json``).
Exit status 0 only if no request ended "outcome unknown" (no proof before the client
deadline): otherwise 1, after the table and the JSON record, with one line on stderr.

Must never: use fake crypto without ``--insecure-bench``, or leave a worker process behind.
"""
from __future__ import annotations

import argparse
import json
import sys

from poe.cli.main import CliError


def add_load_arguments(p: argparse.ArgumentParser, duration: float = 25.0,
                       warmup: float = 5.0) -> None:
    from poe.bench.runner import BenchSpec
    from poe.bench.workload import DISTRIBUTIONS, WORKLOADS

    d = BenchSpec()
    g = p.add_argument_group("load")
    g.add_argument("--workload", choices=sorted(WORKLOADS), default=d.workload,
                   help="YCSB workload: A 50/50 read/update, B 95/5, C read only, F 50/50 "
                        "read/read-modify-write (default A)")
    g.add_argument("--distribution", choices=DISTRIBUTIONS, default=d.distribution,
                   help="key popularity (default zipfian, theta 0.99)")
    g.add_argument("--theta", type=float, default=d.theta, help="Zipfian constant")
    g.add_argument("--read-proportion", type=float, default=None,
                   help="share of reads, overriding the workload's")
    g.add_argument("--clients", type=int, default=d.clients, help="closed-loop clients")
    g.add_argument("--outstanding", type=int, default=d.outstanding,
                   help="client messages each client keeps in flight")
    g.add_argument("--ops-per-message", type=int, default=d.ops_per_message,
                   help="requests signed together as one client message (PROTOCOL.md §1.5)")
    g.add_argument("--client-procs", type=int, default=d.client_procs,
                   help="load-generator processes the clients are spread over")
    g.add_argument("--first-client", type=int, default=d.first_client,
                   help="first client id used (ids from the key file)")
    g.add_argument("--warmup", type=float, default=warmup, help="seconds before measuring")
    g.add_argument("--duration", type=float, default=duration, help="seconds measured")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the generated load")
    g.add_argument("--json", metavar="FILE", help="write configuration and results here")
    g.add_argument("--insecure-bench", action="store_true",
                   help="FAKE crypto on replicas and clients: non-crypto path only")


def spec_from(args: argparse.Namespace, replica_pids=()):
    from poe.bench.runner import BenchSpec

    return BenchSpec(workload=args.workload, distribution=args.distribution,
                     theta=args.theta, read_proportion=args.read_proportion,
                     clients=args.clients, outstanding=args.outstanding,
                     ops_per_message=args.ops_per_message, warmup_s=args.warmup,
                     duration_s=args.duration, client_procs=args.client_procs,
                     first_client=args.first_client, seed=args.seed,
                     insecure_bench=args.insecure_bench, replica_pids=list(replica_pids))


def register(sub) -> None:
    p = sub.add_parser("bench", help="YCSB load against a running cluster",
                       description="Drive a running cluster with closed-loop YCSB clients "
                                   "and report throughput and latency.")
    p.add_argument("--config", required=True, metavar="FILE", help="poe.toml of the cluster")
    p.add_argument("--protocol", choices=("poe", "pbft"), default=None,
                   help="the protocol the cluster runs; checked against the configuration "
                        "(the replicas' protocol.protocol decides it)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE",
                   help="override one setting (client side) for this run")
    p.add_argument("--replica-pids", default="", metavar="PID,PID,...",
                   help="process ids of local replicas: adds their CPU time per request and "
                        "resident memory to the report")
    add_load_arguments(p)
    p.set_defaults(func=run)


def write_json(path: str, record: dict) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)
            handle.write("\n")
    except OSError as exc:
        raise CliError(f"--json {path}: {exc.strerror}") from None


def run(args: argparse.Namespace) -> int:
    from poe.bench.runner import BenchError, format_table, run_bench
    from poe.config import ConfigFileError, load_config

    try:
        config = load_config(args.config, args.set)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    if args.protocol is not None and args.protocol != config.protocol.protocol:
        raise CliError(f"--protocol {args.protocol}: {args.config} configures protocol "
                       f"{config.protocol.protocol!r}; its replicas run that one")
    try:
        pids = [int(p) for p in args.replica_pids.split(",") if p.strip()]
    except ValueError:
        raise CliError("--replica-pids: expected comma-separated process ids") from None
    try:
        record = run_bench(config, args.set, spec_from(args, pids))
    except BenchError as exc:
        raise CliError(str(exc)) from None
    record["command"] = ["poe", *sys.argv[1:]]
    print(format_table(record))
    if args.json:
        write_json(args.json, record)
    return unknown_status(record, "bench")


def unknown_status(record: dict, command: str) -> int:
    """1 (with one line on stderr) if any client message ended "outcome unknown", else 0."""
    unknown = record["results"]["outcome_unknown"]
    if unknown:
        sys.stdout.flush()
        print(f"poe {command}: {unknown} client message(s) ended \"outcome unknown\" (no proof "
              "of execution before client.deadline_s): the run is not a clean measurement",
              file=sys.stderr)
        return 1
    return 0
