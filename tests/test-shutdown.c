/* test-shutdown.c: SIGTERM's bounds: shutdown_timeout, a second SIGTERM, and the drain after FIN.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

/* The exit status of a stop cut short with echo still owed (EX_TEMPFAIL). */
#define EXIT_CUT_SHORT 75

static const char quick_ini[] = INI_TCP4_ONLY "[limits]\n"
                                              "shutdown_timeout = 1\n";

static const char patient_ini[] = INI_TCP4_ONLY "[limits]\n"
                                                "shutdown_timeout = 30\n";

/* Send without reading until nothing more goes in for 300 ms. */
static void
fill(int fd)
{
    static unsigned char buf[256 << 10];

    fill_pattern(buf, sizeof(buf), 11);
    ck_assert_msg(fill_or_fail(fd, buf, sizeof(buf), 256u << 20, 300) < (256u << 20),
                  "256 MiB went in without a stall");
}

/*
 * shutdown_timeout = 1 and a client that reads nothing: the daemon waits
 * the second out, closes what is left, says how many, and exits 75: not 1,
 * which says it could not start, nor 0, since echo was lost.
 */
START_TEST(test_timeout_expires)
{
    struct daemon_proc dp;
    int fd, status = -1;
    long long t0, elapsed;

    start_or_fail(&dp, quick_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    fill(fd);
    t0 = now_ms();
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_msg(daemon_wait(&dp, 5000, &status) == 0, "still running 5 s after SIGTERM");
    elapsed = now_ms() - t0;
    fprintf(stderr, "shutdown: exited %lld ms after SIGTERM with shutdown_timeout = 1\n", elapsed);
    ck_assert_msg(elapsed >= 800, "exited after %lld ms, before shutdown_timeout", elapsed);
    ck_assert_msg(elapsed <= 3000, "exited after %lld ms", elapsed);
    ck_assert_int_eq(status, EXIT_CUT_SHORT);
    ck_assert(daemon_log_contains(&dp, "1 connection still had output pending after 1 s"));
    close(fd);
    daemon_stop(&dp);
}
END_TEST

/* A second SIGTERM while draining: exit at once, closing what is left. */
START_TEST(test_second_sigterm)
{
    struct daemon_proc dp;
    int fd, status = -1;
    long long t0, elapsed;

    start_or_fail(&dp, patient_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    fill(fd);
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_msg(daemon_wait(&dp, 300, &status) == -ETIMEDOUT,
                  "exited (%d) with a client's output pending and 30 s to deliver it", status);
    t0 = now_ms();
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_msg(daemon_wait(&dp, 5000, &status) == 0, "still running 5 s after SIGTERM again");
    elapsed = now_ms() - t0;
    fprintf(stderr, "shutdown: exited %lld ms after the second SIGTERM\n", elapsed);
    ck_assert_msg(elapsed <= 1000, "exited %lld ms after the second SIGTERM", elapsed);
    ck_assert_int_eq(status, EXIT_CUT_SHORT);
    ck_assert(daemon_log_contains(&dp, "again: exiting now, closing 1 connection\n"));
    close(fd);
    daemon_stop(&dp);
}
END_TEST

/*
 * After SIGTERM the daemon sends FIN and then discards what the client
 * still sends, instead of closing on it (a close with unread input is a
 * reset, which can destroy echo the client has not read).  The client can
 * go on writing without an error; once it closes, the daemon exits 0.
 */
START_TEST(test_discards_after_fin)
{
    static char junk[64 << 10];
    struct daemon_proc dp;
    struct pollfd pfd;
    int fd, status = -1;
    char got[8];

    start_or_fail(&dp, patient_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fd, "before", 6), 0);
    ck_assert_int_eq(read_exact(fd, got, 6, 5000), 6);
    ck_assert_mem_eq(got, "BEFORE", 6);
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    memset(junk, 'x', sizeof(junk));
    for (int i = 0; i < 5; i++) {
        ck_assert_msg(send(fd, junk, sizeof(junk), MSG_NOSIGNAL) == (ssize_t)sizeof(junk),
                      "write %d after the daemon's FIN: %s", i, strerror(errno));
        usleep(100 * 1000);
    }
    pfd = (struct pollfd){.fd = fd, .events = 0};
    ck_assert_int_eq(poll(&pfd, 1, 0), 0);
    ck_assert_msg(daemon_wait(&dp, 0, &status) == -ETIMEDOUT,
                  "exited (%d) while the client was still sending", status);
    close(fd);
    ck_assert_int_eq(daemon_wait(&dp, 5000, &status), 0);
    ck_assert_int_eq(status, 0);
    daemon_stop(&dp);
}
END_TEST

/*
 * A client that got everything and its FIN but never closes does not hold
 * the daemon until shutdown_timeout: the drain after FIN is bounded, and
 * since nothing owed was lost the exit is 0.
 */
START_TEST(test_drain_is_bounded)
{
    struct daemon_proc dp;
    int fd, status = -1;
    long long t0, elapsed;

    start_or_fail(&dp, patient_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    t0 = now_ms();
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    ck_assert_msg(daemon_wait(&dp, 10000, &status) == 0, "still running 10 s after SIGTERM");
    elapsed = now_ms() - t0;
    fprintf(stderr, "shutdown: a client that never closed was let go after %lld ms\n", elapsed);
    ck_assert_int_eq(status, 0);
    close(fd);
    daemon_stop(&dp);
}
END_TEST

struct blaster {
    int b_fd;
    atomic_int b_stop;
};

/* Write as fast as the socket takes it until told to stop or the peer goes. */
static void *
blaster_run(void *arg)
{
    struct blaster *b = arg;
    static char buf[1 << 20];

    while (!atomic_load(&b->b_stop)) {
        ssize_t n = send(b->b_fd, buf, sizeof(buf), MSG_NOSIGNAL);

        if (n <= 0)
            break;
    }
    return NULL;
}

/* Read and discard until EOF, an error, or told to stop. */
static void *
drainer_run(void *arg)
{
    struct blaster *b = arg;
    /* One per thread: several drainers run at once. */
    static _Thread_local char buf[256 << 10];

    while (!atomic_load(&b->b_stop) && recv(b->b_fd, buf, sizeof(buf), 0) > 0)
        ;
    return NULL;
}

/*
 * Clients that never stop writing while the daemon lingers after its FIN:
 * the linger reads a bounded amount per callback, so the loop's timers
 * still run and the daemon exits on time rather than reading for ever.
 */
START_TEST(test_linger_fast_writers)
{
    enum { NCLIENTS = 2, NWRITERS = 3 };
    struct daemon_proc dp;
    struct blaster b[NCLIENTS];
    pthread_t wt[NCLIENTS][NWRITERS], rt[NCLIENTS];
    int status = -1, big = 64 << 20, done;
    long long t0, elapsed;

    start_or_fail(&dp, INI_UNIX_ONLY "path = @DIR@/s.sock\n[limits]\nshutdown_timeout = 30\n");
    for (int i = 0; i < NCLIENTS; i++) {
        b[i].b_fd = unix_connect(dp.dp_unix_path);
        ck_assert_int_ge(b[i].b_fd, 0);
        atomic_init(&b[i].b_stop, 0);
        /* A deep queue (root may force it): the daemon seldom finds the socket empty. */
        setsockopt(b[i].b_fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
        for (int k = 0; k < NWRITERS; k++)
            ck_assert_int_eq(pthread_create(&wt[i][k], NULL, blaster_run, &b[i]), 0);
        ck_assert_int_eq(pthread_create(&rt[i], NULL, drainer_run, &b[i]), 0);
    }
    usleep(500 * 1000);
    t0 = now_ms();
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    done = daemon_wait(&dp, 20000, &status) == 0;
    elapsed = now_ms() - t0;
    for (int i = 0; i < NCLIENTS; i++) {
        atomic_store(&b[i].b_stop, 1);
        shutdown(b[i].b_fd, SHUT_RDWR);
    }
    if (!done)
        daemon_stop(&dp);
    for (int i = 0; i < NCLIENTS; i++) {
        for (int k = 0; k < NWRITERS; k++)
            pthread_join(wt[i][k], NULL);
        pthread_join(rt[i], NULL);
        close(b[i].b_fd);
    }
    fprintf(stderr, "shutdown: fast writers in the linger, exit %lld ms after SIGTERM\n", elapsed);
    ck_assert_msg(done, "still running 20 s after SIGTERM with writers in the linger");
    /* The linger is 2 s; reading until EAGAIN took about 7 s here. */
    ck_assert_int_le(elapsed, 4500);
    ck_assert_int_eq(status, 0);
    daemon_stop(&dp);
}
END_TEST

/*
 * shutdown_timeout = 1, shorter than the 2 s drain after FIN, and a client
 * that got all its echo but keeps its end open: when the timeout comes the
 * client is owed nothing, so the stop is clean (0), not cut short.
 */
START_TEST(test_timeout_in_drain_is_clean)
{
    struct daemon_proc dp;
    int fd, status = -1;
    char got[8];

    start_or_fail(&dp, quick_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fd, "before", 6), 0);
    ck_assert_int_eq(read_exact(fd, got, 6, 5000), 6);
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    ck_assert_msg(daemon_wait(&dp, 5000, &status) == 0, "still running 5 s after SIGTERM");
    ck_assert_int_eq(status, 0);
    ck_assert(!daemon_log_contains(&dp, "output pending"));
    close(fd);
    daemon_stop(&dp);
}
END_TEST

/*
 * A client that is quiet, with nothing unread and nothing sent for over a
 * second, is closed at once: an idle connection does not make every stop
 * wait out the drain after FIN.
 */
START_TEST(test_quiet_client_not_waited)
{
    struct daemon_proc dp;
    int fd, status = -1;
    long long t0, elapsed;
    char got[8];

    start_or_fail(&dp, patient_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fd, "before", 6), 0);
    ck_assert_int_eq(read_exact(fd, got, 6, 5000), 6);
    usleep(1500 * 1000);
    t0 = now_ms();
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_msg(daemon_wait(&dp, 5000, &status) == 0, "still running 5 s after SIGTERM");
    elapsed = now_ms() - t0;
    fprintf(stderr, "shutdown: a quiet client was let go after %lld ms\n", elapsed);
    ck_assert_msg(elapsed < 1500, "a quiet client held the stop for %lld ms", elapsed);
    ck_assert_int_eq(status, 0);
    ck_assert_int_eq(read_eof(fd, 1000), 0);
    close(fd);
    daemon_stop(&dp);
}
END_TEST

static Suite *
shutdown_suite(void)
{
    Suite *s = suite_create("shutdown");
    TCase *tc = tcase_create("shutdown");

    tcase_add_test(tc, test_timeout_expires);
    tcase_add_test(tc, test_second_sigterm);
    tcase_add_test(tc, test_discards_after_fin);
    tcase_add_test(tc, test_drain_is_bounded);
    tcase_add_test(tc, test_linger_fast_writers);
    tcase_add_test(tc, test_timeout_in_drain_is_clean);
    tcase_add_test(tc, test_quiet_client_not_waited);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(shutdown_suite(), CK_ENV);
}
