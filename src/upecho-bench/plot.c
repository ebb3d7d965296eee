/* plot.c: one SVG of one or more runs: latency by percentile and messages per second. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "plot.h"

/* The picture, in SVG user units (pixels). */
#define PLOT_WIDTH 960
#define PLOT_LEFT 80       /* x of both panels' y axis */
#define PLOT_RIGHT 30      /* room right of the panels */
#define PLOT_LEGEND_TOP 48 /* first legend line; one line per run below it */
#define PLOT_LINE 16
#define PLOT_LAT_HEIGHT 300
#define PLOT_TPUT_HEIGHT 220
/* From a panel's bottom to the next one's top: tick labels, axis label, title. */
#define PLOT_GAP 90
/* Percentile axis: decades of 1/(1-p) shown (99.99%), and where the maximum goes. */
#define PLOT_DECADES 4
#define PLOT_MAX_SLOT 4.5
#define PLOT_X_END 4.6
/* A last, partial second shorter than this says little about a rate: not drawn. */
#define PLOT_MIN_INTERVAL 0.5

static const char *const plot_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                          "#9467bd", "#8c564b", "#e377c2", "#17becf"};

/* One line about a run: what it loaded, how, and what it got. */
static char *
plot_settings(const char *target, double connections, double threads, double size, double pipeline,
              double rate, double duration, double msgs_per_s)
{
    char rate_part[64] = "", buf[512];

    if (rate > 0)
        snprintf(rate_part, sizeof(rate_part), ", %.0f msg/s intended", rate);
    snprintf(buf, sizeof(buf),
             "%s, %.0f connections, %.0f threads, %.0f-byte messages, pipeline %.0f%s; "
             "%.1f s, %.0f msg/s",
             target, connections, threads, size, pipeline, rate_part, duration, msgs_per_s);
    return strdup(buf);
}

/* The plot of the run just made. */
int
plot_run_from_result(struct plot_run *pr, const struct bench_config *cfg,
                     const struct bench_result *r)
{
    char tbuf[TARGET_STRLEN];
    unsigned threads =
        cfg->bc_threads < cfg->bc_connections ? cfg->bc_threads : cfg->bc_connections;
    double secs = r->br_elapsed > 0 ? r->br_elapsed : 1e-9;

    memset(pr, 0, sizeof(*pr));
    target_format(&cfg->bc_target, tbuf, sizeof(tbuf));
    pr->pr_label = strdup(cfg->bc_label != NULL ? cfg->bc_label : tbuf);
    pr->pr_settings =
        plot_settings(tbuf, cfg->bc_connections, threads, (double)cfg->bc_size, cfg->bc_pipeline,
                      cfg->bc_rate, r->br_elapsed, (double)r->br_messages / secs);
    pr->pr_points = calloc(HGRM_POINTS_MAX, sizeof(*pr->pr_points));
    pr->pr_timeline = calloc(r->br_ntimeline + 1, sizeof(*pr->pr_timeline));
    if (pr->pr_label == NULL || pr->pr_settings == NULL || pr->pr_points == NULL ||
        pr->pr_timeline == NULL) {
        plot_run_deinit(pr);
        return -ENOMEM;
    }
    pr->pr_npoints = hgrm_points(r->br_latency, pr->pr_points);
    if (r->br_ntimeline > 0)
        memcpy(pr->pr_timeline, r->br_timeline, r->br_ntimeline * sizeof(*pr->pr_timeline));
    pr->pr_ntimeline = r->br_ntimeline;
    return 0;
}

void
plot_run_deinit(struct plot_run *pr)
{
    free(pr->pr_label);
    free(pr->pr_settings);
    free(pr->pr_points);
    free(pr->pr_timeline);
    memset(pr, 0, sizeof(*pr));
}

