/* worker.c: the threads that serve clients, each with its own event loop, streams and UDP batch. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "ratelimit.h"
#include "source.h"
#include "stream.h"
#include "udp.h"
#include "worker.h"

/* How soon accepting is retried after running out of descriptors. */
#define WORKER_NOFD_RETRY_MS 50
/* How long freeing the group waits for threads still running (a start that failed). */
#define WORKER_DEINIT_WAIT_MS 1000

/* Why a worker is not accepting right now; a bit set, accepting when zero. */
#define WORKER_PAUSE_FULL 0x1 /* max_connections reached, across every worker */
#define WORKER_PAUSE_NOFD 0x2 /* accept(2) ran out of descriptors */

/* One listener as WORKER_APPLY hands it out: a copy, what a worker needs to serve it. */
struct worker_plan_listener {
    unsigned wpl_id; /* the main thread's ls_id */
    enum transport wpl_transport;
    int wpl_activated;
    char wpl_name[ADDR_STRLEN];
};

/*
 * What WORKER_APPLY asks for: the configuration and the listeners, copied
 * so that a worker that reads it late (its loop was blocked) never reads
 * what the main thread has changed or freed since.  Immutable once
 * published; freed when the group and every worker reading it let go.
 */
struct worker_plan {
    unsigned wp_refs; /* under wg_lock */
    struct upechod_config wp_conf;
    size_t wp_n;
    struct worker_plan_listener *wp_ls;
    int *wp_fds; /* listener j's socket for worker i at [j * workers + i] */
};

/* One listener of the main thread, as one worker serves it. */
struct worker_listener {
    TAILQ_ENTRY(worker_listener) wl_entry;
    struct worker *wl_worker;
    unsigned wl_id; /* the main thread's ls_id */
    enum transport wl_transport;
    int wl_activated;              /* passed by systemd: TCP_NODELAY per accept too */
    struct evconnlistener *wl_evl; /* streams */
    struct udp *wl_udp;            /* datagrams */
    int wl_mark;
};

struct worker {
    struct worker_group *w_group;
    unsigned w_index;
    pthread_t w_thread;
    int w_thread_started;
    struct event_base *w_base;
    struct upechod_config w_conf; /* this worker's copy, replaced on reload */
    struct timeval w_idle_plain;  /* idle_timeout when no common timeout is left */
    struct stream_env w_senv;
    struct udp_env w_uenv;
    struct server_stats w_stats; /* written here only, read by the main thread */

    TAILQ_HEAD(, worker_listener) w_listeners;
    size_t w_nstreams;
    int w_paused;         /* WORKER_PAUSE_* bits */
    int64_t w_nofd_since; /* atomic: when WORKER_PAUSE_NOFD was set (ms), 0 if not */
    int w_stopping;

    /* A connection accepted while every slot was taken, served once one frees. */
    int w_parked_fd;
    struct source *w_parked_source;
    enum transport w_parked_transport;
    struct sockaddr_storage w_parked_addr;
    socklen_t w_parked_len;

    int w_wake_fd; /* eventfd: a new order, or a slot freed elsewhere */
    struct event *w_wake_ev;
    struct event *w_nofd_timer;
    struct event *w_beat_timer;
    struct event *w_stall_timer; /* test builds only */
    unsigned w_gen_done;         /* under wg_lock: the last order carried out */
    unsigned w_plan_gen;         /* under wg_lock: the last WORKER_APPLY taken */
    int w_waited;                /* main thread only: the current order is waited for */
    int w_finished;              /* under wg_lock: the loop has ended */
    size_t w_owed;               /* under wg_lock: WORKER_COUNT's answer */
    int w_waiting;               /* atomic: paused at max_connections, wake me when a slot frees */
    uint64_t w_beats;            /* atomic: heartbeats, for the main thread's watchdog */
    uint64_t w_beats_seen;       /* main thread only */
    int w_missed;                /* main thread only: checks in a row without a beat */
};

static void worker_update_full(struct worker *w);
static void worker_tell_full(struct worker *w);

