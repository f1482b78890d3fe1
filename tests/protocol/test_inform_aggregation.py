"""One INFORM per client per batch (issue #15): the replica sends a client one frame, one MAC,
with an entry (idx, results) for each of its messages in the batch; the client counts it as
one vote of its sender for each message it covers, and the proof rule per message is
unchanged: nf INFORMs from distinct replicas agreeing on (v, k, idx, r) (PROTOCOL.md §2.4),
or f+1 matching FINAL ones."""
from __future__ import annotations

from poe._core import codec
from poe.crypto.base import client, replica
from poe.protocol.actions import Reply, Send
from poe.protocol.poe.client import Completed

OK, NOT_FOUND, DUP = codec.ST_OK, codec.ST_NOT_FOUND, codec.ST_DUPLICATE


def ins(t, key, value):
    return (t, key, codec.OP_INSERT, value)


def read(t, key):
    return (t, key, codec.OP_READ, b"")


def INS(key, value):
    """An operation as PoEClient.submit takes it (the client picks the request id)."""
    return (key, codec.OP_INSERT, value)


def READ(key):
    return (key, codec.OP_READ, b"")


def _executed(H, r, k, msgs):
    """Backup ``r`` accepts PROPOSE(0, k, msgs) and executes it; its Reply actions."""
    out = H.commit(r, k, msgs)
    assert r.k_exec == k
    return H.of(out, Reply)


def _client_messages(H, c, *op_lists):
    """Client ``c`` submits one message per op list; (handles, signed client messages)."""
    handles, msgs = [], []
    for ops in op_lists:
        handle, actions = c.submit(ops, 0.0)
        handles.append(handle)
        msgs.append(bytes(codec.decode(actions[0].data).client_message))
    return handles, msgs


# ------------------------------------------------------------------------------ replica


def test_a_batch_with_two_messages_of_a_client_yields_one_inform_to_it(ts):
    a0 = ts.message(0, [ins(1, 10, b"a")])
    b = ts.message(1, [ins(1, 11, b"b")])
    a1 = ts.message(0, [ins(2, 12, b"c"), read(3, 10)])
    r1 = ts.replica(1)
    replies = _executed(ts, r1, 1, [a0, b, a1])
    assert sorted(rep.client for rep in replies) == [0, 1]     # one per client, not per message
    [to0] = [rep for rep in replies if rep.client == 0]
    m = codec.decode(to0.data)
    assert ts.suite(client(0)).macs.verify(replica(1), m.signed, m.auth)    # one MAC, for 0
    assert (m.kind, m.sender, m.view, m.seq, m.client) == (codec.INFORM, 1, 0, 1, 0)
    assert m.entries() == [(0, ((1, OK, b""),)), (2, ((2, OK, b""), (3, OK, b"a")))]
    # every message the frame covers is answered with it from the reply cache
    assert r1.replies.get((0, 1))[2] is to0.data and r1.replies.get((0, 2))[2] is to0.data
    assert r1.replies.get((0, 1))[:2] == (0, 1) and len(r1.replies) == 3
    retry = r1.on_message(codec.encode_request(a1), 0.5)
    assert [(rep.client, rep.data) for rep in ts.of(retry, Reply)] == [(0, to0.data)]
    assert r1.stats["reply-from-cache"] == 1


def test_a_message_repeated_in_a_batch_gets_one_entry_and_a_resubmission_its_frame(ts):
    a0 = ts.message(0, [ins(1, 10, b"a")])
    a1 = ts.message(0, [ins(2, 11, b"b")])
    r1 = ts.replica(1)
    # a faulty primary put a0 twice: the second copy is all DUPLICATE, covered by the first
    [first] = _executed(ts, r1, 1, [a0, a1, a0])
    m = codec.decode(first.data)
    assert [m.index(j) for j in range(len(m))] == [0, 1] and m.client == 0
    # both proposed again (with one fresh message): the old frame once, a new one for a2
    a2 = ts.message(0, [ins(3, 12, b"c")])
    replies = _executed(ts, r1, 2, [a1, a0, a2])
    assert [rep.data for rep in replies][0] is first.data and len(replies) == 2
    fresh = codec.decode(replies[1].data)
    assert (fresh.seq, fresh.entries()) == (2, [(2, ((3, OK, b""),))])


