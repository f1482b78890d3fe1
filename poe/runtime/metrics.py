"""The Prometheus metrics endpoint of one replica (``replica.metrics_port``; replica i listens
on metrics_port + i).

What it is for: a collector that reads the replica's own counters when Prometheus scrapes
(nothing is counted twice, nothing costs anything between scrapes), three histograms the
loop feeds (the duration of a loop turn, of the store commit, and the latency of an
executed batch), and the process's CPU, memory and file descriptors (prometheus_client's
ProcessCollector). Served by ``prometheus_client`` on a daemon thread from a private
registry. Every series carries ``replica="<id>"`` (the process series too), so series of
several replicas stay apart whatever the scrape configuration.

Batch latency (``poe_batch_latency_seconds``): for each batch this replica executes, the
time from when it first heard of the batch's sequence number (the primary: when it proposed
it; a backup: its PROPOSE, or the first vote for it, arriving) to its execution. Both ends
are read from the monotonic clock the loop hands the protocol (the start: the loop turn
that delivered the message, ``Slot.seen_at``), so it is the ordering part of every request
of that batch: the client's network hop and its wait in the primary's queue are not in it
(the client's own figure, ``poe bench``, has them). One observation per batch, not per
request; batches re-executed while recovering from the store are not observed.

Peers (``poe_peer_up{replica, peer}``): 1 while this replica's connection to that peer is
up, from the ZeroMQ monitor events the loop already handles (the same events as the
``peer-up`` / ``peer-down`` log lines; ``ReplicaTransport.peer_up``).

Drops: ``poe_messages_dropped{replica, reason}`` counts every drop, the protocol's by its
reason and the transport's as ``transport-<counter>`` (forged or malformed HELLOs, oversized
messages, bad envelopes, full queues, failed handshakes); ``poe_messages_dropped_by_sender
{replica, sender, reason}`` breaks down the protocol drops of frames whose MAC verified by
the replica that sent them (issue 14: a forged frame never names anyone), so it is a subset
of the first and at most n x reasons series.

Must never: write to the replica or the runtime (the scrape thread only reads: it copies
the counters, which are dicts, in one C-level call under the GIL), block the event loop, or
expose anything secret.
"""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LOOP_BUCKETS = (1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)
LATENCY_BUCKETS = (1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def transport_drop_reason(key: str) -> str | None:
    """The ``poe_messages_dropped`` reason of a transport counter, or None if it counts no
    drop: every ``dropped-*`` / ``send-dropped-r<i>`` counter, oversized messages, garbage
    from a socket monitor and connections whose ZMTP handshake failed (a peer speaking
    garbage at the socket level), prefixed ``transport-``."""
    if "drop" in key or key in ("oversized", "malformed", "monitor-garbage") \
            or key.endswith("-handshake-failed"):
        return "transport-" + key
    return None


class _Collector:
    def __init__(self, runtime) -> None:
        self.rt = runtime

    def collect(self):
        rt = self.rt
        r = rt.replica
        labels = ["replica"]
        me = [str(rt.id)]
        stats = dict(r.stats)
        drops = dict(r.drops)
        senders = dict(getattr(r.drops, "by_sender", None) or {})
        runtime = dict(rt.counters)
        transport = dict(rt.transport.stats) if rt.transport is not None else {}
        peer_up = list(rt.transport.peer_up) if rt.transport is not None else []

        def counter(name, doc, value):
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric(me, value)
            return c

        def gauge(name, doc, value):
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(me, value)
            return g

        yield counter("poe_requests_executed", "requests executed (speculatively)",
                      stats.get("executed-requests", 0))
        yield counter("poe_batches_executed", "batches executed (speculatively)",
                      stats.get("executed-batches", 0))
        yield counter("poe_view_changes_started", "VC-REQUESTs sent",
                      stats.get("view-changes-started", 0))
        yield counter("poe_views_installed", "new views installed",
                      stats.get("views-installed", 0))
        yield counter("poe_rollbacks", "rollbacks of speculative execution",
                      runtime.get("rollbacks", 0))
        yield counter("poe_state_transfers", "state transfers adopted",
                      runtime.get("state-transfers", 0))
        yield gauge("poe_view", "current view", r.view)
        yield gauge("poe_executed_seq", "highest executed sequence number", r.k_exec)
        yield gauge("poe_stable_checkpoint", "sequence number of the stable checkpoint",
                    r.checkpoints.stable.seq)
        yield gauge("poe_window_use", "fraction of the window between the low watermark and "
                    "the highest sequence number seen",
                    min(1.0, max(0, r.max_seen - r.window.low) / r.config.window))
        peers = GaugeMetricFamily("poe_peer_up", "1 while the connection to that replica is "
                                  "up, else 0", labels=["replica", "peer"])
        for p in rt.peers:
            peers.add_metric(me + [str(p)], 1 if p < len(peer_up) and peer_up[p] else 0)
        yield peers
        queues = GaugeMetricFamily("poe_queue_depth", "queued items by queue",
                                   labels=["replica", "queue"])
        queues.add_metric(me + ["pending-requests"], len(r.pending))
        queues.add_metric(me + ["ready-batches"], len(r.ready))
        queues.add_metric(me + ["timers"], len(rt.timers))
        yield queues
        dropped = CounterMetricFamily("poe_messages_dropped", "messages dropped, by reason",
                                      labels=["replica", "reason"])
        for reason, n in sorted(drops.items()):
            dropped.add_metric(me + [reason], n)
        for key, n in sorted(transport.items()):
            reason = transport_drop_reason(key)
            if reason is not None:
                dropped.add_metric(me + [reason], n)
        yield dropped
        # a subset of the protocol drops above (not to be added to them): those of frames
        # whose MAC verified, by the replica that sent them; at most n x reasons series
        by_sender = CounterMetricFamily(
            "poe_messages_dropped_by_sender", "messages dropped after their MAC verified, by "
            "sending replica and reason (a subset of poe_messages_dropped)",
            labels=["replica", "sender", "reason"])
        for (sender, reason), n in sorted(senders.items()):
            by_sender.add_metric(me + [str(sender), reason], n)
        yield by_sender


class _ProcessCollector:
    """prometheus_client's process series (CPU seconds, resident and virtual memory, open
    and maximum file descriptors, start time) with the ``replica`` label added."""

    def __init__(self, replica_id: int) -> None:
        self.me = str(replica_id)
        self.inner = ProcessCollector(registry=None)

    def collect(self):
        for family in self.inner.collect():      # fresh families on every scrape
            family.samples = [s._replace(labels={"replica": self.me, **s.labels})
                              for s in family.samples]
            yield family


def make_registry(runtime) -> tuple[CollectorRegistry, dict[str, Histogram]]:
    """The private registry of ``runtime``'s metrics and the per-replica children of its
    histograms (``loop``, ``commit``, ``latency``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(runtime))
    registry.register(_ProcessCollector(runtime.id))
    me = str(runtime.id)
    histograms = {
        "loop": Histogram("poe_loop_turn_seconds", "duration of one event-loop turn",
                          labelnames=["replica"], buckets=LOOP_BUCKETS, registry=registry),
        "commit": Histogram("poe_store_commit_seconds",
                            "duration of the per-turn store commit (fsync included)",
                            labelnames=["replica"], buckets=LOOP_BUCKETS, registry=registry),
        "latency": Histogram("poe_batch_latency_seconds",
                             "per executed batch: seconds from this replica first hearing of "
                             "its sequence number (the primary: proposing it) to executing it",
                             labelnames=["replica"], buckets=LATENCY_BUCKETS,
                             registry=registry),
    }
    return registry, {name: h.labels(me) for name, h in histograms.items()}


class Metrics:
    """Start with ``Metrics(runtime, host, port)``; the loop calls ``loop.observe`` /
    ``commit.observe`` each turn and ``executed(seq)`` for each executed batch."""

    def __init__(self, runtime, host: str, port: int) -> None:
        self.runtime = runtime
        self.registry, histograms = make_registry(runtime)
        self.loop = histograms["loop"]
        self.commit = histograms["commit"]
        self.latency = histograms["latency"]
        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)

    def executed(self, seq: int) -> None:
        """Batch ``seq`` was just executed: observe its latency (O(1): a window look-up). A
        slot no longer in the window (a stable checkpoint of the same turn moved it) is not
        observed."""
        window = self.runtime.replica.window
        slot = window.payload(seq) if window.contains(seq) else None
        if slot is not None:
            self.latency.observe(max(0.0, time.monotonic() - slot.seen_at))

    def close(self) -> None:
        self.server.shutdown()
