"""Asymmetric partitions for 10 s under client load, then healed (issue 14; PROTOCOL.md §4.12,
§4.7): live within the liveness bound, safe throughout.

Four scenarios, each in every fabric (PoE-TS = mode "ts", PoE-MAC = mode "mac", PBFT =
protocol "pbft"), n = 4 and n = 7. ``Network.blocked`` holds *directed* (src, dst) pairs, so
each cut is one-way where the scenario says so; client node ids (n, n + 1, ...) are cut like
replicas (a replica nobody hears is not heard by the clients either):

1. primary unheard: every (0, x) blocked; replica 0, the primary of view 0, hears everyone.
2. a replica that hears nobody: every (x, r) blocked for the backup r = n - 1 (it can send);
   also cut at a moment r has accepted a proposal it will never see executed ("busy"), so it
   suspects the primary on its own.
3. next primary deaf while the old one is dead: replica 0 crashes and every (x, 1) is blocked,
   1 being the primary of view 1; either together with the crash, or 0.25 s later, once 1
   holds client retries it forwarded and so starts a view change of its own ("late").
4. one-way cut between two correct replicas: a -> b only, for primary -> backup (with the
   backup waiting for the primary at the cut), backup -> primary and backup -> backup.

The partition starts at t = 1 s and is healed (``stop_faults``) at t = 11 s; the load goes on
until t = 16 s, then every submitted message must complete. Load: each of 2 clients submits a
message of 5 operations every 50 ms (open loop, so messages pile up while nothing executes);
one-way delay 2 ms + up to 1 ms of jitter.

The liveness bound. Timers (ProtocolConfig / Workload below): progress timeout T_exec / T_req
base ``VC_S`` = 0.3 s, doubling per view left without progress, capped at 2^6 x base
(poe/protocol/pacemaker.py); new-view timer T_nv base ``NV_S`` = 0.6 s, doubling per failed
view change (§4.7); VC-REQUESTs re-sent every ``RT_S`` = 0.1 s until a new view; a client
re-sends a pending message to every replica with a back-off capped at ``RETRY_MAX_S`` = 1 s.
A doubling timer that started at its base b when the partition began has, after P seconds,
grown to at most T(b, P) = b * 2^k with b (2^k - 1) <= P (each doubling follows a failed wait
at least as long as the timer before it): T_exec(P) = 9.6 s and T_nv(P) = 9.6 s for P = 10 s.
After the heal every message arrives within a few ms, so a pending client message waits at
most for: a correct replica to suspect a primary that cannot make progress (T_exec(P)), one
view change whose new primary is faulty (one T_nv, at most doubled once more: 2 T_nv(P) — at
most one primary is faulty here), the successful view change (VC-REQUESTs re-sent within
RT_S; no timer) and the client's next retry (RETRY_MAX_S):

    BOUND_S = RETRY_MAX_S + T_exec(P) + 2 T_nv(P) = 1 + 9.6 + 19.2 = 29.8 s

enforced by the liveness checker for every message pending at the heal or submitted after it
(clients' deadline 60 s > P + BOUND_S, so none gives up). In these four scenarios no timer
has to expire after the heal at all — the correct replicas are either in a view with a
working primary, or in a view change whose next primary is correct and only waits for
VC-REQUESTs it could not hear — so each message also completes within ``RECOVERY_S`` =
RETRY_MAX_S + 2 RT_S + 0.1 s = 1.3 s of the heal (or of its submission): a view change
that has to wait for a T_nv after the heal (>= 0.6 s, plus the retry) would fail that.
Observed: 1.01 s where the partition stopped progress (scenario 3, n = 4), a few ms elsewhere.

View changes (``VIEWS_MAX``, views installed per replica): 1 in scenario 1 (every replica),
0 in 2 and 4, at most 2 in 3.

A correct replica can be left out after the heal, safely and without hurting liveness (nf
others serve), until the next view change: a backup that suspected alone (scenario 2 busy;
scenario 4 primary -> backup in the MAC fabrics) stays in its view change, as PBFT's rule
says (it asked to leave the view). It keeps its state by checkpoint state transfer;
``test_a_replica_left_out_rejoins_at_the_next_view_change`` shows the next view change takes it back when the cluster needs it. In scenario 3 at n = 7 the
once-deaf primary of view 1 stayed in view 0 until decision 71: primary 2 now offers its
NV-PROPOSE to a replica it heard no SUPPORT from for a checkpoint interval.
"""
import math
import random

