"""A replica that missed a view change (it was down, or restarted from a store that says an
older view) learns the current view from its primary: a signed VC-REQUEST for an older view
is answered with the primary's NV-PROPOSE, which the replica checks and installs like any
other (poe/protocol/poe/view_change.py, ``_serve_new_view``)."""
from __future__ import annotations

from poe._core import codec
from poe.protocol.actions import Broadcast, Send
from poe.protocol.poe.view_change import NORMAL, VIEW_CHANGE


def _vc_frame(out) -> bytes:
    frames = [a.data for a in out if isinstance(a, Broadcast)
              and codec.peek(a.data)[0] == codec.VC_REQUEST]
    assert len(frames) == 1
    return frames[0]


def _view_one_without_replica_0(H):
    """Replicas 1, 2, 3 leave view 0 and install view 1 (primary 1); replica 0 misses it."""
    r = [H.replica(i) for i in range(4)]
    frames = {}
    for i in (1, 2, 3):
        out: list = []
        r[i].start_view_change(0, 0.0, out)
        frames[i] = _vc_frame(out)
    out = r[1].on_message(frames[2], 0.1) + r[1].on_message(frames[3], 0.1)
    nv = {a.to: a.data for a in out if isinstance(a, Send)
          and codec.peek(a.data)[0] == codec.NV_PROPOSE}
    assert set(nv) == {0, 2, 3} and r[1].view == 1 and r[1].status == NORMAL
    for i in (2, 3):
        r[i].on_message(nv[i], 0.2)
        assert (r[i].view, r[i].status) == (1, NORMAL)
    return r


def test_the_primary_answers_an_old_vc_request_with_its_new_view(both):
    H = both
    r = _view_one_without_replica_0(H)
    late = r[0]
    out: list = []
    late.start_view_change(0, 1.0, out)          # e.g. its progress timer, or its store
    frame = _vc_frame(out)
    assert late.status == VIEW_CHANGE
    for i in (2, 3):                              # backups of view 1 only drop it
        assert r[i].on_message(frame, 1.1) == []
        assert r[i].drops["vc-request-old"] == 1
    answer = r[1].on_message(frame, 1.1)
    assert [(a.to, codec.peek(a.data)[0]) for a in answer] == [(0, codec.NV_PROPOSE)]
    assert r[1].stats["nv-propose-served"] == 1
    late.on_message(answer[0].data, 1.2)
    assert (late.view, late.status) == (1, NORMAL)
    # at most once per retransmission timeout per replica
    timeout = H.config.retransmit_timeout_s
    assert r[1].on_message(frame, 1.1 + timeout / 2) == []
    assert len(r[1].on_message(frame, 1.1 + timeout)) == 1


def test_a_forged_old_vc_request_is_not_answered(both):
    H = both
    r = _view_one_without_replica_0(H)
    out: list = []
    H.replica(0).start_view_change(0, 1.0, out)
    frame = bytearray(_vc_frame(out))
    frame[-1] ^= 1                                # not replica 0's signature
    assert r[1].on_message(bytes(frame), 1.1) == []
    assert r[1].stats["nv-propose-served"] == 0


def test_an_old_primary_still_proposing_in_its_view_is_sent_the_new_view(both):
    """Replica 0 (primary of view 0) missed view 1 and keeps proposing in view 0; the primary
    of view 1 answers its PROPOSE with the NV-PROPOSE, which replica 0 installs."""
    H = both
    r = _view_one_without_replica_0(H)
    old = r[0]
    old.on_message(H.request(0, [(1, 10, codec.OP_INSERT, b"x")]), 1.0)
    out = old.on_timeout("batch", 0, 1.01)
    proposals = {a.to: a.data for a in out if isinstance(a, Send)
                 and codec.peek(a.data)[0] == codec.PROPOSE}
    assert set(proposals) == {1, 2, 3}
    assert r[2].on_message(proposals[2], 1.02) == []          # a backup of view 1: dropped
    answer = r[1].on_message(proposals[1], 1.02)
    assert [(a.to, codec.peek(a.data)[0]) for a in answer] == [(0, codec.NV_PROPOSE)]
    assert r[1].drops["propose-wrong-view"] == 1
    old.on_message(answer[0].data, 1.03)
    assert (old.view, old.status, old.is_primary) == (1, NORMAL, False)
