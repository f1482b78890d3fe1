"""Ed25519 through PyNaCl (issue #15): the RFC 8032 vectors, and byte-identical keys and
signatures with the earlier ``cryptography`` (OpenSSL) backend, kept here as a reference, so
key files and signed messages made by either verify under the other. Hostile input -> False."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poe.crypto import client, replica, request_statement
from poe.crypto.dealer import secret_file_name
from poe.crypto.ed25519 import Ed25519Signer, Ed25519Verifier, public_key_of

ed = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# RFC 8032 §7.1 TEST 1, 2, 3: (secret seed, public key, message, signature)
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
      "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     ("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
      "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     ("6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
      "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a")),
]
L = 2**252 + 27742317777372353535851937790883648493   # the group order
ME = replica(0)


# the previous backend, as it was (poe/crypto/ed25519.py before issue #15)
def old_public_key(seed: bytes) -> bytes:
    return ed.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def old_sign(seed: bytes, data: bytes) -> bytes:
    return ed.Ed25519PrivateKey.from_private_bytes(seed).sign(data)


def old_verify(public: bytes, data: bytes, signature: bytes) -> bool:
    try:
        ed.Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


@pytest.mark.parametrize("seed, public, message, signature", RFC8032)
def test_rfc8032_vectors(seed, public, message, signature) -> None:
    seed, public, message, signature = map(bytes.fromhex, (seed, public, message, signature))
    signer = Ed25519Signer(ME, seed)
    assert public_key_of(seed) == signer.public_key() == public
    assert signer.sign(message) == signature
    verifier = Ed25519Verifier({ME: public})
    assert verifier.verify(ME, message, signature) is True
    assert verifier.verify(public, message, signature) is True
    assert verifier.verify(ME, message + b"\x00", signature) is False
    # the reference backend agrees on every vector
    assert old_public_key(seed) == public and old_sign(seed, message) == signature


@settings(max_examples=100, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), data=st.binary(max_size=600))
def test_byte_identical_to_cryptography_and_cross_verifying(seed: bytes, data: bytes) -> None:
    signer = Ed25519Signer(ME, seed)
    public = old_public_key(seed)
    assert public_key_of(seed) == signer.public_key() == public
    signature = signer.sign(data)
    assert signature == old_sign(seed, data)                  # Ed25519 is deterministic
    assert old_verify(public, data, signature)                 # new signs, old verifies
    verifier = Ed25519Verifier({ME: public})
    assert verifier.verify(ME, data, old_sign(seed, data))     # old signs, new verifies


def test_key_files_give_the_same_keys_under_both_backends(keys4) -> None:
    """Seeds and public keys as `poe keygen` writes them: unchanged by the backend switch."""
    for party, public in keys4.cluster.ed25519_public_keys().items():
        assert (keys4.directory / secret_file_name(party)).exists()
        seed = keys4.secrets[party].ed25519_seed()
        assert old_public_key(seed) == public_key_of(seed) == public
        statement = request_statement(b"same bytes either way")
        signature = keys4.suites[party].signer.sign(statement)
        assert signature == old_sign(seed, statement)
        assert old_verify(public, statement, signature)


@pytest.fixture(scope="module")
def pair():
    signer = Ed25519Signer(client(0), bytes(range(32)))
    return signer, Ed25519Verifier({client(0): signer.public_key()})


def test_bad_signature_wrong_length_and_garbage_are_false(pair) -> None:
    signer, verifier = pair
    data = request_statement(b"x")
    good = signer.sign(data)
    assert verifier.verify(client(0), data, good) is True
    bad = [good[:32] + bytes(32), bytes(64), b"\xff" * 64, good[:63], good + b"\x00", b"",
           bytearray(good), memoryview(good), good.hex(), None, 7]
    for signature in bad:
        assert verifier.verify(client(0), data, signature) is False
    # S not reduced mod L (malleated S + L): both backends refuse it
    s = int.from_bytes(good[32:], "little") + L
    malleated = good[:32] + s.to_bytes(32, "little")
    assert verifier.verify(client(0), data, malleated) is False
    assert not old_verify(signer.public_key(), data, malleated)


@pytest.mark.parametrize("data", [None, "text", 5, object()])
def test_non_bytes_data_is_false(pair, data) -> None:
    signer, verifier = pair
    assert verifier.verify(client(0), data, signer.sign(b"")) is False


@pytest.mark.parametrize("key", [
    bytes(32),                                   # the identity point (small order)
    b"\x01" + bytes(31),                         # the identity point, canonical encoding
    b"\xff" * 32,                                # not a canonical field element
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # -1
    bytes(31), bytes(33), b"", "k" * 32, None, 12, [1, 2], {"k": 1},
])
def test_garbage_key_is_false(pair, key) -> None:
    signer, verifier = pair
    data = request_statement(b"x")
    assert verifier.verify(key, data, signer.sign(data)) is False
    assert verifier.verify(key, data, bytes(64)) is False


def test_small_order_key_with_identity_signature_is_refused(pair) -> None:
    """A signature that is valid for every message under a small-order key (R = identity,
    S = 0): libsodium refuses it (OpenSSL's verdict is not relied upon)."""
    _, verifier = pair
    identity = b"\x01" + bytes(31)
    assert verifier.verify(identity, b"any message", identity + bytes(32)) is False


@pytest.mark.parametrize("key", [bytes(31), b"\x00" * 33, "k" * 32, None, bytearray(32)])
def test_constructor_rejects_malformed_party_keys(key) -> None:
    with pytest.raises(ValueError, match="32 valid bytes"):
        Ed25519Verifier({client(0): key})


@pytest.mark.parametrize("seed", [bytes(31), bytes(33), "s" * 32, bytearray(32), None])
def test_malformed_seed_is_refused(seed) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Ed25519Signer(client(0), seed)
    with pytest.raises(ValueError, match="32 bytes"):
        public_key_of(seed)


def test_repr_hides_the_key(pair) -> None:
    signer, verifier = pair
    assert bytes(range(32)).hex() not in repr(signer) and "hidden" in str(signer)
    assert repr(verifier) == "Ed25519Verifier(parties=1)"
