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
#include "notify.h"
#include "privs.h"
#include "server.h"
#include "stream.h"
#include "udp.h"
#include "upechod-build.h"

/* How soon accepting is retried after running out of descriptors. */
#define SERVER_NOFD_RETRY_MS 50
/* How often the service manager's STATUS= line is refreshed. */
#define SERVER_STATUS_SEC 5
/* Descriptors kept for listeners, logs and the like, beyond one per connection. */
#define SERVER_FD_RESERVE 64

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

static void
server_pause(struct server *srv, int why, int on)
{
    int was = srv->srv_paused;

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

/*
 * Every stream shares one idle timeout, so let libevent keep them in one
 * queue (a "common timeout") instead of its heap: re-arming after each
 * read becomes O(1) rather than O(log connections).
 */
static void
server_set_idle_timeout(struct server *srv)
{
    struct timeval tv = {.tv_sec = srv->srv_conf.cf_idle_timeout, .tv_usec = 0};

    srv->srv_idle_tv = NULL;
    if (tv.tv_sec > 0 &&
        (srv->srv_idle_tv = event_base_init_common_timeout(srv->srv_base, &tv)) == NULL)
        log_warn("cannot set up a shared idle timeout; connections will never time out");
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

    if (t == TRANSPORT_UNIX)
        ls = listener_new_unix(srv, cf->cf_unix_path, cf->cf_unix_mode, cf->cf_unix_backlog, &what);
    else
        ls = listener_new_inet(srv, t, a, t == TRANSPORT_TCP ? cf->cf_tcp_backlog : 0, &what);
    if (ls == NULL) {
        int err = errno;

        if (!(quiet_inuse && err == EADDRINUSE))
            log_error("cannot listen on %s %s: %s: %s", transport_name(t), text, what,
                      strerror(err));
        return -err;
    }
    ls->ls_mark = 1;
    TAILQ_INSERT_TAIL(&srv->srv_listeners, ls, ls_entry);
    log_info("listening on %s %s", transport_name(t), ls->ls_name);
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

/*
 * Make the listening sockets match cf.  Used at start and on reload: an
 * address already being listened on keeps its socket (no moment where
 * connects are refused), removed ones are closed (their connections go
 * on), new ones are bound.  A new address can collide with one about to be
 * removed (127.0.0.1:9090 becoming *:9090); those are bound again after the
 * removals.  With `fatal`, the first failure aborts and is returned.
 */
static int
server_reconcile(struct server *srv, const struct upechod_config *cf, int fatal)
{
    struct server_want want[2 * CONFIG_MAX_LISTEN + 1];
    struct listener *ls, *next;
    size_t nwant = 0;
    int rc, first_err = 0;

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
        ls->ls_mark = ls->ls_activated;

    for (size_t i = 0; i < nwant; i++) {
        ls = server_find(srv, want[i].sw_transport, want[i].sw_addr, want[i].sw_text);
        if (ls != NULL) {
            ls->ls_mark = 1;
            if (ls->ls_transport == TRANSPORT_UNIX && chmod(ls->ls_path, cf->cf_unix_mode) == -1)
                log_warn("cannot chmod %s: %s", ls->ls_path, strerror(errno));
            listener_set_backlog(ls, ls->ls_transport == TRANSPORT_UNIX ? cf->cf_unix_backlog
                                                                        : cf->cf_tcp_backlog);
            continue;
        }
        rc = server_listen_one(srv, cf, want[i].sw_transport, want[i].sw_addr, want[i].sw_text,
                               !fatal);
        if (rc == -EADDRINUSE && !fatal) {
            want[i].sw_retry = 1;
        } else if (rc != 0) {
            if (fatal)
                return rc;
            first_err = first_err ? first_err : rc;
        }
    }

    for (ls = TAILQ_FIRST(&srv->srv_listeners); ls != NULL; ls = next) {
        next = TAILQ_NEXT(ls, ls_entry);
        if (ls->ls_mark)
            continue;
        log_info("no longer listening on %s %s", transport_name(ls->ls_transport), ls->ls_name);
        server_close_listener(srv, ls);
    }

    for (size_t i = 0; i < nwant; i++) {
        if (want[i].sw_retry && (rc = server_listen_one(srv, cf, want[i].sw_transport,
                                                        want[i].sw_addr, want[i].sw_text, 0)) != 0)
            first_err = first_err ? first_err : rc;
    }
    return first_err;
}

/* Serve the sockets systemd passed; the configured addresses are then not bound. */
static int
server_adopt(struct server *srv, struct activated_fd *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct activated_fd *af = &fds[i];
        enum transport t;
        struct listener *ls;

        if (af->af_type == SOCK_DGRAM)
            t = TRANSPORT_UDP;
        else if (af->af_domain == AF_UNIX)
            t = TRANSPORT_UNIX;
        else
            t = TRANSPORT_TCP;
        if ((ls = listener_new_fd(srv, af->af_fd, t)) == NULL) {
            log_error("cannot serve socket %s passed by the service manager: out of memory",
                      af->af_name);
            return -ENOMEM;
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
                  "serving: %zu connections open, %llu accepted, %llu bytes echoed, "
                  "%llu datagrams echoed, %llu dropped",
                  srv->srv_nstreams, (unsigned long long)s->st_accepted,
                  (unsigned long long)s->st_bytes_out, (unsigned long long)s->st_dgrams_out,
                  (unsigned long long)s->st_dgrams_dropped);
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
 * listeners and to the connections already open.
 */
static void
server_reload(struct server *srv)
{
    struct upechod_config *nc = malloc(sizeof(*nc));
    struct stream *st;
    int rc;

    notify_reloading(srv->srv_notify);
    if (nc == NULL) {
        log_error("reload: out of memory; keeping the running configuration");
        notify_ready(srv->srv_notify, "reload failed: out of memory");
        return;
    }
    rc = config_load(nc, srv->srv_conf_path[0] != '\0' ? srv->srv_conf_path : NULL,
                     server_reload_error, NULL);
    if (rc != 0) {
        log_error("reload failed: %s is not valid; still running the previous configuration",
                  nc->cf_file[0] ? nc->cf_file : srv->srv_conf_path);
        notify_ready(srv->srv_notify, "reload failed, running the previous configuration");
        free(nc);
        return;
    }
    if (strcmp(nc->cf_user, srv->srv_conf.cf_user) != 0 ||
        strcmp(nc->cf_group, srv->srv_conf.cf_group) != 0)
        log_warn("reload: [server] user and group take effect only at the next start");

    log_set_level(nc->cf_log_level);
    if (!srv->srv_activated)
        server_reconcile(srv, nc, 0);
    srv->srv_conf = *nc;
    free(nc);
    server_set_idle_timeout(srv);
    server_raise_nofile(&srv->srv_conf);
    TAILQ_FOREACH(st, &srv->srv_streams, st_entry)
        stream_apply_limits(st);
    server_pause(srv, SERVER_PAUSE_FULL, srv->srv_nstreams >= srv->srv_conf.cf_max_connections);
    log_info("configuration reloaded");
    notify_ready(srv->srv_notify, "configuration reloaded");
}

static void
server_shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;

    log_warn("shutdown: %zu connections still had output pending after %u s; closing them",
             srv->srv_nstreams, srv->srv_conf.cf_shutdown_timeout);
    srv->srv_exit_code = 1;
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
    log_info("SIG%s received: stopping, %zu connections to finish", sigabbrev_np(sig),
             srv->srv_nstreams);
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
        log_warn("SIG%s again: exiting now, closing %zu connections", sigabbrev_np(sig),
                 srv->srv_nstreams);
        srv->srv_exit_code = srv->srv_nstreams > 0;
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
    srv->srv_conf = *conf;
    snprintf(srv->srv_conf_path, sizeof(srv->srv_conf_path), "%s", conf_path ? conf_path : "");
    srv->srv_base = event_base_new();
    srv->srv_udp_batch = udp_batch_new();
    srv->srv_ratelimit = udp_ratelimit_new();
    if (srv->srv_base == NULL || srv->srv_udp_batch == NULL || srv->srv_ratelimit == NULL)
        goto fail;
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

    if ((rc = privs_drop(srv->srv_conf.cf_user, srv->srv_conf.cf_group, &what)) != 0) {
        log_error("cannot switch to user %s: %s: %s", srv->srv_conf.cf_user, what, strerror(-rc));
        return rc == -ENOENT ? SERVER_ECONFIG : rc;
    }

    if (evsignal_add(srv->srv_sigint, NULL) == -1 || evsignal_add(srv->srv_sigterm, NULL) == -1 ||
        evsignal_add(srv->srv_sighup, NULL) == -1)
        return -errno;
    if (srv->srv_notify != NULL) {
        struct timeval tv = {.tv_sec = SERVER_STATUS_SEC, .tv_usec = 0};

        event_add(srv->srv_status_timer, &tv);
        if ((wd = notify_watchdog_usec()) > 0) {
            tv.tv_sec = (time_t)(wd / 2 / 1000000);
            tv.tv_usec = (suseconds_t)(wd / 2 % 1000000);
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
    udp_ratelimit_free(srv->srv_ratelimit);
    udp_batch_free(srv->srv_udp_batch);
    if (srv->srv_base != NULL)
        event_base_free(srv->srv_base);
    free(srv);
}
