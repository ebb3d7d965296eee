/* stream.c: one echo connection over TCP or AF_UNIX, on a bufferevent. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>

/* stream_take_reading() knows libevent 2.1's socket bufferevents. */
#if LIBEVENT_VERSION_NUMBER < 0x02010000 || LIBEVENT_VERSION_NUMBER >= 0x02020000
#error "upechod needs libevent 2.1"
#endif

#include "log.h"
#include "proxy.h"
#include "stream.h"
#include "upper.h"

/* Most bytes stream_echo() copies in one step. */
#define STREAM_ECHO_STEP (64 * 1024)
/* How long a shutdown waits, after our FIN, for the client to close its side. */
#define STREAM_LINGER_SEC 2
/* Most reads one linger callback makes before it lets the loop go on. */
#define STREAM_LINGER_READS 16
/* At least libevent's chain header (48 bytes on 64-bit platforms). */
#define STREAM_CHAIN_SLACK 64
/* Output a stream may still queue while max_memory is over: about one read. */
#define STREAM_MEMORY_SMALL 4096
/* A client silent this long, with nothing unread, is not waited for at shutdown. */
#define STREAM_QUIET_SEC 1
/* Bytes of output an env may gain or lose before it adds them to the shared total. */
#define STREAM_PUBLISH_STEP (16 * 1024)

/* st_input_sec counts seconds modulo 2^22: about 48 days. */
#define STREAM_INPUT_SEC_MASK ((UINT64_C(1) << 22) - 1)
/* Where st_nbytes stops. */
#define STREAM_NBYTES_MAX ((UINT64_C(1) << 56) - 1)

/* With malloc's 8-byte header, a 64-byte chunk: see struct stream. */
_Static_assert(sizeof(struct stream) <= 56, "struct stream outgrew its 64-byte heap chunk");

static void stream_close(struct stream *st);
static void stream_event_cb(struct bufferevent *bev, short what, void *arg);
static void stream_output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);

/* Start the env's clock and its list; the rest is the owner's to fill in first. */
void
stream_env_init(struct stream_env *env)
{
    TAILQ_INIT(&env->se_streams);
    event_base_gettimeofday_cached(env->se_base, &env->se_epoch);
}

/*
 * Milliseconds on the env's clock, from the loop's cached time: what a
 * stream keeps of its times in a few bits.  A wall clock set back before
 * the env began reads as its start.
 */
uint64_t
stream_env_now_ms(const struct stream_env *env)
{
    struct timeval now, d;

    event_base_gettimeofday_cached(env->se_base, &now);
    if (timercmp(&now, &env->se_epoch, <))
        return 0;
    timersub(&now, &env->se_epoch, &d);
    return (uint64_t)d.tv_sec * 1000 + (uint64_t)d.tv_usec / 1000;
}

/* The client sent something now. */
static void
stream_touch(struct stream *st)
{
    st->st_input_sec = (stream_env_now_ms(st->st_env) / 1000) & STREAM_INPUT_SEC_MASK;
}

/* Count n more bytes read, in the env's counters and the stream's own. */
static void
stream_count(struct stream *st, size_t in, size_t out)
{
    struct server_stats *ss = st->st_env->se_stats;

    STATS_ADD(ss->ss_bytes_in, in);
    STATS_ADD(ss->ss_bytes_out, out);
    STATS_ADD(ss->ss_t_bytes_in[st->st_transport], in);
    STATS_ADD(ss->ss_t_bytes_out[st->st_transport], out);
    st->st_nbytes = in < STREAM_NBYTES_MAX - st->st_nbytes ? st->st_nbytes + in : STREAM_NBYTES_MAX;
}

/* st's rarely needed state, made the first time it is asked for; NULL when out of memory. */
struct stream_extra *
stream_extra(struct stream *st)
{
    if (st->st_extra == NULL)
        st->st_extra = calloc(1, sizeof(*st->st_extra));
    return st->st_extra;
}

