"""Evidence per position and batch bodies by (k, digest): what outlives views (PROTOCOL.md §4.11).

What it is for: a replica's VC-REQUEST reports *evidence about a position*, not the state of
a slot. This log keeps it apart from the window's slots, which a view change resets:

* TS: the highest-view certificate held for ``k`` (``cert_view``, ``cert_digest``, ``cert``);
* MAC (and PBFT): ``P_k = (p_view, p_digest)``, the latest view in which the replica
  view-committed (prepared) ``k``; ``Q_k`` (``supported``), per digest the latest view in
  which it sent SUPPORT (PREPARE) for ``k`` (also kept in TS mode: the digests whose bodies
  a certificate's signer must be able to serve);
* the body of every digest it holds any of that evidence for, so that ``FETCH(k, h)`` is
  answered in any view, by any replica holding it.

Evidence changes only by being superseded by evidence of a higher view for the same ``k``,
or by garbage collection once a stable checkpoint passes ``k`` (``collect``). Installing a
view, taking a position from an NV-PROPOSE, rolling back, fetching and restarting never
erase or weaken it.

What it must never do: let the evidence view of a position decrease (asserted), keep a body
whose digest it has no evidence for, or grow beyond ``SUPPORTED_PER_SEQ`` digests and bodies
per position and the window's positions.
"""
from __future__ import annotations

from poe.crypto.base import Certificate

SUPPORTED_PER_SEQ = 8     # digests (and bodies) kept per position; the oldest view goes first


class Evidence:
    """What one replica holds about one position ``k`` (see the module docstring)."""

    __slots__ = ("cert_view", "cert_digest", "cert", "p_view", "p_digest", "supported",
                 "bodies")

    def __init__(self) -> None:
        self.cert_view = -1
        self.cert_digest: bytes | None = None
        self.cert: Certificate | None = None
        self.p_view = -1
        self.p_digest: bytes | None = None
        self.supported: dict[bytes, int] = {}     # digest -> latest view supported (Q_k)
        self.bodies: dict[bytes, object] = {}     # digest -> Batch

    def holds(self, digest: bytes) -> bool:
        return digest == self.cert_digest or digest == self.p_digest \
            or digest in self.supported


class EvidenceLog:
    """Evidence and bodies of the positions above the stable checkpoint."""

    def __init__(self) -> None:
        self.by_seq: dict[int, Evidence] = {}

    def get(self, k: int) -> Evidence | None:
        return self.by_seq.get(k)

    def _at(self, k: int) -> Evidence:
        e = self.by_seq.get(k)
        if e is None:
            e = self.by_seq[k] = Evidence()
        return e

    def certificate(self, k: int, view: int, digest: bytes, cert: Certificate,
                    batch=None) -> None:
        """TS: a valid certificate for (view, k, digest). Kept if its view is the highest."""
        e = self._at(k)
        if view > e.cert_view:
            e.cert_view, e.cert_digest, e.cert = view, digest, cert
        if batch is not None:
            self.body(k, digest, batch)
        assert e.cert_view >= view, "§4.11: the certificate view of a position never decreases"

    def prepared(self, k: int, view: int, digest: bytes, batch=None) -> None:
        """MAC: view-committed (nf matching SUPPORTs, PBFT: prepared) k in ``view``."""
        e = self._at(k)
        if view >= e.p_view:
            e.p_view, e.p_digest = view, digest
        if batch is not None:
            self.body(k, digest, batch)
        assert e.p_view >= view, "§4.11: P_k's view never decreases"

    def support(self, k: int, view: int, digest: bytes, batch=None) -> None:
        """We sent SUPPORT(view, k, digest) (a primary: its PROPOSE): Q_k, and its body."""
        e = self._at(k)
        supported = e.supported
        if supported.get(digest, -1) < view:
            supported[digest] = view
        while len(supported) > SUPPORTED_PER_SEQ:
            oldest = min((v, d) for d, v in supported.items()
                         if d != e.p_digest and d != e.cert_digest)[1]
            del supported[oldest]
            e.bodies.pop(oldest, None)
        if batch is not None:
            self.body(k, digest, batch)

    def body(self, k: int, digest: bytes, batch) -> None:
        """The body of a digest we hold evidence for (its digest checked by the caller)."""
        e = self._at(k)
        if e.holds(digest) and digest not in e.bodies:
            e.bodies[digest] = batch

    def body_for(self, k: int, digest: bytes):
        e = self.by_seq.get(k)
        return None if e is None else e.bodies.get(digest)

    def collect(self, low: int) -> None:
        """A stable checkpoint at ``low``: evidence at or below it is final, dropped."""
        for k in [k for k in self.by_seq if k <= low]:
            del self.by_seq[k]

    def clear(self) -> None:
        self.by_seq.clear()
