"""poe.runtime.procs: the port probe stays out of the kernel's ephemeral range; process and
machine figures (psutil) agree with the kernel's and are None once a process is gone."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from poe.runtime import procs


def test_free_port_ranges_lie_outside_the_ephemeral_range():
    """An outgoing connection takes its local port from the ephemeral range; a replica port
    probed there can be taken before the replica binds it (CI, stop 18: "port 58406 ...
    already in use")."""
    low, high = procs.ephemeral_port_range()
    for _ in range(200):
        base = procs.free_port_range(8)
        assert base + 7 < low or base > high, (base, low, high)
        assert 10_000 <= base and base + 7 <= 65_535


def test_a_free_port_range_can_be_bound():
    base = procs.free_port_range(4)
    socks = []
    try:
        for port in range(base, base + 4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", port))
    finally:
        for s in socks:
            s.close()


def test_cpu_and_memory_of_this_process_agree_with_the_kernel():
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    before = usage.ru_utime + usage.ru_stime
    cpu = procs.cpu_seconds(os.getpid())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    assert before - 0.05 <= cpu <= usage.ru_utime + usage.ru_stime + 0.05
    with open("/proc/self/statm", "rb") as handle:
        pages = int(handle.read().split()[1])
    rss = procs.rss_bytes(os.getpid())
    assert abs(rss - pages * os.sysconf("SC_PAGE_SIZE")) < 64 * 2**20, rss


def test_busy_cpu_of_the_machine_moves_with_work():
    first = procs.machine_cpu_seconds()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    second = procs.machine_cpu_seconds()
    assert first > 0 and second - first >= 0.2, (first, second)


def test_a_gone_process_has_no_figures_and_a_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while procs.alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)              # it exits and stays a zombie until waited for
    assert not procs.alive(child.pid)
    assert child.poll() == 0          # reaped: the pid names no process now
    assert procs.cpu_seconds(child.pid) is None and procs.rss_bytes(child.pid) is None
    assert not procs.alive(child.pid)
    assert procs.alive(os.getpid())
