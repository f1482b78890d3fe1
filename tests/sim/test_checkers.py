"""The checkers bite (issue #5): fabricated histories that break each property are reported,
consistent ones are not, and an honest simulated run reports nothing.

Histories are fed to a SafetyChecker through the same entry points the simulator uses
(Executed / RolledBack / Stable actions, client submissions and completions, bound samples,
the end of a run), built from real batches executed by a real kv store, or from fabricated
results where a property needs replicas that all agree on something wrong.
"""
from types import SimpleNamespace

import pytest

from poe._core import codec
from poe._core.codec import Batch
from poe._core.digest import batch_digest
from poe._core.kv import WINDOW, KVStore
from poe.protocol.actions import Executed, RolledBack, Stable
from poe.protocol.config import ProtocolConfig
from poe.protocol.poe.client import Completed
from poe.sim.checkers import SafetyChecker
from poe.sim.cluster import SimCluster, Workload

INITIAL = (100, 8, 7)          # record_count, value_size, seed of the YCSB load
N = 4
NEW = b"new-val!"


def message(client: int, ops) -> bytes:
    """A client message (signature bytes are not the checker's business)."""
    return codec.pack_client_message(client, ops) + bytes(64)


def initial(key: int) -> bytes:
    store = KVStore()
    store.load_sequential(*INITIAL)
    return store.get(key)


class FakeResults:
    """Results that every replica reports alike (a deterministic bug, or a forgery)."""

    def __init__(self, per_message):
        self.per_message = per_message

    def ops(self, i):
        return list(self.per_message[i])


class History:
    """A checker plus a tiny ledger language: batches executed by replicas, clients that
    submit and complete."""

    def __init__(self) -> None:
        self.c = SafetyChecker(N)
        self.c.set_initial_state(*INITIAL)
        self.kv = [KVStore() for _ in range(N)]
        for store in self.kv:
            store.load_sequential(*INITIAL)

    def execute(self, seq: int, batch: Batch, replicas=range(N), results=None, view=0):
        out = {}
        for r in replicas:
            res = results if results is not None else self.kv[r].execute(seq, batch)
            self.c.on_executed(r, Executed(seq, view, batch_digest(batch), bytes(32),
                                           batch.nops, batch, res))
            out[r] = res
        return out

    def submit(self, client: int, handle: int, ops, at: float) -> None:
        self.c.on_submitted(client, handle, [(k, code, v) for _, k, code, v in ops], at)

    def complete(self, client: int, handle: int, seq: int, index: int, results, at: float,
                 view=0) -> None:
        c = Completed(handle, view, seq, index, tuple(results), (0, 1, 2), 0.01)
        self.c.on_completed(client, c, at)

    def finish(self, now: float = 100.0, correct=range(N)):
        reps = [SimpleNamespace(kv=SimpleNamespace(state_digest=lambda: b"s"), head=b"h",
                                k_exec=self.c.last_exec[r]) for r in range(N)]
        return self.c.finish(reps, list(correct), now=now)


WRITE = [(1, 5, codec.OP_UPDATE, NEW)]            # client 0: key 5 := NEW
READ = [(1, 5, codec.OP_READ, b"")]                # client 1: read key 5


def honest_history() -> History:
    h = History()
    h.submit(0, 1, WRITE, at=0.0)
    res = h.execute(1, Batch.from_messages([message(0, WRITE)]))
    h.complete(0, 1, 1, 0, res[0].ops(0), at=0.1)
    h.submit(1, 1, READ, at=0.2)
    res = h.execute(2, Batch.from_messages([message(1, READ)]))
    assert res[0].ops(0) == [(1, codec.ST_OK, NEW)]
    h.complete(1, 1, 2, 0, res[0].ops(0), at=0.3)
    return h


def test_a_consistent_history_has_no_violation():
    h = honest_history()
    assert h.finish() == []
    assert h.c.history_ops_checked == 2


# ------------------------------------------------------------------ proof of execution

def test_proof_with_results_no_replica_holds():
    h = History()
    h.submit(0, 1, WRITE, at=0.0)
    h.execute(1, Batch.from_messages([message(0, WRITE)]))
    h.complete(0, 1, 1, 0, [(1, codec.ST_NOT_FOUND, b"")], at=0.1)
    assert any("holds other results" in v for v in h.c.violations)


