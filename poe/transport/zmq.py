"""ZeroMQ transport of a replica and of a client process: sockets, framing, coalescing.

What it is for: moving sealed protocol frames (docs/wire.md) between processes over TCP.

* A replica binds two ROUTER sockets: one on its ``replica_port`` for the other replicas and
  one on its ``client_port`` for clients. It connects one DEALER to every other replica's
  replica port, with a fresh random identity ``b"r<id>.<12 hex digits>"`` (readable in logs,
  never trusted: the peer port routes nothing, every frame carries its sender and MAC);
  outgoing replica traffic leaves by those DEALERs, replies to clients leave by the client
  ROUTER. The peer port hands an identity over (ZMQ_ROUTER_HANDOVER), so a DEALER that
  reconnects after a network fault gets its name back from a connection the ROUTER still
  holds; the name being unguessable, nobody else can take a replica's connection over (with
  the fixed name ``b"r<id>"`` a keyless peer connecting as ``r0`` cut the primary off from a
  backup, and its flood changed the view: tests/system/test_flood.py).
* A client process connects one DEALER to every replica's client port with a fresh random
  identity per connection (``b"c<first>-<last>.<12 hex digits>"``: readable in logs, never
  trusted). It sends a HELLO control message whenever a connection completes and every
  heartbeat interval: for each client id it serves, a MAC with that client's key towards the
  replica over (replica, client, counter, connection identity), the counter strictly
  increasing (wall clock µs). A replica routes the INFORMs of client ``c`` to the connection
  of the last valid HELLO of ``c`` with a counter above every one it accepted for ``c``
  (issue 14): a peer without ``c``'s key cannot move the route, a replayed HELLO is stale or
  names another connection, and a restarted client gets its route back with its first
  HELLO. The client port does not hand an identity over (no ZMQ_ROUTER_HANDOVER): a second
  connection with an identity in use is refused, so nobody takes over a live client's
  connection; a client reopens a connection that went down with a new identity.
* Frames for one destination produced in one loop turn are concatenated into one ZeroMQ
  message of at most ``coalesce_bytes`` (the envelope's length field makes frames
  self-delimiting); the receiver splits them again. A ZeroMQ message that does not start
  with the frame magic ``"PE"`` is a control message (``\\0`` + word).
* Quarantine (issue 14): a connection that delivered a frame no correct party ever sends
  (the protocol counts it under a reason of ``DropCounter.UNAUTHENTICATED``: malformed,
  unknown sender, wrong auth kind, bad MAC, unexpected kind, a client message or VC-REQUEST
  whose signature fails) or a HELLO with a bad MAC is quarantined: every later message on
  it is dropped before it is split or looked at (``dropped-quarantined``), and what was left
  of the message that tripped it too (``dropped-after-unauthenticated``, frames). The
  runtime reports the frame (``quarantine``); the sets (one per ROUTER: identities are
  per socket) hold at most ``QUARANTINE_MAX`` identities, oldest forgotten first. A keyless
  party thus gets one frame through per connection it opens (a TCP and ZMTP handshake
  each) instead of costing the replica a decode and a MAC check per frame; a correct
  replica's or client's connection never enters (its identity is random, and it never
  sends such a frame).
* Bounded everywhere: ZMQ_SNDHWM / ZMQ_RCVHWM bound the queues (a send that would block is
  dropped and counted: the protocol retransmits), ZMQ_IMMEDIATE keeps messages for a peer
  that is down from piling up, ZMQ_MAXMSGSIZE (twice ``max_frame_bytes``) makes ZeroMQ cut a
  peer that sends more, and messages above ``max_frame_bytes`` are counted and dropped.
  ZMTP heartbeats (ZMQ_HEARTBEAT_IVL/TTL/TIMEOUT) notice a dead peer; ZeroMQ reconnects by
  itself (ZMQ_RECONNECT_IVL/_MAX); socket monitors report peers going up and down.

Must never: raise on anything a peer sends (garbage, truncated or oversized messages, bad
envelopes, forged, stale or malformed HELLOs are counted in ``stats`` and dropped), block on
a send, grow a queue without bound, interpret a frame beyond its envelope, or route a
client's INFORMs by anything but a HELLO authenticated with that client's key.
"""
from __future__ import annotations

