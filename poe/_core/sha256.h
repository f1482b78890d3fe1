/* SHA-256 (FIPS 180-4), header-only, written for poe. Portable C, plus an x86-64 SHA-NI block
 * function chosen at run time by poe_sha256_select() (call at each module init). No allocation.
 * API: poe_sha256_init / _update / _final on a poe_sha256_ctx, and poe_sha256(data, len, out). */
#ifndef POE_SHA256_H
#define POE_SHA256_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint32_t h[8];
    uint64_t total;          /* bytes hashed so far */
    unsigned char buf[64];
    size_t buflen;
} poe_sha256_ctx;

static const uint32_t poe_sha256_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

#define POE_ROTR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void poe_sha256_blocks_portable(uint32_t st[8], const unsigned char *p, size_t nblocks) {
    uint32_t w[64];
    while (nblocks--) {
        for (int i = 0; i < 16; i++)
            w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
                   ((uint32_t)p[4 * i + 2] << 8) | (uint32_t)p[4 * i + 3];
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = POE_ROTR32(w[i - 15], 7) ^ POE_ROTR32(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = POE_ROTR32(w[i - 2], 17) ^ POE_ROTR32(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
        for (int i = 0; i < 64; i++) {
            uint32_t S1 = POE_ROTR32(e, 6) ^ POE_ROTR32(e, 11) ^ POE_ROTR32(e, 25);
            uint32_t ch = (e & f) ^ (~e & g);
            uint32_t t1 = h + S1 + ch + poe_sha256_k[i] + w[i];
            uint32_t S0 = POE_ROTR32(a, 2) ^ POE_ROTR32(a, 13) ^ POE_ROTR32(a, 22);
            uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
            uint32_t t2 = S0 + maj;
            h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        st[0] += a; st[1] += b; st[2] += c; st[3] += d;
        st[4] += e; st[5] += f; st[6] += g; st[7] += h;
        p += 64;
    }
}

/* Block function in use; an accelerated implementation may replace it at start-up. */
static void (*poe_sha256_blocks)(uint32_t st[8], const unsigned char *p, size_t nblocks) =
    poe_sha256_blocks_portable;

/* ---- x86-64 SHA extensions (SHA-NI) ---------------------------------------------------------
 * Written from the instruction descriptions in the Intel SDM (SHA256RNDS2, SHA256MSG1/2).
 * Only this function is compiled for the "sha,sse4.1" target, so the rest of the module stays
 * baseline x86-64; it is reached only through poe_sha256_blocks after a CPUID check.
 *
 * Register layout required by SHA256RNDS2 (dword lanes, lane 0 = bits 31:0):
 *   abef = {F, E, B, A}, cdgh = {H, G, D, C}; xmm0 lanes 0 and 1 hold W[i]+K[i], W[i+1]+K[i+1].
 * One call runs two rounds and returns the new {A,B,E,F}; the old {A,B,E,F} is the new {C,D,G,H}.
 * Message schedule for words 4g..4g+3 (g >= 4), with m[j] holding four consecutive words:
 *   MSG1(W[4g-16..], W[4g-12..]) adds sigma0; adding W[4g-7..4g-4] (ALIGNR of the two most recent
 *   groups) and MSG2(.., W[4g-4..]) adds sigma1, the last two lanes using the first two results. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define POE_SHA256_HAVE_SHANI 1
#include <immintrin.h>

__attribute__((target("sha,sse4.1")))
static void poe_sha256_blocks_shani(uint32_t st[8], const unsigned char *p, size_t nblocks) {
    /* big-endian words -> dword lanes: reverse the bytes inside each 4-byte group */
    const __m128i bswap32 = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    __m128i abef = _mm_set_epi32((int)st[0], (int)st[1], (int)st[4], (int)st[5]);
    __m128i cdgh = _mm_set_epi32((int)st[2], (int)st[3], (int)st[6], (int)st[7]);
    while (nblocks--) {
        const __m128i abef_in = abef, cdgh_in = cdgh;
        __m128i m[4];
        for (int j = 0; j < 4; j++)
            m[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * j)), bswap32);
#if defined(__clang__)
#pragma clang loop unroll(full)
#elif defined(__GNUC__)
#pragma GCC unroll 16
#endif
        for (int g = 0; g < 16; g++) {
            __m128i w;
            if (g < 4) {
                w = m[g];
            } else {
                const __m128i oldest = m[g & 3], older = m[(g + 1) & 3];
                const __m128i old = m[(g + 2) & 3], newest = m[(g + 3) & 3];
                w = _mm_sha256msg1_epu32(oldest, older);
                w = _mm_add_epi32(w, _mm_alignr_epi8(newest, old, 4));
                w = _mm_sha256msg2_epu32(w, newest);
                m[g & 3] = w;
            }
            __m128i wk = _mm_add_epi32(w, _mm_loadu_si128((const __m128i *)&poe_sha256_k[4 * g]));
            __m128i t = _mm_sha256rnds2_epu32(cdgh, abef, wk);     /* rounds 4g, 4g+1 */
            cdgh = abef; abef = t;
            wk = _mm_shuffle_epi32(wk, 0x0E);                      /* lanes 2,3 -> 0,1 */
            t = _mm_sha256rnds2_epu32(cdgh, abef, wk);             /* rounds 4g+2, 4g+3 */
            cdgh = abef; abef = t;
        }
        abef = _mm_add_epi32(abef, abef_in);
        cdgh = _mm_add_epi32(cdgh, cdgh_in);
        p += 64;
    }
    st[0] = (uint32_t)_mm_extract_epi32(abef, 3); st[1] = (uint32_t)_mm_extract_epi32(abef, 2);
    st[4] = (uint32_t)_mm_extract_epi32(abef, 1); st[5] = (uint32_t)_mm_extract_epi32(abef, 0);
    st[2] = (uint32_t)_mm_extract_epi32(cdgh, 3); st[3] = (uint32_t)_mm_extract_epi32(cdgh, 2);
    st[6] = (uint32_t)_mm_extract_epi32(cdgh, 1); st[7] = (uint32_t)_mm_extract_epi32(cdgh, 0);
}
#endif

