"""PoE replica and client driven by hand, one input at a time (PROTOCOL.md §1.4, §2.4-2.8,
§3.2, §5.1-5.3).

Every frame is built and sealed here with the right (or a deliberately wrong) key, handed to
one or a few PoEReplica / PoEClient objects, and the exact actions they return are checked:
who gets which SUPPORT, CERTIFY, FETCH, INFORM or CHECKPOINT, when a batch executes and with
which results. Hostile input must be dropped without raising, counted under one specific
reason, and leave the replica's state unchanged. Both the TS variant (threshold
certificates) and the MAC variant (all-to-all SUPPORT) are covered where they differ.
"""
from __future__ import annotations

import random
from collections import Counter, deque

import pytest

from poe._core import codec
from poe.crypto.base import Certificate, client, replica
from poe.crypto.statements import checkpoint_statement, support_statement
from poe.protocol.actions import (
    Broadcast, CancelTimer, Executed, Reply, Send, SetTimer, Stable,
)
from poe.protocol.poe.client import Completed, OutcomeUnknown

OK, DUP = codec.ST_OK, codec.ST_DUPLICATE


def ins(t, key, value):
    return (t, key, codec.OP_INSERT, value)


def read(t, key):
    return (t, key, codec.OP_READ, b"")


def proposal_frames(H, out):
    """{k: sealed PROPOSE per receiver} of a primary's output."""
    frames: dict = {}
    for s in H.sends(out, codec.PROPOSE):
        frames.setdefault(codec.peek(s.data)[3], {})[s.to] = s.data
    return frames


def primary_with_proposal(H, cid=0, t=1, now=0.0):
    """Primary 0 that proposed one single-operation message as k = next_k."""
    r0 = H.replica(0)
    msg = H.message(cid, [ins(t, 100 + t, b"v%d" % t)])
    out = r0.on_message(codec.encode_request(msg), now)
    if not H.sends(out, codec.PROPOSE):
        out += r0.on_timeout("batch", 0, now)          # batch_size not reached: the timer
    assert len(H.sends(out, codec.PROPOSE)) == H.n - 1
    return r0, msg, H.digest([msg]), out


# =============================================================================== happy path


def test_ts_backup_supports_a_valid_propose_once_to_the_primary(ts):
    r1 = ts.replica(1)
    msgs = [ts.message(0, [ins(1, 10, b"a")]), ts.message(1, [ins(1, 11, b"b"), read(2, 11)])]
    h = ts.digest(msgs)
    out = r1.on_message(ts.propose(1, 1, msgs), 0.0)
    sends = ts.sends(out)
    assert len(sends) == 1 and sends[0].to == 0
    m = codec.decode(sends[0].data)
    assert (m.kind, m.sender, m.view, m.seq, m.digest) == (codec.SUPPORT, 1, 0, 1, h)
    assert ts.suite(replica(0)).macs.verify(replica(1), m.signed, m.auth)
    assert not ts.suite(replica(2)).macs.verify(replica(1), m.signed, m.auth)
    assert ts.public.threshold.verify_share(1, support_statement(0, 1, h), m.share)
    assert not ts.of(out, (Executed, Reply, Broadcast)) and r1.k_exec == 0
    assert not r1.drops


def test_ts_backup_executes_on_certify_and_informs_each_client_message(ts):
    r1 = ts.replica(1)
    msgs = [ts.message(0, [ins(1, 10, b"a")]), ts.message(1, [ins(1, 11, b"b"), read(2, 11)])]
    h = ts.digest(msgs)
    r1.on_message(ts.propose(1, 1, msgs), 0.0)
    out = r1.on_message(ts.certify(1, h), 0.1)
    [e] = ts.of(out, Executed)
    assert (e.seq, e.view, e.digest, e.block_hash) == (1, 0, h, r1.head)
    assert r1.k_exec == 1 and r1.kv.get(11) == b"b"
    replies = ts.of(out, Reply)
    assert [r.client for r in replies] == [0, 1]
    expected = [((1, OK, b""),), ((1, OK, b""), (2, OK, b"b"))]
    for i, rep in enumerate(replies):
        m = codec.decode(rep.data)
        assert ts.suite(client(i)).macs.verify(replica(1), m.signed, m.auth)
        assert not ts.suite(client(1 - i)).macs.verify(replica(1), m.signed, m.auth)
        assert (m.kind, m.sender, m.view, m.seq) == (codec.INFORM, 1, 0, 1)
        assert (m.client, m.entries()) == (i, [(i, expected[i])])
    assert not ts.sends(out) and not r1.drops


def test_mac_backup_supports_to_all_and_executes_only_at_nf(mac):
    r1 = mac.replica(1)
    msgs = [mac.message(0, [ins(1, 10, b"a")])]
    h = mac.digest(msgs)
    out = r1.on_message(mac.propose(1, 1, msgs), 0.0)
    sends = mac.sends(out)
    assert sorted(s.to for s in sends) == [0, 2, 3]
    for s in sends:
        m = codec.decode(s.data)
        assert (m.kind, m.sender, m.seq, m.digest, m.share) == (codec.SUPPORT, 1, 1, h, b"")
        assert mac.suite(replica(s.to)).macs.verify(replica(1), m.signed, m.auth)
    # PROPOSE (the primary's vote) + own SUPPORT = nf - 1: nothing executes yet
    assert not mac.of(out, Executed) and r1.window.count(1, 0) == mac.config.nf - 1
    out = r1.on_message(mac.support(2, 1, 1, h), 0.1)
    [e] = mac.of(out, Executed)
    assert (e.seq, e.digest) == (1, h) and len(mac.of(out, Reply)) == 1
    out = r1.on_message(mac.support(3, 1, 1, h), 0.2)       # the n-th vote changes nothing
    assert not mac.of(out, Executed) and r1.k_exec == 1


def test_mac_supports_before_the_propose_are_buffered_and_must_match(mac):
    r1 = mac.replica(1)
    msgs = [mac.message(0, [ins(1, 10, b"a")])]
    h, other = mac.digest(msgs), mac.digest([mac.message(1, [ins(1, 10, b"b")])])
    assert r1.on_message(mac.support(2, 1, 1, other), 0.0) == []
    out = r1.on_message(mac.propose(1, 1, msgs), 0.1)
    assert not mac.of(out, Executed)                  # the early vote was for another digest
    assert [e.seq for e in mac.of(r1.on_message(mac.support(3, 1, 1, h), 0.2), Executed)] \
        == [1]

    r1 = mac.replica(1)
    assert r1.on_message(mac.support(2, 1, 1, h), 0.0) == []
    out = r1.on_message(mac.propose(1, 1, msgs), 0.1)   # primary + own + buffered = nf
    assert [e.seq for e in mac.of(out, Executed)] == [1] and not r1.drops


def test_mac_primary_counts_its_propose_as_its_support(mac):
    r0, msg, h, _ = primary_with_proposal(mac)
    assert not mac.of(r0.on_message(mac.support(1, 0, 1, h), 0.1), Executed)
    out = r0.on_message(mac.support(2, 0, 1, h), 0.2)
    assert [e.seq for e in mac.of(out, Executed)] == [1]
    assert [r.client for r in mac.of(out, Reply)] == [0]
    assert not mac.sends(out, codec.CERTIFY)               # no certificates in MAC mode


# =============================================================================== primary


def test_primary_closes_the_batch_when_batch_size_operations_are_reached(cluster):
    H = cluster("ts", batch_size=3)
    r0 = H.replica(0)
    m0, m1 = H.message(0, [ins(1, 1, b"x")]), H.message(1, [ins(1, 2, b"y"), ins(2, 3, b"z")])
    out = r0.on_message(codec.encode_request(m0), 0.0)
    assert out == [SetTimer("batch", 0, 0.0 + H.config.batch_timeout_s)]
    out = r0.on_message(codec.encode_request(m1), 0.001)
    assert all(t.kind != "batch" for t in H.of(out, SetTimer))
    props = H.sends(out, codec.PROPOSE)
    assert sorted(p.to for p in props) == [1, 2, 3]
    for p in props:
        m = codec.decode(p.data)
        assert H.suite(replica(p.to)).macs.verify(replica(0), m.signed, m.auth)
        assert (m.view, m.seq, m.sender) == (0, 1, 0)
        assert [bytes(x) for x in m.batch.messages()] == [m0, m1]
    assert r0.stats["proposed"] == 1 and r0.next_k == 2


