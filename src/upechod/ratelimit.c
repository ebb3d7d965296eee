/* ratelimit.c: replies per second per source address, in a fixed table with a keyed hash. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ratelimit.h"
#include "siphash.h"

/*
 * One token bucket per slot, not per address: the slot's state is what a
 * source finds there, whoever used it before.  A source arriving in a slot
 * another one held gets the tokens left and what the time since has earned,
 * never a fresh bucket, so sending from a colliding (spoofed) address
 * cannot refill the victim's bucket.  A slot nobody has used for a second
 * is full, which is exactly what a new source would have earned anyway.
 */
struct ratelimit_slot {
    int32_t rs_tokens;   /* below 0 only in a table with debt: what is owed */
    uint8_t rs_in_debt;  /* dropped since last answered, in a table with debt */
    uint64_t rs_last_ms; /* when rs_tokens was last brought up to date */
};

struct ratelimit {
    uint8_t rl_key[16]; /* SipHash key: which addresses collide is nobody's guess */
    int rl_debt;        /* a source over the rate owes a second: see ratelimit_set_debt() */
    struct ratelimit_slot rl_slots[RATELIMIT_SLOTS];
};

/* A table with the given key; tests use it to be repeatable. */
struct ratelimit *
ratelimit_new_key(const uint8_t key[16])
{
    struct ratelimit *rl = calloc(1, sizeof(*rl));

    if (rl != NULL)
        memcpy(rl->rl_key, key, sizeof(rl->rl_key));
    return rl;
}

/* A table keyed from getrandom(2), drawn once at start. */
struct ratelimit *
ratelimit_new(void)
{
    uint8_t key[16];
    size_t got = 0;

    while (got < sizeof(key)) {
        ssize_t n = getrandom(key + got, sizeof(key) - got, 0);

        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        got += (size_t)n;
    }
    return ratelimit_new_key(key);
}

void
ratelimit_free(struct ratelimit *rl)
{
    free(rl);
}

/*
 * With debt on, a source that finds its bucket empty is not merely held to
 * the rate: it is put a second's worth of tokens in debt, and every
 * datagram it sends while in debt is dropped and adds one more to the debt
 * (a second's worth at most).  It is answered again once refilling at the
 * rate has paid the debt back: a second after it stopped, longer if it
 * keeps sending, never while it sends faster than the rate.
 *
 * This is what ends a loop with another echo server.  Every datagram going
 * round passes the same source address and port once per round trip; the
 * first one dropped for rate starts a second in which all of them are
 * dropped, so a loop faster than the rate is dead within one round trip,
 * however many datagrams were forged to feed it.  Without debt a loop only
 * thins out until it runs at the rate, and stays there.
 */
void
ratelimit_set_debt(struct ratelimit *rl, int on)
{
    rl->rl_debt = on;
}

/* The slot sa hashes to: the family and the address, and the port if by_port. */
size_t
ratelimit_slot(const struct ratelimit *rl, const struct sockaddr *sa, int by_port)
{
    uint8_t key[19] = {0};

    key[0] = (uint8_t)sa->sa_family;
    if (sa->sa_family == AF_INET) {
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        if (by_port)
            memcpy(key + 17, &((const struct sockaddr_in *)sa)->sin_port, 2);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        if (by_port)
            memcpy(key + 17, &((const struct sockaddr_in6 *)sa)->sin6_port, 2);
    }
    return (size_t)(siphash24(rl->rl_key, key, sizeof(key)) % RATELIMIT_SLOTS);
}

/*
 * May a datagram from sa be answered at now_ms (a monotonic clock in ms,
 * the caller's, so that tests can drive it)?  `rate` replies a second per
 * source address, with a burst of one second's worth.  Ports are ignored
 * unless by_port, since whoever forges the address picks those too; a
 * table counts either by address or by address and port, never both.
 * A table with debt on also penalises a source over the rate (see
 * ratelimit_set_debt()).  Returns 1 to answer.
 */
int
ratelimit_allow(struct ratelimit *rl, const struct sockaddr *sa, int by_port, unsigned rate,
                uint64_t now_ms)
{
    struct ratelimit_slot *s;
    uint64_t refill;

    if (rate == 0)
        return 1;
    s = &rl->rl_slots[ratelimit_slot(rl, sa, by_port)];
    if (now_ms > s->rs_last_ms) {
        /*
         * Whole tokens earned since rs_last_ms; the clock moves on only by
         * the time those took, so a fraction is not lost at every call.
         */
        refill = (now_ms - s->rs_last_ms) * rate / 1000;
        if ((int64_t)s->rs_tokens + (int64_t)refill >= (int64_t)rate) {
            s->rs_tokens = (int32_t)rate;
            s->rs_last_ms = now_ms;
        } else if (refill > 0) {
            s->rs_tokens += (int32_t)refill;
            s->rs_last_ms += (refill * 1000 + rate - 1) / rate;
        }
    }
    if (s->rs_tokens > 0) {
        s->rs_tokens--;
        s->rs_in_debt = 0;
        return 1;
    }
    if (rl->rl_debt) {
        /* rate is at most 1000000 (the configuration says so): it fits. */
        if (!s->rs_in_debt)
            s->rs_tokens = -(int32_t)rate;
        else if (s->rs_tokens > -(int32_t)rate)
            s->rs_tokens--;
        s->rs_in_debt = 1;
    }
    return 0;
}