/* 1 when this CPU can run the SHA-NI block function, else 0. */
static int poe_sha256_cpu_has_shani(void) {
#if defined(POE_SHA256_HAVE_SHANI)
    __builtin_cpu_init();
    return __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1");
#else
    return 0;
#endif
}

/* Choose the block function: accelerated != 0 asks for SHA-NI, 0 for the portable one.
 * Returns 0, or -1 (pointer unchanged) when SHA-NI was asked for but is unavailable. */
static int poe_sha256_use(int accelerated) {
    if (!accelerated) {
        poe_sha256_blocks = poe_sha256_blocks_portable;
        return 0;
    }
#if defined(POE_SHA256_HAVE_SHANI)
    if (poe_sha256_cpu_has_shani()) {
        poe_sha256_blocks = poe_sha256_blocks_shani;
        return 0;
    }
#endif
    return -1;
}

/* 1 when the block function in use is SHA-NI, else 0. */
static int poe_sha256_accelerated(void) {
#if defined(POE_SHA256_HAVE_SHANI)
    return poe_sha256_blocks == poe_sha256_blocks_shani;
#else
    return 0;
#endif
}

/* Pick the fastest block function this CPU supports. The pointer is static, so EVERY module that
 * includes this header has its own copy and must call this once at module init.
 * Returns 1 when SHA-NI was selected, 0 for the portable implementation. */
static int poe_sha256_select(void) {
    if (poe_sha256_use(1) == 0) return 1;
    poe_sha256_use(0);
    return 0;
}

static inline void poe_sha256_init(poe_sha256_ctx *c) {
    static const uint32_t iv[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(c->h, iv, sizeof iv);
    c->total = 0;
    c->buflen = 0;
}

static inline void poe_sha256_update(poe_sha256_ctx *c, const void *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    c->total += len;
    if (c->buflen) {
        size_t take = 64 - c->buflen;
        if (take > len) take = len;
        memcpy(c->buf + c->buflen, p, take);
        c->buflen += take; p += take; len -= take;
        if (c->buflen < 64) return;
        poe_sha256_blocks(c->h, c->buf, 1);
        c->buflen = 0;
    }
    if (len >= 64) {
        size_t nb = len / 64;
        poe_sha256_blocks(c->h, p, nb);
        p += nb * 64; len -= nb * 64;
    }
    if (len) { memcpy(c->buf, p, len); c->buflen = len; }
}

static inline void poe_sha256_final(poe_sha256_ctx *c, unsigned char out[32]) {
    uint64_t bits = c->total * 8;
    unsigned char pad[72];
    size_t padlen = (c->buflen < 56) ? (56 - c->buflen) : (120 - c->buflen);
    memset(pad, 0, sizeof pad);
    pad[0] = 0x80;
    for (int i = 0; i < 8; i++) pad[padlen + i] = (unsigned char)(bits >> (56 - 8 * i));
    uint64_t saved = c->total;
    poe_sha256_update(c, pad, padlen + 8);
    c->total = saved;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(c->h[i] >> 24); out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(c->h[i] >> 8); out[4 * i + 3] = (unsigned char)c->h[i];
    }
}

static inline void poe_sha256(const void *data, size_t len, unsigned char out[32]) {
    poe_sha256_ctx c;
    poe_sha256_init(&c);
    poe_sha256_update(&c, data, len);
    poe_sha256_final(&c, out);
}

#endif
