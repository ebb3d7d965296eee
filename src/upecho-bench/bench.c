/* bench.c: the upecho-bench engine: load over many connections, every reply byte checked. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
/* Events live inside each connection: one allocation for tens of thousands of them. */
#include <event2/event_struct.h>

#include "bench.h"
#include "payload.h"
#include "upper.h"

#define BENCH_RBUF_SIZE (256u * 1024)
#define BENCH_NS 1000000000ULL
#define BENCH_SLOT_FREE UINT64_MAX
/* Datagrams read per readiness callback before yielding to other sockets. */
#define BENCH_UDP_BATCH 64
/* How soon to retry a unix connect refused for a full backlog. */
#define BENCH_RETRY_NS 1000000ULL

enum bench_state {
    BENCH_IDLE = 0,   /* not opened yet */
    BENCH_CONNECTING, /* stream connect under way */
    BENCH_RETRY,      /* unix listener backlog full, retrying */
    BENCH_OPEN,
    BENCH_CLOSED,
};

struct bench_thread;

/*
 * One connection (for UDP, one connected socket).  Streams keep the bytes
 * sent and not yet answered in bn_ring, pipeline * size bytes, where message
 * k sits at (k % pipeline) * size: stream offset o is at o % ring size, so
 * replies are checked byte for byte whatever the read boundaries.
 */
struct bench_conn {
    struct bench_thread *bn_thread;
    int bn_fd;
    unsigned bn_index; /* connection number over the whole run */
    enum bench_state bn_state;
    uint64_t bn_seed;       /* payloads derive from it and the message number */
    uint64_t bn_quota;      /* messages to send, UINT64_MAX for a timed run */
    uint64_t bn_sent;       /* messages queued */
    uint64_t bn_done;       /* messages answered (UDP: or counted lost) */
    uint64_t bn_started;    /* ns, first connect() */
    uint64_t bn_progress;   /* ns, last time the reply stream moved */
    uint64_t bn_due;        /* ns, intended send time of the next message with a rate */
    uint64_t bn_tx;         /* stream bytes written */
    uint64_t bn_rx;         /* stream bytes received and checked */
    uint64_t bn_bad_msg;    /* 1 + the last message counted as mismatched, 0 for none */
    unsigned bn_inflight;   /* UDP slots in use */
    unsigned char *bn_ring; /* streams: the unanswered bytes */
    uint64_t *bn_stamps;    /* per slot: the (intended) send time, for latency */
    uint64_t *bn_seqs;      /* UDP, per slot: the message number, BENCH_SLOT_FREE */
    uint64_t *bn_sent_at;   /* UDP, per slot: when it really left, for the loss timeout */
    struct event bn_rev;
    struct event bn_wev;
    struct event bn_tev; /* rate pacing, or connect retry */
};

/* Counters a worker publishes for the progress line; only the owner writes them. */
struct bench_live {
    _Atomic uint64_t bl_messages;
    _Atomic uint64_t bl_bytes;
    _Atomic uint64_t bl_open;
    _Atomic uint64_t bl_errors;
    _Atomic uint64_t bl_mismatches;
    _Atomic int bl_finished;
};

struct bench;

/* One worker: its own event_base and connections, nothing shared but the stop flag. */
struct bench_thread {
    struct bench *bt_bench;
    unsigned bt_id;
    pthread_t bt_tid;
    int bt_started;
    struct event_base *bt_base;
    struct event *bt_tick;
    struct event *bt_opener;
    struct bench_conn *bt_conns;
    unsigned bt_nconns;
    unsigned bt_next_open; /* next connection of bt_conns to open */
    unsigned bt_live;      /* connections not closed yet, opened or not */
    unsigned bt_open;
    bool bt_stopping;
    unsigned char *bt_rbuf;     /* reads land here */
    unsigned char *bt_sbuf;     /* datagrams are built here */
    struct bench_result bt_res; /* this worker's share; histograms merged at the end */
    uint64_t bt_first_time;     /* when the first mismatch was seen, to pick the earliest */
    struct bench_live bt_live_pub;
};

struct bench {
    const struct bench_config *b_cfg;
    uint64_t b_start;
    uint64_t b_deadline; /* ns, 0 for a run by message count */
    uint64_t b_interval; /* ns between messages of one connection with a rate, else 0 */
    uint64_t b_timeout;
    uint64_t b_connect_timeout;
    uint64_t b_tick;
    _Atomic int b_stop;
    struct bench_thread *b_threads;
    unsigned b_nthreads;
};

static uint64_t
bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * BENCH_NS + (uint64_t)ts.tv_nsec;
}

static void
bench_publish(struct bench_thread *t)
{
    const struct bench_result *r = &t->bt_res;
    struct bench_live *l = &t->bt_live_pub;

    atomic_store_explicit(&l->bl_messages, r->br_messages, memory_order_relaxed);
    atomic_store_explicit(&l->bl_bytes, r->br_bytes_sent, memory_order_relaxed);
    atomic_store_explicit(&l->bl_open, t->bt_open, memory_order_relaxed);
    atomic_store_explicit(&l->bl_errors, bench_errors(r), memory_order_relaxed);
    atomic_store_explicit(&l->bl_mismatches, r->br_mismatch_bytes, memory_order_relaxed);
}

