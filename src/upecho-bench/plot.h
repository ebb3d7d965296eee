/* plot.h: one SVG of one or more runs: latency by percentile and messages per second. */
#ifndef UPECHOD_PLOT_H
#define UPECHOD_PLOT_H

#include <stddef.h>
#include <stdio.h>

#include "bench.h"
#include "hgrm.h"

/* What a plot needs of one run, from a run just made or from its --json output. */
struct plot_run {
    char *pr_label;    /* the legend's name for it */
    char *pr_settings; /* target, settings and throughput, one line */
    struct hgrm_point *pr_points;
    size_t pr_npoints;
    struct bench_sample *pr_timeline;
    size_t pr_ntimeline;
};

/* Input files bigger than this are refused: a --json summary is a few kilobytes. */
#define PLOT_MAX_INPUT (64u * 1024 * 1024)

int plot_run_from_result(struct plot_run *pr, const struct bench_config *cfg,
                         const struct bench_result *r);
int plot_run_parse(struct plot_run *pr, const char *text, size_t len, const char *name, char *why,
                   size_t whylen);
int plot_run_load(struct plot_run *pr, const char *path, char *why, size_t whylen);
void plot_run_deinit(struct plot_run *pr);
int plot_write(FILE *f, const struct plot_run *runs, size_t nruns);

#endif