static int64_t
worker_now_ms(void)
{
    struct timespec ts;

    /* Monotonic: a wall clock set back must not silence the reports. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Accept on every stream listener of w exactly when nothing asks for a pause. */
static void
worker_pause(struct worker *w, int why, int on)
{
    struct worker_listener *wl;
    int was = w->w_paused;

    /*
     * For the metrics: how often and how long this worker paused for lack of
     * descriptors.  A pause at max_connections is the daemon's, counted once
     * by worker_slot_take() and worker_slot_give().
     */
    if (why == WORKER_PAUSE_NOFD && on != ((w->w_paused & why) != 0)) {
        if (on) {
            STATS_ADD(w->w_stats.ss_pauses_nofd, 1);
            __atomic_store_n(&w->w_nofd_since, worker_now_ms(), __ATOMIC_RELAXED);
        } else {
            STATS_ADD(w->w_stats.ss_paused_nofd_usec,
                      (uint64_t)(worker_now_ms() - w->w_nofd_since) * 1000);
            __atomic_store_n(&w->w_nofd_since, 0, __ATOMIC_RELAXED);
        }
    }
    if (on)
        w->w_paused |= why;
    else
        w->w_paused &= ~why;
    if ((was == 0) == (w->w_paused == 0))
        return;
    TAILQ_FOREACH(wl, &w->w_listeners, wl_entry) {
        if (wl->wl_evl == NULL)
            continue;
        if (w->w_paused == 0)
            evconnlistener_enable(wl->wl_evl);
        else
            evconnlistener_disable(wl->wl_evl);
    }
}

/*
 * Lines about accept failures and recovery share one budget of a line a
 * second for the whole daemon.  At the descriptor limit every close lets one
 * client in and the next accept fails again; a line for each, in each
 * worker, would flood the log.  What is not reported now is counted and
 * reported by the next line.
 */
static int
worker_nofd_may_log(struct worker_group *wg)
{
    int64_t now = worker_now_ms();
    int64_t last = __atomic_load_n(&wg->wg_nofd_logged_ms, __ATOMIC_RELAXED);

    if (now - last < 1000)
        return 0;
    return __atomic_compare_exchange_n(&wg->wg_nofd_logged_ms, &last, now, 0, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED);
}

/*
 * Take one of the max_connections slots shared by every worker; 0 when all
 * are taken.  A compare-and-swap, so that workers accepting at the same
 * moment never exceed the limit between them.
 */
static int
worker_slot_take(struct worker *w)
{
    size_t *n = &w->w_group->wg_nconns;
    size_t cur = __atomic_load_n(n, __ATOMIC_SEQ_CST);

    do {
        if (cur >= w->w_conf.cf_max_connections)
            return 0;
    } while (!__atomic_compare_exchange_n(n, &cur, cur + 1, 1, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    if (cur + 1 == w->w_conf.cf_max_connections) {
        /* The daemon is full from now: one pause, whichever workers it pauses. */
        STATS_ADD(w->w_stats.ss_pauses_full, 1);
        __atomic_store_n(&w->w_group->wg_full_since, worker_now_ms(), __ATOMIC_RELAXED);
        worker_tell_full(w);
    }
    return 1;
}

/* Wake worker x's loop: an order or a free slot is waiting for it. */
static void
worker_wake(struct worker *x)
{
    uint64_t one = 1;

    while (write(x->w_wake_fd, &one, sizeof(one)) == -1 && errno == EINTR)
        ;
}

/*
 * w took the last slot: the other workers pause too, so that the next
 * client waits in the kernel's backlog rather than being accepted by
 * another worker and parked there, holding a descriptor.
 */
static void
worker_tell_full(struct worker *w)
{
    struct worker_group *wg = w->w_group;

    for (unsigned i = 0; i < wg->wg_n; i++)
        if (wg->wg_workers[i] != w)
            worker_wake(wg->wg_workers[i]);
}

/*
 * Give a slot back.  A worker that found every slot taken set w_waiting
 * before it looked at the count one last time, and the count is lowered
 * here before the flags are read (both sequentially consistent), so either
 * it saw this slot free or it is woken now: none stays paused by mistake.
 */
static void
worker_slot_give(struct worker *w)
{
    struct worker_group *wg = w->w_group;
    size_t was = __atomic_fetch_sub(&wg->wg_nconns, 1, __ATOMIC_SEQ_CST);

    if (was < w->w_conf.cf_max_connections)
        return;
    if (was == w->w_conf.cf_max_connections) {
        int64_t since = __atomic_exchange_n(&wg->wg_full_since, 0, __ATOMIC_RELAXED);

        if (since != 0)
            STATS_ADD(w->w_stats.ss_paused_full_usec, (uint64_t)(worker_now_ms() - since) * 1000);
    }
    for (unsigned i = 0; i < wg->wg_n; i++) {
        struct worker *x = wg->wg_workers[i];

        if (!__atomic_exchange_n(&x->w_waiting, 0, __ATOMIC_SEQ_CST))
            continue;
        if (x == w)
            worker_update_full(w);
        else
            worker_wake(x);
    }
}

/*
 * Every slot looked taken: ask to be woken when one frees, then look again.
 * Returns 1 when w is now paused for it, 0 when a slot freed meanwhile.
 */
static int
worker_wait_slot(struct worker *w)
{
    __atomic_store_n(&w->w_waiting, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&w->w_group->wg_nconns, __ATOMIC_SEQ_CST) < w->w_conf.cf_max_connections) {
        __atomic_store_n(&w->w_waiting, 0, __ATOMIC_SEQ_CST);
        return 0;
    }
    worker_pause(w, WORKER_PAUSE_FULL, 1);
    return 1;
}

/*
 * max_connections_per_source: count a TCP client under its source, the
 * address given (after a PROXY header, the client it names).  A source at
 * its limit is refused: the caller closes the connection at once rather
 * than leaving it in the backlog, where it would hold up everyone behind
 * it.  The table is the daemon's, shared by the workers under a lock taken
 * once per connection.  Without a limit nothing is counted: no lock, and no
 * source for the stream to hold; a reload that sets one counts the
 * connections accepted from then on.  0, or -errno when refused.
 */
static int
worker_admit(struct worker *w, const struct sockaddr *sa, socklen_t salen, struct source **src)
{
    struct worker_group *wg = w->w_group;
    char peer[ADDR_STRLEN];
    int rc;

    *src = NULL;
    if (w->w_conf.cf_max_connections_per_source == 0)
        return 0;
    pthread_mutex_lock(&wg->wg_sources_lock);
    rc = source_acquire(wg->wg_sources, sa, w->w_conf.cf_max_connections_per_source, src);
    pthread_mutex_unlock(&wg->wg_sources_lock);
    if (rc == 0)
        return 0;
    if (rc == -EUSERS) {
        STATS_ADD(w->w_stats.ss_source_limited, 1);
        log_debug("tcp %s: closed, its source already holds max_connections_per_source = %zu",
                  addr_format(sa, salen, peer, sizeof(peer)),
                  w->w_conf.cf_max_connections_per_source);
    } else {
        log_warn("out of memory for a new tcp connection, refusing it");
    }
    return rc;
}

static void
worker_unadmit(struct worker *w, struct source *src)
{
    struct worker_group *wg = w->w_group;

    if (src == NULL)
        return;
    pthread_mutex_lock(&wg->wg_sources_lock);
    source_release(wg->wg_sources, src);
    pthread_mutex_unlock(&wg->wg_sources_lock);
}

/*
 * The stream's PROXY header named its client: count it under that source.
 * A connection parked at max_connections may have been counted at accept,
 * under a configuration without proxy_protocol: that count goes first.
 */
static int
worker_stream_admit(struct stream *st, const struct sockaddr *sa, socklen_t salen, void *arg)
{
    /* A stream with a PROXY header to read has its extra state. */
    worker_unadmit(arg, st->st_extra->sx_source);
    st->st_extra->sx_source = NULL;
    return worker_admit(arg, sa, salen, &st->st_extra->sx_source);
}

/* Serve an accepted connection that holds a slot; gives the slot back on failure. */
static void
worker_serve(struct worker *w, int fd, enum transport t, const struct sockaddr *sa, socklen_t salen,
             struct source *src)
{
    struct worker_group *wg = w->w_group;
    struct stream *st;

    if ((st = stream_new(&w->w_senv, fd, t, sa, salen, src)) == NULL) {
        /* stream_new() closed fd; the slot goes back (waking whoever waits for one). */
        worker_unadmit(w, src);
        worker_slot_give(w);
        return;
    }
    w->w_nstreams++;
    STATS_ADD(w->w_stats.ss_accepted, 1);
    STATS_ADD(w->w_stats.ss_t_accepted[t], 1);
    if (__atomic_load_n(&wg->wg_nofd_count, __ATOMIC_RELAXED) > 0 && worker_nofd_may_log(wg))
        log_info("accepting connections again (%llu accept failures since the last report)",
                 (unsigned long long)__atomic_exchange_n(&wg->wg_nofd_count, 0, __ATOMIC_RELAXED));
}

/*
 * max_connections holds across workers: at the limit a worker pauses, so
 * the next client waits in the kernel's backlog instead of being accepted
 * and ignored.  A connection another worker's client took the last slot
 * from under is parked, unserved, until a slot frees.  Called whenever the
 * count may have crossed the limit either way.
 */
static void
worker_update_full(struct worker *w)
{
    if (w->w_stopping)
        return;
    for (;;) {
        if (w->w_parked_fd != -1 && worker_slot_take(w)) {
            int fd = w->w_parked_fd;
            struct source *src = w->w_parked_source;

            w->w_parked_fd = -1;
            w->w_parked_source = NULL;
            worker_serve(w, fd, w->w_parked_transport, (struct sockaddr *)&w->w_parked_addr,
                         w->w_parked_len, src);
            continue;
        }
        if (w->w_parked_fd == -1 && __atomic_load_n(&w->w_group->wg_nconns, __ATOMIC_SEQ_CST) <
                                        w->w_conf.cf_max_connections) {
            worker_pause(w, WORKER_PAUSE_FULL, 0);
            return;
        }
        if (worker_wait_slot(w))
            return;
    }
}

/* Take a new stream connection from one of w's listeners. */
static void
worker_accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen,
                 void *arg)
{
    struct worker_listener *wl = arg;
    struct worker *w = wl->wl_worker;
    struct source *src = NULL;

    if (wl->wl_transport == TRANSPORT_TCP) {
        /*
         * Behind a PROXY header the source is the client the header names,
         * not the balancer: proxy.c admits it once the header is read.
         */
        if (!w->w_conf.cf_tcp_proxy_protocol && worker_admit(w, sa, (socklen_t)salen, &src) != 0) {
            close(fd);
            return;
        }
        /*
         * TCP_NODELAY is inherited from the listener (listener_nodelay()),
         * but a connection systemd queued before we set it there lacks it.
         */
        if (wl->wl_activated)
            listener_nodelay(fd);
    }
    if (!worker_slot_take(w)) {
        if (w->w_parked_fd != -1) {
            /* Not expected: a paused listener accepts no more. */
            worker_unadmit(w, src);
            close(fd);
            return;
        }
        w->w_parked_fd = fd;
        w->w_parked_source = src;
        w->w_parked_transport = wl->wl_transport;
        memset(&w->w_parked_addr, 0, sizeof(w->w_parked_addr));
        w->w_parked_len =
            salen > 0 && (size_t)salen <= sizeof(w->w_parked_addr) ? (socklen_t)salen : 0;
        memcpy(&w->w_parked_addr, sa, w->w_parked_len);
        worker_update_full(w);
        return;
    }
    worker_serve(w, fd, wl->wl_transport, sa, (socklen_t)salen, src);
    if (__atomic_load_n(&w->w_group->wg_nconns, __ATOMIC_SEQ_CST) >= w->w_conf.cf_max_connections)
        worker_update_full(w);
}

/* A stream of w is being freed: forget it and give its slot back. */
static void
worker_stream_closed(struct stream *st, void *arg)
{
    struct worker *w = arg;
    uint64_t now = stream_env_now_ms(&w->w_senv);

    stats_stream_done(&w->w_stats, st->st_transport,
                      now > st->st_started_ms ? (now - st->st_started_ms) * 1000 : 0,
                      st->st_nbytes);
    w->w_nstreams--;
    STATS_ADD(w->w_stats.ss_closed, 1);
    if (st->st_extra != NULL) {
        worker_unadmit(w, st->st_extra->sx_source);
        st->st_extra->sx_source = NULL;
    }
    worker_slot_give(w);
    if (w->w_stopping) {
        if (w->w_nstreams == 0)
            event_base_loopexit(w->w_base, NULL);
        return;
    }
    /* A descriptor was just freed: no reason to wait for the retry timer. */
    worker_pause(w, WORKER_PAUSE_NOFD, 0);
}

static void
worker_nofd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    worker_pause(w, WORKER_PAUSE_NOFD, 0);
}

