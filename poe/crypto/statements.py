"""Canonical, domain-separated byte strings that get signed or MACed (PROTOCOL.md §1.6).

Every signature, share and MAC in poe covers one of these strings, never raw protocol data, so
a signature made for one purpose can never be replayed for another, and a SUPPORT share or a
certificate is bound to its view, sequence number and digest.

Must never: accept ambiguous input (wrong types, digests not 32 bytes, integers outside u64)
-- such calls raise ``ValueError``.
"""
from __future__ import annotations

import struct

__all__ = [
    "DIGEST_SIZE",
    "TAG_CHECKPOINT",
    "TAG_MAC",
    "TAG_REQUEST",
    "TAG_SUPPORT",
    "TAG_VC_REQUEST",
    "checkpoint_statement",
    "request_statement",
    "support_statement",
    "vc_request_statement",
]

DIGEST_SIZE = 32
TAG_SUPPORT = b"PoE/SUPPORT/v1"
TAG_CHECKPOINT = b"PoE/CHECKPOINT/v1"
TAG_VC_REQUEST = b"PoE/VC-REQUEST/v1"
TAG_REQUEST = b"PoE/REQUEST/v1"
TAG_MAC = b"PoE/MAC/v1"  # prefix of every MAC input (see poe.crypto.mac)

_U64 = struct.Struct("<Q")
_TWO_U64 = struct.Struct("<QQ")
_U64_LIMIT = 1 << 64


def _u64(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value < _U64_LIMIT:
        raise ValueError(f"{name} must be an int in 0..2**64-1, got {value!r}")
    return value


def _digest(name: str, value: object) -> bytes:
    if type(value) is not bytes or len(value) != DIGEST_SIZE:
        kind = f"{len(value)} bytes" if isinstance(value, (bytes, bytearray)) else repr(value)
        raise ValueError(f"{name} must be a {DIGEST_SIZE}-byte bytes digest, got {kind}")
    return value


def _blob(name: str, value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ValueError(f"{name} must be bytes, got {type(value).__name__}")


def support_statement(view: int, seq: int, digest: bytes) -> bytes:
    """``"PoE/SUPPORT/v1" || u64 view || u64 seq || digest``: what shares and certificates
    sign (little-endian u64)."""
    return TAG_SUPPORT + _TWO_U64.pack(_u64("view", view), _u64("seq", seq)) \
        + _digest("digest", digest)


def checkpoint_statement(seq: int, state_digest: bytes, chain_digest: bytes) -> bytes:
    """``"PoE/CHECKPOINT/v1" || u64 seq || d_state || d_chain`` (PROTOCOL.md §5.1)."""
    return TAG_CHECKPOINT + _U64.pack(_u64("seq", seq)) \
        + _digest("state_digest", state_digest) + _digest("chain_digest", chain_digest)


def vc_request_statement(signed_bytes: bytes) -> bytes:
    """``"PoE/VC-REQUEST/v1" || canonical(VC-REQUEST minus its signature)``."""
    return TAG_VC_REQUEST + _blob("signed_bytes", signed_bytes)


def request_statement(client_message_without_sig: bytes) -> bytes:
    """``"PoE/REQUEST/v1" || canonical(client message minus its signature)``."""
    return TAG_REQUEST + _blob("client_message_without_sig", client_message_without_sig)
