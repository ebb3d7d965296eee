/* stream.h: one echo connection over TCP or AF_UNIX. */
#ifndef UPECHOD_STREAM_H
#define UPECHOD_STREAM_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "config.h"
#include "stats.h"
#include "transport.h"

struct bufferevent;
struct event_base;
struct evbuffer;
struct stream;

/*
 * What a stream borrows from whoever serves it (a worker): set up before
 * the first stream_new() and kept until the last stream is freed.  Only the
 * thread running se_base touches it or its streams.
 */
struct stream_env {
    struct event_base *se_base;
    const struct upechod_config *se_conf; /* max_pending_output, idle_timeout */
    const struct timeval *se_idle_tv;     /* idle_timeout as a common timeout; NULL: never */
    struct server_stats *se_stats;
    int se_stopping; /* the daemon is stopping: linger after our FIN */
    /* Called once per stream, from stream_free(), just before st is freed. */
    void (*se_closed)(struct stream *st, void *arg);
    void *se_arg;
};

struct stream {
    TAILQ_ENTRY(stream) st_entry; /* the owner's list */
    struct stream_env *st_env;
    struct bufferevent *st_bev;
    struct event *st_linger;        /* draining input after our FIN at shutdown */
    struct timeval st_linger_until; /* ... until then at the latest */
    enum transport st_transport;
    char st_peer[ADDR_STRLEN];
    int st_paused;  /* reading stopped: too much unsent output */
    int st_closing; /* flush what is pending, then close */
};

struct stream *stream_new(struct stream_env *env, int fd, enum transport t,
                          const struct sockaddr *sa, socklen_t salen);
void stream_free(struct stream *st);
void stream_apply_limits(struct stream *st);
void stream_shutdown(struct stream *st);
size_t stream_upper(struct evbuffer *buf);
size_t stream_echo(struct evbuffer *in, struct evbuffer *out);

#endif
