"""Review of h9012 (b62a8c9..0554bad): holes of the class it fixes."""
from __future__ import annotations

from poe._core import codec
from poe.protocol.actions import Reply
from poe.protocol.poe.client import Completed


def _stable(H, r, k, now):
    """Checkpoint k (executed by r) becomes stable at r with the votes of two others."""
    state, chain = r.kv.state_digest(), r.head
    for s in [s for s in range(H.n) if s != r.id][:H.config.nf - 1]:
        r.on_message(H.checkpoint(s, k, state, chain, to=r.id), now)
    assert r.checkpoints.stable.seq == k


def test_one_correct_replica_without_the_answer_and_one_faulty_prove_a_message_did_not_run(
        cluster):
    """Multi-op messages (the sim's default is 10 ops, the bench's 50). Client 0's message 1
    (ids 1..10) executed at k = 1 (OK) while the client still waited for it, and its next 7
    messages (ids 11..80) at k = 2. Replica 2 took k = 1..2 by snapshot (no cached answer).
    The faulty primary 0 orders message 1 again at k = 3, and the client retries it.

    With the kv's old 64-id exactly-once window, ids 1..10 were STALE by then: replica 2
    executed the replay STALE, INFORMed 'STALE' (FINAL once k = 3 was stable), and with
    the faulty primary's own FINAL STALE that made f+1 matching FINAL INFORMs: the client
    completed message 1 as 'not executed' although it ran at k = 1 (on 0554bad: 'client 0
    message 1 executed at k = 1 but was completed at k = 3 with statuses [4] (STALE) by f+1
    FINAL INFORMs'). Now the window is kv.WINDOW (1024) ids and a client never has ids in
    flight spanning it (decision 75): every id a client awaits is inside the window, the
    replay is a DUPLICATE there, and a replica without the original answer says nothing."""
    H = cluster("ts", checkpoint_period=2, window=4, batch_size=100)
    c = H.client(0)
    handle, out = c.submit([(j, codec.OP_UPDATE, b"x") for j in range(10)], 0.0)
    m1 = codec.decode(out[0].data).batch.message(0)
    later = []
    for i in range(7):
        _, out = c.submit([(j, codec.OP_UPDATE, b"y") for j in range(10)], 0.0)
        later.append(codec.decode(out[0].data).batch.message(0))
    ahead, r2 = H.replica(1), H.replica(2)
    H.commit(ahead, 1, [m1], 0.1)
    H.commit(ahead, 2, later, 0.1)
    assert ahead.kv.client_state(0)[0] == 80
    H.transfer_snapshot(r2, ahead, 2, 0.2)
    assert r2.replies.get((0, handle)) is None
    # the faulty primary's replay of message 1 at k = 3, and a filler at k = 4
    out = H.commit(r2, 3, [m1], 0.3)
    assert not [a for a in out if isinstance(a, Reply)], "an answer for a replayed message"
    H.commit(r2, 4, [H.message(1, [(1, 5, codec.OP_UPDATE, b"z")])], 0.3)
    _stable(H, r2, 4, 0.4)
    # the client retries message 1 (it still waits): replica 2 has no answer to give
    replies = [a for a in r2.on_message(codec.encode_request(m1), 0.5) if isinstance(a, Reply)]
    assert replies == [], "replica 2 answered a message it holds no answer for"
    decided = []
    for reply in replies:
        answer = codec.decode(reply.data)
        assert all(answer.results(j) and all(s != codec.ST_STALE for _, s, _ in
                                             answer.results(j))
                   for j in range(len(answer))), "a STALE answer to a message that ran"
        decided += c.on_message(reply.data, 0.5)
    # the faulty primary's FINAL STALE INFORM alone decides nothing
    stale = [(t, codec.ST_STALE, b"") for t in range(1, 11)]
    decided += c.on_message(H.inform(0, 0, 3, stale, final=True), 0.5)
    completed = [a for a in decided if isinstance(a, Completed)]
    assert not completed, (
        f"client 0 message {handle} executed at k = 1 but was completed at k = "
        f"{completed[0].seq} with statuses {sorted({s for _, s, _ in completed[0].results})} "
        "(STALE) by f+1 FINAL INFORMs")


