"""Swarm testing: many seeded random runs of the whole cluster, each with a different
configuration, network, crashes and adversaries, under every checker (issue #5).

What it is for: per seed, ``draw`` picks n in {4, 7, 10}, the TS or MAC variant, batch
size, window and checkpoint period, timeouts, link faults (loss, duplication, jitter),
partitions that heal, crashes and Byzantine replicas (together at most f) and Byzantine
clients; about a third of the seeds are durable (every correct replica writes a store and a
crashed one restarts from it, poe/storage) and most of those also cut the power of the
whole cluster once or twice (every correct replica crashes at once and restarts from its
store); about half of the seeds get a **view-change storm** (issue 13): at a drawn time
every correct replica is made to leave its view (as if its timer fired), the votes of the
next ``count - 1`` views (2 <= count <= f + 1) are lost so that many view changes follow in
a row, and the view-change messages and votes of the newer views are lost or delayed with a
drawn probability and jitter; in durable seeds the storm may also crash the incoming
primary right after it sends its NV-PROPOSE (it restarts from its store) and cut the power
of the whole cluster a moment after an NV-PROPOSE left. ``run_case`` runs a safety phase
with the faults (longer by the storm's own span), then stops every fault
(``SimCluster.stop_faults``) and runs a liveness phase in which every client message must
complete within a bound. ``swarm`` runs a range of seeds and sums their figures; a failing
seed is reported with the command line that reruns it alone.

What it must never do: exclude or retry a seed, draw anything from unseeded randomness or
the wall clock (the time budget only decides how many seeds run, never what one does), or
fault the primary of view 0 unless primary faults are allowed (``PRIMARY_FAULTS``).
"""
from __future__ import annotations

import dataclasses
import random
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

from poe._core import codec
from poe._core.codec import WireError
from poe.protocol.config import ProtocolConfig
from poe.sim import adversary
from poe.sim.cluster import SimCluster, Workload
from poe.sim.network import LinkFaults

# The one switch: may the primary of view 0 (replica 0) be crashed, isolated for good or
# Byzantine? Off until the view change recovers from a faulty primary; then flip it here.
PRIMARY_FAULTS = True

LIVENESS_BOUND_S = 30.0          # virtual seconds a message may take once faults stop
STORM_FRACTION = 0.5             # seeds with a view-change storm (primary faults allowed)
PRIMARY_ONLY = {k for k, (_, primary_only) in adversary.REPLICA_ADVERSARIES.items()
                if primary_only}
# issue 14's single-faulty-party adversaries come from a generator of their own (``draw``),
# so every seed's main draw (the kinds below included) is what it was before they existed
ONE_FAULTY_REPLICA_KINDS = ["bind-fetch-reply", "early-support", "fetch-flood",
                            "garbage-propose", "huge-vc-request", "replay-requests"]
ONE_FAULTY_CLIENT_KINDS = ["answered-retry", "hog-pending", "oversized"]
KEYLESS_KINDS = sorted(adversary.KEYLESS_ADVERSARIES)
CLIENT_KINDS = sorted(k for k in adversary.CLIENT_ADVERSARIES
                      if k not in ONE_FAULTY_CLIENT_KINDS)
BACKUP_KINDS = sorted(k for k in adversary.REPLICA_ADVERSARIES
                      if k not in PRIMARY_ONLY and k not in ONE_FAULTY_REPLICA_KINDS)


