/* metrics.c: the Prometheus endpoint, an evhttp server in the daemon's event base. */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "log.h"
#include "upechod-build.h"
#include "expo.h"
#include "metrics.h"

/* New connections whose close callback is not set yet; more than a listener accepts at once. */
#define METRICS_NEW_MAX (METRICS_MAX_CONNECTIONS * 4)
/* How soon accepting is retried after accept(2) failed. */
#define METRICS_RETRY_MS 100

struct metrics {
    LIST_ENTRY(metrics) m_entry;
    struct server *m_srv;
    struct evhttp *m_http;
    struct evhttp_bound_socket *m_bound;
    struct addr m_conf_addr;
    char m_name[ADDR_STRLEN];
    size_t m_nconns;
    int m_full;    /* accepting paused at METRICS_MAX_CONNECTIONS */
    int m_starved; /* accepting paused after accept(2) failed, until m_retry */
    struct event *m_retry;
    struct event *m_adopt;
    struct bufferevent *m_new[METRICS_NEW_MAX];
    size_t m_nnew;
};

/*
 * Every endpoint alive (one, two during a move): libevent hands the
 * listener's error callback the evhttp, not our argument, so it is found here.
 */
static LIST_HEAD(, metrics) metrics_all = LIST_HEAD_INITIALIZER(metrics_all);

static const char metrics_index[] =
    "<!DOCTYPE html>\n<html><head><title>upechod</title></head>\n"
    "<body><h1>upechod</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

/* Accept exactly when neither the connection cap nor an accept failure holds it back. */
static void
metrics_update_accepting(struct metrics *m)
{
    struct evconnlistener *l = evhttp_bound_socket_get_listener(m->m_bound);

    if (m->m_full || m->m_starved)
        evconnlistener_disable(l);
    else
        evconnlistener_enable(l);
}

/* Pause accepting at the connection cap: the next scraper waits in the backlog. */
static void
metrics_set_full(struct metrics *m, int full)
{
    if (full == m->m_full)
        return;
    m->m_full = full;
    metrics_update_accepting(m);
}

static void
metrics_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct metrics *m = arg;

    m->m_starved = 0;
    metrics_update_accepting(m);
}

/*
 * accept(2) failed, typically out of descriptors.  libevent's listener
 * would retry at once, spinning a core: pause, and retry from a timer.
 */
static void
metrics_accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct metrics *m;
    struct timeval tv = {.tv_sec = 0, .tv_usec = METRICS_RETRY_MS * 1000};

    LIST_FOREACH(m, &metrics_all, m_entry)
    {
        if ((void *)m->m_http == arg)
            break;
    }
    if (m == NULL) {
        evconnlistener_disable(l);
        return;
    }
    m->m_starved = 1;
    metrics_update_accepting(m);
    evtimer_add(m->m_retry, &tv);
}

static void
metrics_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct metrics *m = arg;

    if (m->m_nconns > 0)
        m->m_nconns--;
    if (m->m_nconns < METRICS_MAX_CONNECTIONS && m->m_bound != NULL)
        metrics_set_full(m, 0);
}

/*
 * libevent 2.1 tells nothing when evhttp takes or drops a connection,
 * which the cap needs.  Its bufferevent comes from us (metrics_bev_cb), and
 * evhttp sets it up with the connection as callback argument right after:
 * from the loop's next callback on, that argument names the connection,
 * and its close callback counts the connection out.
 */
static void
metrics_adopt_cb(evutil_socket_t fd, short what, void *arg)
{
    struct metrics *m = arg;

    for (size_t i = 0; i < m->m_nnew; i++) {
        void *cbarg = NULL;

        bufferevent_getcb(m->m_new[i], NULL, NULL, NULL, &cbarg);
        if (cbarg != NULL)
            evhttp_connection_set_closecb(cbarg, metrics_conn_closed, m);
        else if (m->m_nconns > 0)
            m->m_nconns--;
    }
    m->m_nnew = 0;
}

