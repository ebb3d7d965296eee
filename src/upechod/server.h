/* server.h: the daemon's state: one event base, its listeners, streams and UDP sockets. */
#ifndef UPECHOD_SERVER_H
#define UPECHOD_SERVER_H

#include <stdint.h>
#include <sysexits.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>

#include "config.h"

struct listener;
struct stream;
struct udp_batch;
struct ratelimit;
struct source_table;
struct notify;
struct metrics;

/* The three ways a client reaches upechod; shared by logs and statistics. */
enum transport {
    TRANSPORT_TCP,
    TRANSPORT_UDP,
    TRANSPORT_UNIX,
};

const char *transport_name(enum transport t);

/* Entries of the per-transport arrays in struct server_stats. */
#define TRANSPORT_COUNT 3

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
    uint64_t st_memory_pauses;   /* times a stream stopped being read for max_memory */
    uint64_t st_source_limited;  /* connections closed by max_connections_per_source */

    /* PROXY headers accepted, and connections closed for want of a good one. */
    uint64_t st_proxy_accepted;
    uint64_t st_proxy_refused;   /* the peer is not in proxy_protocol_from */
    uint64_t st_proxy_bad;       /* malformed or oversized header */
    uint64_t st_proxy_truncated; /* the peer closed before the header's end */
    uint64_t st_proxy_timeouts;  /* no whole header within PROXY_TIMEOUT_SEC */

    /* What the metrics endpoint shows; indexed by enum transport where it is an array. */
    uint64_t st_t_accepted[TRANSPORT_COUNT];
    uint64_t st_t_closed[TRANSPORT_COUNT];
    uint64_t st_t_bytes_in[TRANSPORT_COUNT];  /* streams: bytes read; udp: payload received */
    uint64_t st_t_bytes_out[TRANSPORT_COUNT]; /* streams: bytes echoed; udp: payload sent */
    uint64_t st_accept_errors[ACCEPT_ERROR_COUNT];
    uint64_t st_pauses_full;      /* times accepting paused at max_connections */
    uint64_t st_pauses_nofd;      /* ... and for lack of descriptors */
    uint64_t st_paused_full_usec; /* time spent paused at max_connections */
    uint64_t st_paused_nofd_usec; /* ... and for lack of descriptors */
    uint64_t st_reloads_ok;       /* SIGHUPs that applied a new configuration */
    uint64_t st_reloads_failed;   /* ... that kept the old one */
    int64_t st_reload_time;       /* wall clock of the last good (re)load, seconds */
    int64_t st_start_time;        /* wall clock at start, seconds */
    uint64_t st_lifetime_buckets[STATS_LIFETIME_NBOUNDS + 1]; /* closed streams per bucket */
    uint64_t st_lifetime_usec;                                /* their lifetimes' sum */
    uint64_t st_conn_bytes_buckets[STATS_BYTES_NBOUNDS + 1];  /* bytes read per closed stream */
    uint64_t st_conn_bytes;                                   /* their sum */
    /* Gauges, filled in only by server_stats_snapshot(). */
    uint64_t st_open[TRANSPORT_COUNT];
    uint64_t st_pending_output; /* bytes queued to be sent, all streams */
    uint64_t st_workers;
};

/* Why the server is not accepting right now; a bit set, accepting when zero. */
#define SERVER_PAUSE_FULL 0x1 /* max_connections reached */
#define SERVER_PAUSE_NOFD 0x2 /* accept(2) ran out of descriptors */

struct server {
    struct event_base *srv_base;
    struct upechod_config srv_conf;
    char srv_conf_path[4096]; /* what SIGHUP re-reads; "" = built-in defaults */

    TAILQ_HEAD(, listener) srv_listeners;
    TAILQ_HEAD(, stream) srv_streams;
    size_t srv_nstreams;
    int srv_paused; /* SERVER_PAUSE_* bits */

    size_t srv_pending;                  /* bytes of output queued on all streams */
    TAILQ_HEAD(, stream) srv_mem_paused; /* streams not read for max_memory */

    struct udp_batch *srv_udp_batch; /* one scratch area for every UDP socket */
    struct ratelimit *srv_ratelimit;  /* rate_limit, by source address */
    struct ratelimit *srv_portlimit;  /* rate_limit_per_port, by address and port */
    struct source_table *srv_sources; /* TCP connections per client source */
    struct notify *srv_notify;

    struct event *srv_sigint;
    struct event *srv_sigterm;
    struct event *srv_sighup;
    struct event *srv_nofd_timer; /* re-arms accepting after EMFILE */
    struct event *srv_shutdown_timer;
    struct event *srv_status_timer;
    struct event *srv_watchdog_timer;

    uint64_t srv_nofd_count;        /* EMFILE failures not logged yet */
    struct timeval srv_nofd_logged; /* when the last EMFILE line was logged */

    uint64_t srv_proxy_unlogged;     /* PROXY header failures not logged yet */
    struct timeval srv_proxy_logged; /* when the last one was logged (monotonic) */

    int srv_stopping;
    int srv_exit_code;
    int srv_activated; /* serving sockets passed by systemd */
    struct server_stats srv_stats;
    const struct timeval *srv_idle_tv; /* idle_timeout as a common timeout, NULL for never */
    struct timeval srv_idle_plain;     /* idle_timeout when no common timeout is left */

    struct timespec srv_paused_since[2]; /* when each SERVER_PAUSE_* bit was set */
    struct metrics *srv_metrics;         /* the HTTP endpoint, NULL when disabled */
};

/*
 * server_start()'s positive return: what the daemon was given cannot work
 * (unusable sockets from the service manager, a user that does not exist),
 * so restarting would not help.  main() exits with EX_CONFIG for it.
 */
#define SERVER_ECONFIG 1

/*
 * Exit status when a stop had to close connections that still had echo
 * pending: shutdown_timeout ran out, or a second SIGTERM came.  75 is
 * EX_TEMPFAIL; it differs from 1 (cannot start, unclean stop) because the
 * stop was asked for and done, and upechod.service lists it in
 * SuccessExitStatus= so that such a stop does not leave the unit failed.
 */
#define SERVER_EXIT_CUT_SHORT EX_TEMPFAIL

struct server *server_new(const struct upechod_config *conf, const char *conf_path);
void server_free(struct server *srv);
int server_start(struct server *srv);
int server_run(struct server *srv);

void server_stream_opened(struct server *srv);
void server_stream_closed(struct server *srv);
void server_accept_failed(struct server *srv, int err);
void server_stream_done(struct server *srv, enum transport t, uint64_t usec, uint64_t bytes);
void server_stats_snapshot(const struct server *srv, struct server_stats *out);

#endif
