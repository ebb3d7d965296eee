/* test-proxy-daemon.c: the daemon with proxy_protocol = yes, header phase end to end. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

/* TCP on 127.0.0.1 port 0 with PROXY headers from the given list, debug log. */
#define TCP_PROXY_INI(from)                                                                        \
    "[tcp]\nlisten = 127.0.0.1:0\nproxy_protocol = yes\nproxy_protocol_from = " from "\n"          \
    "[udp]\nenabled = no\n[log]\nlevel = debug\n"

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A v2 PROXY header for TCP over IPv4, 192.0.2.77:5151 to 198.51.100.1:443, with a TLV. */
static size_t
v2_tcp4(uint8_t *buf)
{
    static const uint8_t addr[] = {
        192,  0,    2,    77,   198,  51,   100, 1,   0x14,
        0x1f, 0x01, 0xbb, 0x04, 0x00, 0x03, 'x', 'y', 'z'}; /* a PP2_TYPE_NOOP TLV */

    memcpy(buf, v2_sig, 12);
    buf[12] = 0x21;
    buf[13] = 0x11;
    buf[14] = 0;
    buf[15] = sizeof(addr);
    memcpy(buf + 16, addr, sizeof(addr));
    return 16 + sizeof(addr);
}

/* The connection is closed by the daemon, with nothing echoed, within timeout_ms. */
static void
expect_closed(int fd, int timeout_ms)
{
    int r = read_eof(fd, timeout_ms);

    ck_assert_msg(r == 0 || r == -ECONNRESET, "not closed: %s", strerror(-r));
}