@dataclass(frozen=True)
class ViewChangeStorm:
    """View changes in a row (issue 13). At ``at`` every correct replica leaves its view
    ``base`` (the highest among them then) as if its progress timer fired; every SUPPORT,
    CERTIFY and COMMIT of views base+1 .. base+count-1 is lost, so ``count`` view changes
    follow in a row; until ``at + span_s`` the VC-REQUESTs, NV-PROPOSEs and votes of views
    above ``base`` are also lost with probability ``vote_loss`` or delayed by up to
    ``vote_jitter_s``. Durable seeds only: the primary of view base+``nv_index`` crashes
    right after it sends its NV-PROPOSE and restarts from its store ``crash_back_s`` later
    (``crash_incoming``); ``power_cut`` = (delay, back): ``delay`` after that NV-PROPOSE left,
    every correct replica loses power, and restarts from its store ``back`` later."""

    at: float
    count: int
    span_s: float
    vote_loss: float = 0.0
    vote_jitter_s: float = 0.0
    nv_index: int = 1
    crash_incoming: float | None = None
    power_cut: tuple[float, float] | None = None

    def describe(self) -> str:
        text = (f"view-change storm {self.at:.2f}-{self.at + self.span_s:.2f}s "
                f"x{self.count} vote loss={self.vote_loss} jitter={self.vote_jitter_s}")
        if self.crash_incoming is not None or self.power_cut is not None:
            text += f" at NV-PROPOSE {self.nv_index}:"
        if self.crash_incoming is not None:
            text += f" incoming primary crash back +{self.crash_incoming:.2f}s"
        if self.power_cut is not None:
            text += (f" power cut +{self.power_cut[0] * 1000:.1f}ms back "
                     f"+{self.power_cut[1]:.2f}s")
        return text


@dataclass
class Case:
    """Everything one seed's run is made of (drawn by ``draw``, printable)."""

    seed: int
    config: ProtocolConfig
    workload: Workload
    clients: int
    faults: LinkFaults
    requests: int
    extra_requests: int
    safety_s: float
    liveness_bound_s: float
    partitions: list = field(default_factory=list)    # (start, end, groups)
    crashes: list = field(default_factory=list)       # (at, replica, restart at or None)
    adversaries: list = field(default_factory=list)   # (replica, kind, params)
    client_adversaries: list = field(default_factory=list)   # (kind, params)
    # replicas write stores and restart from them (a crash above restarts from the store)
    durable: bool = False
    cluster_crashes: list = field(default_factory=list)  # (at, back): every correct replica
    vc_storms: list = field(default_factory=list)        # ViewChangeStorm (at most one)
    # issue 14: ("replica", r, kind, params) makes Byzantine replica r (one of
    # ``adversaries``) of that kind instead; ("client", kind, params) and
    # ("keyless", kind, params) add a faulty client or a party without keys
    one_faulty: list = field(default_factory=list)

    def fault_phase_s(self) -> float:
        """How long the faults last: the safety phase, longer if a storm needs it."""
        return max([self.safety_s] + [s.at + s.span_s for s in self.vc_storms])

    def describe(self) -> str:
        c = self.config
        parts = [("protocol=pbft " if c.protocol != "poe" else "")
                 + f"n={c.n} mode={c.mode} batch={c.batch_size} window={c.window} "
                 f"K={c.checkpoint_period} rto={c.retransmit_timeout_s}",
                 f"clients={self.clients}x{self.workload.outstanding} "
                 f"ops/msg={self.workload.ops_per_message} requests={self.requests}",
                 f"loss={self.faults.loss} dup={self.faults.duplicate} "
                 f"jitter={self.faults.jitter_s}"]
        parts += [f"partition {s:.2f}-{e:.2f}s {g}" for s, e, g in self.partitions]
        parts += [f"crash r{r} at {a:.2f}s" + (f" restart {b:.2f}s" if b else "")
                  for a, r, b in self.crashes]
        if self.durable:
            parts.append("durable")
        parts += [f"cluster crash {a:.2f}-{b:.2f}s" for a, b in self.cluster_crashes]
        parts += [storm.describe() for storm in self.vc_storms]
        parts += [f"byzantine r{r} {k} {p}" for r, k, p in self.adversaries]
        parts += [f"byzantine client {k} {p}" for k, p in self.client_adversaries]
        for entry in self.one_faulty:
            if entry[0] == "replica":
                parts.append(f"byzantine r{entry[1]} now {entry[2]} {entry[3]}")
            else:
                parts.append(f"{entry[0]} {entry[1]} {entry[2]}")
        return "; ".join(parts)

    def replica_adversaries(self) -> list:
        """(replica, kind, params) as installed: ``adversaries`` with issue 14's kinds."""
        instead = {e[1]: (e[2], e[3]) for e in self.one_faulty if e[0] == "replica"}
        return [(r, *instead.get(r, (k, p))) for r, k, p in self.adversaries]

    def fault_kinds(self) -> Counter:
        out: Counter = Counter()
        if self.faults.loss:
            out["loss"] += 1
        if self.faults.duplicate:
            out["duplicate"] += 1
        if self.faults.jitter_s > 0.001:
            out["jitter"] += 1
        out["partition"] += len(self.partitions)
        out["crash"] += len(self.crashes)
        out["restart"] += sum(1 for c in self.crashes if c[2])
        out["durable"] += self.durable
        out["cluster-crash"] += len(self.cluster_crashes)
        for storm in self.vc_storms:
            out["vc-storm"] += 1
            out[f"vc-storm:{storm.count}-in-a-row"] += 1
            out["vc-vote-loss"] += storm.vote_loss > 0
            out["vc-vote-jitter"] += storm.vote_jitter_s > 0
            out["vc-incoming-primary-crash"] += storm.crash_incoming is not None
            out["vc-power-cut"] += storm.power_cut is not None
        for _, kind, _ in self.replica_adversaries():
            out[f"byzantine:{kind}"] += 1
        for kind, _ in self.client_adversaries:
            out[f"client:{kind}"] += 1
        for entry in self.one_faulty:
            if entry[0] != "replica":
                out[f"{entry[0]}:{entry[1]}"] += 1
        return +out


