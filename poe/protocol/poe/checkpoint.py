"""Checkpoint collection (PROTOCOL.md §5.1): signed CHECKPOINT(k, d_state, d_chain) messages
become a stable checkpoint at nf matching ones from distinct replicas.

Must never: count two votes of one replica for one sequence number, keep votes outside the
window (memory stays bounded by window / period x n), or verify signatures (the replica
verifies before calling ``add``).
"""
from __future__ import annotations

from poe._core.codec import CheckpointProof


class CheckpointTracker:
    """Votes per (k, d_state, d_chain); the latest stable checkpoint and its proof."""

    __slots__ = ("nf", "period", "_votes", "_voted", "stable")

    def __init__(self, nf: int, period: int, genesis: bytes) -> None:
        self.nf = nf
        self.period = period
        # (k, d_state, d_chain) -> {replica: signature}
        self._votes: dict[tuple[int, bytes, bytes], dict[int, bytes]] = {}
        self._voted: dict[tuple[int, int], tuple[bytes, bytes]] = {}   # (k, replica) -> digests
        self.stable = CheckpointProof(0, b"\0" * 32, genesis, ())

    def voted(self, seq: int, sender: int) -> bool:
        """``sender``'s vote for ``seq`` is held (a copy needs no second signature check)."""
        return (seq, sender) in self._voted

    def add(self, seq: int, state_digest: bytes, chain_digest: bytes, sender: int,
            signature: bytes) -> CheckpointProof | None | str:
        """Record a verified vote; return the new stable proof when this vote completes nf
        matching votes, a drop reason string for a conflicting vote, else None."""
        previous = self._voted.get((seq, sender))
        if previous is not None:
            return None if previous == (state_digest, chain_digest) else "checkpoint-conflict"
        self._voted[(seq, sender)] = (state_digest, chain_digest)
        key = (seq, state_digest, chain_digest)
        votes = self._votes.setdefault(key, {})
        votes[sender] = signature
        if len(votes) == self.nf and seq > self.stable.seq:
            return CheckpointProof(seq, state_digest, chain_digest, sorted(votes.items()))
        return None

    def make_stable(self, proof: CheckpointProof) -> None:
        """Adopt ``proof`` and forget every vote at or below it."""
        self.stable = proof
        for key in [k for k in self._votes if k[0] <= proof.seq]:
            del self._votes[key]
        for key in [k for k in self._voted if k[0] <= proof.seq]:
            del self._voted[key]

    def pending(self) -> int:
        return len(self._votes)
