/* test-hist.c: the latency histogram against a sorted-array oracle. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check-main.h"
#include "hist.h"

#define ORACLE_N 200000

static const double test_percents[] = {0.0,  1.0,  10.0, 25.0,  50.0,   75.0, 90.0,
                                       95.0, 99.0, 99.9, 99.99, 99.999, 100.0};

/* xorshift64*: a fixed-seed generator, so failures reproduce. */
static uint64_t
test_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static int
test_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The nearest-rank percentile of a sorted array, the definition hist_percentile() follows. */
static uint64_t
oracle_percentile(const uint64_t *v, size_t n, double percent)
{
    double want;
    uint64_t rank;

    if (percent <= 0.0)
        return v[0];
    if (percent >= 100.0)
        return v[n - 1];
    want = percent / 100.0 * (double)n;
    rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;
    return v[rank - 1];
}

/* Check every percentile, min, max, count and mean of h against the values it was fed. */
static void
check_against_oracle(const struct hist *h, uint64_t *v, size_t n, const char *what)
{
    double sum = 0.0;

    qsort(v, n, sizeof(*v), test_cmp);
    ck_assert_uint_eq(hist_count(h), n);
    ck_assert_uint_eq(hist_min(h), v[0]);
    ck_assert_uint_eq(hist_max(h), v[n - 1]);
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    ck_assert_msg(fabs(hist_mean(h) - sum / (double)n) <= 1e-9 * (sum / (double)n) + 1e-9,
                  "%s: mean %f, want %f", what, hist_mean(h), sum / (double)n);
    for (size_t i = 0; i < sizeof(test_percents) / sizeof(test_percents[0]); i++) {
        uint64_t want = oracle_percentile(v, n, test_percents[i]);
        uint64_t got = hist_percentile(h, test_percents[i]);
        double err = fabs((double)got - (double)want) / (double)(want > 0 ? want : 1);

        ck_assert_msg(err <= 0.01, "%s: p%g = %llu, oracle %llu (%.3f%% off)", what,
                      test_percents[i], (unsigned long long)got, (unsigned long long)want,
                      err * 100.0);
    }
}

/* Generate n values of one distribution. */
static void
gen_values(uint64_t *v, size_t n, int kind, uint64_t *seed)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t r = test_rand(seed);

        switch (kind) {
        case 0: /* uniform, small: the exact region and the first few powers of two */
            v[i] = r % 1000;
            break;
        case 1: /* uniform over typical latencies: 10 us to 10 ms in ns */
            v[i] = 10000 + r % 10000000;
            break;
        case 2: /* log-uniform over the whole 64-bit range */
            v[i] = r >> (test_rand(seed) % 64);
            break;
        case 3: /* long tail: mostly ~50 us, a few multi-second outliers */
            v[i] = (r % 1000 == 0) ? 1000000000ULL + r % 5000000000ULL : 40000 + r % 20000;
            break;
        default: /* a handful of distinct values, many repeats */
            v[i] = (uint64_t)1 << (r % 40);
            break;
        }
    }
}

START_TEST(test_hist_oracle)
{
    uint64_t seed = 0x9E3779B97F4A7C15ULL + (uint64_t)_i;
    uint64_t *v = malloc(ORACLE_N * sizeof(*v));
    struct hist *h = hist_new();
    char what[32];

    ck_assert_ptr_nonnull(v);
    ck_assert_ptr_nonnull(h);
    gen_values(v, ORACLE_N, _i, &seed);
    for (size_t i = 0; i < ORACLE_N; i++)
        hist_record(h, v[i]);
    snprintf(what, sizeof(what), "distribution %d", _i);
    check_against_oracle(h, v, ORACLE_N, what);
    hist_free(h);
    free(v);
}
END_TEST

/* Small counts are where rank rounding goes wrong. */
START_TEST(test_hist_small_counts)
{
    uint64_t seed = 42;
    uint64_t v[64];

    for (size_t n = 1; n <= 64; n++) {
        struct hist *h = hist_new();

        gen_values(v, n, 2, &seed);
        for (size_t i = 0; i < n; i++)
            hist_record(h, v[i]);
        check_against_oracle(h, v, n, "small");
        hist_free(h);
    }
}
END_TEST

START_TEST(test_hist_exact_below_128)
{
    struct hist *h = hist_new();

    for (uint64_t i = 0; i < 128; i++)
        hist_record(h, i);
    for (uint64_t i = 1; i <= 128; i++)
        ck_assert_uint_eq(hist_percentile(h, (double)i * 100.0 / 128.0), i - 1);
    hist_free(h);
}
END_TEST

