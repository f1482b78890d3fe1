"""Put a freshly built PoEReplica back where its store says it was (recovery, issue #7).

What it is for: ``restore(replica, store, report, now)`` runs once, before the replica
handles any message. It touches exactly these attributes of ``PoEReplica``:

* from the last stable checkpoint (proof verified and snapshot hashed by ``check_store``):
  ``kv`` (restored snapshot), ``k_exec``, ``head``, ``block_hashes`` = {seq: chain digest},
  ``window.advance(seq)``, ``checkpoints.make_stable(proof)``, ``snapshots`` = {seq: bytes},
  ``max_seen``, ``next_k``, and ``own_checkpoint`` / ``own_checkpoints`` = our CHECKPOINT
  vote for it (answered to a peer that still lacks it), and ``retained`` = the stored
  blocks of the last window up to it (a peer less than a window behind replays them, as
  before the crash, instead of adopting a snapshot, which would leave its ledger without
  those blocks), and ``replies`` = the INFORMs of the newest stored results up to it (the
  reply cache, so a client's retry of a message executed before the crash is answered);
* ``view`` = the last installed view in the store;
* ``next_k`` and ``max_seen`` above the highest SUPPORT vote the store holds for that view
  (a primary's PROPOSE is its SUPPORT): a restarted primary never proposes a second batch
  for a sequence number it already proposed in this view;
* for each stored block above the checkpoint that was executed in that view (or kept by
  the view change into it and certified again there: the store rewrote its view then, see
  ``LedgerWriter._kept``), in order and without a gap, the window slot: proposal view,
  batch, digest, and view-committed in that view (``cert_view``, ``cert_digest``,
  ``committed``), ``proposal`` (a backup: the PROPOSE of that view, seq and batch, so a
  retransmitted copy is a duplicate, not an equivocation of the primary) and, TS mode,
  the certificate of that view (verified by ``check_store``), MAC mode ``supported`` = {digest: view} (Q_k).
  That is exactly the state the replica had before the crash: it executed the block only
  once the slot was view-committed in that view (TS: the certificate; MAC: nf matching
  SUPPORTs, or a no-op of that view's history). Each is reported through
  ``restored_executed`` (the PBFT baseline: committed-local, since it executed only at nf
  COMMITs of that view; the peers, past it, will not send them again). Then ``_progress``
  executes them as the normal case would (PROTOCOL.md §2.8);
* MAC mode, the durable SUPPORTs above those blocks (digest, Q_k and the vote, without the
  batch) and, the PBFT baseline, its durable COMMITs above them: the slot was prepared
  when the COMMIT left, so it is prepared again (``restore_commit_votes``);
* if the store says the replica had asked to leave that view (VC-REQUEST sent), it asks
  again through ``start_view_change`` instead of executing anything in it (§4.2): the
  restored slots are only reported in that VC-REQUEST (P_k / Q_k, or certificates).

The rest comes from peers: FETCH inside the window, state transfer beyond it (§5.5).

Must never: execute a block that was not view-committed in the replica's current view (TS:
without a valid certificate of that view), execute anything in a view the replica asked to
leave, or adopt a snapshot whose digest is not the nf-signed state digest.
"""
from __future__ import annotations

from poe._core import codec
from poe._core.codec import Batch
from poe._core.kv import KVStore
from poe.protocol.poe.clients import ReplyCache
from poe.protocol.poe.view_change import NOOP_DIGEST
from poe.storage.store import Store, StoreError, split_results
from poe.storage.verify import Report


