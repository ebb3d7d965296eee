/* test-badclients.c: misbehaving clients are each handled, and never slow a good one down. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

#define NRESET 10
#define NBYTEWISE 8
#define BYTEWISE_LEN 400
#define NSILENT 100
/* Pattern period for the bulk clients; any window of FILL_CHUNK from an offset is contiguous. */
#define FILL_PERIOD 65521u
#define FILL_CHUNK (256u << 10)

static const char ini[] = INI_TCP4_ONLY "[limits]\n"
                                        "idle_timeout = 2\n";

static unsigned char fill_pat[FILL_PERIOD + FILL_CHUNK];

/*
 * The well-behaved client: a short message and its echo every 20 ms, on
 * its own thread.  It records the slowest round trip and the first thing
 * that went wrong; the test asserts on both once it is stopped.
 */
struct good {
    int g_port;
    atomic_int g_stop;
    atomic_int g_started; /* a first round trip done, or failed: good_start() may return */
    long g_rounds;
    long long g_max_ms;
    char g_err[256];
    pthread_t g_thread;
};

static void *
good_run(void *arg)
{
    struct good *g = arg;
    char msg[64], got[64], want[64];
    int fd = tcp_connect(AF_INET, g->g_port);

    if (fd < 0) {
        snprintf(g->g_err, sizeof(g->g_err), "connect: %s", strerror(-fd));
        atomic_store(&g->g_started, 1);
        return NULL;
    }
    while (!atomic_load(&g->g_stop)) {
        int len = snprintf(msg, sizeof(msg), "good client, round %ld", g->g_rounds);
        long long t0 = now_ms();
        ssize_t n;

        if (write_all(fd, msg, (size_t)len) != 0) {
            snprintf(g->g_err, sizeof(g->g_err), "round %ld: write failed", g->g_rounds);
            break;
        }
        n = read_exact(fd, got, (size_t)len, 5000);
        if (n != len) {
            snprintf(g->g_err, sizeof(g->g_err), "round %ld: %s", g->g_rounds,
                     n < 0 ? strerror((int)-n) : "EOF");
            break;
        }
        ref_upper(want, msg, (size_t)len);
        if (memcmp(got, want, (size_t)len) != 0) {
            snprintf(g->g_err, sizeof(g->g_err), "round %ld: wrong echo", g->g_rounds);
            break;
        }
        if (now_ms() - t0 > g->g_max_ms)
            g->g_max_ms = now_ms() - t0;
        g->g_rounds++;
        atomic_store(&g->g_started, 1);
        usleep(20000);
    }
    atomic_store(&g->g_started, 1);
    close(fd);
    return NULL;
}

static void
good_start(struct good *g, int port)
{
    memset(g, 0, sizeof(*g));
    g->g_port = port;
    ck_assert_int_eq(pthread_create(&g->g_thread, NULL, good_run, g), 0);
    /* Its first round trip proves it is connected before the bad clients come. */
    while (!atomic_load(&g->g_started))
        usleep(1000);
}

static void
good_stop(struct good *g, const char *what)
{
    long long max_ms = under_asan() ? 2000 : 1000;

    atomic_store(&g->g_stop, 1);
    ck_assert_int_eq(pthread_join(g->g_thread, NULL), 0);
    fprintf(stderr, "badclients: %s: good client did %ld round trips, the slowest %lld ms\n", what,
            g->g_rounds, g->g_max_ms);
    ck_assert_msg(g->g_err[0] == '\0', "good client beside %s: %s", what, g->g_err);
    ck_assert_int_ge(g->g_rounds, 5);
    ck_assert_msg(g->g_max_ms <= max_ms, "a round trip beside %s took %lld ms", what, g->g_max_ms);
}

static void
start(struct daemon_proc *dp, struct good *g, int *base)
{
    start_or_fail(dp, ini);
    *base = nfds_or_fail(dp);
    good_start(g, dp->dp_tcp_port);
}

/* Send without reading until nothing goes in for 300 ms or cap is reached; how much went. */
static size_t
fill(int fd, size_t cap)
{
    return fill_or_fail(fd, fill_pat, FILL_PERIOD, cap, 300);
}

static void
close_with_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

