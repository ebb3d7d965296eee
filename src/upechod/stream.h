/* stream.h: one echo connection over TCP or AF_UNIX. */
#ifndef UPECHOD_STREAM_H
#define UPECHOD_STREAM_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "config.h"
#include "stats.h"
#include "transport.h"

struct bufferevent;
struct event_base;
struct evbuffer;
struct evbuffer_cb_entry;
struct source;
struct stream;
struct stream_linger;

/*
 * A peer's address, IPv4 or IPv6: an AF_UNIX client's is never kept, so
 * the 128 bytes of a sockaddr_storage in every connection are not needed.
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
 * What a stream borrows from whoever serves it (a worker): set up before
 * the first stream_new() and kept until the last stream is freed.  Only the
 * thread running se_base touches it or its streams, except for the fields
 * marked shared, which are atomics.
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

    /*
     * max_memory holds for every env together.  Each keeps its own output
     * bytes exactly and adds them to the shared total in steps, so the
     * per-message path touches no shared cache line; the total is then off
     * by less than a step per env.
     */
    size_t se_pending;                  /* output queued on this env's streams */
    size_t se_published;                /* the part of se_pending counted in *se_total */
    size_t *se_total;                   /* shared: every env's published output */
    const size_t *se_nstreams;          /* shared: streams of every env, for a stream's share */
    TAILQ_HEAD(, stream) se_mem_paused; /* this env's streams not read for max_memory */
    int se_mem_waiting;                 /* shared: se_mem_paused is not empty */
    struct stats_budget *se_proxy_log;  /* shared: PROXY failure lines, one a second */
};

struct stream {
    TAILQ_ENTRY(stream) st_entry; /* the owner's list */
    struct stream_env *st_env;
    struct bufferevent *st_bev;
    struct stream_linger *st_linger; /* draining input after our FIN at shutdown, or NULL */
    struct timeval st_last_input;    /* when the client last sent anything (or connected) */
    enum transport st_transport;
    int st_paused;  /* reading stopped: STREAM_PAUSE_* bits */
    int st_closing; /* flush what is pending, then close */

    TAILQ_ENTRY(stream) st_mem_entry;       /* on se_mem_paused while STREAM_PAUSE_MEMORY */
    struct evbuffer_cb_entry *st_output_cb; /* counts its output into se_pending */
    struct source *st_source;               /* counted for max_connections_per_source, or NULL */
    /* The peer's address; after a PROXY header, the client it names. */
    struct stream_addr st_addr;
    /* Set while waiting for a PROXY header, see proxy.c. */
    struct event *st_proxy_timer;

    /* For the metrics. */
    struct timeval st_started; /* accepted at (the loop's cached clock) */
    uint64_t st_nbytes;        /* bytes read, for the metrics' histogram */
};

struct stream *stream_new(struct stream_env *env, int fd, enum transport t,
                          const struct sockaddr *sa, socklen_t salen);
void stream_free(struct stream *st);
void stream_apply_limits(struct stream *st);
void stream_shutdown(struct stream *st);
int stream_owed(const struct stream *st);
void stream_set_peer(struct stream *st, const struct sockaddr *sa, socklen_t salen);
const char *stream_peer(const struct stream *st, char *buf, size_t size);
void stream_begin_echo(struct stream *st);
void stream_env_mem_recheck(struct stream_env *env);
size_t stream_env_total(const struct stream_env *env);
size_t stream_upper(struct evbuffer *buf);
size_t stream_echo(struct evbuffer *in, struct evbuffer *out);
size_t stream_chain_size(size_t n);
void stream_queue(struct evbuffer *in, struct evbuffer *out, size_t chain);

#endif
