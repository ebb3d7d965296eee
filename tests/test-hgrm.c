/* test-hgrm.c: HdrHistogram's text format and the compact latency curve, on known histograms. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check-main.h"
#include "hgrm.h"

/* Write h's .hgrm to memory; the caller frees the text. */
static char *
hgrm_text(const struct hist *h)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(hgrm_write(f, h), 0);
    fclose(f);
    return buf;
}

/* 1 to 100000 ns, once each: every percentile's value is known. */
static struct hist *
uniform(void)
{
    struct hist *h = hist_new();

    for (uint64_t v = 1; v <= 100000; v++)
        hist_record(h, v);
    return h;
}

START_TEST(test_hgrm_layout)
{
    struct hist *h = uniform();
    char *text = hgrm_text(h), *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    double prev_value = -1, prev_pct = -1, value, pct, inv;
    unsigned long long count, prev_count = 0;
    int rows = 0, last = 0;

    ck_assert_str_eq(line, "       Value     Percentile TotalCount 1/(1-Percentile)");
    while ((line = strtok_r(NULL, "\n", &save)) != NULL && line[0] != '#') {
        int n = sscanf(line, "%lf %lf %llu %lf", &value, &pct, &count, &inv);

        ck_assert_msg(!last, "a line after the 100%% line: %s", line);
        ck_assert_msg(n == 4 || (n == 3 && pct == 1.0), "bad line: %s", line);
        last = n == 3;
        if (n == 4)
            ck_assert_msg(fabs(inv - 1.0 / (1.0 - pct)) <= 0.006 + 1e-6 * inv, "%s", line);
        ck_assert(value >= prev_value && pct > prev_pct && count >= prev_count);
        /* A line's value is what the summary reports at its percentile, in ms. */
        if (pct < 1.0)
            ck_assert_msg(fabs(value - (double)hist_percentile(h, pct * 100.0 - 1e-7) / 1e6) < 1e-6,
                          "%s: hist_percentile gives %llu ns", line,
                          (unsigned long long)hist_percentile(h, pct * 100.0 - 1e-7));
        /* TotalCount is the number of values in buckets up to this line's. */
        ck_assert(count >= pct * 100000.0 - 1e-6);
        prev_value = value, prev_pct = pct, prev_count = count;
        rows++;
    }
    ck_assert(last);
    ck_assert_uint_eq(prev_count, 100000);
    ck_assert(fabs(prev_value - 0.1) < 1e-9);
    /* HdrHistogram's ticks: 0, 10, ..., 50, 55, ..., 75, 77.5, ... doubling near 100%. */
    ck_assert_int_gt(rows, 40);
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(line, "#[Mean    =     0.050001, StdDeviation   =     0.028868]");
    line = strtok_r(NULL, "\n", &save);
    ck_assert_str_eq(line, "#[Max     =     0.100000, Total count    =       100000]");
    line = strtok_r(NULL, "\n", &save);
    ck_assert_str_eq(line, "#[Buckets =           57, SubBuckets     =          256]");
    ck_assert_ptr_null(strtok_r(NULL, "\n", &save));
    free(text);
    hist_free(h);
}
END_TEST

/* The exact percentile lines HdrHistogram's default iteration gives, at its start. */
START_TEST(test_hgrm_ticks)
{
    static const double want[] = {0.0,  0.1,   0.2, 0.3,   0.4,  0.5,   0.55,   0.6, 0.65,  0.7,
                                  0.75, 0.775, 0.8, 0.825, 0.85, 0.875, 0.8875, 0.9, 0.9125};
    struct hist *h = uniform();
    char *text = hgrm_text(h), *p = strchr(text, '\n') + 2;

    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        double value, pct;

        ck_assert_int_eq(sscanf(p, "%lf %lf", &value, &pct), 2);
        ck_assert_msg(fabs(pct - want[i]) < 1e-12, "line %zu: %.12f, not %.12f", i, pct, want[i]);
        p = strchr(p, '\n') + 1;
    }
    free(text);
    hist_free(h);
}
END_TEST

START_TEST(test_hgrm_empty)
{
    struct hist *h = hist_new();
    struct hgrm_point pts[HGRM_POINTS_MAX];
    char *text = hgrm_text(h);

    ck_assert_str_eq(text, "       Value     Percentile TotalCount 1/(1-Percentile)\n\n"
                           "#[Mean    =     0.000000, StdDeviation   =     0.000000]\n"
                           "#[Max     =     0.000000, Total count    =            0]\n"
                           "#[Buckets =           57, SubBuckets     =          256]\n");
    ck_assert_uint_eq(hgrm_points(h, pts), 0);
    free(text);
    hist_free(h);
}
END_TEST

/* The curve: fixed head, 5-2-1 per decade while the tail holds a value, then the max. */
START_TEST(test_hgrm_points)
{
    static const double want[] = {0,    25,   50,    75,    90,    95,     98,     99,     99.5,
                                  99.8, 99.9, 99.95, 99.98, 99.99, 99.995, 99.998, 99.999, 100};
    struct hist *h = uniform();
    struct hgrm_point pts[HGRM_POINTS_MAX];
    size_t n = hgrm_points(h, pts);

    ck_assert_uint_eq(n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(pts[i].hp_percentile == want[i], "point %zu: %.17g, not %.17g", i,
                      pts[i].hp_percentile, want[i]);
        ck_assert_uint_eq(pts[i].hp_value, hist_percentile(h, want[i]));
    }
    ck_assert_uint_eq(pts[n - 1].hp_value, 100000);
    hist_free(h);

    /* One value: the head and the max only, all of them that value. */
    h = hist_new();
    hist_record(h, 4242);
    n = hgrm_points(h, pts);
    ck_assert_uint_eq(n, 6);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(pts[i].hp_value, 4242);
    hist_free(h);

    /* The most values a histogram can count still fits. */
    h = hist_new();
    hist_record_n(h, 1000, UINT64_MAX / 2);
    ck_assert_uint_le(hgrm_points(h, pts), HGRM_POINTS_MAX);
    hist_free(h);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("hgrm");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_hgrm_layout);
    tcase_add_test(tc, test_hgrm_ticks);
    tcase_add_test(tc, test_hgrm_empty);
    tcase_add_test(tc, test_hgrm_points);
    suite_add_tcase(s, tc);
    return check_main(s, CK_NORMAL);
}
