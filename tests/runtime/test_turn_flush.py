"""A long loop turn sends what it has made so far (ReplicaRuntime._deliver / _send_now,
``transport.flush_interval_s``): a frame made early in a turn does not wait for the turn's
later work (a threshold combine or certificate check costs about 1 ms each), and the store
is committed before anything leaves, at every flush (durable before sent)."""
from __future__ import annotations

import time
from collections import Counter
from types import SimpleNamespace

from poe.protocol.actions import Send
from poe.protocol.drops import DropCounter
from poe.runtime.replica import ReplicaRuntime

WORK_S = 0.0015          # each frame's handling: about one certificate check


class _Replica:
    def __init__(self, events: list) -> None:
        self.drops = DropCounter()
        self.events = events

    def on_message(self, frame: bytes, now: float):
        self.events.append(("handle", frame))
        until = time.perf_counter() + WORK_S
        while time.perf_counter() < until:
            pass
        return [Send(1, b"out-" + frame)]


class _Transport:
    def __init__(self, events: list) -> None:
        self.stats: Counter[str] = Counter()
        self.quarantined_peers: dict[bytes, None] = {}
        self.events = events

    def send_peer(self, peer: int, frames: list[bytes]) -> None:
        self.events.append(("send", tuple(frames)))


class _Store:
    def __init__(self, events: list) -> None:
        self.events = events

    def commit(self) -> None:
        self.events.append(("commit",))


def _runtime(flush_interval_s: float):
    events: list = []
    rt = object.__new__(ReplicaRuntime)
    rt._flush_interval = flush_interval_s
    rt.replica = _Replica(events)
    rt.transport = _Transport(events)
    rt.store = _Store(events)
    rt.writer = None
    rt.metrics = None
    rt.peers = [1, 2, 3]
    rt._out = [[] for _ in range(4)]
    rt._replies = {}
    rt.counters = Counter()
    rt._turn_sent_at = time.perf_counter()     # the turn starts
    return rt, events


def _turn(rt, frames: list[bytes]) -> None:
    rt._deliver([(b"r0", frames)], rt.transport.quarantined_peers, False, 1.0)
    rt.store.commit()                           # the turn's end: durable, then sent
    rt._flush()


def test_a_long_turn_sends_what_it_made_before_its_later_work():
    rt, events = _runtime(0.002)
    _turn(rt, [b"a", b"b", b"c", b"d", b"e", b"f"])
    handled = [i for i, e in enumerate(events) if e[0] == "handle"]
    sent = [i for i, e in enumerate(events) if e[0] == "send"]
    # the first frame's answer left before the last frame was handled, not at the turn's end
    assert sent and sent[0] < handled[-1], f"nothing left before the turn ended: {events}"
    # every frame made leaves exactly once, in order
    out = [f for e in events if e[0] == "send" for f in e[1]]
    assert out == [b"out-" + f for f in (b"a", b"b", b"c", b"d", b"e", b"f")]
    # durable before sent: each send right after a commit (§ durability, issue 7)
    for i in sent:
        assert events[i - 1] == ("commit",), events


def test_a_short_turn_keeps_its_frames_coalesced():
    rt, events = _runtime(1.0)
    _turn(rt, [b"a", b"b", b"c"])
    assert [e[0] for e in events] == ["handle", "handle", "handle", "commit", "send"]
    assert events[-1] == ("send", (b"out-a", b"out-b", b"out-c"))


def test_with_an_fsync_per_flush_a_turn_flushes_at_its_end_only():
    def config(data_dir: str, policy: str):
        return SimpleNamespace(transport=SimpleNamespace(flush_interval_s=0.002),
                               replica=SimpleNamespace(data_dir=data_dir, sync_policy=policy))

    interval = ReplicaRuntime.mid_turn_flush_interval
    assert interval(config("", "batch")) == 0.002          # nothing persisted
    assert interval(config("data", "none")) == 0.002
    assert interval(config("data", "checkpoint")) == 0.002
    assert interval(config("data", "batch")) == float("inf")