def test_primary_closes_a_partial_batch_when_the_batch_timer_fires(ts):
    r0 = ts.replica(0)
    msg = ts.message(0, [ins(1, 1, b"x")])
    [timer] = r0.on_message(codec.encode_request(msg), 0.0)
    assert (timer.kind, timer.key) == ("batch", 0)
    out = r0.on_timeout(timer.kind, timer.key, timer.at)
    props = ts.sends(out, codec.PROPOSE)
    assert sorted(p.to for p in props) == [1, 2, 3]
    assert [bytes(x) for x in codec.decode(props[0].data).batch.messages()] == [msg]
    assert r0.on_timeout(timer.kind, timer.key, timer.at + 1) == []      # nothing left open


def test_primary_batches_stay_within_batch_size_so_backups_accept_them(cluster):
    H = cluster("ts", batch_size=4)
    r0, r1 = H.replica(0), H.replica(1)
    three = [H.message(c, [ins(1, c, b"a"), ins(2, 10 + c, b"b"), ins(3, 20 + c, b"c")])
             for c in (0, 1)]
    out = r0.on_message(codec.encode_request(three[0]), 0.0)
    out += r0.on_message(codec.encode_request(three[1]), 0.0)
    out += r0.on_timeout("batch", 0, 1.0)
    frames = proposal_frames(H, out)
    assert sorted(frames) == [1, 2]
    for k in (1, 2):
        m = codec.decode(frames[k][1])
        assert m.batch.nops <= 4
        assert H.sends(r1.on_message(frames[k][1], 1.0), codec.SUPPORT)
    assert not r1.drops
    # a single message larger than a batch could never be accepted: refused up front
    big = H.message(2, [ins(t, 50 + t, b"x") for t in range(1, 6)])
    assert r0.on_message(codec.encode_request(big), 1.0) == []
    assert r0.drops["request-too-large"] == 1 and r0.next_k == 3


def test_primary_certifies_after_nf_shares_and_broadcasts_certify(ts):
    r0, msg, h, _ = primary_with_proposal(ts)
    assert r0.on_message(ts.support(1, 0, 1, h), 0.1) == []
    out = r0.on_message(ts.support(2, 0, 1, h), 0.2)
    [m] = ts.to_all(out, codec.CERTIFY, 0)               # a MAC per receiver (§4.12)
    assert (m.view, m.seq, m.digest, m.auth_kind) == (0, 1, h, codec.AUTH_MAC)
    cert = Certificate(m.bitmap, m.signature)
    assert ts.public.threshold.verify_cert(cert, support_statement(0, 1, h))
    assert cert.signers() == [0, 1, 2]
    assert [e.seq for e in ts.of(out, Executed)] == [1] and r0.stats["certified"] == 1
    assert [r.client for r in ts.of(out, Reply)] == [0]
    assert r0.on_message(ts.support(3, 0, 1, h), 0.3) == []
    assert r0.drops == Counter({"support-late": 1})


@pytest.mark.parametrize("bad", ["garbage", "other-view", "other-seq", "other-signer"])
def test_primary_excludes_a_bad_share_and_certifies_with_good_ones(ts, bad):
    r0, msg, h, _ = primary_with_proposal(ts)
    share = {"garbage": bytes(range(96)),
             "other-view": ts.share(1, 1, 1, h),
             "other-seq": ts.share(1, 0, 2, h),
             "other-signer": ts.share(3, 0, 1, h)}[bad]
    assert r0.on_message(ts.support(1, 0, 1, h, share=share), 0.1) == []
    out = r0.on_message(ts.support(2, 0, 1, h), 0.2)
    assert not ts.sends(out, codec.CERTIFY) and r0.drops == Counter({"support-bad-share": 1})
    out = r0.on_message(ts.support(3, 0, 1, h), 0.3)
    [m] = ts.to_all(out, codec.CERTIFY, 0)
    cert = Certificate(m.bitmap, m.signature)
    assert cert.signers() == [0, 2, 3]
    assert ts.public.threshold.verify_cert(cert, support_statement(0, 1, h))
    assert r0.k_exec == 1
    # the excluded replica stays excluded for this slot
    assert r0.on_message(ts.support(1, 0, 1, h), 0.4) == []
    assert r0.drops["support-duplicate"] == 1


# =============================================================================== hostile input
#
# Each case builds (replica, frame, drop reason) from a harness; the replica may have been
# brought into a state first (a proposal accepted, a certificate formed, ...).

def _msgs(H, cid=0, value=b"a"):
    return [H.message(cid, [ins(1, 10, value)])]


def _backup_with_a(H):
    r1 = H.replica(1)
    a = _msgs(H)
    assert H.sends(r1.on_message(H.propose(1, 1, a), 0.0), codec.SUPPORT)
    return r1, a


def _certified_primary(H):
    r0, msg, h, _ = primary_with_proposal(H)
    r0.on_message(H.support(1, 0, 1, h), 0.0)
    assert H.to_all(r0.on_message(H.support(2, 0, 1, h), 0.0), codec.CERTIFY, 0)
    return r0, h


def _ts_cert(H, h):
    """A valid certificate for (0, 1, h) made with the threshold keys of the same fake
    cluster (available even when H runs in MAC mode)."""
    stmt = support_statement(0, 1, h)
    shares = {i: H.fc.suite(replica(i)).threshold_signer.share_sign(stmt) for i in range(3)}
    return H.fc.suite(None).threshold.combine(shares, stmt)


def _ts_certify(H, h, to=1):
    cert = _ts_cert(H, h)
    return H.mac(0, to, codec.encode_certify(0, 0, 1, h, cert.bitmap, cert.signature,
                                             codec.AUTH_MAC))


def _c_garbage(H):
    return H.replica(1), b"\x00garbage\xff" * 3, "malformed"


def _c_random(H):
    return H.replica(1), random.Random(5).randbytes(300), "malformed"


def _c_bad_magic(H):
    f = bytearray(H.propose(1, 1, _msgs(H)))
    f[0] ^= 1
    return H.replica(1), bytes(f), "malformed"


def _c_truncated(H):
    return H.replica(1), H.propose(1, 1, _msgs(H))[:-1], "malformed"


def _c_truncated_header(H):
    return H.replica(1), H.propose(1, 1, _msgs(H))[:20], "malformed"


def _c_trailing(H):
    return H.replica(1), H.propose(1, 1, _msgs(H)) + b"\0", "malformed"


def _c_wrong_mac(H):
    return H.replica(1), codec.seal(codec.encode_propose(0, 0, 1, _msgs(H)), b"\0" * 32), \
        "bad-mac"


def _c_other_pair_key(H):
    frame = codec.encode_propose(0, 0, 1, _msgs(H))
    return H.replica(1), H.mac(0, 2, frame), "bad-mac"            # meant for replica 2


def _c_mac_by_other_replica(H):
    frame = codec.encode_propose(0, 0, 1, _msgs(H))                # claims sender 0 ...
    return H.replica(1), H.mac(2, 1, frame), "bad-mac"            # ... sealed by replica 2


def _c_reflected(H):
    frame = codec.encode_support(0, 0, 1, b"\1" * 32, b"")        # 1 -> 0 key, sender 0
    return H.replica(1), H.mac(1, 0, frame), "bad-mac"


def _c_unknown_sender(H):
    frame = codec.encode_propose(H.n, 0, 1, _msgs(H))
    return H.replica(1), codec.seal(frame, b"\7" * 32), "unknown-sender"


def _c_self_sender(H):
    frame = codec.encode_propose(1, 0, 1, _msgs(H))
    return H.replica(1), H.mac(0, 1, frame), "unknown-sender"


def _c_propose_without_mac(H):
    frame = codec.encode_propose(0, 0, 1, _msgs(H), auth=codec.AUTH_NONE)
    return H.replica(1), frame, "wrong-auth"


def _c_propose_not_primary(H):
    return H.replica(1), H.propose(1, 1, _msgs(H), sender=2), "propose-not-primary"


def _c_propose_other_view(H):
    return H.replica(1), H.propose(1, 1, _msgs(H), v=1), "propose-wrong-view"


def _c_propose_above_high(H):
    r1 = H.replica(1)
    # the next window's proposals are kept (test_next_window_messages_are_kept_and_replayed);
    # beyond it they are dropped
    return r1, H.propose(1, r1.window.high + H.config.window + 1, _msgs(H)), \
        "propose-outside-window"


def _c_propose_at_low(H):
    return H.replica(1), H.propose(1, 0, _msgs(H)), "propose-outside-window"


def _c_propose_equivocation(H):
    r1, _ = _backup_with_a(H)
    return r1, H.propose(1, 1, _msgs(H, 1, b"b")), "propose-equivocation"