import os
import struct
import time
from collections import Counter

import zmq
from zmq.utils.monitor import parse_monitor_message

from poe.crypto.base import MAC_SIZE
from poe.crypto.base import client as client_party
from poe.crypto.base import replica as replica_party

MAGIC = b"PE"
HEADER_SIZE = 32
_AUTH_SIZE = (0, 32, 64, -1)                 # by the two low flag bits (docs/wire.md)
_ENVELOPE = struct.Struct("<2s2xH6xI")       # magic, flags, body length
CONTROL = 0x00
HELLO = b"\x00hello/1"                       # control word of an authenticated HELLO
_HELLO_HEAD = struct.Struct("<QH")            # counter, entries
_HELLO_ENTRY = struct.Struct("<I32s")         # client id, MAC tag
HELLO_CLIENTS_MAX = 256                       # entries per HELLO message (larger: split)
_HELLO_STATEMENT = b"PoE/HELLO/v1"
_HELLO_FIELDS = struct.Struct("<IIQB")        # replica, client, counter, identity length
QUARANTINE_MAX = 4096                         # quarantined identities per ROUTER (FIFO)
assert _HELLO_ENTRY.size == 4 + MAC_SIZE


def replica_identity(replica_id: int) -> bytes:
    """A fresh connection identity for replica ``replica_id``'s DEALER to a peer:
    ``b"r<id>.<12 random hex digits>"``, unguessable so no other party can take the
    connection over on the peer port (which allows handover). The name is for logs."""
    return b"r%d." % replica_id + os.urandom(6).hex().encode()


def client_identity(first: int, last: int | None = None) -> bytes:
    """A fresh connection identity for the clients first..last of a process:
    ``b"c<first>[-<last>].<12 random hex digits>"``. Only the replica's HELLO check decides
    which clients a connection serves; the name is for logs."""
    if last is not None and last < first:
        raise ValueError("last client id below first")
    name = b"c%d" % first if last is None or last == first else b"c%d-%d" % (first, last)
    return name + b"." + os.urandom(6).hex().encode()


def hello_statement(replica_id: int, client_id: int, counter: int, identity: bytes) -> bytes:
    """What a HELLO entry's MAC covers: the replica and client, the counter and the
    connection identity the HELLO must arrive on (so it cannot be replayed elsewhere)."""
    return _HELLO_STATEMENT + _HELLO_FIELDS.pack(replica_id, client_id, counter,
                                                 len(identity)) + identity


def pack_hellos(replica_id: int, identity: bytes, counter: int, macs, first: int) -> list[bytes]:
    """The HELLO messages announcing clients ``first..first+len(macs)-1`` (``macs[j]`` is
    client ``first+j``'s MacKeys) on the connection ``identity`` to ``replica_id``."""
    to = replica_party(replica_id)
    out = []
    for start in range(0, len(macs), HELLO_CLIENTS_MAX):
        chunk = macs[start:start + HELLO_CLIENTS_MAX]
        parts = [HELLO, _HELLO_HEAD.pack(counter, len(chunk))]
        for j, keys in enumerate(chunk, first + start):
            parts.append(_HELLO_ENTRY.pack(j, keys.mac(to, hello_statement(
                replica_id, j, counter, identity))))
        out.append(b"".join(parts))
    return out


def parse_hello(payload: bytes) -> tuple[int, list[tuple[int, bytes]]] | None:
    """(counter, [(client id, tag)]) of a HELLO message, or None if it is malformed."""
    head = len(HELLO) + _HELLO_HEAD.size
    if len(payload) < head or not payload.startswith(HELLO):
        return None
    counter, count = _HELLO_HEAD.unpack_from(payload, len(HELLO))
    if not 0 < count <= HELLO_CLIENTS_MAX or len(payload) != head + count * _HELLO_ENTRY.size:
        return None
    return counter, list(_HELLO_ENTRY.iter_unpack(payload[head:]))