import pytest

from poe._core import codec
from poe.protocol.config import ProtocolConfig
from poe.protocol.pacemaker import BACKOFF_MAX
from poe.sim.cluster import SimCluster, Workload
from poe.sim.network import LinkFaults

FABRICS = [("ts", "poe"), ("mac", "poe"), ("mac", "pbft")]
FABRIC_IDS = ["PoE-TS", "PoE-MAC", "PBFT"]

CUT_S, HEAL_S, LOAD_UNTIL_S = 1.0, 11.0, 16.0
P_S = HEAL_S - CUT_S
VC_S, NV_S, RT_S = 0.3, 0.6, 0.1                # T_exec / T_req base, T_nv base, retransmit
RETRY_S, RETRY_MAX_S = 0.2, 1.0                 # client retry back-off and its cap
CLIENTS, EVERY_S, OPS = 2, 0.05, 5              # open-loop load per client


def longest_timer(base: float, p: float, cap: float = math.inf) -> float:
    """b * 2^k with b (2^k - 1) <= p: the longest a doubling timer gets in p seconds."""
    return min(base * 2 ** math.floor(math.log2(p / base + 1)), cap)


T_EXEC_P = longest_timer(VC_S, P_S, VC_S * 2 ** BACKOFF_MAX)
T_NV_P = longest_timer(NV_S, P_S)
BOUND_S = RETRY_MAX_S + T_EXEC_P + 2 * T_NV_P
RECOVERY_S = RETRY_MAX_S + 2 * RT_S + 0.1
DEADLINE_S = 60.0
VIEWS_MAX = {1: 1, 2: 0, 3: 2, 4: 0}            # views installed per replica, per scenario
assert (T_EXEC_P, T_NV_P) == (9.6, 9.6) and P_S + BOUND_S < DEADLINE_S


