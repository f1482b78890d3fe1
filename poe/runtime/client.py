"""Many PoE clients in one process, over ZeroMQ: the driver behind ``poe client`` and the
load generator's workers.

What it is for: ``ClientProcess(config, first, last)`` builds one ``PoEClient`` per client
id ``first..last`` (each with its own keys) and one DEALER per replica shared by all of
them (a fresh identity per connection, announced by a HELLO with a MAC per client, by which
the replicas route INFORMs to it: poe.transport.zmq). ``submit(index, operations)`` signs
and sends a client message; ``turn(max_wait_s)`` polls, hands every INFORM to the client it
names, fires retry timers, sends what the clients asked for (coalesced per replica) and
returns the decisions: ``(index, Completed)`` and ``(index, OutcomeUnknown)``.

Request ids start at the wall clock in microseconds, so a client id used again in a later
run never repeats an id the replicated state has already seen (which the replicas would
answer as a duplicate with the old result). Two processes must not act as one client id at
once (their ids would overlap: one's requests answered STALE or DUPLICATE, not executed):
a ClientProcess holds the lease of every client id it acts as (poe/runtime/lease.py; a held
id is a ClientIdInUse error at once), and starts above the last id handed out under it.
The secret file loaded for client j must be client j's (check_owner).

Must never: report a result without a proof (``Completed`` comes only from PoEClient, which
requires nf matching INFORMs), raise on what a replica sends, or block.
"""
from __future__ import annotations

import time

import zmq

from poe.config import Config
from poe.crypto import load_secret, load_suite
from poe.crypto.keyfile import check_owner
from poe.protocol.actions import CancelTimer, Send, SetTimer
from poe.protocol.poe.client import Completed, OutcomeUnknown, PoEClient
from poe.protocol.registry import make_client
from poe.runtime.lease import ClientLease
from poe.runtime.timers import Timers
from poe.transport.zmq import ClientTransport, Settings

_INFORM = 5


