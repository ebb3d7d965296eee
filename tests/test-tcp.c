/* test-tcp.c: the daemon's TCP echo, end to end over loopback. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

static const char tcp4_ini[] = INI_TCP4_ONLY "[log]\n"
                                             "level = info\n";

static const char tcp6_ini[] = INI_TCP6_ONLY;

/* Send a short text, expect its uppercase, then half-close and expect EOF. */
static void
check_simple_echo(int fd)
{
    static const char sent[] = "Hello, World! abc xyz `{|}~ @[\\]^_ 0123456789\n";
    static const char want[] = "HELLO, WORLD! ABC XYZ `{|}~ @[\\]^_ 0123456789\n";
    char got[sizeof(sent)];

    ck_assert_int_eq(write_all(fd, sent, sizeof(sent) - 1), 0);
    ck_assert_int_eq(read_exact(fd, got, sizeof(sent) - 1, 5000), (ssize_t)sizeof(sent) - 1);
    ck_assert_mem_eq(got, want, sizeof(sent) - 1);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
}

/* The daemon started on ini names its listener in the log, and echoes over family. */
static void
check_listener(const char *ini, const char *logged, int family)
{
    struct daemon_proc dp;
    int fd;

    start_or_fail(&dp, ini);
    ck_assert(daemon_log_contains(&dp, logged));
    fd = connect_or_fail(family, family == AF_INET6 ? dp.dp_tcp6_port : dp.dp_tcp_port);
    check_simple_echo(fd);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}

START_TEST(test_echo_ipv4)
{
    check_listener(tcp4_ini, "listening on tcp 127.0.0.1:", AF_INET);
}
END_TEST

START_TEST(test_echo_ipv6)
{
    if (!ipv6_available()) {
        fprintf(stderr, "test_echo_ipv6: no ::1 here, skipped\n");
        return;
    }
    check_listener(tcp6_ini, "listening on tcp [::1]:", AF_INET6);
}
END_TEST

/* Every byte value, many times over, in both orders: only a-z may change. */
START_TEST(test_all_byte_values)
{
    enum { ROUNDS = 64, LEN = 256 * ROUNDS };
    static unsigned char sent[LEN], got[LEN];
    struct daemon_proc dp;
    long bad;
    int fd;

    for (size_t i = 0; i < LEN; i++)
        sent[i] = (unsigned char)((i / 256) % 2 == 0 ? i % 256 : 255 - i % 256);
    start_or_fail(&dp, tcp4_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fd, sent, LEN), 0);
    ck_assert_int_eq(read_exact(fd, got, LEN, 10000), LEN);
    bad = ref_mismatch(got, sent, LEN);
    ck_assert_msg(bad == -1, "byte %ld: sent 0x%02x, got 0x%02x", bad, bad < 0 ? 0 : sent[bad],
                  bad < 0 ? 0 : got[bad]);
    for (unsigned v = 0; v < 256; v++) {
        unsigned want = v >= 'a' && v <= 'z' ? v - 32 : v;
        ck_assert_uint_eq(got[v], want);
    }
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * 1,000 clients connected at once, each with its own payload of its own
 * length; every reply must come back complete on its own connection.
 */
