"""Messages executed where ``inform`` never ran for them, and retries of executed messages
whose answer is gone (swarm seed 9012; PROTOCOL.md §2.5, §2.8, §4.12, §4.13, §5.5).

A position can reach a replica's state without the replica executing it in the normal
case: a state transfer (snapshot or replayed batches), a new view. Whatever the primary
queued or proposed for such a position, whatever a backup forwarded and waits for (T_req),
must follow the state. And a message the state says executed is never ordered again for
an answer nobody can give: a replica answers it with its original answer or not at all --
never with a STALE "not executed" for a message that ran.
"""
from __future__ import annotations

from collections import Counter

import pytest
from poe._core.codec import CheckpointProof

from poe._core import codec, kv
from poe.crypto.base import replica
from poe.crypto.statements import vc_request_statement
from poe.protocol.actions import Executed, Reply, Send
from poe.protocol.poe.client import ANSWER_WINDOW, Completed
from poe.protocol.poe.view_change import TIMER_PROGRESS

OK, STALE = codec.ST_OK, codec.ST_STALE


def ins(t, key, value):
    return (t, key, codec.OP_INSERT, value)


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_a_key_the_primary_proposed_leaves_pending_when_its_position_comes_by_transfer(
        cluster, mode):
    """The primary proposed client 0's message at k = 1, lost every SUPPORT and caught up
    to checkpoint 2 by a snapshot (the backups executed it). Its pending key goes, with
    client 0's share slot: a retry is not 'request-pending' forever and client 0's next
    message is not 'client-over-share'. On b62a8c9: {'request-pending': 1,
    'client-over-share': 1} and nothing proposed."""
    H = cluster(mode, checkpoint_period=2, window=4, batch_size=1, client_pending_max=1)
    r0, ahead = H.replica(0), H.replica(1)
    m1 = H.message(0, [ins(1, 1, b"a")])
    out = r0.on_message(codec.encode_request(m1), 0.0)
    assert H.sends(out, codec.PROPOSE) and (0, 1) in r0.pending and r0.pending.of(0) == 1
    H.commit(ahead, 1, [m1], 0.1)
    H.commit(ahead, 2, [H.message(1, [ins(1, 2, b"b")])], 0.1)
    H.transfer_snapshot(r0, ahead, 2, 0.2)
    # the retry: executed (our kv says so), no answer here: not ordered again; and client
    # 0's next message has its share slot back
    assert r0.on_message(codec.encode_request(m1), 0.3) == []
    out = r0.on_message(H.request(0, [ins(2, 3, b"c")]), 0.4)
    assert r0.drops == Counter({"request-executed-unanswered": 1})
    assert {codec.peek(s.data)[3] for s in H.sends(out, codec.PROPOSE)} == {3}
    assert r0.stats["pending-settled"] == 1 and (0, 1) not in r0.pending


def test_a_pending_key_the_state_says_executed_is_settled_on_its_retry(ts):
    """The net under every path that bypasses ``inform``: a pending key whose message the
    kv says executed (left behind, as a path without ``inform`` would leave it) is settled
    by the next retry of that message instead of dropping it as request-pending. On
    b62a8c9: {'request-pending': 1}."""
    H = ts
    r0 = H.replica(0)
    m1 = H.message(0, [ins(1, 1, b"a")])
    out = r0.on_message(codec.encode_request(m1), 0.0)
    out += r0.on_timeout("batch", 0, 0.0)
    h = H.digest([m1])
    r0.on_message(H.support(1, 0, 1, h), 0.1)
    r0.on_message(H.support(2, 0, 1, h), 0.1)
    assert r0.k_exec == 1 and (0, 1) not in r0.pending
    r0.pending.add((0, 1))                     # a key left behind
    r0.replies.drop_above(0)                   # and its answer gone
    assert r0.on_message(codec.encode_request(m1), 0.2) == []
    assert r0.drops == Counter({"request-executed-unanswered": 1})
    assert r0.stats["pending-found-executed"] == 1 and (0, 1) not in r0.pending


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_a_forwarded_message_executed_by_state_transfer_is_not_waited_for(cluster, mode):
    """A backup forwarded client 0's retry (T_req armed), then caught up past its execution
    by a snapshot: the primary owes nothing more, so no suspicion when T_req would expire
    (§4.12). On b62a8c9: the forwarded message stays watched and the backup starts a view
    change ('suspect-timeout')."""
    H = cluster(mode, checkpoint_period=2, window=4, batch_size=1)
    r1, ahead = H.replica(1), H.replica(2)
    m1 = H.message(0, [ins(1, 1, b"a")])
    out = r1.on_message(codec.encode_request(m1), 0.0)
    assert H.sends(out, codec.REQUEST) and (0, 1) in r1.forwarded
    H.commit(ahead, 1, [m1], 0.1)
    H.commit(ahead, 2, [H.message(1, [ins(1, 2, b"b")])], 0.1)
    H.transfer_snapshot(r1, ahead, 2, 0.2)
    r1.on_timeout(TIMER_PROGRESS, 0, 10 * H.config.view_change_timeout_s)
    assert r1.status == "normal" and r1.stats["suspect-timeout"] == 0
    assert not r1.forwarded