def _c_propose_too_large(H):
    r1 = H.replica(1)
    big = [H.message(0, [ins(t, t, b"x") for t in range(1, H.config.batch_size + 2)])]
    return r1, H.propose(1, 1, big), "propose-batch-too-large"


def _c_propose_bad_client_signature(H):
    msgs = [H.message(0, [ins(1, 1, b"x")]), H.message(1, [ins(1, 2, b"y")], good=False)]
    return H.replica(1), H.propose(1, 1, msgs), "propose-bad-client-signature"


def _c_propose_unknown_client(H):
    msgs = [codec.pack_client_message(999, [ins(1, 1, b"x")]) + b"\3" * 64]
    return H.replica(1), H.propose(1, 1, msgs), "propose-bad-client-signature"


def _c_support_wrong_digest(H):
    if H.mode == "ts":
        r0, *_ = primary_with_proposal(H)
        return r0, H.support(1, 0, 1, b"\5" * 32), "support-wrong-digest"
    r1, _ = _backup_with_a(H)
    return r1, H.support(2, 1, 1, b"\5" * 32), "support-wrong-digest"


def _c_support_duplicate(H):
    if H.mode == "ts":
        r0, msg, h, _ = primary_with_proposal(H)
        r0.on_message(H.support(1, 0, 1, h), 0.0)
        return r0, H.support(1, 0, 1, h), "support-duplicate"
    r1 = H.replica(1)
    r1.on_message(H.support(2, 1, 1, b"\5" * 32), 0.0)         # buffered before PROPOSE
    return r1, H.support(2, 1, 1, b"\5" * 32), "support-duplicate"


def _c_support_duplicate_after_propose(H):
    r1, a = _backup_with_a(H)
    r1.on_message(H.support(3, 1, 1, H.digest(a)), 0.0)
    return r1, H.support(3, 1, 1, H.digest(a)), "support-duplicate"


def _c_support_after_certificate(H):
    r0, h = _certified_primary(H)
    return r0, H.support(3, 0, 1, h), "support-late"


def _c_support_to_a_backup(H):
    r1, a = _backup_with_a(H)
    return r1, H.support(2, 1, 1, H.digest(a)), "support-not-proposed"


def _c_support_other_view(H):
    r1, a = _backup_with_a(H)
    return r1, H.support(2, 1, 1, H.digest(a), v=1), "support-wrong-view"


def _c_certify_too_few(H):
    h = H.digest(_msgs(H))
    good = H.cert(0, 1, h)
    frame = codec.encode_certify(0, 0, 1, h, H.bitmap([0, 2]), good.signature, codec.AUTH_MAC)
    return H.replica(1), H.mac(0, 1, frame), "certify-too-few-signers"


def _c_certify_forged(H):
    h = H.digest(_msgs(H))
    frame = codec.encode_certify(0, 0, 1, h, H.bitmap([0, 2, 3]), bytes(96), codec.AUTH_MAC)
    return H.replica(1), H.mac(0, 1, frame), "certify-invalid"


def _c_certify_unauthenticated(H):
    """A keyless party's CERTIFY naming the primary, with a bad signature: no MAC, so
    nothing (no pairing, and never suspicion of the primary, §4.12)."""
    h = H.digest(_msgs(H))
    frame = codec.encode_certify(0, 0, 1, h, H.bitmap([0, 2, 3]), bytes(96))
    return H.replica(1), frame, "wrong-auth"


def _c_certify_from_a_backup(H):
    h = H.digest(_msgs(H))
    return H.replica(1), H.certify(1, h, sender=2), "certify-not-primary"


def _c_certify_other_seq(H):
    h = H.digest(_msgs(H))
    return H.replica(1), H.certify(1, h, cert=H.cert(0, 2, h)), "certify-invalid"


def _c_certify_other_digest(H):
    h, h2 = H.digest(_msgs(H)), H.digest(_msgs(H, 1, b"b"))
    return H.replica(1), H.certify(1, h, cert=H.cert(0, 1, h2)), "certify-invalid"


def _c_certify_other_view(H):
    h = H.digest(_msgs(H))
    return H.replica(1), H.certify(1, h, cert=H.cert(1, 1, h)), "certify-invalid"


def _c_certify_frame_other_view(H):
    h = H.digest(_msgs(H))
    return H.replica(1), H.certify(1, h, v=1, sender=0), "certify-wrong-view"


def _c_certify_outside_window(H):
    r1 = H.replica(1)
    k = r1.window.high + H.config.window + 1
    h = H.digest(_msgs(H))
    return r1, H.certify(k, h), "certify-outside-window"


def _c_certify_in_mac_mode(H):
    h = H.digest(_msgs(H))
    return H.replica(1), _ts_certify(H, h), "certify-in-mac-mode"


def _c_inform_to_replica(H):
    frame = codec.encode_inform(0, 0, 1, codec.inform_body(0, [(0, [(1, OK, b"")])]))
    return H.replica(1), H.mac(0, 1, frame), "unexpected-kind"


def _c_checkpoint_bad_signature(H):
    k = H.config.checkpoint_period
    frame = codec.encode_checkpoint(2, k, b"\1" * 32, b"\2" * 32, b"\3" * 64, codec.AUTH_MAC)
    return H.replica(1), H.mac(2, 1, frame), "checkpoint-bad-signature"


def _c_checkpoint_signed_by_another(H):
    k = H.config.checkpoint_period
    sig = H.suite(replica(3)).signer.sign(checkpoint_statement(k, b"\1" * 32, b"\2" * 32))
    frame = codec.encode_checkpoint(2, k, b"\1" * 32, b"\2" * 32, sig, codec.AUTH_MAC)
    return H.replica(1), H.mac(2, 1, frame), "checkpoint-bad-signature"   # claims replica 2


def _c_checkpoint_unauthenticated(H):
    """Validly signed by replica 2, but without a MAC: not taken from whoever sends it."""
    k = H.config.checkpoint_period
    sig = H.suite(replica(2)).signer.sign(checkpoint_statement(k, b"\1" * 32, b"\2" * 32))
    return H.replica(1), codec.encode_checkpoint(2, k, b"\1" * 32, b"\2" * 32, sig), \
        "wrong-auth"


def _c_checkpoint_not_a_checkpoint(H):
    frame = H.checkpoint(2, H.config.checkpoint_period + 1, b"\1" * 32, b"\2" * 32)
    return H.replica(1), frame, "checkpoint-not-a-checkpoint"


def _c_fetch_unknown_slot(H):
    return H.replica(1), H.fetch(2, 1, 1, b"\0" * 32), "fetch-unknown"


def _c_fetch_other_digest(H):
    r1, _ = _backup_with_a(H)
    return r1, H.fetch(2, 1, 1, H.digest(_msgs(H, 1, b"b"))), "fetch-unknown"


def _asking(H, digest):
    """Replica 1, having sent FETCH(1, digest): a reply binds only what it asked for."""
    r1 = H.replica(1)
    r1._fetch(1, digest, range(H.config.n), 0.0, [])
    return r1


def _c_fetch_reply_unsolicited(H):
    return H.replica(1), H.fetch_reply(2, 1, 1, _msgs(H)), "fetch-reply-unsolicited"


def _c_fetch_reply_not_asked(H):
    r1 = _asking(H, H.digest(_msgs(H, 1, b"b")))
    return r1, H.fetch_reply(2, 1, 1, _msgs(H)), "fetch-reply-unsolicited"


def _c_fetch_reply_wrong_digest(H):
    claimed = H.digest(_msgs(H, 1, b"b"))
    frame = H.fetch_reply(2, 1, 1, _msgs(H), digest=claimed)
    return _asking(H, claimed), frame, "fetch-reply-wrong-digest"


def _c_fetch_reply_uncertified(H):
    r1 = _asking(H, H.digest(_msgs(H)))
    return r1, H.fetch_reply(2, 1, 1, _msgs(H)), "fetch-reply-uncertified"


def _c_fetch_reply_forged_certificate(H):
    forged = Certificate(H.bitmap([0, 2, 3]), bytes(96))
    frame = H.fetch_reply(2, 1, 1, _msgs(H), cert=forged)
    return _asking(H, H.digest(_msgs(H))), frame, "fetch-reply-invalid-certificate"


def _c_request_bad_signature_at_primary(H):
    return H.replica(0), H.request(0, [ins(1, 1, b"x")], good=False), "bad-client-signature"


def _c_request_bad_signature_at_backup(H):
    return H.replica(1), H.request(0, [ins(1, 1, b"x")], good=False), "bad-client-signature"


