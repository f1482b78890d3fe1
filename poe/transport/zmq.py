"""ZeroMQ transport of a replica and of a client process: sockets, framing, coalescing.

What it is for: moving sealed protocol frames (docs/wire.md) between processes over TCP.

* A replica binds two ROUTER sockets: one on its ``replica_port`` for the other replicas and
  one on its ``client_port`` for clients. It connects one DEALER to every other replica's
  replica port, with identity ``b"r<id>"``; outgoing replica traffic leaves by those DEALERs,
  replies to clients leave by the client ROUTER.
* A client process connects one DEALER to every replica's client port with identity
  ``b"c<j>"`` (one logical client) or ``b"c<first>-<last>"`` (the clients ``first..last``
  sharing the process). It sends a HELLO control message whenever a connection completes,
  so every replica, including the backups it never sends a request to, can route INFORMs to
  it. The identity only routes replies: the protocol authenticates every frame itself.
* Frames for one destination produced in one loop turn are concatenated into one ZeroMQ
  message of at most ``coalesce_bytes`` (the envelope's length field makes frames
  self-delimiting); the receiver splits them again. A ZeroMQ message that does not start
  with the frame magic ``"PE"`` is a control message (``\\0`` + word).
* Bounded everywhere: ZMQ_SNDHWM / ZMQ_RCVHWM bound the queues (a send that would block is
  dropped and counted: the protocol retransmits), ZMQ_IMMEDIATE keeps messages for a peer
  that is down from piling up, ZMQ_MAXMSGSIZE (twice ``max_frame_bytes``) makes ZeroMQ cut a
  peer that sends more, and messages above ``max_frame_bytes`` are counted and dropped.
  ZMTP heartbeats (ZMQ_HEARTBEAT_IVL/TTL/TIMEOUT) notice a dead peer; ZeroMQ reconnects by
  itself (ZMQ_RECONNECT_IVL/_MAX); socket monitors report peers going up and down.

Must never: raise on anything a peer sends (garbage, truncated or oversized messages, bad
envelopes, unknown identities are counted in ``stats`` and dropped), block on a send, grow a
queue without bound, or interpret a frame beyond its envelope.
"""
from __future__ import annotations

import re
import struct
from collections import Counter

import zmq
from zmq.utils.monitor import parse_monitor_message

MAGIC = b"PE"
HEADER_SIZE = 32
_AUTH_SIZE = (0, 32, 64, -1)                 # by the two low flag bits (docs/wire.md)
_ENVELOPE = struct.Struct("<2s2xH6xI")       # magic, flags, body length
HELLO = b"\x00hello"
CONTROL = 0x00

_CLIENT_IDENTITY = re.compile(rb"c(\d{1,10})(?:-(\d{1,10}))?")
IDENTITIES_MAX = 4096                        # distinct client identities remembered


def replica_identity(replica_id: int) -> bytes:
    return b"r%d" % replica_id


def client_identity(first: int, last: int | None = None) -> bytes:
    """``b"c<first>"`` or ``b"c<first>-<last>"`` for the clients first..last of a process."""
    if last is None or last == first:
        return b"c%d" % first
    if last < first:
        raise ValueError("last client id below first")
    return b"c%d-%d" % (first, last)


def parse_client_identity(identity: bytes, clients: int) -> range | None:
    """The client ids a connection with ``identity`` serves, or None if malformed or outside
    ``0..clients-1``."""
    found = _CLIENT_IDENTITY.fullmatch(identity)
    if found is None:
        return None
    first = int(found.group(1))
    last = int(found.group(2)) if found.group(2) is not None else first
    if not 0 <= first <= last < clients:
        return None
    return range(first, last + 1)


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


def _configure(sock: zmq.Socket, s: Settings, *, router: bool) -> None:
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
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)    # a restarted peer takes its identity back
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

    def close(self) -> None:
        for mon in self.monitors:
            mon.close(0)
        self.monitors.clear()


