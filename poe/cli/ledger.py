"""``poe ledger verify|show --data DIR --config FILE``: check or print a replica's ledger;
``poe ledger quarantine --data DIR [--through K]``: the safe repair of a damaged one.

``verify`` walks the chain of the store in DIR (a replica's data directory, the one holding
``ledger.db``), checks every row, block hash, batch digest and certificate, the ledger base
and the stable checkpoint (signatures and snapshot), and prints the height and the head
hash: exit status 0. On the first problem it prints the bad block (or what else is wrong)
and the repair, exit status 1. A store written for another configuration (another
cluster, mode, data load...) is not damage: one line saying which setting differs and no
repair, exit status 2 (the configuration is the likely mistake). ``show`` prints blocks
for people.

``quarantine`` (the replica stopped) moves ``ledger.db`` and its ``-wal``/``-shm`` files
into ``DIR/quarantine-<time>/`` and rewrites ``votes.hwm`` with a floor: the highest sequence
number and view the replica may have voted on (from ``votes.hwm``, and what the damaged
database still shows). The replica then starts empty and abstains from every vote until its
stable checkpoint reaches the floor (docs/storage.md, "Store corruption"). Without a
readable ``votes.hwm`` the floor must be given (``--through K``).

Must never: write to the store with ``verify`` or ``show`` (it is opened read-only), report
a ledger as good that ``poe.storage.verify.check_store`` does not accept, or (quarantine)
lower the floor ``votes.hwm`` holds or delete anything.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poe.cli.main import CliError


def register(sub) -> None:
    p = sub.add_parser("ledger", help="verify or print a replica's durable ledger",
                       description="Verify or print the ledger in a replica's data directory.")
    lsub = p.add_subparsers(dest="action", metavar="ACTION")
    lsub.required = True
    v = lsub.add_parser("verify", help="check every hash and proof; print height and head")
    s = lsub.add_parser("show", help="print blocks")
    q = lsub.add_parser("quarantine", help="move a damaged ledger.db aside, keep votes.hwm: "
                        "the replica restarts empty and abstains until a state transfer "
                        "carries it past every position it may have voted on")
    q.add_argument("--data", required=True, metavar="DIR",
                   help="the replica's data directory (holding ledger.db and votes.hwm)")
    q.add_argument("--through", type=int, default=None, metavar="K",
                   help="abstain at least through sequence number K (needed when votes.hwm "
                   "is missing or damaged: e.g. a healthy peer's height plus the window)")
    for q in (v, s):
        q.add_argument("--data", required=True, metavar="DIR",
                       help="the replica's data directory (holding ledger.db)")
        q.add_argument("--config", required=True, metavar="FILE",
                       help="poe.toml or cluster.toml of the cluster")
    s.add_argument("--from", dest="first", type=int, default=0, metavar="K",
                   help="first block to print (default: the start of the ledger)")
    s.add_argument("--count", type=int, default=20, metavar="N", help="blocks to print")
    p.set_defaults(func=run)


def _open(args):
    from poe.config import ConfigFileError, load_config
    from poe.crypto import load_suite
    from poe.crypto.errors import CryptoError
    from poe.storage.store import Store

    try:
        config = load_config(args.config)
        suite = load_suite(config.cluster, None, variant=config.protocol.mode)
    except (ConfigFileError, CryptoError) as exc:
        raise CliError(str(exc)) from None
    data = Path(args.data)
    if not data.is_dir():
        raise CliError(f"--data {data}: not a directory")
    store = Store(data, genesis=config.genesis(), replica_id=-1, readonly=True,
                  genesis_config=config.genesis_config())
    return config, suite, store


def run(args: argparse.Namespace) -> int:
    from poe.storage.store import StoreError, StoreMismatch, StoreVersionError

    if args.action == "quarantine":
        return _quarantine(Path(args.data), args.through)
    try:
        config, suite, store = _open(args)
        try:
            if args.action == "verify":
                return _verify(config, suite, store)
            return _show(store, args.first, args.count)
        finally:
            store.db.close()
    except (StoreMismatch, StoreVersionError) as exc:
        # the configuration (or the poe version) does not match the store: not damage
        print(f"poe ledger {args.action}: error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"poe ledger {args.action}: FAILED: {exc}", file=sys.stderr)
        return 1


def _verify(config, suite, store) -> int:
    from poe.storage.verify import check_store

    report = check_store(store, suite, n=config.n, nf=config.protocol_config().nf,
                         ts=config.protocol.mode == "ts")
    stable = report.stable.seq if report.stable is not None else 0
    if not report.ok:
        seq, reason = report.bad
        print(f"poe ledger verify: FAILED at block {seq}: {reason} (good up to height "
              f"{report.height}, head {report.head.hex()}); {_repair()}", file=sys.stderr)
        return 1
    print(f"ok height={report.height} head={report.head.hex()} blocks={report.blocks} "
          f"base={report.base.seq} stable={stable} replica={store.replica_id}")
    return 0


def _repair() -> str:
    from poe.storage.store import REPAIR

    return REPAIR


def _db_floor(db: Path) -> tuple[int, int]:
    """(highest seq, highest view) a damaged database still shows, best effort: rows are
    not trusted for anything but raising the floor."""
    import sqlite3

    seq = view = 0
    if not db.is_file():
        return 0, 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            for table in ("votes", "checkpoint", "blocks"):
                try:
                    top = conn.execute(f"SELECT max(seq) FROM {table}").fetchone()[0]
                except sqlite3.Error:
                    continue
                if type(top) is int:
                    seq = max(seq, top)
            try:
                rows = conn.execute("SELECT value FROM meta WHERE key IN ('view', 'left')")\
                    .fetchall()
            except sqlite3.Error:
                rows = []
            for (value,) in rows:
                if type(value) is bytes and len(value) == 8:
                    view = max(view, int.from_bytes(value, "little", signed=True))
        finally:
            conn.close()
    except sqlite3.Error:
        pass
    return seq, view


def _quarantine(data: Path, through: int | None) -> int:
    import time

    from poe.storage import hwm
    from poe.storage.store import DB_FILE, HWM_FILE

    if not data.is_dir():
        raise CliError(f"--data {data}: not a directory")
    path = data / HWM_FILE
    try:
        mark, damaged, exists = hwm.read(path)
    except OSError as exc:
        raise CliError(f"{path}: unreadable ({exc.strerror})") from None
    if (mark is None or damaged) and through is None:
        what = "missing" if not exists else "damaged"
        raise CliError(f"{path} is {what}: the highest position this replica voted on is "
                       "unknown; give it with --through K (at least a healthy peer's height "
                       "plus the window)")
    seq, view = _db_floor(data / DB_FILE)
    if mark is not None:
        seq = max(seq, mark.seq, mark.floor_seq)
        view = max(view, mark.view, mark.floor_view)
    if through is not None:
        seq = max(seq, through)
    aside = data / time.strftime("quarantine-%Y%m%dT%H%M%S", time.gmtime())
    moved = [data / (DB_FILE + tail) for tail in ("", "-wal", "-shm")]
    moved = [f for f in moved if f.exists()]
    if moved:
        aside.mkdir()
        for f in moved:
            f.rename(aside / f.name)
    hwm.replace(path, hwm.Mark(0, seq, view, seq, view))
    where = f"moved to {aside}" if moved else "no ledger.db here"
    print(f"quarantined: {where}; {HWM_FILE} keeps the floor seq={seq} view={view}: the "
          f"replica starts empty and abstains until its stable checkpoint reaches {seq}")
    return 0


def _show(store, first: int, count: int) -> int:
    from poe._core.codec import Batch, WireError

    print("seq\tview\trequests\tmessages\tcertified-by\tdigest\thash")
    for shown, b in enumerate(store.blocks(above=first - 1)):
        if shown >= count:
            break
        if b.body is None:
            ops, messages = 0, "no-op"
        else:
            try:
                batch = Batch.from_body(b.body)
                ops, messages = batch.nops, str(len(batch))
            except (WireError, ValueError):
                ops, messages = "?", "undecodable"
        signers = ",".join(map(str, b.cert.signers())) if b.cert is not None else "-"
        print(f"{b.seq}\t{b.view}\t{ops}\t{messages}\t{signers}\t{b.digest.hex()[:16]}\t"
              f"{b.hash.hex()[:16]}")
    return 0
