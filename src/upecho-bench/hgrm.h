/* hgrm.h: latency percentile distributions, as HdrHistogram's text format and as a compact curve.
 */
#ifndef UPECHOD_HGRM_H
#define UPECHOD_HGRM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hist.h"

/* Enough for every point hgrm_points() gives for up to 2^64 values. */
#define HGRM_POINTS_MAX 80

/* One point of a latency curve: the value (ns) at a percentile (0-100). */
struct hgrm_point {
    double hp_percentile;
    uint64_t hp_value;
};

size_t hgrm_points(const struct hist *h, struct hgrm_point *out);
int hgrm_write(FILE *f, const struct hist *h);

#endif