/*
 * Count st's output into se_pending from now on, before anything is
 * queued on it.  Only streams with output queued pay for the callback
 * that counts it (48 bytes of heap): most connections are written at
 * once from their input and never queue anything.  Returns 0, or -ENOMEM.
 */
static int
stream_count_output(struct stream *st)
{
    struct evbuffer *out = bufferevent_get_output(st->st_bev);

    if (st->st_counted)
        return 0;
    if (evbuffer_add_cb(out, stream_output_cb, st) == NULL)
        return -ENOMEM;
    st->st_counted = 1;
    st->st_env->se_pending += evbuffer_get_length(out);
    return 0;
}

/*
 * Uppercase everything in `in` and move it to `out`, whatever `in` holds:
 * the bytes are copied into space reserved at the end of `out` and
 * uppercased there, so chains that are not ours are never written: the
 * input after a PROXY header, and what is left of it at the end of input.
 * Returns the number of bytes moved; when memory runs out the rest stays
 * in `in`.
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

/* Reading stops while any pause bit is set, and always while closing. */
static void
stream_pause(struct stream *st, int why, int on)
{
    int was = st->st_paused;

    st->st_paused = on ? was | why : was & ~why;
    if (was == 0 && st->st_paused != 0)
        bufferevent_disable(st->st_bev, EV_READ);
    else if (was != 0 && st->st_paused == 0 && !st->st_closing)
        bufferevent_enable(st->st_bev, EV_READ);
}

/*
 * max_memory is over: stop reading this stream, and remember it, so that it
 * is resumed as soon as the total drains whoever drains it.
 */
static void
stream_pause_memory(struct stream *st)
{
    struct stream_env *env = st->st_env;

    if (st->st_paused & STREAM_PAUSE_MEMORY)
        return;
    stream_pause(st, STREAM_PAUSE_MEMORY, 1);
    if (env->se_mem_npaused++ == 0)
        __atomic_store_n(&env->se_mem_waiting, 1, __ATOMIC_SEQ_CST);
    STATS_ADD(env->se_stats->ss_memory_pauses, 1);
}

/* st, paused for max_memory, no longer counts among the env's paused. */
static void
stream_uncount_memory_pause(struct stream *st)
{
    if (--st->st_env->se_mem_npaused == 0)
        __atomic_store_n(&st->st_env->se_mem_waiting, 0, __ATOMIC_SEQ_CST);
}

static void
stream_resume_memory(struct stream *st)
{
    if (!(st->st_paused & STREAM_PAUSE_MEMORY))
        return;
    stream_uncount_memory_pause(st);
    stream_pause(st, STREAM_PAUSE_MEMORY, 0);
}

/* Output queued on every env's streams: the shared total, with this env's own exact. */
size_t
stream_env_total(const struct stream_env *env)
{
    size_t total = __atomic_load_n(env->se_total, __ATOMIC_RELAXED);

    return total - env->se_published + env->se_pending;
}

/*
 * Add what this env's output gained or lost since the last time to the
 * shared total, once it is a step's worth or the output is empty.
 * Returns 1 when the total moved.
 */
static int
stream_env_publish(struct stream_env *env)
{
    size_t diff = env->se_pending > env->se_published ? env->se_pending - env->se_published
                                                      : env->se_published - env->se_pending;

    if (diff == 0 || (diff < STREAM_PUBLISH_STEP && env->se_pending != 0))
        return 0;
    if (env->se_pending > env->se_published)
        __atomic_fetch_add(env->se_total, diff, __ATOMIC_SEQ_CST);
    else
        __atomic_fetch_sub(env->se_total, diff, __ATOMIC_SEQ_CST);
    env->se_published = env->se_pending;
    return 1;
}

/*
 * The total may have fallen (here or in another env): every stream of env
 * paused for max_memory reads again once it is at 3/4 of max_memory.  The
 * paused are found by walking all streams: that happens once per time the
 * total crosses back under 3/4, and keeps a list's 16 bytes out of every
 * stream.
 */
