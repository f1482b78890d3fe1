"""Threshold certificates: the same contract for the real BLS backends and the fake one
(PROTOCOL.md §1.5, §2.5, §2.7). Any nf shares certify, nf-1 do not, bad shares are named,
certificates are bound to (view, seq, digest) and to a well-formed bitmap."""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poe.crypto import (
    Certificate,
    CombineError,
    ThresholdSigner,
    ThresholdVerifier,
    bitmap_from_ids,
    load_backend,
    replica,
    support_statement,
)
from poe.crypto.bls import backend_classes, backend_ops, select_backend
from poe.crypto.fake import FakeCrypto
from poe.crypto.shamir import deal

STATEMENT = support_statement(7, 42, bytes(range(32)))
# compressed G2 points (ZCash encoding, as both BLS backends read and write them)
G2_GENERATOR = bytes.fromhex(
    "93e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d"
    "042b7e024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd4"
    "8056c8c121bdb8")
G2_IDENTITY = b"\xc0" + bytes(95)
BACKENDS = ["bls", "bls-multi", "fake"]


@dataclass
class Threshold:
    kind: str
    signers: list[ThresholdSigner]
    verifier: ThresholdVerifier

    def shares(self, ids, statement=STATEMENT) -> dict[int, bytes]:
        return {i: self.signers[i].share_sign(statement) for i in ids}


def make_threshold(kind: str, keys) -> Threshold:
    if kind == "fake":
        fake = FakeCrypto(keys.cluster.n, 0, seed=b"threshold-tests", purpose="test")
        suites = [fake.suite(replica(i)) for i in range(keys.cluster.n)]
        return Threshold(kind, [s.threshold_signer for s in suites], suites[0].threshold)
    suites = [load_backend(kind, keys.cluster, keys.replica_secret(i))
              for i in range(keys.cluster.n)]
    return Threshold(kind, [s.threshold_signer for s in suites], suites[0].threshold)


@pytest.fixture(scope="module", params=BACKENDS)
def th4(request, keys4) -> Threshold:
    return make_threshold(request.param, keys4)


@pytest.fixture(scope="module", params=BACKENDS)
def th32(request, keys32) -> Threshold:
    return make_threshold(request.param, keys32)


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --- any nf of n ------------------------------------------------------------------------------

def test_every_nf_subset_of_4_certifies(th4: Threshold) -> None:
    v = th4.verifier
    assert (v.n, v.f, v.nf) == (4, 1, 3)
    signatures = set()
    for ids in itertools.combinations(range(4), 3):
        cert = v.combine(th4.shares(ids), STATEMENT)
        assert cert.signers() == list(ids)
        assert v.verify_cert(cert, STATEMENT)
        signatures.add(cert.signature)
    # threshold: one signature whatever the signer set; multi: one per set
    assert len(signatures) == (4 if th4.kind == "bls-multi" else 1)


def test_random_nf_subsets_of_32_certify(th32: Threshold) -> None:
    v = th32.verifier
    assert (v.n, v.f, v.nf) == (32, 10, 22)
    rng = random.Random(32)
    all_shares = th32.shares(range(32))
    for _ in range(4):
        ids = rng.sample(range(32), 22)
        cert = v.combine({i: all_shares[i] for i in ids}, STATEMENT)
        assert cert.signers() == sorted(ids)
        assert v.verify_cert(cert, STATEMENT)


def test_more_than_nf_shares_uses_the_first_nf(th4: Threshold) -> None:
    shares = th4.shares([3, 1, 0, 2])
    cert = th4.verifier.combine(shares, STATEMENT)
    assert cert.signers() == [0, 1, 3]


def test_threshold_signature_equals_the_group_secret_signature() -> None:
    """The Δ-trick combination is exactly PopSchemeMPL.sign(s, m) (PROTOCOL.md §1.5), on the
    selected backend (the backends agree byte for byte: test_crypto_bls_backends.py)."""
    n = 7
    secret, shares = deal(n, 5)
    ops = backend_ops(select_backend())
    signer_class, verifier_class, _ = backend_classes(select_backend())
    keys = [ops.secret_key(k.to_bytes(32, "big")) for k in shares]
    group = ops.secret_key(secret.to_bytes(32, "big"))
    verifier = verifier_class(ops.public_key(group), [ops.public_key(k) for k in keys])
    signers = [signer_class(i, k.to_bytes(32, "big")) for i, k in enumerate(shares)]
    expected = ops.sign(group, STATEMENT)
    for ids in [(0, 1, 2, 3, 4), (2, 3, 4, 5, 6), (0, 2, 4, 5, 6)]:
        cert = verifier.combine({i: signers[i].share_sign(STATEMENT) for i in ids}, STATEMENT)
        assert cert.signature == expected


