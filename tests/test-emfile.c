/* test-emfile.c: the daemon out of descriptors pauses accepting, stays quiet, and recovers. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

/* The daemon's open-file limit: room for a few dozen connections. */
#define NOFILE 40
/* Clients left waiting in the backlog once the daemon is out of descriptors. */
#define NPENDING 12
/* How long the starved daemon is watched, and what it may spend meanwhile. */
#define STARVE_MS 2000
#define STARVE_MAX_CPU 0.05
/* Bound on serving a waiting client once a descriptor is free (100 ms intended, with slack). */
#define REACCEPT_MAX_MS 300

static const char starve_ini[] = INI_TCP4_ONLY "[limits]\n"
                                               "max_connections = 1000\n";

static const char fits_ini[] = INI_TCP4_ONLY "[limits]\n"
                                             "max_connections = 10\n";

static const char starve_line[] = "cannot accept connections: ";
static const char again_line[] = "accepting connections again";

struct starved {
    struct daemon_proc s_dp;
    int s_served[NOFILE];
    size_t s_nserved;
    int s_pending[NPENDING];
    bool s_pserved[NPENDING]; /* that waiting client got its echo */
};

static void
start_nofile(struct daemon_proc *dp, const char *ini, unsigned long nofile)
{
    int r = daemon_start_nofile(dp, ini, nofile);

    ck_assert_msg(r == 0, "daemon_start_nofile: %s", strerror(-r));
    ck_assert_int_gt(dp->dp_tcp_port, 0);
}

/*
 * Client i sends one byte of its own and, when served, gets it back
 * uppercased; the clients left waiting are numbered on from the served ones.
 */
static char
tag(size_t i)
{
    return (char)('a' + i % 26);
}

static ssize_t
read_tag(int fd, size_t i, int timeout_ms)
{
    char c = 0;
    ssize_t n = read_exact(fd, &c, 1, timeout_ms);

    if (n == 1)
        ck_assert_int_eq(c, tag(i) - 'a' + 'A');
    return n;
}

/*
 * Wait for one more of the waiting clients to be served and check its
 * echo; 1, or -ETIMEDOUT.  Which one is up to the daemon: with several
 * workers each has its own backlog (SO_REUSEPORT), so the clients are not
 * served in the order they connected.
 */
static int
serve_one_pending(struct starved *s, int timeout_ms)
{
    struct pollfd pfd[NPENDING];
    size_t idx[NPENDING], n = 0;

    for (size_t i = 0; i < NPENDING; i++) {
        if (s->s_pserved[i])
            continue;
        pfd[n] = (struct pollfd){.fd = s->s_pending[i], .events = POLLIN};
        idx[n++] = i;
    }
    if (n == 0 || poll(pfd, n, timeout_ms) <= 0)
        return -ETIMEDOUT;
    for (size_t j = 0; j < n; j++) {
        if (pfd[j].revents == 0)
            continue;
        ck_assert_int_eq(read_tag(s->s_pending[idx[j]], s->s_nserved + idx[j], 1000), 1);
        s->s_pserved[idx[j]] = true;
        return 1;
    }
    return -ETIMEDOUT;
}

/*
 * Connect until the daemon runs out of descriptors: each client waits for
 * its echo, or for the daemon's log to report the failed accept, in which
 * case it is the first one left in the backlog.  Then queue more behind it.
 */
