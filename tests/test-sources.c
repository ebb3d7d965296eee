/* test-sources.c: max_connections_per_source, against the real daemon. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

#define PER_SOURCE 3

static const char per_source_ini[] = INI_TCP4_ONLY "[limits]\n"
                                                   "max_connections_per_source = 3\n";

/* A TCP connection to 127.0.0.1:port from the loopback address `from`. */
static int
connect_from(const char *from, int port)
{
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(inet_pton(AF_INET, from, &src.sin_addr), 1);
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    dst.sin_port = htons((uint16_t)port);
    ck_assert_msg(bind(fd, (struct sockaddr *)&src, sizeof(src)) == 0, "bind %s: %s", from,
                  strerror(errno));
    ck_assert_msg(connect(fd, (struct sockaddr *)&dst, sizeof(dst)) == 0, "connect from %s: %s",
                  from, strerror(errno));
    return fd;
}

/* The daemon closed fd at once: EOF (or a reset) well within a second, and no echo. */
static void
expect_closed(int fd, const char *what)
{
    char buf[8];
    long long t0 = now_ms();
    ssize_t n;

    /* The write may race the close; only the read says what happened. */
    (void)send(fd, "x", 1, MSG_NOSIGNAL);
    n = read_exact(fd, buf, 1, 3000);
    ck_assert_msg(n == 0 || n == -ECONNRESET, "%s: not closed (%zd: %s)", what, n,
                  n < 0 ? strerror((int)-n) : "got echo");
    ck_assert_msg(now_ms() - t0 < 2000, "%s: closed only after %lld ms", what, now_ms() - t0);
}

/*
 * max_connections_per_source = 3: a fourth connection from 127.0.0.2 is
 * accepted and closed at once, while 127.0.0.3 is still served and the
 * three of 127.0.0.2 go on; once those close, 127.0.0.2 has its three
 * again, and no more.
 */
START_TEST(test_per_source_limit)
{
    int a[PER_SOURCE], b[PER_SOURCE], extra, nfds;
    struct daemon_proc dp;
    char msg[32];

    start_or_fail(&dp, per_source_ini);
    ck_assert_int_gt(dp.dp_tcp_port, 0);
    nfds = nfds_or_fail(&dp);
    for (int i = 0; i < PER_SOURCE; i++) {
        a[i] = connect_from("127.0.0.2", dp.dp_tcp_port);
        snprintf(msg, sizeof(msg), "a%d", i);
        echo_once(a[i], msg, 5000);
    }
    extra = connect_from("127.0.0.2", dp.dp_tcp_port);
    expect_closed(extra, "fourth connection from 127.0.0.2");
    close(extra);
    /* Another source is not affected, and neither are the first three. */
    for (int i = 0; i < PER_SOURCE; i++) {
        b[i] = connect_from("127.0.0.3", dp.dp_tcp_port);
        echo_once(b[i], "other source", 5000);
    }
    for (int i = 0; i < PER_SOURCE; i++)
        echo_once(a[i], "still served", 5000);
    ck_assert_int_eq(nfds_or_fail(&dp), nfds + 2 * PER_SOURCE);

    /* The count goes back down as they close: 127.0.0.2 has its three again. */
    for (int i = 0; i < PER_SOURCE; i++)
        close(a[i]);
    expect_nfds(&dp, nfds + PER_SOURCE, 5000);
    for (int i = 0; i < PER_SOURCE; i++) {
        a[i] = connect_from("127.0.0.2", dp.dp_tcp_port);
        echo_once(a[i], "back again", 5000);
    }
    extra = connect_from("127.0.0.2", dp.dp_tcp_port);
    expect_closed(extra, "fourth connection from 127.0.0.2, again");
    close(extra);
    extra = connect_from("127.0.0.3", dp.dp_tcp_port);
    expect_closed(extra, "fourth connection from 127.0.0.3");
    close(extra);

    for (int i = 0; i < PER_SOURCE; i++) {
        close(a[i]);
        close(b[i]);
    }
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* Without the key (the default) one source may open as many as it likes. */
START_TEST(test_per_source_off)
{
    int fd[PER_SOURCE + 5];
    struct daemon_proc dp;

    start_or_fail(&dp, INI_TCP4_ONLY);
    for (size_t i = 0; i < sizeof(fd) / sizeof(fd[0]); i++) {
        fd[i] = connect_from("127.0.0.2", dp.dp_tcp_port);
        echo_once(fd[i], "no limit", 5000);
    }
    for (size_t i = 0; i < sizeof(fd) / sizeof(fd[0]); i++)
        close(fd[i]);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

static Suite *
sources_suite(void)
{
    Suite *s = suite_create("sources");
    TCase *tc = tcase_create("sources");

    tcase_add_test(tc, test_per_source_limit);
    tcase_add_test(tc, test_per_source_off);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(sources_suite(), CK_ENV);
}