void
stream_env_mem_recheck(struct stream_env *env)
{
    struct stream *p;

    if (env->se_mem_npaused == 0 || stream_env_total(env) > env->se_conf->cf_max_memory / 4 * 3)
        return;
    TAILQ_FOREACH(p, &env->se_streams, st_entry) {
        stream_resume_memory(p);
        if (env->se_mem_npaused == 0)
            break;
    }
}

/*
 * Backpressure: a client that writes without reading must not make us buffer
 * without bound.  Above max_pending_output we stop reading it (the kernel's
 * window then stops the client) and resume once half of it has drained.
 * Above max_memory, all streams' pending output together, those holding
 * more than their share (or more than a read's worth) stop too: many
 * connections each under its own limit must not add up without bound.
 */
static void
stream_check_pressure(struct stream *st)
{
    struct stream_env *env = st->st_env;
    size_t len = evbuffer_get_length(bufferevent_get_output(st->st_bev));
    size_t max = env->se_conf->cf_max_pending_output;

    if (!(st->st_paused & STREAM_PAUSE_OUTPUT) && len >= max)
        stream_pause(st, STREAM_PAUSE_OUTPUT, 1);
    else if ((st->st_paused & STREAM_PAUSE_OUTPUT) && len <= max / 2)
        stream_pause(st, STREAM_PAUSE_OUTPUT, 0);
    if (len > 0 && stream_env_total(env) > env->se_conf->cf_max_memory) {
        /* A division, so only when it matters: this runs after every read. */
        size_t nstreams = __atomic_load_n(env->se_nstreams, __ATOMIC_RELAXED);
        size_t share = env->se_conf->cf_max_memory / (nstreams ? nstreams : 1);

        if (len >= share || len >= STREAM_MEMORY_SMALL)
            stream_pause_memory(st);
    } else if (len == 0) {
        stream_resume_memory(st);
    }
}

/*
 * Keep se_pending, the output of this env's streams together, exact: this
 * runs on every change to a stream's output.  When the total has drained
 * well below max_memory every stream paused for it reads again, whichever
 * stream's client did the draining, in this env and (told through
 * se_mem_drained) in the others.
 */
static void
stream_output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct stream *st = arg;
    struct stream_env *env = st->st_env;
    int moved;

    env->se_pending += info->n_added;
    env->se_pending -= info->n_deleted;
    moved = stream_env_publish(env);
    if (info->n_deleted == 0)
        return;
    if (moved && env->se_mem_drained != NULL &&
        stream_env_total(env) <= env->se_conf->cf_max_memory / 4 * 3)
        env->se_mem_drained(env->se_arg);
    if (evbuffer_get_length(buf) == 0) {
        /*
         * All out: stop counting until something is queued again.  libevent
         * fetches the next callback before it calls this one, so this one
         * may remove itself.
         */
        evbuffer_remove_cb(buf, stream_output_cb, st);
        st->st_counted = 0;
        /* A stream that owes nothing holds no memory: it may read again at once. */
        stream_resume_memory(st);
    }
    stream_env_mem_recheck(env);
}

/*
 * Bytes per read, and reads per callback for a stream with more waiting.
 * A little under 64 KiB, so that what the socket does not take at once is
 * copied into one 64 KiB chain of output and not a 128 KiB one (libevent's
 * chain header takes the rest).
 */
#define STREAM_READ (64 * 1024 - STREAM_CHAIN_SLACK)
#define STREAM_READ_ROUNDS 4

/*
 * Where a worker's streams read into: the echo is uppercased there and
 * written straight back, so the usual exchange allocates nothing.  Only
 * what the socket does not take is copied to the stream's output.  One per
 * thread: a loop runs one callback at a time.
 */
static _Thread_local unsigned char stream_scratch[STREAM_READ];

/*
 * Append len bytes to out as tightly as the heap allows: into the room left
 * at its end, then one new chain sized for the rest (not evbuffer_add(),
 * which after a large chain allocates another as large for a few bytes).
 * A client writing a byte at a time to a stream it never reads thus costs
 * its output about the bytes it holds, not a chain per read.  0, or -1
 * when out of memory (nothing added).
 */
