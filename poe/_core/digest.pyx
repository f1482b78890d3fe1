# cython: binding=False
"""Domain-separated SHA-256 digests of requests, batches and ledger blocks, plus table keys.

What it is for: every digest that another replica must reproduce bit for bit (PROTOCOL.md
§1.6, §6.1, §6.4): the request digest D(cm), the batch digest h = D(B), the ledger block hash
H(B_k) and the genesis block; computed in C (sha256.h, SHA-NI when the CPU has it) with no
Python object per request. ``table_key`` is the one non-cryptographic hash here (xxh3) for
in-memory tables.

What it must never do: change an encoding below without a new domain tag (that is a protocol
change), hash anything without its domain tag, accept a digest that is not exactly 32 bytes or
a sequence number outside u64, or let ``table_key`` decide anything an adversary could exploit.

Encodings (all integers little-endian; || is concatenation):
    request_digest(cm)   = SHA-256("PoE/REQ/v1" || cm)            cm: signed client message
    batch_digest(B)      = SHA-256("PoE/BATCH/v1" || u32(count) || D(cm_1) || ... || D(cm_count))
    block_hash(k, d, p)  = SHA-256("PoE/BLOCK/v1" || u64(k) || d || p)
    genesis_digest(...)  = SHA-256("PoE/GENESIS/v1" || u32(len(config_id)) || config_id
                                   || u32(primary_id) || u32(len(public_keys)) || public_keys)
    genesis_hash(...)    = block_hash(0, genesis_digest(...), 32 zero bytes)
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

from poe._core.codec cimport Batch, poe_wr32, poe_wr64

import xxhash

cdef extern from "sha256.h" nogil:
    ctypedef struct poe_sha256_ctx:
        pass
    void poe_sha256_init(poe_sha256_ctx* c)
    void poe_sha256_update(poe_sha256_ctx* c, const void* data, size_t n)
    void poe_sha256_final(poe_sha256_ctx* c, unsigned char* out)
    int poe_sha256_select()
    int poe_sha256_use(int accelerated)
    int poe_sha256_accelerated()
    int poe_sha256_cpu_has_shani()

DIGEST_SIZE = 32
REQUEST_TAG = b"PoE/REQ/v1"
BATCH_TAG = b"PoE/BATCH/v1"
BLOCK_TAG = b"PoE/BLOCK/v1"
GENESIS_TAG = b"PoE/GENESIS/v1"

cdef enum:
    _REQ_TAG_LEN = 10
    _BATCH_TAG_LEN = 12
    _BLOCK_TAG_LEN = 12
    _NOGIL_BYTES = 16384     # release the GIL only when hashing at least this much
cdef long long _U32_MAX = 0xFFFFFFFF

cdef const char* _REQ_TAG = b"PoE/REQ/v1"
cdef const char* _BATCH_TAG = b"PoE/BATCH/v1"
cdef const char* _BLOCK_TAG = b"PoE/BLOCK/v1"
cdef unsigned char _ZERO32[32]
memset(_ZERO32, 0, 32)

# Each module that includes sha256.h has its own block-function pointer: choose it here.
poe_sha256_select()

_xxh3_64_intdigest = xxhash.xxh3_64_intdigest


# ---- C helpers --------------------------------------------------------------------------------

cdef inline void _request_digest(const unsigned char* cm, size_t n,
                                 unsigned char* out) noexcept nogil:
    cdef poe_sha256_ctx c
    poe_sha256_init(&c)
    poe_sha256_update(&c, _REQ_TAG, _REQ_TAG_LEN)
    poe_sha256_update(&c, cm, n)
    poe_sha256_final(&c, out)


cdef void _batch_digest(const unsigned char* data, const uint32_t* offsets, uint32_t count,
                        unsigned char* out) noexcept nogil:
    """The batch digest over client messages data[offsets[i]:offsets[i+1]], i < count."""
    cdef poe_sha256_ctx c
    cdef unsigned char head[4]
    cdef unsigned char d[32]
    cdef uint32_t i
    poe_sha256_init(&c)
    poe_sha256_update(&c, _BATCH_TAG, _BATCH_TAG_LEN)
    poe_wr32(head, count)
    poe_sha256_update(&c, head, 4)
    for i in range(count):
        _request_digest(data + offsets[i], offsets[i + 1] - offsets[i], d)
        poe_sha256_update(&c, d, 32)
    poe_sha256_final(&c, out)


cdef void _block_hash(uint64_t seq, const unsigned char* d, const unsigned char* prev,
                      unsigned char* out) noexcept nogil:
    cdef poe_sha256_ctx c
    cdef unsigned char k[8]
    poe_sha256_init(&c)
    poe_sha256_update(&c, _BLOCK_TAG, _BLOCK_TAG_LEN)
    poe_wr64(k, seq)
    poe_sha256_update(&c, k, 8)
    poe_sha256_update(&c, d, 32)
    poe_sha256_update(&c, prev, 32)
    poe_sha256_final(&c, out)


cdef inline bytes _new32():
    return PyBytes_FromStringAndSize(NULL, 32)


cdef bytes _digest32(object value, str name):
    """``value`` as a 32-byte bytes object (ValueError/TypeError at the API edge)."""
    if type(value) is not bytes:
        value = _as_bytes(value, name)
    if PyBytes_GET_SIZE(value) != 32:
        raise ValueError(f"{name} must be exactly 32 bytes, got {PyBytes_GET_SIZE(value)}")
    return value


cdef uint64_t _u64(object value, str name) except? 0:
    """``value`` (an int) as u64; ValueError outside 0 <= value < 2**64."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0 or value > 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"{name} must satisfy 0 <= {name} < 2**64, got {value}")
    return <uint64_t>value


