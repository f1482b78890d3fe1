"""kv kernel: op semantics, exactly-once, undo/rollback, digests and snapshots, checked
against a pure-Python model (a dict + client table) and the digest definition of kv's
module docstring re-implemented here with hashlib."""
import hashlib
import importlib.machinery
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from poe._core import codec, kv

TAG = codec.INFORM_TAG_SIZE

READ, UPDATE, INSERT, RMW = codec.OP_READ, codec.OP_UPDATE, codec.OP_INSERT, codec.OP_RMW
OK, NOT_FOUND, EXISTS = codec.ST_OK, codec.ST_NOT_FOUND, codec.ST_EXISTS
DUPLICATE, STALE = codec.ST_DUPLICATE, codec.ST_STALE
MASK64 = 2**64 - 1
SIG = bytes(64)
W = kv.WINDOW                       # request ids of a client's exactly-once window
MASKW = 2**W - 1


# ---------------------------------------------------------------------------------------
# helpers and the model


def cm(client, ops):
    return codec.pack_client_message(client, ops) + SIG


def batch(*messages):
    """messages: (client, [(t, key, code, value), ...]) pairs."""
    return codec.Batch.from_messages([cm(c, ops) for c, ops in messages])


def run(store, *messages):
    """Execute one batch at the next sequence number; returns Results."""
    return store.execute(store.executed_seq + 1, batch(*messages))


def fmix64(k):
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK64
    return k ^ (k >> 33)