/*
 * accept(2) failed.  Out of descriptors (or memory), libevent's listener
 * would retry at once, forever: a full core and a flood of log lines.
 * Instead this worker pauses accepting, retries from a timer, and the
 * daemon logs at most one line a second with a count.  Pending clients
 * wait in the kernel's backlog.
 */
static void
worker_accept_failed(struct worker *w, int err)
{
    struct worker_group *wg = w->w_group;
    int starved = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
    unsigned long long count;

    __atomic_fetch_add(&wg->wg_nofd_count, 1, __ATOMIC_RELAXED);
    if (err == EMFILE || err == ENFILE)
        STATS_ADD(w->w_stats.ss_accept_errors[ACCEPT_ERROR_NOFD], 1);
    else if (err == ENOBUFS || err == ENOMEM)
        STATS_ADD(w->w_stats.ss_accept_errors[ACCEPT_ERROR_NOMEM], 1);
    else
        STATS_ADD(w->w_stats.ss_accept_errors[ACCEPT_ERROR_OTHER], 1);
    if (starved) {
        struct timeval tv = {.tv_sec = 0, .tv_usec = WORKER_NOFD_RETRY_MS * 1000};

        STATS_ADD(w->w_stats.ss_accept_failures, 1);
        worker_pause(w, WORKER_PAUSE_NOFD, 1);
        if (!evtimer_pending(w->w_nofd_timer, NULL))
            evtimer_add(w->w_nofd_timer, &tv);
    }
    if (worker_nofd_may_log(wg)) {
        count = __atomic_exchange_n(&wg->wg_nofd_count, 0, __ATOMIC_RELAXED);
        if (starved)
            log_warn("cannot accept connections: %s (%llu failures since the last report); "
                     "pausing accepts and retrying every %d ms",
                     strerror(err), count, WORKER_NOFD_RETRY_MS);
        else
            log_warn("cannot accept connections: %s (%llu failures since the last report)",
                     strerror(err), count);
    }
}

