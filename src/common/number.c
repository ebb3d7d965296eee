/* number.c: whole-string unsigned numbers, as config values and systemd's variables hold them. */
#include <errno.h>
#include <limits.h>

#include "number.h"

/*
 * Parse s, digits of base 2 to 10 and nothing else: no sign, no spaces, no
 * prefix, which strtoul() would all let through.  Returns 0 with *out set,
 * -EINVAL for anything but digits (an empty string included), or -ERANGE
 * when the value does not fit.
 */
int
number_parse(const char *s, int base, unsigned long long *out)
{
    unsigned long long v = 0;

    if (*s == '\0')
        return -EINVAL;
    for (; *s != '\0'; s++) {
        unsigned d;

        if (*s < '0' || *s >= '0' + base)
            return -EINVAL;
        d = (unsigned)(*s - '0');
        if (v > (ULLONG_MAX - d) / (unsigned)base)
            return -ERANGE;
        v = v * (unsigned)base + d;
    }
    *out = v;
    return 0;
}