static void
starve(struct starved *s)
{
    s->s_nserved = 0;
    memset(s->s_pserved, 0, sizeof(s->s_pserved));
    for (;;) {
        size_t i = s->s_nserved;
        long long deadline = now_ms() + 10000;
        int fd;

        ck_assert_msg(i < NOFILE, "%zu clients served with an open-file limit of %d", i, NOFILE);
        fd = connect_or_fail(AF_INET, s->s_dp.dp_tcp_port);
        ck_assert_int_eq(write_all(fd, (char[]){tag(i)}, 1), 0);
        for (;;) {
            ssize_t n = read_tag(fd, i, 5);

            if (n == 1) {
                s->s_served[s->s_nserved++] = fd;
                break;
            }
            ck_assert_int_eq(n, -ETIMEDOUT);
            if (daemon_log_contains(&s->s_dp, starve_line)) {
                s->s_pending[0] = fd;
                break;
            }
            ck_assert_msg(now_ms() < deadline, "client %zu neither served nor refused", i);
        }
        if (s->s_nserved == i)
            break;
    }
    /* It is refused for good, not late: no echo while nothing closes. */
    ck_assert_int_eq(read_tag(s->s_pending[0], s->s_nserved, 300), -ETIMEDOUT);
    for (size_t i = 1; i < NPENDING; i++) {
        s->s_pending[i] = connect_or_fail(AF_INET, s->s_dp.dp_tcp_port);
        ck_assert_int_eq(write_all(s->s_pending[i], (char[]){tag(s->s_nserved + i)}, 1), 0);
    }
    fprintf(stderr, "emfile: %zu clients served with an open-file limit of %d\n", s->s_nserved,
            NOFILE);
    ck_assert_uint_ge(s->s_nserved, 10);
    ck_assert_uint_ge(s->s_nserved, (size_t)NPENDING);
}

/* The count in the last "(N failures since the last report)" the daemon logged, or -1. */
static long
last_failure_count(const struct daemon_proc *dp)
{
    char line[1024];
    long last = -1;
    FILE *f = fopen(dp->dp_log, "re");

    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *p = strstr(line, starve_line);
        const char *q = p ? strstr(p, "failures since the last report") : NULL;

        if (q == NULL)
            continue;
        while (q > p && q[-1] != '(')
            q--;
        last = strtol(q, NULL, 10);
    }
    fclose(f);
    return last;
}

static int
nlines(const struct daemon_proc *dp)
{
    int a = daemon_log_count(dp, starve_line), b = daemon_log_count(dp, again_line);

    ck_assert_int_ge(a, 0);
    ck_assert_int_ge(b, 0);
    return a + b;
}

static void
close_all(struct starved *s)
{
    for (size_t i = 0; i < s->s_nserved; i++)
        if (s->s_served[i] >= 0)
            close(s->s_served[i]);
    for (size_t i = 0; i < NPENDING; i++)
        close(s->s_pending[i]);
}