def _vc(H, sender, leaving):
    genesis = CheckpointProof(0, b"\0" * 32, H.config.genesis, ())
    frame = codec.encode_vc_request(sender, leaving, genesis, [])
    return codec.seal(frame, H.suite(replica(sender)).signer.sign(vc_request_statement(frame)))


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_an_old_primary_installing_a_new_view_from_the_normal_case_drops_its_queue(
        cluster, mode):
    """The primary of view 0 never suspected anyone and installs view 1 straight from its
    NV-PROPOSE: the new history drops its proposal, so its queue and pending keys are void
    (as for a replica that left view 0 with a VC-REQUEST). On b62a8c9 the key stayed
    pending with client 0's share slot, until this replica was primary again."""
    H = cluster(mode, batch_size=1, client_pending_max=1)
    r0 = H.replica(0)
    r0.on_message(H.request(0, [ins(1, 1, b"a")]), 0.0)
    r0.on_message(H.request(1, [ins(1, 2, b"b")]), 0.0)
    assert len(r0.pending) == 2 and r0.status == "normal"
    nv = codec.encode_nv_propose(1, 1, [_vc(H, s, 0) for s in (1, 2, 3)])
    r0.on_message(H.mac(1, 0, nv), 0.5)
    assert r0.view == 1 and r0.status == "normal"
    assert len(r0.pending) == 0 and r0.pending.of(0) == 0 and not r0.ready
    assert not r0.open_messages


def test_the_primary_does_not_order_an_executed_message_whose_answer_it_evicted(cluster):
    """Client 0's first message executed in a batch with 39 more of client 0 and 30 of
    client 1; the reply cache (64 answers) evicted client 0's oldest answers. Its retry at
    the primary is not proposed again: our kv says it executed (inside the exactly-once
    window), so ordered it would execute nothing and answer nothing (a DUPLICATE), a
    consensus round per replay (§4.13). On b62a8c9: proposed at k = 2."""
    H = cluster("ts", batch_size=100, batch_timeout_s=1.0, reply_cache_size=64)
    r0 = H.replica(0)
    messages = [H.message(0, [ins(t, t, b"v")]) for t in range(1, 41)]
    messages += [H.message(1, [ins(t, 100 + t, b"w")]) for t in range(1, 31)]
    for m in messages:
        r0.on_message(codec.encode_request(m), 0.0)
    out = r0.on_timeout("batch", 0, 1.0)
    assert H.sends(out, codec.PROPOSE)
    h = H.digest(messages)
    r0.on_message(H.support(1, 0, 1, h), 1.1)
    r0.on_message(H.support(2, 0, 1, h), 1.1)
    assert r0.k_exec == 1 and r0.replies.get((0, 1)) is None
    assert r0.kv.client_state(0)[0] == 40          # id 1 inside the exactly-once window
    out = r0.on_message(codec.encode_request(messages[0]), 2.0)
    out += r0.on_timeout("batch", 0, 3.0)
    assert not H.sends(out, codec.PROPOSE) and r0.next_k == 2
    assert r0.drops == Counter({"request-executed-unanswered": 1})


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_a_message_ordered_again_after_its_id_went_stale_gets_its_original_answer(
        cluster, mode):
    """Client 0's message 1 executed at k = 1; its message 1 + W (W = kv.WINDOW) at k = 2
    slid the kv's exactly-once window past id 1 (STALE). A faulty primary orders message 1 again at
    k = 3: the backup answers with its original INFORM (k = 1, OK) and keeps it cached.
    On b62a8c9 it sent an INFORM for k = 3 with status STALE -- "not executed" about a
    message that ran -- and overwrote its cached answer with it."""
    H = cluster(mode)
    r1 = H.replica(1)
    m1 = H.message(0, [ins(1, 1, b"a")])
    [first] = H.of(H.commit(r1, 1, [m1]), Reply)
    H.commit(r1, 2, [H.message(0, [ins(1 + kv.WINDOW, 2, b"b")])])
    out = H.commit(r1, 3, [m1])
    [e] = H.of(out, Executed)
    assert e.seq == 3 and e.results.ops(0)[0][1] == STALE
    assert H.of(out, Reply) == [Reply(0, first.data)]
    assert r1.replies.get((0, 1))[:3] == (0, 1, first.data)


