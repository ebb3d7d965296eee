/*
 * test-metrics.c: the Prometheus endpoint end to end: exact counts while
 * known traffic runs, the HTTP surface and its bounds, reload, and the
 * scrape checked by promtool and by a real Prometheus server.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check-main.h"
#include "harness.h"
#include "metrics.h"

#define PROMTOOL "/usr/bin/promtool"
#define PROMETHEUS "/usr/bin/prometheus"
#define SCRAPE_MAX (256 * 1024)

#define INI_METRICS "[metrics]\nenabled = yes\nlisten = 127.0.0.1:0\n"

static char scrape[SCRAPE_MAX];

/* GET /metrics into scrape; its body. */
static const char *
get_metrics(int port)
{
    const char *body;
    int status = http_get(port, "/metrics", scrape, sizeof(scrape), &body);

    ck_assert_msg(status == 200, "GET /metrics: %d", status);
    return body;
}

/* The value of the sample line that starts with `sample ` (name and labels exactly), or NAN. */
static double
sample(const char *text, const char *name)
{
    size_t n = strlen(name);

    for (const char *l = text; l != NULL && *l != '\0'; l = strchr(l, '\n'), l = l ? l + 1 : l) {
        if (strncmp(l, name, n) == 0 && l[n] == ' ')
            return strtod(l + n + 1, NULL);
    }
    return NAN;
}

/* Scrape until sample `name` reaches want, for at most timeout_ms; its last value. */
static double
wait_sample(int port, const char *name, double want, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    double v;

    while ((v = sample(get_metrics(port), name)) != want && now_ms() < deadline)
        usleep(20000);
    return v;
}

#define ck_assert_sample(text, name, want)                                                         \
    do {                                                                                           \
        double v_ = sample((text), (name));                                                        \
        ck_assert_msg(v_ == (double)(want), "%s is %g, not %g", (name), v_, (double)(want));       \
    } while (0)

static void
start(struct daemon_proc *dp, const char *ini)
{
    ck_assert_int_eq(daemon_start(dp, ini), 0);
    ck_assert_int_gt(dp->dp_metrics_port, 0);
}

/* Echo n bytes of pattern over fd and check the answer. */
static void
echo_over(int fd, size_t n, unsigned long long seed)
{
    char buf[4096], want[4096], got[4096];

    ck_assert_uint_le(n, sizeof(buf));
    fill_pattern(buf, n, seed);
    ref_upper(want, buf, n);
    ck_assert_int_eq(write_all(fd, buf, n), 0);
    ck_assert_int_eq(read_exact(fd, got, n, 10000), (ssize_t)n);
    ck_assert(memcmp(got, want, n) == 0);
}

/*
 * Known traffic, and the counters that must show exactly it: 4 TCP
 * connections and 1 unix one with known byte counts, 6 datagrams of which
 * the rate limit (5 a second, a burst of 5) drops the last.
 */