/* accept(2) failed for a reason other than a transient one. */
static void
worker_accept_error_cb(struct evconnlistener *evl, void *arg)
{
    struct worker_listener *wl = arg;

    worker_accept_failed(wl->wl_worker, EVUTIL_SOCKET_ERROR());
}

/*
 * Every stream of a worker shares one idle timeout, so let libevent keep
 * them in one queue (a "common timeout") instead of its heap: re-arming
 * after each read becomes O(1) rather than O(log connections).  libevent
 * keeps at most 256 common timeouts per base and never frees one, so each
 * reload with a new value uses one up; once they are gone the value is
 * kept as an ordinary timeout, slower to re-arm but never switched off.
 */
static void
worker_set_idle_timeout(struct worker *w)
{
    struct timeval tv = {.tv_sec = w->w_conf.cf_idle_timeout, .tv_usec = 0};

    w->w_senv.se_idle_tv = NULL;
    if (tv.tv_sec == 0)
        return;
    if ((w->w_senv.se_idle_tv = event_base_init_common_timeout(w->w_base, &tv)) != NULL)
        return;
    log_debug("no common timeout left for idle_timeout = %u; using an ordinary one",
              w->w_conf.cf_idle_timeout);
    w->w_idle_plain = tv;
    w->w_senv.se_idle_tv = &w->w_idle_plain;
}

/* Serve fd, w's socket of listener pl: an evconnlistener for streams, an event for UDP. */
static int
worker_attach(struct worker *w, const struct worker_plan_listener *pl, int fd)
{
    struct worker_listener *wl = calloc(1, sizeof(*wl));

    if (wl == NULL)
        return -ENOMEM;
    wl->wl_worker = w;
    wl->wl_id = pl->wpl_id;
    wl->wl_transport = pl->wpl_transport;
    wl->wl_activated = pl->wpl_activated;
    wl->wl_mark = 1;
    if (pl->wpl_transport == TRANSPORT_UDP) {
        wl->wl_udp = udp_new(&w->w_uenv, fd);
    } else {
        /* Backlog 0: the socket is already listening (ours, or passed by systemd). */
        wl->wl_evl =
            evconnlistener_new(w->w_base, worker_accept_cb, wl, LEV_OPT_CLOSE_ON_EXEC, 0, fd);
        if (wl->wl_evl != NULL) {
            evconnlistener_set_error_cb(wl->wl_evl, worker_accept_error_cb);
            if (w->w_paused)
                evconnlistener_disable(wl->wl_evl);
        }
    }
    if (wl->wl_udp == NULL && wl->wl_evl == NULL) {
        free(wl);
        return -ENOMEM;
    }
    TAILQ_INSERT_TAIL(&w->w_listeners, wl, wl_entry);
    return 0;
}

/* Stop serving a listener; the main thread closes its socket once every worker let go. */
static void
worker_detach(struct worker *w, struct worker_listener *wl)
{
    TAILQ_REMOVE(&w->w_listeners, wl, wl_entry);
    if (wl->wl_evl != NULL)
        evconnlistener_free(wl->wl_evl);
    udp_free(wl->wl_udp);
    free(wl);
}

/*
 * WORKER_APPLY: take the new configuration, serve exactly the listeners
 * given (attaching new ones, letting go of removed ones) and apply the
 * limits to the connections already open.
 */
static void
worker_apply(struct worker *w, const struct worker_plan *plan)
{
    struct worker_listener *wl, *next;
    unsigned n = w->w_group->wg_n;

    w->w_conf = plan->wp_conf;
    worker_set_idle_timeout(w);
    TAILQ_FOREACH(wl, &w->w_listeners, wl_entry)
        wl->wl_mark = 0;
    for (size_t j = 0; j < plan->wp_n; j++) {
        const struct worker_plan_listener *pl = &plan->wp_ls[j];

        TAILQ_FOREACH(wl, &w->w_listeners, wl_entry)
            if (wl->wl_id == pl->wpl_id)
                break;
        if (wl != NULL)
            wl->wl_mark = 1;
        else if (worker_attach(w, pl, plan->wp_fds[j * n + w->w_index]) != 0)
            log_error("worker %u: cannot serve %s %s: out of memory", w->w_index,
                      transport_name(pl->wpl_transport), pl->wpl_name);
    }
    for (wl = TAILQ_FIRST(&w->w_listeners); wl != NULL; wl = next) {
        next = TAILQ_NEXT(wl, wl_entry);
        if (!wl->wl_mark)
            worker_detach(w, wl);
    }
    {
        struct stream *st;

        TAILQ_FOREACH(st, &w->w_senv.se_streams, st_entry)
            stream_apply_limits(st);
    }
    /* max_connections may have moved either way. */
    worker_update_full(w);
}

/* WORKER_STOP: let go of every listener, stop reading, deliver what is pending. */
static void
worker_stop(struct worker *w)
{
    struct worker_listener *wl;
    struct stream *st, *next;

    w->w_stopping = 1;
    w->w_senv.se_stopping = 1;
    while ((wl = TAILQ_FIRST(&w->w_listeners)) != NULL)
        worker_detach(w, wl);
    if (w->w_parked_fd != -1) {
        /* Never served: like a client left in the backlog, it is closed. */
        close(w->w_parked_fd);
        w->w_parked_fd = -1;
        worker_unadmit(w, w->w_parked_source);
        w->w_parked_source = NULL;
    }
    evtimer_del(w->w_nofd_timer);
    for (st = TAILQ_FIRST(&w->w_senv.se_streams); st != NULL; st = next) {
        next = TAILQ_NEXT(st, st_entry);
        stream_shutdown(st);
    }
    if (w->w_nstreams == 0)
        event_base_loopexit(w->w_base, NULL);
}

