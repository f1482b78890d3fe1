"""The blspy BLS backend: the group operations of :mod:`poe.crypto.bls` on blspy's
``PopSchemeMPL`` (the reference the pyblst backend is checked against byte for byte).

blspy has wheels for CPython 3.11 and 3.12 only (none for 3.13): the package depends on it
there (``python_version < "3.13"``); elsewhere :mod:`poe.crypto.bls_pyblst` does the same
work. Nothing else in poe imports blspy: :func:`poe.crypto.bls.backend_ops` loads this module
only when this backend is chosen.

Must never: let a blspy exception escape from a ``verify*`` call, or show a private key in
``repr`` (blspy's own ``PrivateKey`` repr does: no ``PrivateKey`` leaves this module's ops).
"""
from __future__ import annotations

from blspy import G1Element, G2Element, PopSchemeMPL, PrivateKey

from .base import SHARE_SIZE
from .bls import G1_SIZE, BlsMultiVerifier, BlsThresholdSigner, BlsThresholdVerifier
from .shamir import MsmProgram, run_msm

__all__ = [
    "BlspyMultiVerifier",
    "BlspyOps",
    "BlspyThresholdSigner",
    "BlspyThresholdVerifier",
    "decode_g1",
    "decode_g2",
]

_G1_IDENTITY = G1Element()


def decode_g1(data: object) -> G1Element | None:
    """Checked decode of a compressed G1 point; ``None`` if invalid or the identity."""
    if type(data) is not bytes or len(data) != G1_SIZE:
        return None
    try:
        point = G1Element.from_bytes(data)
    except (ValueError, RuntimeError):
        return None
    return None if point == _G1_IDENTITY else point


def decode_g2(data: object, checked: bool = True) -> G2Element | None:
    """Decode a compressed G2 point (subgroup-checked unless ``checked=False``);
    ``None`` if the bytes are not a point."""
    if type(data) is not bytes or len(data) != SHARE_SIZE:
        return None
    try:
        return G2Element.from_bytes(data) if checked else G2Element.from_bytes_unchecked(data)
    except (ValueError, RuntimeError):
        return None


def _verify(public_key: G1Element, statement: bytes, signature: G2Element) -> bool:
    try:
        return bool(PopSchemeMPL.verify(public_key, statement, signature))
    except (ValueError, RuntimeError, TypeError):
        return False


def _pop_verify(public_key: G1Element, proof: G2Element) -> bool:
    try:
        return bool(PopSchemeMPL.pop_verify(public_key, proof))
    except (ValueError, RuntimeError, TypeError):
        return False


class BlspyOps:
    """The group operations of the blspy backend (the reference for byte identity)."""

    name = "blspy"
    G1_IDENTITY = _G1_IDENTITY
    decode_g1 = staticmethod(decode_g1)
    decode_g2 = staticmethod(decode_g2)
    verify = staticmethod(_verify)
    pop_verify = staticmethod(_pop_verify)

    @staticmethod
    def secret_key(share_secret: bytes) -> PrivateKey:
        """The key for 32 big-endian bytes; ``ValueError`` if not below the group order."""
        return PrivateKey.from_bytes(share_secret)

    @staticmethod
    def sign(key: PrivateKey, statement: bytes) -> bytes:
        return bytes(PopSchemeMPL.sign(key, statement))

    @staticmethod
    def public_key(key: PrivateKey) -> bytes:
        return bytes(key.get_g1())

    @staticmethod
    def pop_prove(key: PrivateKey) -> bytes:
        """The proof of possession of ``key`` (96 bytes), as listed in cluster.toml."""
        return bytes(PopSchemeMPL.pop_prove(key))

    @staticmethod
    def run_msm(program: MsmProgram, points: list):
        """The addition program on G1 or G2 points (``+`` and ``negate()``)."""
        return run_msm(program, points)

    @staticmethod
    def finish(point: G2Element) -> tuple[bytes, G2Element | None]:
        """Encode a combined point; return it again decoded *with* the subgroup check (its
        inputs were decoded without one)."""
        raw = bytes(point)
        return raw, decode_g2(raw)


class BlspyThresholdSigner(BlsThresholdSigner):
    __slots__ = ()
    _ops = BlspyOps


class BlspyThresholdVerifier(BlsThresholdVerifier):
    _ops = BlspyOps


class BlspyMultiVerifier(BlsMultiVerifier):
    _ops = BlspyOps