def client_record(client, max_t, bitmap):
    """A client's record in the state digest and the snapshot (kv module docstring)."""
    return struct.pack("<IQ", client, max_t) + bitmap.to_bytes(W // 8, "little")


def reference_digest(records, clients):
    """state_digest v2 exactly as the kv module docstring defines it."""
    buckets = [[] for _ in range(1024)]
    for key in records:
        buckets[fmix64(key) >> 54].append(key)
    h = hashlib.sha256(b"PoE/STATE/v2" + struct.pack("<Q", len(records)))
    for keys in buckets:
        b = hashlib.sha256(b"PoE/KV-BUCKET/v1")
        for key in sorted(keys):
            b.update(struct.pack("<QH", key, len(records[key])) + records[key])
        h.update(b.digest())
    c = hashlib.sha256()
    for client in sorted(clients):
        c.update(client_record(client, *clients[client]))
    h.update(c.digest())
    return h.digest()


def sequential_value(seed, key, size):
    """Value generator of load_sequential, from the module docstring."""
    s = seed ^ ((key * 0xD6E8FEB86659FD93) & MASK64)
    out = b""
    while len(out) < size:
        s = (s + 0x9E3779B97F4A7C15) & MASK64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        out += struct.pack("<Q", z ^ (z >> 31))
    return out[:size]


class Model:
    """The specification of execute, in plain Python."""

    def __init__(self, zero_payload=False):
        self.records = {}
        self.clients = {}
        self.zero_payload = zero_payload

    def copy(self):
        m = Model(self.zero_payload)
        m.records = dict(self.records)
        m.clients = dict(self.clients)
        return m

    def execute(self, messages):
        out = []
        for client, ops in messages:
            results = []
            for t, key, code, value in ops:
                max_t, bitmap = self.clients.get(client, (0, 0))
                if t > max_t:
                    d = t - max_t
                    bitmap = ((bitmap << d) | 1) & MASKW if d < W else 1
                    max_t = t
                elif max_t - t < W:
                    if bitmap >> (max_t - t) & 1:
                        results.append((t, DUPLICATE, b""))
                        continue
                    bitmap |= 1 << (max_t - t)
                else:
                    results.append((t, STALE, b""))
                    continue
                self.clients[client] = (max_t, bitmap)
                results.append((t, *self.apply(key, code, value)))
            out.append(results)
        return out

    def apply(self, key, code, value):
        if self.zero_payload:
            return OK, b""
        old = self.records.get(key)
        if code == READ:
            return (NOT_FOUND, b"") if old is None else (OK, old)
        if code == INSERT:
            if old is not None:
                return EXISTS, b""
            self.records[key] = value
            return OK, b""
        if old is None:
            return NOT_FOUND, b""
        self.records[key] = value
        return OK, (old if code == RMW else b"")

    def digest(self):
        return reference_digest(self.records, self.clients)


def contents(store, keys):
    return {k: store.get(k) for k in keys if store.get(k) is not None}


def results_of(res):
    return [res.ops(i) for i in range(len(res))]


# ---------------------------------------------------------------------------------------
# strategies

KEYS = range(24)


@st.composite
def ops_strategy(draw, max_ops=5):
    # ids near each other, around one window apart, and far apart (slides past W)
    n = draw(st.integers(1, max_ops))
    ids = st.one_of(st.integers(0, 160), st.integers(W - 100, W + 200),
                    st.integers(0, 3 * W))
    ts = sorted(draw(st.sets(ids, min_size=n, max_size=n)))
    out = []
    for t in ts:
        code = draw(st.sampled_from([READ, UPDATE, INSERT, RMW]))
        value = b"" if code == READ else draw(st.binary(max_size=12))
        out.append((t, draw(st.sampled_from(KEYS)), code, value))
    return out


messages_strategy = st.lists(
    st.tuples(st.integers(0, 3), ops_strategy()), min_size=1, max_size=6)
batches_strategy = st.lists(messages_strategy, min_size=1, max_size=8)
preload_strategy = st.dictionaries(st.sampled_from(KEYS), st.binary(max_size=12), max_size=12)

fast = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------
# unit tests


def test_kv_is_the_compiled_extension():
    assert any(kv.__file__.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES)


def test_every_op_and_status():
    s = kv.KVStore()
    s.load([(1, b"one"), (2, b"two")])
    r = run(s, (7, [
        (1, 1, READ, b""), (2, 9, READ, b""),
        (3, 1, UPDATE, b"uno"), (4, 9, UPDATE, b"x"),
        (5, 9, INSERT, b"nine"), (6, 2, INSERT, b"y"),
        (7, 2, RMW, b"dos"), (8, 10, RMW, b"z"),
    ]))
    assert r.ops(0) == [
        (1, OK, b"one"), (2, NOT_FOUND, b""), (3, OK, b""), (4, NOT_FOUND, b""),
        (5, OK, b""), (6, EXISTS, b""), (7, OK, b"two"), (8, NOT_FOUND, b""),
    ]
    assert [s.get(k) for k in (1, 2, 9, 10)] == [b"uno", b"dos", b"nine", None]
    assert len(s) == 3


def test_empty_and_maximal_values():
    s = kv.KVStore()
    big = bytes(range(256)) * 16
    assert len(big) == codec.MAX_VALUE
    r = run(s, (1, [(1, 5, INSERT, b""), (2, 6, INSERT, big), (3, 5, READ, b""),
                    (4, 6, RMW, b""), (5, 6, READ, b"")]))
    assert r.ops(0) == [(1, OK, b""), (2, OK, b""), (3, OK, b""), (4, OK, big), (5, OK, b"")]
    assert s.get(5) == b"" and s.get(6) == b""
    s.rollback_to(0)
    assert s.get(5) is None and s.get(6) is None and len(s) == 0


def test_results_layout_and_accessors():
    s = kv.KVStore()
    s.load([(4, b"four")])
    r = run(s, (11, [(1, 4, READ, b"")]), (12, [(1, 4, RMW, b"FOUR"), (2, 5, READ, b"")]))
    assert len(r) == 2 and r.seq == 1
    assert [r.client(0), r.client(1)] == [11, 12]
    body0 = struct.pack("<IIH", 11, 0, 1) + struct.pack("<QBH", 1, OK, 4) + b"four"
    body1 = (struct.pack("<IIH", 12, 1, 2) + struct.pack("<QBH", 1, OK, 4) + b"four"
             + struct.pack("<QBH", 2, NOT_FOUND, 0))
    assert bytes(r.message_results(0)) == body0
    assert bytes(r.message_results(1)) == body1
    assert r.buffer == body0 + body1
    view = r.message_results(1)
    assert isinstance(view, memoryview) and view.obj is r.buffer   # zero-copy
    # a piece is the client id and the message's INFORM entry
    body = codec.inform_body(12, [(1, r.ops(1))])    # client | n | idx | count | tag | ...
    assert bytes(r.message_results(1)) == body[:4] + body[6:12] + body[12 + TAG:]
    frame = codec.encode_inform_results(0, 0, 1, [r.message_results(1)], [bytes(TAG)],
                                        auth=codec.AUTH_NONE)
    m = codec.decode(frame)
    assert m.kind == codec.INFORM and m.client == 12 and m.entries() == [(1, tuple(r.ops(1)))]
    with pytest.raises(IndexError):
        r.ops(2)
    with pytest.raises(IndexError):
        r.message_results(-1)


def test_results_never_alias_the_store():
    s = kv.KVStore()
    s.load([(1, b"aaaa")])
    r = run(s, (1, [(1, 1, READ, b""), (2, 1, RMW, b"bbbb")]))
    run(s, (1, [(3, 1, UPDATE, b"cccc")]))
    s.rollback_to(0)
    got = s.get(1)
    run(s, (1, [(1, 1, UPDATE, b"dddd")]))
    assert r.ops(0) == [(1, OK, b"aaaa"), (2, OK, b"aaaa")]
    assert got == b"aaaa" and s.get(1) == b"dddd"


def test_duplicate_in_batch_and_across_batches():
    s = kv.KVStore()
    r = run(s, (1, [(5, 1, INSERT, b"a")]), (1, [(5, 1, UPDATE, b"b")]))
    assert r.ops(1) == [(5, DUPLICATE, b"")]
    assert r.all_duplicate(1) and not r.all_duplicate(0)
    r = run(s, (1, [(5, 1, RMW, b"c"), (6, 1, READ, b"")]))
    assert r.ops(0) == [(5, DUPLICATE, b""), (6, OK, b"a")]
    assert not r.all_duplicate(0)
    assert s.get(1) == b"a"
    assert s.client_state(1) == (6, 0b11)


def test_window_slide_stale_and_out_of_order():
    s = kv.KVStore()
    s.load([(1, b"v")])
    top = W + 100
    low = top - W + 1                       # the lowest id inside the window
    run(s, (9, [(top, 1, READ, b"")]))
    # out of order inside the window: executed once, then DUPLICATE
    r = run(s, (9, [(low, 1, READ, b""), (top - 40, 1, READ, b""), (top - 1, 1, READ, b"")]))
    assert [st_ for _, st_, _ in r.ops(0)] == [OK, OK, OK]
    r = run(s, (9, [(low, 1, READ, b""), (top - 40, 1, READ, b"")]))
    assert [st_ for _, st_, _ in r.ops(0)] == [DUPLICATE, DUPLICATE]
    assert run(s, (9, [(low - 1, 1, READ, b"")])).ops(0) == [(low - 1, STALE, b"")]
    assert s.client_state(9) == (top, (1 << (W - 1)) | (1 << 40) | 0b11)
    assert [s.request_status(9, t) for t in (low - 1, low, low + 1, top, top + 1)] == \
        [STALE, DUPLICATE, OK, DUPLICATE, OK]
    assert s.request_status(10, 5) == OK           # a client that never executed
    # slide by one: low leaves the window, low + 1 enters
    run(s, (9, [(top + 1, 1, READ, b"")]))
    assert run(s, (9, [(low, 1, READ, b"")])).ops(0) == [(low, STALE, b"")]
    assert run(s, (9, [(low + 1, 1, READ, b"")])).ops(0) == [(low + 1, OK, b"v")]
    # a jump of W or more forgets the whole window
    run(s, (9, [(top + 1 + W, 1, READ, b"")]))
    assert s.client_state(9) == (top + 1 + W, 1)
    assert run(s, (9, [(top + 1, 1, READ, b"")])).ops(0) == [(top + 1, STALE, b"")]
    assert run(s, (9, [(top + 2, 1, READ, b"")])).ops(0) == [(top + 2, OK, b"v")]
    # a jump of W - 1 keeps exactly the newest id
    run(s, (9, [(top + 2 * W, 1, READ, b"")]))
    assert s.client_state(9) == (top + 2 * W, 1 | 1 << (W - 1))


def test_pipelined_messages_run_in_any_order():
    """A pipelining client's messages (50 requests each, 4 in flight: 200 ids) reordered on
    the way (a retry after a view change, a forward): the oldest, its ids 200 below an
    executed newer one, still executes (with a 64-id window it was STALE: a write of a
    correct client rejected, though it never ran; on 0554bad: 'assert [4, 4, 4, 4, 4, 4,
    ...] == [0, 0, 0, 0, 0, 0, ...]'). Every id runs once, in any order."""
    s = kv.KVStore()
    messages = [(5, [(t, t, INSERT, b"w%d" % t) for t in range(1 + 50 * m, 51 + 50 * m)])
                for m in range(5)]
    assert [st_ for _, st_, _ in run(s, messages[4]).ops(0)] == [OK] * 50
    r = run(s, messages[0], messages[2])
    assert [st_ for _, st_, _ in r.ops(0) + r.ops(1)] == [OK] * 100
    r = run(s, messages[3], messages[1], messages[0])
    assert [st_ for _, st_, _ in r.ops(0) + r.ops(1)] == [OK] * 100
    assert r.all_duplicate(2)
    assert [s.get(t) for t in range(1, 251)] == [b"w%d" % t for t in range(1, 251)]
    assert s.client_state(5) == (250, 2**250 - 1)
    # the ids a correct client can have in flight (client.py) all fit in the window, and so
    # does the largest message
    assert W >= 1024 and W >= codec.MAX_OPS_PER_MESSAGE


def test_wide_window_through_digest_snapshot_capture_and_rollback():
    """Windows using all W bits (ids up to W - 1 below max_t, and id 0 at the very bottom)
    survive the digest, snapshot/restore, snapshot_at and rollback exactly."""
    s = kv.KVStore(seed=3)
    s.load([(1, b"v")])
    run(s, (3, [(0, 1, READ, b""), (7, 1, READ, b""), (300, 1, READ, b""),
                (700, 1, READ, b"")]), (4, [(W - 1, 1, READ, b"")]), (4, [(0, 1, READ, b"")]))
    clients = {3: (700, 1 | 1 << 400 | 1 << 693 | 1 << 700), 4: (W - 1, 1 | 1 << (W - 1))}
    assert {c: s.client_state(c) for c in clients} == clients
    k, digest, snap = s.executed_seq, s.state_digest(), s.snapshot()
    assert digest == reference_digest({1: b"v"}, clients) == s.state_digest_full()
    r = kv.KVStore.restore(snap, seed=9)
    assert {c: r.client_state(c) for c in clients} == clients and r.snapshot() == snap
    s.capture()
    # the restored window answers like the original, through slides
    for t in (0, 7, 8, 300, 699, 700, 701, 700 + W, 701, 702, 1500):
        a, b = run(s, (3, [(t, 1, READ, b"")])), run(r, (3, [(t, 1, READ, b"")]))
        assert a.ops(0) == b.ops(0)
    assert s.state_digest() == r.state_digest() != digest
    assert s.client_state(3) == (700 + W, 1 | 1 << (W - 800) | 1 << (W - 2) | 1 << (W - 1))
    assert s.snapshot_at(k) == snap
    s.rollback_to(k)
    assert {c: s.client_state(c) for c in clients} == clients
    assert s.state_digest() == digest and s.snapshot() == snap
    # one bit far from max_t changes the digest
    a, b = kv.KVStore(), kv.KVStore()
    run(a, (1, [(100, 1, READ, b""), (W + 50, 1, READ, b"")]))
    run(b, (1, [(101, 1, READ, b""), (W + 50, 1, READ, b"")]))
    assert a.client_state(1)[0] == b.client_state(1)[0] and a.state_digest() != b.state_digest()


def test_first_request_id_zero_and_huge_ids():
    s = kv.KVStore()
    assert run(s, (3, [(0, 1, INSERT, b"z")])).ops(0) == [(0, OK, b"")]
    assert run(s, (3, [(0, 1, READ, b"")])).ops(0) == [(0, DUPLICATE, b"")]
    top = 2**64 - 1
    assert run(s, (3, [(top, 1, READ, b"")])).ops(0) == [(top, OK, b"z")]
    assert run(s, (3, [(top, 1, READ, b"")])).ops(0) == [(top, DUPLICATE, b"")]
    assert run(s, (3, [(0, 1, READ, b"")])).ops(0) == [(0, STALE, b"")]


def test_zero_payload_skips_the_store_but_not_dedup():
    s = kv.KVStore(zero_payload=True)
    s.load([(1, b"x")])
    before = s.state_digest()
    r = run(s, (1, [(1, 1, READ, b""), (2, 1, UPDATE, b"y"), (3, 5, INSERT, b"w"),
                    (4, 1, RMW, b"q")]), (1, [(2, 1, UPDATE, b"y")]))
    assert r.ops(0) == [(1, OK, b""), (2, OK, b""), (3, OK, b""), (4, OK, b"")]
    assert r.ops(1) == [(2, DUPLICATE, b"")]
    assert s.get(1) == b"x" and s.get(5) is None and len(s) == 1
    assert s.state_digest() == reference_digest({1: b"x"}, {1: (4, 0b1111)}) != before
    s.rollback_to(0)
    assert s.state_digest() == before and s.client_state(1) is None


def test_execution_is_strictly_in_order():
    s = kv.KVStore()
    b = batch((1, [(1, 1, READ, b"")]))
    for bad in (0, 2, 5):
        with pytest.raises(ValueError, match="in order"):
            s.execute(bad, b)
    s.execute(1, b)
    with pytest.raises(ValueError):
        s.execute(1, b)
    with pytest.raises(TypeError):
        s.execute(2, b"not a batch")
    assert s.executed_seq == 1


def test_rollback_and_finalize_bounds():
    s = kv.KVStore()
    for _ in range(5):
        run(s, (1, [(s.executed_seq + 1, 1, READ, b"")]))
    with pytest.raises(ValueError):
        s.rollback_to(6)
    with pytest.raises(ValueError):
        s.finalize(6)
    with pytest.raises(OverflowError):
        s.rollback_to(-1)
    s.finalize(3)
    assert s.final_seq == 3
    with pytest.raises(ValueError, match="final"):
        s.rollback_to(2)
    s.finalize(2)                       # an older checkpoint is a no-op
    assert s.final_seq == 3
    s.rollback_to(3)
    assert s.executed_seq == 3 and s.undo_bytes == 0
    s.rollback_to(3)                    # no-op
    run(s, (1, [(10, 1, READ, b"")]))
    assert s.executed_seq == 4


def test_load_rules():
    s = kv.KVStore()
    s.load([(1, b"a"), (1, b"b"), (2**64 - 1, b"c")])
    assert s.get(1) == b"b" and s.get(2**64 - 1) == b"c" and len(s) == 2
    with pytest.raises(ValueError):
        s.load([(1, bytes(codec.MAX_VALUE + 1))])
    with pytest.raises(ValueError):
        s.load([(-1, b"a")])
    with pytest.raises(ValueError):
        s.load_sequential(10, codec.MAX_VALUE + 1)
    run(s, (1, [(1, 1, READ, b"")]))
    with pytest.raises(ValueError, match="before the first batch"):
        s.load([(3, b"a")])
    with pytest.raises(ValueError, match="before the first batch"):
        s.load_sequential(10, 10)
    s.rollback_to(0)                    # loads are not undone
    assert s.get(1) == b"b"


def test_load_sequential_matches_definition():
    s = kv.KVStore(capacity=4)
    s.load_sequential(3000, 37, seed=12345)
    assert len(s) == 3000
    for key in (0, 1, 2, 1000, 2999):
        assert s.get(key) == sequential_value(12345, key, 37)
    assert s.get(3000) is None
    records = {k: sequential_value(12345, k, 37) for k in range(3000)}
    assert s.state_digest() == reference_digest(records, {})


def test_growth_and_rollback_of_many_inserts():
    s = kv.KVStore(capacity=1)
    s.load([(k, b"L%d" % k) for k in range(0, 4000, 3)])
    before = s.state_digest()
    msgs = [(c, [(1 + j, c * 1000 + j, INSERT, b"I%d" % j) for j in range(200)])
            for c in range(10)]
    r = run(s, *msgs)
    assert all(op[1] in (OK, EXISTS) for i in range(len(r)) for op in r.ops(i))
    inserted = len(s) - 1334
    assert inserted > 1500
    s.rollback_to(0)
    assert len(s) == 1334 and s.state_digest() == before
    assert all(s.get(k) == b"L%d" % k for k in range(0, 4000, 3))
    assert all(s.get(k) is None for k in range(1, 4000, 3))


def test_seed_changes_nothing_observable():
    observed = []
    for seed in (0, 1, 2**64 - 1):
        s = kv.KVStore(seed=seed, capacity=2)
        s.load_sequential(500, 20, seed=3)
        results = []
        for c in range(20):
            ops = [(1, c * 7 % 600, UPDATE, b"u"), (2, 500 + c, INSERT, b"i"),
                   (3, c * 11 % 600, RMW, b"r")]
            results.append(results_of(run(s, (c, ops))))
        observed.append((results, s.state_digest(), s.snapshot()))
    assert observed[0] == observed[1] == observed[2]
    with pytest.raises(ValueError):
        kv.KVStore(seed=-1)
    with pytest.raises(ValueError):
        kv.KVStore(seed=2**64)


def test_digest_is_sensitive_to_every_part_of_the_state():
    base = {1: b"a", 2: b"b"}
    d = reference_digest(base, {1: (3, 1)})
    s = kv.KVStore()
    s.load(base.items())
    run(s, (1, [(3, 1, READ, b"")]))
    assert s.state_digest() == d
    variants = [({1: b"b", 2: b"a"}, {1: (3, 1)}), ({1: b"a"}, {1: (3, 1)}),
                ({1: b"a", 2: b"b"}, {1: (3, 3)}), ({1: b"a", 2: b"b", 3: b""}, {1: (3, 1)})]
    assert len({d} | {reference_digest(r, c) for r, c in variants}) == 5


def test_undo_bytes_accounting_and_finalize_frees():
    s = kv.KVStore()
    s.load_sequential(100, 50)
    assert s.undo_bytes == 0
    run(s, (1, [(1, 3, READ, b"")]))            # client 1's first request: no window kept
    s.finalize(1)
    assert s.undo_bytes == 0
    run(s, (1, [(2, 3, UPDATE, b"x" * 10)]))
    one = s.undo_bytes
    assert one >= 50 + 8                   # the old value, the old word of the window
    run(s, (1, [(3, 4, UPDATE, b"y" * 10)]))
    assert s.undo_bytes >= 2 * (50 + 8)
    s.finalize(2)
    assert 0 < s.undo_bytes < 2 * one
    s.finalize(3)
    assert s.undo_bytes == 0


def test_no_leaks_on_execute_rollback_finalize_paths():
    def cycle(s, base_t):
        for k in range(1, 9):
            run(s, (k % 3, [(base_t + k, k, UPDATE, b"u" * 64), (base_t + k + 100, 500 + k,
                                                                INSERT, b"i" * 64)]))
        s.rollback_to(s.final_seq + 4)
        s.finalize(s.final_seq + 2)
        s.state_digest()
        s.snapshot()

    tracemalloc.start()
    try:
        s = kv.KVStore()
        s.load_sequential(2000, 100)
        cycle(s, 0)                     # warm-up: buffers reach their working size
        s.rollback_to(s.final_seq)
        start = tracemalloc.get_traced_memory()[0]
        for n in range(1, 40):
            cycle(s, 1000 * n)
            s.rollback_to(s.final_seq)
        grown = tracemalloc.get_traced_memory()[0] - start
        del s
        assert grown < 64 * 1024, grown
    finally:
        tracemalloc.stop()


def test_snapshot_encoding_is_canonical():
    a = kv.KVStore(seed=1)
    a.load([(5, b"five"), (2, b"two")])
    run(a, (4, [(9, 2, UPDATE, b"deux")]))
    snap = a.snapshot()
    digest = a.state_digest()
    body = (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 1, 2, 1) + digest
            + struct.pack("<QH", 2, 4) + b"deux" + struct.pack("<QH", 5, 4) + b"five"
            + client_record(4, 9, 1))
    assert snap == body + hashlib.sha256(body).digest()
    assert len(client_record(4, 9, 1)) == 12 + W // 8 and snap[:16] == b"PoE/KV-SNAP/v2\0\0"
    b = kv.KVStore.restore(snap, seed=77)
    assert (b.executed_seq, b.final_seq, b.undo_bytes) == (1, 1, 0)
    assert b.state_digest() == digest and b.snapshot() == snap
    assert b.client_state(4) == (9, 1)
    run(b, (4, [(9, 2, UPDATE, b"x")]))   # dedup state came along
    assert b.get(2) == b"deux"


