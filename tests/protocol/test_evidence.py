"""Issue 13, class 3 (PROTOCOL.md §4.6 step 1, §4.11), replica by hand:

* a replica whose executed prefix differs below the new view's checkpoint base stops
  executing and informing the moment it installs that view (it rolls back to its own stable
  checkpoint and transfers state); on 92d3ca5 it kept position 3, executed on the wrong
  prefix, and INFORMed it again under the new view once re-certified
  (``test_a_replica_diverged_below_the_base_informs_nothing``: "Reply sent for position 3
  on a diverged prefix");
* a FETCH-REPLY for a digest asked before a view change, arriving after the new view reset
  the slot, binds nothing; on 92d3ca5 it bound the old batch to the empty slot and the new
  primary's PROPOSE was then dropped as ``propose-conflicts-held-batch``
  (``test_a_late_fetch_reply_from_an_older_view_binds_nothing``).
"""
import pytest
from poe._core.codec import CheckpointProof

from poe._core import codec
from poe.crypto.base import replica
from poe.crypto.statements import checkpoint_statement
from poe.protocol.actions import Executed, Reply, RolledBack
from poe.protocol.poe.view_change import HistoryEntry, NewHistory


def ins(t, key, value):
    return (t, key, codec.OP_INSERT, value)


def msgs(H, k):
    """One client message, a distinct write per position k."""
    return [H.message(k % 4, [ins(1, 100 + k, b"v%d" % k)])]


def _proof(H, k, state, chain):
    statement = checkpoint_statement(k, state, chain)
    signers = [i for i in range(H.n) if i != 2][:H.config.nf]
    return CheckpointProof(k, state, chain,
                           [(i, H.suite(replica(i)).signer.sign(statement)) for i in signers])


def _commit(H, r, k, messages, v=0):
    """Backup ``r`` accepts PROPOSE(v, k) (from primary v) and view-commits it: certificate
    (TS), nf SUPPORTs (MAC), then nf COMMITs (PBFT)."""
    primary = v % H.n
    others = [i for i in range(H.n) if i not in (r.id, primary)][:H.config.nf - 2]
    d = H.digest(messages)
    out = r.on_message(H.propose(r.id, k, messages, v=v, sender=primary), 0.0)
    if H.mode == "ts":
        signers = [primary, *others, r.id][:H.config.nf]
        return out + r.on_message(H.certify(k, d, v=v, signers=signers, to=r.id), 0.0)
    for i in others:
        out += r.on_message(H.support(i, r.id, k, d, v=v), 0.0)
    if H.config.protocol == "pbft":
        for i in [primary, *others][:H.config.nf - 1]:
            out += r.on_message(H.commit_vote(i, r.id, k, d, v=v), 0.0)
    return out


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("mode,protocol", [("ts", "poe"), ("mac", "poe"), ("mac", "pbft")])
def test_a_replica_diverged_below_the_base_informs_nothing(cluster, mode, protocol, n):
    H = cluster(mode, n=n, protocol=protocol, batch_size=4, checkpoint_period=64, window=128)
    r = H.replica(2)
    batches = {k: msgs(H, k) for k in (1, 2, 3)}
    for k, m in batches.items():
        _commit(H, r, k, m)
    assert r.k_exec == 3
    out: list = []
    r.start_view_change(0, 1.0, out)
    # nf replicas executed another batch at 2: the base's chain digest is not ours
    base = _proof(H, 2, b"\1" * 32, b"\2" * 32)
    d3 = H.digest(batches[3])
    entry = HistoryEntry(3, d3, 0, H.cert(0, 3, d3, signers=range(H.config.nf))
                         if mode == "ts" else None)
    installed: list = []
    r.install_view(1, NewHistory(base, {3: entry}, 3), 1.0, installed)
    # position 3 is re-certified in view 1: nothing executes or INFORMs on our prefix
    if mode == "ts":
        signers = [i for i in range(n) if i != 2][:H.config.nf]
        out = r.on_message(H.certify(3, d3, v=1, signers=signers, to=2), 1.1)
    else:
        voters = [i for i in range(n) if i not in (1, 2)][:H.config.nf - 2]
        out = []
        for i in voters:
            out += r.on_message(H.support(i, 2, 3, d3, v=1), 1.1)
        if protocol == "pbft":
            for i in [1, *voters][:H.config.nf - 1]:
                out += r.on_message(H.commit_vote(i, 2, 3, d3, v=1), 1.1)
    assert not H.of(out, Reply), "Reply sent for position 3 on a diverged prefix"
    assert not H.of(out, Executed), "executed on a diverged prefix"
    # it went back to its own stable checkpoint at once and asks for the agreed state
    assert (r.view, r.k_exec) == (1, 0) and r.diverged
    assert [a.seq for a in H.of(installed, RolledBack)] == [0]
    assert H.sends(installed, codec.STATE_REQ)
    # a client's retry is not answered from the diverged prefix either (its reply is gone
    # with the rollback: the retry goes to the primary)
    retry = codec.encode_request(batches[1][0], 0)
    assert not H.of(r.on_message(retry, 1.2), Reply)


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("protocol", ["poe", "pbft"])
def test_a_late_fetch_reply_from_an_older_view_binds_nothing(cluster, protocol, n):
    H = cluster("mac", n=n, protocol=protocol, batch_size=4)
    r = H.replica(2)
    x = [H.message(0, [ins(1, 10, b"X")])]
    y = [H.message(1, [ins(1, 10, b"Y")])]
    r._fetch(1, H.digest(x), range(n), 0.0, [])         # asked in view 0
    out: list = []
    r.start_view_change(0, 1.0, out)
    genesis = CheckpointProof(0, b"\0" * 32, H.config.genesis, ())
    r.install_view(1, NewHistory(genesis, {}, 0), 1.0, out)
    assert r.view == 1 and r.window.payload(1) is None   # view 1 does not keep position 1
    # the answer to the view-0 FETCH arrives now: nobody asked for it in this slot
    late = r.on_message(H.fetch_reply(3, 2, 1, x), 1.1)
    # the primary of view 1 proposes another batch at 1: accepted and supported
    out = r.on_message(H.propose(2, 1, y, v=1, sender=1), 1.2)
    assert r.drops["propose-conflicts-held-batch"] == 0, dict(r.drops)
    assert H.sends(out, codec.SUPPORT)
    assert late == [] and r.drops["fetch-reply-unsolicited"] == 1