@dataclass
class CaseResult:
    seed: int
    violations: list
    sim_time_s: float = 0.0
    events: int = 0
    wall_s: float = 0.0
    requests: int = 0
    view_changes: int = 0
    rollbacks: int = 0
    state_transfers: int = 0
    faults: Counter = field(default_factory=Counter)
    description: str = ""


def _config(**settings) -> ProtocolConfig:
    """A ProtocolConfig from the settings it knows (fields come and go with the protocol)."""
    known = {f.name for f in dataclasses.fields(ProtocolConfig)}
    return ProtocolConfig(**{k: v for k, v in settings.items() if k in known}).validate()


def draw(seed: int, allow_primary_faults: bool | None = None, protocol: str = "poe") -> Case:
    """The run of ``seed``: a pure function of the seed, the primary-faults switch and the
    protocol (PBFT runs the MAC variant's fabric: the draw is otherwise the same)."""
    if allow_primary_faults is None:
        allow_primary_faults = PRIMARY_FAULTS
    rng = random.Random(seed * 1_000_003 + 7)
    n = rng.choice((4, 7, 10))
    f = (n - 1) // 3
    nf = n - f
    period = rng.choice((2, 4, 8, 16, 32))
    batch = rng.choice((1, 4, 16, 64, 100))
    ops = min(batch, rng.choice((1, 2, 5, 10)))
    rto = rng.choice((0.02, 0.05, 0.1, 0.3))
    mode = rng.choice(("ts", "mac"))
    config = _config(
        n=n, mode="mac" if protocol == "pbft" else mode, protocol=protocol, batch_size=batch,
        batch_timeout_s=rng.choice((0.0005, 0.002, 0.01)),
        window=period * rng.choice((2, 3, 4)), checkpoint_period=period,
        retransmit_timeout_s=rto,
        reply_cache_size=rng.choice((1024, 4096, 100_000)),   # >= clients x 64 (docs)
        pending_requests_max=rng.choice((16, 256, 100_000)),
        view_change_timeout_s=rng.choice((0.5, 1.0, 2.0)),
        new_view_timeout_s=rng.choice((1.0, 2.0)))
    retry = rng.choice((0.2, 0.5, 1.0))
    workload = Workload(ops_per_message=ops, outstanding=rng.randint(1, 4),
                        record_count=rng.choice((50, 1000)), value_size=rng.choice((8, 16)),
                        read_fraction=rng.choice((0.2, 0.5, 0.95)), retry_timeout_s=retry,
                        retry_timeout_max_s=retry * 4, deadline_s=60.0)
    faults = LinkFaults(jitter_s=rng.choice((0.0002, 0.002, 0.01)),
                        loss=rng.choice((0.0, 0.0, 0.01, 0.05, 0.1)),
                        duplicate=rng.choice((0.0, 0.0, 0.02, 0.1)))
    safety_s = rng.uniform(1.0, 3.0)
    case = Case(seed, config, workload, rng.randint(1, 6), faults,
                requests=rng.randint(100, 1200), extra_requests=rng.randint(20, 200),
                safety_s=safety_s, liveness_bound_s=LIVENESS_BOUND_S)
    # faulty replicas: Byzantine + crashed + cut off for a while <= f
    candidates = list(range(n)) if allow_primary_faults else list(range(1, n))
    rng.shuffle(candidates)
    byzantine = candidates[:rng.choice(range(f + 1))]
    crashed = candidates[len(byzantine):len(byzantine) + rng.choice(range(f - len(byzantine) + 1))]
    budget = f - len(byzantine) - len(crashed)
    for r in byzantine:
        kinds = BACKUP_KINDS + (sorted(PRIMARY_ONLY) if r == 0 else [])
        kind = rng.choice(kinds)
        case.adversaries.append((r, kind, _params(kind, rng, r, n, f, protocol)))
    for r in crashed:
        at = rng.uniform(0, safety_s)
        restart = rng.uniform(at, safety_s) if rng.random() < 0.5 else None
        case.crashes.append((at, r, restart))
    # the replicas that may be cut off for a while (they may lag behind: they are faulty)
    healthy = [r for r in range(n) if r not in byzantine and r not in crashed]
    pool = healthy if allow_primary_faults else [r for r in healthy if r]
    laggards = rng.sample(pool, min(len(pool), budget))
    for _ in range(rng.choice((0, 0, 1, 2))):
        start = rng.uniform(0, safety_s)
        end = rng.uniform(start, min(safety_s, start + 1.0))
        if rng.random() < 0.5 and laggards:
            cut = sorted(rng.sample(laggards, rng.randint(1, len(laggards))))
            groups = (cut, [r for r in range(n) if r not in cut])
        else:
            # a split in which no side holds a quorum: nothing progresses, nobody lags
            ids = list(range(n))
            rng.shuffle(ids)
            size = rng.randint(n - nf + 1, nf - 1)
            groups = (sorted(ids[:size]), sorted(ids[size:]))
        case.partitions.append((start, end, groups))
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        kind = rng.choice(CLIENT_KINDS)
        params = {"start": rng.uniform(0, safety_s / 2)}
        if kind == "flood":
            params.update(burst=rng.randint(1, 5), replays=rng.randint(0, 5))
        case.client_adversaries.append((kind, params))
    # stores and whole-cluster crashes come from a generator of their own, so every other
    # part of a seed's draw is what it was before they existed
    later = random.Random(seed * 2_000_029 + 11)
    case.durable = later.random() < 0.35
    if case.durable:
        for _ in range(later.choice((0, 1, 1, 2))):
            at = later.uniform(0, safety_s)
            case.cluster_crashes.append((at, min(safety_s, at + later.uniform(0.01, 0.5))))
        case.cluster_crashes.sort()
    # view-change storms (issue 13): a generator of their own as well
    storms = random.Random(seed * 3_000_017 + 13)
    if allow_primary_faults and storms.random() < STORM_FRACTION:
        count = storms.randint(2, f + 1)
        at = storms.uniform(0.05, safety_s / 2)
        # at most: each failed view lasts a progress timeout or two and a T_nv; the storm
        # ends earlier, once every correct replica is in view base+count (``_Storm``)
        span = count * (2 * config.view_change_timeout_s + config.new_view_timeout_s) + 1.0
        loss = storms.choice((0.0, 0.05, 0.2))
        jitter = storms.choice((0.0, 0.002, 0.02))
        nv_index = storms.randint(1, count)
        crash_incoming = power_cut = None
        if case.durable:
            if storms.random() < 0.5:
                crash_incoming = storms.uniform(0.01, 0.3)
            if storms.random() < 0.4:
                power_cut = (storms.uniform(0.0, 0.003), storms.uniform(0.01, 0.3))
        case.vc_storms.append(ViewChangeStorm(at, count, span, loss, jitter, nv_index,
                                              crash_incoming, power_cut))
    # one faulty party (issue 14): a generator of its own too
    one = random.Random(seed * 5_000_011 + 19)
    for r, _, _ in case.adversaries:
        if one.random() < 0.4:
            kind = one.choice(ONE_FAULTY_REPLICA_KINDS)
            case.one_faulty.append(("replica", r, kind, _one_faulty_params(kind, one)))
    for _ in range(one.choice((0, 0, 0, 1))):
        kind = one.choice(ONE_FAULTY_CLIENT_KINDS)
        params = {"start": one.uniform(0, safety_s / 2), **_one_faulty_params(kind, one)}
        case.one_faulty.append(("client", kind, params))
    for _ in range(one.choice((0, 0, 0, 1, 2))):
        kind = one.choice(KEYLESS_KINDS)
        params = {"start": one.uniform(0, safety_s / 2), **_one_faulty_params(kind, one)}
        case.one_faulty.append(("keyless", kind, params))
    return case


