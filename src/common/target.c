/* target.c: the tools' "tcp://HOST:PORT", "udp://HOST:PORT" and "unix:///path" targets. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "target.h"

/* The most addresses one --source range may expand to. */
#define TARGET_MAX_SOURCES 65536

static const struct {
    const char *ts_scheme;
    enum target_kind ts_kind;
} target_schemes[] = {
    {"tcp://", TARGET_TCP},
    {"udp://", TARGET_UDP},
    {"unix://", TARGET_UNIX},
};

/* Fill out with the unix socket path; it must be absolute and fit sun_path. */
static int
target_parse_unix(const char *path, struct target *out, const char **why)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->t_addr.a_ss;
    size_t len = strlen(path);

    if (len == 0) {
        *why = "missing socket path (unix:///path/to/socket)";
        return -EINVAL;
    }
    if (path[0] != '/') {
        *why = "unix socket path must be absolute (unix:///path/to/socket)";
        return -EINVAL;
    }
    if (len >= sizeof(sun->sun_path)) {
        *why = "unix socket path too long";
        return -EINVAL;
    }
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, len + 1);
    out->t_addr.a_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    return 0;
}

/*
 * Parse a target.  The scheme is case-insensitive; HOST:PORT goes to
 * addr_parse() with ADDR_RESOLVE, so names, "localhost", IPv4 literals and
 * "[IPv6]" work.  A wildcard host or port 0 cannot be connected to and is
 * refused.  Returns 0, or -EINVAL with *why (if not NULL) saying what is wrong.
 */
int
target_parse(const char *text, struct target *out, const char **why)
{
    const char *dummy, *rest = NULL;
    int rc;

    if (why == NULL)
        why = &dummy;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof(target_schemes) / sizeof(target_schemes[0]); i++) {
        size_t n = strlen(target_schemes[i].ts_scheme);

        if (strncasecmp(text, target_schemes[i].ts_scheme, n) == 0) {
            out->t_kind = target_schemes[i].ts_kind;
            rest = text + n;
            break;
        }
    }
    if (rest == NULL) {
        *why = "target must start with tcp://, udp:// or unix://";
        return -EINVAL;
    }
    if (out->t_kind == TARGET_UNIX)
        return target_parse_unix(rest, out, why);

    if ((rest[0] == ':' && strchr(rest + 1, ':') == NULL) || rest[0] == '\0' ||
        strncmp(rest, "*:", 2) == 0 || strncmp(rest, "[*]:", 4) == 0 ||
        strncmp(rest, "[::]:", 5) == 0) {
        *why = "missing host (a wildcard address cannot be a target)";
        return -EINVAL;
    }
    if (rest[0] != '[' && strchr(rest, ':') == NULL) {
        *why = "missing port (HOST:PORT)";
        return -EINVAL;
    }
    rc = addr_parse(rest, ADDR_RESOLVE, &out->t_addr, why);
    if (rc < 0)
        return rc;
    if (addr_port((struct sockaddr *)&out->t_addr.a_ss) == 0) {
        *why = "port must be a number from 1 to 65535";
        return -EINVAL;
    }
    return 0;
}

const char *
target_kind_name(enum target_kind kind)
{
    switch (kind) {
    case TARGET_TCP:
        return "tcp";
    case TARGET_UDP:
        return "udp";
    case TARGET_UNIX:
        return "unix";
    }
    return "unknown";
}

/* Whether the target is a byte stream (tcp, unix) rather than datagrams. */
int
target_is_stream(const struct target *t)
{
    return t->t_kind != TARGET_UDP;
}

/* Print the target back as a URL into buf (TARGET_STRLEN is enough); returns buf. */
const char *
target_format(const struct target *t, char *buf, size_t size)
{
    char a[ADDR_STRLEN];

    addr_format((const struct sockaddr *)&t->t_addr.a_ss, t->t_addr.a_len, a, sizeof(a));
    snprintf(buf, size, "%s://%s", target_kind_name(t->t_kind), a);
    return buf;
}

/* Append one address to *list; returns 0 or -ENOMEM. */
static int
target_sources_add(struct addr **list, size_t *count, const struct addr *a)
{
    struct addr *n;

    if (*count % 64 == 0) {
        n = realloc(*list, (*count + 64) * sizeof(**list));
        if (n == NULL)
            return -ENOMEM;
        *list = n;
    }
    (*list)[(*count)++] = *a;
    return 0;
}

