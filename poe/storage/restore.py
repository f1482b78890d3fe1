"""Put a freshly built PoEReplica back where its store says it was (recovery, issue #7).

What it is for: ``restore(replica, store, report, now)`` runs once, before the replica
handles any message. It touches exactly these attributes of ``PoEReplica``:

* from the last stable checkpoint (proof verified and snapshot hashed by ``check_store``):
  ``kv`` (restored snapshot), ``k_exec``, ``head``, ``block_hashes`` = {seq: chain digest},
  ``window.advance(seq)``, ``checkpoints.make_stable(proof)``, ``snapshots`` = {seq: bytes},
  ``max_seen``, ``next_k``;
* ``view`` = the last installed view in the store;
* in TS mode, for each stored block above the checkpoint whose certificate is of that view
  (verified by ``check_store``), in order and without a gap: the window slot's proposal
  view, batch, digest and certificate, marked committed — exactly what receiving PROPOSE and
  CERTIFY of the current view would set — then ``_progress`` executes them as the normal
  case would (PROTOCOL.md §2.8);
* if the store says the replica had asked to leave that view (VC-REQUEST sent), it asks
  again through ``start_view_change`` instead of executing anything in it (§4.2).

The rest comes from peers: FETCH inside the window, state transfer beyond it (§5.5).

Must never: execute a block that lacks a valid certificate of the replica's current view,
execute anything in a view the replica asked to leave, or adopt a snapshot whose digest is
not the nf-signed state digest.
"""
from __future__ import annotations

from poe._core.codec import Batch
from poe._core.kv import KVStore
from poe.storage.store import Store
from poe.storage.verify import Report


def restore(replica, store: Store, report: Report, now: float) -> tuple[list, int]:
    """Returns (actions for the driver, number of blocks re-executed)."""
    out: list = []
    stable = report.stable
    if stable is not None and stable.seq > 0:
        kv = KVStore.restore(report.snapshot, seed=replica.config.kv_seed,
                             zero_payload=replica.config.zero_payload)
        replica.kv = kv
        replica.k_exec = stable.seq
        replica.head = stable.chain_digest
        replica.block_hashes = {stable.seq: stable.chain_digest}
        if stable.seq > replica.window.low:
            replica.window.advance(stable.seq)
        replica.checkpoints.make_stable(stable)
        replica.snapshots = {stable.seq: report.snapshot}
        replica.max_seen = max(replica.max_seen, stable.seq)
        replica.next_k = max(replica.next_k, stable.seq + 1)
    view = store.view
    replica.view = view
    if store.left_view >= view:
        replica.start_view_change(store.left_view, now, out)
        return out, 0
    if not replica.ts:
        return out, 0
    k, replayed = replica.k_exec, 0
    for b in store.blocks(above=replica.k_exec):
        if b.seq != k + 1 or b.seq > report.height or b.view != view or b.cert is None \
                or b.body is None or not replica.window.contains(b.seq):
            break
        slot = replica._slot(b.seq, now)
        batch = Batch.from_body(b.body)
        slot.prop_view, slot.batch, slot.digest = view, batch, b.digest
        slot.cert_view, slot.cert_digest, slot.cert = view, b.digest, b.cert
        slot.committed = True
        replica.window.set_digest(b.seq, b.digest)
        k = b.seq
        replayed += 1
    if replayed:
        replica.max_seen = max(replica.max_seen, k)
        replica.next_k = max(replica.next_k, k + 1)
        replica._progress(now, out)
    return out, replayed
