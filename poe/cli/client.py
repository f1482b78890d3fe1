"""``poe client --config poe.toml get KEY`` / ``put KEY VALUE``: one request and its proof.

Sends one signed client message to the cluster, waits for nf matching INFORMs (the proof of
execution, PROTOCOL.md §2.4; f+1 replies for the PBFT baseline) and prints the result with
the proof: the view, the sequence number and position it was executed at, and the replicas
whose INFORMs agree. Exit status
0 with a proof, 1 when the outcome is unknown (no proof before the deadline) or the request
was not executed (answered STALE or DUPLICATE: its request id was below or inside the
window of ids the cluster had already executed for that client id, i.e. another process
used the same client id), 2 on a usage, configuration or key problem.

Client ids: the default is the highest client id of the key file that no other process on
this host holds (poe/runtime/lease.py); an explicit ``--client-id`` held by another process
is refused (exit status 2) rather than shared, since two processes acting as one client id
at once lose writes to STALE/DUPLICATE answers.

Must never: print a result without a proof, print a secret, or report a request answered
STALE or DUPLICATE as done (exit status 0).
"""
from __future__ import annotations

import argparse
import time

from poe.cli.main import CliError

_STATUS = {0: "OK", 1: "NOT_FOUND", 2: "EXISTS", 3: "DUPLICATE", 4: "STALE"}
# answers that mean "this request did nothing" (poe/_core/kv.pyx, exactly-once rule)
_NOT_EXECUTED = {
    4: "NOT executed: request id {t} is older than the window of ids the cluster has executed "
       "for client {cid} (another process on another host using client id {cid}?); nothing "
       "was changed: retry",
    3: "NOT executed by this request: request id {t} of client {cid} had already been "
       "executed (by another process on another host using client id {cid}?); check the "
       "value and retry",
}


def register(sub) -> None:
    p = sub.add_parser("client", help="one request (get/put) and the proof it was executed",
                       description="Send one request to the cluster and print its result with "
                                   "its proof of execution (nf matching INFORMs).")
    p.add_argument("--config", required=True, metavar="FILE", help="poe.toml of the cluster")
    p.add_argument("--client-id", type=int, default=None,
                   help="client id to act as (default: the highest client id of the key file "
                        "that no other process on this host is using)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE",
                   help="override one setting for this run")
    p.add_argument("--insecure-bench", action="store_true",
                   help="FAKE crypto (only against replicas started with --insecure-bench)")
    ops = p.add_subparsers(dest="operation", metavar="OPERATION")
    ops.required = True
    get = ops.add_parser("get", help="read KEY")
    get.add_argument("key", type=int, metavar="KEY", help="record number (u64)")
    put = ops.add_parser("put", help="write VALUE (UTF-8) to KEY")
    put.add_argument("key", type=int, metavar="KEY", help="record number (u64)")
    put.add_argument("value", metavar="VALUE", help="the new value (UTF-8 text)")
    put.add_argument("--insert", action="store_true",
                     help="create KEY (INSERT) instead of updating an existing record")
    p.set_defaults(func=run)


def _show(value: bytes) -> str:
    try:
        text = value.decode("utf-8")
        if text.isprintable():
            return repr(text)
    except UnicodeDecodeError:
        pass
    return "0x" + value.hex()


def run(args: argparse.Namespace) -> int:
    from poe._core import codec
    from poe.config import ConfigFileError, load_config
    from poe.crypto.errors import CryptoError
    from poe.runtime.client import ClientProcess
    from poe.runtime.lease import lease_first_free

    try:
        config = load_config(args.config, args.set)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    if not 0 <= args.key < 1 << 64:
        raise CliError("KEY must be in 0..2^64-1")
    if args.operation == "get":
        op = (args.key, codec.OP_READ, b"")
    else:
        value = args.value.encode("utf-8")
        if len(value) > codec.MAX_VALUE:
            raise CliError(f"VALUE is {len(value)} bytes; at most {codec.MAX_VALUE}")
        op = (args.key, codec.OP_INSERT if args.insert else codec.OP_UPDATE, value)
    clients = len(config.cluster.clients)
    if args.client_id is not None and not 0 <= args.client_id < clients:
        raise CliError(f"--client-id {args.client_id}: {config.cluster.path} lists {clients} "
                       f"clients (ids 0..{clients - 1})")
    if clients == 0:
        raise CliError(f"{config.cluster.path} lists no clients; run `poe keygen` with "
                       "--clients 1 or more")
    candidates = range(clients - 1, -1, -1) if args.client_id is None else [args.client_id]
    try:
        cid, lease = lease_first_free(config.cluster.cluster_id, candidates)
    except ValueError as exc:
        hint = ("; wait for it, or choose another --client-id" if args.client_id is not None
                else "; wait for one, or `poe keygen` more --clients")
        raise CliError(f"{exc}{hint}") from None
    try:
        proc = ClientProcess(config, cid, cid, insecure_bench=args.insecure_bench,
                             lease=lease)
    except (CryptoError, ValueError) as exc:
        raise CliError(str(exc)) from None
    try:
        up = proc.wait_connected(config.n, config.client.connect_timeout_s,
                                 quorum=config.cluster.nf)
        if up < config.cluster.nf:
            print(f"poe client: only {up} of {config.n} replicas reachable; trying anyway")
        proc.submit(0, [op])
        deadline = time.monotonic() + config.client.deadline_s + 5
        while time.monotonic() < deadline:
            for _, event in proc.turn(0.05):
                return _report(args, config, event, cid)
        print("outcome unknown: no decision before the deadline")
        return 1
    finally:
        proc.close()


def _report(args, config, event, cid: int) -> int:
    from poe.protocol.poe.client import Completed

    if type(event) is not Completed:
        print(f"outcome unknown: {event.reason}")
        return 1
    t, status, value = event.results[0]
    name = _STATUS.get(status, str(status))
    what = f"{args.operation} {args.key}"
    not_executed = _NOT_EXECUTED.get(status)
    if not_executed is not None:
        print(f"{what}: {name}: " + not_executed.format(t=t, cid=cid))
    elif args.operation == "get" and status == 0:
        print(f"{what}: {name} {_show(bytes(value))} ({len(value)} bytes)")
    else:
        print(f"{what}: {name}")
    if event.final:
        quorum = f"f+1 = {config.cluster.f + 1} FINAL"
    elif config.protocol.protocol == "pbft":
        quorum = f"f+1 = {config.cluster.f + 1}, PBFT"
    else:
        quorum = f"nf = {config.cluster.nf}"
    print(f"proof: request {t} of client {cid} executed as message {event.index} of batch "
          f"{event.seq} in view {event.view}; {len(event.replicas)} matching INFORMs ({quorum} of "
          f"n = {config.n}) from replicas {', '.join(map(str, event.replicas))}; "
          f"{event.latency_s * 1000:.1f} ms")
    return 1 if not_executed is not None else 0