# --- nf - 1 do not ----------------------------------------------------------------------------

def test_nf_minus_one_shares_do_not_combine(th4: Threshold) -> None:
    with pytest.raises(CombineError, match="need nf = 3 shares") as info:
        th4.verifier.combine(th4.shares([0, 1]), STATEMENT)
    assert info.value.bad_signers == ()


def test_nf_minus_one_shares_do_not_combine_at_32(th32: Threshold) -> None:
    with pytest.raises(CombineError, match="got 21"):
        th32.verifier.combine(th32.shares(range(21)), STATEMENT)


def test_certificate_naming_nf_minus_one_signers_fails(th4: Threshold) -> None:
    cert = th4.verifier.combine(th4.shares([0, 1, 2]), STATEMENT)
    short = Certificate(bitmap_from_ids([0, 1], 4), cert.signature)
    assert not th4.verifier.verify_cert(short, STATEMENT)


# --- bad shares are detected and named --------------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(victim=st.integers(0, 2), bit=st.integers(0, 8 * 96 - 1))
def test_tampered_share_names_its_signer(th4: Threshold, victim: int, bit: int) -> None:
    shares = th4.shares([0, 1, 2])
    shares[victim] = flip(shares[victim], bit)
    with pytest.raises(CombineError) as info:
        th4.verifier.combine(shares, STATEMENT)
    assert info.value.bad_signers == (victim,)
    assert str(victim) in str(info.value)
    assert not th4.verifier.verify_share(victim, STATEMENT, shares[victim])


def test_share_of_one_replica_cannot_pass_as_another(th4: Threshold) -> None:
    shares = th4.shares([0, 1, 2])
    shares[2] = shares[1]  # replica 1's share sent under replica 2's id
    with pytest.raises(CombineError) as info:
        th4.verifier.combine(shares, STATEMENT)
    assert info.value.bad_signers == (2,)
    assert th4.verifier.verify_share(1, STATEMENT, shares[1])
    assert not th4.verifier.verify_share(2, STATEMENT, shares[1])


def test_share_on_another_statement_is_named(th4: Threshold) -> None:
    shares = th4.shares([0, 1, 2])
    shares[0] = th4.signers[0].share_sign(support_statement(7, 43, bytes(range(32))))
    with pytest.raises(CombineError) as info:
        th4.verifier.combine(shares, STATEMENT)
    assert info.value.bad_signers == (0,)


def test_g2_constants_are_the_points_they_name() -> None:
    ops = backend_ops(select_backend())
    generator = ops.decode_g2(G2_GENERATOR)
    assert generator is not None and ops.decode_g2(G2_IDENTITY) is not None
    assert generator != ops.decode_g2(G2_IDENTITY)
    assert ops.decode_g2(G2_GENERATOR[:-1] + bytes([G2_GENERATOR[-1] ^ 1])) is None


@pytest.mark.parametrize("garbage", [
    b"", b"\x00" * 95, b"\x00" * 96, b"\xff" * 96, b"\xc0" + b"\x00" * 95, b"\x00" * 97,
    G2_GENERATOR,
])
def test_garbage_share_is_named_not_crashing(th4: Threshold, garbage: bytes) -> None:
    shares = th4.shares([0, 1, 2])
    shares[1] = garbage
    with pytest.raises(CombineError) as info:
        th4.verifier.combine(shares, STATEMENT)
    assert info.value.bad_signers == (1,)
    assert not th4.verifier.verify_share(1, STATEMENT, garbage)


def test_several_bad_shares_are_all_named(th32: Threshold) -> None:
    shares = th32.shares(range(22))
    for bad in (3, 17, 21):
        shares[bad] = flip(shares[bad], 5)
    with pytest.raises(CombineError) as info:
        th32.verifier.combine(shares, STATEMENT)
    assert info.value.bad_signers == (3, 17, 21)


def test_combine_rejects_unknown_replica_ids(th4: Threshold) -> None:
    shares = th4.shares([0, 1, 2])
    shares[4] = shares.pop(2)
    with pytest.raises(ValueError, match="unknown replica id 4"):
        th4.verifier.combine(shares, STATEMENT)


@pytest.mark.parametrize("replica_id", [-1, 4, "1", None, True])
def test_verify_share_with_bad_id_is_false(th4: Threshold, replica_id) -> None:
    share = th4.signers[1].share_sign(STATEMENT)
    assert not th4.verifier.verify_share(replica_id, STATEMENT, share)


