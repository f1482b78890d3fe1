"""Fake crypto for the deterministic simulator: fast, seeded, and NOT secure.

Every key derives from one seed, and every verifier can recompute every tag (keyed BLAKE2b),
so anyone holding a :class:`FakeCrypto` could forge anything. It nevertheless keeps the
*detection* behaviour of the real backends, so Byzantine simulator tests stay meaningful: a
tampered share or certificate is rejected and its signer named, a share of replica i does
not pass as replica j's, ``nf - 1`` shares make no certificate, MACs and signatures are bound
to their party. Sizes match the real backends (shares and certificates 96 B, signatures 64 B,
MACs 32 B) so message sizes in simulation are realistic.

Must never: be constructed for a real replica. The constructor raises
:class:`~poe.crypto.errors.InsecureBackendError` unless ``purpose`` is ``"sim"`` or ``"test"``
or the caller passes ``insecure_bench=True`` (the explicit ``--insecure-bench`` run).
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from .base import (
    CERT_SIGNATURE_SIZE,
    SHARE_SIZE,
    SIGNATURE_SIZE,
    Certificate,
    CryptoSuite,
    Party,
    Role,
    SignatureVerifier,
    Signer,
    ThresholdSigner,
    ThresholdVerifier,
    bitmap_from_ids,
    bitmap_ok,
    client,
    faults_tolerated,
    replica,
)
from .errors import CombineError, InsecureBackendError
from .mac import PairwiseMacKeys, encode_party

__all__ = ["ALLOWED_PURPOSES", "FakeCrypto"]

ALLOWED_PURPOSES = frozenset({"sim", "test"})
_PERSON = b"PoE/FAKE/v1"


def _tag(key: bytes, data: bytes, size: int) -> bytes:
    """Keyed BLAKE2b stretched to ``size`` bytes (64-byte blocks, counter-separated)."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.blake2b(data, key=key, digest_size=64,
                               salt=counter.to_bytes(16, "little")).digest()
        counter += 1
    return out[:size]


class _FakeShareSigner(ThresholdSigner):
    __slots__ = ("_key", "replica")

    def __init__(self, replica_id: int, key: bytes) -> None:
        self.replica = replica_id
        self._key = key

    def share_sign(self, statement: bytes) -> bytes:
        if not isinstance(statement, bytes):
            raise TypeError(f"statement must be bytes, got {type(statement).__name__}")
        return _tag(self._key, statement, SHARE_SIZE)

    def __repr__(self) -> str:
        return f"FakeShareSigner(replica={self.replica}, key=<hidden>)"

    __str__ = __repr__


class _FakeThresholdVerifier(ThresholdVerifier):
    __slots__ = ("_group_key", "_share_keys", "f", "n", "nf")

    def __init__(self, share_keys: list[bytes], group_key: bytes) -> None:
        self.n = len(share_keys)
        self.f = faults_tolerated(self.n)
        self.nf = self.n - self.f
        self._share_keys = share_keys
        self._group_key = group_key

    def verify_share(self, replica_id: int, statement: bytes, share: bytes) -> bool:
        if type(replica_id) is not int or not 0 <= replica_id < self.n:
            return False
        if not isinstance(statement, bytes) or type(share) is not bytes:
            return False
        return hmac.compare_digest(_tag(self._share_keys[replica_id], statement, SHARE_SIZE),
                                   share)

    def combine(self, shares: Mapping[int, bytes], statement: bytes) -> Certificate:
        if not isinstance(statement, bytes):
            raise TypeError(f"statement must be bytes, got {type(statement).__name__}")
        for replica_id in shares:
            if type(replica_id) is not int or not 0 <= replica_id < self.n:
                raise ValueError(f"share from unknown replica id {replica_id!r}")
        if len(shares) < self.nf:
            raise CombineError(
                f"need nf = {self.nf} shares from distinct replicas, got {len(shares)}; "
                "wait for more SUPPORT messages")
        chosen = list(shares)[:self.nf]
        if all(self.verify_share(i, statement, shares[i]) for i in chosen):
            return Certificate(bitmap_from_ids(chosen, self.n),
                               _tag(self._group_key, statement, CERT_SIGNATURE_SIZE))
        bad = [i for i, share in shares.items() if not self.verify_share(i, statement, share)]
        raise CombineError(
            f"invalid share(s) from replica(s) {', '.join(map(str, sorted(bad)))}; drop them "
            "and combine again once nf valid shares are available", tuple(bad))

    def verify_cert(self, cert: Certificate, statement: bytes) -> bool:
        if type(cert) is not Certificate or not isinstance(statement, bytes):
            return False
        if not bitmap_ok(cert.bitmap, self.n, self.nf) or type(cert.signature) is not bytes:
            return False
        return hmac.compare_digest(_tag(self._group_key, statement, CERT_SIGNATURE_SIZE),
                                   cert.signature)

    def __repr__(self) -> str:
        return f"FakeThresholdVerifier(n={self.n}, keys=<hidden>)"

    __str__ = __repr__