class ClientProcess:
    def __init__(self, config: Config, first: int, last: int, *,
                 insecure_bench: bool = False, outstanding_max: int = 1024,
                 lease: ClientLease | None = None) -> None:
        """``lease``: the caller's lease of ids ``first..last`` (taken here if None; the
        ClientProcess releases it at ``close``)."""
        cluster = config.cluster
        if not 0 <= first <= last < len(cluster.clients):
            raise ValueError(f"client ids {first}..{last} outside 0..{len(cluster.clients) - 1} "
                             f"({cluster.path} lists {len(cluster.clients)} clients; run "
                             "`poe keygen` with more --clients)")
        self.config = config
        self.first = first
        self.protocol = config.protocol_config()
        self.clients: list[PoEClient] = []
        macs: list = []
        if lease is None:
            lease = ClientLease(cluster.cluster_id, range(first, last + 1))
        self.lease = lease
        try:
            self._build(config, first, last, insecure_bench, outstanding_max, macs)
        except BaseException:
            lease.release()
            raise

    def _build(self, config: Config, first: int, last: int, insecure_bench: bool,
               outstanding_max: int, macs: list) -> None:
        cluster = config.cluster
        c = config.client
        now_us = time.time_ns() // 1000
        for j in range(first, last + 1):
            secret = load_secret(config.secret_path("client", j), cluster)
            check_owner(secret, cluster, "client", j)
            suite = load_suite(cluster, secret, variant=config.protocol.mode,
                               fake=insecure_bench, insecure_bench=insecure_bench,
                               purpose="client")
            client = make_client(self.protocol, j, suite, retry_timeout_s=c.retry_timeout_s,
                                 retry_timeout_max_s=c.retry_timeout_max_s,
                                 deadline_s=c.deadline_s, outstanding_max=outstanding_max)
            client.next_t = self.lease.first_request_id(j, now_us)
            self.clients.append(client)
            macs.append(suite.macs)
        self.settings = Settings(config.transport)
        self.ctx = zmq.Context()
        self.transport = ClientTransport(self.ctx, cluster, first, last, self.settings,
                                         macs)
        self.timers = Timers()
        self.n = cluster.n
        self._out: list[list[bytes]] = [[] for _ in range(cluster.n)]
        self._decided: list[tuple[int, object]] = []
        self._next_hello = 0.0

    # ---------------------------------------------------------------- connecting

    def wait_connected(self, need: int, timeout_s: float, quorum: int | None = None,
                       grace_s: float = 1.0) -> int:
        """Process connection events until ``need`` replicas (the primary of view 0 among
        them) are connected or ``timeout_s`` passes; returns how many are. With ``quorum``:
        once that many are up (the primary among them), wait at most ``grace_s`` more for
        the rest — a replica that is down (f may be) costs a second, not the timeout."""
        now = time.monotonic()
        deadline = now + timeout_s
        enough_at = None
        t = self.transport
        primary = self.protocol.primary(0)
        while True:
            up = sum(t.up)
            if up >= need and t.up[primary]:
                return up
            if quorum is not None and up >= quorum and t.up[primary]:
                if enough_at is None:
                    enough_at = now
                elif now - enough_at >= grace_s:
                    return up
            else:
                enough_at = None
            left = deadline - now
            if left <= 0:
                return up
            if enough_at is not None:
                left = min(left, enough_at + grace_s - now)
            self.turn(max(0.0, min(left, 0.05)))
            now = time.monotonic()

    # ---------------------------------------------------------------- requests

    def submit(self, index: int, operations, now: float | None = None) -> int:
        """Sign and send one client message from client ``first + index``; its handle."""
        now = time.monotonic() if now is None else now
        handle, actions = self.clients[index].submit(operations, now)
        self._apply(index, actions)
        return handle

    def _apply(self, index: int, actions) -> None:
        for a in actions:
            t = type(a)
            if t is Send:
                self._out[a.to].append(a.data)
            elif t is SetTimer:
                self.timers.set((index, a.kind, a.key), a.at)
            elif t is CancelTimer:
                self.timers.cancel((index, a.kind, a.key))
            elif t is Completed or t is OutcomeUnknown:
                self._decided.append((index, a))

    def flush(self) -> None:
        out = self._out
        for r in range(self.n):
            if out[r]:
                frames, out[r] = out[r], []
                self.transport.send(r, frames)

    # ---------------------------------------------------------------- the loop

    def turn(self, max_wait_s: float) -> list[tuple[int, object]]:
        """One loop turn: wait at most ``max_wait_s`` for traffic or a timer; return the
        decisions reached (Completed / OutcomeUnknown with the client index)."""
        self.flush()
        t = self.transport
        now = time.monotonic()
        due = self.timers.next_at()
        wait = max_wait_s if due is None else min(max_wait_s, max(0.0, due - now))
        ready = t.poll(int(wait * 1000) + (1 if wait > 0 else 0))
        now = time.monotonic()
        clients = self.clients
        first = self.first
        count = len(clients)
        for sock in ready:
            if sock in t.socket_of:
                for frame in t.drain(sock):
                    # INFORM body starts with the u32 client id (docs/wire.md)
                    if len(frame) >= 36 and frame[3] == _INFORM:
                        index = int.from_bytes(frame[32:36], "little") - first
                        if 0 <= index < count:
                            actions = clients[index].on_message(frame, now)
                            if actions:
                                self._apply(index, actions)
                            continue
                    t.stats["unexpected-frame"] += 1
            elif sock in t.monitor_of:
                t.monitor_events(sock)
            # else: a socket reopened earlier in this turn (its connection went down)
        for index, kind, key in self.timers.pop_due(now):
            self._apply(index, clients[index].on_timeout(kind, key, now))
        if now >= self._next_hello:
            self._next_hello = now + self.config.transport.heartbeat_interval_s
            t.hello_all()
        self.flush()
        decided, self._decided = self._decided, []
        return decided

    def pending(self) -> int:
        return sum(len(c.pending) for c in self.clients)

    def drops(self) -> dict:
        total: dict[str, int] = {}
        for c in self.clients:
            for k, v in c.drops.items():
                total[k] = total.get(k, 0) + v
        return total

    def close(self) -> None:
        try:
            self.transport.close()
            self.ctx.term()
        finally:
            for j, client in enumerate(self.clients, start=self.first):
                self.lease.record(j, client.next_t - 1)
            self.lease.release()
