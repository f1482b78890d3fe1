"""The PBFT client: like PoE's (signed messages carrying several requests, retries to every
replica, a deadline), but a message is decided by f+1 matching REPLYs — (seq, results),
whatever view each was sent in — because a PBFT replica replies only after commit: one
correct replica among f+1 vouches for a committed, final result (PROTOCOL.md §9.1)."""
from __future__ import annotations

from poe.protocol.config import ProtocolConfig
from poe.protocol.poe.client import PoEClient

__all__ = ["PBFTClient"]


class PBFTClient(PoEClient):
    match_view = False

    def __init__(self, config: ProtocolConfig, client_id: int, crypto, **settings) -> None:
        if config.protocol != "pbft":
            raise ValueError(f"PBFTClient needs protocol 'pbft' (got {config.protocol!r})")
        super().__init__(config, client_id, crypto, **settings)

    @staticmethod
    def proof_quorum(config: ProtocolConfig) -> int:
        return config.f + 1
