"""Process helpers for ``poe cluster``, ``poe bench`` and the system tests.

What it is for: finding free TCP ports on 127.0.0.1, starting poe child processes in their
own session (so they can be stopped as a group) that die with their parent, stopping them
(SIGTERM, then SIGKILL of the whole group), and reading a process's CPU time and resident
memory and the machine's busy CPU time (psutil: the maintained reader of /proc, instead of
parsing /proc/PID/stat by hand).

Must never: signal a process it did not start, or leave a started process running when
``stop`` returns.
"""
from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO

import psutil

_PR_SET_PDEATHSIG = 1
# a process that is gone, a zombie whose figures can no longer be read, or one of another
# user's we may not inspect: no figure (None), never an exception
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError)


def poe_command(*args: str) -> list[str]:
    """``python -P -m poe ARGS``: -P keeps the working directory off sys.path, so the child
    imports the same installed poe as its parent even when started from a source checkout."""
    return [sys.executable, "-P", "-m", "poe", *args]


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent exits (best effort elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux default 32768..60999)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            low, high = (int(v) for v in handle.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port_range(count: int, host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A base port such that base .. base+count-1 could all be bound on ``host`` just now.

    The range lies outside the kernel's ephemeral range: there any outgoing connection (one
    replica dialling another a moment later) may take a port between this probe and the bind,
    and the replica then fails at start-up with "port in use" (CI, stop 18)."""
    rng = random.Random()
    low, high = ephemeral_port_range()
    spans = [(a, b) for a, b in ((10_000, min(low, 65_536) - count),
                                 (max(high + 1, 10_000), 65_536 - count)) if b > a]
    if not spans:                       # the whole range is ephemeral: take our chances
        spans = [(10_000, 65_536 - count)]
    weights = [b - a for a, b in spans]
    for _ in range(attempts):
        a, b = rng.choices(spans, weights)[0]
        base = rng.randrange(a, b)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports found on {host}")


def spawn(argv: Sequence[str], *, stdout: IO | int | None = None,
          stderr: IO | int | None = None, stdin: IO | int | None = subprocess.DEVNULL,
          cwd: str | None = None, env: dict | None = None) -> subprocess.Popen:
    """Start ``argv`` in a new session (its own process group) that dies with us."""
    return subprocess.Popen(list(argv), stdout=stdout, stderr=stderr, stdin=stdin, cwd=cwd,
                            env=env, start_new_session=True,
                            # only a prctl call; callers start children before any thread
                            preexec_fn=die_with_parent)  # noqa: PLW1509


def stop(proc: subprocess.Popen, grace_s: float = 5.0) -> int | None:
    """SIGTERM ``proc``, wait up to ``grace_s``, then SIGKILL its process group. Returns its
    exit status (negative: killed by that signal)."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)       # whatever it started, too
    except (ProcessLookupError, PermissionError):
        pass
    try:
        return proc.wait(5.0)
    except subprocess.TimeoutExpired:
        return None


def stop_all(procs: Sequence[subprocess.Popen], grace_s: float = 5.0) -> None:
    """SIGTERM every process first, then wait for each (so they stop in parallel)."""
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        stop(proc, 0.0)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (None if it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except _GONE:
        return None
    return times.user + times.system


def rss_bytes(pid: int) -> int | None:
    """Resident set size of process ``pid`` in bytes (None if it is gone)."""
    try:
        return psutil.Process(pid).memory_info().rss
    except _GONE:
        return None


def machine_cpu_seconds() -> float | None:
    """CPU seconds every core of the machine spent busy since boot (everything but idle and
    iowait), to tell how much of a run's CPU went to other processes."""
    try:
        times = psutil.cpu_times()
    except OSError:
        return None
    return sum(getattr(times, field, 0.0)
               for field in ("user", "nice", "system", "irq", "softirq", "steal"))


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.AccessDenied:
        return True                    # it exists: another user's we may not inspect
    except (psutil.NoSuchProcess, OSError):
        return False
