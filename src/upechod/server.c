/* server.c: the event loop and everything that spans listeners and connections. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "activation.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "privs.h"
#include "server.h"
#include "upechod-build.h"
#include "worker.h"

/* "s" after a count that is not 1. */
#define SERVER_S(n) ((n) == 1 ? "" : "s")

/* How often the service manager's STATUS= line is refreshed. */
#define SERVER_STATUS_SEC 5
/* Shortest interval between watchdog pings, whatever WATCHDOG_USEC says. */
#define SERVER_WATCHDOG_MIN_USEC 10000
/* Worker heartbeats per watchdog ping: a worker that missed them all is stuck. */
#define SERVER_BEATS_PER_PING 4
/*
 * How long the main thread waits for the workers to apply a configuration
 * (start, reload) before it goes on without those that have not: their
 * loop is stuck, and the rest of the daemon must not be.
 */
#define SERVER_RELOAD_WAIT_MS 5000
/*
 * How long a stop waits for a worker to answer: to let go of the
 * listeners, to count what it owes, to end.  Within shutdown_timeout for
 * the first, after it for the others: a stop lasts shutdown_timeout and at
 * most twice this longer, whatever a worker does.
 */
#define SERVER_STOP_WAIT_MS 1000
/* How often a worker that has not carried out an order is looked at again. */
#define SERVER_LAG_CHECK_MS 100
/* Descriptors kept for listeners, logs and the like, beyond one per connection. */
#define SERVER_FD_RESERVE 64
/* ls_mark during server_reconcile(): to close, to keep, or bound by this round. */
#define SERVER_LS_DROP 0
#define SERVER_LS_KEEP 1
#define SERVER_LS_NEW 2
/* ls_mark of a listener in srv_retired from an earlier round. */
#define SERVER_LS_RETIRED 3

/* Stream connections open across every worker. */
size_t
server_connections(struct server *srv)
{
    return srv->srv_workers_ready ? worker_group_connections(&srv->srv_workers) : 0;
}

/* The daemon's counters: the sum over workers, read without stopping them. */
void
server_stats(struct server *srv, struct server_stats *sum)
{
    memset(sum, 0, sizeof(*sum));
    if (srv->srv_workers_ready)
        worker_group_stats(&srv->srv_workers, sum);
}

/*
 * The counters as they are now, with the gauges filled in (open connections,
 * pending output): what the metrics endpoint renders.  The sum over workers,
 * read while they run, and the main thread's own (reloads, start time).
 * Pending output is the workers' shared total, exact to within 16 KiB per
 * worker.
 */
void
server_stats_snapshot(struct server *srv, struct server_stats *out)
{
    server_stats(srv, out);
    out->ss_reloads_ok = srv->srv_stats.ss_reloads_ok;
    out->ss_reloads_failed = srv->srv_stats.ss_reloads_failed;
    out->ss_reload_time = srv->srv_stats.ss_reload_time;
    out->ss_start_time = srv->srv_stats.ss_start_time;
    for (int t = 0; t < TRANSPORT_COUNT; t++)
        /* Each worker's two counts are read one after the other: never below 0. */
        out->ss_open[t] = out->ss_t_accepted[t] > out->ss_t_closed[t]
                              ? out->ss_t_accepted[t] - out->ss_t_closed[t]
                              : 0;
    out->ss_pending_output = srv->srv_workers_ready
                                 ? __atomic_load_n(&srv->srv_workers.wg_mem_total, __ATOMIC_RELAXED)
                                 : 0;
    out->ss_workers = srv->srv_workers.wg_n;
    if (srv->srv_workers_ready)
        worker_group_paused_now(&srv->srv_workers, out);
}

/*
 * The workers that have not carried out the latest order, as "worker 1"
 * or "workers 1, 3" in buf; returns how many.
 */
static unsigned
server_lag_names(struct server *srv, char *buf, size_t size)
{
    char list[48];
    unsigned n = worker_group_lagging(&srv->srv_workers, list, sizeof(list));

    snprintf(buf, size, "worker%s %s", SERVER_S(n), list);
    return n;
}

/* A worker has not carried out an order: look again until every one has. */
static void
server_lagging(struct server *srv)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = SERVER_LAG_CHECK_MS * 1000};

    if (!evtimer_pending(srv->srv_lag_timer, NULL))
        evtimer_add(srv->srv_lag_timer, &tv);
}

/*
 * Have every worker serve srv_listeners with cf, and wait until each has,
 * for at most SERVER_RELOAD_WAIT_MS.  0, or -ETIMEDOUT when a worker has
 * not yet (it will when its loop runs again; srv_lag_timer watches for
 * that), or -ENOMEM when the order could not be made (it is made again
 * from the running configuration).
 */
static int
server_apply(struct server *srv, const struct upechod_config *cf)
{
    struct worker_order o = {
        .wo_kind = WORKER_APPLY,
        .wo_conf = cf,
        .wo_listeners = &srv->srv_listeners,
    };
    int rc;

    if (!srv->srv_workers.wg_started)
        return 0;
    rc = worker_group_order(&srv->srv_workers, &o, SERVER_RELOAD_WAIT_MS);
    if (rc == -ENOMEM) {
        log_error("out of memory handing the configuration to the workers; trying again");
        srv->srv_reapply = 1;
    }
    if (rc != 0)
        server_lagging(srv);
    return rc;
}