class ReplicaTransport:
    """The sockets of replica ``replica_id`` of a cluster (poe.crypto Cluster)."""

    def __init__(self, ctx: zmq.Context, cluster, replica_id: int, settings: Settings) -> None:
        self.id = replica_id
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
        _configure(self.client_router, settings, router=True)
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
            sock.connect(_endpoint(info.host, info.replica_port))
            self.dealers[info.id] = sock
            self.dealer_monitors[self.monitored.watch(sock, f"r{info.id}")] = info.id
        self.peer_up = [False] * self.n
        self.routes: dict[int, bytes] = {}           # client id -> identity of its connection
        self._identities: set[bytes] = set()
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
            stats["bad-envelope"] += 1
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

    def drain_peers(self) -> list[bytes]:
        """Up to ``drain`` messages from the replica port, split into frames."""
        frames: list[bytes] = []
        recv = self.peer_router.recv_multipart
        for _ in range(self.s.drain):
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            payload = self._check(parts)
            if payload is not None:
                frames.extend(split_frames(payload))
        return frames

    def drain_clients(self) -> list[bytes]:
        """Up to ``drain`` messages from the client port, split into frames; learns which
        connection serves which client ids from the connection identities."""
        frames: list[bytes] = []
        recv = self.client_router.recv_multipart
        identities = self._identities
        for _ in range(self.s.drain):
            try:
                parts = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if parts and parts[0] not in identities:
                self._learn(parts[0])
            payload = self._check(parts)
            if payload is not None:
                frames.extend(split_frames(payload))
        return frames

    def _learn(self, identity: bytes) -> None:
        served = parse_client_identity(identity, self.clients)
        if served is None:
            self.stats["unknown-client-identity"] += 1
            return
        if len(self._identities) >= IDENTITIES_MAX:
            self._identities.clear()
        self._identities.add(identity)
        routes = self.routes
        for cid in served:
            routes[cid] = identity
        self.stats["client-routes-learned"] += 1

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
                self.stats["reply-queue-full"] += 1
            except zmq.ZMQError:                     # EHOSTUNREACH: the client went away
                self.stats["reply-unroutable"] += 1
            else:
                self.stats["out-messages"] += 1
                self.stats["out-bytes"] += len(message)

    def close(self) -> None:
        self.monitored.close()
        for sock in (self.peer_router, self.client_router, *filter(None, self.dealers)):
            sock.close(0)


class ClientTransport:
    """The DEALERs of one client process (clients ``first..last``) to every replica."""

    def __init__(self, ctx: zmq.Context, cluster, first: int, last: int,
                 settings: Settings) -> None:
        self.n = cluster.n
        self.s = settings
        self.stats: Counter[str] = Counter()
        self.monitored = _Monitored(self.stats)
        self.identity = client_identity(first, last)
        self.dealers: list[zmq.Socket] = []
        self.monitor_of: dict[zmq.Socket, int] = {}
        self.up = [False] * self.n
        self.poller = zmq.Poller()
        for info in cluster.replicas:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, self.identity)
            _configure(sock, settings, router=False)
            sock.connect(_endpoint(info.host, info.client_port))
            self.dealers.append(sock)
            mon = self.monitored.watch(sock, f"r{info.id}")
            self.monitor_of[mon] = info.id
            self.poller.register(sock, zmq.POLLIN)
            self.poller.register(mon, zmq.POLLIN)
        self.socket_of = {sock: i for i, sock in enumerate(self.dealers)}

    def poll(self, timeout_ms: int) -> list[zmq.Socket]:
        return [sock for sock, _ in self.poller.poll(timeout_ms)]

    def monitor_events(self, mon: zmq.Socket) -> list[tuple[str, str]]:
        """Connection events of one replica; a completed connection gets a HELLO so the
        replica learns to route INFORMs to this process."""
        replica = self.monitor_of[mon]
        events = self.monitored.events(mon)
        for _, what in events:
            if what == "up":
                self.up[replica] = True
                try:
                    self.dealers[replica].send(HELLO, zmq.NOBLOCK)
                except zmq.Again:
                    self.stats["hello-dropped"] += 1
            elif what == "down":
                self.up[replica] = False
        return events

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
        """Re-announce this process to every connected replica (cheap; a heartbeat)."""
        for i, sock in enumerate(self.dealers):
            if self.up[i]:
                try:
                    sock.send(HELLO, zmq.NOBLOCK)
                except zmq.Again:
                    self.stats["hello-dropped"] += 1

    def close(self) -> None:
        self.monitored.close()
        for sock in self.dealers:
            sock.close(0)

