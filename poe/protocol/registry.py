"""Which replica and client classes run a configuration's ``protocol`` ("poe" or "pbft").

Every driver (simulator, runtime, benchmarks) builds its protocol objects here, so a
protocol is selected in one place. Imports are lazy: baselines import this package.
"""
from __future__ import annotations

from poe.protocol.config import ProtocolConfig


def replica_class(config: ProtocolConfig):
    if config.protocol == "pbft":
        from poe.baselines.pbft.replica import PBFTReplica
        return PBFTReplica
    from poe.protocol.poe.replica import PoEReplica
    return PoEReplica


def client_class(config: ProtocolConfig):
    if config.protocol == "pbft":
        from poe.baselines.pbft.client import PBFTClient
        return PBFTClient
    from poe.protocol.poe.client import PoEClient
    return PoEClient


def make_replica(config: ProtocolConfig, replica_id: int, crypto, kv=None):
    """The replica of ``config.protocol`` (validated by its constructor)."""
    return replica_class(config)(config, replica_id, crypto, kv)


def make_client(config: ProtocolConfig, client_id: int, crypto, **settings):
    """The client of ``config.protocol``; ``settings`` are its timeouts and limits."""
    return client_class(config)(config, client_id, crypto, **settings)


def proof_quorum(config: ProtocolConfig) -> int:
    """Matching replies that are a proof of execution for this protocol's client."""
    return client_class(config).proof_quorum(config)
