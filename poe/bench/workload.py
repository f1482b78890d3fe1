"""YCSB workloads A, B, C and F and their key choosers (uniform, scrambled Zipfian).

What it is for: producing the operations of closed-loop benchmark clients, cheaply (keys
and read/write choices are drawn with numpy in blocks; values come from a fixed pool).

* A: 50 % reads, 50 % updates.   B: 95 % reads, 5 % updates.   C: 100 % reads.
* F: 50 % reads, 50 % read-modify-writes (``OP_RMW``: returns the old value, writes a new).
* ``read_proportion`` overrides the workload's share of reads.
* Zipfian: item ranks drawn with P(rank i) proportional to 1 / i^theta (YCSB's default
  theta 0.99), then mapped through a fixed seeded permutation of the keys so the popular
  keys are spread over the table (like YCSB's scrambled Zipfian, which hashes the rank).

Must never: produce a key outside ``0..record_count-1`` or a value longer than asked.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poe._core import codec

WORKLOADS = {
    "A": (0.50, codec.OP_UPDATE),
    "B": (0.95, codec.OP_UPDATE),
    "C": (1.00, codec.OP_UPDATE),
    "F": (0.50, codec.OP_RMW),
}
DISTRIBUTIONS = ("zipfian", "uniform")
BLOCK = 1 << 14
VALUE_POOL = 256


class KeyChooser:
    """Keys in ``0..record_count-1``, uniform or scrambled Zipfian, from a seeded stream."""

    def __init__(self, record_count: int, distribution: str = "zipfian", theta: float = 0.99,
                 seed: int = 1, stream: int = 0) -> None:
        if record_count < 1:
            raise ValueError("record_count must be at least 1")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}")
        if not 0 < theta < 10:
            raise ValueError("theta must be in (0, 10)")
        self.n = record_count
        self.distribution = distribution
        # the permutation is the same for every stream (one table); the draws differ
        self.rng = np.random.default_rng([seed, stream])
        if distribution == "zipfian":
            weights = np.arange(1, record_count + 1, dtype=np.float64) ** -theta
            cdf = np.cumsum(weights)
            self.cdf = cdf / cdf[-1]
            self.perm = np.random.default_rng([seed, 0xC0FFEE]).permutation(record_count)
        self._block = np.empty(0, dtype=np.int64)
        self._pos = 0

    def draw(self, size: int) -> np.ndarray:
        if self.distribution == "uniform":
            return self.rng.integers(0, self.n, size=size, dtype=np.int64)
        ranks = np.searchsorted(self.cdf, self.rng.random(size), side="left")
        np.minimum(ranks, self.n - 1, out=ranks)
        return self.perm[ranks]

    def next(self) -> int:
        if self._pos >= len(self._block):
            self._block = self.draw(BLOCK)
            self._pos = 0
        key = int(self._block[self._pos])
        self._pos += 1
        return key


@dataclass(frozen=True)
class WorkloadSpec:
    workload: str = "A"
    distribution: str = "zipfian"
    theta: float = 0.99
    record_count: int = 10_000
    value_size: int = 100
    read_proportion: float | None = None     # None: the workload's own
    ops_per_message: int = 10
    seed: int = 1

    def reads(self) -> float:
        return WORKLOADS[self.workload][0] if self.read_proportion is None \
            else self.read_proportion

    def check(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}")
        if not 0.0 <= self.reads() <= 1.0:
            raise ValueError("read proportion must be in 0..1")
        if not 1 <= self.ops_per_message <= codec.MAX_OPS_PER_MESSAGE:
            raise ValueError(f"ops per message must be in 1..{codec.MAX_OPS_PER_MESSAGE}")
        if not 0 <= self.value_size <= codec.MAX_VALUE:
            raise ValueError(f"value size must be in 0..{codec.MAX_VALUE}")


class OperationStream:
    """Client messages of one client: lists of (key, code, value)."""

    def __init__(self, spec: WorkloadSpec, stream: int) -> None:
        spec.check()
        self.spec = spec
        self.keys = KeyChooser(spec.record_count, spec.distribution, spec.theta, spec.seed,
                               stream + 1)
        self.rng = np.random.default_rng([spec.seed, stream + 1, 7])
        self.read_share = spec.reads()
        self.write_code = WORKLOADS[spec.workload][1]
        pool = self.rng.integers(0, 256, size=(VALUE_POOL, spec.value_size), dtype=np.uint8)
        self.values = [bytes(row) for row in pool]
        self._is_read = np.empty(0, dtype=bool)
        self._pos = 0
        self._value = 0

    def message(self) -> list[tuple[int, int, bytes]]:
        ops = []
        read, write = codec.OP_READ, self.write_code
        for _ in range(self.spec.ops_per_message):
            if self._pos >= len(self._is_read):
                self._is_read = self.rng.random(BLOCK) < self.read_share
                self._pos = 0
            is_read = self._is_read[self._pos]
            self._pos += 1
            key = self.keys.next()
            if is_read:
                ops.append((key, read, b""))
            else:
                self._value = (self._value + 1) % VALUE_POOL
                ops.append((key, write, self.values[self._value]))
        return ops
