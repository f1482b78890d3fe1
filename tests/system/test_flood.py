"""A keyless flood against a running 4-replica cluster (issue 14: one faulty party cannot
stall the cluster), real processes on 127.0.0.1.

While ``poe bench`` keeps a closed-loop load on the cluster, tests/system/flooder.py (a
process of its own holding no key, only the replicas' addresses) sends 100,000 forged
CERTIFY / CHECKPOINT / PROPOSE / SUPPORT / REQUEST frames and garbage to every replica's
peer port, under the identities of the other replicas and its own, and to its client port,
then forged HELLOs on a connection of their own; about 50,000 frames a second (paced over
SPREAD_S, at nice 19: the attacker's CPU is not the cluster's). Asserted:
every frame was sent; no replica leaves view 0 or starts a view change; every forged message
shows in ``/metrics`` as a drop: the first frame of each flooding connection as a cheap
protocol drop (``malformed``, ``unknown-sender``, ``wrong-auth``, ``bad-mac``,
``bad-client-signature``), which quarantines the connection, and every later message of it
unread as ``transport-dropped-quarantined`` (the first forged HELLO as
``transport-dropped-hello-bad-mac``); none against a replica
(``poe_messages_dropped_by_sender``); the load's requests all proven.

Throughput: the primary's executed requests are sampled from ``/metrics``; A is the rate in
the 2.5 s before the flood, B the rate from the flood's first frame until every replica has
counted every forged message sent to it (the time the flood occupies the cluster). The
criterion B >= 0.70 A is checked last; see the note at the check for what it measures on
a 2-core machine.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.request import urlopen

import pytest
from syshelpers import keygen, poe_argv

from poe.crypto.keyfile import load_cluster
from poe.runtime.procs import free_port_range

FRAMES = 100_000
HELLOS = 100
RATIO = 0.70
# what a correct replica's traffic costs another in a normal run: votes and checkpoints that
# arrive after the position moved on, or twice (a retransmission)
LATE_TRAFFIC = {"support-outside-window", "support-late", "support-duplicate",
                "support-wrong-view", "checkpoint-old", "checkpoint-duplicate",
                "propose-duplicate", "certify-wrong-view"}
LOAD_S = 16          # the benchmark's measured seconds: before, during and after the flood
SPREAD_S = 2.0        # the 100,000 frames paced over this long: ~50,000 forged frames/s
BASELINE_S = 2.5
SAMPLE_S = 0.05
FLOODER = Path(__file__).with_name("flooder.py")
FORGED = ("malformed", "unknown-sender", "wrong-auth", "bad-mac", "bad-client-signature")
# what the flood's messages are counted under besides FORGED: every message of a quarantined
# connection, frames left of the message that quarantined it, the forged HELLOs
FLOOD_TRANSPORT = ("dropped-quarantined", "dropped-after-unauthenticated",
                   "dropped-hello-bad-mac", "dropped-hello-stale",
                   "dropped-hello-unknown-client")


def _scrape(port: int) -> str:
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def _value(text: str, name: str, **labels) -> float:
    """One sample of the exposition ``text`` (0 if absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name):line.rindex("}")]))
        if got == {k: str(v) for k, v in labels.items()}:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _forged_drops(text: str, i: int) -> float:
    return sum(_value(text, "poe_messages_dropped_total", replica=i, reason=r) for r in FORGED)


def _flood_drops(text: str, i: int) -> float:
    """Every drop a flood message can be counted under: one per message it sent (the first
    message of each connection is a single frame, the flooder sees to it)."""
    return _forged_drops(text, i) + sum(
        _value(text, "poe_messages_dropped_total", replica=i, reason="transport-" + r)
        for r in FLOOD_TRANSPORT)


