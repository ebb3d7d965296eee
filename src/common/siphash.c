/* siphash.c: SipHash-2-4 (Aumasson and Bernstein), written out from the paper. */
#include "siphash.h"

static inline uint64_t
siphash_rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t
siphash_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define SIPHASH_ROUND(v0, v1, v2, v3)                                                              \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = siphash_rotl(v1, 13);                                                                 \
        v1 ^= v0;                                                                                  \
        v0 = siphash_rotl(v0, 32);                                                                 \
        v2 += v3;                                                                                  \
        v3 = siphash_rotl(v3, 16);                                                                 \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = siphash_rotl(v3, 21);                                                                 \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = siphash_rotl(v1, 17);                                                                 \
        v1 ^= v2;                                                                                  \
        v2 = siphash_rotl(v2, 32);                                                                 \
    } while (0)

/*
 * SipHash-2-4 (Aumasson and Bernstein): a keyed PRF small enough to write
 * out, so that without the key nobody can pick addresses that collide.
 */
uint64_t
siphash24(const uint8_t key[16], const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t k0 = siphash_le64(key), k1 = siphash_le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t m, b = (uint64_t)len << 56;
    size_t left = len & 7;

    for (const uint8_t *end = p + (len - left); p != end; p += 8) {
        m = siphash_le64(p);
        v3 ^= m;
        SIPHASH_ROUND(v0, v1, v2, v3);
        SIPHASH_ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    for (size_t i = 0; i < left; i++)
        b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIPHASH_ROUND(v0, v1, v2, v3);
    SIPHASH_ROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        SIPHASH_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}