def test_a_client_sends_no_message_beyond_its_answer_window(ts):
    """The replicas keep the answers of a client's 64 newest messages (§2.2 client_table):
    while its oldest message waits for a proof, the client sends no message 64 or more
    messages after it; that one is held (no frame, no timer) and leaves when the oldest is
    decided. On b62a8c9 the 65th message went out at once: 64 later messages could evict
    the answer of the first at every replica, and no retry of it could be answered again
    (swarm seed 9012)."""
    H = ts
    c = H.client(0)
    for j in range(ANSWER_WINDOW):
        _, out = c.submit([(j, codec.OP_UPDATE, b"x")], 0.0)
        assert len(H.sends(out, codec.REQUEST)) == 1
    handle, out = c.submit([(99, codec.OP_UPDATE, b"y")], 0.0)
    assert out == [] and c.stats["held-for-answer-window"] == 1
    assert c.on_timeout("retry", handle, 100.0) == []          # not sent: no timer
    # an INFORM naming it is one no correct replica sends: dropped whole
    assert c.on_message(H.inform(1, 0, 5, [(handle, OK, b"")]), 0.5) == []
    assert c.drops["inform-for-unsent-message"] == 1
    # the first message is decided: the held one goes out now, with its timer
    out = []
    for r in (0, 1, 2):
        out += c.on_message(H.inform(r, 0, 1, [(1, OK, b"")]), 1.0)
    assert [a.handle for a in out if isinstance(a, Completed)] == [1]
    [send] = [a for a in out if isinstance(a, Send)]
    assert codec.decode(send.data).batch.first_request_id(0) == handle
    assert any(a.kind == "retry" and a.key == handle and a.at == 1.0 + c.retry_timeout_s
               for a in out if type(a).__name__ == "SetTimer")
    # the window slides one message per decision: the next one waits for message 2
    nxt, out = c.submit([(7, codec.OP_UPDATE, b"z")], 1.0)
    assert out == [] and c.held == 1
    out = []
    for r in (0, 1, 2):
        out += c.on_message(H.inform(r, 0, 2, [(2, OK, b"")]), 1.5)
    [send] = [a for a in out if isinstance(a, Send)]
    assert codec.decode(send.data).batch.first_request_id(0) == nxt and c.held == 0


def test_queued_messages_the_state_says_executed_leave_the_queue_and_pending(cluster):
    """``_settle_executed`` on a primary whose kv executed some of the messages it still
    queues (open, and in closed batches waiting for the window): those leave the queue and
    the pending set (counted), the others stay in order, with their keys pending and the
    open batch's size recomputed; a closed batch left empty goes."""
    H = cluster("mac")
    r0 = H.replica(0)
    assert r0.is_primary
    m = {t: H.message(1, [ins(t, t, b"a"), ins(t + 1, t + 1, b"b")]) for t in (1, 3, 5, 7, 9)}
    r0.open_messages = [m[1], m[5]]
    r0.open_ops = 4
    r0.ready.extend([codec.Batch.from_messages([m[3]]),
                     codec.Batch.from_messages([m[7], m[9]])])
    for t in (1, 3, 5, 7, 9):
        r0.pending.add((1, t))
    # the state moved without inform: messages 3 and 7 executed (e.g. by a state transfer)
    r0.kv.execute(1, codec.Batch.from_messages([m[3], m[7]]))
    assert r0._settle_executed() == 2
    assert r0.open_messages == [m[1], m[5]] and r0.open_ops == 4
    assert [[b.message(i) for i in range(len(b))] for b in r0.ready] == [[m[9]]]
    assert sorted(r0.pending) == [(1, 1), (1, 5), (1, 9)]
    assert r0.stats["queued-executed-dropped"] == 2
    r0.kv.execute(2, codec.Batch.from_messages([m[5]]))
    assert r0._settle_executed() == 1
    assert r0.open_messages == [m[1]] and r0.open_ops == 2
    assert sorted(r0.pending) == [(1, 1), (1, 9)]