def test_the_final_refresh_covers_every_message_of_the_frame(ts):
    a0 = ts.message(0, [ins(1, 10, b"a")])
    a1 = ts.message(0, [ins(2, 11, b"b")])
    r1 = ts.replica(1)
    [rep] = _executed(ts, r1, 1, [a0, a1])
    view, seq, sealed, _ = r1._refresh_final_reply((0, 2), 0, r1.replies.get((0, 2)))
    m = codec.decode(sealed)
    assert m.final and (view, seq, m.view, m.seq) == (0, 1, 0, 1)
    assert m.body_bytes() == codec.decode(rep.data).body_bytes()
    assert ts.suite(client(0)).macs.verify(replica(1), m.signed, m.auth)
    assert r1.replies.get((0, 1))[2] is sealed and r1.replies.get((0, 2))[2] is sealed


# ------------------------------------------------------------------------------ client


def test_aggregated_informs_of_nf_distinct_replicas_prove_each_message(ts):
    c = ts.client(0)
    handles, msgs = _client_messages(ts, c, [INS(10, b"a")], [INS(11, b"b"), READ(11)])
    other = ts.message(1, [ins(1, 12, b"x")])
    batch = [msgs[0], other, msgs[1]]
    frames = {}
    for r in (1, 2, 3):
        [rep] = [x for x in _executed(ts, ts.replica(r), 1, batch) if x.client == 0]
        frames[r] = rep.data
    assert c.on_message(frames[1], 0.1) == []
    assert c.on_message(frames[1], 0.1) == []             # the same replica again: not a vote
    assert c.drops["duplicate-inform"] == 2               # one per message it covers
    assert c.on_message(frames[2], 0.2) == [] and len(c.pending) == 2
    out = c.on_message(frames[3], 0.3)
    done = {a.handle: a for a in out if isinstance(a, Completed)}
    assert set(done) == set(handles) and not c.pending
    assert (done[handles[0]].index, done[handles[0]].results) == (0, ((1, OK, b""),))
    assert (done[handles[1]].index, done[handles[1]].results) == (
        2, ((2, OK, b""), (3, OK, b"b")))
    assert all(d.replicas == (1, 2, 3) and d.seq == 1 and d.view == 0 for d in done.values())


def test_one_wrong_entry_spoils_only_that_message(ts):
    c = ts.client(0)
    h1, h2 = _client_messages(ts, c, [INS(10, b"a")], [INS(11, b"b")])[0]
    good = [(0, [(1, OK, b"")]), (1, [(2, OK, b"")])]
    wrong = [(0, [(1, OK, b"")]), (1, [(2, NOT_FOUND, b"")])]     # replica 0 lies about h2
    assert c.on_message(ts.inform(0, 0, 1, None, entries=wrong), 0.1) == []
    assert c.on_message(ts.inform(1, 0, 1, None, entries=good), 0.1) == []
    out = c.on_message(ts.inform(2, 0, 1, None, entries=good), 0.2)
    [done] = [a for a in out if isinstance(a, Completed)]
    assert done.handle == h1 and done.replicas == (0, 1, 2)       # the faulty vote counts here
    assert list(c.pending) == [h2]                                # 2 of 3 for h2 so far
    out = c.on_message(ts.inform(3, 0, 1, None, entries=good), 0.3)
    [done] = [a for a in out if isinstance(a, Completed)]
    assert done.handle == h2 and done.replicas == (1, 2, 3)       # the lie never counted
    assert done.results == ((2, OK, b""),) and not c.pending


def test_a_single_entry_and_an_aggregated_inform_of_one_replica_are_one_vote(ts):
    c = ts.client(0)
    h1, h2 = _client_messages(ts, c, [INS(10, b"a")], [INS(11, b"b")])[0]
    e1, e2 = (0, [(1, OK, b"")]), (1, [(2, OK, b"")])
    c.on_message(ts.inform(1, 0, 1, None, entries=[e1]), 0.1)
    c.on_message(ts.inform(1, 0, 1, None, entries=[e1, e2]), 0.1)    # e.g. from its cache
    c.on_message(ts.inform(2, 0, 1, None, entries=[e1, e2]), 0.1)
    assert c.drops["duplicate-inform"] == 1 and len(c.pending) == 2  # 2 replicas each
    out = c.on_message(ts.inform(3, 0, 1, None, entries=[e2, ]), 0.2)
    assert [a.handle for a in out if isinstance(a, Completed)] == [h2]
    out = c.on_message(ts.inform(0, 0, 1, None, entries=[e1, e2]), 0.3)
    assert [a.handle for a in out if isinstance(a, Completed)] == [h1]
    assert c.drops["inform-after-decision"] == 1                      # e2: already decided


