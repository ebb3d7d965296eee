/* source.c: stream connections counted per client source, for max_connections_per_source. */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "siphash.h"
#include "source.h"

/* Buckets of the table; each open source takes one small entry on a chain. */
#define SOURCE_BUCKETS 4096

/*
 * One source: an IPv4 address, or the /64 prefix of an IPv6 one (a single
 * host is usually given a whole /64).  Its entry lives while it has
 * connections, so the table never holds more entries than there are
 * connections.
 */
struct source {
    struct source *so_next;
    uint8_t so_key[9]; /* family tag, then 4 or 8 address bytes */
    size_t so_count;
};

struct source_table {
    uint8_t t_key[16]; /* SipHash key, random per process */
    struct source *t_bucket[SOURCE_BUCKETS];
};

/* The key a peer address is counted under; 0, or -EAFNOSUPPORT for a family not counted. */
static int
source_key(const struct sockaddr *sa, uint8_t key[9])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    memset(key, 0, 9);
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;

        /* On a dual-stack socket an IPv4 client is the same source either way. */
        if (memcmp(a, mapped, sizeof(mapped)) == 0) {
            key[0] = 4;
            memcpy(key + 1, a + 12, 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, a, 8);
        }
        return 0;
    }
    return -EAFNOSUPPORT;
}

/* An empty table with a fresh secret key. */
struct source_table *
source_table_new(void)
{
    struct source_table *t = calloc(1, sizeof(*t));
    uint64_t k[2];

    if (t == NULL)
        return NULL;
    /* Non-blocking: early at boot a weaker key beats not starting. */
    if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k)) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)ts.tv_sec;
        k[1] = (uint64_t)getpid() * 0xbf58476d1ce4e5b9ULL ^ (uint64_t)(uintptr_t)t;
    }
    memcpy(t->t_key, k, sizeof(t->t_key));
    return t;
}

void
source_table_free(struct source_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < SOURCE_BUCKETS; i++) {
        struct source *s, *next;

        for (s = t->t_bucket[i]; s != NULL; s = next) {
            next = s->so_next;
            free(s);
        }
    }
    free(t);
}

/*
 * Count one more connection from the peer sa.  The address is a parameter,
 * not the socket's, so that a proxy's client address can be counted in its
 * place.  Returns 0 with *out set (NULL for a peer that is not counted, such
 * as an AF_UNIX one), -EUSERS when the source already holds limit
 * connections (limit 0: no limit), or -ENOMEM.
 */
int
source_acquire(struct source_table *t, const struct sockaddr *sa, size_t limit, struct source **out)
{
    uint8_t key[9];
    struct source **slot, *s;

    *out = NULL;
    if (source_key(sa, key) != 0)
        return 0;
    slot = &t->t_bucket[siphash24(t->t_key, key, sizeof(key)) % SOURCE_BUCKETS];
    for (s = *slot; s != NULL; s = s->so_next)
        if (memcmp(s->so_key, key, sizeof(key)) == 0)
            break;
    if (s == NULL) {
        if ((s = calloc(1, sizeof(*s))) == NULL)
            return -ENOMEM;
        memcpy(s->so_key, key, sizeof(key));
        s->so_next = *slot;
        *slot = s;
    }
    if (limit > 0 && s->so_count >= limit)
        return -EUSERS;
    s->so_count++;
    *out = s;
    return 0;
}

/* One connection of s closed; s may be NULL.  The entry goes with its last connection. */
void
source_release(struct source_table *t, struct source *s)
{
    uint8_t *key;
    struct source **slot;

    if (s == NULL || --s->so_count > 0)
        return;
    key = s->so_key;
    for (slot = &t->t_bucket[siphash24(t->t_key, key, sizeof(s->so_key)) % SOURCE_BUCKETS];
         *slot != s; slot = &(*slot)->so_next)
        ;
    *slot = s->so_next;
    free(s);
}

/* Connections open from s. */
size_t
source_count(const struct source *s)
{
    return s == NULL ? 0 : s->so_count;
}
