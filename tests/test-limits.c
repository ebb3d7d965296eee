/* test-limits.c: backpressure, max_connections and idle_timeout, against the real daemon. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

/* Backpressure run: bytes a non-reading client pushes through, and the RSS it may cost. */
#define BP_TOTAL (256u << 20)
#define BP_RSS_MAX_KIB (48L << 10)
/* The payload repeats with a prime period, so a window never lines up with a read. */
#define BP_PERIOD 1048573u
#define BP_CHUNK (256u << 10)
/* Bytes read back between two fills of the pipe. */
#define BP_READ (16u << 20)

#define MAXCONN 50

static const char backpressure_ini[] = INI_TCP4_ONLY "[limits]\n"
                                                     "max_pending_output = 1M\n";

static const char maxconn_ini[] = INI_TCP4_ONLY "[limits]\n"
                                                "max_connections = 50\n";

static const char idle_ini[] = INI_TCP4_ONLY "[limits]\n"
                                             "idle_timeout = 1\n"
                                             "max_pending_output = 64K\n";

static const char idle_roomy_ini[] = INI_TCP4_ONLY "[limits]\n"
                                                   "idle_timeout = 1\n"
                                                   "max_pending_output = 16M\n";

static void
start(struct daemon_proc *dp, const char *ini)
{
    start_or_fail(dp, ini);
    ck_assert_int_gt(dp->dp_tcp_port, 0);
}

/*
 * Unread bytes in the receive queue of the daemon's end of the connection
 * whose client end is fd, from /proc/net/tcp; -1 when it is not found.
 */
static long
daemon_rx_queue(int fd, int daemon_port)
{
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    char line[512];
    long found = -1;
    FILE *f;

    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&me, &len), 0);
    f = fopen("/proc/net/tcp", "re");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned laddr, lport, raddr, rport, st;
        unsigned long txq, rxq;

        if (sscanf(line, " %*d: %x:%x %x:%x %x %lx:%lx", &laddr, &lport, &raddr, &rport, &st, &txq,
                   &rxq) != 7)
            continue;
        if ((int)lport == daemon_port && rport == ntohs(me.sin_port)) {
            found = (long)rxq;
            break;
        }
    }
    fclose(f);
    return found;
}

/* Stream offset off carries pat[off % BP_PERIOD]; any BP_CHUNK bytes from there are contiguous. */
static unsigned char *
bp_pattern(void)
{
    unsigned char *pat = malloc(BP_PERIOD + BP_CHUNK);
    static const char text[] = "backpressure keeps memory bounded; ";

    ck_assert_ptr_nonnull(pat);
    fill_pattern(pat, BP_PERIOD, 256);
    /* Every other 64-byte run is text, so plenty of bytes must change. */
    for (size_t i = 0; i < BP_PERIOD; i++)
        if ((i / 64) % 2 == 0)
            pat[i] = (unsigned char)text[i % (sizeof(text) - 1)];
    memcpy(pat + BP_PERIOD, pat, BP_CHUNK);
    return pat;
}

/* Send without reading until nothing more goes in for stall_ms, or total is reached. */
static size_t
bp_fill(int fd, const unsigned char *pat, size_t sent, int stall_ms)
{
    while (sent < BP_TOTAL) {
        size_t n = BP_TOTAL - sent < BP_CHUNK ? BP_TOTAL - sent : BP_CHUNK;
        ssize_t w = send(fd, pat + sent % BP_PERIOD, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};

        if (w > 0) {
            sent += (size_t)w;
            continue;
        }
        ck_assert_msg(w == -1 && (errno == EAGAIN || errno == EINTR), "send after %zu bytes: %s",
                      sent, strerror(errno));
        if (poll(&pfd, 1, stall_ms) == 0)
            break;
    }
    return sent;
}

/* Read want bytes back and check each against the payload; returns the new offset. */
static size_t
bp_drain(int fd, const unsigned char *pat, unsigned char *buf, size_t recvd, size_t want)
{
    while (want > 0) {
        size_t n = want < BP_CHUNK ? want : BP_CHUNK;
        ssize_t r = read_exact(fd, buf, n, 20000);
        long bad;

        ck_assert_msg(r == (ssize_t)n, "after %zu bytes back: %s", recvd,
                      r < 0 ? strerror((int)-r) : "EOF");
        bad = ref_mismatch(buf, pat + recvd % BP_PERIOD, n);
        ck_assert_msg(bad == -1, "wrong byte at offset %zu", recvd + (size_t)bad);
        recvd += n;
        want -= n;
    }
    return recvd;
}

/*
 * A client that writes without reading is stopped from being read (the
 * daemon's end of the connection keeps unread bytes in its kernel queue)
 * and resumed when it drains: 256 MiB pass through a client that only
 * reads when it cannot write any more, the daemon's RSS grows by less than
 * 48 MiB, and every byte comes back.
 */
