"""The /metrics collector (poe/runtime/metrics.py) over a real PoE replica object and a fake
runtime: drops by reason, by authenticated sender (issue 14), and the transport's drops; the
replica label on every series (the process series included), peer connectivity and the
batch latency histogram, also through a running endpoint."""
from __future__ import annotations

import time
from collections import Counter
from types import SimpleNamespace
from urllib.request import urlopen

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from poe._core import codec
from poe.crypto.base import replica as replica_party
from poe.crypto.fake import FakeCrypto
from poe.protocol.config import ProtocolConfig
from poe.protocol.registry import make_replica
from poe.runtime.metrics import Metrics, _Collector, make_registry, transport_drop_reason


def _samples(runtime) -> dict[str, list[tuple[dict, float]]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(runtime))
    text = generate_latest(registry).decode()
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _runtime(replica, transport_stats: Counter, peer_up=None):
    n = replica.config.n
    return SimpleNamespace(id=replica.id, replica=replica, counters=Counter(), timers=[],
                           peers=[p for p in range(n) if p != replica.id],
                           transport=SimpleNamespace(stats=transport_stats,
                                                     peer_up=peer_up or [False] * n))


def _parse(text: str) -> dict[str, list[tuple[dict, float]]]:
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_drops_by_reason_by_sender_and_transport_drops_are_exported():
    fc = FakeCrypto(4, 4, 11, purpose="test")
    r = make_replica(ProtocolConfig(n=4, mode="ts"), 1, fc.suite(replica_party(1)))
    # an authenticated FETCH from replica 2 far beyond the window: a drop counted against 2
    fetch = codec.encode_fetch(2, 10 ** 6, bytes(32))
    sealed = codec.seal(fetch, fc.suite(replica_party(2)).macs.mac(replica_party(1), fetch))
    r.on_message(sealed, 0.0)
    # forged frames in replica 0's name: counted by reason only
    r.on_message(sealed[:-32] + bytes(32), 0.0)                          # bad MAC
    r.on_message(codec.encode_certify(0, 0, 1, bytes(32), b"\x07", bytes(96)), 0.0)
    r.on_message(b"no frame at all", 0.0)
    authenticated = [reason for reason in r.drops
                     if reason not in ("bad-mac", "wrong-auth", "malformed")]
    assert len(authenticated) == 1
    transport = Counter({"dropped-hello-bad-mac": 5, "oversized": 2, "dropped-bad-envelope": 1,
                         "send-dropped-r3": 4, "peer-port-handshake-failed": 1,
                         "in-messages": 100, "control": 7, "peer-port-up": 3})
    samples = _samples(_runtime(r, transport))

    dropped = {s[0]["reason"]: s[1] for s in samples["poe_messages_dropped_total"]}
    assert all(s[0]["replica"] == "1" for s in samples["poe_messages_dropped_total"])
    assert dropped == {
        "bad-mac": 1, "wrong-auth": 1, "malformed": 1, authenticated[0]: 1,
        "transport-dropped-hello-bad-mac": 5, "transport-oversized": 2,
        "transport-dropped-bad-envelope": 1, "transport-send-dropped-r3": 4,
        "transport-peer-port-handshake-failed": 1,
    }
    by_sender = samples["poe_messages_dropped_by_sender_total"]
    assert by_sender == [({"replica": "1", "sender": "2", "reason": authenticated[0]}, 1.0)]


def test_the_by_sender_family_is_bounded_and_a_subset_of_the_drops():
    fc = FakeCrypto(4, 4, 11, purpose="test")
    r = make_replica(ProtocolConfig(n=4, mode="mac"), 0, fc.suite(replica_party(0)))
    for sender in (1, 2, 3):
        for k in range(50):
            fetch = codec.encode_fetch(sender, 10 ** 6 + k, bytes(32))
            tag = fc.suite(replica_party(sender)).macs.mac(replica_party(0), fetch)
            r.on_message(codec.seal(fetch, tag), 0.0)
    samples = _samples(_runtime(r, Counter()))
    by_sender = samples["poe_messages_dropped_by_sender_total"]
    assert len(by_sender) <= 3 * len(r.drops)
    assert {labels["sender"] for labels, _ in by_sender} == {"1", "2", "3"}
    total = {s[0]["reason"]: s[1] for s in samples["poe_messages_dropped_total"]}
    for labels, value in by_sender:
        assert value <= total[labels["reason"]]
    assert sum(v for _, v in by_sender) == 150


