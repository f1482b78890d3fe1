"""The pure rules of the view change (PROTOCOL.md §4.3, §4.6, §3.4): VC-REQUEST checks and
the new-history computations every replica must agree on."""
import pytest

from poe._core import codec
from poe._core.codec import CheckpointProof, VcEntry
from poe.crypto.base import replica
from poe.crypto.fake import FakeCrypto
from poe.crypto.statements import checkpoint_statement, support_statement, vc_request_statement
from poe.protocol.poe.view_change import (
    NOOP_DIGEST, check_vc_request, new_history_mac, new_history_ts,
)

N, NF, F = 4, 3, 1
GENESIS = b"\x07" * 32
CRYPTO = FakeCrypto(N, 1, 5, purpose="test")
SUITES = [CRYPTO.suite(replica(i)) for i in range(N)]
OBSERVER = CRYPTO.suite(None)


def digest(tag):
    return bytes([tag]) * 32


def cert(view, seq, d, signers=(0, 1, 2)):
    statement = support_statement(view, seq, d)
    shares = {i: SUITES[i].threshold_signer.share_sign(statement) for i in signers}
    return OBSERVER.threshold.combine(shares, statement)


def cert_entry(seq, view, d):
    c = cert(view, seq, d)
    return VcEntry(codec.ENTRY_CERT, seq, view, d, c.bitmap, c.signature)


def checkpoint(seq, state=b"\x01" * 32, chain=b"\x02" * 32, signers=(0, 1, 2)):
    if seq == 0:
        return CheckpointProof(0, b"\0" * 32, GENESIS, ())
    statement = checkpoint_statement(seq, state, chain)
    return CheckpointProof(seq, state, chain,
                           [(i, SUITES[i].signer.sign(statement)) for i in signers])


def vc(sender, view, entries=(), proof=None, signer=None):
    frame = codec.encode_vc_request(sender, view, proof or checkpoint(0), list(entries))
    sig = SUITES[sender if signer is None else signer].signer.sign(vc_request_statement(frame))
    return codec.decode(codec.seal(frame, sig))


def check(m, ts=True, window=16):
    return check_vc_request(m, n=N, nf=NF, window=window, ts=ts, crypto=OBSERVER,
                            genesis=GENESIS)


# ------------------------------------------------------------------ VC-REQUEST checks


def test_a_valid_vc_request_passes():
    assert check(vc(1, 3, [cert_entry(1, 2, digest(1)), cert_entry(2, 3, digest(2))])) is None
    assert check(vc(2, 0, proof=checkpoint(4), entries=[cert_entry(5, 0, digest(5))])) is None


@pytest.mark.parametrize("make, reason", [
    (lambda: vc(1, 3, signer=2), "vc-request-bad-signature"),
    (lambda: vc(1, 3, proof=checkpoint(4, signers=(0, 1))), "vc-request-bad-checkpoint"),
    (lambda: vc(1, 3, proof=CheckpointProof(0, b"\0" * 32, b"\1" * 32, ())),
     "vc-request-bad-checkpoint"),
    (lambda: vc(1, 3, [cert_entry(1, 4, digest(1))]), "vc-request-entry-out-of-range"),
    (lambda: vc(1, 3, [cert_entry(17, 1, digest(1))]), "vc-request-entry-out-of-range"),
    (lambda: vc(1, 3, proof=checkpoint(4), entries=[cert_entry(4, 1, digest(1))]),
     "vc-request-entry-out-of-range"),
    (lambda: vc(1, 3, [cert_entry(1, 1, digest(1)), cert_entry(1, 2, digest(2))]),
     "vc-request-duplicate-entry"),
    (lambda: vc(1, 3, [VcEntry(codec.ENTRY_PREPARED, 1, 1, digest(1))]),
     "vc-request-wrong-entry-type"),
    (lambda: vc(1, 3, [VcEntry(codec.ENTRY_CERT, 1, 1, digest(1), *(lambda c: (
        c.bitmap, c.signature))(cert(1, 1, digest(2))))]), "vc-request-bad-certificate"),
    (lambda: vc(1, 3, [VcEntry(codec.ENTRY_CERT, 1, 1, digest(1), b"\x03",
                               cert(1, 1, digest(1)).signature)]),
     "vc-request-bad-certificate"),
])
def test_invalid_vc_requests_are_named(make, reason):
    assert check(make()) == reason


