/* hist.c: log-linear latency histogram, at most 1% relative error, mergeable. */
#include <stdlib.h>
#include <string.h>

#include "hist.h"

/* The bucket a value falls in: exact below 128, then 128 linear sub-buckets per power of two. */
static unsigned
hist_index(uint64_t v)
{
    unsigned e, shift;

    if (v < HIST_SUB_COUNT)
        return (unsigned)v;
    e = 63u - (unsigned)__builtin_clzll(v);
    shift = e - HIST_SUB_BITS;
    return HIST_SUB_COUNT + shift * HIST_SUB_COUNT + (unsigned)((v >> shift) - HIST_SUB_COUNT);
}

/* The smallest value of bucket i. */
static uint64_t
hist_lowest(unsigned i)
{
    unsigned shift;

    if (i < HIST_SUB_COUNT)
        return i;
    shift = (i - HIST_SUB_COUNT) / HIST_SUB_COUNT;
    return (uint64_t)(HIST_SUB_COUNT + (i - HIST_SUB_COUNT) % HIST_SUB_COUNT) << shift;
}

/* The largest value of bucket i. */
static uint64_t
hist_highest(unsigned i)
{
    unsigned shift;

    if (i < HIST_SUB_COUNT)
        return i;
    shift = (i - HIST_SUB_COUNT) / HIST_SUB_COUNT;
    return hist_lowest(i) + (((uint64_t)1 << shift) - 1);
}

struct hist *
hist_new(void)
{
    struct hist *h = malloc(sizeof(*h));

    if (h != NULL)
        hist_reset(h);
    return h;
}

void
hist_free(struct hist *h)
{
    free(h);
}

void
hist_reset(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->h_min = UINT64_MAX;
}

void
hist_record_n(struct hist *h, uint64_t value, uint64_t n)
{
    unsigned i = hist_index(value);

    if (n == 0)
        return;
    if (h->h_count == 0) {
        h->h_lo = i;
        h->h_hi = i;
    } else if (i < h->h_lo) {
        h->h_lo = i;
    } else if (i > h->h_hi) {
        h->h_hi = i;
    }
    h->h_buckets[i] += n;
    h->h_count += n;
    h->h_sum += (double)value * (double)n;
    if (value < h->h_min)
        h->h_min = value;
    if (value > h->h_max)
        h->h_max = value;
}

void
hist_record(struct hist *h, uint64_t value)
{
    hist_record_n(h, value, 1);
}

/* Add src's counts into dst; the result is what recording both streams into dst gives. */
void
hist_merge(struct hist *dst, const struct hist *src)
{
    if (src->h_count == 0)
        return;
    for (unsigned i = src->h_lo; i <= src->h_hi; i++)
        dst->h_buckets[i] += src->h_buckets[i];
    if (dst->h_count == 0 || src->h_lo < dst->h_lo)
        dst->h_lo = src->h_lo;
    if (dst->h_count == 0 || src->h_hi > dst->h_hi)
        dst->h_hi = src->h_hi;
    dst->h_count += src->h_count;
    dst->h_sum += src->h_sum;
    if (src->h_min < dst->h_min)
        dst->h_min = src->h_min;
    if (src->h_max > dst->h_max)
        dst->h_max = src->h_max;
}

/* A bucket's value as hist_percentile() reports it: its middle, clamped to the exact min and max.
 */
static uint64_t
hist_value(const struct hist *h, unsigned i)
{
    uint64_t lo = hist_lowest(i), hi = hist_highest(i);
    uint64_t mid = lo + (hi - lo) / 2;

    if (mid < h->h_min)
        mid = h->h_min;
    if (mid > h->h_max)
        mid = h->h_max;
    return mid;
}

/*
 * Walk the buckets that hold values, lowest first: start with *pos = 0.
 * Returns 1 with the bucket's value (as hist_percentile() would report it)
 * and count, or 0 when there are no more.
 */
int
hist_next(const struct hist *h, unsigned *pos, uint64_t *value, uint64_t *count)
{
    unsigned i = *pos < h->h_lo ? h->h_lo : *pos;

    if (h->h_count == 0)
        return 0;
    for (; i <= h->h_hi; i++) {
        if (h->h_buckets[i] != 0) {
            *value = hist_value(h, i);
            *count = h->h_buckets[i];
            *pos = i + 1;
            return 1;
        }
    }
    *pos = i;
    return 0;
}

/*
 * The value at the given percentile (0-100), by nearest rank: the smallest
 * recorded value that at least percent% of the values are at or below.  The
 * answer is the middle of that value's bucket, clamped to the exact min and
 * max, so it is within half a bucket (under 0.4%) of the true value.
 * Returns 0 for an empty histogram.
 */
uint64_t
hist_percentile(const struct hist *h, double percent)
{
    uint64_t rank, seen = 0;
    double want;

    if (h->h_count == 0)
        return 0;
    if (percent <= 0.0)
        return h->h_min;
    if (percent >= 100.0)
        return h->h_max;
    want = percent / 100.0 * (double)h->h_count;
    rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;
    for (unsigned i = h->h_lo; i <= h->h_hi; i++) {
        seen += h->h_buckets[i];
        if (seen >= rank)
            return hist_value(h, i);
    }
    return h->h_max;
}

uint64_t
hist_count(const struct hist *h)
{
    return h->h_count;
}

/* The exact smallest value recorded, or 0 when empty. */
uint64_t
hist_min(const struct hist *h)
{
    return h->h_count == 0 ? 0 : h->h_min;
}

/* The exact largest value recorded, or 0 when empty. */
uint64_t
hist_max(const struct hist *h)
{
    return h->h_max;
}

/* The exact mean of the values recorded, or 0 when empty. */
double
hist_mean(const struct hist *h)
{
    return h->h_count == 0 ? 0.0 : h->h_sum / (double)h->h_count;
}
