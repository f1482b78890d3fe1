"""poe.runtime.procs: the port probe stays out of the kernel's ephemeral range."""
from __future__ import annotations

import socket

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
