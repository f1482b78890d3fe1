# Declarations of the watermark window so that protocol code compiled with Cython can cimport it
# and call the unchecked slot-level methods directly (after checking k once with slot_of).
cimport cython
from libc.stdint cimport uint8_t, uint32_t, uint64_t


@cython.final
cdef class Window:
    cdef uint64_t _low                 # sequence numbers k with _low < k <= _low + _length
    cdef uint64_t _length
    cdef uint64_t _capacity            # power of two >= _length; slot of k is k & _mask
    cdef uint64_t _mask
    cdef Py_ssize_t _n                 # replicas: ids 0 <= id < _n
    cdef Py_ssize_t _kinds             # vote kinds: 0 <= kind < _kinds
    cdef Py_ssize_t _words             # uint64 words per bitmap: ceil(_n / 64)
    cdef Py_ssize_t _used              # slots holding a payload or at least one vote
    cdef uint32_t* _flags              # [capacity]
    cdef uint8_t* _has_digest          # [capacity]
    cdef uint8_t* _has_payload         # [capacity]
    cdef uint32_t* _votes              # [capacity] votes of all kinds in the slot
    cdef unsigned char* _digests       # [capacity * 32]
    cdef uint32_t* _counts             # [capacity * _kinds]
    cdef uint64_t* _bits               # [capacity * _kinds * _words]
    cdef list _payloads                # [capacity] Python objects, None when unset

    # Checked: the slot index of k, or WindowError when k is outside (low, high].
    cdef Py_ssize_t slot_of(self, uint64_t k) except -1
    # Unchecked (slot from slot_of, 0 <= kind < kinds, 0 <= replica < n): pure C.
    cdef uint32_t vote_at(self, Py_ssize_t slot, Py_ssize_t kind,
                          Py_ssize_t replica) noexcept nogil
    cdef uint32_t count_at(self, Py_ssize_t slot, Py_ssize_t kind) noexcept nogil
    cdef bint voted_at(self, Py_ssize_t slot, Py_ssize_t kind, Py_ssize_t replica) noexcept nogil
    cdef bint digest_matches_at(self, Py_ssize_t slot, const unsigned char* d) noexcept nogil
    cdef void recycle_at(self, Py_ssize_t slot)
    # Helpers of the Python API (argument checks).
    cdef int _outside(self, object k) except -1
    cdef Py_ssize_t _slot(self, object k) except -1
    cdef int _check(self, Py_ssize_t kind, Py_ssize_t replica) except -1
    cdef int _check_kind(self, Py_ssize_t kind) except -1
