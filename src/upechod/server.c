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

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "activation.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "privs.h"
#include "ratelimit.h"
#include "server.h"
#include "source.h"
#include "stream.h"
#include "udp.h"
#include "upechod-build.h"

/* "s" after a count that is not 1. */
#define SERVER_S(n) ((n) == 1 ? "" : "s")

/* How soon accepting is retried after running out of descriptors. */
#define SERVER_NOFD_RETRY_MS 50
/* How often the service manager's STATUS= line is refreshed. */
#define SERVER_STATUS_SEC 5
/* Shortest interval between watchdog pings, whatever WATCHDOG_USEC says. */
#define SERVER_WATCHDOG_MIN_USEC 10000
/* Descriptors kept for listeners, logs and the like, beyond one per connection. */
#define SERVER_FD_RESERVE 64
/* ls_mark during server_reconcile(): to close, to keep, or bound by this round. */
#define SERVER_LS_DROP 0
#define SERVER_LS_KEEP 1
#define SERVER_LS_NEW 2

const char *
transport_name(enum transport t)
{
    switch (t) {
    case TRANSPORT_TCP:
        return "tcp";
    case TRANSPORT_UDP:
        return "udp";
    case TRANSPORT_UNIX:
        return "unix";
    }
    return "?";
}

/* Accept on every stream listener exactly when nothing asks for a pause. */
static void
server_update_accepting(struct server *srv)
{
    struct listener *ls;

    TAILQ_FOREACH(ls, &srv->srv_listeners, ls_entry)
        listener_set_accepting(ls, srv->srv_paused == 0);
}

/* Microseconds from *since to now on the monotonic clock. */
static uint64_t
server_usec_since(const struct timespec *since)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)(now.tv_sec - since->tv_sec) * 1000000 +
           (uint64_t)((now.tv_nsec - since->tv_nsec) / 1000);
}

/* Count a pause bit going on or off, and the time it stayed on, for the metrics. */
static void
server_pause_account(struct server *srv, int why, int on)
{
    int i = why == SERVER_PAUSE_FULL ? 0 : 1;
    uint64_t *pauses = i == 0 ? &srv->srv_stats.st_pauses_full : &srv->srv_stats.st_pauses_nofd;
    uint64_t *usec =
        i == 0 ? &srv->srv_stats.st_paused_full_usec : &srv->srv_stats.st_paused_nofd_usec;

    if (on == ((srv->srv_paused & why) != 0))
        return;
    if (on) {
        (*pauses)++;
        clock_gettime(CLOCK_MONOTONIC, &srv->srv_paused_since[i]);
    } else {
        *usec += server_usec_since(&srv->srv_paused_since[i]);
    }
}

static void
server_pause(struct server *srv, int why, int on)
{
    int was = srv->srv_paused;

    server_pause_account(srv, why, on);
    if (on)
        srv->srv_paused |= why;
    else
        srv->srv_paused &= ~why;
    if ((was == 0) != (srv->srv_paused == 0))
        server_update_accepting(srv);
}

/*
 * Lines about accept failures and recovery share one budget of a line a
 * second.  At the descriptor limit every close lets one client in and the
 * next accept fails again; a line for each would flood the log.  What is
 * not reported now is counted and reported by the next line.
 */