/* Raise the soft open-file limit to the hard one; warn when max_connections cannot fit. */
static void
server_raise_nofile(const struct upechod_config *cf)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && cf->cf_max_connections + SERVER_FD_RESERVE > rl.rlim_cur)
        log_warn("max_connections = %zu does not fit the open-file limit of %llu (one descriptor "
                 "per connection, plus a few for listeners and logs); when descriptors run out, "
                 "new clients wait in the backlog until connections close",
                 cf->cf_max_connections, (unsigned long long)rl.rlim_cur);
}

static struct listener *
server_find(struct server *srv, enum transport t, const struct addr *a, const char *path)
{
    struct listener *ls;

    TAILQ_FOREACH(ls, &srv->srv_listeners, ls_entry) {
        if (ls->ls_transport != t || ls->ls_activated)
            continue;
        if (t == TRANSPORT_UNIX ? strcmp(ls->ls_path, path) == 0 : addr_equal(&ls->ls_conf_addr, a))
            return ls;
    }
    return NULL;
}

/* Bind one configured address; returns 0 or -errno, after logging either way. */
static int
server_listen_one(struct server *srv, const struct upechod_config *cf, enum transport t,
                  const struct addr *a, const char *text, int quiet_inuse)
{
    struct listener *ls;
    const char *what = "";

    if (t == TRANSPORT_UNIX) {
        uid_t uid = (uid_t)-1;
        gid_t gid = (gid_t)-1;

        /*
         * Still root, about to become user: give the socket to user and
         * group, so that mode's group bits mean them and the unlink at exit
         * is allowed.  Later (a reload) we already are that user.
         */
        if (cf->cf_user[0] != '\0' && geteuid() == 0 &&
            privs_lookup(cf->cf_user, cf->cf_group, &uid, &gid) != 0) {
            log_error("cannot listen on unix %s: no such user or group %s:%s", text, cf->cf_user,
                      cf->cf_group);
            return -ENOENT;
        }
        ls = listener_new_unix(cf->cf_unix_path, cf->cf_unix_mode, uid, gid, cf->cf_unix_backlog,
                               &what);
    } else {
        ls = listener_new_inet(t, a, t == TRANSPORT_TCP ? cf->cf_tcp_backlog : 0,
                               srv->srv_conf.cf_workers, &what);
    }
    if (ls == NULL) {
        int err = errno;

        if (!(quiet_inuse && err == EADDRINUSE))
            log_error("cannot listen on %s %s: %s: %s", transport_name(t), text, what,
                      strerror(err));
        return -err;
    }
    ls->ls_mark = SERVER_LS_NEW;
    TAILQ_INSERT_TAIL(&srv->srv_listeners, ls, ls_entry);
    return 0;
}

/* Stop listening; the workers have let go.  Connections accepted go on. */
static void
server_close_listeners(struct listener_list *list)
{
    struct listener *ls;

    while ((ls = TAILQ_FIRST(list)) != NULL) {
        TAILQ_REMOVE(list, ls, ls_entry);
        listener_free(ls);
    }
}

struct server_want {
    enum transport sw_transport;
    const struct addr *sw_addr;
    const char *sw_text;
    int sw_retry;
};

/*
 * Listeners the workers were told to let go of, but not every one has yet
 * (its loop does not run): kept open until it has, since its loop may still
 * serve them.  They are closed by server_settle().
 */
static void
server_retire(struct server *srv, struct listener_list *list)
{
    struct listener *ls;

    while ((ls = TAILQ_FIRST(list)) != NULL) {
        TAILQ_REMOVE(list, ls, ls_entry);
        TAILQ_INSERT_TAIL(&srv->srv_retired, ls, ls_entry);
        log_warn("%s %s stays open until every worker has let go of it",
                 transport_name(ls->ls_transport), ls->ls_name);
    }
}

/* Retired listeners marked `mark` are listeners again, their sockets still bound. */
static void
server_unretire(struct server *srv, int mark)
{
    struct listener *ls, *next;

    for (ls = TAILQ_FIRST(&srv->srv_retired); ls != NULL; ls = next) {
        next = TAILQ_NEXT(ls, ls_entry);
        if (ls->ls_mark != mark)
            continue;
        TAILQ_REMOVE(&srv->srv_retired, ls, ls_entry);
        TAILQ_INSERT_TAIL(&srv->srv_listeners, ls, ls_entry);
    }
}

/*
 * Close every listener whose mark is `mark`, logging each with why.  The
 * workers let go of them first (and serve the others, with the running
 * configuration): a socket is never closed under a worker's loop; when a
 * worker does not answer in time, the socket is retired instead.
 */
