"""The crypto interface every protocol uses, independent of the backend (PROTOCOL.md §1.4-1.6).

A sans-IO protocol object is handed one :class:`CryptoSuite` and calls only the abstract
methods declared here, so MAC-only, BLS-threshold, Ed25519 and fake backends are swappable.
Also defines parties, certificates and the signer bitmap encoding.

Must never: do IO, read clocks or randomness, or raise on hostile bytes from a peer (the
``verify*`` methods return ``False``). Classes holding secrets hide them in ``repr``.
"""
from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "CERT_SIGNATURE_SIZE",
    "MAC_SIZE",
    "SHARE_SIZE",
    "SIGNATURE_SIZE",
    "Certificate",
    "CryptoSuite",
    "MacKeys",
    "Party",
    "Role",
    "SignatureVerifier",
    "Signer",
    "ThresholdSigner",
    "ThresholdVerifier",
    "bitmap_from_ids",
    "bitmap_ids",
    "bitmap_ok",
    "bitmap_size",
    "client",
    "faults_tolerated",
    "replica",
]

SHARE_SIZE = 96           # a signature share: compressed G2 point (fake: same size)
CERT_SIGNATURE_SIZE = 96  # the combined signature in a certificate
MAC_SIZE = 32             # keyed BLAKE2b-256 tag
SIGNATURE_SIZE = 64       # Ed25519 signature


def faults_tolerated(n: int) -> int:
    """``f = (n-1) // 3`` (PROTOCOL.md §1.1)."""
    if type(n) is not int or n < 1:
        raise ValueError(f"replica count n must be a positive int, got {n!r}")
    return (n - 1) // 3


class Role(enum.Enum):
    """The two kinds of party; ids are numbered from 0 separately for each role."""

    REPLICA = "replica"
    CLIENT = "client"

    # members are singletons compared by identity: hash them in C (Enum's default __hash__
    # runs Python code, and every MAC key lookup hashes a Party)
    __hash__ = object.__hash__


class Party(NamedTuple):
    """A replica or a client: ``Party(Role.REPLICA, 2)``; build with :func:`replica`."""

    role: Role
    id: int

    def __str__(self) -> str:
        return f"{self.role.value} {self.id}"


def replica(replica_id: int) -> Party:
    """The party of replica ``replica_id`` (0-based)."""
    return Party(Role.REPLICA, replica_id)


def client(client_id: int) -> Party:
    """The party of client ``client_id`` (0-based)."""
    return Party(Role.CLIENT, client_id)


# ---------------------------------------------------------------------------------------------
# certificates and bitmaps
# ---------------------------------------------------------------------------------------------

def bitmap_size(n: int) -> int:
    """Bytes of a signer bitmap for ``n`` replicas: ``ceil(n/8)``."""
    return (n + 7) // 8


def bitmap_from_ids(ids: Iterable[int], n: int) -> bytes:
    """Bitmap with bit ``i`` (byte ``i // 8``, LSB first) set for each replica id ``i``."""
    out = bytearray(bitmap_size(n))
    for i in ids:
        if type(i) is not int or not 0 <= i < n:
            raise ValueError(f"replica id {i!r} outside 0..{n - 1}")
        out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def bitmap_ids(bitmap: bytes) -> list[int]:
    """Replica ids whose bit is set, ascending."""
    return [(index << 3) | bit for index, byte in enumerate(bitmap) if byte
            for bit in range(8) if byte >> bit & 1]


def bitmap_ok(bitmap: object, n: int, quorum: int) -> bool:
    """True iff ``bitmap`` is bytes of the right length, names no id ``>= n`` and has at
    least ``quorum`` bits set. Never raises."""
    if type(bitmap) is not bytes or len(bitmap) != bitmap_size(n):
        return False
    if n & 7 and bitmap[-1] >> (n & 7):
        return False  # a bit for a replica id >= n
    return int.from_bytes(bitmap, "little").bit_count() >= quorum


@dataclass(frozen=True, slots=True)
class Certificate:
    """A transferable proof that ``nf`` replicas supported a statement (PROTOCOL.md §2.7).

    ``bitmap`` names the signers (see :func:`bitmap_from_ids`), ``signature`` is the combined
    signature (96 bytes). Built from peer bytes without validation: only
    :meth:`ThresholdVerifier.verify_cert` decides whether it is valid.
    """

    bitmap: bytes
    signature: bytes

    def signers(self) -> list[int]:
        """Replica ids named by the bitmap, ascending (as claimed; not verified)."""
        return bitmap_ids(self.bitmap)


# ---------------------------------------------------------------------------------------------
# interfaces
# ---------------------------------------------------------------------------------------------

class ThresholdSigner(ABC):
    """Replica-private: signs SUPPORT statements with this replica's key share."""

    replica: int

    @abstractmethod
    def share_sign(self, statement: bytes) -> bytes:
        """A ``SHARE_SIZE``-byte share on ``statement`` (see :mod:`poe.crypto.statements`)."""


class ThresholdVerifier(ABC):
    """Cluster-public: checks shares, combines ``nf`` of them, checks certificates."""

    n: int
    f: int
    nf: int

    @abstractmethod
    def verify_share(self, replica_id: int, statement: bytes, share: bytes) -> bool:
        """True iff ``share`` is replica ``replica_id``'s valid share on ``statement``."""

    @abstractmethod
    def combine(self, shares: Mapping[int, bytes], statement: bytes) -> Certificate:
        """Combine the first ``nf`` shares (mapping order) into a certificate.

        Optimistic: combine first, verify the result once, and only if that fails check the
        shares one by one. Raises :class:`~poe.crypto.errors.CombineError` naming the bad
        signers (or saying that fewer than ``nf`` shares were given).
        """

    @abstractmethod
    def verify_cert(self, cert: Certificate, statement: bytes) -> bool:
        """True iff ``cert`` is a valid certificate on ``statement``; never raises."""


class MacKeys(ABC):
    """One party's pairwise MAC keys (PROTOCOL.md §1.4). Tags are ``MAC_SIZE`` bytes."""

    party: Party

    @abstractmethod
    def mac(self, peer: Party, data: bytes) -> bytes:
        """Tag for ``data`` sent by this party to ``peer``."""

    @abstractmethod
    def verify(self, peer: Party, data: bytes, tag: bytes) -> bool:
        """True iff ``tag`` is ``peer``'s tag on ``data`` sent to this party (constant time)."""


class Signer(ABC):
    """One party's digital-signature key (client requests, VC-REQUEST, CHECKPOINT)."""

    party: Party

    @abstractmethod
    def sign(self, data: bytes) -> bytes:
        """A ``SIGNATURE_SIZE``-byte signature on ``data`` (a domain-separated statement)."""


class SignatureVerifier(ABC):
    """Checks signatures of any party of the cluster, or of an explicit public key."""

    @abstractmethod
    def verify(self, signer: Party | bytes, data: bytes, signature: bytes) -> bool:
        """True iff ``signature`` on ``data`` is valid for ``signer`` (a party of the
        cluster file or raw public-key bytes). Never raises on hostile input."""


@dataclass(frozen=True, slots=True)
class CryptoSuite:
    """Everything one party needs, as handed to a protocol object.

    Fields a backend does not provide are ``None`` (e.g. ``threshold_signer`` for a client,
    ``threshold`` in the MAC-only variant). ``insecure`` is True only for the fake backend.
    """

    party: Party | None
    threshold_signer: ThresholdSigner | None = None
    threshold: ThresholdVerifier | None = None
    macs: MacKeys | None = None
    signer: Signer | None = None
    verifier: SignatureVerifier | None = None
    insecure: bool = False
