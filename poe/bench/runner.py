"""The benchmark coordinator behind ``poe bench`` and ``poe cluster``.

What it is for: splitting the closed-loop clients over ``client_procs`` worker processes
(poe.bench.worker), giving them one common schedule (warm-up, then the measured window),
printing a live progress line, sampling the CPU time and resident memory of the replicas
when their process ids are known, and merging the workers' results into one record: the
full configuration, throughput, latency percentiles, proofs, outcome-unknown count, CPU time
per request and memory, ready to print as a table and to write as JSON.

Must never: leave a worker running (each is stopped in a ``finally``), report a request that
was not proven as completed, or hide a worker's failure (it becomes a ``BenchError``).
"""
from __future__ import annotations

import base64
import json
import os
import platform
import selectors
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TextIO

import numpy as np

import poe
from poe.bench.stats import latency_summary
from poe.bench.workload import WorkloadSpec
from poe.config import Config
from poe.runtime import procs


class BenchError(Exception):
    """The benchmark could not run (a worker failed, nothing connected); one line."""


@dataclass
class BenchSpec:
    workload: str = "A"
    distribution: str = "zipfian"
    theta: float = 0.99
    read_proportion: float | None = None
    clients: int = 8
    outstanding: int = 4
    ops_per_message: int = 50
    warmup_s: float = 5.0
    duration_s: float = 25.0
    client_procs: int = 1
    first_client: int = 0
    seed: int = 1
    insecure_bench: bool = False
    replica_pids: list[int] = field(default_factory=list)

    def check(self, config: Config) -> None:
        available = len(config.cluster.clients)
        if self.clients < 1 or self.outstanding < 1:
            raise BenchError("--clients and --outstanding must be at least 1")
        if self.first_client < 0 or self.first_client + self.clients > available:
            raise BenchError(f"clients {self.first_client}..{self.first_client + self.clients - 1}"
                             f" needed but {config.cluster.path} lists {available} clients; run "
                             "`poe keygen` with more --clients")
        if not 1 <= self.client_procs <= self.clients:
            raise BenchError("--client-procs must be in 1..--clients")
        if self.ops_per_message > config.protocol.batch_size:
            raise BenchError(f"--ops-per-message {self.ops_per_message} exceeds protocol."
                             f"batch_size {config.protocol.batch_size}: the primary would drop "
                             "every message")
        if self.warmup_s < 0 or self.duration_s < 1:
            raise BenchError("--warmup must be >= 0 and --duration >= 1 second")
        try:
            self.workload_spec(config).check()
        except ValueError as exc:
            raise BenchError(str(exc)) from None

    def workload_spec(self, config: Config) -> WorkloadSpec:
        return WorkloadSpec(workload=self.workload, distribution=self.distribution,
                            theta=self.theta, record_count=config.data.record_count,
                            value_size=config.data.value_size,
                            read_proportion=self.read_proportion,
                            ops_per_message=self.ops_per_message, seed=self.seed)


class _Worker:
    def __init__(self, proc, first: int, last: int) -> None:
        self.proc = proc
        self.first, self.last = first, last
        self.buffer = b""
        self.progress: dict = {}
        self.result: dict | None = None
        self.ready = False
        self.error: str | None = None


