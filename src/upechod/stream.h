/* stream.h: one echo connection over TCP or AF_UNIX. */
#ifndef UPECHOD_STREAM_H
#define UPECHOD_STREAM_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "server.h"

struct bufferevent;
struct evbuffer;

struct stream {
    TAILQ_ENTRY(stream) st_entry;
    struct server *st_srv;
    struct bufferevent *st_bev;
    struct event *st_linger;        /* draining input after our FIN at shutdown */
    struct timeval st_linger_until; /* ... until then at the latest */
    enum transport st_transport;
    char st_peer[ADDR_STRLEN];
    int st_paused;  /* reading stopped: too much unsent output */
    int st_closing; /* flush what is pending, then close */
};

struct stream *stream_new(struct server *srv, int fd, enum transport t, const struct sockaddr *sa,
                          socklen_t salen);
void stream_free(struct stream *st);
void stream_apply_limits(struct stream *st);
void stream_shutdown(struct stream *st);
size_t stream_upper(struct evbuffer *buf);
size_t stream_echo(struct evbuffer *in, struct evbuffer *out);

#endif
