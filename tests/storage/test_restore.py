"""Recovery (poe/storage/restore.py) through the runtime, without sockets: a replica driven
by real, authenticated frames writes its store, "crashes" (the database is closed without
another commit), and a new runtime on the same data directory restores it.

MAC mode: the blocks above the stable checkpoint executed in the current view come back as
view-committed slots (P_k and Q_k) and are executed again to the same head; nothing is
executed in a view the replica asked to leave; the walk stops at the first block that was
not executed in the current view. Both modes: a restarted primary continues after its own
earlier proposals (its PROPOSE is a durable vote).
"""
from __future__ import annotations

import sqlite3

import pytest
from poe._core.digest import batch_digest, block_hash

from poe._core import codec
from poe.config import load_config
from poe.crypto import load_secret, load_suite
from poe.crypto.base import replica as replica_party
from poe.crypto.dealer import deal_cluster, write_keys
from poe.crypto.statements import checkpoint_statement, request_statement, support_statement
from poe.protocol.actions import Broadcast, Persist, Reply, Send
from poe.protocol.poe.view_change import NORMAL, VIEW_CHANGE
from poe.runtime.replica import ReplicaRuntime
from poe.storage.store import REPAIR, Block, Store, StoreError

PERIOD, WINDOW = 4, 8


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    write_keys(directory, deal_cluster(4, 2))
    return directory


class Node:
    """One replica's runtime on ``data`` plus the other parties' keys to talk to it."""

    def __init__(self, keys, data, mode: str, me: int, protocol: str = "poe") -> None:
        self.config = load_config(keys / "cluster.toml", [
            f"replica.data_dir={data}", f"protocol.mode={mode}", "data.record_count=10",
            f"protocol.protocol={protocol}",
            f"protocol.checkpoint_period={PERIOD}", f"protocol.window={WINDOW}",
            "protocol.batch_size=1"])
        self.mode = mode
        self.me = me
        self._suites: dict = {}
        self.rt = ReplicaRuntime(self.config, me)
        self.now = 100.0

    @property
    def replica(self):
        return self.rt.replica

    def suite(self, role: str, i: int):
        if (role, i) not in self._suites:
            cluster = self.config.cluster
            secret = load_secret(self.config.secret_path(role, i), cluster)
            self._suites[role, i] = load_suite(cluster, secret,
                                               variant=self.mode if role == "replica" else "mac")
        return self._suites[role, i]

    def restart(self) -> None:
        """kill -9: nothing after the last loop-turn commit survives; then a new runtime."""
        self.rt.store.db.close()
        self.rt = ReplicaRuntime(self.config, self.me)
        self.rt._recover()

    # ---------------------------------------------------------------- input

    def turn(self, *frames: bytes) -> list:
        """One loop turn: every frame handled, actions carried out, the store committed."""
        out: list = []
        for frame in frames:
            actions = self.rt.replica.on_message(frame, self.now)
            self.rt._apply(actions)
            out += actions
        self.rt.store.commit()
        self.now += 0.01
        return out

    def sealed(self, sender: int, frame: bytes) -> bytes:
        macs = self.suite("replica", sender).macs
        return codec.seal(frame, macs.mac(replica_party(self.me), frame))

    def message(self, t: int) -> bytes:
        unsigned = codec.pack_client_message(0, [(t, 100 + t, codec.OP_INSERT, b"v%d" % t)])
        return unsigned + self.suite("client", 0).signer.sign(request_statement(unsigned))

    def propose(self, k: int, msg: bytes, view: int = 0) -> bytes:
        primary = self.rt.protocol.primary(view)
        return self.sealed(primary, codec.encode_propose(primary, view, k, [msg]))

    def support(self, sender: int, k: int, digest: bytes, view: int = 0) -> bytes:
        share = b""
        if self.mode == "ts":
            share = self.suite("replica", sender).threshold_signer.share_sign(
                support_statement(view, k, digest))
        return self.sealed(sender, codec.encode_support(sender, view, k, digest, share))

    def checkpoint(self, sender: int, k: int, state: bytes, chain: bytes) -> bytes:
        sig = self.suite("replica", sender).signer.sign(checkpoint_statement(k, state, chain))
        return self.sealed(sender, codec.encode_checkpoint(sender, k, state, chain, sig,
                                                           codec.AUTH_MAC))


