"""One replica per process: the event loop between ZeroMQ and the protocol object.

What it is for: ``ReplicaRuntime(config, id).run()`` loads the replica's keys and the YCSB
table, binds its replica and client ports, and then loops on one thread until SIGTERM or
SIGINT: poll the sockets, drain up to ``transport.drain_messages`` messages per socket,
hand every frame to the replica's ``on_message`` (``PoEReplica``, or ``PBFTReplica`` with
``protocol = "pbft"``; ``poe.protocol.registry``), carry out the actions in order (frames for
one peer are queued and leave coalesced at the end of the turn, and during a long turn every
``transport.flush_interval_s``: what a turn made early never waits for its later crypto;
with one turn's frames held until its end, a primary's PROPOSE waited for the threshold
combines of the same turn and TS ran at 1.45 of 2 cores, latency-bound), fire due timers,
and log a status line every ``replica.status_interval_s``. A connection that delivers a
frame no correct party sends (the protocol's ``drops.unauthenticated`` moves while handling it) is
quarantined: the rest of that message and everything it sends later are dropped unread
(poe/transport/zmq.py; issue 14: a keyless flood costs a replica one frame per connection,
not a decode and a MAC check per frame). On a signal it logs its counters and
exits cleanly (status 0).

Durability (issue #7): with ``replica.data_dir`` set, the replica opens its store
(poe/storage) before it binds anything, checks it (a corrupt or inconsistent store stops it
with ``StoreError``: what is wrong and the repair), restores its last stable checkpoint and
re-executes the blocks of its view above it that were view-committed there (certified in TS
mode; nf SUPPORTs in MAC mode), with its own votes (poe/storage/restore.py). While it
runs, Persist, Executed, RolledBack, Stable and Transferred are written into the store's
open transaction, which is committed BEFORE any frame made since the last commit leaves
(at the end of a turn and at each flush within it; the sync policy decides whether that
commit is fsynced). A SUPPORT (or PBFT COMMIT) that would contradict a vote already
durable for the same view and sequence is not sent.
Without ``replica.data_dir`` nothing is persisted (Persist actions are counted).

Start-up problems an operator can fix are one ValueError / OSError line, never a hang or a
traceback (issue #16): a secret file of another party (check_owner), a ``data_dir`` that is
a file or cannot be created or written (checked before the store opens), a port already in
use (the context is destroyed with linger 0, so the half-built transport cannot hang it).
A view change is logged at INFO: ``view-change-started`` when this replica asks to leave a
view, ``view-change`` when a new view is installed (from/to).

Must never: let anything a peer or client sends stop the loop (the protocol drops and counts
bad frames; the transport counts bad messages), block on a send, keep a growing queue, use
the fake crypto backend unless ``insecure_bench`` was asked for, or log a secret.
"""
from __future__ import annotations

import errno
import gc
import os
import resource
import signal
import time
import traceback
from collections import Counter

import zmq

from poe.config import Config
from poe.crypto import bls_backend, load_secret, load_suite
from poe.crypto.keyfile import check_owner
from poe.protocol.actions import (
    Broadcast,
    CancelTimer,
    Executed,
    Persist,
    Reply,
    RolledBack,
    Send,
    SetTimer,
    Stable,
    Transferred,
)
from poe.protocol.registry import make_replica
from poe.runtime.log import Log
from poe.runtime.procs import rss_bytes
from poe.runtime.timers import Timers
from poe.storage.restore import restore
from poe.storage.store import DB_FILE, Store, StoreError
from poe.storage.verify import check_store
from poe.storage.writer import LedgerWriter
from poe.transport.zmq import ReplicaTransport, Settings

POLL_MAX_S = 0.1          # the loop looks at its stop flag at least this often


