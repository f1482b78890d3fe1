"""What a protocol object asks its driver (simulator or runtime) to do.

Every handler of a protocol object returns a list of these plain records; the driver
carries them out in order. They hold encoded, authenticated frames (bytes), so a driver
never needs keys or protocol knowledge. Must never: perform IO itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver ``data`` (a sealed frame) to replica ``to``."""

    to: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Deliver the same ``data`` to every other replica (frames without per-peer MACs)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """Deliver ``data`` (a sealed INFORM) to client ``client``."""

    client: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Arm (or re-arm) timer ``(kind, key)`` to fire at time ``at`` (seconds)."""

    kind: str
    key: int
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Disarm timer ``(kind, key)`` if armed."""

    kind: str
    key: int


@dataclass(frozen=True, slots=True)
class Persist:
    """Make ``record`` durable before carrying out any later action of the same list: a
    vote (``("support", view, seq, digest)``, ``("checkpoint", seq, d_state, d_chain)``),
    the view, or an executed block kept by a view change and certified again in the new
    view (``("kept", view, seq, digest)``). Drivers without storage may ignore it; the durable runtime (issue #7) must
    not send what follows before it is on disk."""

    record: tuple


@dataclass(frozen=True, slots=True)
class Executed:
    """Batch ``seq`` (digest ``digest``, certified in ``view``) was executed; the ledger
    head is now ``block_hash``. Drivers append it to the ledger and checkers watch it;
    ``batch`` and ``results`` are the executed batch and its kv results (read-only);
    ``prev`` is H(B_{seq-1}), the head it was chained to (a driver writing the turn's
    actions after the turn may no longer find it in the replica)."""

    seq: int
    view: int
    digest: bytes
    block_hash: bytes
    requests: int
    batch: object = None
    results: object = None
    prev: bytes | None = None


@dataclass(frozen=True, slots=True)
class RolledBack:
    """Every executed batch above ``seq`` was undone (view change, state transfer)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Stable:
    """Checkpoint ``seq`` became stable (state digest ``state_digest``); speculation up to
    it is final."""

    seq: int
    state_digest: bytes
    chain_digest: bytes


@dataclass(frozen=True, slots=True)
class Transferred:
    """The replica's state was replaced by the snapshot of stable checkpoint ``seq`` (ledger
    head ``chain_digest``) fetched from its signers (§5.5); a RolledBack precedes it when
    executed batches above the old stable checkpoint were discarded. ``proof`` travels
    with it: by the time a driver carries the action out, the same turn may have moved the
    replica on to a later checkpoint."""

    seq: int
    state_digest: bytes
    chain_digest: bytes
    proof: object = None       # the CheckpointProof (the ledger's new base), nf signatures


Action = Union[Send, Broadcast, Reply, SetTimer, CancelTimer, Persist, Executed, RolledBack,
               Stable, Transferred]