/* The header is not echoed, the bytes after it are, also those in the same write. */
START_TEST(test_proxy_v1_same_write)
{
    struct daemon_proc dp;
    static const char msg[] = "PROXY TCP4 203.0.113.7 127.0.0.1 4242 9090\r\nhello, proxy";
    char got[32];
    int fd;

    start_or_fail(&dp, TCP_PROXY_INI("127.0.0.1"));
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fd, msg, strlen(msg)), 0);
    ck_assert_int_eq(read_exact(fd, got, 12, 5000), 12);
    ck_assert_mem_eq(got, "HELLO, PROXY", 12);
    echo_once(fd, "and more", 5000);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    close(fd);
    /* The log names the client from the header, and the balancer it came through. */
    ck_assert(daemon_log_contains(&dp, "tcp 203.0.113.7:4242: PROXY v1 header from 127.0.0.1:"));
    ck_assert(daemon_log_contains(&dp, "tcp 203.0.113.7:4242: end of input"));
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* A v2 header that trickles in a byte at a time, TLVs skipped; then LOCAL. */
START_TEST(test_proxy_v2_bytewise)
{
    struct daemon_proc dp;
    uint8_t hdr[64];
    size_t n;
    int fd;

    start_or_fail(&dp, TCP_PROXY_INI("10.0.0.0/8, 127.0.0.0/8"));
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    n = v2_tcp4(hdr);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(write_all(fd, hdr + i, 1), 0);
        usleep(2000);
    }
    echo_once(fd, "after v2", 5000);
    close(fd);

    /* LOCAL, as a health check sends it: served as the balancer itself. */
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    memcpy(hdr, v2_sig, 12);
    memcpy(hdr + 12, "\x20\x00\x00\x00", 4);
    ck_assert_int_eq(write_all(fd, hdr, 16), 0);
    echo_once(fd, "local", 5000);
    close(fd);
    ck_assert(daemon_log_contains(&dp, "tcp 192.0.2.77:5151: PROXY v2 header from 127.0.0.1:"));
    ck_assert(daemon_log_contains(&dp, ", naming no client"));
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* Whatever is wrong, the connection closes at once with nothing echoed. */
START_TEST(test_proxy_bad_headers)
{
    static const char *const bad[] = {
        "hello\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\nhello",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nhello",
        "\r\n\r\n\0\r\nQUIT\n\x11\x11\x00\x0c",
        "\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
    };
    static const size_t len[] = {6, 42, 36, 16, 16};
    struct daemon_proc dp;
    char big[300];
    long long start;
    int fd, logged;

    start_or_fail(&dp, TCP_PROXY_INI("127.0.0.1"));
    start = now_ms();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        long long t0 = now_ms();

        fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
        ck_assert_int_eq(write_all(fd, bad[i], len[i]), 0);
        expect_closed(fd, 3000);
        ck_assert_int_lt(now_ms() - t0, 2500);
        close(fd);
    }
    /* Over 107 bytes of v1 without CRLF. */
    memset(big, 'x', sizeof(big));
    memcpy(big, "PROXY UNKNOWN ", 14);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fd, big, sizeof(big)), 0);
    expect_closed(fd, 3000);
    close(fd);
    /* The first failure is logged; the rest, within a second of it, only counted. */
    ck_assert(daemon_log_contains(&dp, "closed: no PROXY header signature"));
    logged = daemon_log_count(&dp, "closed:");
    ck_assert_int_ge(logged, 1);
    ck_assert_int_le(logged, 1 + (now_ms() - start) / 1000);
    /* A second later the next one is logged, with the number left out meanwhile. */
    usleep(1100 * 1000);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fd, "nope", 4), 0);
    expect_closed(fd, 3000);
    close(fd);
    ck_assert_int_eq(daemon_log_count(&dp, "closed:"), logged + 1);
    if (logged < 6)
        ck_assert(daemon_log_contains(&dp, "more PROXY header failures since the last report"));
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* A peer not in proxy_protocol_from is closed even with a good header. */
START_TEST(test_proxy_not_allowed)
{
    struct daemon_proc dp;
    static const char msg[] = "PROXY TCP4 203.0.113.7 127.0.0.1 4242 9090\r\nhello";
    int fd;

    start_or_fail(&dp, TCP_PROXY_INI("127.0.0.2, ::1"));
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    (void)write_all(fd, msg, strlen(msg));
    expect_closed(fd, 3000);
    close(fd);
    ck_assert(daemon_log_contains(&dp, "not in proxy_protocol_from"));
    ck_assert(!daemon_log_contains(&dp, "203.0.113.7"));
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * max_connections_per_source counts the client the header names, not the
 * balancer every connection comes from: two clients behind one balancer
 * each get their own allowance, and the second connection of one is closed.
 */
START_TEST(test_proxy_per_source)
{
    struct daemon_proc dp;
    static const char a1[] = "PROXY TCP4 203.0.113.7 127.0.0.1 4242 9090\r\none";
    static const char a2[] = "PROXY TCP4 203.0.113.7 127.0.0.1 4243 9090\r\ntwo";
    static const char b1[] = "PROXY TCP4 198.51.100.9 127.0.0.1 4242 9090\r\nthree";
    char got[8];
    int fa, fa2, fb;

    start_or_fail(&dp, TCP_PROXY_INI("127.0.0.1") "[limits]\nmax_connections_per_source = 1\n");
    fa = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fa, a1, strlen(a1)), 0);
    ck_assert_int_eq(read_exact(fa, got, 3, 5000), 3);
    ck_assert_mem_eq(got, "ONE", 3);
    /* The same client again, through the same balancer: over its limit. */
    fa2 = connect_or_fail(AF_INET, dp.dp_tcp_port);
    (void)write_all(fa2, a2, strlen(a2));
    expect_closed(fa2, 3000);
    close(fa2);
    /* Another client through the same balancer: its own allowance. */
    fb = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fb, b1, strlen(b1)), 0);
    ck_assert_int_eq(read_exact(fb, got, 5, 5000), 5);
    ck_assert_mem_eq(got, "THREE", 5);
    ck_assert(daemon_log_contains(&dp, "tcp 203.0.113.7:4243: closed, its source already holds"));
    close(fa);
    close(fb);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* A header that never completes: closed after 5 s, not before. */
