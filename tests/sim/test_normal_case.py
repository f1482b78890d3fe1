"""Normal case of PoE under the deterministic simulator (issue #4).

Each test runs the real replica and client objects through poe.sim and relies on the safety
checkers (agreement, final ledgers, state digests, exactly-once, monotonicity) plus its own
assertions about progress and bounds.
"""
import random

import pytest

from poe._core import codec
from poe.protocol.config import ProtocolConfig
from poe.sim.cluster import SimCluster, Workload
from poe.sim.network import LinkFaults


def make(n=4, mode="ts", seed=1, clients=8, workload=None, faults=None, crypto="fake", **cfg):
    config = ProtocolConfig(n=n, mode=mode, **cfg)
    return SimCluster(config, clients=clients, seed=seed, crypto=crypto, faults=faults,
                      workload=workload or Workload())


def assert_safe(result):
    assert result.violations == [], result.violations


def assert_identical(sim, replicas, transferred=()):
    """Same executed prefix, same ledger head, same state digest, same ledger entries (a
    replica in ``transferred`` took a snapshot by state transfer: its ledger has a gap, the
    checker compares the entries it has)."""
    reps = [sim.replicas[r] for r in replicas]
    assert len({r.k_exec for r in reps}) == 1, [r.status_line() for r in reps]
    assert len({r.head for r in reps}) == 1
    assert len({r.kv.state_digest() for r in reps}) == 1
    ledgers = [sim.checker.ledgers[r] for r in replicas if r not in transferred]
    assert all(ledger == ledgers[0] for ledger in ledgers)
    assert len(ledgers[0]) == reps[0].k_exec


@pytest.mark.parametrize("mode", ["ts", "mac"])
@pytest.mark.parametrize("n", [4, 7, 16])
def test_ten_thousand_requests_identical_everywhere(n, mode):
    sim = make(n, mode)
    result = sim.run(10_000)
    assert_safe(result)
    assert result.requests == 10_000 and result.outcome_unknown == 0
    assert_identical(sim, range(n))
    # every completed message was proven by nf distinct replicas
    assert all(len(c.replicas) >= sim.config.nf for _, c in sim.completions)


@pytest.mark.parametrize("mode", ["ts", "mac"])
@pytest.mark.parametrize("n", [4, 7])
def test_f_crashed_backups_do_not_stop_progress(n, mode):
    sim = make(n, mode)
    crashed = list(range(n - sim.config.f, n))
    for r in crashed:
        sim.crash(r)
    result = sim.run(5_000)
    assert_safe(result)
    assert result.requests == 5_000
    assert_identical(sim, [r for r in range(n) if r not in crashed])


def test_backups_crashing_mid_run_do_not_stop_progress():
    sim = make(7, "ts")
    sim.at(0.01, lambda _: sim.crash(5))
    sim.at(0.02, lambda _: sim.crash(6))
    result = sim.run(6_000)
    assert_safe(result)
    assert result.requests == 6_000
    assert_identical(sim, range(5))


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_loss_duplication_reordering_are_safe_and_progress_resumes(mode):
    faults = LinkFaults(loss=0.08, duplicate=0.08, jitter_s=0.004)
    sim = make(4, mode, seed=5, faults=faults, retransmit_timeout_s=0.2,
               workload=Workload(retry_timeout_s=0.5))
    sim.at(2.0, lambda _: sim.net.set_faults(LinkFaults()))     # the faults stop
    result = sim.run(4_000, time_limit_s=120)
    assert_safe(result)
    assert result.requests == 4_000 and result.outcome_unknown == 0
    assert result.network["lost"] > 0 and result.network["duplicated"] > 0
    sim.run_for(5.0)                                           # stragglers catch up by FETCH
    assert_safe(sim.finish())
    # every replica holds the same state: a replica that fell behind a stable checkpoint
    # caught up by state transfer (§5.5), the others by FETCH
    transferred = [i for i, r in enumerate(sim.replicas) if r.stats["state-transfers"]]
    assert_identical(sim, range(4), transferred)


def test_partitioned_backup_catches_up_after_heal():
    # no checkpoint can stabilise without replica 3 during the run (K = 256), so it can
    # catch up by FETCH alone; beyond a stable checkpoint it needs state transfer (§5.5)
    sim = make(4, "ts", retransmit_timeout_s=0.05, window=512, checkpoint_period=256)
    sim.net.isolate(3, range(4 + 8))
    sim.start(3_000)
    sim.run_for(0.02)
    assert sim.replicas[3].k_exec == 0 and sim.replicas[0].k_exec > 5
    sim.net.heal()
    result = sim.run(3_000)          # traffic after the heal tells replica 3 it is behind
    assert_safe(result)
    sim.run_for(1.0)
    assert_safe(sim.finish())
    assert sim.replicas[3].stats["fetch-adopted"] > 0
    assert_identical(sim, range(4))