cdef uint32_t _u32(object value, str name) except? 0:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0 or value > _U32_MAX:
        raise ValueError(f"{name} must satisfy 0 <= {name} < 2**32, got {value}")
    return <uint32_t>value


cdef void _update_object(poe_sha256_ctx* c, object data) except *:
    """Feed a bytes-like object into c (bytes directly, anything else via the buffer protocol)."""
    cdef Py_buffer view
    if type(data) is bytes:
        poe_sha256_update(c, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
        return
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        poe_sha256_update(c, view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)


# ---- public API -------------------------------------------------------------------------------

def request_digest(cm) -> bytes:
    """D(cm) = SHA-256("PoE/REQ/v1" || cm) of one full signed client message (any bytes-like).

    The tag separates request digests from every other digest (PROTOCOL.md §1.6, §6.1).
    """
    cdef bytes out = _new32()
    cdef unsigned char* o = <unsigned char*>PyBytes_AS_STRING(out)
    cdef const unsigned char* p
    cdef size_t n
    cdef Py_buffer view
    if type(cm) is bytes:
        p = <const unsigned char*>PyBytes_AS_STRING(cm)
        n = <size_t>PyBytes_GET_SIZE(cm)
        if n >= _NOGIL_BYTES:
            with nogil:
                _request_digest(p, n, o)
        else:
            _request_digest(p, n, o)
        return out
    PyObject_GetBuffer(cm, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char*>view.buf
        n = <size_t>view.len
        if n >= _NOGIL_BYTES:
            with nogil:
                _request_digest(p, n, o)
        else:
            _request_digest(p, n, o)
    finally:
        PyBuffer_Release(&view)
    return out


def batch_digest(Batch batch not None) -> bytes:
    """h = D(B) of a validated codec.Batch, computed once and cached in the batch.

    SHA-256("PoE/BATCH/v1" || u32(count) || D(cm_1) || ... || D(cm_count)) in one C loop over
    the batch buffer (PROTOCOL.md §6.1). A second call returns the cached bytes object.
    """
    if batch._digest is not None:
        return batch._digest
    if batch.count < 0 or batch.count > _U32_MAX:
        raise ValueError(f"batch of {batch.count} client messages does not fit u32")
    cdef bytes out = _new32()
    cdef unsigned char* o = <unsigned char*>PyBytes_AS_STRING(out)
    cdef const unsigned char* data = batch.data
    cdef const uint32_t* offsets = batch.offsets
    cdef uint32_t count = <uint32_t>batch.count
    with nogil:
        _batch_digest(data, offsets, count, o)
    batch._digest = out
    return out


def batch_digest_of(messages) -> bytes:
    """The batch digest of a sequence of signed client messages (bytes-like), without a Batch.

    Same encoding as ``batch_digest``; the reference path for tests and for code holding
    plain messages. Messages are not validated here.
    """
    cdef poe_sha256_ctx c
    cdef unsigned char head[4]
    cdef unsigned char d[32]
    cdef Py_buffer view
    cdef Py_ssize_t count = len(messages)
    if count > _U32_MAX:
        raise ValueError(f"batch of {count} client messages does not fit u32")
    poe_sha256_init(&c)
    poe_sha256_update(&c, _BATCH_TAG, _BATCH_TAG_LEN)
    poe_wr32(head, <uint32_t>count)
    poe_sha256_update(&c, head, 4)
    for cm in messages:
        count -= 1
        if type(cm) is bytes:
            _request_digest(<const unsigned char*>PyBytes_AS_STRING(cm),
                            <size_t>PyBytes_GET_SIZE(cm), d)
        else:
            PyObject_GetBuffer(cm, &view, PyBUF_SIMPLE)
            _request_digest(<const unsigned char*>view.buf, <size_t>view.len, d)
            PyBuffer_Release(&view)
        poe_sha256_update(&c, d, 32)
    if count != 0:
        raise ValueError("messages changed length while being hashed")
    cdef bytes out = _new32()
    poe_sha256_final(&c, <unsigned char*>PyBytes_AS_STRING(out))
    return out


def block_hash(seq, batch_digest, prev_hash) -> bytes:
    """H(B_k) = SHA-256("PoE/BLOCK/v1" || u64(seq) || batch_digest || prev_hash) (§6.4).

    The view and the certificate are block metadata and deliberately not hashed. Raises
    ValueError unless 0 <= seq < 2**64 and both digests are exactly 32 bytes.
    """
    cdef uint64_t k = _u64(seq, "seq")
    cdef bytes d = _digest32(batch_digest, "batch_digest")
    cdef bytes prev = _digest32(prev_hash, "prev_hash")
    cdef bytes out = _new32()
    _block_hash(k, <const unsigned char*>PyBytes_AS_STRING(d),
                <const unsigned char*>PyBytes_AS_STRING(prev),
                <unsigned char*>PyBytes_AS_STRING(out))
    return out


def genesis_digest(config_id, primary_id, public_keys) -> bytes:
    """The digest field d of the genesis block B_0 (PROTOCOL.md §6.4), from static config only.

    SHA-256("PoE/GENESIS/v1" || u32(len(config_id)) || config_id || u32(primary_id)
            || u32(len(public_keys)) || public_keys), integers little-endian.
    ``config_id``: bytes naming the configuration; ``primary_id``: id of primary(0), normally 0;
    ``public_keys``: the canonical concatenation of the replicas' public keys in replica-id
    order (the caller fixes that layout). Every variable field is length-prefixed, so no two
    different inputs share an encoding.
    """
    cdef uint32_t primary = _u32(primary_id, "primary_id")
    cdef bytes cfg = _as_bytes(config_id, "config_id")
    cdef bytes keys = _as_bytes(public_keys, "public_keys")
    if PyBytes_GET_SIZE(cfg) > _U32_MAX or PyBytes_GET_SIZE(keys) > _U32_MAX:
        raise ValueError("config_id and public_keys must each be shorter than 2**32 bytes")
    cdef poe_sha256_ctx c
    cdef unsigned char u[4]
    poe_sha256_init(&c)
    _update_object(&c, GENESIS_TAG)
    poe_wr32(u, <uint32_t>PyBytes_GET_SIZE(cfg))
    poe_sha256_update(&c, u, 4)
    _update_object(&c, cfg)
    poe_wr32(u, primary)
    poe_sha256_update(&c, u, 4)
    poe_wr32(u, <uint32_t>PyBytes_GET_SIZE(keys))
    poe_sha256_update(&c, u, 4)
    _update_object(&c, keys)
    cdef bytes out = _new32()
    poe_sha256_final(&c, <unsigned char*>PyBytes_AS_STRING(out))
    return out


def genesis_hash(config_id, primary_id, public_keys) -> bytes:
    """H(B_0) = block_hash(0, genesis_digest(config_id, primary_id, public_keys), 0^32).

    B_0 = {k = 0, d = genesis_digest(...), v = 0, prev = 32 zero bytes} (PROTOCOL.md §6.4);
    every replica builds the identical block locally. See ``genesis_digest`` for d's encoding.
    """
    cdef bytes d = genesis_digest(config_id, primary_id, public_keys)
    cdef bytes out = _new32()
    _block_hash(0, <const unsigned char*>PyBytes_AS_STRING(d), _ZERO32,
                <unsigned char*>PyBytes_AS_STRING(out))
    return out


cdef bytes _as_bytes(object value, str name):
    """``value`` (any object with the buffer protocol) as bytes; TypeError otherwise."""
    if type(value) is bytes:
        return value
    try:
        view = memoryview(value)
    except TypeError:
        raise TypeError(f"{name} must be bytes-like, not {type(value).__name__}") from None
    return view.tobytes()


def table_key(client, request_id) -> int:
    """xxh3_64 of u32le(client) || u64le(request_id): a key for in-memory tables ONLY.

    For the client dedup table and the reply cache. xxh3 is not collision resistant: never
    use this for anything an adversary could exploit (digests, signatures, ledger, or any
    decision that a collision could flip); the table must still compare the full (client, t).
    """
    cdef uint32_t c = _u32(client, "client")
    cdef uint64_t t = _u64(request_id, "request_id")
    cdef unsigned char buf[12]
    poe_wr32(buf, c)
    poe_wr64(buf + 4, t)
    return _xxh3_64_intdigest(PyBytes_FromStringAndSize(<const char*>buf, 12))


# ---- SHA-256 backend (tests and diagnostics) -------------------------------------------------

def sha256_backend() -> str:
    """The SHA-256 block function this module uses: "sha-ni" or "portable"."""
    return "sha-ni" if poe_sha256_accelerated() else "portable"


def sha256_backends() -> tuple:
    """The backends this CPU can run, fastest first."""
    return ("sha-ni", "portable") if poe_sha256_cpu_has_shani() else ("portable",)


def _set_sha256_backend(name: str) -> None:
    """For tests and benchmarks: force "sha-ni" or "portable" in this module (process-wide)."""
    if name == "portable":
        poe_sha256_use(0)
    elif name == "sha-ni":
        if poe_sha256_use(1) != 0:
            raise RuntimeError("this CPU (or build) has no SHA-NI block function")
    else:
        raise ValueError(f"unknown SHA-256 backend {name!r}; known: 'sha-ni', 'portable'")


def _sha256_parts(parts) -> bytes:
    """Plain SHA-256 of the concatenation of ``parts``, fed one update per part (tests only)."""
    cdef poe_sha256_ctx c
    poe_sha256_init(&c)
    for part in parts:
        _update_object(&c, part)
    cdef bytes out = _new32()
    poe_sha256_final(&c, <unsigned char*>PyBytes_AS_STRING(out))
    return out
