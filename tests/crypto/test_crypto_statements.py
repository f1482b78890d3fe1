"""Domain-separated statements (PROTOCOL.md §1.6): exact layout and strict argument checks."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poe.crypto.statements import (
    checkpoint_statement,
    request_statement,
    support_statement,
    vc_request_statement,
)

U64 = st.integers(0, 2**64 - 1)
DIGEST = st.binary(min_size=32, max_size=32)


def test_support_layout() -> None:
    h = bytes(range(32))
    assert support_statement(1, 2, h) == (
        b"PoE/SUPPORT/v1" + (1).to_bytes(8, "little") + (2).to_bytes(8, "little") + h)


@given(v=U64, k=U64, h=DIGEST)
def test_support_binds_view_seq_digest(v: int, k: int, h: bytes) -> None:
    statement = support_statement(v, k, h)
    assert len(statement) == 14 + 8 + 8 + 32
    assert struct.unpack_from("<QQ", statement, 14) == (v, k)
    assert statement[-32:] == h
    assert statement != support_statement(v, (k + 1) % 2**64, h)
    assert statement != support_statement((v + 1) % 2**64, k, h)


def test_checkpoint_layout() -> None:
    a, b = b"\x01" * 32, b"\x02" * 32
    assert checkpoint_statement(64, a, b) == (
        b"PoE/CHECKPOINT/v1" + (64).to_bytes(8, "little") + a + b)
    assert checkpoint_statement(64, a, b) != checkpoint_statement(64, b, a)


def test_blob_statements_are_prefixed() -> None:
    assert vc_request_statement(b"xyz") == b"PoE/VC-REQUEST/v1xyz"
    assert request_statement(bytearray(b"abc")) == b"PoE/REQUEST/v1abc"


@given(blob=st.binary(max_size=64))
def test_domains_never_collide(blob: bytes) -> None:
    """No statement of one kind equals a statement of another kind."""
    tags = [s[:17] for s in (vc_request_statement(blob), request_statement(blob),
                             support_statement(0, 0, bytes(32)),
                             checkpoint_statement(0, bytes(32), bytes(32)))]
    prefixes = [b"PoE/VC-REQUEST/v1", b"PoE/REQUEST/v1", b"PoE/SUPPORT/v1",
                b"PoE/CHECKPOINT/v1"]
    for tag, prefix in zip(tags, prefixes):
        assert tag.startswith(prefix)
    for i, p in enumerate(prefixes):
        for j, q in enumerate(prefixes):
            assert i == j or not p.startswith(q)


@pytest.mark.parametrize("view,seq", [(-1, 0), (0, -1), (2**64, 0), (0, 2**64), (1.0, 0),
                                      (True, 0), ("1", 0), (None, 0)])
def test_support_rejects_bad_integers(view, seq) -> None:
    with pytest.raises(ValueError, match="must be an int in 0..2\\*\\*64-1"):
        support_statement(view, seq, bytes(32))


@pytest.mark.parametrize("digest", [bytes(31), bytes(33), b"", bytearray(32), "0" * 32, None,
                                    memoryview(bytes(32))])
def test_digests_must_be_exactly_32_bytes(digest) -> None:
    with pytest.raises(ValueError, match="32-byte bytes digest"):
        support_statement(0, 0, digest)
    with pytest.raises(ValueError, match="state_digest"):
        checkpoint_statement(0, digest, bytes(32))
    with pytest.raises(ValueError, match="chain_digest"):
        checkpoint_statement(0, bytes(32), digest)


@pytest.mark.parametrize("blob", ["text", None, 5, [1]])
def test_blob_statements_reject_non_bytes(blob) -> None:
    with pytest.raises(ValueError, match="must be bytes"):
        vc_request_statement(blob)
    with pytest.raises(ValueError, match="must be bytes"):
        request_statement(blob)