/* Close a connection for good, whatever its state, and end the loop after the last one. */
static void
bench_conn_close(struct bench_conn *c)
{
    struct bench_thread *t = c->bn_thread;

    if (c->bn_state == BENCH_CLOSED)
        return;
    if (c->bn_fd != -1) {
        event_del(&c->bn_rev);
        event_del(&c->bn_wev);
        close(c->bn_fd);
        c->bn_fd = -1;
    }
    /* The timer is assigned when the connection first leaves BENCH_IDLE. */
    if (c->bn_state != BENCH_IDLE)
        event_del(&c->bn_tev);
    if (c->bn_state == BENCH_OPEN)
        t->bt_open--;
    c->bn_state = BENCH_CLOSED;
    free(c->bn_ring);
    c->bn_ring = NULL;
    free(c->bn_stamps);
    c->bn_stamps = NULL;
    c->bn_seqs = NULL;
    c->bn_sent_at = NULL;
    if (--t->bt_live == 0) {
        bench_publish(t);
        event_base_loopbreak(t->bt_base);
    }
}

static void
bench_connect_failed(struct bench_conn *c, int err)
{
    struct bench_result *r = &c->bn_thread->bt_res;

    if (r->br_connect_failures++ == 0)
        r->br_connect_errno = err;
    bench_conn_close(c);
}

/* An established connection broke: err is the errno, 0 when the peer closed it. */
static void
bench_reset(struct bench_conn *c, int err)
{
    struct bench_result *r = &c->bn_thread->bt_res;

    if (r->br_resets++ == 0)
        r->br_reset_errno = err;
    bench_conn_close(c);
}

/* Record bytes wrong reply bytes; msg and offset locate the first of them. */
static void
bench_mismatch(struct bench_conn *c, uint64_t msg, uint64_t offset, uint64_t bytes, uint64_t now)
{
    struct bench_thread *t = c->bn_thread;
    struct bench_result *r = &t->bt_res;

    r->br_mismatch_bytes += bytes;
    if (!r->br_has_first) {
        r->br_has_first = 1;
        r->br_first_conn = c->bn_index;
        r->br_first_message = msg;
        r->br_first_offset = offset;
        t->bt_first_time = now;
    }
}

/* Stream: count every wrong byte of a reply chunk that should equal the uppercase of sent. */
static void
bench_stream_compare(struct bench_conn *c, const unsigned char *reply, const unsigned char *sent,
                     size_t len, uint64_t offset, uint64_t now)
{
    size_t size = c->bn_thread->bt_bench->b_cfg->bc_size;
    size_t pos = 0, w;

    while (pos < len && !upper_equal(reply + pos, sent + pos, len - pos, &w)) {
        uint64_t at = offset + pos + w, msg = at / size;

        bench_mismatch(c, msg, at, 1, now);
        if (c->bn_bad_msg != msg + 1) {
            c->bn_bad_msg = msg + 1;
            c->bn_thread->bt_res.br_mismatch_messages++;
        }
        pos += w + 1;
    }
}

static void bench_conn_fill(struct bench_conn *c, uint64_t now);

/* Stream: write what is queued and not yet written; arm EV_WRITE if the socket is full. */
static int
bench_stream_flush(struct bench_conn *c)
{
    const struct bench_config *cfg = c->bn_thread->bt_bench->b_cfg;
    size_t cap = (size_t)cfg->bc_pipeline * cfg->bc_size;

    while (c->bn_tx < c->bn_sent * cfg->bc_size) {
        uint64_t left = c->bn_sent * cfg->bc_size - c->bn_tx;
        size_t at = (size_t)(c->bn_tx % cap);
        struct iovec iov[2];
        struct msghdr mh;
        ssize_t n;

        memset(&mh, 0, sizeof(mh));
        iov[0].iov_base = c->bn_ring + at;
        iov[0].iov_len = left < cap - at ? (size_t)left : cap - at;
        mh.msg_iov = iov;
        mh.msg_iovlen = 1;
        if (left > iov[0].iov_len) {
            iov[1].iov_base = c->bn_ring;
            iov[1].iov_len = (size_t)left - iov[0].iov_len;
            mh.msg_iovlen = 2;
        }
        n = sendmsg(c->bn_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                event_add(&c->bn_wev, NULL);
                return 0;
            }
            return -errno;
        }
        c->bn_tx += (uint64_t)n;
        c->bn_thread->bt_res.br_bytes_sent += (uint64_t)n;
    }
    return 0;
}

/*
 * With a rate, the next message may only go at its intended time: returns
 * 1 with *stamp set to that time when it is due, 0 after arming the pacing
 * timer when it is not.  Without a rate every message is due now.
 */
static int
bench_due(struct bench_conn *c, uint64_t now, uint64_t *stamp)
{
    uint64_t interval = c->bn_thread->bt_bench->b_interval;

    if (interval == 0) {
        *stamp = now;
        return 1;
    }
    if (c->bn_due > now) {
        struct timeval tv;
        uint64_t wait = c->bn_due - now;

        tv.tv_sec = (time_t)(wait / BENCH_NS);
        tv.tv_usec = (suseconds_t)(wait % BENCH_NS / 1000);
        evtimer_add(&c->bn_tev, &tv);
        return 0;
    }
    /*
     * The latency clock starts at the intended time even when the pipeline
     * kept the message back: that is the coordinated omission correction.
     */
    *stamp = c->bn_due;
    c->bn_due += interval;
    return 1;
}