/* A number member from 0 to 2^64, or def when it is missing or anything else. */
static double
plot_num(const struct json *obj, const char *key, double def)
{
    const struct json *v = json_get(obj, key);

    if (v == NULL || v->j_type != JSON_NUMBER || !(v->j_number >= 0 && v->j_number < 1.8e19))
        return def;
    return v->j_number;
}

/* A number member from 0 to 2^64; -EINVAL when missing or anything else. */
static int
plot_count(const struct json *obj, const char *key, double *out)
{
    *out = plot_num(obj, key, -1);
    return *out < 0 ? -EINVAL : 0;
}

/* The run in a parsed --json object; why says what is wrong with it. */
static int
plot_run_from_json(struct plot_run *pr, const struct json *root, const char *name, char *why,
                   size_t whylen)
{
    const struct json *pts = json_get(root, "latency_percentiles");
    const struct json *tl = json_get(root, "timeline");
    const struct json *label = json_get(root, "label"), *target = json_get(root, "target");
    const struct json *e;
    size_t i;

    if (root->j_type != JSON_OBJECT) {
        snprintf(why, whylen, "not a JSON object");
        return -EINVAL;
    }
    if (pts == NULL || pts->j_type != JSON_ARRAY || tl == NULL || tl->j_type != JSON_ARRAY) {
        snprintf(why, whylen,
                 "no \"latency_percentiles\" or \"timeline\" array: not upecho-bench --json "
                 "output, or from an older upecho-bench");
        return -EINVAL;
    }
    pr->pr_points = calloc(pts->j_count + 1, sizeof(*pr->pr_points));
    pr->pr_timeline = calloc(tl->j_count + 1, sizeof(*pr->pr_timeline));
    if (pr->pr_points == NULL || pr->pr_timeline == NULL)
        return -ENOMEM;
    for (e = pts->j_child, i = 0; e != NULL; e = e->j_next, i++) {
        const struct json *p = json_at(e, 0), *v = json_at(e, 1);

        if (e->j_type != JSON_ARRAY || e->j_count != 2 || p->j_type != JSON_NUMBER ||
            v->j_type != JSON_NUMBER || !(p->j_number >= 0 && p->j_number <= 100) ||
            !(v->j_number >= 0) || v->j_number > 1.8e19 ||
            (i > 0 && p->j_number < pr->pr_points[i - 1].hp_percentile)) {
            snprintf(why, whylen,
                     "latency_percentiles[%zu] is not a [percentile, ns] pair with the "
                     "percentile from 0 to 100, rising",
                     i);
            return -EINVAL;
        }
        pr->pr_points[i].hp_percentile = p->j_number;
        pr->pr_points[i].hp_value = (uint64_t)v->j_number;
    }
    pr->pr_npoints = i;
    for (e = tl->j_child, i = 0; e != NULL; e = e->j_next, i++) {
        struct bench_sample *s = &pr->pr_timeline[i];
        double msgs, sec;

        if (plot_count(e, "second", &sec) < 0 || plot_count(e, "messages", &msgs) < 0 ||
            (i > 0 && sec <= pr->pr_timeline[i - 1].bs_second)) {
            snprintf(why, whylen, "timeline[%zu] lacks a rising \"second\" or a \"messages\" count",
                     i);
            return -EINVAL;
        }
        s->bs_second = sec;
        s->bs_messages = (uint64_t)msgs;
        s->bs_errors = (uint64_t)plot_num(e, "errors", 0);
        s->bs_open = (uint64_t)plot_num(e, "open", 0);
    }
    pr->pr_ntimeline = i;
    if (label != NULL && label->j_type == JSON_STRING && label->j_string[0] != '\0') {
        pr->pr_label = strdup(label->j_string);
    } else {
        const char *slash = strrchr(name, '/');

        pr->pr_label = strdup(slash != NULL && slash[1] != '\0' ? slash + 1 : name);
    }
    pr->pr_settings = plot_settings(
        target != NULL && target->j_type == JSON_STRING ? target->j_string : "?",
        plot_num(root, "connections", 0), plot_num(root, "threads", 0), plot_num(root, "size", 0),
        plot_num(root, "pipeline", 0), plot_num(root, "rate", 0), plot_num(root, "duration_s", 0),
        plot_num(root, "messages_per_s", 0));
    if (pr->pr_label == NULL || pr->pr_settings == NULL)
        return -ENOMEM;
    return 0;
}