static void
server_close_marked(struct server *srv, int mark, const char *why)
{
    struct listener_list gone = TAILQ_HEAD_INITIALIZER(gone);
    struct listener_list fresh = TAILQ_HEAD_INITIALIZER(fresh);
    struct listener *ls, *next;
    int rc = 0;

    for (ls = TAILQ_FIRST(&srv->srv_listeners); ls != NULL; ls = next) {
        next = TAILQ_NEXT(ls, ls_entry);
        if (ls->ls_mark != mark)
            continue;
        if (why != NULL)
            log_info("%s %s %s", why, transport_name(ls->ls_transport), ls->ls_name);
        TAILQ_REMOVE(&srv->srv_listeners, ls, ls_entry);
        TAILQ_INSERT_TAIL(&gone, ls, ls_entry);
    }
    if (TAILQ_EMPTY(&gone))
        return;
    /*
     * The workers still run the old configuration here, so the listeners
     * bound by this round are left out of what they serve: clients of a new
     * address wait in its backlog until server_reload() hands out the new
     * configuration with it, and are never served under the old one.  The
     * list is put back in its order (new listeners are at its end).
     */
    for (ls = TAILQ_FIRST(&srv->srv_listeners); ls != NULL; ls = next) {
        next = TAILQ_NEXT(ls, ls_entry);
        if (ls->ls_mark == SERVER_LS_NEW) {
            TAILQ_REMOVE(&srv->srv_listeners, ls, ls_entry);
            TAILQ_INSERT_TAIL(&fresh, ls, ls_entry);
        }
    }
    rc = server_apply(srv, &srv->srv_conf);
    TAILQ_CONCAT(&srv->srv_listeners, &fresh, ls_entry);
    if (rc == 0)
        server_close_listeners(&gone);
    else
        server_retire(srv, &gone);
}

/* Whether a listener about to be closed may be what keeps want from binding. */
static int
server_want_blocked(struct server *srv, const struct server_want *w)
{
    struct listener *ls;

    TAILQ_FOREACH(ls, &srv->srv_listeners, ls_entry) {
        if (ls->ls_mark == SERVER_LS_DROP && ls->ls_transport == w->sw_transport &&
            ls->ls_transport != TRANSPORT_UNIX &&
            addr_port((const struct sockaddr *)&ls->ls_conf_addr.a_ss) ==
                addr_port((const struct sockaddr *)&w->sw_addr->a_ss))
            return 1;
    }
    return 0;
}

/*
 * Make the listening sockets match cf.  Used at start and on reload: an
 * address already being listened on keeps its socket (no moment where
 * connects are refused), removed ones are closed (their connections go
 * on), new ones are bound.
 *
 * A reload is all or nothing, as nginx and HAProxy do it: everything new is
 * bound first, and if any of it fails the new sockets are closed again and
 * the old ones were never touched.  Only a new address that collides with
 * one about to be removed (127.0.0.1:9090 becoming *:9090) needs the old
 * socket closed before it can be bound; if it still fails then, the old
 * listeners are bound again from the running configuration.  With `fatal`
 * (start-up) the first failure is returned at once.  Returns 0 or the
 * first -errno; every failure is logged with the address.
 */
