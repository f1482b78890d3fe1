"""BLS12-381 certificates in blspy's ``PopSchemeMPL`` scheme (PROTOCOL.md §1.5, §2.5, §2.7).

Two verifiers share the same replica key shares and share format:

* :class:`BlsThresholdVerifier` (kind ``"bls"``, the default): a real t-of-n threshold
  signature, ``t = nf``. ``combine`` computes ``Σ c_i·σ_i`` with the Δ trick
  (:mod:`poe.crypto.shamir`); the result equals ``PopSchemeMPL.sign(s, m)`` for the dealer's
  secret ``s`` whatever the signer set, and is checked against one group public key.
* :class:`BlsMultiVerifier` (kind ``"bls-multi"``): aggregate signature over the signers'
  proof-of-possession share keys; the bitmap is bound to the signature and the aggregate public
  key is cached per bitmap.

Combining is optimistic: shares are decoded without the (expensive) subgroup check where the
backend can, combined, the result is decoded *with* the check and verified once; only on
failure are the shares checked one by one to name the bad signers.

This module imports no BLS library. The group operations go through a small "ops" class of
a backend module: :class:`poe.crypto.bls_blspy.BlspyOps` (blspy) or
:class:`poe.crypto.bls_pyblst.PyblstOps` (pyblst, the binding of blst). Both read and write
the same bytes (48-byte G1 keys, 96-byte G2 signatures, 32-byte big-endian scalars) and
produce byte-identical shares, certificates and proofs of possession. Each backend module
subclasses the classes below with its ops; either one alone is enough (blspy has no wheels
for CPython 3.13, where the package installs pyblst). :func:`select_backend` picks one
(pyblst when importable, else blspy; ``POE_BLS_BACKEND=blspy|pyblst`` overrides),
:func:`backend_classes` / :func:`backend_ops` load it.

Must never: verify shares one by one on the fast path, let a backend exception escape from a
``verify*`` call, or show a private key in ``repr`` (blspy's own ``PrivateKey`` repr does).
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence

from .base import (
    CERT_SIGNATURE_SIZE,
    Certificate,
    ThresholdSigner,
    ThresholdVerifier,
    bitmap_from_ids,
    bitmap_ids,
    bitmap_ok,
    faults_tolerated,
)
from .errors import CombineError, CryptoError
from .shamir import MsmProgram, compile_msm, lagrange_delta

__all__ = [
    "BACKEND_ENV",
    "BACKEND_PACKAGES",
    "BLS_BACKENDS",
    "G1_SIZE",
    "POP_SIZE",
    "SCALAR_SIZE",
    "BlsMultiVerifier",
    "BlsThresholdSigner",
    "BlsThresholdVerifier",
    "backend_classes",
    "backend_ops",
    "installed_backends",
    "select_backend",
]

SCALAR_SIZE = 32
G1_SIZE = 48
POP_SIZE = 96
PROGRAM_CACHE_MAX = 1024     # signer sets whose combination program is kept
AGGREGATE_KEY_CACHE_MAX = 1024
VERIFIED_CACHE_MAX = 4096    # (statement, signature) pairs known valid (view change re-checks)
BLS_BACKENDS = ("pyblst", "blspy")   # preference order of select_backend()
BACKEND_ENV = "POE_BLS_BACKEND"
# backend name -> its module in this package, and the library that module imports
BACKEND_MODULES = {"pyblst": "bls_pyblst", "blspy": "bls_blspy"}
BACKEND_PACKAGES = {"pyblst": "pyblst", "blspy": "blspy"}


def _put_bounded(cache: dict, key: object, value: object, limit: int) -> None:
    if limit <= 0:
        return
    if len(cache) >= limit:
        del cache[next(iter(cache))]  # FIFO eviction: oldest entry first
    cache[key] = value


def _backend_only(cls: type) -> None:
    """Refuse to build the backend-independent classes themselves (they have no ops)."""
    if cls._ops is None:
        raise TypeError(f"{cls.__name__} has no BLS backend: use backend_classes(name) or "
                        "poe.crypto.load_backend(), which choose one (POE_BLS_BACKEND)")


class BlsThresholdSigner(ThresholdSigner):
    """Replica ``replica``'s key share ``k_i``; signs SUPPORT statements. Built through a
    backend's subclass (:func:`backend_classes`)."""

    __slots__ = ("_key", "replica")
    _ops = None

    def __init__(self, replica_id: int, share_secret: bytes) -> None:
        _backend_only(type(self))
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
    """Share verification and the optimistic combine/fallback shared by both kinds. Built
    through a backend's subclass (:func:`backend_classes`)."""

    _ops = None

    def __init__(self, share_public_keys: Sequence[bytes], verified_cache: int) -> None:
        _backend_only(type(self))
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
            # finish: the one subgroup check of the fast path (blspy; pyblst checked
            # each share when decoding)
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

