/* test-reload.c: SIGHUP re-reads the configuration without dropping anyone. */
#include <arpa/inet.h>
#include <check.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <errno.h>
#include <netinet/in.h>
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

#define NLIVE 50
/* Bound on the connect loop that runs through the reloads. */
#define LOOP_MAX 100000

static const char two_ini[] = "[tcp]\n"
                              "listen = 127.0.0.1:0, 127.0.0.3:0\n"
                              "[udp]\n"
                              "enabled = no\n";

/* 127.0.0.3 removed, 127.0.0.2 added, 127.0.0.1 unchanged. */
static const char moved_ini[] = "[tcp]\n"
                                "listen = 127.0.0.1:0, 127.0.0.2:0\n"
                                "[udp]\n"
                                "enabled = no\n";

/* Line 6 is wrong, and so is line 8. */
static const char broken_ini[] = "[tcp]\n"
                                 "listen = 127.0.0.1:0, 127.0.0.2:0\n"
                                 "[udp]\n"
                                 "enabled = no\n"
                                 "[limits]\n"
                                 "max_connections = lots\n"
                                 "[tcp]\n"
                                 "backlog = -1\n";

static const char roomy_ini[] = INI_UNIX_ONLY "path = @DIR@/s.sock\n"
                                              "[limits]\n"
                                              "max_pending_output = 16M\n"
                                              "idle_timeout = 0\n";

static const char tight_ini[] = INI_UNIX_ONLY "path = @DIR@/s.sock\n"
                                              "[limits]\n"
                                              "max_pending_output = 4K\n"
                                              "idle_timeout = 1\n";

/* Wait until needle has appeared n times in the daemon's log. */
static void
wait_log(const struct daemon_proc *dp, const char *needle, int n)
{
    long long deadline = now_ms() + 10000;

    while (daemon_log_count(dp, needle) < n) {
        ck_assert_msg(now_ms() < deadline, "no '%s' (#%d) in the log after 10 s", needle, n);
        usleep(5000);
    }
}

/* SIGHUP, then wait for the outcome line: reloaded (n-th time) or failed. */
static void
reload(struct daemon_proc *dp, const char *outcome, int n)
{
    ck_assert_int_eq(daemon_signal(dp, SIGHUP), 0);
    wait_log(dp, outcome, n);
}

/* The port of the first "listening on tcp IP:PORT" line for ip, or 0. */
static int
log_port(const struct daemon_proc *dp, const char *ip)
{
    char needle[64], line[1024];
    int port = 0;
    FILE *f = fopen(dp->dp_log, "re");

    ck_assert_ptr_nonnull(f);
    snprintf(needle, sizeof(needle), "listening on tcp %s:", ip);
    while (port == 0 && fgets(line, sizeof(line), f) != NULL) {
        const char *p = strstr(line, needle);

        if (p != NULL && strstr(line, "no longer listening") == NULL)
            port = atoi(p + strlen(needle));
    }
    fclose(f);
    return port;
}

