/* upecho-bench.c: load generator for upechod that checks every reply byte and measures latency. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sysexits.h>

#include "upechod-build.h"
#include "bench.h"
#include "hgrm.h"
#include "plot.h"
#include "report.h"

#define EX_FAILED 1

static void
usage(FILE *f)
{
    fputs("usage: upecho-bench [options] tcp://HOST:PORT | udp://HOST:PORT | unix:///PATH\n"
          "       upecho-bench --plot FILE.svg RUN.json...\n"
          "  -c, --connections N      connections (default 100)\n"
          "  -t, --threads N          worker threads (default: one per core)\n"
          "  -d, --duration TIME      run this long: 30, 1.5s, 500ms, 2m (default 10s)\n"
          "  -n, --messages N         send N messages in all instead (k, M suffixes)\n"
          "  -s, --size BYTES         bytes per message (default 64; k, M suffixes)\n"
          "  -p, --pipeline N         messages in flight per connection (default 1)\n"
          "  -R, --rate N             total messages per second, open loop; latency counts\n"
          "                           from each message's intended send time\n"
          "      --connect-rate N     connections opened per second (default: all at once)\n"
          "      --source LIST        local addresses, round-robin per connection: A, A-B\n"
          "                           (IPv4 range) or a comma list; may be repeated\n"
          "      --timeout TIME       a reply this late is a timeout, for UDP lost (default 2s)\n"
          "      --connect-timeout TIME  a connect this slow has failed (default 10s)\n"
          "      --seed N             payload seed, to repeat a run exactly (default 1)\n"
          "      --json               print the summary as one JSON object\n"
          "      --hgrm FILE          write the latency percentile distribution to FILE in\n"
          "                           HdrHistogram's text format, in milliseconds\n"
          "      --label TEXT         name the run in the JSON output and in plots\n"
          "      --plot FILE.svg      draw latency by percentile and messages per second\n"
          "                           to FILE.svg; given --json files instead of a target,\n"
          "                           draw those runs together without running\n"
          "  -q, --quiet              no progress line every second\n"
          "  -h, --help               this help\n"
          "  -V, --version            print the version\n"
          "Exit status: 0 when every reply was right and nothing failed, 1 on any mismatch,\n"
          "connect failure, reset, timeout or lost datagram, 64 on usage errors,\n"
          "65 for a --plot input that is not upecho-bench JSON, 66 for one that cannot\n"
          "be read, 71 when the run cannot start, 73 when an output file cannot be created.\n",
          f);
}

/* The finite, non-negative number s begins with; *end gets what follows it (a suffix). */
static int
parse_number(const char *s, double *v, char **end)
{
    errno = 0;
    *v = strtod(s, end);
    if (*end == s || errno != 0 || !(*v >= 0) || !isfinite(*v))
        return -EINVAL;
    return 0;
}

/* A count with an optional k (1000) or M (1000000) suffix; -EINVAL if malformed. */
static int
parse_count(const char *s, double scale_k, uint64_t max, uint64_t *out)
{
    char *end;
    double v;

    if (parse_number(s, &v, &end) < 0)
        return -EINVAL;
    if (*end == 'k' || *end == 'K')
        v *= scale_k, end++;
    else if (*end == 'M' || *end == 'm')
        v *= scale_k * scale_k, end++;
    if (*end != '\0' || v > (double)max || v != (double)(uint64_t)v)
        return -EINVAL;
    *out = (uint64_t)v;
    return 0;
}

/* A duration: plain seconds or with an ms, s or m suffix. */
static int
parse_seconds(const char *s, double *out)
{
    char *end;
    double v;

    if (parse_number(s, &v, &end) < 0 || v == 0)
        return -EINVAL;
    if (strcmp(end, "ms") == 0)
        v /= 1000.0;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        v *= 60.0;
    else if (strcmp(end, "s") != 0 && *end != '\0')
        return -EINVAL;
    *out = v;
    return 0;
}

