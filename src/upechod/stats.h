/* stats.h: the daemon's counters, kept per worker and summed by the main thread. */
#ifndef UPECHOD_STATS_H
#define UPECHOD_STATS_H

#include <stdint.h>

#include "transport.h"

/* accept(2) failures by errno class, for the metrics. */
enum accept_error {
    ACCEPT_ERROR_NOFD,  /* EMFILE, ENFILE */
    ACCEPT_ERROR_NOMEM, /* ENOBUFS, ENOMEM */
    ACCEPT_ERROR_OTHER,
    ACCEPT_ERROR_COUNT,
};

/* Upper bounds of the per-connection histograms' buckets; +Inf is implied. */
#define STATS_LIFETIME_BOUNDS                                                                      \
    {                                                                                              \
        0.001, 0.01, 0.1, 1, 10, 60, 300, 3600                                                     \
    }
#define STATS_LIFETIME_NBOUNDS 8
#define STATS_BYTES_BOUNDS                                                                         \
    {                                                                                              \
        0, 64, 1024, 16384, 262144, 4194304, 67108864, 1073741824                                  \
    }
#define STATS_BYTES_NBOUNDS 8

struct server_stats {
    uint64_t ss_accepted;        /* stream connections accepted */
    uint64_t ss_closed;          /* stream connections closed */
    uint64_t ss_bytes_in;        /* stream bytes read */
    uint64_t ss_bytes_out;       /* stream bytes queued back */
    uint64_t ss_dgrams_in;       /* datagrams received */
    uint64_t ss_dgrams_out;      /* datagrams answered */
    uint64_t ss_dgrams_dropped;  /* datagrams not answered, all reasons (the five below) */
    uint64_t ss_drop_privileged; /* from a source port below 1024 */
    uint64_t ss_drop_loop;       /* from our own UDP port or an echo-like service's: a loop */
    uint64_t ss_drop_ratelimit;  /* over rate_limit for their source address */
    uint64_t ss_drop_sendfail;   /* answer refused by the kernel (full, unreachable) */
    uint64_t ss_drop_truncated;  /* larger than the receive buffer */
    uint64_t ss_accept_failures; /* accept(2) failures for lack of descriptors or memory */
    uint64_t ss_timeouts;        /* streams closed by idle_timeout */
    uint64_t ss_memory_pauses;   /* times a stream stopped being read for max_memory */
    uint64_t ss_source_limited;  /* connections closed by max_connections_per_source */

    /* PROXY headers accepted, and connections closed for want of a good one. */
    uint64_t ss_proxy_accepted;
    uint64_t ss_proxy_refused;   /* the peer is not in proxy_protocol_from */
    uint64_t ss_proxy_bad;       /* malformed or oversized header */
    uint64_t ss_proxy_truncated; /* the peer closed before the header's end */
    uint64_t ss_proxy_timeouts;  /* no whole header within PROXY_TIMEOUT_SEC */