def _digest(msg: bytes) -> bytes:
    return batch_digest(codec.Batch.from_messages([msg]))


def _stabilize(node: Node, k: int, out) -> None:
    """Checkpoint k becomes stable: the node's own CHECKPOINT (in ``out``, the actions of the
    turn that executed k) and the same votes of replicas 0 and 2."""
    own = [codec.decode(a.data) for a in out if isinstance(a, Send)
           and codec.peek(a.data)[0] == codec.CHECKPOINT]
    state, chain = own[0].state_digest, own[0].chain_digest
    node.turn(node.checkpoint(0, k, state, chain), node.checkpoint(2, k, state, chain))
    assert node.replica.checkpoints.stable.seq == k


def _backup_executes(node: Node, last: int) -> dict[int, bytes]:
    """Backup 1 (MAC) accepts and view-commits 1..last in view 0 (PROPOSE from 0, SUPPORT
    from 2, its own; PBFT: and the COMMITs of 0 and 2); checkpoint 4 becomes stable with
    the CHECKPOINTs of 0 and 2."""
    digests = {}
    pbft = node.config.protocol.protocol == "pbft"
    for k in range(1, last + 1):
        msg = node.message(k)
        digests[k] = _digest(msg)
        frames = [node.propose(k, msg), node.support(2, k, digests[k])]
        if pbft:
            frames += [node.sealed(r, codec.encode_commit(r, 0, k, digests[k])) for r in (0, 2)]
        out = node.turn(*frames)
        assert node.replica.k_exec == k, node.replica.drops
        if k == PERIOD:
            _stabilize(node, k, out)
    return digests


def _entries(vc_frame: bytes) -> set[tuple[int, int, int, bytes]]:
    return {(e.type, e.seq, e.view, e.digest) for e in codec.decode(vc_frame).entries}


def test_mac_blocks_of_the_current_view_come_back_committed_and_executed(keys, tmp_path):
    node = Node(keys, tmp_path, "mac", 1)
    digests = _backup_executes(node, 6)
    before = (node.replica.head, node.replica.kv.state_digest())
    node.restart()
    r = node.replica
    assert node.rt.recovery["replayed"] == 2                 # 5 and 6, above checkpoint 4
    assert (r.k_exec, r.checkpoints.stable.seq, r.view, r.status) == (6, 4, 0, NORMAL)
    assert (r.head, r.kv.state_digest()) == before
    for k in (5, 6):
        slot = r.window.payload(k)
        assert slot.committed and slot.executed
        assert (slot.prop_view, slot.cert_view, slot.digest, slot.cert_digest) == \
            (0, 0, digests[k], digests[k])
        assert r.evidence.get(k).supported == {digests[k]: 0}     # Q_k
        assert (r.evidence.get(k).p_view, r.evidence.get(k).p_digest) == (0, digests[k])
    assert r.next_k == 7
    # a view change now reports them as view-committed (P_k) and supported (Q_k) in view 0
    out: list = []
    r.start_view_change(0, node.now, out)
    entries = _entries(r.own_vcs[0])
    for k in (5, 6):
        assert (codec.ENTRY_PREPARED, k, 0, digests[k]) in entries
        assert (codec.ENTRY_SUPPORTED, k, 0, digests[k]) in entries
    # a peer still lacking our vote for the stable checkpoint gets it, as before the crash
    stable = r.checkpoints.stable
    out = node.turn(node.checkpoint(3, 4, stable.state_digest, stable.chain_digest))
    [answer] = [codec.decode(a.data) for a in out if isinstance(a, Send) and a.to == 3]
    assert (answer.kind, answer.sender, answer.seq, answer.state_digest, answer.chain_digest) \
        == (codec.CHECKPOINT, 1, 4, stable.state_digest, stable.chain_digest)
    # the re-execution rewrote the same blocks
    assert [b.hash for b in node.rt.store.blocks(above=4)] == \
        [r.block_hashes[5], r.block_hashes[6]]


