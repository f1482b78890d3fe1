"""Transports on 127.0.0.1 for the runtime tests that open real sockets (client routes,
peer identities, quarantine): small queues, fast reconnects, free ports."""
from __future__ import annotations

from types import SimpleNamespace

from poe.runtime.procs import free_port_range
from poe.transport.zmq import Settings


def settings() -> Settings:
    return Settings(SimpleNamespace(
        max_frame_bytes=1 << 20, coalesce_bytes=1 << 16, send_queue_messages=100,
        receive_queue_messages=100, drain_messages=64, heartbeat_interval_s=1.0,
        heartbeat_timeout_s=5.0, reconnect_interval_s=0.05, reconnect_interval_max_s=0.2,
        bind_host=""))


def cluster(n: int, clients: int = 0) -> SimpleNamespace:
    """n replicas on free ports of 127.0.0.1 (a replica and a client port each)."""
    base = free_port_range(2 * n)
    replicas = [SimpleNamespace(id=i, host="127.0.0.1", replica_port=base + 2 * i,
                                client_port=base + 2 * i + 1) for i in range(n)]
    return SimpleNamespace(n=n, replicas=replicas, clients=list(range(clients)))
