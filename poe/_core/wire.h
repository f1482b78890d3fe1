/* Shared C layout of the poe wire format (see docs/wire.md). Header-only, no state.
 * Readers here never check bounds: callers check lengths at the API edge (the codec
 * validates every client message before a Batch exists), then walk with these. */
#ifndef POE_WIRE_H
#define POE_WIRE_H
#include <stdint.h>
#include <string.h>

#define POE_MAGIC0 0x50u /* 'P' */
#define POE_MAGIC1 0x45u /* 'E' */
#define POE_VERSION 1u
#define POE_HEADER_SIZE 32
#define POE_MAC_SIZE 32
#define POE_SIG_SIZE 64
#define POE_DIGEST_SIZE 32
#define POE_SHARE_SIZE 96

/* declared maxima */
#define POE_MAX_BODY (16u * 1024u * 1024u)
#define POE_MAX_VALUE 4096u
#define POE_MAX_OPS_PER_MSG 256u
#define POE_MAX_MSGS_PER_BATCH 4096u
#define POE_MAX_REPLICAS 1024u
#define POE_MAX_BITMAP_BYTES (POE_MAX_REPLICAS / 8u)

/* client message: u32 client | u16 n_ops | u16 flags | ops | sig[64]
 * op:             u64 t | u64 key | u8 code | u16 vlen | value[vlen]         */
#define POE_CM_HEADER 8
#define POE_OP_HEADER 19
#define POE_CM_MIN (POE_CM_HEADER + POE_OP_HEADER + POE_SIG_SIZE)

enum poe_op { POE_OP_READ = 1, POE_OP_UPDATE = 2, POE_OP_INSERT = 3, POE_OP_RMW = 4 };
enum poe_status {
    POE_ST_OK = 0, POE_ST_NOT_FOUND = 1, POE_ST_EXISTS = 2,
    POE_ST_DUPLICATE = 3, POE_ST_STALE = 4
};

static inline uint16_t poe_rd16(const unsigned char *p) {
    return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
}
static inline uint32_t poe_rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t poe_rd64(const unsigned char *p) {
    return (uint64_t)poe_rd32(p) | ((uint64_t)poe_rd32(p + 4) << 32);
}
static inline void poe_wr16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static inline void poe_wr32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static inline void poe_wr64(unsigned char *p, uint64_t v) { poe_wr32(p, (uint32_t)v); poe_wr32(p + 4, (uint32_t)(v >> 32)); }

#endif