class ReplicaRuntime:
    def __init__(self, config: Config, replica_id: int, *, insecure_bench: bool = False,
                 log: Log | None = None) -> None:
        cluster = config.cluster
        if not 0 <= replica_id < cluster.n:
            raise ValueError(f"replica id {replica_id} outside 0..{cluster.n - 1} "
                             f"({cluster.path} has {cluster.n} replicas)")
        self.config = config
        self.id = replica_id
        self.insecure_bench = insecure_bench
        self.log = log or Log(level=config.replica.log_level)
        self.log.context = self._context
        secret = load_secret(config.secret_path("replica", replica_id), cluster)
        check_owner(secret, cluster, "replica", replica_id)
        mode = config.protocol.mode
        suite = load_suite(cluster, secret, variant=mode, fake=insecure_bench,
                           insecure_bench=insecure_bench)
        self.protocol = config.protocol_config(kv_seed=int.from_bytes(os.urandom(8), "little"))
        self.replica = make_replica(self.protocol, replica_id, suite)
        self._macs = suite.macs          # the transport checks clients' HELLOs with them
        data = config.data
        started = time.perf_counter()
        self.replica.kv.load_sequential(data.record_count, data.value_size, data.seed)
        self.load_s = time.perf_counter() - started
        self.settings = Settings(config.transport)
        self.ctx: zmq.Context | None = None
        self.transport: ReplicaTransport | None = None
        self.timers = Timers()
        self.stop_requested = False
        self.peers = [p for p in range(cluster.n) if p != replica_id]
        self._out: list[list[bytes]] = [[] for _ in range(cluster.n)]
        self._replies: dict[int, list[bytes]] = {}
        self.counters: Counter[str] = Counter()
        self.store: Store | None = None
        self.writer: LedgerWriter | None = None
        self.recovery: dict = {}
        self.metrics = None
        self._on_executed = None        # Metrics.executed (batch latency) once recovered
        self._view_logged = self.replica.view
        self._turn_sent_at = 0.0
        self._flush_interval = self.mid_turn_flush_interval(config)
        if config.replica.data_dir:
            self._check_data_dir()
            self._open_store(suite)

    # ---------------------------------------------------------------- storage

    def data_dir(self):
        return self.config.data_dir(self.id)

    def _check_data_dir(self) -> None:
        """ValueError (one line) unless this replica's data directory is, or can be made, a
        writable directory: a file in the way or a read-only place is the operator's to fix,
        not a damaged store."""
        path = self.data_dir()
        setting = f"replica.data_dir = {self.config.replica.data_dir!r}"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ValueError(f"{setting}: {path} exists and is not a directory") from None
        except OSError as exc:
            what = "a file is in the way" if exc.errno == errno.ENOTDIR else exc.strerror
            raise ValueError(f"{setting}: cannot create {path}: {what}") from None
        for target, need in ((path, os.W_OK | os.X_OK), (path / DB_FILE, os.R_OK | os.W_OK)):
            if target.exists() and not os.access(target, need):
                raise ValueError(f"{setting}: {target} is not writable by this user "
                                 f"(uid {os.geteuid()})")

    def _open_store(self, suite) -> None:
        """Open and check the store; StoreError (with the repair) if it is damaged."""
        store = Store(self.data_dir(), genesis=self.protocol.genesis, replica_id=self.id,
                      sync_policy=self.config.replica.sync_policy,
                      genesis_config=self.config.genesis_config())
        try:
            stable = store.stable()
            report = check_store(store, suite, n=self.protocol.n, nf=self.protocol.nf,
                                 ts=self.protocol.mode == "ts",
                                 certs_above=stable.proof.seq if stable else -1)
            if not report.ok:
                seq, reason = report.bad
                raise StoreError(store.path, f"block {seq}: {reason}")
        except BaseException:
            store.db.close()
            raise
        self.store = store
        self.writer = LedgerWriter(store, self.replica, self.counters,
                                   on_refused=self._vote_refused)
        self._report = report
        self.recovery = {"data_dir": str(self.data_dir()), "height": report.height,
                         "stable": report.stable.seq if report.stable else 0,
                         "view": store.view, "sync_policy": store.sync_policy}
        if store.floor_seq:
            # a quarantined store: no vote until a stable checkpoint reaches it
            self.recovery["abstain_through"] = store.floor_seq

    def _recover(self) -> None:
        if self.store is None:
            return
        actions, replayed = restore(self.replica, self.store, self._report, time.monotonic())
        self._report = None
        self.recovery["replayed"] = replayed
        self.log.info("recovered", **self.recovery)
        self._apply(actions)

    # ---------------------------------------------------------------- logging

    def _context(self) -> dict:
        r = self.replica
        return {"replica": self.id, "view": r.view, "seq": r.k_exec}

    def _startup_log(self) -> None:
        cfg = self.config
        self.log.info("config", file=cfg.path, keys=cfg.cluster.path, n=cfg.n, f=cfg.cluster.f,
                      cluster_id=cfg.cluster.cluster_id, settings=cfg.effective(),
                      changed=cfg.non_defaults(), genesis=self.protocol.genesis.hex(),
                      crypto="fake (--insecure-bench)" if self.insecure_bench else "real",
                      bls_backend=bls_backend(),
                      pid=os.getpid())
        if self.insecure_bench:
            self.log.warning("insecure-bench", detail="fake crypto: anyone can forge "
                             "anything; for benchmarks only")

    # ---------------------------------------------------------------- running

    def request_stop(self, *_args) -> None:
        self.stop_requested = True

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit status."""
        self._startup_log()
        self.ctx = zmq.Context()
        try:
            self.transport = ReplicaTransport(self.ctx, self.config.cluster, self.id,
                                              self.settings, macs=self._macs)
        except zmq.ZMQError as exc:
            self.log.error("bind-failed", detail=str(exc))
            # the sockets made before the failing bind are still open: term() would wait
            # for them forever
            self.ctx.destroy(linger=0)
            raise OSError(self._bind_failure(exc)) from None
        port = self.config.replica.metrics_port
        if port:
            from poe.runtime.metrics import Metrics

            try:
                self.metrics = Metrics(self, self.config.replica.metrics_host, port + self.id)
            except OSError as exc:
                self.transport.close()
                self.ctx.term()
                raise OSError(f"cannot serve metrics on port {port + self.id}: {exc}") \
                    from None
        old = {sig: signal.signal(sig, self.request_stop)
               for sig in (signal.SIGTERM, signal.SIGINT)}
        self._recover()
        if self.metrics is not None:    # not the batches replayed from the store
            self._on_executed = self.metrics.executed
        gc.collect()
        gc.freeze()            # the loaded keys and tables are never garbage
        self.log.info("ready", endpoints=list(self.transport.endpoints),
                      load_s=round(self.load_s, 3), records=self.config.data.record_count)
        try:
            self._loop()
        except Exception as exc:
            # a broken invariant of our own (the protocol never raises on peer input): log
            # it with the state it happened in, then let it stop the process loudly
            self.log.error("crashed", error=f"{type(exc).__name__}: {exc}",
                           traceback=traceback.format_exc(limit=20))
            raise
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self.log.info("exit", **self.snapshot())
            self.transport.close()
            self.ctx.term()
            if self.store is not None:
                self.store.close()
            if self.metrics is not None:
                self.metrics.close()
        return 0

    def _bind_failure(self, exc: zmq.ZMQError) -> str:
        """One line naming the port that could not be bound and why."""
        me = self.config.cluster.replicas[self.id]
        host = self.settings.bind_host or me.host
        text = str(exc)
        ports = [p for p in (me.replica_port, me.client_port) if f":{p}'" in text
                 or text.endswith(f":{p}")] or [me.replica_port, me.client_port]
        which = " and ".join(f"port {p}" for p in ports)
        if exc.errno == errno.EADDRINUSE:
            return (f"replica {self.id}: {which} on {host} already in use (another replica "
                    f"with this configuration, or another program, is listening there)")
        return f"replica {self.id}: cannot bind {which} on {host}: {exc.strerror}"

    def _loop(self) -> None:
        transport = self.transport
        replica = self.replica
        deliver = self._deliver
        on_timeout = replica.on_timeout
        apply = self._apply
        timers = self.timers
        peer_router = transport.peer_router
        client_router = transport.client_router
        monotonic = time.monotonic
        perf = time.perf_counter
        metrics = self.metrics
        interval = self.config.replica.status_interval_s
        next_status = monotonic() + interval
        self._last_status = (monotonic(), Counter(replica.stats), self._cpu())
        while not self.stop_requested:
            now = monotonic()
            wake = next_status
            due = timers.next_at()
            if due is not None and due < wake:
                wake = due
            timeout_ms = max(0, min(int((wake - now) * 1000) + 1, int(POLL_MAX_S * 1000)))
            ready = transport.poll(timeout_ms)
            now = monotonic()
            started = self._turn_sent_at = perf()
            for sock in ready:
                if sock is peer_router:
                    messages = transport.drain_peer_messages()
                    quarantined = transport.quarantined_peers
                    client = False
                elif sock is client_router:
                    messages = transport.drain_client_messages()
                    quarantined = transport.quarantined_clients
                    client = True
                else:
                    for name, what in transport.monitor_events(sock):
                        if what in ("up", "down") and name.startswith("r"):
                            self.log.info(f"peer-{what}", peer=name)
                    continue
                if messages:
                    deliver(messages, quarantined, client, now)
            if due is not None and due <= now:
                for ident in timers.pop_due(now):
                    apply(on_timeout(ident[0], ident[1], now))
            self._send_now()
            if metrics is not None:
                metrics.loop.observe(perf() - started)
            if now >= next_status:
                next_status = now + interval
                self._status(now)

    def _deliver(self, messages, quarantined: dict, client: bool, now: float) -> None:
        """Hand the frames of drained (identity, frames) messages to the protocol. A frame
        the protocol drops as one no correct party sends (``drops.unauthenticated`` moved)
        quarantines its connection: the rest of its message is not handed over, nor any
        later message of it (the transport drops those unread)."""
        on_message = self.replica.on_message
        drops = self.replica.drops
        perf = time.perf_counter
        flush_interval = self._flush_interval
        apply = self._apply
        transport = self.transport
        for identity, frames in messages:
            if identity in quarantined:          # since this drain: nothing more of it
                transport.stats["dropped-quarantined"] += 1
                continue
            for i, frame in enumerate(frames):
                before = drops.unauthenticated
                actions = on_message(frame, now)
                if actions:
                    apply(actions)
                if drops.unauthenticated != before:
                    transport.quarantine(identity, client=client, rest=len(frames) - 1 - i)
                    break
                if perf() - self._turn_sent_at >= flush_interval:
                    self._send_now()

    # ---------------------------------------------------------------- actions

    def _apply(self, actions) -> None:
        out = self._out
        if self.writer is not None:
            actions = self.writer.write_turn(actions)   # a refused vote's frames stay here
        for a in actions:
            t = type(a)
            if t is Send:
                out[a.to].append(a.data)
            elif t is Reply:
                frames = self._replies.get(a.client)
                if frames is None:
                    self._replies[a.client] = [a.data]
                else:
                    frames.append(a.data)
            elif t is Broadcast:
                for peer in self.peers:
                    out[peer].append(a.data)
            elif t is SetTimer:
                self.timers.set((a.kind, a.key), a.at)
            elif t is CancelTimer:
                self.timers.cancel((a.kind, a.key))
            elif t is Executed:
                self.counters["executed-batches"] += 1
                if self._on_executed is not None:
                    self._on_executed(a.seq)
            elif t is Persist:
                self.counters["persist-records"] += 1
                kind = a.record[0]
                if kind == "view":
                    self.log.info("view-change", from_view=self._view_logged,
                                  to_view=a.record[1],
                                  primary=self.protocol.primary(a.record[1]))
                    self._view_logged = a.record[1]
                elif kind == "view-change":
                    self.log.info("view-change-started", leaving=a.record[1])
            elif t is Stable:
                self.log.debug("stable", checkpoint=a.seq, state=a.state_digest.hex()[:16])
            elif t is RolledBack:
                self.counters["rollbacks"] += 1
                self.log.warning("rolled-back", to=a.seq)
            elif t is Transferred:
                self.counters["state-transfers"] += 1
                self.log.info("state-transferred", checkpoint=a.seq)

    def _vote_refused(self, record: tuple) -> None:
        self.log.warning("equivocation-refused", vote_view=record[1], vote_seq=record[2])

    @staticmethod
    def mid_turn_flush_interval(config) -> float:
        """How often a long turn sends what it has made: ``transport.flush_interval_s``,
        except with ``sync_policy = "batch"``, where every flush is an fsync (durable before
        sent): there a turn's frames leave at its end only (one fsync per turn, group
        commit; measured: flushing within turns cost 13-17 % more CPU per request)."""
        if config.replica.data_dir and config.replica.sync_policy == "batch":
            return float("inf")
        return config.transport.flush_interval_s

    def _send_now(self) -> None:
        """What the turn has made so far: durable first (the store commits), then sent."""
        if self.store is not None:
            committed = time.perf_counter()
            self.store.commit()             # durable before anything of this turn leaves
            if self.metrics is not None:
                self.metrics.commit.observe(time.perf_counter() - committed)
        self._flush()
        self._turn_sent_at = time.perf_counter()

    def _flush(self) -> None:
        transport = self.transport
        out = self._out
        for peer in self.peers:
            frames = out[peer]
            if frames:
                out[peer] = []
                transport.send_peer(peer, frames)
        if self._replies:
            routes = transport.routes
            by_identity: dict[bytes, list[bytes]] = {}
            for client, frames in self._replies.items():
                identity = routes.get(client)
                if identity is None:
                    transport.stats["dropped-reply-no-route"] += len(frames)
                    continue
                group = by_identity.get(identity)
                if group is None:
                    by_identity[identity] = frames
                else:
                    group.extend(frames)
            self._replies = {}
            for identity, frames in by_identity.items():
                transport.reply(identity, frames)

    # ---------------------------------------------------------------- figures

    @staticmethod
    def _cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def snapshot(self) -> dict:
        """Every counter: protocol drops and stats, transport, runtime."""
        r = self.replica
        t = self.transport
        return {
            "executed": r.k_exec, "stable": r.checkpoints.stable.seq, "status": str(r.status),
            "head": r.head.hex(), "state_digest": r.kv.state_digest().hex(),
            "drops": dict(r.drops), "stats": dict(r.stats),
            "transport": dict(t.stats) if t is not None else {},
            "runtime": dict(self.counters), "timers": len(self.timers),
            "ledger": self._ledger_figures(),
            "peers_up": [p for p in self.peers if t is not None and t.peer_up[p]],
            "client_routes": len(t.routes) if t is not None else 0,
            "rss_bytes": rss_bytes(os.getpid()), "cpu_s": round(self._cpu(), 3),
        }

    def _ledger_figures(self) -> dict | None:
        if self.store is None:
            return None
        head = self.store.head()
        return {"height": head[0] if head else 0, "head": head[1].hex() if head else None,
                "commits": self.store.writes}

    def _status(self, now: float) -> None:
        last_t, last_stats, last_cpu = self._last_status
        stats = self.replica.stats
        cpu = self._cpu()
        span = max(now - last_t, 1e-9)
        requests = stats["executed-requests"] - last_stats["executed-requests"]
        self._last_status = (now, Counter(stats), cpu)
        t = self.transport
        self.log.info(
            "status", status=str(self.replica.status), stable=self.replica.checkpoints.stable.seq,
            requests_per_s=round(requests / span, 1),
            batches_per_s=round((stats["executed-batches"] - last_stats["executed-batches"])
                                / span, 2),
            cpu_percent=round(100 * (cpu - last_cpu) / span, 1),
            drops=sum(self.replica.drops.values()),
            peers_up=[p for p in self.peers if t.peer_up[p]],
            client_routes=len(t.routes), rss_mb=round((rss_bytes(os.getpid()) or 0) / 2**20, 1),
            timers=len(self.timers))
