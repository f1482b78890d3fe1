"""``poe cluster``: the embedded default deployment, under load, in one command.

Generates keys for ``--replicas`` replicas in a temporary directory, finds free ports on
127.0.0.1, starts one ``poe replica`` process per replica, waits until each is listening,
runs ``poe bench`` against them (warm-up, then the measured window), prints the result and
stops everything it started. Replica logs stay in the temporary directory with ``--keep``.
Exit status (after the table and the ``--json`` record): 2 with one line on stderr if a
replica exited with an error, else 1 with one line on stderr if any client message ended
"outcome unknown" (no proof before ``client.deadline_s``; the same rule as ``poe bench``),
else 0.

Must never: leave a process behind (every child runs in its own session, dies with this
process, and is stopped in a ``finally``, by ``atexit`` and on SIGTERM), use fake crypto
without ``--insecure-bench``, or write keys anywhere but a fresh 0700 temporary directory.
"""
from __future__ import annotations

import argparse
import atexit
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from poe.cli.main import CliError

READY_TIMEOUT_S = 120.0
START_ATTEMPTS = 3          # fresh ports after a replica found its port taken at start-up


class _PortTaken(CliError):
    """A replica exited at start-up because another program took its port after the probe."""


def register(sub) -> None:
    from poe.cli.bench import add_load_arguments

    p = sub.add_parser("cluster", help="start a local cluster, benchmark it, stop it",
                       description="Start n replicas on 127.0.0.1 with fresh keys, run a "
                                   "YCSB benchmark against them, print the result and stop "
                                   "everything.")
    p.add_argument("--replicas", type=int, default=4, help="n (default 4)")
    p.add_argument("--protocol", choices=("poe", "pbft"), default="poe",
                   help="poe, or the PBFT baseline on the same fabric (default poe)")
    p.add_argument("--mode", choices=("ts", "mac"), default=None,
                   help="PoE variant (default ts; PBFT runs on mac)")
    p.add_argument("--batch-size", type=int, default=200, help="requests per batch")
    p.add_argument("--crash-backup", action="store_true",
                   help="kill -9 the last replica (a backup) once all are ready, before the "
                        "load starts: the paper's single-backup-failure runs")
    p.add_argument("--zero-payload", action="store_true",
                   help="replicas execute every request as a no-op (the paper's zero payload)")
    p.add_argument("--record-count", type=int, default=None, help="YCSB records loaded")
    p.add_argument("--value-size", type=int, default=None, help="bytes per value")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE",
                   help="any other setting, for every replica and client")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary directory (keys, poe.toml, replica logs)")
    add_load_arguments(p)
    p.set_defaults(func=run)