/*
 * A run from the len bytes of --json output at text; name (a file name)
 * names it when the JSON has no label.  Returns 0, -EINVAL with why set
 * when it is not JSON or lacks what a plot needs, or -ENOMEM.
 */
int
plot_run_parse(struct plot_run *pr, const char *text, size_t len, const char *name, char *why,
               size_t whylen)
{
    struct json *root;
    struct json_error je;
    int rc;

    memset(pr, 0, sizeof(*pr));
    why[0] = '\0';
    rc = json_parse(text, len, &root, &je);
    if (rc == -EINVAL)
        snprintf(why, whylen, "%u:%u: invalid JSON: %s", je.je_line, je.je_column, je.je_why);
    if (rc < 0)
        return rc;
    rc = plot_run_from_json(pr, root, name, why, whylen);
    json_free(root);
    if (rc < 0)
        plot_run_deinit(pr);
    return rc;
}

/* The whole of f into a new buffer, growing it up to PLOT_MAX_INPUT; -EFBIG beyond. */
static int
plot_read(FILE *f, char **out, size_t *outlen)
{
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap), *grown;

    *out = NULL;
    if (buf == NULL)
        return -ENOMEM;
    for (;;) {
        size_t n;

        errno = 0;
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (ferror(f)) {
            int err = errno != 0 ? errno : EIO;

            free(buf);
            return -err;
        }
        if (feof(f) || cap > PLOT_MAX_INPUT)
            break;
        grown = realloc(buf, cap * 2);
        if (grown == NULL) {
            free(buf);
            return -ENOMEM;
        }
        buf = grown;
        cap *= 2;
    }
    if (len > PLOT_MAX_INPUT) {
        free(buf);
        return -EFBIG;
    }
    *out = buf;
    *outlen = len;
    return 0;
}

/*
 * Read a run from a file upecho-bench --json wrote.  Returns 0, -errno when
 * the file cannot be read (-EFBIG for one too big to be such a file), or
 * -EINVAL when it is not valid JSON or lacks what a plot needs; why then
 * says where and what, without the file name.
 */
int
plot_run_load(struct plot_run *pr, const char *path, char *why, size_t whylen)
{
    FILE *f;
    char *text = NULL;
    size_t len = 0;
    int rc;

    memset(pr, 0, sizeof(*pr));
    why[0] = '\0';
    f = fopen(path, "r");
    if (f == NULL)
        return -errno;
    rc = plot_read(f, &text, &len);
    fclose(f);
    if (rc == 0)
        rc = plot_run_parse(pr, text, len, path, why, whylen);
    free(text);
    return rc;
}

/*
 * Text for an SVG element or attribute: markup characters escaped, and what
 * XML 1.0 cannot hold (controls, bytes that are not UTF-8) shown as '?', so
 * any label or file name gives a well-formed file.
 */
static void
plot_text(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != '\0') {
        unsigned char c = *p;
        int len = c < 0x80             ? 1
                  : (c & 0xE0) == 0xC0 ? 2
                  : (c & 0xF0) == 0xE0 ? 3
                  : (c & 0xF8) == 0xF0 ? 4
                                       : 0;
        int ok = len > 0;

        for (int i = 1; i < len && ok; i++)
            ok = (p[i] & 0xC0) == 0x80;
        /* Overlong forms, surrogates, beyond U+10FFFF and U+FFFE/U+FFFF are not XML text. */
        if (ok && len == 2)
            ok = c >= 0xC2;
        else if (ok && len == 3)
            ok = !(c == 0xE0 && p[1] < 0xA0) && !(c == 0xED && p[1] >= 0xA0) &&
                 !(c == 0xEF && p[1] == 0xBF && p[2] >= 0xBE);
        else if (ok && len == 4)
            ok = !(c == 0xF0 && p[1] < 0x90) && c <= 0xF4 && !(c == 0xF4 && p[1] >= 0x90);
        if (!ok || c < 0x20) {
            fputc('?', f);
            p++;
            continue;
        }
        switch (c) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fwrite(p, 1, (size_t)len, f);
        }
        p += len;
    }
}

