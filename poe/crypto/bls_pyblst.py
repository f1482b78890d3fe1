"""The ``pyblst`` (blst) BLS backend: same scheme and bytes as :mod:`poe.crypto.bls_blspy`.

The package depends on pyblst on CPython 3.13 (where blspy has no wheels) and offers it as
the ``fast`` extra on 3.11 and 3.12; with it alone, every BLS operation of poe works: key
generation (public keys, proofs of possession), key-file checks, signing, combining and
verifying.

blspy's ``PopSchemeMPL`` is the IETF BLS signature draft's proof-of-possession scheme on
BLS12-381 with minimal-pubkey-size keys: public keys ``k·G1`` (48-byte compressed), signatures
``k·H(m)`` in G2 (96-byte compressed) with ``H`` = hash_to_curve ``BLS12381G2_XMD:SHA-256_SSWU_RO_``
under the DST :data:`DST`, secret keys 32-byte big-endian scalars. pyblst exposes exactly the
primitives needed to compute the same values with blst: ``BlstP2Element.hash_to_group(msg,
dst)``, ``scalar_mul`` (any Python int, reduced mod r), ``+``/``-``, ``compress``/``uncompress``
(ZCash encoding, as blspy's) and ``miller_loop`` + ``final_verify`` for the pairing check
``e(pk, H(m)) == e(G1, σ)``. A proof of possession is ``k·H'(pk)`` with ``H'`` under
:data:`POP_DST` (``PopSchemeMPL.pop_prove``). tests/crypto checks keys, proofs of possession,
shares and certificates byte for byte against blspy and verifies each backend's certificates
with the other (where blspy is installed).

Differences that do not change any byte: ``uncompress`` always checks subgroup membership
(there is no unchecked decode), so share points entering ``combine`` are checked once each and
the combined point, a sum of subgroup points, is not decoded again. ``scalar_mul`` costs the
same for any scalar size (~full 255-bit ladder), so the Lagrange combination still runs the
Δ-trick addition program of :mod:`poe.crypto.shamir` (``-`` for negation).

Must never: let a pyblst exception escape from a ``verify*`` call, or show a key in ``repr``.
"""
from __future__ import annotations

from pyblst import BlstP1Element, BlstP2Element, final_verify, miller_loop

from .base import SHARE_SIZE
from .bls import (
    G1_SIZE,
    BlsMultiVerifier,
    BlsThresholdSigner,
    BlsThresholdVerifier,
)
from .shamir import MsmProgram, R

__all__ = [
    "DST",
    "POP_DST",
    "PyblstMultiVerifier",
    "PyblstOps",
    "PyblstThresholdSigner",
    "PyblstThresholdVerifier",
]

# blspy PopSchemeMPL's signing DST (IETF draft-irtf-cfrg-bls-signature, POP scheme, G2 sigs)
DST = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
# and its proof-of-possession DST (PopSchemeMPL.pop_prove / pop_verify)
POP_DST = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
# compressed BLS12-381 G1 generator (the IETF / ZCash encoding)
_G1_GENERATOR = bytes.fromhex(
    "97f1d3a73197d7942695638c4fa9ac0fc3688c4f9774b905a14e3a3f171bac586c55e83ff97a1aeffb3af00adb"
    "22c6bb")
_G1 = BlstP1Element.uncompress(_G1_GENERATOR)
_G1_IDENTITY = BlstP1Element()
_hash_to_g2 = BlstP2Element.hash_to_group


def decode_g1(data: object) -> BlstP1Element | None:
    """Checked decode of a compressed G1 point; ``None`` if invalid or the identity."""
    if type(data) is not bytes or len(data) != G1_SIZE:
        return None
    try:
        point = BlstP1Element.uncompress(data)
    except (ValueError, RuntimeError, TypeError):
        return None
    return None if point == _G1_IDENTITY else point


def decode_g2(data: object, checked: bool = True) -> BlstP2Element | None:
    """Decode a compressed G2 point, always subgroup-checked (``checked`` is accepted for the
    common interface); ``None`` if the bytes are not a point of the group."""
    if type(data) is not bytes or len(data) != SHARE_SIZE:
        return None
    try:
        return BlstP2Element.uncompress(data)
    except (ValueError, RuntimeError, TypeError):
        return None


def verify(public_key: BlstP1Element, statement: bytes, signature: BlstP2Element) -> bool:
    """``e(pk, H(statement)) == e(G1, σ)``; never raises."""
    try:
        return bool(final_verify(miller_loop(public_key, _hash_to_g2(statement, DST)),
                                 miller_loop(_G1, signature)))
    except (ValueError, RuntimeError, TypeError):
        return False


def pop_verify(public_key: BlstP1Element, proof: BlstP2Element) -> bool:
    """``e(pk, H'(pk)) == e(G1, π)`` with ``H'`` under :data:`POP_DST`; ``public_key`` comes
    from :func:`decode_g1` (subgroup-checked, not the identity); never raises."""
    try:
        message = public_key.compress()
        return bool(final_verify(miller_loop(public_key, _hash_to_g2(message, POP_DST)),
                                 miller_loop(_G1, proof)))
    except (ValueError, RuntimeError, TypeError, AttributeError):
        return False


class PyblstOps:
    """The group operations of the pyblst backend (see the module docstring)."""

    name = "pyblst"
    G1_IDENTITY = _G1_IDENTITY
    decode_g1 = staticmethod(decode_g1)
    decode_g2 = staticmethod(decode_g2)
    verify = staticmethod(verify)
    pop_verify = staticmethod(pop_verify)

    @staticmethod
    def secret_key(share_secret: bytes) -> int:
        """The scalar of 32 big-endian bytes; ``ValueError`` if not below the group order
        (as blspy's ``PrivateKey.from_bytes``)."""
        value = int.from_bytes(share_secret, "big")
        if value >= R:
            raise ValueError("scalar not below the group order")
        return value

    @staticmethod
    def sign(key: int, statement: bytes) -> bytes:
        return _hash_to_g2(statement, DST).scalar_mul(key).compress()

    @staticmethod
    def public_key(key: int) -> bytes:
        return _G1.scalar_mul(key).compress()

    @staticmethod
    def pop_prove(key: int) -> bytes:
        """The proof of possession of ``key`` (96 bytes), as blspy's ``pop_prove``."""
        return _hash_to_g2(_G1.scalar_mul(key).compress(), POP_DST).scalar_mul(key).compress()

    @staticmethod
    def run_msm(program: MsmProgram, points: list):
        """:func:`poe.crypto.shamir.run_msm` with ``-`` for negation (G1 or G2 points)."""
        if len(points) != program.inputs:
            raise ValueError(f"program expects {program.inputs} points, got {len(points)}")
        registers: list = list(points)
        registers.extend([None] * (program.registers - program.inputs))
        for dst, a, b in program.ops:
            registers[dst] = registers[a] + registers[b] if b >= 0 else -registers[a]
        return registers[program.result]

    @staticmethod
    def finish(point: BlstP2Element) -> tuple[bytes, BlstP2Element]:
        """Encode a combined point; its inputs were subgroup-checked, so it is in the group."""
        return point.compress(), point


class PyblstThresholdSigner(BlsThresholdSigner):
    __slots__ = ()
    _ops = PyblstOps


class PyblstThresholdVerifier(BlsThresholdVerifier):
    _ops = PyblstOps


class PyblstMultiVerifier(BlsMultiVerifier):
    _ops = PyblstOps