class Run:
    """One scenario: the cluster under open-loop load, cut at CUT_S, healed at HEAL_S."""

    def __init__(self, mode, protocol, n, seed=1):
        config = ProtocolConfig(n=n, mode=mode, protocol=protocol, batch_size=10,
                                view_change_timeout_s=VC_S, new_view_timeout_s=NV_S,
                                retransmit_timeout_s=RT_S)
        self.n = n
        self.sim = SimCluster(config, clients=CLIENTS, seed=seed,
                              faults=LinkFaults(latency_s=0.002, jitter_s=0.001),
                              workload=Workload(retry_timeout_s=RETRY_S,
                                                retry_timeout_max_s=RETRY_MAX_S,
                                                deadline_s=DEADLINE_S))
        self.rng = random.Random(seed)
        self.submitted: list[tuple[int, int, float]] = []     # (client, handle, at)
        self.cut_at = None
        self.sim.at(0.0, self._load)
        self.sim.at(HEAL_S, lambda _: self.sim.stop_faults(BOUND_S))

    def _load(self, _):
        sim, rng = self.sim, self.rng
        for j in range(CLIENTS):
            ops = []
            for _ in range(OPS):
                if rng.random() < 0.5:
                    ops.append((rng.randrange(1000), codec.OP_READ, b""))
                else:
                    ops.append((rng.randrange(1000), codec.OP_UPDATE, rng.randbytes(16)))
            self.submitted.append((j, sim.submit(j, ops), sim.loop.now))
        if sim.loop.now + EVERY_S < LOAD_UNTIL_S:
            sim.at(sim.loop.now + EVERY_S, self._load)

    def nodes(self):
        return range(self.n + CLIENTS)

    def cut(self, pairs, at=CUT_S, crash=(), when_busy=None):
        """Block the directed ``pairs`` (and crash ``crash``) at ``at``; with ``when_busy``
        (a replica id), just after the first PROPOSE sent to that replica from ``at`` on
        leaves: it will accept the proposal and hear nothing more about it (a cut is checked
        when a frame is sent; frames already on the wire arrive)."""
        pairs = set(pairs)
        sim = self.sim

        def apply(_):
            for r in crash:
                sim.crash(r)
            sim.net.blocked |= pairs
            self.cut_at = sim.loop.now

        if when_busy is None:
            sim.at(at, apply)
            return

        def tap(src, dst, data):
            if sim.loop.now >= at and dst == when_busy and src < self.n \
                    and codec.peek(data)[0] == codec.PROPOSE:
                sim.tap = None
                sim.at(sim.loop.now + 1e-6, apply)      # before any answer is sent
        sim.tap = tap

    def finish(self, recovery_s=RECOVERY_S):
        """Run to the end of the load, then until every message completes; check (each
        message within ``recovery_s`` of the heal or of its submission)."""
        sim = self.sim
        sim.run_for(LOAD_UNTIL_S)
        total = len(self.submitted)
        sim.loop.run(sim.loop.now + BOUND_S,
                     stop=lambda: len(sim.completions) + sim.result.outcome_unknown >= total)
        sim.run_for(1.0)                        # let every correct replica settle
        result = sim.finish()
        assert result.violations == [], result.violations[:5]
        assert result.outcome_unknown == 0 and len(sim.completions) == total
        answered = sim.checker.answered
        late = []
        self.recovery_s = 0.0
        for key in ((j, h) for j, h, _ in self.submitted):
            invoked, done = sim.checker.invoked[key][0], answered[key][0]
            if done >= HEAL_S:
                self.recovery_s = max(self.recovery_s, done - max(invoked, HEAL_S))
                if done - max(invoked, HEAL_S) > recovery_s:
                    late.append((key, invoked, done))
        assert not late, f"{len(late)} messages completed later than {recovery_s} s: {late[:3]}"
        self.result = result
        return result

    def completed_between(self, start, end):
        return sum(1 for t, _ in self.sim.checker.answered.values() if start <= t < end)

    def installed(self):
        return [r.stats["views-installed"] for r in self.sim.replicas]

    def converged(self, replicas):
        """The given replicas agree on execution, state and ledger head."""
        reps = [self.sim.replicas[r] for r in replicas]
        assert len({(r.k_exec, r.head, r.kv.state_digest()) for r in reps}) == 1, \
            [r.status_line() for r in reps]

    def followed(self, r, others):
        """Replica r, left out of the view, still holds the others' stable checkpoint."""
        stable = {self.sim.replicas[o].checkpoints.stable.seq for o in others}
        assert stable == {self.sim.replicas[r].checkpoints.stable.seq} and stable != {0}, \
            (self.sim.replicas[r].status_line(), stable)


def correct_in_view(run, exclude=()):
    sim = run.sim
    return [i for i in range(run.n) if i not in sim.crashed and i not in exclude]


# --------------------------------------------------------------------------- scenario 1


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("mode,protocol", FABRICS, ids=FABRIC_IDS)
def test_primary_unheard(mode, protocol, n):
    """Nobody hears replica 0 (it hears everyone): the backups, which see client retries but
    no proposals, vote it out once (view 1) and serve on during the partition; replica 0
    installs view 1 too (it hears the view change) and is back in it after the heal."""
    run = Run(mode, protocol, n)
    run.cut({(0, x) for x in run.nodes() if x != 0})
    run.finish()
    sim = run.sim
    assert [r.view for r in sim.replicas] == [1] * n
    assert run.installed() == [VIEWS_MAX[1]] * n
    assert run.completed_between(CUT_S + 2.0, HEAL_S) > 0.8 * 2 * CLIENTS * (HEAL_S - CUT_S - 2)
    run.converged(range(n))


