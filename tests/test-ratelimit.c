/* test-ratelimit.c: the per-source rate limiter, driven by a clock of the test's own. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check-main.h"
#include "ratelimit.h"
#include "siphash.h"

/* The limiter's clock is monotonic from boot: any start a while after 0 will do. */
#define T0 1000000

static const uint8_t test_key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static struct sockaddr_in
v4(uint32_t host_order)
{
    struct sockaddr_in a;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(host_order);
    a.sin_port = htons(40000);
    return a;
}

#define SA(a) ((const struct sockaddr *)&(a))

/* How many of n datagrams from sa at time now are answered. */
static int
allowed(struct ratelimit *rl, const struct sockaddr *sa, unsigned rate, uint64_t now, int n)
{
    int got = 0;

    for (int i = 0; i < n; i++)
        got += ratelimit_allow(rl, sa, 0, rate, now);
    return got;
}

/* The same, by address and port. */
static int
allowed_port(struct ratelimit *rl, const struct sockaddr *sa, unsigned rate, uint64_t now, int n)
{
    int got = 0;

    for (int i = 0; i < n; i++)
        got += ratelimit_allow(rl, sa, 1, rate, now);
    return got;
}

/* The reference vectors of the SipHash-2-4 paper, key 00..0f. */
START_TEST(test_siphash_vectors)
{
    uint8_t msg[15];

    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    ck_assert_uint_eq(siphash24(test_key, msg, 0), 0x726fdb47dd0e0e31ULL);
    ck_assert_uint_eq(siphash24(test_key, msg, 15), 0xa129ca6149be45e5ULL);
    ck_assert_uint_eq(siphash24(test_key, msg, 8), 0x93f5f5799a932462ULL);
}
END_TEST

/* A burst of one second's worth, then one more per 1/rate s, and a full bucket after a second. */
START_TEST(test_burst_and_refill)
{
    struct ratelimit *rl = ratelimit_new();
    struct sockaddr_in a = v4(0x7f000001), b = v4(0x7f000002);

    ck_assert_ptr_nonnull(rl);
    ck_assert_int_eq(allowed(rl, SA(a), 10, T0, 50), 10);
    ck_assert_int_eq(allowed(rl, SA(a), 10, T0 + 99, 5), 0);
    ck_assert_int_eq(allowed(rl, SA(a), 10, T0 + 100, 5), 1);
    ck_assert_int_eq(allowed(rl, SA(b), 10, T0 + 100, 50), 10);
    ck_assert_int_eq(allowed(rl, SA(a), 10, T0 + 5000, 50), 10);
    /* Ports do not matter: a forger picks those. */
    a.sin_port = htons(1);
    ck_assert_int_eq(allowed(rl, SA(a), 10, T0 + 5000, 5), 0);
    /* rate 0 is no limit. */
    ck_assert_int_eq(allowed(rl, SA(a), 0, T0 + 5000, 1000), 1000);
    ratelimit_free(rl);
}
END_TEST

/* Slow, frequent calls earn the whole rate: no fraction of a token is lost at each one. */
START_TEST(test_no_lost_fractions)
{
    struct ratelimit *rl = ratelimit_new_key(test_key);
    struct sockaddr_in a = v4(0x0a000001);
    int got = 0;

    ck_assert_int_eq(allowed(rl, SA(a), 3, T0, 10), 3);
    for (uint64_t t = T0 + 7; t <= T0 + 10000; t += 7)
        got += ratelimit_allow(rl, SA(a), 0, 3, t);
    ck_assert_msg(got >= 29 && got <= 30, "%d answered in 10 s at 3/s", got);
    ratelimit_free(rl);
}
END_TEST

/*
 * An address that lands in a drained source's slot gets what is left in
 * it, not a fresh bucket: neither it nor the first source is answered.
 */