def hostile(body):
    return body + hashlib.sha256(body).digest()


@pytest.mark.parametrize("body, reason", [
    (b"XoE/KV-SNAP/v2\0\0" + bytes(56), "bad magic"),
    (b"PoE/KV-SNAP/v1\0\0" + bytes(56), "version 1"),
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 2**60, 0) + bytes(32), "record count"),
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 0, 2**60) + bytes(32), "client count"),
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 1, 0) + bytes(32)
     + struct.pack("<QH", 1, 4097) + bytes(4097), "exceeds"),
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 1, 0) + bytes(32)
     + struct.pack("<QH", 1, 9) + bytes(3), "past the end"),
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 2, 0) + bytes(32)
     + struct.pack("<QH", 3, 0) + struct.pack("<QH", 3, 0), "strictly increasing"),
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 0, 1) + bytes(32)
     + client_record(1, 5, 2), "not marked executed"),
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 0, 1) + bytes(32)
     + client_record(1, 5, 0b1000001), "below 0"),
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 0, 1) + bytes(32)
     + client_record(1, 100, 1 | 1 << 101), "below 0"),           # in another word
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 0, 1) + bytes(32)
     + client_record(1, 100, 1 | 1 << (W - 1)), "below 0"),       # in the last word
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 0, 1) + bytes(32)
     + client_record(1, W - 2, 1 | 1 << (W - 1)), "below 0"),     # id -1
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 0, 1) + bytes(32)
     + client_record(1, 2**64 - 1, 1 << 5), "not marked executed"),
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 0, 1) + bytes(32)
     + client_record(1, 5, 1) + b"x", "client section"),
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 0, 1) + bytes(32)
     + struct.pack("<IQQ", 1, 5, 1), "does not fit"),              # a version-1 entry
    (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 0, 0, 0) + bytes(32), "state digest"),
])
def test_restore_rejects_hostile_snapshots_with_a_reason(body, reason):
    with pytest.raises(ValueError, match=reason):
        kv.KVStore.restore(hostile(body))