/* Stream: queue every message allowed now (quota, pipeline, rate), then write. */
static void
bench_stream_fill(struct bench_conn *c, uint64_t now)
{
    const struct bench_config *cfg = c->bn_thread->bt_bench->b_cfg;
    uint64_t stamp;
    int rc;

    while (c->bn_sent < c->bn_quota && c->bn_sent - c->bn_done < cfg->bc_pipeline &&
           !c->bn_thread->bt_stopping && bench_due(c, now, &stamp)) {
        size_t k = (size_t)(c->bn_sent % cfg->bc_pipeline);

        payload_fill(c->bn_ring + k * cfg->bc_size, cfg->bc_size, c->bn_seed, c->bn_sent);
        c->bn_stamps[k] = stamp;
        if (c->bn_sent == c->bn_done)
            c->bn_progress = now;
        c->bn_sent++;
    }
    rc = bench_stream_flush(c);
    if (rc < 0)
        bench_reset(c, -rc);
}

/* UDP: a free slot for a new request, trying the one its number maps to first. */
static unsigned
bench_udp_slot(const struct bench_conn *c, unsigned pipeline)
{
    unsigned k = (unsigned)(c->bn_sent % pipeline);

    while (c->bn_seqs[k] != BENCH_SLOT_FREE)
        k = k + 1 == pipeline ? 0 : k + 1;
    return k;
}

/* UDP: send every request allowed now, one datagram each. */
static void
bench_udp_fill(struct bench_conn *c, uint64_t now)
{
    struct bench_thread *t = c->bn_thread;
    const struct bench_config *cfg = t->bt_bench->b_cfg;
    uint64_t stamp;

    while (c->bn_sent < c->bn_quota && c->bn_inflight < cfg->bc_pipeline && !t->bt_stopping &&
           bench_due(c, now, &stamp)) {
        unsigned k = bench_udp_slot(c, cfg->bc_pipeline);
        ssize_t n;

        payload_datagram(t->bt_sbuf, cfg->bc_size, c->bn_seed, c->bn_sent);
        n = send(c->bn_fd, t->bt_sbuf, cfg->bc_size, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == -1) {
            int err = errno;

            if (t->bt_bench->b_interval != 0)
                c->bn_due = stamp;
            if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS || err == EINTR) {
                event_add(&c->bn_wev, NULL);
                return;
            }
            bench_reset(c, err);
            return;
        }
        c->bn_seqs[k] = c->bn_sent;
        c->bn_stamps[k] = stamp;
        c->bn_sent_at[k] = now;
        c->bn_inflight++;
        c->bn_sent++;
        t->bt_res.br_bytes_sent += (uint64_t)n;
    }
}

/* After replies: close when finished, otherwise send what may go now. */
static void
bench_conn_fill(struct bench_conn *c, uint64_t now)
{
    if (c->bn_state != BENCH_OPEN)
        return;
    if (c->bn_done == c->bn_quota || (c->bn_thread->bt_stopping && c->bn_done == c->bn_sent)) {
        bench_conn_close(c);
        return;
    }
    if (c->bn_thread->bt_bench->b_cfg->bc_target.t_kind == TARGET_UDP)
        bench_udp_fill(c, now);
    else
        bench_stream_fill(c, now);
}

/* Stream: check a chunk of reply bytes against the ring, then settle finished messages. */
static void
bench_stream_reply(struct bench_conn *c, const unsigned char *buf, size_t n, uint64_t now)
{
    struct bench_thread *t = c->bn_thread;
    const struct bench_config *cfg = t->bt_bench->b_cfg;
    size_t cap = (size_t)cfg->bc_pipeline * cfg->bc_size;
    uint64_t avail = c->bn_tx - c->bn_rx;

    t->bt_res.br_bytes_received += n;
    c->bn_progress = now;
    if (n > avail) {
        /* More bytes than were ever sent: all of the surplus is wrong. */
        uint64_t msg = c->bn_tx / cfg->bc_size;

        bench_mismatch(c, msg, c->bn_tx, n - avail, now);
        if (c->bn_bad_msg != msg + 1) {
            c->bn_bad_msg = msg + 1;
            t->bt_res.br_mismatch_messages++;
        }
        n = (size_t)avail;
    }
    while (n > 0) {
        size_t at = (size_t)(c->bn_rx % cap);
        size_t chunk = n < cap - at ? n : cap - at;

        bench_stream_compare(c, buf, c->bn_ring + at, chunk, c->bn_rx, now);
        c->bn_rx += chunk;
        buf += chunk;
        n -= chunk;
    }
    while ((c->bn_done + 1) * cfg->bc_size <= c->bn_rx) {
        hist_record(t->bt_res.br_latency, now - c->bn_stamps[c->bn_done % cfg->bc_pipeline]);
        c->bn_done++;
        t->bt_res.br_messages++;
    }
}

static void
bench_stream_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bench_conn *c = arg;
    struct bench_thread *t = c->bn_thread;
    ssize_t n;

    n = recv(fd, t->bt_rbuf, BENCH_RBUF_SIZE, MSG_DONTWAIT);
    if (n > 0) {
        uint64_t now = bench_now();

        bench_stream_reply(c, t->bt_rbuf, (size_t)n, now);
        bench_conn_fill(c, now);
        return;
    }
    if (n == 0) {
        bench_reset(c, 0);
        return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return;
    bench_reset(c, errno);
}

