"""Pairwise MACs and Ed25519 signatures: round trips and every kind of tampering."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poe.crypto import client, replica, request_statement
from poe.crypto.mac import PairwiseMacKeys, directional_key

FRAME = b"\x01" + bytes(range(200)) + b"payload"


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --- MAC --------------------------------------------------------------------------------------

def macs(keys, party):
    return keys.suites[party].macs


def test_mac_round_trip_replica_replica_and_replica_client(keys4) -> None:
    for sender, receiver in [(replica(0), replica(3)), (replica(2), client(1)),
                             (client(0), replica(1))]:
        tag = macs(keys4, sender).mac(receiver, FRAME)
        assert len(tag) == 32
        assert macs(keys4, receiver).verify(sender, FRAME, tag)


def test_mac_is_keyed_blake2b_over_the_prefixed_frame(keys4) -> None:
    pair = keys4.replica_secret(0).mac_pair_keys()[replica(1)]
    key = directional_key(pair, replica(0), replica(1))
    expected = hashlib.blake2b(b"PoE/MAC/v1" + FRAME, key=key, digest_size=32).digest()
    assert macs(keys4, replica(0)).mac(replica(1), FRAME) == expected


@settings(max_examples=50, deadline=None)
@given(bit=st.integers(0, 8 * len(FRAME) - 1))
def test_flipped_frame_bit_fails(keys4, bit: int) -> None:
    tag = macs(keys4, replica(0)).mac(replica(1), FRAME)
    assert not macs(keys4, replica(1)).verify(replica(0), flip(FRAME, bit), tag)


@settings(max_examples=50, deadline=None)
@given(bit=st.integers(0, 255))
def test_flipped_tag_bit_fails(keys4, bit: int) -> None:
    tag = macs(keys4, replica(0)).mac(replica(1), FRAME)
    assert not macs(keys4, replica(1)).verify(replica(0), FRAME, flip(tag, bit))


def test_wrong_key_fails(keys4) -> None:
    # replica 2's tag for replica 1 presented as coming from replica 0
    tag = macs(keys4, replica(2)).mac(replica(1), FRAME)
    assert not macs(keys4, replica(1)).verify(replica(0), FRAME, tag)
    # a tag made for another receiver
    tag = macs(keys4, replica(0)).mac(replica(3), FRAME)
    assert not macs(keys4, replica(1)).verify(replica(0), FRAME, tag)
    # a fresh random key
    stranger = PairwiseMacKeys(replica(0), {replica(1): bytes(32)})
    assert not macs(keys4, replica(1)).verify(replica(0), FRAME, stranger.mac(replica(1), FRAME))


def test_reflected_frame_fails(keys4) -> None:
    """Keys are per ordered pair: A's frame to B does not verify at A as if from B."""
    tag = macs(keys4, replica(0)).mac(replica(1), FRAME)
    assert not macs(keys4, replica(0)).verify(replica(1), FRAME, tag)


@pytest.mark.parametrize("tag", [b"", bytes(31), bytes(33), None, "x" * 32, bytearray(32)])
def test_malformed_tag_is_false(keys4, tag) -> None:
    assert macs(keys4, replica(1)).verify(replica(0), FRAME, tag) is False


def test_unknown_peer(keys4) -> None:
    m = macs(keys4, client(0))
    assert not m.verify(client(1), FRAME, bytes(32))       # clients share no keys
    assert not m.verify(replica(9), FRAME, bytes(32))
    with pytest.raises(Exception, match="no MAC key for client 1"):
        m.mac(client(1), FRAME)


def test_mac_keys_reject_bad_construction() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PairwiseMacKeys(replica(0), {replica(1): bytes(31)})
    with pytest.raises(ValueError, match="itself"):
        PairwiseMacKeys(replica(0), {replica(0): bytes(32)})


# --- Ed25519 ----------------------------------------------------------------------------------

REQUEST = request_statement(b"client 0 request 17: SET k v")


def test_signature_round_trip_by_party_and_by_key(keys4) -> None:
    for party in [client(0), replica(3)]:
        suite = keys4.suites[party]
        signature = suite.signer.sign(REQUEST)
        assert len(signature) == 64
        verifier = keys4.suites[replica(0)].verifier
        assert verifier.verify(party, REQUEST, signature)
        public = keys4.cluster.ed25519_public_keys()[party]
        assert verifier.verify(public, REQUEST, signature)


@settings(max_examples=40, deadline=None)
@given(bit=st.integers(0, 8 * len(REQUEST) - 1))
def test_flipped_message_bit_fails(keys4, bit: int) -> None:
    signature = keys4.suites[client(0)].signer.sign(REQUEST)
    assert not keys4.suites[replica(0)].verifier.verify(client(0), flip(REQUEST, bit), signature)


@settings(max_examples=40, deadline=None)
@given(bit=st.integers(0, 511))
def test_flipped_signature_bit_fails(keys4, bit: int) -> None:
    signature = keys4.suites[client(0)].signer.sign(REQUEST)
    assert not keys4.suites[replica(0)].verifier.verify(client(0), REQUEST, flip(signature, bit))


def test_signature_of_another_party_fails(keys4) -> None:
    signature = keys4.suites[client(1)].signer.sign(REQUEST)
    verifier = keys4.suites[replica(0)].verifier
    assert not verifier.verify(client(0), REQUEST, signature)
    assert not verifier.verify(keys4.cluster.ed25519_public_keys()[client(0)], REQUEST, signature)


@pytest.mark.parametrize("signer", [client(7), replica(-1), b"", bytes(31), b"\xff" * 32, None,
                                    "client 0", bytes(32)])
def test_unknown_or_invalid_signer_is_false(keys4, signer) -> None:
    signature = keys4.suites[client(0)].signer.sign(REQUEST)
    assert keys4.suites[replica(0)].verifier.verify(signer, REQUEST, signature) is False


@pytest.mark.parametrize("signature", [b"", bytes(63), bytes(64), bytes(65), None, "s" * 64])
def test_malformed_signature_is_false(keys4, signature) -> None:
    assert keys4.suites[replica(0)].verifier.verify(client(0), REQUEST, signature) is False
