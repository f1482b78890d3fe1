"""Suspicion must be earned, cheap checks first (PROTOCOL.md §4.12, §4.13; issue 14): inputs
that a keyless party, a faulty client or one faulty replica can send never make a correct
backup suspect a correct primary, and cost no pairing or signature check they need not."""
from collections import Counter

import pytest
from poe._core.codec import CheckpointProof, VcEntry

from poe._core import codec
from poe.crypto.base import replica
from poe.crypto.statements import vc_request_statement
from poe.protocol.actions import SetTimer


def ins(t, key, value):
    return (t, key, codec.OP_INSERT, value)


def _counting(r, name):
    """Count the calls of the replica's crypto method ``name`` (threshold or verifier)."""
    calls = Counter()
    holder = r.crypto.threshold if name == "verify_cert" else r.crypto.verifier
    original = getattr(holder, name)

    def counted(*args):
        calls[name] += 1
        return original(*args)
    setattr(holder, name, counted)
    return calls


def test_a_keyless_certify_flood_naming_the_primary_costs_nothing_and_suspects_no_one(ts):
    r1 = ts.replica(1)
    pairings = _counting(r1, "verify_cert")
    h = ts.digest([ts.message(0, [ins(1, 10, b"a")])])
    for k in range(1, 101):
        frame = codec.encode_certify(0, 0, k, h, ts.bitmap([0, 2, 3]), bytes(96))
        assert r1.on_message(frame, k * 0.01) == []
    assert r1.status == "normal" and r1.view == 0
    assert r1.drops == Counter({"wrong-auth": 100}) and pairings["verify_cert"] == 0


def test_a_backup_s_certify_is_dropped_before_any_pairing(ts):
    r1 = ts.replica(1)
    pairings = _counting(r1, "verify_cert")
    h = ts.digest([ts.message(0, [ins(1, 10, b"a")])])
    bad = codec.encode_certify(2, 0, 1, h, ts.bitmap([0, 2, 3]), bytes(96), codec.AUTH_MAC)
    assert r1.on_message(ts.mac(2, 1, bad), 0.0) == []
    assert r1.drops == Counter({"certify-not-primary": 1}) and pairings["verify_cert"] == 0
    assert r1.status == "normal"


def test_a_checkpoint_copy_costs_no_second_signature_check(both):
    H = both
    r1 = H.replica(1)
    checks = _counting(r1, "verify")
    k = H.config.checkpoint_period
    frame = H.checkpoint(2, k, b"\1" * 32, b"\2" * 32)
    r1.on_message(frame, 0.0)
    for _ in range(20):
        assert r1.on_message(frame, 0.1) == []
    assert checks["verify"] == 1 and r1.drops["checkpoint-duplicate"] == 20


def _answered(H, r):
    """Backup ``r`` executed client 0's message at 1 (and answered it)."""
    m = H.message(0, [ins(1, 10, b"a")])
    H.commit(r, 1, [m])
    assert r.k_exec == 1
    return m


def test_retries_with_a_bad_signature_of_an_answered_message_never_suspect(both):
    """A keyless party replays client 0's id with garbage signatures, for longer than a
    view-change timeout: answered from the cache at most, never grounds for suspicion."""
    H = both
    r1 = H.replica(1)
    m = _answered(H, r1)
    forged = codec.encode_request(m[:-64] + bytes(64), 0)
    t = 0.0
    for _ in range(20):
        t += H.config.view_change_timeout_s
        r1.on_message(forged, t)
    assert r1.status == "normal" and r1.stats["suspect-client-unserved"] == 0


def test_an_oversized_client_message_at_a_backup_is_not_forwarded(cluster):
    H = cluster("mac", batch_size=4)
    r1 = H.replica(1)
    big = H.message(0, [ins(t, 50 + t, b"x") for t in range(1, 7)])     # 6 > batch_size
    out = r1.on_message(codec.encode_request(big, 0), 0.0)
    assert out == [] and r1.drops == Counter({"request-too-large": 1})
    assert not r1.forwarded and not r1.progress_armed        # no T_req for the primary


def test_one_early_support_for_a_far_position_is_not_progress_owed(mac):
    r1 = mac.replica(1)
    d = mac.digest([mac.message(0, [ins(1, 10, b"a")])])
    out = r1.on_message(mac.support(2, 1, 9, d), 0.0)
    assert r1.max_seen == 0 and not [a for a in out if isinstance(a, SetTimer)
                                     and a.kind == "progress"]
    out = r1.on_timeout("progress", 0, 10.0) + r1.on_timeout("tick", 0, 10.0)
    assert r1.status == "normal"