def restore(replica, store: Store, report: Report, now: float) -> tuple[list, int]:
    """Returns (actions for the driver, number of blocks re-executed)."""
    out: list = []
    # a quarantined store (poe ledger quarantine, docs/storage.md "Store corruption"): no
    # vote until the stable checkpoint passes every position we may have voted on, and no
    # NV-PROPOSE for a view we may have begun before
    replica.abstain_through_seq = store.floor_seq
    replica.nv_sent = max(replica.nv_sent, store.floor_view)
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
        # our CHECKPOINT vote for it, to answer a peer that still lacks it, as before the crash
        replica.keep_checkpoint_vote(stable)
        # the blocks of the last window up to it, as executed ones are kept: a peer less
        # than a window behind catches up by replaying them, not from a snapshot
        for b in store.blocks(above=max(stable.seq - replica.config.window, 0)):
            if b.seq > stable.seq:
                break
            replica._retain(b.seq, b.digest,
                            Batch.from_body(b.body) if b.body is not None else None, b.view)
        _restore_replies(replica, store, stable.seq)
    view = store.view
    replica.view = view
    window = replica.window
    _restore_evidence(replica, store, report)
    nv = store.new_view()
    if nv is not None and nv[0] == view and view > 0:
        # we were inside ``view`` and know how it began: install it again (its history,
        # re-certification, and as its primary the NV-PROPOSE to re-send) (§4.11)
        if not replica.restore_new_view(nv[1], now, out):
            raise StoreError(store.path, f"the stored NV-PROPOSE of view {view} does not "
                             "verify")
    # our durable SUPPORT votes of this view inside the window (a primary: its PROPOSEs)
    votes = {seq: digest for (v, seq), digest in report.support_votes.items()
             if v == view and window.contains(seq)}
    k = start = replica.k_exec
    for b in store.blocks(above=start):
        if b.seq != k + 1 or b.seq > report.height or b.view != view \
                or not window.contains(b.seq):
            break
        if replica.ts and (b.cert is None or b.body is None):
            break
        if b.body is None and b.digest != NOOP_DIGEST:
            break
        batch = Batch.from_body(b.body) if b.body is not None else None
        slot = replica._slot(b.seq, now)
        slot.prop_view, slot.batch, slot.digest = view, batch, b.digest
        slot.cert_view, slot.cert_digest = view, b.digest
        window.set_digest(b.seq, b.digest)
        if replica.ts:
            slot.cert = b.cert
        else:
            if votes.get(b.seq) == b.digest:
                _own_vote(replica, slot, view, b.seq, b.digest)
        primary = replica.config.primary(view)
        if batch is not None and primary != replica.id:
            # the PROPOSE we accepted: a retransmitted copy is a duplicate, not equivocation
            slot.proposal = codec.encode_propose(primary, view, b.seq, batch)
        slot.committed = True
        replica.restored_executed(b.seq)
        k = b.seq
    if not replica.ts:
        # SUPPORTs we sent above what we executed: the vote, with the batch stored with it
        # (a store written before votes carried their batch has none: it is fetched again,
        # and then counted with our vote like before the crash). A primary's vote is its
        # PROPOSE: the slot is its proposal of this view again (re-sent to replicas whose
        # SUPPORT is missing), and it answers FETCHes with its vote. A backup's slot is not
        # marked proposed (``prop_view``): the primary's retransmitted PROPOSE is accepted
        # (and supported, with the same vote) again.
        primary = replica.config.primary(view) == replica.id
        for seq in sorted(s for s in votes if s > k):
            slot = replica._slot(seq, now)
            digest = votes[seq]
            slot.digest = digest
            slot.batch = report.vote_batches.get((seq, digest))
            if primary:
                slot.prop_view = view
                if slot.batch is not None:
                    slot.proposal = codec.encode_propose(replica.id, view, seq, slot.batch)
            window.set_digest(seq, digest)
            _own_vote(replica, slot, view, seq, digest)
    commits = {seq: digest for (v, seq), digest in report.commit_votes.items()
               if v == view and seq > k and window.contains(seq)}
    if commits:
        # the PBFT baseline: a COMMIT we sent says we had prepared that slot in this view
        # (nf matching PREPAREs); it is in our P again, so a view change after a
        # whole-cluster crash keeps what another replica executed at nf COMMITs
        replica.restore_commit_votes(commits, now, report.vote_batches)
    top = max([k, *votes, *commits])
    if top > start:
        # never propose again where we voted (or proposed) in this view: those slots are
        # fetched, or decided by a view change
        replica.max_seen = max(replica.max_seen, top)
        replica.next_k = max(replica.next_k, top + 1)
    if store.left_view >= view:
        # we had asked to leave this view: ask again (the restored slots are reported as
        # P_k / Q_k, or certificates, in the VC-REQUEST) and execute nothing in it
        replica.start_view_change(store.left_view, now, out)
        return out, 0
    if k > start:
        replica._progress(now, out)
    return out, replica.k_exec - start


