# cython: freethreading_compatible = False
"""YCSB key-value state machine with undo: the application state a PoE replica executes into.

What it is for: executing whole batches of client operations (READ, UPDATE, INSERT, RMW) in
C, strictly in sequence order (PROTOCOL.md §2.8), with exactly-once semantics per (client, t)
kept inside the replicated state (§10 row 7); recording undo entries per sequence number so
``rollback_to(k)`` restores the exact earlier state (§4.6, §10 row 13); dropping them at a
stable checkpoint (``finalize``, §5.4, §10 row 12); and digesting the state incrementally for
CHECKPOINT messages (§5.1). ``zero_payload`` is the paper's dummy work per request (§10 row
23): dedup and undo of the client table still run, the key store is not touched.

What it must never do: let the probe-hash seed influence a result, a digest or a snapshot;
execute out of order or twice; walk a batch the codec has not validated; create a Python
object per request on the execute path; hand out results that alias store memory; crash or
read out of bounds on a hostile snapshot (``restore`` raises ValueError with a reason).

Exactly-once rule, per client c, over a window of W = 1024 request ids (``WINDOW``; absent
client = (max_t 0, no id executed)):
  t > max_t                    slide the window to t, execute
  max_t - W < t <= max_t       executed before: DUPLICATE (no effect, empty result);
                               else execute, mark t executed
  t <= max_t - W               STALE (no effect, empty result)
Every executed request (whatever its status) is marked. W covers every id a correct client
can have in flight: it holds back a message whose last id is W or more above the first id
of its oldest undecided message (poe/protocol/poe/client.py, PROTOCOL.md §2.2), so no
message it still awaits is ever STALE; a message carries at most 256 requests (wire.h), so
one always fits, and its ids only slide the window forward within it. The window's bitmap
(W bits, bit i <=> request max_t - i executed) is written as W/8 bytes, least significant
first: bits of ids below 0 (i > max_t) are always clear, bit 0 (max_t) always set. All
integers below are little-endian.

State digest, version 2 (``state_digest()``), a pure function of records + client table:
  bucket(key)    = fmix64(key) >> 54, fmix64 being MurmurHash3's 64-bit finalizer (unkeyed):
                   k ^= k >> 33; k *= 0xff51afd7ed558ccd; k ^= k >> 33;
                   k *= 0xc4ceb9fe1a85ec53; k ^= k >> 33
  bucket_digest  = SHA-256(b"PoE/KV-BUCKET/v1" || for each record of the bucket, by increasing
                   key: u64 key || u16 len || value)        (unchanged since version 1)
  client_digest  = SHA-256(for each client, by increasing id: u32 client || u64 max_t ||
                   bitmap (W/8 = 128 bytes))
  state_digest   = SHA-256(b"PoE/STATE/v2" || u64 record_count || bucket_digest[0] || ... ||
                   bucket_digest[1023] || client_digest)
Bucket digests are cached; a write or undo marks its bucket dirty and only dirty buckets are
rehashed. No additive or XOR combination is used anywhere. (Version 1 had a 64-id window:
u64 bitmap, tag b"PoE/STATE/v1".)

Snapshot, version 2 (``snapshot()`` / ``KVStore.restore``), canonical for a state and seq:
  b"PoE/KV-SNAP/v2\\0\\0" (16) || u64 seq || u64 record_count || u64 client_count ||
  state_digest (32) || records by increasing key: u64 key | u16 len | value ||
  clients by increasing id: u32 client | u64 max_t | bitmap (128) ||
  SHA-256(all preceding bytes) (32)
A version-1 snapshot (b"PoE/KV-SNAP/v1", 64-id window) is refused with a ValueError that
says so: it is never read as version 2.
The trailing checksum catches corruption; the structural checks catch hostile input; the
embedded digest must equal the restored store's digest. The protocol still compares that
digest with the stable checkpoint's d_state (§5.5).

Captured checkpoints (``capture`` / ``snapshot_at``, issue 15): a checkpoint costs only the
digest refresh above; nothing is encoded. ``snapshot_at(k)`` encodes the state at a captured
k later, from the current tables where, for each key that changed after k, the first undo
entry recorded after k's mark supplies its value at k, or its absence; a client's window at
k is its current one with its undo entries after k's mark applied to a copy, newest first
(each saves the old max_t and the words of the window its message changed).
Execution only inserts and overwrites, so the result is byte for byte what ``snapshot()``
returned at k. A capture lives while final_seq <= k <= executed_seq: a rollback below k
or a finalize above k (whose undo entries are then gone) drops it, and so does a load.

Values of ``load_sequential(count, value_size, seed)``: key i in [0, count) gets the first
value_size bytes of u64(z_1) || u64(z_2) || ..., where s_0 = seed ^ (i * 0xd6e8feb86659fd93),
s_j = s_{j-1} + 0x9e3779b97f4a7c15 and z_j = splitmix64's mix of s_j (all mod 2**64).
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcmp, memcpy, memmove, memset

from poe._core.codec cimport (
    POE_CM_HEADER, POE_MAX_VALUE, POE_OP_HEADER, POE_OP_INSERT, POE_OP_READ, POE_OP_RMW,
    POE_MAX_OPS_PER_MSG, POE_OP_UPDATE, POE_ST_DUPLICATE, POE_ST_EXISTS, POE_ST_NOT_FOUND,
    POE_ST_OK, POE_ST_STALE,
    Batch, poe_rd16, poe_rd32, poe_rd64, poe_wr16, poe_wr32, poe_wr64,
)

cdef extern from "sha256.h":
    ctypedef struct poe_sha256_ctx:
        pass
    void poe_sha256_init(poe_sha256_ctx* c) nogil
    void poe_sha256_update(poe_sha256_ctx* c, const void* data, size_t n) nogil
    void poe_sha256_final(poe_sha256_ctx* c, unsigned char* out) nogil
    void poe_sha256(const void* data, size_t n, unsigned char* out) nogil
    int poe_sha256_select() nogil

cdef extern from *:
    """
    /* The raw allocator: GIL-free malloc that tracemalloc can see (the leak test uses it).
     * Wrapped so that the annotated build shows what it is: plain C, no Python overhead. */
    static inline void *kv_malloc(size_t n) { return PyMem_RawMalloc(n); }
    static inline void *kv_calloc(size_t n, size_t size) { return PyMem_RawCalloc(n, size); }
    static inline void *kv_realloc(void *p, size_t n) { return PyMem_RawRealloc(p, n); }
    static inline void kv_free(void *p) { PyMem_RawFree(p); }
    static inline uint64_t kv_fmix64(uint64_t k) {
        k ^= k >> 33; k *= 0xff51afd7ed558ccdULL; k ^= k >> 33;
        k *= 0xc4ceb9fe1a85ec53ULL; k ^= k >> 33;
        return k;
    }
    static inline uint64_t kv_splitmix64_mix(uint64_t z) {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    /* SipHash-1-3 of one 64-bit word: the keyed probe hash (resists hash flooding). */
    #define KV_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
    #define KV_SIPROUND do { \\
        v0 += v1; v1 = KV_ROTL(v1, 13); v1 ^= v0; v0 = KV_ROTL(v0, 32); \\
        v2 += v3; v3 = KV_ROTL(v3, 16); v3 ^= v2; \\
        v0 += v3; v3 = KV_ROTL(v3, 21); v3 ^= v0; \\
        v2 += v1; v1 = KV_ROTL(v1, 17); v1 ^= v2; v2 = KV_ROTL(v2, 32); } while (0)
    static inline uint64_t kv_siphash13_u64(uint64_t k0, uint64_t k1, uint64_t m) {
        uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
        uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
        const uint64_t b = ((uint64_t)8) << 56;
        v3 ^= m; KV_SIPROUND; v0 ^= m;
        v3 ^= b; KV_SIPROUND; v0 ^= b;
        v2 ^= 0xff; KV_SIPROUND; KV_SIPROUND; KV_SIPROUND;
        return v0 ^ v1 ^ v2 ^ v3;
    }
    static void kv_fill_value(unsigned char *out, uint32_t n, uint64_t seed, uint64_t key) {
        uint64_t s = seed ^ (key * 0xd6e8feb86659fd93ULL);
        uint32_t i = 0;
        while (i < n) {
            s += 0x9e3779b97f4a7c15ULL;
            uint64_t z = kv_splitmix64_mix(s);
            for (int b = 0; b < 8 && i < n; b++, i++) out[i] = (unsigned char)(z >> (8 * b));
        }
    }
    static int kv_cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return (x > y) - (x < y);
    }
    typedef struct { uint64_t key; const unsigned char *val; uint32_t len; } kv_snap_rec;
    static int kv_cmp_snap_rec(const void *a, const void *b) {
        uint64_t x = ((const kv_snap_rec *)a)->key, y = ((const kv_snap_rec *)b)->key;
        return (x > y) - (x < y);
    }
    """
    void* kv_malloc(size_t n) nogil
    void* kv_calloc(size_t n, size_t size) nogil
    void* kv_realloc(void* p, size_t n) nogil
    void kv_free(void* p) nogil
    uint64_t kv_fmix64(uint64_t k) nogil
    uint64_t kv_splitmix64_mix(uint64_t z) nogil
    uint64_t kv_siphash13_u64(uint64_t k0, uint64_t k1, uint64_t m) nogil
    void kv_fill_value(unsigned char* out, uint32_t n, uint64_t seed, uint64_t key) nogil
    int kv_cmp_u64(const void* a, const void* b) noexcept nogil
    ctypedef struct kv_snap_rec:
        uint64_t key
        const unsigned char* val
        uint32_t len
    int kv_cmp_snap_rec(const void* a, const void* b) noexcept nogil

cdef enum:
    KV_BUCKETS = 1024
    KV_BUCKET_SHIFT = 54
    KV_MIN_SLOTS = 16
    UNDO_KEY_ABSENT = 1              # undo of an insert: delete the key
    UNDO_KEY_VALUE = 2               # undo of an overwrite: restore the owned old value
    UNDO_CLIENT_ABSENT = 3           # undo of a client's first request: delete the client
    UNDO_CLIENT_STATE = 4            # restore the window (saved in the window log)
    RES_CM_HEADER = 10               # u32 client | u32 idx | u16 count
    RES_OP_HEADER = 11               # u64 t | u8 status | u16 rlen
    SNAP_HEADER = 72
    SNAP_RECORD_MIN = 10
    SNAP_CLIENT = 12 + 8 * KV_WINDOW_WORDS   # u32 client | u64 max_t | bitmap
    KV_DIGEST_BUF = 2 * 4096 + 64    # bucket digest gather buffer (> 2 records of max size)

cdef const char* BUCKET_TAG = b"PoE/KV-BUCKET/v1"       # 16 bytes
cdef const char* STATE_TAG = b"PoE/STATE/v2"            # 12 bytes
cdef const char* SNAP_MAGIC = b"PoE/KV-SNAP/v2\x00\x00"   # 16 bytes
cdef const char* SNAP_MAGIC_V1 = b"PoE/KV-SNAP/v1\x00\x00"
SNAPSHOT_MAGIC = SNAP_MAGIC[:16]
WINDOW = KV_WINDOW                   # request ids of a client's exactly-once window
if KV_WINDOW < POE_MAX_OPS_PER_MSG or KV_WINDOW != 64 * KV_WINDOW_WORDS:
    raise ImportError("kv: the exactly-once window must hold a whole client message")


ctypedef struct kv_client_rec:       # a client's window, for sorting by id
    uint64_t max_t
    kv_bits b
    uint32_t client


cdef int _cmp_client(const void* a, const void* b) noexcept nogil:
    cdef uint32_t x = (<const kv_client_rec*>a).client, y = (<const kv_client_rec*>b).client
    return (x > y) - (x < y)


cdef inline uint64_t _win_pos(uint64_t t) noexcept nogil:
    """Ring position of request id t (kv.pxd: kv_bits)."""
    return (<uint64_t>0 - t) & (KV_WINDOW - 1)


cdef inline bint _win_has(const kv_bits* b, uint64_t t) noexcept nogil:
    cdef uint64_t p = _win_pos(t)
    return (b.w[p >> 6] >> (p & 63)) & 1


cdef inline void _win_save(kv_state* s, kv_undo* u, const kv_bits* b, uint64_t word,
                           uint32_t* saved) noexcept nogil:
    """Before word ``word`` of bitmap b first changes for the message whose client entry is
    u (NULL: its client is new, the undo deletes it), save it in the window log (capacity
    reserved by the caller). ``saved``: the words saved so far for u, one bit each."""
    if u == NULL or (saved[0] >> word) & 1:
        return
    saved[0] |= (<uint32_t>1) << word
    s.wlog[s.wlog_len].bits = b.w[word]
    s.wlog[s.wlog_len].word = word
    s.wlog_len += 1
    u.len += 1


cdef inline void _win_mark(kv_state* s, kv_undo* u, kv_client* c, kv_bits* b, uint64_t t,
                           uint32_t* saved) noexcept nogil:
    """Mark request t executed (t > max_t - KV_WINDOW, not marked yet); for t > max_t the
    window slides up to t first: ids max_t+1 .. t take the positions of the ids leaving it,
    cleared. Every word changed is saved first (_win_save)."""
    cdef uint64_t x, p, word
    if t > c.max_t:
        if t - c.max_t >= KV_WINDOW:
            for word in range(<uint64_t>KV_WINDOW_WORDS):
                _win_save(s, u, b, word, saved)
            memset(b.w, 0, sizeof(kv_bits))
        else:
            for x in range(c.max_t + 1, t):
                p = _win_pos(x)
                _win_save(s, u, b, p >> 6, saved)
                b.w[p >> 6] &= ~((<uint64_t>1) << (p & 63))
        c.max_t = t
    p = _win_pos(t)
    _win_save(s, u, b, p >> 6, saved)
    b.w[p >> 6] |= (<uint64_t>1) << (p & 63)


cdef inline void _win_restore(const kv_state* s, kv_bits* b, size_t first, size_t count) \
        noexcept nogil:
    """Put back into window b the ``count`` words saved in the window log from ``first``
    (one message's _win_save entries): b as it was before that message."""
    cdef size_t x
    for x in range(first, first + count):
        b.w[s.wlog[x].word & (KV_WINDOW_WORDS - 1)] = s.wlog[x].bits


cdef inline void _win_rotate(const uint64_t* src, uint64_t* dst, uint64_t r) noexcept nogil:
    """dst = src rotated right by r bits as one KV_WINDOW-bit integer (word 0 least
    significant): bit i of dst is bit (i + r) mod KV_WINDOW of src."""
    cdef uint64_t ws = (r >> 6) & (KV_WINDOW_WORDS - 1), bs = r & 63, w
    for w in range(<uint64_t>KV_WINDOW_WORDS):
        if bs:
            dst[w] = ((src[(w + ws) & (KV_WINDOW_WORDS - 1)] >> bs)
                      | (src[(w + ws + 1) & (KV_WINDOW_WORDS - 1)] << (64 - bs)))
        else:
            dst[w] = src[(w + ws) & (KV_WINDOW_WORDS - 1)]


cdef inline void _win_bitmap(uint64_t max_t, const kv_bits* b, uint64_t* out) noexcept nogil:
    """The window as its bitmap (bit i <=> request max_t - i executed), KV_WINDOW_WORDS
    words, least significant first: the ring rotated so that max_t's position is bit 0."""
    _win_rotate(b.w, out, _win_pos(max_t))


cdef inline void _win_from_bitmap(uint64_t max_t, const uint64_t* bitmap, kv_bits* b) \
        noexcept nogil:
    """Inverse of _win_bitmap."""
    _win_rotate(bitmap, b.w, (KV_WINDOW - _win_pos(max_t)) & (KV_WINDOW - 1))
BUCKETS = KV_BUCKETS
ACCELERATED_SHA256 = bool(poe_sha256_select())


# ---------------------------------------------------------------------------------------
# C helpers on kv_state (no Python objects; every allocation failure returns -1)


cdef inline uint64_t _slot_hash(const kv_state* s, uint64_t key) noexcept nogil:
    return kv_siphash13_u64(s.k0, s.k1, key)


cdef inline uint64_t _client_hash(const kv_state* s, uint32_t client) noexcept nogil:
    return kv_siphash13_u64(s.k1, s.k0, client)


cdef inline uint32_t _bucket_of(uint64_t key) noexcept nogil:
    return <uint32_t>(kv_fmix64(key) >> KV_BUCKET_SHIFT)


cdef inline void _touch_key(kv_state* s, uint64_t key) noexcept nogil:
    s.buckets[_bucket_of(key)].dirty = 1
    s.state_dirty = 1


cdef inline int64_t _find(const kv_state* s, uint64_t key) noexcept nogil:
    cdef uint64_t mask = s.slot_mask
    cdef uint64_t i = _slot_hash(s, key) & mask
    while s.slots[i].used:            # load factor <= 0.7: an empty slot always exists
        if s.slots[i].key == key:
            return <int64_t>i
        i = (i + 1) & mask
    return -1


cdef inline uint64_t _slots_for(uint64_t records) noexcept nogil:
    cdef uint64_t cap = KV_MIN_SLOTS
    while records * 10 > cap * 7:
        cap <<= 1
    return cap


cdef int _reserve_slots(kv_state* s, uint64_t extra) noexcept nogil:
    """Grow the key table so that records + extra stay under load factor 0.7."""
    cdef uint64_t old_cap = s.slot_mask + 1, cap, i, j, mask
    cdef kv_slot* fresh
    if (s.records + extra) * 10 <= old_cap * 7:
        return 0
    cap = _slots_for(s.records + extra)
    fresh = <kv_slot*>kv_calloc(cap, sizeof(kv_slot))
    if fresh == NULL:
        return -1
    mask = cap - 1
    for i in range(old_cap):
        if s.slots[i].used:
            j = _slot_hash(s, s.slots[i].key) & mask
            while fresh[j].used:
                j = (j + 1) & mask
            fresh[j] = s.slots[i]
    kv_free(s.slots)
    s.slots = fresh
    s.slot_mask = mask
    return 0


cdef int _bucket_reserve(kv_state* s, uint64_t key) noexcept nogil:
    cdef kv_bucket* b = &s.buckets[_bucket_of(key)]
    cdef uint32_t cap
    cdef uint64_t* keys
    if b.n < b.cap:
        return 0
    cap = 8 if b.cap == 0 else b.cap * 2
    keys = <uint64_t*>kv_realloc(b.keys, cap * sizeof(uint64_t))
    if keys == NULL:
        return -1
    b.keys = keys
    b.cap = cap
    return 0


cdef void _bucket_remove(kv_state* s, uint64_t key) noexcept nogil:
    cdef kv_bucket* b = &s.buckets[_bucket_of(key)]
    cdef uint32_t lo = 0, hi = b.n, mid, i = b.n
    if b.sorted:
        while lo < hi:
            mid = (lo + hi) >> 1
            if b.keys[mid] < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < b.n and b.keys[lo] == key:
            i = lo
    else:
        for lo in range(b.n):
            if b.keys[lo] == key:
                i = lo
                break
    if i < b.n:                       # order of the rest is kept, so `sorted` stays valid
        memmove(b.keys + i, b.keys + i + 1, (b.n - i - 1) * sizeof(uint64_t))
        b.n -= 1
    b.dirty = 1
    s.state_dirty = 1


cdef int _insert_new(kv_state* s, uint64_t key, unsigned char* val, uint32_t n) noexcept nogil:
    """Insert an absent key; takes ownership of val only on success (returns 0)."""
    cdef uint64_t i
    cdef kv_bucket* b
    if _reserve_slots(s, 1) < 0 or _bucket_reserve(s, key) < 0:
        return -1
    i = _slot_hash(s, key) & s.slot_mask
    while s.slots[i].used:
        i = (i + 1) & s.slot_mask
    s.slots[i].key = key
    s.slots[i].val = val
    s.slots[i].len = n
    s.slots[i].used = 1
    s.records += 1
    b = &s.buckets[_bucket_of(key)]
    if b.n and b.keys[b.n - 1] > key:
        b.sorted = 0
    b.keys[b.n] = key
    b.n += 1
    b.dirty = 1
    s.state_dirty = 1
    return 0


cdef void _delete_at(kv_state* s, uint64_t i) noexcept nogil:
    """Remove slot i (backward-shift deletion: linear probing needs no tombstones)."""
    cdef uint64_t mask = s.slot_mask, j = i, home
    cdef uint64_t key = s.slots[i].key
    kv_free(s.slots[i].val)
    while True:
        j = (j + 1) & mask
        if not s.slots[j].used:
            break
        home = _slot_hash(s, s.slots[j].key) & mask
        # the entry at j may move to the hole at i unless its home lies cyclically in (i, j]
        if (i <= j and i < home <= j) or (i > j and (home > i or home <= j)):
            continue
        s.slots[i] = s.slots[j]
        i = j
    memset(&s.slots[i], 0, sizeof(kv_slot))
    s.records -= 1
    _bucket_remove(s, key)


cdef int _put(kv_state* s, uint64_t key, const unsigned char* src, uint32_t n) noexcept nogil:
    """Insert or overwrite without undo (load phase and restore only)."""
    cdef unsigned char* val = NULL
    cdef int64_t i
    if n:
        val = <unsigned char*>kv_malloc(n)
        if val == NULL:
            return -1
        memcpy(val, src, n)
    i = _find(s, key)
    if i >= 0:
        kv_free(s.slots[i].val)
        s.slots[i].val = val
        s.slots[i].len = n
        _touch_key(s, key)
        return 0
    if _insert_new(s, key, val, n) < 0:
        kv_free(val)
        return -1
    return 0


cdef inline int64_t _client_find(const kv_state* s, uint32_t client) noexcept nogil:
    cdef uint64_t mask = s.client_mask
    cdef uint64_t i = _client_hash(s, client) & mask
    while s.clients[i].used:
        if s.clients[i].client == client:
            return <int64_t>i
        i = (i + 1) & mask
    return -1


cdef int64_t _client_insert(kv_state* s, uint32_t client) noexcept nogil:
    """Insert an absent client with state (0, 0); returns its index or -1 (no memory)."""
    cdef uint64_t old_cap = s.client_mask + 1, cap, i, j, mask
    cdef kv_client* fresh
    cdef kv_bits* bits
    if s.nclients == s.bits_cap:
        cap = 16 if s.bits_cap < 16 else s.bits_cap * 2
        bits = <kv_bits*>kv_realloc(s.bits, cap * sizeof(kv_bits))
        if bits == NULL:
            return -1
        s.bits = bits
        s.bits_cap = cap
    if (s.nclients + 1) * 10 > old_cap * 7:
        cap = old_cap * 2
        fresh = <kv_client*>kv_calloc(cap, sizeof(kv_client))
        if fresh == NULL:
            return -1
        mask = cap - 1
        for i in range(old_cap):
            if s.clients[i].used:
                j = _client_hash(s, s.clients[i].client) & mask
                while fresh[j].used:
                    j = (j + 1) & mask
                fresh[j] = s.clients[i]
        kv_free(s.clients)
        s.clients = fresh
        s.client_mask = mask
    i = _client_hash(s, client) & s.client_mask
    while s.clients[i].used:
        i = (i + 1) & s.client_mask
    s.clients[i].client = client
    s.clients[i].max_t = 0
    s.clients[i].bits = <uint32_t>s.nclients
    memset(&s.bits[s.nclients], 0, sizeof(kv_bits))
    s.clients[i].used = 1
    s.nclients += 1
    s.clients_dirty = 1
    s.state_dirty = 1
    return <int64_t>i


cdef void _client_delete_at(kv_state* s, uint64_t i) noexcept nogil:
    cdef uint64_t mask = s.client_mask, j = i, home, k
    cdef uint32_t last = <uint32_t>(s.nclients - 1), freed = s.clients[i].bits
    if freed != last:
        # keep the bitmaps dense: the last one moves into the freed place (never happens
        # by undo, which deletes the newest client first, but cheap to keep right)
        for k in range(mask + 1):
            if s.clients[k].used and s.clients[k].bits == last:
                s.bits[freed] = s.bits[last]
                s.clients[k].bits = freed
                break
    while True:
        j = (j + 1) & mask
        if not s.clients[j].used:
            break
        home = _client_hash(s, s.clients[j].client) & mask
        if (i <= j and i < home <= j) or (i > j and (home > i or home <= j)):
            continue
        s.clients[i] = s.clients[j]
        i = j
    memset(&s.clients[i], 0, sizeof(kv_client))
    s.nclients -= 1
    s.clients_dirty = 1
    s.state_dirty = 1


cdef int _log_reserve(void** buf, size_t* cap, size_t need, size_t size) noexcept nogil:
    """Room for ``need`` entries of ``size`` bytes in a log (the undo log, the window log):
    its capacity doubles from 1024; -1 if there is no memory (the log unchanged)."""
    cdef size_t grown
    cdef void* p
    if need <= cap[0]:
        return 0
    grown = 1024 if cap[0] < 1024 else cap[0]
    while grown < need:
        grown *= 2
    p = kv_realloc(buf[0], grown * size)
    if p == NULL:
        return -1
    buf[0] = p
    cap[0] = grown
    return 0


cdef void _log_shrink(void** buf, size_t* cap, size_t length, size_t size) noexcept nogil:
    """Give back the memory of an unusually large log (over 65,536 entries, under a quarter
    used): keep twice its length, at least 1024 (unchanged if the realloc fails)."""
    cdef size_t kept
    cdef void* p
    if cap[0] > 65536 and length < cap[0] // 4:
        kept = length * 2 if length * 2 > 1024 else 1024
        p = kv_realloc(buf[0], kept * size)
        if p != NULL:
            buf[0] = p
            cap[0] = kept


cdef inline int _undo_reserve(kv_state* s, size_t extra) noexcept nogil:
    return _log_reserve(<void**>&s.undo, &s.undo_cap, s.undo_len + extra, sizeof(kv_undo))


cdef inline int _wlog_reserve(kv_state* s, size_t extra) noexcept nogil:
    return _log_reserve(<void**>&s.wlog, &s.wlog_cap, s.wlog_len + extra, sizeof(kv_wsave))


cdef inline kv_undo* _undo_push(kv_state* s, uint32_t kind, uint64_t key) noexcept nogil:
    """Append an entry (capacity reserved by the caller)."""
    cdef kv_undo* u = &s.undo[s.undo_len]
    s.undo_len += 1
    u.kind = kind
    u.key = key
    u.val = NULL
    u.len = 0
    u.max_t = 0
    return u


cdef int _undo_to(kv_state* s, size_t start) noexcept nogil:
    """Apply undo entries [start, undo_len) in reverse order; -1 if the log is inconsistent."""
    cdef kv_undo* u
    cdef int64_t i
    cdef int rc = 0
    while s.undo_len > start:
        s.undo_len -= 1
        u = &s.undo[s.undo_len]
        if u.kind == UNDO_KEY_VALUE:
            i = _find(s, u.key)
            if i < 0:
                kv_free(u.val)
                rc = -1
            else:
                kv_free(s.slots[i].val)
                s.slots[i].val = u.val
                s.slots[i].len = u.len
                _touch_key(s, u.key)
            s.undo_value_bytes -= u.len
            u.val = NULL
        elif u.kind == UNDO_KEY_ABSENT:
            i = _find(s, u.key)
            if i < 0:
                rc = -1
            else:
                _delete_at(s, <uint64_t>i)
        elif u.kind == UNDO_CLIENT_STATE:
            i = _client_find(s, <uint32_t>u.key)
            # its saved words are the newest in the log: entries are undone in reverse order
            if i < 0 or u.len > s.wlog_len:
                rc = -1
            else:
                s.wlog_len -= u.len
                _win_restore(s, &s.bits[s.clients[i].bits], s.wlog_len, u.len)
                s.clients[i].max_t = u.max_t
                s.clients_dirty = 1
                s.state_dirty = 1
        elif u.kind == UNDO_CLIENT_ABSENT:
            i = _client_find(s, <uint32_t>u.key)
            if i < 0:
                rc = -1
            else:
                _client_delete_at(s, <uint64_t>i)
        else:
            rc = -1
    return rc


cdef inline int _out_reserve(kv_state* s, size_t need) noexcept nogil:
    cdef size_t cap
    cdef unsigned char* out
    if need <= s.out_cap:
        return 0
    cap = 65536 if s.out_cap < 65536 else s.out_cap
    while cap < need:
        cap *= 2
    out = <unsigned char*>kv_realloc(s.out, cap)
    if out == NULL:
        return -1
    s.out = out
    s.out_cap = cap
    return 0


cdef int _execute(kv_state* s, const unsigned char* data, const uint32_t* offsets,
                  Py_ssize_t count, Py_ssize_t* res_offsets) noexcept nogil:
    """Execute a validated batch; results go to s.out. Returns 0, or -1 when out of memory
    (the caller then undoes the partial batch). Undo capacity is reserved by the caller."""
    cdef const unsigned char* p
    cdef const unsigned char* q
    cdef const unsigned char* v
    cdef unsigned char* o
    cdef unsigned char* nv
    cdef Py_ssize_t m
    cdef size_t pos = 0
    cdef uint32_t client, j, nops, rlen
    cdef uint16_t vlen
    cdef uint8_t code, status
    cdef uint64_t t, key
    cdef int64_t ci, i
    cdef kv_client* c
    cdef kv_bits* b
    cdef kv_undo* u
    cdef kv_undo* cu                  # the message's UNDO_CLIENT_STATE entry (NULL: none)
    cdef uint32_t saved               # words of the window it saved, one bit each
    cdef bint recorded, run
    cdef int zero = s.zero_payload
    for m in range(count):
        p = data + offsets[m]
        client = poe_rd32(p)
        nops = poe_rd16(p + 4)
        if _out_reserve(s, pos + RES_CM_HEADER) < 0:
            return -1
        res_offsets[m] = <Py_ssize_t>pos
        o = s.out + pos
        poe_wr32(o, client)
        poe_wr32(o + 4, <uint32_t>m)
        poe_wr16(o + 8, <uint16_t>nops)
        pos += RES_CM_HEADER
        ci = _client_find(s, client)
        recorded = False
        cu = NULL
        saved = 0
        if ci < 0:
            ci = _client_insert(s, client)
            if ci < 0:
                return -1
            _undo_push(s, UNDO_CLIENT_ABSENT, client)
            recorded = True
        c = &s.clients[ci]            # stable: the client table changes only above
        b = &s.bits[c.bits]
        q = p + POE_CM_HEADER
        for j in range(nops):
            t = poe_rd64(q)
            key = poe_rd64(q + 8)
            code = q[16]
            vlen = poe_rd16(q + 17)
            v = q + POE_OP_HEADER
            q = v + vlen
            if _out_reserve(s, pos + RES_OP_HEADER + POE_MAX_VALUE) < 0:
                return -1
            o = s.out + pos
            rlen = 0
            run = False
            if t > c.max_t:
                run = True
            elif c.max_t - t < KV_WINDOW:
                if _win_has(b, t):
                    status = POE_ST_DUPLICATE
                else:
                    run = True
            else:
                status = POE_ST_STALE
            if run:
                if not recorded:
                    cu = _undo_push(s, UNDO_CLIENT_STATE, client)
                    cu.max_t = c.max_t
                    recorded = True
                _win_mark(s, cu, c, b, t, &saved)
                s.clients_dirty = 1
                s.state_dirty = 1
                status = POE_ST_OK
                if not zero:
                    i = _find(s, key)
                    if code == POE_OP_READ:
                        if i < 0:
                            status = POE_ST_NOT_FOUND
                        else:
                            rlen = s.slots[i].len
                            if rlen:
                                memcpy(o + RES_OP_HEADER, s.slots[i].val, rlen)
                    elif code == POE_OP_INSERT:
                        if i >= 0:
                            status = POE_ST_EXISTS
                        else:
                            nv = NULL
                            if vlen:
                                nv = <unsigned char*>kv_malloc(vlen)
                                if nv == NULL:
                                    return -1
                                memcpy(nv, v, vlen)
                            if _insert_new(s, key, nv, vlen) < 0:
                                kv_free(nv)
                                return -1
                            _undo_push(s, UNDO_KEY_ABSENT, key)
                    elif i < 0:       # UPDATE and RMW need the key
                        status = POE_ST_NOT_FOUND
                    else:
                        nv = NULL
                        if vlen:
                            nv = <unsigned char*>kv_malloc(vlen)
                            if nv == NULL:
                                return -1
                            memcpy(nv, v, vlen)
                        if code == POE_OP_RMW:
                            rlen = s.slots[i].len
                            if rlen:
                                memcpy(o + RES_OP_HEADER, s.slots[i].val, rlen)
                        u = _undo_push(s, UNDO_KEY_VALUE, key)
                        u.val = s.slots[i].val          # moved, not copied
                        u.len = s.slots[i].len
                        s.undo_value_bytes += u.len
                        s.slots[i].val = nv
                        s.slots[i].len = vlen
                        _touch_key(s, key)
            poe_wr64(o, t)
            o[8] = status
            poe_wr16(o + 9, <uint16_t>rlen)
            pos += RES_OP_HEADER + rlen
    res_offsets[count] = <Py_ssize_t>pos
    return 0


cdef void _bucket_digest(kv_state* s, kv_bucket* b) noexcept nogil:
    # the records are gathered into one buffer first: SHA-256 then runs over long
    # contiguous runs instead of one 10-byte header and one short value at a time
    cdef poe_sha256_ctx ctx
    cdef unsigned char buf[KV_DIGEST_BUF]
    cdef size_t fill = 16
    cdef uint32_t j, n
    cdef int64_t i
    if not b.sorted:
        qsort(b.keys, b.n, sizeof(uint64_t), kv_cmp_u64)
        b.sorted = 1
    poe_sha256_init(&ctx)
    memcpy(buf, BUCKET_TAG, 16)
    for j in range(b.n):
        i = _find(s, b.keys[j])       # bucket keys mirror the table; never read slot -1
        if i < 0:
            continue
        n = s.slots[i].len
        if fill + SNAP_RECORD_MIN + n > KV_DIGEST_BUF:     # n <= POE_MAX_VALUE < half
            poe_sha256_update(&ctx, buf, fill)
            fill = 0
        poe_wr64(buf + fill, b.keys[j])
        poe_wr16(buf + fill + 8, <uint16_t>n)
        if n:
            memcpy(buf + fill + SNAP_RECORD_MIN, s.slots[i].val, n)
        fill += SNAP_RECORD_MIN + n
    poe_sha256_update(&ctx, buf, fill)
    poe_sha256_final(&ctx, b.digest)
    b.dirty = 0


cdef kv_client_rec* _clients_sorted(kv_state* s) noexcept nogil:
    """All clients by increasing id (caller frees); NULL only when out of memory."""
    cdef kv_client_rec* recs = <kv_client_rec*>kv_malloc(
        (s.nclients + 1) * sizeof(kv_client_rec))
    cdef uint64_t i, n = 0
    if recs == NULL:
        return NULL
    for i in range(s.client_mask + 1):
        if s.clients[i].used:
            recs[n].client = s.clients[i].client
            recs[n].max_t = s.clients[i].max_t
            recs[n].b = s.bits[s.clients[i].bits]
            n += 1
    qsort(recs, n, sizeof(kv_client_rec), _cmp_client)
    return recs


cdef inline void _client_rec_encode(unsigned char* p, const kv_client_rec* r) noexcept nogil:
    """u32 client | u64 max_t | bitmap: SNAP_CLIENT bytes (module doc)."""
    cdef uint64_t bitmap[KV_WINDOW_WORDS]
    cdef uint32_t w
    poe_wr32(p, r.client)
    poe_wr64(p + 4, r.max_t)
    _win_bitmap(r.max_t, &r.b, bitmap)
    for w in range(<uint32_t>KV_WINDOW_WORDS):
        poe_wr64(p + 12 + 8 * w, bitmap[w])


cdef int _refresh_digest(kv_state* s) noexcept nogil:
    cdef poe_sha256_ctx ctx
    cdef unsigned char enc[SNAP_CLIENT]
    cdef kv_client_rec* recs
    cdef uint64_t i
    if not s.state_dirty:
        return 0
    if s.clients_dirty:
        recs = _clients_sorted(s)
        if recs == NULL:
            return -1
        poe_sha256_init(&ctx)
        for i in range(s.nclients):
            _client_rec_encode(enc, &recs[i])
            poe_sha256_update(&ctx, enc, SNAP_CLIENT)
        poe_sha256_final(&ctx, s.clients_digest)
        kv_free(recs)
        s.clients_dirty = 0
    for i in range(<uint64_t>KV_BUCKETS):
        if s.buckets[i].dirty:
            _bucket_digest(s, &s.buckets[i])
    poe_sha256_init(&ctx)
    poe_sha256_update(&ctx, STATE_TAG, 12)
    poe_wr64(enc, s.records)
    poe_sha256_update(&ctx, enc, 8)
    for i in range(<uint64_t>KV_BUCKETS):
        poe_sha256_update(&ctx, s.buckets[i].digest, 32)
    poe_sha256_update(&ctx, s.clients_digest, 32)
    poe_sha256_final(&ctx, s.state_digest)
    s.state_dirty = 0
    return 0


cdef size_t* _undo_first(kv_state* s, size_t start, uint64_t* mask_out) noexcept nogil:
    """For every key named by the key entries of [start, undo_len), the
    index + 1 of the FIRST of them, in an open-addressing table (load factor <= 1/2, keyed
    probe hash; 0 = empty); *mask_out = capacity - 1. NULL only when out of memory.
    That entry recorded the key's state just before its first change after ``start``, i.e.
    its state at the sequence number whose undo mark is ``start``."""
    cdef uint64_t cap = KV_MIN_SLOTS, mask, h, key
    cdef size_t u, e, n = s.undo_len - start
    cdef size_t* table
    cdef uint32_t kind
    while cap < 2 * <uint64_t>n:
        cap <<= 1
    table = <size_t*>kv_calloc(cap, sizeof(size_t))
    if table == NULL:
        return NULL
    mask = cap - 1
    for u in range(start, s.undo_len):
        kind = s.undo[u].kind
        if kind != UNDO_KEY_ABSENT and kind != UNDO_KEY_VALUE:
            continue
        key = s.undo[u].key
        h = _slot_hash(s, key) & mask
        while True:
            e = table[h]
            if e == 0:
                table[h] = u + 1
                break
            if s.undo[e - 1].key == key:    # a later change of the same key: not the first
                break
            h = (h + 1) & mask
    mask_out[0] = mask
    return table


cdef inline int64_t _undo_lookup(const kv_state* s, const size_t* table, uint64_t mask,
                                 uint64_t key) noexcept nogil:
    """Index of the first undo entry for key in a table of _undo_first, or -1."""
    cdef uint64_t h = _slot_hash(s, key) & mask
    cdef size_t e
    while True:
        e = table[h]
        if e == 0:
            return -1
        if s.undo[e - 1].key == key:
            return <int64_t>(e - 1)
        h = (h + 1) & mask


cdef void _sort_snap_recs(kv_snap_rec* a, uint64_t n) noexcept nogil:
    """Sort records by key: LSD radix sort, one pass per key byte that is not the same in
    every record (stable, O(n) per pass); qsort for few records or without memory."""
    cdef kv_snap_rec* tmp
    cdef kv_snap_rec* src = a
    cdef kv_snap_rec* dst
    cdef kv_snap_rec* t
    cdef size_t count[256]
    cdef size_t total, c
    cdef uint64_t i
    cdef int shift, d
    if n < 256:
        qsort(a, n, sizeof(kv_snap_rec), kv_cmp_snap_rec)
        return
    tmp = <kv_snap_rec*>kv_malloc(n * sizeof(kv_snap_rec))
    if tmp == NULL:
        qsort(a, n, sizeof(kv_snap_rec), kv_cmp_snap_rec)
        return
    dst = tmp
    for shift in range(0, 64, 8):
        memset(count, 0, sizeof(count))
        for i in range(n):
            count[(src[i].key >> shift) & 0xff] += 1
        if count[(src[0].key >> shift) & 0xff] == n:
            continue                        # this byte is the same in every key
        total = 0
        for d in range(256):
            c = count[d]
            count[d] = total
            total += c
        for i in range(n):
            d = <int>((src[i].key >> shift) & 0xff)
            dst[count[d]] = src[i]
            count[d] += 1
        t = src
        src = dst
        dst = t
    if src != a:
        memcpy(a, src, n * sizeof(kv_snap_rec))
    kv_free(tmp)


cdef bytes _encode_snapshot(kv_state* s, size_t start, uint64_t seq,
                            const unsigned char* digest):
    """Snapshot v2 (module doc) of the state before undo entries [start, undo_len), i.e. the
    state at ``seq`` when start is seq's undo mark (start = undo_len: the current state),
    whose state digest the caller passes. The store is only read: a value changed since is
    taken from the undo entry that holds it, a key inserted since (first entry: absent) is
    left out. A client's window at ``seq`` is its current one with the client entries after
    start undone on a copy (newest first: the saved words and old max_t), a client first
    seen after start is left out. Execution only inserts and overwrites (deletion happens
    only by undo), so every key and client at ``seq`` is still in the tables."""
    cdef size_t* ktab = NULL
    cdef uint64_t kmask = 0, i, n = 0, nc = 0
    cdef kv_snap_rec* recs = NULL
    cdef kv_client_rec* crecs = NULL
    cdef unsigned char* gone = NULL
    cdef const kv_undo* u
    cdef int64_t j
    cdef size_t e, wpos
    cdef size_t size = SNAP_HEADER + 32, pos
    cdef bytes out
    cdef unsigned char* p
    try:
        if start < s.undo_len:
            ktab = _undo_first(s, start, &kmask)
            if ktab == NULL:
                raise MemoryError()
        recs = <kv_snap_rec*>kv_malloc((s.records + 1) * sizeof(kv_snap_rec))
        # clients by their slot in the client table first, compacted below
        crecs = <kv_client_rec*>kv_malloc((s.client_mask + 1) * sizeof(kv_client_rec))
        gone = <unsigned char*>kv_calloc(s.client_mask + 1, 1)
        if recs == NULL or crecs == NULL or gone == NULL:
            raise MemoryError()
        for i in range(s.slot_mask + 1):
            if not s.slots[i].used:
                continue
            recs[n].key = s.slots[i].key
            recs[n].val = s.slots[i].val
            recs[n].len = s.slots[i].len
            if ktab != NULL:
                j = _undo_lookup(s, ktab, kmask, recs[n].key)
                if j >= 0:
                    u = &s.undo[j]
                    if u.kind == UNDO_KEY_ABSENT:      # inserted after seq
                        continue
                    recs[n].val = u.val                # UNDO_KEY_VALUE: its value at seq
                    recs[n].len = u.len
            size += SNAP_RECORD_MIN + recs[n].len
            n += 1
        for i in range(s.client_mask + 1):
            if s.clients[i].used:
                crecs[i].client = s.clients[i].client
                crecs[i].max_t = s.clients[i].max_t
                crecs[i].b = s.bits[s.clients[i].bits]
        wpos = s.wlog_len
        e = s.undo_len
        while e > start:
            e -= 1
            u = &s.undo[e]
            if u.kind != UNDO_CLIENT_STATE and u.kind != UNDO_CLIENT_ABSENT:
                continue
            j = _client_find(s, <uint32_t>u.key)
            if j < 0 or (u.kind == UNDO_CLIENT_STATE and u.len > wpos):
                raise AssertionError("kv: undo log inconsistent with the client table")
            if u.kind == UNDO_CLIENT_ABSENT:
                gone[j] = 1                            # first request after seq
                continue
            wpos -= u.len
            _win_restore(s, &crecs[j].b, wpos, u.len)
            crecs[j].max_t = u.max_t
        for i in range(s.client_mask + 1):
            if s.clients[i].used and not gone[i]:
                crecs[nc] = crecs[i]                   # nc <= i
                nc += 1
        _sort_snap_recs(recs, n)
        qsort(crecs, nc, sizeof(kv_client_rec), _cmp_client)
        size += nc * SNAP_CLIENT
        out = PyBytes_FromStringAndSize(NULL, size)
        p = <unsigned char*>PyBytes_AS_STRING(out)
        memcpy(p, SNAP_MAGIC, 16)
        poe_wr64(p + 16, seq)
        poe_wr64(p + 24, n)
        poe_wr64(p + 32, nc)
        memcpy(p + 40, digest, 32)
        pos = SNAP_HEADER
        for i in range(n):
            poe_wr64(p + pos, recs[i].key)
            poe_wr16(p + pos + 8, <uint16_t>recs[i].len)
            if recs[i].len:
                memcpy(p + pos + 10, recs[i].val, recs[i].len)
            pos += SNAP_RECORD_MIN + recs[i].len
        for i in range(nc):
            _client_rec_encode(p + pos, &crecs[i])
            pos += SNAP_CLIENT
        poe_sha256(p, pos, p + pos)
    finally:
        kv_free(ktab)
        kv_free(recs)
        kv_free(crecs)
        kv_free(gone)
    return out


# ---------------------------------------------------------------------------------------
# Python API


cdef int _check_index(Results r, Py_ssize_t i) except -1:
    if i < 0 or i >= r.count:
        raise IndexError(f"client message {i} out of range for {r.count} results")
    return 0


cdef int _check_loadable(KVStore store) except -1:
    if store.executed_seq != 0 or store.st.undo_len != 0:
        raise ValueError("load is only allowed before the first batch (executed_seq == 0)")
    store.captures.clear()              # a load is not undoable: the state at 0 changes
    return 0


cdef class Results:
    """Per-request results of one executed batch, laid out as INFORM entries.

    For client message i: ``u32 client | u32 idx | u16 count | per op: u64 t | u8 status |
    u16 rlen | result[rlen]`` (idx = position of the message in the batch), all messages
    concatenated in ``buffer``. The buffer is a private copy: it never aliases the store.
    """

    def __cinit__(self):
        self.offsets = NULL
        self.count = 0

    def __dealloc__(self):
        kv_free(self.offsets)
        self.offsets = NULL

    def __len__(self):
        return self.count

    def client(self, Py_ssize_t i):
        """Client id of message i."""
        _check_index(self, i)
        return poe_rd32(<const unsigned char*>PyBytes_AS_STRING(self.buffer) + self.offsets[i])

    def message_results(self, Py_ssize_t i):
        """Results of message i: ``u32 client`` then its INFORM entry (zero-copy
        memoryview); ``codec.encode_inform_results`` joins a client's into one INFORM."""
        _check_index(self, i)
        return memoryview(self.buffer)[self.offsets[i]:self.offsets[i + 1]]

    def all_duplicate(self, Py_ssize_t i):
        """True iff every operation of message i was a DUPLICATE (the whole message had been
        executed before): the replica answers it from its reply cache instead."""
        cdef const unsigned char* p
        cdef Py_ssize_t pos = RES_CM_HEADER
        cdef uint32_t n, j
        _check_index(self, i)
        p = <const unsigned char*>PyBytes_AS_STRING(self.buffer) + self.offsets[i]
        n = poe_rd16(p + 8)
        for j in range(n):
            if p[pos + 8] != POE_ST_DUPLICATE:
                return False
            pos += RES_OP_HEADER + poe_rd16(p + pos + 9)
        return True

    def ops(self, Py_ssize_t i):
        """Results of message i as a list of (t, status, value) (inspection, not hot path)."""
        cdef const unsigned char* p
        cdef Py_ssize_t pos
        cdef uint32_t n, j
        cdef uint16_t rlen
        _check_index(self, i)
        p = <const unsigned char*>PyBytes_AS_STRING(self.buffer) + self.offsets[i]
        n = poe_rd16(p + 8)
        pos = RES_CM_HEADER
        out = []
        for j in range(n):
            rlen = poe_rd16(p + pos + 9)
            out.append((poe_rd64(p + pos), p[pos + 8],
                        PyBytes_FromStringAndSize(<const char*>p + pos + RES_OP_HEADER, rlen)))
            pos += RES_OP_HEADER + rlen
        return out

    def __repr__(self):
        return f"Results(seq={self.seq}, messages={self.count}, bytes={len(self.buffer)})"


cdef class KVStore:
    """The replicated YCSB key-value state with per-sequence-number undo (see module doc).

    ``seed`` keys only the probe hash (hash-flooding resistance); it never changes a result,
    a digest or a snapshot. ``capacity`` is the number of records held before the first
    rehash. Not thread-safe: one writer, like the protocol object that drives it.
    """

    def __cinit__(self, seed=0, zero_payload=False, capacity=1024):
        cdef uint64_t sd, cap
        cdef uint32_t b
        memset(&self.st, 0, sizeof(kv_state))
        self.captures = {}
        if not 0 <= seed < 2 ** 64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        if not 0 <= capacity <= 2 ** 40:
            raise ValueError(f"capacity must be in [0, 2**40], got {capacity}")
        sd = <uint64_t>seed
        cap = _slots_for(<uint64_t>capacity)
        self.seed = sd
        self.zero_payload = bool(zero_payload)
        self.st.zero_payload = 1 if self.zero_payload else 0
        self.st.k0 = kv_splitmix64_mix(sd + <uint64_t>0x9e3779b97f4a7c15)
        self.st.k1 = kv_splitmix64_mix(sd + <uint64_t>0x3c6ef372fe94f82a)
        self.st.slots = <kv_slot*>kv_calloc(cap, sizeof(kv_slot))
        self.st.slot_mask = cap - 1
        self.st.clients = <kv_client*>kv_calloc(KV_MIN_SLOTS, sizeof(kv_client))
        self.st.client_mask = KV_MIN_SLOTS - 1
        self.st.buckets = <kv_bucket*>kv_calloc(KV_BUCKETS, sizeof(kv_bucket))
        if self.st.slots == NULL or self.st.clients == NULL or self.st.buckets == NULL:
            raise MemoryError()
        for b in range(<uint32_t>KV_BUCKETS):
            self.st.buckets[b].sorted = 1
            self.st.buckets[b].dirty = 1
        self.st.clients_dirty = 1
        self.st.state_dirty = 1

    def __dealloc__(self):
        cdef uint64_t i
        cdef size_t u
        cdef uint32_t b
        if self.st.slots != NULL:
            for i in range(self.st.slot_mask + 1):
                if self.st.slots[i].used:
                    kv_free(self.st.slots[i].val)
        for u in range(self.st.undo_len):
            if self.st.undo[u].kind == UNDO_KEY_VALUE:
                kv_free(self.st.undo[u].val)
        if self.st.buckets != NULL:
            for b in range(<uint32_t>KV_BUCKETS):
                kv_free(self.st.buckets[b].keys)
        kv_free(self.st.slots)
        kv_free(self.st.clients)
        kv_free(self.st.bits)
        kv_free(self.st.buckets)
        kv_free(self.st.undo)
        kv_free(self.st.marks)
        kv_free(self.st.wlog)
        kv_free(self.st.out)
        memset(&self.st, 0, sizeof(kv_state))

    def __len__(self):
        return self.st.records

    def __repr__(self):
        return (f"KVStore(records={self.st.records}, clients={self.st.nclients}, "
                f"executed_seq={self.executed_seq}, final_seq={self.final_seq}, "
                f"zero_payload={self.zero_payload})")

    @property
    def undo_bytes(self):
        """Memory held by the undo log: entries, owned old values, old client windows and
        sequence marks."""
        return (self.st.undo_len * sizeof(kv_undo) + self.st.undo_value_bytes
                + self.st.wlog_len * sizeof(kv_wsave) + self.st.marks_len * sizeof(size_t))

    @property
    def clients(self):
        """Number of clients in the exactly-once table."""
        return self.st.nclients

    def get(self, uint64_t key):
        """The value of key (a copy), or None."""
        cdef int64_t i = _find(&self.st, key)
        if i < 0:
            return None
        return PyBytes_FromStringAndSize(<const char*>self.st.slots[i].val, self.st.slots[i].len)

    def client_state(self, uint32_t client):
        """(max_t, bitmap) of a client's exactly-once window, or None if it never executed:
        bitmap is an int of WINDOW bits, bit i set <=> request max_t - i was executed."""
        cdef int64_t i = _client_find(&self.st, client)
        cdef uint64_t bitmap[KV_WINDOW_WORDS]
        cdef unsigned char enc[8 * KV_WINDOW_WORDS]
        cdef uint32_t w
        if i < 0:
            return None
        _win_bitmap(self.st.clients[i].max_t, &self.st.bits[self.st.clients[i].bits], bitmap)
        for w in range(<uint32_t>KV_WINDOW_WORDS):
            poe_wr64(enc + 8 * w, bitmap[w])
        return (self.st.clients[i].max_t,
                int.from_bytes(PyBytes_FromStringAndSize(<const char*>enc, sizeof(enc)),
                               "little"))

    def request_status(self, uint32_t client, uint64_t t):
        """What executing request t of client now would answer, by the exactly-once window
        alone: codec.ST_OK (it would execute), ST_DUPLICATE (executed, inside the window)
        or ST_STALE (below the window: executed long ago or never; it never executes)."""
        cdef int64_t i = _client_find(&self.st, client)
        cdef kv_client* c
        if i < 0:
            return POE_ST_OK
        c = &self.st.clients[i]
        if t > c.max_t:
            return POE_ST_OK
        if c.max_t - t >= KV_WINDOW:
            return POE_ST_STALE
        return POE_ST_DUPLICATE if _win_has(&self.st.bits[c.bits], t) else POE_ST_OK

    def load(self, records):
        """YCSB load phase: put every (key, value) of records (last one wins); not undoable."""
        cdef const unsigned char[::1] view
        cdef uint64_t k
        cdef Py_ssize_t n
        _check_loadable(self)
        for key, value in records:
            if not 0 <= key < 2 ** 64:
                raise ValueError(f"key must be in [0, 2**64), got {key}")
            view = value
            n = view.shape[0]
            if n > POE_MAX_VALUE:
                raise ValueError(f"value of {n} bytes exceeds the maximum {POE_MAX_VALUE}")
            k = <uint64_t>key
            if _put(&self.st, k, &view[0] if n else NULL, <uint32_t>n) < 0:
                raise MemoryError()

    def load_sequential(self, Py_ssize_t count, Py_ssize_t value_size, uint64_t seed=0):
        """Put keys 0..count-1 with deterministic values (module doc); not undoable."""
        cdef unsigned char buf[POE_MAX_VALUE]
        cdef uint64_t key
        _check_loadable(self)
        if count < 0 or count > 2 ** 40:
            raise ValueError(f"count must be in [0, 2**40], got {count}")
        if value_size < 0 or value_size > POE_MAX_VALUE:
            raise ValueError(f"value_size must be in [0, {POE_MAX_VALUE}], got {value_size}")
        if _reserve_slots(&self.st, <uint64_t>count) < 0:
            raise MemoryError()
        for key in range(<uint64_t>count):
            kv_fill_value(buf, <uint32_t>value_size, seed, key)
            if _put(&self.st, key, buf, <uint32_t>value_size) < 0:
                raise MemoryError()

    def execute(self, uint64_t seq, Batch batch not None):
        """Execute batch as sequence number seq (must be executed_seq + 1); returns Results."""
        cdef Results res
        cdef size_t mark
        cdef size_t* marks
        cdef size_t cap
        if seq != self.executed_seq + 1:
            raise ValueError(f"execution is in order: expected seq {self.executed_seq + 1}, "
                             f"got {seq}")
        if self.st.marks_len == self.st.marks_cap:
            cap = 64 if self.st.marks_cap < 64 else self.st.marks_cap * 2
            marks = <size_t*>kv_realloc(self.st.marks, cap * sizeof(size_t))
            if marks == NULL:
                raise MemoryError()
            self.st.marks = marks
            self.st.marks_cap = cap
        # at most one key entry per operation and one client entry per client message, which
        # saves each word of its client's window at most once
        if _undo_reserve(&self.st, <size_t>(batch.nops + batch.count)) < 0 \
                or _wlog_reserve(&self.st, <size_t>batch.count * KV_WINDOW_WORDS) < 0:
            raise MemoryError()
        res = Results.__new__(Results)
        res.offsets = <Py_ssize_t*>kv_malloc((batch.count + 1) * sizeof(Py_ssize_t))
        if res.offsets == NULL:
            raise MemoryError()
        mark = self.st.undo_len
        if _execute(&self.st, batch.data, batch.offsets, batch.count, res.offsets) < 0:
            if _undo_to(&self.st, mark) < 0:
                raise AssertionError("kv: undo log inconsistent while undoing a failed batch")
            raise MemoryError()
        try:
            res.buffer = PyBytes_FromStringAndSize(<const char*>self.st.out,
                                                   res.offsets[batch.count])
        except MemoryError:
            if _undo_to(&self.st, mark) < 0:
                raise AssertionError("kv: undo log inconsistent while undoing a failed batch")
            raise
        res.count = batch.count
        res.seq = seq
        self.st.marks[self.st.marks_len] = mark
        self.st.marks_len += 1
        self.executed_seq = seq
        return res

    def execute_noop(self, uint64_t seq):
        """Execute position seq as a no-op (a position a MAC-mode view change decided
        empty): the state is unchanged, seq counts as executed; returns None."""
        cdef size_t* marks
        cdef size_t cap
        if seq != self.executed_seq + 1:
            raise ValueError(f"execution is in order: expected seq {self.executed_seq + 1}, "
                             f"got {seq}")
        if self.st.marks_len == self.st.marks_cap:
            cap = 64 if self.st.marks_cap < 64 else self.st.marks_cap * 2
            marks = <size_t*>kv_realloc(self.st.marks, cap * sizeof(size_t))
            if marks == NULL:
                raise MemoryError()
            self.st.marks = marks
            self.st.marks_cap = cap
        self.st.marks[self.st.marks_len] = self.st.undo_len
        self.st.marks_len += 1
        self.executed_seq = seq
        return None

    def rollback_to(self, uint64_t k):
        """Undo batches executed_seq .. k+1 in reverse order (state becomes that after k)."""
        if k < self.final_seq:
            raise ValueError(f"cannot roll back to {k}: speculation is final up to "
                             f"{self.final_seq}")
        if k > self.executed_seq:
            raise ValueError(f"cannot roll back to {k}: only {self.executed_seq} executed")
        if k == self.executed_seq:
            return
        if _undo_to(&self.st, self.st.marks[k - self.final_seq]) < 0:
            raise AssertionError("kv: undo log inconsistent with the store")
        self.st.marks_len = <size_t>(k - self.final_seq)
        self.executed_seq = k
        for j in [j for j in self.captures if j > k]:
            del self.captures[j]            # that state is gone with its undo entries

    def finalize(self, uint64_t k):
        """Speculation is final up to k (stable checkpoint): free undo entries <= k.
        A k at or below final_seq is a no-op; above executed_seq is an error."""
        cdef size_t end, u, drop, wdrop = 0
        if k > self.executed_seq:
            raise ValueError(f"cannot finalize {k}: only {self.executed_seq} executed")
        if k <= self.final_seq:
            return
        drop = <size_t>(k - self.final_seq)
        end = self.st.marks[drop] if drop < self.st.marks_len else self.st.undo_len
        for u in range(end):
            if self.st.undo[u].kind == UNDO_KEY_VALUE:
                kv_free(self.st.undo[u].val)
                self.st.undo_value_bytes -= self.st.undo[u].len
            elif self.st.undo[u].kind == UNDO_CLIENT_STATE:
                wdrop += self.st.undo[u].len
        if wdrop:
            memmove(self.st.wlog, self.st.wlog + wdrop,
                    (self.st.wlog_len - wdrop) * sizeof(kv_wsave))
            self.st.wlog_len -= wdrop
        memmove(self.st.undo, self.st.undo + end, (self.st.undo_len - end) * sizeof(kv_undo))
        self.st.undo_len -= end
        memmove(self.st.marks, self.st.marks + drop,
                (self.st.marks_len - drop) * sizeof(size_t))
        self.st.marks_len -= drop
        for u in range(self.st.marks_len):
            self.st.marks[u] -= end
        self.final_seq = k
        for j in [j for j in self.captures if j < k]:
            del self.captures[j]            # its undo entries are freed
        # give back the memory of an unusually large speculative suffix
        _log_shrink(<void**>&self.st.undo, &self.st.undo_cap, self.st.undo_len,
                    sizeof(kv_undo))
        _log_shrink(<void**>&self.st.wlog, &self.st.wlog_cap, self.st.wlog_len,
                    sizeof(kv_wsave))

    def state_digest(self):
        """SHA-256 state digest, version 2 (module doc); rehashes only dirty buckets."""
        if _refresh_digest(&self.st) < 0:
            raise MemoryError()
        return PyBytes_FromStringAndSize(<const char*>self.st.state_digest, 32)

    def state_digest_full(self):
        """``state_digest()`` recomputed from scratch: every bucket and the client table
        rehashed, as if all were dirty (the reference the incremental digest must equal;
        for tests and benchmarks, never needed by the protocol)."""
        cdef uint32_t b
        for b in range(<uint32_t>KV_BUCKETS):
            self.st.buckets[b].dirty = 1
        self.st.clients_dirty = 1
        self.st.state_dirty = 1
        return self.state_digest()

    def snapshot(self):
        """Canonical, versioned encoding of records and client table at executed_seq."""
        if _refresh_digest(&self.st) < 0:
            raise MemoryError()
        return _encode_snapshot(&self.st, self.st.undo_len, self.executed_seq,
                                self.st.state_digest)

    def capture(self):
        """Keep the state at executed_seq for ``snapshot_at(executed_seq)``, encoding
        nothing now (a checkpoint); returns its state digest. The undo log already holds
        every value changed after it, so the state stays reachable until a rollback below
        it or a finalize above it drops the capture (as does a load)."""
        if _refresh_digest(&self.st) < 0:
            raise MemoryError()
        digest = PyBytes_FromStringAndSize(<const char*>self.st.state_digest, 32)
        self.captures[self.executed_seq] = digest
        return digest

    def snapshot_at(self, uint64_t k):
        """The bytes ``snapshot()`` returned when checkpoint k was captured, encoded now from
        the current state and the undo log. ValueError if k is not (or no longer) captured."""
        cdef size_t start
        digest = self.captures.get(k)
        if digest is None or k < self.final_seq or k > self.executed_seq:
            raise ValueError(f"no captured state at {k} (captured: {sorted(self.captures)})")
        start = self.st.undo_len if k == self.executed_seq \
            else self.st.marks[k - self.final_seq]
        return _encode_snapshot(&self.st, start, k, <bytes>digest)

    @property
    def captured(self):
        """Sequence numbers whose state ``snapshot_at`` can still encode, increasing."""
        return sorted(self.captures)

    @staticmethod
    def restore(data, seed=0, zero_payload=False):
        """A store rebuilt from ``snapshot()`` bytes; ValueError (with a reason) on any
        malformed, truncated or corrupted input. executed_seq = final_seq = the snapshot's
        seq; the undo log is empty."""
        cdef const unsigned char[::1] view = data
        cdef const unsigned char* p
        cdef Py_ssize_t size = view.shape[0], pos, body_end
        cdef uint64_t seq, nrec, ncli, r, key, prev_key = 0, max_t, low
        cdef uint64_t bitmap[KV_WINDOW_WORDS]
        cdef uint32_t w
        cdef uint32_t client, prev_client = 0
        cdef uint16_t n
        cdef unsigned char check[32]
        cdef int64_t ci
        cdef KVStore store
        if size < SNAP_HEADER + 32:
            raise ValueError(f"snapshot of {size} bytes is shorter than its fixed part")
        p = &view[0]
        if memcmp(p, SNAP_MAGIC_V1, 16) == 0:
            raise ValueError("a kv snapshot of version 1 (64-request exactly-once window, "
                             "written by an older poe): this poe reads version 2 only")
        if memcmp(p, SNAP_MAGIC, 16) != 0:
            raise ValueError("not a kv snapshot of version 2 (bad magic)")
        body_end = size - 32
        poe_sha256(p, <size_t>body_end, check)
        if memcmp(check, p + body_end, 32) != 0:
            raise ValueError("snapshot checksum mismatch (corrupted or truncated)")
        seq = poe_rd64(p + 16)
        nrec = poe_rd64(p + 24)
        ncli = poe_rd64(p + 32)
        if nrec > <uint64_t>(body_end - SNAP_HEADER) // SNAP_RECORD_MIN:
            raise ValueError(f"record count {nrec} does not fit in {size} bytes")
        if ncli > <uint64_t>(body_end - SNAP_HEADER) // SNAP_CLIENT:
            raise ValueError(f"client count {ncli} does not fit in {size} bytes")
        store = KVStore(seed=seed, zero_payload=zero_payload, capacity=nrec)
        pos = SNAP_HEADER
        for r in range(nrec):
            if body_end - pos < SNAP_RECORD_MIN:
                raise ValueError(f"record {r} header runs past the end")
            key = poe_rd64(p + pos)
            n = poe_rd16(p + pos + 8)
            if n > POE_MAX_VALUE:
                raise ValueError(f"record {r}: value of {n} bytes exceeds {POE_MAX_VALUE}")
            if r and key <= prev_key:
                raise ValueError(f"record {r}: keys not strictly increasing")
            pos += SNAP_RECORD_MIN
            if body_end - pos < n:
                raise ValueError(f"record {r}: value runs past the end")
            if _put(&store.st, key, p + pos, n) < 0:
                raise MemoryError()
            pos += n
            prev_key = key
        if <uint64_t>(body_end - pos) != ncli * SNAP_CLIENT:
            raise ValueError(f"client section is {body_end - pos} bytes, expected "
                             f"{ncli} x {SNAP_CLIENT}")
        for r in range(ncli):
            client = poe_rd32(p + pos)
            max_t = poe_rd64(p + pos + 4)
            for w in range(<uint32_t>KV_WINDOW_WORDS):
                bitmap[w] = poe_rd64(p + pos + 12 + 8 * w)
            if r and client <= prev_client:
                raise ValueError(f"client entry {r}: ids not strictly increasing")
            if not bitmap[0] & 1:
                raise ValueError(f"client {client}: request max_t={max_t} not marked executed")
            if max_t < KV_WINDOW - 1:
                # bits max_t + 1 .. KV_WINDOW - 1 would be request ids below 0
                low = max_t + 1
                w = <uint32_t>(low >> 6)
                if bitmap[w] >> (low & 63):
                    raise ValueError(f"client {client}: bitmap marks request ids below 0")
                for w in range(w + 1, <uint32_t>KV_WINDOW_WORDS):
                    if bitmap[w]:
                        raise ValueError(f"client {client}: bitmap marks request ids below 0")
            ci = _client_insert(&store.st, client)
            if ci < 0:
                raise MemoryError()
            store.st.clients[ci].max_t = max_t
            _win_from_bitmap(max_t, bitmap, &store.st.bits[store.st.clients[ci].bits])
            pos += SNAP_CLIENT
            prev_client = client
        if _refresh_digest(&store.st) < 0:
            raise MemoryError()
        if memcmp(store.st.state_digest, p + 40, 32) != 0:
            raise ValueError("restored state does not match the snapshot's state digest")
        store.executed_seq = seq
        store.final_seq = seq
        return store