/* Clients that reset the connection (SO_LINGER 0) with megabytes in flight both ways. */
START_TEST(test_resets_mid_stream)
{
    struct daemon_proc dp;
    struct good g;
    int base, fd;
    size_t n;

    start(&dp, &g, &base);
    for (int i = 0; i < NRESET; i++) {
        fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
        /* Half of them stop short of a stall, so the reset lands mid-echo. */
        n = fill(fd, i % 2 ? (1u << 20) : (64u << 20));
        ck_assert_uint_gt(n, 0);
        close_with_reset(fd);
    }
    expect_nfds(&dp, base + 1, 5000);
    good_stop(&g, "resets");
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* Clients that send one byte per write, interleaved, each reading its echo as it goes. */
START_TEST(test_one_byte_writers)
{
    static unsigned char sent[NBYTEWISE][BYTEWISE_LEN], got[NBYTEWISE][BYTEWISE_LEN];
    size_t have[NBYTEWISE] = {0};
    struct daemon_proc dp;
    int fd[NBYTEWISE], base, one = 1;
    struct good g;

    start(&dp, &g, &base);
    for (int c = 0; c < NBYTEWISE; c++) {
        fill_pattern(sent[c], BYTEWISE_LEN, 100 + (unsigned)c);
        for (int i = 0; i < BYTEWISE_LEN; i += 3)
            sent[c][i] = (unsigned char)('a' + i % 26);
        fd[c] = connect_or_fail(AF_INET, dp.dp_tcp_port);
        ck_assert_int_eq(setsockopt(fd[c], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    }
    for (int i = 0; i < BYTEWISE_LEN; i++) {
        for (int c = 0; c < NBYTEWISE; c++) {
            ck_assert_int_eq(send(fd[c], &sent[c][i], 1, MSG_NOSIGNAL), 1);
            ssize_t r = recv(fd[c], got[c] + have[c], BYTEWISE_LEN - have[c], MSG_DONTWAIT);
            ck_assert_msg(r > 0 || (r == -1 && errno == EAGAIN), "client %d: recv gave %zd (%s)", c,
                          r, r == -1 ? strerror(errno) : "EOF");
            if (r > 0)
                have[c] += (size_t)r;
        }
        /* Spread over half a second, for the good client to run beside them. */
        usleep(1250);
    }
    for (int c = 0; c < NBYTEWISE; c++) {
        ssize_t r = read_exact(fd[c], got[c] + have[c], BYTEWISE_LEN - have[c], 5000);
        long bad;

        ck_assert_int_eq(r, (ssize_t)(BYTEWISE_LEN - have[c]));
        bad = ref_mismatch(got[c], sent[c], BYTEWISE_LEN);
        ck_assert_msg(bad == -1, "client %d: wrong byte at %ld", c, bad);
        close(fd[c]);
    }
    expect_nfds(&dp, base + 1, 5000);
    good_stop(&g, "one-byte writers");
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* Clients that connect and send nothing hold no one up, and go at idle_timeout = 2. */
START_TEST(test_silent_clients)
{
    struct daemon_proc dp;
    int fd[NSILENT], base;
    struct good g;
    long long t0;

    start(&dp, &g, &base);
    t0 = now_ms();
    for (int i = 0; i < NSILENT; i++)
        fd[i] = connect_or_fail(AF_INET, dp.dp_tcp_port);
    expect_nfds(&dp, base + 1 + NSILENT, 5000);
    for (int i = 0; i < NSILENT; i++)
        ck_assert_msg(read_eof(fd[i], 5000) == 0, "silent client %d not closed", i);
    fprintf(stderr, "badclients: %d silent clients closed within %lld ms\n", NSILENT,
            now_ms() - t0);
    ck_assert_int_ge(now_ms() - t0, 1500);
    expect_nfds(&dp, base + 1, 5000);
    good_stop(&g, "silent clients");
    for (int i = 0; i < NSILENT; i++)
        close(fd[i]);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * Clients that fill every buffer and then half-close: one reads and gets
 * every byte back then EOF; one never reads and is freed by idle_timeout;
 * one closes at once with its echo unread.
 */
START_TEST(test_half_close_pending)
{
    static unsigned char got[FILL_CHUNK];
    struct daemon_proc dp;
    size_t n, have = 0;
    int reader, stuck, gone, base;
    struct good g;

    start(&dp, &g, &base);
    reader = connect_or_fail(AF_INET, dp.dp_tcp_port);
    n = fill(reader, 256u << 20);
    ck_assert_uint_gt(n, 1u << 20);
    ck_assert_int_eq(shutdown(reader, SHUT_WR), 0);
    while (have < n) {
        size_t want = n - have < FILL_CHUNK ? n - have : FILL_CHUNK;
        ssize_t r = read_exact(reader, got, want, 10000);
        long bad;

        ck_assert_msg(r == (ssize_t)want, "%zu of %zu bytes back, then %s", have, n,
                      r < 0 ? strerror((int)-r) : "EOF");
        bad = ref_mismatch(got, fill_pat + have % FILL_PERIOD, want);
        ck_assert_msg(bad == -1, "wrong byte at offset %zu", have + (size_t)bad);
        have += want;
    }
    ck_assert_int_eq(read_eof(reader, 5000), 0);
    fprintf(stderr, "badclients: %zu KiB pending at half-close all came back\n", n >> 10);

    close(reader);

    /* Its close with the echo unread resets the connection: freed at once. */
    gone = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_uint_gt(fill(gone, 256u << 20), 1u << 20);
    ck_assert_int_eq(shutdown(gone, SHUT_WR), 0);
    close(gone);
    expect_nfds(&dp, base + 1, 1000);

    /* The one that never reads is freed by idle_timeout, with nobody closing it. */
    stuck = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_uint_gt(fill(stuck, 256u << 20), 1u << 20);
    ck_assert_int_eq(shutdown(stuck, SHUT_WR), 0);
    ck_assert_int_eq(nfds_or_fail(&dp), base + 2);
    expect_nfds(&dp, base + 1, 6000);
    good_stop(&g, "half-closed clients");
    close(stuck);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

static Suite *
badclients_suite(void)
{
    Suite *s = suite_create("badclients");
    TCase *tc = tcase_create("badclients");

    tcase_add_test(tc, test_resets_mid_stream);
    tcase_add_test(tc, test_one_byte_writers);
    tcase_add_test(tc, test_silent_clients);
    tcase_add_test(tc, test_half_close_pending);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    fill_pattern(fill_pat, FILL_PERIOD, 21);
    for (size_t i = 0; i < FILL_PERIOD; i += 2)
        fill_pat[i] = (unsigned char)('a' + i % 26);
    for (size_t i = FILL_PERIOD; i < sizeof(fill_pat); i++)
        fill_pat[i] = fill_pat[i - FILL_PERIOD];
    if (raise_nofile(NSILENT + 256) != 0) {
        fprintf(stderr, "cannot raise our open-file limit to %d\n", NSILENT + 256);
        return EXIT_FAILURE;
    }
    return check_main(badclients_suite(), CK_ENV);
}