/* Let go of a plan; the last one to do so frees it. */
static void
worker_plan_put(struct worker_group *wg, struct worker_plan *plan)
{
    unsigned left;

    if (plan == NULL)
        return;
    pthread_mutex_lock(&wg->wg_lock);
    left = --plan->wp_refs;
    pthread_mutex_unlock(&wg->wg_lock);
    if (left > 0)
        return;
    free(plan->wp_ls);
    free(plan->wp_fds);
    free(plan);
}

/* Copy cf and the listeners into a plan for every worker, or NULL when out of memory. */
static struct worker_plan *
worker_plan_new(struct worker_group *wg, const struct upechod_config *cf,
                const struct listener_list *list)
{
    struct worker_plan *plan = calloc(1, sizeof(*plan));
    const struct listener *ls;
    size_t n = 0;

    if (plan == NULL)
        return NULL;
    TAILQ_FOREACH(ls, list, ls_entry)
        n++;
    plan->wp_refs = 1;
    plan->wp_conf = *cf;
    plan->wp_ls = calloc(n ? n : 1, sizeof(*plan->wp_ls));
    plan->wp_fds = calloc(n ? n * wg->wg_n : 1, sizeof(*plan->wp_fds));
    if (plan->wp_ls == NULL || plan->wp_fds == NULL) {
        worker_plan_put(wg, plan);
        return NULL;
    }
    TAILQ_FOREACH(ls, list, ls_entry) {
        struct worker_plan_listener *pl = &plan->wp_ls[plan->wp_n];

        pl->wpl_id = ls->ls_id;
        pl->wpl_transport = ls->ls_transport;
        pl->wpl_activated = ls->ls_activated;
        snprintf(pl->wpl_name, sizeof(pl->wpl_name), "%s", ls->ls_name);
        for (unsigned i = 0; i < wg->wg_n; i++)
            plan->wp_fds[plan->wp_n * wg->wg_n + i] = listener_fd(ls, i);
        plan->wp_n++;
    }
    return plan;
}

/*
 * The main thread wrote an order, or another worker freed a slot.  Orders
 * are state, not a queue: a worker that missed some (its loop was blocked)
 * takes the latest plan, then a stop or a break if one was ordered, and
 * answers for every order up to the latest at once.
 */
static void
worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct worker_group *wg = w->w_group;
    struct worker_plan *plan = NULL;
    enum worker_order_kind kind = WORKER_APPLY;
    unsigned gen = 0;
    size_t owed = 0;
    uint64_t v;
    int have = 0, stop = 0, brk = 0;

    while (read(fd, &v, sizeof(v)) == -1 && errno == EINTR)
        ;
    pthread_mutex_lock(&wg->wg_lock);
    if (w->w_gen_done != wg->wg_gen) {
        gen = wg->wg_gen;
        kind = wg->wg_kind;
        if (w->w_plan_gen != wg->wg_plan_gen && wg->wg_plan != NULL) {
            plan = wg->wg_plan;
            plan->wp_refs++;
            w->w_plan_gen = wg->wg_plan_gen;
        }
        stop = wg->wg_stop;
        brk = wg->wg_break;
        have = 1;
    }
    pthread_mutex_unlock(&wg->wg_lock);
    if (have) {
        /* Once stopping, a worker serves no listener again. */
        if (plan != NULL && !w->w_stopping)
            worker_apply(w, plan);
        worker_plan_put(wg, plan);
        if (stop && !w->w_stopping)
            worker_stop(w);
        if (brk)
            event_base_loopbreak(w->w_base);
        if (kind == WORKER_COUNT) {
            struct stream *st;

            TAILQ_FOREACH(st, &w->w_senv.se_streams, st_entry)
                owed += (size_t)stream_owed(st);
        }
        pthread_mutex_lock(&wg->wg_lock);
        w->w_owed = owed;
        w->w_gen_done = gen;
        pthread_cond_broadcast(&wg->wg_cond);
        pthread_mutex_unlock(&wg->wg_lock);
    }
    if ((w->w_paused & WORKER_PAUSE_FULL) ||
        __atomic_load_n(&wg->wg_nconns, __ATOMIC_SEQ_CST) >= w->w_conf.cf_max_connections)
        worker_update_full(w);
    /* Another worker's clients drained the output below max_memory. */
    stream_env_mem_recheck(&w->w_senv);
}