def test_pbft_blocks_of_the_current_view_execute_again_without_new_commits(keys, tmp_path):
    # executed = committed-local before the crash (nf COMMITs of view 0); the peers are past
    # these positions and will never send their COMMITs again (CI: the whole-cluster kill -9
    # left a restarted PBFT replica below them, and only a snapshot caught it up)
    node = Node(keys, tmp_path, "mac", 1, protocol="pbft")
    _backup_executes(node, 6)
    before = (node.replica.head, node.replica.kv.state_digest())
    node.restart()
    r = node.replica
    assert type(r).__name__ == "PBFTReplica"
    assert node.rt.recovery["replayed"] == 2
    assert (r.k_exec, r.head, r.kv.state_digest()) == (6, *before)
    # nothing else is executed without its COMMIT quorum
    msg = node.message(7)
    node.turn(node.propose(7, msg), node.support(2, 7, _digest(msg)))
    assert r.window.payload(7).committed and r.k_exec == 6


def test_a_restarted_replica_replays_its_last_window_to_a_lagging_peer(keys, tmp_path):
    # the stored blocks up to the stable checkpoint are kept as if just executed: a peer
    # less than a window behind gets headers and batches, not a snapshot (which would leave
    # its ledger without those blocks)
    node = Node(keys, tmp_path, "mac", 1)
    digests = _backup_executes(node, 6)
    node.restart()
    r = node.replica
    assert sorted(r.retained) == [1, 2, 3, 4, 5, 6]
    req = codec.encode_state_req(3, 1, 4, codec.WANT_HEADERS | codec.WANT_BATCHES
                                 | codec.WANT_SNAPSHOT)
    out = node.turn(node.sealed(3, req))
    [reply] = [codec.decode(a.data) for a in out if isinstance(a, Send) and a.to == 3]
    assert reply.kind == codec.STATE_REPLY and reply.snapshot is None
    assert [(k, d, v) for k, d, v in reply.headers] == [(k, digests[k], 0) for k in (2, 3, 4)]
    assert [k for k, _ in reply.batches] == [2, 3, 4]
    assert all(batch_digest(b) == digests[k] for k, b in reply.batches)


def test_a_retransmitted_propose_of_a_restored_slot_is_answered_with_the_same_support(
        keys, tmp_path):
    node = Node(keys, tmp_path, "mac", 1)
    digests = _backup_executes(node, 6)
    node.restart()
    out = node.turn(node.propose(6, node.message(6)))
    assert node.replica.status == NORMAL and node.replica.stats["support-resent"] == 1
    sent = [(a.to, codec.decode(a.data)) for a in out if isinstance(a, Send)]
    assert {to for to, _ in sent} == {0, 2, 3}
    assert {(m.kind, m.view, m.seq, m.digest) for _, m in sent} == \
        {(codec.SUPPORT, 0, 6, digests[6])}
    # a FETCH of it is answered with the batch and that SUPPORT (a peer behind can commit)
    out = node.turn(node.sealed(3, codec.encode_fetch(3, 6, digests[6])))
    kinds = sorted(codec.decode(a.data).kind for a in out if isinstance(a, Send))
    assert kinds == sorted([codec.FETCH_REPLY, codec.SUPPORT])
    node.turn(node.propose(6, node.message(7)))              # a different batch for (0, 6)
    assert node.replica.status == VIEW_CHANGE               # is equivocation


