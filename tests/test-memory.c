/* test-memory.c: pending output bounded by heap, per connection and all together (max_memory). */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

/* The payload: lowercase letters with a prime period, so every byte must change. */
#define RING_LEN 1021
/* A client is blocked when it cannot write for this long. */
#define STALL_MS 500
/* Bound on the 1-byte writer's run: the kernel's TCP buffers hold millions of them. */
#define TINY_MAX_MS 30000
#define TINY_PENDING (256L << 10)
/* The bound: RSS growth under 4x max_pending_output plus 8 MiB. */
#define TINY_RSS_MAX_KIB ((4 * TINY_PENDING >> 10) + (8L << 10))

#define MANY 200
#define MANY_MEMORY (16L << 20)
/*
 * What 200 connections cost besides their output: bufferevents, chains a
 * third empty at worst, the read each may still make, malloc's slack.
 */
#define MANY_OVERHEAD_KIB (12L << 10)

static const char tiny_tcp_ini[] = INI_TCP4_ONLY "[limits]\n"
                                                 "max_pending_output = 256K\n";
static const char tiny_unix_ini[] = INI_UNIX_ONLY "path = @DIR@/s.sock\n"
                                                  "[limits]\n"
                                                  "max_pending_output = 256K\n";
static const char many_ini[] = INI_UNIX_ONLY "path = @DIR@/s.sock\n"
                                             "[limits]\n"
                                             "max_connections = 1000\n"
                                             "max_pending_output = 1M\n"
                                             "max_memory = 16M\n";

static unsigned char ring[RING_LEN];

static void
ring_init(void)
{
    fill_pattern(ring, sizeof(ring), 8);
    for (size_t i = 0; i < sizeof(ring); i++)
        ring[i] = (unsigned char)('a' + ring[i] % 26);
}

static long
rss_or_fail(const struct daemon_proc *dp)
{
    long kib = daemon_rss_kib(dp);

    ck_assert_msg(kib > 0, "daemon RSS: %s", strerror((int)-kib));
    return kib;
}

/*
 * Read back everything fd sent (its peer has the whole echo or gets it as we
 * read) and check every byte; sent bytes started at offset 0 of the ring.
 */
static void
read_back(int fd, size_t sent)
{
    unsigned char buf[65536], want[65536];
    size_t got = 0;

    while (got < sent) {
        size_t n = sent - got < sizeof(buf) ? sent - got : sizeof(buf);
        ssize_t r = read_exact(fd, buf, n, 20000);
        long bad;

        ck_assert_msg(r == (ssize_t)n, "after %zu of %zu bytes back: %s", got, sent,
                      r < 0 ? strerror((int)-r) : "EOF");
        for (size_t i = 0; i < n; i++)
            want[i] = ring[(got + i) % RING_LEN];
        bad = ref_mismatch(buf, want, n);
        ck_assert_msg(bad == -1, "wrong byte at offset %zu", got + (size_t)bad);
        got += n;
    }
}

/*
 * A client writes one byte at a time and never reads, until it cannot write
 * any more: each byte is then one read of the daemon's, and must not keep a
 * chain of its own.  The daemon's RSS grows by less than 4x
 * max_pending_output plus 8 MiB, and then every byte comes back right.
 */
static void
tiny_writes(struct daemon_proc *dp, int fd, const char *what)
{
    long rss0 = rss_or_fail(dp), rss_max = rss0, rss;
    long long t0 = now_ms();
    size_t sent = 0;
    int blocked = 0;

    ck_assert_int_eq(set_nonblocking(fd, true), 0);
    while (now_ms() - t0 < TINY_MAX_MS) {
        ssize_t w = send(fd, ring + sent % RING_LEN, 1, MSG_NOSIGNAL);
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};

        if (w == 1) {
            if (++sent % 65536 == 0 && (rss = rss_or_fail(dp)) > rss_max)
                rss_max = rss;
            continue;
        }
        ck_assert_msg(w == -1 && (errno == EAGAIN || errno == EINTR), "send after %zu bytes: %s",
                      sent, strerror(errno));
        if (poll(&pfd, 1, STALL_MS) == 0) {
            blocked = 1;
            break;
        }
    }
    if ((rss = rss_or_fail(dp)) > rss_max)
        rss_max = rss;
    fprintf(stderr,
            "%s: %zu one-byte writes in %lld ms (%s), daemon RSS %ld -> %ld KiB (+%ld KiB, "
            "bound %ld KiB)%s\n",
            what, sent, now_ms() - t0, blocked ? "blocked" : "time cap", rss0, rss_max,
            rss_max - rss0, TINY_RSS_MAX_KIB, under_asan() ? " (ASan: not asserted)" : "");
    if (!under_asan())
        ck_assert_msg(rss_max - rss0 < TINY_RSS_MAX_KIB, "%s: daemon RSS grew by %ld KiB", what,
                      rss_max - rss0);
    ck_assert_int_eq(set_nonblocking(fd, false), 0);
    read_back(fd, sent);
}

