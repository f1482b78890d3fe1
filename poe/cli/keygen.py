"""``poe keygen``: generate every key of a cluster (trusted dealer) and write the key files.

Writes ``OUT/cluster.toml`` (public) and ``OUT/replica-<i>.secret.toml`` /
``OUT/client-<j>.secret.toml`` (mode 0600, created that way), then re-loads them all with
the same checks a replica runs at start-up. Also writes ``OUT/poe.toml``, the configuration
file every ``poe replica``, ``poe bench`` and ``poe client`` reads: every setting with its
default, unit and meaning, pointing at these key files (poe.config).

Fewer than 4 replicas tolerate no fault (f = (n-1)//3 = 0): refused unless ``--allow-f0``,
and then the output says f = 0 in words.

Must never: print a secret, overwrite files without ``--force``, or leave a secret file
readable by others.
"""
from __future__ import annotations

import argparse

from poe.cli.main import CliError
from poe.crypto.dealer import CLUSTER_FILE, deal_cluster, write_keys
from poe.crypto.errors import CryptoError
from poe.crypto.keyfile import CLIENTS_MAX, REPLICAS_MAX, load_cluster, load_secret


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``keygen`` subcommand to the ``poe`` parser."""
    parser = sub.add_parser(
        "keygen", help="generate cluster and secret key files",
        description="Generate all keys of a cluster: a public cluster file and one secret "
                    "file (mode 0600) per replica and client.")
    parser.add_argument("--replicas", type=int, required=True, metavar="N",
                        help=f"number of replicas n (1..{REPLICAS_MAX}); f = (n-1)//3")
    parser.add_argument("--clients", type=int, required=True, metavar="M",
                        help=f"number of clients (0..{CLIENTS_MAX})")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory (created with mode 0700 if missing)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="host of every replica (default 127.0.0.1; edit cluster.toml "
                             "for multi-host clusters)")
    parser.add_argument("--base-port", type=int, default=7000, metavar="P",
                        help="replica i listens on P+2i (replicas) and P+2i+1 (clients); "
                             "default 7000")
    parser.add_argument("--protocol", choices=("poe", "pbft"), default="poe",
                        help="protocol.protocol written into poe.toml (default poe)")
    parser.add_argument("--mode", choices=("ts", "mac"), default=None,
                        help="protocol.mode written into poe.toml (default ts; pbft: mac)")
    parser.add_argument("--force", action="store_true",
                        help="replace existing key files in DIR")
    parser.add_argument("--allow-f0", action="store_true",
                        help="accept --replicas 1..3: f = 0, a cluster that tolerates no "
                             "faulty or crashed replica (demonstrations only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate, write and re-check the key files; print the paths (never the keys)."""
    mode = args.mode or ("mac" if args.protocol == "pbft" else "ts")
    if args.protocol == "pbft" and mode != "mac":
        raise CliError("--protocol pbft runs on the MAC fabric: drop --mode or use --mode mac")
    if 1 <= args.replicas < 4 and not args.allow_f0:
        raise CliError(f"--replicas {args.replicas}: n = {args.replicas} tolerates no faulty "
                       "replica (f = (n-1)//3 = 0; n = 4 is the smallest with f = 1); use "
                       "--replicas 4 or more, or --allow-f0 to generate it anyway")
    try:
        dealt = deal_cluster(args.replicas, args.clients, host=args.host,
                             base_port=args.base_port)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        paths = write_keys(args.out, dealt, force=args.force)
        cluster = load_cluster(paths[0])
        for path in paths[1:]:
            load_secret(path, cluster)
    except CryptoError as exc:
        raise CliError(str(exc)) from None
    from poe.config import CONFIG_FILE, write_config

    config_path = paths[0].parent / CONFIG_FILE
    try:
        write_config(config_path, {"protocol.protocol": args.protocol, "protocol.mode": mode},
                     force=args.force)
    except FileExistsError:
        raise CliError(f"{config_path}: already exists; use --force to replace it") from None
    except OSError as exc:
        raise CliError(f"{config_path}: cannot write: {exc.strerror}") from None
    print(f"wrote {paths[0].parent / CLUSTER_FILE} (public: n={cluster.n}, f={cluster.f}, "
          f"nf={cluster.nf}, clients={len(cluster.clients)}, cluster_id={cluster.cluster_id})")
    print(f"wrote {len(paths) - 1} secret files (mode 0600) in {paths[0].parent}; copy each "
          "only to its own host")
    print(f"wrote {config_path} (settings; run `poe replica --config {config_path} --id N`)")
    if cluster.f == 0:
        print(f"f = 0: this {cluster.n}-replica cluster tolerates no faulty or crashed replica")
    return 0