def run_bench(config: Config, overrides: list[str], spec: BenchSpec,
              progress: TextIO | None = None) -> dict:
    """Run the benchmark described by ``spec`` against the cluster of ``config``."""
    spec.check(config)
    progress = progress if progress is not None else sys.stderr
    tty = progress.isatty()
    workers: list[_Worker] = []
    sel = selectors.DefaultSelector()
    wl = spec.workload_spec(config)
    try:
        share, extra = divmod(spec.clients, spec.client_procs)
        first = spec.first_client
        for k in range(spec.client_procs):
            count = share + (1 if k < extra else 0)
            proc = procs.spawn([sys.executable, "-P", "-m", "poe.bench.worker"],
                               stdin=procs.subprocess.PIPE, stdout=procs.subprocess.PIPE,
                               stderr=None)
            w = _Worker(proc, first, first + count - 1)
            first += count
            os.set_blocking(proc.stdout.fileno(), False)
            sel.register(proc.stdout, selectors.EVENT_READ, w)
            _send(w, {"config": str(config.path), "set": list(overrides), "first": w.first,
                      "last": w.last, "workload": asdict(wl), "outstanding": spec.outstanding,
                      "insecure_bench": spec.insecure_bench})
            workers.append(w)
        connect = config.client.connect_timeout_s + 60.0      # imports and key loading too
        _pump(sel, workers, lambda: all(w.ready for w in workers), connect)
        now = time.monotonic()
        start = now + 0.2
        measure = start + spec.warmup_s
        end = measure + spec.duration_s
        pids = list(spec.replica_pids)
        cpu0: dict[int, float | None] = {}
        rss: dict[int, list[int]] = {pid: [] for pid in pids}
        machine0 = machine1 = None
        for w in workers:
            _send(w, {"start": start, "measure": measure, "end": end})
        next_line = start
        shown = False
        while any(w.result is None for w in workers):
            _pump(sel, workers, lambda: False, 0.25, strict=False)
            now = time.monotonic()
            if machine0 is None and now >= measure:
                machine0 = (procs.machine_cpu_seconds(), os.getloadavg()[0])
                cpu0 = {pid: procs.cpu_seconds(pid) for pid in pids}
            if now >= next_line and now < end + 0.5:
                next_line = now + (1.0 if tty else 5.0)
                for pid in pids:
                    if now >= measure:
                        value = procs.rss_bytes(pid)
                        if value is not None:
                            rss[pid].append(value)
                _progress_line(progress, tty, workers, now, start, measure, end)
                shown = True
            if now > end + config.client.deadline_s + 30:
                raise BenchError("workers did not report their results in time")
        cpu1 = {pid: procs.cpu_seconds(pid) for pid in pids}
        machine1 = (procs.machine_cpu_seconds(), os.getloadavg()[0])
        if shown and tty:
            progress.write("\n")
            progress.flush()
    finally:
        for w in workers:
            try:
                w.proc.stdin.close()
            except OSError:
                pass
        procs.stop_all([w.proc for w in workers], grace_s=5.0)
        sel.close()
    record = _merge(config, overrides, spec, workers, cpu0, cpu1, rss)
    _machine(record, machine0, machine1, spec.duration_s)
    return record


def _machine(record: dict, start, end, duration_s: float) -> None:
    """How busy the whole machine was during the measured window, and how much of that was
    neither the replicas nor the load generator (other tenants of a shared machine)."""
    machine = record["machine"]
    if start is None or end is None or start[0] is None or end[0] is None:
        return
    busy = end[0] - start[0]
    cpu = record["results"]["cpu_s"]
    ours = (cpu["replicas"] or 0.0) + (cpu["clients"] or 0.0)
    machine["busy_cores"] = round(busy / duration_s, 2)
    machine["other_processes_cores"] = round(max(0.0, busy - ours) / duration_s, 2) \
        if cpu["replicas"] is not None else None
    machine["loadavg_1min"] = [round(start[1], 2), round(end[1], 2)]


def _send(w: _Worker, record: dict) -> None:
    try:
        w.proc.stdin.write((json.dumps(record) + "\n").encode())
        w.proc.stdin.flush()
    except OSError:
        raise BenchError(f"worker for clients {w.first}..{w.last} exited early") from None


