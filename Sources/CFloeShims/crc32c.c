// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by Kafka's RecordBatch v2.
//
// Two paths:
// - software: slicing-by-8 tables, for CPUs without SSE4.2 and for cross-checking;
// - hardware: the SSE4.2 crc32 instruction. One crc32 has a latency of about 3 cycles but the
//   CPU can start one per cycle, so a single dependent chain wastes two thirds of the unit.
//   Large inputs are therefore cut into three adjacent blocks whose CRCs are computed as three
//   independent chains in one loop, then joined: for raw (non-inverted) CRC registers,
//   crc(A || B, init c) = shift(crc(A, init c), |B|) xor crc(B, init 0), where shift(x, n)
//   multiplies x by x^(8n) modulo the polynomial. shift is linear in x, so for each fixed block
//   size it is four 256-entry tables indexed by the bytes of x.
#include "floe_shims.h"
#include <pthread.h>
#include <string.h>

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : (c >> 1);
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
    }
}

uint32_t floe_crc32c_update_software(uint32_t crc, const void *data, size_t length) {
    pthread_once(&table_once, build_table);
    const uint8_t *p = data;
    crc = ~crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = table[7][word & 0xff] ^ table[6][(word >> 8) & 0xff] ^ table[5][(word >> 16) & 0xff] ^
              table[4][(word >> 24) & 0xff] ^ table[3][(word >> 32) & 0xff] ^ table[2][(word >> 40) & 0xff] ^
              table[1][(word >> 48) & 0xff] ^ table[0][word >> 56];
        p += 8;
        length -= 8;
    }
    while (length--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

// Bytes per chain, by input size: 3 * LONG_BLOCK per step for large inputs, then MID and
// SHORT for what remains (a 16 KiB record batch runs mostly on the MID tier).
#define LONG_BLOCK 8192
#define MID_BLOCK 2048
#define SHORT_BLOCK 256

static uint32_t shift_long[4][256];
static uint32_t shift_mid[4][256];
static uint32_t shift_short[4][256];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

// x * x^(8 * bytes) mod P for a raw register x: feed `bytes` zero bytes (a multiple of 8).
__attribute__((target("sse4.2")))
static uint32_t shift_slow(uint32_t x, size_t bytes) {
    uint64_t c = x;
    for (size_t i = 0; i < bytes / 8; i++) c = _mm_crc32_u64(c, 0);
    return (uint32_t)c;
}

static void build_shift_table(uint32_t out[4][256], size_t bytes) {
    uint32_t bit[32];
    for (int b = 0; b < 32; b++) bit[b] = shift_slow(1u << b, bytes);
    for (int k = 0; k < 4; k++) {
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t r = 0;
            for (int b = 0; b < 8; b++)
                if (v & (1u << b)) r ^= bit[8 * k + b];
            out[k][v] = r;
        }
    }
}

static void build_shift_tables(void) {
    build_shift_table(shift_long, LONG_BLOCK);
    build_shift_table(shift_mid, MID_BLOCK);
    build_shift_table(shift_short, SHORT_BLOCK);
}

static inline uint32_t shift(uint32_t t[4][256], uint32_t x) {
    return t[0][x & 0xff] ^ t[1][(x >> 8) & 0xff] ^ t[2][(x >> 16) & 0xff] ^ t[3][x >> 24];
}

static inline uint64_t load64(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

// Three chains over blocks of `block` bytes each; `p` and `length` advance past what was done.
#define THREE_WAY(block, tbl)                                                        \
    while (length >= 3 * (block)) {                                                  \
        uint64_t c0 = c, c1 = 0, c2 = 0;                                             \
        const uint8_t *end = p + (block);                                            \
        do {                                                                         \
            c0 = _mm_crc32_u64(c0, load64(p));                                       \
            c1 = _mm_crc32_u64(c1, load64(p + (block)));                             \
            c2 = _mm_crc32_u64(c2, load64(p + 2 * (block)));                         \
            p += 8;                                                                  \
        } while (p < end);                                                           \
        c = shift(tbl, (uint32_t)c0) ^ (uint32_t)c1;                                 \
        c = shift(tbl, (uint32_t)c) ^ (uint32_t)c2;                                  \
        p += 2 * (block);                                                            \
        length -= 3 * (block);                                                       \
    }

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t length) {
    uint64_t c = ~crc;
    while (length && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        length--;
    }
    if (length >= 3 * SHORT_BLOCK) {
        pthread_once(&shift_once, build_shift_tables);
        THREE_WAY(LONG_BLOCK, shift_long)
        THREE_WAY(MID_BLOCK, shift_mid)
        THREE_WAY(SHORT_BLOCK, shift_short)
    }
    while (length >= 8) {
        c = _mm_crc32_u64(c, load64(p));
        p += 8;
        length -= 8;
    }
    while (length--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}

static int hw_state = -1;

int floe_crc32c_is_hardware(void) {
    int s = __atomic_load_n(&hw_state, __ATOMIC_RELAXED);
    if (s < 0) {
        __builtin_cpu_init();
        s = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&hw_state, s, __ATOMIC_RELAXED);
    }
    return s;
}

uint32_t floe_crc32c_update(uint32_t crc, const void *data, size_t length) {
    if (floe_crc32c_is_hardware()) return crc32c_hw(crc, data, length);
    return floe_crc32c_update_software(crc, data, length);
}
#else
int floe_crc32c_is_hardware(void) { return 0; }
uint32_t floe_crc32c_update(uint32_t crc, const void *data, size_t length) {
    return floe_crc32c_update_software(crc, data, length);
}
#endif
