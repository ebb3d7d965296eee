/* udp.h: UDP echo, one datagram back for each datagram in, in batches. */
#ifndef UPECHOD_UDP_H
#define UPECHOD_UDP_H

#include <stdint.h>
#include <sys/socket.h>

#include "server.h"

struct udp;

struct udp_batch *udp_batch_new(void);
void udp_batch_free(struct udp_batch *b);

struct udp_ratelimit *udp_ratelimit_new(void);
void udp_ratelimit_free(struct udp_ratelimit *rl);
int udp_ratelimit_allow(struct udp_ratelimit *rl, const struct sockaddr *sa, unsigned rate,
                        uint64_t now_ms);

int udp_prepare_socket(int fd, const struct sockaddr *bound);
struct udp *udp_new(struct server *srv, int fd);
void udp_free(struct udp *u);

#endif
