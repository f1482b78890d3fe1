"""Quarantine of connections that send forged frames (issue 14, poe/transport/zmq.py and
ReplicaRuntime._deliver): a connection that delivered a frame no correct party sends is
never read again. Driven with a real PoE replica object (fake crypto), the runtime's
delivery step, and ReplicaTransports on 127.0.0.1."""
from __future__ import annotations

import time
from collections import Counter

import pytest
import zmq
from sockets import cluster as local_cluster
from sockets import settings as _settings

import poe.transport.zmq as transport_module
from poe._core import codec
from poe.crypto.base import client as client_party
from poe.crypto.base import replica as replica_party
from poe.crypto.fake import FakeCrypto
from poe.crypto.statements import request_statement
from poe.protocol.config import ProtocolConfig
from poe.protocol.drops import DropCounter
from poe.protocol.registry import make_replica
from poe.runtime.replica import ReplicaRuntime
from poe.transport.zmq import ReplicaTransport, pack_hellos

N = 4
FC = FakeCrypto(N, 4, 11, purpose="test")


def _suite(party):
    return FC.suite(party)


def _mac(sender: int, to: int, frame: bytes) -> bytes:
    return codec.seal(frame, _suite(replica_party(sender)).macs.mac(replica_party(to), frame))


def _fetch(sender: int, to: int, k: int = 10 ** 6) -> bytes:
    """A MAC-authenticated FETCH (far beyond the window: dropped, but authenticated)."""
    return _mac(sender, to, codec.encode_fetch(sender, k, bytes(32)))


def _request(cid: int, t: int, *, good: bool = True) -> bytes:
    unsigned = codec.pack_client_message(cid, [(t, 7, codec.OP_UPDATE, b"v")])
    sig = _suite(client_party(cid)).signer.sign(request_statement(unsigned))
    if not good:
        sig = bytes(b ^ 0x5A for b in sig)
    return codec.encode_request(unsigned + sig)


class _Transport:
    """What ReplicaRuntime._deliver uses of a ReplicaTransport, without sockets."""

    quarantine = ReplicaTransport.quarantine

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()
        self.quarantined_peers: dict[bytes, None] = {}
        self.quarantined_clients: dict[bytes, None] = {}


def _runtime(replica_id: int):
    rt = object.__new__(ReplicaRuntime)
    rt.replica = make_replica(ProtocolConfig(n=N, mode="ts"), replica_id,
                              _suite(replica_party(replica_id)))
    rt.transport = _Transport()
    rt._flush_interval = float("inf")
    rt._turn_sent_at = time.perf_counter()
    rt.applied = []
    rt._apply = rt.applied.extend
    return rt


def _peers(rt, messages, now: float = 1.0) -> None:
    rt._deliver(messages, rt.transport.quarantined_peers, False, now)


def _clients(rt, messages, now: float = 1.0) -> None:
    rt._deliver(messages, rt.transport.quarantined_clients, True, now)


# ---------------------------------------------------------------- the protocol's signal

def test_the_drop_counter_counts_unauthenticated_drops_only_without_a_sender():
    drops = DropCounter()
    drops["bad-mac"] += 1
    drops["malformed"] += 2
    drops["fetch-too-far"] += 1                    # not a forgery
    assert drops.unauthenticated == 2
    drops.sender = 2                               # while a MAC-verified frame is handled
    drops["malformed"] += 1
    assert drops.unauthenticated == 2 and drops.by_sender[(2, "malformed")] == 1


def test_every_forged_kind_moves_the_signal_and_authenticated_frames_do_not():
    rt = _runtime(1)
    drops = rt.replica.drops
    forged = [b"garbage", codec.encode_certify(0, 0, 1, bytes(32), b"\x0f", bytes(96)),
              _fetch(2, 1)[:-32] + bytes(32),
              codec.seal(codec.encode_fetch(1, 5, bytes(32)), bytes(32)),     # ourselves
              codec.seal(codec.encode_fetch(7, 5, bytes(32)), bytes(32)),     # nobody
              codec.encode_inform(0, 0, 1, codec.inform_body(0, [(0, [(1, 0, b"")])]),
                                  codec.AUTH_NONE),
              _request(0, 1, good=False)]
    for frame in forged:
        before = drops.unauthenticated
        rt.replica.on_message(frame, 1.0)
        assert drops.unauthenticated == before + 1, (frame, dict(drops))
    for frame in (_fetch(2, 1), _request(0, 5)):   # authenticated (and dropped), forwarded
        before = drops.unauthenticated
        rt.replica.on_message(frame, 1.0)
        assert drops.unauthenticated == before


