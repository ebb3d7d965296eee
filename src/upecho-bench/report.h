/* report.h: upecho-bench's results for people (text, progress lines) and for programs (JSON). */
#ifndef UPECHOD_REPORT_H
#define UPECHOD_REPORT_H

#include <stdio.h>

#include "bench.h"

void report_progress(FILE *f, const struct bench_progress *p);
void report_text(FILE *f, const struct bench_config *cfg, const struct bench_result *r);
void report_json(FILE *f, const struct bench_config *cfg, const struct bench_result *r);

#endif
