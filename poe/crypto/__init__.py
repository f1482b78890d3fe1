"""The crypto layer shared by every protocol and the runtime (PROTOCOL.md §1.4-1.6).

Protocols see only the interfaces of :mod:`poe.crypto.base`, bundled in a
:class:`CryptoSuite`; this module builds suites from key files:

* ``load_backend(kind, cluster, secret)`` for one mechanism: ``"bls"`` (t-of-n threshold
  certificates), ``"bls-multi"`` (aggregate + bitmap certificates), ``"mac"`` (pairwise keyed
  BLAKE2b), ``"ed25519"`` (client requests, VC-REQUEST, CHECKPOINT) or ``"fake"``
  (simulation only);
  The BLS kinds run on pyblst when installed, else blspy (same bytes; either alone is
  enough; ``POE_BLS_BACKEND=blspy|pyblst`` overrides, :func:`bls_backend` names the choice);
* ``load_suite(cluster, secret, variant=...)`` for a whole PoE variant: ``"ts"`` = BLS + MAC +
  Ed25519, ``"mac"`` = MAC + Ed25519.

Must never: hand out the fake backend to a real replica (``InsecureBackendError`` unless
``purpose`` is ``"sim"``/``"test"`` or ``insecure_bench=True``), or log any key.
"""
from __future__ import annotations

import dataclasses

from .base import (
    CERT_SIGNATURE_SIZE,
    MAC_SIZE,
    SHARE_SIZE,
    SIGNATURE_SIZE,
    Certificate,
    CryptoSuite,
    MacKeys,
    Party,
    Role,
    SignatureVerifier,
    Signer,
    ThresholdSigner,
    ThresholdVerifier,
    bitmap_from_ids,
    bitmap_ids,
    bitmap_ok,
    client,
    faults_tolerated,
    replica,
)
from .errors import CombineError, CryptoError, InsecureBackendError, KeyFileError
from .keyfile import Cluster, SecretKeys, load_cluster, load_secret
from .statements import (
    checkpoint_statement,
    request_statement,
    support_statement,
    vc_request_statement,
)

__all__ = [
    "BACKENDS",
    "CERT_SIGNATURE_SIZE",
    "MAC_SIZE",
    "SHARE_SIZE",
    "SIGNATURE_SIZE",
    "VARIANTS",
    "Certificate",
    "Cluster",
    "CombineError",
    "CryptoError",
    "CryptoSuite",
    "InsecureBackendError",
    "KeyFileError",
    "MacKeys",
    "Party",
    "Role",
    "SecretKeys",
    "SignatureVerifier",
    "Signer",
    "ThresholdSigner",
    "ThresholdVerifier",
    "bitmap_from_ids",
    "bitmap_ids",
    "bitmap_ok",
    "bls_backend",
    "checkpoint_statement",
    "client",
    "faults_tolerated",
    "load_backend",
    "load_cluster",
    "load_secret",
    "load_suite",
    "replica",
    "request_statement",
    "support_statement",
    "vc_request_statement",
]

BACKENDS = ("bls", "bls-multi", "mac", "ed25519", "fake")
VARIANTS = ("ts", "mac")


def bls_backend() -> str:
    """Name of the BLS backend ``load_backend`` uses now: ``"pyblst"`` or ``"blspy"``."""
    from .bls import select_backend
    return select_backend()


def load_backend(kind: str, cluster: Cluster, secret: SecretKeys | None = None, *,
                 purpose: str = "replica", insecure_bench: bool = False) -> CryptoSuite:
    """A partial :class:`CryptoSuite` with the fields backend ``kind`` provides.

    ``secret`` (from :func:`load_secret`) is needed for signing and MACs; without it only the
    verifiers are filled in. ``"fake"`` derives its keys from the cluster id and is refused
    unless ``purpose in ("sim", "test")`` or ``insecure_bench`` is True.
    """
    if kind not in BACKENDS:
        raise CryptoError(f"unknown crypto backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    if secret is not None and secret.cluster_id != cluster.cluster_id:
        raise CryptoError(f"{secret.path} belongs to another cluster than {cluster.path}")
    party = secret.party if secret is not None else None
    if kind == "fake":
        from .fake import FakeCrypto
        fake = FakeCrypto(cluster.n, len(cluster.clients), bytes.fromhex(cluster.cluster_id),
                          purpose=purpose, insecure_bench=insecure_bench)
        return fake.suite(party)
    if kind in ("bls", "bls-multi"):
        from .bls import backend_classes, select_backend
        signer_class, threshold_class, multi_class = backend_classes(select_backend())
        verifier: ThresholdVerifier
        if kind == "bls":
            verifier = threshold_class(cluster.bls_group_public_key,
                                       cluster.share_public_keys())
        else:
            verifier = multi_class(cluster.share_public_keys())
        share = secret.bls_share() if secret is not None else None
        signer = signer_class(secret.party.id, share) \
            if secret is not None and share is not None else None
        return CryptoSuite(party=party, threshold_signer=signer, threshold=verifier)
    if kind == "mac":
        from .mac import PairwiseMacKeys
        if secret is None:
            raise CryptoError("the 'mac' backend needs this party's secret file")
        return CryptoSuite(party=party, macs=PairwiseMacKeys(secret.party,
                                                             secret.mac_pair_keys()))
    from .ed25519 import Ed25519Signer, Ed25519Verifier
    signer_ed = Ed25519Signer(secret.party, secret.ed25519_seed()) if secret else None
    return CryptoSuite(party=party, signer=signer_ed,
                       verifier=Ed25519Verifier(cluster.ed25519_public_keys()))


def load_suite(cluster: Cluster, secret: SecretKeys | None, *, variant: str = "ts",
               threshold: str = "bls", fake: bool = False, purpose: str = "replica",
               insecure_bench: bool = False) -> CryptoSuite:
    """Everything a party needs for PoE ``variant`` (``"ts"`` or ``"mac"``).

    ``threshold`` picks ``"bls"`` or ``"bls-multi"`` certificates (TS variant only);
    ``fake=True`` swaps every mechanism for the fake backend (see :func:`load_backend`).
    """
    if variant not in VARIANTS:
        raise CryptoError(f"unknown PoE variant {variant!r}; choose 'ts' or 'mac'")
    if threshold not in ("bls", "bls-multi"):
        raise CryptoError(f"unknown threshold scheme {threshold!r}; choose 'bls' or 'bls-multi'")
    if fake:
        suite = load_backend("fake", cluster, secret, purpose=purpose,
                             insecure_bench=insecure_bench)
        if variant == "mac":
            suite = dataclasses.replace(suite, threshold_signer=None, threshold=None)
        return suite
    parts = ["mac", "ed25519"] if secret is not None else ["ed25519"]
    if variant == "ts":
        parts.insert(0, threshold)
    merged: dict[str, object] = {"party": secret.party if secret is not None else None}
    for kind in parts:
        partial = load_backend(kind, cluster, secret, purpose=purpose)
        for field in dataclasses.fields(CryptoSuite):
            value = getattr(partial, field.name)
            if field.name not in ("party", "insecure") and value is not None:
                merged[field.name] = value
    return CryptoSuite(**merged)  # type: ignore[arg-type]
