"""The pyblst BLS backend against blspy: byte-identical keys, shares and certificates for random
statements and t-of-n signer sets, certificates verified across backends, bad ones refused, and
the backend selection (issue #15, docs/crypto.md). Skipped where pyblst is not installed."""
from __future__ import annotations

import itertools
import random

import pytest
from blspy import G2Element

from poe.crypto import CombineError, CryptoError, bls_backend, load_backend, support_statement
from poe.crypto.base import Certificate, bitmap_from_ids
from poe.crypto.bls import (
    BACKEND_ENV,
    BlsMultiVerifier,
    BlsThresholdSigner,
    BlsThresholdVerifier,
    backend_classes,
    select_backend,
)
from poe.crypto.bls import decode_g1 as blspy_g1
from poe.crypto.bls import decode_g2 as blspy_g2
from poe.crypto.shamir import R, deal

pytest.importorskip("pyblst")

from poe.crypto.bls_pyblst import (
    DST,
    PyblstMultiVerifier,
    PyblstThresholdSigner,
    PyblstThresholdVerifier,
)
from poe.crypto.bls_pyblst import decode_g1 as pyblst_g1
from poe.crypto.bls_pyblst import decode_g2 as pyblst_g2


class Pair:
    """One dealt n-replica key set, loaded by both backends."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        nf = n - (n - 1) // 3
        secret, shares = deal(n, nf)
        raw = [k.to_bytes(32, "big") for k in shares]
        self.old = [BlsThresholdSigner(i, k) for i, k in enumerate(raw)]
        self.new = [PyblstThresholdSigner(i, k) for i, k in enumerate(raw)]
        keys = [s.public_key() for s in self.old]
        group = BlsThresholdSigner(0, secret.to_bytes(32, "big")).public_key()
        self.group = group
        self.old_v = BlsThresholdVerifier(group, keys, verified_cache=0)
        self.new_v = PyblstThresholdVerifier(group, keys, verified_cache=0)
        self.old_m = BlsMultiVerifier(keys, verified_cache=0)
        self.new_m = PyblstMultiVerifier(keys, verified_cache=0)
        self.rng = random.Random(seed)


@pytest.fixture(scope="module", params=[4, 7, 10])
def pair(request) -> Pair:
    return Pair(request.param, request.param)


def test_dst_is_blspy_pop_scheme() -> None:
    assert DST == b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"


def test_public_keys_and_shares_byte_identical(pair: Pair) -> None:
    for old, new in zip(pair.old, pair.new):
        assert old.public_key() == new.public_key()
    for _ in range(5):
        statement = pair.rng.randbytes(pair.rng.randrange(0, 300))
        for old, new in zip(pair.old, pair.new):
            assert old.share_sign(statement) == new.share_sign(statement)


def test_certificates_byte_identical_and_cross_verify(pair: Pair) -> None:
    n, nf = pair.n, pair.old_v.nf
    subsets = list(itertools.combinations(range(n), nf))
    for subset in pair.rng.sample(subsets, min(6, len(subsets))):
        statement = support_statement(pair.rng.randrange(100), pair.rng.randrange(1 << 40),
                                      pair.rng.randbytes(32))
        shares = {i: pair.old[i].share_sign(statement) for i in subset}
        for old_v, new_v in ((pair.old_v, pair.new_v), (pair.old_m, pair.new_m)):
            old_cert = old_v.combine(shares, statement)
            new_cert = new_v.combine(shares, statement)
            assert old_cert == new_cert
            assert new_v.verify_cert(old_cert, statement)
            assert old_v.verify_cert(new_cert, statement)
            for i, share in shares.items():
                assert old_v.verify_share(i, statement, share)
                assert new_v.verify_share(i, statement, share)


def test_threshold_signature_is_the_group_secrets_signature(pair: Pair) -> None:
    statement = b"any statement"
    certs = set()
    for subset in itertools.islice(itertools.combinations(range(pair.n), pair.new_v.nf), 4):
        shares = {i: pair.new[i].share_sign(statement) for i in subset}
        certs.add(pair.new_v.combine(shares, statement).signature)
    assert len(certs) == 1


def test_bad_certificates_refused_by_both(pair: Pair) -> None:
    statement = b"statement"
    ids = tuple(range(pair.new_v.nf))
    shares = {i: pair.new[i].share_sign(statement) for i in ids}
    cert = pair.new_v.combine(shares, statement)
    sig = cert.signature
    flipped = [bytes([sig[0]]) + sig[1:40] + bytes([sig[40] ^ 1]) + sig[41:],
               bytes(G2Element()), b"\x00" * 96, sig[:95], b"\xff" * 96,
               pair.new[0].share_sign(statement)]
    for verifier in (pair.old_v, pair.new_v):
        assert not verifier.verify_cert(cert, b"other statement")
        for bad in flipped:
            assert not verifier.verify_cert(Certificate(cert.bitmap, bad), statement)
        assert not verifier.verify_cert("junk", statement)  # type: ignore[arg-type]
    multi = pair.new_m.combine(shares, statement)
    other = bitmap_from_ids(range(pair.n - pair.new_v.nf, pair.n), pair.n)
    for verifier in (pair.old_m, pair.new_m):
        assert not verifier.verify_cert(Certificate(other, multi.signature), statement)


def test_bad_share_named_by_both(pair: Pair) -> None:
    statement = b"statement"
    ids = list(range(pair.new_v.nf))
    shares = {i: pair.new[i].share_sign(statement) for i in ids}
    shares[ids[1]] = pair.new[ids[1]].share_sign(b"something else")
    for verifier in (pair.old_v, pair.new_v, pair.old_m, pair.new_m):
        with pytest.raises(CombineError) as info:
            verifier.combine(shares, statement)
        assert info.value.bad_signers == (ids[1],)


def test_point_decoding_agrees_on_mutated_bytes() -> None:
    rng = random.Random(15)
    signer = PyblstThresholdSigner(0, (12345).to_bytes(32, "big"))
    g1, g2 = signer.public_key(), signer.share_sign(b"x")
    for _ in range(300):
        for good, old, new in ((g1, blspy_g1, pyblst_g1), (g2, blspy_g2, pyblst_g2)):
            data = bytearray(good)
            for _ in range(rng.randrange(1, 3)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            assert (old(bytes(data)) is None) == (new(bytes(data)) is None)
    for data in (b"", b"\xc0" + bytes(47), b"\xc0" + bytes(95), bytes(48), bytes(96)):
        assert (blspy_g1(data) is None) == (pyblst_g1(data) is None)
        assert (blspy_g2(data) is None) == (pyblst_g2(data) is None)


def test_secret_key_range_matches_blspy() -> None:
    for value in (0, 1, R - 1):
        raw = value.to_bytes(32, "big")
        assert BlsThresholdSigner(0, raw).share_sign(b"m") == \
            PyblstThresholdSigner(0, raw).share_sign(b"m")
    for value in (R, 2**256 - 1):
        for cls in (BlsThresholdSigner, PyblstThresholdSigner):
            with pytest.raises(ValueError):
                cls(0, value.to_bytes(32, "big"))
    assert "key=<hidden>" in repr(PyblstThresholdSigner(3, (5).to_bytes(32, "big")))


# --- selection --------------------------------------------------------------------------------

def test_select_backend_prefers_pyblst_and_obeys_env() -> None:
    assert select_backend({}) == "pyblst"
    assert select_backend({BACKEND_ENV: "blspy"}) == "blspy"
    assert select_backend({BACKEND_ENV: " PyBLST "}) == "pyblst"
    with pytest.raises(CryptoError, match="choose one of"):
        select_backend({BACKEND_ENV: "openssl"})
    assert backend_classes("blspy")[0] is BlsThresholdSigner
    assert backend_classes("pyblst")[1] is PyblstThresholdVerifier


def test_load_backend_uses_selected_backend(keys4, monkeypatch) -> None:
    statement = support_statement(1, 2, bytes(32))
    certs = {}
    for name, cls in (("blspy", BlsThresholdVerifier), ("pyblst", PyblstThresholdVerifier)):
        monkeypatch.setenv(BACKEND_ENV, name)
        assert bls_backend() == name
        suites = [load_backend("bls", keys4.cluster, keys4.replica_secret(i)) for i in range(4)]
        assert type(suites[0].threshold) is cls
        shares = {i: suites[i].threshold_signer.share_sign(statement) for i in range(3)}
        certs[name] = suites[0].threshold.combine(shares, statement)
    assert certs["blspy"] == certs["pyblst"]


def test_env_pyblst_without_pyblst_is_an_error(monkeypatch) -> None:
    from poe.crypto import bls
    monkeypatch.setattr(bls, "_pyblst_importable", lambda: False)
    assert select_backend({}) == "blspy"
    with pytest.raises(CryptoError, match="not installed"):
        select_backend({BACKEND_ENV: "pyblst"})
