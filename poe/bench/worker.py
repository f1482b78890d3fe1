"""A load-generator worker process: closed-loop YCSB clients over ZeroMQ.

What it is for: ``python -P -m poe.bench.worker`` is started by ``poe bench`` (one per
``--client-procs``). It reads its assignment as one JSON line on stdin (configuration file,
client ids, workload, outstanding messages per client), connects, answers
``{"event": "ready"}``, waits for the schedule line (start, measure, end: ``time.monotonic``
values, shared by every process of the machine), runs its clients in a closed loop, writes a
progress line every quarter second and a result line at the end, then exits.

Only completions inside ``[measure, end)`` are measured; each ``Completed`` is a proof of
execution (nf matching INFORMs, checked by PoEClient; f+1 replies for the PBFT baseline) and
is also counted as proven here only if it names that many distinct replicas and one result per
operation.

Must never: outlive its parent (it dies with it and stops when its stdin closes), print
anything but JSON lines on stdout, or use fake crypto unless told ``insecure_bench``.
"""
from __future__ import annotations

import base64
import json
import resource
import sys
import time
from array import array

from poe.protocol.poe.client import Completed
from poe.protocol.registry import proof_quorum


def _emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(assignment: dict) -> int:
    from poe.bench.workload import OperationStream, WorkloadSpec
    from poe.config import load_config
    from poe.runtime.client import ClientProcess

    config = load_config(assignment["config"], assignment.get("set", []))
    spec = WorkloadSpec(**assignment["workload"])
    first, last = assignment["first"], assignment["last"]
    outstanding = assignment["outstanding"]
    proc = ClientProcess(config, first, last, insecure_bench=assignment["insecure_bench"],
                         outstanding_max=outstanding + 1)
    quorum = proof_quorum(proc.protocol)       # nf for PoE, f+1 for PBFT
    try:
        connected = proc.wait_connected(config.n, config.client.connect_timeout_s,
                                        quorum=config.cluster.nf)
        _emit({"event": "ready", "connected": connected, "clients": last - first + 1})
        line = sys.stdin.readline()
        if not line:
            return 0
        schedule = json.loads(line)
        start, measure, end = schedule["start"], schedule["measure"], schedule["end"]
        while time.monotonic() < start:
            proc.turn(min(0.05, max(0.0, start - time.monotonic())))
        streams = [OperationStream(spec, stream=j) for j in range(first, last + 1)]
        ops = spec.ops_per_message
        for index, stream in enumerate(streams):
            for _ in range(outstanding):
                proc.submit(index, stream.message())
        latencies = array("d")
        buckets = [0] * (int(end - measure) + 2)
        completed_ops = measured_ops = measured_messages = proven = unknown = 0
        cpu_start = cpu_end = None
        next_progress = time.monotonic()
        now = time.monotonic()
        while now < end:
            decided = proc.turn(0.02)
            now = time.monotonic()
            if cpu_start is None and now >= measure:
                cpu_start = _cpu()
            for index, event in decided:
                if type(event) is Completed:
                    completed_ops += ops
                    if measure <= now < end:
                        measured_ops += len(event.results)
                        measured_messages += 1
                        latencies.append(event.latency_s)
                        buckets[int(now - measure)] += len(event.results)
                        if len(set(event.replicas)) >= quorum and len(event.results) == ops:
                            proven += len(event.results)
                else:
                    unknown += 1
                if now < end:
                    proc.submit(index, streams[index].message())
            if now >= next_progress:
                next_progress = now + 0.25
                _emit({"event": "progress", "completed_ops": completed_ops,
                       "measured_ops": measured_ops, "unknown": unknown})
        cpu_end = _cpu()
        if cpu_start is None:
            cpu_start = cpu_end
        _emit({
            "event": "result", "first": first, "last": last,
            "completed_ops": completed_ops, "measured_ops": measured_ops,
            "measured_messages": measured_messages, "proven_ops": proven,
            "outcome_unknown": unknown, "in_flight_at_end": proc.pending(),
            "latencies": base64.b64encode(latencies.tobytes()).decode(),
            "timeline": buckets[:max(1, int(end - measure))],
            "cpu_s": round(cpu_end - cpu_start, 4),
            "client_drops": proc.drops(), "transport": dict(proc.transport.stats),
        })
        return 0
    finally:
        proc.close()


def main() -> int:
    from poe.runtime.procs import die_with_parent

    die_with_parent()
    line = sys.stdin.readline()
    if not line:
        return 0
    try:
        return run(json.loads(line))
    except Exception as exc:                       # noqa: BLE001 (reported to the parent)
        _emit({"event": "error", "detail": f"{type(exc).__name__}: {exc}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