static int
server_reconcile(struct server *srv, const struct upechod_config *cf, int fatal)
{
    struct server_want want[2 * CONFIG_MAX_LISTEN + 1];
    struct listener *ls;
    size_t nwant = 0;
    int rc, blocked, first_err = 0;

    if (cf->cf_tcp_enabled)
        for (size_t i = 0; i < cf->cf_tcp_nlisten; i++)
            want[nwant++] = (struct server_want){TRANSPORT_TCP, &cf->cf_tcp_listen[i],
                                                 cf->cf_tcp_listen_text[i], 0};
    if (cf->cf_udp_enabled)
        for (size_t i = 0; i < cf->cf_udp_nlisten; i++)
            want[nwant++] = (struct server_want){TRANSPORT_UDP, &cf->cf_udp_listen[i],
                                                 cf->cf_udp_listen_text[i], 0};
    if (cf->cf_unix_enabled)
        want[nwant++] = (struct server_want){TRANSPORT_UNIX, NULL, cf->cf_unix_path, 0};

    TAILQ_FOREACH(ls, &srv->srv_listeners, ls_entry)
        ls->ls_mark = ls->ls_activated ? SERVER_LS_KEEP : SERVER_LS_DROP;
    TAILQ_FOREACH(ls, &srv->srv_retired, ls_entry)
        ls->ls_mark = SERVER_LS_RETIRED;

    for (size_t i = 0; i < nwant && first_err == 0; i++) {
        ls = server_find(srv, want[i].sw_transport, want[i].sw_addr, want[i].sw_text);
        if (ls != NULL) {
            ls->ls_mark = SERVER_LS_KEEP;
            /*
             * Never chmod a path: whatever now sits there (a symlink to
             * another file, say) would get the mode.  The mode is set
             * through the umask when the socket is created, and only then.
             */
            if (ls->ls_transport == TRANSPORT_UNIX &&
                cf->cf_unix_mode != srv->srv_conf.cf_unix_mode)
                log_warn("reload: [unix] mode applies when the socket is created: at the next "
                         "start, or when path changes");
            continue;
        }
        /* An address an old socket may hold: EADDRINUSE is retried once that one is closed. */
        blocked =
            !fatal && want[i].sw_transport != TRANSPORT_UNIX && server_want_blocked(srv, &want[i]);
        rc = server_listen_one(srv, cf, want[i].sw_transport, want[i].sw_addr, want[i].sw_text,
                               blocked);
        if (rc == -EADDRINUSE && blocked) {
            want[i].sw_retry = 1;
        } else if (rc != 0) {
            first_err = rc;
        }
    }
    if (first_err != 0) {
        if (!fatal)
            server_close_marked(srv, SERVER_LS_NEW, NULL);
        return first_err;
    }

    /* Everything that could be bound beside the old sockets is: commit. */
    server_close_marked(srv, SERVER_LS_DROP, "no longer listening on");
    for (size_t i = 0; i < nwant && first_err == 0; i++)
        if (want[i].sw_retry)
            first_err = server_listen_one(srv, cf, want[i].sw_transport, want[i].sw_addr,
                                          want[i].sw_text, 0);
    if (first_err != 0) {
        /* The old sockets are gone: put back what the running configuration had. */
        server_close_marked(srv, SERVER_LS_NEW, NULL);
        /* Those a lagging worker kept open are still bound: they come back as they are. */
        server_unretire(srv, SERVER_LS_DROP);
        log_warn("reload: binding the listeners of the running configuration again");
        if (server_reconcile(srv, &srv->srv_conf, 1) != 0)
            log_error("reload: not every listener of the running configuration could be "
                      "bound again");
        TAILQ_FOREACH(ls, &srv->srv_listeners, ls_entry)
            if (ls->ls_mark == SERVER_LS_NEW)
                log_info("listening on %s %s", transport_name(ls->ls_transport), ls->ls_name);
        return first_err;
    }
    TAILQ_FOREACH(ls, &srv->srv_listeners, ls_entry) {
        if (ls->ls_mark == SERVER_LS_NEW)
            log_info("listening on %s %s", transport_name(ls->ls_transport), ls->ls_name);
        /* A kept stream listener takes a changed backlog with another listen(2). */
        else if (ls->ls_mark == SERVER_LS_KEEP &&
                 (rc = listener_set_backlog(ls, ls->ls_transport == TRANSPORT_UNIX
                                                    ? cf->cf_unix_backlog
                                                    : cf->cf_tcp_backlog)) != 0)
            log_warn("reload: cannot change the backlog of %s %s: %s",
                     transport_name(ls->ls_transport), ls->ls_name, strerror(-rc));
    }
    return 0;
}

/*
 * Make the metrics endpoint match cf: start, stop or move it.  On reload
 * (not fatal) a new address that cannot be bound leaves the old endpoint
 * serving; at start the failure is returned.
 */
static int
server_reconcile_metrics(struct server *srv, const struct upechod_config *cf, int fatal)
{
    struct metrics *m;
    const char *what = "";
    int rc;

    if (!cf->cf_metrics_enabled) {
        if (srv->srv_metrics != NULL)
            log_info("no longer serving metrics on %s", metrics_name(srv->srv_metrics));
        metrics_free(srv->srv_metrics);
        srv->srv_metrics = NULL;
        return 0;
    }
    if (srv->srv_metrics != NULL && metrics_is_at(srv->srv_metrics, &cf->cf_metrics_listen))
        return 0;
    if ((rc = metrics_new(srv, &cf->cf_metrics_listen, &what, &m)) != 0) {
        log_error("cannot serve metrics on %s: %s: %s%s", cf->cf_metrics_listen_text, what,
                  strerror(-rc),
                  srv->srv_metrics != NULL && !fatal ? "; still serving them where they were" : "");
        return rc;
    }
    if (srv->srv_metrics != NULL)
        log_info("no longer serving metrics on %s", metrics_name(srv->srv_metrics));
    metrics_free(srv->srv_metrics);
    srv->srv_metrics = m;
    log_info("serving metrics on http://%s/metrics", metrics_name(m));
    return 0;
}

/* Serve the sockets systemd passed; the configured addresses are then not bound. */
static int
server_adopt(struct server *srv, struct activated_fd *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct activated_fd *af = &fds[i];
        enum transport t;
        struct listener *ls;
        const char *what = "";

        if (af->af_type == SOCK_DGRAM)
            t = TRANSPORT_UDP;
        else if (af->af_domain == AF_UNIX)
            t = TRANSPORT_UNIX;
        else
            t = TRANSPORT_TCP;
        if ((ls = listener_new_fd(af->af_fd, t, &what)) == NULL) {
            int err = errno;

            log_error("cannot serve socket %s passed by the service manager: %s: %s", af->af_name,
                      what, strerror(err));
            return -err;
        }
        TAILQ_INSERT_TAIL(&srv->srv_listeners, ls, ls_entry);
        log_info("listening on %s %s (socket %s from the service manager)", transport_name(t),
                 ls->ls_name, af->af_name);
    }
    srv->srv_activated = 1;
    return 0;
}

