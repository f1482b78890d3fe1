"""Ed25519 signatures (``cryptography``) for client requests, VC-REQUEST and CHECKPOINT.

These are the transferable signatures of PROTOCOL.md §1.4: a signed client request stays
verifiable after the primary forwards it inside a PROPOSE; a signed VC-REQUEST inside an
NV-PROPOSE. Callers sign the domain-separated statements of :mod:`poe.crypto.statements`.

Must never: raise on a hostile signature or public key (``verify`` returns ``False``), or show
the private key in ``repr``.
"""
from __future__ import annotations

from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .base import SIGNATURE_SIZE, Party, SignatureVerifier, Signer

__all__ = ["PUBLIC_KEY_SIZE", "SEED_SIZE", "Ed25519Signer", "Ed25519Verifier", "public_key_of"]

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
RAW_KEY_CACHE_MAX = 4096  # parsed public keys given as raw bytes


def public_key_of(seed: bytes) -> bytes:
    """The raw 32-byte public key of a 32-byte private seed."""
    if type(seed) is not bytes or len(seed) != SEED_SIZE:
        raise ValueError(f"Ed25519 private seed must be {SEED_SIZE} bytes")
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


class Ed25519Signer(Signer):
    """One party's Ed25519 private key."""

    __slots__ = ("_key", "party")

    def __init__(self, party: Party, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != SEED_SIZE:
            raise ValueError(f"Ed25519 private seed must be {SEED_SIZE} bytes")
        self.party = party
        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_key(self) -> bytes:
        """Raw 32-byte public key, as listed in cluster.toml."""
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def __repr__(self) -> str:
        return f"Ed25519Signer(party={self.party}, key=<hidden>)"

    __str__ = __repr__


def _parse(raw: bytes) -> Ed25519PublicKey | None:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        return None


class Ed25519Verifier(SignatureVerifier):
    """Verifies signatures of the cluster's parties (public keys parsed once)."""

    __slots__ = ("_parties", "_raw")

    def __init__(self, public_keys: Mapping[Party, bytes]) -> None:
        parties: dict[Party, Ed25519PublicKey] = {}
        for party, raw in public_keys.items():
            key = _parse(raw) if type(raw) is bytes and len(raw) == PUBLIC_KEY_SIZE else None
            if key is None:
                raise ValueError(f"Ed25519 public key of {party} is not 32 valid bytes")
            parties[party] = key
        self._parties = parties
        self._raw: dict[bytes, Ed25519PublicKey | None] = {}

    def _key(self, signer: Party | bytes) -> Ed25519PublicKey | None:
        if type(signer) is bytes:
            if len(signer) != PUBLIC_KEY_SIZE:
                return None
            if signer not in self._raw:
                if len(self._raw) >= RAW_KEY_CACHE_MAX:
                    del self._raw[next(iter(self._raw))]
                self._raw[signer] = _parse(signer)
            return self._raw[signer]
        try:
            return self._parties.get(signer)
        except TypeError:
            return None

    def verify(self, signer: Party | bytes, data: bytes, signature: bytes) -> bool:
        key = self._key(signer)
        if key is None or type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
            return False
        try:
            key.verify(signature, data)
        except (InvalidSignature, TypeError, ValueError):
            return False
        return True

    def __repr__(self) -> str:
        return f"Ed25519Verifier(parties={len(self._parties)})"
