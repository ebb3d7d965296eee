/* upper.c: the echo transform, ASCII a-z to A-Z, every other byte unchanged. */
#include "upper.h"

/* Block size of the main loops: a fixed trip count the vectorizer takes even at -O2. */
#define UPPER_BLOCK 32

/*
 * (c - 'a') < 26 as unsigned is the whole test, and 0x20 is the only bit
 * that differs between cases.  Written as a select rather than a shift:
 * x86 has no byte-wide vector shift, and gcc refuses to vectorize one.
 */
static inline unsigned char
upper_byte(unsigned char c)
{
    return (unsigned char)(c - 'a') < 26u ? (unsigned char)(c ^ 0x20) : c;
}

/*
 * Uppercase buf in place.  The inner loop of fixed length needs no peeling
 * or epilogue, which is what gcc's -O2 cost model insists on; it becomes
 * SSE2 compares and blends.  The tail is done byte by byte.
 */
void
upper_inplace(unsigned char *buf, size_t len)
{
    size_t i = 0;

    for (; i + UPPER_BLOCK <= len; i += UPPER_BLOCK)
        for (size_t j = 0; j < UPPER_BLOCK; j++)
            buf[i + j] = upper_byte(buf[i + j]);
    for (; i < len; i++)
        buf[i] = upper_byte(buf[i]);
}

/* Uppercase src into dst; the two must not overlap (use upper_inplace for that). */
void
upper_copy(unsigned char *restrict dst, const unsigned char *restrict src, size_t len)
{
    size_t i = 0;

    for (; i + UPPER_BLOCK <= len; i += UPPER_BLOCK)
        for (size_t j = 0; j < UPPER_BLOCK; j++)
            dst[i + j] = upper_byte(src[i + j]);
    for (; i < len; i++)
        dst[i] = upper_byte(src[i]);
}

/*
 * Check that reply is the transform of sent.  Returns 1 when it is;
 * otherwise 0 with *where (if not NULL) set to the offset of the first
 * wrong byte.  Blocks are compared without an early exit, so the loop
 * vectorizes; the byte-by-byte search runs only in the block that differs.
 */
int
upper_equal(const unsigned char *reply, const unsigned char *sent, size_t len, size_t *where)
{
    size_t i = 0;

    for (; i + UPPER_BLOCK <= len; i += UPPER_BLOCK) {
        unsigned char diff = 0;

        for (size_t j = 0; j < UPPER_BLOCK; j++)
            diff |= (unsigned char)(reply[i + j] ^ upper_byte(sent[i + j]));
        if (diff != 0)
            break;
    }
    for (; i < len; i++) {
        if (reply[i] != upper_byte(sent[i])) {
            if (where != NULL)
                *where = i;
            return 0;
        }
    }
    return 1;
}