/* The service manager's STATUS= line, refreshed every SERVER_STATUS_SEC. */
static void
server_status_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    size_t open = server_connections(srv);
    struct server_stats s;

    if (srv->srv_reload_lagging) {
        /* Kept in view until the reload completes. */
        notify_status(srv->srv_notify, "reload incomplete: not yet applied by %s",
                      srv->srv_lag_who);
        return;
    }
    server_stats(srv, &s);
    notify_status(srv->srv_notify,
                  "serving: %zu connection%s open, %llu accepted, %llu byte%s echoed, "
                  "%llu datagram%s echoed, %llu dropped",
                  open, SERVER_S(open), (unsigned long long)s.ss_accepted,
                  (unsigned long long)s.ss_bytes_out, SERVER_S(s.ss_bytes_out),
                  (unsigned long long)s.ss_dgrams_out, SERVER_S(s.ss_dgrams_out),
                  (unsigned long long)s.ss_dgrams_dropped);
}

/* Ping the watchdog only while the main loop and every worker's loop run. */
static void
server_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;

    if (worker_group_alive(&srv->srv_workers))
        notify_watchdog(srv->srv_notify);
}

static void
server_reload_error(void *arg, const char *msg)
{
    log_error("%s", msg);
}

/*
 * Every running worker has carried out the latest order: close the
 * listeners they all let go of, and complete a reload that waited for one.
 */
static void
server_settle(struct server *srv)
{
    evtimer_del(srv->srv_lag_timer);
    server_close_listeners(&srv->srv_retired);
    if (srv->srv_reload_lagging) {
        srv->srv_reload_lagging = 0;
        log_info("reload: %s applied the new configuration late", srv->srv_lag_who);
        log_info("configuration reloaded");
        notify_status(srv->srv_notify, "configuration reloaded");
    }
}

/* A worker had not carried out an order: whether it has now. */
static void
server_lag_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;

    if (srv->srv_reapply && !srv->srv_stopping) {
        srv->srv_reapply = 0;
        if (server_apply(srv, &srv->srv_conf) != 0)
            return;
    }
    if (worker_group_settled(&srv->srv_workers))
        server_settle(srv);
}

/*
 * SIGHUP: parse once, into a fresh configuration.  An invalid one is
 * reported and the running one kept, nothing dropped.  A valid one is
 * applied to the listeners here, then by every worker in its own loop to
 * what it serves and to its open connections; READY=1 follows once every
 * worker has, or after SERVER_RELOAD_WAIT_MS with STATUS= naming those that
 * have not (the reload completes when they do: server_settle()).
 */
static void
server_reload(struct server *srv)
{
    struct upechod_config *nc = malloc(sizeof(*nc));
    int rc;

    notify_reloading(srv->srv_notify);
    if (nc == NULL) {
        srv->srv_stats.ss_reloads_failed++;
        log_error("reload failed: out of memory; still running the previous configuration");
        notify_ready(srv->srv_notify, "reload failed: out of memory; running the previous "
                                      "configuration");
        return;
    }
    rc = config_load(nc, srv->srv_conf_path[0] != '\0' ? srv->srv_conf_path : NULL,
                     server_reload_error, NULL);
    if (rc < 0) {
        /* Not a verdict on the file: it could not be read (out of descriptors, say). */
        srv->srv_stats.ss_reloads_failed++;
        log_error("reload failed: cannot read %s: %s; still running the previous configuration",
                  nc->cf_file[0] ? nc->cf_file : srv->srv_conf_path, strerror(-rc));
        notify_ready(srv->srv_notify, "reload failed: cannot read the configuration; running the "
                                      "previous one");
        free(nc);
        return;
    }
    if (rc != 0) {
        srv->srv_stats.ss_reloads_failed++;
        log_error("reload failed: %s is not valid; still running the previous configuration",
                  nc->cf_file[0] ? nc->cf_file : srv->srv_conf_path);
        notify_ready(srv->srv_notify, "reload failed, running the previous configuration");
        free(nc);
        return;
    }
    if (nc->cf_workers != srv->srv_conf.cf_workers) {
        log_warn("reload: [server] workers takes effect only at the next start");
        nc->cf_workers = srv->srv_conf.cf_workers;
    }
    if (!srv->srv_activated && (rc = server_reconcile(srv, nc, 0)) != 0) {
        srv->srv_stats.ss_reloads_failed++;
        /* Whatever was rebound of the running listeners, the workers serve exactly those. */
        server_apply(srv, &srv->srv_conf);
        log_error("reload failed: cannot listen on every address of %s (%s); still running the "
                  "previous configuration and listeners",
                  nc->cf_file[0] ? nc->cf_file : "the built-in defaults", strerror(-rc));
        notify_ready(srv->srv_notify, "reload failed: cannot listen on every new address; "
                                      "running the previous configuration");
        free(nc);
        return;
    }
    if (strcmp(nc->cf_user, srv->srv_conf.cf_user) != 0 ||
        strcmp(nc->cf_group, srv->srv_conf.cf_group) != 0)
        log_warn("reload: [server] user and group take effect only at the next start");

    log_set_level(nc->cf_log_level);
    /* The metrics endpoint is not all or nothing: if it cannot move, it stays where it was. */
    server_reconcile_metrics(srv, nc, 0);
    /* Every worker takes nc in its own loop, listeners and open connections alike. */
    srv->srv_reload_lagging = 0;
    rc = server_apply(srv, nc);
    srv->srv_conf = *nc;
    free(nc);
    server_raise_nofile(&srv->srv_conf);
    srv->srv_stats.ss_reloads_ok++;
    srv->srv_stats.ss_reload_time = (int64_t)time(NULL);
    if (rc == 0) {
        log_info("configuration reloaded");
        notify_ready(srv->srv_notify, "configuration reloaded");
        return;
    }
    /*
     * A worker's loop does not run (or the order could not be made yet).
     * The configuration is the running one all the same: every other worker
     * serves it, and the one lagging takes it as soon as its loop runs
     * again, when the reload completes ("configuration reloaded").  READY=1
     * goes now, so that the service manager's reload does not hang on a
     * worker; STATUS= says what is missing until then, and the watchdog
     * restarts a daemon whose worker stays stuck.
     */
    {
        char status[160];
        unsigned n = server_lag_names(srv, srv->srv_lag_who, sizeof(srv->srv_lag_who));

        srv->srv_reload_lagging = 1;
        if (n == 0) {
            /* Out of memory for the order: server_lag_cb() makes it again. */
            snprintf(srv->srv_lag_who, sizeof(srv->srv_lag_who), "the workers");
            n = 2;
        }
        log_error("reload: %s %s not applied the new configuration within %d s (%s event loop "
                  "does not run); %s the previous one until %s again, and the reload completes "
                  "then",
                  srv->srv_lag_who, n == 1 ? "has" : "have", SERVER_RELOAD_WAIT_MS / 1000,
                  n == 1 ? "its" : "their", n == 1 ? "it serves" : "they serve",
                  n == 1 ? "it runs" : "they run");
        snprintf(status, sizeof(status), "reload incomplete: not yet applied by %s",
                 srv->srv_lag_who);
        notify_ready(srv->srv_notify, status);
    }
}