def _restore_evidence(replica, store: Store, report: Report) -> None:
    """Evidence per position from any view (PROTOCOL.md §4.11), above the stable checkpoint
    and inside the window: a stored block is a certificate of its view (TS; verified by
    ``check_store``) or P_k of its view (MAC: executed only once view-committed there), with
    its body; a durable SUPPORT of any view is Q_k; the bodies stored with votes, or left by
    a rollback, are bodies by (k, digest)."""
    evidence = replica.evidence
    window = replica.window
    for b in store.blocks(above=replica.k_exec):
        if b.seq > report.height or not window.contains(b.seq):
            break
        batch = Batch.from_body(b.body) if b.body is not None else None
        if replica.ts:
            if b.cert is not None:
                evidence.certificate(b.seq, b.view, b.digest, b.cert, batch)
        else:
            evidence.prepared(b.seq, b.view, b.digest, batch)
    for (view, seq), digest in sorted(report.support_votes.items()):
        if window.contains(seq):
            evidence.support(seq, view, digest, report.vote_batches.get((seq, digest)))
    for (view, seq), digest in sorted(report.commit_votes.items()):
        if window.contains(seq) and not replica.ts:
            evidence.prepared(seq, view, digest, report.vote_batches.get((seq, digest)))
    for (seq, digest), batch in report.vote_batches.items():
        if window.contains(seq):
            evidence.body(seq, digest, batch)


def _restore_replies(replica, store: Store, upto: int) -> None:
    """The reply cache as it was: the INFORMs of the newest stored results at or below the
    stable checkpoint (as many messages as the cache holds), sealed for their clients
    again. Without them a client retrying a message executed before the crash gets no
    answer: the kv's exactly-once table says it was executed, so it is not executed again."""
    rows = []
    room = replica.config.reply_cache_size
    for seq, view, body in store.results(upto):
        messages = split_results(body)
        rows.append((seq, view, messages))
        room -= len(messages)
        if room <= 0:
            break
    # each answer bound to its message's signature, from the stored block (ReplyCache)
    signatures: dict[int, Batch] = {}
    if rows:
        for b in store.blocks(above=rows[-1][0] - 1):
            if b.seq > rows[0][0]:
                break
            if b.body is not None:
                signatures[b.seq] = Batch.from_body(b.body)
    for seq, view, messages in reversed(rows):
        # the INFORMs of the batch as the replica sent them (§2.8)
        batch = signatures.get(seq)
        if batch is not None and len(batch) != len(messages):
            batch = None                        # not the batch these results came from
        groups: dict[int, list] = {}   # client -> [(key, piece, signature, reused id)]
        for i, (client, first, duplicate, results) in enumerate(messages):
            if duplicate:
                continue                        # answered from the original's entry
            # without the block the signature (and tag) is unknown: its client skips that
            # entry (retries are then answered by the other replicas)
            signature = None if batch is None else bytes(batch.signature(i))
            held = replica.replies.get((client, first))
            if held is not None and held[1] < seq and signature is not None \
                    and ReplyCache.same_message(held, signature):
                # ordered again after it executed (STALE once its ids left the kv's
                # exactly-once window): answered with its original INFORM, as ``inform``
                # does live -- never overwritten by a "not executed"
                continue
            groups.setdefault(client, []).append(((client, first), results, signature, False))
        done: set = set()
        for client, entries in groups.items():
            replica.seal_informs(client, view, seq, entries, done)


def _own_vote(replica, slot, view: int, seq: int, digest: bytes) -> None:
    """MAC mode: our durable SUPPORT(view, seq, digest), counted and ready to be sent again
    (a FETCH is answered with it, as before the crash)."""
    slot.own_support = codec.encode_support(replica.id, view, seq, digest)
    replica.window.vote(seq, 0, replica.id)       # SUPPORT_VOTES
