/* test-ratelimit.c: the per-source rate limiter, driven by a clock of the test's own. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

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

/* The reference vectors of the SipHash-2-4 paper, key 00..0f. */
START_TEST(test_siphash_vectors)
{
    uint8_t msg[15];

    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    ck_assert_uint_eq(ratelimit_siphash(test_key, msg, 0), 0x726fdb47dd0e0e31ULL);
    ck_assert_uint_eq(ratelimit_siphash(test_key, msg, 15), 0xa129ca6149be45e5ULL);
    ck_assert_uint_eq(ratelimit_siphash(test_key, msg, 8), 0x93f5f5799a932462ULL);
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
    tcase_add_test(tc, test_keyed);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(ratelimit_suite());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
