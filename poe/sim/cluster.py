"""A whole cluster of real protocol objects in one process, on a virtual clock.

n replicas and m closed-loop clients exchange real encoded frames through the simulated
network (poe.sim.network); timers are events; every action a replica emits is carried out
here and watched by the checkers (poe.sim.checkers), which also see every client
submission and completion and sample the replicas' bounds every ``bounds_every`` events.
Replicas can crash and restart — from scratch, or (``durable=True``) from their own store,
written through the runtime's ``LedgerWriter`` and restored by the runtime's ``restore`` — or
be replaced by Byzantine wrappers (poe.sim.adversary);
extra client ids can be driven by Byzantine clients; links can lose, duplicate, reorder and
partition. Same seed and options, same run, byte for byte.

Must never: let the protocol objects see anything but bytes and the virtual time, or use
randomness other than its seeded generators.
"""
from __future__ import annotations

import random
import shutil
import tempfile
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from poe._core import codec
from poe.crypto.base import client as client_party
from poe.crypto.base import replica as replica_party
from poe.protocol.actions import (
    Broadcast, CancelTimer, Executed, Persist, Reply, RolledBack, Send, SetTimer, Stable,
    Transferred,
)
from poe.protocol.config import ProtocolConfig
from poe.protocol.poe.client import Completed, OutcomeUnknown
from poe.protocol.poe.replica import PoEReplica
from poe.protocol.registry import make_client, make_replica, proof_quorum
from poe.sim.checkers import SafetyChecker
from poe.sim.loop import EventLoop
from poe.sim.network import LinkFaults, Network
from poe.storage.restore import restore
from poe.storage.store import Store, StoreError
from poe.storage.verify import check_store
from poe.storage.writer import LedgerWriter


@dataclass(frozen=True, slots=True)
class Workload:
    """Closed-loop YCSB-style load: each client keeps ``outstanding`` client messages in
    flight, each carrying ``ops_per_message`` operations."""

    ops_per_message: int = 10
    outstanding: int = 4
    record_count: int = 1000
    value_size: int = 16
    read_fraction: float = 0.5       # the rest are updates (YCSB A = 0.5, B = 0.95, C = 1.0)
    retry_timeout_s: float = 1.0
    retry_timeout_max_s: float = 8.0
    deadline_s: float = 60.0


@dataclass
class SimResult:
    seed: int
    requests: int = 0                # operations with a proof of execution
    messages_completed: int = 0
    outcome_unknown: int = 0
    batches: int = 0
    persisted: int = 0
    sim_time_s: float = 0.0
    wall_time_s: float = 0.0
    events: int = 0
    network: Counter = field(default_factory=Counter)
    drops: Counter = field(default_factory=Counter)
    stats: Counter = field(default_factory=Counter)
    violations: list = field(default_factory=list)
    latencies_s: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def throughput_wall(self) -> float:
        return self.requests / self.wall_time_s if self.wall_time_s else 0.0


def make_crypto(kind: str, n: int, clients: int, seed: int, mode: str):
    """suite(party) factory: ``fake`` (seeded, simulation only) or ``real`` (dealer keys)."""
    if kind == "fake":
        from poe.crypto.fake import FakeCrypto
        fake = FakeCrypto(n, clients, seed, purpose="sim")
        if mode == "mac":
            import dataclasses

            return lambda party: dataclasses.replace(fake.suite(party), threshold_signer=None,
                                                     threshold=None)
        return fake.suite
    if kind != "real":
        raise ValueError(f"crypto must be 'fake' or 'real', got {kind!r}")
    from poe.crypto import load_cluster, load_secret, load_suite
    from poe.crypto.dealer import CLUSTER_FILE, deal_cluster, secret_file_name, write_keys

    directory = tempfile.mkdtemp(prefix="poe-sim-keys-")
    write_keys(directory, deal_cluster(n, clients))
    cluster = load_cluster(f"{directory}/{CLUSTER_FILE}")
    cache = {}

    def suite(party):
        if party not in cache:
            secret = load_secret(f"{directory}/{secret_file_name(party)}", cluster)
            cache[party] = load_suite(cluster, secret, variant=mode)
        return cache[party]
    return suite


