"""Digest kernel: every digest equals a pure-hashlib reference, on BOTH SHA-256 backends.

The references below are written from PROTOCOL.md §1.6, §6.1, §6.4 and the encodings in the
digest module docstring, independently of the kernel.
"""
import hashlib
import platform
import random
import struct

import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poe._core import codec, digest

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
d32 = st.binary(min_size=32, max_size=32)


# ---- pure-Python references ------------------------------------------------------------------

def ref_request(cm: bytes) -> bytes:
    return hashlib.sha256(b"PoE/REQ/v1" + bytes(cm)).digest()


def ref_batch(messages) -> bytes:
    h = hashlib.sha256(b"PoE/BATCH/v1" + struct.pack("<I", len(messages)))
    for cm in messages:
        h.update(ref_request(cm))
    return h.digest()


def ref_block(seq: int, d: bytes, prev: bytes) -> bytes:
    return hashlib.sha256(b"PoE/BLOCK/v1" + struct.pack("<Q", seq) + d + prev).digest()


def ref_genesis_digest(config_id: bytes, primary: int, keys: bytes) -> bytes:
    return hashlib.sha256(
        b"PoE/GENESIS/v1" + struct.pack("<I", len(config_id)) + config_id
        + struct.pack("<I", primary) + struct.pack("<I", len(keys)) + keys).digest()


# ---- strategies --------------------------------------------------------------------------------

@st.composite
def ops(draw, max_ops=4):
    n = draw(st.integers(1, max_ops))
    ts = sorted(draw(st.sets(u64, min_size=n, max_size=n)))
    out = []
    for t in ts:
        code = draw(st.sampled_from([codec.OP_READ, codec.OP_UPDATE, codec.OP_INSERT,
                                     codec.OP_RMW]))
        value = b"" if code == codec.OP_READ else draw(st.binary(max_size=300))
        out.append((t, draw(u64), code, value))
    return out


@st.composite
def client_messages(draw):
    sig = draw(st.binary(min_size=64, max_size=64))
    return codec.pack_client_message(draw(u32), draw(ops())) + sig


# ---- backends ----------------------------------------------------------------------------------

DEFAULT_BACKEND = digest.sha256_backend()


def cpu_has_sha_ni() -> bool:
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " sha_ni" in line for line in f)
    except OSError:
        return "sha-ni" in digest.sha256_backends()


@pytest.fixture(params=digest.sha256_backends())
def backend(request):
    digest._set_sha256_backend(request.param)
    assert digest.sha256_backend() == request.param
    yield request.param
    digest._set_sha256_backend(DEFAULT_BACKEND)


def test_default_backend_is_the_fastest_available():
    assert DEFAULT_BACKEND == digest.sha256_backends()[0]
    if cpu_has_sha_ni():
        assert digest.sha256_backends() == ("sha-ni", "portable")
        assert DEFAULT_BACKEND == "sha-ni"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown SHA-256 backend"):
        digest._set_sha256_backend("md5")
    assert digest.sha256_backend() == DEFAULT_BACKEND


# ---- raw SHA-256, both backends ----------------------------------------------------------------

def test_sha256_known_vectors(backend):
    assert digest._sha256_parts([b"abc"]).hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert digest._sha256_parts([]) == hashlib.sha256(b"").digest()
    million_a = b"a" * 1_000_000
    assert digest._sha256_parts([million_a]).hex() == (
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")


def test_sha256_all_lengths_0_to_300(backend):
    rng = random.Random(300)
    data = bytes(rng.getrandbits(8) for _ in range(300))
    for n in range(301):
        want = hashlib.sha256(data[:n]).digest()
        assert digest._sha256_parts([data[:n]]) == want, n
        cut = rng.randint(0, n)
        assert digest._sha256_parts([data[:cut], data[cut:n]]) == want, (n, cut)


def test_sha256_byte_at_a_time(backend):
    data = bytes(range(256)) * 2
    assert digest._sha256_parts([data[i:i + 1] for i in range(len(data))]) == (
        hashlib.sha256(data).digest())


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_sha256_random_splits(backend, data, cuts):
    points = sorted({min(c, len(data)) for c in cuts})
    parts, start = [], 0
    for p in points + [len(data)]:
        parts.append(data[start:p])
        start = p
    assert digest._sha256_parts(parts) == hashlib.sha256(data).digest()


def test_sha256_accepts_any_buffer(backend):
    data = bytes(range(200))
    want = hashlib.sha256(data).digest()
    assert digest._sha256_parts([bytearray(data[:70]), memoryview(data)[70:]]) == want


# ---- request and batch digests -----------------------------------------------------------------

@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cm=st.binary(max_size=1000))
def test_request_digest_matches_reference(backend, cm):
    want = ref_request(cm)
    assert digest.request_digest(cm) == want
    assert digest.request_digest(bytearray(cm)) == want
    assert digest.request_digest(memoryview(cm)) == want


