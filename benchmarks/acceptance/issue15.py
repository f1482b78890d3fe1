"""Issue 15's acceptance runs: the new code against a baseline commit, interleaved.

    python benchmarks/acceptance/issue15.py --base-python /work/venv-base/bin/python \
        --new-python /work/venv/bin/python --rounds 3 --out out/issue15

Each case runs ``poe cluster`` (each side with its own defaults unless the case sets the
load) once per round, the baseline first, then the new code, so that load from other
processes hits both alike; every run's JSON record is kept in --out. Prints one table of
medians and ratios (new / base): throughput, p50 latency, CPU per request (replicas +
clients, the figure the issue moves). Each interpreter must run the poe it is meant to
measure (``python -P -m poe``; run from outside a checkout).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CASES = {
    # name: extra arguments of `poe cluster` (the same for both sides)
    "mac-defaults": ["--mode", "mac"],
    "ts-defaults": ["--mode", "ts"],
    "mac-fake-crypto": ["--mode", "mac", "--insecure-bench"],
    "ts-fake-crypto": ["--mode", "ts", "--insecure-bench"],
    "mac-one-in-flight": ["--mode", "mac", "--clients", "1", "--outstanding", "1",
                          "--ops-per-message", "1"],
    "ts-one-in-flight": ["--mode", "ts", "--clients", "1", "--outstanding", "1",
                         "--ops-per-message", "1"],
}


def run(python: str, case: list[str], out: Path, warmup: float, duration: float) -> dict:
    cmd = [python, "-P", "-m", "poe", "cluster", *case, "--warmup", str(warmup),
           "--duration", str(duration), "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd="/tmp")
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-500:]}")
    return json.loads(out.read_text())


def figures(record: dict) -> dict:
    r = record["results"]
    cpu = r["cpu_per_request"]
    total = (cpu.get("replicas_us") or 0) + (cpu.get("clients_us") or 0) \
        if isinstance(cpu, dict) else cpu
    return {"rps": r["throughput_rps"], "p50": r["latency_ms"]["p50"], "cpu_us": total}


def bls_floor(python: str, out: Path, batch: int, cores: int = 2) -> dict:
    """The TS fabric's BLS floor at n = 4 from the crypto micro-benchmarks (medians), with
    the backend ``poe replica`` uses by default (pyblst when installed):

        per batch = 4 x share_sign  (every replica signs a share, the primary included)
                  + 1 x combine     (the primary: combine and verify the certificate)
                  + 3 x cert_verify (each backup verifies the CERTIFY)
        floor     = cores x batch / per batch            [requests per second]

    i.e. the throughput of the cluster if BLS were all its CPU did on ``cores`` cores."""
    from poe.crypto import bls_backend

    backend = bls_backend()
    report = out / "crypto.json"
    done = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(Path(__file__).resolve().parents[1] / "test_bench_crypto.py"),
         "-k", f"(share_sign or combine or cert_verify) and {backend} and 4 "
               "and not multi and not chain and not compile",
         "--benchmark-only", f"--benchmark-json={report}"],
        capture_output=True, text=True, timeout=900, cwd=str(Path(__file__).parents[2]))
    if done.returncode != 0:
        sys.exit(f"crypto micro-benchmarks failed: {done.stdout[-800:]}{done.stderr[-800:]}")
    med = {}
    for b in json.loads(report.read_text())["benchmarks"]:
        if b["params"] and b["params"].get("n") == 4:
            med[b["name"].split("[")[0].removeprefix("test_")] = b["stats"]["median"] * 1e6
    per_batch = 4 * med["share_sign"] + med["combine"] + 3 * med["cert_verify"]
    return {"backend": backend, "median_us": med, "per_batch_us": per_batch,
            "floor_rps": cores * batch / per_batch * 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-python")
    ap.add_argument("--new-python")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--duration", type=float, default=12.0)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", type=Path, default=Path("out/issue15"))
    ap.add_argument("--floor-only", action="store_true",
                    help="only the TS BLS floor (crypto micro-benchmarks, this interpreter)")
    ap.add_argument("--batch", type=int, default=200, help="batch size of the TS floor")
    args = ap.parse_args()
    if args.floor_only:
        args.out.mkdir(parents=True, exist_ok=True)
        print(json.dumps(bls_floor(sys.executable, args.out, args.batch), indent=1))
        return 0
    if not args.base_python or not args.new_python:
        ap.error("--base-python and --new-python are required (or --floor-only)")
    args.out.mkdir(parents=True, exist_ok=True)
    table = []
    for name in args.cases.split(","):
        got = {"base": [], "new": []}
        for rnd in range(args.rounds):
            for side, python in (("base", args.base_python), ("new", args.new_python)):
                rec = run(python, CASES[name], args.out / f"{name}-{side}-{rnd}.json",
                          args.warmup, args.duration)
                got[side].append(figures(rec))
                print(f"{name} {side} round {rnd}: {got[side][-1]}", file=sys.stderr)
        med = {s: {k: statistics.median(f[k] for f in got[s]) for k in got[s][0]}
               for s in got}
        table.append((name, med))
    print(f"{'case':<20} {'base req/s':>11} {'new req/s':>11} {'x':>6} {'base p50':>9} "
          f"{'new p50':>8} {'x':>6} {'base us/req':>12} {'new us/req':>11} {'x':>6}")
    for name, med in table:
        b, n = med["base"], med["new"]
        print(f"{name:<20} {b['rps']:>11,.0f} {n['rps']:>11,.0f} {n['rps'] / b['rps']:>6.2f} "
              f"{b['p50']:>9.2f} {n['p50']:>8.2f} {n['p50'] / b['p50']:>6.2f} "
              f"{b['cpu_us']:>12.1f} {n['cpu_us']:>11.1f} {n['cpu_us'] / b['cpu_us']:>6.2f}")
    (args.out / "summary.json").write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
