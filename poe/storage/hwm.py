"""The vote high-water mark beside a replica's ledger: ``<data_dir>/replica-<i>/votes.hwm``.

What it is for (PROTOCOL.md §4.11, last paragraph; docs/storage.md, "Store corruption"): SQLite
replays its write-ahead log only up to the first frame whose checksum fails, so one flipped
byte in ``ledger.db-wal`` makes the database open without the tail of its committed
transactions -- silently, and with the votes of that tail forgotten. This file is the
witness that makes such a loss visible. After every commit of the store (one per loop turn,
before any frame of the turn leaves) the store writes one fixed-size record here:

    magic "PoEw" | commit | seq | view | floor_seq | floor_view     (u64 each, little endian)
    | blake2b-64 of the above

``commit`` is the store's commit counter (also kept in the database, meta ``commits``, in the
same transaction), ``seq`` the highest sequence number the replica ever voted on (SUPPORT,
PROPOSE, COMMIT, CHECKPOINT) or reported evidence for (its ``max_seen`` when it sent a
VC-REQUEST), ``view`` the highest view it installed or asked to leave, and ``floor_*`` the
mark carried over by ``poe ledger quarantine``: the replica abstains from voting until its
stable checkpoint reaches ``floor_seq`` and never sends an NV-PROPOSE for a view up to
``floor_view``.

Two slots, written in place alternately (commit ``c`` goes to slot ``c % 2``), each with its
own checksum: the file never grows, and a torn write damages only the slot being written,
whose commit is then the other slot's plus one. The database is committed before the record
is written, so the database must hold at least the newest record's commit (plus one when a
slot is damaged); if it holds less, committed transactions were lost and the replica cannot
prove what it voted.

Must never: be written before the database commit it describes (a crash between the two
would look like a lost tail), grow without bound, or be trusted without its checksum.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"PoEw"
_BODY = struct.Struct("<4sQQQQQ")
_CHECK = 8
SIZE = _BODY.size + _CHECK                  # 52 bytes a slot
SLOTS = 2


@dataclass(frozen=True)
class Mark:
    commit: int = 0          # the store's commit counter
    seq: int = 0             # highest sequence number voted on / reported evidence for
    view: int = 0            # highest view installed or asked to leave
    floor_seq: int = 0       # abstain from voting until the stable checkpoint reaches it
    floor_view: int = 0      # no NV-PROPOSE for a view up to it


def _check(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_CHECK, person=b"poe-votes.hwm").digest()


def encode(m: Mark) -> bytes:
    body = _BODY.pack(MAGIC, m.commit, m.seq, m.view, m.floor_seq, m.floor_view)
    return body + _check(body)


def decode(data: bytes) -> Mark | None:
    """The mark of one slot, or None if the slot is damaged (torn, flipped, foreign)."""
    if len(data) != SIZE or _check(data[:_BODY.size]) != data[_BODY.size:]:
        return None
    magic, *fields = _BODY.unpack_from(data)
    return Mark(*fields) if magic == MAGIC else None


def read(path: Path) -> tuple[Mark | None, bool, bool]:
    """(newest good mark, some slot damaged, file exists). OSError if unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, False, False
    marks = [decode(data[i * SIZE:(i + 1) * SIZE]) for i in range(SLOTS)]
    good = [m for m in marks if m is not None]
    damaged = len(good) < SLOTS or len(data) != SLOTS * SIZE
    return (max(good, key=lambda m: m.commit) if good else None), damaged, True


def required_commit(mark: Mark, damaged: bool) -> int:
    """The fewest commits the database must hold: a damaged slot was being written with the
    next commit, and a record is written only after its commit is in the database."""
    return mark.commit + (1 if damaged else 0)


def replace(path: Path, mark: Mark) -> None:
    """Write a fresh file holding ``mark`` in both slots (atomically: temp, fsync, rename,
    fsync of the directory)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(encode(mark) * SLOTS)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Writer:
    """The open file the store writes one record into after each commit."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "r+b", buffering=0)  # noqa: SIM115 (open for the store's life)
        self.fd = self.file.fileno()

    def write(self, mark: Mark, sync: bool) -> None:
        os.pwrite(self.fd, encode(mark), (mark.commit % SLOTS) * SIZE)
        if sync:
            os.fdatasync(self.fd)

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        self.file.close()