def _c_request_unknown_client(H):
    cm = codec.pack_client_message(999, [ins(1, 1, b"x")]) + b"\3" * 64
    return H.replica(0), codec.encode_request(cm), "bad-client-signature"


BOTH, TS, MAC = ("ts", "mac"), ("ts",), ("mac",)
HOSTILE = {
    "garbage bytes": (BOTH, _c_garbage),
    "random bytes": (BOTH, _c_random),
    "bad magic": (BOTH, _c_bad_magic),
    "truncated frame": (BOTH, _c_truncated),
    "truncated header": (BOTH, _c_truncated_header),
    "trailing byte": (BOTH, _c_trailing),
    "wrong MAC": (BOTH, _c_wrong_mac),
    "MAC for another receiver": (BOTH, _c_other_pair_key),
    "MAC by another sender": (BOTH, _c_mac_by_other_replica),
    "own MAC reflected back": (BOTH, _c_reflected),
    "sender id >= n": (BOTH, _c_unknown_sender),
    "sender is the receiver": (BOTH, _c_self_sender),
    "PROPOSE without MAC": (BOTH, _c_propose_without_mac),
    "PROPOSE from a backup": (BOTH, _c_propose_not_primary),
    "PROPOSE for another view": (BOTH, _c_propose_other_view),
    "PROPOSE above high": (BOTH, _c_propose_above_high),
    "PROPOSE at low": (BOTH, _c_propose_at_low),
    "PROPOSE equivocation": (BOTH, _c_propose_equivocation),
    "PROPOSE over batch_size": (BOTH, _c_propose_too_large),
    "PROPOSE bad client signature": (BOTH, _c_propose_bad_client_signature),
    "PROPOSE unknown client": (BOTH, _c_propose_unknown_client),
    "SUPPORT wrong digest": (BOTH, _c_support_wrong_digest),
    "SUPPORT duplicate": (BOTH, _c_support_duplicate),
    "SUPPORT duplicate after PROPOSE": (MAC, _c_support_duplicate_after_propose),
    "SUPPORT after the certificate": (TS, _c_support_after_certificate),
    "SUPPORT to a backup": (TS, _c_support_to_a_backup),
    "SUPPORT for another view": (BOTH, _c_support_other_view),
    "CERTIFY too few signers": (TS, _c_certify_too_few),
    "CERTIFY forged signature": (TS, _c_certify_forged),
    "CERTIFY cert for another seq": (TS, _c_certify_other_seq),
    "CERTIFY cert for another digest": (TS, _c_certify_other_digest),
    "CERTIFY cert for another view": (TS, _c_certify_other_view),
    "CERTIFY for another view": (TS, _c_certify_frame_other_view),
    "CERTIFY outside the window": (TS, _c_certify_outside_window),
    "CERTIFY in MAC mode": (MAC, _c_certify_in_mac_mode),
    "CERTIFY without a MAC naming the primary": (TS, _c_certify_unauthenticated),
    "CERTIFY from a backup": (TS, _c_certify_from_a_backup),
    "INFORM sent to a replica": (BOTH, _c_inform_to_replica),
    "CHECKPOINT bad signature": (BOTH, _c_checkpoint_bad_signature),
    "CHECKPOINT signed by another": (BOTH, _c_checkpoint_signed_by_another),
    "CHECKPOINT without a MAC": (BOTH, _c_checkpoint_unauthenticated),
    "CHECKPOINT not a checkpoint seq": (BOTH, _c_checkpoint_not_a_checkpoint),
    "FETCH unknown slot": (BOTH, _c_fetch_unknown_slot),
    "FETCH other digest": (BOTH, _c_fetch_other_digest),
    "FETCH-REPLY unsolicited": (BOTH, _c_fetch_reply_unsolicited),
    "FETCH-REPLY for a digest not asked": (BOTH, _c_fetch_reply_not_asked),
    "FETCH-REPLY wrong digest": (BOTH, _c_fetch_reply_wrong_digest),
    "FETCH-REPLY uncertified": (TS, _c_fetch_reply_uncertified),
    "FETCH-REPLY forged certificate": (TS, _c_fetch_reply_forged_certificate),
    "REQUEST bad signature, primary": (BOTH, _c_request_bad_signature_at_primary),
    "REQUEST bad signature, backup": (BOTH, _c_request_bad_signature_at_backup),
    "REQUEST unknown client": (BOTH, _c_request_unknown_client),
}


def _slots(r):
    low, high = r.window.low, r.window.high
    out = []
    for k in range(low + 1, high + 1):
        s = r.window.payload(k)
        if s is not None and (s.digest is not None or s.cert_digest is not None):
            out.append((k, s.prop_view, s.digest, s.cert_digest, s.committed, s.executed,
                        None if s.shares is None else sorted(s.shares)))
    return out


# hostile inputs that are also evidence against the primary (§4.2): besides being dropped
# they make the receiver suspect it and start a view change
EVIDENCE = {"PROPOSE equivocation", "CERTIFY forged signature", "CERTIFY cert for another seq",
            "CERTIFY cert for another digest", "CERTIFY cert for another view"}


@pytest.mark.parametrize("mode,case", [(m, c) for c, (modes, _) in HOSTILE.items()
                                       for m in modes if c not in EVIDENCE])
def test_hostile_input_is_dropped_counted_and_changes_nothing(cluster, mode, case):
    H = cluster(mode, batch_size=4)
    r, frame, reason = HOSTILE[case][1](H)
    state, slots, drops = H.state_of(r), _slots(r), Counter(r.drops)
    out = r.on_message(frame, 5.0)
    assert out == []
    assert r.drops - drops == Counter({reason: 1})
    assert H.state_of(r) == state and _slots(r) == slots


@pytest.mark.parametrize("mode,case", [(m, c) for c, (modes, _) in HOSTILE.items()
                                       for m in modes if c in EVIDENCE])
def test_evidence_against_the_primary_is_dropped_and_starts_a_view_change(cluster, mode, case):
    H = cluster(mode, batch_size=4)
    r, frame, reason = HOSTILE[case][1](H)
    executed, digest, drops = r.k_exec, r.kv.state_digest(), Counter(r.drops)
    out = r.on_message(frame, 5.0)
    assert r.drops - drops == Counter({reason: 1})
    assert (r.k_exec, r.kv.state_digest()) == (executed, digest)
    assert r.status == "view-change" and r.vc_view == 0
    [vc] = [a for a in out if isinstance(a, Broadcast)]
    m = codec.decode(vc.data)
    assert m.kind == codec.VC_REQUEST and m.view == 0 and m.sender == r.id


def test_unknown_timer_is_counted(ts):
    r1 = ts.replica(1)
    assert r1.on_timeout("no-such-timer", 3, 1.0) == []
    assert r1.drops == Counter({"unknown-timer": 1})


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_mutated_frames_never_raise_nor_execute(cluster, mode):
    H = cluster(mode)
    rng = random.Random(1234)
    a = _msgs(H)
    h = H.digest(a)
    valid = [H.propose(1, 1, a), H.support(2, 1, 1, h), H.fetch(2, 1, 1, h),
             H.fetch_reply(2, 1, 1, a), H.checkpoint(2, 64, b"\1" * 32, b"\2" * 32),
             H.request(0, [ins(1, 1, b"x")]), _ts_certify(H, h)]
    for target in (H.replica(1), H.replica(0)):
        for frame in valid:
            for _ in range(60):
                f = bytearray(frame)
                choice = rng.randrange(3)
                if choice == 0:
                    for _ in range(rng.randrange(1, 4)):
                        f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
                elif choice == 1:
                    del f[rng.randrange(len(f)):]
                else:
                    f[rng.randrange(len(f))] = rng.randrange(256)
                dropped = sum(target.drops.values())
                out = target.on_message(bytes(f), 1.0)
                assert isinstance(out, list)
                assert not H.of(out, (Executed, Stable)), bytes(f)
                # input is never silently ignored: it acts, or it is counted (a CHECKPOINT
                # keeps its valid signature when only its unsigned header view changes,
                # and a repeat of a counted vote is simply no news)
                assert out or sum(target.drops.values()) == dropped + 1 \
                    or codec.peek(frame)[0] == codec.CHECKPOINT, bytes(f)
        assert target.k_exec == 0 and target.window.low == 0


# =============================================================================== CERTIFY first


def _fetches(H, out):
    return {s.to: codec.decode(s.data) for s in H.sends(out, codec.FETCH)}


