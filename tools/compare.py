"""Compare PoE with the PBFT baseline on this machine (issue #8): the same workload against
each protocol, one ``poe cluster`` run each, written up as a table and a plot.

Usage:  python tools/compare.py [--protocols poe-ts,poe-mac,pbft] [--scenarios NAME,...]
                                [--warmup 3] [--duration 10] [--out DIR]
        python tools/compare.py --only-table out/compare/runs.json [--out DIR]

For each scenario (n = --replicas, batch 100; standard or zero payload; no failure, or one
backup killed -9 before the load) and each protocol variant (PoE with threshold
certificates, PoE with MACs, PBFT) it runs ``python -P -m poe cluster ... --json FILE``, one
run at a time, prints the table (throughput, p50, p99 and the PoE / PBFT throughput ratio
per scenario) on stdout and writes into --out: runs.json (every run's full record, its exact
command line and labels, or its error line), table.md (the same table) and compare.png.
--out defaults to out/compare/ in this checkout, which .gitignore covers: the recorded
results in benchmarks/results/compare/ (tracked) change only when --out names them. A
failed run (a ``poe cluster`` exit status other than 0, e.g. a request whose outcome stayed
unknown) is recorded as failed and the comparison goes on; the exit status is then 1 (also
with --only-table, which re-renders the table, table.md and compare.png from a runs.json
without running anything).

Must never: run two clusters at once (they would share the cores and skew each other), leave
a process behind (each run is its own session, dies with this process, and is stopped on
timeout, SIGTERM and Ctrl-C), or present numbers from --insecure-bench (fake crypto) without
saying so in the table and the plot.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from poe.runtime import procs

# variant -> (poe cluster --protocol, --mode); PBFT runs on the MAC fabric only
PROTOCOLS = {"poe-ts": ("poe", "ts"), "poe-mac": ("poe", "mac"), "pbft": ("pbft", "mac")}
BASELINE = "pbft"
# scenario -> (payload, failure)
SCENARIOS = {"standard-none": ("standard", "none"), "standard-backup": ("standard", "backup"),
             "zero-none": ("zero", "none"), "zero-backup": ("zero", "backup")}
SCENARIO_LABELS = {"standard-none": "standard payload, no failure",
                   "standard-backup": "standard payload, 1 backup crashed",
                   "zero-none": "zero payload, no failure",
                   "zero-backup": "zero payload, 1 backup crashed"}
BATCH_SIZE = 100
# beyond warm-up + duration: replica start-up (poe cluster waits up to 120 s), the workers'
# connect and key loading, the stop of every process
RUN_SLACK_S = 300.0
STOP_GRACE_S = 20.0        # poe cluster gives its replicas 10 s to exit on SIGTERM
# git-ignored (.gitignore: /out/); the tracked benchmarks/results/compare only with --out
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "out" / "compare"
HEADERS = ("protocol", "scenario", "throughput (req/s)", "p50 (ms)", "p99 (ms)",
           "throughput / PBFT")


def cluster_command(protocol: str, scenario: str, json_path: Path | str, *, replicas: int = 4,
                    warmup_s: float = 3.0, duration_s: float = 10.0, clients: int | None = None,
                    outstanding: int | None = None, ops_per_message: int | None = None,
                    client_procs: int | None = None, insecure_bench: bool = False) -> list[str]:
    """The exact ``poe cluster`` command line of one run; unset load options keep the
    defaults of ``poe cluster`` (its record lists the values used)."""
    name, mode = PROTOCOLS[protocol]
    payload, failure = SCENARIOS[scenario]
    args = ["cluster", "--replicas", str(replicas), "--protocol", name, "--mode", mode,
            "--batch-size", str(BATCH_SIZE), "--warmup", f"{warmup_s:g}",
            "--duration", f"{duration_s:g}"]
    if payload == "zero":
        args.append("--zero-payload")
    if failure == "backup":
        args.append("--crash-backup")
    for flag, value in (("--clients", clients), ("--outstanding", outstanding),
                        ("--ops-per-message", ops_per_message), ("--client-procs", client_procs)):
        if value is not None:
            args += [flag, str(value)]
    if insecure_bench:
        args.append("--insecure-bench")
    return procs.poe_command(*args, "--json", str(json_path))


def error_line(stderr: str, exit_status: int | None) -> str:
    """The one line that says why a run failed: ``poe cluster``'s error line if it printed
    one, else its last line of output, else its exit status."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", stderr) if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    if errors:
        return errors[-1]
    if lines:
        return f"exit status {exit_status}: {lines[-1]}"
    return f"exit status {exit_status}, no output"