/*
 * Count the connections still owed echo into *pending; when a worker does
 * not answer (its loop does not run), name it: what it holds is cut short.
 * 0, or -ETIMEDOUT then.
 */
static int
server_count_owed(struct server *srv, size_t *pending)
{
    char who[sizeof(srv->srv_lag_who)];
    unsigned n;

    if (worker_group_owed(&srv->srv_workers, SERVER_STOP_WAIT_MS, pending) == 0)
        return 0;
    n = server_lag_names(srv, who, sizeof(who));
    log_error("shutdown: %s did not stop within %u s (%s event loop does not run); exiting "
              "without %s",
              who, srv->srv_conf.cf_shutdown_timeout, n == 1 ? "its" : "their",
              n == 1 ? "it" : "them");
    return -ETIMEDOUT;
}

/*
 * shutdown_timeout is up.  Connections that got all their echo and are
 * only in the drain after our FIN lose nothing by a close: only those
 * still owed echo make the stop one cut short, and a worker that does not
 * answer, whatever it holds.
 */
static void
server_shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    size_t open = server_connections(srv);
    size_t pending = 0;

    if (server_count_owed(srv, &pending) != 0)
        srv->srv_exit_code = SERVER_EXIT_CUT_SHORT;
    if (pending > 0) {
        log_warn("shutdown: %zu connection%s still had output pending after %u s; "
                 "closing them",
                 pending, SERVER_S(pending), srv->srv_conf.cf_shutdown_timeout);
        srv->srv_exit_code = SERVER_EXIT_CUT_SHORT;
    } else if (srv->srv_exit_code == 0) {
        log_info("shutdown: closing %zu connection%s that got all their echo", open,
                 SERVER_S(open));
    }
    event_base_loopbreak(srv->srv_base);
}

/* A worker's loop ended: once every one has, after a stop, the daemon exits. */
static void
server_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    uint64_t n;

    if (read(fd, &n, sizeof(n)) != sizeof(n))
        return;
    srv->srv_workers_done += (unsigned)n;
    if (srv->srv_workers_done >= srv->srv_workers.wg_n)
        event_base_loopexit(srv->srv_base, NULL);
}

/*
 * SIGTERM/SIGINT: every worker lets go of the listeners (closed here once
 * all have), stops reading, delivers what is pending, and ends its loop
 * once its connections are done; the daemon exits when every worker has,
 * or when shutdown_timeout passes, whether or not a worker answers.
 */