/* UDP: one reply datagram.  It names its request by number; check all of it. */
static void
bench_udp_reply(struct bench_conn *c, const unsigned char *buf, size_t n, uint64_t now)
{
    struct bench_thread *t = c->bn_thread;
    const struct bench_config *cfg = t->bt_bench->b_cfg;
    struct bench_result *r = &t->bt_res;
    uint64_t seq;
    unsigned k;
    size_t len, pos = 0, w, first = 0;
    uint64_t bad = 0;

    r->br_bytes_received += n;
    if (n < BENCH_UDP_MIN_SIZE || payload_seq_decode(buf, &seq) < 0) {
        bench_mismatch(c, UINT64_MAX, 0, n > 0 ? n : 1, now);
        r->br_mismatch_messages++;
        return;
    }
    for (k = 0; k < cfg->bc_pipeline; k++)
        if (c->bn_seqs[k] == seq)
            break;
    if (k == cfg->bc_pipeline) {
        if (seq < c->bn_sent) {
            r->br_late++;
        } else {
            bench_mismatch(c, UINT64_MAX, 0, n, now);
            r->br_mismatch_messages++;
        }
        return;
    }
    payload_datagram(t->bt_sbuf, cfg->bc_size, c->bn_seed, seq);
    len = n < cfg->bc_size ? n : cfg->bc_size;
    while (pos < len && !upper_equal(buf + pos, t->bt_sbuf + pos, len - pos, &w)) {
        if (bad++ == 0)
            first = pos + w;
        pos += w + 1;
    }
    if (n != cfg->bc_size) {
        if (bad == 0)
            first = len;
        bad += n > cfg->bc_size ? n - cfg->bc_size : cfg->bc_size - n;
    }
    if (bad > 0) {
        bench_mismatch(c, seq, first, bad, now);
        r->br_mismatch_messages++;
    }
    hist_record(r->br_latency, now - c->bn_stamps[k]);
    r->br_messages++;
    c->bn_seqs[k] = BENCH_SLOT_FREE;
    c->bn_inflight--;
    c->bn_done++;
}

static void
bench_udp_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bench_conn *c = arg;
    struct bench_thread *t = c->bn_thread;
    uint64_t now = 0;

    for (int i = 0; i < BENCH_UDP_BATCH; i++) {
        ssize_t n = recv(fd, t->bt_rbuf, BENCH_RBUF_SIZE, MSG_DONTWAIT);

        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            /* ECONNREFUSED: an ICMP port unreachable came back for an earlier request. */
            bench_reset(c, errno);
            return;
        }
        if (now == 0)
            now = bench_now();
        bench_udp_reply(c, t->bt_rbuf, (size_t)n, now);
    }
    if (now != 0)
        bench_conn_fill(c, now);
}

static void
bench_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bench_conn *c = arg;
    int rc;

    if (c->bn_thread->bt_bench->b_cfg->bc_target.t_kind == TARGET_UDP) {
        bench_udp_fill(c, bench_now());
        return;
    }
    rc = bench_stream_flush(c);
    if (rc < 0)
        bench_reset(c, -rc);
}

/* The connection is up: record the connect time, set up buffers and events, start sending. */
static void
bench_conn_established(struct bench_conn *c, uint64_t now)
{
    struct bench_thread *t = c->bn_thread;
    const struct bench_config *cfg = t->bt_bench->b_cfg;
    int udp = cfg->bc_target.t_kind == TARGET_UDP;
    unsigned p = cfg->bc_pipeline;

    hist_record(t->bt_res.br_connect, now - c->bn_started);
    t->bt_res.br_opened++;
    t->bt_open++;
    c->bn_state = BENCH_OPEN;
    c->bn_progress = now;
    c->bn_stamps = calloc(udp ? 3 * (size_t)p : p, sizeof(uint64_t));
    if (!udp)
        c->bn_ring = malloc((size_t)p * cfg->bc_size);
    if (c->bn_stamps == NULL || (!udp && c->bn_ring == NULL)) {
        bench_reset(c, ENOMEM);
        return;
    }
    if (udp) {
        c->bn_seqs = c->bn_stamps + p;
        c->bn_sent_at = c->bn_stamps + 2 * (size_t)p;
        for (unsigned k = 0; k < p; k++)
            c->bn_seqs[k] = BENCH_SLOT_FREE;
    }
    if (t->bt_bench->b_interval != 0)
        c->bn_due = now + c->bn_seed % t->bt_bench->b_interval;
    event_assign(&c->bn_wev, t->bt_base, c->bn_fd, EV_WRITE, bench_write_cb, c);
    event_add(&c->bn_rev, NULL);
    bench_conn_fill(c, now);
}

static void
bench_connect_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bench_conn *c = arg;
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err != 0) {
        bench_connect_failed(c, err);
        return;
    }
    bench_conn_established(c, bench_now());
}

static void bench_conn_start(struct bench_conn *c, uint64_t now);

/* The per-connection timer: rate pacing once open, connect retries before. */
static void
bench_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bench_conn *c = arg;

    if (c->bn_state == BENCH_RETRY)
        bench_conn_start(c, bench_now());
    else
        bench_conn_fill(c, bench_now());
}