def split_frames(payload: bytes) -> list[bytes]:
    """The frames concatenated in one message. Whatever does not parse as an envelope (short,
    bad magic, impossible flags, a length beyond the end) is returned as one last piece, so
    the protocol counts it as malformed; nothing is lost silently and nothing raises."""
    size = len(payload)
    if size < HEADER_SIZE:
        return [payload]
    magic, flags, body = _ENVELOPE.unpack_from(payload, 0)
    auth = _AUTH_SIZE[flags & 3]
    end = HEADER_SIZE + body + auth
    if end == size or magic != MAGIC or auth < 0 or end > size:
        return [payload]                          # one frame (or one malformed piece)
    out = [payload[:end]]
    off = end
    unpack = _ENVELOPE.unpack_from
    while off < size:
        if size - off < HEADER_SIZE:
            out.append(payload[off:])
            break
        magic, flags, body = unpack(payload, off)
        auth = _AUTH_SIZE[flags & 3]
        end = off + HEADER_SIZE + body + auth
        if magic != MAGIC or auth < 0 or end > size:
            out.append(payload[off:])
            break
        out.append(payload[off:end])
        off = end
    return out


def coalesce(frames: list[bytes], limit: int) -> list[bytes]:
    """Join ``frames`` into as few messages of at most ``limit`` bytes as their order allows
    (a frame larger than ``limit`` travels alone)."""
    if len(frames) == 1:
        return frames
    out: list[bytes] = []
    run: list[bytes] = []
    size = 0
    for frame in frames:
        length = len(frame)
        if run and size + length > limit:
            out.append(b"".join(run) if len(run) > 1 else run[0])
            run, size = [], 0
        run.append(frame)
        size += length
    if run:
        out.append(b"".join(run) if len(run) > 1 else run[0])
    return out


class Settings:
    """The transport settings (poe.config section ``transport``) in ZeroMQ units."""

    __slots__ = (
        "bind_host",
        "coalesce_bytes",
        "drain",
        "heartbeat_ivl_ms",
        "heartbeat_timeout_ms",
        "max_frame_bytes",
        "rcvhwm",
        "reconnect_max_ms",
        "reconnect_ms",
        "sndhwm",
    )

    def __init__(self, section) -> None:
        self.max_frame_bytes = int(section.max_frame_bytes)
        self.coalesce_bytes = int(section.coalesce_bytes)
        self.sndhwm = int(section.send_queue_messages)
        self.rcvhwm = int(section.receive_queue_messages)
        self.drain = int(section.drain_messages)
        self.heartbeat_ivl_ms = max(1, int(section.heartbeat_interval_s * 1000))
        self.heartbeat_timeout_ms = max(2, int(section.heartbeat_timeout_s * 1000))
        self.reconnect_ms = max(1, int(section.reconnect_interval_s * 1000))
        self.reconnect_max_ms = max(self.reconnect_ms, int(section.reconnect_interval_max_s
                                                           * 1000))
        self.bind_host = section.bind_host


def _configure(sock: zmq.Socket, s: Settings, *, router: bool, handover: bool = True) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 2 * s.max_frame_bytes)
    sock.setsockopt(zmq.SNDHWM, s.sndhwm)
    sock.setsockopt(zmq.RCVHWM, s.rcvhwm)
    sock.setsockopt(zmq.HEARTBEAT_IVL, s.heartbeat_ivl_ms)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, s.heartbeat_timeout_ms)
    sock.setsockopt(zmq.HEARTBEAT_TTL, s.heartbeat_timeout_ms)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    if router:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)   # unroutable replies raise: we count them
        # replicas: a reconnecting peer takes its identity back (the identity is random per
        # DEALER, so only that DEALER knows it; its frames carry MACs, the peer port routes
        # nothing). Clients: never (a connection in use is not taken over)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1 if handover else 0)
    else:
        sock.setsockopt(zmq.IMMEDIATE, 1)          # no queue for a peer that is down
        sock.setsockopt(zmq.RECONNECT_IVL, s.reconnect_ms)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, s.reconnect_max_ms)


