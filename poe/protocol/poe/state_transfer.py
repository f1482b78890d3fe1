"""State transfer (PROTOCOL.md §5.5): a replica that is behind a stable checkpoint — it saw
nf matching CHECKPOINTs above what it executed, or an NV-PROPOSE whose checkpoint base it
does not hold — fetches the state at that checkpoint from the replicas that signed it.

What it is for: every replica keeps a kv snapshot taken when it executed each checkpoint
position still inside its window (captured, not encoded: ``KVStore.capture`` costs only the
incremental state digest, and ``snapshot_bytes`` encodes the state at k from the kv's undo
log when a peer or the store first asks), and the batches it executed in the last window. A replica
less than a window behind asks one signer of the proof at a time for the headers and batches
from its own head up to the checkpoint (STATE-REQ(k_exec, k, headers+batches+snapshot)),
checks that they chain from its head to the proof's chain digest (vouched for by nf
replicas), and executes them as the normal case would: it then holds their results and
answers the clients' retries like everyone else. Otherwise (further behind, a divergent
suffix, a peer without those batches) it adopts the first snapshot that hashes to the proof's
state digest: the ledger head becomes the proof's chain digest; the positions above it are
then fetched or executed as usual.

What it must never do: adopt state that does not match an nf-signed checkpoint, keep more
than the snapshots of the checkpoints inside the window, or answer one peer's STATE-REQs
faster than once per retransmission timeout (a Byzantine peer must not make us stream
snapshots in a loop).
"""
from __future__ import annotations

from poe._core import codec
from poe._core.codec import CheckpointProof
from poe._core.digest import batch_digest, block_hash
from poe._core.kv import KVStore
from poe.protocol.actions import RolledBack, Send, Stable, Transferred
from poe.protocol.poe.view_change import NOOP_DIGEST as NOOP   # a no-op carries no batch

REPLAY_MAX_BATCHES = 256         # batches one STATE-REPLY may carry
REPLAY_MAX_BYTES = 8 << 20       # and their bytes at most (else: the snapshot)