START_TEST(test_evicted_slot_no_burst)
{
    struct ratelimit *rl = ratelimit_new_key(test_key);
    struct sockaddr_in victim = v4(0xc0000201), other;
    size_t slot = ratelimit_slot(rl, SA(victim), 0);
    uint32_t i;

    for (i = 1; i < 10000000; i++) {
        other = v4(0x0a000000 + i);
        if (ratelimit_slot(rl, SA(other), 0) == slot)
            break;
    }
    ck_assert_msg(ratelimit_slot(rl, SA(other), 0) == slot, "no colliding address found");
    ck_assert_int_eq(allowed(rl, SA(victim), 5, T0, 10), 5);
    ck_assert_int_eq(allowed(rl, SA(other), 5, T0, 10), 0);
    ck_assert_int_eq(allowed(rl, SA(victim), 5, T0, 10), 0);
    /* Time earns the slot its tokens again, whoever asks. */
    ck_assert_int_eq(allowed(rl, SA(other), 5, T0 + 200, 10), 1);
    ratelimit_free(rl);
}
END_TEST

/*
 * The bypass: with rate 1, a victim's datagrams interleaved with a stream
 * of spoofed sources (some of which share its slot) must still be answered
 * about once a second, not every time a collision reset the slot.
 */
START_TEST(test_interleaved_sources)
{
    struct ratelimit *rl = ratelimit_new();
    struct sockaddr_in victim = v4(0xc0000201);
    uint32_t spoof = 0x0a000000;
    int got = 0;

    for (int i = 0; i < 1000; i++) {
        uint64_t now = T0 + (uint64_t)i; /* 1000 datagrams in one second */

        got += ratelimit_allow(rl, SA(victim), 0, 1, now);
        for (int j = 0; j < 50; j++) {
            struct sockaddr_in s = v4(spoof++);

            ratelimit_allow(rl, SA(s), 0, 1, now);
        }
    }
    ck_assert_msg(got >= 1 && got <= 2, "victim answered %d times in 1000 at rate 1", got);
    ratelimit_free(rl);
}
END_TEST

/*
 * By address and port (rate_limit_per_port): each socket of a host has a
 * bucket of its own, so a loop partner (one address and port) is held to
 * the rate while a load test's many sockets are not.
 */
START_TEST(test_by_port)
{
    struct ratelimit *rl = ratelimit_new();
    struct sockaddr_in a = v4(0x7f000001), b = v4(0x7f000001);
    int got_a = 0, got_b = 0;

    b.sin_port = htons(40001);
    for (int i = 0; i < 100; i++) {
        got_a += ratelimit_allow(rl, SA(a), 1, 10, T0);
        got_b += ratelimit_allow(rl, SA(b), 1, 10, T0);
    }
    ck_assert_int_eq(got_a, 10);
    ck_assert_int_eq(got_b, 10);
    /* A loop: one datagram going round every 50 us dies once the burst is spent. */
    got_a = 0;
    for (uint64_t us = 0; us < 2000000; us += 50)
        got_a += ratelimit_allow(rl, SA(a), 1, 10, T0 + 1000 + us / 1000);
    ck_assert_msg(got_a <= 10 + 20, "%d answers in 2 s at 10/s", got_a);
    ratelimit_free(rl);
}
END_TEST

/*
 * A loop between two echo servers A and B, each with a per-port table
 * (rate, debt as given): n datagrams forged from time 0, each answered back and forth with rtt_us
 * per round trip.  They go out within half a round trip and every hop takes half, so they stay in
 * time order and a ring of arrival times in order is the whole state.  Returns how long the loop
 * lived in microseconds (limit_us if it still runs then), and the replies sent in *answers and in
 * the last second in *last_s.
 */
