"""BLS12-381 certificates with blspy's ``PopSchemeMPL`` (PROTOCOL.md §1.5, §2.5, §2.7).

Two verifiers share the same replica key shares and share format:

* :class:`BlsThresholdVerifier` (kind ``"bls"``, the default): a real t-of-n threshold
  signature, ``t = nf``. ``combine`` computes ``Σ c_i·σ_i`` with the Δ trick
  (:mod:`poe.crypto.shamir`); the result equals ``PopSchemeMPL.sign(s, m)`` for the dealer's
  secret ``s`` whatever the signer set, and is checked against one group public key.
* :class:`BlsMultiVerifier` (kind ``"bls-multi"``): aggregate signature over the signers'
  proof-of-possession share keys; the bitmap is bound to the signature and the aggregate public
  key is cached per bitmap.

Combining is optimistic: shares are decoded without the (expensive) subgroup check, combined,
the result is decoded *with* the check and verified once; only on failure are the shares
checked one by one to name the bad signers.

The group operations go through a small "ops" class (:class:`BlspyOps` here,
:class:`poe.crypto.bls_pyblst.PyblstOps` for the optional ``pyblst`` binding of blst): both
read and write the same bytes (48-byte G1 keys, 96-byte G2 signatures, 32-byte big-endian
scalars) and produce byte-identical shares and certificates. :func:`select_backend` picks one
(pyblst when importable, overridable with ``POE_BLS_BACKEND=blspy|pyblst``).

Must never: verify shares one by one on the fast path, let a blspy exception escape from a
``verify*`` call, or show a private key in ``repr`` (blspy's own ``PrivateKey`` repr does).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from blspy import G1Element, G2Element, PopSchemeMPL, PrivateKey

from .base import (
    CERT_SIGNATURE_SIZE,
    SHARE_SIZE,
    Certificate,
    ThresholdSigner,
    ThresholdVerifier,
    bitmap_from_ids,
    bitmap_ids,
    bitmap_ok,
    faults_tolerated,
)
from .errors import CombineError, CryptoError
from .shamir import MsmProgram, compile_msm, lagrange_delta, run_msm

__all__ = [
    "BACKEND_ENV",
    "BLS_BACKENDS",
    "G1_SIZE",
    "SCALAR_SIZE",
    "BlsMultiVerifier",
    "BlsThresholdSigner",
    "BlsThresholdVerifier",
    "BlspyOps",
    "backend_classes",
    "decode_g1",
    "decode_g2",
    "select_backend",
]

SCALAR_SIZE = 32
G1_SIZE = 48
PROGRAM_CACHE_MAX = 1024     # signer sets whose combination program is kept
AGGREGATE_KEY_CACHE_MAX = 1024
VERIFIED_CACHE_MAX = 4096    # (statement, signature) pairs known valid (view change re-checks)
BLS_BACKENDS = ("pyblst", "blspy")   # preference order of select_backend()
BACKEND_ENV = "POE_BLS_BACKEND"


def decode_g1(data: object) -> G1Element | None:
    """Checked decode of a compressed G1 point; ``None`` if invalid or the identity."""
    if type(data) is not bytes or len(data) != G1_SIZE:
        return None
    try:
        point = G1Element.from_bytes(data)
    except (ValueError, RuntimeError):
        return None
    return None if point == G1Element() else point


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


def _put_bounded(cache: dict, key: object, value: object, limit: int) -> None:
    if limit <= 0:
        return
    if len(cache) >= limit:
        del cache[next(iter(cache))]  # FIFO eviction: oldest entry first
    cache[key] = value


class BlspyOps:
    """The group operations of the blspy backend (the reference for byte identity)."""

    name = "blspy"
    decode_g1 = staticmethod(decode_g1)
    decode_g2 = staticmethod(decode_g2)
    verify = staticmethod(_verify)

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
    def run_msm(program: MsmProgram, points: list) -> G2Element:
        return run_msm(program, points)

    @staticmethod
    def finish(point: G2Element) -> tuple[bytes, G2Element | None]:
        """Encode a combined point; return it again decoded *with* the subgroup check (its
        inputs were decoded without one)."""
        raw = bytes(point)
        return raw, decode_g2(raw)


class BlsThresholdSigner(ThresholdSigner):
    """Replica ``replica``'s key share ``k_i``; signs SUPPORT statements."""

    __slots__ = ("_key", "replica")
    _ops = BlspyOps

    def __init__(self, replica_id: int, share_secret: bytes) -> None:
        if type(share_secret) is not bytes or len(share_secret) != SCALAR_SIZE:
            raise ValueError(f"BLS key share must be {SCALAR_SIZE} bytes")
        try:
            self._key = self._ops.secret_key(share_secret)
        except (ValueError, RuntimeError):
            raise ValueError("BLS key share is not a scalar below the group order") from None
        self.replica = replica_id

    def share_sign(self, statement: bytes) -> bytes:
        if not isinstance(statement, bytes):
            raise TypeError(f"statement must be bytes, got {type(statement).__name__}")
        return self._ops.sign(self._key, statement)

    def public_key(self) -> bytes:
        """The share public key ``k_i·G`` (48 bytes), as listed in cluster.toml."""
        return self._ops.public_key(self._key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(replica={self.replica}, key=<hidden>)"

    __str__ = __repr__


class _BlsVerifierBase(ThresholdVerifier):
    """Share verification and the optimistic combine/fallback shared by both kinds."""

    _ops = BlspyOps

    def __init__(self, share_public_keys: Sequence[bytes], verified_cache: int) -> None:
        n = len(share_public_keys)
        self.n, self.f = n, faults_tolerated(n)
        self.nf = n - self.f
        keys = []
        for index, raw in enumerate(share_public_keys):
            point = self._ops.decode_g1(raw)
            if point is None:
                raise ValueError(f"share public key of replica {index} is not a valid G1 point")
            keys.append(point)
        self._share_keys: list = keys
        self._verified: dict[tuple[bytes, bytes], bool] = {}
        self._verified_max = verified_cache

    def verify_share(self, replica_id: int, statement: bytes, share: bytes) -> bool:
        if type(replica_id) is not int or not 0 <= replica_id < self.n:
            return False
        if not isinstance(statement, bytes):
            return False
        point = self._ops.decode_g2(share)
        return point is not None and self._ops.verify(self._share_keys[replica_id], statement,
                                                      point)

    def _chosen(self, shares: Mapping[int, bytes]) -> tuple[int, ...]:
        if not isinstance(shares, Mapping):
            raise TypeError("shares must be a mapping replica id -> share bytes")
        for replica_id in shares:
            if type(replica_id) is not int or not 0 <= replica_id < self.n:
                raise ValueError(f"share from unknown replica id {replica_id!r}")
        if len(shares) < self.nf:
            raise CombineError(
                f"need nf = {self.nf} shares from distinct replicas, got {len(shares)}; "
                "wait for more SUPPORT messages")
        chosen = []
        for replica_id in shares:
            chosen.append(replica_id)
            if len(chosen) == self.nf:
                break
        return tuple(sorted(chosen))

    def _fallback(self, shares: Mapping[int, bytes], statement: bytes) -> CombineError:
        bad = [i for i, share in shares.items() if not self.verify_share(i, statement, share)]
        if bad:
            return CombineError(
                f"invalid share(s) from replica(s) {', '.join(map(str, sorted(bad)))}; drop "
                "them and combine again once nf valid shares are available", tuple(bad))
        return CombineError(
            "shares verify one by one but do not combine: the share public keys do not match "
            "the group key; regenerate keys with `poe keygen`")

    def _verify_cert(self, cert: Certificate, statement: bytes, bound: bytes,
                     public_key) -> bool:
        """Shape checks, the verified-certificates cache (keyed by ``bound + statement``),
        then one pairing check against ``public_key()``; never raises."""
        if type(cert) is not Certificate or not isinstance(statement, bytes):
            return False
        if not bitmap_ok(cert.bitmap, self.n, self.nf):
            return False
        signature = cert.signature
        if type(signature) is not bytes or len(signature) != CERT_SIGNATURE_SIZE:
            return False
        if (bound + statement, signature) in self._verified:
            return True
        point = self._ops.decode_g2(signature)
        if point is None or not self._ops.verify(public_key(), statement, point):
            return False
        self._remember(bound + statement, signature)
        return True

    def _remember(self, statement: bytes, signature: bytes) -> None:
        _put_bounded(self._verified, (statement, signature), True, self._verified_max)


class BlsThresholdVerifier(_BlsVerifierBase):
    """t-of-n threshold BLS, ``t = nf``: certificates verify against one group key."""

    def __init__(self, group_public_key: bytes, share_public_keys: Sequence[bytes],
                 verified_cache: int = VERIFIED_CACHE_MAX) -> None:
        super().__init__(share_public_keys, verified_cache)
        group = self._ops.decode_g1(group_public_key)
        if group is None:
            raise ValueError("BLS group public key is not a valid G1 point")
        self._group_key = group
        self._programs: dict[tuple[int, ...], MsmProgram] = {}

    def program(self, signers: tuple[int, ...]) -> MsmProgram:
        """The cached Δ-trick combination program for a sorted signer set."""
        program = self._programs.get(signers)
        if program is None:
            coefficients = lagrange_delta([i + 1 for i in signers], self.n)
            program = compile_msm(coefficients)
            _put_bounded(self._programs, signers, program, PROGRAM_CACHE_MAX)
        return program

    def combine(self, shares: Mapping[int, bytes], statement: bytes) -> Certificate:
        if not isinstance(statement, bytes):
            raise TypeError(f"statement must be bytes, got {type(statement).__name__}")
        signers = self._chosen(shares)
        ops = self._ops
        points = [ops.decode_g2(shares[i], checked=False) for i in signers]
        if all(point is not None for point in points):
            # finish: the one subgroup check of the fast path (blspy)
            combined, point = ops.finish(ops.run_msm(self.program(signers), points))
            if point is not None and ops.verify(self._group_key, statement, point):
                self._remember(statement, combined)
                return Certificate(bitmap_from_ids(signers, self.n), combined)
        raise self._fallback(shares, statement)

    def verify_cert(self, cert: Certificate, statement: bytes) -> bool:
        # the combined signature is the same for any signer set: the bitmap is not bound
        return self._verify_cert(cert, statement, b"", lambda: self._group_key)


class BlsMultiVerifier(_BlsVerifierBase):
    """Aggregate signature + signer bitmap over proof-of-possession share keys.

    Sound only because every share key's proof of possession was checked when the cluster
    file was loaded (rogue-key defence). The bitmap is bound: a certificate whose bitmap
    names other signers does not verify.
    """

    def __init__(self, share_public_keys: Sequence[bytes],
                 verified_cache: int = VERIFIED_CACHE_MAX) -> None:
        super().__init__(share_public_keys, verified_cache)
        self._aggregate_keys: dict[bytes, object] = {}

    def aggregate_key(self, bitmap: bytes):
        """Σ pk_i over the bitmap's signers, cached by bitmap (bitmap must be valid)."""
        key = self._aggregate_keys.get(bitmap)
        if key is None:
            ids = bitmap_ids(bitmap)
            key = self._share_keys[ids[0]]
            for i in ids[1:]:
                key = key + self._share_keys[i]
            _put_bounded(self._aggregate_keys, bitmap, key, AGGREGATE_KEY_CACHE_MAX)
        return key

    def combine(self, shares: Mapping[int, bytes], statement: bytes) -> Certificate:
        if not isinstance(statement, bytes):
            raise TypeError(f"statement must be bytes, got {type(statement).__name__}")
        signers = self._chosen(shares)
        ops = self._ops
        points = [ops.decode_g2(shares[i], checked=False) for i in signers]
        if all(point is not None for point in points):
            total = points[0]
            for point in points[1:]:
                total = total + point
            combined, point = ops.finish(total)
            bitmap = bitmap_from_ids(signers, self.n)
            if point is not None and ops.verify(self.aggregate_key(bitmap), statement, point):
                self._remember(bitmap + statement, combined)
                return Certificate(bitmap, combined)
        raise self._fallback(shares, statement)

    def verify_cert(self, cert: Certificate, statement: bytes) -> bool:
        # the aggregate key depends on the signers: the bitmap is part of what is verified
        if type(cert) is not Certificate:
            return False
        return self._verify_cert(cert, statement, cert.bitmap,
                                 lambda: self.aggregate_key(cert.bitmap))


# ---------------------------------------------------------------------------------------------
# backend selection
# ---------------------------------------------------------------------------------------------

def _pyblst_importable() -> bool:
    try:
        import pyblst  # noqa: F401
    except ImportError:
        return False
    return True


def select_backend(environ: Mapping[str, str] | None = None) -> str:
    """The BLS backend to use: ``$POE_BLS_BACKEND`` if set (``"blspy"`` or ``"pyblst"``),
    else ``"pyblst"`` when importable (the faster one, docs/crypto.md), else ``"blspy"``.
    Raises :class:`CryptoError` for an unknown name or an explicit ``pyblst`` that is not
    installed."""
    env = os.environ if environ is None else environ
    wanted = env.get(BACKEND_ENV, "").strip().lower()
    if wanted:
        if wanted not in BLS_BACKENDS:
            raise CryptoError(f"{BACKEND_ENV}={wanted!r}: choose one of "
                              f"{', '.join(BLS_BACKENDS)}")
        if wanted == "pyblst" and not _pyblst_importable():
            raise CryptoError(f"{BACKEND_ENV}=pyblst but pyblst is not installed; "
                              "pip install 'poe[fast]' or unset the variable")
        return wanted
    return "pyblst" if _pyblst_importable() else "blspy"


def backend_classes(name: str) -> tuple[type[BlsThresholdSigner], type[BlsThresholdVerifier],
                                        type[BlsMultiVerifier]]:
    """(signer, threshold verifier, multi verifier) classes of backend ``name``."""
    if name == "blspy":
        return BlsThresholdSigner, BlsThresholdVerifier, BlsMultiVerifier
    if name == "pyblst":
        from .bls_pyblst import PyblstMultiVerifier, PyblstThresholdSigner, PyblstThresholdVerifier
        return PyblstThresholdSigner, PyblstThresholdVerifier, PyblstMultiVerifier
    raise CryptoError(f"unknown BLS backend {name!r}; choose one of {', '.join(BLS_BACKENDS)}")
