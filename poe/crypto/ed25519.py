"""Ed25519 signatures (PyNaCl, i.e. libsodium) for client requests, VC-REQUEST and CHECKPOINT.

These are the transferable signatures of PROTOCOL.md §1.4: a signed client request stays
verifiable after the primary forwards it inside a PROPOSE; a signed VC-REQUEST inside an
NV-PROPOSE. Callers sign the domain-separated statements of :mod:`poe.crypto.statements`.

Keys and signatures are plain RFC 8032 Ed25519: a 32-byte private seed, a 32-byte public key
and 64-byte deterministic signatures, byte for byte those of the earlier ``cryptography``
(OpenSSL) backend, so existing key files and signed messages stay valid (tests/crypto checks
both against each other and against the RFC 8032 vectors). libsodium is the faster binding here
(issue #15; docs/crypto.md) and is also the stricter verifier: it refuses public keys and
signature points of small order and non-canonical encodings, which honest signers never produce.

Signing and verification go through :mod:`nacl.bindings` (the public low-level API) rather than
``SigningKey``/``VerifyKey``: no encoder or wrapper objects per call. PyNaCl has no detached
verify binding, so ``verify`` opens ``signature ‖ data`` (what ``VerifyKey.verify`` does too).

Must never: raise on a hostile signature or public key (``verify`` returns ``False``), or show
the private key in ``repr``.
"""
from __future__ import annotations

from collections.abc import Mapping

from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import CryptoError

from .base import SIGNATURE_SIZE, Party, SignatureVerifier, Signer

__all__ = ["PUBLIC_KEY_SIZE", "SEED_SIZE", "Ed25519Signer", "Ed25519Verifier", "public_key_of"]

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32


def _check_seed(seed: bytes) -> None:
    if type(seed) is not bytes or len(seed) != SEED_SIZE:
        raise ValueError(f"Ed25519 private seed must be {SEED_SIZE} bytes")


def public_key_of(seed: bytes) -> bytes:
    """The raw 32-byte public key of a 32-byte private seed."""
    _check_seed(seed)
    return crypto_sign_seed_keypair(seed)[0]


class Ed25519Signer(Signer):
    """One party's Ed25519 private key."""

    __slots__ = ("_public", "_secret", "party")

    def __init__(self, party: Party, seed: bytes) -> None:
        _check_seed(seed)
        self.party = party
        # libsodium's 64-byte secret key: seed ‖ public key
        self._public, self._secret = crypto_sign_seed_keypair(seed)

    def sign(self, data: bytes) -> bytes:
        return crypto_sign(data, self._secret)[:SIGNATURE_SIZE]

    def public_key(self) -> bytes:
        """Raw 32-byte public key, as listed in cluster.toml."""
        return self._public

    def __repr__(self) -> str:
        return f"Ed25519Signer(party={self.party}, key=<hidden>)"

    __str__ = __repr__


class Ed25519Verifier(SignatureVerifier):
    """Verifies signatures of the cluster's parties (keys checked once, at construction).

    libsodium takes the raw public key on every call, so there is nothing to parse or cache:
    a party's key is looked up, a raw key is used as given (invalid points fail the verify).
    """

    __slots__ = ("_parties",)

    def __init__(self, public_keys: Mapping[Party, bytes]) -> None:
        parties: dict[Party, bytes] = {}
        for party, raw in public_keys.items():
            if type(raw) is not bytes or len(raw) != PUBLIC_KEY_SIZE:
                raise ValueError(f"Ed25519 public key of {party} is not 32 valid bytes")
            parties[party] = raw
        self._parties = parties

    def _key(self, signer: Party | bytes) -> bytes | None:
        if type(signer) is bytes:
            return signer if len(signer) == PUBLIC_KEY_SIZE else None
        try:
            return self._parties.get(signer)
        except TypeError:  # unhashable
            return None

    def verify(self, signer: Party | bytes, data: bytes, signature: bytes) -> bool:
        key = self._key(signer)
        if key is None or type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
            return False
        try:
            crypto_sign_open(signature + data, key)
        except (CryptoError, TypeError, ValueError):
            return False
        return True

    def __repr__(self) -> str:
        return f"Ed25519Verifier(parties={len(self._parties)})"
