# cython: freethreading_compatible = False
"""Binary wire format of every poe message (docs/wire.md is the normative description).

What it is for: encoding and decoding the envelope and the per-kind bodies of PROPOSE,
SUPPORT, CERTIFY, INFORM, VC-REQUEST, NV-PROPOSE, CHECKPOINT, FETCH / FETCH-REPLY,
STATE-REQ / STATE-REPLY and client requests (PROTOCOL.md §2.3, §4.8, §5).

What it must never do: read a byte it has not bounds-checked, raise anything but
``WireError`` on malformed input, copy request payloads of an immutable buffer while
decoding, or decide anything about the protocol (authentication and policy belong to
the caller; this module only checks structure and declared maxima).
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

MAGIC = b"PE"
VERSION = 1
HEADER_SIZE = POE_HEADER_SIZE
MAC_SIZE = POE_MAC_SIZE
SIG_SIZE = POE_SIG_SIZE
DIGEST_SIZE = POE_DIGEST_SIZE
MAX_BODY = POE_MAX_BODY
INFORM_TAG_SIZE = 16               # an INFORM entry's tag: the message's signature[:16]
MAX_VALUE = POE_MAX_VALUE
MAX_OPS_PER_MESSAGE = POE_MAX_OPS_PER_MSG
MAX_MESSAGES_PER_BATCH = POE_MAX_MSGS_PER_BATCH
MAX_REPLICAS = POE_MAX_REPLICAS
MAX_BITMAP_BYTES = POE_MAX_BITMAP_BYTES
MAX_CERT_SIG = 128           # largest signature field accepted inside a certificate
MAX_VC_REQUESTS = 1024       # NV-PROPOSE carries nf <= MAX_REPLICAS of them

# message kinds
REQUEST = 1
PROPOSE = 2
SUPPORT = 3
CERTIFY = 4
INFORM = 5
VC_REQUEST = 6
NV_PROPOSE = 7
CHECKPOINT = 8
FETCH = 9
FETCH_REPLY = 10
STATE_REQ = 11
STATE_REPLY = 12
COMMIT = 13          # PBFT baseline (poe/baselines/pbft): COMMIT(v, k, h), body as SUPPORT's
KIND_NAMES = {
    REQUEST: "REQUEST", PROPOSE: "PROPOSE", SUPPORT: "SUPPORT", CERTIFY: "CERTIFY",
    INFORM: "INFORM", VC_REQUEST: "VC-REQUEST", NV_PROPOSE: "NV-PROPOSE",
    CHECKPOINT: "CHECKPOINT", FETCH: "FETCH", FETCH_REPLY: "FETCH-REPLY",
    STATE_REQ: "STATE-REQ", STATE_REPLY: "STATE-REPLY", COMMIT: "COMMIT",
}
DEF _MAX_KIND = 13

# authentication field that follows the body (low 2 bits of flags)
AUTH_NONE = 0
AUTH_MAC = 1
AUTH_SIG = 2
cdef Py_ssize_t[3] _AUTH_LEN = [0, POE_MAC_SIZE, POE_SIG_SIZE]
DEF _FLAGS_KNOWN = 0x0007
FLAG_FINAL = 0x0004     # INFORM only: the position is at or below the sender's stable checkpoint

# operation codes and result statuses (wire.h)
OP_READ = POE_OP_READ
OP_UPDATE = POE_OP_UPDATE
OP_INSERT = POE_OP_INSERT
OP_RMW = POE_OP_RMW
ST_OK = POE_ST_OK
ST_NOT_FOUND = POE_ST_NOT_FOUND
ST_EXISTS = POE_ST_EXISTS
ST_DUPLICATE = POE_ST_DUPLICATE
ST_STALE = POE_ST_STALE

# vc-request entry types
ENTRY_CERT = 0        # TS mode: highest-view certificate for the slot
ENTRY_PREPARED = 1    # MAC mode: P_k, view-committed locally
ENTRY_SUPPORTED = 2   # MAC mode: Q_k, SUPPORT sent

# STATE-REQ wants
WANT_HEADERS = 1
WANT_BATCHES = 2
WANT_SNAPSHOT = 4

DEF VC_ENTRY_MIN = 1 + 8 + 8 + 32 + 1 + 1
DEF PROOF_SIG_SIZE = 4 + 64
DEF HEADER_ROW = 8 + 32 + 8
DEF INFORM_HEADER = 4 + 2              # u32 client | u16 entries
DEF INFORM_TAG = 16                    # the first 16 bytes of the message's Ed25519 signature
DEF INFORM_ENTRY_HEADER = 4 + 2 + INFORM_TAG   # u32 idx | u16 count | tag
DEF INFORM_ENTRY_MIN = INFORM_ENTRY_HEADER + 11


class WireError(ValueError):
    """Malformed or oversized input. ``reason`` says what was wrong; drop the message."""

    def __init__(self, reason):
        super().__init__(f"malformed message: {reason}")
        self.reason = reason


cdef inline int _need(Py_ssize_t pos, Py_ssize_t n, Py_ssize_t end, str what) except -1:
    if n < 0 or n > end - pos:
        raise WireError(f"truncated {what}: need {n} bytes at offset {pos}, have {end - pos}")
    return 0


# ---------------------------------------------------------------------------------------
# buffers


cdef class _View:
    """Holds a read-only contiguous buffer (bytes, or a read-only memoryview) alive."""
    cdef object obj               # the bytes, or the read-only memoryview
    cdef Py_buffer buf
    cdef bint held
    cdef const unsigned char* ptr
    cdef Py_ssize_t size

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.buf)
            self.held = False


cdef _View _view_of(object data):
    """Borrow ``data`` without copying if it is immutable; copy a mutable buffer once so
    that content validated here cannot change afterwards."""
    cdef _View v = _View.__new__(_View)
    cdef object mv
    if type(data) is bytes:
        v.obj = data
        v.ptr = <const unsigned char*>PyBytes_AS_STRING(data)
        v.size = PyBytes_GET_SIZE(data)
        return v
    try:
        mv = memoryview(data)
    except TypeError:
        raise WireError(f"expected a bytes-like object, got {type(data).__name__}") from None
    if not mv.readonly or not mv.c_contiguous or mv.itemsize != 1:
        data = mv.tobytes()
        v.obj = data
        v.ptr = <const unsigned char*>PyBytes_AS_STRING(data)
        v.size = PyBytes_GET_SIZE(data)
        return v
    PyObject_GetBuffer(mv, &v.buf, PyBUF_SIMPLE)
    v.held = True
    v.obj = mv
    v.ptr = <const unsigned char*>v.buf.buf
    v.size = v.buf.len
    return v


cdef inline object _slice(_View v, Py_ssize_t start, Py_ssize_t stop):
    """Zero-copy memoryview of v[start:stop]."""
    return memoryview(v.obj)[start:stop]


cdef inline bytes _copy(const unsigned char* p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char*>p, n)


# ---------------------------------------------------------------------------------------
# client messages and batches


cdef Py_ssize_t _check_client_message(const unsigned char* p, Py_ssize_t pos,
                                      Py_ssize_t end) except -1:
    """Validate one client message starting at p[pos]; return its end offset."""
    cdef Py_ssize_t start = pos
    cdef uint32_t n_ops, i
    cdef uint64_t t, last_t = 0
    cdef uint16_t vlen
    cdef uint8_t code
    _need(pos, POE_CM_HEADER, end, "client message header")
    n_ops = poe_rd16(p + pos + 4)
    if n_ops == 0 or n_ops > POE_MAX_OPS_PER_MSG:
        raise WireError(f"client message with {n_ops} operations (allowed 1..{POE_MAX_OPS_PER_MSG})")
    if poe_rd16(p + pos + 6) != 0:
        raise WireError("client message flags must be 0")
    pos += POE_CM_HEADER
    for i in range(n_ops):
        if POE_OP_HEADER > end - pos:
            _need(pos, POE_OP_HEADER, end, "operation")
        t = poe_rd64(p + pos)
        code = p[pos + 16]
        vlen = poe_rd16(p + pos + 17)
        if i > 0 and t <= last_t:
            raise WireError("request ids inside a client message must strictly increase")
        last_t = t
        if code < POE_OP_READ or code > POE_OP_RMW:
            raise WireError(f"unknown operation code {code}")
        if vlen > POE_MAX_VALUE:
            raise WireError(f"value of {vlen} bytes exceeds the maximum {POE_MAX_VALUE}")
        if code == POE_OP_READ and vlen != 0:
            raise WireError("READ carries a value")
        pos += POE_OP_HEADER
        if vlen > end - pos:
            _need(pos, vlen, end, "operation value")
        pos += vlen
    _need(pos, POE_SIG_SIZE, end, "client signature")
    return pos + POE_SIG_SIZE


cdef Batch _make_batch(_View v, Py_ssize_t pos, Py_ssize_t end, uint32_t count):
    """Validate ``count`` client messages in v[pos:end] exactly filling it."""
    cdef Batch b
    cdef uint32_t i
    cdef Py_ssize_t start = pos
    if count == 0 or count > POE_MAX_MSGS_PER_BATCH:
        raise WireError(f"batch of {count} client messages (allowed 1..{POE_MAX_MSGS_PER_BATCH})")
    if <Py_ssize_t>count * POE_CM_MIN > end - pos:
        raise WireError(f"batch count {count} does not fit in {end - pos} bytes")
    b = Batch.__new__(Batch)
    b.offsets = <uint32_t*>malloc((count + 1) * sizeof(uint32_t))
    if b.offsets == NULL:
        raise MemoryError()
    b.owner = v
    b.data = v.ptr + start
    b.count = count
    b.nops = 0
    b.offsets[0] = 0
    for i in range(count):
        b.nops += poe_rd16(v.ptr + pos + 4) if end - pos >= 8 else 0
        pos = _check_client_message(v.ptr, pos, end)
        b.offsets[i + 1] = <uint32_t>(pos - start)
    if pos != end:
        raise WireError(f"{end - pos} trailing bytes after the batch")
    b.size = end - start
    return b


cdef class Batch:
    """See codec.pxd. Created by ``decode`` (PROPOSE, FETCH-REPLY, STATE-REPLY) or by
    ``Batch.from_messages`` / ``Batch.from_body``."""

    def __dealloc__(self):
        if self.offsets != NULL:
            free(self.offsets)
            self.offsets = NULL

    @staticmethod
    def from_messages(messages):
        """A batch from signed client messages (each a bytes-like, validated here)."""
        joined = b"".join([bytes(m) if type(m) is not bytes else m for m in messages])
        cdef _View v = _view_of(joined)
        return _make_batch(v, 0, v.size, len(messages))

    @staticmethod
    def from_body(body):
        """A batch from its wire body: u32 count | client messages."""
        cdef _View v = _view_of(body)
        _need(0, 4, v.size, "batch count")
        return _make_batch(v, 4, v.size, poe_rd32(v.ptr))

    def __len__(self):
        return self.count

    @property
    def nops(self):
        """Total number of operations (requests) in the batch."""
        return self.nops

    @property
    def nbytes(self):
        return self.size

    cdef Py_ssize_t _index(self, Py_ssize_t i) except -1:
        if i < 0:
            i += self.count
        if i < 0 or i >= self.count:
            raise IndexError(f"client message {i} out of range for a batch of {self.count}")
        return i

    cdef Py_ssize_t _base(self):
        return self.data - (<_View>self.owner).ptr

    def message(self, Py_ssize_t i):
        """Client message i, signature included (zero-copy memoryview)."""
        i = self._index(i)
        base = self._base()
        return _slice(<_View>self.owner, base + self.offsets[i], base + self.offsets[i + 1])

    def messages(self):
        return [self.message(i) for i in range(self.count)]

    def signed_part(self, Py_ssize_t i):
        """The bytes the client signed (message without its signature)."""
        i = self._index(i)
        base = self._base()
        return _slice(<_View>self.owner, base + self.offsets[i],
                      base + self.offsets[i + 1] - POE_SIG_SIZE)

    def signature(self, Py_ssize_t i):
        """The client's signature on message i (64 bytes)."""
        i = self._index(i)
        return _copy(self.data + self.offsets[i + 1] - POE_SIG_SIZE, POE_SIG_SIZE)

    def client(self, Py_ssize_t i):
        i = self._index(i)
        return poe_rd32(self.data + self.offsets[i])

    def clients(self):
        return [poe_rd32(self.data + self.offsets[i]) for i in range(self.count)]

    def ops(self, Py_ssize_t i):
        """Operations of message i as (t, key, code, value) tuples (inspection only)."""
        i = self._index(i)
        return _ops_of(self.data + self.offsets[i])

    def first_request_id(self, Py_ssize_t i):
        """Request id of the first operation of message i: with the client id it names the
        message (ids strictly increase per client)."""
        i = self._index(i)
        return poe_rd64(self.data + self.offsets[i] + POE_CM_HEADER)

    def request_ids(self, Py_ssize_t i):
        """Request ids of message i."""
        i = self._index(i)
        return [op[0] for op in _ops_of(self.data + self.offsets[i])]

    @property
    def raw(self):
        """All client messages, concatenated (zero-copy memoryview)."""
        base = self._base()
        return _slice(<_View>self.owner, base, base + self.size)

    def body(self):
        """Wire body: u32 count | client messages (a new bytes object)."""
        cdef bytes out = PyBytes_FromStringAndSize(NULL, 4 + self.size)
        cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
        poe_wr32(p, <uint32_t>self.count)
        memcpy(p + 4, self.data, self.size)
        return out

    def __eq__(self, other):
        if not isinstance(other, Batch):
            return NotImplemented
        return bytes(self.raw) == bytes((<Batch>other).raw) and len(self) == len(other)

    def __hash__(self):
        return hash(bytes(self.raw))

    def __repr__(self):
        return f"Batch(messages={self.count}, ops={self.nops}, bytes={self.size})"


