"""Transport framing (split / coalesce), client identities, timers, workloads, percentiles."""
from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from poe._core import codec
from poe.bench.stats import latency_summary
from poe.bench.workload import KeyChooser, OperationStream, WorkloadSpec
from poe.runtime.timers import Timers
from poe.transport.zmq import (
    client_identity,
    coalesce,
    split_frames,
)


def _frame(i: int, size: int = 5) -> bytes:
    message = codec.pack_client_message(i, [(1, i, codec.OP_UPDATE, bytes(size))]) + bytes(64)
    return codec.encode_request(message, 0)


def test_split_returns_each_coalesced_frame():
    frames = [_frame(i, size) for i, size in enumerate([0, 5, 300, 4096, 1])]
    assert split_frames(b"".join(frames)) == frames
    assert split_frames(frames[2]) == [frames[2]]


@given(st.lists(st.integers(0, 2000), min_size=1, max_size=20), st.integers(40, 9000))
def test_coalesce_then_split_is_identity(sizes, limit):
    frames = [_frame(i, size) for i, size in enumerate(sizes)]
    messages = coalesce(frames, limit)
    assert all(len(m) <= limit or m in frames for m in messages)
    assert [f for m in messages for f in split_frames(m)] == frames


@given(st.binary(max_size=200))
def test_split_never_raises_and_loses_no_byte(data):
    pieces = split_frames(data)
    assert b"".join(pieces) == data


def test_split_hands_unparseable_tails_to_the_protocol_whole():
    good = _frame(1)
    assert split_frames(good + b"junk") == [good, b"junk"]
    assert split_frames(good + good[:-3]) == [good, good[:-3]]
    assert split_frames(b"XX" + good[2:]) == [b"XX" + good[2:]]
    bad_flags = bytearray(good)
    bad_flags[4] = 3                                   # auth kind 3 does not exist
    assert split_frames(bytes(bad_flags) + good) == [bytes(bad_flags) + good]
    for piece in split_frames(good + b"junk")[1:]:
        try:
            codec.decode(piece)
        except codec.WireError:
            pass
        else:
            raise AssertionError("junk decoded")


def test_client_identities_are_fresh_per_connection():
    one, two = client_identity(3), client_identity(3)
    assert one.startswith(b"c3.") and two.startswith(b"c3.") and one != two
    assert client_identity(2, 9).startswith(b"c2-9.") and len(one) == len(b"c3.") + 12
    assert b"\x00" not in one[:1]                  # ZeroMQ reserves identities starting with 0


def test_timers_fire_once_in_order_and_honour_rearm_and_cancel():
    t = Timers()
    t.set("a", 3.0)
    t.set("b", 1.0)
    t.set("c", 2.0)
    t.set("a", 0.5)                  # re-arm replaces
    t.cancel("c")
    assert t.next_at() == 0.5
    assert t.pop_due(1.5) == ["a", "b"]
    assert t.pop_due(10.0) == []
    assert len(t) == 0 and t.next_at() is None


def test_timers_heap_stays_bounded_under_rearming():
    t = Timers()
    for i in range(100_000):
        t.set(("retry", i % 10), float(i))
    assert len(t) == 10
    assert len(t._heap) <= 4 * 10 + 1024 + 1
    assert t.pop_due(1e9) == [("retry", k) for k in range(10)]


def test_zipfian_keys_are_in_range_and_skewed():
    chooser = KeyChooser(1000, "zipfian", 0.99, seed=3)
    keys = chooser.draw(50_000)
    assert keys.min() >= 0 and keys.max() < 1000
    counts = np.bincount(keys, minlength=1000)
    top = np.sort(counts)[::-1]
    assert top[:10].sum() > 0.25 * keys.size          # uniform would give 1 %
    uniform = KeyChooser(1000, "uniform", seed=3).draw(50_000)
    assert np.sort(np.bincount(uniform, minlength=1000))[::-1][:10].sum() < 0.03 * 50_000


def test_workload_mixes():
    for name, reads in (("A", 0.5), ("B", 0.95), ("C", 1.0), ("F", 0.5)):
        stream = OperationStream(WorkloadSpec(workload=name, record_count=100, value_size=7,
                                              ops_per_message=10), stream=1)
        ops = [op for _ in range(2000) for op in stream.message()]
        share = sum(op[1] == codec.OP_READ for op in ops) / len(ops)
        assert abs(share - reads) < 0.03, name
        writes = [op for op in ops if op[1] != codec.OP_READ]
        assert all(len(op[2]) == 7 for op in writes)
        assert all(op[1] == (codec.OP_RMW if name == "F" else codec.OP_UPDATE) for op in writes)
        assert all(0 <= op[0] < 100 for op in ops)


def test_percentiles_are_observed_values():
    lat = np.array([0.001 * i for i in range(1, 101)])
    s = latency_summary(lat)
    assert (s["p50"], s["p95"], s["p99"], s["max"]) == (50.0, 95.0, 99.0, 100.0)
    assert latency_summary(np.empty(0))["p50"] is None


@given(st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=1, max_size=300))
def test_percentiles_are_the_nearest_rank(values):
    """numpy's inverted_cdf is the nearest-rank definition: the ceil(p/100 * n)-th smallest
    value, never an interpolation between two."""
    lat = np.array(values)
    ms = np.sort(lat * 1000.0)
    s = latency_summary(lat)
    for p in (50, 95, 99):
        rank = max(int(np.ceil(p / 100 * ms.size)) - 1, 0)
        assert s[f"p{p}"] == round(float(ms[rank]), 3)
    assert s["count"] == len(values) and s["max"] == round(float(ms[-1]), 3)