def test_a_support_sent_but_not_executed_comes_back_with_its_batch_and_is_counted_again(
        keys, tmp_path):
    node = Node(keys, tmp_path, "mac", 1)
    _backup_executes(node, 6)
    msg = node.message(7)
    d7 = _digest(msg)
    node.turn(node.propose(7, msg))                         # our SUPPORT(0, 7) leaves
    assert node.replica.k_exec == 6
    node.restart()
    r = node.replica
    slot = r.window.payload(7)
    # the batch came back from the store with the vote (§4.11: bodies by (k, digest))
    assert (bytes(slot.batch.message(0)), slot.digest, slot.committed) == (msg, d7, False)
    assert r.evidence.get(7).supported == {d7: 0}
    assert r.max_seen == 7 and r.k_exec == 6
    # one more SUPPORT: ours + 2's + 3's = nf
    node.turn(node.support(2, 7, d7))
    assert r.k_exec == 6                                    # ours and 2's: not yet nf
    node.turn(node.support(3, 7, d7))
    assert r.k_exec == 7


def test_nothing_is_executed_in_a_view_the_replica_asked_to_leave(keys, tmp_path):
    node = Node(keys, tmp_path, "mac", 1)
    digests = _backup_executes(node, 6)
    out: list = []
    node.replica.start_view_change(0, node.now, out)        # e.g. its progress timer fired
    node.rt._apply(out)
    node.rt.store.commit()
    stable = node.replica.checkpoints.stable
    node.restart()
    r = node.replica
    assert node.rt.recovery["replayed"] == 0
    assert node.rt.counters["executed-batches"] == 0
    assert (r.k_exec, r.status, r.vc_view) == (4, VIEW_CHANGE, 0)
    assert r.kv.state_digest() == stable.state_digest
    assert not r.window.payload(5).executed
    # but it still reports them in the VC-REQUEST it sends again
    entries = _entries(r.own_vcs[0])
    for k in (5, 6):
        assert (codec.ENTRY_PREPARED, k, 0, digests[k]) in entries
    # a PROPOSE of the view it left is not taken either
    assert node.turn(node.propose(7, node.message(7))) == []
    assert r.k_exec == 4


@pytest.mark.parametrize("views, executed", [((0, 1), 4), ((1, 0), 5)])
def test_the_replay_stops_at_the_first_block_not_executed_in_the_current_view(
        keys, tmp_path, views, executed):
    node = Node(keys, tmp_path, "mac", 1)
    _backup_executes(node, 6)
    store = node.rt.store
    blocks = list(store.blocks(above=4))
    store.set_view(1)                      # the store's view is 1; blocks 5, 6 get views
    for b, view in zip(blocks, views):
        store.append_block(Block(b.seq, view, b.digest, b.prev, b.hash, b.body, None))
    store.commit()
    node.restart()
    r = node.replica
    assert (r.view, r.k_exec, r.status) == (1, executed, NORMAL)
    assert node.rt.recovery["replayed"] == executed - 4
    if executed == 4:
        assert r.window.payload(6) is None                 # 6 (view 1) sits above the gap