def test_proof_naming_another_clients_message():
    h = History()
    h.submit(0, 1, WRITE, at=0.0)
    res = h.execute(1, Batch.from_messages([message(3, WRITE)]))
    h.complete(0, 1, 1, 0, res[0].ops(0), at=0.1)
    assert any("holds another batch" in v for v in h.c.violations)


def test_proof_arriving_first_then_a_replica_executes_something_else():
    h = History()
    batch = Batch.from_messages([message(0, WRITE)])
    res = h.execute(1, batch, replicas=[0, 1, 2])
    h.complete(0, 1, 1, 0, res[0].ops(0), at=0.1)
    assert h.c.violations == []
    other = Batch.from_messages([message(2, WRITE)])
    h.execute(1, other, replicas=[3])         # seq 1 holds another batch at replica 3
    assert any("correct replica 3 holds another batch" in v for v in h.c.violations)


def test_proof_where_a_replica_holds_another_payload_with_the_same_request_ids():
    # what a Byzantine client's second payload for one request id would look like
    h = History()
    h.submit(0, 1, WRITE, at=0.0)
    other = Batch.from_messages([message(0, [(1, 6, codec.OP_UPDATE, NEW)])])
    res = h.execute(1, other)
    h.complete(0, 1, 1, 0, res[0].ops(0), at=0.1)     # same ids, same (empty) results
    assert any("holds another message of that client" in v for v in h.c.violations)


def _stale_again(h, same_payload: bool):
    """Client 0's write (or, under its id, another process's payload) executed at seq 1;
    a later id of client 0 slides the kv's exactly-once window (WINDOW ids) past it; the write is
    ordered (again) at seq 3, where it is STALE, and the client's proof names seq 3."""
    h.submit(0, 1, WRITE, at=0.0)
    first = WRITE if same_payload else [(1, 6, codec.OP_UPDATE, NEW)]
    h.execute(1, Batch.from_messages([message(0, first)]))
    h.execute(2, Batch.from_messages([message(0, [(1 + WINDOW, 7, codec.OP_UPDATE, NEW)])]))
    res = h.execute(3, Batch.from_messages([message(0, WRITE)]))
    assert res[0].ops(0) == [(1, codec.ST_STALE, b"")]
    h.complete(0, 1, 3, 0, res[0].ops(0), at=0.5)


def test_an_executed_message_answered_not_executed_is_reported():
    """Swarm seeds 5 and 9012 on b62a8c9: a retry of an executed message was ordered again
    after its id left the exactly-once window, and nf replicas answered STALE: the client
    was told its write did not run."""
    h = History()
    _stale_again(h, same_payload=True)
    assert h.finish() == [("client 0 message 1 was answered DUPLICATE/STALE (not "
                           "executed), but the final ledger executed it at seq 1")]


def test_another_payload_under_an_executed_id_answered_not_executed_is_fine():
    h = History()
    _stale_again(h, same_payload=False)         # two processes acting as client 0
    assert h.finish() == []


def test_rollback_below_a_proven_position():
    h = honest_history()
    h.c.on_rolled_back(2, RolledBack(1))
    assert h.finish() == ["replica 2 rolled back to 1, below the proof-of-executed position "
                          "2 (client 1, message 1)"]


def test_rollback_below_a_proof_then_executing_again_is_reported():
    h = honest_history()
    h.c.on_rolled_back(2, RolledBack(1))
    store = KVStore()
    store.load_sequential(*INITIAL)
    store.execute(1, Batch.from_messages([message(0, WRITE)]))
    h.kv[2] = store
    h.execute(2, Batch.from_messages([message(1, READ)]), replicas=[2])   # same batch again
    assert any("rolled back to 1, below the proof-of-executed position 2" in v
               for v in h.c.violations)


@pytest.mark.parametrize("to, ok", [(2, True), (4, True), (1, False)])
def test_rollback_then_state_transfer(to, ok):
    h = honest_history()
    h.c.on_rolled_back(2, RolledBack(0))           # the first step of a state transfer ...
    assert h.c.violations == []
    h.c.on_transferred(2, Stable(to, bytes(32), bytes(32)))   # ... to checkpoint ``to``
    violations = h.finish()
    assert (violations == []) == ok, violations