def test_restore_rejects_checksum_mismatch_and_short_input():
    snap = kv.KVStore().snapshot()
    with pytest.raises(ValueError, match="checksum"):
        kv.KVStore.restore(snap[:-1] + bytes([snap[-1] ^ 1]))
    with pytest.raises(ValueError, match="shorter"):
        kv.KVStore.restore(snap[:50])
    assert kv.KVStore.restore(bytearray(snap)).state_digest() == kv.KVStore().state_digest()


# ---------------------------------------------------------------------------------------
# properties against the model


@fast
@given(preload=preload_strategy, batches=batches_strategy, zero=st.booleans())
def test_random_batches_match_the_model(preload, batches, zero):
    s = kv.KVStore(seed=len(batches), zero_payload=zero, capacity=1)
    m = Model(zero)
    s.load(preload.items())
    m.records.update(preload)
    for messages in batches:
        res = run(s, *messages)
        expected = m.execute(messages)
        assert results_of(res) == expected
        for i, (client, _) in enumerate(messages):
            body = codec.inform_body(client, [(i, expected[i])])
            assert bytes(res.message_results(i)) == body[:4] + body[6:12] + body[12 + TAG:]
        assert contents(s, KEYS) == m.records and len(s) == len(m.records)
        assert {c: s.client_state(c) for c in m.clients} == m.clients
    assert s.state_digest() == m.digest()


