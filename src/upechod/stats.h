/* stats.h: the daemon's counters, kept per worker and summed by the main thread. */
#ifndef UPECHOD_STATS_H
#define UPECHOD_STATS_H

#include <stdint.h>

struct server_stats {
    uint64_t st_accepted;        /* stream connections accepted */
    uint64_t st_closed;          /* stream connections closed */
    uint64_t st_bytes_in;        /* stream bytes read */
    uint64_t st_bytes_out;       /* stream bytes queued back */
    uint64_t st_dgrams_in;       /* datagrams received */
    uint64_t st_dgrams_out;      /* datagrams answered */
    uint64_t st_dgrams_dropped;  /* datagrams not answered, all reasons (the five below) */
    uint64_t st_drop_privileged; /* from a source port below 1024 */
    uint64_t st_drop_loop;       /* from our own UDP port or an echo-like service's: a loop */
    uint64_t st_drop_ratelimit;  /* over rate_limit for their source address */
    uint64_t st_drop_sendfail;   /* answer refused by the kernel (full, unreachable) */
    uint64_t st_drop_truncated;  /* larger than the receive buffer */
    uint64_t st_accept_failures; /* accept(2) failures for lack of descriptors or memory */
    uint64_t st_timeouts;        /* streams closed by idle_timeout */
};

/*
 * Each worker is the only writer of its counters and the main thread reads
 * them while it runs.  Relaxed atomic loads and stores make that read
 * well-defined without a lock or a locked instruction: on x86-64 and arm64
 * they are the plain moves an ordinary `+=` compiles to.
 */
#define STATS_ADD(field, n)                                                                        \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (uint64_t)(n),        \
                     __ATOMIC_RELAXED)
#define STATS_GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* Add a worker's counters, read while it runs, to sum. */
static inline void
stats_accumulate(struct server_stats *sum, const struct server_stats *w)
{
    sum->st_accepted += STATS_GET(w->st_accepted);
    sum->st_closed += STATS_GET(w->st_closed);
    sum->st_bytes_in += STATS_GET(w->st_bytes_in);
    sum->st_bytes_out += STATS_GET(w->st_bytes_out);
    sum->st_dgrams_in += STATS_GET(w->st_dgrams_in);
    sum->st_dgrams_out += STATS_GET(w->st_dgrams_out);
    sum->st_dgrams_dropped += STATS_GET(w->st_dgrams_dropped);
    sum->st_drop_privileged += STATS_GET(w->st_drop_privileged);
    sum->st_drop_loop += STATS_GET(w->st_drop_loop);
    sum->st_drop_ratelimit += STATS_GET(w->st_drop_ratelimit);
    sum->st_drop_sendfail += STATS_GET(w->st_drop_sendfail);
    sum->st_drop_truncated += STATS_GET(w->st_drop_truncated);
    sum->st_accept_failures += STATS_GET(w->st_accept_failures);
    sum->st_timeouts += STATS_GET(w->st_timeouts);
}

#endif
