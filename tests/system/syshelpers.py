"""Helpers for the system tests: real ``poe`` processes on 127.0.0.1.

Imported by conftest.py and the test modules.

Every process is started with ``python -P -m poe`` (the INSTALLED package: -P keeps the
checkout off sys.path) in its own session, from a temporary working directory, and every
one is stopped (SIGTERM, then SIGKILL of its process group) when the test ends, whatever
happened. Nothing here asserts on timing: waits have generous bounds and only turn a hang
into a failure.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poe.runtime.procs import free_port_range

START_TIMEOUT_S = 120.0


def poe_argv(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "poe", *args]


def run_poe(cwd: Path, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
    """Run ``poe ARGS`` to completion (killed, with its group, if it outlives ``timeout``)."""
    proc = subprocess.Popen(poe_argv(*args), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"poe {' '.join(args)} did not finish in {timeout} s:\n{err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def keygen(directory: Path, replicas: int = 4, clients: int = 8, mode: str = "ts",
           protocol: str = "poe") -> Path:
    """Fresh keys and poe.toml on free ports; returns the poe.toml path."""
    base = free_port_range(2 * replicas)
    done = run_poe(directory, "keygen", "--replicas", str(replicas), "--clients", str(clients),
                   "--out", str(directory / "keys"), "--base-port", str(base), "--mode", mode,
                   "--protocol", protocol, timeout=60)
    assert done.returncode == 0, done.stderr
    return directory / "keys" / "poe.toml"


class LocalCluster:
    """n ``poe replica`` processes; ``stop`` returns each one's exit record (parsed)."""

    def __init__(self, directory: Path, config: Path, n: int = 4, settings=()) -> None:
        self.dir = directory
        self.config = config
        self.n = n
        self.settings = [a for s in settings for a in ("--set", s)]
        self.procs: dict[int, subprocess.Popen] = {}
        self.starts: dict[int, int] = {}

    def log(self, i: int) -> Path:
        return self.dir / f"replica-{i}.log"

    def start(self, i: int) -> None:
        with open(self.log(i), "ab") as handle:
            self.procs[i] = subprocess.Popen(
                poe_argv("replica", "--config", str(self.config), "--id", str(i),
                         *self.settings, "--set", "replica.status_interval_s=1"),
                cwd=self.dir, stdout=handle, stderr=handle, start_new_session=True)
        self.starts[i] = self.starts.get(i, 0) + 1

    def start_all(self) -> None:
        for i in range(self.n):
            self.start(i)
        for i in range(self.n):
            self.wait_ready(i)

    def wait_ready(self, i: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            text = self.log(i).read_text(errors="replace")
            if text.count('"event":"ready"') >= self.starts[i]:
                return
            if self.procs[i].poll() is not None:
                pytest.fail(f"replica {i} exited at start-up:\n{text[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"replica {i} not ready in {START_TIMEOUT_S} s:\n{text[-3000:]}")
            time.sleep(0.05)

    def kill9(self, i: int) -> None:
        os.killpg(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait(30)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def stop(self) -> dict[int, dict]:
        """SIGTERM every replica, wait, SIGKILL leftovers; the last exit record of each."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        statuses = {}
        for i, proc in self.procs.items():
            try:
                statuses[i] = proc.wait(30)
            except subprocess.TimeoutExpired:
                statuses[i] = None
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(30)
        records = {}
        for i in self.procs:
            exits = [json.loads(line) for line in self.log(i).read_text().splitlines()
                     if '"event":"exit"' in line]
            records[i] = {"status": statuses[i], "exit": exits[-1] if exits else None}
        self.procs = {}
        return records