@fast
@given(preload=preload_strategy, batches=batches_strategy, data=st.data())
def test_rollback_restores_every_earlier_state(preload, batches, data):
    s = kv.KVStore(capacity=1)
    s.load(preload.items())
    history = [(s.state_digest(), contents(s, KEYS), s.snapshot())]
    for messages in batches:
        run(s, *messages)
        history.append((s.state_digest(), contents(s, KEYS), s.snapshot()))
    targets = data.draw(st.lists(st.integers(0, len(batches)), min_size=1, max_size=4),
                        label="rollback targets")
    for target in sorted(targets, reverse=True):
        s.rollback_to(target)
        digest, records, snap = history[target]
        assert s.executed_seq == target
        assert s.state_digest() == digest
        assert contents(s, KEYS) == records and len(s) == len(records)
        again = s.snapshot()
        assert again[:16] + again[24:-32] == snap[:16] + snap[24:-32]   # same state
        assert again[16:24] == struct.pack("<Q", target) == snap[16:24]
        if target < len(batches):
            # re-executing the undone batch reaches the same state again
            run(s, *batches[target])
            assert s.state_digest() == history[target + 1][0]
            s.rollback_to(target)
    s.rollback_to(0)
    assert s.undo_bytes == 0 and s.state_digest() == history[0][0]