_MONITORED = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPTED
              | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def _endpoint(host: str, port: int) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


class _Monitored:
    """Socket monitors: turn connection events into (name, event) pairs and counters."""

    def __init__(self, stats: Counter) -> None:
        self.stats = stats
        self.monitors: dict[zmq.Socket, str] = {}

    def watch(self, sock: zmq.Socket, name: str) -> zmq.Socket:
        mon = sock.get_monitor_socket(_MONITORED)
        self.monitors[mon] = name
        return mon

    def events(self, mon: zmq.Socket, limit: int = 64) -> list[tuple[str, str]]:
        """Pending events of one monitor as (name, "up" | "down" | "accepted" | "failed")."""
        name = self.monitors[mon]
        out = []
        for _ in range(limit):
            try:
                parts = mon.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                event = parse_monitor_message(parts)["event"]
            except Exception:                       # noqa: BLE001 (never raise on events)
                self.stats["monitor-garbage"] += 1
                continue
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                out.append((name, "up"))
                self.stats[f"{name}-up"] += 1
            elif event == zmq.EVENT_DISCONNECTED:
                out.append((name, "down"))
                self.stats[f"{name}-down"] += 1
            elif event == zmq.EVENT_ACCEPTED:
                self.stats[f"{name}-accepted"] += 1
            else:
                out.append((name, "failed"))
                self.stats[f"{name}-handshake-failed"] += 1
        return out

    def forget(self, mon: zmq.Socket) -> None:
        self.monitors.pop(mon, None)

    def close(self) -> None:
        for mon in self.monitors:
            mon.close(0)
        self.monitors.clear()


