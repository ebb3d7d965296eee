/* stream.c: one echo connection over TCP or AF_UNIX, on a bufferevent. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log.h"
#include "stream.h"
#include "upper.h"

/* Most bytes stream_echo() copies in one step. */
#define STREAM_ECHO_STEP (64 * 1024)
/* How long a shutdown waits, after our FIN, for the client to close its side. */
#define STREAM_LINGER_SEC 2
/* Most reads one linger callback makes before it lets the loop go on. */
#define STREAM_LINGER_READS 16

static void stream_close(struct stream *st);

/*
 * Uppercase every byte of buf in place, chain by chain, without copying.
 * Only for chains libevent allocated itself, such as a bufferevent's input
 * read from its socket: memory lent with evbuffer_add_reference() or
 * chains shared through evbuffer_add_buffer_reference() are not ours to
 * write, and libevent cannot tell us which chains those are.
 */
size_t
stream_upper(struct evbuffer *buf)
{
    struct evbuffer_iovec vec[16];
    struct evbuffer_ptr ptr;
    size_t total = 0;

    evbuffer_ptr_set(buf, &ptr, 0, EVBUFFER_PTR_SET);
    for (;;) {
        /* evbuffer_peek() hands out pointers into the chains themselves. */
        int n = evbuffer_peek(buf, -1, &ptr, vec, 16);
        size_t len = 0;

        for (int i = 0; i < n && i < 16; i++) {
            upper_inplace(vec[i].iov_base, vec[i].iov_len);
            len += vec[i].iov_len;
        }
        total += len;
        /*
         * With a negative length evbuffer_peek() fills at most the 16
         * vectors and returns 16 whether or not more chains follow, so 16
         * means: go on from where these ended.
         */
        if (n < 16 || len == 0 || evbuffer_ptr_set(buf, &ptr, len, EVBUFFER_PTR_ADD) == -1)
            break;
    }
    return total;
}

/*
 * Uppercase everything in `in` and move it to `out`, whatever `in` holds:
 * the bytes are copied into space reserved at the end of `out` and
 * uppercased there, so chains that are not ours are never written.  The
 * read callback's path, stream_upper() on the bufferevent's own input,
 * needs no copy.  Returns the number of bytes moved; when memory runs out
 * the rest stays in `in`.
 */
size_t
stream_echo(struct evbuffer *in, struct evbuffer *out)
{
    struct evbuffer_iovec v[2];
    size_t total = 0, len;

    while ((len = evbuffer_get_length(in)) > 0) {
        size_t moved = 0;
        int n;

        /* A bounded step keeps each copy cache-sized and its count within an int. */
        if (len > STREAM_ECHO_STEP)
            len = STREAM_ECHO_STEP;
        if ((n = evbuffer_reserve_space(out, len, v, 2)) <= 0)
            break;
        for (int i = 0; i < n; i++) {
            size_t k = v[i].iov_len < len - moved ? v[i].iov_len : len - moved;

            if (k > 0 && evbuffer_remove(in, v[i].iov_base, k) != (int)k)
                k = 0;
            upper_inplace(v[i].iov_base, k);
            v[i].iov_len = k;
            moved += k;
        }
        if (evbuffer_commit_space(out, v, n) != 0)
            break;
        total += moved;
        if (moved < len)
            break;
    }
    return total;
}

/*
 * Backpressure: a client that writes without reading must not make us buffer
 * without bound.  Above max_pending_output we stop reading it (the kernel's
 * window then stops the client) and resume once half of it has drained.
 */
static void
stream_check_pressure(struct stream *st)
{
    struct evbuffer *out = bufferevent_get_output(st->st_bev);
    size_t max = st->st_env->se_conf->cf_max_pending_output;

    if (!st->st_paused && evbuffer_get_length(out) >= max) {
        st->st_paused = 1;
        bufferevent_disable(st->st_bev, EV_READ);
    } else if (st->st_paused && evbuffer_get_length(out) <= max / 2) {
        st->st_paused = 0;
        if (!st->st_closing)
            bufferevent_enable(st->st_bev, EV_READ);
    }
}

/*
 * libevent 2.1's bufferevent reads at most this much per call
 * (EVBUFFER_MAX_READ); a read that filled it says more is probably waiting.
 */
#define STREAM_BEV_READ 4096
/* Bytes per direct read when a stream has more waiting, and reads per callback. */
#define STREAM_BULK_READ (64 * 1024)
#define STREAM_BULK_ROUNDS 4

/*
 * Read up to STREAM_BULK_READ bytes straight into `in`; returns what read(2)
 * returned.  The bufferevent keeps the end of its input frozen except while
 * it reads itself, so thaw it for the read just as it does.
 */