/* Open one connection; its source address is the next in the list, round-robin. */
static void
bench_conn_start(struct bench_conn *c, uint64_t now)
{
    struct bench_thread *t = c->bn_thread;
    const struct bench_config *cfg = t->bt_bench->b_cfg;
    const struct addr *src = NULL;
    int fd, rc;

    if (cfg->bc_nsources > 0)
        src = &cfg->bc_sources[c->bn_index % cfg->bc_nsources];
    if (c->bn_state == BENCH_IDLE) {
        c->bn_started = now;
        evtimer_assign(&c->bn_tev, t->bt_base, bench_timer_cb, c);
    }
    rc = target_connect(&cfg->bc_target, src, &fd);
    if (rc == -EAGAIN && cfg->bc_target.t_kind == TARGET_UNIX) {
        /* A unix listener refuses instead of queueing SYNs when its backlog is full. */
        struct timeval tv = {0, (suseconds_t)(BENCH_RETRY_NS / 1000)};

        c->bn_state = BENCH_RETRY;
        evtimer_add(&c->bn_tev, &tv);
        return;
    }
    if (rc < 0 && rc != -EINPROGRESS) {
        c->bn_state = BENCH_CONNECTING;
        bench_connect_failed(c, -rc);
        return;
    }
    c->bn_fd = fd;
    event_assign(&c->bn_rev, t->bt_base, fd, EV_READ | EV_PERSIST,
                 cfg->bc_target.t_kind == TARGET_UDP ? bench_udp_read_cb : bench_stream_read_cb, c);
    event_assign(&c->bn_wev, t->bt_base, fd, EV_WRITE, bench_connect_cb, c);
    if (cfg->bc_target.t_kind == TARGET_TCP) {
        int one = 1;

        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (rc == 0) {
        /* UDP, and unix sockets with backlog room, are connected on return. */
        bench_conn_established(c, bench_now());
        return;
    }
    c->bn_state = BENCH_CONNECTING;
    event_add(&c->bn_wev, NULL);
}

/* Open every connection whose turn has come (all at once without a connect rate). */
static void
bench_opener_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bench_thread *t = arg;
    struct bench *b = t->bt_bench;
    double rate = b->b_cfg->bc_connect_rate;
    uint64_t now = bench_now();

    while (t->bt_next_open < t->bt_nconns && !t->bt_stopping) {
        struct bench_conn *c = &t->bt_conns[t->bt_next_open];

        if (rate > 0) {
            uint64_t due = b->b_start + (uint64_t)((double)c->bn_index / rate * 1e9);

            if (due > now) {
                struct timeval tv;

                tv.tv_sec = (time_t)((due - now) / BENCH_NS);
                tv.tv_usec = (suseconds_t)((due - now) % BENCH_NS / 1000);
                evtimer_add(t->bt_opener, &tv);
                return;
            }
        }
        t->bt_next_open++;
        if (c->bn_quota == 0)
            bench_conn_close(c);
        else
            bench_conn_start(c, now);
    }
}

/* The run is over (deadline or signal): send no more, let replies drain, close the idle. */
static void
bench_thread_stop(struct bench_thread *t)
{
    t->bt_stopping = true;
    evtimer_del(t->bt_opener);
    for (unsigned i = 0; i < t->bt_nconns; i++) {
        struct bench_conn *c = &t->bt_conns[i];

        switch (c->bn_state) {
        case BENCH_IDLE:
        case BENCH_CONNECTING:
        case BENCH_RETRY:
            bench_conn_close(c);
            break;
        case BENCH_OPEN:
            if (c->bn_done == c->bn_sent)
                bench_conn_close(c);
            break;
        case BENCH_CLOSED:
            break;
        }
    }
}

/* UDP: count requests unanswered past the timeout as lost and free their slots. */
static void
bench_udp_expire(struct bench_conn *c, uint64_t now)
{
    struct bench_thread *t = c->bn_thread;
    unsigned p = t->bt_bench->b_cfg->bc_pipeline;

    for (unsigned k = 0; k < p && c->bn_inflight > 0; k++) {
        if (c->bn_seqs[k] != BENCH_SLOT_FREE && now - c->bn_sent_at[k] > t->bt_bench->b_timeout) {
            c->bn_seqs[k] = BENCH_SLOT_FREE;
            c->bn_inflight--;
            c->bn_done++;
            t->bt_res.br_lost++;
        }
    }
}

/*
 * Every tick: notice the end of the run, time out stalled connects and
 * replies, and publish counters for the progress line.
 */
static void
bench_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bench_thread *t = arg;
    struct bench *b = t->bt_bench;
    uint64_t now = bench_now();
    int udp = b->b_cfg->bc_target.t_kind == TARGET_UDP;

    if (!t->bt_stopping && (atomic_load_explicit(&b->b_stop, memory_order_relaxed) ||
                            (b->b_deadline != 0 && now >= b->b_deadline)))
        bench_thread_stop(t);
    for (unsigned i = 0; i < t->bt_nconns && t->bt_live > 0; i++) {
        struct bench_conn *c = &t->bt_conns[i];

        if ((c->bn_state == BENCH_CONNECTING || c->bn_state == BENCH_RETRY) &&
            now - c->bn_started > b->b_connect_timeout) {
            bench_connect_failed(c, ETIMEDOUT);
        } else if (c->bn_state == BENCH_OPEN && udp) {
            bench_udp_expire(c, now);
            bench_conn_fill(c, now);
        } else if (c->bn_state == BENCH_OPEN && c->bn_sent > c->bn_done &&
                   now - c->bn_progress > b->b_timeout) {
            t->bt_res.br_timeouts++;
            bench_conn_close(c);
        }
    }
    bench_publish(t);
}