@pytest.mark.parametrize("with_cert", [True, False])
def test_certify_before_propose_fetches_and_executes_on_fetch_reply(ts, with_cert):
    r1 = ts.replica(1)
    a = _msgs(ts)
    h = ts.digest(a)
    out = r1.on_message(ts.certify(1, h, signers=(0, 2, 3)), 0.0)
    fetches = _fetches(ts, out)
    assert sorted(fetches) == [0, 2, 3]                   # the primary and the signers
    for to, m in fetches.items():
        assert (m.seq, m.digest, m.sender) == (1, h, 1)
        assert ts.suite(replica(to)).macs.verify(replica(1), m.signed, m.auth)
    assert not ts.of(out, Executed)
    cert = ts.cert(0, 1, h, (0, 2, 3)) if with_cert else None
    out = r1.on_message(ts.fetch_reply(2, 1, 1, a, cert=cert), 0.1)
    [e] = ts.of(out, Executed)
    assert (e.seq, e.digest) == (1, h) and [r.client for r in ts.of(out, Reply)] == [0]
    assert r1.stats["fetch-adopted"] == 1 and not r1.drops


def test_fetch_reply_with_its_certificate_commits_a_slot_never_certified_here(ts):
    r1 = ts.replica(1)
    a = _msgs(ts)
    out = r1.on_message(ts.fetch_reply(3, 1, 1, a, cert=ts.cert(0, 1, ts.digest(a))), 0.0)
    assert [e.seq for e in ts.of(out, Executed)] == [1]


def test_certify_before_propose_executes_when_the_propose_arrives(ts):
    r1 = ts.replica(1)
    a = _msgs(ts)
    h = ts.digest(a)
    assert _fetches(ts, r1.on_message(ts.certify(1, h), 0.0))
    out = r1.on_message(ts.propose(1, 1, a), 0.1)
    assert [s.to for s in ts.sends(out, codec.SUPPORT)] == [0]
    assert [e.seq for e in ts.of(out, Executed)] == [1] and r1.k_exec == 1


def test_certify_for_another_digest_adopts_the_certified_batch(ts):
    r1 = ts.replica(1)
    a, b = _msgs(ts, 0, b"A"), [ts.message(1, [ins(1, 20, b"B")])]
    ha, hb = ts.digest(a), ts.digest(b)
    r1.on_message(ts.propose(1, 1, a), 0.0)              # supported A
    out = r1.on_message(ts.certify(1, hb, signers=(0, 2, 3)), 0.1)
    fetches = _fetches(ts, out)
    assert sorted(fetches) == [0, 2, 3] and {m.digest for m in fetches.values()} == {hb}
    assert not ts.of(out, Executed) and r1.stats["fetch-for-certificate"] == 1
    # the batch it supported is not what was certified, nor what it asked for: not
    # adopted (a reply binds only a digest that was asked for, §4.11)
    assert r1.on_message(ts.fetch_reply(0, 1, 1, a), 0.2) == []
    assert r1.drops["fetch-reply-unsolicited"] == 1
    out = r1.on_message(ts.fetch_reply(2, 1, 1, b), 0.3)
    [e] = ts.of(out, Executed)
    assert e.digest == hb and [r.client for r in ts.of(out, Reply)] == [1]
    assert r1.kv.get(20) == b"B" and r1.kv.get(10) is None


def test_late_equivocating_propose_cannot_replace_an_adopted_certified_batch(ts):
    r1 = ts.replica(1)
    a, b = _msgs(ts, 0, b"A"), [ts.message(1, [ins(1, 20, b"B")])]
    ha = ts.digest(a)
    r1.on_message(ts.certify(1, ha, signers=(0, 2, 3)), 0.0)
    assert ts.of(r1.on_message(ts.fetch_reply(2, 1, 1, a), 0.1), Executed)
    out = r1.on_message(ts.propose(1, 1, b), 0.2)        # the primary equivocates late
    assert out == [] and r1.drops == Counter({"propose-conflicts-held-batch": 1})
    # the replica still serves the certified batch it executed, with its certificate
    out = r1.on_message(ts.fetch(3, 1, 1, ha), 0.3)
    [rep] = ts.sends(out, codec.FETCH_REPLY)
    m = codec.decode(rep.data)
    assert m.digest == ha and [bytes(x) for x in m.batch.messages()] == a and m.bitmap


def test_mac_votes_for_a_fetched_batch_never_count_for_another_proposal(mac):
    """Equivocating primary: replicas 2 and 3 supported X, replica 1 fetched X and then gets
    PROPOSE(Y). Counting their votes for Y would let 1 execute Y while 2 and 3 execute X."""
    r1 = mac.replica(1)
    x = [mac.message(0, [ins(1, 10, b"X")])]
    y = [mac.message(1, [ins(1, 10, b"Y")])]
    assert r1.on_message(mac.support(2, 1, 1, mac.digest(x)), 0.0) == []
    assert r1.on_message(mac.support(3, 1, 1, mac.digest(x)), 0.0) == []
    out = r1.on_timeout("tick", 0, 1.0) + r1.on_timeout("tick", 0, 2.0)
    assert {m.digest for m in _fetches(mac, out).values()} == {b"\0" * 32}
    r1.on_message(mac.fetch_reply(2, 1, 1, x), 2.1)     # f+1 SUPPORTed X: bound
    out = r1.on_message(mac.propose(1, 1, y), 2.2)
    assert not mac.of(out, Executed) and not mac.sends(out, codec.SUPPORT)
    assert r1.drops == Counter({"propose-conflicts-held-batch": 1}) and r1.k_exec == 0
    # X itself still commits here on nf genuine votes for X (2, 3 and the primary's)
    out = r1.on_message(mac.support(0, 1, 1, mac.digest(x)), 2.4)
    assert [e.digest for e in mac.of(out, Executed)] == [mac.digest(x)]


def test_mac_fetched_batch_one_replica_vouches_for_binds_nothing(mac):
    """A FETCH for "whatever you hold" answered by one replica (maybe faulty) with a batch
    nobody else SUPPORTed binds nothing (§4.11): the primary's PROPOSE is still accepted."""
    r1 = mac.replica(1)
    x = [mac.message(0, [ins(1, 10, b"X")])]
    y = [mac.message(1, [ins(1, 10, b"Y")])]
    z = [mac.message(2, [ins(1, 11, b"Z")])]
    assert r1.on_message(mac.support(2, 1, 1, mac.digest(x)), 0.0) == []
    assert r1.max_seen == 0            # one replica's early vote: nothing owed yet (§4.12)
    r1.on_message(mac.propose(1, 2, z), 0.0)      # the primary's PROPOSE for 2: 1 is owed
    out = r1.on_timeout("tick", 0, 1.0) + r1.on_timeout("tick", 0, 2.0)
    fetches = {(m.seq, m.digest) for m in map(codec.decode, (s.data for s in
                                                          mac.sends(out, codec.FETCH)))}
    assert (1, b"\0" * 32) in fetches                       # "whatever you hold" at 1
    assert r1.on_message(mac.fetch_reply(2, 1, 1, x), 2.1) == []
    assert r1.drops == Counter({"fetch-reply-unsolicited": 1})
    out = r1.on_message(mac.propose(1, 1, y), 2.2)
    assert mac.sends(out, codec.SUPPORT) and not mac.of(out, Executed)
    assert r1.window.count(1, 0) == 2                    # its own and the PROPOSE; not 2's


# =============================================================================== exactly once


def test_reproposed_message_is_a_noop_answered_with_the_original_inform(both):
    H = both
    r1 = H.replica(1)
    m = H.message(0, [ins(1, 10, b"a")])
    [first] = H.of(H.commit(r1, 1, [m]), Reply)
    state = r1.kv.state_digest()
    fresh = H.message(1, [ins(1, 11, b"b")])
    out = H.commit(r1, 2, [m, fresh])
    [e] = H.of(out, Executed)
    assert e.seq == 2 and e.results.ops(0) == [(1, DUP, b"")]
    replies = H.of(out, Reply)
    assert replies[0] == Reply(0, first.data)            # byte for byte the original
    assert replies[1].client == 1 and codec.decode(replies[1].data).seq == 2
    assert r1.kv.get(10) == b"a" and r1.kv.state_digest() != state   # only `fresh` ran


def test_retried_request_after_execution_is_answered_from_the_reply_cache(ts):
    r0, msg, h, _ = primary_with_proposal(ts)
    r0.on_message(ts.support(1, 0, 1, h), 0.1)
    [first] = ts.of(r0.on_message(ts.support(2, 0, 1, h), 0.2), Reply)
    next_k = r0.next_k
    out = r0.on_message(codec.encode_request(msg), 1.0)
    assert out == [Reply(0, first.data)]
    assert r0.stats["reply-from-cache"] == 1 and r0.next_k == next_k and not r0.open_messages
    # a backup that executed it answers the retry from its own cache as well
    r1 = ts.replica(1)
    [own] = ts.of(ts.commit(r1, 1, [msg]), Reply)
    assert r1.on_message(codec.encode_request(msg), 1.0) == [Reply(0, own.data)]
    assert r1.stats["reply-from-cache"] == 1