def run_cluster(command: list[str], timeout_s: float) -> tuple[int | None, str, float]:
    """Run ``command`` to completion in its own session; returns (exit status or None if it
    was stopped at ``timeout_s``, its stderr, seconds taken). Whatever happens, the child and
    its process group are gone when this returns (its replicas die with it)."""
    started = time.monotonic()
    proc = procs.spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            _, err = proc.communicate(timeout=timeout_s)
            status: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            procs.stop(proc, STOP_GRACE_S)
            status = None
            try:
                _, err = proc.communicate(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:    # something it started still holds stderr
                proc.stderr.close()
                err = b""
    finally:
        if proc.poll() is None:                  # Ctrl-C or SIGTERM while it ran
            procs.stop(proc, STOP_GRACE_S)
    return status, err.decode(errors="replace"), time.monotonic() - started


def run_one(protocol: str, scenario: str, options: dict, work: Path) -> dict:
    """One run, as its runs.json entry (status ``ok`` or ``failed`` with its error line)."""
    target = work / f"{protocol}-{scenario}.json"
    command = cluster_command(protocol, scenario, target, **options)
    timeout_s = options["warmup_s"] + options["duration_s"] + RUN_SLACK_S
    status, stderr, elapsed_s = run_cluster(command, timeout_s)
    record = None
    if target.exists():
        try:
            record = json.loads(target.read_text())
        except ValueError:
            record = None
    if status is None:
        error = f"stopped after {timeout_s:.0f} s (timeout)"
    elif status != 0:
        error = error_line(stderr, status)
    elif record is None:
        error = "poe cluster exited 0 but wrote no readable --json record"
    elif not record["results"]["proven_requests"]:
        error = "no request was proven in the measured window"
    else:
        error = None
    return {"protocol": protocol, "scenario": scenario,
            "scenario_label": SCENARIO_LABELS[scenario], "command": command,
            "status": "failed" if error else "ok", "error": error, "exit_status": status,
            "elapsed_s": round(elapsed_s, 1), "record": record}


def machine() -> dict:
    """Cores and CPU model of this machine (model None where /proc/cpuinfo does not say)."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                model = value.strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu_model": model}


def table_rows(runs: list[dict]) -> list[dict]:
    """One row per run, in scenario order then protocol order, with the throughput ratio to
    the PBFT run of the same scenario (None for PBFT itself and where either run failed)."""
    baseline = {r["scenario"]: r["record"]["results"]["throughput_rps"] for r in runs
                if r["protocol"] == BASELINE and r["status"] == "ok"}
    order = {name: i for i, name in enumerate(SCENARIOS)}
    protocols = {name: i for i, name in enumerate(PROTOCOLS)}
    rows = []
    for run in sorted(runs, key=lambda r: (order[r["scenario"]], protocols[r["protocol"]])):
        row = {"protocol": run["protocol"], "scenario": run["scenario"],
               "status": run["status"], "error": run["error"], "throughput_rps": None,
               "p50_ms": None, "p99_ms": None, "ratio": None}
        if run["status"] == "ok":
            results = run["record"]["results"]
            row["throughput_rps"] = results["throughput_rps"]
            row["p50_ms"] = results["latency_ms"]["p50"]
            row["p99_ms"] = results["latency_ms"]["p99"]
            base = baseline.get(run["scenario"])
            if run["protocol"] != BASELINE and base:
                row["ratio"] = results["throughput_rps"] / base
        rows.append(row)
    return rows


def _cell(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _setup(runs: list[dict]) -> str | None:
    """The cluster and load of the runs, from the first one that left a record."""
    for run in runs:
        record = run["record"]
        if record is not None:
            b, c = record["bench"], record["cluster"]
            crypto = "FAKE (--insecure-bench, not a protocol comparison)" \
                if b["insecure_bench"] else "real"
            return (f"n = {c['n']} (f = {c['f']}), batch {BATCH_SIZE}, YCSB-{b['workload']} "
                    f"{b['distribution']}, {b['clients']} clients x {b['outstanding']} "
                    f"outstanding x {b['ops_per_message']} requests/message, "
                    f"{b['client_procs']} client process(es), warm-up {b['warmup_s']:g} s, "
                    f"measured {b['duration_s']:g} s, crypto {crypto}")
    return None


def row_cells(row: dict) -> tuple[str, ...]:
    """The table cells of one ``table_rows`` row, in ``HEADERS`` order."""
    scenario = SCENARIO_LABELS[row["scenario"]]
    if row["status"] != "ok":
        return (row["protocol"], scenario, "failed", "—", "—", "—")
    ratio = "baseline" if row["protocol"] == BASELINE else _cell(row["ratio"], ".2f")
    return (row["protocol"], scenario, f"{row['throughput_rps']:,.0f}",
            _cell(row["p50_ms"], ".2f"), _cell(row["p99_ms"], ".2f"), ratio)


def render_text(doc: dict) -> str:
    """The table for a terminal (stdout): aligned columns, numbers right-aligned, then one
    line per failed run with its error."""
    rows = table_rows(doc["runs"])
    table = [HEADERS] + [row_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
             for line in table]
    lines += [f"failed: {row['protocol']}, {SCENARIO_LABELS[row['scenario']]}: {row['error']}"
              for row in rows if row["status"] != "ok"]
    return "\n".join(lines) + "\n"


def render_markdown(doc: dict) -> str:
    """table.md of a runs.json document."""
    m = doc["machine"]
    lines = ["# PoE vs PBFT on one machine (tools/compare.py)", "",
             (f"Machine: {m['cores']} cores, {m['cpu_model'] or 'CPU model unknown'}; "
              f"date {doc['date_utc']}; command `{doc['compare_command']}`"), ""]
    setup = _setup(doc["runs"])
    if setup:
        lines += [f"Setup: {setup}.", ""]
    lines += ["| " + " | ".join(HEADERS) + " |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    rows = table_rows(doc["runs"])
    lines += ["| " + " | ".join(row_cells(row)) + " |" for row in rows]
    failed = [row for row in rows if row["status"] != "ok"]
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {row['protocol']}, {SCENARIO_LABELS[row['scenario']]}: {row['error']}"
                  for row in failed]
    return "\n".join(lines) + "\n"


def render_plot(doc: dict, path: Path) -> None:
    """compare.png: throughput bars per scenario grouped by protocol, and p50 (solid) and p99
    (light) latency bars per scenario and protocol; a failed run is a labelled gap."""
    # only here: the table needs no plotting; no pyplot, so no global state or GUI backend
    from matplotlib import rcParams
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    rows = table_rows(doc["runs"])
    scenarios = [s for s in SCENARIOS if any(r["scenario"] == s for r in rows)]
    protocols = [p for p in PROTOCOLS if any(r["protocol"] == p for r in rows)]
    by_key = {(r["scenario"], r["protocol"]): r for r in rows}
    width = 0.8 / len(protocols)
    fig = Figure(figsize=(13, 5))
    FigureCanvasAgg(fig)
    ax_tp, ax_lat = fig.subplots(1, 2)
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    for j, protocol in enumerate(protocols):
        color = colors[j % len(colors)]
        for i, scenario in enumerate(scenarios):
            x = i - 0.4 + width * (j + 0.5)
            row = by_key.get((scenario, protocol))
            if row is None:
                continue
            label = protocol if i == 0 else None
            if row["status"] != "ok":
                for ax in (ax_tp, ax_lat):
                    ax.bar(x, 0, width, color=color, label=label if ax is ax_tp else None)
                    ax.annotate("failed", (x, 0), ha="center", va="bottom", rotation=90,
                                fontsize=8, color="red")
                continue
            ax_tp.bar(x, row["throughput_rps"], width, color=color, label=label)
            if row["p99_ms"] is not None:
                ax_lat.bar(x, row["p99_ms"], width, color=color, alpha=0.35,
                           label=f"{protocol} p99" if i == 0 else None)
            if row["p50_ms"] is not None:
                ax_lat.bar(x, row["p50_ms"], width, color=color,
                           label=f"{protocol} p50" if i == 0 else None)
    ticks = [SCENARIO_LABELS[s].replace(", ", "\n") for s in scenarios]
    for ax in (ax_tp, ax_lat):
        ax.set_xticks(range(len(scenarios)), ticks, fontsize=8)
        ax.set_xlabel("scenario")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    ax_tp.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax_lat.margins(y=0.3)                     # room for the legend above the bars
    ax_tp.set_ylabel("throughput (requests/s)")
    ax_tp.set_title("Throughput")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_title("Latency: p50 (solid), p99 (light)")
    m = doc["machine"]
    fake = any(r["record"] and r["record"]["bench"]["insecure_bench"] for r in doc["runs"])
    fig.suptitle(f"PoE vs PBFT, {m['cores']} cores {m['cpu_model'] or ''}, {doc['date_utc']}"
                 + ("  —  FAKE crypto (--insecure-bench)" if fake else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_outputs(doc: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(render_markdown(doc))
    render_plot(doc, out / "compare.png")


def _names(text: str, known: dict) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names or any(name not in known for name in names):
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of "
                                         f"{','.join(known)}, got {text!r}")
    return names


def _sigterm(_signum, _frame) -> None:
    raise SystemExit(128 + signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocols", default=",".join(PROTOCOLS),
                   type=lambda s: _names(s, PROTOCOLS),
                   help=f"protocol variants, comma-separated (default {','.join(PROTOCOLS)})")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   type=lambda s: _names(s, SCENARIOS),
                   help="payload-failure scenarios, comma-separated (default all: "
                        f"{','.join(SCENARIOS)})")
    p.add_argument("--replicas", type=int, default=4, help="n (default 4)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (3)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured (10)")
    p.add_argument("--clients", type=int, help="closed-loop clients (poe cluster's default)")
    p.add_argument("--outstanding", type=int, help="client messages in flight per client")
    p.add_argument("--ops-per-message", type=int, help="requests per client message")
    p.add_argument("--client-procs", type=int, help="load-generator processes")
    p.add_argument("--insecure-bench", action="store_true",
                   help="FAKE crypto on replicas and clients: a smoke test, not a comparison")
    p.add_argument("--out", type=Path, default=None,
                   help=f"directory for runs.json, table.md, compare.png (default {DEFAULT_OUT}"
                        ", git-ignored; the recorded results are benchmarks/results/compare: "
                        "name it here to replace them)")
    p.add_argument("--only-table", type=Path, metavar="FILE",
                   help="print the table of this runs.json and re-render table.md and "
                        "compare.png (into --out); run nothing")
    args = p.parse_args(argv)

    if args.only_table is not None:
        try:
            doc = json.loads(args.only_table.read_text())
        except (OSError, ValueError) as exc:
            print(f"compare: error: --only-table {args.only_table}: {exc}", file=sys.stderr)
            return 2
        out = args.out or DEFAULT_OUT
        try:
            text = render_text(doc)                # checks the document before any write
            render_markdown(doc)
            failed = any(r["status"] != "ok" for r in doc["runs"])
            write_outputs(doc, out)
        except OSError as exc:
            print(f"compare: error: --out {out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            print(f"compare: error: --only-table {args.only_table}: not a runs.json of this "
                  f"tool ({type(exc).__name__}: {exc})", file=sys.stderr)
            return 2
        print(text, end="", flush=True)
        print(f"compare: wrote {out / 'table.md'} and {out / 'compare.png'}", file=sys.stderr)
        return 1 if failed else 0

    out = args.out or DEFAULT_OUT
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"compare: error: --out {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    options = {"replicas": args.replicas, "warmup_s": args.warmup, "duration_s": args.duration,
               "clients": args.clients, "outstanding": args.outstanding,
               "ops_per_message": args.ops_per_message, "client_procs": args.client_procs,
               "insecure_bench": args.insecure_bench}
    doc = {"compare_command": shlex.join(["python", "tools/compare.py", *argv]),
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "runs": []}
    plan = [(protocol, scenario) for scenario in args.scenarios for protocol in args.protocols]
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="poe-compare-") as work:
            for i, (protocol, scenario) in enumerate(plan, 1):
                tag = f"compare [{i}/{len(plan)}] {protocol} {scenario}"
                print(f"{tag}: running", file=sys.stderr, flush=True)
                run = run_one(protocol, scenario, options, Path(work))
                doc["runs"].append(run)
                (out / "runs.json").write_text(json.dumps(doc, indent=2) + "\n")
                if run["status"] == "ok":
                    res = run["record"]["results"]
                    lat = res["latency_ms"]
                    print(f"{tag}: {res['throughput_rps']:,.0f} req/s, p50 "
                          f"{_cell(lat['p50'], '.2f')} ms, p99 {_cell(lat['p99'], '.2f')} ms "
                          f"({run['elapsed_s']:.0f} s)", file=sys.stderr, flush=True)
                else:
                    print(f"{tag}: FAILED: {run['error']}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print(f"compare: interrupted; the finished runs are in {out / 'runs.json'} "
              "(render them with --only-table)", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(render_text(doc), end="", flush=True)
    write_outputs(doc, out)
    failed = sum(run["status"] != "ok" for run in doc["runs"])
    print(f"compare: {len(plan) - failed} of {len(plan)} runs ok; wrote {out / 'runs.json'}, "
          f"{out / 'table.md'}, {out / 'compare.png'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