START_TEST(test_proxy_timeout)
{
    struct daemon_proc dp;
    long long t0, dt;
    int fd;

    start_or_fail(&dp, TCP_PROXY_INI("127.0.0.1"));
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    t0 = now_ms();
    ck_assert_int_eq(write_all(fd, "PROXY TCP4 1.2.", 15), 0);
    expect_closed(fd, 15000);
    dt = now_ms() - t0;
    ck_assert_msg(dt >= 4500 && dt < 12000, "closed after %lld ms", dt);
    close(fd);
    ck_assert(daemon_log_contains(&dp, "no complete PROXY header within 5 s"));
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* Without proxy_protocol, a header is just data to echo. */
START_TEST(test_proxy_off)
{
    struct daemon_proc dp;
    int fd;

    start_or_fail(&dp, INI_TCP4_ONLY);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    echo_once(fd, "PROXY TCP4 203.0.113.7 127.0.0.1 4242 9090\r\nhi", 5000);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* [unix]: any peer that can connect may send a header, and is then logged as its client. */
START_TEST(test_proxy_unix)
{
    struct daemon_proc dp;
    static const char msg[] = "PROXY TCP6 2001:db8::5 ::1 60000 9090\r\nover unix";
    char got[16];
    int fd;

    start_or_fail(&dp, INI_UNIX_ONLY "path = @DIR@/p.sock\nproxy_protocol = yes\n"
                                     "[log]\nlevel = debug\n");
    fd = unix_connect(dp.dp_unix_path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write_all(fd, msg, strlen(msg)), 0);
    ck_assert_int_eq(read_exact(fd, got, 9, 5000), 9);
    ck_assert_mem_eq(got, "OVER UNIX", 9);
    close(fd);
    fd = unix_connect(dp.dp_unix_path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write_all(fd, "over unix", 9), 0);
    expect_closed(fd, 3000);
    close(fd);
    ck_assert(daemon_log_contains(&dp, "unix [2001:db8::5]:60000: PROXY v1 header from fd "));
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* SIGTERM while a connection still owes its header: it is closed, the exit is clean and quick. */
START_TEST(test_proxy_shutdown)
{
    struct daemon_proc dp;
    long long t0;
    int fd, status;

    start_or_fail(&dp, TCP_PROXY_INI("127.0.0.1"));
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fd, "PROXY ", 6), 0);
    usleep(100000);
    t0 = now_ms();
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    expect_closed(fd, 5000);
    close(fd);
    ck_assert_int_eq(daemon_wait(&dp, 10000, &status), 0);
    ck_assert_int_eq(status, 0);
    ck_assert_int_lt(now_ms() - t0, 4000);
    daemon_stop(&dp);
}
END_TEST

/* Wait up to 10 s for the n-th occurrence of needle in the daemon's log. */
static void
wait_log(const struct daemon_proc *dp, const char *needle, int n)
{
    long long end = now_ms() + 10000;

    while (daemon_log_count(dp, needle) < n && now_ms() < end)
        usleep(20000);
    ck_assert_msg(daemon_log_count(dp, needle) >= n, "no \"%s\" (%d) in the log", needle, n);
}

/* SIGHUP turns proxy_protocol on and off for new connections; open ones go on as they were. */
START_TEST(test_proxy_reload)
{
    static const char plain[] = "[tcp]\nlisten = 127.0.0.1:0\n[udp]\nenabled = no\n";
    static const char hdr[] = "PROXY TCP4 198.51.100.3 127.0.0.1 7000 9090\r\n";
    struct daemon_proc dp;
    int a, b, c, d;

    start_or_fail(&dp, plain);
    a = connect_or_fail(AF_INET, dp.dp_tcp_port);
    echo_once(a, "before", 5000);
    ck_assert_int_eq(daemon_write_config(&dp, TCP_PROXY_INI("127.0.0.1")), 0);
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    wait_log(&dp, "configuration reloaded", 1);
    echo_once(a, "open connections need no header", 5000);
    b = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(b, "no header", 9), 0);
    expect_closed(b, 3000);
    close(b);
    c = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(c, hdr, strlen(hdr)), 0);
    echo_once(c, "with a header", 5000);

    ck_assert_int_eq(daemon_write_config(&dp, plain), 0);
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    wait_log(&dp, "configuration reloaded", 2);
    d = connect_or_fail(AF_INET, dp.dp_tcp_port);
    echo_once(d, "PROXY is data again", 5000);
    echo_once(c, "still served", 5000);
    echo_once(a, "still served", 5000);
    close(a);
    close(c);
    close(d);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

static Suite *
proxy_daemon_suite(void)
{
    Suite *s = suite_create("proxy-daemon");
    TCase *tc = tcase_create("proxy-daemon");

    tcase_add_test(tc, test_proxy_v1_same_write);
    tcase_add_test(tc, test_proxy_v2_bytewise);
    tcase_add_test(tc, test_proxy_bad_headers);
    tcase_add_test(tc, test_proxy_not_allowed);
    tcase_add_test(tc, test_proxy_per_source);
    tcase_add_test(tc, test_proxy_timeout);
    tcase_add_test(tc, test_proxy_off);
    tcase_add_test(tc, test_proxy_unix);
    tcase_add_test(tc, test_proxy_shutdown);
    tcase_add_test(tc, test_proxy_reload);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(proxy_daemon_suite(), CK_ENV);
}
