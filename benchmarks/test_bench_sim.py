"""Simulated cluster throughput: requests completed per wall-clock second (issue #4).

n = 4, batch 100, one process on one core: four replicas, their clients, the simulated
network and the safety checkers all share it, so this is the protocol's whole Python cost
per request. ``ops_per_message`` is how many requests a client signs as one message
(PROTOCOL.md §1.5). The figure is in ``extra_info["requests_per_second"]``.
"""
import pytest

from poe.protocol.config import ProtocolConfig
from poe.sim.cluster import SimCluster, Workload

CASES = [
    ("fake", "ts", 10, 20_000),
    ("fake", "mac", 10, 20_000),
    ("fake", "ts", 1, 5_000),
    ("real", "ts", 10, 2_000),
    ("real", "mac", 10, 2_000),
]


@pytest.mark.parametrize("crypto, mode, ops_per_message, requests", CASES)
def test_sim_cluster_throughput(benchmark, crypto, mode, ops_per_message, requests):
    benchmark.group = "sim-cluster-n4-batch100"
    config = ProtocolConfig(n=4, mode=mode, batch_size=100)
    workload = Workload(ops_per_message=ops_per_message, outstanding=max(1, 40 // ops_per_message))

    def setup():       # key generation and the YCSB load phase are not measured
        sim = SimCluster(config, clients=8, seed=1, crypto=crypto, workload=workload,
                         check_requests=False)
        return (sim,), {}

    def run(sim):
        return sim.run(requests)

    result = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    assert result.ok and result.requests >= requests
    benchmark.extra_info["requests"] = result.requests
    benchmark.extra_info["requests_per_second"] = round(result.throughput_wall())
    benchmark.extra_info["batches_per_replica"] = result.batches // 4