    /* What the metrics endpoint shows; indexed by enum transport where it is an array. */
    uint64_t ss_t_accepted[TRANSPORT_COUNT];
    uint64_t ss_t_closed[TRANSPORT_COUNT];
    uint64_t ss_t_bytes_in[TRANSPORT_COUNT];  /* streams: bytes read; udp: payload received */
    uint64_t ss_t_bytes_out[TRANSPORT_COUNT]; /* streams: bytes echoed; udp: payload sent */
    uint64_t ss_accept_errors[ACCEPT_ERROR_COUNT];
    uint64_t ss_pauses_full;      /* times accepting paused at max_connections (per worker) */
    uint64_t ss_pauses_nofd;      /* ... and for lack of descriptors */
    uint64_t ss_paused_full_usec; /* time spent paused at max_connections (summed over workers) */
    uint64_t ss_paused_nofd_usec; /* ... and for lack of descriptors */
    uint64_t ss_reloads_ok;       /* SIGHUPs that applied a new configuration (main thread) */
    uint64_t ss_reloads_failed;   /* ... that kept the old one */
    int64_t ss_reload_time;       /* wall clock of the last good (re)load, seconds */
    int64_t ss_start_time;        /* wall clock at start, seconds */
    uint64_t ss_lifetime_buckets[STATS_LIFETIME_NBOUNDS + 1]; /* closed streams per bucket */
    uint64_t ss_lifetime_usec;                                /* their lifetimes' sum */
    uint64_t ss_conn_bytes_buckets[STATS_BYTES_NBOUNDS + 1];  /* bytes read per closed stream */
    uint64_t ss_conn_bytes;                                   /* their sum */
    /* Gauges, filled in only by server_stats_snapshot(). */
    uint64_t ss_open[TRANSPORT_COUNT];
    uint64_t ss_pending_output; /* bytes queued to be sent, all streams */
    uint64_t ss_workers;
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
    sum->ss_accepted += STATS_GET(w->ss_accepted);
    sum->ss_closed += STATS_GET(w->ss_closed);
    sum->ss_bytes_in += STATS_GET(w->ss_bytes_in);
    sum->ss_bytes_out += STATS_GET(w->ss_bytes_out);
    sum->ss_dgrams_in += STATS_GET(w->ss_dgrams_in);
    sum->ss_dgrams_out += STATS_GET(w->ss_dgrams_out);
    sum->ss_dgrams_dropped += STATS_GET(w->ss_dgrams_dropped);
    sum->ss_drop_privileged += STATS_GET(w->ss_drop_privileged);
    sum->ss_drop_loop += STATS_GET(w->ss_drop_loop);
    sum->ss_drop_ratelimit += STATS_GET(w->ss_drop_ratelimit);
    sum->ss_drop_sendfail += STATS_GET(w->ss_drop_sendfail);
    sum->ss_drop_truncated += STATS_GET(w->ss_drop_truncated);
    sum->ss_accept_failures += STATS_GET(w->ss_accept_failures);
    sum->ss_timeouts += STATS_GET(w->ss_timeouts);
    sum->ss_memory_pauses += STATS_GET(w->ss_memory_pauses);
    sum->ss_source_limited += STATS_GET(w->ss_source_limited);
    sum->ss_proxy_accepted += STATS_GET(w->ss_proxy_accepted);
    sum->ss_proxy_refused += STATS_GET(w->ss_proxy_refused);
    sum->ss_proxy_bad += STATS_GET(w->ss_proxy_bad);
    sum->ss_proxy_truncated += STATS_GET(w->ss_proxy_truncated);
    sum->ss_proxy_timeouts += STATS_GET(w->ss_proxy_timeouts);
    for (int t = 0; t < TRANSPORT_COUNT; t++) {
        sum->ss_t_accepted[t] += STATS_GET(w->ss_t_accepted[t]);
        sum->ss_t_closed[t] += STATS_GET(w->ss_t_closed[t]);
        sum->ss_t_bytes_in[t] += STATS_GET(w->ss_t_bytes_in[t]);
        sum->ss_t_bytes_out[t] += STATS_GET(w->ss_t_bytes_out[t]);
    }
    for (int i = 0; i < ACCEPT_ERROR_COUNT; i++)
        sum->ss_accept_errors[i] += STATS_GET(w->ss_accept_errors[i]);
    sum->ss_pauses_full += STATS_GET(w->ss_pauses_full);
    sum->ss_pauses_nofd += STATS_GET(w->ss_pauses_nofd);
    sum->ss_paused_full_usec += STATS_GET(w->ss_paused_full_usec);
    sum->ss_paused_nofd_usec += STATS_GET(w->ss_paused_nofd_usec);
    for (int i = 0; i <= STATS_LIFETIME_NBOUNDS; i++)
        sum->ss_lifetime_buckets[i] += STATS_GET(w->ss_lifetime_buckets[i]);
    sum->ss_lifetime_usec += STATS_GET(w->ss_lifetime_usec);
    for (int i = 0; i <= STATS_BYTES_NBOUNDS; i++)
        sum->ss_conn_bytes_buckets[i] += STATS_GET(w->ss_conn_bytes_buckets[i]);
    sum->ss_conn_bytes += STATS_GET(w->ss_conn_bytes);
}

/* A stream of transport t closed after usec with bytes read: the histograms. */
static inline void
stats_stream_done(struct server_stats *s, enum transport t, uint64_t usec, uint64_t bytes)
{
    static const double life[] = STATS_LIFETIME_BOUNDS;
    static const double size[] = STATS_BYTES_BOUNDS;
    int i;

    STATS_ADD(s->ss_t_closed[t], 1);
    for (i = 0; i < STATS_LIFETIME_NBOUNDS && (double)usec / 1e6 > life[i]; i++)
        ;
    STATS_ADD(s->ss_lifetime_buckets[i], 1);
    STATS_ADD(s->ss_lifetime_usec, usec);
    for (i = 0; i < STATS_BYTES_NBOUNDS && (double)bytes > size[i]; i++)
        ;
    STATS_ADD(s->ss_conn_bytes_buckets[i], 1);
    STATS_ADD(s->ss_conn_bytes, bytes);
}

/*
 * One log line a second for the whole daemon, whichever worker has
 * something to report; what is not logged is counted for the next line.
 */
struct stats_budget {
    uint64_t sb_logged_ms; /* monotonic ms of the last line, 0 for never */
    uint64_t sb_unlogged;  /* events since */
};

/* Whether a line may be logged now (and the budget is taken); else count the event. */
static inline int
stats_budget_take(struct stats_budget *b, uint64_t now_ms)
{
    uint64_t last = __atomic_load_n(&b->sb_logged_ms, __ATOMIC_RELAXED);

    if ((last == 0 || now_ms - last >= 1000) &&
        __atomic_compare_exchange_n(&b->sb_logged_ms, &last, now_ms, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
        return 1;
    __atomic_fetch_add(&b->sb_unlogged, 1, __ATOMIC_RELAXED);
    return 0;
}

/* The events not logged since the last line, and start counting again. */
static inline uint64_t
stats_budget_unlogged(struct stats_budget *b)
{
    return __atomic_exchange_n(&b->sb_unlogged, 0, __ATOMIC_RELAXED);
}

#endif