/* A round step for about n ticks from 0 to max: 1, 2 or 5 times a power of ten. */
static double
plot_step(double max, int n)
{
    double raw = max / n, mag, f;

    if (!(raw > 0))
        return 1;
    mag = pow(10.0, floor(log10(raw)));
    f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/* A tick label: 0.05, 12, 120k, 1.5M. */
static void
plot_tick_label(char *buf, size_t size, double v)
{
    if (v >= 1e6)
        snprintf(buf, size, "%gM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, size, "%gk", v / 1e3);
    else
        snprintf(buf, size, "%g", v);
}

/* The position of a percentile on the latency panel's axis, in decades of 1/(1-p); -1 if off it. */
static double
plot_percentile_u(double p)
{
    double u;

    if (p >= 100.0)
        return PLOT_MAX_SLOT;
    u = log10(100.0 / (100.0 - p));
    return u <= PLOT_DECADES + 1e-9 ? u : -1;
}

/* A dot on a data point, so single points and short runs show. */
static void
plot_marker(FILE *f, double x, double y, const char *color)
{
    fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>\n", x, y, color);
}

/* Frame, axis labels and, for a linear axis (ystep > 0), the y ticks of a panel. */
static void
plot_frame(FILE *f, int top, int height, double ymax, double ystep, const char *ylabel,
           const char *xlabel)
{
    int right = PLOT_WIDTH - PLOT_RIGHT;
    char lab[32];

    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n",
            PLOT_LEFT, top, right - PLOT_LEFT, height);
    /* ymax is a whole number of steps; the bound keeps odd input from making thousands. */
    for (int k = 0; ystep > 0 && k <= lround(ymax / ystep) && k <= 100; k++) {
        double v = k * ystep, y = top + height - height * v / ymax;

        if (k > 0 && v < ymax * (1 - 1e-9))
            fprintf(f, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#ddd\"/>\n",
                    PLOT_LEFT, y, right, y);
        plot_tick_label(lab, sizeof(lab), v);
        fprintf(f, "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n", PLOT_LEFT - 6,
                y + 4, lab);
    }
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 %d "
            "%d)\">%s</text>\n",
            22, top + height / 2, 22, top + height / 2, ylabel);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
            (PLOT_LEFT + right) / 2, top + height + 36, xlabel);
}

/* Where a latency in ms goes on the latency panel's log axis, decades lo to hi. */
static double
plot_latency_y(double ms, int lo, int hi, int top, int h)
{
    double l = ms > 0 ? log10(ms) : lo;

    if (l < lo)
        l = lo;
    return top + h - h * (l - lo) / (hi - lo);
}

/*
 * The latency panel: one curve per run, the percentile on a log scale of
 * 1/(1-p) and the latency on a log scale too, whole decades of ms: a tail
 * a thousand times the median would flatten the rest of a linear axis, and
 * a before/after change of the median would not show.
 */
