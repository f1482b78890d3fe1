"""The multi-entry INFORM (one per client per batch, issue #15): round trips, every hostile
variant raises WireError before any field is used, the encoders refuse what decode refuses,
and results are built lazily."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from poe._core import codec as c
from poe._core.codec import WireError

MAC = b"M" * 32


TAG = bytes(c.INFORM_TAG_SIZE)      # inform_body's default tag


def entry(idx, results, tag=TAG):
    out = struct.pack("<IH", idx, len(results)) + tag
    for t, status, value in results:
        out += struct.pack("<QBH", t, status, len(value)) + value
    return out


def body(client, entries, n=None):
    """A raw INFORM body, with any (even a wrong) entry count ``n``."""
    return struct.pack("<IH", client, len(entries) if n is None else n) + b"".join(
        entry(i, r) for i, r in entries)


def frame(raw_body, *, sender=1, view=2, seq=3):
    """An INFORM frame around ``raw_body`` without going through the encoder's checks."""
    head = struct.pack("<2sBBHHIIQQ", b"PE", 1, c.INFORM, c.AUTH_MAC, 0, sender,
                       len(raw_body), view, seq)
    return head + raw_body + MAC


GOOD = [(0, [(1, 0, b"a"), (2, 1, b"")]), (3, [(7, 3, b"xyz")])]


def test_round_trip_and_entry_accessors():
    b = body(9, GOOD)
    assert c.inform_body(9, GOOD) == b
    m = c.decode(c.seal(c.encode_inform(1, 2, 3, b), MAC))
    assert (m.kind, m.client, len(m), m.n_entries) == (c.INFORM, 9, 2, 2)
    assert [m.index(0), m.index(1)] == [0, 3]
    assert [m.request_id(0), m.request_id(1)] == [1, 7]
    assert [m.n_results(0), m.n_results(1)] == [2, 1]
    assert m.request_ids(0) == (1, 2) and m.request_ids(1) == (7,)
    assert m.entry(1) == entry(3, GOOD[1][1])
    assert m.votes() == [(1, 2, entry(0, GOOD[0][1])), (7, 1, entry(3, GOOD[1][1]))]
    assert m.entries() == [(0, ((1, 0, b"a"), (2, 1, b""))), (3, ((7, 3, b"xyz"),))]
    assert m.results(0) is m.results(0)            # built once, on first read
    assert m.tags() == [TAG, TAG]
    for bad in (-1, 2):
        for accessor in (m.index, m.request_id, m.n_results, m.entry, m.results,
                         m.request_ids, m.tag):
            with pytest.raises(IndexError):
                accessor(bad)


def test_decode_accepts_read_only_buffers_and_copies_writable_ones():
    f = frame(body(9, GOOD))
    mutable = bytearray(f)
    m = c.decode(mutable)
    mutable[40] ^= 0xFF                               # after decode: no effect
    assert m.entries() == c.decode(f).entries()
    assert c.decode(memoryview(f)).votes() == c.decode(f).votes()


def test_largest_inform_a_batch_can_hold():
    entries = [(i, [(i + 1, 0, b"")]) for i in range(c.MAX_MESSAGES_PER_BATCH)]
    m = c.decode(c.seal(c.encode_inform(1, 2, 3, c.inform_body(9, entries)), MAC))
    assert len(m) == c.MAX_MESSAGES_PER_BATCH and m.index(len(m) - 1) == len(m) - 1
    fat = [(0, [(t, 0, b"v" * c.MAX_VALUE) for t in range(1, c.MAX_OPS_PER_MESSAGE + 1)])]
    assert len(c.decode(frame(body(9, fat)))) == 1