START_TEST(test_backpressure_bounds_memory)
{
    unsigned char *pat = bp_pattern(), *buf = malloc(BP_CHUNK);
    size_t sent = 0, recvd = 0, first_stall;
    long rss0, rss, rss_max, rxq;
    struct daemon_proc dp;
    int fd, stalls = 0;
    long long t0;

    ck_assert_ptr_nonnull(buf);
    start(&dp, backpressure_ini);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    echo_once(fd, "warm up", 5000);
    rss0 = daemon_rss_kib(&dp);
    ck_assert_int_gt(rss0, 0);
    rss_max = rss0;
    ck_assert_int_eq(set_nonblocking(fd, true), 0);
    t0 = now_ms();

    /* First fill: nothing more goes in for a whole second, so the daemon has stopped reading. */
    sent = bp_fill(fd, pat, sent, 1000);
    first_stall = sent;
    ck_assert_msg(sent < BP_TOTAL, "all %u bytes went in without a stall: no backpressure",
                  BP_TOTAL);
    rxq = daemon_rx_queue(fd, dp.dp_tcp_port);
    ck_assert_msg(rxq > 0, "daemon's receive queue is %ld while the client is stalled", rxq);
    while (recvd < BP_TOTAL) {
        rss = daemon_rss_kib(&dp);
        ck_assert_int_gt(rss, 0);
        if (rss > rss_max)
            rss_max = rss;
        size_t want = sent - recvd < BP_READ ? sent - recvd : BP_READ;
        if (sent == BP_TOTAL)
            want = sent - recvd;
        recvd = bp_drain(fd, pat, buf, recvd, want);
        if (sent < BP_TOTAL) {
            sent = bp_fill(fd, pat, sent, 100);
            stalls++;
        }
    }
    fprintf(stderr,
            "backpressure: %u MiB echoed in %lld ms, %zu KiB in flight at the first stall, "
            "%d stalls; daemon RSS %ld KiB at start, %ld KiB at most, growth %ld KiB%s\n",
            BP_TOTAL >> 20, now_ms() - t0, first_stall >> 10, stalls, rss0, rss_max, rss_max - rss0,
            under_asan() ? " (ASan: not asserted)" : "");
    if (!under_asan())
        ck_assert_msg(rss_max - rss0 < BP_RSS_MAX_KIB, "daemon RSS grew by %ld KiB",
                      rss_max - rss0);
    ck_assert_int_eq(set_nonblocking(fd, false), 0);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
    free(pat);
    free(buf);
}
END_TEST

/*
 * max_connections = 50: the 51st connect completes in the kernel's backlog
 * but is not accepted (the daemon holds no descriptor for it) and gets no
 * echo, until one of the 50 closes; then it is served.  Twice over.
 */
START_TEST(test_max_connections)
{
    int fd[MAXCONN], late, later, nfds;
    struct daemon_proc dp;
    char msg[32], got[8];
    long long t0;
    ssize_t n;

    start(&dp, maxconn_ini);
    for (int i = 0; i < MAXCONN; i++) {
        fd[i] = connect_or_fail(AF_INET, dp.dp_tcp_port);
        snprintf(msg, sizeof(msg), "conn %d", i);
        echo_once(fd[i], msg, 5000);
    }
    nfds = nfds_or_fail(&dp);

    late = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(late, "late", 4), 0);
    n = read_exact(late, got, 4, 500);
    ck_assert_msg(n == -ETIMEDOUT, "connection 51 was served at the limit (%zd)", n);
    ck_assert_int_eq(nfds_or_fail(&dp), nfds);
    /* The 50 are still served while the 51st waits. */
    for (int i = 0; i < MAXCONN; i++)
        echo_once(fd[i], "still here", 5000);

    close(fd[0]);
    t0 = now_ms();
    n = read_exact(late, got, 4, 5000);
    ck_assert_msg(n == 4, "connection 51 not served after one closed: %s",
                  n < 0 ? strerror((int)-n) : "EOF");
    ck_assert_mem_eq(got, "LATE", 4);
    fprintf(stderr, "max_connections: the waiting client was served %lld ms after a close\n",
            now_ms() - t0);
    ck_assert_int_eq(nfds_or_fail(&dp), nfds);

    /* At the limit again: the next one waits in turn. */
    later = connect_or_fail(AF_INET, dp.dp_tcp_port);
    ck_assert_int_eq(write_all(later, "later", 5), 0);
    ck_assert_int_eq(read_exact(later, got, 5, 500), -ETIMEDOUT);
    close(fd[1]);
    ck_assert_int_eq(read_exact(later, got, 5, 5000), 5);
    ck_assert_mem_eq(got, "LATER", 5);

    close(late);
    close(later);
    for (int i = 2; i < MAXCONN; i++)
        close(fd[i]);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * idle_timeout = 1: a silent client and one that went quiet after an echo
 * are closed after about a second, while one that sends every 300 ms is
 * kept for three seconds and more.
 */
