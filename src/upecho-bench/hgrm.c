/* hgrm.c: latency percentile distributions, as HdrHistogram's text format and as a compact curve.
 */
#include <errno.h>
#include <math.h>

#include "hgrm.h"

/* Percentile lines per halving of the distance to 100%, as HdrHistogram's default. */
#define HGRM_TICKS_PER_HALF 5
#define HGRM_NS_PER_MS 1e6

/*
 * The latency curve in few points: 0, 25, 50, 75 and 90%, then 95, 98 and
 * 99% and so on for each further decade (99.5, 99.8, 99.9, ...) while the
 * tail still holds a value, then 100% (the maximum).  Values are those
 * hist_percentile() gives, so they match the summary's p50, p90 and p99.
 * out must hold HGRM_POINTS_MAX points; returns how many were written, 0
 * for an empty histogram.
 */
size_t
hgrm_points(const struct hist *h, struct hgrm_point *out)
{
    static const double head[] = {0.0, 25.0, 50.0, 75.0, 90.0};
    static const double steps[] = {5.0, 2.0, 1.0};
    double count = (double)hist_count(h);
    size_t n = 0;

    if (hist_count(h) == 0)
        return 0;
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++) {
        out[n].hp_percentile = head[i];
        out[n].hp_value = hist_percentile(h, head[i]);
        n++;
    }
    /* tail is 100 - percentile, in percent: 5, 2, 1, 0.5, ... */
    for (int decade = 0; n < HGRM_POINTS_MAX - 3; decade++) {
        double scale = pow(10.0, -decade);
        int added = 0;

        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
            double tail = steps[i] * scale, p;

            if (tail / 100.0 * count < 1.0)
                break;
            /* Rounded to the decimal it stands for: 100 - 0.1 must be the 99.9 users type. */
            p = round((100.0 - tail) * 1e12) / 1e12;
            out[n].hp_percentile = p;
            out[n].hp_value = hist_percentile(h, p);
            n++;
            added = 1;
        }
        if (!added)
            break;
    }
    out[n].hp_percentile = 100.0;
    out[n].hp_value = hist_max(h);
    return n + 1;
}

/*
 * The percentile distribution as HdrHistogram's outputPercentileDistribution
 * prints it, in milliseconds, so its plotter and others (hdr-plot, wrk2's
 * users' scripts) read it: a line at 0%, then HGRM_TICKS_PER_HALF lines each
 * time the distance to 100% halves, until the last value, then the maximum
 * at 100%.  Each line's value is the bucket's as hist_percentile() reports
 * it.  Buckets and SubBuckets describe the HdrHistogram with the same
 * resolution as struct hist: exact below 256, then 128 steps per power of two.
 * Returns 0 or -errno of the write.
 */
int
hgrm_write(FILE *f, const struct hist *h)
{
    uint64_t total = hist_count(h), cum = 0, value, count;
    double level = 0.0, mean = hist_mean(h), var = 0.0;
    unsigned pos = 0;

    fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    while (total > 0 && hist_next(h, &pos, &value, &count)) {
        double d = (double)value - mean;

        var += d * d * (double)count;
        cum += count;
        while (cum < total ? 100.0 * (double)cum / (double)total >= level : level < 100.0) {
            fprintf(f, "%12.6f %2.12f %10llu %14.2f\n", (double)value / HGRM_NS_PER_MS,
                    level / 100.0, (unsigned long long)cum, 1.0 / (1.0 - level / 100.0));
            if (cum == total)
                break;
            level += 100.0 /
                     (HGRM_TICKS_PER_HALF * pow(2.0, floor(log2(100.0 / (100.0 - level))) + 1.0));
        }
    }
    if (total > 0)
        fprintf(f, "%12.6f %2.12f %10llu\n", (double)hist_max(h) / HGRM_NS_PER_MS, 1.0,
                (unsigned long long)total);
    fprintf(f, "#[Mean    = %12.6f, StdDeviation   = %12.6f]\n", mean / HGRM_NS_PER_MS,
            total > 0 ? sqrt(var / (double)total) / HGRM_NS_PER_MS : 0.0);
    fprintf(f, "#[Max     = %12.6f, Total count    = %12llu]\n",
            (double)hist_max(h) / HGRM_NS_PER_MS, (unsigned long long)total);
    fprintf(f, "#[Buckets = %12d, SubBuckets     = %12d]\n", 64 - HIST_SUB_BITS,
            2 * HIST_SUB_COUNT);
    fflush(f);
    return ferror(f) ? -EIO : 0;
}
