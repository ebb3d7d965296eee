/* expo.h: a writer of the Prometheus text exposition format, version 0.0.4. */
#ifndef UPECHOD_EXPO_H
#define UPECHOD_EXPO_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/*
 * Labels are given as a NULL-terminated array of name, value pairs:
 * {"transport", "tcp", NULL}; NULL for none.  Names are the caller's
 * constants and written as they are; values are escaped.
 */

/* The # HELP and # TYPE lines that open a family; type is "counter", "gauge" or "histogram". */
void expo_family(struct evbuffer *out, const char *name, const char *type, const char *help);
/* One sample line: name{labels} value. */
void expo_u64(struct evbuffer *out, const char *name, const char *const *labels, uint64_t v);
void expo_double(struct evbuffer *out, const char *name, const char *const *labels, double v);
/*
 * A histogram's samples: name_bucket{labels,le="..."} for each of the
 * nbounds upper bounds and +Inf, cumulative, then name_sum and name_count.
 * counts holds nbounds + 1 per-bucket (not cumulative) counts, the last
 * one above every bound.
 */
void expo_histogram(struct evbuffer *out, const char *name, const char *const *labels,
                    const double *bounds, size_t nbounds, const uint64_t *counts, double sum);
/* A number as the format writes it: shortest exact form, +Inf, -Inf, NaN.  Returns buf. */
const char *expo_format_double(char *buf, size_t size, double v);

#endif
