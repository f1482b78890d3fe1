"""Check a replica's store: the hash chain, every block's digest and certificate, the ledger
base and the stable checkpoint (its nf signatures and its snapshot's state digest).

What it is for: ``check_store`` is run by the replica before it starts on a store (a bad
store stops it with the repair message) and by ``poe ledger verify``. It reports the
height, the head hash and the first bad block with the reason.

In TS mode a block above the stable checkpoint must carry a certificate of its view; one at
or below it is proven by the checkpoint's nf signatures on the chain digest (and its
certificate, when stored, is checked too). In MAC mode there is no certificate: the client
signatures of every batch are checked instead (above ``certs_above``), since a replica may
re-execute those batches on restart (poe/storage/restore.py). Every vote row is checked too,
and the SUPPORT votes are reported (``Report.support_votes``) for the restore.

Must never: modify the store, raise anything but ``StoreError`` on hostile bytes, or call a
store good that has a block whose digest, hash, link or certificate does not check.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from poe._core.codec import Batch, CheckpointProof, WireError
from poe._core.digest import batch_digest, block_hash
from poe._core.kv import KVStore
from poe.crypto.base import client as client_party
from poe.crypto.statements import support_statement
from poe.protocol.poe.clients import first_bad_client_signature
from poe.protocol.poe.view_change import NOOP_DIGEST, checkpoint_proof_ok
from poe.storage.store import Store, StoreError, split_results


@dataclass
class Report:
    height: int                      # seq of the last good block (or of the base)
    head: bytes                      # its hash
    blocks: int                      # blocks checked
    base: CheckpointProof
    stable: CheckpointProof | None
    snapshot: bytes | None
    bad: tuple[int, str] | None = None   # (seq, reason) of the first bad block
    # our durable SUPPORT votes (a primary's PROPOSE included): (view, seq) -> digest
    support_votes: dict[tuple[int, int], bytes] = field(default_factory=dict)
    # the PBFT baseline's durable COMMIT votes: (view, seq) -> digest
    commit_votes: dict[tuple[int, int], bytes] = field(default_factory=dict)
    # and the batches they are for: (seq, digest) -> Batch (digest checked)
    vote_batches: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.bad is None


def check_store(store: Store, suite, *, n: int, nf: int, ts: bool,
                certs_above: int = -1) -> Report:
    """Walk the chain; certificates (TS) or client signatures (MAC) are verified for blocks
    above ``certs_above``.

    A problem outside the blocks (base, stable checkpoint, snapshot) raises StoreError; a
    bad block is reported in ``Report.bad`` (the walk stops there)."""
    genesis = store.genesis
    base = store.base()
    if not checkpoint_proof_ok(base, nf, n, suite, genesis):
        raise StoreError(store.path, f"the ledger base at {base.seq} has no valid proof")
    record = store.stable()
    stable = snapshot = None
    if record is not None:
        stable, snapshot = record.proof, record.snapshot
        if stable.seq < base.seq or not checkpoint_proof_ok(stable, nf, n, suite, genesis):
            raise StoreError(store.path, f"stable checkpoint {stable.seq} has no valid proof")
        try:
            kv = KVStore.restore(snapshot)
        except ValueError as exc:
            raise StoreError(store.path, f"snapshot of checkpoint {stable.seq}: {exc}") \
                from None
        if kv.executed_seq != stable.seq or kv.state_digest() != stable.state_digest:
            raise StoreError(store.path, f"snapshot of checkpoint {stable.seq} does not hash "
                             "to its proof's state digest")
    report = Report(base.seq, base.chain_digest, 0, base, stable, snapshot)
    for kind, view, seq, digest in store.votes():
        if kind == "support" or kind == "commit":
            if len(digest) != 32:
                raise StoreError(store.path, f"{kind} vote ({view}, {seq}) is malformed")
            votes = report.support_votes if kind == "support" else report.commit_votes
            votes[view, seq] = digest
    for seq, digest, body in store.vote_batches():
        try:
            batch = Batch.from_body(body)
        except (WireError, ValueError) as exc:
            raise StoreError(store.path, f"vote batch {seq}: does not decode ({exc})") \
                from None
        if batch_digest(batch) != digest:
            raise StoreError(store.path, f"vote batch {seq}: does not hash to its digest")
        report.vote_batches[seq, digest] = batch
    if suite is None:
        verify_cert = None                   # no keys: a block that needs them is not good
    else:
        verify_cert = suite.threshold.verify_cert if ts else suite.verifier.verify
    for b in store.blocks():
        covered = stable is not None and b.seq <= stable.seq
        reason = _block_problem(b, report, ts, verify_cert, b.seq > certs_above, covered)
        if reason is not None:
            report.bad = (b.seq, reason)
            return report
        report.height, report.head = b.seq, b.hash
        report.blocks += 1
        if stable is not None and b.seq == stable.seq and b.hash != stable.chain_digest:
            report.bad = (b.seq, "differs from the stable checkpoint's chain digest")
            return report
    for seq, _view, body in store.results(report.height):    # row checks, then the layout
        try:
            split_results(body)
        except ValueError as exc:
            raise StoreError(store.path, f"results of block {seq}: {exc}") from None
    if stable is not None and report.height < stable.seq:
        report.bad = (report.height + 1, (f"missing: the ledger ends at {report.height}, "
                                          f"below the stable checkpoint {stable.seq}"))
    if stable is not None and stable.seq == base.seq and stable.chain_digest != \
            base.chain_digest:
        raise StoreError(store.path, "stable checkpoint and ledger base disagree")
    return report


def _block_problem(b, report: Report, ts: bool, verify_cert, check_cert: bool,
                   covered: bool) -> str | None:
    """Why block ``b`` is bad, or None. ``covered``: at or below the stable checkpoint, whose
    nf signatures vouch for its chain digest and so, through the links, for this block: it
    may lack its certificate (the window moved past it in the turn it was executed).
    ``verify_cert``: the threshold verifier's (TS) or the signature verifier's (MAC)."""
    batch = None
    if b.seq != report.height + 1:
        return f"out of sequence: expected block {report.height + 1}"
    if b.prev != report.head:
        return "previous hash does not match the block before it"
    if block_hash(b.seq, b.digest, b.prev) != b.hash:
        return "block hash does not match H(k, digest, previous hash)"
    if b.body is None:
        if b.digest != NOOP_DIGEST:
            return "batch missing"
    else:
        try:
            batch = Batch.from_body(b.body)
        except (WireError, ValueError) as exc:
            return f"batch does not decode ({exc})"
        if batch_digest(batch) != b.digest:
            return "batch does not hash to the block's digest"
    if ts and check_cert:
        if b.cert is None:
            return None if covered else "certificate missing"
        if verify_cert is None:
            return "certificates cannot be checked without the cluster's keys"
        if not verify_cert(b.cert, support_statement(b.view, b.seq, b.digest)):
            return "certificate does not verify"
    elif not ts and check_cert and batch is not None:
        if verify_cert is None:
            return "client signatures cannot be checked without the cluster's keys"
        bad = first_bad_client_signature(verify_cert, batch, client_party)
        if bad >= 0:
            return f"client message {bad} of the batch has no valid client signature"
    return None
