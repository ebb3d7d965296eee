/* report.c: upecho-bench's results for people (text, progress lines) and for programs (JSON). */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "hgrm.h"
#include "report.h"

/* A duration in ns as a short human string: "850ns", "12.3us", "4.56ms", "1.23s". */
static const char *
report_fmt_ns(uint64_t ns, char *buf, size_t size)
{
    if (ns < 1000)
        snprintf(buf, size, "%lluns", (unsigned long long)ns);
    else if (ns < 1000000)
        snprintf(buf, size, "%.1fus", (double)ns / 1e3);
    else if (ns < 1000000000)
        snprintf(buf, size, "%.2fms", (double)ns / 1e6);
    else
        snprintf(buf, size, "%.2fs", (double)ns / 1e9);
    return buf;
}

/* One progress line: elapsed, rates, open connections, errors. */
void
report_progress(FILE *f, const struct bench_progress *p)
{
    fprintf(f, "[%5.0fs] %10.0f msg/s %9.2f MB/s %7llu open %6llu errors %6llu mismatches\n",
            p->bp_elapsed, p->bp_msgs_per_s, p->bp_mb_per_s, (unsigned long long)p->bp_open,
            (unsigned long long)p->bp_errors, (unsigned long long)p->bp_mismatches);
    fflush(f);
}

static void
report_hist(FILE *f, const char *label, const struct hist *h, int full)
{
    char a[32], b[32], c[32], d[32], e[32], g[32], m[32];

    if (hist_count(h) == 0) {
        fprintf(f, "%-12s none\n", label);
        return;
    }
    fprintf(f, "%-12s min %s  p50 %s  p90 %s  p99 %s", label, report_fmt_ns(hist_min(h), a, 32),
            report_fmt_ns(hist_percentile(h, 50), b, 32),
            report_fmt_ns(hist_percentile(h, 90), c, 32),
            report_fmt_ns(hist_percentile(h, 99), d, 32));
    if (full)
        fprintf(f, "  p99.9 %s", report_fmt_ns(hist_percentile(h, 99.9), e, 32));
    fprintf(f, "  max %s  mean %s\n", report_fmt_ns(hist_max(h), g, 32),
            report_fmt_ns((uint64_t)hist_mean(h), m, 32));
}

/* The human summary: throughput, latency and connect percentiles, every error counter. */
void
report_text(FILE *f, const struct bench_config *cfg, const struct bench_result *r)
{
    char tbuf[TARGET_STRLEN];
    double secs = r->br_elapsed > 0 ? r->br_elapsed : 1e-9;

    fprintf(f, "target       %s, %u connections, %u threads, %zu-byte messages, pipeline %u\n",
            target_format(&cfg->bc_target, tbuf, sizeof(tbuf)), cfg->bc_connections,
            cfg->bc_threads < cfg->bc_connections ? cfg->bc_threads : cfg->bc_connections,
            cfg->bc_size, cfg->bc_pipeline);
    if (cfg->bc_rate > 0)
        fprintf(f,
                "rate         %.0f msg/s intended; latency counts from each intended send time\n",
                cfg->bc_rate);
    fprintf(f, "duration     %.2f s%s\n", r->br_elapsed, r->br_interrupted ? " (interrupted)" : "");
    fprintf(f, "messages     %llu, %.0f msg/s, %.2f MB/s sent, %.2f MB/s received\n",
            (unsigned long long)r->br_messages, (double)r->br_messages / secs,
            (double)r->br_bytes_sent / secs / 1e6, (double)r->br_bytes_received / secs / 1e6);
    report_hist(f, "latency", r->br_latency, 1);
    report_hist(f, "connect", r->br_connect, 0);
    fprintf(f, "connections  %llu opened, %llu failed", (unsigned long long)r->br_opened,
            (unsigned long long)r->br_connect_failures);
    if (r->br_connect_failures > 0)
        fprintf(f, " (first: %s)", strerror(r->br_connect_errno));
    fprintf(f,
            "\nerrors       %llu: connect failures %llu, resets %llu, timeouts %llu, lost %llu, "
            "late %llu",
            (unsigned long long)bench_errors(r), (unsigned long long)r->br_connect_failures,
            (unsigned long long)r->br_resets, (unsigned long long)r->br_timeouts,
            (unsigned long long)r->br_lost, (unsigned long long)r->br_late);
    if (r->br_resets > 0)
        fprintf(f, " (first reset: %s)",
                r->br_reset_errno == 0 ? "closed by the server" : strerror(r->br_reset_errno));
    fprintf(f, "\nmismatches   %llu bytes in %llu messages",
            (unsigned long long)r->br_mismatch_bytes, (unsigned long long)r->br_mismatch_messages);
    if (r->br_has_first) {
        fprintf(f, "; first on connection %u", r->br_first_conn);
        if (r->br_first_message != UINT64_MAX)
            fprintf(f, ", message %llu", (unsigned long long)r->br_first_message);
        fprintf(f, ", %s offset %llu", cfg->bc_target.t_kind == TARGET_UDP ? "datagram" : "stream",
                (unsigned long long)r->br_first_offset);
    }
    fprintf(f, "\nresult       %s\n", bench_ok(r) ? "OK" : "FAILED");
}