class StateTransferMixin:
    """Mixed into PoEReplica: snapshots at checkpoints, STATE-REQ / STATE-REPLY."""

    def _init_state_transfer(self) -> None:
        # checkpoint seq -> kv snapshot bytes, or the KVStore that captured it (not encoded yet)
        self.snapshots: dict[int, bytes | KVStore] = {}
        self.transfer: CheckpointProof | None = None  # the checkpoint we are fetching
        self.transfer_sent_at = -1e18
        self.transfer_tries = 0
        self._served_at: dict[int, float] = {}        # peer -> last STATE-REPLY time
        self._far: dict[int, tuple[int, bytes, bytes, bytes]] = {}  # checkpoints above high
        # the last ``window`` executed positions: k -> (digest, batch or None, view)
        self.retained: dict[int, tuple[bytes, object, int]] = {}
        self._replay_refused = False      # this transfer: snapshots only (a replay failed)
        self._targets: dict[int, CheckpointProof] = {}   # recent targets (a reply may lag)

    # ------------------------------------------------------------------ serving

    def _snapshot_checkpoint(self, k: int) -> None:
        """Called when checkpoint k is executed: keep the state for lagging peers. Nothing
        is encoded here (issue 15): the kv captures the state at k, which its undo log keeps
        reachable until k is finalized past, and ``snapshot_bytes(k)`` encodes it when a
        peer or the store asks for it."""
        self.kv.capture()
        self.snapshots[k] = self.kv
        for old in [s for s in self.snapshots if s < self.checkpoints.stable.seq]:
            del self.snapshots[old]

    def snapshot_bytes(self, k: int) -> bytes | None:
        """The kv snapshot of checkpoint k (``KVStore.snapshot`` bytes of the state at k),
        or None if we do not hold it. Encoded at the first call, then kept."""
        held = self.snapshots.get(k)
        if held is None or isinstance(held, (bytes, bytearray, memoryview)):
            return held
        try:
            data = held.snapshot_at(k)      # a KVStore that captured k
        except ValueError:                  # rolled back below k since: that state is gone
            del self.snapshots[k]
            return None
        self.snapshots[k] = data
        return data

    def _retain(self, k: int, digest: bytes, batch, view: int) -> None:
        """Position k was executed: keep it for peers less than a window behind."""
        self.retained[k] = (digest, batch, view)
        self.retained.pop(k - self.config.window, None)

    def _unretain_above(self, k: int) -> None:
        for j in [j for j in self.retained if j > k]:
            del self.retained[j]

    def _batches_for(self, first: int, last: int):
        """(headers, batches) of positions first..last if we executed and kept them all,
        within the reply bounds; else None."""
        if first > last or last > self.k_exec or last - first + 1 > REPLAY_MAX_BATCHES:
            return None
        headers, batches, size = [], [], 0
        for k in range(first, last + 1):
            held = self.retained.get(k)
            if held is None:
                return None
            digest, batch, view = held
            headers.append((k, digest, view))
            if batch is not None:
                size += batch.nbytes
                if size > REPLAY_MAX_BYTES:
                    return None
                batches.append((k, batch))
        return headers, batches

    def on_state_req(self, m, now: float) -> list:
        if not m.want & codec.WANT_SNAPSHOT:
            return self._drop("state-req-unsupported-want")
        replay = None
        if m.want & codec.WANT_BATCHES and m.from_seq < m.to_seq:
            replay = self._batches_for(m.from_seq + 1, m.to_seq)
        if m.to_seq not in self.snapshots and replay is None:
            return self._drop("state-req-unavailable")
        if not self._once_per_timeout(self._served_at, m.sender, now):
            return self._drop("state-req-too-frequent")
        if replay is not None:
            self.stats["state-served-batches"] += 1
            frame = codec.encode_state_reply(self.id, m.from_seq, m.to_seq, replay[0],
                                             replay[1])
        else:
            snapshot = self.snapshot_bytes(m.to_seq)     # encoded now, if not yet
            if snapshot is None:
                return self._drop("state-req-unavailable")
            self.stats["state-served"] += 1
            frame = codec.encode_state_reply(self.id, m.from_seq, m.to_seq, snapshot=snapshot)
        return [Send(m.sender, self._sealed_for(frame, m.sender))]

    # ------------------------------------------------------------------ fetching

    def need_state(self, proof: CheckpointProof, now: float, out: list) -> None:
        """Start (or retarget) a transfer to stable checkpoint ``proof``."""
        if proof.seq <= self.k_exec and self.block_hashes.get(proof.seq) == proof.chain_digest:
            return
        if self.transfer is not None and self.transfer.seq >= proof.seq:
            return
        self.transfer = proof
        self.transfer_tries = 0
        self._replay_refused = False
        self._targets[proof.seq] = proof
        while len(self._targets) > 8:
            del self._targets[min(self._targets)]
        self.stats["state-transfers-started"] += 1
        self._request_state(now, out)

    def _may_replay(self, proof: CheckpointProof) -> bool:
        """Can we catch up to ``proof`` by executing the batches in between?"""
        return (not self._replay_refused and self.status == "normal" and self.history is None
                and self.k_exec < proof.seq <= self.window.high
                and proof.seq - self.k_exec <= REPLAY_MAX_BATCHES)

    def _request_state(self, now: float, out: list) -> None:
        proof = self.transfer
        signers = [r for r, _ in proof.signatures if r != self.id]
        if not signers:
            return
        target = signers[self.transfer_tries % len(signers)]
        self.transfer_tries += 1
        self.transfer_sent_at = now
        if self._may_replay(proof):
            frame = codec.encode_state_req(
                self.id, self.k_exec, proof.seq,
                codec.WANT_HEADERS | codec.WANT_BATCHES | codec.WANT_SNAPSHOT)
        else:
            frame = codec.encode_state_req(self.id, self.checkpoints.stable.seq, proof.seq,
                                           codec.WANT_SNAPSHOT)
        out.append(Send(target, self._sealed_for(frame, target)))
        self._arm_tick(now, out)

    def _transfer_tick(self, now: float, out: list) -> None:
        """A signer did not answer (or answered badly): ask the next one."""
        if self.transfer is not None and \
                now - self.transfer_sent_at >= self.config.retransmit_timeout_s:
            self.stats["state-request-retried"] += 1
            self._request_state(now, out)

    def on_state_reply(self, m, now: float) -> list:
        proof = self.transfer
        if proof is not None and m.snapshot is None and m.headers:
            # batches up to our current target, or up to an earlier one (we retargeted while
            # the reply was on its way): either brings us closer
            target = proof if m.to_seq == proof.seq else self._targets.get(m.to_seq)
            if target is not None and target.seq > self.k_exec:
                return self._replay(target, m, now)
        if proof is None or m.to_seq != proof.seq or m.snapshot is None:
            return self._drop("state-reply-unneeded")
        if proof.seq <= self.k_exec and self.block_hashes.get(proof.seq) == proof.chain_digest:
            self.transfer = None                 # we caught up by executing meanwhile
            return self._drop("state-reply-unneeded")
        try:
            store = KVStore.restore(m.snapshot, seed=self.config.kv_seed,
                                    zero_payload=self.config.zero_payload)
        except ValueError:
            return self._drop("state-reply-malformed-snapshot")
        if store.executed_seq != proof.seq or store.state_digest() != proof.state_digest:
            return self._drop("state-reply-wrong-state")   # skip this peer: ask another
        out: list = []
        self.adopt_state(proof, store, now, out)
        return out

    def _replay(self, proof: CheckpointProof, m, now: float) -> list:
        """Execute the batches from our head to ``proof`` once they chain to its digest."""
        if m.from_seq != self.k_exec or not self._may_replay(proof):
            return self._drop("state-reply-unneeded")
        batches = dict(m.batches)
        headers = m.headers
        if len(headers) != proof.seq - self.k_exec or len(batches) > len(headers):
            return self._refuse_replay("state-reply-wrong-headers")
        chain = self.head
        for i, (k, digest, _view) in enumerate(headers):
            if k != self.k_exec + 1 + i:
                return self._refuse_replay("state-reply-wrong-headers")
            batch = batches.get(k)
            if digest == NOOP:
                if batch is not None:
                    return self._refuse_replay("state-reply-wrong-headers")
            elif batch is None or batch_digest(batch) != digest:
                return self._refuse_replay("state-reply-wrong-batch")
            chain = block_hash(k, digest, chain)
        if chain != proof.chain_digest:
            # a peer lying, or our own executed suffix is not the agreed one: snapshot
            return self._refuse_replay("state-reply-bad-chain")
        out: list = []
        window = self.window
        for k, digest, view in headers:
            if self.k_exec >= k:
                continue                    # executed meanwhile (a nested stabilize)
            slot = self._slot(k, now)
            if slot.digest is not None and slot.digest != digest:
                window.reset(k)             # a proposal the agreed chain does not hold
                slot = self._slot(k, now)
            slot.batch, slot.digest = batches.get(k), digest
            slot.cert_view, slot.cert_digest = view, digest
            slot.committed = True
            window.set_digest(k, digest)
            self.execute(k, slot, out)
            self.last_progress = now
        # the agreed batches executed, maybe not the ones we proposed there: our queue and
        # T_req follow the state before the moved window lets us propose again
        self._settle_executed()
        self.max_seen = max(self.max_seen, proof.seq)
        if self.checkpoints.stable.seq < proof.seq:
            self.stabilize(proof, out)
        for seq in [seq for seq in self._targets if seq <= self.k_exec]:
            del self._targets[seq]
        self.stats["state-transfers-replayed"] += 1
        self.diverged = False                    # replayed from our head to an agreed chain
        if self.transfer is not None and self.transfer.seq <= self.k_exec:
            self.transfer = None
        elif self.transfer is not None:
            self.transfer_tries = 0              # still behind a later target: go on
            self._request_state(now, out)
        self._caught_up(now, out)
        return out

    def _refuse_replay(self, reason: str) -> list:
        """This reply cannot be replayed: count it and ask for snapshots from now on."""
        self._replay_refused = True
        return self._drop(reason)

    def adopt_state(self, proof: CheckpointProof, store: KVStore, now: float,
                    out: list) -> None:
        """Replace our state by the verified snapshot of stable checkpoint ``proof``."""
        stable = self.checkpoints.stable.seq
        if self.k_exec > stable:
            out.append(RolledBack(stable))       # our speculative suffix is discarded
        self.kv = store
        self.retained.clear()
        self.k_exec = proof.seq
        self.head = proof.chain_digest
        self.block_hashes = {proof.seq: proof.chain_digest}
        self.replies.drop_above(stable)
        if proof.seq > self.window.low:
            self.window.advance(proof.seq)
        self.checkpoints.make_stable(proof)
        self.evidence.collect(proof.seq)
        self.snapshots = {proof.seq: store.snapshot()}
        if not self.abstaining():
            # as a restarted replica keeps one (a faulty signer may have sent its vote to
            # us only: a peer that executed k may lack the nf-th)
            self.keep_checkpoint_vote(proof)
        self.transfer = None
        self.behind = None
        self.diverged = False                    # the agreed prefix is ours now
        self.max_seen = max(self.max_seen, proof.seq)
        self.stats["state-transfers"] += 1
        # positions up to proof.seq executed without ``inform`` here: what our queue and
        # T_req wait for must follow the state (the pending keys of messages it executed)
        self._settle_executed()
        out.append(Transferred(proof.seq, proof.state_digest, proof.chain_digest, proof))
        out.append(Stable(proof.seq, proof.state_digest, proof.chain_digest))
        if self.history is not None and self.status == "normal":
            self._recertify(now, out, only_missing=False)   # positions now in our window
        self._caught_up(now, out)

    def _caught_up(self, now: float, out: list) -> None:
        """A transfer brought us to a stable checkpoint: execute what follows it, let the
        moved window take waiting batches and kept messages (a primary's next proposal goes
        above the new low watermark by itself), fetch the rest."""
        self._progress(now, out)
        self._window_moved(now, out)
        if self.max_seen > self.k_exec:
            self._fetch_missing(now, out)

    # ------------------------------------------------------------------ checkpoints ahead

    def far_checkpoint(self, k: int, state: bytes, chain: bytes, sender: int,
                       signature: bytes, now: float, out: list) -> None:
        """A verified CHECKPOINT above our window: we are far behind. Keep only the newest
        per replica (bounded by n); nf matching ones form a stable proof to transfer to."""
        held = self._far.get(sender)
        if held is not None and held[0] >= k:
            return
        self._far[sender] = (k, state, chain, signature)
        signers = [(r, v[3]) for r, v in self._far.items() if v[:3] == (k, state, chain)]
        if len(signers) >= self.nf:
            self._far.clear()
            self.need_state(CheckpointProof(k, state, chain, sorted(signers)), now, out)
