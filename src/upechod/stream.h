/* stream.h: one echo connection over TCP or AF_UNIX. */
#ifndef UPECHOD_STREAM_H
#define UPECHOD_STREAM_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "server.h"

struct bufferevent;
struct evbuffer;
struct evbuffer_cb_entry;
struct source;

/* Why a stream is not being read: st_paused bits. */
#define STREAM_PAUSE_OUTPUT 0x1 /* its own output reached max_pending_output */
#define STREAM_PAUSE_MEMORY 0x2 /* all output together reached max_memory */

struct stream {
    TAILQ_ENTRY(stream) st_entry;
    struct server *st_srv;
    struct bufferevent *st_bev;
    struct event *st_linger;        /* draining input after our FIN at shutdown */
    struct timeval st_linger_until; /* ... until then at the latest */
    struct timeval st_last_input;   /* when the client last sent anything (or connected) */
    enum transport st_transport;
    char st_peer[ADDR_STRLEN];
    int st_paused;  /* reading stopped: STREAM_PAUSE_* bits */
    int st_closing; /* flush what is pending, then close */

    TAILQ_ENTRY(stream) st_mem_entry;       /* on srv_mem_paused while STREAM_PAUSE_MEMORY */
    struct evbuffer_cb_entry *st_output_cb; /* counts its output into srv_pending */
    struct source *st_source;               /* counted for max_connections_per_source, or NULL */
    /* The peer's address; after a PROXY header, the client it names. */
    struct addr st_addr;
    /* Set while waiting for a PROXY header, see proxy.c. */
    struct event *st_proxy_timer;

    /* For the metrics. */
    struct timeval st_started; /* accepted at (the loop's cached clock) */
    uint64_t st_nbytes;        /* bytes read, for the metrics' histogram */
};

struct stream *stream_new(struct server *srv, int fd, enum transport t, const struct sockaddr *sa,
                          socklen_t salen);
void stream_free(struct stream *st);
void stream_apply_limits(struct stream *st);
void stream_shutdown(struct stream *st);
int stream_owed(const struct stream *st);
void stream_set_peer(struct stream *st, const struct sockaddr *sa, socklen_t salen);
void stream_begin_echo(struct stream *st);
size_t stream_upper(struct evbuffer *buf);
size_t stream_echo(struct evbuffer *in, struct evbuffer *out);
size_t stream_chain_size(size_t n);
void stream_queue(struct evbuffer *in, struct evbuffer *out, size_t chain);

#endif