/* A blocking TCP connection to ip:port, or -errno. */
static int
connect_ip(const char *ip, int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

    if (fd == -1)
        return -errno;
    inet_pton(AF_INET, ip, &sin.sin_addr);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static int
connect_ip_or_fail(const char *ip, int port)
{
    int fd;

    ck_assert_int_gt(port, 0);
    fd = connect_ip(ip, port);
    ck_assert_msg(fd >= 0, "connect to %s:%d: %s", ip, port, strerror(-fd));
    return fd;
}

static void
echo_all(const int *fd, size_t n, const char *when)
{
    char msg[64];

    for (size_t i = 0; i < n; i++) {
        snprintf(msg, sizeof(msg), "connection %zu %s", i, when);
        echo_once(fd[i], msg, 5000);
    }
}

/* A new client on ip:port is served. */
static void
serves(const char *ip, int port)
{
    int fd = connect_ip_or_fail(ip, port);

    echo_once(fd, "new client", 5000);
    close(fd);
}

struct connect_loop {
    int cl_port;
    atomic_int cl_stop;
    long cl_attempts;
    long cl_refused;
    long cl_failed;
    int cl_last_err;
};

/*
 * Connect to the unchanged listener over and over while reloads happen.
 * The connections are reset at once (SO_LINGER 0): no TIME_WAIT pile-up.
 */
static void *
connect_loop_run(void *arg)
{
    struct connect_loop *cl = arg;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    while (!atomic_load(&cl->cl_stop) && cl->cl_attempts < LOOP_MAX) {
        int fd = connect_ip("127.0.0.1", cl->cl_port);

        cl->cl_attempts++;
        if (fd == -ECONNREFUSED) {
            cl->cl_refused++;
        } else if (fd < 0) {
            cl->cl_failed++;
            cl->cl_last_err = -fd;
        } else {
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            close(fd);
        }
    }
    return NULL;
}

/*
 * 50 connections, a listener added, one removed, a broken file, then the
 * good one again: every connection keeps working throughout, the added
 * address serves and is named in the log, the removed one refuses while
 * its connections carry on, errors come with file:line, and the unchanged
 * listener keeps its socket: same port, never a refused connect.
 */
START_TEST(test_reload_listeners)
{
    struct connect_loop cl = {0};
    struct daemon_proc dp;
    int fd[NLIVE], p1, p2, p3, r;
    char want[PATH_MAX + 64];
    pthread_t th;

    start_or_fail(&dp, two_ini);
    p1 = log_port(&dp, "127.0.0.1");
    p3 = log_port(&dp, "127.0.0.3");
    ck_assert_int_gt(p1, 0);
    ck_assert_int_gt(p3, 0);
    for (size_t i = 0; i < NLIVE; i++)
        fd[i] = connect_ip_or_fail(i % 2 ? "127.0.0.3" : "127.0.0.1", i % 2 ? p3 : p1);
    echo_all(fd, NLIVE, "before");

    cl.cl_port = p1;
    ck_assert_int_eq(pthread_create(&th, NULL, connect_loop_run, &cl), 0);

    ck_assert_int_eq(daemon_write_config(&dp, moved_ini), 0);
    reload(&dp, "configuration reloaded", 1);
    p2 = log_port(&dp, "127.0.0.2");
    ck_assert_msg(p2 > 0, "the log names no listener on 127.0.0.2");
    snprintf(want, sizeof(want), "no longer listening on tcp 127.0.0.3:%d", p3);
    ck_assert_msg(daemon_log_contains(&dp, want), "no '%s' in the log", want);
    serves("127.0.0.2", p2);
    serves("127.0.0.1", p1);
    r = connect_ip("127.0.0.3", p3);
    ck_assert_msg(r == -ECONNREFUSED, "removed listener: connect gave %s",
                  r >= 0 ? "a connection" : strerror(-r));
    echo_all(fd, NLIVE, "after the first reload");

    ck_assert_int_eq(daemon_write_config(&dp, broken_ini), 0);
    reload(&dp, "reload failed", 1);
    snprintf(want, sizeof(want), "%s:6: ", dp.dp_config);
    ck_assert_msg(daemon_log_contains(&dp, want), "no '%s' in the log", want);
    snprintf(want, sizeof(want), "%s:8: ", dp.dp_config);
    ck_assert_msg(daemon_log_contains(&dp, want), "no '%s' in the log", want);
    serves("127.0.0.2", p2);
    serves("127.0.0.1", p1);
    echo_all(fd, NLIVE, "after the broken reload");

    ck_assert_int_eq(daemon_write_config(&dp, moved_ini), 0);
    reload(&dp, "configuration reloaded", 2);
    ck_assert_int_eq(daemon_log_count(&dp, "listening on tcp 127.0.0.2:"), 1);
    ck_assert_int_eq(daemon_log_count(&dp, "listening on tcp 127.0.0.1:"), 1);
    serves("127.0.0.2", p2);
    serves("127.0.0.1", p1);
    echo_all(fd, NLIVE, "after the last reload");

    atomic_store(&cl.cl_stop, 1);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    fprintf(stderr, "reload: %ld connects through three reloads, %ld refused, %ld failed\n",
            cl.cl_attempts, cl.cl_refused, cl.cl_failed);
    ck_assert_int_eq(cl.cl_refused, 0);
    ck_assert_msg(cl.cl_failed == 0, "%ld connects failed, the last with %s", cl.cl_failed,
                  strerror(cl.cl_last_err));
    ck_assert_int_ge(cl.cl_attempts, 20);

    for (size_t i = 0; i < NLIVE; i++)
        close(fd[i]);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* What fill() sends: byte i of the stream is fill_buf[i % FILL_BUF]. */
#define FILL_BUF (256u << 10)
static unsigned char fill_buf[FILL_BUF];

/* Send without reading until nothing goes in for 300 ms; returns how much went in. */
static size_t
fill(int fd, size_t cap)
{
    fill_pattern(fill_buf, FILL_BUF, 3);
    return fill_or_fail(fd, fill_buf, FILL_BUF, cap, 300);
}

/*
 * Limits reach the connections already open: with max_pending_output =
 * 16M a client that does not read gets more than 16 MiB in; after a reload
 * to 4K, a connection opened before the reload stalls after far less; and
 * an idle connection, never timed out under idle_timeout = 0, is closed
 * about a second after idle_timeout = 1 is loaded.
 */
START_TEST(test_reload_limits_existing)
{
    static unsigned char got[64 << 20];
    struct daemon_proc dp;
    size_t before, after;
    long long t0;
    int a, b, idle;

    start_or_fail(&dp, roomy_ini);
    ck_assert(dp.dp_unix_path[0] != '\0');
    a = unix_connect(dp.dp_unix_path);
    b = unix_connect(dp.dp_unix_path);
    idle = unix_connect(dp.dp_unix_path);
    ck_assert_int_ge(a, 0);
    ck_assert_int_ge(b, 0);
    ck_assert_int_ge(idle, 0);
    before = fill(a, 64u << 20);
    ck_assert_msg(before > (16u << 20), "only %zu bytes in with max_pending_output = 16M", before);
    ck_assert_int_eq(read_exact(idle, got, 1, 0), -ETIMEDOUT);

    ck_assert_int_eq(daemon_write_config(&dp, tight_ini), 0);
    reload(&dp, "configuration reloaded", 1);
    t0 = now_ms();
    after = fill(b, 64u << 20);
    fprintf(stderr,
            "reload: a non-reading client got %zu KiB in before, %zu KiB after "
            "lowering max_pending_output\n",
            before >> 10, after >> 10);
    ck_assert_msg(after < (4u << 20), "%zu bytes in after lowering max_pending_output to 4K",
                  after);
    ck_assert_int_eq(read_exact(b, got, after, 5000), (ssize_t)after);
    for (size_t off = 0; off < after; off += FILL_BUF) {
        size_t n = after - off < FILL_BUF ? after - off : FILL_BUF;
        long bad = ref_mismatch(got + off, fill_buf, n);

        ck_assert_msg(bad == -1, "wrong byte at offset %zu", off + (size_t)bad);
    }
    ck_assert_int_eq(read_eof(idle, 5000), 0);
    fprintf(stderr, "reload: idle connection closed %lld ms after idle_timeout = 1 was loaded\n",
            now_ms() - t0);
    ck_assert_int_le(now_ms() - t0, 3000);
    close(a);
    close(b);
    close(idle);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * The new address is held by someone else: the reload fails whole.  The
 * old listener stays (same socket, still serving), the old configuration
 * stays (its idle_timeout still applies), and the log says the reload
 * failed, never that it worked.
 */
START_TEST(test_reload_bind_fails_keeps_old)
{
    char ini[512];
    struct daemon_proc dp;
    int held, held_port = 0, fd, port;

    snprintf(ini, sizeof(ini),
             "[tcp]\nlisten = 127.0.0.1:0\n[udp]\nenabled = no\n[limits]\nidle_timeout = 0\n");
    ck_assert_int_eq(daemon_start(&dp, ini), 0);
    port = dp.dp_tcp_port;
    ck_assert_int_gt(port, 0);
    fd = connect_ip_or_fail("127.0.0.1", port);
    held = tcp_listen_on(AF_INET, 0, &held_port);
    ck_assert_int_ge(held, 0);

    /* A free new address and a held one: neither may stay. */
    snprintf(ini, sizeof(ini),
             "[tcp]\nlisten = 127.0.0.2:0, 127.0.0.1:%d\n[udp]\nenabled = no\n"
             "[limits]\nidle_timeout = 1\n",
             held_port);
    ck_assert_int_eq(daemon_write_config(&dp, ini), 0);
    reload(&dp, "reload failed", 1);
    ck_assert(daemon_log_contains(&dp, "cannot listen on tcp 127.0.0.1:"));
    ck_assert(!daemon_log_contains(&dp, "configuration reloaded"));
    ck_assert(!daemon_log_contains(&dp, "no longer listening"));
    ck_assert_int_eq(log_port(&dp, "127.0.0.2"), 0);
    serves("127.0.0.1", port);
    /* idle_timeout = 1 was not applied: the open connection outlives it. */
    usleep(2500 * 1000);
    echo_once(fd, "still here", 5000);

    /* Once the address is free the same file loads. */
    close(held);
    reload(&dp, "configuration reloaded", 1);
    ck_assert(daemon_log_contains(&dp, "no longer listening on tcp 127.0.0.1:"));
    ck_assert_int_gt(log_port(&dp, "127.0.0.2"), 0);
    close(fd);
    daemon_stop(&dp);
}
END_TEST

/*
 * The backlog of the TCP socket listening on 127.0.0.1:port, as the kernel
 * reports it (inet_diag's idiag_wqueue for a listener), or -1.
 */
static int
listen_backlog(int port)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } q = {0};
    char buf[8192];
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    int backlog = -1;
    ssize_t n;

    if (fd == -1)
        return -1;
    q.nlh.nlmsg_len = sizeof(q);
    q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    q.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    q.req.sdiag_family = AF_INET;
    q.req.sdiag_protocol = IPPROTO_TCP;
    q.req.idiag_states = 1 << 10; /* TCP_LISTEN */
    if (send(fd, &q, sizeof(q), 0) != (ssize_t)sizeof(q)) {
        close(fd);
        return -1;
    }
    while (backlog == -1 && (n = recv(fd, buf, sizeof(buf), 0)) > 0) {
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        int done = 0;

        for (; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            struct inet_diag_msg *m = NLMSG_DATA(h);

            if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
                done = 1;
                break;
            }
            if (ntohs(m->id.idiag_sport) == port)
                backlog = (int)m->idiag_wqueue;
        }
        if (done)
            break;
    }
    close(fd);
    return backlog;
}

