/* stream.h: one echo connection over TCP or AF_UNIX. */
#ifndef UPECHOD_STREAM_H
#define UPECHOD_STREAM_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "config.h"
#include "stats.h"
#include "transport.h"

struct bufferevent;
struct event_base;
struct evbuffer;
struct event;
struct source;
struct stream;

/*
 * A peer's address, IPv4 or IPv6: an AF_UNIX client's is never kept, so
 * the 128 bytes of a sockaddr_storage are not needed.
 */
struct stream_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in sin;
        struct sockaddr_in6 sin6;
    } a_ss;
    socklen_t a_len; /* 0: none */
};

/* Why a stream is not being read: st_paused bits. */
#define STREAM_PAUSE_OUTPUT 0x1 /* its own output reached max_pending_output */
#define STREAM_PAUSE_MEMORY 0x2 /* all output together reached max_memory */

/*
 * What a stream borrows from whoever serves it (a worker): set up with
 * stream_env_init() before the first stream_new() and kept until the last
 * stream is freed.  Only the thread running se_base touches it or its
 * streams, except for the fields marked shared, which are atomics.
 */
struct stream_env {
    struct event_base *se_base;
    const struct upechod_config *se_conf; /* limits, proxy_protocol */
    const struct timeval *se_idle_tv;     /* idle_timeout as a common timeout; NULL: never */
    struct server_stats *se_stats;
    int se_stopping; /* the daemon is stopping: linger after our FIN */
    /* Called once per stream, from stream_free(), just before st is freed. */
    void (*se_closed)(struct stream *st, void *arg);
    /*
     * max_connections_per_source: count st under the client sa (after a
     * PROXY header); 0, or -errno when refused and st must be closed.
     */
    int (*se_admit)(struct stream *st, const struct sockaddr *sa, socklen_t salen, void *arg);
    /* max_memory: the total fell to 3/4 of it; other envs' paused streams may read again. */
    void (*se_mem_drained)(void *arg);
    void *se_arg;

    TAILQ_HEAD(, stream) se_streams; /* every stream of this env, oldest first */
    struct timeval se_epoch;         /* the streams' clock starts here (stream_env_init()) */

    /*
     * max_memory holds for every env together.  Each keeps its own output
     * bytes exactly and adds them to the shared total in steps, so the
     * per-message path touches no shared cache line; the total is then off
     * by less than a step per env.
     */
    size_t se_pending;                 /* output queued on this env's streams */
    size_t se_published;               /* the part of se_pending counted in *se_total */
    size_t *se_total;                  /* shared: every env's published output */
    const size_t *se_nstreams;         /* shared: streams of every env, for a stream's share */
    size_t se_mem_npaused;             /* this env's streams not read for max_memory */
    int se_mem_waiting;                /* shared: se_mem_npaused is not 0 */
    struct stats_budget *se_proxy_log; /* shared: PROXY failure lines, one a second */
};

/*
 * What only some streams need, allocated for those alone: a stream with a
 * source counted, a PROXY header to read, an address kept for debug
 * logging, or a drain after our FIN at shutdown.
 */
struct stream_extra {
    struct source *sx_source;     /* counted for max_connections_per_source, or NULL */
    struct event *sx_proxy_timer; /* set while waiting for a PROXY header */
    struct event *sx_linger_ev;   /* draining input after our FIN at shutdown, or NULL */
    struct timeval sx_linger_until;
    /* The peer's address kept: after a PROXY header, the client it names. */
    struct stream_addr sx_addr;
};

/*
 * One connection.  Thousands of them sit idle beside a bufferevent of
 * about 1 KiB each, so every byte here counts: 56 bytes, a 64-byte heap
 * chunk.  Timestamps are on the env's clock (stream_env_init()).
 */
struct stream {
    TAILQ_ENTRY(stream) st_entry; /* on se_streams */
    struct stream_env *st_env;
    struct bufferevent *st_bev;
    struct stream_extra *st_extra; /* NULL for most streams */
    uint64_t st_nbytes : 56;       /* bytes read, for the metrics (stops at 2^56 - 1) */
    uint64_t st_transport : 2;     /* enum transport */
    uint64_t st_paused : 2;        /* reading stopped: STREAM_PAUSE_* bits */
    uint64_t st_closing : 1;       /* flush what is pending, then close */
    uint64_t st_counted : 1;       /* its output is being counted into se_pending */
    uint64_t st_started_ms : 42;   /* accepted at, in ms (139 years) */
    uint64_t st_input_sec : 22;    /* the client last sent anything, in s, modulo 2^22 */
};

struct stream *stream_new(struct stream_env *env, int fd, enum transport t,
                          const struct sockaddr *sa, socklen_t salen, struct source *src);
void stream_free(struct stream *st);
void stream_apply_limits(struct stream *st);
void stream_shutdown(struct stream *st);
int stream_owed(const struct stream *st);
int stream_set_peer(struct stream *st, const struct sockaddr *sa, socklen_t salen);
const char *stream_peer(const struct stream *st, char *buf, size_t size);
int stream_begin_echo(struct stream *st);
void stream_env_init(struct stream_env *env);
uint64_t stream_env_now_ms(const struct stream_env *env);
void stream_env_mem_recheck(struct stream_env *env);
struct stream_extra *stream_extra(struct stream *st);
const struct stream_addr *stream_addr(const struct stream *st, struct stream_addr *buf);
size_t stream_env_total(const struct stream_env *env);
size_t stream_echo(struct evbuffer *in, struct evbuffer *out);
int stream_queue_bytes(struct evbuffer *out, const unsigned char *data, size_t len);

#endif
