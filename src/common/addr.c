/* addr.c: socket address parsing and printing, "HOST:PORT" and "[V6]:PORT". */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "addr.h"
#include "number.h"

/* Parse a decimal port 0-65535; returns it or -1. */
static int
addr_parse_port(const char *s)
{
    unsigned long long v;

    if (number_parse(s, 10, &v) < 0 || v > 65535)
        return -1;
    return (int)v;
}

/*
 * Parse "HOST:PORT".  HOST is an IPv4 literal, "[IPv6]", "*" (any IPv4
 * address), "[::]" or "[*]" (any IPv6 address), "localhost", or with
 * ADDR_RESOLVE any name getaddrinfo() resolves.  Returns 0, or -EINVAL with
 * *why (if not NULL) saying what is wrong in a few words.
 */
int
addr_parse(const char *text, int flags, struct addr *out, const char **why)
{
    char host[256];
    const char *colon, *hs, *he;
    int port, v6 = 0;
    const char *dummy;

    if (why == NULL)
        why = &dummy;
    memset(out, 0, sizeof(*out));

    if (text[0] == '[') {
        he = strchr(text, ']');
        if (he == NULL) {
            *why = "missing ']' after IPv6 address";
            return -EINVAL;
        }
        hs = text + 1;
        colon = he + 1;
        if (*colon != ':') {
            *why = "expected ':PORT' after ']'";
            return -EINVAL;
        }
        v6 = 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL) {
            *why = "expected HOST:PORT";
            return -EINVAL;
        }
        if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
            *why = "IPv6 addresses go in brackets, as [::1]:PORT";
            return -EINVAL;
        }
        hs = text;
        he = colon;
    }
    if ((size_t)(he - hs) >= sizeof(host)) {
        *why = "host name too long";
        return -EINVAL;
    }
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    if ((port = addr_parse_port(colon + 1)) < 0) {
        *why = "port must be a number from 0 to 65535";
        return -EINVAL;
    }

    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->a_ss;

        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->a_len = sizeof(*sin6);
        if (strcmp(host, "*") == 0 || strcmp(host, "::") == 0) {
            sin6->sin6_addr = in6addr_any;
            return 0;
        }
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1)
            return 0;
        *why = "not an IPv6 address";
        return -EINVAL;
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->a_ss;

        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->a_len = sizeof(*sin);
        if (strcmp(host, "*") == 0 || strcmp(host, "") == 0) {
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
            return 0;
        }
        if (strcmp(host, "localhost") == 0) {
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return 0;
        }
        if (inet_pton(AF_INET, host, &sin->sin_addr) == 1)
            return 0;
    }

    if (flags & ADDR_RESOLVE) {
        struct addrinfo hints, *res;
        char portstr[8];
        int rc;

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_flags = AI_NUMERICSERV;
        snprintf(portstr, sizeof(portstr), "%d", port);
        rc = getaddrinfo(host, portstr, &hints, &res);
        if (rc != 0) {
            *why = gai_strerror(rc);
            return -EINVAL;
        }
        memcpy(&out->a_ss, res->ai_addr, res->ai_addrlen);
        out->a_len = res->ai_addrlen;
        freeaddrinfo(res);
        return 0;
    }
    *why = "not an IPv4 address (use [::1] for IPv6, * for any)";
    return -EINVAL;
}

/* Print an address as "1.2.3.4:80", "[::1]:80" or a unix path into buf; returns buf. */
const char *
addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN];

    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, size, "%s:%u", host, ntohs(sin->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, size, "[%s]:%u", host, ntohs(sin6->sin6_port));
        break;
    }
    case AF_UNIX: {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
        size_t n = len > offsetof(struct sockaddr_un, sun_path)
                       ? len - offsetof(struct sockaddr_un, sun_path)
                       : 0;

        if (n == 0 || sun->sun_path[0] == '\0')
            snprintf(buf, size, n <= 1 ? "(unnamed)" : "@%.*s", (int)(n - 1), sun->sun_path + 1);
        else
            snprintf(buf, size, "%.*s", (int)strnlen(sun->sun_path, n), sun->sun_path);
        break;
    }
    default:
        snprintf(buf, size, "(family %d)", sa->sa_family);
        break;
    }
    return buf;
}

/* The port of an inet address in host order, or -1. */
int
addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return -1;
}

/* Whether two parsed addresses are the same family, address and port. */
int
addr_equal(const struct addr *a, const struct addr *b)
{
    return a->a_len == b->a_len && memcmp(&a->a_ss, &b->a_ss, a->a_len) == 0;
}