static int
server_nofd_may_log(struct server *srv)
{
    struct timespec ts;
    struct timeval now, since;

    /* Monotonic: a wall clock set back must not silence the reports. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    TIMESPEC_TO_TIMEVAL(&now, &ts);
    timersub(&now, &srv->srv_nofd_logged, &since);
    if (since.tv_sec < 1)
        return 0;
    srv->srv_nofd_logged = now;
    return 1;
}

/*
 * max_connections: at the limit the listeners pause, so the next client
 * waits in the kernel's backlog instead of being accepted and ignored.
 */
void
server_stream_opened(struct server *srv)
{
    srv->srv_nstreams++;
    srv->srv_stats.st_accepted++;
    if (srv->srv_nofd_count > 0 && server_nofd_may_log(srv)) {
        log_info("accepting connections again (%llu accept failures since the last report)",
                 (unsigned long long)srv->srv_nofd_count);
        srv->srv_nofd_count = 0;
    }
    if (srv->srv_nstreams >= srv->srv_conf.cf_max_connections)
        server_pause(srv, SERVER_PAUSE_FULL, 1);
}

void
server_stream_closed(struct server *srv)
{
    srv->srv_nstreams--;
    srv->srv_stats.st_closed++;
    if (srv->srv_stopping) {
        if (srv->srv_nstreams == 0)
            event_base_loopexit(srv->srv_base, NULL);
        return;
    }
    /* A descriptor was just freed: no reason to wait for the retry timer. */
    server_pause(srv, SERVER_PAUSE_NOFD, 0);
    if (srv->srv_nstreams < srv->srv_conf.cf_max_connections)
        server_pause(srv, SERVER_PAUSE_FULL, 0);
}

static void
server_nofd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;

    server_pause(srv, SERVER_PAUSE_NOFD, 0);
}

/*
 * accept(2) failed.  Out of descriptors (or memory), libevent's listener
 * would retry at once, forever: a full core and a flood of log lines.
 * Instead pause accepting, retry from a timer, and log at most one line a
 * second with a count.  Pending clients wait in the kernel's backlog.
 */
void
server_accept_failed(struct server *srv, int err)
{
    int starved = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;

    srv->srv_nofd_count++;
    if (err == EMFILE || err == ENFILE)
        srv->srv_stats.st_accept_errors[ACCEPT_ERROR_NOFD]++;
    else if (err == ENOBUFS || err == ENOMEM)
        srv->srv_stats.st_accept_errors[ACCEPT_ERROR_NOMEM]++;
    else
        srv->srv_stats.st_accept_errors[ACCEPT_ERROR_OTHER]++;
    if (starved) {
        struct timeval tv = {.tv_sec = 0, .tv_usec = SERVER_NOFD_RETRY_MS * 1000};

        srv->srv_stats.st_accept_failures++;
        server_pause(srv, SERVER_PAUSE_NOFD, 1);
        if (!evtimer_pending(srv->srv_nofd_timer, NULL))
            evtimer_add(srv->srv_nofd_timer, &tv);
    }
    if (server_nofd_may_log(srv)) {
        if (starved)
            log_warn("cannot accept connections: %s (%llu failures since the last report); "
                     "pausing accepts and retrying every %d ms",
                     strerror(err), (unsigned long long)srv->srv_nofd_count, SERVER_NOFD_RETRY_MS);
        else
            log_warn("cannot accept connections: %s (%llu failures since the last report)",
                     strerror(err), (unsigned long long)srv->srv_nofd_count);
        srv->srv_nofd_count = 0;
    }
}

/* A stream of transport t closed after usec with bytes read: the histograms. */
void
server_stream_done(struct server *srv, enum transport t, uint64_t usec, uint64_t bytes)
{
    static const double life[] = STATS_LIFETIME_BOUNDS;
    static const double size[] = STATS_BYTES_BOUNDS;
    struct server_stats *s = &srv->srv_stats;
    size_t i;

    s->st_t_closed[t]++;
    for (i = 0; i < STATS_LIFETIME_NBOUNDS && (double)usec / 1e6 > life[i]; i++)
        ;
    s->st_lifetime_buckets[i]++;
    s->st_lifetime_usec += usec;
    for (i = 0; i < STATS_BYTES_NBOUNDS && (double)bytes > size[i]; i++)
        ;
    s->st_conn_bytes_buckets[i]++;
    s->st_conn_bytes += bytes;
}

/*
 * The counters as they are now, with the gauges filled in (open connections,
 * pending output, pauses still going on): what the metrics endpoint renders.
 */