# --- certificates are bound to (v, k, h) --------------------------------------------------------

@pytest.fixture(scope="module")
def cert4(th4: Threshold) -> Certificate:
    return th4.verifier.combine(th4.shares([0, 2, 3]), STATEMENT)


@pytest.mark.parametrize("other", [
    support_statement(8, 42, bytes(range(32))),           # another view
    support_statement(7, 41, bytes(range(32))),           # another sequence number
    support_statement(7, 42, bytes(range(1, 33))),        # another digest
    support_statement(7, 42 + (1 << 32), bytes(range(32))),
    STATEMENT[:-1], STATEMENT + b"\x00", b"",
])
def test_certificate_fails_for_another_statement(th4, cert4, other: bytes) -> None:
    assert th4.verifier.verify_cert(cert4, STATEMENT)
    assert not th4.verifier.verify_cert(cert4, other)


@settings(max_examples=10, deadline=None)
@given(bit=st.integers(0, 8 * 96 - 1))
def test_tampered_certificate_signature_fails(th4, cert4, bit: int) -> None:
    bad = Certificate(cert4.bitmap, flip(cert4.signature, bit))
    assert not th4.verifier.verify_cert(bad, STATEMENT)


# --- the bitmap -------------------------------------------------------------------------------

@pytest.mark.parametrize("bitmap", [
    b"", b"\x0d\x00",          # wrong length (n = 4 needs 1 byte)
    b"\x1d",                   # a bit for replica 4 (>= n)
    b"\xfd",                   # bits far beyond n
    b"\x05", b"\x00", b"\x01",  # fewer than nf signers
])
def test_malformed_bitmap_fails(th4, cert4, bitmap: bytes) -> None:
    assert cert4.bitmap == b"\x0d"
    assert not th4.verifier.verify_cert(Certificate(bitmap, cert4.signature), STATEMENT)


def test_bitmap_naming_other_signers(th4, cert4) -> None:
    """bls-multi binds the bitmap to the signature; the Δ-trick threshold signature is the
    same for every signer set, so there a well-formed bitmap with nf signers verifies."""
    other = Certificate(bitmap_from_ids([0, 1, 2], 4), cert4.signature)
    all_four = Certificate(bitmap_from_ids([0, 1, 2, 3], 4), cert4.signature)
    if th4.kind == "bls-multi":
        assert not th4.verifier.verify_cert(other, STATEMENT)
        assert not th4.verifier.verify_cert(all_four, STATEMENT)
    else:
        assert th4.verifier.verify_cert(other, STATEMENT)
        assert th4.verifier.verify_cert(all_four, STATEMENT)


def test_bitmap_bits_beyond_n_fail_at_32(th32: Threshold) -> None:
    cert = th32.verifier.combine(th32.shares(range(22)), STATEMENT)
    assert len(cert.bitmap) == 4
    wide = Certificate(cert.bitmap + b"\x00", cert.signature)
    assert not th32.verifier.verify_cert(wide, STATEMENT)


@pytest.mark.parametrize("cert", [
    None, b"\x0d" + bytes(96), Certificate(b"\x0f", b""), Certificate(b"\x0f", bytes(96)),
    Certificate(b"\x0f", b"\xff" * 96), Certificate(b"\x0f", G2_IDENTITY),
    Certificate(bytearray(b"\x0f"), bytes(96)), Certificate(b"\x0f", None),
])
def test_hostile_certificates_are_false_not_exceptions(th4, cert) -> None:
    assert th4.verifier.verify_cert(cert, STATEMENT) is False


def test_verified_cache_does_not_bypass_bitmap_checks(th4, cert4) -> None:
    assert th4.verifier.verify_cert(cert4, STATEMENT)
    assert th4.verifier.verify_cert(cert4, STATEMENT)  # cached
    assert not th4.verifier.verify_cert(Certificate(b"\x01", cert4.signature), STATEMENT)


@settings(max_examples=40, deadline=None)
@given(bitmap=st.binary(max_size=3), signature=st.binary(min_size=94, max_size=98),
       share=st.one_of(st.binary(min_size=95, max_size=97), st.none(), st.integers()))
def test_random_bytes_never_raise(th4, bitmap, signature, share) -> None:
    assert th4.verifier.verify_cert(Certificate(bitmap, signature), STATEMENT) is False
    assert th4.verifier.verify_share(0, STATEMENT, share) is False
    shares = th4.shares([0, 1])
    shares[3] = share
    with pytest.raises(CombineError) as info:
        th4.verifier.combine(shares, STATEMENT)
    assert info.value.bad_signers == (3,)