/* At start, the daemon says when max_connections cannot fit its open-file limit, and only then. */
START_TEST(test_warns_at_start)
{
    struct daemon_proc dp;
    char want[128];

    start_nofile(&dp, starve_ini, NOFILE);
    snprintf(want, sizeof(want), "max_connections = 1000 does not fit the open-file limit of %d",
             NOFILE);
    ck_assert_msg(daemon_log_contains(&dp, want), "no warning '%s'", want);
    ck_assert_int_eq(daemon_stop(&dp), 0);

    start_nofile(&dp, fits_ini, 100);
    ck_assert(!daemon_log_contains(&dp, "does not fit the open-file limit"));
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * Out of descriptors with clients waiting: the daemon pauses accepting and
 * retries from a timer (a few dozen failures a second, not a busy loop),
 * logs at most one line a second with a count, uses at most 5% of a core,
 * and serves a waiting client right after a descriptor is freed.
 */
START_TEST(test_starved_then_recovers)
{
    long tck = sysconf(_SC_CLK_TCK);
    struct starved s;
    long long t0, ticks0, ticks1, elapsed, lat[2];
    int lines0, lines1;
    long count;
    double cpu;

    start_nofile(&s.s_dp, starve_ini, NOFILE);
    starve(&s);

    lines0 = daemon_log_count(&s.s_dp, starve_line);
    ticks0 = daemon_cpu_ticks(&s.s_dp);
    t0 = now_ms();
    usleep(STARVE_MS * 1000);
    ticks1 = daemon_cpu_ticks(&s.s_dp);
    elapsed = now_ms() - t0;
    lines1 = daemon_log_count(&s.s_dp, starve_line);
    ck_assert_int_ge(ticks0, 0);
    ck_assert_int_ge(ticks1, ticks0);
    cpu = (double)(ticks1 - ticks0) / (double)tck / ((double)elapsed / 1000.0);
    count = last_failure_count(&s.s_dp);
    fprintf(stderr,
            "emfile: starved for %lld ms: %.3f of a core (%lld ticks at %ld Hz), %d log lines, "
            "last one counting %ld failures\n",
            elapsed, cpu, ticks1 - ticks0, tck, lines1 - lines0, count);
    ck_assert_msg(cpu <= STARVE_MAX_CPU, "%.3f of a core while starved", cpu);
    ck_assert_msg(lines1 - lines0 >= 1 && lines1 - lines0 <= STARVE_MS / 1000 + 1,
                  "%d lines in %lld ms", lines1 - lines0, elapsed);
    ck_assert(daemon_log_contains(&s.s_dp, "Too many open files"));
    /* Retried from a 50 ms timer: about 20 failures a second between two lines. */
    ck_assert_msg(count >= 3 && count <= 100, "%ld failures in about a second", count);
    for (size_t i = 0; i < NPENDING; i++)
        ck_assert_int_eq(read_tag(s.s_pending[i], s.s_nserved + i, 0), -ETIMEDOUT);

    for (size_t k = 0; k < 2; k++) {
        close(s.s_served[k]);
        s.s_served[k] = -1;
        t0 = now_ms();
        ck_assert_int_eq(serve_one_pending(&s, 5000), 1);
        lat[k] = now_ms() - t0;
    }
    fprintf(stderr, "emfile: waiting clients served %lld ms and %lld ms after a close\n", lat[0],
            lat[1]);
    ck_assert_msg(lat[0] <= REACCEPT_MAX_MS && lat[1] <= REACCEPT_MAX_MS,
                  "served %lld ms and %lld ms after a descriptor was freed", lat[0], lat[1]);
    /* One freed, one served: the rest still wait. */
    ck_assert_int_eq(serve_one_pending(&s, 200), -ETIMEDOUT);

    close_all(&s);
    ck_assert_int_eq(daemon_stop(&s.s_dp), 0);
}
END_TEST

/*
 * At the limit with clients queued, each close lets exactly one more in
 * and the next accept fails again.  That churn must not turn into a log
 * line per connection: still at most one line a second.
 */
START_TEST(test_churn_stays_quiet)
{
    struct starved s;
    long long t0, elapsed;
    int lines0, lines1, fd;

    start_nofile(&s.s_dp, starve_ini, NOFILE);
    starve(&s);
    /* Let the first report's second pass, so the churn starts with a line allowed. */
    usleep(1100 * 1000);
    lines0 = nlines(&s.s_dp);
    t0 = now_ms();
    for (size_t k = 0; k < NPENDING - 1; k++) {
        close(s.s_served[k]);
        s.s_served[k] = -1;
        ck_assert_int_eq(serve_one_pending(&s, 5000), 1);
    }
    elapsed = now_ms() - t0;
    lines1 = nlines(&s.s_dp);
    fprintf(stderr, "emfile: %d clients let in one by one in %lld ms, %d log lines\n", NPENDING - 1,
            elapsed, lines1 - lines0);
    ck_assert_msg(lines1 - lines0 <= elapsed / 1000 + 1, "%d log lines in %lld ms of churn",
                  lines1 - lines0, elapsed);

    /* Everyone out: the daemon serves newcomers normally again. */
    close_all(&s);
    fd = connect_or_fail(AF_INET, s.s_dp.dp_tcp_port);
    ck_assert_int_eq(write_all(fd, "z", 1), 0);
    ck_assert_int_eq(read_tag(fd, 25, 5000), 1);
    close(fd);
    ck_assert_int_eq(daemon_stop(&s.s_dp), 0);
}
END_TEST

static Suite *
emfile_suite(void)
{
    Suite *s = suite_create("emfile");
    TCase *tc = tcase_create("emfile");

    tcase_add_test(tc, test_warns_at_start);
    tcase_add_test(tc, test_starved_then_recovers);
    tcase_add_test(tc, test_churn_stays_quiet);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    /* Our own clients must not run out first. */
    if (raise_nofile(4 * NOFILE) != 0) {
        fprintf(stderr, "cannot raise our open-file limit to %d\n", 4 * NOFILE);
        return EXIT_FAILURE;
    }
    return check_main(emfile_suite(), CK_ENV);
}