# ---------------------------------------------------------------- the runtime's delivery

def test_a_peer_connection_is_quarantined_after_a_forged_frame_and_only_that_one():
    rt = _runtime(1)
    t = rt.transport
    honest, evil = b"r2.0123456789ab", b"r2"
    _peers(rt, [(honest, [_fetch(2, 1), _fetch(3, 1, 10 ** 6 + 1)]),
                (evil, [_fetch(2, 1)[:-32] + bytes(32), _fetch(2, 1), _fetch(3, 1)]),
                (evil, [_fetch(2, 1)]),
                (honest, [_fetch(2, 1, 10 ** 6 + 2)])])
    assert list(t.quarantined_peers) == [evil] and not t.quarantined_clients
    # the forged frame was the last of evil's handed over: 2 frames after it, 1 message
    assert t.stats["dropped-after-unauthenticated"] == 2
    assert t.stats["dropped-quarantined"] == 1
    assert t.stats["peer-connections-quarantined"] == 1
    assert rt.replica.drops["bad-mac"] == 1
    # every frame of the honest connection reached the protocol (3 far FETCHes dropped)
    assert sum(n for (sender, _), n in rt.replica.drops.by_sender.items()) == 3


def test_a_forged_request_on_the_peer_port_quarantines_its_connection():
    """A backup forwards a client's REQUEST to the primary unauthenticated; the primary
    checks its signature. One whose signature fails quarantines the connection (a correct
    backup forwards only what it verified): one Ed25519 check per connection, not per frame.
    A good one, from a connection that never sent a MAC-authenticated frame, is taken."""
    rt = _runtime(0)
    t = rt.transport
    forger, backup = b"forger", b"r1.0123456789ab"
    _peers(rt, [(forger, [_request(0, 1, good=False)] + [_request(0, j, good=False)
                                                         for j in range(2, 33)]),
                (forger, [_request(1, 1, good=False)]),
                (backup, [_request(2, 1)])])
    assert rt.replica.drops["bad-client-signature"] == 1
    assert t.stats["dropped-after-unauthenticated"] == 31
    assert t.stats["dropped-quarantined"] == 1
    assert list(t.quarantined_peers) == [forger]
    assert (2, 1) in rt.replica.pending                 # the forwarded message is queued


def test_a_client_connection_is_quarantined_after_a_forged_request_and_not_before():
    """On the client port a REQUEST is taken from any connection (a correct client's first
    request may overtake its HELLO); one whose signature fails quarantines the
    connection."""
    rt = _runtime(0)
    t = rt.transport
    _clients(rt, [(b"c0-3.aaaaaaaaaaaa", [_request(0, 1), _request(1, 1)])])
    assert not t.quarantined_clients and len(rt.replica.pending) == 2
    _clients(rt, [(b"thief", [_request(2, 1, good=False), _request(2, 2)]),
                  (b"thief", [_request(3, 1)]),
                  (b"c0-3.aaaaaaaaaaaa", [_request(2, 3)])])
    assert list(t.quarantined_clients) == [b"thief"] and not t.quarantined_peers
    assert t.stats["client-connections-quarantined"] == 1
    assert t.stats["dropped-after-unauthenticated"] == 1
    assert t.stats["dropped-quarantined"] == 1
    assert (2, 3) in rt.replica.pending and (3, 1) not in rt.replica.pending


def test_the_quarantine_is_bounded_oldest_first(monkeypatch):
    monkeypatch.setattr(transport_module, "QUARANTINE_MAX", 3)
    t = _Transport()
    for i in range(5):
        t.quarantine(b"x%d" % i, client=False)
    t.quarantine(b"x4", client=False)                  # already in: nothing moves
    assert list(t.quarantined_peers) == [b"x2", b"x3", b"x4"]
    assert t.stats["quarantine-evicted"] == 2 and t.stats["peer-connections-quarantined"] == 5


