"""``poe client --config poe.toml get KEY`` / ``put KEY VALUE``: one request and its proof.

Sends one signed client message to the cluster, waits for nf matching INFORMs (the proof of
execution, PROTOCOL.md §2.4; f+1 replies for the PBFT baseline) and prints the result with
the proof: the view, the sequence number and position it was executed at, and the replicas
whose INFORMs agree. Exit status
0 with a proof, 1 when the outcome is unknown (no proof before the deadline), 2 on a usage,
configuration or key problem.

Must never: print a result without a proof, or print a secret.
"""
from __future__ import annotations

import argparse
import time

from poe.cli.main import CliError

_STATUS = {0: "OK", 1: "NOT_FOUND", 2: "EXISTS", 3: "DUPLICATE", 4: "STALE"}


def register(sub) -> None:
    p = sub.add_parser("client", help="one request (get/put) and the proof it was executed",
                       description="Send one request to the cluster and print its result with "
                                   "its proof of execution (nf matching INFORMs).")
    p.add_argument("--config", required=True, metavar="FILE", help="poe.toml of the cluster")
    p.add_argument("--client-id", type=int, default=None,
                   help="client id to act as (default: the last client in the key file)")
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
    cid = clients - 1 if args.client_id is None else args.client_id
    try:
        proc = ClientProcess(config, cid, cid, insecure_bench=args.insecure_bench)
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
                return _report(args, config, event)
        print("outcome unknown: no decision before the deadline")
        return 1
    finally:
        proc.close()


def _report(args, config, event) -> int:
    from poe.protocol.poe.client import Completed

    if type(event) is not Completed:
        print(f"outcome unknown: {event.reason}")
        return 1
    t, status, value = event.results[0]
    name = _STATUS.get(status, str(status))
    what = f"{args.operation} {args.key}"
    if args.operation == "get" and status == 0:
        print(f"{what}: {name} {_show(bytes(value))} ({len(value)} bytes)")
    else:
        print(f"{what}: {name}")
    if event.final:
        quorum = f"f+1 = {config.cluster.f + 1} FINAL"
    elif config.protocol.protocol == "pbft":
        quorum = f"f+1 = {config.cluster.f + 1}, PBFT"
    else:
        quorum = f"nf = {config.cluster.nf}"
    print(f"proof: request {t} executed as message {event.index} of batch {event.seq} in view "
          f"{event.view}; {len(event.replicas)} matching INFORMs ({quorum} of "
          f"n = {config.n}) from replicas {', '.join(map(str, event.replicas))}; "
          f"{event.latency_s * 1000:.1f} ms")
    return 0