class SimCluster:
    """n replicas (node ids 0..n-1) and m clients (node ids n..n+m-1)."""

    def __init__(self, config: ProtocolConfig, *, clients: int = 4, seed: int = 1,
                 crypto: str = "fake", faults: LinkFaults | None = None,
                 workload: Workload | None = None, trace=None,
                 check_requests: bool = True, byzantine_clients: int = 0,
                 bounds_every: int = 1000, durable: bool = False) -> None:
        self.config = config.validate()
        self.n = config.n
        self.seed = seed
        # durable: every correct replica writes a store (SQLite, sync policy none: the sim
        # crashes processes, not machines) and restarts from it
        self.store_dir: Path | None = None
        self.stores: dict[int, Store] = {}
        self.writers: dict[int, LedgerWriter] = {}
        self.store_counters: Counter = Counter()
        if durable:
            self.store_dir = Path(tempfile.mkdtemp(prefix="poe-sim-stores-"))
            weakref.finalize(self, shutil.rmtree, self.store_dir, True)
        self.loop = EventLoop()
        self.net = Network(seed, faults or LinkFaults())
        self.rng = random.Random(seed * 7919 + 17)
        self.workload = workload or Workload()
        self.trace = trace
        self.suite = make_crypto(crypto, self.n, clients + byzantine_clients, seed, config.mode)
        self.checker = SafetyChecker(self.n, check_requests, proof_quorum=proof_quorum(config),
                                     protocol=config.protocol)
        self.checker.set_initial_state(self.workload.record_count, self.workload.value_size,
                                       seed, config.zero_payload)
        self.replicas: list = [self._new_replica(i) for i in range(self.n)]
        self.crashed: set[int] = set()
        w = self.workload
        self.clients = [
            make_client(config, j, self.suite(client_party(j)),
                        retry_timeout_s=w.retry_timeout_s,
                        retry_timeout_max_s=w.retry_timeout_max_s, deadline_s=w.deadline_s)
            for j in range(clients)]
        # client ids len(clients) .. len(clients) + byzantine_clients - 1: Byzantine clients
        # (poe.sim.adversary), anything with on_message(data, now); not in the closed loop
        self.byzantine_clients = byzantine_clients
        self.extra_clients: dict[int, object] = {}
        # parties without any key (poe.sim.adversary.install_keyless): they only inject
        self.keyless: list = []
        self.bounds_every = bounds_every
        self._until_bounds = bounds_every
        self._timer_gen: dict[tuple, int] = {}
        self.result = SimResult(seed)
        self._to_submit = 0
        self._target = 0
        self._submitted_at: dict[tuple[int, int], float] = {}
        self.completions: list[tuple[int, Completed]] = []
        self.keep_completions = True
        # filter(src, dst, data) -> True drops the message (scripted faults, adversaries)
        self.filter = None
        self.tap = None                 # tap(src, dst, data): sees every message sent

    def _new_replica(self, i: int) -> PoEReplica:
        replica = make_replica(self.config, i, self.suite(replica_party(i)))
        w = self.workload
        replica.kv.load_sequential(w.record_count, w.value_size, self.seed)
        if self.store_dir is not None and i not in self.stores:
            self._open_store(i, replica)
        return replica

    def _open_store(self, i: int, replica) -> Store:
        store = Store(self.store_dir / f"replica-{i}", genesis=self.config.genesis,
                      replica_id=i, sync_policy="none")
        self.stores[i] = store
        self.writers[i] = LedgerWriter(store, replica, self.store_counters)
        return store

    def _restore(self, i: int) -> None:
        """Replica i restarts from its store as the runtime would (poe/storage/restore.py):
        checked, restored, its re-executions watched by the checkers."""
        old = self.stores.pop(i)
        old.db.close()                     # nothing is open: every turn was committed
        self.writers.pop(i)
        replica = self._new_replica(i)     # opens a fresh store object on the same files
        store = self.stores[i]
        self.replicas[i] = replica
        config = self.config
        stable = store.stable()
        try:
            report = check_store(store, self.suite(replica_party(i)), n=config.n,
                                 nf=config.nf, ts=config.mode == "ts",
                                 certs_above=stable.proof.seq if stable else -1)
            bad = report.bad if not report.ok else None
        except StoreError as exc:
            report, bad = None, exc.what
        if bad is not None:
            self.checker.violation(f"replica {i}'s store fails its check after a crash: {bad}")
            self.checker.restarted(i)
            return
        actions, _ = restore(replica, store, report, self.loop.now)
        self.checker.restored(i, replica.checkpoints.stable.seq, replica.view)
        self._apply(i, actions)

    # ------------------------------------------------------------------ faults

    def crash(self, i: int) -> None:
        """Replica i stops: it receives nothing and its timers do not fire."""
        self.crashed.add(i)
        self.checker.crashed.add(i)
        self._log(f"crash r{i}")

    def restart(self, i: int) -> None:
        """Replica i comes back with empty volatile state (a fresh object): from its store
        in a durable cluster (a correct replica), else from scratch."""
        self.crashed.discard(i)
        for key in [k for k in self._timer_gen if k[0] == i]:
            self._timer_gen[key] += 1
        self._log(f"restart r{i}")
        if i in self.stores and i not in self.checker.byzantine:
            self._restore(i)
            return
        self.replicas[i] = self._new_replica(i)
        self.checker.restarted(i)

    def stop_faults(self, liveness_bound_s: float) -> None:
        """The faults stop now: links heal (no loss, duplication or partition), every
        adversary (replica, client or keyless) with a ``stop()`` stops misbehaving; from now on each
        client message must complete within ``liveness_bound_s`` (the liveness checker)."""
        self.net.heal()
        self.net.set_faults(LinkFaults(latency_s=self.net.faults.latency_s,
                                       jitter_s=self.net.faults.jitter_s))
        for node in [*self.replicas, *self.extra_clients.values(), *self.keyless]:
            stop = getattr(node, "stop", None)
            if stop is not None:
                stop()
        self.checker.faults_stopped(self.loop.now, liveness_bound_s)
        self._log("faults stop")

    # ------------------------------------------------------------------ Byzantine clients

    def attach_client(self, client) -> int:
        """Give ``client`` (on_message(data, now)) the next Byzantine client id."""
        j = len(self.clients) + len(self.extra_clients)
        if len(self.extra_clients) >= self.byzantine_clients:
            raise ValueError("no Byzantine client id left: raise byzantine_clients")
        self.extra_clients[j] = client
        return j

    def client_suite(self, j: int):
        """The crypto of client ``j`` (its own keys, for a Byzantine client)."""
        return self.suite(client_party(j))

    def send_from_client(self, j: int, dst: int, data: bytes) -> None:
        """Client ``j`` sends ``data`` to replica ``dst`` through the network."""
        self._transmit(self.n + j, dst, data)

    def inject(self, dst: int, data: bytes, delay: float = 0.0) -> None:
        """Deliver ``data`` to node ``dst`` after ``delay`` (replays, garbage, forgeries)."""
        self.loop.at(self.loop.now + delay, self._deliver, (dst, data))

    def at(self, when: float, fn, arg=None) -> None:
        """Schedule a fault or an action at virtual time ``when``."""
        self.loop.at(when, fn, arg)

    # ------------------------------------------------------------------ actions

    def _transmit(self, src: int, dst: int, data: bytes) -> None:
        now = self.loop.now
        if self.tap is not None:
            self.tap(src, dst, data)
        if self.filter is not None and self.filter(src, dst, data):
            self.net.stats["filtered"] += 1
            return
        for delay in self.net.delays(src, dst, len(data)):
            self.loop.at(now + delay, self._deliver, (dst, data))

    def _sample_bounds(self) -> None:
        self._until_bounds = self.bounds_every
        self.checker.check_bounds(self.replicas, self.config, self.crashed)

    def _deliver(self, item) -> None:
        dst, data = item
        now = self.loop.now
        self._until_bounds -= 1
        if self._until_bounds <= 0:
            self._sample_bounds()
        if dst < self.n:
            if dst in self.crashed:
                self.net.stats["to-crashed"] += 1
                return
            replica = self.replicas[dst]
            actions = replica.on_message(data, now)
            self.checker.on_view(dst, replica.view)
            if self.trace is not None:
                self._trace_replica(dst, data)
            self._apply(dst, actions)
        elif dst - self.n < len(self.clients):
            self._apply_client(dst - self.n, self.clients[dst - self.n].on_message(data, now))
        else:
            extra = self.extra_clients.get(dst - self.n)
            if extra is not None:
                extra.on_message(data, now)

    def _fire(self, item) -> None:
        node, kind, key, gen = item
        if self._timer_gen.get((node, kind, key)) != gen:
            return
        now = self.loop.now
        self._until_bounds -= 1
        if self._until_bounds <= 0:
            self._sample_bounds()
        if node < self.n:
            if node in self.crashed:
                return
            self._apply(node, self.replicas[node].on_timeout(kind, key, now))
        else:
            j = node - self.n
            self._apply_client(j, self.clients[j].on_timeout(kind, key, now))

    def _timer(self, node: int, action) -> None:
        key = (node, action.kind, action.key)
        gen = self._timer_gen.get(key, 0) + 1
        self._timer_gen[key] = gen
        if type(action) is SetTimer:
            self.loop.at(action.at, self._fire, (node, action.kind, action.key, gen))

    def _apply(self, r: int, actions) -> None:
        writer = self.writers.get(r) if self.writers else None
        if writer is not None and r not in self.checker.byzantine:
            # the runtime's turn: written (and committed) before anything is delivered
            actions = writer.write_turn(actions)
            writer.store.commit()
        n = self.n
        for a in actions:
            t = type(a)
            if t is Send:
                self._transmit(r, a.to, a.data)
            elif t is Reply:
                self._transmit(r, n + a.client, a.data)
            elif t is Broadcast:
                for dst in range(n):
                    if dst != r:
                        self._transmit(r, dst, a.data)
            elif t is SetTimer or t is CancelTimer:
                self._timer(r, a)
            elif t is Executed:
                self.result.batches += 1
                self.checker.on_executed(r, a)
            elif t is RolledBack:
                self.checker.on_rolled_back(r, a)
            elif t is Stable:
                self.checker.on_stable(r, a)
            elif t is Transferred:
                self.checker.on_transferred(r, a)
            elif t is Persist:
                self.result.persisted += 1

    def _apply_client(self, j: int, actions) -> None:
        node = self.n + j
        for a in actions:
            t = type(a)
            if t is Send:
                self._transmit(node, a.to, a.data)
            elif t is SetTimer or t is CancelTimer:
                self._timer(node, a)
            elif t is Completed:
                self.checker.on_completed(j, a, self.loop.now)
                self.result.messages_completed += 1
                self.result.requests += len(a.results)
                self.result.latencies_s.append(a.latency_s)
                if self.keep_completions:
                    self.completions.append((j, a))
                self._submit(j)
            elif t is OutcomeUnknown:
                self.checker.on_outcome_unknown(j, a.handle, self.loop.now)
                self.result.outcome_unknown += 1
                self._submit(j)

    # ------------------------------------------------------------------ workload

    def _operations(self) -> list:
        w = self.workload
        rng = self.rng
        ops = []
        for _ in range(w.ops_per_message):
            key = rng.randrange(w.record_count)
            if rng.random() < w.read_fraction:
                ops.append((key, codec.OP_READ, b""))
            else:
                ops.append((key, codec.OP_UPDATE, rng.randbytes(w.value_size)))
        return ops

    def _submit(self, j: int) -> None:
        if self._to_submit <= 0:
            return
        self._to_submit -= 1
        ops = self._operations()
        handle, actions = self.clients[j].submit(ops, self.loop.now)
        self.checker.on_submitted(j, handle, ops, self.loop.now)
        self._apply_client(j, actions)

    def submit(self, j: int, operations) -> int:
        """Submit one client message from client j now (scripted scenarios)."""
        handle, actions = self.clients[j].submit(operations, self.loop.now)
        self.checker.on_submitted(j, handle, operations, self.loop.now)
        self._apply_client(j, actions)
        return handle

    # ------------------------------------------------------------------ running

    def start(self, requests: int) -> None:
        """Schedule a closed-loop workload of ``requests`` operations (more may be added)."""
        w = self.workload
        messages = -(-requests // w.ops_per_message)
        self._to_submit += messages
        self._target += messages
        for j in range(len(self.clients)):
            for _ in range(w.outstanding):
                self.loop.at(self.loop.now + j * 1e-6, self._submit, j)

    def done(self) -> bool:
        r = self.result
        return r.messages_completed + r.outcome_unknown >= self._target

    def run(self, requests: int = 0, time_limit_s: float = 600.0) -> SimResult:
        """Drive ``requests`` more operations through the cluster (closed loop) until every
        client message is decided or ``time_limit_s`` virtual seconds pass; then check."""
        if requests:
            self.start(requests)
        start = time.perf_counter()
        self.loop.run(self.loop.now + time_limit_s, stop=self.done)
        self.result.wall_time_s += time.perf_counter() - start
        return self.finish()

    def run_for(self, seconds: float) -> None:
        """Advance virtual time (faults scheduled with ``at`` happen on the way)."""
        start = time.perf_counter()
        self.loop.run(self.loop.now + seconds)
        self.result.wall_time_s += time.perf_counter() - start

    def finish(self) -> SimResult:
        r = self.result
        r.sim_time_s = self.loop.now
        r.events = self.loop.events
        r.network = Counter(self.net.stats)
        r.drops = Counter()
        r.stats = Counter()
        for i, replica in enumerate(self.replicas):
            r.drops.update(replica.drops)
            r.stats.update(replica.stats)
        for c in self.clients:
            r.drops.update({f"client:{k}": v for k, v in c.drops.items()})
        correct = [i for i in range(self.n) if i not in self.crashed]
        self._sample_bounds()
        r.violations = list(self.checker.finish(self.replicas, correct, now=self.loop.now))
        return r

    # ------------------------------------------------------------------ tracing

    def _log(self, text: str) -> None:
        if self.trace is not None:
            self.trace(f"{self.loop.now:.6f} {text}")

    def _trace_replica(self, r: int, data: bytes) -> None:
        try:
            kind = codec.KIND_NAMES[codec.peek(data)[0]]
        except codec.WireError:
            kind = "garbage"
        self.trace(f"{self.loop.now:.6f} {self.replicas[r].status_line()} <- {kind}")