static void *
bench_thread_main(void *arg)
{
    struct bench_thread *t = arg;

    event_base_dispatch(t->bt_base);
    for (unsigned i = 0; i < t->bt_nconns; i++)
        bench_conn_close(&t->bt_conns[i]);
    bench_publish(t);
    atomic_store(&t->bt_live_pub.bl_finished, 1);
    return NULL;
}

/* Set up one worker's base, timers and connections (connection i goes to worker i % T). */
static int
bench_thread_init(struct bench *b, struct bench_thread *t, unsigned id)
{
    const struct bench_config *cfg = b->b_cfg;
    struct event_config *ec;
    struct timeval tick;
    uint64_t per = cfg->bc_messages / cfg->bc_connections;
    uint64_t extra = cfg->bc_messages % cfg->bc_connections;

    t->bt_bench = b;
    t->bt_id = id;
    t->bt_nconns = cfg->bc_connections / b->b_nthreads + (id < cfg->bc_connections % b->b_nthreads);
    t->bt_live = t->bt_nconns;
    t->bt_res.br_latency = hist_new();
    t->bt_res.br_connect = hist_new();
    t->bt_conns = calloc(t->bt_nconns, sizeof(*t->bt_conns));
    t->bt_rbuf = malloc(BENCH_RBUF_SIZE);
    t->bt_sbuf = malloc(cfg->bc_size);
    ec = event_config_new();
    if (ec == NULL)
        return -ENOMEM;
    /* Each base is used by its own thread only. */
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    t->bt_base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (t->bt_base == NULL || t->bt_conns == NULL || t->bt_rbuf == NULL || t->bt_sbuf == NULL ||
        t->bt_res.br_latency == NULL || t->bt_res.br_connect == NULL)
        return -ENOMEM;
    t->bt_tick = event_new(t->bt_base, -1, EV_PERSIST, bench_tick_cb, t);
    t->bt_opener = evtimer_new(t->bt_base, bench_opener_cb, t);
    if (t->bt_tick == NULL || t->bt_opener == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < t->bt_nconns; i++) {
        struct bench_conn *c = &t->bt_conns[i];

        c->bn_thread = t;
        c->bn_fd = -1;
        c->bn_index = id + i * b->b_nthreads;
        c->bn_seed = payload_mix(cfg->bc_seed ^ payload_mix(c->bn_index + 0x5EEDULL));
        if (cfg->bc_messages == 0)
            c->bn_quota = UINT64_MAX;
        else
            c->bn_quota = per + (c->bn_index < extra);
    }
    tick.tv_sec = (time_t)(b->b_tick / BENCH_NS);
    tick.tv_usec = (suseconds_t)(b->b_tick % BENCH_NS / 1000);
    event_add(t->bt_tick, &tick);
    event_active(t->bt_opener, EV_TIMEOUT, 0);
    return 0;
}

static void
bench_thread_deinit(struct bench_thread *t)
{
    if (t->bt_tick != NULL)
        event_free(t->bt_tick);
    if (t->bt_opener != NULL)
        event_free(t->bt_opener);
    if (t->bt_base != NULL)
        event_base_free(t->bt_base);
    free(t->bt_conns);
    free(t->bt_rbuf);
    free(t->bt_sbuf);
    hist_free(t->bt_res.br_latency);
    hist_free(t->bt_res.br_connect);
}

/* Fill in the defaults: 100 connections, a thread per core, 10 s of 64-byte messages. */
void
bench_config_init(struct bench_config *cfg)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    memset(cfg, 0, sizeof(*cfg));
    cfg->bc_connections = 100;
    cfg->bc_threads = cores > 0 ? (unsigned)cores : 1;
    cfg->bc_pipeline = 1;
    cfg->bc_size = 64;
    cfg->bc_duration = 10.0;
    cfg->bc_timeout = 2.0;
    cfg->bc_connect_timeout = 10.0;
    cfg->bc_seed = 1;
}

/* Check a configuration; returns 0 or -EINVAL with *why saying what is wrong. */
int
bench_config_check(const struct bench_config *cfg, const char **why)
{
    int udp = cfg->bc_target.t_kind == TARGET_UDP;

    if (cfg->bc_connections == 0 || cfg->bc_connections > 10000000)
        *why = "connections must be 1 to 10000000";
    else if (cfg->bc_threads == 0 || cfg->bc_threads > 1024)
        *why = "threads must be 1 to 1024";
    else if (cfg->bc_pipeline == 0 || cfg->bc_pipeline > 65536)
        *why = "pipeline must be 1 to 65536";
    else if (cfg->bc_size == 0 || cfg->bc_size > BENCH_MAX_SIZE)
        *why = "message size must be 1 byte to 16 MiB";
    else if (udp && (cfg->bc_size < BENCH_UDP_MIN_SIZE || cfg->bc_size > BENCH_MAX_UDP_SIZE))
        *why = "UDP message size must be 8 to 65507 bytes (8 bytes carry the sequence number)";
    else if ((uint64_t)cfg->bc_pipeline * cfg->bc_size > BENCH_MAX_SIZE)
        *why = "pipeline times message size must stay under 16 MiB per connection";
    else if (cfg->bc_messages == 0 && !(cfg->bc_duration > 0 && cfg->bc_duration < 1e7))
        *why = "duration must be a positive number of seconds";
    else if (!(cfg->bc_rate >= 0 && cfg->bc_rate < 1e12))
        *why = "rate must be a positive number of messages per second";
    else if (!(cfg->bc_connect_rate >= 0 && cfg->bc_connect_rate < 1e12))
        *why = "connect rate must be a positive number of connections per second";
    else if (!(cfg->bc_timeout > 0 && cfg->bc_timeout < 1e6))
        *why = "timeout must be a positive number of seconds";
    else if (!(cfg->bc_connect_timeout > 0 && cfg->bc_connect_timeout < 1e6))
        *why = "connect timeout must be a positive number of seconds";
    else if (cfg->bc_nsources > 0 && cfg->bc_target.t_kind == TARGET_UNIX)
        *why = "source addresses need a tcp:// or udp:// target";
    else
        return 0;
    return -EINVAL;
}