def test_a_mac_block_without_valid_client_signatures_stops_the_replica(keys, tmp_path):
    node = Node(keys, tmp_path, "mac", 1)
    _backup_executes(node, 6)
    node.rt.store.db.close()
    msg = bytearray(node.message(5))
    msg[-1] ^= 1                                           # not the client's signature
    batch = codec.Batch.from_messages([bytes(msg)])
    digest = batch_digest(batch)
    db = sqlite3.connect(tmp_path / "replica-1" / "ledger.db")
    prev = db.execute("SELECT hash FROM blocks WHERE seq=4").fetchone()[0]
    db.close()
    store = Store(tmp_path / "replica-1", genesis=node.config.genesis(), replica_id=1)
    store.append_block(Block(5, 0, digest, prev, block_hash(5, digest, prev), batch.body(),
                             None))                          # a consistent row, chain and digest
    store.close()
    with pytest.raises(StoreError) as err:
        ReplicaRuntime(node.config, 1)
    assert "block 5" in str(err.value) and "client signature" in str(err.value)
    assert REPAIR in str(err.value)


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_a_restarted_primary_continues_after_its_own_proposals(keys, tmp_path, mode):
    node = Node(keys, tmp_path, mode, 0)
    msgs = {k: node.message(k) for k in range(1, 5)}
    proposals = {}
    for k in (1, 2, 3):
        out = node.turn(codec.encode_request(msgs[k]))
        sends = [a for a in out if isinstance(a, Send) and codec.peek(a.data)[0] == codec.PROPOSE]
        assert {codec.peek(a.data)[3] for a in sends} == {k}
        [vote] = [i for i, a in enumerate(out) if isinstance(a, Persist)
                  and a.record[:4] == ("support", 0, k, _digest(msgs[k]))]
        assert vote < out.index(sends[0])                     # durable before it leaves
        proposals[k] = sends
    # only 1 is view-committed (and executed) before the crash
    node.turn(node.support(1, 1, _digest(msgs[1])), node.support(2, 1, _digest(msgs[1])))
    assert node.replica.k_exec == 1
    assert not node.rt.store.persist_vote("support", 0, 2, _digest(msgs[4]))
    node.rt.store.commit()
    node.restart()
    r = node.replica
    assert (r.k_exec, r.next_k, r.max_seen, r.is_primary) == (1, 4, 3, True)
    out = node.turn(codec.encode_request(msgs[4]))
    seqs = {codec.peek(a.data)[3] for a in out
            if isinstance(a, Send) and codec.peek(a.data)[0] == codec.PROPOSE}
    assert seqs == {4}                                      # not 2 again: no equivocation
    assert node.rt.counters["equivocation-refused"] == 0


def test_a_restarted_primary_gets_its_batch_back_and_answers_with_its_vote(keys, tmp_path):
    node = Node(keys, tmp_path, "mac", 0)
    msgs = {k: node.message(k) for k in (1, 2)}
    digests = {k: _digest(m) for k, m in msgs.items()}
    for k in (1, 2):
        node.turn(codec.encode_request(msgs[k]))
    node.turn(node.support(1, 1, digests[1]), node.support(2, 1, digests[1]))
    assert node.replica.k_exec == 1
    node.restart()                            # its vote for 2 comes back with its batch
    r = node.replica
    slot = r.window.payload(2)
    assert (slot.prop_view, bytes(slot.batch.message(0)), slot.digest) == \
        (0, msgs[2], digests[2])
    node.turn(node.support(1, 2, digests[2]))
    assert r.k_exec == 1                      # its own vote and 1's
    node.turn(node.support(2, 2, digests[2]))
    assert r.k_exec == 2
    out = node.turn(node.sealed(3, codec.encode_fetch(3, 2, digests[2])))
    answers = {codec.decode(a.data).kind: codec.decode(a.data) for a in out
               if isinstance(a, Send) and a.to == 3}
    # its PROPOSE again (rebuilt from the stored batch: the same bytes), the batch, its vote
    assert set(answers) == {codec.PROPOSE, codec.FETCH_REPLY, codec.SUPPORT}
    assert bytes(answers[codec.PROPOSE].batch.message(0)) == msgs[2]
    vote = answers[codec.SUPPORT]
    assert (vote.sender, vote.view, vote.seq, vote.digest) == (0, 0, 2, digests[2])


