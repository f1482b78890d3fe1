"""What a replica's actions write into its store: one implementation for every driver.

What it is for: ``LedgerWriter(store, replica, counters).write(action)`` carries out the
durable part of one protocol action (``poe.protocol.actions``) in the store's open
transaction: Executed appends the block (batch, and in TS mode the certificate of the view
it was certified in) and its results (the replies a restarted replica answers retries
with), Persist writes a vote, the view, the view the replica asked to leave,
or a block kept by a view change (now certified in the new view), Stable writes the proof
and the snapshot, RolledBack truncates the ledger, Transferred records the new base. The
networked runtime (``poe.runtime.replica``) and the simulator's durable mode
(``poe.sim.cluster``) both write through it, so the swarm's crash-and-restore runs test the
very code a real replica persists with; the driver commits once per turn, before any frame
of that turn leaves.

What it must never do: write a vote that contradicts one already durable for the same view
and sequence (``write`` returns False: the driver must not send the frames that follow), or
write a block whose chain link it cannot name.
"""
from __future__ import annotations

from collections import Counter

from poe._core.digest import block_hash
from poe.protocol.actions import (
    Broadcast, Executed, Persist, RolledBack, Send, Stable, Transferred,
)
from poe.storage.store import Block, Store

_FRAMES = (Send, Broadcast)
_DURABLE = (Executed, Persist, Stable, RolledBack, Transferred)


class LedgerWriter:
    """The store side of one replica's actions (see the module docstring)."""

    def __init__(self, store: Store, replica, counters: Counter, on_refused=None) -> None:
        self.store = store
        self.replica = replica
        self.counters = counters
        self.on_refused = on_refused      # on_refused(record): a vote was not written

    def write_turn(self, actions) -> list:
        """Write the durable part of every action of one handler call, in order; returns
        the actions to carry out. The frames that follow a refused vote (up to the next
        action that is not a frame) are dropped and counted as ``equivocation-refused``:
        they would contradict what this replica said before."""
        kept = []
        skip = False
        for a in actions:
            t = type(a)
            if t in _FRAMES:
                if skip:
                    self.counters["equivocation-refused"] += 1
                    continue
            else:
                skip = False
                if t in _DURABLE and not self.write(a):
                    skip = True
                    if self.on_refused is not None:
                        self.on_refused(a.record)
            kept.append(a)
        return kept

    def write(self, a) -> bool:
        """Write action ``a`` (others are ignored); False when a vote was refused."""
        t = type(a)
        if t is Executed:
            self._block(a)
        elif t is Persist:
            return self._persist(a.record)
        elif t is Stable:
            self._stable(a)
        elif t is RolledBack:
            self.store.truncate_above(a.seq)
        elif t is Transferred:
            # the action's own proof: the turn may have moved the replica on since
            proof = a.proof if a.proof is not None else self.replica.checkpoints.stable
            if proof.seq == a.seq:
                self.store.set_base(proof)
            else:
                self.counters["base-not-stored"] += 1
        return True

    def _persist(self, record: tuple) -> bool:
        kind = record[0]
        store = self.store
        if kind == "support" or kind == "commit":        # commit: the PBFT baseline's
            if not store.persist_vote(kind, record[1], record[2], record[3]):
                return False
            if len(record) > 4 and record[4] is not None:   # the batch the vote is for
                body = record[4]
                store.persist_vote_batch(record[2], record[3],
                                         body if type(body) is bytes else body.body())
            return True
        if kind == "checkpoint":
            store.persist_vote("checkpoint", 0, record[1], record[2] + record[3])
        elif kind == "view-change":
            store.set_left(record[1])
            store.note_evidence(self.replica.max_seen)   # what its VC-REQUEST may report
        elif kind == "view":
            store.set_view(record[1])
        elif kind == "nv-propose":
            store.set_new_view(record[1], record[2])
        elif kind == "kept":
            self._kept(record[1], record[2], record[3])
        return True

    def _kept(self, view: int, seq: int, digest: bytes) -> None:
        """A block kept by a view change is certified in ``view`` now: the store says so (TS:
        with that view's certificate), so a restart in this view restores it."""
        r = self.replica
        slot = r.window.payload(seq) if r.window.contains(seq) else None
        cert = slot.cert if slot is not None and slot.cert_view == view \
            and slot.cert_digest == digest else None
        if (r.ts and cert is None) or not self.store.keep_block(seq, view, digest, cert):
            self.counters["kept-not-stored"] += 1

    def _block(self, a: Executed) -> None:
        r = self.replica
        # the head it was chained to, carried by the action: the replica may have moved on
        # in the same turn (a stable checkpoint drops block_hashes below it), and the store's
        # head may be a block of an older view above it (swarm PBFT seed 95, issue 13)
        prev = a.prev if a.prev is not None else r.block_hashes.get(a.seq - 1)
        if prev is None or block_hash(a.seq, a.digest, prev) != a.block_hash:
            head = self.store.head()
            prev = head[1] if head is not None and head[0] == a.seq - 1 else \
                self.store.base().chain_digest
        # the window may already have moved past seq (its checkpoint became stable in the
        # same turn): then the block is covered by the stable checkpoint's chain digest
        slot = r.window.payload(a.seq) if r.window.contains(a.seq) else None
        cert = None
        if slot is not None and slot.cert is not None and slot.cert_view == a.view \
                and slot.cert_digest == a.digest:
            cert = slot.cert
        body = a.batch.body() if a.batch is not None else None
        results = a.results.buffer if a.results is not None and a.batch is not None else None
        self.store.append_block(Block(a.seq, a.view, a.digest, prev, a.block_hash, body, cert),
                                results)

    def _stable(self, a: Stable) -> None:
        r = self.replica
        proof = r.checkpoints.stable
        snapshot = r.snapshot_bytes(a.seq)     # encoded now if only captured (issue 15)
        if proof.seq != a.seq or snapshot is None:
            self.counters["stable-not-stored"] += 1
            return
        self.store.set_stable(proof, snapshot)