START_TEST(test_metrics_exact_counts)
{
    struct daemon_proc dp;
    static const size_t tcp_len[] = {1, 100, 1000, 4000};
    int fds[4], ufd, dfd, mport;
    const char *t;
    size_t tcp_total = 0, udp_total = 0, udp_answered = 0;
    char ini[1024], buf[2048];

    snprintf(ini, sizeof(ini), INI_ALL "path = @DIR@/s.sock\n[udp]\nrate_limit = 5\n" INI_METRICS);
    start(&dp, ini);
    mport = dp.dp_metrics_port;

    t = get_metrics(mport);
    ck_assert_sample(t, "upechod_connections_accepted_total{transport=\"tcp\"}", 0);
    ck_assert_sample(t, "upechod_datagrams_received_total", 0);

    /* While the connections are open. */
    for (int i = 0; i < 4; i++) {
        fds[i] = tcp_connect(AF_INET, dp.dp_tcp_port);
        ck_assert_int_ge(fds[i], 0);
        echo_over(fds[i], tcp_len[i], (unsigned long long)i);
        tcp_total += tcp_len[i];
    }
    ufd = unix_connect(dp.dp_unix_path);
    ck_assert_int_ge(ufd, 0);
    echo_over(ufd, 33, 99);
    t = get_metrics(mport);
    ck_assert_sample(t, "upechod_connections_open{transport=\"tcp\"}", 4);
    ck_assert_sample(t, "upechod_connections_open{transport=\"unix\"}", 1);
    ck_assert_sample(t, "upechod_connections_accepted_total{transport=\"tcp\"}", 4);
    ck_assert_sample(t, "upechod_connections_accepted_total{transport=\"unix\"}", 1);
    ck_assert_sample(t, "upechod_connections_closed_total{transport=\"tcp\"}", 0);
    ck_assert_sample(t, "upechod_received_bytes_total{transport=\"tcp\"}", tcp_total);
    ck_assert_sample(t, "upechod_sent_bytes_total{transport=\"tcp\"}", tcp_total);
    ck_assert_sample(t, "upechod_received_bytes_total{transport=\"unix\"}", 33);
    ck_assert_sample(t, "upechod_sent_bytes_total{transport=\"unix\"}", 33);
    ck_assert_sample(t, "upechod_pending_output_bytes", 0);
    ck_assert_sample(t, "upechod_connection_duration_seconds_count", 0);

    /* Datagrams: the sixth in a burst of six is over the limit. */
    dfd = udp_socket_for(dp.dp_udp_port);
    ck_assert_int_ge(dfd, 0);
    for (size_t i = 0; i < 6; i++) {
        fill_pattern(buf, 10 + i, i);
        ck_assert_int_eq(send(dfd, buf, 10 + i, 0), (ssize_t)(10 + i));
        udp_total += 10 + i;
        udp_answered += i < 5 ? 10 + i : 0;
    }
    for (size_t i = 0; i < 5; i++) {
        ck_assert_int_eq(read_exact(dfd, buf, 1, 5000) >= 0, 1);
    }
    /* A reply is counted once sendmmsg(2) returns, which may be after the client read it. */
    ck_assert(wait_sample(mport, "upechod_datagrams_answered_total", 5, 5000) == 5);
    t = get_metrics(mport);
    ck_assert_sample(t, "upechod_datagrams_received_total", 6);
    ck_assert_sample(t, "upechod_datagrams_answered_total", 5);
    ck_assert_sample(t, "upechod_datagrams_dropped_total{reason=\"rate_limit\"}", 1);
    ck_assert_sample(t, "upechod_datagrams_dropped_total{reason=\"privileged_port\"}", 0);
    ck_assert_sample(t, "upechod_datagrams_dropped_total{reason=\"truncated\"}", 0);
    ck_assert_sample(t, "upechod_received_bytes_total{transport=\"udp\"}", udp_total);
    ck_assert_sample(t, "upechod_sent_bytes_total{transport=\"udp\"}", udp_answered);
    close(dfd);

    /* Closed: the histograms count each connection once, with its bytes. */
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    close(ufd);
    ck_assert(wait_sample(mport, "upechod_connection_duration_seconds_count", 5, 10000) == 5);
    t = get_metrics(mport);
    ck_assert_sample(t, "upechod_connections_open{transport=\"tcp\"}", 0);
    ck_assert_sample(t, "upechod_connections_closed_total{transport=\"tcp\"}", 4);
    ck_assert_sample(t, "upechod_connections_closed_total{transport=\"unix\"}", 1);
    ck_assert_sample(t, "upechod_connection_received_bytes_count", 5);
    ck_assert_sample(t, "upechod_connection_received_bytes_sum", tcp_total + 33);
    ck_assert_sample(t, "upechod_connection_received_bytes_bucket{le=\"0\"}", 0);
    ck_assert_sample(t, "upechod_connection_received_bytes_bucket{le=\"64\"}", 2);
    ck_assert_sample(t, "upechod_connection_received_bytes_bucket{le=\"1024\"}", 4);
    ck_assert_sample(t, "upechod_connection_received_bytes_bucket{le=\"+Inf\"}", 5);
    ck_assert_sample(t, "upechod_connection_duration_seconds_bucket{le=\"+Inf\"}", 5);
    /* The harness may run every daemon with more workers (meson test --setup workers2). */
    ck_assert_sample(t, "upechod_workers",
                     getenv("UPECHOD_WORKERS") != NULL ? atoi(getenv("UPECHOD_WORKERS")) : 1);
    ck_assert_sample(t, "upechod_reloads_total{result=\"success\"}", 0);
    /*
     * What the daemon held then, its scrape's connection included: once that
     * one is gone (libevent may close it a moment after the reply), one less.
     */
    ck_assert_int_eq(daemon_wait_nfds(&dp, (int)sample(t, "process_open_fds") - 1, 5000),
                     (int)sample(t, "process_open_fds") - 1);
    ck_assert(sample(t, "process_resident_memory_bytes") > 0);
    ck_assert(strstr(t, "\nupechod_build_info{version=\"") != NULL);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* GET /metrics and GET /, HEAD, 404 and 405, with the headers Prometheus expects. */
START_TEST(test_metrics_http)
{
    struct daemon_proc dp;
    char buf[SCRAPE_MAX];
    const char *body;
    ssize_t n;

    start(&dp, INI_TCP4_ONLY INI_METRICS);
    ck_assert_int_eq(http_get(dp.dp_metrics_port, "/metrics", buf, sizeof(buf), &body), 200);
    ck_assert_msg(strcasestr(buf, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
                  "%s", buf);
    ck_assert(strncmp(body, "# HELP ", 7) == 0);
    ck_assert_int_eq(http_get(dp.dp_metrics_port, "/metrics?x=1", buf, sizeof(buf), &body), 200);

    ck_assert_int_eq(http_get(dp.dp_metrics_port, "/", buf, sizeof(buf), &body), 200);
    ck_assert(strcasestr(buf, "\r\nContent-Type: text/html; charset=utf-8\r\n") != NULL);
    ck_assert(strstr(body, "<a href=\"/metrics\">") != NULL);

    ck_assert_int_eq(http_get(dp.dp_metrics_port, "/metricsx", buf, sizeof(buf), &body), 404);
    ck_assert_int_eq(http_get(dp.dp_metrics_port, "/metrics/", buf, sizeof(buf), &body), 404);

    n = http_request(dp.dp_metrics_port,
                     "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf,
                     sizeof(buf), 10000);
    ck_assert_int_gt(n, 0);
    ck_assert(strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
    ck_assert_msg(strstr(buf, "# HELP") == NULL, "%s", buf);
    ck_assert(strcasestr(buf, "\r\nContent-Length: 0\r\n") == NULL);

    n = http_request(dp.dp_metrics_port,
                     "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                     "Connection: close\r\n\r\nhi",
                     buf, sizeof(buf), 10000);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(strncmp(buf, "HTTP/1.1 405 ", 13) == 0, "%s", buf);
    ck_assert(strcasestr(buf, "\r\nAllow: GET, HEAD\r\n") != NULL);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * The endpoint cannot be used to exhaust the daemon: oversized headers and
 * bodies are refused, and past METRICS_MAX_CONNECTIONS idle connections the
 * next one waits until one goes, while the echo goes on meanwhile.
 */
START_TEST(test_metrics_bounds)
{
    struct daemon_proc dp;
    static const char get[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int idle[METRICS_MAX_CONNECTIONS], extra, fd;
    char buf[SCRAPE_MAX], *big;
    const char *body;
    ssize_t n;

    start(&dp, INI_TCP4_ONLY INI_METRICS);

    /* Headers past the bound. */
    big = malloc(2 * METRICS_MAX_HEADERS + 256);
    ck_assert_ptr_nonnull(big);
    n = snprintf(big, 256, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', 2 * METRICS_MAX_HEADERS);
    strcpy(big + n + 2 * METRICS_MAX_HEADERS, "\r\nConnection: close\r\n\r\n");
    n = http_request(dp.dp_metrics_port, big, buf, sizeof(buf), 10000);
    ck_assert_msg(n == 0 || (n > 0 && strncmp(buf, "HTTP/1.1 200", 12) != 0), "%s", buf);
    /* A body past the bound. */
    snprintf(big, 256, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
             METRICS_MAX_BODY * 4);
    n = http_request(dp.dp_metrics_port, big, buf, sizeof(buf), 10000);
    ck_assert_msg(n == 0 || (n > 0 && strncmp(buf, "HTTP/1.1 413", 12) == 0), "%s", buf);
    free(big);

    for (int i = 0; i < METRICS_MAX_CONNECTIONS; i++) {
        idle[i] = tcp_connect(AF_INET, dp.dp_metrics_port);
        ck_assert_int_ge(idle[i], 0);
    }
    /* Let the daemon take them all in. */
    usleep(200000);
    extra = tcp_connect(AF_INET, dp.dp_metrics_port);
    ck_assert_int_ge(extra, 0);
    ck_assert_int_eq(write_all(extra, get, strlen(get)), 0);
    ck_assert_int_eq(read_exact(extra, buf, 1, 500), -ETIMEDOUT);
    /* The echo is not held up meanwhile. */
    fd = tcp_connect(AF_INET, dp.dp_tcp_port);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write_all(fd, "abc", 3), 0);
    ck_assert_int_eq(read_exact(fd, buf, 3, 5000), 3);
    ck_assert(memcmp(buf, "ABC", 3) == 0);
    close(fd);

    close(idle[0]);
    n = read_exact(extra, buf, sizeof(buf) - 1, 10000);
    ck_assert_int_gt(n, 0);
    ck_assert(strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
    close(extra);
    for (int i = 1; i < METRICS_MAX_CONNECTIONS; i++)
        close(idle[i]);
    /* Every slot comes back once they are gone. */
    for (int i = 0; i < METRICS_MAX_CONNECTIONS + 4; i++)
        ck_assert_int_eq(http_get(dp.dp_metrics_port, "/metrics", buf, sizeof(buf), &body), 200);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* Whether anything accepts connections on 127.0.0.1:port. */
static bool
port_open(int port)
{
    int fd = tcp_connect(AF_INET, port);

    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* Reload: enable, move, keep on a failed bind, disable; counters go on across all of it. */
START_TEST(test_metrics_reload)
{
    struct daemon_proc dp;
    char ini[512];
    const char *t;
    int old, busy, busy_port, fd;
    double accepted;

    ck_assert_int_eq(daemon_start(&dp, INI_TCP4_ONLY), 0);
    ck_assert_int_eq(dp.dp_metrics_port, 0);
    fd = tcp_connect(AF_INET, dp.dp_tcp_port);
    ck_assert_int_ge(fd, 0);
    close(fd);

    ck_assert_int_eq(daemon_write_config(&dp, INI_TCP4_ONLY INI_METRICS), 0);
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    for (long long end = now_ms() + 10000; dp.dp_metrics_port == 0 && now_ms() < end;)
        daemon_scan_log(&dp), usleep(10000);
    ck_assert_int_gt(dp.dp_metrics_port, 0);
    t = get_metrics(dp.dp_metrics_port);
    ck_assert_sample(t, "upechod_reloads_total{result=\"success\"}", 1);
    ck_assert_sample(t, "upechod_connections_accepted_total{transport=\"tcp\"}", 1);

    /* A failed reload is counted, and changes nothing else. */
    ck_assert_int_eq(daemon_write_config(&dp, "[tcp]\nbacklog = -1\n"), 0);
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    ck_assert(wait_sample(dp.dp_metrics_port, "upechod_reloads_total{result=\"failure\"}", 1,
                          10000) == 1);

    /* Move to another port: the old one closes. */
    old = dp.dp_metrics_port;
    busy = tcp_listen_on(AF_INET, 0, &busy_port);
    ck_assert_int_ge(busy, 0);
    close(busy);
    snprintf(ini, sizeof(ini), INI_TCP4_ONLY "[metrics]\nenabled = yes\nlisten = 127.0.0.1:%d\n",
             busy_port);
    ck_assert_int_eq(daemon_write_config(&dp, ini), 0);
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    for (long long end = now_ms() + 10000; dp.dp_metrics_port == old && now_ms() < end;)
        daemon_scan_log(&dp), usleep(10000);
    ck_assert_int_eq(dp.dp_metrics_port, busy_port);
    ck_assert(!port_open(old));
    t = get_metrics(busy_port);
    ck_assert_sample(t, "upechod_reloads_total{result=\"success\"}", 2);
    ck_assert_sample(t, "upechod_connections_accepted_total{transport=\"tcp\"}", 1);

    /* A new address that is taken: the endpoint stays where it is. */
    busy = tcp_listen_on(AF_INET, 0, &old);
    ck_assert_int_ge(busy, 0);
    snprintf(ini, sizeof(ini), INI_TCP4_ONLY "[metrics]\nenabled = yes\nlisten = 127.0.0.1:%d\n",
             old);
    ck_assert_int_eq(daemon_write_config(&dp, ini), 0);
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    ck_assert(wait_sample(busy_port, "upechod_reloads_total{result=\"success\"}", 3, 10000) == 3);
    ck_assert(daemon_log_contains(&dp, "still serving them where they were"));
    close(busy);

    /* Counters never go backwards, whatever the reloads did. */
    fd = tcp_connect(AF_INET, dp.dp_tcp_port);
    ck_assert_int_ge(fd, 0);
    close(fd);
    accepted =
        wait_sample(busy_port, "upechod_connections_accepted_total{transport=\"tcp\"}", 2, 10000);
    ck_assert(accepted == 2);

    /* Disabled: nothing listens there any more. */
    ck_assert_int_eq(daemon_write_config(&dp, INI_TCP4_ONLY), 0);
    ck_assert_int_eq(daemon_signal(&dp, SIGHUP), 0);
    for (long long end = now_ms() + 10000; port_open(busy_port) && now_ms() < end;)
        usleep(10000);
    ck_assert(!port_open(busy_port));
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* The daemon refuses to start when the metrics address cannot be bound, naming it. */
START_TEST(test_metrics_bind_failure)
{
    struct daemon_proc dp;
    char ini[512];
    int busy, port;

    busy = tcp_listen_on(AF_INET, 0, &port);
    ck_assert_int_ge(busy, 0);
    snprintf(ini, sizeof(ini), INI_TCP4_ONLY "[metrics]\nenabled = yes\nlisten = 127.0.0.1:%d\n",
             port);
    ck_assert_int_eq(daemon_start(&dp, ini), -ECHILD);
    ck_assert_int_ne(dp.dp_status, 0);
    ck_assert(daemon_log_contains(&dp, "cannot serve metrics on 127.0.0.1:"));
    close(busy);
    daemon_stop(&dp);
}
END_TEST

/*
 * The limits as the metrics show them: a pause at max_connections and the
 * time spent in it, accept failures at the descriptor limit by class and
 * the pause they cause, and a close by idle_timeout.
 */
START_TEST(test_metrics_limits)
{
    struct daemon_proc dp;
    int fds[64], nfds = 0, extra;
    const char *t;
    double paused;

    start(&dp, INI_TCP4_ONLY "[limits]\nmax_connections = 2\nidle_timeout = 1\n" INI_METRICS);
    for (int i = 0; i < 2; i++) {
        fds[i] = tcp_connect(AF_INET, dp.dp_tcp_port);
        ck_assert_int_ge(fds[i], 0);
    }
    ck_assert(wait_sample(dp.dp_metrics_port,
                          "upechod_accept_pauses_total{reason=\"max_connections\"}", 1, 5000) == 1);
    usleep(300000);
    t = get_metrics(dp.dp_metrics_port);
    paused = sample(t, "upechod_accept_paused_seconds_total{reason=\"max_connections\"}");
    ck_assert_msg(paused >= 0.25 && paused < 60, "paused %g s", paused);
    /* Both go idle and are closed, counted by the limit. */
    ck_assert(wait_sample(dp.dp_metrics_port,
                          "upechod_connections_limited_total{limit=\"idle_timeout\"}", 2,
                          10000) == 2);
    t = get_metrics(dp.dp_metrics_port);
    ck_assert_sample(t, "upechod_connections_closed_total{transport=\"tcp\"}", 2);
    /* The pause ended with them: its time stops growing. */
    paused = sample(t, "upechod_accept_paused_seconds_total{reason=\"max_connections\"}");
    usleep(200000);
    ck_assert_sample(get_metrics(dp.dp_metrics_port),
                     "upechod_accept_paused_seconds_total{reason=\"max_connections\"}", paused);
    close(fds[0]);
    close(fds[1]);
    ck_assert_int_eq(daemon_stop(&dp), 0);

    /*
     * Out of descriptors: with 40 allowed, 64 clients exhaust them, the
     * metrics listener's accept included.  Once the clients are gone the
     * failures are counted, by class, and the scrape gets through again.
     */
    ck_assert_int_eq(daemon_start_nofile(&dp, INI_TCP4_ONLY INI_METRICS, 40), 0);
    for (nfds = 0; nfds < 64; nfds++) {
        if ((fds[nfds] = tcp_connect(AF_INET, dp.dp_tcp_port)) < 0)
            break;
    }
    extra = tcp_connect(AF_INET, dp.dp_metrics_port);
    ck_assert_int_ge(extra, 0);
    usleep(500000);
    /* Starved, not spinning and flooding the log: a retry timer, not a busy loop. */
    {
        long long cpu0 = daemon_cpu_ticks(&dp);

        usleep(1000000);
        ck_assert_int_lt(daemon_cpu_ticks(&dp) - cpu0, (under_asan() ? 60 : 30));
        ck_assert_int_eq(daemon_log_count(&dp, "Error from accept"), 0);
    }
    close(extra);
    while (nfds > 0)
        close(fds[--nfds]);
    ck_assert(wait_sample(dp.dp_metrics_port, "upechod_connections_open{transport=\"tcp\"}", 0,
                          10000) == 0);
    t = get_metrics(dp.dp_metrics_port);
    ck_assert_msg(sample(t, "upechod_accept_errors_total{class=\"nofile\"}") >= 1, "%s", t);
    ck_assert_msg(sample(t, "upechod_accept_pauses_total{reason=\"emfile\"}") >= 1, "%s", t);
    ck_assert(sample(t, "upechod_accept_paused_seconds_total{reason=\"emfile\"}") > 0);
    ck_assert_sample(t, "upechod_accept_errors_total{class=\"other\"}", 0);
    ck_assert_sample(t, "process_max_fds", 40);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* Run argv with stdin from in_path (may be NULL) and output to out_path; its exit status. */
static int
run(const char *const *argv, const char *in_path, const char *out_path, pid_t *bg)
{
    pid_t pid = fork();
    int status;

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int in = in_path ? open(in_path, O_RDONLY) : open("/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (in < 0 || out < 0)
            _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (bg != NULL) {
        *bg = pid;
        return 0;
    }
    while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void
dump_file(const char *path)
{
    char line[1024];
    FILE *f = fopen(path, "r");

    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL)
        fputs(line, stderr);
    fclose(f);
}

/* `promtool check metrics` accepts a live scrape taken after traffic of every kind. */
START_TEST(test_metrics_promtool)
{
    struct daemon_proc dp;
    char ini[512], in[PATH_MAX], out[PATH_MAX];
    const char *argv[] = {PROMTOOL, "check", "metrics", NULL};
    const char *t;
    FILE *f;
    int fd, rc;

    snprintf(ini, sizeof(ini), INI_ALL "path = @DIR@/s.sock\n" INI_METRICS);
    start(&dp, ini);
    fd = tcp_connect(AF_INET, dp.dp_tcp_port);
    ck_assert_int_ge(fd, 0);
    echo_over(fd, 100, 1);
    close(fd);
    fd = udp_socket_for(dp.dp_udp_port);
    ck_assert_int_eq(send(fd, "x", 1, 0), 1);
    close(fd);
    ck_assert(wait_sample(dp.dp_metrics_port, "upechod_connection_duration_seconds_count", 1,
                          10000) == 1);
    t = get_metrics(dp.dp_metrics_port);
    snprintf(in, sizeof(in), "%s/scrape.txt", scratch_dir());
    snprintf(out, sizeof(out), "%s/promtool.out", scratch_dir());
    f = fopen(in, "w");
    ck_assert_ptr_nonnull(f);
    fputs(t, f);
    fclose(f);
    rc = run(argv, in, out, NULL);
    if (rc != 0) {
        dump_file(out);
        dump_file(in);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* A free loopback port, found by binding port 0. */
static int
free_port(void)
{
    int port, fd = tcp_listen_on(AF_INET, 0, &port);

    ck_assert_int_ge(fd, 0);
    close(fd);
    return port;
}

/* The string value of the first result of a Prometheus instant query, in val; false if none. */
static bool
prom_query(int port, const char *query, char *val, size_t size)
{
    char path[512], buf[65536];
    const char *body, *v, *e;

    snprintf(path, sizeof(path), "/api/v1/query?query=%s", query);
    if (http_get(port, path, buf, sizeof(buf), &body) != 200)
        return false;
    if ((v = strstr(body, "\"value\":[")) == NULL || (v = strstr(v, ",\"")) == NULL ||
        (e = strchr(v + 2, '"')) == NULL || (size_t)(e - v - 2) >= size)
        return false;
    memcpy(val, v + 2, (size_t)(e - v - 2));
    val[e - v - 2] = '\0';
    return true;
}

/*
 * A real Prometheus scrapes the daemon every second: it must see the
 * target up and exactly the connections the test opened.
 */
START_TEST(test_metrics_prometheus)
{
    struct daemon_proc dp;
    char conf[PATH_MAX], data[PATH_MAX], log[PATH_MAX], listen[64], cflag[PATH_MAX + 32],
        dflag[PATH_MAX + 32], up[32] = "", acc[32] = "", want[32];
    const char *argv[] = {PROMETHEUS, cflag, dflag, listen, "--log.level=warn", NULL};
    int pport = free_port(), opened = 7, status;
    long long deadline;
    pid_t pid;
    FILE *f;

    start(&dp, INI_TCP4_ONLY INI_METRICS);
    snprintf(conf, sizeof(conf), "%s/prometheus.yml", scratch_dir());
    snprintf(data, sizeof(data), "%s/prometheus-data", scratch_dir());
    snprintf(log, sizeof(log), "%s/prometheus.log", scratch_dir());
    snprintf(cflag, sizeof(cflag), "--config.file=%s", conf);
    snprintf(dflag, sizeof(dflag), "--storage.tsdb.path=%s", data);
    snprintf(listen, sizeof(listen), "--web.listen-address=127.0.0.1:%d", pport);
    f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: upechod\n    static_configs:\n"
            "      - targets: ['127.0.0.1:%d']\n",
            dp.dp_metrics_port);
    fclose(f);

    for (int i = 0; i < opened; i++) {
        int fd = tcp_connect(AF_INET, dp.dp_tcp_port);

        ck_assert_int_ge(fd, 0);
        echo_over(fd, 10, (unsigned long long)i);
        close(fd);
    }
    snprintf(want, sizeof(want), "%d", opened);

    run(argv, NULL, log, &pid);
    deadline = now_ms() + (under_asan() ? 90000 : 60000);
    while (now_ms() < deadline) {
        if (prom_query(pport, "up%7Bjob%3D%22upechod%22%7D", up, sizeof(up)) &&
            prom_query(pport, "upechod_connections_accepted_total%7Btransport%3D%22tcp%22%7D", acc,
                       sizeof(acc)) &&
            strcmp(up, "1") == 0 && strcmp(acc, want) == 0)
            break;
        usleep(250000);
    }
    kill(pid, SIGTERM);
    for (long long end = now_ms() + 10000; now_ms() < end;) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            pid = -1;
            break;
        }
        usleep(50000);
    }
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    if (strcmp(up, "1") != 0 || strcmp(acc, want) != 0)
        dump_file(log);
    ck_assert_msg(strcmp(up, "1") == 0, "up{job=\"upechod\"} is \"%s\"", up);
    ck_assert_msg(strcmp(acc, want) == 0, "upechod_connections_accepted_total is \"%s\", not %s",
                  acc, want);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

int
main(int argc, char **argv)
{
    const char *part = argc > 1 ? argv[1] : "core";
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create(part);

    /* Each tool is its own meson test, skipped (77) where it is not installed. */
    if (strcmp(part, "promtool") == 0 || strcmp(part, "prometheus") == 0) {
        const char *bin = part[4] == 't' ? PROMTOOL : PROMETHEUS;

        if (access(bin, X_OK) != 0) {
            printf("SKIP: %s is not installed (Debian package prometheus)\n", bin);
            return 77;
        }
    }
    tcase_add_unchecked_fixture(tc, scratch_setup, scratch_teardown);
    tcase_set_timeout(tc, 120);
    if (strcmp(part, "promtool") == 0) {
        tcase_add_test(tc, test_metrics_promtool);
    } else if (strcmp(part, "prometheus") == 0) {
        tcase_add_test(tc, test_metrics_prometheus);
    } else {
        tcase_add_test(tc, test_metrics_exact_counts);
        tcase_add_test(tc, test_metrics_http);
        tcase_add_test(tc, test_metrics_bounds);
        tcase_add_test(tc, test_metrics_reload);
        tcase_add_test(tc, test_metrics_bind_failure);
        tcase_add_test(tc, test_metrics_limits);
    }
    suite_add_tcase(s, tc);
    return check_main(s, CK_NORMAL);
}