def _one_faulty_params(kind: str, rng: random.Random) -> dict:
    """Issue 14's adversaries at swarm strength (the table runs them at full strength)."""
    if kind == "hog-pending":
        return {"burst": rng.randint(2, 30)}
    if kind == "fetch-flood":
        return {"burst": rng.randint(1, 6)}
    if kind == "forge-retry":
        return {"verbatim": rng.choice((0.0, 0.5))}
    if kind == "answered-retry":
        return {"per_timeout": rng.randint(2, 6)}
    return {}


def without_one_faulty(case: Case) -> Case:
    """``case`` as drawn before issue 14's adversaries existed."""
    return dataclasses.replace(case, one_faulty=[])


def without_stores(case: Case) -> Case:
    """``case`` as drawn before stores existed (the regression seeds found then; storms
    came later still)."""
    return dataclasses.replace(case, durable=False, cluster_crashes=[], vc_storms=[],
                               one_faulty=[])


def without_storms(case: Case) -> Case:
    """``case`` as drawn before view-change storms existed (issue 13)."""
    return dataclasses.replace(case, vc_storms=[], one_faulty=[])


def _params(kind: str, rng: random.Random, r: int, n: int, f: int,
            protocol: str = "poe") -> dict:
    others = [x for x in range(n) if x != r]
    if kind == "withhold":
        kinds = (codec.SUPPORT, codec.CERTIFY, codec.INFORM, codec.CHECKPOINT,
                 codec.FETCH_REPLY) + ((codec.COMMIT,) if protocol == "pbft" else ())
        return {"silent_to": sorted(rng.sample(others, rng.randint(0, len(others)))),
                "kinds": sorted(rng.sample(kinds, rng.randint(0, 2))),
                "clients": rng.random() < 0.3}
    if kind == "corrupt":
        return {"p": rng.choice((0.3, 1.0)),
                "parts": sorted(rng.sample(("share", "cert", "checkpoint", "mac"),
                                           rng.randint(1, 4)))}
    if kind in ("garble", "mutate"):
        return {"p": rng.choice((0.1, 0.3, 0.7))}
    if kind == "replay":
        return {"burst": rng.randint(1, 10)}
    if kind == "equivocate":
        return {"victims": sorted(rng.sample(others, rng.randint(1, len(others) // 2 + 1)))}
    if kind == "hide-certificate":
        return {"reveal_after": rng.choice((0.2, 1.0, 5.0))}
    if kind == "twins":
        return {"group": sorted(rng.sample(others, rng.randint(0, len(others))))}
    return {}


def build(case: Case) -> tuple[SimCluster, list]:
    """The cluster of ``case`` with its faults scheduled and its adversaries installed."""
    more_clients = [(e[1], e[2]) for e in case.one_faulty if e[0] == "client"]
    sim = SimCluster(case.config, clients=case.clients, seed=case.seed, faults=case.faults,
                     workload=case.workload,
                     byzantine_clients=len(case.client_adversaries) + len(more_clients),
                     durable=case.durable)
    actors = []
    for i, (r, kind, params) in enumerate(case.replica_adversaries()):
        actors.append(adversary.install(sim, r, kind, seed=case.seed * 31 + i, **params))
    for i, (kind, params) in enumerate(case.client_adversaries + more_clients):
        actors.append(adversary.install_client(sim, kind, seed=case.seed * 37 + i, **params))
    keyless = [(e[1], e[2]) for e in case.one_faulty if e[0] == "keyless"]
    for i, (kind, params) in enumerate(keyless):
        actors.append(adversary.install_keyless(sim, kind, seed=case.seed * 43 + i, **params))
    for at, r, restart in case.crashes:
        sim.at(at, lambda _, r=r: sim.crash(r))
        if restart:
            sim.at(restart, lambda _, r=r: sim.restart(r))
    for start, end, groups in case.partitions:
        sim.at(start, lambda _, g=groups: sim.net.partition(*g))
        sim.at(end, lambda _: sim.net.heal())
    for at, back in case.cluster_crashes:
        sim.at(at, lambda _, back=back: _cluster_crash(sim, back))
    for i, storm in enumerate(case.vc_storms):
        actors.append(_Storm(sim, storm, case.seed * 41 + i, case.fault_phase_s()))
    return sim, actors


class _Storm:
    """A ViewChangeStorm at work: it owns ``sim.filter`` from ``at`` until it stops (at the
    end of the fault phase at the latest)."""

    VOTES = (codec.SUPPORT, codec.CERTIFY, codec.COMMIT)

    def __init__(self, sim: SimCluster, storm: ViewChangeStorm, seed: int,
                 until: float) -> None:
        self.sim = sim
        self.storm = storm
        self.rng = random.Random(seed)
        self.until = until
        self.base = -1
        self.active = False
        self.crashed_incoming = False
        self.cut = False
        self.counters: Counter = Counter()
        sim.at(storm.at, self._start)
        sim.at(min(until, storm.at + storm.span_s), lambda _: self.stop())

    def _correct_up(self) -> list[int]:
        sim = self.sim
        return [r for r in range(sim.n)
                if r not in sim.crashed and r not in sim.checker.byzantine]

    def _start(self, _) -> None:
        sim = self.sim
        correct = self._correct_up()
        if not correct:                   # a power cut: start once the power is back
            if sim.loop.now + 0.05 < min(self.until, self.storm.at + self.storm.span_s):
                sim.at(sim.loop.now + 0.05, self._start)
            return
        self.base = max(sim.replicas[r].view for r in correct)
        self.active = True
        sim.filter = self.filter
        now = sim.loop.now
        for r in correct:                 # as if every progress timer fired now
            out: list = []
            sim.replicas[r].start_view_change(self.base, now, out)
            sim._apply(r, out)
        self.counters["forced"] += 1
        sim.at(now + 0.25, self._watch)

    def _watch(self, _) -> None:
        """Done once every correct replica that is up works in view base+count: the votes
        of that view stay lossy and late for half a second more, then the storm ends."""
        if not self.active:
            return
        sim = self.sim
        target = self.base + self.storm.count
        up = self._correct_up()
        if up and all(sim.replicas[r].view >= target and sim.replicas[r].status == "normal"
                      for r in up):
            sim.at(sim.loop.now + 0.5, lambda _: self.stop())
            return
        sim.at(sim.loop.now + 0.25, self._watch)

    def stop(self) -> None:
        self.active = False
        if self.sim.filter == self.filter:
            self.sim.filter = None

    def filter(self, src: int, dst: int, data: bytes) -> bool:
        n = self.sim.n
        if not self.active or src >= n or dst >= n:
            return False
        try:
            kind, _, view, _ = codec.peek(data)
        except WireError:
            return False
        base, storm = self.base, self.storm
        if kind in self.VOTES:
            if view <= base:
                return False
            if view < base + storm.count:
                self.counters["votes-lost"] += 1
                return True               # this view must fail: its votes never arrive
        elif kind == codec.NV_PROPOSE:
            if view <= base:
                return False
            if view >= base + storm.nv_index:
                self._nv_propose(src)
        elif kind != codec.VC_REQUEST or view < base:
            return False
        if storm.vote_loss and self.rng.random() < storm.vote_loss:
            self.counters["lost"] += 1
            return True
        if storm.vote_jitter_s:
            extra = self.rng.uniform(0.0, storm.vote_jitter_s)
            sim = self.sim
            now = sim.loop.now
            for delay in sim.net.delays(src, dst, len(data)):
                sim.loop.at(now + delay + extra, sim._deliver, (dst, data))
            self.counters["delayed"] += 1
            return True
        return False

    def _nv_propose(self, src: int) -> None:
        """An NV-PROPOSE of view base+nv_index or later leaves ``src``: the first one from a
        correct replica crashes its sender, the first one cuts the power (once each)."""
        sim, storm = self.sim, self.storm
        now = sim.loop.now
        if storm.crash_incoming is not None and not self.crashed_incoming \
                and src in self._correct_up():
            self.crashed_incoming = True
            back = max(now, min(now + storm.crash_incoming, self.until))
            sim.at(now, lambda _: sim.crash(src))     # after the whole broadcast
            sim.at(back, lambda _: sim.restart(src) if src in sim.crashed else None)
            self.counters["incoming-primary-crashed"] += 1
        if storm.power_cut is not None and not self.cut:
            self.cut = True
            delay, back = storm.power_cut
            cut = now + delay
            if cut < self.until:
                sim.at(cut, lambda _: _cluster_crash(sim, min(cut + back, self.until)))
                self.counters["power-cut"] += 1


def _cluster_crash(sim: SimCluster, back: float) -> None:
    """Every correct replica that is up crashes now and restarts (from its store) at
    ``back``: a power cut of the whole cluster, Byzantine replicas aside."""
    down = [r for r in range(sim.n)
            if r not in sim.crashed and r not in sim.checker.byzantine]
    for r in down:
        sim.crash(r)
    for r in down:
        sim.at(back, lambda _, r=r: sim.restart(r))


def run_case(case: Case) -> CaseResult:
    """Safety phase with the faults, then the liveness phase without them."""
    wall = time.perf_counter()
    sim, actors = build(case)
    sim.start(case.requests)
    sim.run_for(case.safety_s)
    storms = [a for a in actors if isinstance(a, _Storm)]
    # absolute times: the loop's clock stays at the last event when nothing is due
    until, end = case.safety_s, case.fault_phase_s()
    while any(a.active for a in storms) and until < end:
        until = min(until + 0.25, end)
        sim.loop.run(until)
    for storm in storms:
        storm.stop()
    sim.stop_faults(case.liveness_bound_s)
    sim.start(case.extra_requests)
    sim.loop.run(sim.loop.now + case.liveness_bound_s + 1.0, stop=sim.done)
    result = sim.finish()
    stats = result.stats
    out = CaseResult(case.seed, list(result.violations), result.sim_time_s, result.events,
                     time.perf_counter() - wall, result.requests,
                     view_changes=stats.get("view-changes", stats.get("views-installed", 0)),
                     rollbacks=sim.checker.rollbacks,
                     state_transfers=stats.get("state-transfers", 0)
                     + stats.get("state-transfers-replayed", 0),
                     faults=case.fault_kinds(), description=case.describe())
    if not sim.done() and not out.violations:
        # every message still pending was submitted less than a bound ago, yet the closed
        # loop did not get through its small workload in a whole bound: report the stall
        pending = sum(len(c.pending) for c in sim.clients)
        out.violations.append(f"liveness: the workload did not finish within "
                              f"{case.liveness_bound_s} s after the faults stopped "
                              f"({pending} client messages still pending)")
    return out


@dataclass
class SwarmReport:
    seeds_asked: int
    start: int
    allow_primary_faults: bool
    liveness_bound_s: float = LIVENESS_BOUND_S
    protocol: str = "poe"
    results: list = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failing(self) -> list:
        return [r for r in self.results if r.violations]

    def totals(self) -> dict:
        faults: Counter = Counter()
        for r in self.results:
            faults.update(r.faults)
        return {
            "seeds": len(self.results),
            "sim_time_s": sum(r.sim_time_s for r in self.results),
            "events": sum(r.events for r in self.results),
            "requests": sum(r.requests for r in self.results),
            "view_changes": sum(r.view_changes for r in self.results),
            "rollbacks": sum(r.rollbacks for r in self.results),
            "state_transfers": sum(r.state_transfers for r in self.results),
            "faults": faults,
        }


def rerun_command(seed: int, allow_primary_faults: bool,
                  liveness_bound_s: float = LIVENESS_BOUND_S, protocol: str = "poe") -> str:
    """The command line that reruns ``seed`` alone, exactly."""
    line = f"poe sim --swarm --seeds 1 --start {seed}"
    if protocol != "poe":
        line += f" --protocol {protocol}"
    if allow_primary_faults != PRIMARY_FAULTS:
        line += " --allow-primary-faults" if allow_primary_faults else \
            " --no-allow-primary-faults"
    if liveness_bound_s != LIVENESS_BOUND_S:
        line += f" --liveness-bound {liveness_bound_s}"
    return line


def swarm(seeds: int, start: int = 1, time_budget_s: float | None = None,
          allow_primary_faults: bool | None = None, progress=None,
          liveness_bound_s: float = LIVENESS_BOUND_S, protocol: str = "poe") -> SwarmReport:
    """Run seeds start .. start+seeds-1 in order (stopping early only when the wall-clock
    budget is spent, after at least one seed: the seeds that ran are reported, none is
    skipped)."""
    if allow_primary_faults is None:
        allow_primary_faults = PRIMARY_FAULTS
    report = SwarmReport(seeds, start, allow_primary_faults, liveness_bound_s, protocol)
    begin = time.perf_counter()
    for seed in range(start, start + seeds):
        if time_budget_s is not None and report.results \
                and time.perf_counter() - begin >= time_budget_s:
            break
        case = draw(seed, allow_primary_faults, protocol)
        case.liveness_bound_s = liveness_bound_s
        try:
            result = run_case(case)
        except Exception as exc:         # a protocol object raised: that seed fails, loudly
            where = traceback.extract_tb(exc.__traceback__)[-1]
            result = CaseResult(seed, [f"exception: {type(exc).__name__}: {exc} "
                                       f"({where.filename.rsplit('/', 1)[-1]}:{where.lineno})"],
                                faults=case.fault_kinds(), description=case.describe())
        report.results.append(result)
        if progress is not None:
            progress(result)
    report.wall_s = time.perf_counter() - begin
    return report


def format_report(report: SwarmReport) -> list[str]:
    t = report.totals()
    lines = [
        f"poe sim --swarm  protocol {report.protocol}  seeds {t['seeds']} of "
        f"{report.seeds_asked} (from {report.start})"
        f"  primary faults {'on' if report.allow_primary_faults else 'off'}",
        f"  simulated time     {t['sim_time_s']:>12.1f} s   events {t['events']:,}   "
        f"wall {report.wall_s:.1f} s",
        f"  requests completed {t['requests']:>12,}",
        f"  view changes       {t['view_changes']:>12}   rollbacks {t['rollbacks']}   "
        f"state transfers {t['state_transfers']}",
        "  faults by type     " + ", ".join(f"{k} {v}" for k, v in sorted(t["faults"].items())),
    ]
    failing = report.failing
    if t["seeds"] < report.seeds_asked:
        lines.append(f"  time budget spent after {t['seeds']} seeds")
    if not failing:
        lines.append("  violations         none")
    else:
        lines.append(f"  violations         {len(failing)} failing seeds")
        for r in failing:
            lines.append(f"    seed {r.seed}: {r.violations[0]}"
                         + (f" (+{len(r.violations) - 1} more)" if len(r.violations) > 1 else ""))
            lines.append(f"      {r.description}")
            lines.append("      rerun: " + rerun_command(r.seed, report.allow_primary_faults,
                                                    report.liveness_bound_s, report.protocol))
    return lines