@fast
@given(batches=batches_strategy, data=st.data())
def test_finalize_then_rollback_below_is_an_error(batches, data):
    s = kv.KVStore()
    digests = [s.state_digest()]
    for messages in batches:
        run(s, *messages)
        digests.append(s.state_digest())
    f = data.draw(st.integers(0, s.executed_seq), label="finalize")
    s.finalize(f)
    assert s.final_seq == f
    if f > 0:
        with pytest.raises(ValueError):
            s.rollback_to(data.draw(st.integers(0, f - 1), label="below"))
    assert s.state_digest() == digests[-1]           # the failed call changed nothing
    j = data.draw(st.integers(f, s.executed_seq), label="allowed")
    s.rollback_to(j)
    assert s.state_digest() == digests[j]


@fast
@given(preload=preload_strategy, batches=batches_strategy)
def test_different_seeds_identical_digests_and_results(preload, batches):
    a, b = kv.KVStore(seed=0, capacity=1), kv.KVStore(seed=0xDEADBEEF, capacity=1)
    for s in (a, b):
        s.load(preload.items())
    for messages in batches:
        assert results_of(run(a, *messages)) == results_of(run(b, *messages))
        assert a.state_digest() == b.state_digest()
    a.rollback_to(0)
    b.rollback_to(0)
    assert a.state_digest() == b.state_digest() and a.snapshot() == b.snapshot()


@fast
@given(preload=preload_strategy, batches=batches_strategy, seed=st.integers(0, 2**64 - 1))
def test_snapshot_restore_round_trip(preload, batches, seed):
    s = kv.KVStore()
    s.load(preload.items())
    for messages in batches:
        run(s, *messages)
    snap = s.snapshot()
    r = kv.KVStore.restore(snap, seed=seed)
    assert r.state_digest() == s.state_digest()
    assert (r.executed_seq, r.final_seq) == (s.executed_seq, s.executed_seq)
    assert contents(r, KEYS) == contents(s, KEYS)
    assert r.snapshot() == snap
    with pytest.raises(ValueError):
        r.rollback_to(r.executed_seq - 1)
    follow = [(c, [(10**6 + j, k, UPDATE, b"n")]) for j, (c, k) in enumerate([(0, 1), (3, 2)])]
    assert results_of(run(r, *follow)) == results_of(run(s, *follow))
    assert r.state_digest() == s.state_digest()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(preload=preload_strategy, batches=batches_strategy, data=st.data())