def test_proof_moved_after_a_rollback():
    h = honest_history()
    h.c.on_rolled_back(2, RolledBack(0))
    h.c.on_transferred(2, Stable(0, bytes(32), bytes(32)))
    # replica 2 puts the proven message at another position
    h.execute(1, Batch.from_messages([message(1, READ)]), replicas=[2],
              results=FakeResults([[(1, codec.ST_OK, NEW)]]))
    assert any("correct replica 2 holds another batch" in v for v in h.c.violations)


def _noop(h, replica, seq, view):
    """Replica ``replica`` executes a no-op at ``seq`` (a MAC new view decided it empty)."""
    results = h.kv[replica].execute_noop(seq)
    h.c.on_executed(replica, Executed(seq, view, b"\0" * 32, bytes(32), 0, None, results))


@pytest.mark.parametrize("views", [2, 3])
def test_a_rollback_after_a_later_view_change_is_reported(views):
    """Issue 13, class 1 as the checker sees it: batches proven in view 0 (replicas 0-2
    executed them, replica 3 lagged), kept silently by view 1 (and 2), become no-ops of
    view ``views``: the replicas that held them roll back and execute the no-ops, the
    laggard executes the no-ops without ever holding the batches. Both are reported."""
    h = History()
    h.submit(0, 1, WRITE, at=0.0)
    res = h.execute(1, Batch.from_messages([message(0, WRITE)]), replicas=[0, 1, 2])
    h.complete(0, 1, 1, 0, res[0].ops(0), at=0.1)
    for r in (0, 1, 2):
        h.c.on_view(r, views)
        h.c.on_rolled_back(r, RolledBack(0))
        h.kv[r].rollback_to(0)
        _noop(h, r, 1, views)
    h.c.on_view(3, views)
    _noop(h, 3, 1, views)
    violations = h.finish()
    for r in (0, 1, 2):
        assert ("replica %d rolled back to 0, below the proof-of-executed position 1 "
                "(client 0, message 1)" % r) in violations
    for r in (0, 1, 2, 3):
        assert ("client 0 holds a proof of execution for seq 1 index 0, but correct "
                "replica %d holds a no-op there" % r) in violations


def test_a_no_op_at_a_position_without_a_proof_is_fine():
    h = honest_history()
    _noop(h, 0, 3, 1)
    _noop(h, 1, 3, 1)
    assert h.finish() == []


def test_byzantine_replicas_are_not_checked():
    h = History()
    h.c.byzantine.add(3)
    batch = Batch.from_messages([message(0, WRITE)])
    res = h.execute(1, batch, replicas=[0, 1, 2])
    h.complete(0, 1, 1, 0, res[0].ops(0), at=0.1)
    other = Batch.from_messages([message(0, [(1, 6, codec.OP_UPDATE, NEW)])])
    h.execute(1, other, replicas=[3])
    h.c.on_view(3, 0)
    assert h.finish() == []


# ------------------------------------------------------------------ linearizability

def test_real_time_order_violated():
    h = History()
    h.submit(0, 1, WRITE, at=0.0)
    h.submit(1, 1, READ, at=0.2)                 # invoked after the write was answered ...
    res_read = h.execute(1, Batch.from_messages([message(1, READ)]))   # ... ordered before
    res_write = h.execute(2, Batch.from_messages([message(0, WRITE)]))
    h.complete(0, 1, 2, 0, res_write[0].ops(0), at=0.1)
    h.complete(1, 1, 1, 0, res_read[0].ops(0), at=0.3)
    violations = h.finish()
    assert any("linearizability: key 5" in v and "not before" in v for v in violations)
    assert not any("holds" in v for v in violations)          # the proofs themselves hold


def test_concurrent_operations_may_be_ordered_either_way():
    h = History()
    h.submit(0, 1, WRITE, at=0.0)
    h.submit(1, 1, READ, at=0.05)                # overlaps the write
    res_read = h.execute(1, Batch.from_messages([message(1, READ)]))
    res_write = h.execute(2, Batch.from_messages([message(0, WRITE)]))
    h.complete(0, 1, 2, 0, res_write[0].ops(0), at=0.1)
    h.complete(1, 1, 1, 0, res_read[0].ops(0), at=0.3)
    assert h.finish() == []