def _importable(name: str) -> bool:
    """Whether backend ``name``'s library imports (installed, and loads on this machine)."""
    try:
        importlib.import_module(BACKEND_PACKAGES[name])
    except ImportError:
        return False
    return True


def installed_backends() -> tuple[str, ...]:
    """The BLS backends whose library is installed, in preference order."""
    return tuple(name for name in BLS_BACKENDS if _importable(name))


def _install_hint(name: str) -> str:
    if name == "blspy":
        return "pip install blspy (wheels for CPython 3.11 and 3.12 only)"
    return "pip install pyblst"


def select_backend(environ: Mapping[str, str] | None = None) -> str:
    """The BLS backend to use: ``$POE_BLS_BACKEND`` if set (``"blspy"`` or ``"pyblst"``),
    else the first installed of ``pyblst`` (the faster verify, docs/crypto.md) and ``blspy``.
    Raises :class:`CryptoError` for an unknown name, a chosen backend that is not installed,
    or no backend installed at all."""
    env = os.environ if environ is None else environ
    wanted = env.get(BACKEND_ENV, "").strip().lower()
    if wanted:
        if wanted not in BLS_BACKENDS:
            raise CryptoError(f"{BACKEND_ENV}={wanted!r}: choose one of "
                              f"{', '.join(BLS_BACKENDS)}")
        if not _importable(wanted):
            raise CryptoError(f"{BACKEND_ENV}={wanted} but {wanted} is not installed; "
                              f"{_install_hint(wanted)}, or unset the variable")
        return wanted
    for name in BLS_BACKENDS:
        if _importable(name):
            return name
    raise CryptoError("no BLS backend is installed (pyblst or blspy; poe-bft depends on one): "
                      "pip install pyblst")


def _backend_module(name: str):
    if name not in BACKEND_MODULES:
        raise CryptoError(f"unknown BLS backend {name!r}; choose one of "
                          f"{', '.join(BLS_BACKENDS)}")
    try:
        return importlib.import_module(f"{__package__}.{BACKEND_MODULES[name]}")
    except ImportError as exc:
        if exc.name not in (BACKEND_PACKAGES[name], None):
            raise
        raise CryptoError(f"BLS backend {name} is not installed; {_install_hint(name)}") \
            from None


def backend_ops(name: str):
    """The ops class of backend ``name`` (group operations, key derivation, proofs of
    possession; see :class:`poe.crypto.bls_blspy.BlspyOps`)."""
    module = _backend_module(name)
    return module.PyblstOps if name == "pyblst" else module.BlspyOps


def backend_classes(name: str) -> tuple[type[BlsThresholdSigner], type[BlsThresholdVerifier],
                                        type[BlsMultiVerifier]]:
    """(signer, threshold verifier, multi verifier) classes of backend ``name``."""
    module = _backend_module(name)
    if name == "pyblst":
        return (module.PyblstThresholdSigner, module.PyblstThresholdVerifier,
                module.PyblstMultiVerifier)
    return module.BlspyThresholdSigner, module.BlspyThresholdVerifier, module.BlspyMultiVerifier