static ssize_t
stream_read_more(int fd, struct evbuffer *in)
{
    struct evbuffer_iovec vec;
    ssize_t n = -1;

    evbuffer_unfreeze(in, 0);
    if (evbuffer_reserve_space(in, STREAM_BULK_READ, &vec, 1) == 1) {
        do
            n = read(fd, vec.iov_base, vec.iov_len);
        while (n == -1 && errno == EINTR);
        vec.iov_len = n > 0 ? (size_t)n : 0;
        evbuffer_commit_space(in, &vec, 1);
    }
    evbuffer_freeze(in, 0);
    return n;
}

/*
 * New input: uppercase it and send it back.  With nothing queued, the echo
 * is written at once from the input chains: the common small exchange then
 * costs one read and one write, without arming and disarming a write event.
 * What the socket does not take goes to the output, in order.  A bulk
 * stream gets a few larger reads in the same callback, past the 4 KiB that
 * libevent 2.1 reads at a time; an EOF or error they meet is left for the
 * bufferevent to see on its next read.
 */
static void
stream_read_cb(struct bufferevent *bev, void *arg)
{
    struct stream *st = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t max = st->st_env->se_conf->cf_max_pending_output;
    int fd = bufferevent_getfd(bev);
    int more = evbuffer_get_length(in) >= STREAM_BEV_READ;

    for (int round = 0;; round++) {
        size_t n = stream_upper(in);
        ssize_t r;

        STATS_ADD(st->st_env->se_stats->st_bytes_in, n);
        STATS_ADD(st->st_env->se_stats->st_bytes_out, n);
        if (n > 0 && evbuffer_get_length(out) == 0)
            evbuffer_write(in, fd);
        evbuffer_add_buffer(out, in);
        if (!more || round == STREAM_BULK_ROUNDS || evbuffer_get_length(out) >= max)
            break;
        if ((r = stream_read_more(fd, in)) <= 0)
            break;
        more = (size_t)r >= STREAM_BULK_READ;
    }
    stream_check_pressure(st);
}

/* Output drained to the low-water mark (or fully, when closing). */
static void
stream_write_cb(struct bufferevent *bev, void *arg)
{
    struct stream *st = arg;

    if (st->st_closing) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            stream_close(st);
        return;
    }
    stream_check_pressure(st);
}

/* Start closing: stop reading, flush what is pending, and close once it is out. */
static void
stream_finish(struct stream *st)
{
    st->st_closing = 1;
    bufferevent_disable(st->st_bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(st->st_bev)) == 0) {
        stream_close(st);
        return;
    }
    /* The write callback must now fire only when everything is out. */
    bufferevent_setwatermark(st->st_bev, EV_WRITE, 0, 0);
    bufferevent_enable(st->st_bev, EV_WRITE);
}

static void
stream_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct stream *st = arg;

    if (what & BEV_EVENT_EOF) {
        /*
         * The client half-closed (or closed).  Whatever it sent is still owed
         * to it: echo anything left in the input, flush, then close.
         */
        STATS_ADD(st->st_env->se_stats->st_bytes_in,
                  evbuffer_get_length(bufferevent_get_input(bev)));
        STATS_ADD(st->st_env->se_stats->st_bytes_out,
                  stream_echo(bufferevent_get_input(bev), bufferevent_get_output(bev)));
        log_debug("%s %s: end of input", transport_name(st->st_transport), st->st_peer);
        stream_finish(st);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        log_debug("%s %s: %s", transport_name(st->st_transport), st->st_peer,
                  strerror(EVUTIL_SOCKET_ERROR()));
        stream_free(st);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        /*
         * A read timeout alone is not idleness while the client is still
         * taking our output: the write timeout watches that direction.
         */
        if ((what & BEV_EVENT_READING) && !st->st_closing &&
            evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
            if (!st->st_paused)
                bufferevent_enable(bev, EV_READ);
            return;
        }
        log_debug("%s %s: idle for %u s, closing", transport_name(st->st_transport), st->st_peer,
                  st->st_env->se_conf->cf_idle_timeout);
        STATS_ADD(st->st_env->se_stats->st_timeouts, 1);
        stream_free(st);
    }
}

/* Set watermarks and timeouts from the current configuration. */
void
stream_apply_limits(struct stream *st)
{
    const struct upechod_config *cf = st->st_env->se_conf;
    const struct timeval *idle = st->st_env->se_idle_tv;

    if (!st->st_closing)
        bufferevent_setwatermark(st->st_bev, EV_WRITE, cf->cf_max_pending_output / 2, 0);
    bufferevent_set_timeouts(st->st_bev, idle, idle);
    if (!st->st_closing)
        stream_check_pressure(st);
}

/*
 * Serve a freshly accepted connection.  The fd is taken either way: on
 * failure (NULL) it is closed, and the connection counted nowhere (the
 * closed callback is not called).  The caller counts the connection and
 * puts it on its list.
 */