/* A JSON string, escaped. */
static void
report_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void
report_json_hist(FILE *f, const char *key, const struct hist *h)
{
    fprintf(f,
            "\"%s\":{\"count\":%llu,\"min\":%llu,\"mean\":%.0f,\"p50\":%llu,\"p90\":%llu,"
            "\"p99\":%llu,\"p99_9\":%llu,\"max\":%llu}",
            key, (unsigned long long)hist_count(h), (unsigned long long)hist_min(h), hist_mean(h),
            (unsigned long long)hist_percentile(h, 50), (unsigned long long)hist_percentile(h, 90),
            (unsigned long long)hist_percentile(h, 99),
            (unsigned long long)hist_percentile(h, 99.9), (unsigned long long)hist_max(h));
}

/* The latency curve as [percentile, ns] pairs: what --plot draws from a JSON file. */
static void
report_json_percentiles(FILE *f, const struct hist *h)
{
    struct hgrm_point pts[HGRM_POINTS_MAX];
    size_t n = hgrm_points(h, pts);

    fputs("\"latency_percentiles\":[", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s[%.10g,%llu]", i > 0 ? "," : "", pts[i].hp_percentile,
                (unsigned long long)pts[i].hp_value);
    fputc(']', f);
}

/* The per-second series: what --plot draws as messages per second. */
static void
report_json_timeline(FILE *f, const struct bench_result *r)
{
    fputs("\"timeline\":[", f);
    for (size_t i = 0; i < r->br_ntimeline; i++) {
        const struct bench_sample *s = &r->br_timeline[i];

        fprintf(f, "%s{\"second\":%.3f,\"messages\":%llu,\"errors\":%llu,\"open\":%llu}",
                i > 0 ? "," : "", s->bs_second, (unsigned long long)s->bs_messages,
                (unsigned long long)s->bs_errors, (unsigned long long)s->bs_open);
    }
    fputc(']', f);
}

/* The summary as one JSON object on one line; the keys are documented in the README. */
void
report_json(FILE *f, const struct bench_config *cfg, const struct bench_result *r)
{
    char tbuf[TARGET_STRLEN];
    double secs = r->br_elapsed > 0 ? r->br_elapsed : 1e-9;

    fputs("{\"label\":", f);
    if (cfg->bc_label != NULL)
        report_json_string(f, cfg->bc_label);
    else
        fputs("null", f);
    fputs(",\"target\":", f);
    report_json_string(f, target_format(&cfg->bc_target, tbuf, sizeof(tbuf)));
    fprintf(f,
            ",\"transport\":\"%s\",\"connections\":%u,\"threads\":%u,\"size\":%zu,"
            "\"pipeline\":%u,\"rate\":%.3f,\"connect_rate\":%.3f,",
            target_kind_name(cfg->bc_target.t_kind), cfg->bc_connections,
            cfg->bc_threads < cfg->bc_connections ? cfg->bc_threads : cfg->bc_connections,
            cfg->bc_size, cfg->bc_pipeline, cfg->bc_rate, cfg->bc_connect_rate);
    fprintf(f,
            "\"duration_s\":%.6f,\"interrupted\":%s,\"messages\":%llu,\"messages_per_s\":%.1f,"
            "\"bytes_sent\":%llu,\"bytes_received\":%llu,\"mb_per_s\":%.3f,",
            r->br_elapsed, r->br_interrupted ? "true" : "false", (unsigned long long)r->br_messages,
            (double)r->br_messages / secs, (unsigned long long)r->br_bytes_sent,
            (unsigned long long)r->br_bytes_received, (double)r->br_bytes_sent / secs / 1e6);
    report_json_hist(f, "latency_ns", r->br_latency);
    fputc(',', f);
    report_json_hist(f, "connect_ns", r->br_connect);
    fputc(',', f);
    report_json_percentiles(f, r->br_latency);
    fputc(',', f);
    report_json_timeline(f, r);
    fprintf(f,
            ",\"connections_opened\":%llu,\"connect_failures\":%llu,\"resets\":%llu,"
            "\"timeouts\":%llu,\"lost\":%llu,\"late\":%llu,\"errors\":%llu,"
            "\"mismatches\":%llu,\"mismatched_messages\":%llu,\"first_mismatch\":",
            (unsigned long long)r->br_opened, (unsigned long long)r->br_connect_failures,
            (unsigned long long)r->br_resets, (unsigned long long)r->br_timeouts,
            (unsigned long long)r->br_lost, (unsigned long long)r->br_late,
            (unsigned long long)bench_errors(r), (unsigned long long)r->br_mismatch_bytes,
            (unsigned long long)r->br_mismatch_messages);
    if (!r->br_has_first)
        fputs("null", f);
    else if (r->br_first_message == UINT64_MAX)
        fprintf(f, "{\"connection\":%u,\"message\":null,\"offset\":%llu}", r->br_first_conn,
                (unsigned long long)r->br_first_offset);
    else
        fprintf(f, "{\"connection\":%u,\"message\":%llu,\"offset\":%llu}", r->br_first_conn,
                (unsigned long long)r->br_first_message, (unsigned long long)r->br_first_offset);
    fprintf(f, ",\"ok\":%s}\n", bench_ok(r) ? "true" : "false");
}