class _Cluster:
    """The processes and files this command started; ``stop`` is idempotent."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.replicas: list = []
        self.logs: list[Path] = []
        self.keep = False
        self.stopped = False

    def stop(self) -> list[int | None]:
        from poe.runtime import procs

        statuses: list[int | None] = []
        if not self.stopped:
            self.stopped = True
            procs.stop_all(self.replicas, grace_s=10.0)
            statuses = [p.returncode for p in self.replicas]
        return statuses

    def cleanup(self) -> None:
        self.stop()
        if self.dir is not None and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def _sigterm(_signum, _frame) -> None:
    raise SystemExit(128 + signal.SIGTERM)


def run(args: argparse.Namespace) -> int:
    from poe.bench.runner import BenchError, format_table, run_bench
    from poe.cli.bench import spec_from, write_json
    from poe.config import CONFIG_FILE, SETTINGS, ConfigFileError, load_config, write_config
    from poe.crypto.dealer import deal_cluster, write_keys
    from poe.protocol.poe.clients import PER_CLIENT_REPLIES
    from poe.runtime import procs

    if not 4 <= args.replicas <= 64:
        raise CliError("--replicas must be in 4..64 for a local cluster")
    mode = args.mode or ("mac" if args.protocol == "pbft" else "ts")
    if args.protocol == "pbft" and mode != "mac":
        raise CliError("--protocol pbft runs on the MAC fabric: drop --mode or use --mode mac")
    clients = args.first_client + args.clients
    state = _Cluster()
    state.keep = args.keep
    atexit.register(state.cleanup)
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        state.dir = Path(tempfile.mkdtemp(prefix="poe-cluster-"))
        values = {"protocol.protocol": args.protocol, "protocol.mode": mode,
                  "protocol.batch_size": args.batch_size,
                  "protocol.zero_payload": args.zero_payload}
        cache = next(s.default for s in SETTINGS if s.key == "protocol.reply_cache_size")
        if clients * PER_CLIENT_REPLIES > cache:
            # every client's 64 newest answers (poe.config checks it against the key file)
            values["protocol.reply_cache_size"] = clients * PER_CLIENT_REPLIES
        if args.record_count is not None:
            values["data.record_count"] = args.record_count
        if args.value_size is not None:
            values["data.value_size"] = args.value_size
        spec = spec_from(args)
        extra = [a for s in args.set for a in ("--set", s)]
        if args.insecure_bench:
            extra.append("--insecure-bench")
        for attempt in range(1, START_ATTEMPTS + 1):
            base = procs.free_port_range(2 * args.replicas)
            where = state.dir if attempt == 1 else state.dir / f"try-{attempt}"
            try:
                write_keys(where, deal_cluster(args.replicas, clients, host="127.0.0.1",
                                                   base_port=base))
            except ValueError as exc:
                raise CliError(str(exc)) from None
            config_path = write_config(where / CONFIG_FILE, values,
                                       header="written by `poe cluster`")
            try:
                config = load_config(config_path, args.set)
            except ConfigFileError as exc:
                raise CliError(str(exc)) from None
            try:
                spec.check(config)
            except BenchError as exc:
                raise CliError(str(exc)) from None
            print(f"poe cluster: {args.replicas} replicas, protocol {args.protocol}, "
                  f"mode {mode}, ports {base}..{base + 2 * args.replicas - 1} on 127.0.0.1, "
                  f"files in {where}", file=sys.stderr)
            for i in range(args.replicas):
                log = where / f"replica-{i}.log"
                state.logs.append(log)
                with open(log, "ab") as handle:
                    state.replicas.append(procs.spawn(
                        procs.poe_command("replica", "--config", str(config_path),
                                          "--id", str(i), *extra),
                        stdout=handle, stderr=handle, cwd=str(where)))
            try:
                _wait_ready(state)
                break
            except _PortTaken as exc:
                if attempt == START_ATTEMPTS:
                    raise
                print(f"poe cluster: {exc}; trying other ports", file=sys.stderr)
                procs.stop_all(state.replicas, grace_s=5.0)
                state.replicas.clear()
                state.logs.clear()
        crashed = None
        if args.crash_backup:
            crashed = args.replicas - 1            # never the primary of view 0
            state.replicas[crashed].kill()
            state.replicas[crashed].wait(timeout=10)
            print(f"poe cluster: replica {crashed} (a backup) killed before the load",
                  file=sys.stderr)
        spec.replica_pids = [p.pid for i, p in enumerate(state.replicas) if i != crashed]
        try:
            record = run_bench(config, args.set, spec)
        except BenchError as exc:
            raise CliError(str(exc)) from None
        statuses = state.stop()
        record["replicas"] = _exit_reports(state, statuses)
        record["command"] = ["poe", *sys.argv[1:]]
        record["crashed_backup"] = crashed
        print(format_table(record))
        drops = {}
        for rep in record["replicas"]:
            for k, v in (rep.get("drops") or {}).items():
                drops[k] = drops.get(k, 0) + v
        print(f"{'replica drops':<15}  {json.dumps(drops) if drops else 'none'}")
        if args.json:
            write_json(args.json, record)
        if args.keep:
            print(f"poe cluster: kept {state.dir}", file=sys.stderr)
        return exit_status(record, statuses, crashed,
                           f" in {state.dir}" if args.keep else " (rerun with --keep)")
    finally:
        state.cleanup()
        signal.signal(signal.SIGTERM, previous)
        atexit.unregister(state.cleanup)


def exit_status(record: dict, statuses, crashed: int | None, where: str) -> int:
    """The exit status of a finished run: ``CliError`` (status 2) if a replica other than
    the one ``--crash-backup`` killed exited with an error (``where`` says where its log is),
    else 1 with one line on stderr if any client message ended "outcome unknown" (as ``poe
    bench``), else 0. Called after the table and the JSON record are out."""
    from poe.cli.bench import unknown_status

    bad = [i for i, s in enumerate(statuses) if s not in (0, None) and i != crashed]
    if bad:
        unknown = record["results"]["outcome_unknown"]
        also = (f"; {unknown} client message(s) ended \"outcome unknown\"" if unknown else "")
        raise CliError(f"replica(s) {bad} exited with an error; see their logs{where}{also}")
    return unknown_status(record, "cluster")


def _wait_ready(state: _Cluster) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = set(range(len(state.replicas)))
    while pending:
        for i in sorted(pending):
            text = state.logs[i].read_text(errors="replace")
            if '"event":"ready"' in text:
                pending.discard(i)
            elif state.replicas[i].poll() is not None:
                last = text.strip().splitlines()[-1] if text.strip() else "no output"
                kind = _PortTaken if "already in use" in last else CliError
                raise kind(f"replica {i} exited at start-up "
                               f"(status {state.replicas[i].returncode}): {last[:300]}")
        if pending and time.monotonic() > deadline:
            raise CliError(f"replicas {sorted(pending)} not ready after {READY_TIMEOUT_S:.0f} s")
        if pending:
            time.sleep(0.05)


def _exit_reports(state: _Cluster, statuses) -> list[dict]:
    reports = []
    for i, log in enumerate(state.logs):
        report: dict = {"id": i, "exit_status": statuses[i] if i < len(statuses) else None,
                        "pid": state.replicas[i].pid}
        try:
            for line in log.read_text(errors="replace").splitlines():
                if '"event":"exit"' in line:
                    record = json.loads(line)
                    for key in ("executed", "stable", "drops", "stats", "transport", "runtime",
                                "rss_bytes", "cpu_s"):
                        report[key] = record.get(key)
        except (OSError, ValueError):
            pass
        reports.append(report)
    return reports
