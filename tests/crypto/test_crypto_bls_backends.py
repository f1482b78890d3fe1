"""The pyblst BLS backend against blspy: byte-identical keys, proofs of possession, shares and
certificates for random statements and t-of-n signer sets, certificates verified across
backends, key files dealt by one loaded by the other, bad ones refused (issue #15,
docs/crypto.md). Needs both libraries: skipped where either is missing (blspy has no wheels
for CPython 3.13; pyblst alone is tested in test_crypto_bls_without_blspy.py, the selection
in test_crypto_bls_selection.py)."""
from __future__ import annotations

import itertools
import random

import pytest

blspy = pytest.importorskip(
    "blspy", reason="blspy is not installed (no wheels for CPython 3.13): nothing to "
    "cross-check pyblst against")
pytest.importorskip("pyblst", reason="pyblst is not installed (pip install pyblst): nothing "
                    "to cross-check blspy against")

from poe.crypto import (
    CombineError,
    bls_backend,
    load_backend,
    load_cluster,
    load_secret,
    support_statement,
)
from poe.crypto.base import Certificate, bitmap_from_ids, replica
from poe.crypto.bls import BACKEND_ENV, backend_classes
from poe.crypto.bls_blspy import (
    BlspyMultiVerifier,
    BlspyOps,
    BlspyThresholdSigner,
    BlspyThresholdVerifier,
)
from poe.crypto.bls_blspy import decode_g1 as blspy_g1
from poe.crypto.bls_blspy import decode_g2 as blspy_g2
from poe.crypto.bls_pyblst import (
    DST,
    POP_DST,
    PyblstMultiVerifier,
    PyblstOps,
    PyblstThresholdSigner,
    PyblstThresholdVerifier,
)
from poe.crypto.bls_pyblst import decode_g1 as pyblst_g1
from poe.crypto.bls_pyblst import decode_g2 as pyblst_g2
from poe.crypto.dealer import deal_cluster, secret_file_name, write_keys
from poe.crypto.shamir import R, deal


class Pair:
    """One dealt n-replica key set, loaded by both backends."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        nf = n - (n - 1) // 3
        secret, shares = deal(n, nf)
        raw = [k.to_bytes(32, "big") for k in shares]
        self.old = [BlspyThresholdSigner(i, k) for i, k in enumerate(raw)]
        self.new = [PyblstThresholdSigner(i, k) for i, k in enumerate(raw)]
        keys = [s.public_key() for s in self.old]
        group = BlspyThresholdSigner(0, secret.to_bytes(32, "big")).public_key()
        self.group = group
        self.old_v = BlspyThresholdVerifier(group, keys, verified_cache=0)
        self.new_v = PyblstThresholdVerifier(group, keys, verified_cache=0)
        self.old_m = BlspyMultiVerifier(keys, verified_cache=0)
        self.new_m = PyblstMultiVerifier(keys, verified_cache=0)
        self.rng = random.Random(seed)


@pytest.fixture(scope="module", params=[4, 7, 10])
def pair(request) -> Pair:
    return Pair(request.param, request.param)


def test_dst_is_blspy_pop_scheme() -> None:
    assert DST == b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
    assert POP_DST == b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"


def test_proofs_of_possession_byte_identical_and_cross_verify() -> None:
    rng = random.Random(16)
    for value in [1, 2, R - 1] + [rng.randrange(1, R) for _ in range(5)]:
        raw = value.to_bytes(32, "big")
        old_key, new_key = BlspyOps.secret_key(raw), PyblstOps.secret_key(raw)
        public = BlspyOps.public_key(old_key)
        assert PyblstOps.public_key(new_key) == public
        proof = BlspyOps.pop_prove(old_key)
        assert PyblstOps.pop_prove(new_key) == proof
        assert bytes(blspy.PopSchemeMPL.pop_prove(old_key)) == proof
        for ops in (BlspyOps, PyblstOps):
            assert ops.pop_verify(ops.decode_g1(public), ops.decode_g2(proof))
            # a signature of the key bytes under the signing DST is not a proof of possession
            wrong = ops.decode_g2(ops.sign(ops.secret_key(raw), public))
            assert not ops.pop_verify(ops.decode_g1(public), wrong)
            other = ops.decode_g1(ops.public_key(ops.secret_key((value % (R - 1) + 1)
                                                                .to_bytes(32, "big"))))
            assert not ops.pop_verify(other, ops.decode_g2(proof))


@pytest.mark.parametrize("dealer,loader", [("blspy", "pyblst"), ("pyblst", "blspy")])
def test_key_files_dealt_by_one_backend_load_with_the_other(tmp_path, monkeypatch, dealer,
                                                            loader) -> None:
    monkeypatch.setenv(BACKEND_ENV, dealer)
    write_keys(tmp_path, deal_cluster(4, 1))
    monkeypatch.setenv(BACKEND_ENV, loader)
    cluster = load_cluster(tmp_path / "cluster.toml")
    secrets = [load_secret(tmp_path / secret_file_name(replica(i)), cluster) for i in range(4)]
    suites = [load_backend("bls", cluster, secret) for secret in secrets]
    assert type(suites[0].threshold) is backend_classes(loader)[1]
    statement = support_statement(0, 1, bytes(32))
    cert = suites[1].threshold.combine(
        {i: suites[i].threshold_signer.share_sign(statement) for i in (0, 2, 3)}, statement)
    monkeypatch.setenv(BACKEND_ENV, dealer)
    assert load_backend("bls", cluster).threshold.verify_cert(cert, statement)


def test_g2_constants_of_the_threshold_tests() -> None:
    from test_crypto_threshold import G2_GENERATOR, G2_IDENTITY
    assert G2_GENERATOR == bytes(blspy.G2Element.generator())
    assert G2_IDENTITY == bytes(blspy.G2Element())


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
               bytes(blspy.G2Element()), b"\x00" * 96, sig[:95], b"\xff" * 96,
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
        assert BlspyThresholdSigner(0, raw).share_sign(b"m") == \
            PyblstThresholdSigner(0, raw).share_sign(b"m")
    for value in (R, 2**256 - 1):
        for cls in (BlspyThresholdSigner, PyblstThresholdSigner):
            with pytest.raises(ValueError):
                cls(0, value.to_bytes(32, "big"))
    assert "key=<hidden>" in repr(PyblstThresholdSigner(3, (5).to_bytes(32, "big")))


# --- selection with both installed ------------------------------------------------------------

def test_select_backend_prefers_pyblst() -> None:
    from poe.crypto.bls import select_backend
    assert select_backend({}) == "pyblst"
    assert select_backend({BACKEND_ENV: "blspy"}) == "blspy"
    assert backend_classes("blspy")[0] is BlspyThresholdSigner
    assert backend_classes("pyblst")[1] is PyblstThresholdVerifier


def test_load_backend_uses_selected_backend(keys4, monkeypatch) -> None:
    statement = support_statement(1, 2, bytes(32))
    certs = {}
    for name, cls in (("blspy", BlspyThresholdVerifier), ("pyblst", PyblstThresholdVerifier)):
        monkeypatch.setenv(BACKEND_ENV, name)
        assert bls_backend() == name
        suites = [load_backend("bls", keys4.cluster, keys4.replica_secret(i)) for i in range(4)]
        assert type(suites[0].threshold) is cls
        shares = {i: suites[i].threshold_signer.share_sign(statement) for i in range(3)}
        certs[name] = suites[0].threshold.combine(shares, statement)
    assert certs["blspy"] == certs["pyblst"]