class _Sampler(threading.Thread):
    """Scrapes every replica's /metrics each SAMPLE_S: (time, executed at the primary,
    flood drops per replica)."""

    def __init__(self, port: int, n: int) -> None:
        super().__init__(daemon=True)
        self.port, self.n = port, n
        self.samples: list[tuple[float, float, list[float]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            t = time.time()
            try:
                texts = [_scrape(self.port + i) for i in range(self.n)]
            except OSError:
                continue
            self.samples.append((t, _value(texts[0], "poe_requests_executed_total", replica=0),
                                 [_flood_drops(x, i) for i, x in enumerate(texts)]))
            self.done.wait(SAMPLE_S)

    def rate(self, start: float, end: float) -> tuple[float, float]:
        """(executed requests per second, seconds) between the last sample at or before
        ``start`` and the first at or after ``end``."""
        before = [s for s in self.samples if s[0] <= start][-1]
        after = next(s for s in self.samples if s[0] >= end)
        return (after[1] - before[1]) / (after[0] - before[0]), after[0] - before[0]


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_a_keyless_flood_changes_no_view_and_shows_in_metrics(tmp_path, local_cluster, mode):
    started = time.monotonic()
    config = keygen(tmp_path, mode=mode)
    port = free_port_range(4)
    cluster = local_cluster(config, settings=(f"replica.metrics_port={port}",))
    cluster.start_all()
    replicas = load_cluster(config.parent / "cluster.toml").replicas
    sampler = _Sampler(port, 4)
    sampler.start()
    out = tmp_path / "bench.json"
    bench = subprocess.Popen(
        poe_argv("bench", "--config", str(config), "--warmup", "1", "--duration", str(LOAD_S),
                 "--clients", "4", "--outstanding", "2", "--json", str(out)),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    counts = tmp_path / "flood.json"
    try:
        # the load runs; BASELINE_S of it is measured before the flood starts
        deadline = time.monotonic() + 60
        while not (sampler.samples and sampler.samples[-1][1] > 0):
            assert time.monotonic() < deadline and bench.poll() is None, "no load"
            time.sleep(0.1)
        time.sleep(1.0 + BASELINE_S)
        flood = subprocess.run(
            ["nice", "-n", "19", sys.executable, str(FLOODER), "--spread", str(SPREAD_S),
             "--peer", ",".join(f"{r.host}:{r.replica_port}" for r in replicas),
             "--client", ",".join(f"{r.host}:{r.client_port}" for r in replicas),
             "--frames", str(FRAMES), "--hellos", str(HELLOS), "--mode", mode,
             "--out", str(counts)],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
        assert flood.returncode == 0, flood.stderr[-3000:]
        sent = json.loads(counts.read_text())
        # the flood is over for the cluster once every replica counted every forged message
        expected = [m + HELLOS for m in sent["messages_per_replica"]]
        deadline = time.monotonic() + 60
        while True:
            last = sampler.samples[-1]
            if all(last[2][i] >= expected[i] for i in range(4)) \
                    and last[0] > sent["start"]:
                absorbed = last[0]
                break
            assert time.monotonic() < deadline, (last, expected)
            time.sleep(0.05)
        assert bench.poll() is None, "the load ended before the flood was absorbed"
        _, err = bench.communicate(timeout=120)
    finally:
        sampler.done.set()
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait(30)
    sampler.join(30)
    assert bench.returncode == 0, err[-3000:]
    texts = [_scrape(port + i) for i in range(4)]

    # 100,000 forged frames really went out, spread over the four replicas
    assert sent["frames"] == FRAMES and sent["failed_frames"] == 0
    assert sum(sent["per_replica"]) == FRAMES and min(sent["per_replica"]) == FRAMES // 4
    assert sent["hellos"] == [HELLOS] * 4
    for i, text in enumerate(texts):
        # the view did not change, nobody even asked for it
        assert _value(text, "poe_view", replica=i) == 0, text
        assert _value(text, "poe_view_changes_started_total", replica=i) == 0
        assert _value(text, "poe_views_installed_total", replica=i) == 0
        # every forged message dropped and counted: one frame per flooding connection at
        # the protocol's cheap checks (each is a single frame), which quarantines it; every
        # later message of the connection unread; the first forged HELLO of its connection
        # as a bad MAC, which quarantines that one
        connections = sent["messages_per_socket"][i]
        assert all(sent["first_message_frames"][i][name] == 1 for name in connections)
        assert _forged_drops(text, i) == len(connections)
        assert _value(text, "poe_messages_dropped_total", replica=i,
                      reason="transport-dropped-hello-bad-mac") == 1
        assert _value(text, "poe_messages_dropped_total", replica=i,
                      reason="transport-dropped-quarantined") \
            == sent["messages_per_replica"][i] - len(connections) + HELLOS - 1
        assert _flood_drops(text, i) == expected[i]
        # ... and none counted against a replica: the per-sender family only holds the
        # drops of a normal run (late or repeated votes, old CHECKPOINTs: their number
        # grows with the load, so the reasons are checked, not a count)
        by_sender = [line for line in text.splitlines()
                     if line.startswith("poe_messages_dropped_by_sender_total{")]
        assert not any(f'reason="{r}"' in line for line in by_sender for r in FORGED)
        reasons = {line.split('reason="', 1)[1].split('"', 1)[0] for line in by_sender}
        assert reasons <= LATE_TRAFFIC, reasons - LATE_TRAFFIC
    results = json.loads(out.read_text())["results"]
    assert results["outcome_unknown"] == 0
    assert results["proven_requests"] == results["measured_requests"] > 0

    a, a_s = sampler.rate(sent["start"] - BASELINE_S, sent["start"])
    b, b_s = sampler.rate(sent["start"], absorbed)
    figures = (f"mode {mode}: A {a:.0f} requests/s over {a_s:.2f} s before the flood, B "
               f"{b:.0f} requests/s over {b_s:.2f} s from its first frame until all "
               f"{FRAMES} were dropped (sent in {sent['end'] - sent['start']:.2f} s), "
               f"B/A {b / a:.2f}; bench {results['throughput_rps']:.0f} requests/s over "
               f"{LOAD_S} s; "
               f"test {time.monotonic() - started:.0f} s")
    print(figures)
    records = cluster.stop()
    assert all(r["status"] == 0 for r in records.values())
    for i, record in records.items():
        # quarantined: the flooder's peer connections (as every other replica and as itself)
        # and its two client connections (frames, HELLOs); nothing else
        transport = record["exit"]["transport"]
        assert transport["peer-connections-quarantined"] == len(
            [name for name in sent["messages_per_socket"][i] if name.startswith("peer:")])
        assert transport["client-connections-quarantined"] == 2
    assert a > 0
    # The flooder runs at nice 19 and paces its 100,000 frames over SPREAD_S: on this 2-core
    # machine it shares the cores with the cluster and the load, which an attacker on
    # another host does not; unpaced, its own 30-60 ms burst of sends fell inside a B
    # window of 0.06-0.25 s and B/A swung from 0.33 to 1.07 (decision 72, issue 14 note).
    assert b >= RATIO * a, f"throughput during the flood below {RATIO:.0%} of before: {figures}"