def test_retried_request_at_a_backup_is_forwarded_to_the_primary(both):
    r1 = both.replica(1)
    frame = both.request(0, [ins(1, 1, b"x")])
    out = r1.on_message(frame, 0.0)
    assert out[0] == Send(0, frame)
    # T_req: if the primary does not execute it in time, the backup suspects it (§4.2)
    assert out[1:] == [SetTimer("progress", 0, r1.config.view_change_timeout_s)]
    assert r1.stats["request-forwarded"] == 1 and not r1.drops and len(r1.forwarded) == 1


def test_request_already_pending_at_the_primary_is_not_proposed_twice(cluster):
    H = cluster("ts", batch_size=2)
    r0 = H.replica(0)
    frame = H.request(0, [ins(1, 1, b"x")])
    assert H.of(r0.on_message(frame, 0.0), SetTimer)
    assert r0.on_message(frame, 0.1) == []
    assert r0.drops == Counter({"request-pending": 1}) and len(r0.open_messages) == 1


# =============================================================================== checkpoints


def _run_to(H, r, last, first=1):
    out = []
    for k in range(first, last + 1):
        out += H.commit(r, k, [H.message(0, [ins(k, k, b"v%d" % k)])], now=0.01 * k)
    return out


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_checkpoint_after_k_batches_with_a_valid_signature(cluster, mode):
    H = cluster(mode, checkpoint_period=2, window=4)
    r1 = H.replica(1)
    assert not H.sends(_run_to(H, r1, 1), codec.CHECKPOINT)
    [m] = H.to_all(_run_to(H, r1, 2, first=2), codec.CHECKPOINT, 1)
    assert (m.sender, m.seq) == (1, 2)
    assert (m.state_digest, m.chain_digest) == (r1.kv.state_digest(), r1.head)
    assert H.public.verifier.verify(
        replica(1), checkpoint_statement(2, m.state_digest, m.chain_digest), m.signature)


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_nf_matching_checkpoints_make_it_stable(cluster, mode):
    H = cluster(mode, checkpoint_period=2, window=4)
    r1 = H.replica(1)
    _run_to(H, r1, 2)
    state, chain = r1.kv.state_digest(), r1.head
    assert r1.on_message(H.checkpoint(2, 2, state, chain), 0.1) == []
    out = r1.on_message(H.checkpoint(3, 2, state, chain), 0.2)
    assert out == [Stable(2, state, chain)]
    assert (r1.window.low, r1.window.high, r1.kv.final_seq) == (2, 6, 2)
    assert r1.checkpoints.stable.seq == 2
    assert sorted(r for r, _ in r1.checkpoints.stable.signatures) == [1, 2, 3]
    # replica 0 is still collecting votes for 2: it gets ours again (once per timeout)
    [again] = r1.on_message(H.checkpoint(0, 2, state, chain), 0.3)
    assert again.to == 0 and codec.decode(again.data).kind == codec.CHECKPOINT
    assert codec.decode(again.data).seq == 2 and codec.decode(again.data).sender == 1
    assert r1.on_message(H.checkpoint(0, 2, state, chain), 0.31) == []
    assert r1.drops == Counter({"checkpoint-old": 2})
    # the window moved: k = 2 is now below it, k = 6 inside
    out = H.commit(r1, 3, [H.message(1, [ins(1, 30, b"c")])])
    assert [e.seq for e in H.of(out, Executed)] == [3]


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_next_window_messages_are_kept_and_replayed(cluster, mode):
    """A replica one checkpoint behind keeps the next window's PROPOSE / SUPPORT / CERTIFY
    (bounded: one per slot, kind and sender) and handles them once its window moves, so it
    commits and executes them without waiting for retransmissions (swarm seed 637)."""
    H = cluster(mode, checkpoint_period=2, window=4)
    r1 = H.replica(1)
    _run_to(H, r1, 4)
    assert (r1.k_exec, r1.window.low, r1.window.high) == (4, 0, 4)
    msgs = [H.message(2, [ins(2, 70, b"x")])]
    h = H.digest(msgs)
    vote = H.certify(5, h) if mode == "ts" else H.support(2, 1, 5, h)
    for frame in (H.propose(1, 5, msgs), vote, H.propose(1, 5, msgs)):
        assert r1.on_message(frame, 0.1) == []
    assert r1.stats["kept-ahead"] == 2 and r1.drops == Counter({"ahead-duplicate": 1})
    assert r1.k_exec == 4
    ck = codec.decode(H.mac(1, 2, r1.own_checkpoints[2]))     # kept unsealed, sealed per peer
    r1.on_message(H.checkpoint(2, 2, ck.state_digest, ck.chain_digest), 0.2)
    out = r1.on_message(H.checkpoint(3, 2, ck.state_digest, ck.chain_digest), 0.2)
    assert out[0] == Stable(2, ck.state_digest, ck.chain_digest)
    assert r1.window.high == 6 and r1.stats["replayed-ahead"] == 2
    [e] = H.of(out, Executed)
    assert (e.seq, e.digest) == (5, h) and r1.k_exec == 5
    assert not r1._ahead


def test_messages_two_windows_ahead_are_dropped(cluster):
    H = cluster("mac", checkpoint_period=2, window=4)
    r1 = H.replica(1)
    msgs = [H.message(2, [ins(2, 70, b"x")])]
    assert r1.on_message(H.support(2, 1, 9, H.digest(msgs)), 0.1) == []
    assert r1.drops == Counter({"support-outside-window": 1}) and not r1._ahead


def test_conflicting_checkpoint_vote_is_counted_not_double_counted(cluster):
    H = cluster("ts", checkpoint_period=2, window=4)
    r1 = H.replica(1)
    _run_to(H, r1, 2)
    good, bad = (r1.kv.state_digest(), r1.head), (b"\7" * 32, r1.head)
    assert r1.on_message(H.checkpoint(2, 2, *good), 0.1) == []
    assert r1.on_message(H.checkpoint(2, 2, *bad), 0.2) == []
    # one vote per replica and checkpoint: a second is dropped before its signature check
    assert r1.drops == Counter({"checkpoint-duplicate": 1})
    assert r1.on_message(H.checkpoint(2, 2, *good), 0.3) == []     # a repeat: no second vote
    # had replica 2's conflicting vote counted, these two would complete nf for `bad`
    assert r1.on_message(H.checkpoint(0, 2, *bad), 0.4) == []
    assert r1.on_message(H.checkpoint(3, 2, *bad), 0.5) == []
    assert r1.window.low == 0 and r1.checkpoints.stable.seq == 0


def test_lagging_replica_stabilizes_once_it_executes_the_checkpoint(cluster):
    H = cluster("ts", checkpoint_period=2, window=4)
    ahead, r1 = H.replica(2), H.replica(1)
    _run_to(H, ahead, 2)
    state, chain = ahead.kv.state_digest(), ahead.head
    for s in (0, 2):
        assert r1.on_message(H.checkpoint(s, 2, state, chain), 0.1) == []
    # the nf-th matching vote makes it stable above what r1 executed: it asks one of the
    # signers for the state (STATE-REQ, §5.5) ...
    out = r1.on_message(H.checkpoint(3, 2, state, chain), 0.1)
    [req] = H.of(out, Send)
    m = codec.decode(req.data)
    assert m.kind == codec.STATE_REQ and (m.from_seq, m.to_seq) == (0, 2) and req.to in (0, 2, 3)
    assert r1.window.low == 0 and r1.transfer is not None
    # ... but executing up to the checkpoint first also makes it stable, and ends the transfer
    out = _run_to(H, r1, 2)
    assert H.of(out, Stable) == [Stable(2, state, chain)] and r1.window.low == 2
    assert r1.transfer is None


