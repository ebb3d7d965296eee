/* addr.h: socket address parsing and printing, "HOST:PORT" and "[V6]:PORT". */
#ifndef UPECHOD_ADDR_H
#define UPECHOD_ADDR_H

#include <sys/socket.h>

/* Longest text addr_format() produces, with the NUL: "[" v6 "]:" port, or a unix path. */
#define ADDR_STRLEN 128

struct addr {
    struct sockaddr_storage a_ss;
    socklen_t a_len;
};

/* Flags for addr_parse(). */
#define ADDR_NUMERIC 0x0 /* literal addresses, "*" and "localhost" only */
#define ADDR_RESOLVE 0x1 /* any host name, through getaddrinfo() */

int addr_parse(const char *text, int flags, struct addr *out, const char **why);
const char *addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);
int addr_port(const struct sockaddr *sa);
int addr_equal(const struct addr *a, const struct addr *b);

#endif