HOSTILE = {
    "no entries": body(9, [], n=0),
    "count above the batch limit": body(9, GOOD, n=c.MAX_MESSAGES_PER_BATCH + 1),
    "count larger than the entries": body(9, GOOD, n=3),
    "count smaller than the entries (trailing entry)": body(9, GOOD, n=1),
    "count that cannot fit": struct.pack("<IH", 9, c.MAX_MESSAGES_PER_BATCH) + entry(0, [(1, 0, b"")]),
    "duplicate idx": body(9, [(3, [(1, 0, b"")]), (3, [(2, 0, b"")])]),
    "decreasing idx": body(9, [(3, [(1, 0, b"")]), (2, [(2, 0, b"")])]),
    "idx beyond a batch": body(9, [(c.MAX_MESSAGES_PER_BATCH, [(1, 0, b"")])]),
    "entry without results": body(9, [(0, [])]),
    "entry with too many results": body(
        9, [(0, [(t, 0, b"") for t in range(1, c.MAX_OPS_PER_MESSAGE + 2)])]),
    "request ids not increasing": body(9, [(0, [(5, 0, b""), (5, 0, b"")])]),
    "request ids decreasing": body(9, [(0, [(5, 0, b""), (4, 0, b"")])]),
    "unknown status": body(9, [(0, [(1, 5, b"")])]),
    "oversized value": body(9, [(0, [(1, 0, b"v" * (c.MAX_VALUE + 1))])]),
    "value running past the body": body(9, [(0, [(1, 0, b"abc")])])[:-1],
    "entry header cut": body(9, GOOD) + b"\0\0",
    "trailing byte": body(9, GOOD) + b"\0",
    "header only": body(9, [], n=1),
    "short header": b"\0\0\0\0\1",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bodies_raise_wire_error_and_encoders_refuse_them(name):
    raw = HOSTILE[name]
    with pytest.raises(WireError):
        c.decode(frame(raw))
    with pytest.raises(WireError):                     # encode_inform refuses it too
        c.encode_inform(1, 2, 3, raw)


def test_every_truncation_and_extension_raises_wire_error():
    f = frame(body(9, GOOD))
    for cut in range(len(f)):
        with pytest.raises(WireError):
            c.decode(f[:cut])
    for cut in range(32 + 6, 32 + len(body(9, GOOD))):
        raw = body(9, GOOD)[:cut - 32]
        with pytest.raises(WireError):
            c.decode(frame(raw))                       # consistent header, short body


@settings(max_examples=300)
@given(st.data())
def test_bit_flips_in_the_body_only_raise_wire_error_or_decode_consistently(data):
    buf = bytearray(frame(body(9, GOOD)))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(32, len(buf) - 33))
        buf[pos] ^= 1 << data.draw(st.integers(0, 7))
    try:
        m = c.decode(bytes(buf))
    except WireError as exc:
        assert exc.reason
        return
    # what decodes re-encodes to the same bytes (nothing unchecked slipped through)
    again = c.inform_body(m.client, m.entries(), m.tags())
    assert again == m.body_bytes()


def test_inform_body_refuses_what_decode_refuses():
    bad = [
        [],
        [(0, [])],
        [(1, [(1, 0, b"")]), (1, [(2, 0, b"")])],
        [(2, [(1, 0, b"")]), (1, [(2, 0, b"")])],
        [(c.MAX_MESSAGES_PER_BATCH, [(1, 0, b"")])],
        [(0, [(2, 0, b""), (1, 0, b"")])],
        [(0, [(1, 9, b"")])],
        [(0, [(1, 0, b"v" * (c.MAX_VALUE + 1))])],
        [(0, [(t, 0, b"") for t in range(1, c.MAX_OPS_PER_MESSAGE + 2)])],
    ]
    for entries in bad:
        with pytest.raises(ValueError):
            c.inform_body(9, entries)


def test_encode_inform_results_joins_one_clients_pieces():
    """kv pieces (u32 client | u32 idx | u16 count | results) and one tag each."""
    pieces = [struct.pack("<I", 9) + entry(i, r)[:6] + entry(i, r)[6 + len(TAG):]
              for i, r in GOOD]
    tags = [b"\x01" * len(TAG), b"\x02" * len(TAG)]
    f = c.encode_inform_results(1, 2, 3, [pieces[0], memoryview(pieces[1])], tags)
    assert f == c.encode_inform(1, 2, 3, c.inform_body(9, GOOD, tags))
    m = c.decode(c.seal(f, MAC))
    assert m.tags() == tags and m.tag(1) == tags[1] and m.votes()[1][2][6:6 + len(TAG)] == tags[1]
    final = c.decode(c.seal(c.encode_inform_results(1, 2, 3, pieces, tags, final=True), MAC))
    assert final.final and final.entries() == m.entries()
    with pytest.raises(ValueError):
        c.encode_inform_results(1, 2, 3, [], [])
    with pytest.raises(ValueError):                    # one tag for two entries
        c.encode_inform_results(1, 2, 3, pieces, tags[:1])
    with pytest.raises(ValueError):                    # a tag of the wrong size
        c.encode_inform_results(1, 2, 3, pieces, [tags[0], tags[1][:-1]])
    with pytest.raises(ValueError):                    # two clients in one INFORM
        c.encode_inform_results(1, 2, 3, [pieces[0], struct.pack("<I", 8) + pieces[1][4:]],
                                tags)
    with pytest.raises(ValueError):                    # a piece too short for an entry
        c.encode_inform_results(1, 2, 3, [pieces[0], pieces[1][:12]], tags)
    with pytest.raises(WireError):                     # entries out of idx order
        c.encode_inform_results(1, 2, 3, [pieces[1], pieces[0]], tags)
    with pytest.raises(WireError):                     # a malformed piece
        c.encode_inform_results(1, 2, 3, [pieces[0][:-1] + b"\xff" + b"\0" * 2], tags[:1])