/* A heartbeat: the main thread pings the service manager's watchdog only while every loop beats. */
static void
worker_beat_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    __atomic_store_n(&w->w_beats, __atomic_load_n(&w->w_beats, __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
}

#ifdef UPECHOD_TEST_HOOKS
/* Test builds: block this worker's loop, as a bug would, to show the watchdog notices. */
static void
worker_stall_cb(evutil_socket_t fd, short what, void *arg)
{
    const char *spec = getenv("UPECHOD_TEST_STALL");
    unsigned idx, after, ms;
    struct timespec ts;

    if (spec == NULL || sscanf(spec, "%u:%u:%u", &idx, &after, &ms) != 3)
        return;
    log_warn("worker %u: blocking for %u ms (UPECHOD_TEST_STALL)", idx, ms);
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000;
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* UPECHOD_TEST_STALL=WORKER:AFTER_MS:FOR_MS blocks one worker once. */
static int
worker_stall_setup(struct worker *w)
{
    const char *spec = getenv("UPECHOD_TEST_STALL");
    unsigned idx, after, ms;
    struct timeval tv;

    if (spec == NULL || sscanf(spec, "%u:%u:%u", &idx, &after, &ms) != 3 || idx != w->w_index)
        return 0;
    tv.tv_sec = after / 1000;
    tv.tv_usec = (suseconds_t)(after % 1000) * 1000;
    if ((w->w_stall_timer = evtimer_new(w->w_base, worker_stall_cb, w)) == NULL)
        return -ENOMEM;
    return evtimer_add(w->w_stall_timer, &tv) == -1 ? -ENOMEM : 0;
}
#endif

/* Close every connection of w at once; its loop is not running. */
static void
worker_close_streams(struct worker *w)
{
    struct stream *st;

    if (w == NULL)
        return;
    w->w_stopping = 1;
    while ((st = TAILQ_FIRST(&w->w_senv.se_streams)) != NULL)
        stream_free(st);
}

static void
worker_free(struct worker *w)
{
    struct worker_listener *wl;

    if (w == NULL)
        return;
    worker_close_streams(w);
    while ((wl = TAILQ_FIRST(&w->w_listeners)) != NULL)
        worker_detach(w, wl);
    if (w->w_parked_fd != -1)
        close(w->w_parked_fd);
    worker_unadmit(w, w->w_parked_source);
    if (w->w_stall_timer != NULL)
        event_free(w->w_stall_timer);
    if (w->w_beat_timer != NULL)
        event_free(w->w_beat_timer);
    if (w->w_nofd_timer != NULL)
        event_free(w->w_nofd_timer);
    if (w->w_wake_ev != NULL)
        event_free(w->w_wake_ev);
    if (w->w_wake_fd != -1)
        close(w->w_wake_fd);
    ratelimit_free(w->w_uenv.ue_ratelimit);
    ratelimit_free(w->w_uenv.ue_portlimit);
    udp_batch_free(w->w_uenv.ue_batch);
    if (w->w_base != NULL)
        event_base_free(w->w_base);
    free(w);
}

/*
 * The output of every worker together fell to 3/4 of max_memory: wake the
 * workers with streams paused for it (this one rechecks its own already).
 */
static void
worker_mem_drained(void *arg)
{
    struct worker *w = arg;
    struct worker_group *wg = w->w_group;

    for (unsigned i = 0; i < wg->wg_n; i++) {
        struct worker *x = wg->wg_workers[i];

        if (x != w && __atomic_load_n(&x->w_senv.se_mem_waiting, __ATOMIC_SEQ_CST))
            worker_wake(x);
    }
}

/* One worker, its loop built but not running; beat_usec 0: no heartbeat. */
static struct worker *
worker_new(struct worker_group *wg, unsigned index, const struct upechod_config *cf,
           uint64_t beat_usec)
{
    struct worker *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return NULL;
    w->w_group = wg;
    w->w_index = index;
    w->w_parked_fd = -1;
    w->w_conf = *cf;
    TAILQ_INIT(&w->w_listeners);
    w->w_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->w_base = event_base_new();
    w->w_uenv.ue_batch = udp_batch_new();
    w->w_uenv.ue_ratelimit = ratelimit_new();
    w->w_uenv.ue_portlimit = ratelimit_new();
    TAILQ_INIT(&w->w_uenv.ue_socks);
    if (w->w_wake_fd == -1 || w->w_base == NULL || w->w_uenv.ue_batch == NULL ||
        w->w_uenv.ue_ratelimit == NULL || w->w_uenv.ue_portlimit == NULL)
        goto fail;
    /* A loop partner over rate_limit_per_port is cut off for a second: see udp.c. */
    ratelimit_set_debt(w->w_uenv.ue_portlimit, 1);
    w->w_senv = (struct stream_env){
        .se_base = w->w_base,
        .se_conf = &w->w_conf,
        .se_stats = &w->w_stats,
        .se_closed = worker_stream_closed,
        .se_admit = worker_stream_admit,
        .se_mem_drained = worker_mem_drained,
        .se_arg = w,
        .se_total = &wg->wg_mem_total,
        .se_nstreams = &wg->wg_nconns,
        .se_proxy_log = &wg->wg_proxy_log,
    };
    stream_env_init(&w->w_senv);
    w->w_uenv.ue_base = w->w_base;
    w->w_uenv.ue_conf = &w->w_conf;
    w->w_uenv.ue_stats = &w->w_stats;
    w->w_uenv.ue_loop_log = &wg->wg_loop_log;
    worker_set_idle_timeout(w);
    w->w_wake_ev = event_new(w->w_base, w->w_wake_fd, EV_READ | EV_PERSIST, worker_wake_cb, w);
    w->w_nofd_timer = evtimer_new(w->w_base, worker_nofd_cb, w);
    if (w->w_wake_ev == NULL || w->w_nofd_timer == NULL || event_add(w->w_wake_ev, NULL) == -1)
        goto fail;
    if (beat_usec > 0) {
        struct timeval tv = {.tv_sec = (time_t)(beat_usec / 1000000),
                             .tv_usec = (suseconds_t)(beat_usec % 1000000)};

        w->w_beat_timer = event_new(w->w_base, -1, EV_PERSIST, worker_beat_cb, w);
        if (w->w_beat_timer == NULL || event_add(w->w_beat_timer, &tv) == -1)
            goto fail;
    }
#ifdef UPECHOD_TEST_HOOKS
    if (worker_stall_setup(w) != 0)
        goto fail;
#endif
    return w;
fail:
    worker_free(w);
    return NULL;
}

/* A worker thread: run the loop until stopped, then tell the main thread. */
static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct worker_group *wg = w->w_group;
    uint64_t one = 1;

    if (event_base_dispatch(w->w_base) == -1)
        log_error("worker %u: event loop failed", w->w_index);
    if (wg->wg_n > 1)
        log_info("worker %u: connections accepted: %llu, datagrams received: %llu", w->w_index,
                 (unsigned long long)STATS_GET(w->w_stats.ss_accepted),
                 (unsigned long long)STATS_GET(w->w_stats.ss_dgrams_in));
    pthread_mutex_lock(&wg->wg_lock);
    w->w_finished = 1;
    pthread_cond_broadcast(&wg->wg_cond);
    pthread_mutex_unlock(&wg->wg_lock);
    while (write(wg->wg_done_fd, &one, sizeof(one)) == -1 && errno == EINTR)
        ;
    return NULL;
}

/*
 * Build cf->cf_workers workers, their loops ready but not running yet (so
 * before privileges are dropped nothing runs but the main thread).
 * beat_usec: how often each loop beats for the watchdog, 0 for never.
 */
int
worker_group_init(struct worker_group *wg, const struct upechod_config *cf, uint64_t beat_usec)
{
    pthread_condattr_t ca;

    memset(wg, 0, sizeof(*wg));
    wg->wg_done_fd = -1;
    pthread_mutex_init(&wg->wg_lock, NULL);
    /* Monotonic: a wall clock set forward must not cut a wait short, nor one set back stretch it.
     */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wg->wg_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&wg->wg_sources_lock, NULL);
    if ((wg->wg_sources = source_table_new()) == NULL)
        return -ENOMEM;
    if ((wg->wg_done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
        return -errno;
    if ((wg->wg_workers = calloc(cf->cf_workers, sizeof(*wg->wg_workers))) == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < cf->cf_workers; i++) {
        if ((wg->wg_workers[i] = worker_new(wg, i, cf, beat_usec)) == NULL)
            return -ENOMEM;
        wg->wg_n++;
    }
    return 0;
}

/* Start every worker's thread; signals stay with the main thread. */
int
worker_group_start(struct worker_group *wg)
{
    sigset_t all, old;
    int rc = 0;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (unsigned i = 0; i < wg->wg_n && rc == 0; i++) {
        struct worker *w = wg->wg_workers[i];

        if ((rc = pthread_create(&w->w_thread, NULL, worker_main, w)) == 0)
            w->w_thread_started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    wg->wg_started = 1;
    return -rc;
}

/* The monotonic time wait_ms from now, for pthread_cond_timedwait() on wg_cond. */
static struct timespec
worker_deadline(unsigned wait_ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(wait_ms / 1000);
    ts.tv_nsec += (long)(wait_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

/* Under wg_lock: whether w's thread runs a loop that has not answered order gen. */
static int
worker_behind(const struct worker *w, unsigned gen)
{
    return w->w_thread_started && !w->w_finished && w->w_gen_done != gen;
}

/*
 * Under wg_lock: wait until every worker waited for has answered order gen
 * (or, with finish, has ended its loop), or until the deadline.
 */
static void
worker_group_wait(struct worker_group *wg, unsigned gen, int finish, const struct timespec *until)
{
    for (;;) {
        int all = 1;

        for (unsigned i = 0; i < wg->wg_n; i++) {
            struct worker *w = wg->wg_workers[i];

            if (w->w_waited &&
                (finish ? w->w_thread_started && !w->w_finished : worker_behind(w, gen)))
                all = 0;
        }
        if (all || pthread_cond_timedwait(&wg->wg_cond, &wg->wg_lock, until) == ETIMEDOUT)
            return;
    }
}

/*
 * Hand every worker an order and wait until each has carried it out in its
 * own loop (or its loop has ended), for at most wait_ms: the main thread
 * blocks meanwhile, and a worker's loop may be stuck for good.  A worker
 * that had not answered the previous order is not waited for again.  The
 * order stays for whoever has not answered; it is carried out whenever that
 * loop runs again.  Returns 0 when every running worker has answered,
 * -ETIMEDOUT when one has not (worker_group_lagging() names it), -ENOMEM
 * when a plan could not be made (nothing was ordered then).
 */
int
worker_group_order(struct worker_group *wg, const struct worker_order *o, unsigned wait_ms)
{
    struct worker_plan *plan = NULL, *old = NULL;
    struct timespec until = worker_deadline(wait_ms);
    unsigned gen;
    int rc = 0;

    if (o->wo_kind == WORKER_APPLY &&
        (plan = worker_plan_new(wg, o->wo_conf, o->wo_listeners)) == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&wg->wg_lock);
    for (unsigned i = 0; i < wg->wg_n; i++)
        wg->wg_workers[i]->w_waited = !worker_behind(wg->wg_workers[i], wg->wg_gen);
    gen = ++wg->wg_gen;
    wg->wg_kind = o->wo_kind;
    switch (o->wo_kind) {
    case WORKER_APPLY:
        old = wg->wg_plan;
        wg->wg_plan = plan;
        wg->wg_plan_gen = gen;
        break;
    case WORKER_STOP:
        wg->wg_stop = 1;
        break;
    case WORKER_BREAK:
        wg->wg_break = 1;
        break;
    case WORKER_COUNT:
        break;
    }
    pthread_mutex_unlock(&wg->wg_lock);
    worker_plan_put(wg, old);
    for (unsigned i = 0; i < wg->wg_n; i++)
        worker_wake(wg->wg_workers[i]);
    pthread_mutex_lock(&wg->wg_lock);
    worker_group_wait(wg, gen, 0, &until);
    for (unsigned i = 0; i < wg->wg_n; i++)
        if (worker_behind(wg->wg_workers[i], gen))
            rc = -ETIMEDOUT;
    pthread_mutex_unlock(&wg->wg_lock);
    return rc;
}

/* Whether every running worker has carried out the latest order. */
int
worker_group_settled(struct worker_group *wg)
{
    int all = 1;

    pthread_mutex_lock(&wg->wg_lock);
    for (unsigned i = 0; i < wg->wg_n; i++)
        if (worker_behind(wg->wg_workers[i], wg->wg_gen))
            all = 0;
    pthread_mutex_unlock(&wg->wg_lock);
    return all;
}

/*
 * The workers whose loop has not carried out the latest order, as "1" or
 * "1, 3" in buf; returns how many.
 */
unsigned
worker_group_lagging(struct worker_group *wg, char *buf, size_t size)
{
    unsigned n = 0;
    size_t off = 0;

    if (size > 0)
        buf[0] = '\0';
    pthread_mutex_lock(&wg->wg_lock);
    for (unsigned i = 0; i < wg->wg_n; i++) {
        int len;

        if (!worker_behind(wg->wg_workers[i], wg->wg_gen))
            continue;
        len = snprintf(buf + off, size - off, "%s%u", n > 0 ? ", " : "", i);
        n++;
        if (len > 0 && (size_t)len < size - off)
            off += (size_t)len;
    }
    pthread_mutex_unlock(&wg->wg_lock);
    return n;
}

/*
 * End every loop at once and wait for the threads, for at most wait_ms (a
 * worker that had not answered the previous order, not at all).  A thread
 * that does not end is left running: -ETIMEDOUT, and from then on nothing
 * it may touch is freed (the process is about to exit).
 */
int
worker_group_join(struct worker_group *wg, unsigned wait_ms)
{
    struct worker_order o = {.wo_kind = WORKER_BREAK};
    struct timespec until = worker_deadline(wait_ms);
    int rc = 0;

    if (!wg->wg_started)
        return wg->wg_abandoned ? -ETIMEDOUT : 0;
    worker_group_order(wg, &o, wait_ms);
    pthread_mutex_lock(&wg->wg_lock);
    worker_group_wait(wg, wg->wg_gen, 1, &until);
    pthread_mutex_unlock(&wg->wg_lock);
    for (unsigned i = 0; i < wg->wg_n; i++) {
        struct worker *w = wg->wg_workers[i];
        int finished;

        pthread_mutex_lock(&wg->wg_lock);
        finished = w->w_finished;
        pthread_mutex_unlock(&wg->wg_lock);
        if (w->w_thread_started && !finished) {
            log_error("worker %u did not end: exiting without it", i);
            rc = -ETIMEDOUT;
            continue;
        }
        if (w->w_thread_started)
            pthread_join(w->w_thread, NULL);
        w->w_thread_started = 0;
    }
    wg->wg_started = 0;
    if (rc != 0)
        wg->wg_abandoned = 1;
    return rc;
}

/*
 * Free every worker (their connections are closed); NULL-safe on a
 * half-built group.  A group with a thread left running is left whole.
 */
void
worker_group_deinit(struct worker_group *wg)
{
    if (worker_group_join(wg, WORKER_DEINIT_WAIT_MS) != 0)
        return;
    /* Closing a stream may wake any worker: close them all before freeing one. */
    for (unsigned i = 0; i < wg->wg_n; i++)
        worker_close_streams(wg->wg_workers[i]);
    for (unsigned i = 0; i < wg->wg_n; i++)
        worker_free(wg->wg_workers[i]);
    free(wg->wg_workers);
    wg->wg_workers = NULL;
    wg->wg_n = 0;
    worker_plan_put(wg, wg->wg_plan);
    wg->wg_plan = NULL;
    if (wg->wg_done_fd != -1)
        close(wg->wg_done_fd);
    wg->wg_done_fd = -1;
    source_table_free(wg->wg_sources);
    wg->wg_sources = NULL;
    pthread_mutex_destroy(&wg->wg_sources_lock);
    pthread_cond_destroy(&wg->wg_cond);
    pthread_mutex_destroy(&wg->wg_lock);
}

/* Stream connections open across every worker. */
size_t
worker_group_connections(struct worker_group *wg)
{
    return __atomic_load_n(&wg->wg_nconns, __ATOMIC_RELAXED);
}

/*
 * Connections still owed echo, across workers (asked of each in its own
 * loop); the others only wait, after our FIN, for the client's own.
 * -ETIMEDOUT when a worker did not answer within wait_ms: what it owes is
 * not in *owed.
 */
int
worker_group_owed(struct worker_group *wg, unsigned wait_ms, size_t *owed)
{
    struct worker_order o = {.wo_kind = WORKER_COUNT};
    int rc;

    *owed = 0;
    if (!wg->wg_started)
        return 0;
    rc = worker_group_order(wg, &o, wait_ms);
    pthread_mutex_lock(&wg->wg_lock);
    for (unsigned i = 0; i < wg->wg_n; i++) {
        struct worker *w = wg->wg_workers[i];

        if (!w->w_finished && w->w_gen_done == wg->wg_gen)
            *owed += w->w_owed;
    }
    pthread_mutex_unlock(&wg->wg_lock);
    return rc;
}

/* The sum of every worker's counters, read while they run. */
void
worker_group_stats(struct worker_group *wg, struct server_stats *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (unsigned i = 0; i < wg->wg_n; i++)
        stats_accumulate(sum, &wg->wg_workers[i]->w_stats);
}

/* Add the pauses still going on, at max_connections and for descriptors, to s. */
void
worker_group_paused_now(struct worker_group *wg, struct server_stats *s)
{
    int64_t now = worker_now_ms();

    int64_t full = __atomic_load_n(&wg->wg_full_since, __ATOMIC_RELAXED);

    if (full != 0 && now > full)
        s->ss_paused_full_usec += (uint64_t)(now - full) * 1000;
    for (unsigned i = 0; i < wg->wg_n; i++) {
        int64_t nofd = __atomic_load_n(&wg->wg_workers[i]->w_nofd_since, __ATOMIC_RELAXED);

        if (nofd != 0 && now > nofd)
            s->ss_paused_nofd_usec += (uint64_t)(now - nofd) * 1000;
    }
}

/* One worker's counters, to be read with STATS_GET(). */
const struct server_stats *
worker_group_worker_stats(struct worker_group *wg, unsigned i)
{
    return &wg->wg_workers[i]->w_stats;
}

/*
 * Whether every running worker's loop has beaten since one of the last two
 * calls: the watchdog is pinged only then, so a stuck worker gets the
 * daemon restarted, not only a stuck main thread.  Two, because a worker
 * only late on a loaded machine (its beats are 4 to a check) must not cost
 * a ping; a stuck one still stops them within a watchdog period.  A worker
 * whose loop ended (drained at shutdown) is not waited for.
 */
int
worker_group_alive(struct worker_group *wg)
{
    int alive = 1;

    for (unsigned i = 0; i < wg->wg_n; i++) {
        struct worker *w = wg->wg_workers[i];
        uint64_t beats = __atomic_load_n(&w->w_beats, __ATOMIC_RELAXED);
        int finished;

        pthread_mutex_lock(&wg->wg_lock);
        finished = w->w_finished;
        pthread_mutex_unlock(&wg->wg_lock);
        if (beats == w->w_beats_seen && !finished) {
            if (++w->w_missed == 2)
                log_error("worker %u has not run its event loop for a watchdog period; "
                          "not pinging the watchdog",
                          i);
            if (w->w_missed >= 2)
                alive = 0;
        } else {
            if (w->w_missed >= 2)
                log_info("worker %u runs again", i);
            w->w_missed = 0;
        }
        w->w_beats_seen = beats;
    }
    return alive;
}