/* Add one worker's counters into the total. */
static void
bench_result_add(struct bench_result *r, const struct bench_thread *t)
{
    const struct bench_result *s = &t->bt_res;

    r->br_messages += s->br_messages;
    r->br_bytes_sent += s->br_bytes_sent;
    r->br_bytes_received += s->br_bytes_received;
    r->br_opened += s->br_opened;
    if (r->br_connect_failures == 0)
        r->br_connect_errno = s->br_connect_errno;
    r->br_connect_failures += s->br_connect_failures;
    if (r->br_resets == 0)
        r->br_reset_errno = s->br_reset_errno;
    r->br_resets += s->br_resets;
    r->br_timeouts += s->br_timeouts;
    r->br_lost += s->br_lost;
    r->br_late += s->br_late;
    r->br_mismatch_bytes += s->br_mismatch_bytes;
    r->br_mismatch_messages += s->br_mismatch_messages;
    hist_merge(r->br_latency, s->br_latency);
    hist_merge(r->br_connect, s->br_connect);
}

/* Sum the workers' published counters into a progress report. */
static void
bench_progress_sum(struct bench *b, struct bench_progress *p, uint64_t *bytes)
{
    memset(p, 0, sizeof(*p));
    *bytes = 0;
    for (unsigned i = 0; i < b->b_nthreads; i++) {
        struct bench_live *l = &b->b_threads[i].bt_live_pub;

        p->bp_messages += atomic_load_explicit(&l->bl_messages, memory_order_relaxed);
        *bytes += atomic_load_explicit(&l->bl_bytes, memory_order_relaxed);
        p->bp_open += atomic_load_explicit(&l->bl_open, memory_order_relaxed);
        p->bp_errors += atomic_load_explicit(&l->bl_errors, memory_order_relaxed);
        p->bp_mismatches += atomic_load_explicit(&l->bl_mismatches, memory_order_relaxed);
    }
}

/*
 * Add an entry to the timeline: what the workers counted since the last one.
 * Out of memory, the timeline just ends early; the run goes on.
 */
static void
bench_timeline_add(struct bench_result *res, double second, uint64_t messages, uint64_t errors,
                   uint64_t open)
{
    struct bench_sample *s, *grown;
    uint64_t msgs_before = 0, errs_before = 0;

    for (size_t i = 0; i < res->br_ntimeline; i++) {
        msgs_before += res->br_timeline[i].bs_messages;
        errs_before += res->br_timeline[i].bs_errors;
    }
    grown = realloc(res->br_timeline, (res->br_ntimeline + 1) * sizeof(*grown));
    if (grown == NULL)
        return;
    res->br_timeline = grown;
    s = &grown[res->br_ntimeline++];
    s->bs_second = second;
    s->bs_messages = messages > msgs_before ? messages - msgs_before : 0;
    s->bs_errors = errors > errs_before ? errors - errs_before : 0;
    s->bs_open = open;
}

/* The timeline entry for the second that just ended, from the workers' published counters. */
static void
bench_sample(struct bench *b, struct bench_result *res, double second)
{
    struct bench_progress p;
    uint64_t bytes;

    bench_progress_sum(b, &p, &bytes);
    bench_timeline_add(res, second, p.bp_messages, p.bp_errors, p.bp_open);
}

/*
 * The calling thread waits for the workers with SIGINT and SIGTERM blocked
 * and taken by sigtimedwait(), so a Ctrl-C ends the run cleanly (stop
 * sending, drain, report) instead of killing it.  It also calls the
 * progress callback once a second.
 */
static void
bench_wait(struct bench *b, struct bench_result *res, const sigset_t *sigs)
{
    const struct bench_config *cfg = b->b_cfg;
    uint64_t next = b->b_start + BENCH_NS, last_time = b->b_start;
    uint64_t last_msgs = 0, last_bytes = 0, next_sample = b->b_start + BENCH_NS;

    for (;;) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        unsigned finished = 0;
        uint64_t now;
        int sig = sigtimedwait(sigs, NULL, &ts);

        if (sig == SIGINT || sig == SIGTERM) {
            atomic_store(&b->b_stop, 1);
            res->br_interrupted = 1;
        }
        for (unsigned i = 0; i < b->b_nthreads; i++)
            finished += (unsigned)atomic_load(&b->b_threads[i].bt_live_pub.bl_finished);
        if (finished == b->b_nthreads)
            return;
        now = bench_now();
        if (now >= next_sample) {
            bench_sample(b, res, (double)(next_sample - b->b_start) / 1e9);
            next_sample += BENCH_NS;
        }
        if (cfg->bc_progress != NULL && now >= next) {
            struct bench_progress p;
            double dt = (double)(now - last_time) / 1e9;
            uint64_t bytes;

            bench_progress_sum(b, &p, &bytes);
            p.bp_elapsed = (double)(now - b->b_start) / 1e9;
            p.bp_msgs_per_s = (double)(p.bp_messages - last_msgs) / dt;
            p.bp_mb_per_s = (double)(bytes - last_bytes) / dt / 1e6;
            cfg->bc_progress(&p, cfg->bc_progress_arg);
            last_msgs = p.bp_messages;
            last_bytes = bytes;
            last_time = now;
            next += BENCH_NS;
            if (next <= now)
                next = now + BENCH_NS;
        }
    }
}