def test_damaged_snapshots_only_raise_value_error(preload, batches, data):
    s = kv.KVStore()
    s.load(preload.items())
    for messages in batches:
        run(s, *messages)
    snap = s.snapshot()
    if data.draw(st.booleans(), label="truncate"):
        damaged = snap[:data.draw(st.integers(0, len(snap) - 1), label="length")]
    else:
        bit = data.draw(st.integers(0, 8 * len(snap) - 1), label="bit")
        damaged = bytearray(snap)
        damaged[bit // 8] ^= 1 << (bit % 8)
        damaged = bytes(damaged)
    with pytest.raises(ValueError):
        kv.KVStore.restore(damaged)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=200), count_fields=st.tuples(*[st.integers(0, 40)] * 3))
def test_hostile_snapshots_with_valid_checksum_only_raise_value_error(body, count_fields):
    data = kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", *count_fields) + body
    try:
        r = kv.KVStore.restore(hostile(data))
    except ValueError:
        return
    assert r.snapshot() == hostile(data)            # accepted only if canonical


# ---------------------------------------------------------------------------------------
# stateful: executes, rollbacks, finalizes and digests interleaved freely


class KVMachine(RuleBasedStateMachine):
    @initialize(preload=preload_strategy, zero=st.booleans())
    def setup(self, preload, zero):
        self.store = kv.KVStore(seed=3, zero_payload=zero, capacity=1)
        self.store.load(preload.items())
        model = Model(zero)
        model.records.update(preload)
        self.models = [model]               # models[k] = state after seq k
        self.final = 0
        self.captured = {}                  # captured seq -> snapshot() at that seq

    @rule(messages=messages_strategy)
    def execute(self, messages):
        model = self.models[-1].copy()
        expected = model.execute(messages)
        assert results_of(run(self.store, *messages)) == expected
        self.models.append(model)

    @precondition(lambda self: len(self.models) > 1)
    @rule(data=st.data())
    def rollback(self, data):
        k = data.draw(st.integers(self.final, len(self.models) - 1))
        self.store.rollback_to(k)
        del self.models[k + 1:]
        self.captured = {j: v for j, v in self.captured.items() if j <= k}

    @precondition(lambda self: len(self.models) > 1)
    @rule(data=st.data())
    def finalize(self, data):
        k = data.draw(st.integers(0, len(self.models) - 1))
        self.store.finalize(k)
        self.final = max(self.final, k)
        self.captured = {j: v for j, v in self.captured.items() if j >= self.final}

    @rule()
    def digest(self):
        assert self.store.state_digest() == self.models[-1].digest()

    @rule()
    def capture(self):
        # what a checkpoint keeps: the eager snapshot is what snapshot_at must reproduce
        k = self.store.executed_seq
        snap = self.store.snapshot()
        assert self.store.capture() == self.models[-1].digest() == snap[40:72]
        self.captured[k] = snap

    @rule()
    def snapshots_of_captured_states(self):
        for k, snap in self.captured.items():
            assert self.store.snapshot_at(k) == snap

    @invariant()
    def same_contents(self):
        if hasattr(self, "store"):
            assert contents(self.store, KEYS) == self.models[-1].records
            assert (self.store.executed_seq, self.store.final_seq) == (
                len(self.models) - 1, self.final)
            assert self.store.captured == sorted(self.captured)


KVMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_kv_state_machine = KVMachine.TestCase


def test_noop_positions_count_as_executed_and_roll_back():
    s = kv.KVStore()
    run(s, (1, [(1, 5, INSERT, b"a")]))
    digest = s.state_digest()
    assert s.execute_noop(2) is None
    assert s.executed_seq == 2 and s.state_digest() == digest
    with pytest.raises(ValueError):
        s.execute_noop(4)
    run(s, (1, [(2, 5, UPDATE, b"b")]))
    s.rollback_to(2)
    assert s.get(5) == b"a" and s.executed_seq == 2
    s.rollback_to(1)
    assert s.executed_seq == 1 and s.state_digest() == digest


# ---------------------------------------------------------------------------------------
# checkpoints (issue 15): the incremental digest equals a full recomputation, and a
# captured checkpoint's snapshot, encoded later, is exactly the eager snapshot of then


def same_bucket_keys(count, bucket=7):
    keys, key = [], 0
    while len(keys) < count:
        if fmix64(key) >> 54 == bucket:
            keys.append(key)
        key += 1
    return keys


def test_bucket_digest_of_large_values_matches_the_definition():
    # several maximal values in one bucket overflow the digest's gather buffer
    keys = same_bucket_keys(6)
    records = {k: bytes([i]) * codec.MAX_VALUE for i, k in enumerate(keys)}
    records[keys[2]] = b""
    s = kv.KVStore()
    s.load(records.items())
    assert s.state_digest() == reference_digest(records, {})
    run(s, (1, [(1, keys[2], UPDATE, b"z" * codec.MAX_VALUE), (2, keys[0], UPDATE, b"")]))
    records[keys[2]], records[keys[0]] = b"z" * codec.MAX_VALUE, b""
    assert s.state_digest() == reference_digest(records, {1: (2, 0b11)})