def test_frames_a_correct_replica_never_sends_are_dropped_whole(ts):
    c = ts.client(0)
    h1, h2 = _client_messages(ts, c, [INS(10, b"a")], [INS(11, b"b")])[0]
    e1, e2 = (0, [(1, OK, b"")]), (1, [(2, OK, b"")])
    cases = {
        # the same message twice (two batch positions): one replica, two votes
        "inform-repeats-message": [e1, (1, [(1, OK, b"")])],
        # a message we never sent (ids we have not used yet)
        "inform-for-unsent-message": [e1, (1, [(9, OK, b"")])],
        # h2 has one request; this entry claims two results
        "wrong-request-ids": [e1, (1, [(2, OK, b""), (3, OK, b"")])],
    }
    for reason, entries in cases.items():
        for r in (0, 1, 2):
            assert c.on_message(ts.inform(r, 0, 1, None, entries=entries), 0.1) == [], reason
        assert c.drops[reason] == 3, reason
    # none of those frames counted for e1, though each carried it correctly
    assert all(not p.votes for p in c.pending.values()) and len(c.pending) == 2
    # a malformed entry poisons the decode: the frame is dropped before any vote
    frame = bytearray(codec.encode_inform(1, 0, 1, codec.inform_body(0, [e1, e2])))
    frame[32 + 6 + 33 + 4] = 7          # the second entry's count: 1 -> 7, past the bytes
    sealed = codec.seal(bytes(frame), ts.suite(replica(1)).macs.mac(client(0), bytes(frame)))
    assert c.on_message(sealed, 0.1) == [] and c.drops["malformed"] == 1
    for r in (1, 2, 3):
        out = c.on_message(ts.inform(r, 0, 1, None, entries=[e1, e2]), 0.2)
    assert sorted(a.handle for a in out if isinstance(a, Completed)) == [h1, h2]


def test_f_plus_one_final_aggregated_informs_prove_each_message(ts):
    c = ts.client(0)
    h1, h2 = _client_messages(ts, c, [INS(10, b"a")], [INS(11, b"b")])[0]
    e1, e2 = (0, [(1, OK, b"")]), (1, [(2, OK, b"")])
    e2_other = (1, [(2, NOT_FOUND, b"")])
    # FINAL frames from views 3 and 5 (they executed it in different views): seq and entry
    # match, so f + 1 = 2 of them prove both messages
    assert c.on_message(ts.inform(1, 0, 1, None, v=3, entries=[e1, e2_other], final=True),
                        0.1) == []
    out = c.on_message(ts.inform(2, 0, 1, None, v=5, entries=[e1, e2], final=True), 0.2)
    [done] = [a for a in out if isinstance(a, Completed)]
    assert done.handle == h1 and done.final and done.replicas == (1, 2)
    out = c.on_message(ts.inform(3, 0, 1, None, v=5, entries=[e1, e2], final=True), 0.3)
    [done] = [a for a in out if isinstance(a, Completed)]
    assert done.handle == h2 and done.final and done.replicas == (2, 3)
    assert not c.pending


# ------------------------------------------------------------------ answers bound to content


def m_sig(message: bytes) -> bytes:
    return message[-64:]                   # a signed client message ends with its signature


def test_another_message_under_an_answered_id_never_gets_that_answer(ts):
    """Two processes acting as client 0 (two hosts: no lease sees both) send different
    messages under request id 1. The second is not the one answered: replicas never hand it
    the first one's INFORM (its sender would take its write as executed, issue 16); ordered,
    it is answered with its own DUPLICATE results, and the first keeps its cached answer."""
    first = ts.message(0, [ins(1, 10, b"mine")])
    other = ts.message(0, [ins(1, 10, b"theirs")])
    assert first != other
    r1 = ts.replica(1)
    [answer] = _executed(ts, r1, 1, [first])
    # a retry of the first is answered from the cache ...
    retry = r1.on_message(codec.encode_request(first), 0.5)
    assert [rep.data for rep in ts.of(retry, Reply)] == [answer.data]
    # ... the other message is not (the backup forwards it to the primary instead)
    forwarded = r1.on_message(codec.encode_request(other), 0.6)
    assert ts.of(forwarded, Reply) == []
    assert r1.stats["request-reuses-answered-id"] == 1
    # ordered in batch 2: its own answer, DUPLICATE, not the first one's frame
    [own] = _executed(ts, r1, 2, [other])
    m = codec.decode(own.data)
    assert own.data != answer.data and m.seq == 2
    assert m.entries() == [(0, ((1, DUP, b""),))]
    assert r1.stats["inform-duplicate-of-other-message"] == 1
    assert r1.replies.get((0, 1))[2] is answer.data      # the first keeps its answer
    again = r1.on_message(codec.encode_request(first), 0.7)
    assert [rep.data for rep in ts.of(again, Reply)] == [answer.data]
    # a replay of the other message gets its own answer from the cache: it is not ordered
    # (nor its signature checked) again for every copy (§4.13, review of issue 16)
    replay = r1.on_message(codec.encode_request(other), 0.8)
    assert [rep.data for rep in ts.of(replay, Reply)] == [own.data]
    assert ts.of(replay, Send) == [] and r1.stats["reply-from-cache-other"] == 1
    r1.replies.drop_above(1)                              # batch 2 rolled back: forgotten
    assert r1.replies.get_other((0, 1), m_sig(other)) is None