# --------------------------------------------------------------------------- scenario 2


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("mode,protocol", FABRICS, ids=FABRIC_IDS)
def test_a_replica_that_hears_nobody(mode, protocol, n, busy):
    """Backup r = n - 1 hears nobody (it can send): the other nf replicas go on in view 0
    with no view change — r alone (one VC-REQUEST, below f + 1) cannot cause one. After the
    heal r catches up by state transfer. Cut while r waits for a position it accepted
    (busy), r suspects the primary alone and stays in its view change (left out until the
    next one; see the module docstring), following the others' checkpoints."""
    run = Run(mode, protocol, n)
    r = n - 1
    run.cut({(x, r) for x in run.nodes() if x != r}, when_busy=r if busy else None)
    run.finish()
    sim = run.sim
    assert run.installed() == [VIEWS_MAX[2]] * n
    assert all(sim.replicas[i].view == 0 for i in range(n))
    assert run.completed_between(CUT_S + 0.1, HEAL_S) > 0.8 * 2 * CLIENTS * P_S
    others = range(n - 1)
    run.converged(others)
    lone = sim.replicas[r]
    assert lone.stats["state-transfers"] >= 1
    if busy:
        assert lone.stats["view-changes-started"] == 1 and lone.status == "view-change"
        assert all(sim.replicas[i].stats["view-changes-started"] == 0 for i in others)
        run.followed(r, others)
    else:
        assert lone.stats["view-changes-started"] == 0
        run.converged(range(n))


# --------------------------------------------------------------------------- scenario 3


@pytest.mark.parametrize("late", [False, True], ids=["with-crash", "late"])
@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("mode,protocol", FABRICS, ids=FABRIC_IDS)
def test_next_primary_deaf_while_the_old_one_is_dead(mode, protocol, n, late):
    """Replica 0 crashes for good; replica 1, the primary of view 1, hears nobody (from the
    crash on, or 0.25 s later). n = 4: only 2 and 3 are left to hear each other, fewer than
    nf — nothing completes until the heal; they cannot pass view 2 (a T_nv is armed only
    with nf VC-REQUESTs for the view left), so after the heal the view change waits for no
    timer: replica 1 hears f + 1 VC-REQUESTs, joins, and view 1 or 2 (a correct primary)
    is installed. n = 7: 2..6 are nf; they pass view 1 by T_nv and serve in view 2 during
    the partition."""
    run = Run(mode, protocol, n)
    deaf = {(x, 1) for x in run.nodes() if x != 1}
    if late:
        run.cut(set(), crash=[0])
        run.cut(deaf, at=CUT_S + 0.25)
    else:
        run.cut(deaf, crash=[0])
    run.finish()
    sim = run.sim
    correct = range(1, n)
    assert max(run.installed()) <= VIEWS_MAX[3]
    if n == 4:
        assert run.completed_between(CUT_S + 0.5, HEAL_S) == 0
        views = {sim.replicas[r].view for r in correct}
        assert len(views) == 1 and views <= {1, 2}
        assert all(sim.replicas[r].stats["new-view-timeouts"] <= 1 for r in correct)
        run.converged(correct)
    else:
        assert run.completed_between(CUT_S + 2.0, HEAL_S) > 0.8 * 2 * CLIENTS * (P_S - 2)
        assert {sim.replicas[r].view for r in range(2, n)} == {2}
        run.converged(range(2, n))
        if late:
            # replica 1 had asked to leave view 0: after the heal its re-sent VC-REQUEST
            # reaches primary 2, which sends it its NV-PROPOSE (§4.11): it is back in view 2
            assert sim.replicas[1].view == 2
            assert sim.replicas[2].stats["nv-propose-served"] >= 1
            run.converged(correct)
        else:
            # replica 1 never heard the view change and asks nothing: primary 2 heard no
            # SUPPORT from it for a checkpoint interval and offers it its NV-PROPOSE
            # (decision 71): it is back in view 2 (it stayed left out in view 0 before)
            assert sim.replicas[1].view == 2
            assert sim.replicas[2].stats["nv-propose-offered"] >= 1
            run.converged(correct)


