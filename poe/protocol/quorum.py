"""Quorum arithmetic of PoE (PROTOCOL.md §1.2), in one place.

n > 3f replicas; nf = n - f. Two nf-sets intersect in n - 2f >= f + 1 replicas, so in at
least one non-faulty replica. Must never: depend on anything but n.
"""
from __future__ import annotations


def faults(n: int) -> int:
    """f = floor((n - 1) / 3)."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    return (n - 1) // 3


def nf(n: int) -> int:
    """Certificate, SUPPORT, proof-of-execution, NV-PROPOSE and stable-checkpoint quorum."""
    return n - faults(n)


def join(n: int) -> int:
    """VC-REQUESTs from this many distinct replicas make a replica join a view change."""
    return faults(n) + 1


def popcount(bitmap: bytes) -> int:
    return int.from_bytes(bitmap, "little").bit_count()