START_TEST(test_many_concurrent)
{
    enum { NCONN = 1000, MAXLEN = 1500 };
    static unsigned char sent[NCONN][MAXLEN], got[NCONN][MAXLEN];
    static struct pollfd pfd[NCONN];
    size_t len[NCONN], have[NCONN];
    struct daemon_proc dp;
    size_t done = 0;
    long long deadline;

    ck_assert_int_eq(raise_nofile(NCONN + 256), 0);
    start_or_fail(&dp, tcp4_ini);
    for (size_t i = 0; i < NCONN; i++) {
        len[i] = 16 + (i * 7919) % (MAXLEN - 16);
        have[i] = 0;
        fill_pattern(sent[i], len[i], 1000 + i);
        snprintf((char *)sent[i], 16, "conn %06zu:", i);
        pfd[i].fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
        pfd[i].events = POLLIN;
    }
    for (size_t i = 0; i < NCONN; i++) {
        ck_assert_int_eq(write_all(pfd[i].fd, sent[i], len[i]), 0);
        ck_assert_int_eq(set_nonblocking(pfd[i].fd, true), 0);
    }
    deadline = now_ms() + 30000;
    while (done < NCONN) {
        long long left = deadline - now_ms();
        ck_assert_msg(left > 0, "only %zu of %d replies complete after 30 s", done, NCONN);
        int n = poll(pfd, NCONN, (int)left);
        ck_assert_int_ge(n, 0);
        for (size_t i = 0; i < NCONN && n > 0; i++) {
            if (pfd[i].revents == 0)
                continue;
            n--;
            ssize_t r = read(pfd[i].fd, got[i] + have[i], MAXLEN - have[i]);
            ck_assert_msg(r > 0 || (r == -1 && errno == EAGAIN),
                          "connection %zu: read returned %zd (%s) after %zu of %zu bytes", i, r,
                          r == -1 ? strerror(errno) : "EOF", have[i], len[i]);
            if (r <= 0)
                continue;
            have[i] += (size_t)r;
            ck_assert_msg(have[i] <= len[i], "connection %zu: %zu bytes back for %zu sent", i,
                          have[i], len[i]);
            if (have[i] == len[i]) {
                long bad = ref_mismatch(got[i], sent[i], len[i]);
                ck_assert_msg(bad == -1, "connection %zu: wrong byte at %ld", i, bad);
                pfd[i].events = 0;
                done++;
            }
        }
    }
    for (size_t i = 0; i < NCONN; i++)
        close(pfd[i].fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * 16 MiB through one connection, reading while writing so neither side's
 * buffers bound the transfer; every byte checked, then EOF after half-close.
 */
START_TEST(test_stream_16mib)
{
    const size_t total = 16u << 20;
    /* One spare byte, so that a surplus reply shows up as a surplus, not an overflow. */
    unsigned char *sent = malloc(total), *got = malloc(total + 1);
    size_t nsent = 0, nrecv = 0;
    struct daemon_proc dp;
    bool eof = false, shut = false;
    long long deadline;
    long bad;
    int fd;

    ck_assert_ptr_nonnull(sent);
    ck_assert_ptr_nonnull(got);
    fill_pattern(sent, total, 16);
    start_or_fail(&dp, tcp4_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(set_nonblocking(fd, true), 0);
    deadline = now_ms() + 60000;
    while (!eof) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN | (shut ? 0 : POLLOUT)};
        long long left = deadline - now_ms();

        ck_assert_msg(left > 0, "stalled: %zu sent, %zu received", nsent, nrecv);
        ck_assert_int_ge(poll(&pfd, 1, (int)left), 0);
        if (pfd.revents & POLLOUT) {
            ssize_t w =
                send(fd, sent + nsent, total - nsent > 65536 ? 65536 : total - nsent, MSG_NOSIGNAL);
            ck_assert_msg(w > 0 || errno == EAGAIN, "send: %s", strerror(errno));
            if (w > 0)
                nsent += (size_t)w;
            if (nsent == total) {
                ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
                shut = true;
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(fd, got + nrecv, total + 1 - nrecv);
            ck_assert_msg(r >= 0 || errno == EAGAIN, "read: %s", strerror(errno));
            if (r == 0)
                eof = true;
            else if (r > 0)
                nrecv += (size_t)r;
            ck_assert_msg(nrecv <= nsent, "%zu bytes back for %zu sent", nrecv, nsent);
        }
    }
    ck_assert_msg(shut, "EOF before everything was sent (%zu of %zu)", nsent, total);
    ck_assert_uint_eq(nrecv, total);
    bad = ref_mismatch(got, sent, total);
    ck_assert_msg(bad == -1, "wrong byte at offset %ld", bad);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
    free(sent);
    free(got);
}
END_TEST

/* A client that half-closes right after sending gets it all back, then EOF. */
START_TEST(test_half_close_small)
{
    struct daemon_proc dp;
    char got[8];
    int fd;

    start_or_fail(&dp, tcp4_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fd, "quit?", 5), 0);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(read_exact(fd, got, 5, 5000), 5);
    ck_assert_mem_eq(got, "QUIT?", 5);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * Fill every buffer between us and the daemon without reading, half-close,
 * then read: what was pending when the FIN arrived must all be delivered.
 */
START_TEST(test_half_close_pending)
{
    const size_t cap = 8u << 20;
    unsigned char *sent = malloc(cap), *got = malloc(cap);
    struct daemon_proc dp;
    size_t nsent;
    ssize_t n;
    long bad;
    int fd;

    ck_assert_ptr_nonnull(sent);
    ck_assert_ptr_nonnull(got);
    fill_pattern(sent, cap, 77);
    start_or_fail(&dp, tcp4_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    nsent = fill_or_fail(fd, sent, cap, cap, 300);
    ck_assert_uint_gt(nsent, 0);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    n = read_exact(fd, got, nsent, 30000);
    ck_assert_msg(n == (ssize_t)nsent, "read %zd of %zu bytes", n, nsent);
    bad = ref_mismatch(got, sent, nsent);
    ck_assert_msg(bad == -1, "wrong byte at offset %ld", bad);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
    free(sent);
    free(got);
}
END_TEST

/*
 * Thousands of tiny writes and reads of unrelated sizes: the echo has no
 * framing, so only the byte order may be relied upon, never the boundaries.
 */
START_TEST(test_small_writes_odd_reads)
{
    const size_t total = 256u << 10, window = 64u << 10;
    unsigned char *sent = malloc(total), *got = malloc(total);
    unsigned char sizes[4096];
    size_t nsent = 0, nrecv = 0, k = 0;
    struct daemon_proc dp;
    int fd, one = 1;
    long bad;

    ck_assert_ptr_nonnull(sent);
    ck_assert_ptr_nonnull(got);
    fill_pattern(sent, total, 5);
    fill_pattern(sizes, sizeof(sizes), 6);
    start_or_fail(&dp, tcp4_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    while (nrecv < total) {
        size_t w = 1 + sizes[k++ % sizeof(sizes)] % 37;
        if (w > total - nsent)
            w = total - nsent;
        if (w > 0 && nsent - nrecv < window) {
            ck_assert_int_eq(write_all(fd, sent + nsent, w), 0);
            nsent += w;
        }
        /* Read now and then, a size unrelated to what was written. */
        if (sizes[k++ % sizeof(sizes)] % 5 == 0 || nsent == total || nsent - nrecv >= window) {
            size_t r = 1 + (size_t)sizes[k++ % sizeof(sizes)] * 13 % 4099;
            if (r > nsent - nrecv)
                r = nsent - nrecv;
            ck_assert_int_eq(read_exact(fd, got + nrecv, r, 10000), (ssize_t)r);
            nrecv += r;
        }
    }
    bad = ref_mismatch(got, sent, total);
    ck_assert_msg(bad == -1, "wrong byte at offset %ld", bad);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
    free(sent);
    free(got);
}
END_TEST

/*
 * The daemon's end of our connection, through pidfd_getfd(2): the socket in
 * its table whose peer is the local port of fd.  -1 when the kernel or our
 * privileges do not allow looking (the caller skips), else the copy.
 */
static int
daemon_peer_socket(const struct daemon_proc *dp, int fd)
{
    struct sockaddr_in mine, peer;
    socklen_t len = sizeof(mine);
    char path[64];
    struct dirent *de;
    int pidfd, found = -1;
    DIR *d;

    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&mine, &len), 0);
    if ((pidfd = (int)syscall(SYS_pidfd_open, dp->dp_pid, 0)) == -1)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)dp->dp_pid);
    ck_assert_ptr_nonnull(d = opendir(path));
    while (found == -1 && (de = readdir(d)) != NULL) {
        int copy = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(de->d_name), 0);

        if (copy == -1)
            continue;
        len = sizeof(peer);
        if (getpeername(copy, (struct sockaddr *)&peer, &len) == 0 && peer.sin_family == AF_INET &&
            peer.sin_port == mine.sin_port)
            found = copy;
        else
            close(copy);
    }
    closedir(d);
    close(pidfd);
    return found;
}