# --------------------------------------------------------------------------- scenario 4


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("a,b", [(0, 1), (1, 0), (1, 2)],
                         ids=["primary-to-backup", "backup-to-primary", "backup-to-backup"])
@pytest.mark.parametrize("mode,protocol", FABRICS, ids=FABRIC_IDS)
def test_one_way_cut_between_two_correct_replicas(mode, protocol, a, b, n):
    """Only a -> b is cut (b -> a works). nf replicas still hear each other: no view change
    anywhere, no stop in the service. Primary -> backup is cut while the backup waits for a
    position it accepted: it may suspect alone (it does in the MAC fabrics, not in TS) and
    then stays in that view change, following by state transfer."""
    run = Run(mode, protocol, n)
    run.cut({(a, b)}, when_busy=b if a == 0 else None)
    run.finish()
    sim = run.sim
    assert run.installed() == [VIEWS_MAX[4]] * n
    assert all(r.view == 0 for r in sim.replicas)
    assert run.completed_between(CUT_S + 0.1, HEAL_S) > 0.8 * 2 * CLIENTS * P_S
    started = [r.stats["view-changes-started"] for r in sim.replicas]
    assert sum(started) == started[b] <= 1              # only the cut-off one may suspect
    if started[b]:
        run.converged([i for i in range(n) if i != b])
        run.followed(b, [i for i in range(n) if i != b])
    else:
        run.converged(range(n))


# --------------------------------------------------------------------------- rejoining


@pytest.mark.parametrize("case", ["deaf-backup-busy", "deaf-next-primary-n7"])
@pytest.mark.parametrize("mode,protocol", FABRICS, ids=FABRIC_IDS)
def test_a_replica_left_out_rejoins_at_the_next_view_change(mode, protocol, case):
    """A replica left out after the heal is not lost: once another replica crashes, the
    others need it for nf; they suspect their primary, and the left-out replica joins
    their view change (f + 1 VC-REQUESTs) from its own view change (scenario 2 busy, n =
    4). Scenario 3, n = 7: it is back in view 2 before that, by the NV-PROPOSE its primary
    offers a replica it heard no SUPPORT from (decision 71), and takes part as any other."""
    n = 4 if case == "deaf-backup-busy" else 7
    run = Run(mode, protocol, n)
    if n == 4:
        lone, extra_crash = 3, 1
        run.cut({(x, lone) for x in run.nodes() if x != lone}, when_busy=lone)
    else:
        lone, extra_crash = 1, 3
        run.cut({(x, lone) for x in run.nodes() if x != lone}, crash=[0])
    run.sim.at(HEAL_S + 2.0, lambda _: run.sim.crash(extra_crash))
    run.finish(recovery_s=BOUND_S)          # a new fault after the heal: the bound only
    sim = run.sim
    correct = [i for i in range(n) if i not in sim.crashed]
    assert len(correct) == n - 1 - (n == 7)
    views = {sim.replicas[i].view for i in correct}
    assert len(views) == 1 and min(views) >= 1
    assert all(sim.replicas[i].status == "normal" for i in correct)
    # the left-out replica took part: it installed the new view (n = 4: it had asked to
    # leave view 0 already, the others came to it; n = 7: it joined them from view 0)
    assert sim.replicas[lone].stats["views-installed"] >= 1
    if n == 7:      # it is back before the crash: primary 2 offered it its NV-PROPOSE
        assert sum(sim.replicas[i].stats["nv-propose-offered"] for i in range(n)) >= 1
    run.converged(correct)