static void
plot_latency(FILE *f, const struct plot_run *runs, size_t nruns, int top)
{
    static const char *const ticks[] = {"0%", "90%", "99%", "99.9%", "99.99%"};
    double vmin = INFINITY, vmax = 0, w = PLOT_WIDTH - PLOT_RIGHT - PLOT_LEFT;
    int h = PLOT_LAT_HEIGHT, lo, hi;
    char lab[32];

    for (size_t r = 0; r < nruns; r++) {
        for (size_t i = 0; i < runs[r].pr_npoints; i++) {
            double ms = (double)runs[r].pr_points[i].hp_value / 1e6;

            if (plot_percentile_u(runs[r].pr_points[i].hp_percentile) < 0 || ms <= 0)
                continue;
            vmin = ms < vmin ? ms : vmin;
            vmax = ms > vmax ? ms : vmax;
        }
    }
    if (vmax > 0) {
        lo = (int)floor(log10(vmin) + 1e-9);
        hi = (int)ceil(log10(vmax) - 1e-9);
    } else {
        lo = -2, hi = 1;
    }
    if (hi <= lo)
        hi = lo + 1;
    fprintf(f,
            "<g class=\"panel latency\" data-x0=\"%d\" data-y0=\"%d\" data-width=\"%.0f\" "
            "data-height=\"%d\" data-x-end=\"%g\" data-max-slot=\"%g\" data-y-log-min=\"%d\" "
            "data-y-log-max=\"%d\">\n",
            PLOT_LEFT, top, w, h, PLOT_X_END, PLOT_MAX_SLOT, lo, hi);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">Latency by percentile</text>\n",
            PLOT_LEFT, top - 10);
    plot_frame(f, top, h, 0, 0, "latency (ms, log scale)",
               "percentile (log scale of 1/(1-p)); max: the slowest message");
    /* A labelled line at each decade, fainter ones at 2 and 5 times it. */
    for (int d = lo; d <= hi; d++) {
        static const int steps[] = {1, 2, 5};

        for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]) && (d < hi || k == 0); k++) {
            double y = plot_latency_y(steps[k] * pow(10.0, d), lo, hi, top, h);

            if (d > lo || k > 0)
                fprintf(f, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"%s\"/>\n",
                        PLOT_LEFT, y, PLOT_WIDTH - PLOT_RIGHT, y, k == 0 ? "#ccc" : "#eee");
            if (k == 0) {
                snprintf(lab, sizeof(lab), "%g", pow(10.0, d));
                fprintf(f, "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n",
                        PLOT_LEFT - 6, y + 4, lab);
            }
        }
    }
    for (int d = 0; d <= PLOT_DECADES + 1; d++) {
        double u = d <= PLOT_DECADES ? d : PLOT_MAX_SLOT, x = PLOT_LEFT + w * u / PLOT_X_END;

        if (d > 0)
            fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x,
                    top, x, top + h);
        fprintf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x, top + h + 16,
                d <= PLOT_DECADES ? ticks[d] : "max");
    }
    for (size_t r = 0; r < nruns; r++) {
        const struct plot_run *pr = &runs[r];
        const char *color = plot_colors[r % (sizeof(plot_colors) / sizeof(plot_colors[0]))];

        fprintf(f,
                "<polyline class=\"latency\" data-run=\"%zu\" fill=\"none\" stroke=\"%s\" "
                "stroke-width=\"1.8\" data-label=\"",
                r, color);
        plot_text(f, pr->pr_label);
        fputs("\" data-percentiles=\"", f);
        for (size_t i = 0, n = 0; i < pr->pr_npoints; i++)
            if (plot_percentile_u(pr->pr_points[i].hp_percentile) >= 0)
                fprintf(f, "%s%.10g", n++ > 0 ? " " : "", pr->pr_points[i].hp_percentile);
        fputs("\" data-ms=\"", f);
        for (size_t i = 0, n = 0; i < pr->pr_npoints; i++)
            if (plot_percentile_u(pr->pr_points[i].hp_percentile) >= 0)
                fprintf(f, "%s%.9g", n++ > 0 ? " " : "", (double)pr->pr_points[i].hp_value / 1e6);
        fputs("\" points=\"", f);
        for (size_t i = 0, n = 0; i < pr->pr_npoints; i++) {
            double u = plot_percentile_u(pr->pr_points[i].hp_percentile);
            double ms = (double)pr->pr_points[i].hp_value / 1e6;

            if (u >= 0)
                fprintf(f, "%s%.2f,%.2f", n++ > 0 ? " " : "", PLOT_LEFT + w * u / PLOT_X_END,
                        plot_latency_y(ms, lo, hi, top, h));
        }
        fputs("\"/>\n", f);
        for (size_t i = 0; i < pr->pr_npoints; i++) {
            double u = plot_percentile_u(pr->pr_points[i].hp_percentile);
            double ms = (double)pr->pr_points[i].hp_value / 1e6;

            if (u >= 0)
                plot_marker(f, PLOT_LEFT + w * u / PLOT_X_END, plot_latency_y(ms, lo, hi, top, h),
                            color);
        }
    }
    fputs("</g>\n", f);
}