def test_read_that_does_not_match_the_replayed_ledger():
    h = History()
    h.submit(0, 1, WRITE, at=0.0)
    res = h.execute(1, Batch.from_messages([message(0, WRITE)]))
    h.complete(0, 1, 1, 0, res[0].ops(0), at=0.1)
    h.submit(1, 1, READ, at=0.2)
    stale = [[(1, codec.ST_OK, initial(5))]]     # every replica returns the old value
    h.execute(2, Batch.from_messages([message(1, READ)]), results=FakeResults(stale))
    h.complete(1, 1, 2, 0, stale[0], at=0.3)
    violations = h.finish()
    assert any("linearizability: client 1 message 1 op 0 (key 5)" in v for v in violations)


def test_read_modify_write_and_insert_are_replayed():
    h = History()
    rmw = [(1, 5, codec.OP_RMW, NEW), (2, 500, codec.OP_INSERT, b"x"),
           (3, 500, codec.OP_READ, b""), (4, 501, codec.OP_UPDATE, b"y")]
    h.submit(0, 1, rmw, at=0.0)
    res = h.execute(1, Batch.from_messages([message(0, rmw)]))
    assert [s for _, s, _ in res[0].ops(0)] == [codec.ST_OK, codec.ST_OK, codec.ST_OK,
                                                codec.ST_NOT_FOUND]
    h.complete(0, 1, 1, 0, res[0].ops(0), at=0.1)
    assert h.finish() == []
    assert h.c.history_ops_checked == 4


# ------------------------------------------------------------------ agreement (existing)

def test_disagreeing_stable_checkpoints():
    h = History()
    h.c.on_stable(0, Stable(4, b"a" * 32, b"c" * 32))
    h.c.on_stable(1, Stable(4, b"b" * 32, b"c" * 32))
    assert any("disagree on stable checkpoint 4" in v for v in h.c.violations)


def test_unknown_actions_are_ignored():
    h = History()
    h.c.dispatch(0, SimpleNamespace(seq=3))
    h.c.dispatch(0, object())
    assert h.c.violations == []


# ------------------------------------------------------------------ bounds