class ReplicaTransport:
    """The sockets of replica ``replica_id`` of a cluster (poe.crypto Cluster)."""

    def __init__(self, ctx: zmq.Context, cluster, replica_id: int, settings: Settings,
                 macs=None) -> None:
        """``macs``: the replica's MacKeys (checks the clients' HELLOs; without it no client
        route is ever learned)."""
        self.id = replica_id
        self.macs = macs
        self.n = cluster.n
        self.clients = len(cluster.clients)
        self.s = settings
        self.stats: Counter[str] = Counter()
        self.monitored = _Monitored(self.stats)
        me = cluster.replicas[replica_id]
        host = settings.bind_host or me.host
        self.peer_router = ctx.socket(zmq.ROUTER)
        _configure(self.peer_router, settings, router=True)
        self.client_router = ctx.socket(zmq.ROUTER)
        _configure(self.client_router, settings, router=True, handover=False)
        self.endpoints = (_endpoint(host, me.replica_port), _endpoint(host, me.client_port))
        self.peer_router.bind(self.endpoints[0])
        self.client_router.bind(self.endpoints[1])
        self.peer_monitor = self.monitored.watch(self.peer_router, "peer-port")
        self.client_monitor = self.monitored.watch(self.client_router, "client-port")
        self.dealers: list[zmq.Socket | None] = [None] * self.n
        self.dealer_monitors: dict[zmq.Socket, int] = {}
        for info in cluster.replicas:
            if info.id == replica_id:
                continue
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, replica_identity(replica_id))
            _configure(sock, settings, router=False)
            # the monitor before connecting, so no "up" is missed
            self.dealer_monitors[self.monitored.watch(sock, f"r{info.id}")] = info.id
            sock.connect(_endpoint(info.host, info.replica_port))
            self.dealers[info.id] = sock
        self.peer_up = [False] * self.n
        self.routes: dict[int, bytes] = {}           # client id -> identity of its connection
        # quarantined connection identities (dicts: insertion order is the eviction order)
        self.quarantined_peers: dict[bytes, None] = {}
        self.quarantined_clients: dict[bytes, None] = {}
        self._hello_counter = [0] * self.clients     # highest HELLO counter accepted, per client
        self.poller = zmq.Poller()
        for sock in (self.peer_router, self.client_router, self.peer_monitor,
                     self.client_monitor, *self.dealer_monitors):
            self.poller.register(sock, zmq.POLLIN)

    # ---------------------------------------------------------------- receiving

    def poll(self, timeout_ms: int) -> list[zmq.Socket]:
        return [sock for sock, _ in self.poller.poll(timeout_ms)]

    def _check(self, parts: list[bytes]) -> bytes | None:
        """The payload of a ROUTER message [identity, payload], or None (counted)."""
        stats = self.stats
        if len(parts) != 2:
            stats["dropped-bad-envelope"] += 1
            return None
        payload = parts[1]
        if len(payload) > self.s.max_frame_bytes:
            stats["oversized"] += 1
            return None
        if payload[:1] == b"\x00":
            stats["control"] += 1
            return None
        stats["in-messages"] += 1
        stats["in-bytes"] += len(payload)
        return payload

    def drain_peer_messages(self) -> list[tuple[bytes, list[bytes]]]:
        """Up to ``drain`` messages from the replica port as (connection identity, frames);
        a message from a quarantined connection is dropped unsplit (counted)."""
        out: list[tuple[bytes, list[bytes]]] = []
        recv = self.peer_router.recv_multipart
        quarantined = self.quarantined_peers
        for _ in range(self.s.drain):
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            identity = parts[0]
            if identity in quarantined:
                self.stats["dropped-quarantined"] += 1
                continue
            payload = self._check(parts)
            if payload is not None:
                out.append((identity, split_frames(payload)))
        return out

    def drain_client_messages(self) -> list[tuple[bytes, list[bytes]]]:
        """Up to ``drain`` messages from the client port as (connection identity, frames);
        HELLOs (control messages) move client routes when they authenticate, and quarantine
        their connection when a MAC is bad. A message from a quarantined connection is
        dropped unsplit (counted)."""
        out: list[tuple[bytes, list[bytes]]] = []
        recv = self.client_router.recv_multipart
        stats = self.stats
        quarantined = self.quarantined_clients
        for _ in range(self.s.drain):
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            identity = parts[0]
            if identity in quarantined:
                stats["dropped-quarantined"] += 1
                continue
            if len(parts) == 2 and parts[1][:1] == b"\x00" \
                    and len(parts[1]) <= self.s.max_frame_bytes:
                stats["control"] += 1
                if self._hello(identity, parts[1]) is False:
                    self.quarantine(identity, client=True)
                continue
            payload = self._check(parts)
            if payload is not None:
                out.append((identity, split_frames(payload)))
        return out

    def drain_peers(self) -> list[bytes]:
        """Up to ``drain`` messages from the replica port, split into frames."""
        return [frame for _, frames in self.drain_peer_messages() for frame in frames]

    def drain_clients(self) -> list[bytes]:
        """Up to ``drain`` messages from the client port, split into frames (HELLOs
        handled)."""
        return [frame for _, frames in self.drain_client_messages() for frame in frames]

    def quarantine(self, identity: bytes, *, client: bool, rest: int = 0) -> None:
        """Drop every later message of the connection ``identity`` (of the client port if
        ``client``, else of the peer port) unread: it delivered a frame no correct party
        sends. ``rest``: frames of its current message not handed over (counted)."""
        held = self.quarantined_clients if client else self.quarantined_peers
        if rest:
            self.stats["dropped-after-unauthenticated"] += rest
        if identity in held:
            return
        if len(held) >= QUARANTINE_MAX:
            del held[next(iter(held))]               # the oldest goes (insertion order)
            self.stats["quarantine-evicted"] += 1
        held[identity] = None
        self.stats["client-connections-quarantined" if client
                   else "peer-connections-quarantined"] += 1

    def _hello(self, identity: bytes, payload: bytes) -> bool | None:
        """Route every client of a HELLO whose entry is fresh and carries a valid MAC to the
        connection ``identity``. Cheap checks first (form, client id, counter); the first
        bad MAC ends the message (a correct client never sends one), so a forged HELLO
        costs one MAC check, and returns False (the caller quarantines the connection)."""
        stats = self.stats
        parsed = parse_hello(payload)
        if parsed is None:
            if payload == b"\x00hello":
                stats["dropped-hello-unauthenticated"] += 1      # the pre-issue-14 HELLO
            elif payload.startswith(HELLO):
                stats["dropped-hello-malformed"] += 1
            else:
                stats["dropped-control-unknown"] += 1
            return
        counter, entries = parsed
        macs = self.macs
        if macs is None:
            stats["dropped-hello-no-keys"] += 1
            return
        known = self._hello_counter
        routes = self.routes
        for cid, tag in entries:
            if cid >= self.clients:
                stats["dropped-hello-unknown-client"] += 1
                continue
            if counter <= known[cid]:
                stats["dropped-hello-stale"] += 1              # a replay, or reordered
                continue
            if not macs.verify(client_party(cid), hello_statement(self.id, cid, counter, identity),
                               tag):
                stats["dropped-hello-bad-mac"] += 1
                return False
            known[cid] = counter
            if routes.get(cid) != identity:
                routes[cid] = identity
                stats["client-routes-learned"] += 1

    def monitor_events(self, mon: zmq.Socket) -> list[tuple[str, str]]:
        events = self.monitored.events(mon)
        peer = self.dealer_monitors.get(mon)
        if peer is not None:
            for _, what in events:
                if what == "up":
                    self.peer_up[peer] = True
                elif what == "down":
                    self.peer_up[peer] = False
        return events

    # ---------------------------------------------------------------- sending

    def send_peer(self, peer: int, frames: list[bytes]) -> None:
        """Send ``frames`` to replica ``peer`` (coalesced); drop and count what does not fit."""
        sock = self.dealers[peer]
        if sock is None:
            self.stats["send-to-self"] += len(frames)
            return
        for message in coalesce(frames, self.s.coalesce_bytes):
            try:
                sock.send(message, zmq.NOBLOCK)
            except zmq.Again:
                self.stats[f"send-dropped-r{peer}"] += 1
                continue
            self.stats["out-messages"] += 1
            self.stats["out-bytes"] += len(message)

    def reply(self, identity: bytes, frames: list[bytes]) -> None:
        """Send ``frames`` (INFORMs) to the client connection ``identity``."""
        sock = self.client_router
        for message in coalesce(frames, self.s.coalesce_bytes):
            try:
                sock.send_multipart((identity, message), zmq.NOBLOCK)
            except zmq.Again:
                self.stats["dropped-reply-queue-full"] += 1
            except zmq.ZMQError:                     # EHOSTUNREACH: the client went away
                self.stats["dropped-reply-unroutable"] += 1
            else:
                self.stats["out-messages"] += 1
                self.stats["out-bytes"] += len(message)

    def close(self) -> None:
        self.monitored.close()
        for sock in (self.peer_router, self.client_router, *filter(None, self.dealers)):
            sock.close(0)