class _Net:
    """Replica 1 as a durable runtime (``node``), replicas 0, 2 and 3 as in-memory runtimes
    on the same keys; ``deliver`` carries every frame until the cluster is quiet."""

    def __init__(self, keys, tmp_path, mode: str) -> None:
        self.node = Node(keys, tmp_path / "r1", mode, 1)
        settings = [f"protocol.mode={mode}", "data.record_count=10",
                    f"protocol.checkpoint_period={PERIOD}", f"protocol.window={WINDOW}",
                    "protocol.batch_size=1"]
        config = load_config(keys / "cluster.toml", settings)
        self.peers = {i: ReplicaRuntime(config, i).replica for i in (0, 2, 3)}

    def replica(self, i: int):
        return self.node.replica if i == 1 else self.peers[i]

    def deliver(self, pending: list[tuple[int, int, list]]) -> None:
        """``pending``: (from, to or -1 = all, actions)."""
        node = self.node
        queue = []
        for sender, _to, actions in pending:
            queue += self._route(sender, actions)
        while queue:
            to, frame = queue.pop(0)
            if to == 1:
                actions = node.turn(frame)
            else:
                actions = self.peers[to].on_message(frame, node.now)
            queue += self._route(to, actions)

    @staticmethod
    def _route(sender: int, actions) -> list[tuple[int, bytes]]:
        out = []
        for a in actions:
            if isinstance(a, Send):
                out.append((a.to, a.data))
            elif isinstance(a, Broadcast):
                out += [(i, a.data) for i in range(4) if i != sender]
        return out


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_blocks_kept_by_a_view_change_come_back_after_a_crash_in_the_new_view(keys, tmp_path,
                                                                              mode):
    # 1..6 executed in view 0 (checkpoint 4 stable), then view 1 keeps 5 and 6 and certifies
    # them again: the ledger must say so, or a crash in view 1 restores nothing above the
    # checkpoint, and the VC-REQUEST after it would not report the two kept blocks
    net = _Net(keys, tmp_path, mode)
    node = net.node
    for t in range(1, 7):
        request = codec.encode_request(node.message(t))
        net.deliver([(0, 0, net.peers[0].on_message(request, node.now))])
    assert [net.replica(i).k_exec for i in range(4)] == [6, 6, 6, 6]
    assert node.replica.checkpoints.stable.seq == 4
    pending = []
    for i in range(4):
        out: list = []
        net.replica(i).start_view_change(0, node.now, out)
        if i == 1:
            node.rt._apply(out)
        pending.append((i, -1, out))
    net.deliver(pending)
    r = node.replica
    assert [(net.replica(i).view, net.replica(i).status) for i in range(4)] == [(1, NORMAL)] * 4
    assert r.k_exec == 6 and r.history is None
    kept = {b.seq: b.view for b in node.rt.store.blocks(above=4)}
    assert kept == {5: 1, 6: 1}
    before = (r.head, r.kv.state_digest())
    node.restart()
    r = node.replica
    assert node.rt.recovery["replayed"] == 2
    assert (r.view, r.status, r.k_exec, r.head, r.kv.state_digest()) == (1, NORMAL, 6, *before)
    for k in (5, 6):
        slot = r.window.payload(k)
        assert slot.executed and slot.cert_view == 1
        if mode == "ts":
            assert slot.cert is not None
    assert node.rt.counters["kept-not-stored"] == 0


def test_a_retry_of_a_message_executed_before_the_crash_gets_the_same_inform(keys, tmp_path):
    # the kv's exactly-once table (restored from the checkpoint) says message 3 was
    # executed, so it is never executed again: only the stored results can answer it
    node = Node(keys, tmp_path, "mac", 1)
    _backup_executes(node, 6)
    retry = codec.encode_request(node.message(3))
    before = [a.data for a in node.turn(retry) if isinstance(a, Reply)]
    assert len(before) == 1 and codec.decode(before[0]).seq == 3
    node.restart()
    after = [a.data for a in node.turn(retry) if isinstance(a, Reply)]
    assert after == before
    assert node.replica.stats["reply-from-cache"] == 1
    # the restored answer is bound to the message's signature, as before the crash: a
    # message reusing its request id is not answered with it (ReplyCache.same_message)
    m = codec.decode(retry)
    cached = node.replica.replies.get((m.client, m.batch.first_request_id(0)))
    assert cached[3] == bytes(m.batch.signature(0))


