/* expo.c: a writer of the Prometheus text exposition format, version 0.0.4. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "expo.h"

const char *
expo_format_double(char *buf, size_t size, double v)
{
    if (isnan(v))
        snprintf(buf, size, "NaN");
    else if (isinf(v))
        snprintf(buf, size, "%cInf", v > 0 ? '+' : '-');
    else if (snprintf(buf, size, "%.15g", v), strtod(buf, NULL) != v)
        snprintf(buf, size, "%.17g", v);
    return buf;
}

/* HELP text escapes backslash and newline; a label value also the double quote. */
static void
expo_escape(struct evbuffer *out, const char *s, int quote)
{
    const char *run = s;

    for (; *s != '\0'; s++) {
        const char *esc = NULL;

        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && quote)
            esc = "\\\"";
        if (esc == NULL)
            continue;
        evbuffer_add(out, run, (size_t)(s - run));
        evbuffer_add(out, esc, 2);
        run = s + 1;
    }
    evbuffer_add(out, run, (size_t)(s - run));
}

void
expo_family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s ", name);
    expo_escape(out, help, 0);
    evbuffer_add_printf(out, "\n# TYPE %s %s\n", name, type);
}

/* name{a="x",b="y",le="z"}, without braces when there is no label; le may be NULL. */
static void
expo_name(struct evbuffer *out, const char *name, const char *suffix, const char *const *labels,
          const char *le)
{
    int n = 0;

    evbuffer_add_printf(out, "%s%s", name, suffix);
    for (; labels != NULL && labels[0] != NULL; labels += 2, n++) {
        evbuffer_add_printf(out, "%s%s=\"", n ? "," : "{", labels[0]);
        expo_escape(out, labels[1], 1);
        evbuffer_add(out, "\"", 1);
    }
    if (le != NULL) {
        evbuffer_add_printf(out, "%sle=\"%s\"", n ? "," : "{", le);
        n++;
    }
    if (n > 0)
        evbuffer_add(out, "}", 1);
}

void
expo_u64(struct evbuffer *out, const char *name, const char *const *labels, uint64_t v)
{
    expo_name(out, name, "", labels, NULL);
    evbuffer_add_printf(out, " %llu\n", (unsigned long long)v);
}

void
expo_double(struct evbuffer *out, const char *name, const char *const *labels, double v)
{
    char buf[32];

    expo_name(out, name, "", labels, NULL);
    evbuffer_add_printf(out, " %s\n", expo_format_double(buf, sizeof(buf), v));
}

void
expo_histogram(struct evbuffer *out, const char *name, const char *const *labels,
               const double *bounds, size_t nbounds, const uint64_t *counts, double sum)
{
    uint64_t cum = 0;
    char le[32];

    for (size_t i = 0; i <= nbounds; i++) {
        cum += counts[i];
        expo_name(out, name, "_bucket", labels,
                  i < nbounds ? expo_format_double(le, sizeof(le), bounds[i]) : "+Inf");
        evbuffer_add_printf(out, " %llu\n", (unsigned long long)cum);
    }
    expo_name(out, name, "_sum", labels, NULL);
    evbuffer_add_printf(out, " %s\n", expo_format_double(le, sizeof(le), sum));
    expo_name(out, name, "_count", labels, NULL);
    evbuffer_add_printf(out, " %llu\n", (unsigned long long)cum);
}
