"""Client routes on a replica (issue 14, class 5): INFORMs for client c go to the connection
of the last HELLO that carries a valid MAC with c's key, for a counter above every one
accepted for c. Driven on ReplicaTransport._hello without sockets; the real-process test is
tests/system/test_client_routing.py."""
from __future__ import annotations

import os
import time

import zmq
from sockets import cluster as local_cluster
from sockets import settings as _settings

from poe.crypto.base import MAC_SIZE, client, replica
from poe.crypto.mac import PairwiseMacKeys
from poe.transport.zmq import (
    HELLO,
    HELLO_CLIENTS_MAX,
    ClientTransport,
    ReplicaTransport,
    pack_hellos,
    parse_hello,
)

CLIENTS = 8
ME = 2                                         # the replica under test


def _keys():
    """MacKeys of replica ME and of every client (keys with ME and with replica ME + 1)."""
    pair = {j: os.urandom(32) for j in range(CLIENTS)}
    mine = PairwiseMacKeys(replica(ME), {client(j): pair[j] for j in range(CLIENTS)})
    theirs = [PairwiseMacKeys(client(j), {replica(ME): pair[j],
                                          replica(ME + 1): os.urandom(32)})
              for j in range(CLIENTS)]
    return mine, theirs


def _transport(macs):
    t = object.__new__(ReplicaTransport)
    t.id, t.clients, t.macs = ME, CLIENTS, macs
    t.stats = __import__("collections").Counter()
    t.routes = {}
    t._hello_counter = [0] * CLIENTS
    return t


def _hello(keys, identity, counter, first=0, last=None, to=ME):
    last = len(keys) - 1 if last is None else last
    (message,) = pack_hellos(to, identity, counter, keys[first:last + 1], first)
    return message


def test_a_valid_hello_routes_its_clients_to_its_connection():
    mine, theirs = _keys()
    t = _transport(mine)
    t._hello(b"c0-3.aa", _hello(theirs, b"c0-3.aa", 10, 0, 3))
    assert t.routes == {0: b"c0-3.aa", 1: b"c0-3.aa", 2: b"c0-3.aa", 3: b"c0-3.aa"}
    # a later connection of client 3 alone (a `poe client` after a bench) takes client 3
    t._hello(b"c3.bb", _hello(theirs, b"c3.bb", 11, 3, 3))
    assert t.routes[3] == b"c3.bb" and t.routes[2] == b"c0-3.aa"
    # and the bench again, later: client 3 back to it (routes are re-learned every time)
    t._hello(b"c0-3.aa", _hello(theirs, b"c0-3.aa", 12, 0, 3))
    assert t.routes[3] == b"c0-3.aa"
    assert sum(v for k, v in t.stats.items() if k.startswith("dropped")) == 0


def test_a_peer_without_the_key_cannot_move_a_route():
    mine, theirs = _keys()
    t = _transport(mine)
    t._hello(b"c5.real", _hello(theirs, b"c5.real", 100, 5, 5))
    # forged tags, even with the highest counter, on the real name or any other
    forged = HELLO + (2**64 - 1).to_bytes(8, "little") + (1).to_bytes(2, "little") \
        + (5).to_bytes(4, "little") + bytes(MAC_SIZE)
    for identity in (b"c5", b"c5.real", b"attacker"):
        t._hello(identity, forged)
    assert t.routes == {5: b"c5.real"} and t._hello_counter[5] == 100
    assert t.stats["dropped-hello-bad-mac"] == 3
    # a HELLO that really came from the client, replayed on another connection: its MAC
    # names the connection it was sent on
    captured = _hello(theirs, b"c5.real", 101, 5, 5)
    t._hello(b"c5.thief", captured)
    assert t.routes[5] == b"c5.real" and t.stats["dropped-hello-bad-mac"] == 4
    # a HELLO of another client's key for client 5: bad MAC
    other = _hello(theirs, b"c5.thief", 102, 6, 6).replace((6).to_bytes(4, "little"),
                                                            (5).to_bytes(4, "little"), 1)
    t._hello(b"c5.thief", other)
    assert t.routes[5] == b"c5.real"
    # a HELLO for another replica: bad MAC here
    t._hello(b"c5.thief", _hello(theirs, b"c5.thief", 103, 5, 5, to=ME + 1))
    assert t.routes[5] == b"c5.real" and t.stats["dropped-hello-bad-mac"] == 6
    # the client's own HELLO, replayed on its own connection name later: stale
    t._hello(b"c5.real", _hello(theirs, b"c5.real", 104, 5, 5))
    t._hello(b"c5.real", captured)
    assert t.stats["dropped-hello-stale"] == 1


def test_the_first_bad_mac_ends_the_message():
    mine, theirs = _keys()
    t = _transport(mine)
    message = bytearray(_hello(theirs, b"x", 7, 0, 7))
    entry = len(HELLO) + 10 + 3 * (4 + MAC_SIZE) + 4   # the tag of client 3
    message[entry] ^= 1
    t._hello(b"x", bytes(message))
    assert sorted(t.routes) == [0, 1, 2] and t.stats["dropped-hello-bad-mac"] == 1


