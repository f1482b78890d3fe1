"""The /metrics collector (poe/runtime/metrics.py) over a real PoE replica object and a fake
runtime: drops by reason, by authenticated sender (issue 14), and the transport's drops."""
from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from poe._core import codec
from poe.crypto.base import replica as replica_party
from poe.crypto.fake import FakeCrypto
from poe.protocol.config import ProtocolConfig
from poe.protocol.registry import make_replica
from poe.runtime.metrics import _Collector, transport_drop_reason


def _samples(runtime) -> dict[str, list[tuple[dict, float]]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(runtime))
    text = generate_latest(registry).decode()
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _runtime(replica, transport_stats: Counter):
    return SimpleNamespace(id=replica.id, replica=replica, counters=Counter(), timers=[],
                           transport=SimpleNamespace(stats=transport_stats))


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