static int
parse_uint(const char *s, unsigned max, unsigned *out)
{
    uint64_t v;

    if (parse_count(s, 1000.0, max, &v) < 0 || v == 0)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

static int
parse_rate(const char *s, double *out)
{
    char *end;
    double v;

    if (parse_number(s, &v, &end) < 0 || v == 0)
        return -EINVAL;
    if (*end == 'k' || *end == 'K')
        v *= 1e3, end++;
    else if (*end == 'M')
        v *= 1e6, end++;
    if (*end != '\0')
        return -EINVAL;
    *out = v;
    return 0;
}

/*
 * Many connections need many descriptors: take the soft open-file limit up
 * to the hard one, and say so if it still falls short.
 */
static void
raise_nofile(unsigned connections)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)connections + 32 > rl.rlim_cur)
        fprintf(stderr,
                "upecho-bench: warning: open-file limit %llu is too low for %u connections; "
                "some will fail\n",
                (unsigned long long)rl.rlim_cur, connections);
}

static void
progress_print(const struct bench_progress *p, void *arg)
{
    report_progress(stderr, p);
}

/* Write the plot of runs to path; the exit status. */
static int
plot_save(const char *path, const struct plot_run *runs, size_t nruns)
{
    FILE *f = fopen(path, "w");
    int rc;

    if (f == NULL) {
        fprintf(stderr, "upecho-bench: cannot create %s: %s\n", path, strerror(errno));
        return EX_CANTCREAT;
    }
    rc = plot_write(f, runs, nruns);
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc < 0) {
        fprintf(stderr, "upecho-bench: cannot write %s: %s\n", path, strerror(-rc));
        return EX_CANTCREAT;
    }
    return EX_OK;
}

/* --plot with JSON files: draw the runs they hold, without running; the exit status. */
static int
plot_files(const char *out, char **files, int nfiles)
{
    struct plot_run *runs = calloc((size_t)nfiles, sizeof(*runs));
    char why[256];
    int n, rc, status = EX_OK;

    if (runs == NULL)
        return EX_OSERR;
    for (n = 0; n < nfiles; n++) {
        rc = plot_run_load(&runs[n], files[n], why, sizeof(why));
        if (rc == -EINVAL) {
            fprintf(stderr, "upecho-bench: %s: %s\n", files[n], why);
            status = EX_DATAERR;
        } else if (rc == -EFBIG) {
            fprintf(stderr, "upecho-bench: %s: too big for upecho-bench JSON (over %u bytes)\n",
                    files[n], PLOT_MAX_INPUT);
            status = EX_DATAERR;
        } else if (rc == -ENOMEM) {
            fprintf(stderr, "upecho-bench: %s: out of memory\n", files[n]);
            status = EX_OSERR;
        } else if (rc < 0) {
            fprintf(stderr, "upecho-bench: cannot read %s: %s\n", files[n], strerror(-rc));
            status = EX_NOINPUT;
        }
        if (rc < 0)
            break;
    }
    if (status == EX_OK)
        status = plot_save(out, runs, (size_t)nfiles);
    for (int i = 0; i < n && i < nfiles; i++)
        plot_run_deinit(&runs[i]);
    free(runs);
    return status;
}

enum {
    OPT_CONNECT_RATE = 256,
    OPT_SOURCE,
    OPT_TIMEOUT,
    OPT_CONNECT_TIMEOUT,
    OPT_SEED,
    OPT_JSON,
    OPT_HGRM,
    OPT_LABEL,
    OPT_PLOT,
};

static const struct option long_options[] = {
    {"connections", required_argument, NULL, 'c'},
    {"threads", required_argument, NULL, 't'},
    {"duration", required_argument, NULL, 'd'},
    {"messages", required_argument, NULL, 'n'},
    {"size", required_argument, NULL, 's'},
    {"pipeline", required_argument, NULL, 'p'},
    {"rate", required_argument, NULL, 'R'},
    {"connect-rate", required_argument, NULL, OPT_CONNECT_RATE},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"json", no_argument, NULL, OPT_JSON},
    {"hgrm", required_argument, NULL, OPT_HGRM},
    {"label", required_argument, NULL, OPT_LABEL},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