cdef list _ops_of(const unsigned char* p):
    cdef uint32_t n = poe_rd16(p + 4), i
    cdef Py_ssize_t pos = POE_CM_HEADER
    cdef uint16_t vlen
    out = []
    for i in range(n):
        vlen = poe_rd16(p + pos + 17)
        out.append((poe_rd64(p + pos), poe_rd64(p + pos + 8), p[pos + 16],
                    _copy(p + pos + POE_OP_HEADER, vlen)))
        pos += POE_OP_HEADER + vlen
    return out


def pack_client_message(uint32_t client, ops):
    """The signed part of a client message: u32 client | u16 n | u16 flags | ops.

    ``ops`` is a sequence of (t, key, code, value) with strictly increasing t; append the
    client's 64-byte signature over ``request_statement(result)`` to finish the message.
    """
    cdef Py_ssize_t n = len(ops), size = POE_CM_HEADER, pos
    cdef uint64_t t, last = 0
    cdef int code
    if n == 0 or n > POE_MAX_OPS_PER_MSG:
        raise ValueError(f"a client message holds 1..{POE_MAX_OPS_PER_MSG} operations, got {n}")
    checked = []
    for i, op in enumerate(ops):
        t, key, code, value = op
        value = bytes(value)
        if code < POE_OP_READ or code > POE_OP_RMW:
            raise ValueError(f"unknown operation code {code}")
        if len(value) > POE_MAX_VALUE:
            raise ValueError(f"value of {len(value)} bytes exceeds the maximum {POE_MAX_VALUE}")
        if code == POE_OP_READ and value:
            raise ValueError("READ carries no value")
        if i and t <= last:
            raise ValueError("request ids in one client message must strictly increase")
        last = t
        checked.append((t, key, code, value))
        size += POE_OP_HEADER + len(value)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    poe_wr32(p, client)
    poe_wr16(p + 4, <uint16_t>n)
    poe_wr16(p + 6, 0)
    pos = POE_CM_HEADER
    for t, key, code, value in checked:
        poe_wr64(p + pos, t)
        poe_wr64(p + pos + 8, <uint64_t>key)
        p[pos + 16] = <uint8_t>code
        poe_wr16(p + pos + 17, <uint16_t>len(value))
        memcpy(p + pos + POE_OP_HEADER, <const char*>value, len(value))
        pos += POE_OP_HEADER + len(value)
    return out