START_TEST(test_tiny_writes_tcp)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct daemon_proc dp;
    int fd, one = 1, small = 4096;

    ring_init();
    start_or_fail(&dp, tiny_tcp_ini);
    sin.sin_port = htons((uint16_t)dp.dp_tcp_port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    /*
     * A small window, set before the handshake, fills the kernel's buffers
     * sooner: only then does the daemon's own output grow, one read at a time.
     */
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    tiny_writes(&dp, fd, "tcp");
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

START_TEST(test_tiny_writes_unix)
{
    struct daemon_proc dp;
    int fd;

    ring_init();
    start_or_fail(&dp, tiny_unix_ini);
    fd = unix_connect(dp.dp_unix_path);
    ck_assert_msg(fd >= 0, "unix_connect: %s", strerror(-fd));
    tiny_writes(&dp, fd, "unix");
    close(fd);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * 200 clients write without reading, each until it is blocked, each allowed
 * 1 MiB of pending output: together they would queue 200 MiB, but
 * max_memory = 16M stops them, and the daemon's RSS grows by less than
 * that plus a fixed overhead.  Then all read at once: every stream is
 * resumed as memory drains, and every byte comes back right.
 */
START_TEST(test_max_memory_many_clients)
{
    static int fd[MANY];
    static size_t sent[MANY], got[MANY];
    static unsigned char buf[65536], want[65536];
    struct pollfd pfd[MANY];
    struct daemon_proc dp;
    long rss0, rss, bound = (MANY_MEMORY >> 10) + MANY_OVERHEAD_KIB;
    size_t total = 0, left;
    long long t0;

    ring_init();
    ck_assert_int_eq(raise_nofile(MANY + 64), 0);
    start_or_fail(&dp, many_ini);
    for (int i = 0; i < MANY; i++) {
        fd[i] = unix_connect(dp.dp_unix_path);
        ck_assert_msg(fd[i] >= 0, "unix_connect %d: %s", i, strerror(-fd[i]));
    }
    /* Each daemon stream costs memory of its own: measure from here. */
    rss0 = rss_or_fail(&dp);
    t0 = now_ms();
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < MANY; i++) {
            ssize_t n = send_until_stall(fd[i], ring, RING_LEN, (size_t)-1, round ? 30 : 10);

            ck_assert_msg(n >= 0, "client %d: %s", i, strerror((int)-n));
            sent[i] += (size_t)n;
            total += (size_t)n;
        }
    }
    rss = rss_or_fail(&dp);
    fprintf(stderr,
            "max_memory: %d clients sent %zu KiB in %lld ms without reading; daemon RSS %ld -> "
            "%ld KiB (+%ld KiB, bound %ld KiB)%s\n",
            MANY, total >> 10, now_ms() - t0, rss0, rss, rss - rss0, bound,
            under_asan() ? " (ASan: not asserted)" : "");
    /* Without max_memory they would hold 200 x 1 MiB: make sure they tried to. */
    ck_assert_uint_gt(total, (size_t)2 * MANY_MEMORY);
    if (!under_asan())
        ck_assert_msg(rss - rss0 < bound, "daemon RSS grew by %ld KiB", rss - rss0);

    /* Everyone reads: streams paused for max_memory must resume as it drains. */
    for (int i = 0; i < MANY; i++) {
        ck_assert_int_eq(set_nonblocking(fd[i], true), 0);
        pfd[i].fd = fd[i];
        pfd[i].events = POLLIN;
    }
    left = MANY;
    t0 = now_ms();
    while (left > 0) {
        int r = poll(pfd, MANY, 1000);

        ck_assert_msg(now_ms() - t0 < 60000, "%zu clients still waiting for their echo", left);
        ck_assert_int_ge(r, 0);
        for (int i = 0; i < MANY && r > 0; i++) {
            ssize_t n;
            long bad;

            if (pfd[i].fd < 0 || pfd[i].revents == 0)
                continue;
            n = read(fd[i], buf, sizeof(buf));
            if (n == -1 && errno == EAGAIN)
                continue;
            ck_assert_msg(n > 0, "client %d after %zu of %zu bytes: %s", i, got[i], sent[i],
                          n == 0 ? "EOF" : strerror(errno));
            for (ssize_t k = 0; k < n; k++)
                want[k] = ring[(got[i] + (size_t)k) % RING_LEN];
            bad = ref_mismatch(buf, want, (size_t)n);
            ck_assert_msg(bad == -1, "client %d: wrong byte at offset %zu", i,
                          got[i] + (size_t)bad);
            got[i] += (size_t)n;
            ck_assert_uint_le(got[i], sent[i]);
            if (got[i] == sent[i]) {
                pfd[i].fd = -1;
                left--;
            }
        }
    }
    fprintf(stderr, "max_memory: every client had its %zu KiB back in %lld ms\n", total >> 10,
            now_ms() - t0);
    for (int i = 0; i < MANY; i++)
        close(fd[i]);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

static Suite *
memory_suite(void)
{
    Suite *s = suite_create("memory");
    TCase *tc = tcase_create("memory");

    tcase_add_test(tc, test_tiny_writes_tcp);
    tcase_add_test(tc, test_tiny_writes_unix);
    suite_add_tcase(s, tc);
    tc = tcase_create("max_memory");
    tcase_add_test(tc, test_max_memory_many_clients);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(memory_suite(), CK_ENV);
}
