"""The SQLite database of one replica's data directory (``<data_dir>/ledger.db``, WAL mode).

What it is for: everything PoE promises that must survive a crash of the replica process,
written by the runtime as it carries out the protocol's actions (docs/storage.md):

* ``blocks``: the ledger B_k (PROTOCOL.md §6.4) — seq, view of its certificate, batch
  digest, previous hash, block hash, the batch body (NULL for a no-op position) and the
  certificate (TS mode), hash-chained from a ``base`` (genesis, or the stable checkpoint a
  state transfer started from);
* ``results``: per block, the kv results of its batch (per message ``u32 client`` and its
  INFORM entry; docs/wire.md): a restarted replica
  answers a client's retry of an executed message from them, as it did from memory;
* ``checkpoint``: the last stable checkpoint with its nf signatures and the kv snapshot;
* ``vote_batches``: the PBFT baseline's batches of its COMMIT votes above the stable
  checkpoint (a prepared batch must survive a power cut of the whole cluster);
* ``votes``: every SUPPORT (a primary's PROPOSE included) and CHECKPOINT vote sent above the
  stable checkpoint;
* ``meta``: format, genesis, replica id, the installed view and the last view left.

Every row carries a SHA-256 check over all its fields, so a flipped bit anywhere in a row
is found; SQLite's own structure errors (truncated or garbled file) become ``StoreError``.
Writes go into one open transaction that ``commit`` closes once per loop turn, before any
message of that turn leaves (the runtime's contract); the sync policy decides whether the
commit is fsynced.

Must never: trust a byte read back (every read is checked and a bad one raises
``StoreError`` naming the table, the row and the repair), let a SQLite exception other than
``StoreError`` escape, or open a store written for another cluster or replica.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from poe._core.codec import ST_DUPLICATE, CheckpointProof
from poe.crypto.base import Certificate
from poe.storage import hwm

FORMAT = b"poe-store/2"
# formats this version cannot read, and why: it refuses them by name (StoreVersionError)
OLD_FORMATS = {
    b"poe-store/1": "its checkpoints sign kv state digests of version 1 and its snapshot is "
                    "a kv snapshot of version 1 (a 64-request exactly-once window; this poe "
                    "keeps 1024 and digests them as version 2)",
}
DB_FILE = "ledger.db"
SYNC_POLICIES = ("batch", "checkpoint", "none")
HWM_FILE = "votes.hwm"
HWM_SYNC_INTERVAL_S = 1.0              # batch policy: the mark is fsynced at most this often
REPAIR = ("it restarts empty and abstains from every vote until a state transfer carries it "
          "past every position it may have voted on (never delete votes.hwm: without it the "
          "replica could vote again where it already voted)")
_SYNC_PRAGMA = {"batch": "FULL", "checkpoint": "NORMAL", "none": "OFF"}
_SIG_MAX = 4096


class StoreError(Exception):
    """The store is corrupt, inconsistent or foreign; ``str`` names what and the repair."""

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.what = what
        super().__init__(f"{path}: {what}; {repair(Path(path).parent)}")


class StoreVersionError(StoreError):
    """The store was written by another version of poe in a format this one cannot read.
    Not damage: never advises the repair (quarantine), which would not help either."""

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.what = what
        Exception.__init__(self, f"{path}: {what}")


class StoreMismatch(StoreError):
    """The store is not damaged but was written for another configuration or another
    replica: the configuration (or ``--id``) is the thing to check. Never advises the repair:
    quarantining an intact store over a configuration mistake would throw its ledger away."""

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.what = what
        Exception.__init__(self, f"{path}: {what}; the store itself may be intact: check the "
                           "configuration (do not quarantine or delete the store over this)")


# the settings H(B_0) is made of (poe.config.Config.genesis_config), by their names
_GENESIS_FIELDS = {"cluster": "cluster_id (cluster.keys)", "n": "replicas n",
                   "mode": "protocol.mode", "records": "data.record_count",
                   "value": "data.value_size", "seed": "data.seed",
                   "zero": "protocol.zero_payload", "protocol": "protocol.protocol"}


def describe_mismatch(stored: bytes | None, configured: bytes | None) -> str:
    """What differs between the settings a store was written with and the configuration's."""
    if stored is None or configured is None:
        return ("the configuration's genesis differs from the store's: one of cluster.keys "
                "(cluster_id and keys), protocol.mode, protocol.protocol, data.record_count, "
                "data.value_size, data.seed, protocol.zero_payload differs from the "
                "configuration this store was written with")

    def fields(text: bytes) -> dict[str, str]:
        out = {"protocol": "poe"}
        for part in text.decode(errors="replace").split("|")[1:]:
            name, _, value = part.partition("=")
            out[name] = value
        return out

    a, b = fields(stored), fields(configured)
    diffs = [f"{_GENESIS_FIELDS.get(k, k)}: store {a.get(k)!s}, configuration {b.get(k)!s}"
             for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if not diffs:
        return ("same settings but other keys: the configuration's cluster.keys file is "
                "not the one this store was written with")
    return "written with other settings (" + "; ".join(diffs) + ")"


def repair(directory: str | os.PathLike[str]) -> str:
    """The safe repair of a damaged store in ``directory`` (docs/storage.md)."""
    return (f"repair: stop this replica and run `poe ledger quarantine --data {directory}` "
            f"(moves ledger.db aside, keeps {HWM_FILE}); {REPAIR}")


def _check(tag: bytes, *fields) -> bytes:
    """SHA-256 over a tagged, length-prefixed encoding of ``fields`` (ints, bytes, None)."""
    h = hashlib.sha256(b"PoE/STORE/v1|" + tag)
    for f in fields:
        if f is None:
            h.update(b"\xff")
        elif isinstance(f, int):
            h.update(b"\x01" + f.to_bytes(9, "little", signed=True))
        else:
            b = bytes(f)
            h.update(b"\x02" + len(b).to_bytes(8, "little") + b)
    return h.digest()


_CM = struct.Struct("<IIH")            # results of one client message: client, idx, count
_OP = struct.Struct("<QBH")            # one operation: t, status, result length


def split_results(body: bytes) -> list[tuple[int, int, bool, bytes]]:
    """A block's stored results -> per client message (client, first request id, all
    duplicate, its results: ``u32 client`` and its INFORM entry, what
    ``codec.encode_inform_results`` joins). ValueError if the bytes are not results."""
    out = []
    pos, end = 0, len(body)
    while pos < end:
        if pos + _CM.size > end:
            raise ValueError(f"results truncated at byte {pos}")
        client, _idx, count = _CM.unpack_from(body, pos)
        start = pos
        pos += _CM.size
        first, duplicate = None, True
        for _ in range(count):
            if pos + _OP.size > end:
                raise ValueError(f"results truncated at byte {pos}")
            t, status, rlen = _OP.unpack_from(body, pos)
            pos += _OP.size + rlen
            if first is None:
                first = t
            duplicate = duplicate and status == ST_DUPLICATE
        if pos > end or first is None:
            raise ValueError(f"results of a client message at byte {start} are malformed")
        out.append((client, first, duplicate, body[start:pos]))
    return out


def encode_signatures(signatures) -> bytes:
    out = [struct.pack("<H", len(signatures))]
    for replica, sig in signatures:
        out.append(struct.pack("<IH", replica, len(sig)) + sig)
    return b"".join(out)


def decode_signatures(data: bytes) -> tuple | None:
    """The ((replica, signature), ...) of ``encode_signatures``; None if malformed."""
    if len(data) < 2:
        return None
    (count,), pos, out = struct.unpack_from("<H", data), 2, []
    for _ in range(count):
        if pos + 6 > len(data):
            return None
        replica, size = struct.unpack_from("<IH", data, pos)
        pos += 6
        if size > _SIG_MAX or pos + size > len(data):
            return None
        out.append((replica, bytes(data[pos:pos + size])))
        pos += size
    return tuple(out) if pos == len(data) else None


@dataclass(frozen=True)
class Block:
    seq: int
    view: int
    digest: bytes
    prev: bytes
    hash: bytes
    body: bytes | None
    cert: Certificate | None


@dataclass(frozen=True)
class StableRecord:
    proof: CheckpointProof
    snapshot: bytes


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL,
                                 chk BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (seq INTEGER PRIMARY KEY, view INTEGER NOT NULL,
    digest BLOB NOT NULL, prev BLOB NOT NULL, hash BLOB NOT NULL, body BLOB,
    cert_bitmap BLOB, cert_sig BLOB, chk BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (slot INTEGER PRIMARY KEY, seq INTEGER NOT NULL,
    state BLOB NOT NULL, chain BLOB NOT NULL, sigs BLOB NOT NULL, snapshot BLOB,
    chk BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS results (seq INTEGER PRIMARY KEY, view INTEGER NOT NULL,
    body BLOB NOT NULL, chk BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS vote_batches (seq INTEGER NOT NULL, digest BLOB NOT NULL,
    body BLOB NOT NULL, chk BLOB NOT NULL, PRIMARY KEY (seq, digest));
CREATE TABLE IF NOT EXISTS votes (kind TEXT NOT NULL, view INTEGER NOT NULL,
    seq INTEGER NOT NULL, digest BLOB NOT NULL, chk BLOB NOT NULL,
    PRIMARY KEY (kind, view, seq));
"""
_STABLE, _BASE = 0, 1                  # rows of the checkpoint table


class Store:
    """One replica's store. ``Store(dir, genesis=…, replica_id=…)`` opens or creates it."""

    def __init__(self, directory: str | os.PathLike[str], *, genesis: bytes, replica_id: int,
                 sync_policy: str = "batch", readonly: bool = False,
                 genesis_config: bytes | None = None) -> None:
        """``genesis_config``: the settings ``genesis`` was made from (Config.genesis_config);
        kept in a new store, so a later mismatch can name the setting that differs."""
        if sync_policy not in SYNC_POLICIES:
            raise ValueError(f"sync policy {sync_policy!r}: one of {', '.join(SYNC_POLICIES)}")
        self.dir = Path(directory)
        self.path = self.dir / DB_FILE
        self.sync_policy = sync_policy
        self.genesis = genesis
        self.genesis_config = genesis_config
        self.dirty = False
        self.writes = 0
        # the vote high-water mark (votes.hwm, poe/storage/hwm.py): checked against the
        # database's commit counter at every open
        self.hwm_path = self.dir / HWM_FILE
        self.commits = 0
        self.hwm_seq = self.hwm_view = 0
        self.floor_seq = self.floor_view = 0
        self._hwm: hwm.Writer | None = None
        self._hwm_synced = -1e18              # monotonic time of the last fsync of the mark
        try:
            if readonly:
                if not self.path.is_file():
                    raise StoreError(self.path, "no ledger database here")
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                          isolation_level=None)
            else:
                self.dir.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, isolation_level=None)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute(f"PRAGMA synchronous={_SYNC_PRAGMA[sync_policy]}")
            ok = self.db.execute("PRAGMA quick_check").fetchone()
            if ok is None or ok[0] != "ok":
                raise StoreError(self.path, f"SQLite integrity check failed: {ok}")
            if not readonly:
                self.db.executescript(_SCHEMA)
            self._check_meta(replica_id, readonly)
            self._check_hwm(readonly)
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"unreadable database ({exc})") from None
        if not readonly:
            self.db.execute("BEGIN")

    # ---------------------------------------------------------------- meta

    def _meta_get(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value, chk FROM meta WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        if _check(b"meta", key.encode(), row[0]) != row[1]:
            raise StoreError(self.path, f"meta row {key!r} fails its check")
        return bytes(row[0])

    def _meta_set(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?,?,?)",
                        (key, value, _check(b"meta", key.encode(), value)))
        self.dirty = True

    def _meta_int(self, key: str, default: int) -> int:
        value = self._meta_get(key)
        return default if value is None else int.from_bytes(value, "little", signed=True)

    def _check_meta(self, replica_id: int, readonly: bool) -> None:
        fmt = self._meta_get("format") if self._has_meta() else None
        if fmt is None:
            if readonly:
                raise StoreError(self.path, "not a poe store (no format record)")
            self.db.execute("BEGIN")
            self._meta_set("format", FORMAT)
            self._meta_set("genesis", self.genesis)
            if self.genesis_config is not None:
                self._meta_set("genesis-config", self.genesis_config)
            self._meta_set("replica", replica_id.to_bytes(4, "little"))
            self.db.execute("COMMIT")
            self.dirty = False
            self.replica_id = replica_id
            return
        if fmt in OLD_FORMATS:
            raise StoreVersionError(self.path, (
                f"store format {fmt.decode()} was written by an older poe and this one "
                f"writes {FORMAT.decode()}: {OLD_FORMATS[fmt]}. Its ledger cannot be "
                "continued by this version (no replica of it would agree on a checkpoint): "
                "run the poe that wrote it, or start the whole cluster afresh with empty "
                "data directories"))
        if fmt != FORMAT:
            raise StoreError(self.path, f"unknown store format {fmt!r}")
        if self._meta_get("genesis") != self.genesis:
            raise StoreMismatch(self.path, "written for another cluster or configuration: "
                                + describe_mismatch(self._meta_get("genesis-config"),
                                                    self.genesis_config))
        stored = self._meta_get("replica")
        if replica_id >= 0 and (stored is None or int.from_bytes(stored, "little")
                                != replica_id):
            owner = "" if stored is None else f" (replica {int.from_bytes(stored, 'little')})"
            raise StoreMismatch(self.path, f"written by another replica{owner}, not replica "
                                f"{replica_id} (check --id and replica.data_dir)")
        self.replica_id = int.from_bytes(stored or b"\0", "little")

    def _has_meta(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone() \
            is not None

    @property
    def view(self) -> int:
        return self._meta_int("view", 0)

    @property
    def left_view(self) -> int:
        return self._meta_int("left", -1)

    def set_view(self, view: int) -> None:
        self.hwm_view = max(self.hwm_view, view)
        self._meta_set("view", view.to_bytes(8, "little", signed=True))

    def set_left(self, view: int) -> None:
        self.hwm_view = max(self.hwm_view, view)
        if view > self.left_view:
            self._meta_set("left", view.to_bytes(8, "little", signed=True))

    def set_new_view(self, view: int, frame: bytes) -> None:
        """The NV-PROPOSE that began ``view`` (sent as its primary, or accepted), as an
        unauthenticated frame: its content (nf signed VC-REQUESTs) verifies itself. A
        replica restarted inside ``view`` knows how it began (PROTOCOL.md §4.11)."""
        self._meta_set("nv", view.to_bytes(8, "little", signed=True) + bytes(frame))

    def new_view(self) -> tuple[int, bytes] | None:
        """(view, NV-PROPOSE frame) of the newest view whose beginning is stored."""
        value = self._meta_get("nv")
        if value is None:
            return None
        if len(value) < 8:
            raise StoreError(self.path, "the stored NV-PROPOSE is malformed")
        return int.from_bytes(value[:8], "little", signed=True), value[8:]

    # ---------------------------------------------------------------- vote high-water mark

    def _check_hwm(self, readonly: bool) -> None:
        """The database must hold every commit ``votes.hwm`` says was made (docs/storage.md,
        "Store corruption"): else a torn or corrupted write-ahead log (or an older copy of
        ledger.db) lost committed transactions, and with them votes the replica may have
        sent. Read before the database's counter: a record is written after its commit."""
        try:
            mark, damaged, exists = hwm.read(self.hwm_path)
        except OSError as exc:
            raise StoreError(self.hwm_path, f"unreadable ({exc.strerror})") from None
        self.commits = self._meta_int("commits", 0)
        if not exists:
            if self.commits > 0:
                raise StoreError(self.path, f"{HWM_FILE} is missing but the store made "
                                 f"{self.commits} commits: what it voted cannot be proven")
            mark = hwm.Mark()                 # a new store (or one from before votes.hwm)
        elif mark is None:
            raise StoreError(self.hwm_path, "no record passes its check: the highest "
                             "position this replica voted on is unknown")
        elif self.commits < hwm.required_commit(mark, damaged):
            raise StoreError(self.path, (
                f"holds {self.commits} commits but {HWM_FILE} records "
                f"{hwm.required_commit(mark, damaged)}: committed transactions were lost (a "
                f"torn or corrupted {DB_FILE}-wal, or an older copy of {DB_FILE}), so it "
                f"cannot prove what it voted up to sequence {mark.seq} (view {mark.view})"))
        seq, view = self._db_hwm()
        self.hwm_seq, self.hwm_view = max(mark.seq, seq), max(mark.view, view)
        self.floor_seq, self.floor_view = mark.floor_seq, mark.floor_view
        if readonly:
            return
        if not exists or damaged:
            hwm.replace(self.hwm_path, self._mark())
        self._hwm = hwm.Writer(self.hwm_path)

    def _db_hwm(self) -> tuple[int, int]:
        """(highest sequence number, highest view) the database holds anything for."""
        seq = 0
        for table in ("votes", "checkpoint", "blocks"):
            if self.db.execute("SELECT 1 FROM sqlite_master WHERE name=?", (table,))\
                    .fetchone() is not None:
                top = self.db.execute(f"SELECT max(seq) FROM {table}").fetchone()[0]
                if type(top) is int:
                    seq = max(seq, top)
        if not self._has_meta():
            return seq, 0
        return seq, max(self.view, self.left_view, 0)

    def _mark(self) -> hwm.Mark:
        return hwm.Mark(self.commits, self.hwm_seq, self.hwm_view, self.floor_seq,
                        self.floor_view)

    def note_evidence(self, seq: int) -> None:
        """A VC-REQUEST is about to report evidence up to ``seq`` (the replica's max_seen)."""
        if seq > self.hwm_seq:
            self.hwm_seq = seq
            self.dirty = True

    # ---------------------------------------------------------------- votes

    def persist_vote(self, kind: str, view: int, seq: int, digest: bytes) -> bool:
        """Record a vote; False (and nothing written) if a different one is already durable
        for (kind, view, seq): sending it would be equivocation."""
        self.hwm_seq = max(self.hwm_seq, seq)
        row = self.db.execute("SELECT digest, chk FROM votes WHERE kind=? AND view=? AND seq=?",
                              (kind, view, seq)).fetchone()
        if row is not None:
            if _check(b"vote", kind.encode(), view, seq, row[0]) != row[1]:
                raise StoreError(self.path, f"{kind} vote ({view}, {seq}) fails its check")
            return bytes(row[0]) == digest
        self.db.execute("INSERT INTO votes VALUES (?,?,?,?,?)",
                        (kind, view, seq, digest, _check(b"vote", kind.encode(), view, seq,
                                                         digest)))
        self.dirty = True
        return True

    def persist_vote_batch(self, seq: int, digest: bytes, body: bytes) -> None:
        """The batch a durable vote (the PBFT baseline's COMMIT) is for: after a power cut
        of the whole cluster a prepared batch may exist nowhere else."""
        self.db.execute("INSERT OR IGNORE INTO vote_batches VALUES (?,?,?,?)",
                        (seq, digest, body, _check(b"vote-batch", seq, digest, body)))
        self.dirty = True

    def vote_batches(self):
        """(seq, digest, body) of every durable vote batch, each row checked."""
        try:
            cur = self.db.execute("SELECT * FROM vote_batches ORDER BY seq")
            for seq, digest, body, chk in cur:
                if type(seq) is not int or type(digest) is not bytes \
                        or type(body) is not bytes or type(chk) is not bytes:
                    raise StoreError(self.path, f"vote batch row {seq!r} is malformed")
                if _check(b"vote-batch", seq, digest, body) != chk:
                    raise StoreError(self.path, f"vote batch {seq} fails its row check")
                yield seq, bytes(digest), bytes(body)
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"unreadable vote_batches table ({exc})") from None

    def votes(self):
        """Every durable vote as (kind, view, seq, digest), each row checked (a bad row raises
        ``StoreError`` naming it)."""
        try:
            cur = self.db.execute("SELECT kind, view, seq, digest, chk FROM votes "
                                  "ORDER BY kind, view, seq")
            for kind, view, seq, digest, chk in cur:
                if type(kind) is not str or type(view) is not int or type(seq) is not int \
                        or type(digest) is not bytes or type(chk) is not bytes:
                    raise StoreError(self.path, f"vote row ({kind!r}, {view!r}, {seq!r}) is "
                                     "malformed")
                if _check(b"vote", kind.encode(), view, seq, digest) != chk:
                    raise StoreError(self.path, f"{kind} vote ({view}, {seq}) fails its row "
                                     "check (bit flip or partial write)")
                yield kind, view, seq, digest
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"unreadable votes table ({exc})") from None

    # ---------------------------------------------------------------- ledger

    def append_block(self, b: Block, results: bytes | None = None) -> None:
        """B_k becomes the head: every block at or above k is replaced. ``results``: the
        kv results of its batch (per message: client id and INFORM entry, concatenated), kept so that a restarted
        replica answers a client's retry of it as before the crash."""
        self.db.execute("DELETE FROM blocks WHERE seq>=?", (b.seq,))
        self.db.execute("DELETE FROM results WHERE seq>=?", (b.seq,))
        if results is not None:
            self.db.execute("INSERT INTO results VALUES (?,?,?,?)",
                            (b.seq, b.view, results,
                             _check(b"results", b.seq, b.view, results)))
        bitmap = b.cert.bitmap if b.cert is not None else None
        sig = b.cert.signature if b.cert is not None else None
        self.db.execute("INSERT INTO blocks VALUES (?,?,?,?,?,?,?,?,?)",
                        (b.seq, b.view, b.digest, b.prev, b.hash, b.body, bitmap, sig,
                         _check(b"block", b.seq, b.view, b.digest, b.prev, b.hash, b.body,
                                bitmap, sig)))
        self.dirty = True

    def keep_block(self, seq: int, view: int, digest: bytes, cert: Certificate | None) -> bool:
        """Block ``seq`` (digest ``digest``) was kept by a view change and certified again
        in ``view``: it now stands as certified in that view (TS: with that view's
        certificate). False, and nothing written, if the ledger holds another block there."""
        row = self.db.execute("SELECT view, digest, prev, hash, body FROM blocks WHERE seq=?",
                              (seq,)).fetchone()
        if row is None or bytes(row[1]) != digest or row[0] > view:
            return False
        bitmap = cert.bitmap if cert is not None else None
        sig = cert.signature if cert is not None else None
        self.db.execute("UPDATE blocks SET view=?, cert_bitmap=?, cert_sig=?, chk=? WHERE seq=?",
                        (view, bitmap, sig,
                         _check(b"block", seq, view, digest, row[2], row[3], row[4], bitmap,
                                sig), seq))
        # its INFORMs are sent again under the new view: so are the stored ones
        held = self.db.execute("SELECT body FROM results WHERE seq=?", (seq,)).fetchone()
        if held is not None:
            self.db.execute("UPDATE results SET view=?, chk=? WHERE seq=?",
                            (view, _check(b"results", seq, view, held[0]), seq))
        self.dirty = True
        return True

    def truncate_above(self, seq: int) -> None:
        """A rollback: the blocks above ``seq`` leave the ledger, their bodies stay as
        evidence bodies (``vote_batches``) until a stable checkpoint passes them: a later
        view may still select their certificate, and a FETCH must find them (§4.11)."""
        rows = self.db.execute("SELECT seq, digest, body FROM blocks WHERE seq>? AND "
                               "body IS NOT NULL", (seq,)).fetchall()
        for k, digest, body in rows:
            self.persist_vote_batch(k, bytes(digest), bytes(body))
        self.db.execute("DELETE FROM blocks WHERE seq>?", (seq,))
        self.db.execute("DELETE FROM results WHERE seq>?", (seq,))
        self.dirty = True

    def blocks(self, above: int = -1):
        """Blocks with seq > ``above`` in order, each checked against its row check."""
        try:
            cur = self.db.execute("SELECT * FROM blocks WHERE seq>? ORDER BY seq", (above,))
            for row in cur:
                seq, view, digest, prev, head, body, bitmap, sig, chk = row
                if type(seq) is not int or type(view) is not int \
                        or any(type(x) is not bytes or len(x) != 32 for x in (digest, prev, head))\
                        or any(x is not None and type(x) is not bytes for x in (body, bitmap, sig))\
                        or (bitmap is None) != (sig is None) or type(chk) is not bytes:
                    raise StoreError(self.path, f"block row {seq!r} is malformed")
                if _check(b"block", seq, view, digest, prev, head, body, bitmap, sig) != chk:
                    raise StoreError(self.path, f"block {seq} fails its row check "
                                     "(bit flip or partial write)")
                cert = Certificate(bytes(bitmap), bytes(sig)) if bitmap is not None else None
                yield Block(seq, view, bytes(digest), bytes(prev), bytes(head),
                            None if body is None else bytes(body), cert)
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"unreadable blocks table ({exc})") from None

    def results(self, upto: int):
        """(seq, view, results) of the blocks at or below ``upto``, newest first, each
        checked against its row check."""
        try:
            cur = self.db.execute("SELECT * FROM results WHERE seq<=? ORDER BY seq DESC",
                                  (upto,))
            for seq, view, body, chk in cur:
                if type(seq) is not int or type(view) is not int or type(body) is not bytes \
                        or type(chk) is not bytes:
                    raise StoreError(self.path, f"results row {seq!r} is malformed")
                if _check(b"results", seq, view, body) != chk:
                    raise StoreError(self.path, f"results of block {seq} fail their row "
                                     "check (bit flip or partial write)")
                yield seq, view, body
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"unreadable results table ({exc})") from None

    def head(self) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT seq, hash FROM blocks ORDER BY seq DESC LIMIT 1")\
            .fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    # ---------------------------------------------------------------- checkpoints

    def _set_checkpoint(self, slot: int, proof: CheckpointProof, snapshot: bytes | None) -> None:
        sigs = encode_signatures(proof.signatures)
        self.db.execute("INSERT OR REPLACE INTO checkpoint VALUES (?,?,?,?,?,?,?)",
                        (slot, proof.seq, proof.state_digest, proof.chain_digest, sigs,
                         snapshot, _check(b"checkpoint", slot, proof.seq, proof.state_digest,
                                          proof.chain_digest, sigs, snapshot)))
        self.dirty = True

    def _get_checkpoint(self, slot: int) -> StableRecord | None:
        try:
            row = self.db.execute("SELECT * FROM checkpoint WHERE slot=?", (slot,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"unreadable checkpoint table ({exc})") from None
        if row is None:
            return None
        _, seq, state, chain, sigs, snapshot, chk = row
        name = "stable checkpoint" if slot == _STABLE else "ledger base"
        if _check(b"checkpoint", slot, seq, state, chain, sigs, snapshot) != chk:
            raise StoreError(self.path, f"{name} {seq} fails its row check")
        signatures = decode_signatures(bytes(sigs))
        if signatures is None or len(state) != 32 or len(chain) != 32:
            raise StoreError(self.path, f"{name} {seq} is malformed")
        proof = CheckpointProof(seq, bytes(state), bytes(chain), signatures)
        return StableRecord(proof, b"" if snapshot is None else bytes(snapshot))

    def set_stable(self, proof: CheckpointProof, snapshot: bytes) -> None:
        """The new stable checkpoint; votes at or below it are no longer needed."""
        self._set_checkpoint(_STABLE, proof, snapshot)
        self.db.execute("DELETE FROM votes WHERE seq<=?", (proof.seq,))
        self.db.execute("DELETE FROM vote_batches WHERE seq<=?", (proof.seq,))
        if self.sync_policy == "checkpoint":
            # outside any transaction: a WAL checkpoint fsyncs the WAL and the database
            self._commit(wal_checkpoint=True)

    def stable(self) -> StableRecord | None:
        return self._get_checkpoint(_STABLE)

    def set_base(self, proof: CheckpointProof) -> None:
        """After a state transfer: the ledger starts at ``proof`` (blocks below are unknown
        here)."""
        self.db.execute("DELETE FROM blocks")
        self.db.execute("DELETE FROM results")
        self._set_checkpoint(_BASE, proof, None)

    def base(self) -> CheckpointProof:
        """The proof the chain starts from: the transfer base, else genesis (seq 0)."""
        record = self._get_checkpoint(_BASE)
        if record is None:
            return CheckpointProof(0, b"\0" * 32, self.genesis, ())
        return record.proof

    # ---------------------------------------------------------------- transactions

    def commit(self) -> None:
        """Close the open transaction (fsynced as the sync policy says) and open the next."""
        if self.dirty:
            self._commit()

    def _commit(self, wal_checkpoint: bool = False) -> None:
        """COMMIT with the next commit counter, then its votes.hwm record: written at every
        commit (a kill -9 cannot lose it: the kernel holds it), fsynced at WAL checkpoints
        and, under ``batch``, at most every HWM_SYNC_INTERVAL_S (docs/storage.md: a second
        fdatasync per commit cost a third of the throughput)."""
        self.commits += 1
        self._meta_set("commits", self.commits.to_bytes(8, "little", signed=True))
        self.db.execute("COMMIT")
        if wal_checkpoint:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        if self._hwm is not None:
            sync = wal_checkpoint
            if self.sync_policy == "batch":
                now = time.monotonic()
                if now - self._hwm_synced >= HWM_SYNC_INTERVAL_S:
                    self._hwm_synced, sync = now, True
            self._hwm.write(self._mark(), sync)
        self.db.execute("BEGIN")
        self.dirty = False
        self.writes += 1

    def close(self) -> None:
        try:
            if self.dirty and self.db.in_transaction:
                self._commit()
            if self.db.in_transaction:
                self.db.execute("COMMIT")
        finally:
            self.db.close()
            if self._hwm is not None:
                self._hwm.close()
