/* udp.h: UDP echo, one datagram back for each datagram in, in batches. */
#ifndef UPECHOD_UDP_H
#define UPECHOD_UDP_H

#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "stats.h"

struct event_base;
struct udp;
struct udp_batch;
struct udp_ratelimit;

/*
 * What a UDP socket borrows from whoever serves it (a worker): kept until
 * the socket is freed, touched only by the thread running ue_base.
 */
struct udp_env {
    struct event_base *ue_base;
    const struct upechod_config *ue_conf; /* the reflection guard and rate limit */
    struct udp_batch *ue_batch;           /* scratch space for every socket of this loop */
    struct udp_ratelimit *ue_ratelimit;
    struct server_stats *ue_stats;
};

struct udp_batch *udp_batch_new(void);
void udp_batch_free(struct udp_batch *b);

struct udp_ratelimit *udp_ratelimit_new(void);
void udp_ratelimit_free(struct udp_ratelimit *rl);
int udp_ratelimit_allow(struct udp_ratelimit *rl, const struct sockaddr *sa, unsigned rate,
                        uint64_t now_ms);

int udp_prepare_socket(int fd, const struct sockaddr *bound);
struct udp *udp_new(const struct udp_env *env, int fd);
void udp_free(struct udp *u);

#endif
