"""The PBFT baseline's own steps, driven by hand (issue #8): PREPARE (SUPPORT) quorum ->
COMMIT to all -> execute only at nf matching COMMITs of the view, in order; REPLY quorum
f+1 at the client; hostile COMMITs dropped and counted."""
from collections import Counter

import pytest

from poe._core import codec
from poe._core.codec import Batch
from poe._core.digest import batch_digest
from poe.baselines.pbft import PBFTClient, PBFTReplica
from poe.protocol.actions import Executed, Persist, Reply
from poe.protocol.config import ConfigError, ProtocolConfig


def ins(t, key, value):
    return (t, key, codec.OP_INSERT, value)


@pytest.fixture
def H(cluster):
    return cluster("mac", protocol="pbft")


def _prepared(H, r, k=1, cid=0, value=b"a"):
    """PRE-PREPARE (PROPOSE) from primary 0 plus replica 2's PREPARE: nf = 3 with ours."""
    msgs = [H.message(cid, [ins(k, 10 + k, value)])]
    h = H.digest(msgs)
    out = r.on_message(H.propose(r.id, k, msgs), 0.0)
    out += r.on_message(H.support(2, r.id, k, h), 0.0)
    return msgs, h, out


def test_pbft_needs_the_mac_fabric():
    with pytest.raises(ConfigError, match="mode 'mac'"):
        ProtocolConfig(n=4, mode="ts", protocol="pbft").validate()
    with pytest.raises(ConfigError, match="protocol"):
        ProtocolConfig(n=4, mode="mac", protocol="zyzzyva").validate()


def test_prepared_sends_commit_to_all_but_does_not_execute(H):
    r1 = H.replica(1)
    assert isinstance(r1, PBFTReplica)
    _, h, out = _prepared(H, r1)
    commits = H.sends(out, codec.COMMIT)
    assert sorted(a.to for a in commits) == [0, 2, 3]
    m = codec.decode(commits[0].data)
    assert (m.kind, m.sender, m.view, m.seq, m.digest) == (codec.COMMIT, 1, 0, 1, h)
    # the vote, with its batch, is persisted before any COMMIT leaves
    [vote] = [a for a in out if isinstance(a, Persist) and a.record[0] == "commit"]
    assert vote.record[:4] == ("commit", 0, 1, h)
    assert batch_digest(Batch.from_body(vote.record[4])) == h
    assert out.index(vote) < out.index(commits[0])
    assert not H.of(out, Executed) and r1.k_exec == 0


def test_no_commit_before_prepared(H):
    r1 = H.replica(1)
    msgs = [H.message(0, [ins(1, 11, b"a")])]
    out = r1.on_message(H.propose(1, 1, msgs), 0.0)      # PRE-PREPARE + own PREPARE: 2 < nf
    assert not H.sends(out, codec.COMMIT) and r1.stats["commits-sent"] == 0


def test_executes_at_nf_commits_and_replies(H):
    r1 = H.replica(1)
    _, h, _ = _prepared(H, r1)
    out = r1.on_message(H.commit_vote(2, 1, 1, h), 0.01)   # own + 1 = 2 < nf = 3
    assert not H.of(out, Executed)
    out = r1.on_message(H.commit_vote(3, 1, 1, h), 0.02)
    [e] = H.of(out, Executed)
    assert (e.seq, e.digest) == (1, h) and r1.k_exec == 1
    [reply] = H.of(out, Reply)
    assert reply.client == 0 and codec.decode(reply.data).kind == codec.INFORM


def test_commits_before_the_pre_prepare_are_counted_once_prepared(H):
    r1 = H.replica(1)
    msgs = [H.message(0, [ins(1, 11, b"a")])]
    h = H.digest(msgs)
    for sender in (2, 3):
        assert r1.on_message(H.commit_vote(sender, 1, 1, h), 0.0) == []
    assert r1.on_message(H.commit_vote(2, 1, 1, h), 0.0) == []
    assert r1.drops == Counter({"commit-duplicate": 1})
    r1.on_message(H.propose(1, 1, msgs), 0.1)
    out = r1.on_message(H.support(2, 1, 1, h), 0.1)        # prepared: own COMMIT + 2 early
    assert [e.seq for e in H.of(out, Executed)] == [1]


@pytest.mark.parametrize("case", ["other view", "other digest", "twice", "bad mac",
                                  "two windows ahead"])