def test_request_digest_large_message_releases_gil_path(backend):
    big = bytes(range(256)) * 1000           # above the no-GIL threshold
    assert digest.request_digest(big) == ref_request(big)
    assert digest.request_digest(memoryview(big)) == ref_request(big)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(client_messages(), min_size=1, max_size=8))
def test_batch_digest_matches_reference(backend, messages):
    batch = codec.Batch.from_messages(messages)
    want = ref_batch(messages)
    assert digest.batch_digest_of(messages) == want
    assert digest.batch_digest(batch) == want
    assert digest.batch_digest_of([batch.message(i) for i in range(len(batch))]) == want
    assert [digest.request_digest(batch.message(i)) for i in range(len(batch))] == (
        [ref_request(m) for m in messages])


def test_batch_digest_of_a_full_batch(backend):
    rng = random.Random(7)
    messages = [codec.pack_client_message(c, [(1, c, codec.OP_UPDATE, rng.randbytes(150))])
                + rng.randbytes(64) for c in range(100)]
    batch = codec.Batch.from_messages(messages)
    assert digest.batch_digest(batch) == ref_batch(messages)


def test_batch_digest_is_cached_in_the_batch():
    messages = [codec.pack_client_message(3, [(1, 2, codec.OP_READ, b"")]) + b"s" * 64]
    batch = codec.Batch.from_messages(messages)
    first = digest.batch_digest(batch)
    assert digest.batch_digest(batch) is first
    assert first == ref_batch(messages)


def test_batch_digest_depends_on_order_and_count():
    a = codec.pack_client_message(1, [(1, 1, codec.OP_READ, b"")]) + b"a" * 64
    b = codec.pack_client_message(2, [(1, 1, codec.OP_READ, b"")]) + b"b" * 64
    assert digest.batch_digest_of([a, b]) != digest.batch_digest_of([b, a])
    assert digest.batch_digest_of([a]) != digest.batch_digest_of([a, a])
    assert digest.batch_digest_of([]) == ref_batch([])


# ---- blocks and genesis ------------------------------------------------------------------------

@given(seq=u64, d=d32, prev=d32)
def test_block_hash_matches_reference(seq, d, prev):
    assert digest.block_hash(seq, d, prev) == ref_block(seq, d, prev)
    assert digest.block_hash(seq, bytearray(d), memoryview(prev)) == ref_block(seq, d, prev)


@given(config_id=st.binary(max_size=64), primary=u32, keys=st.binary(max_size=400))
def test_genesis_matches_reference(config_id, primary, keys):
    d = ref_genesis_digest(config_id, primary, keys)
    assert digest.genesis_digest(config_id, primary, keys) == d
    assert digest.genesis_hash(config_id, primary, keys) == ref_block(0, d, bytes(32))


def test_genesis_fields_are_length_prefixed():
    # without length prefixes these pairs would have the same concatenation
    assert digest.genesis_hash(b"ab", 0, b"c") != digest.genesis_hash(b"a", 0, b"bc")
    assert digest.genesis_hash(b"", 0, b"k" * 96) != digest.genesis_hash(b"k" * 96, 0, b"")
    assert digest.genesis_hash(b"cfg", 0, b"k") != digest.genesis_hash(b"cfg", 1, b"k")


