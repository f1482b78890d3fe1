"""The simulator's durable mode (``SimCluster(durable=True)``): every correct replica writes
its store through the runtime's LedgerWriter and a crashed one restarts from it through the
runtime's restore, so crash recovery runs under every checker and in the swarm.

Each test asserts what the stores gave back (checkpoint, view, executed prefix) and relies
on the checkers for the rest; one test breaks the store on purpose to show the checkers see
a replica that forgot what it had made durable.
"""
import pytest

from poe.protocol.config import ProtocolConfig
from poe.sim import swarm
from poe.sim.cluster import SimCluster, Workload
from poe.storage.store import Store

VARIANTS = [("ts", "poe"), ("mac", "poe"), ("mac", "pbft")]


def make(mode, protocol, seed=3, **cfg):
    config = ProtocolConfig(n=4, mode=mode, protocol=protocol, batch_size=10, window=16,
                            checkpoint_period=4, **cfg)
    return SimCluster(config, clients=3, seed=seed, durable=True,
                      workload=Workload(outstanding=2))


def finish(sim, extra=100):
    sim.stop_faults(30.0)
    sim.start(extra)
    sim.loop.run(sim.loop.now + 31.0, stop=sim.done)
    result = sim.finish()
    assert result.violations == [], result.violations
    assert sim.done()
    return result


@pytest.mark.parametrize("mode,protocol", VARIANTS)
def test_a_whole_cluster_power_cut_restarts_every_replica_from_its_store(mode, protocol):
    sim = make(mode, protocol)
    sim.start(3000)
    sim.run_for(0.15)
    before = [(r.checkpoints.stable.seq, r.view, r.k_exec, r.head) for r in sim.replicas]
    assert min(b[0] for b in before) > 0                  # something to restore
    objects = list(sim.replicas)
    for i in range(4):
        sim.crash(i)
    sim.run_for(0.2)
    for i in range(4):
        sim.restart(i)
    after = [(r.checkpoints.stable.seq, r.view, r.k_exec, r.head) for r in sim.replicas]
    # the same stable checkpoint and view, and every block executed in that view again
    assert after == before
    assert not any(r is old for r, old in zip(sim.replicas, objects))   # nothing in memory
    result = finish(sim)
    assert result.requests >= 3000
    assert sim.store_counters["kept-not-stored"] == 0


@pytest.mark.parametrize("mode,protocol", VARIANTS)
def test_a_replica_restarted_from_its_store_catches_up_with_the_others(mode, protocol):
    sim = make(mode, protocol, seed=5)
    sim.start(2000)
    sim.run_for(0.1)
    sim.crash(2)
    sim.run_for(0.3)                     # the others move on by several checkpoints
    stable = sim.stores[2].stable().proof.seq
    sim.restart(2)
    assert sim.replicas[2].checkpoints.stable.seq == stable > 0
    finish(sim)
    heads = {r.head for r in sim.replicas}
    assert len(heads) == 1


def test_a_store_that_forgets_its_checkpoint_is_caught(monkeypatch):
    # the mutant: stable checkpoints are never written, so a restarted replica comes back
    # at genesis although it had a stable checkpoint; the checker names it
    monkeypatch.setattr(Store, "set_stable", lambda self, proof, snapshot: None)
    sim = make("ts", "poe")
    sim.start(3000)
    sim.run_for(0.15)
    sim.crash(1)
    sim.restart(1)
    sim.run_for(0.1)
    assert any("restarted from checkpoint 0, below its stable checkpoint" in v
               for v in sim.checker.violations), sim.checker.violations


def test_a_store_that_forgets_the_view_is_caught(monkeypatch):
    monkeypatch.setattr(Store, "set_view", lambda self, view: None)
    sim = make("mac", "poe")
    sim.start(3000)
    sim.run_for(0.05)
    sim.crash(0)                          # the primary: the others move to view 1
    sim.run_for(3.0)
    assert sim.replicas[1].view >= 1
    sim.crash(1)
    sim.restart(1)
    assert any("restarted in view 0, below the view" in v for v in sim.checker.violations)


# three seeds' draws as printed before stores existed (regression seeds, docs/testing.md)
BEFORE_STORES = {
    637: "n=10 mode=mac batch=1 window=4 K=2 rto=0.3; clients=4x3 ops/msg=1 requests=1031; "
         "loss=0.0 dup=0.1 jitter=0.01; byzantine r1 withhold {'silent_to': [4], 'kinds': [], "
         "'clients': False}; byzantine r4 twins {'group': [1]}; byzantine r9 twins "
         "{'group': [4]}",
    171: "n=7 mode=mac batch=64 window=4 K=2 rto=0.05; clients=5x3 ops/msg=5 requests=750; "
         "loss=0.1 dup=0.02 jitter=0.002; crash r6 at 0.38s; crash r1 at 0.76s; byzantine "
         "client flood {'start': 0.6235575971651618, 'burst': 2, 'replays': 2}; byzantine "
         "client double-payload {'start': 0.1247298572762605}",
    486: "n=7 mode=ts batch=1 window=12 K=4 rto=0.1; clients=6x2 ops/msg=1 requests=813; "
         "loss=0.01 dup=0.0 jitter=0.0002; partition 0.82-1.65s ([3, 4, 5], [0, 1, 2, 6]); "
         "byzantine r1 mutate {'p': 0.1}; byzantine r4 mutate {'p': 0.7}; byzantine client "
         "flood {'start': 0.07447472887731305, 'burst': 2, 'replays': 5}",
}


def test_the_swarm_draws_durable_seeds_without_changing_the_rest_of_a_draw():
    for seed, text in BEFORE_STORES.items():
        assert swarm.without_stores(swarm.draw(seed)).describe() == text
    cases = [swarm.draw(seed) for seed in range(1, 201)]
    durable = [c for c in cases if c.durable]
    assert 40 <= len(durable) <= 100
    assert sum(1 for c in durable if c.cluster_crashes) >= 20
    assert not any(c.cluster_crashes for c in cases if not c.durable)
    for c in durable:
        for at, back in c.cluster_crashes:
            assert 0 <= at <= back <= c.safety_s
        parts = swarm.without_one_faulty(c).describe().split("; ")
        assert swarm.without_stores(c).describe() == "; ".join(
            p for p in parts if p != "durable" and not p.startswith("cluster crash")
            and not p.startswith("view-change storm"))