class ClientTransport:
    """The DEALERs of one client process (clients ``first..last``) to every replica.

    ``macs[j]`` is client ``first + j``'s MacKeys: every HELLO carries one MAC per client.
    Each connection has an identity of its own, new whenever the socket is reopened (after
    the connection went down), so a replica that still holds the old connection never
    refuses the new one and nobody who learnt the old identity can stand in for us."""

    def __init__(self, ctx: zmq.Context, cluster, first: int, last: int,
                 settings: Settings, macs) -> None:
        if len(macs) != last - first + 1:
            raise ValueError("one MacKeys per client first..last")
        self.n = cluster.n
        self.s = settings
        self.ctx = ctx
        self.first, self.last = first, last
        self.macs = list(macs)
        self.stats: Counter[str] = Counter()
        self.monitored = _Monitored(self.stats)
        self.endpoints = [_endpoint(info.host, info.client_port) for info in cluster.replicas]
        self.dealers: list[zmq.Socket] = [None] * self.n          # type: ignore[list-item]
        self.identities: list[bytes] = [b""] * self.n
        self.monitor_of: dict[zmq.Socket, int] = {}
        self.socket_of: dict[zmq.Socket, int] = {}
        self.up = [False] * self.n
        self._counter = 0
        self.poller = zmq.Poller()
        for r in range(self.n):
            self._open(r)

    def _open(self, r: int) -> None:
        identity = client_identity(self.first, self.last)
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        _configure(sock, self.s, router=False)
        mon = self.monitored.watch(sock, f"r{r}")     # before connecting: no event missed
        sock.connect(self.endpoints[r])
        self.dealers[r] = sock
        self.identities[r] = identity
        self.socket_of[sock] = r
        self.monitor_of[mon] = r
        self.poller.register(sock, zmq.POLLIN)
        self.poller.register(mon, zmq.POLLIN)

    def _reopen(self, r: int) -> None:
        """Replace replica ``r``'s socket by a new one with a new identity."""
        sock = self.dealers[r]
        mon = next(m for m, i in self.monitor_of.items() if i == r)
        for s in (sock, mon):
            self.poller.unregister(s)
        del self.socket_of[sock]
        del self.monitor_of[mon]
        self.monitored.forget(mon)
        try:
            sock.disable_monitor()
        except zmq.ZMQError:
            pass
        mon.close(0)
        sock.close(0)
        self.up[r] = False
        self.stats["reopened"] += 1
        self._open(r)

    def poll(self, timeout_ms: int) -> list[zmq.Socket]:
        return [sock for sock, _ in self.poller.poll(timeout_ms)]

    def monitor_events(self, mon: zmq.Socket) -> list[tuple[str, str]]:
        """Connection events of one replica; a completed connection gets a HELLO so the
        replica learns to route INFORMs to it; one that went down is reopened with a new
        identity (the caller must not use that replica's old socket afterwards)."""
        r = self.monitor_of[mon]
        events = self.monitored.events(mon)
        down = False
        for _, what in events:
            if what == "up":
                self.up[r] = True
                self.hello(r)
            elif what == "down":
                self.up[r] = False
                down = True
        if down:
            self._reopen(r)
        return events

    def hello(self, r: int) -> None:
        """Announce every client of this process to replica ``r`` on its connection."""
        self._counter = max(self._counter + 1, time.time_ns() // 1000)
        sock = self.dealers[r]
        for message in pack_hellos(r, self.identities[r], self._counter, self.macs,
                                   self.first):
            try:
                sock.send(message, zmq.NOBLOCK)
            except zmq.Again:
                self.stats["hello-dropped"] += 1
            else:
                self.stats["hello-sent"] += 1

    def drain(self, sock: zmq.Socket) -> list[bytes]:
        frames: list[bytes] = []
        stats = self.stats
        limit = self.s.max_frame_bytes
        for _ in range(self.s.drain):
            try:
                payload = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(payload) > limit:
                stats["oversized"] += 1
                continue
            if payload[:1] == b"\x00":
                stats["control"] += 1
                continue
            stats["in-messages"] += 1
            frames.extend(split_frames(payload))
        return frames

    def send(self, replica: int, frames: list[bytes]) -> None:
        sock = self.dealers[replica]
        for message in coalesce(frames, self.s.coalesce_bytes):
            try:
                sock.send(message, zmq.NOBLOCK)
            except zmq.Again:
                self.stats[f"send-dropped-r{replica}"] += 1
            else:
                self.stats["out-messages"] += 1

    def hello_all(self) -> None:
        """Re-announce this process to every replica (a heartbeat: a HELLO that was dropped,
        a connection whose "up" event was missed, or a replica that lost its routes, is made
        good within an interval; without a connection the send fails and is counted)."""
        for r in range(self.n):
            self.hello(r)

    def close(self) -> None:
        self.monitored.close()
        for sock in self.dealers:
            sock.close(0)