/*
 * Interval i of a run's timeline as a point: its middle and messages per
 * second.  Returns 0 for one not drawn: empty, or a last partial second
 * too short to say much (unless it is the whole run).
 */
static int
plot_rate(const struct plot_run *pr, size_t i, double *mid, double *rate)
{
    double from = i > 0 ? pr->pr_timeline[i - 1].bs_second : 0;
    double len = pr->pr_timeline[i].bs_second - from;

    if (!(len > 0) || (len < PLOT_MIN_INTERVAL && pr->pr_ntimeline > 1))
        return 0;
    *mid = from + len / 2;
    *rate = (double)pr->pr_timeline[i].bs_messages / len;
    return isfinite(*rate);
}

/* The throughput panel: messages per second over each interval of the timeline, at its middle. */
static void
plot_throughput(FILE *f, const struct plot_run *runs, size_t nruns, int top)
{
    double xmax = 0, ymax = 0, xstep, ystep, w = PLOT_WIDTH - PLOT_RIGHT - PLOT_LEFT;
    int h = PLOT_TPUT_HEIGHT;
    char lab[32];

    for (size_t r = 0; r < nruns; r++) {
        const struct plot_run *pr = &runs[r];

        for (size_t i = 0; i < pr->pr_ntimeline; i++) {
            double mid, rate;

            if (pr->pr_timeline[i].bs_second > xmax)
                xmax = pr->pr_timeline[i].bs_second;
            if (plot_rate(pr, i, &mid, &rate) && rate > ymax)
                ymax = rate;
        }
    }
    xstep = plot_step(xmax > 0 ? xmax : 1, 10);
    xmax = xmax > 0 ? ceil(xmax / xstep * (1 - 1e-12)) * xstep : xstep;
    ystep = plot_step(ymax > 0 ? ymax : 1, 5);
    ymax = ymax > 0 ? ceil(ymax / ystep * (1 - 1e-12)) * ystep : ystep;
    fprintf(f,
            "<g class=\"panel throughput\" data-x0=\"%d\" data-y0=\"%d\" data-width=\"%.0f\" "
            "data-height=\"%d\" data-x-max=\"%.9g\" data-y-max=\"%.9g\">\n",
            PLOT_LEFT, top, w, h, xmax, ymax);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">Messages per second</text>\n",
            PLOT_LEFT, top - 10);
    plot_frame(f, top, h, ymax, ystep, "messages per second", "time since the start (s)");
    for (int k = 0; k <= lround(xmax / xstep) && k <= 100; k++) {
        double v = k * xstep, x = PLOT_LEFT + w * v / xmax;

        if (k > 0 && v < xmax * (1 - 1e-9))
            fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x,
                    top, x, top + h);
        plot_tick_label(lab, sizeof(lab), v);
        fprintf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x, top + h + 16,
                lab);
    }
    for (size_t r = 0; r < nruns; r++) {
        const struct plot_run *pr = &runs[r];
        const char *color = plot_colors[r % (sizeof(plot_colors) / sizeof(plot_colors[0]))];
        size_t n;

        /* Three attributes (x, rate, coordinates) of one polyline, then its markers. */
        for (int pass = 0; pass < 4; pass++) {
            if (pass == 0) {
                fprintf(f,
                        "<polyline class=\"throughput\" data-run=\"%zu\" fill=\"none\" "
                        "stroke=\"%s\" stroke-width=\"1.8\" data-label=\"",
                        r, color);
                plot_text(f, pr->pr_label);
                fputs("\" data-seconds=\"", f);
            } else if (pass < 3) {
                fputs(pass == 1 ? "\" data-rates=\"" : "\" points=\"", f);
            }
            n = 0;
            for (size_t i = 0; i < pr->pr_ntimeline; i++) {
                double mid, rate;

                if (!plot_rate(pr, i, &mid, &rate))
                    continue;
                if (pass == 3)
                    plot_marker(f, PLOT_LEFT + w * mid / xmax, top + h - h * rate / ymax, color);
                else if (pass == 0)
                    fprintf(f, "%s%.6g", n++ > 0 ? " " : "", mid);
                else if (pass == 1)
                    fprintf(f, "%s%.9g", n++ > 0 ? " " : "", rate);
                else
                    fprintf(f, "%s%.2f,%.2f", n++ > 0 ? " " : "", PLOT_LEFT + w * mid / xmax,
                            top + h - h * rate / ymax);
            }
            if (pass == 2)
                fputs("\"/>\n", f);
        }
    }
    fputs("</g>\n", f);
}