def _drive_primary(H, r0, frames, ks, now):
    """Backups 1 and 2 SUPPORT every proposal in ``ks``; returns the primary's output."""
    out = []
    for k in ks:
        h = codec.decode(frames[k][1]).batch
        d = H.digest(h.messages())
        out += r0.on_message(H.support(1, 0, k, d), now)
        out += r0.on_message(H.support(2, 0, k, d), now)
    return out


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_primary_holds_batches_while_the_window_is_full(cluster, mode):
    H = cluster(mode, checkpoint_period=2, window=4, batch_size=1)
    r0 = H.replica(0)
    out = []
    for t in range(1, 6):
        out += r0.on_message(H.request(0, [ins(t, t, b"x")]), 0.0)
    frames = proposal_frames(H, out)
    assert sorted(frames) == [1, 2, 3, 4] and len(r0.ready) == 1
    assert r0.stats["window-full"] >= 1
    out = _drive_primary(H, r0, frames, [1, 2, 3, 4], 0.1)
    assert r0.k_exec == 4 and not proposal_frames(H, out)
    own = {codec.peek(b.data)[3]: codec.decode(b.data)
           for b in H.sends(out, codec.CHECKPOINT) if b.to == 1}
    assert sorted(own) == [2, 4]
    state, chain = own[2].state_digest, own[2].chain_digest
    assert r0.on_message(H.checkpoint(1, 2, state, chain, to=0), 0.2) == []
    out = r0.on_message(H.checkpoint(2, 2, state, chain, to=0), 0.3)
    assert H.of(out, Stable) == [Stable(2, state, chain)] and r0.window.low == 2
    assert sorted(proposal_frames(H, out)) == [5] and not r0.ready and r0.next_k == 6


def test_mac_primary_proposes_held_batches_when_its_own_checkpoint_completes(cluster):
    """Backups may execute (and checkpoint) before the primary in MAC mode: when the
    primary's own CHECKPOINT is the nf-th vote, the held batch must still go out."""
    H = cluster("mac", checkpoint_period=2, window=4, batch_size=1)
    r0 = H.replica(0)
    out = []
    for t in range(1, 6):
        out += r0.on_message(H.request(0, [ins(t, t, b"x")]), 0.0)
    frames = proposal_frames(H, out)
    assert len(r0.ready) == 1
    backups = [H.replica(1), H.replica(2)]
    checkpoints = []
    for b in backups:
        for k in (1, 2):
            b.on_message(frames[k][b.id], 0.0)
        for k in (1, 2):
            d = H.digest(codec.decode(frames[k][b.id]).batch.messages())
            other = 3 - b.id
            checkpoints += [s for s in H.sends(b.on_message(H.support(other, b.id, k, d),
                                                            0.0), codec.CHECKPOINT)
                            if s.to == 0]
    assert len(checkpoints) == 2
    for c in checkpoints:
        assert r0.on_message(c.data, 0.1) == []
    out = _drive_primary(H, r0, frames, [1, 2], 0.2)
    assert [s.seq for s in H.of(out, Stable)] == [2]
    assert sorted(proposal_frames(H, out)) == [5] and not r0.ready


# =============================================================================== retransmission


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_primary_tick_resends_propose_only_where_support_is_missing(cluster, mode):
    H = cluster(mode, batch_size=1)
    r0, msg, h, out = primary_with_proposal(H)
    originals = {s.to: s.data for s in H.sends(out, codec.PROPOSE)}
    [tick] = [t for t in H.of(out, SetTimer) if t.kind == "tick"]
    assert tick.at == H.config.retransmit_timeout_s
    r0.on_message(H.support(1, 0, 1, h), 0.1)
    assert not H.sends(r0.on_timeout("tick", 0, 0.3), codec.PROPOSE)     # too early
    out = r0.on_timeout("tick", 0, tick.at)
    resent = H.sends(out, codec.PROPOSE)
    assert sorted(s.to for s in resent) == [2, 3]
    assert all(s.data == originals[s.to] for s in resent)
    assert r0.stats["propose-retransmitted"] == 1
    assert [t.kind for t in H.of(out, SetTimer)] == ["tick"]


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_backup_resends_its_support_on_an_identical_propose(cluster, mode):
    H = cluster(mode)
    r1 = H.replica(1)
    frame = H.propose(1, 1, _msgs(H))
    first = {s.to: s.data for s in H.sends(r1.on_message(frame, 0.0), codec.SUPPORT)}
    out = r1.on_message(frame, 0.6)
    again = {s.to: s.data for s in H.sends(out, codec.SUPPORT)}
    assert again == first and sorted(again) == ([0] if mode == "ts" else [0, 2, 3])
    assert r1.stats["support-resent"] == 1 and not r1.drops and not H.of(out, Executed)


def test_stuck_backup_fetches_the_missing_slot_after_the_timeout(ts):
    r1 = ts.replica(1)
    b1, b2 = _msgs(ts, 0, b"one"), [ts.message(1, [ins(1, 20, b"two")])]
    h1, h2 = ts.digest(b1), ts.digest(b2)
    out = r1.on_message(ts.certify(2, h2), 0.0)
    assert {m.seq for m in _fetches(ts, out).values()} == {2}
    out = r1.on_message(ts.fetch_reply(2, 1, 2, b2), 0.05)
    assert not ts.of(out, Executed) and r1.k_exec == 0
    timeout = ts.config.retransmit_timeout_s
    assert not _fetches(ts, r1.on_timeout("tick", 0, 0.4 * timeout))
    fetched = {}
    for i in (1, 2):                                    # within two retransmit timeouts
        fetched.update(_fetches(ts, r1.on_timeout("tick", 0, i * timeout)))
    assert sorted(fetched) == [0, 2, 3]
    assert {(m.seq, m.digest) for m in fetched.values()} == {(1, b"\0" * 32)}
    assert r1.stats["fetch-for-gap"] >= 1
    out = r1.on_message(ts.fetch_reply(0, 1, 1, b1, cert=ts.cert(0, 1, h1)), 2.5 * timeout)
    assert [e.seq for e in ts.of(out, Executed)] == [1, 2]


# =============================================================================== client


def _client(H, **kw):
    kw.setdefault("retry_timeout_s", 1.0)
    kw.setdefault("retry_timeout_max_s", 4.0)
    kw.setdefault("deadline_s", 10.0)
    return H.client(0, **kw)


RESULTS = [(1, OK, b""), (2, OK, b"a")]


def test_client_submit_sends_one_signed_request_to_the_primary(ts):
    c = _client(ts)
    handle, out = c.submit([(10, codec.OP_INSERT, b"a"), (10, codec.OP_READ, b"")], 0.0)
    assert handle == 1
    send, timer = out
    assert isinstance(send, Send) and send.to == 0
    assert timer == SetTimer("retry", 1, 1.0)
    r0 = ts.replica(0)
    assert not ts.sends(r0.on_message(send.data, 0.0)) and not r0.drops   # accepted, queued


@pytest.mark.parametrize("order", [(1, 2, 3), (3, 0, 2), (0, 1, 2)])
def test_client_completes_with_nf_matching_informs(ts, order):
    c = _client(ts)
    handle, _ = c.submit([(10, codec.OP_INSERT, b"a"), (10, codec.OP_READ, b"")], 0.0)
    for r in order[:-1]:
        assert c.on_message(ts.inform(r, 0, 1, RESULTS), 0.1) == []
    out = c.on_message(ts.inform(order[-1], 0, 1, RESULTS), 0.25)
    assert out[0] == CancelTimer("retry", handle)
    done = out[1]
    assert isinstance(done, Completed)
    assert (done.handle, done.view, done.seq, done.index) == (handle, 0, 1, 0)
    assert done.results == tuple(RESULTS) and done.replicas == tuple(sorted(order))
    assert done.latency_s == pytest.approx(0.25)
    assert c.on_message(ts.inform(order[0], 0, 1, RESULTS), 0.3) == []
    assert c.drops == Counter({"inform-after-decision": 1})


def test_client_counts_each_replica_once_and_ignores_mismatches(ts):
    c = _client(ts)
    c.submit([(10, codec.OP_INSERT, b"a"), (10, codec.OP_READ, b"")], 0.0)
    other = [(1, OK, b""), (2, OK, b"zzz")]
    assert c.on_message(ts.inform(1, 0, 1, RESULTS), 0.1) == []
    assert c.on_message(ts.inform(1, 0, 1, RESULTS), 0.1) == []      # same replica again
    assert c.drops["duplicate-inform"] == 1
    assert c.on_message(ts.inform(2, 0, 1, other), 0.1) == []         # a different result
    assert c.on_message(ts.inform(3, 0, 1, RESULTS, v=1), 0.1) == []  # another view
    assert c.on_message(ts.inform(0, 0, 2, RESULTS), 0.1) == []       # another position
    assert c.pending and not c.stats["completed"]      # 1 and 2 never agreed: no proof yet
    # replica 2's INFORM now matches replica 1's: still one short of nf
    assert c.on_message(ts.inform(2, 0, 1, RESULTS), 0.2) == []
    out = c.on_message(ts.inform(3, 0, 1, RESULTS), 0.3)               # replaces its view-1 one
    [done] = [a for a in out if isinstance(a, Completed)]
    assert done.replicas == (1, 2, 3) and done.results == tuple(RESULTS)


