"""Loopback cluster benchmark (issue #6): ``poe cluster`` over the matrix of BENCHMARKS.md.

Runs n = 4, batch 100, TS and MAC modes, standard and zero payload (real crypto), one
``poe cluster`` run each, keeps every run's JSON record in ``--out`` and prints a Markdown
table. Not collected by pytest (no ``test_`` prefix): it takes minutes.

    python benchmarks/loopback.py --out bench-results            # the 4-run matrix
    python benchmarks/loopback.py --out r --duration 300 --only ts-standard   # memory run

Must never: run more than one cluster at a time (they would share the two cores).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RUNS = {
    "ts-standard": ["--mode", "ts"],
    "ts-zero": ["--mode", "ts", "--zero-payload"],
    "mac-standard": ["--mode", "mac"],
    "mac-zero": ["--mode", "mac", "--zero-payload"],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for the JSON records")
    p.add_argument("--only", action="append", choices=sorted(RUNS), help="run only these")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--outstanding", type=int, default=8)
    p.add_argument("--ops-per-message", type=int, default=10)
    p.add_argument("extra", nargs="*", help="more `poe cluster` arguments (after --)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.only or list(RUNS):
        target = out / f"{name}.json"
        command = [sys.executable, "-P", "-m", "poe", "cluster", *RUNS[name],
                   "--batch-size", "100", "--warmup", str(args.warmup),
                   "--duration", str(args.duration), "--clients", str(args.clients),
                   "--outstanding", str(args.outstanding),
                   "--ops-per-message", str(args.ops_per_message), "--json", str(target),
                   *args.extra]
        print("$ poe " + " ".join(command[4:]), file=sys.stderr, flush=True)
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        print(done.stdout, file=sys.stderr, flush=True)
        if done.returncode != 0:
            return done.returncode
        r = json.loads(target.read_text())
        res, lat, m = r["results"], r["results"]["latency_ms"], r["machine"]
        cpu = res["cpu_per_request"]
        rows.append(f"| {name} | {res['throughput_rps']:,.0f} | {lat['p50']:.1f} | "
                    f"{lat['p95']:.1f} | {lat['p99']:.1f} | {lat['max']:.1f} | "
                    f"{cpu['replicas_us']} | {cpu['clients_us']} | {res['outcome_unknown']} | "
                    f"{m.get('other_processes_cores')} |")
    print("| run | req/s | p50 ms | p95 ms | p99 ms | max ms | replica CPU µs/req | "
          "client CPU µs/req | unknown | other procs (cores) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
