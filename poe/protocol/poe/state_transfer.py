"""State transfer (PROTOCOL.md §5.5): a replica that is behind a stable checkpoint — it saw
nf matching CHECKPOINTs above what it executed, or an NV-PROPOSE whose checkpoint base it
does not hold — fetches the state at that checkpoint from the replicas that signed it.

What it is for: every replica keeps a kv snapshot taken when it executed each checkpoint
position still inside its window; a lagging replica sends STATE-REQ(k_s, k, snapshot) to
one signer of the proof at a time and adopts the first reply whose snapshot hashes to the
proof's state digest. The ledger head becomes the proof's chain digest (vouched for by nf
replicas); the positions above it are then fetched or executed as usual.

What it must never do: adopt state that does not match an nf-signed checkpoint, keep more
than the snapshots of the checkpoints inside the window, or answer one peer's STATE-REQs
faster than once per retransmission timeout (a Byzantine peer must not make us stream
snapshots in a loop).
"""
from __future__ import annotations

from poe._core import codec
from poe._core.codec import CheckpointProof
from poe._core.kv import KVStore
from poe.protocol.actions import RolledBack, Send, Stable, Transferred


class StateTransferMixin:
    """Mixed into PoEReplica: snapshots at checkpoints, STATE-REQ / STATE-REPLY."""

    def _init_state_transfer(self) -> None:
        self.snapshots: dict[int, bytes] = {}        # checkpoint seq -> kv snapshot
        self.transfer: CheckpointProof | None = None  # the checkpoint we are fetching
        self.transfer_sent_at = -1e18
        self.transfer_tries = 0
        self._served_at: dict[int, float] = {}        # peer -> last STATE-REPLY time
        self._far: dict[int, tuple[int, bytes, bytes, bytes]] = {}  # checkpoints above high

    # ------------------------------------------------------------------ serving

    def _snapshot_checkpoint(self, k: int) -> None:
        """Called when checkpoint k is executed: keep the state for lagging peers."""
        self.snapshots[k] = self.kv.snapshot()
        for old in [s for s in self.snapshots if s < self.checkpoints.stable.seq]:
            del self.snapshots[old]

    def on_state_req(self, m, now: float) -> list:
        if not m.want & codec.WANT_SNAPSHOT:
            return self._drop("state-req-unsupported-want")
        snapshot = self.snapshots.get(m.to_seq)
        if snapshot is None:
            return self._drop("state-req-unavailable")
        last = self._served_at.get(m.sender, -1e18)
        if now - last < self.config.retransmit_timeout_s:
            return self._drop("state-req-too-frequent")
        self._served_at[m.sender] = now
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
        self.stats["state-transfers-started"] += 1
        self._request_state(now, out)

    def _request_state(self, now: float, out: list) -> None:
        proof = self.transfer
        signers = [r for r, _ in proof.signatures if r != self.id]
        if not signers:
            return
        target = signers[self.transfer_tries % len(signers)]
        self.transfer_tries += 1
        self.transfer_sent_at = now
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

    def adopt_state(self, proof: CheckpointProof, store: KVStore, now: float,
                    out: list) -> None:
        """Replace our state by the verified snapshot of stable checkpoint ``proof``."""
        stable = self.checkpoints.stable.seq
        if self.k_exec > stable:
            out.append(RolledBack(stable))       # our speculative suffix is discarded
        self.kv = store
        self.k_exec = proof.seq
        self.head = proof.chain_digest
        self.block_hashes = {proof.seq: proof.chain_digest}
        self.replies.drop_above(stable)
        if proof.seq > self.window.low:
            self.window.advance(proof.seq)
        self.checkpoints.make_stable(proof)
        self.snapshots = {proof.seq: store.snapshot()}
        self.transfer = None
        self.behind = None
        self.max_seen = max(self.max_seen, proof.seq)
        if self.is_primary and self.next_k <= proof.seq:
            self.next_k = proof.seq + 1
        self.stats["state-transfers"] += 1
        out.append(Transferred(proof.seq, proof.state_digest, proof.chain_digest))
        out.append(Stable(proof.seq, proof.state_digest, proof.chain_digest))
        if self.history is not None and self.status == "normal":
            self._recertify(now, out, only_missing=False)   # positions now in our window
        self._progress(now, out)
        if self.is_primary and self.ready and self.status == "normal":
            self._propose_ready(now, out)         # the window moved: waiting batches fit
        self._replay_ahead(now, out)
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