class _FakeSigner(Signer):
    __slots__ = ("_key", "party")

    def __init__(self, party: Party, key: bytes) -> None:
        self.party = party
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return _tag(self._key, data, SIGNATURE_SIZE)

    def __repr__(self) -> str:
        return f"FakeSigner(party={self.party}, key=<hidden>)"

    __str__ = __repr__


class _FakeVerifier(SignatureVerifier):
    __slots__ = ("_by_party", "_by_public")

    def __init__(self, keys: dict[Party, bytes], public: dict[Party, bytes]) -> None:
        self._by_party = keys
        self._by_public = {public[party]: key for party, key in keys.items()}

    def verify(self, signer: Party | bytes, data: bytes, signature: bytes) -> bool:
        try:
            key = (self._by_public if type(signer) is bytes else self._by_party).get(signer)
        except TypeError:
            return False
        if key is None or type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
            return False
        try:
            return hmac.compare_digest(_tag(key, data, SIGNATURE_SIZE), signature)
        except TypeError:
            return False

    def __repr__(self) -> str:
        return f"FakeVerifier(parties={len(self._by_party)}, keys=<hidden>)"

    __str__ = __repr__


class FakeCrypto:
    """All keys of a simulated cluster of ``n`` replicas and ``clients`` clients.

    ``suite(party)`` gives the :class:`CryptoSuite` a simulated replica or client uses;
    ``suite(None)`` an observer's (verifiers only). Same seed, same keys, same bytes.
    """

    __slots__ = ("_parties", "_public", "_root", "_sign_keys", "_threshold", "clients", "n")

    def __init__(self, n: int, clients: int, seed: bytes | int, *, purpose: str,
                 insecure_bench: bool = False) -> None:
        if purpose not in ALLOWED_PURPOSES and insecure_bench is not True:
            raise InsecureBackendError(
                f"the 'fake' crypto backend is insecure and refused for purpose {purpose!r}; "
                "it is only for purpose='sim'/'test' or an explicit --insecure-bench run")
        if type(clients) is not int or clients < 0:
            raise ValueError(f"clients must be an int >= 0, got {clients!r}")
        faults_tolerated(n)
        if type(seed) is int:
            seed = seed.to_bytes(16, "little", signed=True)
        if type(seed) is not bytes:
            raise ValueError("seed must be bytes or int")
        self.n, self.clients = n, clients
        self._root = hashlib.blake2b(seed, digest_size=32, person=_PERSON).digest()
        self._parties = [replica(i) for i in range(n)] + [client(j) for j in range(clients)]
        self._sign_keys = {p: self._derive(b"sign", p) for p in self._parties}
        self._public = {p: self._derive(b"public", p) for p in self._parties}
        self._threshold = _FakeThresholdVerifier(
            [self._derive(b"share", replica(i)) for i in range(n)],
            self._derive(b"group", None))

    def _derive(self, label: bytes, party: Party | None, other: Party | None = None) -> bytes:
        data = label + (encode_party(party) if party else b"") + (
            encode_party(other) if other else b"")
        return hashlib.blake2b(data, key=self._root, digest_size=32, person=_PERSON).digest()

    def public_key(self, party: Party) -> bytes:
        """The fake 32-byte "public key" of ``party`` (for ``verify(bytes, ...)``)."""
        return self._public[party]

    def suite(self, party: Party | None) -> CryptoSuite:
        """The crypto a simulated ``party`` holds (``None``: verifiers only)."""
        if party is not None and party not in self._sign_keys:
            raise ValueError(f"{party} is not part of this fake cluster")
        verifier = _FakeVerifier(self._sign_keys, self._public)
        if party is None:
            return CryptoSuite(party=None, threshold=self._threshold, verifier=verifier,
                               insecure=True)
        pair_keys = {}
        for peer in self._parties:
            if peer == party or (party.role is Role.CLIENT and peer.role is Role.CLIENT):
                continue
            low, high = sorted((party, peer), key=lambda p: (p.role.value, p.id))
            pair_keys[peer] = self._derive(b"mac", low, high)
        signer = _FakeShareSigner(party.id, self._derive(b"share", party)) \
            if party.role is Role.REPLICA else None
        return CryptoSuite(
            party=party, threshold_signer=signer, threshold=self._threshold,
            macs=PairwiseMacKeys(party, pair_keys),
            signer=_FakeSigner(party, self._sign_keys[party]), verifier=verifier, insecure=True)

    def __repr__(self) -> str:
        return f"FakeCrypto(n={self.n}, clients={self.clients}, keys=<hidden>)"

    __str__ = __repr__