def _pump(sel, workers: list[_Worker], done, timeout_s: float, strict: bool = True) -> None:
    """Read the workers' lines for up to ``timeout_s`` or until ``done()``; with ``strict``
    running out of time is an error."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            if strict and not done():
                raise BenchError("the load-generator workers did not connect to the replicas in "
                                 f"{timeout_s:.0f} s (are the replicas running?)")
            return
        for key, _ in sel.select(min(left, 0.25)):
            _read(sel, key)
        if done():
            return


def _read(sel, key) -> None:
    w: _Worker = key.data
    try:
        chunk = os.read(key.fileobj.fileno(), 1 << 20)
    except BlockingIOError:
        return
    if not chunk:
        sel.unregister(key.fileobj)
        if w.result is None:
            detail = w.error or f"exited with status {w.proc.wait()}"
            raise BenchError(f"load-generator worker (clients {w.first}..{w.last}): {detail}")
        return
    w.buffer += chunk
    *lines, w.buffer = w.buffer.split(b"\n")
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        event = record.get("event")
        if event == "ready":
            w.ready = True
            if record.get("connected", 0) < 1:
                raise BenchError("no replica reachable from the load generator")
        elif event == "progress":
            w.progress = record
        elif event == "result":
            w.result = record
        elif event == "error":
            w.error = record.get("detail", "failed")
            raise BenchError(f"load-generator worker (clients {w.first}..{w.last}): {w.error}")


def _progress_line(out: TextIO, tty: bool, workers, now: float, start: float, measure: float,
                   end: float) -> None:
    done = sum(w.progress.get("completed_ops", 0) for w in workers)
    measured = sum(w.progress.get("measured_ops", 0) for w in workers)
    unknown = sum(w.progress.get("unknown", 0) for w in workers)
    if now < measure:
        phase = f"warm-up {now - start:5.1f}/{measure - start:.0f} s"
        rate = done / max(now - start, 1e-9)
    else:
        phase = f"measure {min(now, end) - measure:5.1f}/{end - measure:.0f} s"
        rate = measured / max(min(now, end) - measure, 1e-9)
    text = (f"poe bench: {phase} | {rate:10,.0f} req/s | completed {done:,} | "
            f"outcome unknown {unknown}")
    out.write(("\r" + text) if tty else (text + "\n"))
    out.flush()


def _merge(config: Config, overrides, spec: BenchSpec, workers, cpu0, cpu1, rss) -> dict:
    results = [w.result for w in workers]
    blobs = [base64.b64decode(r["latencies"]) for r in results]
    latencies = np.concatenate([np.frombuffer(b, dtype=np.float64) for b in blobs]) \
        if blobs else np.empty(0)
    measured_ops = sum(r["measured_ops"] for r in results)
    timeline = [sum(vals) for vals in zip(*[r["timeline"] for r in results])]
    throughput = measured_ops / spec.duration_s
    replica_cpu = None
    if cpu0 and all(cpu0.get(p) is not None and cpu1.get(p) is not None for p in cpu0):
        replica_cpu = round(sum(cpu1[p] - cpu0[p] for p in cpu0), 3)
    client_cpu = round(sum(r["cpu_s"] for r in results), 3)
    per_request = {
        "replicas_us": round(1e6 * replica_cpu / measured_ops, 1)
        if replica_cpu is not None and measured_ops else None,
        "clients_us": round(1e6 * client_cpu / measured_ops, 1) if measured_ops else None,
    }
    memory = {}
    for pid, samples in rss.items():
        if samples:
            first, last = samples[0], samples[-1]
            memory[str(pid)] = {"first_mb": round(first / 2**20, 1),
                                "last_mb": round(last / 2**20, 1),
                                "max_mb": round(max(samples) / 2**20, 1),
                                "min_mb": round(min(samples) / 2**20, 1),
                                "drift_percent": round(100 * (last - first) / first, 1)
                                if first else None,          # 0: not readable then
                                "samples": len(samples)}
    drops: dict[str, int] = {}
    for r in results:
        for k, v in r["client_drops"].items():
            drops[k] = drops.get(k, 0) + v
    cluster = config.cluster
    return {
        "poe_version": poe.__version__,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "cluster": {"n": cluster.n, "f": cluster.f, "nf": cluster.nf,
                    "cluster_id": cluster.cluster_id, "keys": cluster.path},
        "config": {"file": config.path, "overrides": list(overrides),
                   "settings": config.effective()},
        "bench": asdict(spec),
        "results": {
            "throughput_rps": round(throughput, 1),
            "messages_per_s": round(sum(r["measured_messages"] for r in results)
                                    / spec.duration_s, 1),
            "measured_requests": measured_ops,
            "proven_requests": sum(r["proven_ops"] for r in results),
            "completed_requests_total": sum(r["completed_ops"] for r in results),
            "outcome_unknown": sum(r["outcome_unknown"] for r in results),
            "in_flight_at_end": sum(r["in_flight_at_end"] for r in results),
            "latency_ms": latency_summary(latencies),
            "timeline_rps": timeline,
            "cpu_s": {"replicas": replica_cpu, "clients": client_cpu,
                      "per_replica": {str(p): round(cpu1[p] - cpu0[p], 3) for p in cpu0
                                      if cpu0.get(p) is not None and cpu1.get(p) is not None}},
            "cpu_per_request": per_request,
            "replica_rss": memory,
            "client_drops": drops,
        },
    }


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_table(record: dict) -> str:
    """The final table of a run."""
    b, r, c = record["bench"], record["results"], record["cluster"]
    s = record["config"]["settings"]
    lat = r["latency_ms"]
    cpu = r["cpu_per_request"]
    payload = "zero" if s["protocol.zero_payload"] else "standard"
    crypto = "FAKE (insecure bench)" if b["insecure_bench"] else "real"
    replica_us = "-" if cpu["replicas_us"] is None else f"{cpu['replicas_us']}"
    client_us = "-" if cpu["clients_us"] is None else f"{cpu['clients_us']}"
    rows = [
        ("cluster", (f"{s.get('protocol.protocol', 'poe')}, n = {c['n']} (f = {c['f']}), "
                     f"mode {s['protocol.mode']}, batch "
                     f"{s['protocol.batch_size']}, {payload} payload, crypto {crypto}")),
        ("workload", (f"YCSB-{b['workload']}, {b['distribution']} keys, "
                      f"{s['data.record_count']:,} records x {s['data.value_size']} B")),
        ("load", (f"{b['clients']} clients x {b['outstanding']} outstanding x "
                  f"{b['ops_per_message']} requests/message, {b['client_procs']} client "
                  f"process(es); warm-up {b['warmup_s']:g} s, measured {b['duration_s']:g} s")),
        ("throughput", (f"{r['throughput_rps']:,.0f} requests/s ({r['messages_per_s']:,.0f} "
                        "client messages/s)")),
        ("latency ms", (f"p50 {_ms(lat['p50'])}  p95 {_ms(lat['p95'])}  p99 {_ms(lat['p99'])}  "
                        f"max {_ms(lat['max'])}")),
        ("proven", (f"{r['proven_requests']:,} of {r['measured_requests']:,} measured requests "
                    + ("(f+1 = {} matching replies each)".format(c['f'] + 1)
                       if s.get('protocol.protocol', 'poe') == 'pbft'
                       else f"(nf = {c['nf']} matching INFORMs each)"))),
        ("outcome unknown", f"{r['outcome_unknown']}"),
        ("CPU / request", f"replicas {replica_us} us, clients {client_us} us"),
    ]
    if r["replica_rss"]:
        # drift None: the first sample was unreadable (a replica stopped or not yet up)
        drift = ", ".join(f"{v['first_mb']:.0f}->{v['last_mb']:.0f} MB "
                          + ("(drift unknown)" if v["drift_percent"] is None
                             else f"({v['drift_percent']:+.1f}%)")
                          for v in r["replica_rss"].values())
        rows.append(("replica RSS", drift))
    m = record["machine"]
    if m.get("busy_cores") is not None:
        other = m.get("other_processes_cores")
        rows.append(("machine", f"{m['busy_cores']:.2f} of {m['cpus']} cores busy"
                     + (f", {other:.2f} of them other processes" if other is not None else "")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
