/* bench.h: the upecho-bench engine: load over many connections, every reply byte checked. */
#ifndef UPECHOD_BENCH_H
#define UPECHOD_BENCH_H

#include <stdint.h>

#include "hist.h"
#include "target.h"

/* Shortest UDP message: the sequence number travels in the first 8 bytes as hex. */
#define BENCH_UDP_MIN_SIZE 8
#define BENCH_MAX_SIZE (16u * 1024 * 1024)
#define BENCH_MAX_UDP_SIZE 65507u

/* What the progress callback gets once a second. */
struct bench_progress {
    double bp_elapsed;      /* seconds since the start */
    double bp_msgs_per_s;   /* over the last interval */
    double bp_mb_per_s;     /* payload sent, 10^6 bytes per second, over the last interval */
    uint64_t bp_messages;   /* answered so far */
    uint64_t bp_open;       /* connections open now */
    uint64_t bp_errors;     /* connect failures, resets, timeouts, lost and late so far */
    uint64_t bp_mismatches; /* wrong reply bytes so far */
};

/* One second of the run, for the timeline: what happened in it and how many were open at its end.
 */
struct bench_sample {
    double bs_second; /* end of the interval, seconds since the start (the last may be partial) */
    uint64_t bs_messages; /* answered in the interval */
    uint64_t bs_errors;   /* errors counted in the interval */
    uint64_t bs_open;     /* connections open at its end */
};

typedef void (*bench_progress_cb)(const struct bench_progress *p, void *arg);

struct bench_config {
    struct target bc_target;
    const struct addr *bc_sources; /* local addresses to bind, round-robin; NULL for none */
    size_t bc_nsources;
    unsigned bc_connections;
    unsigned bc_threads;
    unsigned bc_pipeline;          /* messages in flight per connection */
    size_t bc_size;                /* bytes per message */
    double bc_duration;            /* seconds; used when bc_messages is 0 */
    uint64_t bc_messages;          /* total messages over all connections, or 0 */
    double bc_rate;                /* total messages per second (open loop), or 0 */
    double bc_connect_rate;        /* connections opened per second, or 0 for all at once */
    double bc_timeout;             /* seconds without a reply before it counts as a timeout */
    double bc_connect_timeout;     /* seconds for a connect before it counts as failed */
    uint64_t bc_seed;              /* payload seed, so runs can be repeated */
    bench_progress_cb bc_progress; /* NULL for none */
    void *bc_progress_arg;
    const char *bc_label; /* a name for the run in reports and plots, or NULL */
};

struct bench_result {
    double br_elapsed;    /* seconds from the start until the last connection closed */
    int br_interrupted;   /* stopped early by SIGINT or SIGTERM */
    uint64_t br_messages; /* replies received in full (right or wrong) */
    uint64_t br_bytes_sent;
    uint64_t br_bytes_received;
    uint64_t br_opened;           /* connections established */
    uint64_t br_connect_failures; /* refused, unreachable, out of ports or timed out */
    int br_connect_errno;         /* errno of the first connect failure, ETIMEDOUT for a timeout */
    uint64_t br_resets;           /* established connections reset, closed or refused mid-run */
    int br_reset_errno;           /* errno of the first reset, 0 for a close by the peer */
    uint64_t br_timeouts;         /* stream connections that stalled past the timeout */
    uint64_t br_lost;             /* UDP requests without a reply within the timeout */
    uint64_t br_late;             /* UDP replies after their request was counted lost, or twice */
    uint64_t br_mismatch_bytes;   /* reply bytes that were not the uppercase of what was sent */
    uint64_t br_mismatch_messages;
    int br_has_first;          /* whether the br_first_* fields are set */
    unsigned br_first_conn;    /* connection number (0-based) of the first mismatch */
    uint64_t br_first_message; /* its message number on that connection, UINT64_MAX unknown */
    uint64_t br_first_offset;  /* stream byte offset, or byte offset in the datagram */
    struct hist *br_latency;   /* ns, from the (intended) send time to the last reply byte */
    struct hist *br_connect;   /* ns, from connect() to established */
    struct bench_sample *br_timeline; /* one per second of the run, the last one partial */
    size_t br_ntimeline;
};

void bench_config_init(struct bench_config *cfg);
int bench_config_check(const struct bench_config *cfg, const char **why);
int bench_run(const struct bench_config *cfg, struct bench_result **out);
void bench_result_free(struct bench_result *r);
uint64_t bench_errors(const struct bench_result *r);
int bench_ok(const struct bench_result *r);

#endif
