# Declarations of the kv kernel (YCSB state machine with undo), for cimport by other kernels.
# All state lives in one C struct (kv_state) so the hot functions are plain C calls, not
# method dispatch; KVStore owns it and frees every pointer in it in __dealloc__.
from libc.stdint cimport uint8_t, uint32_t, uint64_t


ctypedef struct kv_slot:             # one record of the open-addressing key table
    uint64_t key
    unsigned char* val               # owned; NULL when len == 0
    uint32_t len
    uint32_t used


cdef enum:
    KV_WINDOW = 1024                 # request ids per client's exactly-once window (kv.WINDOW)
    KV_WINDOW_WORDS = 16             # KV_WINDOW / 64


ctypedef struct kv_bits:             # the bitmap of a client's exactly-once window, a ring:
    # bit p (word p / 64, bit p % 64) with p = (-t) mod KV_WINDOW is set <=> request t,
    # max_t - KV_WINDOW < t <= max_t, was executed; every other bit is clear. Digests,
    # snapshots and client_state() see it rotated (bit i <=> request max_t - i, kv doc)
    uint64_t w[KV_WINDOW_WORDS]


ctypedef struct kv_client:           # exactly-once window of one client
    uint64_t max_t                   # highest executed request id
    uint32_t client
    uint32_t used
    uint32_t bits                    # its bitmap: kv_state.bits[bits] (kept apart, so that
                                     # the probed table stays small)


ctypedef struct kv_wsave:            # a word of a client's window before a message changed it
    uint64_t bits
    uint64_t word                    # its index in kv_bits.w


ctypedef struct kv_undo:             # one undo entry; applied in reverse order
    uint64_t key                     # key, or client id for the client kinds
    uint64_t max_t                   # UNDO_CLIENT_STATE: the client's old max_t
    unsigned char* val               # old value, owned by the log (UNDO_KEY_VALUE)
    uint32_t len                     # UNDO_KEY_VALUE: old value's length; UNDO_CLIENT_STATE:
                                     # words it saved, the newest ones of the window log
    uint32_t kind


ctypedef struct kv_bucket:           # one of the 1024 digest buckets
    uint64_t* keys                   # keys of the bucket (sorted when `sorted`)
    uint32_t n
    uint32_t cap
    uint8_t sorted
    uint8_t dirty                    # digest below is stale
    unsigned char digest[32]


ctypedef struct kv_state:
    kv_slot* slots
    uint64_t slot_mask               # slot capacity - 1 (power of two)
    uint64_t records
    kv_client* clients
    kv_bits* bits                    # the clients' bitmaps, dense: 0 .. nclients - 1
    uint64_t bits_cap
    uint64_t client_mask
    uint64_t nclients
    uint64_t k0                      # probe-hash key (from the seed; never reaches a digest)
    uint64_t k1
    kv_bucket* buckets
    kv_undo* undo
    size_t undo_len
    size_t undo_cap
    size_t* marks                    # marks[i]: first undo entry of seq final_seq + 1 + i
    size_t marks_len
    size_t marks_cap
    kv_wsave* wlog                   # window log: the words the UNDO_CLIENT_STATE entries
    size_t wlog_len                  # saved, in the order of the entries
    size_t wlog_cap
    uint64_t undo_value_bytes        # bytes of old values owned by the undo log
    unsigned char* out               # scratch for result encoding, reused across batches
    size_t out_cap
    int zero_payload
    int clients_dirty
    int state_dirty
    unsigned char clients_digest[32]
    unsigned char state_digest[32]


cdef class Results:
    cdef readonly bytes buffer       # per client message: u32 client | INFORM entry, concatenated
    cdef Py_ssize_t* offsets         # count + 1 entries into buffer
    cdef readonly Py_ssize_t count
    cdef readonly uint64_t seq


cdef class KVStore:
    cdef kv_state st
    cdef readonly uint64_t executed_seq
    cdef readonly uint64_t final_seq
    cdef readonly uint64_t seed
    cdef readonly bint zero_payload
    cdef dict captures               # captured checkpoint seq -> its state digest (bytes)