def test_the_new_counters_are_transport_drops_in_metrics():
    from poe.runtime.metrics import transport_drop_reason

    assert transport_drop_reason("dropped-quarantined") == "transport-dropped-quarantined"
    assert transport_drop_reason("dropped-after-unauthenticated") \
        == "transport-dropped-after-unauthenticated"
    for key in ("peer-connections-quarantined", "client-connections-quarantined",
                "quarantine-evicted"):
        assert transport_drop_reason(key) is None


# ---------------------------------------------------------------- real sockets

def _drain_until(t: ReplicaTransport, peer: bool, until, timeout_s: float = 10.0):
    got = []
    deadline = time.monotonic() + timeout_s
    while not until(got):
        assert time.monotonic() < deadline, ("timed out", got, dict(t.stats))
        for sock in t.poll(10):
            if sock is t.peer_router and peer:
                got.extend(t.drain_peer_messages())
            elif sock is t.client_router and not peer:
                got.extend(t.drain_client_messages())
            elif sock not in (t.peer_router, t.client_router):
                t.monitor_events(sock)
    return got


@pytest.fixture
def one_replica():
    cluster = local_cluster(1, clients=4)
    ctx = zmq.Context()
    t = ReplicaTransport(ctx, cluster, 0, _settings(), macs=_suite(replica_party(0)).macs)
    sockets = []

    def dealer(identity: bytes, port: int):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.connect(f"tcp://127.0.0.1:{port}")
        sockets.append(sock)
        return sock

    yield t, dealer, cluster.replicas[0]
    for sock in sockets:
        sock.close(0)
    t.close()
    ctx.term()


def test_a_quarantined_connection_is_dropped_unsplit_others_unaffected(one_replica,
                                                                       monkeypatch):
    t, dealer, info = one_replica
    split = []
    real_split = transport_module.split_frames
    monkeypatch.setattr(transport_module, "split_frames",
                        lambda payload: split.append(payload) or real_split(payload))
    evil, good = dealer(b"evil", info.replica_port), dealer(b"good", info.replica_port)
    frame = b"PE" + bytes(30)
    evil.send(frame)
    got = _drain_until(t, True, lambda got: len(got) == 1)
    assert got == [(b"evil", [frame])]
    t.quarantine(b"evil", client=False)                # what the runtime does after it
    split.clear()
    for _ in range(3):
        evil.send(frame * 32)
    good.send(frame * 2)
    got = _drain_until(t, True, lambda got: len(got) == 1 and t.stats[
        "dropped-quarantined"] == 3)
    assert got == [(b"good", [frame, frame])]
    assert split == [frame * 2]                         # evil's messages never split
    # the flat view (drain_peers) skips it too
    evil.send(frame)
    good.send(frame)
    flat = []
    deadline = time.monotonic() + 10
    while t.stats["dropped-quarantined"] < 4 or not flat:
        assert time.monotonic() < deadline
        if t.peer_router.poll(10):
            flat.extend(t.drain_peers())
    assert flat == [frame]


def test_a_hello_with_a_bad_mac_quarantines_its_client_connection(one_replica):
    t, dealer, info = one_replica
    thief = dealer(b"c1.thief", info.client_port)
    real = dealer(b"c1.real", info.client_port)
    keys = [_suite(client_party(1)).macs]
    forged = bytearray(pack_hellos(0, b"c1.thief", 10, keys, 1)[0])
    forged[-1] ^= 1
    thief.send(bytes(forged))
    _drain_until(t, False, lambda _: t.stats["dropped-hello-bad-mac"] == 1)
    assert list(t.quarantined_clients) == [b"c1.thief"]
    request = _request(1, 1)
    thief.send(request)
    thief.send(pack_hellos(0, b"c1.thief", 11, keys, 1)[0])    # even a valid one now
    real.send(pack_hellos(0, b"c1.real", 12, keys, 1)[0])
    real.send(request)
    got = _drain_until(t, False, lambda got: got and t.stats["dropped-quarantined"] == 2)
    assert got == [(b"c1.real", [request])]
    assert t.routes == {1: b"c1.real"}
    assert t.stats["client-connections-quarantined"] == 1