int
stream_queue_bytes(struct evbuffer *out, const unsigned char *data, size_t len)
{
    struct evbuffer_iovec v[2];
    size_t done = 0;
    int n;

    if (len == 0)
        return 0;
    if ((n = evbuffer_reserve_space(out, len, v, 2)) < 1)
        return -1;
    for (int i = 0; i < n; i++) {
        size_t k = v[i].iov_len < len - done ? v[i].iov_len : len - done;

        memcpy(v[i].iov_base, data + done, k);
        v[i].iov_len = k;
        done += k;
    }
    return evbuffer_commit_space(out, v, n);
}

/* Close st at once for a local failure (errno says which), and say so. */
static void
stream_fail(struct stream *st, const char *what)
{
    char peer[ADDR_STRLEN];
    int err = errno;

    log_warn("%s %s: %s: %s; closing it", transport_name(st->st_transport),
             stream_peer(st, peer, sizeof(peer)), what, strerror(err));
    stream_free(st);
}

/*
 * Writing is enabled the first time output is queued, not at accept: in
 * libevent 2.1 enabling EV_WRITE adds the write event whatever the output
 * holds, and on an empty output that costs an epoll_ctl to add EPOLLOUT,
 * a wakeup for it, and another epoll_ctl to remove it again.  Once
 * enabled, the bufferevent adds the event only while output is queued.
 */
static int
stream_want_write(struct stream *st)
{
    if (evbuffer_get_length(bufferevent_get_output(st->st_bev)) > 0 &&
        !(bufferevent_get_enabled(st->st_bev) & EV_WRITE))
        return bufferevent_enable(st->st_bev, EV_WRITE);
    return 0;
}

/*
 * The stream's socket is readable (or its read timed out): the read event's
 * callback, in place of the bufferevent's own.  Each read goes into the
 * thread's scratch buffer, is uppercased there and, with nothing queued
 * before it, written straight back: one read(2) and one write(2) per
 * message, where libevent 2.1's bufferevent would add an ioctl(FIONREAD)
 * before every read, a chain allocated for it, and readv/writev.  What
 * the socket does not take goes to the output, in order, for the
 * bufferevent to write.  A read that filled the buffer says more is
 * waiting: a few more follow in the same callback.  End of input, errors
 * and the idle timeout go to stream_event_cb() as the bufferevent would
 * report them, reading disabled first, as it does.
 */
static void
stream_readable_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bufferevent *bev = arg;
    struct stream *st = bev->cbarg; /* see stream_take_reading() */
    struct stream_env *env = st->st_env;
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t max = env->se_conf->cf_max_pending_output;
    int queued = 0;

    if (what & EV_TIMEOUT) {
        bufferevent_disable(bev, EV_READ);
        stream_event_cb(bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, st);
        return;
    }
    stream_touch(st);
    for (int round = 0; round < STREAM_READ_ROUNDS; round++) {
        size_t want = sizeof(stream_scratch);
        ssize_t n, w = 0;

        /*
         * With max_memory already over, read no more than the small amount
         * a stream may still queue, so that the many streams reading at
         * such a moment add little before they are paused.
         */
        if (stream_env_total(env) > env->se_conf->cf_max_memory)
            want = STREAM_MEMORY_SMALL;
        do
            n = read(fd, stream_scratch, want);
        while (n == -1 && errno == EINTR);
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            bufferevent_disable(bev, EV_READ);
            stream_event_cb(bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR),
                            st);
            return;
        }
        upper_inplace(stream_scratch, (size_t)n);
        stream_count(st, (size_t)n, (size_t)n);
        if (evbuffer_get_length(out) == 0) {
            do
                w = write(fd, stream_scratch, (size_t)n);
            while (w == -1 && errno == EINTR);
            /* A failed write is the bufferevent's to meet when it writes the rest. */
            if (w < 0)
                w = 0;
        }
        /* Usually the socket took it all and nothing is queued. */
        if (w < n) {
            if (stream_count_output(st) != 0 ||
                stream_queue_bytes(out, stream_scratch + w, (size_t)(n - w)) != 0) {
                stream_fail(st, "out of memory for its output");
                return;
            }
            queued = 1;
        }
        if ((size_t)n < want || evbuffer_get_length(out) >= max ||
            stream_env_total(env) > env->se_conf->cf_max_memory)
            break;
    }
    if (queued && stream_want_write(st) != 0) {
        stream_fail(st, "cannot watch for writing");
        return;
    }
    stream_check_pressure(st);
}