static void
server_shutdown(struct server *srv, int sig)
{
    struct timeval tv = {.tv_sec = srv->srv_conf.cf_shutdown_timeout, .tv_usec = 0};
    struct worker_order o = {.wo_kind = WORKER_STOP};
    size_t open = server_connections(srv);

    srv->srv_stopping = 1;
    notify_stopping(srv->srv_notify);
    log_info("SIG%s received: stopping, %zu connection%s to finish", sigabbrev_np(sig), open,
             SERVER_S(open));
    /* Armed first: shutdown_timeout holds whatever the workers do. */
    evtimer_add(srv->srv_shutdown_timer, &tv);
    if (worker_group_order(&srv->srv_workers, &o, SERVER_STOP_WAIT_MS) == 0) {
        server_close_listeners(&srv->srv_listeners);
    } else {
        char who[sizeof(srv->srv_lag_who)];

        server_lag_names(srv, who, sizeof(who));
        log_error("shutdown: %s did not answer (event loop not running); the listeners stay "
                  "open until every worker has let go of them, or the daemon exits",
                  who);
        server_retire(srv, &srv->srv_listeners);
        server_lagging(srv);
    }
    metrics_free(srv->srv_metrics);
    srv->srv_metrics = NULL;
}

/* Every signal arrives here, inside the main loop, never in a handler. */
static void
server_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;

    if (sig == SIGHUP) {
        if (!srv->srv_stopping)
            server_reload(srv);
        return;
    }
    if (srv->srv_stopping) {
        size_t n = server_connections(srv), owed = 0;

        log_warn("SIG%s again: exiting now, closing %zu connection%s", sigabbrev_np(sig), n,
                 SERVER_S(n));
        if (server_count_owed(srv, &owed) != 0 || owed > 0)
            srv->srv_exit_code = SERVER_EXIT_CUT_SHORT;
        event_base_loopbreak(srv->srv_base);
        return;
    }
    server_shutdown(srv, sig);
}

struct server *
server_new(const struct upechod_config *conf, const char *conf_path)
{
    struct server *srv = calloc(1, sizeof(*srv));

    if (srv == NULL)
        return NULL;
    TAILQ_INIT(&srv->srv_listeners);
    TAILQ_INIT(&srv->srv_retired);
    srv->srv_conf = *conf;
    snprintf(srv->srv_conf_path, sizeof(srv->srv_conf_path), "%s", conf_path ? conf_path : "");
    srv->srv_base = event_base_new();
    if (srv->srv_base == NULL)
        goto fail;
    srv->srv_sigint = evsignal_new(srv->srv_base, SIGINT, server_signal_cb, srv);
    srv->srv_sigterm = evsignal_new(srv->srv_base, SIGTERM, server_signal_cb, srv);
    srv->srv_sighup = evsignal_new(srv->srv_base, SIGHUP, server_signal_cb, srv);
    srv->srv_shutdown_timer = evtimer_new(srv->srv_base, server_shutdown_timeout_cb, srv);
    srv->srv_status_timer = event_new(srv->srv_base, -1, EV_PERSIST, server_status_cb, srv);
    srv->srv_watchdog_timer = event_new(srv->srv_base, -1, EV_PERSIST, server_watchdog_cb, srv);
    srv->srv_lag_timer = event_new(srv->srv_base, -1, EV_PERSIST, server_lag_cb, srv);
    if (srv->srv_sigint == NULL || srv->srv_sigterm == NULL || srv->srv_sighup == NULL ||
        srv->srv_shutdown_timer == NULL || srv->srv_status_timer == NULL ||
        srv->srv_watchdog_timer == NULL || srv->srv_lag_timer == NULL)
        goto fail;
    srv->srv_notify = notify_new();
    return srv;
fail:
    server_free(srv);
    return NULL;
}

/*
 * Bind (or adopt) every socket, drop privileges, start the workers, arm
 * signals and timers, and tell the service manager we are ready once every
 * worker serves.  Returns 0, -errno, or SERVER_ECONFIG; each failure is
 * logged with the address and the reason.
 */
