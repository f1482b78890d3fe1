"""The Prometheus metrics endpoint of one replica (``replica.metrics_port``; replica i listens
on metrics_port + i).

What it is for: a collector that reads the replica's own counters when Prometheus scrapes
(nothing is counted twice, nothing costs anything between scrapes), plus two histograms the
loop feeds: the duration of a loop turn and of the store commit. Served by
``prometheus_client`` on a daemon thread from a private registry.

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

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LOOP_BUCKETS = (1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)


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


class Metrics:
    """Start with ``Metrics(runtime, host, port)``; the loop calls ``turn`` / ``commit``."""

    def __init__(self, runtime, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(runtime))
        self.loop = Histogram("poe_loop_turn_seconds", "duration of one event-loop turn",
                              buckets=LOOP_BUCKETS, registry=self.registry)
        self.commit = Histogram("poe_store_commit_seconds",
                                "duration of the per-turn store commit (fsync included)",
                                buckets=LOOP_BUCKETS, registry=self.registry)
        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        self.server.shutdown()