def test_checkpoints_stabilise_and_the_window_slides():
    sim = make(4, "ts", checkpoint_period=4, window=8, batch_size=20)
    result = sim.run(8_000)
    assert_safe(result)
    for r in sim.replicas:
        stable = r.checkpoints.stable.seq
        assert stable >= 4 and stable % 4 == 0
        assert r.window.low == stable and r.kv.final_seq == stable
        assert r.k_exec - stable <= 8
        assert r.window.used() <= 8
        assert len(r.block_hashes) <= 8 + 1
        assert r.checkpoints.pending() <= 2 * 2       # only checkpoints inside the window
        assert len(r.checkpoints.stable.signatures) >= sim.config.nf
    assert len(sim.checker.stable) >= 4


def test_full_window_holds_the_primary_back_then_it_resumes():
    sim = make(4, "ts", checkpoint_period=2, window=4, batch_size=10,
               retransmit_timeout_s=0.05)
    sim.filter = lambda src, dst, data: codec.peek(data)[0] == codec.CHECKPOINT
    sim.start(2_000)
    sim.run_for(0.3)
    primary = sim.replicas[0]
    assert primary.stats["window-full"] > 0
    assert primary.next_k - 1 == primary.window.high == 4      # stalled at the high mark
    assert primary.k_exec == 4 and primary.window.low == 0
    assert sim.result.requests < 2_000
    sim.filter = None                                           # checkpoints flow again
    result = sim.run()
    assert_safe(result)
    assert result.requests >= 2_000
    assert primary.window.low > 0 and primary.next_k - 1 > 4


def test_duplicated_and_replayed_requests_execute_once():
    # 2 clients x 1,500 request ids: replays of their oldest ~470 ids fall below the kv's
    # exactly-once window (kv.WINDOW = 1,024 ids), the others inside it
    requests = []
    sim = make(4, "ts", clients=2, reply_cache_size=64, faults=LinkFaults(duplicate=0.3))
    sim.tap = lambda src, dst, data: requests.append(data) if src >= 4 else None
    result = sim.run(3_000)
    assert_safe(result)
    sim.tap = None
    batches = result.batches
    rng = random.Random(3)
    for data in rng.sample(requests, 200):                       # replays, to every replica
        for r in range(4):
            sim.inject(r, data, delay=rng.random() * 0.1)
    sim.run_for(2.0)
    final = sim.finish()
    assert_safe(final)                         # the checker fails on any double execution
    stats = final.stats
    assert stats["reply-from-cache"] > 0       # answered from the reply cache
    assert final.drops["request-executed-unanswered"] > 0    # in the window: never again
    assert final.batches > batches             # below it (STALE) were re-proposed ...
    assert_identical(sim, range(4))            # ... and executed as deterministic no-ops


def test_garbage_bytes_are_counted_and_the_cluster_keeps_serving():
    sim = make(4, "mac")
    rng = random.Random(9)
    for i in range(400):
        sim.inject(i % 4, rng.randbytes(rng.randrange(0, 300)), delay=i * 1e-5)
    result = sim.run(3_000)
    assert_safe(result)
    assert result.requests == 3_000
    assert result.drops["malformed"] == 400


def test_client_deadline_gives_outcome_unknown_and_never_hangs():
    sim = make(4, "ts", clients=2, workload=Workload(outstanding=2, deadline_s=3.0,
                                                     retry_timeout_s=0.5))
    sim.crash(1)
    sim.crash(2)                                # more than f: nothing can be certified
    result = sim.run(40, time_limit_s=60)
    assert result.requests == 0
    assert result.outcome_unknown == 4
    assert 3.0 <= result.sim_time_s < 10.0
    assert all(not c.pending for c in sim.clients)
    assert sum(c.stats["retransmitted"] for c in sim.clients) >= 4


def test_runs_are_reproducible_from_the_seed():
    def figures(seed):
        sim = make(4, "ts", seed=seed, faults=LinkFaults(loss=0.02, jitter_s=0.002))
        r = sim.run(2_000)
        return (r.events, r.sim_time_s, dict(r.network), sim.replicas[0].head, r.batches)

    assert figures(11) == figures(11)
    assert figures(11) != figures(12)


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_real_crypto(mode):
    sim = make(4, mode, crypto="real", clients=4)
    result = sim.run(1_000)
    assert_safe(result)
    assert result.requests == 1_000
    assert_identical(sim, range(4))
