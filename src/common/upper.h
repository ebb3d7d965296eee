/* upper.h: the echo transform, ASCII a-z to A-Z, every other byte unchanged. */
#ifndef UPECHOD_UPPER_H
#define UPECHOD_UPPER_H

#include <stddef.h>

void upper_inplace(unsigned char *buf, size_t len);
void upper_copy(unsigned char *restrict dst, const unsigned char *restrict src, size_t len);
int upper_equal(const unsigned char *reply, const unsigned char *sent, size_t len, size_t *where);

#endif
