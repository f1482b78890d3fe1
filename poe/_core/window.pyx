# cython: binding=False
"""The low/high watermark window of PoE (PROTOCOL.md §5.2, §5.3) as a ring buffer of slots.

What it is for: O(1) access to the per-sequence-number state that the protocol keeps for every
k with low < k <= high = low + length: state flags (bit meanings owned by the caller), the
accepted 32-byte digest, one vote bitmap + count per vote kind (e.g. SUPPORT, CERTIFY,
CHECKPOINT) over replica ids, and one Python payload (the protocol's slot record). Slot of k is
k & mask in a buffer of capacity = next power of two >= length; ``advance`` recycles the slots
that fall below the new low watermark (garbage collection at a stable checkpoint) without
reallocating.

What it must never do: touch a slot for a k outside (low, high] (every such access raises
WindowError and mutates nothing), count a replica twice in one vote kind, move low backwards,
or decide anything about the protocol (quorum sizes and flag meanings belong to the caller).
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.number cimport PyNumber_Index
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

cdef extern from "Python.h":
    # declared without an exception clause: the caller checks PyErr_Occurred itself
    unsigned long long PyLong_AsUnsignedLongLong(object o)

cdef extern from "wire.h":
    enum:
        POE_MAX_REPLICAS

LENGTH_MAX = 1 << 16        # largest window (batches); bounds the memory of one Window
KINDS_MAX = 16              # largest number of vote kinds
REPLICAS_MAX = POE_MAX_REPLICAS
cdef uint64_t _U64_MAX = 0xFFFFFFFFFFFFFFFF


class WindowError(ValueError):
    """A sequence number outside the window (low, high], or a backwards advance."""


cdef class Window:
    """Slots for sequence numbers k with low < k <= high = low + length (see module doc).

    Window(length, n_replicas, kinds=3, low=0). Replica ids are 0 <= id < n, vote kinds
    0 <= kind < kinds; both are checked on every call, as is k.
    """

    def __cinit__(self, length, n_replicas, kinds=3, low=0):
        cdef uint64_t cap = 1
        if not 1 <= length <= LENGTH_MAX:
            raise ValueError(f"window length must be in 1..{LENGTH_MAX}, got {length}")
        if not 1 <= n_replicas <= POE_MAX_REPLICAS:
            raise ValueError(f"n_replicas must be in 1..{POE_MAX_REPLICAS}, got {n_replicas}")
        if not 1 <= kinds <= KINDS_MAX:
            raise ValueError(f"kinds must be in 1..{KINDS_MAX}, got {kinds}")
        if not 0 <= low <= _U64_MAX - length:
            raise ValueError(f"low must be in 0..2**64-1-length, got {low}")
        while cap < <uint64_t>length:
            cap <<= 1
        self._low = low
        self._length = length
        self._capacity = cap
        self._mask = cap - 1
        self._n = n_replicas
        self._kinds = kinds
        self._words = (self._n + 63) >> 6
        self._used = 0
        self._flags = <uint32_t*>PyMem_Calloc(cap, sizeof(uint32_t))
        self._has_digest = <uint8_t*>PyMem_Calloc(cap, sizeof(uint8_t))
        self._has_payload = <uint8_t*>PyMem_Calloc(cap, sizeof(uint8_t))
        self._votes = <uint32_t*>PyMem_Calloc(cap, sizeof(uint32_t))
        self._digests = <unsigned char*>PyMem_Calloc(cap, 32)
        self._counts = <uint32_t*>PyMem_Calloc(cap * self._kinds, sizeof(uint32_t))
        self._bits = <uint64_t*>PyMem_Calloc(cap * self._kinds * self._words, sizeof(uint64_t))
        if (self._flags == NULL or self._has_digest == NULL or self._has_payload == NULL
                or self._votes == NULL or self._digests == NULL or self._counts == NULL
                or self._bits == NULL):
            raise MemoryError()
        self._payloads = [None] * <Py_ssize_t>cap

    def __dealloc__(self):
        PyMem_Free(self._flags)
        PyMem_Free(self._has_digest)
        PyMem_Free(self._has_payload)
        PyMem_Free(self._votes)
        PyMem_Free(self._digests)
        PyMem_Free(self._counts)
        PyMem_Free(self._bits)

    # ---- checked edge ------------------------------------------------------------------------

    cdef Py_ssize_t slot_of(self, uint64_t k) except -1:
        if k <= self._low or k - self._low > self._length:
            self._outside(k)
        return <Py_ssize_t>(k & self._mask)

    cdef int _outside(self, object k) except -1:
        raise WindowError(f"sequence number {k} is outside the window "
                          f"({self._low}, {self._low + self._length}]")

    cdef Py_ssize_t _slot(self, object k) except -1:
        """Slot of a Python int k; WindowError for any k outside (low, high], negative too."""
        cdef uint64_t v = 0
        if not _as_u64(k, &v):
            self._outside(k)
        return self.slot_of(v)

    cdef int _check(self, Py_ssize_t kind, Py_ssize_t replica) except -1:
        if <size_t>kind >= <size_t>self._kinds:
            raise ValueError(f"vote kind {kind} outside 0..{self._kinds - 1}")
        if <size_t>replica >= <size_t>self._n:
            raise ValueError(f"replica id {replica} outside 0..{self._n - 1}")
        return 0

    cdef int _check_kind(self, Py_ssize_t kind) except -1:
        if <size_t>kind >= <size_t>self._kinds:
            raise ValueError(f"vote kind {kind} outside 0..{self._kinds - 1}")
        return 0

    # ---- unchecked slot-level operations (C only) ---------------------------------------------

    cdef uint32_t vote_at(self, Py_ssize_t slot, Py_ssize_t kind,
                          Py_ssize_t replica) noexcept nogil:
        cdef Py_ssize_t row = slot * self._kinds + kind
        cdef uint64_t* word = self._bits + row * self._words + (replica >> 6)
        cdef uint64_t bit = (<uint64_t>1) << (replica & 63)
        if word[0] & bit:
            return self._counts[row]
        word[0] |= bit
        if self._votes[slot] == 0 and not self._has_payload[slot]:
            self._used += 1
        self._votes[slot] += 1
        self._counts[row] += 1
        return self._counts[row]

    cdef uint32_t count_at(self, Py_ssize_t slot, Py_ssize_t kind) noexcept nogil:
        return self._counts[slot * self._kinds + kind]

    cdef bint voted_at(self, Py_ssize_t slot, Py_ssize_t kind, Py_ssize_t replica) noexcept nogil:
        cdef Py_ssize_t row = slot * self._kinds + kind
        return (self._bits[row * self._words + (replica >> 6)] >> (replica & 63)) & 1

    cdef bint digest_matches_at(self, Py_ssize_t slot, const unsigned char* d) noexcept nogil:
        return self._has_digest[slot] and memcmp(self._digests + slot * 32, d, 32) == 0

    cdef void recycle_at(self, Py_ssize_t slot):
        if self._votes[slot] or self._has_payload[slot]:
            self._used -= 1
        if self._votes[slot]:
            memset(self._bits + slot * self._kinds * self._words, 0,
                   self._kinds * self._words * sizeof(uint64_t))
            memset(self._counts + slot * self._kinds, 0, self._kinds * sizeof(uint32_t))
            self._votes[slot] = 0
        self._flags[slot] = 0
        self._has_digest[slot] = 0
        memset(self._digests + slot * 32, 0, 32)
        if self._has_payload[slot]:
            self._has_payload[slot] = 0
            self._payloads[slot] = None

    # ---- properties --------------------------------------------------------------------------

    @property
    def low(self):
        """Low watermark: the last stable checkpoint; slots start at low + 1."""
        return self._low

    @property
    def high(self):
        """High watermark: low + length, the largest acceptable sequence number."""
        return self._low + self._length

    @property
    def length(self):
        return self._length

    @property
    def n(self):
        return self._n

    @property
    def kinds(self):
        return self._kinds

    @property
    def capacity(self):
        return self._capacity

    def __len__(self):
        return self._used

    def used(self):
        """Number of slots in the window holding a payload or at least one vote."""
        return self._used

    def __repr__(self):
        return (f"Window(low={self._low}, high={self._low + self._length}, n={self._n}, "
                f"kinds={self._kinds}, used={self._used})")

    # ---- Python API --------------------------------------------------------------------------

    def contains(self, k):
        """True when low < k <= high (never raises for an int k)."""
        if type(k) is not int:
            k = PyNumber_Index(k)
        return self._low < k <= self._low + self._length

    def __contains__(self, k):
        return self.contains(k)

    def vote(self, k, Py_ssize_t kind, Py_ssize_t replica):
        """Record replica's vote of ``kind`` for k; returns the new count (a repeat is a no-op)."""
        cdef Py_ssize_t s = self._slot(k)
        self._check(kind, replica)
        return self.vote_at(s, kind, replica)

    def vote_if_match(self, k, Py_ssize_t kind, Py_ssize_t replica, digest):
        """Vote only if the slot's digest is set and equals ``digest``; else -1, no change."""
        cdef Py_ssize_t s = self._slot(k)
        self._check(kind, replica)
        cdef const unsigned char* d
        if type(digest) is bytes and PyBytes_GET_SIZE(digest) == 32:
            d = <const unsigned char*>PyBytes_AS_STRING(digest)
        else:
            digest = _digest32(digest)
            d = <const unsigned char*>PyBytes_AS_STRING(digest)
        if not self.digest_matches_at(s, d):
            return -1
        return self.vote_at(s, kind, replica)

    def count(self, k, Py_ssize_t kind):
        """Number of distinct replicas that voted ``kind`` for k."""
        cdef Py_ssize_t s = self._slot(k)
        self._check_kind(kind)
        return self.count_at(s, kind)

    def has_quorum(self, k, Py_ssize_t kind, Py_ssize_t q):
        """True when at least q (1 <= q <= n) distinct replicas voted ``kind`` for k."""
        cdef Py_ssize_t s = self._slot(k)
        self._check_kind(kind)
        if q < 1 or q > self._n:
            raise ValueError(f"quorum size {q} outside 1..{self._n}")
        return self.count_at(s, kind) >= <uint32_t>q

    def has_voted(self, k, Py_ssize_t kind, Py_ssize_t replica):
        cdef Py_ssize_t s = self._slot(k)
        self._check(kind, replica)
        return self.voted_at(s, kind, replica)

    def voters(self, k, Py_ssize_t kind):
        """Voter bitmap of ``kind`` for k: ceil(n/8) bytes, replica i = bit i % 8 of byte i // 8."""
        cdef Py_ssize_t s = self._slot(k)
        self._check_kind(kind)
        cdef Py_ssize_t nbytes = (self._n + 7) >> 3, j
        cdef const uint64_t* words = self._bits + (s * self._kinds + kind) * self._words
        cdef bytes out = PyBytes_FromStringAndSize(NULL, nbytes)
        cdef unsigned char* o = <unsigned char*>PyBytes_AS_STRING(out)
        for j in range(nbytes):
            o[j] = <unsigned char>(words[j >> 3] >> ((j & 7) * 8))
        return out

    def set_digest(self, k, digest):
        """Set (or with None, unset) the accepted digest of k; a digest is exactly 32 bytes."""
        cdef Py_ssize_t s = self._slot(k)
        if digest is None:
            self._has_digest[s] = 0
            memset(self._digests + s * 32, 0, 32)
            return
        if type(digest) is not bytes or PyBytes_GET_SIZE(digest) != 32:
            digest = _digest32(digest)
        memcpy(self._digests + s * 32, PyBytes_AS_STRING(digest), 32)
        self._has_digest[s] = 1

    def digest(self, k):
        """The accepted digest of k, or None when unset."""
        cdef Py_ssize_t s = self._slot(k)
        if not self._has_digest[s]:
            return None
        return PyBytes_FromStringAndSize(<const char*>(self._digests + s * 32), 32)

    def flags(self, k):
        return self._flags[self._slot(k)]

    def set_flags(self, k, uint32_t bits):
        """flags(k) |= bits; returns the new flags."""
        cdef Py_ssize_t s = self._slot(k)
        self._flags[s] |= bits
        return self._flags[s]

    def clear_flags(self, k, uint32_t bits):
        """flags(k) &= ~bits; returns the new flags."""
        cdef Py_ssize_t s = self._slot(k)
        self._flags[s] &= ~bits
        return self._flags[s]

    def payload(self, k):
        """The Python object stored for k (None when unset)."""
        return self._payloads[self._slot(k)]

    def set_payload(self, k, obj):
        """Store ``obj`` for k (None clears it); it is dropped when k is recycled."""
        cdef Py_ssize_t s = self._slot(k)
        cdef uint8_t has = obj is not None
        if has != self._has_payload[s] and self._votes[s] == 0:
            self._used += 1 if has else -1
        self._has_payload[s] = has
        self._payloads[s] = obj

    def reset(self, k):
        """Forget everything held for k (votes, flags, digest, payload): a view change
        discards what an old view left at a position it does not keep."""
        self.recycle_at(self._slot(k))

    def advance(self, new_low):
        """Move low to new_low (>= low) and recycle every slot in (old low, new_low].

        Costs O(slots recycled) <= length. new_low may pass the old high (state transfer).
        """
        cdef uint64_t v = 0, i, steps
        if not _as_u64(new_low, &v) or v < self._low or v > _U64_MAX - self._length:
            raise WindowError(f"advance to {new_low}: low may only move forward from "
                              f"{self._low} and high must stay below 2**64")
        steps = v - self._low
        if steps > self._length:
            steps = self._length
        for i in range(steps):
            self.recycle_at(<Py_ssize_t>((self._low + 1 + i) & self._mask))
        self._low = v


cdef int _as_u64(object k, uint64_t* out) except -1:
    """1 and *out = k when the int k fits u64; 0 when it does not (negative or >= 2**64)."""
    cdef unsigned long long v
    if type(k) is not int:
        k = PyNumber_Index(k)          # TypeError for anything that is not an integer
    v = PyLong_AsUnsignedLongLong(k)
    if v == <unsigned long long>-1 and PyErr_Occurred() != NULL:
        PyErr_Clear()
        return 0
    out[0] = v
    return 1


cdef bytes _digest32(object digest):
    """A 32-byte digest from any bytes-like object; ValueError/TypeError otherwise."""
    try:
        view = memoryview(digest)
    except TypeError:
        raise TypeError(f"digest must be bytes-like, not {type(digest).__name__}") from None
    value = view.tobytes()
    if len(value) != 32:
        raise ValueError(f"digest must be exactly 32 bytes, got {len(value)}")
    return value