def test_a_replica_that_took_a_checkpoint_by_snapshot_helps_its_peers_make_it_stable(cluster):
    """Seed 9012's shape with an idle client: replicas 1 (and 0) executed client 0's
    message at k = 1 and hold its answer; faulty replica 3 sent its CHECKPOINT for k = 2
    to replica 2 only, so replica 2 transferred to the stable checkpoint 2 by snapshot
    (votes 0, 1, 3) while replicas 0 and 1 hold only their own two votes. Replica 1
    re-sends its CHECKPOINT (tick): replica 2, stable there and holding exactly that state,
    answers with its own vote (as a restarted replica does for its stored checkpoint),
    and checkpoint 2 becomes stable at replica 1 -- which can now answer the client's
    retries FINAL (f+1 FINAL INFORMs are a proof; 2 correct replicas can never give nf).
    Without it replica 1's answers stay non-final until some later checkpoint: with no
    more traffic, the client waits until OutcomeUnknown."""
    H = cluster("ts", checkpoint_period=2, window=4, batch_size=100)
    r1, r2 = H.replica(1), H.replica(2)
    m1 = H.message(0, [(1, 1, codec.OP_UPDATE, b"x")])
    H.commit(r1, 1, [m1], 0.1)
    out = H.commit(r1, 2, [H.message(1, [(1, 2, codec.OP_UPDATE, b"y")])], 0.1)
    [own] = H.to_all(out, codec.CHECKPOINT, 1)
    state, chain = own.state_digest, own.chain_digest
    r1.on_message(H.checkpoint(0, 2, state, chain, to=1), 0.1)
    assert r1.checkpoints.stable.seq == 0                  # votes 0 and 1: not stable
    for s in (0, 1, 3):
        r2.on_message(H.checkpoint(s, 2, state, chain, to=2), 0.2)
    frame = codec.encode_state_reply(1, 0, 2, snapshot=r1.snapshot_bytes(2))
    r2.on_message(H.mac(1, 2, frame), 0.2)
    assert r2.k_exec == 2 and r2.checkpoints.stable.seq == 2
    # replica 1's retransmitted CHECKPOINT reaches replica 2
    answer = r2.on_message(H.checkpoint(1, 2, state, chain, to=2), 1.0)
    for a in H.sends(answer, codec.CHECKPOINT):
        r1.on_message(a.data, 1.0)
    assert r1.checkpoints.stable.seq == 2, "checkpoint 2 never becomes stable at replica 1"
    [reply] = [a for a in r1.on_message(codec.encode_request(m1), 1.1) if isinstance(a, Reply)]
    assert codec.decode(reply.data).final


def test_a_faulty_clients_overlapping_ids_do_not_make_the_primary_walk_its_queue(cluster):
    """A faulty client's message A (ids 5 and 10) executes while its message B (id 10,
    valid: ids increase inside a message only) is queued: B's pending key is now 'executed
    without inform'. Each retry of B made the primary run ``_settle_executed``, a walk of
    its whole queue (up to pending_requests_max messages) and window, once per such pair:
    O(queue) per faulty message. It needs no walk: that one key leaves the pending set (the
    queued B executes as a DUPLICATE)."""
    H = cluster("ts", batch_size=2, batch_timeout_s=1.0, window=4, checkpoint_period=2)
    r0 = H.replica(0)
    a = H.message(0, [(5, 1, codec.OP_UPDATE, b"a"), (10, 2, codec.OP_UPDATE, b"a")])
    b = H.message(0, [(10, 3, codec.OP_UPDATE, b"b")])
    r0.on_message(codec.encode_request(a), 0.0)        # proposed at k = 1
    r0.on_message(codec.encode_request(b), 0.0)        # queued, then proposed at k = 2
    for j in range(1, 30):                             # others wait for the window
        r0.on_message(H.request(1 + j % 3, [(j, 100 + j, codec.OP_UPDATE, b"q")]), 0.0)
    assert len(r0.ready) >= 10
    h = H.digest([a])
    r0.on_message(H.support(1, 0, 1, h), 0.1)
    r0.on_message(H.support(2, 0, 1, h), 0.1)
    assert r0.k_exec == 1 and (0, 10) in r0.pending
    walked = []
    settle = r0._settle_executed
    r0._settle_executed = lambda: walked.append(1) or settle()
    r0.on_message(codec.encode_request(b), 0.2)
    assert (0, 10) not in r0.pending
    assert walked == [], "a faulty client's retry walked the primary's whole queue"
