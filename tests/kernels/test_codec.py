"""Codec: round trips of every kind, and hostile bytes only ever raise WireError."""
import struct

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from poe._core import codec as c
from poe._core.codec import WireError

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
digest = st.binary(min_size=32, max_size=32)
sig64 = st.binary(min_size=64, max_size=64)


@st.composite
def ops(draw, max_ops=6):
    n = draw(st.integers(1, max_ops))
    ts = sorted(draw(st.sets(u64, min_size=n, max_size=n)))
    out = []
    for t in ts:
        code = draw(st.sampled_from([c.OP_READ, c.OP_UPDATE, c.OP_INSERT, c.OP_RMW]))
        value = b"" if code == c.OP_READ else draw(st.binary(max_size=40))
        out.append((t, draw(u64), code, value))
    return out


@st.composite
def client_messages(draw, client=None):
    cid = draw(u32) if client is None else client
    return c.pack_client_message(cid, draw(ops())) + draw(sig64)


batches = st.lists(client_messages(), min_size=1, max_size=5)
auths = st.sampled_from([c.AUTH_NONE, c.AUTH_MAC, c.AUTH_SIG])


def sealed(frame, auth):
    tag = {c.AUTH_NONE: b"", c.AUTH_MAC: b"M" * 32, c.AUTH_SIG: b"S" * 64}[auth]
    return c.seal(frame, tag) if tag else frame


def roundtrip(frame):
    m = c.decode(frame)
    assert bytes(m.frame) == frame
    return m


@st.composite
def vc_frames(draw):
    proof = c.CheckpointProof(draw(u64), draw(digest), draw(digest),
                              draw(st.lists(st.tuples(u32, sig64), max_size=4)))
    entries = [c.VcEntry(draw(st.sampled_from([0, 1, 2])), draw(u64), draw(u64), draw(digest),
                         draw(st.binary(max_size=8)), draw(st.binary(max_size=96)))
               for _ in range(draw(st.integers(0, 4)))]
    sender, view = draw(u32), draw(u64)
    frame = c.seal(c.encode_vc_request(sender, view, proof, entries), b"S" * 64)
    return frame, sender, view, proof, entries


# ---------------------------------------------------------------- round trips, every kind


@given(client_messages(), u64)
def test_request_roundtrip(cm, view):
    m = roundtrip(c.encode_request(cm, view))
    assert m.kind == c.REQUEST and m.view == view
    assert bytes(m.client_message) == cm
    assert m.client == struct.unpack_from("<I", cm)[0]


@given(u32, u64, u64, batches, auths)
def test_propose_roundtrip(sender, view, seq, cms, auth):
    m = roundtrip(sealed(c.encode_propose(sender, view, seq, cms, auth), auth))
    assert (m.kind, m.sender, m.view, m.seq, m.auth_kind) == (c.PROPOSE, sender, view, seq, auth)
    assert [bytes(x) for x in m.batch.messages()] == cms
    assert m.batch.nops == sum(len(c.Batch.from_messages([x]).ops(0)) for x in cms)
    for i, cm in enumerate(cms):
        assert bytes(m.batch.signature(i)) == cm[-64:]
        assert bytes(m.batch.signed_part(i)) == cm[:-64]
    assert c.Batch.from_body(m.batch.body()) == m.batch


@given(u32, u64, u64, digest, st.sampled_from([b"", b"x" * 96]))
def test_support_roundtrip(sender, view, seq, d, share):
    m = roundtrip(sealed(c.encode_support(sender, view, seq, d, share), c.AUTH_MAC))
    assert (m.digest, m.share, m.seq, m.view) == (d, share, seq, view)
    assert bytes(m.auth) == b"M" * 32
    assert bytes(m.signed) == bytes(m.frame)[:-32]


@given(u32, u64, u64, digest, st.binary(max_size=128), st.binary(max_size=128))
def test_certify_roundtrip(sender, view, seq, d, bitmap, sigma):
    m = roundtrip(c.encode_certify(sender, view, seq, d, bitmap, sigma))
    assert (m.digest, m.bitmap, m.signature) == (d, bitmap, sigma)


@st.composite
def inform_entries(draw, max_entries=4):
    """[(idx, results)]: strictly increasing idx of a batch, ids increasing per entry."""
    idxs = sorted(draw(st.sets(st.integers(0, c.MAX_MESSAGES_PER_BATCH - 1), min_size=1,
                               max_size=max_entries)))
    out = []
    for idx in idxs:
        n = draw(st.integers(1, 5))
        ts = sorted(draw(st.sets(u64, min_size=n, max_size=n)))
        out.append((idx, tuple((t, draw(st.integers(0, 4)), draw(st.binary(max_size=50)))
                               for t in ts)))
    return out