/* The legend: a colour, the run's name and its settings, one line each. */
static void
plot_legend(FILE *f, const struct plot_run *runs, size_t nruns)
{
    for (size_t r = 0; r < nruns; r++) {
        const char *color = plot_colors[r % (sizeof(plot_colors) / sizeof(plot_colors[0]))];
        double y = PLOT_LEGEND_TOP + PLOT_LINE * (double)r;

        fprintf(f,
                "<g class=\"legend\" data-run=\"%zu\"><line x1=\"%d\" y1=\"%.0f\" x2=\"%d\" "
                "y2=\"%.0f\" stroke=\"%s\" stroke-width=\"3\"/><text x=\"%d\" y=\"%.0f\">"
                "<tspan font-weight=\"bold\">",
                r, PLOT_LEFT, y - 4, PLOT_LEFT + 24, y - 4, color, PLOT_LEFT + 30, y);
        plot_text(f, runs[r].pr_label);
        fputs("</tspan>: ", f);
        plot_text(f, runs[r].pr_settings);
        fputs("</text></g>\n", f);
    }
}

/*
 * Write the plot of nruns runs: a title, a legend line per run with its
 * settings, the latency curves and the messages per second, each run in
 * its own colour (8 colours, then they repeat).  Self-contained: no script,
 * no external font or style sheet.  Returns 0 or -EIO.
 */
int
plot_write(FILE *f, const struct plot_run *runs, size_t nruns)
{
    int lat_top = PLOT_LEGEND_TOP + PLOT_LINE * (int)nruns + 30;
    int tput_top = lat_top + PLOT_LAT_HEIGHT + PLOT_GAP;
    int height = tput_top + PLOT_TPUT_HEIGHT + 50;

    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n",
            PLOT_WIDTH, height, PLOT_WIDTH, height);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", PLOT_WIDTH, height);
    fputs("<title>upecho-bench: ", f);
    if (nruns == 1)
        plot_text(f, runs[0].pr_settings);
    else
        fprintf(f, "%zu runs", nruns);
    fputs("</title>\n", f);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">upecho-bench",
            PLOT_LEFT);
    if (nruns > 1)
        fprintf(f, ": %zu runs compared", nruns);
    else
        fputs(": latency and throughput", f);
    fputs("</text>\n", f);
    plot_legend(f, runs, nruns);
    plot_latency(f, runs, nruns, lat_top);
    plot_throughput(f, runs, nruns, tput_top);
    fputs("</svg>\n", f);
    fflush(f);
    return ferror(f) ? -EIO : 0;
}