def test_ledger_chain_from_genesis():
    prev = digest.genesis_hash(b"poe-test", 0, b"\x01" * 96)
    ref = ref_block(0, ref_genesis_digest(b"poe-test", 0, b"\x01" * 96), bytes(32))
    assert prev == ref
    for k in range(1, 20):
        d = hashlib.sha256(k.to_bytes(8, "little")).digest()
        prev, ref = digest.block_hash(k, d, prev), ref_block(k, d, ref)
        assert prev == ref


# ---- domain separation -------------------------------------------------------------------------

def test_domain_tags_are_distinct_and_prefix_free():
    tags = [digest.REQUEST_TAG, digest.BATCH_TAG, digest.BLOCK_TAG, digest.GENESIS_TAG]
    for a in tags:
        for b in tags:
            if a is not b:
                assert not b.startswith(a), (a, b)


@given(payload=st.binary(max_size=200), seq=u64, d=d32, prev=d32)
def test_same_bytes_never_give_the_same_digest_across_domains(payload, seq, d, prev):
    plain = hashlib.sha256(payload).digest()
    assert digest.request_digest(payload) != plain
    # the bytes that follow each tag, hashed under another tag, give another digest
    block_body = struct.pack("<Q", seq) + d + prev
    assert digest.request_digest(block_body) != digest.block_hash(seq, d, prev)
    batch_body = struct.pack("<I", 1) + digest.request_digest(payload)
    assert digest.request_digest(batch_body) != digest.batch_digest_of([payload])
    assert digest.batch_digest_of([payload]) != digest.request_digest(payload)


# ---- table keys --------------------------------------------------------------------------------

@given(client=u32, t=u64)
def test_table_key_is_xxh3_of_the_packed_pair(client, t):
    want = xxhash.xxh3_64_intdigest(struct.pack("<IQ", client, t))
    assert digest.table_key(client, t) == want
    assert 0 <= want < 2**64


def test_table_key_separates_neighbours():
    keys = {digest.table_key(c, t) for c in range(50) for t in range(50)}
    assert len(keys) == 2500


# ---- argument errors at the API edge -----------------------------------------------------------

@pytest.mark.parametrize("seq", [-1, 2**64, 2**70])
def test_block_hash_rejects_seq_out_of_range(seq):
    with pytest.raises(ValueError, match="seq"):
        digest.block_hash(seq, bytes(32), bytes(32))


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_block_hash_rejects_wrong_digest_sizes(size):
    with pytest.raises(ValueError, match="batch_digest must be exactly 32 bytes"):
        digest.block_hash(1, bytes(size), bytes(32))
    with pytest.raises(ValueError, match="prev_hash must be exactly 32 bytes"):
        digest.block_hash(1, bytes(32), bytearray(size))


def test_block_hash_rejects_wrong_types():
    with pytest.raises(TypeError):
        digest.block_hash(1.0, bytes(32), bytes(32))
    with pytest.raises(TypeError):
        digest.block_hash(True, bytes(32), bytes(32))
    with pytest.raises(TypeError):
        digest.block_hash(1, "x" * 32, bytes(32))
    with pytest.raises(TypeError):
        digest.block_hash(1, 32, bytes(32))        # an int is not 32 zero bytes


def test_genesis_rejects_bad_arguments():
    with pytest.raises(ValueError, match="primary_id"):
        digest.genesis_hash(b"cfg", -1, b"")
    with pytest.raises(ValueError, match="primary_id"):
        digest.genesis_hash(b"cfg", 2**32, b"")
    with pytest.raises(TypeError):
        digest.genesis_hash("cfg", 0, b"")


def test_table_key_rejects_out_of_range():
    with pytest.raises(ValueError, match="client"):
        digest.table_key(-1, 0)
    with pytest.raises(ValueError, match="client"):
        digest.table_key(2**32, 0)
    with pytest.raises(ValueError, match="request_id"):
        digest.table_key(0, 2**64)
    with pytest.raises(ValueError, match="request_id"):
        digest.table_key(0, -1)


def test_request_and_batch_reject_non_buffers():
    with pytest.raises(TypeError):
        digest.request_digest(12)
    with pytest.raises(TypeError):
        digest.request_digest("text")
    with pytest.raises(TypeError):
        digest.batch_digest(None)
    with pytest.raises(TypeError):
        digest.batch_digest([b"x"])
    with pytest.raises(TypeError):
        digest.batch_digest_of([b"ok", 5])