/* A reload that keeps a TCP listener applies a new backlog to it. */
START_TEST(test_reload_backlog)
{
    struct daemon_proc dp;
    int port;

    start_or_fail(&dp, "[tcp]\nlisten = 127.0.0.1:0\nbacklog = 16\n[udp]\nenabled = no\n");
    port = dp.dp_tcp_port;
    ck_assert_int_eq(listen_backlog(port), 16);
    ck_assert_int_eq(daemon_write_config(
                         &dp, "[tcp]\nlisten = 127.0.0.1:0\nbacklog = 77\n[udp]\nenabled = no\n"),
                     0);
    reload(&dp, "configuration reloaded", 1);
    /* The same listener (port 0 names it across reloads), with the new backlog. */
    ck_assert_int_eq(listen_backlog(port), 77);
    daemon_stop(&dp);
}
END_TEST

/*
 * libevent has 256 common timeouts per base: 300 reloads, each with another
 * idle_timeout, must not switch the idle timeout off.
 */
START_TEST(test_reload_many_idle_timeouts)
{
    char ini[512];
    struct daemon_proc dp;
    long long t0;
    int fd;

    snprintf(ini, sizeof(ini), INI_UNIX_ONLY "path = @DIR@/s.sock\n[limits]\nidle_timeout = 999\n");
    ck_assert_int_eq(daemon_start(&dp, ini), 0);
    for (int i = 1; i <= 300; i++) {
        snprintf(ini, sizeof(ini),
                 INI_UNIX_ONLY "path = @DIR@/s.sock\n[limits]\nidle_timeout = %d\n", 1000 + i);
        ck_assert_int_eq(daemon_write_config(&dp, ini), 0);
        reload(&dp, "configuration reloaded", i);
    }
    snprintf(ini, sizeof(ini), INI_UNIX_ONLY "path = @DIR@/s.sock\n[limits]\nidle_timeout = 1\n");
    ck_assert_int_eq(daemon_write_config(&dp, ini), 0);
    reload(&dp, "configuration reloaded", 301);
    fd = unix_connect(dp.dp_unix_path);
    ck_assert_int_ge(fd, 0);
    echo_once(fd, "then idle", 5000);
    t0 = now_ms();
    ck_assert_msg(read_eof(fd, 10000) == 0, "idle connection not closed after 300 reloads");
    ck_assert_int_le(now_ms() - t0, 5000);
    close(fd);
    daemon_stop(&dp);
}
END_TEST