def test_snapshot_at_bounds():
    s = kv.KVStore()
    s.load_sequential(50, 8)
    s.capture()
    s.load_sequential(60, 8)               # a load changes the state at 0: capture dropped
    assert s.captured == []
    with pytest.raises(ValueError):
        s.snapshot_at(0)
    loaded = s.snapshot()
    assert s.capture() == loaded[40:72] and s.snapshot_at(0) == loaded
    for t in range(1, 7):
        run(s, (1, [(t, t, UPDATE, b"x%d" % t)]), (2, [(t, 100 + t, INSERT, b"n")]))
        s.capture()
    with pytest.raises(ValueError):
        s.snapshot_at(7)                    # never executed
    s.rollback_to(4)                        # 5 and 6 are gone with their undo entries
    assert s.captured == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        s.snapshot_at(5)
    s.finalize(2)                           # 0 and 1: their undo entries are freed
    assert s.captured == [2, 3, 4]
    with pytest.raises(ValueError):
        s.snapshot_at(1)
    run(s, (3, [(1, 3, RMW, b"y")]), (1, [(5, 100 + 3, UPDATE, b"m")]))
    r = kv.KVStore.restore(s.snapshot_at(3))
    assert (r.executed_seq, r.get(3), r.get(4), r.get(103), r.get(104), len(r)) == \
        (3, b"x3", kv.KVStore.restore(loaded).get(4), b"n", None, 63)
    assert [r.client_state(c) for c in (1, 2, 3)] == [(3, 0b111), (3, 0b111), None]
    with pytest.raises(ValueError):
        s.snapshot_at(5)                    # executed again, not captured again
    s.capture()
    assert s.snapshot_at(5) == s.snapshot() and s.get(103) == b"m"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_checkpoints_under_random_load_match_full_recomputation(seed):
    """2,000 keys, random READ/UPDATE/INSERT/RMW from 40 clients, a checkpoint every 8
    batches, the stable one two checkpoints behind (finalized), rollbacks now and then
    (undone inserts are deletions): at every checkpoint the incremental digest equals a
    from-scratch one, and every held checkpoint encodes, later, its eager snapshot."""
    import random
    rng = random.Random(seed)
    s = kv.KVStore(seed=seed, capacity=16)
    s.load((k, rng.randbytes(rng.randrange(0, 120))) for k in range(0, 4000, 2))
    t = {c: 0 for c in range(40)}
    eager = {}                                         # checkpoint -> snapshot() then
    for _ in range(120):
        messages = []
        for c in rng.sample(range(40), 10):
            ops = []
            for _ in range(rng.randrange(1, 4)):
                t[c] += 1
                code = rng.choice([READ, UPDATE, UPDATE, INSERT, RMW])
                ops.append((t[c], rng.randrange(4200), code,
                            b"" if code == READ else rng.randbytes(rng.randrange(0, 120))))
            messages.append((c, ops))
        run(s, *messages)
        k = s.executed_seq
        if k % 8 == 0:
            eager[k] = s.snapshot()
            assert s.capture() == eager[k][40:72]
            # a full recomputation: restore hashes every bucket from scratch
            incremental = s.state_digest()
            assert kv.KVStore.restore(eager[k]).state_digest() == incremental
            assert s.state_digest_full() == incremental == s.state_digest()
            if k >= 24:
                s.finalize(k - 16)
        if rng.random() < 0.05 and s.executed_seq > s.final_seq:
            back = rng.randrange(s.final_seq, s.executed_seq)
            s.rollback_to(back)
            eager = {j: v for j, v in eager.items() if j <= back}
        eager = {j: v for j, v in eager.items() if j >= s.final_seq}
        assert s.captured == sorted(eager)
        for j, snap in eager.items():
            assert s.snapshot_at(j) == snap
    records = {k: s.get(k) for k in range(4200) if s.get(k) is not None}
    clients = {c: s.client_state(c) for c in range(40) if s.client_state(c) is not None}
    assert s.state_digest() == reference_digest(records, clients)


@pytest.mark.parametrize("seed", [4, 5])
def test_snapshot_of_many_random_keys_is_canonical(seed):
    # enough records for the radix sort, keys over the whole 64-bit range (every byte)
    import random
    rng = random.Random(seed)
    records = {rng.getrandbits(64): rng.randbytes(rng.randrange(0, 40)) for _ in range(3000)}
    records.update({0: b"lo", MASK64: b"hi", 1 << 56: b"", (1 << 56) - 1: b"x"})
    s = kv.KVStore(seed=seed)
    s.load(records.items())
    run(s, (7, [(1, 0, UPDATE, b"lo2")]))
    records[0] = b"lo2"
    snap = s.snapshot()
    body = (kv.SNAPSHOT_MAGIC + struct.pack("<QQQ", 1, len(records), 1)
            + reference_digest(records, {7: (1, 1)})
            + b"".join(struct.pack("<QH", k, len(records[k])) + records[k]
                       for k in sorted(records))
            + client_record(7, 1, 1))
    assert snap == body + hashlib.sha256(body).digest()
    s.capture()
    run(s, (7, [(2, MASK64, UPDATE, b"later")]))
    assert s.snapshot_at(1) == snap
