/* hist.h: log-linear latency histogram, at most 1% relative error, mergeable. */
#ifndef UPECHOD_HIST_H
#define UPECHOD_HIST_H

#include <stdint.h>

/*
 * Values below 2^HIST_SUB_BITS are counted exactly; above, each power of two
 * is split into 2^HIST_SUB_BITS equal sub-buckets, so a bucket is at most
 * 1/128 of its lower bound wide.
 */
#define HIST_SUB_BITS 7
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB_COUNT + (64 - HIST_SUB_BITS) * HIST_SUB_COUNT)

struct hist {
    uint64_t h_count;
    uint64_t h_min;
    uint64_t h_max;
    double h_sum;
    unsigned h_lo; /* lowest bucket index in use, when h_count > 0 */
    unsigned h_hi; /* highest bucket index in use, when h_count > 0 */
    uint64_t h_buckets[HIST_BUCKETS];
};

struct hist *hist_new(void);
void hist_free(struct hist *h);
void hist_reset(struct hist *h);
void hist_record(struct hist *h, uint64_t value);
void hist_record_n(struct hist *h, uint64_t value, uint64_t n);
void hist_merge(struct hist *dst, const struct hist *src);
uint64_t hist_percentile(const struct hist *h, double percent);
uint64_t hist_count(const struct hist *h);
uint64_t hist_min(const struct hist *h);
uint64_t hist_max(const struct hist *h);
double hist_mean(const struct hist *h);
int hist_next(const struct hist *h, unsigned *pos, uint64_t *value, uint64_t *count);

#endif
