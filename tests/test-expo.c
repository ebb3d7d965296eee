/* test-expo.c: the Prometheus text writer, compared with the exact text it must produce. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "check-main.h"
#include "expo.h"
#include "metrics.h"

static struct evbuffer *out;

static void
setup(void)
{
    out = evbuffer_new();
    ck_assert_ptr_nonnull(out);
}

static void
teardown(void)
{
    evbuffer_free(out);
}

/* What was written so far, as a string; a static copy valid until the next call. */
static const char *
text(void)
{
    static char buf[65536];
    size_t n = evbuffer_get_length(out);

    ck_assert_uint_lt(n, sizeof(buf));
    evbuffer_copyout(out, buf, n);
    buf[n] = '\0';
    return buf;
}

START_TEST(test_expo_counter_and_gauge)
{
    expo_family(out, "up_things_total", "counter", "Things seen.");
    expo_u64(out, "up_things_total", NULL, 0);
    expo_family(out, "up_big", "gauge", "The largest value.");
    expo_u64(out, "up_big", NULL, UINT64_MAX);
    expo_double(out, "up_ratio", NULL, 0.25);
    ck_assert_str_eq(text(), "# HELP up_things_total Things seen.\n"
                             "# TYPE up_things_total counter\n"
                             "up_things_total 0\n"
                             "# HELP up_big The largest value.\n"
                             "# TYPE up_big gauge\n"
                             "up_big 18446744073709551615\n"
                             "up_ratio 0.25\n");
}
END_TEST

/* Label values escape \, " and newline; HELP escapes \ and newline but not the quote. */
START_TEST(test_expo_escaping)
{
    const char *one[] = {"transport", "tcp", NULL};
    const char *two[] = {"a", "x\"y\\z\nw", "b", "", NULL};

    expo_family(out, "up_x", "counter", "A \"quoted\" back\\slash\nand a new line.");
    expo_u64(out, "up_x", one, 7);
    expo_u64(out, "up_x", two, 8);
    ck_assert_str_eq(text(), "# HELP up_x A \"quoted\" back\\\\slash\\nand a new line.\n"
                             "# TYPE up_x counter\n"
                             "up_x{transport=\"tcp\"} 7\n"
                             "up_x{a=\"x\\\"y\\\\z\\nw\",b=\"\"} 8\n");
}
END_TEST

START_TEST(test_expo_doubles)
{
    char buf[32];

    ck_assert_str_eq(expo_format_double(buf, sizeof(buf), 0), "0");
    ck_assert_str_eq(expo_format_double(buf, sizeof(buf), 1), "1");
    ck_assert_str_eq(expo_format_double(buf, sizeof(buf), 0.001), "0.001");
    ck_assert_str_eq(expo_format_double(buf, sizeof(buf), 0.1), "0.1");
    ck_assert_str_eq(expo_format_double(buf, sizeof(buf), 1073741824), "1073741824");
    ck_assert_str_eq(expo_format_double(buf, sizeof(buf), 1796173949.63), "1796173949.63");
    ck_assert_str_eq(expo_format_double(buf, sizeof(buf), 1.0 / 3), "0.33333333333333331");
    ck_assert_str_eq(expo_format_double(buf, sizeof(buf), INFINITY), "+Inf");
    ck_assert_str_eq(expo_format_double(buf, sizeof(buf), -INFINITY), "-Inf");
    ck_assert_str_eq(expo_format_double(buf, sizeof(buf), NAN), "NaN");
    ck_assert_str_eq(expo_format_double(buf, sizeof(buf), 1e-7), "1e-07");
}
END_TEST

/* Buckets are cumulative, +Inf last and equal to _count; labels come before le. */
START_TEST(test_expo_histogram)
{
    static const double bounds[] = {0.5, 1, 10};
    const uint64_t counts[] = {2, 0, 3, 1};
    const char *labels[] = {"transport", "unix", NULL};

    expo_family(out, "up_seconds", "histogram", "How long.");
    expo_histogram(out, "up_seconds", NULL, bounds, 3, counts, 12.5);
    expo_histogram(out, "up_seconds", labels, bounds, 3, counts, 12.5);
    ck_assert_str_eq(text(), "# HELP up_seconds How long.\n"
                             "# TYPE up_seconds histogram\n"
                             "up_seconds_bucket{le=\"0.5\"} 2\n"
                             "up_seconds_bucket{le=\"1\"} 2\n"
                             "up_seconds_bucket{le=\"10\"} 5\n"
                             "up_seconds_bucket{le=\"+Inf\"} 6\n"
                             "up_seconds_sum 12.5\n"
                             "up_seconds_count 6\n"
                             "up_seconds_bucket{transport=\"unix\",le=\"0.5\"} 2\n"
                             "up_seconds_bucket{transport=\"unix\",le=\"1\"} 2\n"
                             "up_seconds_bucket{transport=\"unix\",le=\"10\"} 5\n"
                             "up_seconds_bucket{transport=\"unix\",le=\"+Inf\"} 6\n"
                             "up_seconds_sum{transport=\"unix\"} 12.5\n"
                             "up_seconds_count{transport=\"unix\"} 6\n");
}
END_TEST