def test_transport_counters_that_are_no_drops_stay_out():
    assert transport_drop_reason("in-messages") is None
    assert transport_drop_reason("control") is None
    assert transport_drop_reason("client-routes-learned") is None
    assert transport_drop_reason("r2-up") is None
    assert transport_drop_reason("dropped-control-unknown") == "transport-dropped-control-unknown"
    assert transport_drop_reason("monitor-garbage") == "transport-monitor-garbage"


def _replica(me: int = 1, mode: str = "mac"):
    fc = FakeCrypto(4, 4, 11, purpose="test")
    return make_replica(ProtocolConfig(n=4, mode=mode), me, fc.suite(replica_party(me)))


def test_every_series_carries_the_replica_label_process_series_included():
    r = _replica(2)
    r.on_message(b"no frame at all", 0.0)                     # one drop, so a drop series
    registry, histograms = make_registry(_runtime(r, Counter({"oversized": 1})))
    histograms["loop"].observe(0.001)
    samples = _parse(generate_latest(registry).decode())
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_max_fds", "poe_loop_turn_seconds_count",
                 "poe_store_commit_seconds_bucket", "poe_batch_latency_seconds_sum",
                 "poe_view", "poe_executed_seq", "poe_stable_checkpoint", "poe_peer_up",
                 "poe_messages_dropped_total"):
        assert name in samples, name
    for name, series in samples.items():
        for labels, _ in series:
            assert labels.get("replica") == "2", (name, labels)
    assert samples["process_resident_memory_bytes"][0][1] > 1e6
    assert samples["poe_loop_turn_seconds_count"] == [({"replica": "2"}, 1.0)]


def test_peer_connectivity_is_one_gauge_per_peer():
    r = _replica(1)
    samples = _samples(_runtime(r, Counter(), peer_up=[True, False, False, True]))
    up = {labels["peer"]: value for labels, value in samples["poe_peer_up"]}
    assert up == {"0": 1.0, "2": 0.0, "3": 1.0}                 # never itself


class _Turn:
    """A runtime around a real replica whose slot ``seq`` was first heard of at ``at``."""

    def __init__(self, seq: int, at: float) -> None:
        self.replica = _replica(1)
        self.replica._slot(seq, at)
        self.runtime = _runtime(self.replica, Counter())


def test_batch_latency_is_observed_from_the_slot_first_heard_of():
    seen = time.monotonic() - 0.3
    turn = _Turn(5, seen)
    registry, histograms = make_registry(turn.runtime)
    metrics = SimpleNamespace(runtime=turn.runtime, latency=histograms["latency"])
    Metrics.executed(metrics, 5)
    Metrics.executed(metrics, 10 ** 6)            # outside the window: not observed
    samples = _parse(generate_latest(registry).decode())
    assert samples["poe_batch_latency_seconds_count"] == [({"replica": "1"}, 1.0)]
    (_, total), = samples["poe_batch_latency_seconds_sum"]
    assert 0.3 <= total < 5.0
    buckets = {labels["le"]: v for labels, v in samples["poe_batch_latency_seconds_bucket"]}
    assert buckets["0.25"] == 0.0 and buckets["0.5"] == 1.0 and buckets["+Inf"] == 1.0


def test_a_running_endpoint_serves_the_series_over_http():
    turn = _Turn(3, time.monotonic())
    metrics = Metrics(turn.runtime, "127.0.0.1", 0)
    try:
        metrics.executed(3)
        metrics.loop.observe(0.002)
        port = metrics.server.server_port
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            samples = _parse(reply.read().decode())
    finally:
        metrics.close()
    assert samples["poe_batch_latency_seconds_count"] == [({"replica": "1"}, 1.0)]
    assert samples["poe_loop_turn_seconds_count"] == [({"replica": "1"}, 1.0)]
    assert samples["process_open_fds"][0][0] == {"replica": "1"}
