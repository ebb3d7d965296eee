/* test-udp.c: the daemon's UDP echo, one reply datagram per request, over loopback. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

/* Largest UDP payload over IPv4: 65535 - 20 (IP header) - 8 (UDP header). */
#define UDP_MAX_V4 65507

static const char udp4_ini[] = INI_UDP4_ONLY;

static const char udp6_ini[] = INI_UDP6_ONLY;

static int
socket_or_fail(int family, int port)
{
    int fd, size = 1 << 20;

    ck_assert_int_gt(port, 0);
    fd = udp_socket_family(family, port);
    ck_assert_msg(fd >= 0, "udp socket to port %d: %s", port, strerror(-fd));
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
    return fd;
}

/* Receive one datagram within timeout_ms: its full length (MSG_TRUNC), or -ETIMEDOUT. */
static ssize_t
recv_one(int fd, void *buf, size_t size, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int n = poll(&pfd, 1, timeout_ms);

    ck_assert_int_ge(n, 0);
    if (n == 0)
        return -ETIMEDOUT;
    ssize_t r = recv(fd, buf, size, MSG_TRUNC);
    ck_assert_msg(r >= 0, "recv: %s", strerror(errno));
    return r;
}

/* One request of len bytes: exactly one reply, same length, uppercased, nothing after it. */
static void
check_roundtrip(int fd, size_t len, unsigned long long seed)
{
    static unsigned char sent[65536], got[65536 + 1];
    static const char text[] = "the quick brown fox jumps over the lazy dog; ";
    ssize_t r;
    long bad;

    fill_pattern(sent, len, seed);
    /* Half text, so that plenty of bytes are letters that must change. */
    for (size_t i = 0; i < len / 2; i++)
        sent[i] = (unsigned char)text[i % (sizeof(text) - 1)];
    ck_assert_int_eq(send(fd, sent, len, 0), (ssize_t)len);
    r = recv_one(fd, got, sizeof(got), 5000);
    ck_assert_msg(r == (ssize_t)len, "%zu byte datagram: reply is %zd", len, r);
    bad = ref_mismatch(got, sent, len);
    ck_assert_msg(bad == -1, "%zu byte datagram: wrong byte at %ld", len, bad);
    r = recv_one(fd, got, sizeof(got), 100);
    ck_assert_msg(r == -ETIMEDOUT, "%zu byte datagram: a second reply of %zd bytes", len, r);
}

START_TEST(test_sizes_ipv4)
{
    static const size_t sizes[] = {0, 1, 26, 1400, 9000, UDP_MAX_V4};
    struct daemon_proc dp;
    int fd;

    start_or_fail(&dp, udp4_ini);
    ck_assert(daemon_log_contains(&dp, "listening on udp 127.0.0.1:"));
    fd = socket_or_fail(AF_INET, dp.dp_udp_port);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        check_roundtrip(fd, sizes[i], i);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

START_TEST(test_sizes_ipv6)
{
    static const size_t sizes[] = {0, 1, 1200, 8000};
    struct daemon_proc dp;
    int fd;

    if (!ipv6_available()) {
        fprintf(stderr, "test_sizes_ipv6: no ::1 here, skipped\n");
        return;
    }
    start_or_fail(&dp, udp6_ini);
    ck_assert(daemon_log_contains(&dp, "listening on udp [::1]:"));
    fd = socket_or_fail(AF_INET6, dp.dp_udp6_port);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        check_roundtrip(fd, sizes[i], 100 + i);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * 200 distinct small datagrams sent back to back, at most WINDOW unanswered
 * at any time so no socket buffer on loopback can overflow: every one must
 * be answered exactly once, whatever the order.
 */
START_TEST(test_burst)
{
    enum { COUNT = 200, WINDOW = 50, LEN = 48 };
    unsigned char sent[COUNT][LEN], got[LEN + 1], want[LEN];
    bool seen[COUNT] = {false};
    size_t nsent = 0, nrecv = 0;
    struct daemon_proc dp;
    int fd;

    start_or_fail(&dp, udp4_ini);
    fd = socket_or_fail(AF_INET, dp.dp_udp_port);
    for (size_t i = 0; i < COUNT; i++) {
        fill_pattern(sent[i], LEN, 500 + i);
        snprintf((char *)sent[i], 12, "dgram %04zu", i);
    }
    while (nrecv < COUNT) {
        while (nsent < COUNT && nsent - nrecv < WINDOW) {
            ck_assert_int_eq(send(fd, sent[nsent], LEN, 0), LEN);
            nsent++;
        }
        ssize_t r = recv_one(fd, got, sizeof(got), 5000);
        ck_assert_msg(r >= 0, "%zu of %d datagrams answered, then nothing for 5 s", nrecv, COUNT);
        ck_assert_int_eq(r, LEN);
        unsigned idx;
        ck_assert_int_eq(sscanf((char *)got, "DGRAM %4u", &idx), 1);
        ck_assert_uint_lt(idx, COUNT);
        ck_assert_msg(!seen[idx], "datagram %u answered twice", idx);
        seen[idx] = true;
        ref_upper(want, sent[idx], LEN);
        ck_assert_mem_eq(got, want, LEN);
        nrecv++;
    }
    ck_assert_int_eq(recv_one(fd, got, sizeof(got), 100), -ETIMEDOUT);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* Replies go back to the socket that asked, not to whoever asked last. */
START_TEST(test_two_clients)
{
    struct daemon_proc dp;
    char got[16];
    int a, b;

    start_or_fail(&dp, udp4_ini);
    a = socket_or_fail(AF_INET, dp.dp_udp_port);
    b = socket_or_fail(AF_INET, dp.dp_udp_port);
    ck_assert_int_eq(send(a, "from a", 6, 0), 6);
    ck_assert_int_eq(send(b, "from b!", 7, 0), 7);
    ck_assert_int_eq(recv_one(b, got, sizeof(got), 5000), 7);
    ck_assert_mem_eq(got, "FROM B!", 7);
    ck_assert_int_eq(recv_one(a, got, sizeof(got), 5000), 6);
    ck_assert_mem_eq(got, "FROM A", 6);
    close(a);
    close(b);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

static Suite *
udp_suite(void)
{
    Suite *s = suite_create("udp");
    TCase *tc = tcase_create("echo");

    tcase_add_test(tc, test_sizes_ipv4);
    tcase_add_test(tc, test_sizes_ipv6);
    tcase_add_test(tc, test_burst);
    tcase_add_test(tc, test_two_clients);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(udp_suite(), CK_ENV);
}