/* An empty histogram still has every bucket, at 0. */
START_TEST(test_expo_histogram_empty)
{
    static const double bounds[] = {1};
    const uint64_t counts[] = {0, 0};

    expo_histogram(out, "up_b", NULL, bounds, 1, counts, 0);
    ck_assert_str_eq(text(), "up_b_bucket{le=\"1\"} 0\n"
                             "up_b_bucket{le=\"+Inf\"} 0\n"
                             "up_b_sum 0\n"
                             "up_b_count 0\n");
}
END_TEST

/* The daemon's whole exposition: the lines a snapshot turns into. */
START_TEST(test_expo_render)
{
    struct server_stats s;
    struct metrics_process p = {.mp_ok = 0};
    const char *t;

    memset(&s, 0, sizeof(s));
    s.ss_t_accepted[TRANSPORT_TCP] = 5;
    s.ss_t_closed[TRANSPORT_TCP] = 3;
    s.ss_open[TRANSPORT_TCP] = 2;
    s.ss_t_bytes_in[TRANSPORT_UDP] = 99;
    s.ss_drop_ratelimit = 4;
    s.ss_paused_full_usec = 1500000;
    s.ss_lifetime_buckets[0] = 1;
    s.ss_lifetime_buckets[STATS_LIFETIME_NBOUNDS] = 2;
    s.ss_lifetime_usec = 7200000001;
    s.ss_workers = 1;
    metrics_render(out, &s, &p);
    t = text();
    ck_assert_ptr_nonnull(strstr(t, "\nupechod_connections_accepted_total{transport=\"tcp\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nupechod_connections_closed_total{transport=\"tcp\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "upechod_connections_open{transport=\"tcp\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nupechod_received_bytes_total{transport=\"udp\"} 99\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "\nupechod_datagrams_dropped_total{reason=\"rate_limit\"} 4\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "\nupechod_accept_paused_seconds_total{reason=\"max_connections\"} 1.5\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "\nupechod_connection_duration_seconds_bucket{le=\"0.001\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "\nupechod_connection_duration_seconds_bucket{le=\"3600\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "\nupechod_connection_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nupechod_connection_duration_seconds_sum 7200.000001\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nupechod_workers 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nupechod_build_info{version=\""));
    /* Without /proc, no process_* family at all rather than zeros. */
    ck_assert_ptr_null(strstr(t, "process_"));
    /* Every family has its HELP and TYPE before its first sample. */
    ck_assert_ptr_nonnull(strstr(t, "# HELP upechod_datagrams_dropped_total "));
    ck_assert_ptr_nonnull(strstr(t, "# TYPE upechod_datagrams_dropped_total counter\n"));
    ck_assert(t[strlen(t) - 1] == '\n');
}
END_TEST

/* /proc/self as the process collector reads it: this very test process. */
START_TEST(test_expo_process)
{
    struct metrics_process p;

    metrics_read_process(&p);
    ck_assert_int_eq(p.mp_ok, 1);
    ck_assert(p.mp_start_time > 1e9);
    ck_assert_uint_gt(p.mp_rss_bytes, 0);
    ck_assert_uint_ge(p.mp_open_fds, 3);
    ck_assert_uint_ge(p.mp_max_fds, p.mp_open_fds);
    metrics_render(out, &(struct server_stats){0}, &p);
    ck_assert_ptr_nonnull(strstr(text(), "\n# TYPE process_cpu_seconds_total counter\n"));
}
END_TEST

static Suite *
expo_suite(void)
{
    Suite *s = suite_create("expo");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_expo_counter_and_gauge);
    tcase_add_test(tc, test_expo_escaping);
    tcase_add_test(tc, test_expo_doubles);
    tcase_add_test(tc, test_expo_histogram);
    tcase_add_test(tc, test_expo_histogram_empty);
    tcase_add_test(tc, test_expo_render);
    tcase_add_test(tc, test_expo_process);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(expo_suite(), CK_NORMAL);
}
