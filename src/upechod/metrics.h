/* metrics.h: the Prometheus endpoint, an evhttp server in the daemon's event base. */
#ifndef UPECHOD_METRICS_H
#define UPECHOD_METRICS_H

#include "addr.h"
#include "server.h"

struct evbuffer;
struct metrics;

/* Bounds that keep scrapers, or anyone reaching the port, from exhausting the daemon. */
#define METRICS_MAX_CONNECTIONS 16
#define METRICS_MAX_HEADERS 8192
#define METRICS_MAX_BODY 1024
#define METRICS_TIMEOUT_SEC 10

/*
 * Serve metrics of srv on a, bound here.  Returns 0 with *out set, or -errno
 * with *what naming the step that failed.
 */
int metrics_new(struct server *srv, const struct addr *a, const char **what, struct metrics **out);
void metrics_free(struct metrics *m);
/* The address it is bound to, real port filled in. */
const char *metrics_name(const struct metrics *m);
/* Whether it was created for configured address a. */
int metrics_is_at(const struct metrics *m, const struct addr *a);

/* Process figures from /proc/self, as Prometheus' process collector names them. */
struct metrics_process {
    double mp_start_time; /* seconds since the epoch */
    double mp_cpu_seconds;
    uint64_t mp_rss_bytes;
    uint64_t mp_open_fds;
    uint64_t mp_max_fds;
    int mp_ok; /* 0 when /proc could not be read: the process_* lines are left out */
};

void metrics_read_process(struct metrics_process *p);

/* The whole exposition for a snapshot of the counters, appended to out. */
void metrics_render(struct evbuffer *out, const struct server_stats *s,
                    const struct metrics_process *p);

#endif