def test_client_drops_bad_informs(ts):
    c = _client(ts)
    c.submit([(10, codec.OP_INSERT, b"a"), (10, codec.OP_READ, b"")], 0.0)
    frame = codec.encode_inform(1, 0, 1, codec.inform_body(0, [(0, RESULTS)]))
    other_client = codec.encode_inform(1, 0, 1, codec.inform_body(1, [(0, RESULTS)]))
    cases = {
        "bad-mac": codec.seal(frame, b"\0" * 32),
        "malformed": frame[:-3],
        "unknown-sender": codec.seal(codec.encode_inform(4, 0, 1, codec.inform_body(
            0, [(0, RESULTS)])), b"\0" * 32),
        "not-for-us": codec.seal(other_client, ts.suite(replica(1)).macs.mac(
            client(0), other_client)),
        "wrong-request-ids": ts.inform(1, 0, 1, [(1, OK, b"")]),        # one result of two
        "unexpected-kind": ts.propose(1, 1, _msgs(ts)),
    }
    # a MAC made for another client (replica 1 -> client 1) does not verify for client 0
    wrong_key = codec.seal(frame, ts.suite(replica(1)).macs.mac(client(1), frame))
    for reason, data in cases.items():
        assert c.on_message(data, 0.1) == [], reason
        assert c.drops[reason] == 1, reason
    assert c.on_message(wrong_key, 0.1) == [] and c.drops["bad-mac"] == 2
    for r in (1, 2):
        c.on_message(ts.inform(r, 0, 1, RESULTS), 0.2)
    assert c.pending            # nothing above counted: two good INFORMs are still nf - 1


def test_client_never_completes_on_informs_for_other_request_ids(ts):
    c = _client(ts)
    handle, _ = c.submit([(10, codec.OP_INSERT, b"a"), (10, codec.OP_READ, b"")], 0.0)
    wrong = [(1, OK, b""), (3, OK, b"")]              # same first id and count, other ids
    for r in (0, 1, 2):
        assert c.on_message(ts.inform(r, 0, 1, wrong), 0.1) == []
    assert c.drops["wrong-request-ids"] == 1 and handle in c.pending


def test_client_retries_to_all_replicas_with_doubling_backoff_then_gives_up(ts):
    c = _client(ts, retry_timeout_s=1.0, retry_timeout_max_s=4.0, deadline_s=10.0)
    handle, out = c.submit([(10, codec.OP_INSERT, b"a")], 0.0)
    frame = out[0].data
    at, times = out[1].at, []
    while True:
        out = c.on_timeout("retry", handle, at)
        if any(isinstance(a, OutcomeUnknown) for a in out):
            break
        sends = [a for a in out if isinstance(a, Send)]
        assert sorted(s.to for s in sends) == [0, 1, 2, 3]
        # the same message, as retry number len(times) + 1, sealed for each replica
        for s in sends:
            m = codec.decode(s.data)
            assert m.signed[32:] == frame[32:]
            assert m.auth_kind == codec.AUTH_MAC and m.seq == len(times) + 1
            assert ts.suite(replica(s.to)).macs.verify(client(0), m.signed, m.auth)
        [timer] = [a for a in out if isinstance(a, SetTimer)]
        times.append(timer.at)
        at = timer.at
    assert times == [3.0, 7.0, 10.0]              # +2, +4 (capped at 4), then the deadline
    assert out == [OutcomeUnknown(handle, out[0].reason)] and at == 10.0
    assert not c.pending and c.stats["outcome-unknown"] == 1
    assert c.on_timeout("retry", handle, 11.0) == []


def test_client_deadline_shorter_than_the_retry_timeout_is_kept(ts):
    c = _client(ts, retry_timeout_s=2.0, retry_timeout_max_s=4.0, deadline_s=0.5)
    handle, out = c.submit([(10, codec.OP_INSERT, b"a")], 0.0)
    [timer] = [a for a in out if isinstance(a, SetTimer)]
    assert timer.at <= 0.5
    assert isinstance(c.on_timeout("retry", handle, timer.at)[0], OutcomeUnknown)


# =============================================================================== end to end


def _pump(H, replicas, c, out, now=0.0, limit=10_000):
    """Carry out every Send/Broadcast/Reply until quiet; returns the client's outputs."""
    queue = deque((None, a) for a in out)               # (sending replica or None, action)
    results = []
    while queue and limit:
        limit -= 1
        src, a = queue.popleft()
        if isinstance(a, Send):
            queue.extend((a.to, x) for x in replicas[a.to].on_message(a.data, now))
        elif isinstance(a, Broadcast):
            for r in replicas:
                if r.id != src:
                    queue.extend((r.id, x) for x in r.on_message(a.data, now))
        elif isinstance(a, Reply):
            got = c.on_message(a.data, now)
            results += got
            queue.extend((None, x) for x in got)
    assert limit
    return results


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_client_and_replicas_end_to_end(cluster, mode):
    H = cluster(mode, batch_size=2)
    replicas = [H.replica(i) for i in range(H.n)]
    c = _client(H)
    handle, out = c.submit([(10, codec.OP_INSERT, b"a"), (10, codec.OP_READ, b"")], 0.0)
    done = [a for a in _pump(H, replicas, c, out) if isinstance(a, Completed)]
    assert len(done) == 1 and done[0].handle == handle
    assert done[0].results == ((1, OK, b""), (2, OK, b"a")) and done[0].seq == 1
    assert len(done[0].replicas) >= H.config.nf
    assert all(r.k_exec == 1 for r in replicas)
    assert set().union(*(r.drops for r in replicas)) <= {"support-late"}


def test_a_retry_of_a_stable_position_gets_a_final_inform_that_f_plus_1_prove(cluster):
    """A position at or below the stable checkpoint is final: retries are answered with
    FINAL INFORMs under the current view, and f+1 matching ones complete the client."""
    H = cluster("ts", checkpoint_period=2, window=4)
    c0 = H.client(0)
    handle, actions = c0.submit([(1, codec.OP_INSERT, b"x")], 0.0)
    request = actions[0].data
    replicas = [H.replica(i) for i in (1, 2, 3)]
    msg = bytes(codec.decode(request).client_message)
    other = H.message(1, [ins(1, 9, b"y")])
    for r in replicas:                                  # backups execute 1 and 2 ...
        H.commit(r, 1, [msg])
        H.commit(r, 2, [other])
    for r in replicas:                                  # ... and checkpoint 2 is stable
        state, chain = r.kv.state_digest(), r.head
        for s in (1, 2, 3):
            if s != r.id:
                r.on_message(H.checkpoint(s, 2, state, chain, to=r.id), 0.5)
        assert r.checkpoints.stable.seq == 2
    done = []
    for r in replicas[:2]:                              # f + 1 = 2 answers to the retry
        [reply] = r.on_message(request, 1.0)
        inform = codec.decode(reply.data)
        assert inform.final and inform.seq == 1
        done += [a for a in c0.on_message(reply.data, 1.0) if isinstance(a, Completed)]
    [proof] = done
    assert proof.final and proof.seq == 1 and proof.replicas == (1, 2)
    assert proof.results == ((1, codec.ST_OK, b""),)


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_fetch_below_the_stable_checkpoint_is_answered_with_our_checkpoint_vote(cluster, mode):
    """A peer fetching a slot below our stable checkpoint is behind it (e.g. restarted, its
    CHECKPOINT votes lost): our vote for the checkpoint helps it to nf and a state transfer;
    once per retransmission timeout."""
    H = cluster(mode, checkpoint_period=2, window=4)
    r1 = H.replica(1)
    _run_to(H, r1, 2)
    state, chain = r1.kv.state_digest(), r1.head
    r1.on_message(H.checkpoint(2, 2, state, chain), 0.1)
    r1.on_message(H.checkpoint(3, 2, state, chain), 0.1)
    assert r1.window.low == 2
    [vote] = r1.on_message(H.fetch(0, 1, 1, b"\0" * 32), 1.0)
    m = codec.decode(vote.data)
    assert vote.to == 0 and (m.kind, m.sender, m.seq) == (codec.CHECKPOINT, 1, 2)
    assert r1.on_message(H.fetch(0, 1, 2, b"\0" * 32), 1.01) == []
    assert r1.drops["fetch-outside-window"] == 2
