"""tools/compare.py: command lines, table rows and ratios, rendering, failures, and one real
end-to-end run of two tiny clusters (fake crypto, about 10 s)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# tools/ is not a package (nor installed): load the script from the checkout
TOOL = Path(__file__).resolve().parents[2] / "tools" / "compare.py"
_spec = importlib.util.spec_from_file_location("compare_tool", TOOL)
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(protocol, scenario, throughput=None, p50=2.0, p99=9.0, error=None):
    """A runs.json entry: ok with these numbers, or failed with ``error``."""
    record = None
    if error is None:
        record = {"bench": {"insecure_bench": False, "workload": "A", "distribution": "zipfian",
                            "clients": 8, "outstanding": 4, "ops_per_message": 10,
                            "client_procs": 1, "warmup_s": 3.0, "duration_s": 10.0},
                  "cluster": {"n": 4, "f": 1},
                  "results": {"throughput_rps": throughput, "proven_requests": 1000,
                              "latency_ms": {"p50": p50, "p99": p99}}}
    return {"protocol": protocol, "scenario": scenario, "command": ["python", "-m", "poe"],
            "status": "failed" if error else "ok", "error": error,
            "exit_status": 2 if error else 0, "elapsed_s": 1.0, "record": record}


def _doc(runs):
    return {"compare_command": "python tools/compare.py --duration 10",
            "date_utc": "2025-01-01T00:00:00Z",
            "machine": {"cores": 2, "cpu_model": "Test CPU"}, "runs": runs}


SYNTHETIC = [
    _run("pbft", "standard-none", 10_000.0),
    _run("poe-ts", "standard-none", 20_000.0),
    _run("poe-mac", "standard-none", 15_000.0),
    _run("pbft", "zero-backup", error="poe cluster: error: replica 2 exited at start-up"),
    _run("poe-ts", "zero-backup", 30_000.0),
    _run("poe-mac", "zero-none", 12_000.0),
    _run("pbft", "zero-none", 8_000.0),
    _run("poe-ts", "zero-none", error="stopped after 313 s (timeout)"),
]


def test_rows_ratio_is_poe_over_pbft_of_the_same_scenario():
    rows = {(r["protocol"], r["scenario"]): r for r in compare.table_rows(SYNTHETIC)}
    assert rows[("poe-ts", "standard-none")]["ratio"] == 2.0
    assert rows[("poe-mac", "standard-none")]["ratio"] == 1.5
    assert rows[("poe-mac", "zero-none")]["ratio"] == 1.5          # 12,000 / 8,000
    assert rows[("pbft", "standard-none")]["ratio"] is None        # the baseline itself
    assert rows[("poe-ts", "standard-none")]["p50_ms"] == 2.0
    assert rows[("poe-ts", "standard-none")]["p99_ms"] == 9.0


def test_rows_failed_run_is_failed_and_gives_no_ratio():
    rows = {(r["protocol"], r["scenario"]): r for r in compare.table_rows(SYNTHETIC)}
    failed_pbft = rows[("pbft", "zero-backup")]
    assert failed_pbft["status"] == "failed"
    assert failed_pbft["throughput_rps"] is None
    assert "replica 2 exited" in failed_pbft["error"]
    assert rows[("poe-ts", "zero-backup")]["ratio"] is None        # its baseline failed
    assert rows[("poe-ts", "zero-backup")]["throughput_rps"] == 30_000.0
    assert rows[("poe-ts", "zero-none")]["status"] == "failed"
    assert rows[("poe-ts", "zero-none")]["ratio"] is None


def test_rows_are_ordered_by_scenario_then_protocol():
    order = [(r["scenario"], r["protocol"]) for r in compare.table_rows(SYNTHETIC)]
    assert order == [("standard-none", "poe-ts"), ("standard-none", "poe-mac"),
                     ("standard-none", "pbft"), ("zero-none", "poe-ts"),
                     ("zero-none", "poe-mac"), ("zero-none", "pbft"),
                     ("zero-backup", "poe-ts"), ("zero-backup", "pbft")]


def test_markdown_shows_numbers_ratios_failures_and_header():
    text = compare.render_markdown(_doc(SYNTHETIC))
    assert "2 cores, Test CPU" in text
    assert "2025-01-01T00:00:00Z" in text
    assert "`python tools/compare.py --duration 10`" in text
    assert "| poe-ts | standard payload, no failure | 20,000 | 2.00 | 9.00 | 2.00 |" in text
    assert "| pbft | standard payload, no failure | 10,000 | 2.00 | 9.00 | baseline |" in text
    assert "| pbft | zero payload, 1 backup crashed | failed | — | — | — |" in text
    assert "| poe-ts | zero payload, 1 backup crashed | 30,000 | 2.00 | 9.00 | — |" in text
    assert ("- pbft, zero payload, 1 backup crashed: poe cluster: error: replica 2 exited at "
            "start-up") in text
    assert "- poe-ts, zero payload, no failure: stopped after 313 s (timeout)" in text
    assert "crypto real" in text


def test_markdown_says_when_crypto_was_fake():
    runs = [_run("pbft", "standard-none", 1.0)]
    runs[0]["record"]["bench"]["insecure_bench"] = True
    assert "crypto FAKE" in compare.render_markdown(_doc(runs))


def _value(cmd, flag):
    return cmd[cmd.index(flag) + 1]


def test_command_line_of_each_scenario_and_protocol():
    for scenario, (payload, failure) in compare.SCENARIOS.items():
        for protocol, (name, mode) in compare.PROTOCOLS.items():
            cmd = compare.cluster_command(protocol, scenario, "/x/run.json", replicas=7,
                                          warmup_s=0.5, duration_s=2)
            assert cmd[:5] == [sys.executable, "-P", "-m", "poe", "cluster"]
            assert _value(cmd, "--protocol") == name and _value(cmd, "--mode") == mode
            assert _value(cmd, "--replicas") == "7" and _value(cmd, "--batch-size") == "100"
            assert _value(cmd, "--warmup") == "0.5" and _value(cmd, "--duration") == "2"
            assert _value(cmd, "--json") == "/x/run.json"
            assert ("--zero-payload" in cmd) == (payload == "zero")
            assert ("--crash-backup" in cmd) == (failure == "backup")
            assert "--insecure-bench" not in cmd and "--clients" not in cmd
    pbft = compare.cluster_command("pbft", "zero-backup", "r.json")
    assert _value(pbft, "--protocol") == "pbft" and _value(pbft, "--mode") == "mac"
    assert "--zero-payload" in pbft and "--crash-backup" in pbft
    ts = compare.cluster_command("poe-ts", "standard-none", "r.json")
    assert _value(ts, "--mode") == "ts"
    assert "--zero-payload" not in ts and "--crash-backup" not in ts


def test_command_line_passes_load_options_through():
    cmd = compare.cluster_command("poe-mac", "standard-none", "r.json", clients=16,
                                  outstanding=8, ops_per_message=5, client_procs=2,
                                  insecure_bench=True)
    for flag, value in (("--clients", "16"), ("--outstanding", "8"),
                        ("--ops-per-message", "5"), ("--client-procs", "2")):
        assert _value(cmd, flag) == value
    assert "--insecure-bench" in cmd


def test_error_line_prefers_the_error_line_of_poe_cluster():
    stderr = ("poe cluster: 4 replicas ...\rpoe bench: warm-up 0.1/3 s | 5 req/s\n"
              "poe cluster: error: replica 1 exited at start-up (status 2): bad key\n")
    assert compare.error_line(stderr, 2) == \
        "poe cluster: error: replica 1 exited at start-up (status 2): bad key"
    assert compare.error_line("Traceback\nKeyError: 'x'\n", 1) == "exit status 1: KeyError: 'x'"
    assert compare.error_line("", -9) == "exit status -9, no output"


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_run_cluster_stops_a_run_that_outlives_its_timeout_and_its_children(tmp_path):
    # the run starts a child of its own (as poe cluster does) and both would sleep 60 s
    pid_file = tmp_path / "child.pid"
    script = ("import pathlib, subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"pathlib.Path({str(pid_file)!r}).write_text(str(p.pid)); time.sleep(60)")
    status, _, elapsed_s = compare.run_cluster([sys.executable, "-c", script], timeout_s=2.0)
    assert status is None
    assert elapsed_s < 30
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child), f"process {child} left behind"


def test_text_table_is_aligned_with_failures_below():
    text = compare.render_text(_doc(SYNTHETIC))
    lines = text.splitlines()
    assert lines[0].split("  ")[0] == "protocol"
    assert re.fullmatch(r"protocol +scenario +throughput \(req/s\) +p50 \(ms\) +p99 \(ms\) +"
                        r"throughput / PBFT", lines[0]), lines[0]
    table = lines[:1 + len(SYNTHETIC)]
    # every numeric column ends where its header ends: right-aligned under it
    for header in ("throughput (req/s)", "p50 (ms)", "p99 (ms)", "throughput / PBFT"):
        end = lines[0].index(header) + len(header)
        for line in table[1:]:
            assert line[end - 1] != " " and (len(line) == end or line[end] == " "), \
                (header, line)
    assert re.fullmatch(r"poe-ts +standard payload, no failure +20,000 +2\.00 +9\.00 +2\.00",
                        table[1]), table[1]
    assert re.fullmatch(r"pbft +zero payload, 1 backup crashed +failed +— +— +—", table[-1])
    assert any(re.fullmatch(r"pbft +standard payload, no failure +10,000 .* baseline", line)
               for line in table)
    assert lines[1 + len(SYNTHETIC):] == [
        "failed: poe-ts, zero payload, no failure: stopped after 313 s (timeout)",
        ("failed: pbft, zero payload, 1 backup crashed: poe cluster: error: replica 2 exited "
         "at start-up")]


def test_only_table_prints_the_table_and_rerenders_table_and_plot(tmp_path, capsys,
                                                                  monkeypatch):
    runs_json = tmp_path / "in" / "runs.json"
    runs_json.parent.mkdir()
    runs_json.write_text(json.dumps(_doc(SYNTHETIC)))
    out = tmp_path / "out"
    status = compare.main(["--only-table", str(runs_json), "--out", str(out)])
    assert status == 1                                   # two of the runs failed
    assert capsys.readouterr().out == compare.render_text(_doc(SYNTHETIC))
    table = (out / "table.md").read_text()
    assert table == compare.render_markdown(_doc(SYNTHETIC))
    png = (out / "compare.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert not (out / "runs.json").exists()              # nothing was run
    ok = [r for r in SYNTHETIC if r["status"] == "ok"]
    runs_json.write_text(json.dumps(_doc(ok)))
    default = tmp_path / "default-out"
    monkeypatch.setattr(compare, "DEFAULT_OUT", default)
    assert compare.main(["--only-table", str(runs_json)]) == 0
    assert "poe-ts" in capsys.readouterr().out
    assert sorted(p.name for p in runs_json.parent.iterdir()) == ["runs.json"]  # untouched
    assert (default / "table.md").read_text() == compare.render_markdown(_doc(ok))
    assert (default / "compare.png").read_bytes().startswith(PNG_MAGIC)


def _git(*args):
    return subprocess.run(["git", "-C", str(TOOL.parents[1]), *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_default_output_directory_is_git_ignored_and_untracked():
    """Without --out nothing tracked is written: the default directory lies in this checkout
    under a .gitignore'd path and holds no tracked file; the recorded results stay where
    BENCHMARKS.md points."""
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout (or no git): nothing to be tracked")
    root = TOOL.parents[1]
    assert compare.DEFAULT_OUT == root / "out" / "compare"
    names = [str(compare.DEFAULT_OUT.relative_to(root) / name)
             for name in ("runs.json", "table.md", "compare.png")]
    ignored = _git("check-ignore", "--no-index", *names)
    assert ignored.returncode == 0 and ignored.stdout.split() == names, ignored
    assert _git("ls-files", "--", str(compare.DEFAULT_OUT.relative_to(root))).stdout == ""
    recorded = _git("ls-files", "--", "benchmarks/results/compare").stdout.split()
    assert "benchmarks/results/compare/runs.json" in recorded
    assert compare.DEFAULT_OUT.resolve() != (root / "benchmarks/results/compare").resolve()


def test_an_unusable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert compare.main(["--out", str(blocker / "sub"), "--protocols", "pbft",
                         "--scenarios", "standard-none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"compare: error: --out {blocker / 'sub'}: ") and "\n" not in err
    runs_json = tmp_path / "runs.json"
    runs_json.write_text(json.dumps(_doc(SYNTHETIC)))
    assert compare.main(["--only-table", str(runs_json), "--out", str(blocker)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"compare: error: --out {blocker}: ") and "\n" not in err


def test_only_table_unreadable_file_is_one_line(tmp_path, capsys):
    assert compare.main(["--only-table", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("compare: error: --only-table") and "\n" not in err
    out = tmp_path / "out"
    for text in ('{"runs": [{"protocol": "pbft"}]}', '[1, 2]', '{"runs": ["x"]}',
                 json.dumps({"runs": [dict(SYNTHETIC[0], scenario="nope")]}),
                 json.dumps({k: v for k, v in _doc(SYNTHETIC).items() if k != "machine"})):
        (tmp_path / "other.json").write_text(text)
        assert compare.main(["--only-table", str(tmp_path / "other.json"),
                             "--out", str(out)]) == 2, text
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert "not a runs.json of this tool" in err and "\n" not in err, err
        assert captured.out == "" and not out.exists()      # checked before any write


def _compare(tmp_path, *args, timeout_s=120.0):
    """Run the tool as a script (its own session, killed with its group on timeout)."""
    proc = subprocess.Popen([sys.executable, str(TOOL), "--out", str(tmp_path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"compare did not finish in {timeout_s} s:\n{err[-3000:]}")
    return proc.returncode, out, err


def test_failed_runs_are_recorded_and_the_comparison_goes_on(tmp_path):
    # poe cluster refuses n = 3 at once: two fast failures, both recorded
    status, out, err = _compare(tmp_path, "--protocols", "poe-mac,pbft", "--scenarios",
                                "standard-none", "--replicas", "3", timeout_s=60)
    assert status == 1, err
    assert out.count(" failed ") == 2 and out.count("\nfailed: ") == 2, out
    doc = json.loads((tmp_path / "runs.json").read_text())
    assert [(r["protocol"], r["status"]) for r in doc["runs"]] == \
        [("poe-mac", "failed"), ("pbft", "failed")]
    for run in doc["runs"]:
        assert run["error"] == "poe cluster: error: --replicas must be in 4..64 for a local " \
                               "cluster"
        assert run["exit_status"] == 2 and run["record"] is None
    table = (tmp_path / "table.md").read_text()
    assert table.count("| failed |") == 2
    assert "--replicas must be in 4..64" in table
    assert (tmp_path / "compare.png").read_bytes().startswith(PNG_MAGIC)
    assert err.count("FAILED: poe cluster: error:") == 2


def test_end_to_end_two_protocols_one_scenario(tmp_path):
    status, out, err = _compare(tmp_path, "--protocols", "poe-mac,pbft", "--scenarios",
                                "standard-none", "--warmup", "0.5", "--duration", "1",
                                "--insecure-bench")
    assert status == 0, err
    assert out == compare.render_text(json.loads((tmp_path / "runs.json").read_text())), out
    assert re.search(r"^poe-mac +standard payload, no failure +[\d,]+ +[\d.]+ +[\d.]+ +"
                     r"\d+\.\d\d$", out, re.M), out
    assert re.search(r"^pbft +standard payload, no failure .* baseline$", out, re.M), out
    doc = json.loads((tmp_path / "runs.json").read_text())
    assert [r["protocol"] for r in doc["runs"]] == ["poe-mac", "pbft"]
    for run in doc["runs"]:
        assert run["status"] == "ok", run["error"]
        assert run["scenario"] == "standard-none"
        assert run["scenario_label"] == "standard payload, no failure"
        assert run["command"][:5] == [sys.executable, "-P", "-m", "poe", "cluster"]
        results = run["record"]["results"]
        assert results["proven_requests"] > 0 and results["throughput_rps"] > 0
        assert run["record"]["bench"]["insecure_bench"] is True
        settings = run["record"]["config"]["settings"]
        assert settings["protocol.batch_size"] == 100
        assert settings["protocol.mode"] == "mac"
    assert doc["runs"][1]["record"]["config"]["settings"]["protocol.protocol"] == "pbft"
    table = (tmp_path / "table.md").read_text()
    assert re.search(r"\| poe-mac \| standard payload, no failure \| [\d,]+ \| [\d.]+ \| "
                     r"[\d.]+ \| \d+\.\d\d \|", table), table
    assert "| baseline |" in table and "crypto FAKE" in table
    png = (tmp_path / "compare.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert err.count(": running") == 2 and "2 of 2 runs ok" in err
