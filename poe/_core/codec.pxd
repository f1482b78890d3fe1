# Declarations shared with the other kernels (digest and kv cimport Batch).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "wire.h":
    enum:
        POE_HEADER_SIZE
        POE_MAC_SIZE
        POE_SIG_SIZE
        POE_DIGEST_SIZE
        POE_SHARE_SIZE
        POE_MAX_BODY
        POE_MAX_VALUE
        POE_MAX_OPS_PER_MSG
        POE_MAX_MSGS_PER_BATCH
        POE_MAX_REPLICAS
        POE_MAX_BITMAP_BYTES
        POE_CM_HEADER
        POE_OP_HEADER
        POE_CM_MIN
        POE_OP_READ
        POE_OP_UPDATE
        POE_OP_INSERT
        POE_OP_RMW
        POE_ST_OK
        POE_ST_NOT_FOUND
        POE_ST_EXISTS
        POE_ST_DUPLICATE
        POE_ST_STALE
    uint16_t poe_rd16(const unsigned char *p) nogil
    uint32_t poe_rd32(const unsigned char *p) nogil
    uint64_t poe_rd64(const unsigned char *p) nogil
    void poe_wr16(unsigned char *p, uint16_t v) nogil
    void poe_wr32(unsigned char *p, uint32_t v) nogil
    void poe_wr64(unsigned char *p, uint64_t v) nogil


cdef class Batch:
    """A validated list of client messages living inside one buffer (no copies).

    Invariant (checked once, at construction): every client message i spans
    data[offsets[i]:offsets[i+1]], is structurally valid (op codes, lengths, value
    sizes, strictly increasing request ids) and ends with a 64-byte signature.
    Kernels may therefore walk it with the unchecked readers of wire.h.
    """
    cdef object owner                  # keeps the memory alive
    cdef const unsigned char* data     # first byte of the first client message
    cdef Py_ssize_t size               # bytes spanned by all client messages
    cdef Py_ssize_t count              # number of client messages
    cdef Py_ssize_t nops               # total number of operations
    cdef uint32_t* offsets             # count + 1 entries, offsets[0] == 0
    cdef object _digest                # cached batch digest (bytes) or None

    cdef Py_ssize_t _index(self, Py_ssize_t i) except -1
    cdef Py_ssize_t _base(self)