/* Accepted connections do not wait for Nagle: TCP_NODELAY, from the listener. */
START_TEST(test_accepted_nodelay)
{
    struct daemon_proc dp;
    int fd, theirs, on = 0;
    socklen_t len = sizeof(on);
    char got[1];

    start_or_fail(&dp, tcp4_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    /* One echo: the daemon has accepted the connection, and keeps it open. */
    ck_assert_int_eq(write_all(fd, "a", 1), 0);
    ck_assert_int_eq(read_exact(fd, got, 1, 5000), 1);
    ck_assert_int_eq(got[0], 'A');
    if ((theirs = daemon_peer_socket(&dp, fd)) == -1) {
        fprintf(stderr, "test_accepted_nodelay: cannot see the daemon's sockets, skipped\n");
    } else {
        ck_assert_int_eq(getsockopt(theirs, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
        ck_assert_int_eq(on, 1);
        close(theirs);
    }
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

static Suite *
tcp_suite(void)
{
    Suite *s = suite_create("tcp");
    TCase *tc = tcase_create("echo");

    tcase_add_test(tc, test_echo_ipv4);
    tcase_add_test(tc, test_echo_ipv6);
    tcase_add_test(tc, test_all_byte_values);
    tcase_add_test(tc, test_many_concurrent);
    tcase_add_test(tc, test_stream_16mib);
    tcase_add_test(tc, test_half_close_small);
    tcase_add_test(tc, test_half_close_pending);
    tcase_add_test(tc, test_small_writes_odd_reads);
    tcase_add_test(tc, test_accepted_nodelay);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(tcp_suite(), CK_ENV);
}