void
server_stats_snapshot(const struct server *srv, struct server_stats *out)
{
    const struct stream *st;

    *out = srv->srv_stats;
    for (int t = 0; t < TRANSPORT_COUNT; t++)
        out->st_open[t] = out->st_t_accepted[t] - out->st_t_closed[t];
    out->st_pending_output = 0;
    TAILQ_FOREACH(st, &srv->srv_streams, st_entry)
        out->st_pending_output += evbuffer_get_length(bufferevent_get_output(st->st_bev));
    if (srv->srv_paused & SERVER_PAUSE_FULL)
        out->st_paused_full_usec += server_usec_since(&srv->srv_paused_since[0]);
    if (srv->srv_paused & SERVER_PAUSE_NOFD)
        out->st_paused_nofd_usec += server_usec_since(&srv->srv_paused_since[1]);
    out->st_workers = 1;
}

/*
 * Every stream shares one idle timeout, so let libevent keep them in one
 * queue (a "common timeout") instead of its heap: re-arming after each
 * read becomes O(1) rather than O(log connections).  libevent keeps at
 * most 256 common timeouts per base and never frees one, so each reload
 * with a new value uses one up; once they are gone the value is kept as
 * an ordinary timeout, slower to re-arm but never switched off.
 */
static void
server_set_idle_timeout(struct server *srv)
{
    struct timeval tv = {.tv_sec = srv->srv_conf.cf_idle_timeout, .tv_usec = 0};

    srv->srv_idle_tv = NULL;
    if (tv.tv_sec == 0)
        return;
    if ((srv->srv_idle_tv = event_base_init_common_timeout(srv->srv_base, &tv)) != NULL)
        return;
    log_debug("no common timeout left for idle_timeout = %u; using an ordinary one",
              srv->srv_conf.cf_idle_timeout);
    srv->srv_idle_plain = tv;
    srv->srv_idle_tv = &srv->srv_idle_plain;
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
        ls = listener_new_unix(srv, cf->cf_unix_path, cf->cf_unix_mode, uid, gid,
                               cf->cf_unix_backlog, &what);
    } else
        ls = listener_new_inet(srv, t, a, t == TRANSPORT_TCP ? cf->cf_tcp_backlog : 0, &what);
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

/* Stop listening on ls; connections accepted from it go on. */
static void
server_close_listener(struct server *srv, struct listener *ls)
{
    TAILQ_REMOVE(&srv->srv_listeners, ls, ls_entry);
    listener_free(ls);
}

static void
server_close_listeners(struct server *srv)
{
    struct listener *ls;

    while ((ls = TAILQ_FIRST(&srv->srv_listeners)) != NULL)
        server_close_listener(srv, ls);
}

struct server_want {
    enum transport sw_transport;
    const struct addr *sw_addr;
    const char *sw_text;
    int sw_retry;
};

/* Close every listener whose mark is `mark`, logging each with why. */
static void
server_close_marked(struct server *srv, int mark, const char *why)
{
    struct listener *ls, *next;

    for (ls = TAILQ_FIRST(&srv->srv_listeners); ls != NULL; ls = next) {
        next = TAILQ_NEXT(ls, ls_entry);
        if (ls->ls_mark != mark)
            continue;
        if (why != NULL)
            log_info("%s %s %s", why, transport_name(ls->ls_transport), ls->ls_name);
        server_close_listener(srv, ls);
    }
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
        log_warn("reload: binding the listeners of the running configuration again");
        if (server_reconcile(srv, &srv->srv_conf, 1) != 0)
            log_error("reload: not every listener of the running configuration could be "
                      "bound again");
        TAILQ_FOREACH(ls, &srv->srv_listeners, ls_entry)
            if (ls->ls_mark == SERVER_LS_NEW)
                log_info("listening on %s %s", transport_name(ls->ls_transport), ls->ls_name);
        return first_err;
    }
    TAILQ_FOREACH(ls, &srv->srv_listeners, ls_entry)
        if (ls->ls_mark == SERVER_LS_NEW)
            log_info("listening on %s %s", transport_name(ls->ls_transport), ls->ls_name);
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
        if ((ls = listener_new_fd(srv, af->af_fd, t, &what)) == NULL) {
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
    const struct server_stats *s = &srv->srv_stats;

    notify_status(srv->srv_notify,
                  "serving: %zu connection%s open, %llu accepted, %llu byte%s echoed, "
                  "%llu datagram%s echoed, %llu dropped",
                  srv->srv_nstreams, SERVER_S(srv->srv_nstreams),
                  (unsigned long long)s->st_accepted, (unsigned long long)s->st_bytes_out,
                  SERVER_S(s->st_bytes_out), (unsigned long long)s->st_dgrams_out,
                  SERVER_S(s->st_dgrams_out), (unsigned long long)s->st_dgrams_dropped);
}

