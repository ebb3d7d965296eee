/* udp.h: UDP echo, one datagram back for each datagram in, in batches. */
#ifndef UPECHOD_UDP_H
#define UPECHOD_UDP_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "config.h"
#include "stats.h"

struct event_base;
struct udp;
struct udp_batch;
struct ratelimit;

/* The loop guard's log budget, shared by every worker (atomics). */
struct udp_loop_log {
    uint64_t ll_logged_ms; /* when a loop drop was last logged, 0 for never */
    uint64_t ll_unlogged;  /* loop drops since */
};

/*
 * What a UDP socket borrows from whoever serves it (a worker): kept until
 * the socket is freed, touched only by the thread running ue_base.
 */
struct udp_env {
    struct event_base *ue_base;
    const struct upechod_config *ue_conf; /* the reflection guard and rate limit */
    struct udp_batch *ue_batch;           /* scratch space for every socket of this loop */
    struct ratelimit *ue_ratelimit;       /* rate_limit, by source address */
    struct ratelimit *ue_portlimit;       /* rate_limit_per_port, by address and port */
    struct server_stats *ue_stats;
    struct udp_loop_log *ue_loop_log;   /* shared by every worker */
    TAILQ_HEAD(udp_list, udp) ue_socks; /* every socket of this loop: the loop guard's ports */
};

struct udp_batch *udp_batch_new(void);
void udp_batch_free(struct udp_batch *b);

int udp_prepare_socket(int fd, const struct sockaddr *bound);
struct udp *udp_new(struct udp_env *env, int fd);
void udp_free(struct udp *u);

#endif