/*
 * Run the benchmark described by cfg (checked with bench_config_check()).
 * Returns 0 with *out set, however many errors and mismatches the run had
 * (see bench_ok()), or -errno when it could not run at all.
 */
int
bench_run(const struct bench_config *cfg, struct bench_result **out)
{
    struct bench b;
    struct bench_result *res;
    sigset_t sigs, old;
    int rc = 0;

    *out = NULL;
    memset(&b, 0, sizeof(b));
    b.b_cfg = cfg;
    b.b_nthreads = cfg->bc_threads < cfg->bc_connections ? cfg->bc_threads : cfg->bc_connections;
    b.b_timeout = (uint64_t)(cfg->bc_timeout * 1e9);
    b.b_connect_timeout = (uint64_t)(cfg->bc_connect_timeout * 1e9);
    b.b_tick = b.b_timeout / 4 < BENCH_NS / 10 ? b.b_timeout / 4 : BENCH_NS / 10;
    if (b.b_tick < 1000000)
        b.b_tick = 1000000;
    if (cfg->bc_rate > 0) {
        b.b_interval = (uint64_t)((double)cfg->bc_connections / cfg->bc_rate * 1e9);
        if (b.b_interval == 0)
            b.b_interval = 1;
    }
    res = calloc(1, sizeof(*res));
    b.b_threads = calloc(b.b_nthreads, sizeof(*b.b_threads));
    if (res == NULL || b.b_threads == NULL) {
        free(res);
        free(b.b_threads);
        return -ENOMEM;
    }
    res->br_latency = hist_new();
    res->br_connect = hist_new();
    if (res->br_latency == NULL || res->br_connect == NULL)
        rc = -ENOMEM;

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);

    b.b_start = bench_now();
    if (cfg->bc_messages == 0)
        b.b_deadline = b.b_start + (uint64_t)(cfg->bc_duration * 1e9);
    for (unsigned i = 0; i < b.b_nthreads && rc == 0; i++)
        rc = bench_thread_init(&b, &b.b_threads[i], i);
    for (unsigned i = 0; i < b.b_nthreads && rc == 0; i++) {
        rc = -pthread_create(&b.b_threads[i].bt_tid, NULL, bench_thread_main, &b.b_threads[i]);
        if (rc == 0)
            b.b_threads[i].bt_started = 1;
    }
    /* Workers already running see the stop flag at their next tick. */
    if (rc == 0)
        bench_wait(&b, res, &sigs);
    else
        atomic_store(&b.b_stop, 1);
    for (unsigned i = 0; i < b.b_nthreads; i++) {
        struct bench_thread *t = &b.b_threads[i];

        if (t->bt_started)
            pthread_join(t->bt_tid, NULL);
    }
    res->br_elapsed = (double)(bench_now() - b.b_start) / 1e9;
    {
        /* A Ctrl-C after the last wait must not kill us once unblocked: take it here. */
        struct timespec zero = {0, 0};

        while (sigtimedwait(&sigs, NULL, &zero) > 0)
            res->br_interrupted = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc == 0) {
        uint64_t first_time = UINT64_MAX;

        for (unsigned i = 0; i < b.b_nthreads; i++) {
            struct bench_thread *t = &b.b_threads[i];

            bench_result_add(res, t);
            if (t->bt_res.br_has_first && t->bt_first_time < first_time) {
                first_time = t->bt_first_time;
                res->br_has_first = 1;
                res->br_first_conn = t->bt_res.br_first_conn;
                res->br_first_message = t->bt_res.br_first_message;
                res->br_first_offset = t->bt_res.br_first_offset;
            }
        }
    }
    /* The last, partial interval: from the merged totals, so the timeline sums to them. */
    if (rc == 0)
        bench_timeline_add(res, res->br_elapsed, res->br_messages, bench_errors(res), 0);
    for (unsigned i = 0; i < b.b_nthreads; i++)
        bench_thread_deinit(&b.b_threads[i]);
    free(b.b_threads);
    if (rc < 0) {
        bench_result_free(res);
        return rc;
    }
    *out = res;
    return 0;
}

void
bench_result_free(struct bench_result *r)
{
    if (r == NULL)
        return;
    hist_free(r->br_latency);
    hist_free(r->br_connect);
    free(r->br_timeline);
    free(r);
}

/* Everything but mismatches that went wrong: connect failures count as errors. */
uint64_t
bench_errors(const struct bench_result *r)
{
    return r->br_connect_failures + r->br_resets + r->br_timeouts + r->br_lost + r->br_late;
}

/* A run passes with at least one reply, no wrong byte and no error. */
int
bench_ok(const struct bench_result *r)
{
    return r->br_messages > 0 && r->br_mismatch_bytes == 0 && bench_errors(r) == 0;
}
