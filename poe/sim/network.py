"""The simulated network: seeded per-link latency, loss, duplication, reordering (jitter)
and partitions between any two nodes.

Nodes are replicas (ids 0..n-1) and clients (ids n, n+1, ...). Must never: deliver a
message between partitioned nodes, or use any randomness but its own seeded generator.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkFaults:
    latency_s: float = 0.0005      # one-way base latency
    jitter_s: float = 0.0002       # uniform extra delay in [0, jitter): reorders messages
    loss: float = 0.0              # probability a message is lost
    duplicate: float = 0.0         # probability a message is delivered twice
    bandwidth_bps: float = 0.0     # 0: unlimited; else adds len * 8 / bandwidth per message

    def validate(self) -> "LinkFaults":
        for name in ("loss", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"link fault '{name}' = {value}: need 0 <= p < 1")
        if self.latency_s < 0 or self.jitter_s < 0 or self.bandwidth_bps < 0:
            raise ValueError("latency, jitter and bandwidth must not be negative")
        return self


class Network:
    """Decides when (and whether) each message arrives."""

    __slots__ = ("rng", "faults", "blocked", "stats")

    def __init__(self, seed: int, faults: LinkFaults) -> None:
        self.rng = random.Random(seed)
        self.faults = faults.validate()
        self.blocked: set[tuple[int, int]] = set()
        self.stats: Counter[str] = Counter()

    def set_faults(self, faults: LinkFaults) -> None:
        self.faults = faults.validate()

    def partition(self, *groups) -> None:
        """Only nodes inside the same group can talk; nodes in no group are unaffected."""
        self.blocked = set()
        for i, a in enumerate(groups):
            for b in groups[i + 1:]:
                for x in a:
                    for y in b:
                        self.blocked.add((x, y))
                        self.blocked.add((y, x))

    def isolate(self, node: int, others) -> None:
        for other in others:
            if other != node:
                self.blocked.add((node, other))
                self.blocked.add((other, node))

    def heal(self) -> None:
        self.blocked = set()

    def delays(self, src: int, dst: int, size: int) -> tuple[float, ...]:
        """Delivery delays for one message: () if lost, two entries if duplicated."""
        f = self.faults
        self.stats["sent"] += 1
        if (src, dst) in self.blocked:
            self.stats["partitioned"] += 1
            return ()
        rng = self.rng
        if f.loss and rng.random() < f.loss:
            self.stats["lost"] += 1
            return ()
        base = f.latency_s + (size * 8.0 / f.bandwidth_bps if f.bandwidth_bps else 0.0)
        first = base + (rng.random() * f.jitter_s if f.jitter_s else 0.0)
        if f.duplicate and rng.random() < f.duplicate:
            self.stats["duplicated"] += 1
            return (first, base + rng.random() * (f.jitter_s + f.latency_s))
        return (first,)
