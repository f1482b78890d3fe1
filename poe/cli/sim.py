"""``poe sim``: run a simulated cluster of the real protocol objects and print its figures.

``poe sim --swarm --seeds N`` runs N seeded random runs instead (poe.sim.swarm: random
configurations, network faults, crashes, Byzantine replicas and clients, then a liveness
phase) and prints their summed figures and every failing seed. While it runs, a progress
line goes to stderr every ``--progress-every`` seeds and at least every 30 s (seeds done,
failing so far, elapsed and estimated remaining wall time); ``--verbose`` prints every seed.

``poe sim --adversary-table`` runs every single-faulty-party adversary of issue 14 against
the identical fault-free run (poe.sim.adversary_table) and prints one row per adversary x
fabric x n: view changes, throughput ratio, safety, PASS/FAIL.

Every run is reproducible: the command line printed on a failure reruns it exactly.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time

from poe.cli.main import CliError


def register(sub) -> None:
    p = sub.add_parser("sim", help="run a deterministic simulated cluster",
                       description="Run n replicas and m clients of the real protocol objects "
                                   "on a virtual clock and a seeded, hostile network.")
    p.add_argument("--seed", type=int, default=1, help="seed of the whole run (default 1)")
    p.add_argument("--replicas", type=int, default=4, help="n (default 4)")
    p.add_argument("--protocol", choices=("poe", "pbft"), default="poe",
                   help="poe, or the PBFT baseline (runs on the MAC fabric; default poe)")
    p.add_argument("--mode", choices=("ts", "mac"), default=None,
                   help="PoE variant (default ts; PBFT: mac)")
    p.add_argument("--requests", type=int, default=10_000, help="operations to complete")
    p.add_argument("--clients", type=int, default=8, help="closed-loop clients (default 8)")
    p.add_argument("--ops-per-message", type=int, default=10,
                   help="requests a client signs as one message (default 10)")
    p.add_argument("--outstanding", type=int, default=4,
                   help="client messages each client keeps in flight (default 4)")
    p.add_argument("--crypto", choices=("fake", "real"), default="fake",
                   help="fake: seeded simulation crypto; real: BLS + Ed25519 + MACs")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--checkpoint-period", type=int, default=64)
    p.add_argument("--loss", type=float, default=0.0, help="per-message loss probability")
    p.add_argument("--duplicate", type=float, default=0.0, help="duplication probability")
    p.add_argument("--jitter", type=float, default=0.0002, help="latency jitter, seconds")
    p.add_argument("--heal-at", type=float, default=None,
                   help="virtual second at which loss and duplication stop")
    p.add_argument("--crash", type=int, action="append", default=[],
                   help="replica id crashed from the start (repeatable)")
    p.add_argument("--time-limit", type=float, default=600.0, help="virtual seconds at most")
    p.add_argument("--trace", action="store_true", help="print one line per replica event")
    swarm = p.add_argument_group("swarm testing")
    swarm.add_argument("--swarm", action="store_true",
                       help="run many seeded random runs (faults, adversaries) under every "
                            "checker; the options above are then ignored")
    swarm.add_argument("--seeds", type=int, default=100, help="seeds to run (default 100)")
    swarm.add_argument("--start", type=int, default=1, help="first seed (default 1)")
    swarm.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                       help="stop starting new seeds after this many wall-clock seconds")
    swarm.add_argument("--allow-primary-faults", action=argparse.BooleanOptionalAction,
                       default=None,
                       help="let the primary of view 0 be crashed or Byzantine (default: "
                            "poe.sim.swarm.PRIMARY_FAULTS)")
    swarm.add_argument("--liveness-bound", type=float, default=None, metavar="SECONDS",
                       help="virtual seconds a client message may take once faults stop")
    swarm.add_argument("--verbose", "-v", action="store_true",
                       help="print one line per seed")
    swarm.add_argument("--progress-every", type=int, default=10, metavar="N",
                       help="a progress line on stderr every N seeds (and every 30 s); "
                            "0: none")
    table = p.add_argument_group("one faulty party (issue 14)")
    table.add_argument("--adversary-table", action="store_true",
                       help="run every single-faulty-party adversary against the identical "
                            "fault-free run and print the table (view changes, throughput "
                            "ratio); exit 1 if a row fails")
    table.add_argument("--n", default="4,7", metavar="N,N",
                       help="cluster sizes of the table (default 4,7)")
    table.add_argument("--fabrics", default="ts,mac,pbft", metavar="F,F",
                       help="fabrics of the table: ts, mac, pbft (default all)")
    table.add_argument("--adversaries", default=None, metavar="KIND,KIND",
                       help="adversaries of the table (default: all of issue 14's)")
    table.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                       help="simulated seconds per run (default 8)")
    table.add_argument("--jobs", type=int, default=1, help="processes for the table")
    p.set_defaults(func=run)


PROGRESS_INTERVAL_S = 30.0     # a swarm progress line at least this often


def rerun_line(argv: list[str]) -> str:
    return "poe sim " + " ".join(shlex.quote(a) for a in argv)


def run_swarm(args: argparse.Namespace) -> int:
    from poe.sim import swarm

    if args.seeds < 1:
        raise CliError("--seeds must be >= 1")
    if args.progress_every < 0:
        raise CliError("--progress-every must be >= 0")
    if args.time_budget is not None and args.time_budget <= 0:
        raise CliError("--time-budget must be positive")
    bound = swarm.LIVENESS_BOUND_S if args.liveness_bound is None else args.liveness_bound
    if bound <= 0:
        raise CliError("--liveness-bound must be positive")

    started = time.monotonic()
    done = {"seeds": 0, "failing": 0, "shown_at": started}

    def progress(r) -> None:
        done["seeds"] += 1
        done["failing"] += bool(r.violations)
        now = time.monotonic()
        if args.progress_every > 0 and (done["seeds"] % args.progress_every == 0
                                        or now - done["shown_at"] >= PROGRESS_INTERVAL_S):
            done["shown_at"] = now
            elapsed = now - started
            left = elapsed / done["seeds"] * (args.seeds - done["seeds"])
            budget = "" if args.time_budget is None else f" (budget {args.time_budget:.0f} s)"
            print(f"poe sim --swarm: {done['seeds']}/{args.seeds} seeds, {done['failing']} "
                  f"failing, {elapsed:.0f} s elapsed, ~{left:.0f} s left{budget}",
                  file=sys.stderr, flush=True)
        if args.verbose:
            state = "ok" if not r.violations else f"FAILED ({len(r.violations)} violations)"
            print(f"  seed {r.seed}: {state}  sim {r.sim_time_s:.1f} s  events {r.events}  "
                  f"wall {r.wall_s:.2f} s  {r.description}", flush=True)

    report = swarm.swarm(args.seeds, args.start, args.time_budget, args.allow_primary_faults,
                         progress=progress, liveness_bound_s=bound, protocol=args.protocol)
    for line in swarm.format_report(report):
        print(line)
    return 1 if report.failing else 0


def run_table(args: argparse.Namespace) -> int:
    from poe.sim import adversary_table as at

    try:
        ns = [int(x) for x in args.n.split(",") if x]
        fabrics = [x for x in args.fabrics.split(",") if x]
        kinds = [x for x in args.adversaries.split(",") if x] if args.adversaries else None
        for k in kinds or ():
            at.family_of(k)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if any(f not in at.FABRICS for f in fabrics) or not fabrics:
        raise CliError(f"--fabrics takes {', '.join(at.FABRICS)}")
    if not ns or any(n < 4 for n in ns):
        raise CliError("--n takes cluster sizes >= 4")
    duration = at.DURATION_S if args.duration is None else args.duration
    if duration <= 0 or args.jobs < 1:
        raise CliError("--duration and --jobs must be positive")
    rows = at.table(kinds, fabrics, ns, args.seed, duration, args.jobs)
    for line in at.format_table(rows, args.seed, duration):
        print(line)
    return 0 if all(r.ok for r in rows) else 1


def run(args: argparse.Namespace) -> int:
    if args.swarm:
        return run_swarm(args)
    if args.adversary_table:
        return run_table(args)
    from poe.protocol.config import ConfigError, ProtocolConfig
    from poe.sim.cluster import SimCluster, Workload
    from poe.sim.network import LinkFaults

    mode = args.mode or ("mac" if args.protocol == "pbft" else "ts")
    argv = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "sim" else [
        f"--seed={args.seed}", f"--replicas={args.replicas}", f"--protocol={args.protocol}",
        f"--mode={mode}", f"--requests={args.requests}"]
    try:
        config = ProtocolConfig(n=args.replicas, mode=mode, protocol=args.protocol,
                                batch_size=args.batch_size,
                                window=args.window, checkpoint_period=args.checkpoint_period
                                ).validate()
        faults = LinkFaults(loss=args.loss, duplicate=args.duplicate,
                            jitter_s=args.jitter).validate()
    except (ConfigError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if args.requests < 1 or args.clients < 1 or args.ops_per_message < 1 \
            or args.outstanding < 1:
        raise CliError("--requests, --clients, --ops-per-message and --outstanding must be >= 1")
    if any(not 0 <= c < args.replicas for c in args.crash):
        raise CliError(f"--crash takes replica ids 0..{args.replicas - 1}")
    if len(set(args.crash)) > config.f:
        print(f"note: {len(set(args.crash))} crashed replicas exceed f = {config.f}; "
              "the run cannot make progress", file=sys.stderr)
    workload = Workload(ops_per_message=args.ops_per_message, outstanding=args.outstanding)
    sim = SimCluster(config, clients=args.clients, seed=args.seed, crypto=args.crypto,
                     faults=faults, workload=workload,
                     trace=print if args.trace else None)
    for r in set(args.crash):
        sim.crash(r)
    if args.heal_at is not None:
        sim.at(args.heal_at, lambda _: sim.net.set_faults(LinkFaults(jitter_s=args.jitter)))
    result = sim.run(args.requests, time_limit_s=args.time_limit)
    print_result(result, config, args)
    if result.violations or result.requests < args.requests:
        print(f"FAILED: rerun with: {rerun_line(argv)}")
        return 1
    return 0


def print_result(r, config, args) -> None:
    lat = sorted(r.latencies_s)

    def pct(p: float) -> str:
        return f"{lat[min(len(lat) - 1, int(p * len(lat)))] * 1000:.2f} ms" if lat else "-"

    print(f"poe sim  seed {r.seed}  protocol={config.protocol}  n={config.n} f={config.f} "
          f"mode={config.mode} "
          f"crypto={args.crypto} batch={config.batch_size}")
    print(f"  requests completed   {r.requests:>10}   (client messages {r.messages_completed}, "
          f"outcome unknown {r.outcome_unknown})")
    print(f"  batches executed     {r.batches:>10}   (all replicas)")
    print(f"  messages             {r.network.get('sent', 0):>10}   "
          + "  ".join(f"{k} {v}" for k, v in sorted(r.network.items()) if k != "sent"))
    print(f"  simulated time       {r.sim_time_s:>10.3f} s  events {r.events}")
    print(f"  wall time            {r.wall_time_s:>10.3f} s  "
          f"({r.throughput_wall():,.0f} requests per wall-clock second)")
    print(f"  latency (simulated)  p50 {pct(0.5)}  p99 {pct(0.99)}")
    if r.drops:
        print("  drops by reason      " + ", ".join(f"{k} {v}" for k, v in sorted(r.drops.items())))
    interesting = {k: v for k, v in r.stats.items() if not k.startswith("executed")}
    if interesting:
        print("  events               "
              + ", ".join(f"{k} {v}" for k, v in sorted(interesting.items())))
    if r.violations:
        print(f"  checkers             FAILED ({len(r.violations)} violations)")
        for v in r.violations[:20]:
            print(f"    - {v}")
    else:
        print("  checkers             ok (agreement per view and sequence, final ledgers, state "
              "digests, exactly-once execution, monotonic views and execution, proofs of "
              "execution preserved, linearizability per key, bounds)")
