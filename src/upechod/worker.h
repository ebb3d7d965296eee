/* worker.h: the threads that serve clients, each with its own event loop. */
#ifndef UPECHOD_WORKER_H
#define UPECHOD_WORKER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "listener.h"
#include "stats.h"
#include "udp.h"

struct source_table;
struct worker;
struct worker_plan;

/* What the main thread asks every worker to do. */
enum worker_order_kind {
    WORKER_APPLY, /* take wo_conf and serve exactly wo_listeners */
    WORKER_STOP,  /* let go of the listeners, finish the connections, then end the loop */
    WORKER_BREAK, /* end the loop now, whatever is open */
    WORKER_COUNT, /* count the connections still owed echo */
};

struct worker_order {
    enum worker_order_kind wo_kind;
    const struct upechod_config *wo_conf;     /* WORKER_APPLY */
    const struct listener_list *wo_listeners; /* WORKER_APPLY */
};

/*
 * The workers and what they share.  Owned by the main thread; the only
 * state written by several threads is the global connection count and the
 * accept-failure log budget (atomics, touched per connection, never per
 * message) and the order mailbox (under wg_lock).
 *
 * The mailbox holds state rather than a queue: the plan of the latest
 * WORKER_APPLY (a copy, so it outlives the main thread's configuration and
 * listener list), and whether a stop or a break was ordered.  A worker that
 * missed orders, its loop blocked, catches up with all of them at once
 * when it runs again.
 */
struct worker_group {
    struct worker **wg_workers;
    unsigned wg_n;
    int wg_started;                   /* threads running */
    int wg_done_fd;                   /* eventfd: each worker adds 1 when its loop ends */
    size_t wg_nconns;                 /* atomic: streams open in every worker together */
    uint64_t wg_nofd_count;           /* atomic: accept failures not reported yet */
    int64_t wg_nofd_logged_ms;        /* atomic: when the last accept-failure line was logged */
    struct udp_loop_log wg_loop_log;  /* atomics: the UDP loop guard's log budget */
    struct stats_budget wg_proxy_log; /* atomics: PROXY header failure lines */
    size_t wg_mem_total;              /* atomic: output queued on every worker's streams */
    int64_t wg_full_since;            /* atomic: when max_connections was reached (ms), or 0 */

    /* max_connections_per_source, counted across workers, per connection (not per message). */
    pthread_mutex_t wg_sources_lock;
    struct source_table *wg_sources;

    pthread_mutex_t wg_lock;
    pthread_cond_t wg_cond;         /* on CLOCK_MONOTONIC, for the bounded waits */
    unsigned wg_gen;                /* under wg_lock: number of the latest order */
    enum worker_order_kind wg_kind; /* under wg_lock: the latest order */
    struct worker_plan *wg_plan;    /* under wg_lock: the latest WORKER_APPLY */
    unsigned wg_plan_gen;           /* under wg_lock: its order number */
    int wg_stop;                    /* under wg_lock: WORKER_STOP was ordered */
    int wg_break;                   /* under wg_lock: WORKER_BREAK was ordered */
    int wg_abandoned;               /* a thread did not end: nothing may be freed */
};

int worker_group_init(struct worker_group *wg, const struct upechod_config *cf, uint64_t beat_usec);
int worker_group_start(struct worker_group *wg);
int worker_group_order(struct worker_group *wg, const struct worker_order *o, unsigned wait_ms);
int worker_group_settled(struct worker_group *wg);
unsigned worker_group_lagging(struct worker_group *wg, char *buf, size_t size);
int worker_group_join(struct worker_group *wg, unsigned wait_ms);
void worker_group_deinit(struct worker_group *wg);
size_t worker_group_connections(struct worker_group *wg);
int worker_group_owed(struct worker_group *wg, unsigned wait_ms, size_t *owed);
void worker_group_stats(struct worker_group *wg, struct server_stats *sum);
void worker_group_paused_now(struct worker_group *wg, struct server_stats *s);
const struct server_stats *worker_group_worker_stats(struct worker_group *wg, unsigned i);
int worker_group_alive(struct worker_group *wg);

#endif