static uint64_t
loop_sim(unsigned rate, int debt, uint64_t rtt_us, int n, uint64_t limit_us, uint64_t *answers,
         uint64_t *last_s)
{
    struct ratelimit *side[2] = {ratelimit_new_key(test_key), ratelimit_new_key(test_key)};
    struct sockaddr_in from[2] = {v4(0x0a000002), v4(0x0a000001)}; /* A hears B, B hears A */
    uint64_t *when = calloc((size_t)n, sizeof(*when)), t = 0;
    int *at = calloc((size_t)n, sizeof(*at)), head = 0, live = n;

    ck_assert_ptr_nonnull(side[0]);
    ck_assert_ptr_nonnull(side[1]);
    ck_assert_ptr_nonnull(when);
    ck_assert_ptr_nonnull(at);
    ratelimit_set_debt(side[0], debt);
    ratelimit_set_debt(side[1], debt);
    *answers = *last_s = 0;
    for (int i = 0; i < n; i++) {
        when[i] = rtt_us / 2 * (uint64_t)i / (uint64_t)n;
        at[i] = 0;
    }
    /* Each step takes the earliest datagram: it is at head, the others follow in order. */
    while (live > 0) {
        int i = head, s = at[i];

        t = when[i];
        if (t >= limit_us)
            break;
        if (ratelimit_allow(side[s], SA(from[s]), 1, rate, T0 + t / 1000)) {
            (*answers)++;
            if (t + 1000000 >= limit_us)
                (*last_s)++;
            /* Back to the end of the ring, to the other side. */
            when[i] = t + rtt_us / 2;
            at[i] = !s;
            head = (head + 1) % live;
        } else {
            /* Out of the loop: the ring closes over it, order kept. */
            memmove(when + i, when + i + 1, (size_t)(live - i - 1) * sizeof(*when));
            memmove(at + i, at + i + 1, (size_t)(live - i - 1) * sizeof(*at));
            live--;
            if (head == live)
                head = 0;
        }
    }
    free(when);
    free(at);
    ratelimit_free(side[0]);
    ratelimit_free(side[1]);
    return live > 0 ? limit_us : t;
}

#define LOOP_RATE 10000
#define LOOP_LIMIT_US (20 * 1000000ULL)

/*
 * Loops between two servers at rate_limit_per_port = 10000: without debt
 * a loop thins out until it runs at the rate and stays there whenever
 * rate x round trip is one or more; with debt one that ever goes faster
 * than the rate is dead within a round trip of the burst running out.
 * Only a loop slower than the rate from the start (one datagram, round
 * trip over 100 us) lives on, below the rate.  (100 datagrams at 200 us
 * die without debt too, by the millisecond clock: the 10 answered in a
 * millisecond come back within it and find the bucket empty.  Real loops
 * are not so regular: two daemons on a loaded host loop on without debt.)
 */
START_TEST(test_loop_sim)
{
    static const struct {
        uint64_t rtt_us;
        int n;
        int dies_without; /* the loop dies without debt too */
        int dies;         /* ... with debt */
    } cases[] = {
        {50, 1, 1, 1},   {50, 100, 1, 1},   {200, 1, 0, 0},    {200, 100, 1, 1},
        {1000, 1, 0, 0}, {1000, 100, 0, 1}, {5000, 100, 0, 1},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t life[2], answers[2], last[2];

        for (int debt = 0; debt < 2; debt++)
            life[debt] = loop_sim(LOOP_RATE, debt, cases[i].rtt_us, cases[i].n, LOOP_LIMIT_US,
                                  &answers[debt], &last[debt]);
        fprintf(stderr,
                "ratelimit: loop, rtt %4llu us, %3d forged: without debt %s %6.3f s "
                "(%llu replies, %llu in the last second), with debt %s %6.3f s "
                "(%llu replies, %llu in the last second)\n",
                (unsigned long long)cases[i].rtt_us, cases[i].n,
                life[0] < LOOP_LIMIT_US ? "dead after" : "alive at", life[0] / 1e6,
                (unsigned long long)answers[0], (unsigned long long)last[0],
                life[1] < LOOP_LIMIT_US ? "dead after" : "alive at", life[1] / 1e6,
                (unsigned long long)answers[1], (unsigned long long)last[1]);
        ck_assert_msg((life[0] < LOOP_LIMIT_US) == cases[i].dies_without,
                      "rtt %llu us, %d forged, no debt: lived %llu us",
                      (unsigned long long)cases[i].rtt_us, cases[i].n, (unsigned long long)life[0]);
        ck_assert_msg((life[1] < LOOP_LIMIT_US) == cases[i].dies,
                      "rtt %llu us, %d forged, debt: lived %llu us",
                      (unsigned long long)cases[i].rtt_us, cases[i].n, (unsigned long long)life[1]);
        if (cases[i].dies) {
            /* The burst (a second's worth at each side) and a round trip, not more. */
            ck_assert_msg(life[1] <= 1100000 + cases[i].rtt_us, "rtt %llu us, %d forged: %llu us",
                          (unsigned long long)cases[i].rtt_us, cases[i].n,
                          (unsigned long long)life[1]);
        } else {
            /* What lives on runs below the rate: one datagram every round trip each way. */
            ck_assert_uint_le(last[1], 2 * 1000000 / cases[i].rtt_us + 2);
        }
    }
}
END_TEST

