/* upper.c: the echo transform, ASCII a-z to A-Z, every other byte unchanged. */
#include "upper.h"

/*
 * Branch-free on purpose: (c - 'a') < 26 as unsigned is the whole test, and
 * 0x20 is the only bit that differs between cases.  Written as a plain loop
 * over bytes so that gcc and clang vectorize it at -O2/-O3.
 */
static inline unsigned char
upper_byte(unsigned char c)
{
    return c ^ (unsigned char)(((unsigned char)(c - 'a') < 26u) << 5);
}

/* Uppercase buf in place. */
void
upper_inplace(unsigned char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = upper_byte(buf[i]);
}

/* Uppercase src into dst; the two must not overlap (use upper_inplace for that). */
void
upper_copy(unsigned char *restrict dst, const unsigned char *restrict src, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dst[i] = upper_byte(src[i]);
}

/*
 * Check that reply is the transform of sent.  Returns 1 when it is; otherwise
 * 0 with *where (if not NULL) set to the offset of the first wrong byte.
 */
int
upper_equal(const unsigned char *reply, const unsigned char *sent, size_t len, size_t *where)
{
    for (size_t i = 0; i < len; i++) {
        if (reply[i] != upper_byte(sent[i])) {
            if (where != NULL)
                *where = i;
            return 0;
        }
    }
    return 1;
}
