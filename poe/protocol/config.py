"""Protocol parameters shared by every replica and client of one cluster.

Every setting is declared once, with its unit in its name and its meaning in the field
comment; ``validate`` rejects impossible combinations with one clear error. Must never:
read files or the environment (the runtime's poe.config builds this from TOML).
"""
from __future__ import annotations

from dataclasses import dataclass, field

MODES = ("ts", "mac")
PROTOCOLS = ("poe", "pbft")     # PoE, or the PBFT baseline (poe/baselines/pbft, MAC only)


class ConfigError(ValueError):
    """A protocol setting is out of range; the message names it and says what is allowed."""


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    n: int                                   # number of replicas (n > 3f)
    mode: str = "ts"                         # "ts": threshold certificates; "mac": all-to-all
    batch_size: int = 100                    # requests per batch (primary closes when reached)
    batch_timeout_s: float = 0.002           # close a non-empty batch after this long
    window: int = 128                        # L: batches between low and high watermark
    checkpoint_period: int = 64              # K: checkpoint after every K-th batch
    retransmit_timeout_s: float = 0.5        # primary re-sends / backups fetch after this
    reply_cache_size: int = 100_000          # cached INFORMs (exactly-once answers), >= 64
    pending_requests_max: int = 100_000      # client messages the primary queues at most
    client_pending_max: int = 1024           # of them from one client (its fair share)
    view_change_timeout_s: float = 1.0       # T_exec / T_req: suspect the primary after this
    new_view_timeout_s: float = 2.0          # T_nv base; doubles per failed view change
    forwarded_max: int = 10_000              # client retries a backup tracks for T_req
    kv_seed: int = 0                         # hash-flood seed of the kv table (no effect on state)
    zero_payload: bool = False               # execute as no-ops (the paper's zero payload)
    protocol: str = "poe"                    # "poe", or "pbft" (the baseline; needs mode "mac")
    genesis: bytes = field(default=b"\0" * 32)  # H(B_0), built from the cluster file

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    @property
    def nf(self) -> int:
        return self.n - self.f

    def primary(self, view: int) -> int:
        """primary(v) = v mod n (PROTOCOL.md §1.1)."""
        return view % self.n

    def validate(self) -> "ProtocolConfig":
        def bad(name: str, allowed: str) -> None:
            raise ConfigError(f"protocol setting '{name}' = {getattr(self, name)!r}: {allowed}")

        if type(self.n) is not int or not 4 <= self.n <= 1024:
            bad("n", "need 4 <= n <= 1024 replicas (n = 3f + 1 tolerates f faults)")
        if self.mode not in MODES:
            bad("mode", f"one of {MODES}")
        if self.protocol not in PROTOCOLS:
            bad("protocol", f"one of {PROTOCOLS}")
        if self.protocol == "pbft" and self.mode != "mac":
            bad("mode", "PBFT authenticates replica messages with MACs: use mode 'mac' "
                        "with protocol 'pbft'")
        if not 1 <= self.batch_size <= 4096:
            bad("batch_size", "1..4096 requests")
        if not 0 <= self.batch_timeout_s <= 10:
            bad("batch_timeout_s", "0..10 seconds")
        if not 1 <= self.checkpoint_period <= 1 << 20:
            bad("checkpoint_period", "1..2^20 batches")
        if self.window < 2 * self.checkpoint_period or self.window > 1 << 20:
            bad("window", f"at least 2 x checkpoint_period ({2 * self.checkpoint_period}) "
                          "so the primary does not stall while a checkpoint stabilises")
        if not 0 < self.retransmit_timeout_s <= 600:
            bad("retransmit_timeout_s", "0..600 seconds")
        if self.reply_cache_size < 64:
            bad("reply_cache_size", "at least 64 answers; size it above clients x outstanding "
                                    "messages, or retried messages go unanswered")
        if self.pending_requests_max < 1:
            bad("pending_requests_max", "positive")
        if not 0 < self.view_change_timeout_s <= 3600:
            bad("view_change_timeout_s", "0..3600 seconds")
        if not 0 < self.new_view_timeout_s <= 3600:
            bad("new_view_timeout_s", "0..3600 seconds")
        if self.forwarded_max < 1:
            bad("forwarded_max", "positive")
        if type(self.genesis) is not bytes or len(self.genesis) != 32:
            bad("genesis", "a 32-byte block hash")
        return self