static void
server_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;

    notify_watchdog(srv->srv_notify);
}

static void
server_reload_error(void *arg, const char *msg)
{
    log_error("%s", msg);
}

/*
 * SIGHUP: parse into a fresh configuration.  An invalid one is reported
 * and the running one kept, nothing dropped.  A valid one is applied to
 * listeners first, all or nothing: if a new address cannot be bound the
 * old listeners and the old configuration stay whole and the reload is
 * reported as failed.  Then the limits are applied to the connections
 * already open.
 */
static void
server_reload(struct server *srv)
{
    struct upechod_config *nc = malloc(sizeof(*nc));
    struct stream *st;
    int rc;

    notify_reloading(srv->srv_notify);
    if (nc == NULL) {
        srv->srv_stats.st_reloads_failed++;
        log_error("reload failed: out of memory; still running the previous configuration");
        notify_ready(srv->srv_notify, "reload failed: out of memory; running the previous "
                                      "configuration");
        return;
    }
    rc = config_load(nc, srv->srv_conf_path[0] != '\0' ? srv->srv_conf_path : NULL,
                     server_reload_error, NULL);
    if (rc < 0) {
        /* Not a verdict on the file: it could not be read (out of descriptors, say). */
        srv->srv_stats.st_reloads_failed++;
        log_error("reload failed: cannot read %s: %s; still running the previous configuration",
                  nc->cf_file[0] ? nc->cf_file : srv->srv_conf_path, strerror(-rc));
        notify_ready(srv->srv_notify, "reload failed: cannot read the configuration; running the "
                                      "previous one");
        free(nc);
        return;
    }
    if (rc != 0) {
        srv->srv_stats.st_reloads_failed++;
        log_error("reload failed: %s is not valid; still running the previous configuration",
                  nc->cf_file[0] ? nc->cf_file : srv->srv_conf_path);
        notify_ready(srv->srv_notify, "reload failed, running the previous configuration");
        free(nc);
        return;
    }
    if (!srv->srv_activated && (rc = server_reconcile(srv, nc, 0)) != 0) {
        srv->srv_stats.st_reloads_failed++;
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
    srv->srv_conf = *nc;
    free(nc);
    server_set_idle_timeout(srv);
    server_raise_nofile(&srv->srv_conf);
    TAILQ_FOREACH(st, &srv->srv_streams, st_entry)
        stream_apply_limits(st);
    server_pause(srv, SERVER_PAUSE_FULL, srv->srv_nstreams >= srv->srv_conf.cf_max_connections);
    srv->srv_stats.st_reloads_ok++;
    srv->srv_stats.st_reload_time = (int64_t)time(NULL);
    log_info("configuration reloaded");
    notify_ready(srv->srv_notify, "configuration reloaded");
}

/* Connections still owed echo; the others only wait for the client's FIN. */
static size_t
server_count_pending(struct server *srv)
{
    struct stream *st;
    size_t n = 0;

    TAILQ_FOREACH(st, &srv->srv_streams, st_entry)
        n += stream_owed(st);
    return n;
}

/*
 * shutdown_timeout is up.  Connections that got all their echo and are
 * only in the drain after our FIN lose nothing by a close: only those
 * still owed echo make the stop one cut short.
 */
static void
server_shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    size_t pending = server_count_pending(srv);

    if (pending > 0) {
        log_warn("shutdown: %zu connection%s still had output pending after %u s; "
                 "closing them",
                 pending, SERVER_S(pending), srv->srv_conf.cf_shutdown_timeout);
        srv->srv_exit_code = SERVER_EXIT_CUT_SHORT;
    } else {
        log_info("shutdown: closing %zu connection%s that got all their echo", srv->srv_nstreams,
                 SERVER_S(srv->srv_nstreams));
    }
    event_base_loopbreak(srv->srv_base);
}

