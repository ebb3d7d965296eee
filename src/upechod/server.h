/* server.h: the daemon's state: one event base, its listeners, streams and UDP sockets. */
#ifndef UPECHOD_SERVER_H
#define UPECHOD_SERVER_H

#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "config.h"

struct listener;
struct stream;
struct udp_batch;
struct udp_ratelimit;
struct notify;

/* The three ways a client reaches upechod; shared by logs and statistics. */
enum transport {
    TRANSPORT_TCP,
    TRANSPORT_UDP,
    TRANSPORT_UNIX,
};

const char *transport_name(enum transport t);

struct server_stats {
    uint64_t st_accepted;        /* stream connections accepted */
    uint64_t st_closed;          /* stream connections closed */
    uint64_t st_bytes_in;        /* stream bytes read */
    uint64_t st_bytes_out;       /* stream bytes queued back */
    uint64_t st_dgrams_in;       /* datagrams received */
    uint64_t st_dgrams_out;      /* datagrams answered */
    uint64_t st_dgrams_dropped;  /* datagrams not answered (guard, rate limit, send failure) */
    uint64_t st_accept_failures; /* accept(2) failures for lack of descriptors or memory */
    uint64_t st_timeouts;        /* streams closed by idle_timeout */
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

    struct udp_batch *srv_udp_batch; /* one scratch area for every UDP socket */
    struct udp_ratelimit *srv_ratelimit;
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
    int srv_stopping;
    int srv_exit_code;
    int srv_activated; /* serving sockets passed by systemd */
    struct server_stats srv_stats;
    const struct timeval *srv_idle_tv; /* idle_timeout as a common timeout, NULL for never */
};

/*
 * server_start()'s positive return: what the daemon was given cannot work
 * (unusable sockets from the service manager, a user that does not exist),
 * so restarting would not help.  main() exits with EX_CONFIG for it.
 */
#define SERVER_ECONFIG 1

struct server *server_new(const struct upechod_config *conf, const char *conf_path);
void server_free(struct server *srv);
int server_start(struct server *srv);
int server_run(struct server *srv);

void server_stream_opened(struct server *srv);
void server_stream_closed(struct server *srv);
void server_accept_failed(struct server *srv, int err);

#endif
