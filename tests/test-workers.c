/* test-workers.c: [server] workers: clients spread over threads, limits, reload, drain, watchdog.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

#define NSPREAD 64
#define MAX_CONN 4
#define NCLIENTS 12
#define NLOAD 16
#define NRELOADS 8
#define NDRAIN 16
#define DRAIN_BYTES (256 << 10)

/* Per-worker counts from the lines each worker logs when it ends; -1 when missing. */
static void
worker_counts(const struct daemon_proc *dp, unsigned w, long long *conns, long long *dgrams)
{
    char needle[32], line[1024];
    FILE *f = fopen(dp->dp_log, "re");

    *conns = *dgrams = -1;
    ck_assert_ptr_nonnull(f);
    snprintf(needle, sizeof(needle), "worker %u: ", w);
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *p = strstr(line, needle);

        if (p != NULL &&
            sscanf(p + strlen(needle), "connections accepted: %lld, datagrams received: %lld",
                   conns, dgrams) == 2)
            break;
    }
    fclose(f);
}

/*
 * Two workers: TCP connections and UDP datagrams from many source ports
 * are spread by the kernel over both workers' sockets, and each worker
 * counts what it served.
 */
START_TEST(test_spread_over_workers)
{
    struct daemon_proc dp;
    long long c[2], d[2];
    int status = -1;
    char got[8];

    start_or_fail(&dp, "[tcp]\nlisten = 127.0.0.1:0\n[udp]\nlisten = 127.0.0.1:0\n"
                       "[server]\nworkers = 2\n");
    ck_assert(daemon_log_contains(&dp, "with 2 workers ready"));
    for (int i = 0; i < NSPREAD; i++) {
        int fd = connect_or_fail(AF_INET, dp.dp_tcp_port);

        echo_once(fd, "spread", 5000);
        close(fd);
    }
    for (int i = 0; i < NSPREAD; i++) {
        int fd = udp_socket_for(dp.dp_udp_port);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(send(fd, "dgram", 5, 0), 5);
        ck_assert_int_eq(read_exact(fd, got, 5, 5000), 5);
        ck_assert_mem_eq(got, "DGRAM", 5);
        close(fd);
    }
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_int_eq(daemon_wait(&dp, 10000, &status), 0);
    ck_assert_int_eq(status, 0);
    worker_counts(&dp, 0, &c[0], &d[0]);
    worker_counts(&dp, 1, &c[1], &d[1]);
    fprintf(stderr, "workers: connections %lld + %lld, datagrams %lld + %lld\n", c[0], c[1], d[0],
            d[1]);
    ck_assert_int_eq(c[0] + c[1], NSPREAD);
    ck_assert_int_eq(d[0] + d[1], NSPREAD);
    ck_assert_msg(c[0] > 0 && c[1] > 0, "connections %lld + %lld", c[0], c[1]);
    ck_assert_msg(d[0] > 0 && d[1] > 0, "datagrams %lld + %lld", d[0], d[1]);
    daemon_stop(&dp);
}
END_TEST

/* How many of the clients not yet counted get their one-byte echo within ms (or until want have).
 */
static int
count_served(const int *fds, bool *served, int n, int want, int ms)
{
    long long deadline = now_ms() + ms;
    int count = 0;

    for (;;) {
        struct pollfd pfd[NCLIENTS];
        int idx[NCLIENTS], m = 0;
        long long left = deadline - now_ms();

        for (int i = 0; i < n; i++) {
            if (served[i])
                continue;
            pfd[m] = (struct pollfd){.fd = fds[i], .events = POLLIN};
            idx[m++] = i;
        }
        if (m == 0 || left <= 0 || count >= want || poll(pfd, (nfds_t)m, (int)left) <= 0)
            return count;
        for (int j = 0; j < m; j++) {
            char c;

            if (pfd[j].revents == 0)
                continue;
            ck_assert_int_eq(read(fds[idx[j]], &c, 1), 1);
            ck_assert_int_eq(c, 'Q');
            served[idx[j]] = true;
            count++;
        }
    }
}