/*
 * SIGTERM/SIGINT: close the listeners, stop reading, deliver what is
 * pending, exit once every connection is done or shutdown_timeout passes.
 */
static void
server_shutdown(struct server *srv, int sig)
{
    struct timeval tv = {.tv_sec = srv->srv_conf.cf_shutdown_timeout, .tv_usec = 0};
    struct stream *st, *next;

    srv->srv_stopping = 1;
    notify_stopping(srv->srv_notify);
    server_close_listeners(srv);
    metrics_free(srv->srv_metrics);
    srv->srv_metrics = NULL;
    log_info("SIG%s received: stopping, %zu connection%s to finish", sigabbrev_np(sig),
             srv->srv_nstreams, SERVER_S(srv->srv_nstreams));
    for (st = TAILQ_FIRST(&srv->srv_streams); st != NULL; st = next) {
        next = TAILQ_NEXT(st, st_entry);
        stream_shutdown(st);
    }
    if (srv->srv_nstreams == 0) {
        event_base_loopexit(srv->srv_base, NULL);
        return;
    }
    evtimer_add(srv->srv_shutdown_timer, &tv);
}

/* Every signal arrives here, inside the loop, never in a handler. */
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
        log_warn("SIG%s again: exiting now, closing %zu connection%s", sigabbrev_np(sig),
                 srv->srv_nstreams, SERVER_S(srv->srv_nstreams));
        if (server_count_pending(srv) > 0)
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
    TAILQ_INIT(&srv->srv_streams);
    TAILQ_INIT(&srv->srv_mem_paused);
    srv->srv_conf = *conf;
    snprintf(srv->srv_conf_path, sizeof(srv->srv_conf_path), "%s", conf_path ? conf_path : "");
    srv->srv_base = event_base_new();
    srv->srv_udp_batch = udp_batch_new();
    srv->srv_ratelimit = ratelimit_new();
    srv->srv_portlimit = ratelimit_new();
    srv->srv_sources = source_table_new();
    if (srv->srv_base == NULL || srv->srv_udp_batch == NULL || srv->srv_ratelimit == NULL ||
        srv->srv_portlimit == NULL || srv->srv_sources == NULL)
        goto fail;
    /* A loop partner over rate_limit_per_port is cut off for a second: see udp.c. */
    ratelimit_set_debt(srv->srv_portlimit, 1);
    server_set_idle_timeout(srv);
    srv->srv_sigint = evsignal_new(srv->srv_base, SIGINT, server_signal_cb, srv);
    srv->srv_sigterm = evsignal_new(srv->srv_base, SIGTERM, server_signal_cb, srv);
    srv->srv_sighup = evsignal_new(srv->srv_base, SIGHUP, server_signal_cb, srv);
    srv->srv_nofd_timer = evtimer_new(srv->srv_base, server_nofd_cb, srv);
    srv->srv_shutdown_timer = evtimer_new(srv->srv_base, server_shutdown_timeout_cb, srv);
    srv->srv_status_timer = event_new(srv->srv_base, -1, EV_PERSIST, server_status_cb, srv);
    srv->srv_watchdog_timer = event_new(srv->srv_base, -1, EV_PERSIST, server_watchdog_cb, srv);
    if (srv->srv_sigint == NULL || srv->srv_sigterm == NULL || srv->srv_sighup == NULL ||
        srv->srv_nofd_timer == NULL || srv->srv_shutdown_timer == NULL ||
        srv->srv_status_timer == NULL || srv->srv_watchdog_timer == NULL)
        goto fail;
    srv->srv_notify = notify_new();
    return srv;
fail:
    server_free(srv);
    return NULL;
}

