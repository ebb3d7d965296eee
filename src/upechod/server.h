/* server.h: the daemon's main thread: signals, reload, shutdown, and the workers it runs. */
#ifndef UPECHOD_SERVER_H
#define UPECHOD_SERVER_H

#include <stdint.h>
#include <sysexits.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>

#include "config.h"
#include "listener.h"
#include "stats.h"
#include "transport.h"
#include "worker.h"

struct notify;
struct metrics;

/*
 * The main thread's state: signals, reload, shutdown, the service manager,
 * and the sockets it binds for the workers, which serve the clients.
 */
struct server {
    struct event_base *srv_base;
    struct upechod_config srv_conf;
    char srv_conf_path[4096]; /* what SIGHUP re-reads; "" = built-in defaults */

    struct listener_list srv_listeners;
    struct listener_list srv_retired; /* let go of here, perhaps not yet by a worker that lags */
    struct worker_group srv_workers;
    int srv_workers_ready; /* srv_workers initialised */
    unsigned srv_workers_done;
    struct notify *srv_notify;

    struct event *srv_sigint;
    struct event *srv_sigterm;
    struct event *srv_sighup;
    struct event *srv_done_ev; /* a worker's loop ended */
    struct event *srv_shutdown_timer;
    struct event *srv_status_timer;
    struct event *srv_watchdog_timer;
    struct event *srv_lag_timer; /* a worker has not carried out an order: look again */

    int srv_stopping;
    int srv_reapply;        /* the workers' plan could not be made: make it again */
    int srv_reload_lagging; /* the last reload waits for a worker to apply it */
    char srv_lag_who[64];   /* which workers it waits for: "worker 1", "workers 1, 3" */
    int srv_exit_code;
    int srv_activated;             /* serving sockets passed by systemd */
    struct server_stats srv_stats; /* the main thread's own counters: reloads, start */
    struct metrics *srv_metrics;   /* the HTTP endpoint, NULL when disabled */
};

/*
 * server_start()'s positive return: what the daemon was given cannot work
 * (unusable sockets from the service manager, a user that does not exist),
 * so restarting would not help.  main() exits with EX_CONFIG for it.
 */
#define SERVER_ECONFIG 1

/*
 * Exit status when a stop had to close connections that still had echo
 * pending: shutdown_timeout ran out, or a second SIGTERM came.  75 is
 * EX_TEMPFAIL; it differs from 1 (cannot start, unclean stop) because the
 * stop was asked for and done, and upechod.service lists it in
 * SuccessExitStatus= so that such a stop does not leave the unit failed.
 */
#define SERVER_EXIT_CUT_SHORT EX_TEMPFAIL

struct server *server_new(const struct upechod_config *conf, const char *conf_path);
void server_free(struct server *srv);
int server_start(struct server *srv);
int server_run(struct server *srv);
int server_stuck(struct server *srv);

size_t server_connections(struct server *srv);
void server_stats(struct server *srv, struct server_stats *sum);
void server_stats_snapshot(struct server *srv, struct server_stats *out);

#endif