def test_hostile_commits_are_dropped_and_counted(H, case):
    r1 = H.replica(1)
    _, h, _ = _prepared(H, r1)
    if case == "other view":
        frame, reason = H.commit_vote(2, 1, 1, h, v=1), "commit-wrong-view"
    elif case == "other digest":
        frame, reason = H.commit_vote(2, 1, 1, b"\x07" * 32), "commit-wrong-digest"
    elif case == "twice":
        r1.on_message(H.commit_vote(2, 1, 1, h), 0.0)
        frame, reason = H.commit_vote(2, 1, 1, h), "commit-duplicate"
    elif case == "bad mac":
        frame = bytearray(H.commit_vote(2, 1, 1, h))
        frame[-1] ^= 1
        frame, reason = bytes(frame), "bad-mac"
    else:
        frame, reason = H.commit_vote(2, 1, 2 * H.config.window + 1, h), \
            "commit-outside-window"
    before = Counter(r1.drops)
    assert r1.on_message(frame, 0.1) == []
    assert r1.drops - before == Counter({reason: 1})
    assert r1.k_exec == 0


def test_execution_stays_in_order(H):
    r1 = H.replica(1)
    _, h1, _ = _prepared(H, r1, k=1)
    _, h2, _ = _prepared(H, r1, k=2, cid=1, value=b"b")
    for sender in (2, 3):                                  # k = 2 commits first
        r1.on_message(H.commit_vote(sender, 1, 2, h2), 0.1)
    assert r1.k_exec == 0
    r1.on_message(H.commit_vote(2, 1, 1, h1), 0.2)
    out = r1.on_message(H.commit_vote(3, 1, 1, h1), 0.2)
    assert [e.seq for e in H.of(out, Executed)] == [1, 2]


def test_a_replica_that_executed_answers_a_waiting_peer_with_its_commit(H):
    r1 = H.replica(1)
    _, h, _ = _prepared(H, r1)
    for sender in (2, 3):
        r1.on_message(H.commit_vote(sender, 1, 1, h), 0.0)
    assert r1.k_exec == 1
    # replica 0 re-broadcasts its COMMIT while it waits: it gets ours (once per timeout)
    [again] = r1.on_message(H.commit_vote(0, 1, 1, h), 1.0)
    assert again.to == 0 and codec.decode(again.data).kind == codec.COMMIT
    assert r1.on_message(H.commit_vote(0, 1, 1, h), 1.01) == []


def test_client_decides_on_f_plus_1_matching_replies_across_views(H):
    c = H.client(0)
    assert isinstance(c, PBFTClient) and c.quorum == H.config.f + 1 == 2
    handle, _ = c.submit([(10, codec.OP_READ, b"")], 0.0)
    results = [(handle, codec.ST_NOT_FOUND, b"")]
    assert c.on_message(H.inform(1, 0, 5, results, v=0), 0.1) == []
    # a reply from view 1 for the same position and result matches (committed is final)
    [cancel, done] = c.on_message(H.inform(2, 0, 5, results, v=1), 0.2)
    assert done.seq == 5 and sorted(done.replicas) == [1, 2]
    # one replica saying view 1 does not move the client to primary 1 (swarm pbft seed 121)
    assert c.view == 0
    handle, _ = c.submit([(11, codec.OP_READ, b"")], 0.3)
    results = [(handle, codec.ST_NOT_FOUND, b"")]
    c.on_message(H.inform(1, 0, 6, results, v=1), 0.4)
    c.on_message(H.inform(2, 0, 6, results, v=1), 0.4)
    assert c.view == 1                              # f+1 of them: one is correct


def test_client_does_not_decide_on_f_plus_1_different_results(H):
    c = H.client(0)
    handle, _ = c.submit([(10, codec.OP_READ, b"")], 0.0)
    assert c.on_message(H.inform(1, 0, 5, [(handle, codec.ST_NOT_FOUND, b"")]), 0.1) == []
    assert c.on_message(H.inform(2, 0, 5, [(handle, codec.ST_OK, b"x")]), 0.1) == []
    assert c.on_message(H.inform(3, 0, 6, [(handle, codec.ST_NOT_FOUND, b"")]), 0.1) == []
    assert handle in c.pending


def test_a_prepared_slot_without_our_commit_gets_it_at_the_next_tick(H):
    """After a restart the store restores slots as prepared (executed before the crash) but
    not the COMMITs: the tick sends ours, so peers' answers can complete the quorum."""
    r1 = H.replica(1)
    msgs, h, _ = _prepared(H, r1)
    r1._own_commits.clear()                       # as restored: prepared, no COMMIT held
    r1.max_seen = 1
    out = r1.on_timeout("tick", 0, 1.0)
    assert sorted(a.to for a in H.sends(out, codec.COMMIT)) == [0, 2, 3]
    assert r1._own_commits[1][0] == 0