def check_client_message(cm):
    """Validate one signed client message; returns its client id."""
    cdef _View v = _view_of(cm)
    if _check_client_message(v.ptr, 0, v.size) != v.size:
        raise WireError("trailing bytes after the client message")
    return poe_rd32(v.ptr)


# ---------------------------------------------------------------------------------------
# envelope
#
#  off size field
#   0   2   magic "PE"
#   2   1   version (1)
#   3   1   kind
#   4   2   flags (bits 0-1: auth kind; others reserved, must be 0)
#   6   2   reserved (must be 0)
#   8   4   sender
#  12   4   body length
#  16   8   view
#  24   8   sequence
#  32   .   body, then the auth field (0, 32 or 64 bytes by auth kind)


cdef class Message:
    """A decoded envelope. Fields are read-only; ``signed`` is what the MAC or signature
    covers (header and body), ``auth`` the MAC or signature itself."""
    cdef readonly int kind
    cdef readonly int flags
    cdef readonly int auth_kind
    cdef readonly uint32_t sender
    cdef readonly uint64_t view
    cdef readonly uint64_t seq
    cdef _View _buf
    cdef Py_ssize_t _body_end

    @property
    def kind_name(self):
        return KIND_NAMES[self.kind]

    @property
    def final(self):
        """INFORM only: the sender vouches the position is final (stable checkpoint)."""
        return bool(self.flags & FLAG_FINAL)

    @property
    def frame(self):
        return _slice(self._buf, 0, self._buf.size)

    @property
    def signed(self):
        return _slice(self._buf, 0, self._body_end)

    @property
    def body(self):
        return _slice(self._buf, POE_HEADER_SIZE, self._body_end)

    @property
    def auth(self):
        """The MAC or signature (bytes; at most 64)."""
        return _copy(self._buf.ptr + self._body_end, self._buf.size - self._body_end)

    def __repr__(self):
        return (f"{type(self).__name__}(sender={self.sender}, view={self.view}, "
                f"seq={self.seq}, bytes={self._buf.size})")


cdef class Request(Message):
    """REQUEST: one signed client message (body); sender is the client id."""
    cdef readonly Batch batch      # a batch of exactly this one message

    @property
    def client(self):
        return self.sender

    @property
    def client_message(self):
        return self.batch.message(0)


cdef class Propose(Message):
    """PROPOSE(v, k, B): view and sequence in the header, the batch in the body."""
    cdef readonly Batch batch


cdef class Support(Message):
    """SUPPORT(v, k, h, share): share is empty in MAC mode."""
    cdef readonly bytes digest
    cdef readonly bytes share


cdef class Certify(Message):
    """CERTIFY(v, k, h, sigma, bitmap)."""
    cdef readonly bytes digest
    cdef readonly bytes bitmap
    cdef readonly bytes signature


cdef class Inform(Message):
    """INFORM(v, k, c, entries): the results of every message of client c in batch k, one
    entry per message: (idx in the batch, results) (PROTOCOL.md §2.8, docs/wire.md).

    The body is validated when decoded (entries in strictly increasing idx, request ids
    strictly increasing inside an entry); Python objects are built only when read. Entry j
    spans ``frame[offsets[j]:offsets[j + 1]]``: ``u32 idx | u16 count | result × count``."""
    cdef readonly uint32_t client
    cdef readonly Py_ssize_t n_entries
    cdef uint32_t* offsets            # n_entries + 1 frame offsets (NULL until decoded)
    cdef list _results                # entry -> tuple of (t, status, value), built on read

    def __dealloc__(self):
        if self.offsets != NULL:
            free(self.offsets)
            self.offsets = NULL

    def __len__(self):
        return self.n_entries

    cdef Py_ssize_t _entry(self, Py_ssize_t j) except -1:
        if j < 0 or j >= self.n_entries:
            raise IndexError(f"entry {j} out of range for an INFORM of {self.n_entries}")
        return j

    def index(self, Py_ssize_t j):
        """Position (idx) in batch k of the client message entry j answers."""
        j = self._entry(j)
        return poe_rd32(self._buf.ptr + self.offsets[j])

    def request_id(self, Py_ssize_t j):
        """First request id of entry j: with the client id it names the message."""
        j = self._entry(j)
        return poe_rd64(self._buf.ptr + self.offsets[j] + INFORM_ENTRY_HEADER)

    def n_results(self, Py_ssize_t j):
        j = self._entry(j)
        return poe_rd16(self._buf.ptr + self.offsets[j] + 4)

    def tag(self, Py_ssize_t j):
        """Entry j's tag: the first 16 bytes of the answered message's client signature
        (one key, one content, one signature): a client knows which of its messages it is."""
        j = self._entry(j)
        return _copy(self._buf.ptr + self.offsets[j] + 6, INFORM_TAG)

    def entry(self, Py_ssize_t j):
        """Entry j as bytes (idx, count, tag, results): two replicas agree on a message iff
        (view, seq, entry) are equal (PROTOCOL.md §2.4: equal (v, k, idx, r))."""
        j = self._entry(j)
        return _copy(self._buf.ptr + self.offsets[j], self.offsets[j + 1] - self.offsets[j])

    def votes(self):
        """[(first request id, result count, entry bytes)] for every entry: what a client
        needs to count this INFORM toward each message, in one call (the tag is bytes
        6..22 of the entry)."""
        cdef const unsigned char* p = self._buf.ptr
        cdef Py_ssize_t j
        cdef uint32_t a, b
        out = []
        for j in range(self.n_entries):
            a = self.offsets[j]
            b = self.offsets[j + 1]
            out.append((poe_rd64(p + a + INFORM_ENTRY_HEADER), poe_rd16(p + a + 4),
                        _copy(p + a, b - a)))
        return out

    def results(self, Py_ssize_t j):
        """((t, status, value), ...) of entry j in request order."""
        cdef const unsigned char* p
        cdef Py_ssize_t pos
        cdef int i, count
        cdef uint16_t rlen
        j = self._entry(j)
        if self._results is None:
            self._results = [None] * self.n_entries
        cached = self._results[j]
        if cached is not None:
            return cached
        p = self._buf.ptr
        pos = self.offsets[j]
        count = poe_rd16(p + pos + 4)
        pos += INFORM_ENTRY_HEADER
        out = []
        for i in range(count):
            rlen = poe_rd16(p + pos + 9)
            out.append((poe_rd64(p + pos), p[pos + 8], _copy(p + pos + 11, rlen)))
            pos += 11 + rlen
        cached = tuple(out)
        self._results[j] = cached
        return cached

    def request_ids(self, Py_ssize_t j):
        """Request ids of entry j, in order (tuple of ints)."""
        cdef const unsigned char* p
        cdef Py_ssize_t pos
        cdef int i, count
        j = self._entry(j)
        p = self._buf.ptr
        pos = self.offsets[j]
        count = poe_rd16(p + pos + 4)
        pos += INFORM_ENTRY_HEADER
        out = []
        for i in range(count):
            out.append(poe_rd64(p + pos))
            pos += 11 + poe_rd16(p + pos + 9)
        return tuple(out)

    def entries(self):
        """[(idx, results)] for every entry (inspection and adversaries, not the hot path)."""
        return [(self.index(j), self.results(j)) for j in range(self.n_entries)]

    def tags(self):
        """[tag] of every entry, in order (``inform_body``'s ``tags``)."""
        return [self.tag(j) for j in range(self.n_entries)]

    def body_bytes(self):
        """The body as bytes."""
        return _copy(self._buf.ptr + POE_HEADER_SIZE, self._body_end - POE_HEADER_SIZE)