def replica_stub(**over):
    values = dict(replies=0, pending=0, used=0, votes=0, undo=0, hashes=1, open_messages=0,
                  forwarded=0, snapshots=0, vc_requests=0)
    values.update(over)
    return SimpleNamespace(
        replies=[None] * values["replies"], pending=[None] * values["pending"],
        window=SimpleNamespace(used=lambda: values["used"]),
        checkpoints=SimpleNamespace(pending=lambda: values["votes"]),
        kv=SimpleNamespace(executed_seq=values["undo"], final_seq=0),
        block_hashes=[None] * values["hashes"], open_messages=[None] * values["open_messages"],
        forwarded=[None] * values["forwarded"], snapshots=[None] * values["snapshots"],
        vc_requests={r: [None] * (values["vc_requests"] // 4) for r in range(4)})


BOUNDED = ProtocolConfig(n=4, window=8, checkpoint_period=4, reply_cache_size=5,
                         pending_requests_max=3, batch_size=10, forwarded_max=6)


@pytest.mark.parametrize("field, value, text", [
    ("replies", 6, "reply cache 6 above its bound 5"),
    ("pending", 4, "pending client messages 4 above its bound 3"),
    ("used", 9, "window slots 9 above its bound 8"),
    ("votes", 13, "checkpoint votes 13 above its bound 12"),
    ("undo", 9, "kv undo (batches) 9 above its bound 8"),
    ("hashes", 10, "block hashes 10 above its bound 9"),
    ("open_messages", 11, "open client messages 11 above its bound 10"),
    ("forwarded", 7, "tracked client retries 7 above its bound 6"),
    ("snapshots", 4, "snapshots 4 above its bound 3"),
    ("vc_requests", 20, "VC-REQUESTs held 20 above its bound 16"),
])
def test_each_bound_is_checked(field, value, text):
    c = SafetyChecker(4)
    full = dict(replies=5, pending=3, used=8, votes=12, undo=8, hashes=9, open_messages=10,
                forwarded=6, snapshots=3, vc_requests=16)
    c.check_bounds([replica_stub(**full)] * 4, BOUNDED)
    assert c.violations == []                    # at the bound is fine
    full[field] = value
    c.check_bounds([replica_stub(), replica_stub(**full), replica_stub(), replica_stub()],
                   BOUNDED)
    assert c.violations == [f"replica 1: {text}"]


def test_bounds_skip_crashed_and_byzantine_replicas():
    c = SafetyChecker(4)
    c.byzantine.add(2)
    big = replica_stub(replies=99)
    c.check_bounds([replica_stub(), big, big, replica_stub()], BOUNDED, skip={1})
    assert c.violations == []


# ------------------------------------------------------------------ liveness

def liveness_history():
    h = History()
    for handle in (1, 2, 3, 4, 5):
        h.c.on_submitted(0, handle, [], 0.0 if handle < 5 else 8.0)
    h.c.on_completed(0, Completed(1, 0, 1, 0, (), (0, 1, 2), 0.1), 0.5)     # before the heal
    h.c.faults_stopped(1.0, 5.0)
    h.c.on_completed(0, Completed(2, 0, 2, 0, (), (0, 1, 2), 0.1), 3.0)     # in time
    h.c.on_completed(0, Completed(3, 0, 3, 0, (), (0, 1, 2), 0.1), 7.0)     # too late
    return h


def test_liveness_late_and_pending_messages_are_reported():
    h = liveness_history()
    h.c._check_liveness(10.0)
    text = "\n".join(h.c.violations)
    assert "message 3 completed 6.000 s after the faults stopped" in text
    assert "message 4 still pending 9.000 s" in text
    assert "message 5" not in text               # submitted at 8.0: its bound ends at 13.0
    assert "message 1 " not in text and "message 2 " not in text


def test_liveness_giving_up_after_the_faults_stopped_is_reported():
    h = History()
    h.c.on_submitted(0, 1, [], 0.0)
    h.c.on_submitted(0, 2, [], 0.0)
    h.c.on_outcome_unknown(0, 1, 0.5)              # gave up during the faults: allowed
    h.c.faults_stopped(1.0, 5.0)
    h.c.on_outcome_unknown(0, 2, 2.0)
    h.c._check_liveness(3.0)
    assert h.c.violations == ["liveness: client 0 message 2 gave up (outcome unknown) after "
                              "the faults stopped"]


def test_liveness_is_only_checked_after_faults_stopped():
    h = History()
    h.c.on_submitted(0, 1, [], 0.0)
    assert h.finish(now=1000.0) == []


# ------------------------------------------------------------------ an honest run

@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_an_honest_run_reports_nothing(mode):
    config = ProtocolConfig(n=4, mode=mode, checkpoint_period=4, window=8, batch_size=20)
    sim = SimCluster(config, clients=4, seed=3, bounds_every=200,
                     workload=Workload(ops_per_message=4, read_fraction=0.5,
                                       record_count=50))
    result = sim.run(3_000)
    assert result.violations == []
    c = sim.checker
    assert c.history_ops_checked == 3_000         # every completed op replayed and compared
    assert c.bound_samples > 10
    assert sum(len(p) for p in c.proofs.values()) == result.messages_completed
    sim.stop_faults(5.0)
    final = sim.run(400)
    assert final.violations == [] and final.requests >= 3_400


def test_a_stalled_cluster_fails_the_liveness_check():
    config = ProtocolConfig(n=4, mode="ts")
    sim = SimCluster(config, clients=2, seed=3, workload=Workload(deadline_s=100.0))
    sim.start(10_000)
    sim.run_for(0.01)
    sim.crash(1)
    sim.crash(2)                                  # more than f: nothing can complete
    sim.stop_faults(2.0)
    sim.run_for(3.0)
    result = sim.finish()
    assert result.violations and all(v.startswith("liveness:") for v in result.violations)


def test_a_proof_with_fewer_than_nf_informs_is_reported():
    h = History()
    h.c.on_submitted(0, 1, [], 0.0)
    h.c.on_completed(0, Completed(1, 0, 1, 0, (), (0, 1), 0.1), 0.5)   # n = 4: nf = 3
    assert h.c.violations == ["client 0 message 1 accepted a proof of 2 INFORMs; a proof "
                              "needs nf = 3"]