/*
 * Take over the bufferevent's read event: same socket, flags and argument,
 * our callback.  bufferevent_free() relies on the flags (EV_FINALIZE) and
 * the argument (its finalizer gets the bufferevent from it); the callback
 * finds the stream as the bufferevent's callback argument, read from the
 * same structure rather than through bufferevent_getcb(), which costs a
 * twentieth of the user-space instructions of a message.  libevent 2.1
 * has no call for this; the event is the one member of struct bufferevent
 * that event2/bufferevent_struct.h publishes for it, and the bufferevent
 * only ever adds and deletes it, with the read timeout, when reading is
 * enabled and disabled.  Reading is disabled around the swap, since a
 * pending event may not be assigned.
 */
static int
stream_take_reading(struct stream *st)
{
    struct bufferevent *bev = st->st_bev;
    int reading = bufferevent_get_enabled(bev) & EV_READ;

    /* A pending event may not be assigned: never risk libevent's own bookkeeping. */
    if ((reading && bufferevent_disable(bev, EV_READ) != 0) ||
        event_pending(&bev->ev_read, EV_READ | EV_TIMEOUT, NULL))
        return -1;
    if (event_assign(&bev->ev_read, st->st_env->se_base, bufferevent_getfd(bev),
                     EV_READ | EV_PERSIST | EV_FINALIZE, stream_readable_cb, bev) == -1)
        return -1;
    return reading ? bufferevent_enable(bev, EV_READ) : 0;
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
    char peer[ADDR_STRLEN];

    if (what & BEV_EVENT_EOF) {
        /*
         * The client half-closed (or closed).  Whatever it sent is still owed
         * to it: echo anything left in the input, flush, then close.
         */
        size_t left = evbuffer_get_length(bufferevent_get_input(bev));
        size_t echoed;

        if (left > 0 && stream_count_output(st) != 0) {
            stream_fail(st, "out of memory for its output");
            return;
        }
        echoed = stream_echo(bufferevent_get_input(bev), bufferevent_get_output(bev));
        stream_count(st, left, echoed);
        log_debug("%s %s: end of input", transport_name(st->st_transport),
                  stream_peer(st, peer, sizeof(peer)));
        stream_finish(st);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        log_debug("%s %s: %s", transport_name(st->st_transport),
                  stream_peer(st, peer, sizeof(peer)), strerror(EVUTIL_SOCKET_ERROR()));
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
        log_debug("%s %s: idle for %u s, closing", transport_name(st->st_transport),
                  stream_peer(st, peer, sizeof(peer)), st->st_env->se_conf->cf_idle_timeout);
        STATS_ADD(st->st_env->se_stats->ss_timeouts, 1);
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
 * The peer is now sa: kept at accept where it is needed later (a PROXY
 * header to check, debug logging), and again when a PROXY header names the
 * real client.  Whatever acts on the peer's address takes it from
 * stream_addr().  Returns 0, or -ENOMEM with nothing kept.
 */
int
stream_set_peer(struct stream *st, const struct sockaddr *sa, socklen_t salen)
{
    struct stream_extra *sx = stream_extra(st);

    if (sx == NULL)
        return -ENOMEM;
    if (sa == NULL || salen > sizeof(sx->sx_addr.a_ss))
        salen = 0;
    memset(&sx->sx_addr, 0, sizeof(sx->sx_addr));
    if (salen > 0)
        memcpy(&sx->sx_addr.a_ss, sa, salen);
    sx->sx_addr.a_len = salen;
    return 0;
}

/*
 * The peer's address: the one kept, else for TCP the socket's peer, asked
 * of the kernel into buf only when someone needs it (a_len 0: none, as for
 * AF_UNIX, or a connection already reset).
 */
const struct stream_addr *
stream_addr(const struct stream *st, struct stream_addr *buf)
{
    socklen_t len = sizeof(buf->a_ss);

    if (st->st_extra != NULL && st->st_extra->sx_addr.a_len > 0)
        return &st->st_extra->sx_addr;
    memset(buf, 0, sizeof(*buf));
    if (st->st_transport == TRANSPORT_TCP &&
        getpeername(bufferevent_getfd(st->st_bev), &buf->a_ss.sa, &len) == 0 &&
        len <= sizeof(buf->a_ss))
        buf->a_len = len;
    return buf;
}

/*
 * The peer as log lines name it, formatted into buf only when a line is
 * written: its address, or "fd N" when it has none (AF_UNIX).
 */
const char *
stream_peer(const struct stream *st, char *buf, size_t size)
{
    struct stream_addr tmp;
    const struct stream_addr *a = stream_addr(st, &tmp);

    if (a->a_len > 0)
        return addr_format(&a->a_ss.sa, a->a_len, buf, size);
    snprintf(buf, size, "fd %d", bufferevent_getfd(st->st_bev));
    return buf;
}

/*
 * Echo from now on, starting with any input already waiting (after a PROXY
 * header: what came with it, read by the bufferevent itself).  Returns 0,
 * or -1 when the read event cannot be taken over (st is then freed).
 */
int
stream_begin_echo(struct stream *st)
{
    struct evbuffer *in = bufferevent_get_input(st->st_bev);
    size_t left;

    bufferevent_setcb(st->st_bev, NULL, stream_write_cb, stream_event_cb, st);
    if (stream_take_reading(st) != 0) {
        stream_fail(st, "cannot watch for reading");
        return -1;
    }
    if (evbuffer_get_length(in) == 0)
        return 0;
    left = evbuffer_get_length(in);
    /* All of it or nothing: what the socket gives next must not overtake a remainder. */
    if (stream_count_output(st) != 0 ||
        stream_echo(in, bufferevent_get_output(st->st_bev)) != left) {
        stream_fail(st, "out of memory for its output");
        return -1;
    }
    stream_count(st, left, left);
    if (stream_want_write(st) != 0) {
        stream_fail(st, "cannot watch for writing");
        return -1;
    }
    stream_check_pressure(st);
    return 0;
}

/* Free st and what it holds, the bufferevent (and its fd) included, counting nothing. */
static void
stream_destroy(struct stream *st)
{
    struct stream_extra *sx = st->st_extra;

    if (sx != NULL) {
        if (sx->sx_linger_ev != NULL)
            event_free(sx->sx_linger_ev);
        if (sx->sx_proxy_timer != NULL)
            event_free(sx->sx_proxy_timer);
        free(sx);
    }
    if (st->st_bev != NULL)
        bufferevent_free(st->st_bev);
    free(st);
}

/*
 * Serve a freshly accepted connection, counted under src (NULL: not
 * counted) for max_connections_per_source.  The fd is taken either way: on
 * failure (NULL) it is closed, and the connection counted nowhere (the
 * closed callback is not called, src is left to the caller).  The caller
 * counts the connection.
 */
struct stream *
stream_new(struct stream_env *env, int fd, enum transport t, const struct sockaddr *sa,
           socklen_t salen, struct source *src)
{
    const struct upechod_config *cf = env->se_conf;
    int proxy = t == TRANSPORT_TCP ? cf->cf_tcp_proxy_protocol : cf->cf_unix_proxy_protocol;
    struct stream *st = calloc(1, sizeof(*st));
    char peer[ADDR_STRLEN];

    if (st == NULL ||
        (st->st_bev = bufferevent_socket_new(env->se_base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
        log_warn("out of memory for a new %s connection, refusing it", transport_name(t));
        close(fd);
        free(st);
        return NULL;
    }
    st->st_env = env;
    st->st_transport = t;
    /* The address is kept only where it is needed: most connections ask the kernel if ever. */
    if ((src != NULL && stream_extra(st) == NULL) ||
        (t == TRANSPORT_TCP && (proxy || log_get_level() >= LOG_LEVEL_DEBUG) &&
         stream_set_peer(st, sa, salen) != 0) ||
        (proxy && proxy_stream_start(st) != 0)) {
        log_warn("out of memory for a new %s connection, refusing it", transport_name(t));
        stream_destroy(st); /* closes fd */
        return NULL;
    }
    if (src != NULL)
        st->st_extra->sx_source = src;
    if (!proxy)
        bufferevent_setcb(st->st_bev, NULL, stream_write_cb, stream_event_cb, st);
    /* EV_WRITE waits for output: see stream_want_write(). */
    if ((!proxy && stream_take_reading(st) != 0) || bufferevent_enable(st->st_bev, EV_READ) == -1) {
        /* Registering with the loop failed: nothing was counted yet; undo the rest. */
        log_warn("cannot watch a new %s connection: %s; closing it", transport_name(t),
                 strerror(errno));
        stream_destroy(st);
        return NULL;
    }
    st->st_started_ms = stream_env_now_ms(env);
    stream_touch(st);
    TAILQ_INSERT_TAIL(&env->se_streams, st, st_entry);
    stream_apply_limits(st);
    log_debug("%s %s: connected", transport_name(t), stream_peer(st, peer, sizeof(peer)));
    return st;
}

/* Close the connection at once, whatever is pending. */
void
stream_free(struct stream *st)
{
    struct stream_env *env;
    int moved = 0;

    if (st == NULL)
        return;
    env = st->st_env;
    if (st->st_paused & STREAM_PAUSE_MEMORY)
        stream_uncount_memory_pause(st);
    /* Freeing the output runs no callback: take its bytes off the total here. */
    if (st->st_counted) {
        evbuffer_remove_cb(bufferevent_get_output(st->st_bev), stream_output_cb, st);
        env->se_pending -= evbuffer_get_length(bufferevent_get_output(st->st_bev));
        moved = stream_env_publish(env);
    }
    TAILQ_REMOVE(&env->se_streams, st, st_entry);
    /* The owner forgets it, gives its slot and its source back. */
    env->se_closed(st, env->se_arg);
    stream_destroy(st);
    /*
     * Its output no longer counts: streams paused for max_memory, here and
     * in other envs, may read again.  Their own output may never drain
     * (a client blocked writing to us), so nothing else would tell them.
     */
    if (moved && env->se_mem_drained != NULL &&
        stream_env_total(env) <= env->se_conf->cf_max_memory / 4 * 3)
        env->se_mem_drained(env->se_arg);
    stream_env_mem_recheck(env);
}

/* Bytes handed to the socket that the client has not taken yet, or -1. */
static int
stream_unsent(int fd)
{
    int unsent = 0;

    return ioctl(fd, SIOCOUTQ, &unsent) == -1 ? -1 : unsent;
}

/* Whether the linger after our FIN still has time left. */
static int
stream_linger_left(struct stream *st)
{
    struct timeval now;

    event_base_gettimeofday_cached(st->st_env->se_base, &now);
    return timercmp(&now, &st->st_extra->sx_linger_until, <);
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
        if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
            stream_free(st);
            return;
        }
    }
    /*
     * A persistent event's timeout restarts on activity: bound the linger
     * ourselves.  Past the bound a client that took all its echo is let go;
     * one that has not yet taken it is closed only by shutdown_timeout,
     * which then reports it as cut short.
     */
    if (stream_linger_left(st) || stream_unsent(fd) > 0)
        return;
    stream_free(st);
}

/*
 * Whether the client is quiet: it has taken all its echo, nothing of it
 * waits unread in the socket, and it has sent nothing for STREAM_QUIET_SEC.
 * Such a client is not in the middle of sending, so a plain close resets
 * nothing, and an idle connection does not hold up the stop.
 */
static int
stream_quiet(struct stream *st, int fd)
{
    uint64_t now = (stream_env_now_ms(st->st_env) / 1000) & STREAM_INPUT_SEC_MASK;
    int unread = 0;

    if (ioctl(fd, FIONREAD, &unread) == -1 || unread > 0 || stream_unsent(fd) != 0)
        return 0;
    return ((now - st->st_input_sec) & STREAM_INPUT_SEC_MASK) >= STREAM_QUIET_SEC;
}

/*
 * Everything we owe the client is out.  Normally that ends the connection.
 * During shutdown the client may still be sending: closing a socket with
 * unread input makes the kernel send a reset, which can destroy echo the
 * client has not read yet.  So send our FIN and drain its input until it
 * closes, for a bounded time, unless the client is quiet.
 */
static void
stream_close(struct stream *st)
{
    struct timeval tv = {.tv_sec = STREAM_LINGER_SEC, .tv_usec = 0};
    struct stream_extra *sx;
    int fd;

    if (!st->st_env->se_stopping || (st->st_extra != NULL && st->st_extra->sx_linger_ev != NULL)) {
        stream_free(st);
        return;
    }
    fd = bufferevent_getfd(st->st_bev);
    bufferevent_disable(st->st_bev, EV_READ | EV_WRITE);
    if (stream_quiet(st, fd) || shutdown(fd, SHUT_WR) == -1) {
        stream_free(st);
        return;
    }
    if ((sx = stream_extra(st)) == NULL) {
        stream_free(st);
        return;
    }
    event_base_gettimeofday_cached(st->st_env->se_base, &sx->sx_linger_until);
    sx->sx_linger_until.tv_sec += STREAM_LINGER_SEC;
    sx->sx_linger_ev =
        event_new(st->st_env->se_base, fd, EV_READ | EV_PERSIST, stream_linger_cb, st);
    if (sx->sx_linger_ev == NULL || event_add(sx->sx_linger_ev, &tv) == -1)
        stream_free(st);
}

/*
 * Whether the client is still owed echo: output not yet handed to the
 * socket, or handed to it but not yet taken by the client.  Otherwise the
 * connection only waits, in the drain after our FIN, for the client's own.
 */
int
stream_owed(const struct stream *st)
{
    return st->st_extra == NULL || st->st_extra->sx_linger_ev == NULL ||
           stream_unsent(bufferevent_getfd(st->st_bev)) != 0;
}

/*
 * What the client sent before the stop may still sit in the socket: the
 * worker's loop learns of the stop at its own pace, from another thread.
 * Answer that too, up to max_pending_output, so that what was sent before
 * SIGTERM does not depend on which the worker noticed first.  Not while a
 * PROXY header is still awaited: those bytes are not echo.
 */
static void
stream_read_pending(struct stream *st)
{
    struct evbuffer *out = bufferevent_get_output(st->st_bev);
    size_t max = st->st_env->se_conf->cf_max_pending_output;
    int fd = bufferevent_getfd(st->st_bev);

    if (st->st_extra != NULL && st->st_extra->sx_proxy_timer != NULL)
        return;
    if (stream_count_output(st) != 0)
        return;
    while (evbuffer_get_length(out) < max) {
        ssize_t n;

        do
            n = read(fd, stream_scratch, sizeof(stream_scratch));
        while (n == -1 && errno == EINTR);
        if (n <= 0)
            break;
        stream_touch(st);
        upper_inplace(stream_scratch, (size_t)n);
        stream_count(st, (size_t)n, (size_t)n);
        if (stream_queue_bytes(out, stream_scratch, (size_t)n) != 0)
            break;
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