START_TEST(test_hist_empty)
{
    struct hist *h = hist_new();

    ck_assert_uint_eq(hist_count(h), 0);
    ck_assert_uint_eq(hist_min(h), 0);
    ck_assert_uint_eq(hist_max(h), 0);
    ck_assert_uint_eq(hist_percentile(h, 50.0), 0);
    ck_assert(hist_mean(h) == 0.0);
    hist_free(NULL);
    hist_free(h);
}
END_TEST

START_TEST(test_hist_extremes)
{
    struct hist *h = hist_new();

    hist_record(h, UINT64_MAX);
    hist_record(h, 0);
    hist_record_n(h, 1ULL << 63, 3);
    ck_assert_uint_eq(hist_count(h), 5);
    ck_assert_uint_eq(hist_min(h), 0);
    ck_assert_uint_eq(hist_max(h), UINT64_MAX);
    ck_assert_uint_eq(hist_percentile(h, 100.0), UINT64_MAX);
    ck_assert_uint_eq(hist_percentile(h, 20.0), 0);
    ck_assert(fabs((double)hist_percentile(h, 50.0) / (double)(1ULL << 63) - 1.0) <= 0.01);
    hist_record_n(h, 5, 0);
    ck_assert_uint_eq(hist_count(h), 5);
    hist_free(h);
}
END_TEST

/* Merging per-thread histograms must give exactly what recording into one does. */
START_TEST(test_hist_merge_equals_single)
{
    uint64_t seed = 7;
    struct hist *parts[4], *all = hist_new(), *merged = hist_new();
    uint64_t *v = malloc(ORACLE_N * sizeof(*v));

    ck_assert_ptr_nonnull(v);
    for (int p = 0; p < 4; p++)
        parts[p] = hist_new();
    for (size_t i = 0; i < ORACLE_N; i++) {
        gen_values(&v[i], 1, (int)(i % 5), &seed);
        hist_record(all, v[i]);
        /* Part 3 stays empty: merging an empty histogram must change nothing. */
        hist_record(parts[i % 3], v[i]);
    }
    for (int p = 0; p < 4; p++)
        hist_merge(merged, parts[p]);
    ck_assert_uint_eq(hist_count(merged), hist_count(all));
    ck_assert_uint_eq(hist_min(merged), hist_min(all));
    ck_assert_uint_eq(hist_max(merged), hist_max(all));
    ck_assert_int_eq(memcmp(merged->h_buckets, all->h_buckets, sizeof(all->h_buckets)), 0);
    for (size_t i = 0; i < sizeof(test_percents) / sizeof(test_percents[0]); i++)
        ck_assert_uint_eq(hist_percentile(merged, test_percents[i]),
                          hist_percentile(all, test_percents[i]));
    ck_assert(fabs(hist_mean(merged) - hist_mean(all)) <= 1e-6 * hist_mean(all));
    check_against_oracle(merged, v, ORACLE_N, "merged");
    hist_reset(merged);
    ck_assert_uint_eq(hist_count(merged), 0);
    for (int p = 0; p < 4; p++)
        hist_free(parts[p]);
    hist_free(all);
    hist_free(merged);
    free(v);
}
END_TEST

/* hist_next() visits each bucket in use once, lowest first, with the value hist_percentile() gives.
 */
START_TEST(test_hist_next)
{
    struct hist *h = hist_new();
    uint64_t seed = 11, total = 0, value, count, last = 0, seen_rank = 0;
    unsigned pos = 0;
    int first = 1;

    ck_assert_int_eq(hist_next(h, &pos, &value, &count), 0);
    for (size_t i = 0; i < 50000; i++) {
        uint64_t v;

        gen_values(&v, 1, (int)(i % 5), &seed);
        hist_record(h, v);
    }
    while (hist_next(h, &pos, &value, &count)) {
        ck_assert_uint_gt(count, 0);
        ck_assert(first || value > last);
        total += count;
        /* The first rank that lands in this bucket reports this bucket's value. */
        ck_assert_uint_eq(hist_percentile(h, 100.0 * (double)(seen_rank + 1) / 50000.0 - 1e-9),
                          value);
        seen_rank = total;
        last = value;
        first = 0;
    }
    ck_assert_uint_eq(total, hist_count(h));
    ck_assert_uint_le(last, hist_max(h));
    ck_assert_int_eq(hist_next(h, &pos, &value, &count), 0);
    hist_free(h);
}
END_TEST

static Suite *
hist_suite(void)
{
    Suite *s = suite_create("hist");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_hist_oracle, 0, 5);
    tcase_add_test(tc, test_hist_small_counts);
    tcase_add_test(tc, test_hist_exact_below_128);
    tcase_add_test(tc, test_hist_empty);
    tcase_add_test(tc, test_hist_extremes);
    tcase_add_test(tc, test_hist_merge_equals_single);
    tcase_add_test(tc, test_hist_next);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(hist_suite(), CK_NORMAL);
}
