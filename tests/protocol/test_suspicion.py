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
