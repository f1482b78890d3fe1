"""PBFT (Castro & Liskov), the paper's main baseline (PROTOCOL.md §9.1)."""
from poe.baselines.pbft.client import PBFTClient
from poe.baselines.pbft.replica import COMMIT_VOTES, PBFTReplica

__all__ = ["PBFTClient", "PBFTReplica", "COMMIT_VOTES"]