@given(u32, u64, u64, u32, inform_entries())
def test_inform_roundtrip(sender, view, seq, client, entries):
    body = c.inform_body(client, entries)
    m = roundtrip(sealed(c.encode_inform(sender, view, seq, body), c.AUTH_MAC))
    assert (m.client, len(m), m.entries()) == (client, len(entries), entries)
    assert m.body_bytes() == body
    for j, (idx, results) in enumerate(entries):
        assert (m.index(j), m.request_id(j), m.n_results(j)) == (idx, results[0][0], len(results))
        assert m.request_ids(j) == tuple(r[0] for r in results)
        assert m.votes()[j] == (results[0][0], len(results), m.entry(j))


@given(u32, u64, digest, digest, sig64)
def test_checkpoint_roundtrip(sender, seq, ds, dc, s):
    m = roundtrip(c.encode_checkpoint(sender, seq, ds, dc, s))
    assert (m.seq, m.state_digest, m.chain_digest, m.signature) == (seq, ds, dc, s)


@given(vc_frames())
def test_vc_request_roundtrip(vc):
    frame, sender, view, proof, entries = vc
    m = roundtrip(frame)
    assert (m.sender, m.view) == (sender, view)
    assert m.checkpoint == proof
    assert list(m.entries) == entries


@given(u32, u64, st.lists(vc_frames(), min_size=1, max_size=3))
def test_nv_propose_roundtrip(sender, view, vcs):
    frames = [v[0] for v in vcs]
    m = roundtrip(sealed(c.encode_nv_propose(sender, view, frames), c.AUTH_MAC))
    assert [bytes(r.frame) for r in m.requests] == frames
    assert all(r.kind == c.VC_REQUEST for r in m.requests)


@given(u32, u64, digest, batches)
def test_fetch_and_reply_roundtrip(sender, seq, d, cms):
    f = roundtrip(sealed(c.encode_fetch(sender, seq, d), c.AUTH_MAC))
    assert (f.seq, f.digest) == (seq, d)
    r = roundtrip(sealed(c.encode_fetch_reply(sender, seq, d, cms), c.AUTH_MAC))
    assert r.digest == d and [bytes(x) for x in r.batch.messages()] == cms
    assert (r.cert_view, r.bitmap, r.signature) == (0, b"", b"")
    r = roundtrip(sealed(c.encode_fetch_reply(sender, seq, d, cms, 7, b"\x0f", b"s" * 96),
                         c.AUTH_MAC))
    assert (r.cert_view, r.bitmap, r.signature) == (7, b"\x0f", b"s" * 96)


@given(u32, u64, u64, st.integers(1, 7))
def test_state_req_roundtrip(sender, a, b, want):
    lo, hi = min(a, b), max(a, b)
    m = roundtrip(sealed(c.encode_state_req(sender, lo, hi, want), c.AUTH_MAC))
    assert (m.from_seq, m.to_seq, m.want) == (lo, hi, want)


@given(u32, st.lists(st.tuples(u64, digest, u64), max_size=4),
       st.lists(st.tuples(u64, batches), max_size=3), st.one_of(st.none(), st.binary(max_size=64)))
def test_state_reply_roundtrip(sender, headers, bl, snapshot):
    m = roundtrip(sealed(c.encode_state_reply(sender, 1, 9, headers, bl, snapshot), c.AUTH_MAC))
    assert list(m.headers) == headers
    assert [(k, [bytes(x) for x in b.messages()]) for k, b in m.batches] == bl
    assert (None if m.snapshot is None else bytes(m.snapshot)) == (snapshot or None)


# ---------------------------------------------------------------- zero copy and buffers


def _propose_frame(n=3):
    cms = [c.pack_client_message(i, [(1, i, c.OP_UPDATE, b"v" * 8)]) + b"s" * 64
           for i in range(n)]
    return c.seal(c.encode_propose(0, 1, 2, cms), b"m" * 32), cms


def test_decode_of_bytes_does_not_copy_requests():
    frame, cms = _propose_frame()
    m = c.decode(frame)
    view = m.batch.message(1)
    assert isinstance(view, memoryview) and view.obj is frame


def test_read_only_memoryview_is_borrowed_and_bytearray_is_copied():
    frame, cms = _propose_frame()
    mv = memoryview(frame)[:]
    assert c.decode(mv).batch.message(0).obj is not None
    mutable = bytearray(frame)
    m = c.decode(mutable)
    mutable[40:60] = b"\xff" * 20          # cannot change what was validated
    assert [bytes(x) for x in m.batch.messages()] == cms