/*
 * Bind (or adopt) every socket, drop privileges, arm signals and timers,
 * and tell the service manager we are ready.  Returns 0, -errno, or
 * SERVER_ECONFIG; each failure is logged with the address and the reason.
 */
int
server_start(struct server *srv)
{
    struct activated_fd *fds = NULL;
    size_t nfds = 0;
    const char *what = "";
    uint64_t wd;
    int rc;

    /* A peer that closes while we write must be an error return, not a fatal signal. */
    signal(SIGPIPE, SIG_IGN);
    server_raise_nofile(&srv->srv_conf);

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
    srv->srv_stats.st_start_time = (int64_t)time(NULL);
    srv->srv_stats.st_reload_time = srv->srv_stats.st_start_time;

    if ((rc = privs_drop(srv->srv_conf.cf_user, srv->srv_conf.cf_group, &what)) != 0) {
        log_error("cannot switch to user %s: %s: %s", srv->srv_conf.cf_user, what, strerror(-rc));
        return rc == -ENOENT ? SERVER_ECONFIG : rc;
    }
    if (geteuid() == 0 && srv->srv_conf.cf_user[0] == '\0')
        log_warn("running as root: [server] user is empty; set it (to nobody, say) to drop "
                 "root once the sockets are bound");

    if (evsignal_add(srv->srv_sigint, NULL) == -1 || evsignal_add(srv->srv_sigterm, NULL) == -1 ||
        evsignal_add(srv->srv_sighup, NULL) == -1)
        return -errno;
    if (srv->srv_notify != NULL) {
        struct timeval tv = {.tv_sec = SERVER_STATUS_SEC, .tv_usec = 0};

        event_add(srv->srv_status_timer, &tv);
        if ((wd = notify_watchdog_usec()) > 0) {
            /*
             * Ping at half the period, but never faster than
             * SERVER_WATCHDOG_MIN_USEC: WATCHDOG_USEC=1 would otherwise
             * make a zero-interval timer, a busy loop.
             */
            wd /= 2;
            if (wd < SERVER_WATCHDOG_MIN_USEC)
                wd = SERVER_WATCHDOG_MIN_USEC;
            tv.tv_sec = (time_t)(wd / 1000000);
            tv.tv_usec = (suseconds_t)(wd % 1000000);
            event_add(srv->srv_watchdog_timer, &tv);
        }
    }
    log_info("upechod %s ready", UPECHOD_VERSION);
    notify_ready(srv->srv_notify, "serving");
    return 0;
}

/* Run until a signal stops the daemon; returns the exit status. */
int
server_run(struct server *srv)
{
    if (event_base_dispatch(srv->srv_base) == -1) {
        log_error("event loop failed");
        return 1;
    }
    return srv->srv_exit_code;
}

/* Free in reverse order of creation; NULL-safe and safe on a half-built server. */
void
server_free(struct server *srv)
{
    struct stream *st;

    if (srv == NULL)
        return;
    while ((st = TAILQ_FIRST(&srv->srv_streams)) != NULL)
        stream_free(st);
    server_close_listeners(srv);
    metrics_free(srv->srv_metrics);
    if (srv->srv_watchdog_timer != NULL)
        event_free(srv->srv_watchdog_timer);
    if (srv->srv_status_timer != NULL)
        event_free(srv->srv_status_timer);
    if (srv->srv_shutdown_timer != NULL)
        event_free(srv->srv_shutdown_timer);
    if (srv->srv_nofd_timer != NULL)
        event_free(srv->srv_nofd_timer);
    if (srv->srv_sighup != NULL)
        event_free(srv->srv_sighup);
    if (srv->srv_sigterm != NULL)
        event_free(srv->srv_sigterm);
    if (srv->srv_sigint != NULL)
        event_free(srv->srv_sigint);
    notify_free(srv->srv_notify);
    ratelimit_free(srv->srv_ratelimit);
    ratelimit_free(srv->srv_portlimit);
    source_table_free(srv->srv_sources);
    udp_batch_free(srv->srv_udp_batch);
    if (srv->srv_base != NULL)
        event_base_free(srv->srv_base);
    free(srv);
}