def test_a_pbft_slot_prepared_before_the_crash_is_prepared_again(keys, tmp_path):
    # our durable COMMIT says we had nf PREPAREs: the slot is in our P again, so a view
    # change after a whole-cluster crash keeps a batch another replica executed at nf
    # COMMITs (PBFT swarm seed 295 rolled one back)
    node = Node(keys, tmp_path, "mac", 1, protocol="pbft")
    _backup_executes(node, 6)
    msg = node.message(7)
    d7 = _digest(msg)
    out = node.turn(node.propose(7, msg), node.support(2, 7, d7))   # prepared: COMMIT leaves
    assert [codec.decode(a.data).kind for a in out if isinstance(a, Send)].count(
        codec.COMMIT) == 3
    assert node.replica.k_exec == 6
    node.restart()
    r = node.replica
    slot = r.window.payload(7)
    assert (slot.committed, slot.cert_view, slot.cert_digest) == (True, 0, d7)
    # with its batch, stored with the COMMIT vote: after a power cut of the whole cluster
    # it may exist nowhere else (PBFT swarm seed 905)
    assert slot.batch is not None and batch_digest(slot.batch) == d7
    # a FETCH of it is answered with the batch and our COMMIT
    out = node.turn(node.sealed(3, codec.encode_fetch(3, 7, d7)))
    kinds = sorted(codec.decode(a.data).kind for a in out if isinstance(a, Send))
    assert codec.FETCH_REPLY in kinds and codec.COMMIT in kinds
    assert r.k_exec == 6 and r.next_k == 8
    out: list = []
    r.start_view_change(0, node.now, out)
    assert (codec.ENTRY_PREPARED, 7, 0, d7) in _entries(r.own_vcs[0])


def test_a_restart_keeps_the_original_answer_of_a_message_ordered_again_after_it_went_stale(
        keys, tmp_path):
    """Review (change (3) of h9012, restore side). Client 0's message 1 executed at k = 1;
    its message 100 at k = 2 slid the kv's exactly-once window past id 1; a faulty primary
    orders message 1 again at k = 3 (STALE). Live, the replica answers with its original
    INFORM (k = 1, OK) and keeps it cached. The stored results of k = 3 say STALE for it:
    after a restart the rebuilt cache must still hold the k = 1 answer, not the STALE one
    (which, refreshed FINAL at the stable checkpoint, f+1 restarted replicas would send
    alike: a proof that a message which ran never did)."""
    node = Node(keys, tmp_path, "mac", 1)

    def msg(t):
        unsigned = codec.pack_client_message(0, [(t, 100 + t, codec.OP_INSERT, b"v%d" % t)])
        return unsigned + node.suite("client", 0).signer.sign(request_statement(unsigned))

    m1 = msg(1)
    order = {1: m1, 2: msg(100), 3: m1, 4: msg(101)}
    for k, m in order.items():
        out = node.turn(node.propose(k, m), node.support(2, k, _digest(m)))
        assert node.replica.k_exec == k, node.replica.drops
        if k == PERIOD:
            _stabilize(node, k, out)
    assert node.replica.replies.get((0, 1))[1] == 1          # live: the original answer
    retry = codec.encode_request(m1)
    before = [codec.decode(a.data) for a in node.turn(retry) if isinstance(a, Reply)]
    assert [(i.seq, i.results(0)[0][1]) for i in before] == [(1, codec.ST_OK)]
    node.restart()
    after = [codec.decode(a.data) for a in node.turn(retry) if isinstance(a, Reply)]
    assert [(i.seq, i.results(0)[0][1]) for i in after] == [(1, codec.ST_OK)]
    assert all(i.final for i in after)               # at the stable checkpoint: FINAL