/*
 * A client under the rate is never dropped, in debt mode too, however long
 * it goes on; one that went over is answered again a second after it
 * stops, and after longer if it keeps sending (the debt is paid at the
 * rate less what it sends).
 */
START_TEST(test_debt)
{
    struct ratelimit *rl = ratelimit_new_key(test_key);
    struct sockaddr_in a = v4(0x0a000001);
    uint64_t t;
    int got = 0, sent = 0;

    ratelimit_set_debt(rl, 1);
    /* 9,999 a second (one every 100.01 us) for 10 s, at rate 10,000. */
    for (uint64_t us = 0; us < 10000000; us += 101, sent++)
        got += ratelimit_allow(rl, SA(a), 1, 10000, T0 + us / 1000);
    ck_assert_int_eq(got, sent);
    /* At rate 10: ten answered, the eleventh drops and starts a second's debt. */
    t = T0 + 100000;
    ck_assert_int_eq(allowed_port(rl, SA(a), 10, t, 11), 10);
    /* A datagram in debt is dropped and adds a tenth of a second to it. */
    ck_assert_int_eq(allowed_port(rl, SA(a), 10, t + 999, 1), 0);
    ck_assert_int_eq(allowed_port(rl, SA(a), 10, t + 1100, 1), 0);
    ck_assert_int_eq(allowed_port(rl, SA(a), 10, t + 1400, 1), 1);
    /* Over the rate again, then 5 a second, for 3 s: the debt is paid at 10 - 5 a second. */
    t += 1400;
    ck_assert_int_eq(allowed_port(rl, SA(a), 10, t, 20), 1); /* the token left over */
    got = 0;
    for (uint64_t ms = 200; ms <= 3000; ms += 200)
        got += ratelimit_allow(rl, SA(a), 1, 10, t + ms);
    ck_assert_msg(got >= 3 && got <= 6, "%d of 15 answered while paying the debt back", got);
    /* Without debt the same table is a plain bucket: over the rate costs nothing more. */
    ratelimit_set_debt(rl, 0);
    t += 10000;
    ck_assert_int_eq(allowed_port(rl, SA(a), 10, t, 20), 10);
    ck_assert_int_eq(allowed_port(rl, SA(a), 10, t + 100, 1), 1);
    ratelimit_free(rl);
}
END_TEST

/* The key decides the slots: two tables place the same addresses differently. */
START_TEST(test_keyed)
{
    struct ratelimit *a = ratelimit_new(), *b = ratelimit_new();
    int same = 0;

    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    for (uint32_t i = 0; i < 1000; i++) {
        struct sockaddr_in s = v4(0x0a000000 + i);

        same += ratelimit_slot(a, SA(s), 0) == ratelimit_slot(b, SA(s), 0);
    }
    /* By chance about 1000 / RATELIMIT_SLOTS agree. */
    ck_assert_msg(same < 20, "%d of 1000 addresses in the same slot under two keys", same);
    ratelimit_free(a);
    ratelimit_free(b);
}
END_TEST

static Suite *
ratelimit_suite(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("ratelimit");

    tcase_add_test(tc, test_siphash_vectors);
    tcase_add_test(tc, test_burst_and_refill);
    tcase_add_test(tc, test_no_lost_fractions);
    tcase_add_test(tc, test_evicted_slot_no_burst);
    tcase_add_test(tc, test_interleaved_sources);
    tcase_add_test(tc, test_by_port);
    tcase_add_test(tc, test_loop_sim);
    tcase_add_test(tc, test_debt);
    tcase_add_test(tc, test_keyed);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(ratelimit_suite(), CK_ENV);
}
