"""A pipelining client and the replicas' exactly-once window (PROTOCOL.md §2.2 client_table,
§2.8, §10 row 7).

A client signs many requests per message (the load generator: 50) and has several messages
in flight (4): 200 request ids. The replicas' window of executed ids per client
(``kv.WINDOW`` = 1024) must cover all of them whatever order the messages execute in, and
the client never has ids in flight that span the window: an id below it is STALE, "not
executed" -- for a message that never ran (a correct client's write rejected) or one that
ran long ago (a false answer).
"""
from __future__ import annotations

import pytest

from poe._core import codec, kv
from poe.protocol.actions import Reply, Send
from poe.protocol.poe.client import Completed

OK, STALE = codec.ST_OK, codec.ST_STALE
W = kv.WINDOW


def ops(first, count, value=b"v"):
    return [(key, codec.OP_INSERT, value) for key in range(first, first + count)]


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_a_pipelining_clients_oldest_message_executes_after_its_newest(cluster, mode):
    """Client 0 has 4 messages of 50 requests in flight (ids 1..200). Its retries reach a
    new primary in another order than it sent them (after a view change it orders what it
    receives: the last message first, the others in the next batch), and the replicas run
    message 1 after message 4, 150 ids above it. Message 1 executes and its proof says so.
    On 0554bad (a 64-id window) every request of message 1 was answered STALE (4): 'assert
    [4, 4, 4, 4, 4, 4, ...] == [0, 0, 0, 0, 0, 0, ...]' -- a correct client's writes
    rejected, never executed."""
    H = cluster(mode, batch_size=200)
    c = H.client(0)
    messages, handles = [], []
    for m in range(4):
        handle, out = c.submit(ops(1000 + 50 * m, 50), 0.0)
        [send] = [a for a in out if isinstance(a, Send)]
        messages.append(codec.decode(send.data).batch.message(0))
        handles.append(handle)
    assert handles == [1, 51, 101, 151] and c.held == 0
    completed = []
    for r in (H.replica(1), H.replica(2), H.replica(3)):
        out = H.commit(r, 1, [messages[3]], 1.0) + H.commit(r, 2, messages[:3], 1.0)
        assert r.k_exec == 2 and r.kv.executed_seq == 2
        for reply in H.of(out, Reply):
            completed += [a for a in c.on_message(reply.data, 1.5) if isinstance(a, Completed)]
    assert sorted(p.handle for p in completed) == handles and not c.pending
    first = next(p for p in completed if p.handle == 1)
    assert (first.seq, first.index) == (2, 0)
    assert [status for _, status, _ in first.results] == [OK] * 50
    assert all(r.kv.get(key) == b"v" for key in range(1000, 1200))


def test_a_client_keeps_the_ids_it_awaits_inside_the_exactly_once_window(ts):
    """A message whose last id is W or more above the first id of the client's oldest
    undecided message is held (no frame, no timer) and leaves when the oldest is decided;
    the oldest always goes out, even the largest message; the load generator's defaults
    (4 messages of 50 requests in flight) are never held. On 0554bad the 6th message (ids
    1001..1200, 1199 above id 1) went out at once: 'AssertionError: assert ((1001,
    [Send(...001, at=1.0)]) == (1001, [])'."""
    H = ts
    c = H.client(0)
    for m in range(5):
        handle, out = c.submit(ops(100 * m, 200), 0.0)
        assert handle == 1 + 200 * m and len(H.sends(out, codec.REQUEST)) == 1
    handle, out = c.submit(ops(900, 200), 0.0)          # ids 1001..1200: 1200 - 1 >= W
    assert (handle, out) == (1001, []) and c.held == 1
    assert c.stats["held-for-id-window"] == 1 and c.stats["held-for-answer-window"] == 0
    assert c.on_timeout("retry", handle, 100.0) == []   # not sent: no timer
    # message 1 is decided: the window's bottom moves to id 201, the held one goes out
    out = []
    for r in (0, 1, 2):
        out += c.on_message(H.inform(r, 0, 1, [(t, OK, b"") for t in range(1, 201)]), 1.0)
    assert [a.handle for a in out if isinstance(a, Completed)] == [1]
    [send] = [a for a in out if isinstance(a, Send)]
    assert codec.decode(send.data).batch.first_request_id(0) == handle and c.held == 0
    # what the client has in flight spans fewer than W ids
    pending = list(c.pending.values())
    assert pending[-1].ids[-1] - pending[0].ids[0] < W

    # the largest message goes out alone when it is the oldest
    big = H.client(1)
    _, out = big.submit(ops(0, codec.MAX_OPS_PER_MESSAGE), 0.0)
    assert len(H.sends(out, codec.REQUEST)) == 1
    # the load generator's defaults (poe.bench.runner.BenchSpec): never held
    lg = H.client(2)
    for m in range(4):
        _, out = lg.submit(ops(50 * m, 50), 0.0)
        assert len(H.sends(out, codec.REQUEST)) == 1
    assert lg.held == 0 and not lg.stats["held-for-id-window"]