/*
 * max_connections holds for the daemon, not per worker: with two workers
 * and a limit of 4, twelve clients get exactly four served; each close
 * lets exactly one more in, whichever worker it waits on.
 */
START_TEST(test_global_max_connections)
{
    struct daemon_proc dp;
    int fds[NCLIENTS], closed = 0;
    bool served[NCLIENTS] = {false};
    int n;

    start_or_fail(&dp, INI_TCP4_ONLY "[limits]\nmax_connections = 4\n[server]\nworkers = 2\n");
    for (int i = 0; i < NCLIENTS; i++) {
        fds[i] = connect_or_fail(AF_INET, dp.dp_tcp_port);
        ck_assert_int_eq(write_all(fds[i], "q", 1), 0);
    }
    n = count_served(fds, served, NCLIENTS, NCLIENTS, 2000);
    ck_assert_int_eq(n, MAX_CONN);
    ck_assert_int_eq(count_served(fds, served, NCLIENTS, NCLIENTS, 500), 0);
    for (int round = 0; round < 4; round++) {
        long long t0;
        int more;

        for (int i = 0; i < NCLIENTS; i++) {
            if (served[i] && fds[i] != -1) {
                close(fds[i]);
                fds[i] = -1;
                closed++;
                break;
            }
        }
        t0 = now_ms();
        more = count_served(fds, served, NCLIENTS, 1, 3000);
        fprintf(stderr, "workers: a slot freed, a waiting client served after %lld ms\n",
                now_ms() - t0);
        ck_assert_int_eq(more, 1);
        ck_assert_int_eq(count_served(fds, served, NCLIENTS, NCLIENTS, 300), 0);
    }
    for (int i = 0; i < NCLIENTS; i++)
        if (fds[i] != -1)
            close(fds[i]);
    ck_assert_int_eq(closed, 4);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

static const char reload_a[] = "[tcp]\nlisten = 127.0.0.1:0\n[udp]\nlisten = 127.0.0.1:0\n"
                               "[server]\nworkers = 4\n";
static const char reload_b[] = "[tcp]\nlisten = 127.0.0.1:0\n[udp]\nlisten = 127.0.0.1:0\n"
                               "[unix]\nenabled = yes\npath = @DIR@/w.sock\n"
                               "[limits]\nmax_pending_output = 2M\n[server]\nworkers = 4\n";

/* One round of traffic: a pattern through every open connection, a new one, a datagram. */
static void
load_round(struct daemon_proc *dp, int *fds, unsigned round)
{
    static unsigned char out[4096], want[4096], in[4096];
    int fd;

    for (int i = 0; i < NLOAD; i++) {
        fill_pattern(out, sizeof(out), round * NLOAD + (unsigned)i);
        ref_upper(want, out, sizeof(out));
        ck_assert_int_eq(write_all(fds[i], out, sizeof(out)), 0);
        ck_assert_int_eq(read_exact(fds[i], in, sizeof(in), 5000), (ssize_t)sizeof(in));
        ck_assert_msg(memcmp(in, want, sizeof(in)) == 0, "connection %d round %u garbled", i,
                      round);
    }
    fd = connect_or_fail(AF_INET, dp->dp_tcp_port);
    echo_once(fd, "newcomer", 5000);
    close(fd);
    fd = udp_socket_for(dp->dp_udp_port);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(send(fd, "udp", 3, 0), 3);
    ck_assert_int_eq(read_exact(fd, in, 3, 5000), 3);
    ck_assert_mem_eq(in, "UDP", 3);
    close(fd);
}

/*
 * Four workers under steady traffic, reloaded again and again with an
 * AF_UNIX listener added and removed and a limit changed: every byte on
 * the open connections comes back, newcomers and datagrams are answered
 * throughout, and the added socket serves once the reload is done.
 */
START_TEST(test_reload_under_load)
{
    struct daemon_proc dp;
    int fds[NLOAD], status = -1;
    unsigned round = 0;

    start_or_fail(&dp, reload_a);
    for (int i = 0; i < NLOAD; i++)
        fds[i] = connect_or_fail(AF_INET, dp.dp_tcp_port);
    for (int r = 1; r <= NRELOADS; r++) {
        long long deadline = now_ms() + 10000;
        char sock[PATH_MAX];

        ck_assert_int_eq(daemon_write_config(&dp, r % 2 ? reload_b : reload_a), 0);
        ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
        do {
            load_round(&dp, fds, round++);
            ck_assert_msg(now_ms() < deadline, "reload %d not done in 10 s", r);
        } while (daemon_log_count(&dp, "configuration reloaded") < r);
        load_round(&dp, fds, round++);
        snprintf(sock, sizeof(sock), "%s/w.sock", dp.dp_dir);
        if (r % 2) {
            int fd = unix_connect(sock);

            ck_assert_msg(fd >= 0, "unix_connect after reload %d: %s", r, strerror(-fd));
            echo_once(fd, "unix", 5000);
            close(fd);
        } else {
            ck_assert_int_eq(access(sock, F_OK), -1);
        }
    }
    fprintf(stderr, "workers: %d reloads under %u rounds of traffic\n", NRELOADS, round);
    ck_assert(!daemon_log_contains(&dp, "error"));
    for (int i = 0; i < NLOAD; i++)
        close(fds[i]);
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_int_eq(daemon_wait(&dp, 10000, &status), 0);
    ck_assert_int_eq(status, 0);
    daemon_stop(&dp);
}
END_TEST

/*
 * SIGTERM with four workers and echo pending on connections spread over
 * them: every worker drains, each client gets all it sent and then EOF,
 * and the daemon exits 0.
 */
START_TEST(test_sigterm_drains_every_worker)
{
    static unsigned char out[DRAIN_BYTES], want[DRAIN_BYTES], in[DRAIN_BYTES];
    struct daemon_proc dp;
    int fds[NDRAIN], status = -1;

    start_or_fail(&dp, INI_TCP4_ONLY "[limits]\nshutdown_timeout = 60\n[server]\nworkers = 4\n");
    for (int i = 0; i < NDRAIN; i++) {
        fds[i] = connect_or_fail(AF_INET, dp.dp_tcp_port);
        fill_pattern(out, sizeof(out), (unsigned)i);
        ck_assert_int_eq(write_all(fds[i], out, sizeof(out)), 0);
    }
    /* Let the workers read it all: what they read is owed; what they have not is not. */
    usleep(500 * 1000);
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    for (int i = 0; i < NDRAIN; i++) {
        fill_pattern(out, sizeof(out), (unsigned)i);
        ref_upper(want, out, sizeof(out));
        ck_assert_int_eq(read_exact(fds[i], in, sizeof(in), 10000), (ssize_t)sizeof(in));
        ck_assert_msg(memcmp(in, want, sizeof(in)) == 0, "connection %d garbled", i);
        ck_assert_int_eq(read_eof(fds[i], 10000), 0);
        close(fds[i]);
    }
    ck_assert_int_eq(daemon_wait(&dp, 10000, &status), 0);
    ck_assert_int_eq(status, 0);
    daemon_stop(&dp);
}
END_TEST

/*
 * The watchdog watches every worker, not only the main thread: one worker
 * blocked (UPECHOD_TEST_STALL, honoured by test builds only) stops the
 * pings, which resume once it runs again.
 */
START_TEST(test_watchdog_sees_a_stuck_worker)
{
    struct daemon_proc dp;
    struct manager m;
    char msg[4096];
    long long ready, t, end;
    int before = 0, during = 0, after = 0, r;
    pid_t from;

    if (getenv("UPECHOD_TEST_HOOKS") == NULL) {
        fprintf(stderr, "workers: no test hooks in this build, watchdog test skipped\n");
        return;
    }
    unsetenv("WATCHDOG_PID");
    ck_assert_int_eq(setenv("WATCHDOG_USEC", "400000", 1), 0);
    /* Worker 1 blocks 1 s after it is set up, for 4 s. */
    ck_assert_int_eq(setenv("UPECHOD_TEST_STALL", "1:1000:4000", 1), 0);
    manager_open_or_fail(&m, false);
    r = daemon_spawn(&dp, INI_TCP4_ONLY "[server]\nworkers = 2\n", NULL);
    ck_assert_msg(r == 0, "daemon_spawn: %s", strerror(-r));
    unsetenv("WATCHDOG_USEC");
    unsetenv("UPECHOD_TEST_STALL");
    for (;;) {
        ck_assert_msg(manager_recv_or_fail(&m, msg, sizeof(msg), &from, 10000) >= 0, "no READY=1");
        if (strncmp(msg, "READY=1", 7) == 0)
            break;
    }
    ready = now_ms();
    end = ready + 7000;
    while ((t = now_ms()) < end) {
        if (manager_recv_or_fail(&m, msg, sizeof(msg), &from, end - t) < 0)
            break;
        if (strcmp(msg, "WATCHDOG=1") != 0)
            continue;
        t = now_ms() - ready;
        if (t < 900)
            before++;
        else if (t >= 2000 && t < 4000)
            during++;
        else if (t >= 5500)
            after++;
    }
    fprintf(stderr, "workers: watchdog pings %d before, %d during, %d after the stall\n", before,
            during, after);
    ck_assert_msg(before >= 2, "%d pings before the stall", before);
    ck_assert_msg(during == 0, "%d pings while a worker was blocked", during);
    ck_assert_msg(after >= 2, "%d pings after the stall", after);
    ck_assert(daemon_log_contains(&dp, "worker 1 has not run its event loop"));
    ck_assert(daemon_log_contains(&dp, "worker 1 runs again"));
    ck_assert_int_eq(daemon_stop(&dp), 0);
    manager_close(&m);
}
END_TEST

/* Wait up to ms for needle in the daemon's log. */
static bool
wait_log(const struct daemon_proc *dp, const char *needle, int ms)
{
    long long deadline = now_ms() + ms;

    while (!daemon_log_contains(dp, needle)) {
        if (now_ms() >= deadline)
            return false;
        usleep(20 * 1000);
    }
    return true;
}

/*
 * SIGTERM while a worker's loop is blocked (UPECHOD_TEST_STALL, for far
 * longer than shutdown_timeout): the main thread does not wait for it
 * beyond shutdown_timeout, names it, and exits 75, a stop cut short.
 */
START_TEST(test_stop_with_a_stuck_worker)
{
    struct daemon_proc dp;
    long long t0, took;
    int status = -1, r;

    if (getenv("UPECHOD_TEST_HOOKS") == NULL) {
        fprintf(stderr, "workers: no test hooks in this build, stuck-stop test skipped\n");
        return;
    }
    /* Worker 1 blocks 1 s after it is set up, for 60 s. */
    ck_assert_int_eq(setenv("UPECHOD_TEST_STALL", "1:1000:60000", 1), 0);
    r = daemon_start(&dp, INI_TCP4_ONLY "[limits]\nshutdown_timeout = 2\n[server]\nworkers = 2\n");
    unsetenv("UPECHOD_TEST_STALL");
    ck_assert_msg(r == 0, "daemon_start: %s", strerror(-r));
    ck_assert(wait_log(&dp, "worker 1: blocking for", 10000));
    t0 = now_ms();
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    r = daemon_wait(&dp, under_asan() ? 10000 : 6000, &status);
    took = now_ms() - t0;
    fprintf(stderr,
            "workers: stop with a stuck worker and shutdown_timeout = 2: exit %d after %lld ms\n",
            status, took);
    ck_assert_msg(r == 0, "still running %lld ms after SIGTERM", took);
    ck_assert_int_eq(status, 75);
    ck_assert_int_ge(took, 1900);
    ck_assert(daemon_log_contains(&dp, "worker 1 did not stop"));
    daemon_stop(&dp);
}
END_TEST

/*
 * SIGHUP while a worker's loop is blocked for longer than a reload waits:
 * the main thread gives up waiting, says which worker lags (log, STATUS=,
 * READY=1), keeps serving its own endpoint, and the reload completes once
 * the worker runs again.
 */
START_TEST(test_reload_with_a_stuck_worker)
{
    static const char ini[] = INI_TCP4_ONLY "[metrics]\nenabled = yes\nlisten = 127.0.0.1:0\n"
                                            "[server]\nworkers = 2\n";
    static const char ini2[] = INI_TCP4_ONLY "[limits]\nmax_pending_output = 2M\n"
                                             "[metrics]\nenabled = yes\nlisten = 127.0.0.1:0\n"
                                             "[server]\nworkers = 2\n";
    struct daemon_proc dp;
    struct manager m;
    char msg[4096], buf[65536];
    const char *body;
    long long stall_start, t;
    int status = -1, r;
    bool ready = false;
    pid_t from;

    if (getenv("UPECHOD_TEST_HOOKS") == NULL) {
        fprintf(stderr, "workers: no test hooks in this build, stuck-reload test skipped\n");
        return;
    }
    /* Worker 1 blocks 1 s after it is set up, for 12 s: longer than a reload waits. */
    ck_assert_int_eq(setenv("UPECHOD_TEST_STALL", "1:1000:12000", 1), 0);
    manager_open_or_fail(&m, false);
    r = daemon_start(&dp, ini);
    unsetenv("UPECHOD_TEST_STALL");
    ck_assert_msg(r == 0, "daemon_start: %s", strerror(-r));
    /* The READY=1 of the start. */
    do
        ck_assert_int_ge(manager_recv_or_fail(&m, msg, sizeof(msg), &from, 10000), 0);
    while (strncmp(msg, "READY=1", 7) != 0);
    ck_assert(wait_log(&dp, "worker 1: blocking for", 10000));
    stall_start = now_ms();
    ck_assert_int_eq(daemon_write_config(&dp, ini2), 0);
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    while (!ready && (t = now_ms()) < stall_start + 10000) {
        if (manager_recv(&m, msg, sizeof(msg), &from, stall_start + 10000 - t) < 0)
            break;
        ready = strncmp(msg, "READY=1", 7) == 0;
    }
    t = now_ms() - stall_start;
    fprintf(stderr, "workers: reload with a stuck worker: READY=1 after %lld ms: %s\n", t,
            ready ? msg : "(none)");
    ck_assert_msg(ready, "no READY=1 within 10 s of a reload with a stuck worker");
    ck_assert_msg(strstr(msg, "worker 1") != NULL, "STATUS= does not name the worker: %s", msg);
    ck_assert(daemon_log_contains(&dp, "worker 1 has not applied"));
    ck_assert(!daemon_log_contains(&dp, "configuration reloaded"));
    /* The main thread serves its own endpoint while the worker is still blocked. */
    ck_assert_int_eq(http_get(dp.dp_metrics_port, "/metrics", buf, sizeof(buf), &body), 200);
    ck_assert_msg(now_ms() < stall_start + 11500, "the scrape came too late to prove anything");
    ck_assert(wait_log(&dp, "configuration reloaded", 15000));
    ck_assert_int_ge(now_ms() - stall_start, 11000);
    fprintf(stderr, "workers: the reload completed %lld ms after the stall began\n",
            now_ms() - stall_start);
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_int_eq(daemon_wait(&dp, 10000, &status), 0);
    ck_assert_int_eq(status, 0);
    daemon_stop(&dp);
    manager_close(&m);
}
END_TEST

/*
 * A reload that moves the TCP listener to a new address with
 * proxy_protocol = yes: the new listener never serves a connection under
 * the old configuration.  Worker 1 is blocked during the reload, so the
 * main thread waits for it between taking the old listener away and
 * handing out the new configuration; worker 0 must not serve the new
 * address meanwhile, and clients on it get what proxy_protocol promises.
 */
START_TEST(test_reload_new_listener_gets_new_config)
{
    struct daemon_proc dp;
    char ini2[512], hdr[128], got[NCLIENTS][5];
    int fds[NCLIENTS], port = 0, lfd, r, wrong = 0, status = -1;

    if (getenv("UPECHOD_TEST_HOOKS") == NULL) {
        fprintf(stderr, "workers: no test hooks in this build, new-listener test skipped\n");
        return;
    }
    lfd = tcp_listen_on(AF_INET, 0, &port);
    ck_assert_int_ge(lfd, 0);
    close(lfd);
    snprintf(ini2, sizeof(ini2),
             "[tcp]\nlisten = 127.0.0.1:%d\nproxy_protocol = yes\nproxy_protocol_from = 127.0.0.1\n"
             "[udp]\nenabled = no\n[server]\nworkers = 2\n",
             port);
    snprintf(hdr, sizeof(hdr), "PROXY TCP4 203.0.113.7 127.0.0.1 4242 %d\r\nhello", port);
    /* Worker 1 blocks 1 s after it is set up, for 3 s: less than a reload waits. */
    ck_assert_int_eq(setenv("UPECHOD_TEST_STALL", "1:1000:3000", 1), 0);
    r = daemon_start(&dp, INI_TCP4_ONLY "[server]\nworkers = 2\n");
    unsetenv("UPECHOD_TEST_STALL");
    ck_assert_msg(r == 0, "daemon_start: %s", strerror(-r));
    ck_assert(wait_log(&dp, "worker 1: blocking for", 10000));
    ck_assert_int_eq(daemon_write_config(&dp, ini2), 0);
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    for (int i = 0; i < NCLIENTS; i++) {
        long long deadline = now_ms() + 2000;

        /* Refused until the reload has bound the address. */
        while ((fds[i] = tcp_connect(AF_INET, port)) < 0 && now_ms() < deadline)
            usleep(10 * 1000);
        ck_assert_msg(fds[i] >= 0, "connect to the new address: %s", strerror(-fds[i]));
        ck_assert_int_eq(write_all(fds[i], hdr, strlen(hdr)), 0);
    }
    for (int i = 0; i < NCLIENTS; i++) {
        ck_assert_int_eq(read_exact(fds[i], got[i], 5, 10000), 5);
        if (memcmp(got[i], "HELLO", 5) != 0)
            wrong++;
        close(fds[i]);
    }
    fprintf(stderr,
            "workers: %d of %d first connections on a listener added by a reload were "
            "served under the old configuration\n",
            wrong, NCLIENTS);
    ck_assert_int_eq(wrong, 0);
    ck_assert(wait_log(&dp, "configuration reloaded", 10000));
    ck_assert_int_eq(daemon_signal(&dp, SIGTERM), 0);
    ck_assert_int_eq(daemon_wait(&dp, 10000, &status), 0);
    ck_assert_int_eq(status, 0);
    daemon_stop(&dp);
}
END_TEST

static Suite *
workers_suite(void)
{
    Suite *s = suite_create("workers");
    TCase *tc = tcase_create("workers");

    tcase_add_unchecked_fixture(tc, scratch_setup, scratch_teardown);
    tcase_add_test(tc, test_spread_over_workers);
    tcase_add_test(tc, test_global_max_connections);
    tcase_add_test(tc, test_reload_under_load);
    tcase_add_test(tc, test_sigterm_drains_every_worker);
    tcase_add_test(tc, test_watchdog_sees_a_stuck_worker);
    tcase_add_test(tc, test_stop_with_a_stuck_worker);
    tcase_add_test(tc, test_reload_with_a_stuck_worker);
    tcase_add_test(tc, test_reload_new_listener_gets_new_config);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(workers_suite(), CK_ENV);
}
