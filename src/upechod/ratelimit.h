/* ratelimit.h: replies per second per source address, in a fixed table with a keyed hash. */
#ifndef UPECHOD_RATELIMIT_H
#define UPECHOD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Buckets in the table; sources whose keyed hashes meet share one. */
#define RATELIMIT_SLOTS 4096

struct ratelimit;

struct ratelimit *ratelimit_new(void);
struct ratelimit *ratelimit_new_key(const uint8_t key[16]);
void ratelimit_free(struct ratelimit *rl);
void ratelimit_set_debt(struct ratelimit *rl, int on);
int ratelimit_allow(struct ratelimit *rl, const struct sockaddr *sa, int by_port, unsigned rate,
                    uint64_t now_ms);
size_t ratelimit_slot(const struct ratelimit *rl, const struct sockaddr *sa, int by_port);

#endif