def test_a_restarted_client_gets_its_route_back():
    mine, theirs = _keys()
    t = _transport(mine)
    t._hello(b"c1.old", _hello(theirs, b"c1.old", 1_000, 1, 1))
    t._hello(b"c1.new", _hello(theirs, b"c1.new", 2_000, 1, 1))   # later wall clock
    assert t.routes[1] == b"c1.new"


def test_malformed_and_old_hellos_are_counted_and_dropped():
    mine, theirs = _keys()
    t = _transport(mine)
    good = _hello(theirs, b"x", 5, 0, 1)
    for bad in (good[:-1], good + b"z", HELLO, HELLO + bytes(10),
                HELLO + (1).to_bytes(8, "little") + (HELLO_CLIENTS_MAX + 1).to_bytes(2, "little")):
        t._hello(b"x", bad)
    t._hello(b"x", b"\x00hello")
    t._hello(b"x", b"\x00whatever")
    t._hello(b"x", HELLO + (9).to_bytes(8, "little") + (1).to_bytes(2, "little")
             + (CLIENTS).to_bytes(4, "little") + bytes(MAC_SIZE))
    assert t.routes == {}
    assert t.stats["dropped-hello-malformed"] == 5
    assert t.stats["dropped-hello-unauthenticated"] == 1
    assert t.stats["dropped-control-unknown"] == 1
    assert t.stats["dropped-hello-unknown-client"] == 1
    assert _transport(None)._hello(b"x", good) is None


def test_large_processes_split_their_hello():
    _, theirs = _keys()
    many = theirs * 70                                  # 560 entries: three messages
    messages = pack_hellos(ME, b"x", 1, many, 0)
    assert len(messages) == 3
    assert [len(parse_hello(m)[1]) for m in messages] == [256, 256, 48]
    assert parse_hello(messages[1])[1][0][0] == 256


# ---------------------------------------------------------------------------------------------
# with sockets: a ReplicaTransport and ClientTransports in this process, on 127.0.0.1
# ---------------------------------------------------------------------------------------------

def _pump(replica_t, clients, until, timeout_s=10.0):
    """Run both sides' loops until ``until()`` holds (bounded)."""
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "timed out"
        for sock in replica_t.poll(20):
            if sock is replica_t.client_router:
                replica_t.drain_clients()
            elif sock is not replica_t.peer_router:
                replica_t.monitor_events(sock)
        for c in clients:
            for sock in c.poll(0):
                if sock in c.monitor_of:
                    c.monitor_events(sock)


def test_a_live_connection_cannot_be_taken_over_and_routes_follow_authentication():
    pair = {j: os.urandom(32) for j in range(CLIENTS)}
    mine = PairwiseMacKeys(replica(0), {client(j): pair[j] for j in range(CLIENTS)})
    theirs = [PairwiseMacKeys(client(j), {replica(0): pair[j]}) for j in range(CLIENTS)]
    cluster = local_cluster(1, clients=CLIENTS)
    ctx = zmq.Context()
    t = ReplicaTransport(ctx, cluster, 0, _settings(), macs=mine)
    real = ClientTransport(ctx, cluster, 7, 7, _settings(), theirs[7:8])
    thief = ctx.socket(zmq.DEALER)
    try:
        # the real client is routed by its HELLO on connect
        _pump(t, [real], lambda: t.routes.get(7) == real.identities[0])
        # a peer without the key takes the live connection's name: refused (no handover)
        thief.setsockopt(zmq.LINGER, 0)
        thief.setsockopt(zmq.IDENTITY, real.identities[0])
        thief.connect(f"tcp://127.0.0.1:{cluster.replicas[0].client_port}")
        time.sleep(0.3)
        try:
            thief.send(b"\x00hello", zmq.NOBLOCK)
        except zmq.Again:
            pass
        _pump(t, [real], lambda: True)
        t.reply(t.routes[7], [b"PE" + bytes(30)])
        assert real.dealers[0].poll(5000) and real.dealers[0].recv() == b"PE" + bytes(30)
        assert thief.poll(300) == 0
        # a heartbeat HELLO even when the "up" event was never seen: the route stays right
        real.up[0] = False
        real.hello_all()
        _pump(t, [], lambda: t._hello_counter[7] == real._counter)
        assert t.routes[7] == real.identities[0]
        # a second process of client 7 (a restart): the route moves to it, and back
        other = ClientTransport(ctx, cluster, 7, 7, _settings(), theirs[7:8])
        try:
            _pump(t, [other], lambda: t.routes.get(7) == other.identities[0])
            real.hello_all()
            _pump(t, [], lambda: t.routes.get(7) == real.identities[0])
        finally:
            other.close()
    finally:
        thief.close(0)
        real.close()
        t.close()
        ctx.term()