START_TEST(test_idle_timeout)
{
    struct daemon_proc dp;
    int silent, quiet, active;
    long long t0, t_silent = -1, t_quiet = -1;
    char got[1];

    start(&dp, idle_ini);
    silent = connect_or_fail(AF_INET, dp.dp_tcp_port);
    quiet = connect_or_fail(AF_INET, dp.dp_tcp_port);
    active = connect_or_fail(AF_INET, dp.dp_tcp_port);
    t0 = now_ms();
    echo_once(quiet, "one echo, then silence", 5000);
    for (int i = 0; i < 11; i++) {
        struct pollfd pfd[2] = {{.fd = silent, .events = POLLIN}, {.fd = quiet, .events = POLLIN}};

        echo_once(active, "k", 3000);
        if (poll(pfd, 2, 300) > 0) {
            if ((pfd[0].revents & POLLIN) && t_silent < 0) {
                ck_assert_int_eq(read_eof(silent, 0), 0);
                t_silent = now_ms() - t0;
            }
            if ((pfd[1].revents & POLLIN) && t_quiet < 0) {
                ck_assert_int_eq(read_eof(quiet, 0), 0);
                t_quiet = now_ms() - t0;
            }
            usleep(300000);
        }
    }
    fprintf(stderr, "idle_timeout: silent client closed after %lld ms, quiet one after %lld ms\n",
            t_silent, t_quiet);
    ck_assert_msg(t_silent >= 700 && t_silent <= 3000, "silent client closed after %lld ms",
                  t_silent);
    ck_assert_msg(t_quiet >= 700 && t_quiet <= 3000, "quiet client closed after %lld ms", t_quiet);
    /* The active one, 3.3 s on, is still served. */
    echo_once(active, "still served", 1000);
    ck_assert_int_eq(read_exact(active, got, 1, 0), -ETIMEDOUT);
    close(silent);
    close(quiet);
    close(active);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * idle_timeout = 1: a client that fills every buffer and then reads
 * nothing makes no progress in either direction; its connection is freed
 * (the daemon's descriptor goes away) within a few seconds.
 */
START_TEST(test_idle_stalled_reader)
{
    const size_t cap = 64u << 20;
    unsigned char *sent = malloc(BP_CHUNK);
    struct daemon_proc dp;
    int fd, base, n;
    size_t nsent;
    long long t0;

    ck_assert_ptr_nonnull(sent);
    fill_pattern(sent, BP_CHUNK, 9);
    start(&dp, idle_ini);
    base = nfds_or_fail(&dp);
    fd = connect_or_fail(AF_INET, dp.dp_tcp_port);
    nsent = fill_or_fail(fd, sent, BP_CHUNK, cap, 200);
    ck_assert_msg(nsent < cap, "%zu bytes went in without a stall", nsent);
    t0 = now_ms();
    ck_assert_int_eq(nfds_or_fail(&dp), base + 1);
    n = wait_nfds_or_fail(&dp, base, 5000);
    fprintf(stderr,
            "idle_timeout: stalled reader (%zu KiB sent) freed %lld ms after its last "
            "write\n",
            nsent >> 10, now_ms() - t0);
    ck_assert_msg(n == base, "the stalled reader's connection is still open after 5 s");
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
    free(sent);
}
END_TEST

/* A blocking connection to 127.0.0.1:port whose receive buffer is held at rcvbuf bytes. */
static int
connect_small_rcvbuf(int port, int rcvbuf)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    /* Before connect, so that the window it advertises stays small. */
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "connect: %s",
                  strerror(errno));
    return fd;
}

/*
 * idle_timeout = 1 counts progress in either direction: a client that sent
 * 12 MiB at once and then reads it back slowly, 1 MiB every 250 ms, sends
 * nothing for three seconds while the daemon still holds echo for it.  It
 * is not idle, and gets every byte.
 */
START_TEST(test_idle_slow_reader_kept)
{
    const size_t total = 12u << 20, step = 1u << 20;
    unsigned char *pat = bp_pattern(), *buf = malloc(step);
    struct daemon_proc dp;
    size_t recvd = 0;
    long long t0;
    int fd;

    ck_assert_ptr_nonnull(buf);
    start(&dp, idle_roomy_ini);
    fd = connect_small_rcvbuf(dp.dp_tcp_port, 64 << 10);
    for (size_t sent = 0; sent < total; sent += BP_CHUNK)
        ck_assert_int_eq(write_all(fd, pat + sent % BP_PERIOD, BP_CHUNK), 0);
    t0 = now_ms();
    while (recvd < total) {
        usleep(250 * 1000);
        recvd = bp_drain(fd, pat, buf, recvd, step);
    }
    fprintf(stderr, "idle_timeout: a slow reader took %lld ms to read its %zu MiB, not cut off\n",
            now_ms() - t0, total >> 20);
    ck_assert_int_ge(now_ms() - t0, 2000);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_int_eq(read_eof(fd, 5000), 0);
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
    free(pat);
    free(buf);
}
END_TEST

static Suite *
limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");

    tcase_add_test(tc, test_backpressure_bounds_memory);
    tcase_add_test(tc, test_max_connections);
    tcase_add_test(tc, test_idle_timeout);
    tcase_add_test(tc, test_idle_stalled_reader);
    tcase_add_test(tc, test_idle_slow_reader_kept);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(limits_suite(), CK_ENV);
}