int
server_start(struct server *srv)
{
    struct activated_fd *fds = NULL;
    size_t nfds = 0;
    const char *what = "";
    uint64_t wd = notify_watchdog_usec();
    int rc;

    /*
     * Ping at half the period, but never faster than
     * SERVER_WATCHDOG_MIN_USEC: WATCHDOG_USEC=1 would otherwise make a
     * zero-interval timer, a busy loop.
     */
    if (wd > 0) {
        wd /= 2;
        if (wd < SERVER_WATCHDOG_MIN_USEC)
            wd = SERVER_WATCHDOG_MIN_USEC;
    }

    /* A peer that closes while we write must be an error return, not a fatal signal. */
    signal(SIGPIPE, SIG_IGN);
    server_raise_nofile(&srv->srv_conf);

    /* Loops built before anything is bound; their threads start after privileges drop. */
    rc = worker_group_init(&srv->srv_workers, &srv->srv_conf,
                           srv->srv_notify != NULL ? wd / SERVER_BEATS_PER_PING : 0);
    srv->srv_workers_ready = 1;
    if (rc != 0) {
        log_error("cannot set up %u workers: %s", srv->srv_conf.cf_workers, strerror(-rc));
        return rc;
    }
    srv->srv_done_ev = event_new(srv->srv_base, srv->srv_workers.wg_done_fd, EV_READ | EV_PERSIST,
                                 server_done_cb, srv);
    if (srv->srv_done_ev == NULL || event_add(srv->srv_done_ev, NULL) == -1)
        return -ENOMEM;

    if (activation_collect(&fds, &nfds) != 0)
        return SERVER_ECONFIG;
    if (nfds > 0) {
        rc = server_adopt(srv, fds, nfds);
        activation_free(fds, nfds);
    } else {
        rc = server_reconcile(srv, &srv->srv_conf, 1);
    }
    if (rc != 0)
        return rc;
    if ((rc = server_reconcile_metrics(srv, &srv->srv_conf, 1)) != 0)
        return rc;
    srv->srv_stats.ss_start_time = (int64_t)time(NULL);
    srv->srv_stats.ss_reload_time = srv->srv_stats.ss_start_time;

    if ((rc = privs_drop(srv->srv_conf.cf_user, srv->srv_conf.cf_group, &what)) != 0) {
        log_error("cannot switch to user %s: %s: %s", srv->srv_conf.cf_user, what, strerror(-rc));
        return rc == -ENOENT ? SERVER_ECONFIG : rc;
    }
    if (geteuid() == 0 && srv->srv_conf.cf_user[0] == '\0')
        log_warn("running as root: [server] user is empty; set it (to nobody, say) to drop "
                 "root once the sockets are bound");

    if ((rc = worker_group_start(&srv->srv_workers)) != 0) {
        log_error("cannot start the workers: %s", strerror(-rc));
        return rc;
    }
    if (server_apply(srv, &srv->srv_conf) == -ETIMEDOUT) {
        char who[sizeof(srv->srv_lag_who)];

        server_lag_names(srv, who, sizeof(who));
        log_error("%s not serving within %d s of the start (event loop not running)", who,
                  SERVER_RELOAD_WAIT_MS / 1000);
    }

    if (evsignal_add(srv->srv_sigint, NULL) == -1 || evsignal_add(srv->srv_sigterm, NULL) == -1 ||
        evsignal_add(srv->srv_sighup, NULL) == -1)
        return -errno;
    if (srv->srv_notify != NULL) {
        struct timeval tv = {.tv_sec = SERVER_STATUS_SEC, .tv_usec = 0};

        event_add(srv->srv_status_timer, &tv);
        if (wd > 0) {
            tv.tv_sec = (time_t)(wd / 1000000);
            tv.tv_usec = (suseconds_t)(wd % 1000000);
            event_add(srv->srv_watchdog_timer, &tv);
        }
    }
    if (srv->srv_conf.cf_workers > 1)
        log_info("upechod %s with %u workers ready", UPECHOD_VERSION, srv->srv_conf.cf_workers);
    else
        log_info("upechod %s ready", UPECHOD_VERSION);
    notify_ready(srv->srv_notify, "serving");
    return 0;
}

/* Run until a signal stops the daemon; returns the exit status. */
int
server_run(struct server *srv)
{
    int rc = srv->srv_exit_code;

    if (event_base_dispatch(srv->srv_base) == -1) {
        log_error("event loop failed");
        rc = 1;
    } else {
        rc = srv->srv_exit_code;
    }
    /* A worker that never ended is left behind: see server_stuck(). */
    if (worker_group_join(&srv->srv_workers, SERVER_STOP_WAIT_MS) != 0 && rc == 0)
        rc = SERVER_EXIT_CUT_SHORT;
    return rc;
}

/*
 * Whether a worker thread did not end: it may still use anything the
 * server holds, so nothing may be freed, and the caller should exit at
 * once without running what exit(3) would (_exit(2)).
 */
int
server_stuck(struct server *srv)
{
    return srv->srv_workers_ready && srv->srv_workers.wg_abandoned;
}

/* Free in reverse order of creation; NULL-safe and safe on a half-built server. */
void
server_free(struct server *srv)
{
    if (srv == NULL)
        return;
    if (srv->srv_workers_ready)
        worker_group_deinit(&srv->srv_workers);
    /* A worker thread still runs and may touch any of it. */
    if (server_stuck(srv))
        return;
    server_close_listeners(&srv->srv_listeners);
    server_close_listeners(&srv->srv_retired);
    metrics_free(srv->srv_metrics);
    if (srv->srv_done_ev != NULL)
        event_free(srv->srv_done_ev);
    if (srv->srv_lag_timer != NULL)
        event_free(srv->srv_lag_timer);
    if (srv->srv_watchdog_timer != NULL)
        event_free(srv->srv_watchdog_timer);
    if (srv->srv_status_timer != NULL)
        event_free(srv->srv_status_timer);
    if (srv->srv_shutdown_timer != NULL)
        event_free(srv->srv_shutdown_timer);
    if (srv->srv_sighup != NULL)
        event_free(srv->srv_sighup);
    if (srv->srv_sigterm != NULL)
        event_free(srv->srv_sigterm);
    if (srv->srv_sigint != NULL)
        event_free(srv->srv_sigint);
    notify_free(srv->srv_notify);
    if (srv->srv_base != NULL)
        event_base_free(srv->srv_base);
    free(srv);
}