struct stream *
stream_new(struct stream_env *env, int fd, enum transport t, const struct sockaddr *sa,
           socklen_t salen)
{
    struct stream *st = calloc(1, sizeof(*st));

    if (st == NULL) {
        log_warn("out of memory for a new %s connection, refusing it", transport_name(t));
        close(fd);
        return NULL;
    }
    st->st_bev = bufferevent_socket_new(env->se_base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (st->st_bev == NULL) {
        log_warn("out of memory for a new %s connection, refusing it", transport_name(t));
        close(fd);
        free(st);
        return NULL;
    }
    st->st_env = env;
    st->st_transport = t;
    if (t == TRANSPORT_UNIX)
        snprintf(st->st_peer, sizeof(st->st_peer), "fd %d", fd);
    else
        addr_format(sa, salen, st->st_peer, sizeof(st->st_peer));
    bufferevent_setcb(st->st_bev, stream_read_cb, stream_write_cb, stream_event_cb, st);
    stream_apply_limits(st);
    if (bufferevent_enable(st->st_bev, EV_READ | EV_WRITE) == -1) {
        /* Registering with the loop failed: nothing was counted yet; undo the rest. */
        log_warn("cannot watch a new %s connection: %s; closing it", transport_name(t),
                 strerror(errno));
        bufferevent_free(st->st_bev);
        free(st);
        return NULL;
    }
    log_debug("%s %s: connected", transport_name(t), st->st_peer);
    return st;
}

/* Close the connection at once, whatever is pending. */
void
stream_free(struct stream *st)
{
    if (st == NULL)
        return;
    if (st->st_linger != NULL)
        event_free(st->st_linger);
    bufferevent_free(st->st_bev);
    st->st_env->se_closed(st, st->st_env->se_arg);
    free(st);
}

/* Whether the linger after our FIN still has time left. */
static int
stream_linger_left(struct stream *st)
{
    struct timeval now;

    event_base_gettimeofday_cached(st->st_env->se_base, &now);
    return timercmp(&now, &st->st_linger_until, <);
}

/* Read and discard until the client closes, so our close never turns into a reset. */
static void
stream_linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct stream *st = arg;
    char buf[16384];
    ssize_t n;

    if (what & EV_READ) {
        int rounds = 0;

        /*
         * A bounded number of reads: a client that writes as fast as we
         * read must not keep the loop here, away from timers and the
         * watchdog.  The event fires again while more is waiting.
         */
        while ((n = read(fd, buf, sizeof(buf))) > 0 && ++rounds < STREAM_LINGER_READS)
            ;
        /* A persistent event's timeout restarts on activity: bound the linger ourselves. */
        if ((n > 0 || (n == -1 && (errno == EAGAIN || errno == EINTR))) && stream_linger_left(st))
            return;
    }
    stream_free(st);
}

/*
 * Everything we owe the client is out.  Normally that ends the connection.
 * During shutdown the client may still be sending: closing a socket with
 * unread input makes the kernel send a reset, which can destroy echo the
 * client has not read yet.  So send our FIN and drain its input until it
 * closes, for a bounded time.
 */
static void
stream_close(struct stream *st)
{
    struct timeval tv = {.tv_sec = STREAM_LINGER_SEC, .tv_usec = 0};
    int fd;

    if (!st->st_env->se_stopping || st->st_linger != NULL) {
        stream_free(st);
        return;
    }
    fd = bufferevent_getfd(st->st_bev);
    bufferevent_disable(st->st_bev, EV_READ | EV_WRITE);
    if (shutdown(fd, SHUT_WR) == -1) {
        stream_free(st);
        return;
    }
    event_base_gettimeofday_cached(st->st_env->se_base, &st->st_linger_until);
    st->st_linger_until.tv_sec += STREAM_LINGER_SEC;
    st->st_linger = event_new(st->st_env->se_base, fd, EV_READ | EV_PERSIST, stream_linger_cb, st);
    if (st->st_linger == NULL || event_add(st->st_linger, &tv) == -1)
        stream_free(st);
}

/*
 * What the client sent before the stop may still sit in the socket: the
 * worker's loop learns of the stop at its own pace, from another thread.
 * Answer that too, up to max_pending_output, so that what was sent before
 * SIGTERM does not depend on which the worker noticed first.
 */
static void
stream_read_pending(struct stream *st)
{
    struct evbuffer *in = bufferevent_get_input(st->st_bev);
    struct evbuffer *out = bufferevent_get_output(st->st_bev);
    size_t max = st->st_env->se_conf->cf_max_pending_output;
    int fd = bufferevent_getfd(st->st_bev);

    while (evbuffer_get_length(out) < max && stream_read_more(fd, in) > 0) {
        size_t n = stream_upper(in);

        STATS_ADD(st->st_env->se_stats->st_bytes_in, n);
        STATS_ADD(st->st_env->se_stats->st_bytes_out, n);
        evbuffer_add_buffer(out, in);
    }
}

/*
 * The daemon is stopping: take no more input, deliver what was sent before,
 * then close.  Called once per connection from the shutdown path.
 */
void
stream_shutdown(struct stream *st)
{
    if (st->st_closing)
        return;
    stream_read_pending(st);
    stream_finish(st);
}