def test_a_propose_for_the_next_window_above_batch_size_is_not_kept(cluster):
    H = cluster("mac", batch_size=4, window=4, checkpoint_period=2)
    r1 = H.replica(1)
    big = H.message(0, [ins(t, 50 + t, b"x") for t in range(1, 7)])
    assert r1.on_message(H.propose(1, 6, [big]), 0.0) == []
    assert r1.drops == Counter({"propose-batch-too-large": 1}) and not r1._ahead


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_a_vc_request_with_more_entries_than_a_correct_replica_reports_is_dropped(cluster,
                                                                                  mode):
    H = cluster(mode, window=4, checkpoint_period=2)
    r1 = H.replica(1)
    per_seq = 1 if mode == "ts" else 9
    d = b"\5" * 32
    kind = codec.ENTRY_CERT if mode == "ts" else codec.ENTRY_SUPPORTED
    entries = [VcEntry(kind, 1 + i % 4, 0, d, b"\7" if mode == "ts" else b"",
                       bytes(96) if mode == "ts" else b"")
               for i in range(4 * per_seq + 1)]
    genesis = CheckpointProof(0, b"\0" * 32, H.config.genesis, ())
    frame = codec.encode_vc_request(2, 0, genesis, entries)
    sig = H.suite(replica(2)).signer.sign(vc_request_statement(frame))
    checks = _counting(r1, "verify_cert") if mode == "ts" else Counter()
    assert r1.on_message(codec.seal(frame, sig), 0.0) == []
    assert r1.drops == Counter({"vc-request-too-many-entries": 1})
    assert checks["verify_cert"] == 0


def test_drops_are_counted_by_authenticated_sender_only(both):
    """Issue 14: drop counters per sender where known. A frame with a valid MAC that a
    handler drops counts against its sender; a forged frame counts only by reason."""
    from poe.protocol.drops import DropCounter
    h = both
    r = h.replica(1)
    assert isinstance(r.drops, DropCounter)
    good = h.fetch(2, 1, 10 ** 6, b"\x00" * 32)            # far beyond any window
    forged = good[:-32] + bytes(32)
    r.on_message(forged, 0.0)
    assert r.drops["bad-mac"] == 1
    assert not r.drops.by_sender
    r.on_message(good, 0.0)
    assert sum(r.drops.values()) == 2, r.drops
    assert set(r.drops.by_sender) == {(2, reason) for reason in r.drops if reason != "bad-mac"}
    assert sum(r.drops.by_sender.values()) == 1


def _retry(H, m: bytes, to: int, attempt: int, *, cid: int = 0) -> bytes:
    """Client ``cid``'s retransmission number ``attempt`` of ``m``, sealed for ``to``."""
    from poe.crypto.base import client
    from poe.protocol.poe.client import retry_frame
    frame = retry_frame(codec.encode_request(m, 0), attempt)
    return codec.seal(frame, H.suite(client(cid)).macs.mac(replica(to), frame))


def _vc_request(H, sender: int, leaving: int) -> bytes:
    genesis = CheckpointProof(0, b"\0" * 32, H.config.genesis, ())
    frame = codec.encode_vc_request(sender, leaving, genesis, [])
    return codec.seal(frame, H.suite(replica(sender)).signer.sign(vc_request_statement(frame)))


def test_a_client_retrying_an_answered_message_forever_moves_no_view(both):
    """Issue 14 class 2: a faulty client re-sends an answered message to a backup, sealed
    and numbered like a correct client's retries, for twenty view-change timeouts. Every
    replica is still in the view, so the client is not unserved: no suspicion."""
    H = both
    r1 = H.replica(1)
    m = _answered(H, r1)
    t = 0.0
    for attempt in range(1, 21):
        t += H.config.view_change_timeout_s
        out = r1.on_message(_retry(H, m, 1, attempt), t)
        assert [a.client for a in out if type(a).__name__ == "Reply"] == [0]
    assert r1.status == "normal" and r1.stats["suspect-client-unserved"] == 0
    assert r1.stats["retry-all-in-view"] > 0