def test_mac_mode_entries_are_claims_without_certificates():
    good = vc(1, 2, [VcEntry(codec.ENTRY_PREPARED, 1, 1, digest(1)),
                     VcEntry(codec.ENTRY_SUPPORTED, 1, 1, digest(1))])
    assert check(good, ts=False) is None
    assert check(vc(1, 2, [cert_entry(1, 1, digest(1))]), ts=False) == \
        "vc-request-wrong-entry-type"


# ------------------------------------------------------------------ TS new history


def test_ts_history_takes_the_highest_view_per_position_and_cuts_at_the_first_gap():
    a = vc(0, 5, [cert_entry(1, 1, digest(1)), cert_entry(2, 1, digest(2)),
                  cert_entry(4, 1, digest(4))])
    b = vc(1, 5, [cert_entry(1, 3, digest(9)), cert_entry(2, 1, digest(2))])
    c = vc(2, 5, [])
    h = new_history_ts([a, b, c])
    assert h.base.seq == 0 and h.k_max == 2              # 3 is a gap: 4 is dropped
    assert [(k, e.digest, e.view) for k, e in sorted(h.entries.items())] == \
        [(1, digest(9), 3), (2, digest(2), 1)]


def test_ts_history_starts_at_the_highest_checkpoint():
    a = vc(0, 5, [cert_entry(1, 1, digest(1))])
    b = vc(1, 5, [cert_entry(5, 2, digest(5))], proof=checkpoint(4))
    h = new_history_ts([a, b, vc(2, 5)])
    assert h.base.seq == 4 and h.k_max == 5 and list(h.entries) == [5]


def test_ts_history_is_the_same_whatever_the_order():
    reqs = [vc(0, 5, [cert_entry(1, 2, digest(1))]), vc(1, 5, [cert_entry(1, 4, digest(3))]),
            vc(2, 5, [cert_entry(1, 4, digest(3)), cert_entry(2, 4, digest(4))])]
    first = new_history_ts(reqs)
    assert new_history_ts(list(reversed(reqs))) == first
    assert first.k_max == 2 and first.entries[1].digest == digest(3)


# ------------------------------------------------------------------ MAC new history


def P(k, v, d):
    return VcEntry(codec.ENTRY_PREPARED, k, v, d)


def Q(k, v, d):
    return VcEntry(codec.ENTRY_SUPPORTED, k, v, d)


def test_mac_history_keeps_what_was_view_committed():
    reqs = [vc(0, 2, [P(1, 1, digest(1)), Q(1, 1, digest(1))]),
            vc(1, 2, [Q(1, 1, digest(1))]), vc(2, 2, [])]
    h = new_history_mac(reqs, F, NF)
    assert h.k_max == 1 and h.entries[1].digest == digest(1)


def test_mac_history_fills_undecided_gaps_with_no_ops_and_cuts_trailing_ones():
    reqs = [vc(0, 2, [Q(1, 1, digest(1)), P(2, 1, digest(2)), Q(2, 1, digest(2)), Q(3, 1,
                                                                              digest(3))]),
            vc(1, 2, [Q(2, 1, digest(2))]), vc(2, 2, [])]
    h = new_history_mac(reqs, F, NF)
    assert h.k_max == 2
    assert h.entries[1].digest == NOOP_DIGEST and h.entries[2].digest == digest(2)


def test_mac_history_keeps_a_view_committed_no_op_at_its_end():
    # position 2 became a no-op in view 1 and was view-committed (maybe executed; under
    # PBFT committed) there; 3 was only supported: 3 is cut, 2 stays (PBFT swarm seed 136)
    noop = NOOP_DIGEST
    reqs = [vc(i, 3, [P(1, 1, digest(1)), Q(1, 1, digest(1)), P(2, 1, noop), Q(2, 1, noop),
                      Q(3, 1, digest(3))]) for i in range(3)]
    h = new_history_mac(reqs, F, NF)
    assert h.k_max == 2 and h.entries[2].digest == noop and h.entries[2].view == 1
    assert 3 not in h.entries


def test_mac_history_waits_when_a_position_cannot_be_decided():
    # two replicas claim a prepared digest nobody else supported: neither A1/A2 nor no-op
    reqs = [vc(0, 2, [P(1, 2, digest(1))]), vc(1, 2, [P(1, 2, digest(2))]), vc(2, 2, [])]
    assert new_history_mac(reqs, F, NF) is None