def test_decode_rejects_non_buffers():
    for bad in (None, 12, "text", [1, 2]):
        with pytest.raises(WireError):
            c.decode(bad)


# ---------------------------------------------------------------- hostile input


def samples():
    frame, _ = _propose_frame(2)
    cm = c.pack_client_message(5, [(1, 2, c.OP_RMW, b"abc")]) + b"z" * 64
    proof = c.CheckpointProof(6, b"a" * 32, b"b" * 32, [(1, b"s" * 64)])
    vc = c.seal(c.encode_vc_request(1, 3, proof, [c.VcEntry(0, 7, 2, b"h" * 32, b"\x07",
                                                            b"q" * 96)]), b"S" * 64)
    return [
        frame, c.encode_request(cm), c.seal(c.encode_support(1, 2, 3, b"d" * 32, b"s" * 96), b"m" * 32),
        c.encode_certify(0, 2, 3, b"d" * 32, b"\x0f", b"g" * 96),
        c.seal(c.encode_inform(1, 2, 3, c.inform_body(5, [(0, [(1, 0, b"res")]), (3, [(4, 1, b"")])])), b"m" * 32),
        c.encode_checkpoint(1, 64, b"a" * 32, b"b" * 32, b"s" * 64), vc,
        c.seal(c.encode_nv_propose(1, 4, [vc, vc]), b"m" * 32),
        c.seal(c.encode_fetch(1, 3, b"d" * 32), b"m" * 32),
        c.seal(c.encode_fetch_reply(1, 3, b"d" * 32, [cm], 2, b"\x07", b"c" * 96), b"m" * 32),
        c.seal(c.encode_state_req(1, 0, 10, 7), b"m" * 32),
        c.seal(c.encode_state_reply(1, 0, 10, [(1, b"d" * 32, 0)], [(1, [cm])], b"snap"), b"m" * 32),
        c.seal(c.encode_commit(1, 2, 3, b"d" * 32), b"m" * 32),
    ]


SAMPLES = samples()


def decode_or_wire_error(data):
    try:
        c.decode(data)
    except WireError as exc:
        assert exc.reason and isinstance(exc.reason, str)


def test_samples_cover_every_kind():
    assert {c.peek(f)[0] for f in SAMPLES} == set(c.KIND_NAMES)


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_every_truncation_raises_wire_error(index):
    frame = SAMPLES[index]
    for cut in range(len(frame)):
        with pytest.raises(WireError):
            c.decode(frame[:cut])
    with pytest.raises(WireError):
        c.decode(frame + b"\x00")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.data())
def test_bit_flips_only_raise_wire_error(frame, data):
    buf = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= 1 << data.draw(st.integers(0, 7))
    decode_or_wire_error(bytes(buf))


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_wire_error(data):
    decode_or_wire_error(data)


@settings(max_examples=300)
@given(st.sampled_from(SAMPLES), st.binary(min_size=1, max_size=64), st.data())
def test_random_body_after_valid_header_only_raises_wire_error(frame, junk, data):
    body_len = len(junk)
    head = bytearray(frame[:32])
    head[4:6] = b"\x00\x00"
    head[12:16] = body_len.to_bytes(4, "little")
    decode_or_wire_error(bytes(head) + junk)


def _with_header(frame, **fields):
    buf = bytearray(frame)
    layout = {"magic": (0, 2), "version": (2, 1), "kind": (3, 1), "flags": (4, 2),
              "reserved": (6, 2), "body_len": (12, 4)}
    for name, value in fields.items():
        off, size = layout[name]
        buf[off:off + size] = value.to_bytes(size, "little")
    return bytes(buf)


@pytest.mark.parametrize("fields, reason", [
    ({"magic": 0x4551}, "bad magic"),
    ({"version": 2}, "unsupported version"),
    ({"kind": 0}, "unknown kind"),
    ({"kind": 200}, "unknown kind"),
    ({"flags": 0x0100}, "unknown flags"),
    ({"flags": 3}, "unknown flags"),
    ({"reserved": 1}, "reserved"),
    ({"body_len": 2**31}, "exceeds the maximum"),
])
def test_header_errors_have_reasons(fields, reason):
    with pytest.raises(WireError, match=reason):
        c.decode(_with_header(SAMPLES[2], **fields))


def test_hostile_counts_are_refused_before_allocation():
    frame = bytearray(c.encode_propose(0, 1, 1, [SAMPLES[1][32:]]))
    frame[32:36] = (2**32 - 1).to_bytes(4, "little")
    with pytest.raises(WireError, match="batch of"):
        c.decode(c.seal(bytes(frame), b"m" * 32))
    frame[32:36] = (4000).to_bytes(4, "little")
    with pytest.raises(WireError, match="does not fit"):
        c.decode(c.seal(bytes(frame), b"m" * 32))