int
main(int argc, char **argv)
{
    struct bench_config cfg;
    struct bench_result *res = NULL;
    struct addr *sources = NULL;
    size_t nsources = 0;
    const char **source_args;
    size_t nsource_args = 0;
    const char *why = NULL, *hgrm_path = NULL, *plot_path = NULL;
    FILE *hgrm = NULL;
    int json = 0, quiet = 0, opt, rc, status;
    uint64_t v;

    bench_config_init(&cfg);
    source_args = calloc((size_t)argc, sizeof(*source_args));
    if (source_args == NULL)
        return EX_OSERR;
    while ((opt = getopt_long(argc, argv, "c:t:d:n:s:p:R:qhV", long_options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            rc = parse_uint(optarg, 10000000, &cfg.bc_connections);
            why = "-c wants a number of connections";
            break;
        case 't':
            rc = parse_uint(optarg, 1024, &cfg.bc_threads);
            why = "-t wants a number of threads, 1 to 1024";
            break;
        case 'd':
            rc = parse_seconds(optarg, &cfg.bc_duration);
            why = "-d wants a duration such as 10, 2.5s, 500ms or 1m";
            break;
        case 'n':
            rc = parse_count(optarg, 1000.0, UINT64_MAX / 2, &cfg.bc_messages);
            if (rc == 0 && cfg.bc_messages == 0)
                rc = -EINVAL;
            why = "-n wants a positive number of messages";
            break;
        case 's':
            rc = parse_count(optarg, 1024.0, BENCH_MAX_SIZE, &v);
            cfg.bc_size = (size_t)v;
            if (rc == 0 && v == 0)
                rc = -EINVAL;
            why = "-s wants a message size in bytes, 1 to 16M";
            break;
        case 'p':
            rc = parse_uint(optarg, 65536, &cfg.bc_pipeline);
            why = "-p wants a number of messages in flight, 1 to 65536";
            break;
        case 'R':
            rc = parse_rate(optarg, &cfg.bc_rate);
            why = "-R wants a positive number of messages per second";
            break;
        case OPT_CONNECT_RATE:
            rc = parse_rate(optarg, &cfg.bc_connect_rate);
            why = "--connect-rate wants a positive number of connections per second";
            break;
        case OPT_SOURCE:
            source_args[nsource_args++] = optarg;
            rc = 0;
            break;
        case OPT_TIMEOUT:
            rc = parse_seconds(optarg, &cfg.bc_timeout);
            why = "--timeout wants a duration such as 2, 500ms";
            break;
        case OPT_CONNECT_TIMEOUT:
            rc = parse_seconds(optarg, &cfg.bc_connect_timeout);
            why = "--connect-timeout wants a duration such as 10, 500ms";
            break;
        case OPT_SEED:
            rc = parse_count(optarg, 1000.0, UINT64_MAX / 2, &cfg.bc_seed);
            why = "--seed wants a number";
            break;
        case OPT_JSON:
            json = 1;
            rc = 0;
            break;
        case OPT_HGRM:
            hgrm_path = optarg;
            rc = 0;
            break;
        case OPT_PLOT:
            plot_path = optarg;
            rc = 0;
            break;
        case OPT_LABEL:
            cfg.bc_label = optarg;
            rc = 0;
            break;
        case 'q':
            quiet = 1;
            rc = 0;
            break;
        case 'h':
            usage(stdout);
            free(source_args);
            return EX_OK;
        case 'V':
            printf("upecho-bench %s\n", UPECHOD_VERSION);
            free(source_args);
            return EX_OK;
        default:
            usage(stderr);
            free(source_args);
            return EX_USAGE;
        }
        if (rc < 0) {
            fprintf(stderr, "upecho-bench: %s, not '%s'\n", why, optarg);
            free(source_args);
            return EX_USAGE;
        }
    }
    /* Files rather than a target: draw runs made before. */
    if (plot_path != NULL && optind < argc && strstr(argv[optind], "://") == NULL) {
        free(source_args);
        if (json || hgrm_path != NULL) {
            fprintf(stderr, "upecho-bench: --json and --hgrm need a run, not JSON files\n");
            return EX_USAGE;
        }
        return plot_files(plot_path, argv + optind, argc - optind);
    }
    if (optind != argc - 1) {
        fprintf(stderr, "upecho-bench: expected one target, such as tcp://127.0.0.1:7000%s\n",
                optind < argc - 1 ? " (JSON files are drawn with --plot FILE.svg)" : "");
        usage(stderr);
        free(source_args);
        return EX_USAGE;
    }
    if (target_parse(argv[optind], &cfg.bc_target, &why) < 0) {
        fprintf(stderr, "upecho-bench: bad target '%s': %s\n", argv[optind], why);
        free(source_args);
        return EX_USAGE;
    }
    for (size_t i = 0; i < nsource_args; i++) {
        if (target_sources_parse(source_args[i], cfg.bc_target.t_addr.a_ss.ss_family, &sources,
                                 &nsources, &why) < 0) {
            fprintf(stderr, "upecho-bench: bad --source '%s': %s\n", source_args[i], why);
            free(source_args);
            free(sources);
            return EX_USAGE;
        }
    }
    free(source_args);
    cfg.bc_sources = sources;
    cfg.bc_nsources = nsources;
    if (bench_config_check(&cfg, &why) < 0) {
        fprintf(stderr, "upecho-bench: %s\n", why);
        free(sources);
        return EX_USAGE;
    }
    if (!quiet) {
        cfg.bc_progress = progress_print;
        cfg.bc_progress_arg = NULL;
    }

    /* Create the output files before the run, so a bad path does not waste one. */
    if (hgrm_path != NULL && (hgrm = fopen(hgrm_path, "w")) == NULL) {
        fprintf(stderr, "upecho-bench: cannot create %s: %s\n", hgrm_path, strerror(errno));
        free(sources);
        return EX_CANTCREAT;
    }
    if (plot_path != NULL) {
        FILE *f = fopen(plot_path, "w");

        if (f == NULL) {
            fprintf(stderr, "upecho-bench: cannot create %s: %s\n", plot_path, strerror(errno));
            if (hgrm != NULL)
                fclose(hgrm);
            free(sources);
            return EX_CANTCREAT;
        }
        fclose(f);
    }

    /* Writes use MSG_NOSIGNAL; this also covers a closed stdout. */
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(cfg.bc_connections);
    rc = bench_run(&cfg, &res);
    if (rc < 0) {
        fprintf(stderr, "upecho-bench: cannot run: %s\n", strerror(-rc));
        if (hgrm != NULL)
            fclose(hgrm);
        free(sources);
        return EX_OSERR;
    }
    if (json)
        report_json(stdout, &cfg, res);
    else
        report_text(stdout, &cfg, res);
    fflush(stdout);
    status = bench_ok(res) ? EX_OK : EX_FAILED;
    if (hgrm != NULL) {
        rc = hgrm_write(hgrm, res->br_latency);
        if (fclose(hgrm) != 0 && rc == 0)
            rc = -errno;
        if (rc < 0) {
            fprintf(stderr, "upecho-bench: cannot write %s: %s\n", hgrm_path, strerror(-rc));
            status = EX_CANTCREAT;
        }
    }
    if (plot_path != NULL) {
        struct plot_run pr;

        rc = plot_run_from_result(&pr, &cfg, res);
        if (rc < 0) {
            fprintf(stderr, "upecho-bench: cannot plot: %s\n", strerror(-rc));
            status = EX_OSERR;
        } else {
            rc = plot_save(plot_path, &pr, 1);
            if (rc != EX_OK)
                status = rc;
            plot_run_deinit(&pr);
        }
    }
    if (!bench_ok(res)) {
        if (res->br_mismatch_bytes > 0)
            fprintf(stderr, "upecho-bench: %llu wrong reply bytes\n",
                    (unsigned long long)res->br_mismatch_bytes);
        if (bench_errors(res) > 0)
            fprintf(stderr, "upecho-bench: %llu errors\n", (unsigned long long)bench_errors(res));
        if (res->br_messages == 0)
            fprintf(stderr, "upecho-bench: no reply at all\n");
    }
    bench_result_free(res);
    free(sources);
    return status;
}
