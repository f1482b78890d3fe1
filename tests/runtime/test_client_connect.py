"""ClientProcess.wait_connected: all replicas, or a quorum plus a short grace (a replica
that is down costs a second, not the connect timeout). Driven with a stub transport on the
real clock; the assertions are on what it returns, the grace bound only keeps it short."""
from __future__ import annotations

import time

from poe.protocol.config import ProtocolConfig
from poe.runtime.client import ClientProcess


class _Transport:
    def __init__(self, up):
        self.up = up


def _proc(up, arrivals=()):
    """A ClientProcess shell: ``up`` flags now; ``arrivals`` = [(after s, replica)]."""
    proc = object.__new__(ClientProcess)
    proc.transport = _Transport(list(up))
    proc.protocol = ProtocolConfig(n=len(up))
    start = time.monotonic()
    pending = sorted(arrivals)

    def turn(timeout):
        time.sleep(timeout)
        while pending and time.monotonic() - start >= pending[0][0]:
            proc.transport.up[pending.pop(0)[1]] = True
        return []
    proc.turn = turn
    return proc


def test_returns_at_once_when_every_replica_is_up():
    assert _proc([True] * 4).wait_connected(4, 5.0, quorum=3) == 4


def test_a_replica_that_is_down_costs_the_grace_not_the_timeout():
    started = time.monotonic()
    assert _proc([True, True, True, False]).wait_connected(4, 30.0, quorum=3,
                                                           grace_s=0.2) == 3
    assert time.monotonic() - started < 10.0


def test_a_replica_coming_up_within_the_grace_is_waited_for():
    proc = _proc([True, True, True, False], arrivals=[(0.1, 3)])
    assert proc.wait_connected(4, 30.0, quorum=3, grace_s=5.0) == 4


def test_without_the_primary_it_waits_for_the_timeout():
    assert _proc([False, True, True, True]).wait_connected(4, 0.3, quorum=3) == 3


def test_without_a_quorum_argument_it_waits_for_all_or_the_timeout():
    assert _proc([True, True, True, False]).wait_connected(4, 0.3) == 3