def test_client_message_rules():
    good = [(1, 1, c.OP_UPDATE, b"x")]
    with pytest.raises(ValueError):
        c.pack_client_message(1, [])
    with pytest.raises(ValueError):
        c.pack_client_message(1, [(2, 1, c.OP_READ, b""), (2, 1, c.OP_READ, b"")])
    with pytest.raises(ValueError):
        c.pack_client_message(1, [(1, 1, c.OP_READ, b"value")])
    with pytest.raises(ValueError):
        c.pack_client_message(1, [(1, 1, 9, b"")])
    with pytest.raises(ValueError):
        c.pack_client_message(1, [(1, 1, c.OP_UPDATE, b"x" * (c.MAX_VALUE + 1))])
    cm = bytearray(c.pack_client_message(1, good) + b"s" * 64)
    cm[6] = 1                                   # flags must be zero
    with pytest.raises(WireError, match="flags"):
        c.check_client_message(bytes(cm))
    cm = bytearray(c.pack_client_message(1, [(5, 1, c.OP_READ, b""), (6, 1, c.OP_READ, b"")]) + b"s" * 64)
    cm[8 + 19:8 + 27] = (5).to_bytes(8, "little")  # second id no longer increasing
    with pytest.raises(WireError, match="strictly increase"):
        c.check_client_message(bytes(cm))


def test_request_sender_must_match_client_id():
    frame = bytearray(SAMPLES[1])
    frame[8:12] = (6).to_bytes(4, "little")
    with pytest.raises(WireError, match="sender differs"):
        c.decode(bytes(frame))


def test_nv_propose_must_carry_vc_requests_only():
    support = SAMPLES[2]
    body = (1).to_bytes(2, "little") + len(support).to_bytes(4, "little") + support
    head = bytearray(SAMPLES[7][:32])
    head[12:16] = len(body).to_bytes(4, "little")
    with pytest.raises(WireError, match="instead of a VC-REQUEST"):
        c.decode(bytes(head) + body + b"m" * 32)


def test_seal_checks_the_tag_length():
    with pytest.raises(ValueError):
        c.seal(c.encode_support(1, 2, 3, b"d" * 32), b"short")
    with pytest.raises(ValueError):
        c.seal(SAMPLES[3] + b"x", b"")


def test_encoders_check_arguments():
    with pytest.raises(ValueError):
        c.encode_support(1, 2, 3, b"short")
    with pytest.raises(ValueError):
        c.encode_state_req(1, 5, 4, 1)
    with pytest.raises(ValueError):
        c.encode_nv_propose(1, 2, [SAMPLES[2]])
    with pytest.raises(OverflowError):
        c.encode_fetch(1, 2**64, b"d" * 32)


def test_final_flag_is_for_inform_only():
    body = c.inform_body(5, [(0, [(1, 0, b"r")])])
    m = c.decode(c.seal(c.encode_inform(1, 2, 3, body, final=True), b"m" * 32))
    assert m.final and m.auth_kind == c.AUTH_MAC and bytes(m.body) == body
    assert not c.decode(c.seal(c.encode_inform(1, 2, 3, body), b"m" * 32)).final
    support = bytearray(c.seal(c.encode_support(1, 2, 3, b"d" * 32), b"m" * 32))
    support[4] |= c.FLAG_FINAL
    with pytest.raises(WireError, match="unknown flags"):
        c.decode(bytes(support))


def test_commit_round_trip_and_hostile_variants():
    """COMMIT (the PBFT baseline's third phase) shares SUPPORT's body: a digest and an
    empty share; a COMMIT carrying a share, a short digest or trailing bytes is rejected."""
    from poe._core import codec as c
    frame = c.encode_commit(3, 7, 42, b"\x11" * 32)
    m = c.decode(c.seal(frame, b"\0" * c.MAC_SIZE))
    assert (m.kind, m.sender, m.view, m.seq, m.digest, m.share) == (c.COMMIT, 3, 7, 42,
                                                                    b"\x11" * 32, b"")
    assert c.KIND_NAMES[c.COMMIT] == "COMMIT"
    with pytest.raises(ValueError):
        c.encode_commit(3, 7, 42, b"\x11" * 31)
    # same bytes as a SUPPORT with a share, relabelled COMMIT: refused
    support = bytearray(c.encode_support(3, 7, 42, b"\x11" * 32, b"\x22" * 8))
    support[3] = c.COMMIT
    with pytest.raises(c.WireError, match="COMMIT carries no share"):
        c.decode(c.seal(bytes(support), b"\0" * c.MAC_SIZE))