/* evhttp asks for each new connection's bufferevent: count the connection in. */
static struct bufferevent *
metrics_bev_cb(struct event_base *base, void *arg)
{
    struct metrics *m = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);

    if (bev == NULL || m->m_nnew == METRICS_NEW_MAX)
        return bev;
    m->m_new[m->m_nnew++] = bev;
    m->m_nconns++;
    event_active(m->m_adopt, EV_TIMEOUT, 0);
    if (m->m_nconns >= METRICS_MAX_CONNECTIONS)
        metrics_set_full(m, 1);
    return bev;
}

/* Seconds since boot of the kernel, from /proc/stat's btime; 0 if unknown. */
static double
metrics_boot_time(void)
{
    char line[256];
    double bt = 0;
    FILE *f = fopen("/proc/stat", "re");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "btime %lf", &bt) == 1)
            break;
    }
    fclose(f);
    return bt;
}

/* Start time, CPU time and resident memory from /proc/self/stat; fds from /proc/self/fd. */
void
metrics_read_process(struct metrics_process *p)
{
    char buf[1024], *s;
    unsigned long long utime, stime, start;
    long rss, tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;
    struct dirent *de;
    FILE *f;
    DIR *d;
    size_t n;

    memset(p, 0, sizeof(*p));
    if ((f = fopen("/proc/self/stat", "re")) == NULL)
        return;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields go on after the last ')'. */
    if ((s = strrchr(buf, ')')) == NULL || tick <= 0 ||
        sscanf(s + 1,
               " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
               "%llu %*u %ld",
               &utime, &stime, &start, &rss) != 4)
        return;
    p->mp_cpu_seconds = (double)(utime + stime) / (double)tick;
    p->mp_start_time = metrics_boot_time() + (double)start / (double)tick;
    p->mp_rss_bytes = (uint64_t)rss * (uint64_t)page;
    if ((d = opendir("/proc/self/fd")) != NULL) {
        while ((de = readdir(d)) != NULL)
            p->mp_open_fds += de->d_name[0] != '.';
        /* Not the one reading the directory. */
        p->mp_open_fds--;
        closedir(d);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        p->mp_max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
    p->mp_ok = 1;
}

/* One counter or gauge family with one sample per transport in ts. */
static void
metrics_per_transport(struct evbuffer *out, const char *name, const char *type, const char *help,
                      const uint64_t *v, const enum transport *ts, size_t nts)
{
    expo_family(out, name, type, help);
    for (size_t i = 0; i < nts; i++) {
        const char *labels[] = {"transport", transport_name(ts[i]), NULL};

        expo_u64(out, name, labels, v[ts[i]]);
    }
}

/* One sample of a counter family with a single label. */
struct metrics_sample {
    const char *ms_value; /* the label's value */
    uint64_t ms_count;
};

/* A counter family with one label: a sample per value, in the order given. */
static void
metrics_by_label(struct evbuffer *out, const char *name, const char *help, const char *label,
                 const struct metrics_sample *samples, size_t n)
{
    expo_family(out, name, "counter", help);
    for (size_t i = 0; i < n; i++) {
        const char *labels[] = {label, samples[i].ms_value, NULL};

        expo_u64(out, name, labels, samples[i].ms_count);
    }
}

void
metrics_render(struct evbuffer *out, const struct server_stats *s, const struct metrics_process *p)
{
    static const enum transport streams[] = {TRANSPORT_TCP, TRANSPORT_UNIX};
    static const enum transport all[] = {TRANSPORT_TCP, TRANSPORT_UDP, TRANSPORT_UNIX};
    static const double life[] = STATS_LIFETIME_BOUNDS;
    static const double size[] = STATS_BYTES_BOUNDS;
    const struct metrics_sample limited[] = {
        {"idle_timeout", s->ss_timeouts},
        {"max_connections_per_source", s->ss_source_limited},
    };
    const struct metrics_sample proxy[] = {
        {"accepted", s->ss_proxy_accepted}, {"refused", s->ss_proxy_refused},
        {"malformed", s->ss_proxy_bad},     {"truncated", s->ss_proxy_truncated},
        {"timeout", s->ss_proxy_timeouts},
    };
    const struct metrics_sample pauses[] = {
        {"max_connections", s->ss_pauses_full},
        {"emfile", s->ss_pauses_nofd},
    };
    const struct metrics_sample accept_errors[ACCEPT_ERROR_COUNT] = {
        {"nofile", s->ss_accept_errors[ACCEPT_ERROR_NOFD]},
        {"nomem", s->ss_accept_errors[ACCEPT_ERROR_NOMEM]},
        {"other", s->ss_accept_errors[ACCEPT_ERROR_OTHER]},
    };
    const struct metrics_sample dropped[] = {
        {"privileged_port", s->ss_drop_privileged},
        {"rate_limit", s->ss_drop_ratelimit},
        {"loop", s->ss_drop_loop},
        {"send_failed", s->ss_drop_sendfail},
        {"truncated", s->ss_drop_truncated},
    };
    const struct metrics_sample reloads[] = {
        {"success", s->ss_reloads_ok},
        {"failure", s->ss_reloads_failed},
    };
    const char *labels[3] = {"reason", NULL, NULL};

    metrics_per_transport(out, "upechod_connections_open", "gauge", "Stream connections open now.",
                          s->ss_open, streams, 2);
    metrics_per_transport(out, "upechod_connections_accepted_total", "counter",
                          "Stream connections accepted.", s->ss_t_accepted, streams, 2);
    metrics_per_transport(out, "upechod_connections_closed_total", "counter",
                          "Stream connections closed, for any reason.", s->ss_t_closed, streams, 2);
    metrics_by_label(out, "upechod_connections_limited_total",
                     "Stream connections closed by a limit.", "limit", limited, 2);
    expo_family(out, "upechod_memory_pauses_total", "counter",
                "Times a stream connection stopped being read because all pending output "
                "together reached max_memory.");
    expo_u64(out, "upechod_memory_pauses_total", NULL, s->ss_memory_pauses);
    metrics_by_label(out, "upechod_proxy_headers_total",
                     "PROXY protocol headers, by result: accepted, or the connection closed "
                     "because its peer is not in proxy_protocol_from, the header was malformed "
                     "or oversized, the peer closed before its end, or it did not come in time.",
                     "result", proxy, 5);

    metrics_by_label(out, "upechod_accept_pauses_total",
                     "Times accepting paused, by reason: max_connections reached, or no "
                     "descriptor left (EMFILE, ENFILE, ENOBUFS, ENOMEM).",
                     "reason", pauses, 2);
    expo_family(out, "upechod_accept_paused_seconds_total", "counter",
                "Time spent with accepting paused, by reason.");
    labels[1] = "max_connections";
    expo_double(out, "upechod_accept_paused_seconds_total", labels,
                (double)s->ss_paused_full_usec / 1e6);
    labels[1] = "emfile";
    expo_double(out, "upechod_accept_paused_seconds_total", labels,
                (double)s->ss_paused_nofd_usec / 1e6);
    metrics_by_label(out, "upechod_accept_errors_total",
                     "accept(2) failures by errno class: nofile (EMFILE, ENFILE), nomem "
                     "(ENOBUFS, ENOMEM), other.",
                     "class", accept_errors, ACCEPT_ERROR_COUNT);

    metrics_per_transport(out, "upechod_received_bytes_total", "counter",
                          "Bytes received: read from streams, datagram payload for udp.",
                          s->ss_t_bytes_in, all, 3);
    metrics_per_transport(out, "upechod_sent_bytes_total", "counter",
                          "Bytes sent back: echo queued on streams, reply payload for udp.",
                          s->ss_t_bytes_out, all, 3);
    expo_family(out, "upechod_pending_output_bytes", "gauge",
                "Bytes of echo waiting to be sent, all stream connections together.");
    expo_u64(out, "upechod_pending_output_bytes", NULL, s->ss_pending_output);

    expo_family(out, "upechod_datagrams_received_total", "counter", "UDP datagrams received.");
    expo_u64(out, "upechod_datagrams_received_total", NULL, s->ss_dgrams_in);
    expo_family(out, "upechod_datagrams_answered_total", "counter", "UDP datagrams answered.");
    expo_u64(out, "upechod_datagrams_answered_total", NULL, s->ss_dgrams_out);
    metrics_by_label(out, "upechod_datagrams_dropped_total",
                     "UDP datagrams not answered, by reason.", "reason", dropped, 5);

    expo_family(out, "upechod_connection_duration_seconds", "histogram",
                "Lifetime of closed stream connections.");
    expo_histogram(out, "upechod_connection_duration_seconds", NULL, life, STATS_LIFETIME_NBOUNDS,
                   s->ss_lifetime_buckets, (double)s->ss_lifetime_usec / 1e6);
    expo_family(out, "upechod_connection_received_bytes", "histogram",
                "Bytes received per closed stream connection.");
    expo_histogram(out, "upechod_connection_received_bytes", NULL, size, STATS_BYTES_NBOUNDS,
                   s->ss_conn_bytes_buckets, (double)s->ss_conn_bytes);

    metrics_by_label(out, "upechod_reloads_total", "Configuration reloads, by result.", "result",
                     reloads, 2);
    expo_family(out, "upechod_last_reload_success_timestamp_seconds", "gauge",
                "When the configuration was last loaded successfully, at start or on reload.");
    expo_double(out, "upechod_last_reload_success_timestamp_seconds", NULL,
                (double)s->ss_reload_time);
    expo_family(out, "upechod_workers", "gauge", "Event loops serving clients.");
    expo_u64(out, "upechod_workers", NULL, s->ss_workers);
    expo_family(out, "upechod_build_info", "gauge", "The running build; always 1.");
    labels[0] = "version";
    labels[1] = UPECHOD_VERSION;
    expo_u64(out, "upechod_build_info", labels, 1);

    if (!p->mp_ok)
        return;
    expo_family(out, "process_start_time_seconds", "gauge",
                "Start time of the process since unix epoch in seconds.");
    expo_double(out, "process_start_time_seconds", NULL, p->mp_start_time);
    expo_family(out, "process_cpu_seconds_total", "counter",
                "Total user and system CPU time spent in seconds.");
    expo_double(out, "process_cpu_seconds_total", NULL, p->mp_cpu_seconds);
    expo_family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    expo_u64(out, "process_resident_memory_bytes", NULL, p->mp_rss_bytes);
    expo_family(out, "process_open_fds", "gauge", "Number of open file descriptors.");
    expo_u64(out, "process_open_fds", NULL, p->mp_open_fds);
    expo_family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    expo_u64(out, "process_max_fds", NULL, p->mp_max_fds);
}

/* GET /metrics, GET / and 404 for the rest; only GET and HEAD. */
static void
metrics_request_cb(struct evhttp_request *req, void *arg)
{
    struct metrics *m = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *body;

    if ((body = evbuffer_new()) == NULL) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    /* evhttp_send_error() would drop the Allow: header. */
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(h, "Allow", "GET, HEAD");
        evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
        evhttp_add_header(h, "Connection", "close");
        evbuffer_add_printf(body, "only GET and HEAD\n");
        evhttp_send_reply(req, 405, "Method Not Allowed", body);
        evbuffer_free(body);
        return;
    }
    if (path == NULL || (strcmp(path, "/metrics") != 0 && strcmp(path, "/") != 0)) {
        evbuffer_free(body);
        evhttp_send_error(req, HTTP_NOTFOUND, NULL);
        return;
    }
    if (strcmp(path, "/") == 0) {
        evhttp_add_header(h, "Content-Type", "text/html; charset=utf-8");
        evbuffer_add(body, metrics_index, sizeof(metrics_index) - 1);
    } else {
        struct server_stats snap;
        struct metrics_process proc;

        server_stats_snapshot(m->m_srv, &snap);
        metrics_read_process(&proc);
        metrics_render(body, &snap, &proc);
        evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    }
    /* libevent 2.1 would send a HEAD reply's body: announce its length, send none. */
    if (cmd == EVHTTP_REQ_HEAD) {
        char len[32];

        snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
        evhttp_add_header(h, "Content-Length", len);
        evbuffer_drain(body, evbuffer_get_length(body));
    }
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

/* A listening TCP socket on a; the fd, or -errno with *what naming the step. */
static int
metrics_listen(const struct addr *a, const char **what)
{
    const struct sockaddr *sa = (const struct sockaddr *)&a->a_ss;
    int fd, one = 1, err;

    *what = "socket";
    if ((fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    *what = "bind";
    if (bind(fd, sa, a->a_len) == -1)
        goto fail;
    *what = "listen";
    if (listen(fd, METRICS_MAX_CONNECTIONS) == -1)
        goto fail;
    return fd;
fail:
    err = errno;
    close(fd);
    return -err;
}

int
metrics_new(struct server *srv, const struct addr *a, const char **what, struct metrics **out)
{
    struct metrics *m = calloc(1, sizeof(*m));
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd;

    *out = NULL;
    *what = "out of memory";
    if (m == NULL)
        return -ENOMEM;
    m->m_srv = srv;
    m->m_conf_addr = *a;
    LIST_INSERT_HEAD(&metrics_all, m, m_entry);
    if ((m->m_http = evhttp_new(srv->srv_base)) == NULL ||
        (m->m_adopt = event_new(srv->srv_base, -1, 0, metrics_adopt_cb, m)) == NULL ||
        (m->m_retry = evtimer_new(srv->srv_base, metrics_retry_cb, m)) == NULL) {
        metrics_free(m);
        return -ENOMEM;
    }
    evhttp_set_max_headers_size(m->m_http, METRICS_MAX_HEADERS);
    evhttp_set_max_body_size(m->m_http, METRICS_MAX_BODY);
    evhttp_set_timeout(m->m_http, METRICS_TIMEOUT_SEC);
    /* Let every method through to the callback, which answers 405 with Allow:. */
    evhttp_set_allowed_methods(m->m_http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                              EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(m->m_http, metrics_request_cb, m);
    evhttp_set_bevcb(m->m_http, metrics_bev_cb, m);
    if ((fd = metrics_listen(a, what)) < 0) {
        metrics_free(m);
        return fd;
    }
    if ((m->m_bound = evhttp_accept_socket_with_handle(m->m_http, fd)) == NULL) {
        close(fd);
        *what = "out of memory";
        metrics_free(m);
        return -ENOMEM;
    }
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(m->m_bound),
                                metrics_accept_error_cb);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        addr_format((struct sockaddr *)&ss, len, m->m_name, sizeof(m->m_name));
    *out = m;
    return 0;
}

/* Stop serving; scrapes in progress are cut off. */
void
metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    LIST_REMOVE(m, m_entry);
    /* evhttp_free() closes the listener and every connection, calling metrics_conn_closed(). */
    m->m_bound = NULL;
    if (m->m_http != NULL)
        evhttp_free(m->m_http);
    if (m->m_adopt != NULL)
        event_free(m->m_adopt);
    if (m->m_retry != NULL)
        event_free(m->m_retry);
    free(m);
}

const char *
metrics_name(const struct metrics *m)
{
    return m->m_name;
}

int
metrics_is_at(const struct metrics *m, const struct addr *a)
{
    return addr_equal(&m->m_conf_addr, a);
}