/* Parse one source address literal of the given family, with or without IPv6 brackets. */
static int
target_source_one(const char *text, size_t len, int family, struct addr *out)
{
    char buf[INET6_ADDRSTRLEN + 2];

    memset(out, 0, sizeof(*out));
    if (len >= 2 && text[0] == '[' && text[len - 1] == ']') {
        text++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->a_ss;

        if (inet_pton(AF_INET, buf, &sin->sin_addr) != 1)
            return -EINVAL;
        sin->sin_family = AF_INET;
        out->a_len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->a_ss;

        if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1)
            return -EINVAL;
        sin6->sin6_family = AF_INET6;
        out->a_len = sizeof(*sin6);
    }
    return 0;
}

/*
 * Parse a --source list: comma-separated addresses of the target's family,
 * each either one address or, for IPv4, an inclusive range "A-B" such as
 * 127.0.0.2-127.0.0.9.  The addresses are appended to *list (grown with
 * realloc, the caller frees it).  Returns 0 or -EINVAL/-ENOMEM with *why.
 */
int
target_sources_parse(const char *text, int family, struct addr **list, size_t *count,
                     const char **why)
{
    const char *p = text, *dummy;

    if (why == NULL)
        why = &dummy;
    if (family != AF_INET && family != AF_INET6) {
        *why = "source addresses need a tcp:// or udp:// target";
        return -EINVAL;
    }
    for (;;) {
        const char *end = strchr(p, ','), *dash;
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        struct addr lo, hi;

        dash = memchr(p, '-', len);
        if (target_source_one(p, dash != NULL ? (size_t)(dash - p) : len, family, &lo) < 0) {
            *why = family == AF_INET ? "not an IPv4 source address (the target is IPv4)"
                                     : "not an IPv6 source address (the target is IPv6)";
            return -EINVAL;
        }
        if (dash == NULL) {
            if (target_sources_add(list, count, &lo) < 0) {
                *why = "out of memory";
                return -ENOMEM;
            }
        } else {
            uint32_t a, b;

            if (family != AF_INET ||
                target_source_one(dash + 1, len - (size_t)(dash + 1 - p), family, &hi) < 0) {
                *why = "a source range is two IPv4 addresses, as 127.0.0.2-127.0.0.9";
                return -EINVAL;
            }
            a = ntohl(((struct sockaddr_in *)&lo.a_ss)->sin_addr.s_addr);
            b = ntohl(((struct sockaddr_in *)&hi.a_ss)->sin_addr.s_addr);
            if (b < a || b - a >= TARGET_MAX_SOURCES) {
                *why = "source range is backwards or longer than 65536 addresses";
                return -EINVAL;
            }
            for (uint64_t v = a; v <= b; v++) {
                ((struct sockaddr_in *)&lo.a_ss)->sin_addr.s_addr = htonl((uint32_t)v);
                if (target_sources_add(list, count, &lo) < 0) {
                    *why = "out of memory";
                    return -ENOMEM;
                }
            }
        }
        if (end == NULL)
            return 0;
        p = end + 1;
    }
}

/*
 * Open a non-blocking socket to the target, bound to source when it is not
 * NULL, and start connecting.  Returns 0 when connected (always for UDP,
 * which only fixes the peer), -EINPROGRESS while a stream connect is under
 * way (wait for writability, then read SO_ERROR), or another -errno with
 * the socket closed.  A unix listener with a full backlog gives -EAGAIN:
 * that is worth retrying.
 */
int
target_connect(const struct target *t, const struct addr *source, int *fdp)
{
    int type = t->t_kind == TARGET_UDP ? SOCK_DGRAM : SOCK_STREAM;
    int fd, rc;

    *fdp = -1;
    fd = socket(t->t_addr.a_ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    if (source != NULL) {
#ifdef IP_BIND_ADDRESS_NO_PORT
        /*
         * Without this, bind() picks the local port at once and so can only
         * use each port once per source address; deferred to connect(), a
         * port is only unique per (source, destination) pair.
         */
        if (type == SOCK_STREAM) {
            int one = 1;

            (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        }
#endif
        if (bind(fd, (const struct sockaddr *)&source->a_ss, source->a_len) == -1) {
            rc = -errno;
            close(fd);
            return rc;
        }
    }
    if (connect(fd, (const struct sockaddr *)&t->t_addr.a_ss, t->t_addr.a_len) == -1) {
        rc = -errno;
        if (rc == -EINPROGRESS) {
            *fdp = fd;
            return rc;
        }
        close(fd);
        return rc;
    }
    *fdp = fd;
    return 0;
}