# ------------------------------------------------------------------ frames within bounds


def test_one_clients_entries_are_split_over_frames_within_the_body_limit(cluster):
    """16 messages x 256 reads of a 4 KiB value fill a batch of 4,096 for one client: one
    frame would pass the codec's 16 MiB body (every replica crashed on it, review of issue
    15); the entries go out in frames of at most INFORM_FRAME_BUDGET bytes (plus one entry),
    every message covered once, each answered from the cache with its own frame."""
    from poe.protocol.poe.clients import INFORM_FRAME_BUDGET

    H = cluster("ts", batch_size=4096)
    r1 = H.replica(1)
    H.commit(r1, 1, [H.message(0, [ins(1, 10, b"x" * codec.MAX_VALUE)])])
    t, msgs = 2, []
    for _ in range(16):
        msgs.append(H.message(0, [read(t + i, 10) for i in range(256)]))
        t += 256
    replies = H.of(H.commit(r1, 2, msgs), Reply)
    assert r1.k_exec == 2 and len(replies) > 1
    covered = []
    for rep in replies:
        m = codec.decode(rep.data)
        assert len(m.body_bytes()) <= INFORM_FRAME_BUDGET + 256 * (11 + codec.MAX_VALUE)
        covered += [m.request_id(j) for j in range(len(m))]
        for j in range(len(m)):
            assert r1.replies.get((0, m.request_id(j)))[2] is rep.data
    assert covered == [2 + 256 * i for i in range(16)]


def test_two_messages_under_one_key_never_share_a_frame(ts):
    """A faulty primary batches two messages of client 0 under one first request id (two
    processes acting as client 0). The correct replicas' frame must not name that message
    twice: every client drops such a frame, and a third message answered from the cache
    with it would never be decided (review of issue 15)."""
    c = ts.client(0)
    h3, acts = c.submit([(11, codec.OP_INSERT, b"x")], 0.0)          # t = 1, its own
    m3 = bytes(codec.decode(acts[0].data).client_message)
    m1 = ts.message(0, [(5, 10, codec.OP_INSERT, b"a")])
    m2 = ts.message(0, [(5, 10, codec.OP_INSERT, b"b"), (6, 12, codec.OP_INSERT, b"c")])
    c.next_t = 7
    for r in (1, 2, 3):
        rep = ts.replica(r)
        frames = [f.data for f in ts.of(ts.commit(rep, 1, [m3, m1, m2]), Reply)]
        for data in frames:
            m = codec.decode(data)
            ids = [m.request_id(j) for j in range(len(m))]
            assert len(ids) == len(set(ids)), ids
            c.on_message(data, 0.1)
        retry = ts.of(rep.on_message(codec.encode_request(m3), 0.2), Reply)
        c.on_message(retry[0].data, 0.2)
    assert c.drops["inform-repeats-message"] == 0
    assert h3 not in c.pending                     # m3 decided by the correct replicas


def test_a_client_never_takes_another_messages_answer_under_its_id(ts):
    """Two processes acting as client 0 (two hosts: no lease sees both) both used request
    id 1. Process A's message was executed; its INFORMs reach B's connection (client 0's
    route). Each entry carries the answered message's tag (its signature's first bytes),
    so B never counts them for its own, unexecuted write (review of issue 16)."""
    m1 = ts.message(0, [(1, 10, codec.OP_INSERT, b"a")])
    b = ts.client(0)
    handle, _ = b.submit([(10, codec.OP_INSERT, b"b")], 0.0)
    assert handle == 1
    done = []
    for r in (1, 2, 3):
        rep = ts.replica(r)
        for a in ts.of(ts.commit(rep, 1, [m1]), Reply):
            m = codec.decode(a.data)
            assert m.tag(0) == m1[-64:][:codec.INFORM_TAG_SIZE]
            done += [x for x in b.on_message(a.data, 0.1) if isinstance(x, Completed)]
    assert not done and handle in b.pending
    assert b.drops["inform-for-other-message"] == 3
