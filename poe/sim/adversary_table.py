"""One faulty party cannot stall the cluster (issue 14): every single-faulty-party adversary
against the identical fault-free run, per fabric and cluster size.

What it is for: ``poe sim --adversary-table`` runs, for each adversary x fabric (PoE-TS,
PoE-MAC, the PBFT baseline) x n, the same seeded cluster twice for the same simulated
duration: fault-free, and with the adversary — f parties of that kind (n = 4: one, n = 7:
two, faulty in the same way): backups ``n-f .. n-1`` for a replica kind (the primary of
view 0 stays correct), extra client ids for a client kind, keyless injectors for a keyless
kind. A row passes when the correct replicas never left view 0, the correct clients
completed at least ``RATIO_MIN`` of the fault-free run's operations, every checker held and
the adversary really misbehaved (its counters). The notes name the drop reasons the
adversary caused at the correct replicas and, when a view changed, the suspicion reasons
(``suspect-*`` statistics) that started it.

What it must never do: run the two sides of a row with different seeds, configurations,
workloads or durations, or hide a failing row (the exit status is non-zero if any fails).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from poe.protocol.config import ProtocolConfig
from poe.sim import adversary
from poe.sim.cluster import SimCluster, Workload
from poe.sim.network import LinkFaults

RATIO_MIN = 0.90
FABRICS = {"ts": ("poe", "ts"), "mac": ("poe", "mac"), "pbft": ("pbft", "mac")}
DURATION_S = 8.0
CLIENTS = 8

# (name, family): the classes (keyless, one faulty client, one faulty backup) and
# the issue-5 adversaries a faulty backup or client can be
ADVERSARIES = [
    ("forge-certify", "keyless"),
    ("forge-checkpoint", "keyless"),
    ("forge-retry", "keyless"),
    ("answered-retry", "client"),
    ("oversized", "client"),
    ("hog-pending", "client"),
    ("flood", "client"),
    ("replay-requests", "replica"),
    ("bind-fetch-reply", "replica"),
    ("early-support", "replica"),
    ("fetch-flood", "replica"),
    ("huge-vc-request", "replica"),
    ("garbage-propose", "replica"),
    ("replay", "replica"),
    ("garble", "replica"),
    ("corrupt", "replica"),
]
FAMILY = dict(ADVERSARIES)
# adversary counters of what it received or of sizes: not hostile frames sent
PASSIVE_COUNTERS = {"informs", "inform-malformed", "answered", "ignored", "replies-received",
                    "reply-bytes-received", "fetch-bytes-sent", "vc-request-entries"}


def family_of(kind: str) -> str:
    if kind in FAMILY:
        return FAMILY[kind]
    if kind in adversary.KEYLESS_ADVERSARIES:
        return "keyless"
    if kind in adversary.CLIENT_ADVERSARIES:
        return "client"
    if kind in adversary.REPLICA_ADVERSARIES and not adversary.REPLICA_ADVERSARIES[kind][1]:
        return "replica"
    raise ValueError(f"unknown single-faulty-party adversary {kind!r}")


def config_for(fabric: str, n: int) -> ProtocolConfig:
    """The table's cluster: small batches and window so a 8-second run covers many
    checkpoints; a view change (T = 1 s) costs a visible share of the run."""
    protocol, mode = FABRICS[fabric]
    return ProtocolConfig(n=n, mode=mode, protocol=protocol, batch_size=50,
                          batch_timeout_s=0.005, window=64, checkpoint_period=16,
                          retransmit_timeout_s=0.1, pending_requests_max=256,
                          client_pending_max=32,
                          view_change_timeout_s=1.0, new_view_timeout_s=2.0).validate()


WORKLOAD = Workload(ops_per_message=5, outstanding=4, retry_timeout_s=0.5,
                    retry_timeout_max_s=2.0, deadline_s=60.0)
FAULTS = LinkFaults(latency_s=0.005, jitter_s=0.001)


@dataclass
class Run:
    """One simulated run (fault-free when ``kind`` is None)."""

    fabric: str
    n: int
    kind: str | None
    seed: int
    duration_s: float
    requests: int = 0
    max_view: int = 0
    vc_started: int = 0         # view changes started by correct replicas (suspicions)
    views_installed: int = 0
    suspects: Counter = field(default_factory=Counter)
    drops: Counter = field(default_factory=Counter)
    stats: Counter = field(default_factory=Counter)
    counters: Counter = field(default_factory=Counter)
    violations: list = field(default_factory=list)
    faulty: list = field(default_factory=list)
    wall_s: float = 0.0
    sim: object = None          # the cluster (kept only when asked: tests inspect it)
    actors: list = field(default_factory=list)


def run_one(fabric: str, n: int, kind: str | None, seed: int = 1,
            duration_s: float = DURATION_S, keep: bool = False, **params) -> Run:
    """The table's cluster for ``duration_s`` simulated seconds, with f adversaries of
    ``kind`` (or none)."""
    wall = time.perf_counter()
    config = config_for(fabric, n)
    f = config.f
    family = family_of(kind) if kind else None
    sim = SimCluster(config, clients=CLIENTS, seed=seed, workload=WORKLOAD, faults=FAULTS,
                     byzantine_clients=f if family == "client" else 0)
    out = Run(fabric, n, kind, seed, duration_s)
    for i in range(f if kind else 0):
        s = seed * 31 + i
        if family == "replica":
            r = n - f + i
            out.faulty.append(r)
            out.actors.append(adversary.install(sim, r, kind, seed=s, **params))
        elif family == "client":
            out.actors.append(adversary.install_client(sim, kind, seed=s, **params))
        else:
            out.actors.append(adversary.install_keyless(sim, kind, seed=s, **params))
    sim.start(10 ** 9)                    # closed loop: the clients never run out of work
    sim.run_for(duration_s)
    result = sim.finish()
    correct = [r for r in range(n) if r not in sim.checker.byzantine]
    out.requests = result.requests
    out.violations = list(result.violations)
    for r in correct:
        rep = sim.replicas[r]
        out.max_view = max(out.max_view, rep.view)
        out.stats.update(rep.stats)
        out.drops.update(rep.drops)
    out.views_installed = out.stats.get("views-installed", 0)
    out.vc_started = out.stats.get("view-changes-started", 0)
    out.suspects = Counter({k[len("suspect-"):]: v for k, v in out.stats.items()
                            if k.startswith("suspect-")})
    for a in out.actors:
        out.counters.update(a.counters)
    out.wall_s = time.perf_counter() - wall
    if keep:
        out.sim = sim
    else:
        out.actors = []
    return out


@dataclass
class Row:
    kind: str
    family: str
    fabric: str
    n: int
    base: Run
    run: Run

    @property
    def ratio(self) -> float:
        return self.run.requests / self.base.requests if self.base.requests else 0.0

    @property
    def acted(self) -> int:
        """Hostile frames the adversaries sent (their counters of what they received or
        of sizes left out)."""
        return sum(v for k, v in self.run.counters.items() if k not in PASSIVE_COUNTERS)

    @property
    def safe(self) -> bool:
        return not self.run.violations

    @property
    def ok(self) -> bool:
        return self.safe and self.run.max_view == 0 and self.run.vc_started == 0 \
            and self.ratio >= RATIO_MIN and self.acted > 0

    def caused_drops(self, top: int = 3) -> list[tuple[str, int]]:
        """Drop reasons at the correct replicas, beyond those of the fault-free run."""
        extra = self.run.drops - self.base.drops
        return extra.most_common(top)

    def notes(self) -> str:
        parts = []
        if self.run.vc_started:
            parts.append("suspect: " + ", ".join(f"{k} {v}" for k, v in
                                                  sorted(self.run.suspects.items())))
        if not self.acted:
            parts.append("the adversary did nothing")
        if self.run.violations:
            parts.append(f"VIOLATION: {self.run.violations[0]}")
        counters = self.run.counters
        if counters.get("fetch-bytes-sent"):
            amp = counters["reply-bytes-received"] / counters["fetch-bytes-sent"]
            parts.append(f"amplification {amp:.2f} bytes ({counters['replies-received']} "
                         f"replies to {counters['fetches-sent']} FETCHes)")
        drops = self.caused_drops()
        if drops:
            parts.append("drops: " + ", ".join(f"{k} {v}" for k, v in drops))
        return "; ".join(parts)


def _task(args):
    fabric, n, kind, seed, duration = args
    return run_one(fabric, n, kind, seed, duration)


def table(kinds=None, fabrics=("ts", "mac", "pbft"), ns=(4, 7), seed: int = 1,
          duration_s: float = DURATION_S, jobs: int = 1, progress=None) -> list[Row]:
    """Every row (adversary x fabric x n), each against its fault-free run."""
    kinds = [k for k, _ in ADVERSARIES] if kinds is None else list(kinds)
    for k in kinds:
        family_of(k)
    tasks = [(fabric, n, None, seed, duration_s) for fabric in fabrics for n in ns]
    tasks += [(fabric, n, k, seed, duration_s) for k in kinds for fabric in fabrics for n in ns]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(jobs) as pool:
            runs = list(pool.map(_task, tasks))
    else:
        runs = []
        for t in tasks:
            runs.append(_task(t))
            if progress is not None:
                progress(runs[-1])
    base = {(r.fabric, r.n): r for r in runs if r.kind is None}
    return [Row(r.kind, family_of(r.kind), r.fabric, r.n, base[(r.fabric, r.n)], r)
            for r in runs if r.kind is not None]


def format_table(rows: list[Row], seed: int, duration_s: float) -> list[str]:
    lines = [f"poe sim --adversary-table  seed {seed}  {duration_s:g} simulated s per run",
             (f"pass: no view change (view: highest view of a correct replica; susp: view "
              f"changes correct replicas started), ops >= {RATIO_MIN:.0%} of the fault-free "
              f"run's (base), safe, the adversary acted (acts: hostile frames sent)"),
             (f"{'adversary':<17} {'family':<8} {'fabric':<6} {'n':>2} {'acts':>8} "
              f"{'view':>4} {'susp':>4} {'ops':>7} {'base':>7} {'ratio':>6} {'safety':<6} "
              f"{'result':<6} notes")]
    for r in rows:
        lines.append(f"{r.kind:<17} {r.family:<8} {r.fabric:<6} {r.n:>2} {r.acted:>8} "
                     f"{r.run.max_view:>4} {r.run.vc_started:>4} {r.run.requests:>7} "
                     f"{r.base.requests:>7} "
                     f"{r.ratio:>6.3f} {'ok' if r.safe else 'FAIL':<6} "
                     f"{'PASS' if r.ok else 'FAIL':<6} {r.notes()}")
    failing = [r for r in rows if not r.ok]
    lines.append(f"{len(rows) - len(failing)} of {len(rows)} rows pass"
                 + (": failing " + ", ".join(sorted({f'{r.kind}' for r in failing}))
                    if failing else ""))
    return lines
