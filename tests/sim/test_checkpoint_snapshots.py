"""Checkpoint snapshots are captured, not encoded, at each checkpoint (issue 15): whenever
one is asked for (a peer's STATE-REQ, the store at a stable checkpoint), it must be exactly
the state the replica checkpointed, even though the replica executed on since."""
from poe._core.kv import KVStore

from poe._core import codec
from poe.protocol.config import ProtocolConfig
from poe.sim.cluster import SimCluster, Workload


def test_held_snapshots_are_the_checkpointed_states_after_further_execution():
    config = ProtocolConfig(n=4, mode="mac", checkpoint_period=4, window=16, batch_size=10,
                            retransmit_timeout_s=0.1)
    sim = SimCluster(config, clients=4, seed=2,
                     workload=Workload(retry_timeout_s=0.2, retry_timeout_max_s=1.0,
                                       deadline_s=60.0))
    sim.start(3_000)
    checked = ahead = 0
    for _ in range(12):
        sim.run_for(0.004)
        for r in sim.replicas:
            peer = (r.id + 1) % 4                  # our CHECKPOINT votes, as sent to a peer
            voted = {k: codec.decode(r._sealed_for(frame, peer)).state_digest
                     for k, frame in r.own_checkpoints.items()}
            for k in sorted(r.snapshots):
                lazy = not isinstance(r.snapshots[k], bytes)
                data = r.snapshot_bytes(k)
                assert isinstance(data, bytes) and r.snapshot_bytes(k) is data   # kept
                store = KVStore.restore(data)
                assert store.executed_seq == k
                if k in voted:
                    assert store.state_digest() == voted[k]
                if k == r.checkpoints.stable.seq:
                    assert store.state_digest() == r.checkpoints.stable.state_digest
                checked += 1
                ahead += lazy and r.k_exec > k
    assert checked >= 20 and ahead >= 5
    result = sim.run(3_000, time_limit_s=60.0)
    assert result.violations == [], result.violations