/*
 * Out of descriptors, the reload cannot even open the file: the log says
 * that, not that the file is invalid.
 */
START_TEST(test_reload_no_descriptors)
{
    static const char ini[] = INI_TCP4_ONLY "[limits]\nidle_timeout = 0\n";
    struct daemon_proc dp;
    int fds[64], n = 0;

    /* Room for the start-up of two workers (a loop, a wake-up and a socket each), little more. */
    ck_assert_int_eq(daemon_start_nofile(&dp, ini, 24), 0);
    /* Connect until one is not served: the daemon has no descriptor left. */
    for (; n < 64; n++) {
        char got[4];

        fds[n] = connect_ip_or_fail("127.0.0.1", dp.dp_tcp_port);
        ck_assert_int_eq(write_all(fds[n], "abc", 3), 0);
        if (read_exact(fds[n], got, 3, 500) != 3) {
            n++;
            break;
        }
    }
    ck_assert_int_lt(n, 64);
    reload(&dp, "reload failed", 1);
    ck_assert(daemon_log_contains(&dp, "reload failed: cannot read "));
    ck_assert(daemon_log_contains(&dp, strerror(EMFILE)));
    ck_assert(!daemon_log_contains(&dp, "is not valid"));
    for (int i = 0; i < n; i++)
        close(fds[i]);
    daemon_stop(&dp);
}
END_TEST

static Suite *
reload_suite(void)
{
    Suite *s = suite_create("reload");
    TCase *tc = tcase_create("reload");

    tcase_add_test(tc, test_reload_listeners);
    tcase_add_test(tc, test_reload_limits_existing);
    tcase_add_test(tc, test_reload_bind_fails_keeps_old);
    tcase_add_test(tc, test_reload_backlog);
    tcase_add_test(tc, test_reload_many_idle_timeouts);
    tcase_add_test(tc, test_reload_no_descriptors);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(reload_suite(), CK_ENV);
}
