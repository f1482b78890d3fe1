"""The peer port (issue 14): a party holding no key cannot take a replica's connection over.

The peer ROUTER hands an identity over (a reconnecting DEALER gets its name back), so the
replicas' DEALERs must have names nobody else can guess. Two ReplicaTransports in this
process on 127.0.0.1, and a thief connecting under every name it could guess."""
from __future__ import annotations

import time

import zmq
from sockets import cluster as _cluster
from sockets import settings as _settings

from poe.transport.zmq import ReplicaTransport, replica_identity


def _pump(transports, until, timeout_s=10.0) -> list[bytes]:
    """Run the transports' receive sides until ``until(received)`` holds (bounded)."""
    received: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while not until(received):
        assert time.monotonic() < deadline, "timed out"
        for t in transports:
            for sock in t.poll(10):
                if sock is t.peer_router:
                    received.extend(t.drain_peers())
                elif sock is t.client_router:
                    t.drain_clients()
                else:
                    t.monitor_events(sock)
    return received


def test_replica_identities_are_fresh_and_unguessable():
    names = {replica_identity(1) for _ in range(100)}
    assert len(names) == 100
    assert all(name.startswith(b"r1.") and len(name) == 3 + 12 for name in names)


def test_a_keyless_peer_cannot_take_a_replica_connection_over():
    cluster = _cluster(2)
    ctx = zmq.Context()
    t0 = ReplicaTransport(ctx, cluster, 0, _settings())
    t1 = ReplicaTransport(ctx, cluster, 1, _settings())
    thieves = []
    try:
        _pump([t0, t1], lambda _: t1.peer_up[0] and t0.peer_up[1])
        # a peer with no key connects to replica 0's peer port under every name it knows
        for name in (b"r1", b"r1.", b"r0", replica_identity(1)):
            thief = ctx.socket(zmq.DEALER)
            thief.setsockopt(zmq.LINGER, 0)
            thief.setsockopt(zmq.IDENTITY, name)
            thief.connect(t0.endpoints[0].replace("*", "127.0.0.1"))
            thief.send(b"PE" + bytes(30))
            thieves.append(thief)
        got = _pump([t0, t1], lambda r: len(r) >= len(thieves))
        assert got == [b"PE" + bytes(30)] * len(thieves)
        # replica 1's connection to replica 0 was never cut, and it still carries frames
        time.sleep(0.3)
        _pump([t0, t1], lambda _: True)
        assert t1.stats["r0-down"] == 0 and t1.peer_up[0]
        t1.send_peer(0, [b"PE" + b"\x01" * 30])
        assert _pump([t0, t1], lambda r: r == [b"PE" + b"\x01" * 30])
    finally:
        for thief in thieves:
            thief.close(0)
        t0.close()
        t1.close()
        ctx.term()