def test_an_unserved_client_moves_the_view_once_another_replica_left_it(both):
    """The liveness trap decision 19 closes: replica 2 is alone in a view change, a faulty
    replica stays silent, the client holds nf - 1 INFORMs and retries. Once replica 2's
    VC-REQUEST is here, the client's authenticated retries make r1 suspect; replayed or
    unauthenticated copies of the same retries never count."""
    H = both
    r1 = H.replica(1)
    m = _answered(H, r1)
    r1.on_message(_vc_request(H, 2, 0), 0.0)
    assert r1.status == "normal"                 # one VC-REQUEST is not f + 1
    timeout = H.config.view_change_timeout_s
    first = _retry(H, m, 1, 1)
    r1.on_message(first, timeout)
    for t in (2 * timeout, 3 * timeout, 4 * timeout):     # replays and foreign seals
        r1.on_message(first, t)
        r1.on_message(_retry(H, m, 2, 7), t)              # sealed for replica 2
        r1.on_message(codec.encode_request(m, 0), t)      # unsealed
    assert r1.status == "normal"
    assert r1.stats["retry-replayed"] == 3 and r1.stats["retry-unauthenticated"] == 6
    r1.on_message(_retry(H, m, 1, 2), 4 * timeout)
    out = r1.on_message(_retry(H, m, 1, 3), 5 * timeout)
    assert r1.stats["suspect-client-unserved"] == 1 and r1.status == "view-change"
    assert H.broadcasts(out, codec.VC_REQUEST)


def test_one_client_gets_its_share_of_the_primary_s_queue_and_no_more(cluster):
    """Issue 14 class 2: one client cannot fill the pending queue."""
    H = cluster("ts", client_pending_max=2, batch_size=100, batch_timeout_s=1.0)
    r0 = H.replica(0)
    for t in (1, 2, 3):
        r0.on_message(H.request(0, [ins(t, t, b"x")]), 0.0)
    assert len(r0.pending) == 2 and r0.drops == Counter({"client-over-share": 1})
    r0.on_message(H.request(1, [ins(1, 9, b"y")]), 0.0)
    assert len(r0.pending) == 3 and r0.pending.of(1) == 1


@pytest.mark.parametrize("executed, suspects", [(1, True), (2, False)])
def test_a_forwarded_message_of_a_client_over_its_share_is_not_waited_for(cluster, executed,
                                                                          suspects):
    """A backup forwarded client 0's message x; the primary may drop it only if client 0
    had its share queued. Once that many other messages of client 0 executed after the
    forward, x is no longer waited for (T_req, §4.2); before that it still is."""
    from poe.protocol.poe.view_change import TIMER_PROGRESS
    H = cluster("ts", client_pending_max=2)
    r1 = H.replica(1)
    out = r1.on_message(H.request(0, [ins(100, 1, b"x")]), 0.0)
    assert H.sends(out, codec.REQUEST) and r1.forwarded
    others = [H.message(0, [ins(t, t, b"o")]) for t in range(1, 1 + executed)]
    H.commit(r1, 1, others, 0.1)
    assert r1.k_exec == 1
    out = r1.on_timeout(TIMER_PROGRESS, 0, H.config.view_change_timeout_s + 0.2)
    assert (r1.status == "view-change") is suspects, r1.stats
    assert bool(r1.forwarded) is suspects


def test_an_executed_message_whose_answer_was_evicted_is_not_waited_for(both):
    """A faulty client sends 65 messages, then stops and replays its first one (whose
    answer the backup's cache evicted: 64 per client) to a backup. It executed here, so
    the backup forwards it (the primary may still hold the answer) but does not wait for
    it: no T_req, no suspicion."""
    from poe.protocol.poe.view_change import TIMER_PROGRESS
    H = both
    r1 = H.replica(1)
    messages = [H.message(0, [ins(t, t, b"v")]) for t in range(1, 66)]
    H.commit(r1, 1, messages)
    assert r1.k_exec == 1 and r1.replies.get((0, 1)) is None
    out = r1.on_message(codec.encode_request(messages[0], 0), 1.0)
    assert [a.to for a in H.sends(out, codec.REQUEST)] == [0]     # the primary may answer
    assert r1.stats["forwarded-executed"] == 1 and not r1.forwarded
    r1.on_timeout(TIMER_PROGRESS, 0, 1.0 + 10 * H.config.view_change_timeout_s)
    assert r1.status == "normal"