cdef class CheckpointProof:
    """A checkpoint (k, d_state, d_chain) with signatures ((replica, sig), ...)."""
    cdef readonly uint64_t seq
    cdef readonly bytes state_digest
    cdef readonly bytes chain_digest
    cdef readonly tuple signatures

    def __init__(self, uint64_t seq, bytes state_digest, bytes chain_digest, signatures=()):
        if len(state_digest) != 32 or len(chain_digest) != 32:
            raise ValueError("checkpoint digests are 32 bytes")
        self.seq = seq
        self.state_digest = state_digest
        self.chain_digest = chain_digest
        self.signatures = tuple((int(r), bytes(s)) for r, s in signatures)

    def __eq__(self, other):
        if not isinstance(other, CheckpointProof):
            return NotImplemented
        return self._key() == (<CheckpointProof>other)._key()

    def _key(self):
        return (self.seq, self.state_digest, self.chain_digest, self.signatures)

    def __repr__(self):
        return f"CheckpointProof(seq={self.seq}, signatures={len(self.signatures)})"


cdef class VcEntry:
    """One slot reported in a VC-REQUEST: (type, k, w, h, bitmap, signature)."""
    cdef readonly int type
    cdef readonly uint64_t seq
    cdef readonly uint64_t view
    cdef readonly bytes digest
    cdef readonly bytes bitmap
    cdef readonly bytes signature

    def __init__(self, int type, uint64_t seq, uint64_t view, bytes digest,
                 bytes bitmap=b"", bytes signature=b""):
        if type not in (ENTRY_CERT, ENTRY_PREPARED, ENTRY_SUPPORTED):
            raise ValueError(f"unknown vc entry type {type}")
        if len(digest) != 32:
            raise ValueError("entry digest is 32 bytes")
        if len(bitmap) > POE_MAX_BITMAP_BYTES or len(signature) > MAX_CERT_SIG:
            raise ValueError("entry bitmap or signature too long")
        self.type = type
        self.seq = seq
        self.view = view
        self.digest = digest
        self.bitmap = bitmap
        self.signature = signature

    def __eq__(self, other):
        if not isinstance(other, VcEntry):
            return NotImplemented
        return self._key() == (<VcEntry>other)._key()

    def _key(self):
        return (self.type, self.seq, self.view, self.digest, self.bitmap, self.signature)

    def __repr__(self):
        return f"VcEntry(type={self.type}, seq={self.seq}, view={self.view})"


cdef class VcRequest(Message):
    """VC-REQUEST(v, C, E): the view to leave, a stable checkpoint proof and entries."""
    cdef readonly CheckpointProof checkpoint
    cdef readonly tuple entries


cdef class NvPropose(Message):
    """NV-PROPOSE(v+1, M): the new view in the header, the VC-REQUEST frames in M."""
    cdef readonly tuple requests


cdef class Checkpoint(Message):
    """CHECKPOINT(k, d_state, d_chain) with the sender's signature over the statement."""
    cdef readonly bytes state_digest
    cdef readonly bytes chain_digest
    cdef readonly bytes signature


cdef class Fetch(Message):
    """FETCH(k, h): ask for the batch with digest h at sequence k."""
    cdef readonly bytes digest


cdef class FetchReply(Message):
    """FETCH-REPLY(k, h, B) with the sender's certificate for (k, h) if it has one (TS mode;
    empty bitmap and signature otherwise), issued in view ``cert_view``."""
    cdef readonly bytes digest
    cdef readonly uint64_t cert_view
    cdef readonly bytes bitmap
    cdef readonly bytes signature
    cdef readonly Batch batch


cdef class StateReq(Message):
    """STATE-REQ(from, to, want)."""
    cdef readonly uint64_t from_seq
    cdef readonly uint64_t to_seq
    cdef readonly int want


cdef class StateReply(Message):
    """STATE-REPLY: block headers (k, d, v), batches (k, Batch) and an optional snapshot."""
    cdef readonly uint64_t from_seq
    cdef readonly uint64_t to_seq
    cdef readonly tuple headers
    cdef readonly tuple batches
    cdef readonly object snapshot


# ---------------------------------------------------------------------------------------
# decoding


def peek(data):
    """(kind, sender, view, seq) of a frame after checking only its header."""
    cdef _View v = _view_of(data)
    _check_header(v)
    return (v.ptr[3], poe_rd32(v.ptr + 8), poe_rd64(v.ptr + 16), poe_rd64(v.ptr + 24))


cdef Py_ssize_t _check_header(_View v) except -1:
    """Check the envelope; return the end of the body."""
    cdef const unsigned char* p = v.ptr
    cdef uint16_t flags
    cdef uint32_t body_len
    cdef Py_ssize_t expected
    if v.size > POE_HEADER_SIZE + <Py_ssize_t>POE_MAX_BODY + POE_SIG_SIZE:
        raise WireError(f"frame of {v.size} bytes exceeds the maximum")
    _need(0, POE_HEADER_SIZE, v.size, "header")
    if p[0] != 0x50 or p[1] != 0x45:
        raise WireError("bad magic")
    if p[2] != 1:
        raise WireError(f"unsupported version {p[2]}")
    if p[3] < 1 or p[3] > _MAX_KIND:
        raise WireError(f"unknown kind {p[3]}")
    flags = poe_rd16(p + 4)
    if flags & ~_FLAGS_KNOWN or (flags & 3) == 3 or (flags & FLAG_FINAL and p[3] != INFORM):
        raise WireError(f"unknown flags 0x{flags:04x}")
    if poe_rd16(p + 6) != 0:
        raise WireError("reserved header field is not 0")
    body_len = poe_rd32(p + 12)
    if body_len > POE_MAX_BODY:
        raise WireError(f"body of {body_len} bytes exceeds the maximum {POE_MAX_BODY}")
    expected = POE_HEADER_SIZE + <Py_ssize_t>body_len + _AUTH_LEN[flags & 3]
    if v.size < expected:
        raise WireError(f"truncated frame: {v.size} bytes, header says {expected}")
    if v.size > expected:
        raise WireError(f"{v.size - expected} trailing bytes after the frame")
    return POE_HEADER_SIZE + body_len


def decode(data):
    """Decode one frame (bytes or a read-only buffer) into a Message subclass.

    Raises ``WireError`` (with ``reason``) for any malformed input and nothing else.
    Request payloads of an immutable buffer are not copied (batches point into it)."""
    cdef _View v = _view_of(data)
    return _decode(v, 0)


cdef Message _decode(_View v, int depth):
    cdef Py_ssize_t end = _check_header(v)
    cdef const unsigned char* p = v.ptr
    cdef int kind = p[3]
    cdef Py_ssize_t pos = POE_HEADER_SIZE
    cdef Message m
    if kind == PROPOSE:
        m = _d_propose(v, pos, end)
    elif kind == SUPPORT:
        m = _d_support(v, pos, end)
    elif kind == CERTIFY:
        m = _d_certify(v, pos, end)
    elif kind == INFORM:
        m = _d_inform(v, pos, end)
    elif kind == REQUEST:
        m = _d_request(v, pos, end)
    elif kind == CHECKPOINT:
        m = _d_checkpoint(v, pos, end)
    elif kind == VC_REQUEST:
        m = _d_vc_request(v, pos, end)
    elif kind == NV_PROPOSE:
        if depth > 0:
            raise WireError("NV-PROPOSE nested inside a message")
        m = _d_nv_propose(v, pos, end)
    elif kind == FETCH:
        m = _d_fetch(v, pos, end)
    elif kind == FETCH_REPLY:
        m = _d_fetch_reply(v, pos, end)
    elif kind == STATE_REQ:
        m = _d_state_req(v, pos, end)
    elif kind == COMMIT:
        m = _d_support(v, pos, end)
        if (<Support>m).share:
            raise WireError("COMMIT carries no share")
    else:
        m = _d_state_reply(v, pos, end)
    m.kind = kind
    m.flags = poe_rd16(p + 4)
    m.auth_kind = m.flags & 3
    m.sender = poe_rd32(p + 8)
    m.view = poe_rd64(p + 16)
    m.seq = poe_rd64(p + 24)
    m._buf = v
    m._body_end = end
    return m


