"""The README's "Try it" block, run as written: keys, four background replicas, the wait for
their "ready" lines, a put and a get with their proofs, a bench, SIGTERM, ``poe ledger
verify``; and every file those commands create is git-ignored in this checkout.

The commands run with bash in a temporary directory standing in for the checkout, with
``.venv/bin/poe`` and ``.venv/bin/poe-replica`` there running the installed package, two
changes only: ``poe keygen`` gets ``--base-port`` of free ports (the README's 7000.. may be
taken by another run) and the bench measures 1 s instead of 20. Skipped outside a git
checkout (an installed sdist has no README block to check).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from poe.runtime.procs import free_port_range

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN_TIMEOUT_S = 240.0


def try_it_block(text: str) -> list[str]:
    """The lines of the first ```sh block after the "## Try it" heading."""
    match = re.search(r"^## Try it\n.*?^```sh\n(.*?)^```$", text, re.S | re.M)
    if match is None:
        raise AssertionError("README.md: no ```sh block under '## Try it'")
    return match.group(1).splitlines()


def runnable_part(lines: list[str], base_port: int) -> list[str]:
    """The lines from `poe keygen` to `poe ledger verify`, with free ports and a short bench."""
    start = next((i for i, line in enumerate(lines) if "/poe keygen " in line), None)
    end = next((i for i, line in enumerate(lines) if "/poe ledger verify " in line), None)
    assert start is not None and end is not None and start < end, lines
    part = lines[start:end + 1]
    part[0] = re.sub(r"(/poe keygen [^#]*?)\s*(#.*)?$", rf"\1 --base-port {base_port}", part[0])
    bench = [i for i, line in enumerate(part) if "/poe bench " in line]
    assert len(bench) == 1, part
    assert " --duration 20 " in part[bench[0]], part[bench[0]]
    part[bench[0]] = part[bench[0]].replace(" --duration 20 ", " --warmup 0.5 --duration 1 ")
    return part


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def _checkout() -> None:
    if not README.is_file():
        pytest.skip(f"{README} not found: not run from a checkout")
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout (or git is missing)")


def _files(top: Path) -> set[str]:
    return {str(p.relative_to(top)) for p in top.rglob("*") if p.is_file()}


def _wrappers(top: Path) -> None:
    """.venv/bin/poe and .venv/bin/poe-replica: the installed package under this Python."""
    bin_dir = top / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = shlex.quote(sys.executable)
    for name, prefix in (("poe", ""), ("poe-replica", "replica ")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec {python} -P -m poe {prefix}"$@"\n')
        script.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)


def test_try_it_block_runs_and_writes_only_git_ignored_files(tmp_path):
    _checkout()
    part = runnable_part(try_it_block(README.read_text()), free_port_range(8))
    _wrappers(tmp_path)
    before = _files(tmp_path)
    script = "set -e\n" + "\n".join(
        f"echo '>>> {i}'\n{line}" for i, line in enumerate(part)) + "\necho '>>> end'\n"
    proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, POE_LOCK_DIR=str(tmp_path / "locks")))
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the Try-it commands did not finish in {RUN_TIMEOUT_S} s:\n"
                    f"{output[-4000:]}")
    finally:                           # the background replicas share bash's process group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    logs = "".join(f"\n--- {p.name}:\n{p.read_text(errors='replace')[-1500:]}"
                   for p in sorted((tmp_path / "out").glob("r?.log")))
    assert proc.returncode == 0 and ">>> end" in output, output[-4000:] + logs
    steps = dict(re.findall(r">>> (\d+)\n(.*?)(?=>>> )", output + ">>> ", re.S))

    def step(word: str) -> str:
        return steps[str(next(i for i, line in enumerate(part) if word in line))]

    put, get = step(" put 7 hello"), step(" get 7")
    assert put.startswith("put 7: OK\nproof: ") and "matching INFORMs" in put, output
    assert get.startswith("get 7: OK 'hello' (5 bytes)\nproof: "), output
    assert re.search(r"^outcome unknown +0$", step("/poe bench "), re.M), output
    ready = [p.read_text().count('"event":"ready"') for p in
             sorted((tmp_path / "out").glob("r?.log"))]
    assert ready == [1, 1, 1, 1], logs
    assert re.match(r"ok height=[1-9]", step("/poe ledger verify ")), output
    assert (tmp_path / "out" / "run.json").is_file()

    created = sorted(name for name in _files(tmp_path) - before
                     if not name.startswith("locks/"))       # the test's POE_LOCK_DIR
    assert any(name.startswith("out/keys/") for name in created), created
    assert any(name.startswith("out/keys/data/replica-0/") for name in created), created
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", "--stdin"],
                             input="\n".join(created) + "\n", capture_output=True, text=True,
                             timeout=60, check=False)
    not_ignored = sorted(set(created) - set(ignored.stdout.split()))
    assert not not_ignored, f"the README writes files git does not ignore: {not_ignored}"


def test_the_wait_line_gives_up_and_shows_the_logs(tmp_path):
    """The wait line of the block, with a replica that never got ready and a 1 s bound: it
    ends (no hang) and prints the logs' last lines."""
    _checkout()
    lines = try_it_block(README.read_text())
    wait = [line for line in lines if "event.:.ready" in line]
    assert len(wait) == 1, lines
    assert wait[0].startswith("timeout 120 "), wait[0]
    (tmp_path / "out").mkdir()
    for i in range(4):
        (tmp_path / "out" / f"r{i}.log").write_text(
            '{"event":"ready"}\n' if i != 2 else "poe replica: error: address in use\n")
    done = subprocess.run(["bash", "-c", wait[0].replace("timeout 120 ", "timeout 1 ", 1)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          check=False)
    assert "poe replica: error: address in use" in done.stdout, done
    (tmp_path / "out" / "r2.log").write_text('{"event":"ready"}\n')
    done = subprocess.run(["bash", "-c", wait[0]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0 and done.stdout == "", done