cdef inline int _done(Py_ssize_t pos, Py_ssize_t end, str what) except -1:
    if pos != end:
        raise WireError(f"{end - pos} trailing bytes in the {what} body")
    return 0


cdef Message _d_request(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef Request m = Request.__new__(Request)
    m.batch = _make_batch(v, pos, end, 1)
    if poe_rd32(v.ptr + pos) != poe_rd32(v.ptr + 8):
        raise WireError("REQUEST sender differs from the client id of its message")
    return m


cdef Message _d_propose(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef Propose m = Propose.__new__(Propose)
    _need(pos, 4, end, "batch count")
    m.batch = _make_batch(v, pos + 4, end, poe_rd32(v.ptr + pos))
    return m


cdef Message _d_support(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef Support m = Support.__new__(Support)
    cdef const unsigned char* p = v.ptr
    cdef uint8_t share_len
    _need(pos, 33, end, "SUPPORT")
    m.digest = _copy(p + pos, 32)
    share_len = p[pos + 32]
    pos += 33
    if share_len > MAX_CERT_SIG:
        raise WireError(f"share of {share_len} bytes exceeds the maximum {MAX_CERT_SIG}")
    _need(pos, share_len, end, "share")
    m.share = _copy(p + pos, share_len)
    _done(pos + share_len, end, "SUPPORT")
    return m


cdef tuple _d_cert(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end):
    """u8 bitmap_len | bitmap | u8 sig_len | sig; returns (new position, bitmap, sig)."""
    cdef bytes bitmap
    cdef uint8_t blen, slen
    _need(pos, 1, end, "bitmap length")
    blen = p[pos]
    pos += 1
    if blen > POE_MAX_BITMAP_BYTES:
        raise WireError(f"bitmap of {blen} bytes exceeds the maximum {POE_MAX_BITMAP_BYTES}")
    _need(pos, blen + 1, end, "bitmap")
    bitmap = _copy(p + pos, blen)
    pos += blen
    slen = p[pos]
    pos += 1
    if slen > MAX_CERT_SIG:
        raise WireError(f"signature of {slen} bytes exceeds the maximum {MAX_CERT_SIG}")
    _need(pos, slen, end, "signature")
    return (pos + slen, bitmap, _copy(p + pos, slen))


cdef Message _d_certify(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef Certify m = Certify.__new__(Certify)
    _need(pos, 32, end, "CERTIFY digest")
    m.digest = _copy(v.ptr + pos, 32)
    pos, m.bitmap, m.signature = _d_cert(v.ptr, pos + 32, end)
    _done(pos, end, "CERTIFY")
    return m


cdef Py_ssize_t _walk_inform(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                             uint32_t* offsets) except -1:
    """Validate an INFORM body p[pos:end] (docs/wire.md); fill ``offsets`` (n + 1 frame
    offsets of the entries) unless it is NULL. Returns the number of entries."""
    cdef uint32_t n, j, idx, last_idx = 0
    cdef uint16_t count, i, rlen
    cdef uint64_t t, last_t
    _need(pos, INFORM_HEADER, end, "INFORM header")
    n = poe_rd16(p + pos + 4)
    pos += INFORM_HEADER
    if n == 0 or n > POE_MAX_MSGS_PER_BATCH:
        raise WireError(f"INFORM with {n} entries (allowed 1..{POE_MAX_MSGS_PER_BATCH})")
    if <Py_ssize_t>n * INFORM_ENTRY_MIN > end - pos:
        raise WireError(f"INFORM entry count {n} does not fit in {end - pos} bytes")
    for j in range(n):
        if INFORM_ENTRY_HEADER > end - pos:
            _need(pos, INFORM_ENTRY_HEADER, end, "INFORM entry")
        idx = poe_rd32(p + pos)
        count = poe_rd16(p + pos + 4)
        if idx >= POE_MAX_MSGS_PER_BATCH:
            raise WireError(f"INFORM entry for message {idx} of a batch "
                            f"(allowed 0..{POE_MAX_MSGS_PER_BATCH - 1})")
        if j > 0 and idx <= last_idx:
            raise WireError("INFORM entries must be in strictly increasing idx")
        last_idx = idx
        if count == 0 or count > POE_MAX_OPS_PER_MSG:
            raise WireError(f"INFORM entry with {count} results (allowed 1..{POE_MAX_OPS_PER_MSG})")
        if offsets != NULL:
            offsets[j] = <uint32_t>pos
        pos += INFORM_ENTRY_HEADER
        last_t = 0
        for i in range(count):
            if 11 > end - pos:
                _need(pos, 11, end, "result")
            t = poe_rd64(p + pos)
            if i > 0 and t <= last_t:
                raise WireError("request ids inside an INFORM entry must strictly increase")
            last_t = t
            if p[pos + 8] > POE_ST_STALE:
                raise WireError(f"unknown result status {p[pos + 8]}")
            rlen = poe_rd16(p + pos + 9)
            if rlen > POE_MAX_VALUE:
                raise WireError(f"result of {rlen} bytes exceeds the maximum {POE_MAX_VALUE}")
            pos += 11
            if rlen > end - pos:
                _need(pos, rlen, end, "result value")
            pos += rlen
    _done(pos, end, "INFORM")
    if offsets != NULL:
        offsets[n] = <uint32_t>pos
    return n


cdef Message _d_inform(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef Inform m = Inform.__new__(Inform)
    cdef uint32_t n
    _need(pos, INFORM_HEADER, end, "INFORM header")
    n = poe_rd16(v.ptr + pos + 4)
    if n == 0 or n > POE_MAX_MSGS_PER_BATCH:
        raise WireError(f"INFORM with {n} entries (allowed 1..{POE_MAX_MSGS_PER_BATCH})")
    if <Py_ssize_t>n * INFORM_ENTRY_MIN > end - pos - INFORM_HEADER:
        raise WireError(f"INFORM entry count {n} does not fit in {end - pos - INFORM_HEADER} bytes")
    m.offsets = <uint32_t*>malloc((n + 1) * sizeof(uint32_t))
    if m.offsets == NULL:
        raise MemoryError()
    m.client = poe_rd32(v.ptr + pos)
    m.n_entries = _walk_inform(v.ptr, pos, end, m.offsets)
    return m


cdef Message _d_checkpoint(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef Checkpoint m = Checkpoint.__new__(Checkpoint)
    _need(pos, 64 + POE_SIG_SIZE, end, "CHECKPOINT")
    m.state_digest = _copy(v.ptr + pos, 32)
    m.chain_digest = _copy(v.ptr + pos + 32, 32)
    m.signature = _copy(v.ptr + pos + 64, POE_SIG_SIZE)
    _done(pos + 64 + POE_SIG_SIZE, end, "CHECKPOINT")
    return m


cdef Message _d_vc_request(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef VcRequest m = VcRequest.__new__(VcRequest)
    cdef const unsigned char* p = v.ptr
    cdef CheckpointProof cp = CheckpointProof.__new__(CheckpointProof)
    cdef VcEntry e
    cdef uint16_t nsig, i
    cdef uint32_t nent, j
    cdef uint8_t etype
    _need(pos, 8 + 64 + 2, end, "VC-REQUEST checkpoint")
    cp.seq = poe_rd64(p + pos)
    cp.state_digest = _copy(p + pos + 8, 32)
    cp.chain_digest = _copy(p + pos + 40, 32)
    nsig = poe_rd16(p + pos + 72)
    pos += 74
    if nsig > POE_MAX_REPLICAS:
        raise WireError(f"checkpoint proof with {nsig} signatures exceeds {POE_MAX_REPLICAS}")
    _need(pos, <Py_ssize_t>nsig * PROOF_SIG_SIZE, end, "checkpoint proof")
    sigs = []
    for i in range(nsig):
        sigs.append((poe_rd32(p + pos), _copy(p + pos + 4, POE_SIG_SIZE)))
        pos += PROOF_SIG_SIZE
    cp.signatures = tuple(sigs)
    _need(pos, 4, end, "entry count")
    nent = poe_rd32(p + pos)
    pos += 4
    if <Py_ssize_t>nent * VC_ENTRY_MIN > end - pos:
        raise WireError(f"entry count {nent} does not fit in {end - pos} bytes")
    entries = []
    for j in range(nent):
        _need(pos, 1 + 8 + 8 + 32, end, "entry")
        etype = p[pos]
        if etype > ENTRY_SUPPORTED:
            raise WireError(f"unknown vc entry type {etype}")
        e = VcEntry.__new__(VcEntry)
        e.type = etype
        e.seq = poe_rd64(p + pos + 1)
        e.view = poe_rd64(p + pos + 9)
        e.digest = _copy(p + pos + 17, 32)
        pos, e.bitmap, e.signature = _d_cert(p, pos + 49, end)
        entries.append(e)
    _done(pos, end, "VC-REQUEST")
    m.checkpoint = cp
    m.entries = tuple(entries)
    return m


cdef Message _d_nv_propose(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef NvPropose m = NvPropose.__new__(NvPropose)
    cdef const unsigned char* p = v.ptr
    cdef uint16_t count, i
    cdef uint32_t flen
    cdef Message inner
    _need(pos, 2, end, "NV-PROPOSE count")
    count = poe_rd16(p + pos)
    pos += 2
    if count == 0 or count > MAX_VC_REQUESTS:
        raise WireError(f"NV-PROPOSE with {count} VC-REQUESTs (allowed 1..{MAX_VC_REQUESTS})")
    reqs = []
    for i in range(count):
        _need(pos, 4, end, "VC-REQUEST length")
        flen = poe_rd32(p + pos)
        pos += 4
        _need(pos, flen, end, "VC-REQUEST frame")
        inner = _decode(_view_of(_slice(v, pos, pos + flen)), 1)
        if inner.kind != VC_REQUEST:
            raise WireError(f"NV-PROPOSE carries a {KIND_NAMES[inner.kind]} instead of a VC-REQUEST")
        reqs.append(inner)
        pos += flen
    _done(pos, end, "NV-PROPOSE")
    m.requests = tuple(reqs)
    return m


cdef Message _d_fetch(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef Fetch m = Fetch.__new__(Fetch)
    _need(pos, 32, end, "FETCH digest")
    m.digest = _copy(v.ptr + pos, 32)
    _done(pos + 32, end, "FETCH")
    return m


cdef Message _d_fetch_reply(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef FetchReply m = FetchReply.__new__(FetchReply)
    _need(pos, 40, end, "FETCH-REPLY")
    m.digest = _copy(v.ptr + pos, 32)
    m.cert_view = poe_rd64(v.ptr + pos + 32)
    pos, m.bitmap, m.signature = _d_cert(v.ptr, pos + 40, end)
    _need(pos, 4, end, "batch count")
    m.batch = _make_batch(v, pos + 4, end, poe_rd32(v.ptr + pos))
    return m


cdef Message _d_state_req(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef StateReq m = StateReq.__new__(StateReq)
    _need(pos, 17, end, "STATE-REQ")
    m.from_seq = poe_rd64(v.ptr + pos)
    m.to_seq = poe_rd64(v.ptr + pos + 8)
    m.want = v.ptr[pos + 16]
    if m.want == 0 or m.want & ~7:
        raise WireError(f"STATE-REQ wants 0x{m.want:02x} (allowed bits 0x07)")
    if m.to_seq < m.from_seq:
        raise WireError("STATE-REQ range ends before it starts")
    _done(pos + 17, end, "STATE-REQ")
    return m


cdef Message _d_state_reply(_View v, Py_ssize_t pos, Py_ssize_t end):
    cdef StateReply m = StateReply.__new__(StateReply)
    cdef const unsigned char* p = v.ptr
    cdef uint32_t nh, nb, i, blen, slen
    cdef uint64_t k
    _need(pos, 20, end, "STATE-REPLY")
    m.from_seq = poe_rd64(p + pos)
    m.to_seq = poe_rd64(p + pos + 8)
    nh = poe_rd32(p + pos + 16)
    pos += 20
    if m.to_seq < m.from_seq:
        raise WireError("STATE-REPLY range ends before it starts")
    _need(pos, <Py_ssize_t>nh * HEADER_ROW, end, "block headers")
    headers = []
    for i in range(nh):
        headers.append((poe_rd64(p + pos), _copy(p + pos + 8, 32), poe_rd64(p + pos + 40)))
        pos += HEADER_ROW
    _need(pos, 4, end, "batch count")
    nb = poe_rd32(p + pos)
    pos += 4
    if <Py_ssize_t>nb * (12 + POE_CM_MIN) > end - pos:
        raise WireError(f"batch count {nb} does not fit in {end - pos} bytes")
    batches = []
    for i in range(nb):
        _need(pos, 16, end, "batch header")
        k = poe_rd64(p + pos)
        blen = poe_rd32(p + pos + 8)
        _need(pos + 12, blen, end, "batch")
        if blen < 4:
            raise WireError("batch shorter than its count")
        batches.append((k, _make_batch(v, pos + 16, pos + 12 + blen, poe_rd32(p + pos + 12))))
        pos += 12 + blen
    _need(pos, 4, end, "snapshot length")
    slen = poe_rd32(p + pos)
    pos += 4
    _need(pos, slen, end, "snapshot")
    m.snapshot = _slice(v, pos, pos + slen) if slen else None
    _done(pos + slen, end, "STATE-REPLY")
    m.headers = tuple(headers)
    m.batches = tuple(batches)
    return m


# ---------------------------------------------------------------------------------------
# encoding
#
# Every encode_* function returns the frame WITHOUT its auth field: complete when
# auth == AUTH_NONE, otherwise pass it to ``seal(frame, tag)`` with the MAC or signature
# computed over exactly those bytes.


cdef bytes _frame(int kind, int auth, uint32_t sender, uint64_t view, uint64_t seq,
                  Py_ssize_t body_len):
    if auth < 0 or auth > AUTH_SIG:
        raise ValueError(f"unknown auth kind {auth}")
    if body_len > POE_MAX_BODY:
        raise ValueError(f"body of {body_len} bytes exceeds the maximum {POE_MAX_BODY}")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, POE_HEADER_SIZE + body_len)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    p[0] = 0x50
    p[1] = 0x45
    p[2] = 1
    p[3] = <uint8_t>kind
    poe_wr16(p + 4, <uint16_t>auth)
    poe_wr16(p + 6, 0)
    poe_wr32(p + 8, sender)
    poe_wr32(p + 12, <uint32_t>body_len)
    poe_wr64(p + 16, view)
    poe_wr64(p + 24, seq)
    return out


cdef inline unsigned char* _body(bytes frame):
    return <unsigned char*>PyBytes_AS_STRING(frame) + POE_HEADER_SIZE


def seal(frame, tag):
    """Append the auth field (MAC or signature) announced in the frame's flags."""
    if type(frame) is not bytes:
        frame = bytes(frame)
    if type(tag) is not bytes:
        tag = bytes(tag)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(frame)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(frame)
    if n < POE_HEADER_SIZE or (poe_rd16(p + 4) & 3) == 3 \
            or n != POE_HEADER_SIZE + <Py_ssize_t>poe_rd32(p + 12):
        raise ValueError("seal() takes a frame as returned by an encode_* function")
    cdef Py_ssize_t want = _AUTH_LEN[poe_rd16(p + 4) & 3]
    if PyBytes_GET_SIZE(tag) != want:
        raise ValueError(f"auth field must be {want} bytes, got {PyBytes_GET_SIZE(tag)}")
    return frame + tag


cdef inline void _put(unsigned char* p, object data, Py_ssize_t n):
    cdef const unsigned char[::1] mv
    if type(data) is bytes:
        memcpy(p, PyBytes_AS_STRING(data), n)
    elif n:
        mv = memoryview(data).cast("B")
        memcpy(p, &mv[0], n)


cdef inline bytes _fixed(object value, Py_ssize_t n, str what):
    if type(value) is not bytes:
        value = bytes(value)
    if len(value) != n:
        raise ValueError(f"{what} must be {n} bytes, got {len(value)}")
    return value


def encode_request(client_message, uint64_t view=0):
    """REQUEST carrying one signed client message (validated); auth none."""
    cm = bytes(client_message)
    client = check_client_message(cm)
    cdef bytes out = _frame(REQUEST, AUTH_NONE, client, view, 0, len(cm))
    _put(_body(out), cm, len(cm))
    return out


def encode_propose(uint32_t sender, uint64_t view, uint64_t seq, batch, int auth=AUTH_MAC):
    """PROPOSE(v, k, B); ``batch`` is a Batch or a list of signed client messages."""
    cdef Batch b = batch if isinstance(batch, Batch) else Batch.from_messages(batch)
    cdef bytes out = _frame(PROPOSE, auth, sender, view, seq, 4 + b.size)
    cdef unsigned char* p = _body(out)
    poe_wr32(p, <uint32_t>b.count)
    memcpy(p + 4, b.data, b.size)
    return out


def encode_support(uint32_t sender, uint64_t view, uint64_t seq, digest, share=b"",
                   int auth=AUTH_MAC):
    """SUPPORT(v, k, h, share); the share is empty in MAC mode."""
    digest = _fixed(digest, 32, "digest")
    if type(share) is not bytes:
        share = bytes(share)
    if len(share) > MAX_CERT_SIG:
        raise ValueError(f"share of {len(share)} bytes exceeds {MAX_CERT_SIG}")
    cdef bytes out = _frame(SUPPORT, auth, sender, view, seq, 33 + len(share))
    cdef unsigned char* p = _body(out)
    _put(p, digest, 32)
    p[32] = <uint8_t>len(share)
    _put(p + 33, share, len(share))
    return out


def encode_commit(uint32_t sender, uint64_t view, uint64_t seq, digest, int auth=AUTH_MAC):
    """COMMIT(v, k, h) of the PBFT baseline: SUPPORT's body (digest, empty share)."""
    digest = _fixed(digest, 32, "digest")
    cdef bytes out = _frame(COMMIT, auth, sender, view, seq, 33)
    cdef unsigned char* p = _body(out)
    _put(p, digest, 32)
    p[32] = 0
    return out


cdef Py_ssize_t _put_cert(unsigned char* p, bytes bitmap, bytes sig):
    p[0] = <uint8_t>len(bitmap)
    _put(p + 1, bitmap, len(bitmap))
    p[1 + len(bitmap)] = <uint8_t>len(sig)
    _put(p + 2 + len(bitmap), sig, len(sig))
    return 2 + len(bitmap) + len(sig)


cdef _check_cert(bytes bitmap, bytes sig):
    if len(bitmap) > POE_MAX_BITMAP_BYTES:
        raise ValueError(f"bitmap of {len(bitmap)} bytes exceeds {POE_MAX_BITMAP_BYTES}")
    if len(sig) > MAX_CERT_SIG:
        raise ValueError(f"signature of {len(sig)} bytes exceeds {MAX_CERT_SIG}")


def encode_certify(uint32_t sender, uint64_t view, uint64_t seq, digest, bitmap, signature,
                   int auth=AUTH_NONE):
    """CERTIFY(v, k, h, sigma, bitmap); self-verifying, so no auth by default."""
    digest = _fixed(digest, 32, "digest")
    bitmap = bytes(bitmap)
    signature = bytes(signature)
    _check_cert(bitmap, signature)
    cdef bytes out = _frame(CERTIFY, auth, sender, view, seq, 34 + len(bitmap) + len(signature))
    cdef unsigned char* p = _body(out)
    _put(p, digest, 32)
    _put_cert(p + 32, bitmap, signature)
    return out


def encode_inform(uint32_t sender, uint64_t view, uint64_t seq, body, int auth=AUTH_MAC,
                  bint final=False):
    """INFORM with a ready body (``inform_body``, or a decoded INFORM's), checked here.
    ``final`` marks a position at or below the sender's stable checkpoint (FLAG_FINAL)."""
    cdef bytes out = _frame(INFORM, auth, sender, view, seq, len(body))
    if final:
        poe_wr16(<unsigned char*>PyBytes_AS_STRING(out) + 4, <uint16_t>(auth | FLAG_FINAL))
    _put(_body(out), body, len(body))
    # refuse to emit what we would not accept
    _walk_inform(<const unsigned char*>PyBytes_AS_STRING(out), POE_HEADER_SIZE, len(out), NULL)
    return out


def encode_inform_results(uint32_t sender, uint64_t view, uint64_t seq, pieces, tags,
                          int auth=AUTH_MAC, bint final=False):
    """The one INFORM to a client for batch k from the kv results of its messages in the
    batch (``kv.Results.message_results(i)`` or stored results: ``u32 client | u32 idx |
    u16 count | results`` each), in batch order: one entry per piece, carrying ``tags[j]``
    (the message's signature[:16]) after its count. All pieces must be of one client, in
    strictly increasing idx; the frame is checked as ``decode`` would."""
    cdef Py_ssize_t n = len(pieces), j, total = INFORM_HEADER, size
    cdef uint32_t client = 0
    cdef const unsigned char[::1] mv
    if n == 0 or n > POE_MAX_MSGS_PER_BATCH:
        raise ValueError(f"an INFORM carries 1..{POE_MAX_MSGS_PER_BATCH} entries, not {n}")
    if len(tags) != n:
        raise ValueError(f"{len(tags)} tags for {n} INFORM entries")
    for j in range(n):
        mv = pieces[j]
        size = mv.shape[0]
        if size < 4 + INFORM_ENTRY_MIN - INFORM_TAG:
            raise ValueError(f"results piece of {size} bytes is too short")
        if len(tags[j]) != INFORM_TAG:
            raise ValueError(f"an INFORM tag is {INFORM_TAG} bytes, not {len(tags[j])}")
        if j == 0:
            client = poe_rd32(&mv[0])
        elif poe_rd32(&mv[0]) != client:
            raise ValueError("results of different clients in one INFORM")
        total += size - 4 + INFORM_TAG
    cdef bytes out = _frame(INFORM, auth, sender, view, seq, total)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    cdef const unsigned char[::1] tv
    if final:
        poe_wr16(p + 4, <uint16_t>(auth | FLAG_FINAL))
    cdef Py_ssize_t pos = POE_HEADER_SIZE
    poe_wr32(p + pos, client)
    poe_wr16(p + pos + 4, <uint16_t>n)
    pos += INFORM_HEADER
    for j in range(n):
        mv = pieces[j]
        tv = tags[j]
        size = mv.shape[0] - 4
        memcpy(p + pos, &mv[4], 6)                         # idx | count
        memcpy(p + pos + 6, &tv[0], INFORM_TAG)
        memcpy(p + pos + 6 + INFORM_TAG, &mv[10], size - 6)
        pos += size + INFORM_TAG
    _walk_inform(p, POE_HEADER_SIZE, len(out), NULL)
    return out


def inform_body(uint32_t client, entries, tags=None):
    """INFORM body from [(idx, [(t, status, value), ...]), ...] and one 16-byte tag per
    entry (the message's signature[:16]; zeros if None: tests, adversaries). ValueError for
    what ``decode`` would refuse."""
    entries = list(entries)
    if not 0 < len(entries) <= POE_MAX_MSGS_PER_BATCH:
        raise ValueError(f"an INFORM carries 1..{POE_MAX_MSGS_PER_BATCH} entries")
    tags = [bytes(INFORM_TAG)] * len(entries) if tags is None else [bytes(t) for t in tags]
    if len(tags) != len(entries) or any(len(t) != INFORM_TAG for t in tags):
        raise ValueError(f"one {INFORM_TAG}-byte tag per INFORM entry")
    parts = [client.to_bytes(4, "little"), len(entries).to_bytes(2, "little")]
    last = -1
    for (index, results), tag in zip(entries, tags):
        results = list(results)
        if not last < index < POE_MAX_MSGS_PER_BATCH:
            raise ValueError("INFORM entries need strictly increasing idx below the batch limit")
        last = index
        if not 0 < len(results) <= POE_MAX_OPS_PER_MSG:
            raise ValueError(f"an INFORM entry carries 1..{POE_MAX_OPS_PER_MSG} results")
        parts += [int(index).to_bytes(4, "little"), len(results).to_bytes(2, "little"), tag]
        last_t = -1
        for t, status, value in results:
            value = bytes(value)
            if len(value) > POE_MAX_VALUE or not 0 <= status <= POE_ST_STALE:
                raise ValueError("result value too long or unknown status")
            if not last_t < t < 2 ** 64:
                raise ValueError("request ids inside an INFORM entry must strictly increase")
            last_t = t
            parts += [int(t).to_bytes(8, "little"), bytes((status,)),
                      len(value).to_bytes(2, "little"), value]
    return b"".join(parts)


def encode_checkpoint(uint32_t sender, uint64_t seq, state_digest, chain_digest, signature,
                      int auth=AUTH_NONE):
    """CHECKPOINT(k, d_state, d_chain) carrying the signature over checkpoint_statement."""
    body = (_fixed(state_digest, 32, "state digest") + _fixed(chain_digest, 32, "chain digest")
            + _fixed(signature, POE_SIG_SIZE, "signature"))
    cdef bytes out = _frame(CHECKPOINT, auth, sender, 0, seq, len(body))
    _put(_body(out), body, len(body))
    return out


def encode_vc_request(uint32_t sender, uint64_t view, CheckpointProof checkpoint, entries,
                      int auth=AUTH_SIG):
    """VC-REQUEST(v, C, E); signed as a whole (seal with a signature over the frame)."""
    if len(checkpoint.signatures) > POE_MAX_REPLICAS:
        raise ValueError("too many checkpoint signatures")
    parts = [checkpoint.seq.to_bytes(8, "little"), checkpoint.state_digest,
             checkpoint.chain_digest, len(checkpoint.signatures).to_bytes(2, "little")]
    for replica, sig in checkpoint.signatures:
        parts += [int(replica).to_bytes(4, "little"), _fixed(sig, POE_SIG_SIZE, "signature")]
    entries = list(entries)
    parts.append(len(entries).to_bytes(4, "little"))
    cdef VcEntry e
    for e in entries:
        parts += [bytes((e.type,)), e.seq.to_bytes(8, "little"), e.view.to_bytes(8, "little"),
                  e.digest, bytes((len(e.bitmap),)), e.bitmap, bytes((len(e.signature),)),
                  e.signature]
    body = b"".join(parts)
    cdef bytes out = _frame(VC_REQUEST, auth, sender, view, 0, len(body))
    _put(_body(out), body, len(body))
    return out


def encode_nv_propose(uint32_t sender, uint64_t new_view, vc_requests, int auth=AUTH_MAC):
    """NV-PROPOSE(v+1, M): M is a list of complete (sealed) VC-REQUEST frames."""
    frames = [bytes(f) for f in vc_requests]
    if not 0 < len(frames) <= MAX_VC_REQUESTS:
        raise ValueError(f"NV-PROPOSE carries 1..{MAX_VC_REQUESTS} VC-REQUESTs")
    for f in frames:
        if peek(f)[0] != VC_REQUEST:
            raise ValueError("NV-PROPOSE may carry only VC-REQUEST frames")
    body = len(frames).to_bytes(2, "little") + b"".join(
        len(f).to_bytes(4, "little") + f for f in frames)
    cdef bytes out = _frame(NV_PROPOSE, auth, sender, new_view, 0, len(body))
    _put(_body(out), body, len(body))
    return out


def encode_fetch(uint32_t sender, uint64_t seq, digest, int auth=AUTH_MAC):
    """FETCH(k, h)."""
    cdef bytes out = _frame(FETCH, auth, sender, 0, seq, 32)
    _put(_body(out), _fixed(digest, 32, "digest"), 32)
    return out


def encode_fetch_reply(uint32_t sender, uint64_t seq, digest, batch, uint64_t cert_view=0,
                       bitmap=b"", signature=b"", int auth=AUTH_MAC):
    """FETCH-REPLY(k, h, B) with an optional certificate (cert_view, bitmap, signature)."""
    cdef Batch b = batch if isinstance(batch, Batch) else Batch.from_messages(batch)
    bitmap = bytes(bitmap)
    signature = bytes(signature)
    _check_cert(bitmap, signature)
    cdef Py_ssize_t clen = 2 + len(bitmap) + len(signature)
    cdef bytes out = _frame(FETCH_REPLY, auth, sender, 0, seq, 44 + clen + b.size)
    cdef unsigned char* p = _body(out)
    _put(p, _fixed(digest, 32, "digest"), 32)
    poe_wr64(p + 32, cert_view)
    _put_cert(p + 40, bitmap, signature)
    poe_wr32(p + 40 + clen, <uint32_t>b.count)
    memcpy(p + 44 + clen, b.data, b.size)
    return out


def encode_state_req(uint32_t sender, uint64_t from_seq, uint64_t to_seq, int want,
                     int auth=AUTH_MAC):
    """STATE-REQ(from, to, want) with want a mix of WANT_HEADERS/BATCHES/SNAPSHOT."""
    if want <= 0 or want & ~7 or to_seq < from_seq:
        raise ValueError("STATE-REQ needs 0 < want <= 7 and from_seq <= to_seq")
    cdef bytes out = _frame(STATE_REQ, auth, sender, 0, 0, 17)
    cdef unsigned char* p = _body(out)
    poe_wr64(p, from_seq)
    poe_wr64(p + 8, to_seq)
    p[16] = <uint8_t>want
    return out


def encode_state_reply(uint32_t sender, uint64_t from_seq, uint64_t to_seq, headers=(),
                       batches=(), snapshot=None, int auth=AUTH_MAC):
    """STATE-REPLY: headers (k, d, v), batches (k, Batch or list), optional snapshot."""
    if to_seq < from_seq:
        raise ValueError("from_seq must not exceed to_seq")
    parts = [from_seq.to_bytes(8, "little"), to_seq.to_bytes(8, "little"),
             len(headers).to_bytes(4, "little")]
    for k, d, v in headers:
        parts += [int(k).to_bytes(8, "little"), _fixed(d, 32, "block digest"),
                  int(v).to_bytes(8, "little")]
    parts.append(len(batches).to_bytes(4, "little"))
    cdef Batch b
    for k, batch in batches:
        b = batch if isinstance(batch, Batch) else Batch.from_messages(batch)
        body = b.body()
        parts += [int(k).to_bytes(8, "little"), len(body).to_bytes(4, "little"), body]
    snap = b"" if snapshot is None else bytes(snapshot)
    parts += [len(snap).to_bytes(4, "little"), snap]
    body = b"".join(parts)
    cdef bytes out = _frame(STATE_REPLY, auth, sender, 0, 0, len(body))
    _put(_body(out), body, len(body))
    return out
