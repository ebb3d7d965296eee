/* test-soak.c: thousands of TCP connections churning against the daemon; memory stays flat. */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-main.h"
#include "harness.h"

/* Defaults, overridden by UPECHOD_SOAK_SECONDS and UPECHOD_SOAK_CONNECTIONS. */
#define SOAK_SECONDS 60
#define SOAK_CONNECTIONS 9000

/*
 * Every connection that ends leaves a TIME_WAIT entry for a minute on our
 * side (we close first).  Spreading the source over 127.0.0.1 to
 * 127.0.0.8, with the port picked at connect() time, gives eight times
 * the ephemeral ports before churn could run out of them.
 */
#define SOAK_SOURCES 8
/* Connects in flight at once: within the listen backlog, so no SYN waits for a retransmit. */
#define SOAK_MAX_CONNECTING 1024
/* Messages are slices of one random pattern; a few are large, most are small. */
#define SOAK_PATTERN_SIZE (1u << 20)
#define SOAK_SMALL_MAX 2048
#define SOAK_LARGE_MAX 65536
/*
 * After its echo a connection stays open for a random time below this,
 * then closes: so the daemon holds about as many connections as there are
 * slots, and a slot turns over every SOAK_HOLD_MAX_MS / 2 on average.
 */
#define SOAK_HOLD_MAX_MS 3000
#define SOAK_TICK_MS 10
#define SOAK_WHEEL_SIZE 512
/* A connection that makes no progress for this long is an error. */
#define SOAK_STALL_MS 10000
/* Daemon RSS and descriptors sampled this often. */
#define SOAK_SAMPLE_MS 2000
/* RSS growth allowed from the 10 s mark to the end. */
#define SOAK_RSS_FROM_MS 10000
#define SOAK_MAX_DRIFT_KIB (8 * 1024)
#define SOAK_MAX_SAMPLES 4096
/* Bound on the wait for the last echoes once churn stops. */
#define SOAK_DRAIN_MS 20000
/* Only the first errors are described; all are counted. */
#define SOAK_MAX_REPORTED 20

enum soak_state {
    SOAK_IDLE,
    SOAK_CONNECTING,
    SOAK_ECHOING,
    SOAK_HOLDING,
};

/* One client slot: connects, echoes one message, stays a while, closes, and again. */
struct soak_slot {
    int sl_fd;
    enum soak_state sl_state;
    size_t sl_next;        /* next slot in the same timer wheel bucket */
    long long sl_close_at; /* while holding */
    bool sl_half_close;    /* shut our side once sent, then expect EOF after the echo */
    bool sl_shut;
    uint32_t sl_events; /* the epoll mask in place */
    size_t sl_off;      /* the message is pattern[sl_off, sl_off + sl_len) */
    size_t sl_len;
    size_t sl_sent;
    size_t sl_recv;
    long long sl_progress; /* last time anything moved */
};

struct soak_sample {
    long long ss_ms; /* since churn started */
    long ss_rss_kib;
    long ss_fds;
};

struct soak {
    struct soak_slot *sk_slots;
    size_t sk_nslots;
    size_t *sk_idle; /* ring of slots waiting to connect */
    size_t sk_idle_head;
    size_t sk_idle_len;
    size_t sk_connecting;
    size_t sk_open; /* connecting, echoing or holding */
    size_t sk_holding;
    size_t sk_wheel[SOAK_WHEEL_SIZE]; /* holding slots by closing tick, SIZE_MAX-terminated */
    long long sk_wheel_tick;          /* the next tick to expire */
    size_t sk_first_done;             /* slots that connected at least once */
    bool sk_stopping;
    int sk_epfd;
    int sk_port;
    unsigned char *sk_pattern;
    unsigned char *sk_upper;
    unsigned char sk_rbuf[65536];
    unsigned long long sk_rng;
    unsigned long long sk_connects;
    unsigned long long sk_echoes;
    unsigned long long sk_errors;
    unsigned long long sk_bytes;
    struct soak_sample sk_samples[SOAK_MAX_SAMPLES];
    size_t sk_nsamples;
};

/* A number from the environment, def when unset; 0 when it is not a number in [min, max]. */
static unsigned long
soak_env(const char *name, unsigned long def, unsigned long min, unsigned long max)
{
    const char *s = getenv(name);
    char *end;
    unsigned long v;

    if (s == NULL || s[0] == '\0')
        return def;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return 0;
    return v;
}

/* xorshift64*: sizes and offsets, the same on every run. */
static unsigned long long
soak_rand(struct soak *sk)
{
    sk->sk_rng ^= sk->sk_rng >> 12;
    sk->sk_rng ^= sk->sk_rng << 25;
    sk->sk_rng ^= sk->sk_rng >> 27;
    return sk->sk_rng * 0x2545f4914f6cdd1dULL;
}

static void soak_error(struct soak *sk, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
soak_error(struct soak *sk, size_t i, const char *fmt, ...)
{
    va_list ap;

    sk->sk_errors++;
    if (sk->sk_errors > SOAK_MAX_REPORTED)
        return;
    fprintf(stderr, "soak: slot %zu: ", i);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/*
 * TcpExt ListenDrops: handshakes the kernel dropped because an accept queue
 * was full.  Counted for the whole network namespace, so only reported.
 */
static long long
soak_listen_drops(void)
{
    char names[8192], values[8192], *sn, *sv, *n, *v;
    long long drops = -1;
    FILE *f = fopen("/proc/net/netstat", "re");

    if (f == NULL)
        return -1;
    while (fgets(names, sizeof(names), f) != NULL && fgets(values, sizeof(values), f) != NULL) {
        if (strncmp(names, "TcpExt:", 7) != 0)
            continue;
        n = strtok_r(names, " \n", &sn);
        v = strtok_r(values, " \n", &sv);
        while (n != NULL && v != NULL) {
            if (strcmp(n, "ListenDrops") == 0)
                drops = strtoll(v, NULL, 10);
            n = strtok_r(NULL, " \n", &sn);
            v = strtok_r(NULL, " \n", &sv);
        }
    }
    fclose(f);
    return drops;
}

static void
soak_idle_push(struct soak *sk, size_t i)
{
    sk->sk_idle[(sk->sk_idle_head + sk->sk_idle_len) % sk->sk_nslots] = i;
    sk->sk_idle_len++;
}

/* The connection is over, for good or not: close it, and the slot goes back in line. */
static void
soak_close(struct soak *sk, size_t i)
{
    struct soak_slot *sl = &sk->sk_slots[i];

    if (sl->sl_state == SOAK_CONNECTING)
        sk->sk_connecting--;
    else if (sl->sl_state == SOAK_HOLDING)
        sk->sk_holding--;
    close(sl->sl_fd);
    sl->sl_fd = -1;
    sl->sl_state = SOAK_IDLE;
    sk->sk_open--;
    soak_idle_push(sk, i);
}

static void
soak_set_events(struct soak *sk, size_t i, uint32_t events)
{
    struct soak_slot *sl = &sk->sk_slots[i];
    struct epoll_event ev = {.events = events, .data.u64 = i};

    if (sl->sl_events == events)
        return;
    ck_assert_int_eq(epoll_ctl(sk->sk_epfd, EPOLL_CTL_MOD, sl->sl_fd, &ev), 0);
    sl->sl_events = events;
}

/* Echo verified: the connection stays open for a while, and the wheel closes it. */
static void
soak_hold(struct soak *sk, size_t i, long long now)
{
    struct soak_slot *sl = &sk->sk_slots[i];
    long long tick;
    size_t b;

    sl->sl_state = SOAK_HOLDING;
    sl->sl_close_at = now + (long long)(soak_rand(sk) % SOAK_HOLD_MAX_MS);
    tick = sl->sl_close_at / SOAK_TICK_MS;
    if (tick < sk->sk_wheel_tick)
        tick = sk->sk_wheel_tick;
    b = (size_t)(tick % SOAK_WHEEL_SIZE);
    sl->sl_next = sk->sk_wheel[b];
    sk->sk_wheel[b] = i;
    sk->sk_holding++;
    /* Nothing may arrive now: data, EOF or a reset from the daemon is an error. */
    soak_set_events(sk, i, EPOLLIN | EPOLLRDHUP);
}

/* Close the connections whose time is up; one a bucket may hold is due a turn later. */
static void
soak_expire(struct soak *sk, long long now)
{
    for (; sk->sk_wheel_tick <= now / SOAK_TICK_MS; sk->sk_wheel_tick++) {
        size_t b = (size_t)(sk->sk_wheel_tick % SOAK_WHEEL_SIZE), i = sk->sk_wheel[b];

        sk->sk_wheel[b] = SIZE_MAX;
        while (i != SIZE_MAX) {
            struct soak_slot *sl = &sk->sk_slots[i];
            size_t next = sl->sl_next;

            if (sl->sl_close_at / SOAK_TICK_MS > sk->sk_wheel_tick) {
                size_t later = (size_t)(sl->sl_close_at / SOAK_TICK_MS % SOAK_WHEEL_SIZE);

                sl->sl_next = sk->sk_wheel[later];
                sk->sk_wheel[later] = i;
            } else {
                soak_close(sk, i);
            }
            i = next;
        }
    }
}

/*
 * Something happened on a connection that should be quiet.  It stays in
 * the wheel, which closes it; until then epoll stops watching it.
 */
static void
soak_hold_event(struct soak *sk, size_t i)
{
    struct soak_slot *sl = &sk->sk_slots[i];
    ssize_t n = recv(sl->sl_fd, sk->sk_rbuf, sizeof(sk->sk_rbuf), 0);

    if (n > 0)
        soak_error(sk, i, "%zd unexpected bytes after the echo", n);
    else if (n == 0)
        soak_error(sk, i, "the daemon closed an idle connection");
    else if (errno != EAGAIN && errno != EINTR)
        soak_error(sk, i, "idle connection: %s", strerror(errno));
    else
        return;
    ck_assert_int_eq(epoll_ctl(sk->sk_epfd, EPOLL_CTL_DEL, sl->sl_fd, NULL), 0);
    sl->sl_events = 0;
}

/* Non-blocking connect from 127.0.0.(1 + i % 8), the port chosen by connect itself. */
static void
soak_connect(struct soak *sk, size_t i, long long now)
{
    struct soak_slot *sl = &sk->sk_slots[i];
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = i};
    int fd, one = 1;

    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)(i % SOAK_SOURCES));
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    dst.sin_port = htons((uint16_t)sk->sk_port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
    ck_assert_int_eq(setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)), 0);
    ck_assert_msg(bind(fd, (struct sockaddr *)&src, sizeof(src)) == 0, "bind: %s", strerror(errno));
    sl->sl_fd = fd;
    sl->sl_state = SOAK_CONNECTING;
    sl->sl_events = EPOLLOUT;
    sl->sl_progress = now;
    sk->sk_connecting++;
    sk->sk_open++;
    ck_assert_int_eq(epoll_ctl(sk->sk_epfd, EPOLL_CTL_ADD, fd, &ev), 0);
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) == -1 && errno != EINPROGRESS) {
        soak_error(sk, i, "connect: %s", strerror(errno));
        soak_close(sk, i);
    }
}

/* Connected: pick this connection's message. */
static void
soak_start_echo(struct soak *sk, size_t i)
{
    struct soak_slot *sl = &sk->sk_slots[i];
    unsigned long long r = soak_rand(sk);
    size_t max = r % 16 == 0 ? SOAK_LARGE_MAX : SOAK_SMALL_MAX;

    sk->sk_connecting--;
    sk->sk_connects++;
    if (sl->sl_state == SOAK_CONNECTING && sl->sl_off == SIZE_MAX)
        sk->sk_first_done++;
    sl->sl_state = SOAK_ECHOING;
    sl->sl_len = 1 + (size_t)(soak_rand(sk) % max);
    sl->sl_off = (size_t)(soak_rand(sk) % (SOAK_PATTERN_SIZE - sl->sl_len));
    sl->sl_sent = 0;
    sl->sl_recv = 0;
    sl->sl_half_close = (r >> 8) % 8 == 0;
    sl->sl_shut = false;
}

/* Send what the socket takes, read what is there; returns true when the echo is complete. */
static bool
soak_echo(struct soak *sk, size_t i, long long now)
{
    struct soak_slot *sl = &sk->sk_slots[i];
    ssize_t n;

    while (sl->sl_sent < sl->sl_len) {
        n = send(sl->sl_fd, sk->sk_pattern + sl->sl_off + sl->sl_sent, sl->sl_len - sl->sl_sent,
                 MSG_NOSIGNAL);
        if (n > 0) {
            sl->sl_sent += (size_t)n;
            sl->sl_progress = now;
            continue;
        }
        if (errno == EAGAIN || errno == EINTR)
            break;
        soak_error(sk, i, "send after %zu of %zu bytes: %s", sl->sl_sent, sl->sl_len,
                   strerror(errno));
        soak_close(sk, i);
        return false;
    }
    if (sl->sl_sent == sl->sl_len && sl->sl_half_close && !sl->sl_shut) {
        shutdown(sl->sl_fd, SHUT_WR);
        sl->sl_shut = true;
    }
    for (;;) {
        n = recv(sl->sl_fd, sk->sk_rbuf, sizeof(sk->sk_rbuf), 0);
        if (n > 0) {
            long bad;

            if ((size_t)n > sl->sl_len - sl->sl_recv) {
                soak_error(sk, i, "%zu bytes back for a message of %zu", sl->sl_recv + (size_t)n,
                           sl->sl_len);
                soak_close(sk, i);
                return false;
            }
            /* Against the uppercase computed by the harness's own transform. */
            if (memcmp(sk->sk_rbuf, sk->sk_upper + sl->sl_off + sl->sl_recv, (size_t)n) != 0) {
                bad =
                    ref_mismatch(sk->sk_rbuf, sk->sk_pattern + sl->sl_off + sl->sl_recv, (size_t)n);
                soak_error(sk, i, "wrong byte at offset %zu of %zu", sl->sl_recv + (size_t)bad,
                           sl->sl_len);
                soak_close(sk, i);
                return false;
            }
            sl->sl_recv += (size_t)n;
            sk->sk_bytes += (size_t)n;
            sl->sl_progress = now;
            if (sl->sl_recv == sl->sl_len && !sl->sl_half_close)
                return true;
            continue;
        }
        if (n == 0) {
            if (sl->sl_half_close && sl->sl_recv == sl->sl_len)
                return true;
            soak_error(sk, i, "EOF after %zu of %zu bytes", sl->sl_recv, sl->sl_len);
            soak_close(sk, i);
            return false;
        }
        if (errno == EAGAIN || errno == EINTR)
            break;
        soak_error(sk, i, "recv after %zu of %zu bytes: %s", sl->sl_recv, sl->sl_len,
                   strerror(errno));
        soak_close(sk, i);
        return false;
    }
    soak_set_events(sk, i, EPOLLIN | (sl->sl_sent < sl->sl_len ? EPOLLOUT : 0));
    return false;
}

static void
soak_event(struct soak *sk, size_t i, long long now)
{
    struct soak_slot *sl = &sk->sk_slots[i];

    if (sl->sl_state == SOAK_HOLDING) {
        soak_hold_event(sk, i);
        return;
    }
    if (sl->sl_state == SOAK_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(sl->sl_fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err != 0) {
            soak_error(sk, i, "connect: %s", strerror(err));
            soak_close(sk, i);
            return;
        }
        soak_start_echo(sk, i);
    }
    if (soak_echo(sk, i, now)) {
        sk->sk_echoes++;
        /* After a half-close the daemon has closed its side: nothing left to hold. */
        if (sl->sl_half_close)
            soak_close(sk, i);
        else
            soak_hold(sk, i, now);
    }
}

/* Connections that made no progress for SOAK_STALL_MS are errors. */
static void
soak_check_stalls(struct soak *sk, long long now)
{
    for (size_t i = 0; i < sk->sk_nslots; i++) {
        struct soak_slot *sl = &sk->sk_slots[i];

        if ((sl->sl_state == SOAK_CONNECTING || sl->sl_state == SOAK_ECHOING) &&
            now - sl->sl_progress > SOAK_STALL_MS) {
            soak_error(sk, i, "no progress for %d ms (%s, %zu of %zu bytes sent, %zu back)",
                       SOAK_STALL_MS, sl->sl_state == SOAK_CONNECTING ? "connecting" : "echoing",
                       sl->sl_sent, sl->sl_len, sl->sl_recv);
            soak_close(sk, i);
        }
    }
}

static void
soak_sample(struct soak *sk, const struct daemon_proc *dp, long long ms)
{
    struct soak_sample *ss;

    if (sk->sk_nsamples == SOAK_MAX_SAMPLES)
        return;
    ss = &sk->sk_samples[sk->sk_nsamples++];
    ss->ss_ms = ms;
    ss->ss_rss_kib = daemon_rss_kib(dp);
    ss->ss_fds = daemon_nfds(dp);
    ck_assert_msg(ss->ss_rss_kib > 0, "daemon RSS: %s", strerror((int)-ss->ss_rss_kib));
    printf("soak: %6.1f s  daemon RSS %ld KiB, %ld fds; %llu connections, %llu echoes, "
           "%llu errors; %zu open, %zu of them idle\n",
           (double)ms / 1000, ss->ss_rss_kib, ss->ss_fds, sk->sk_connects, sk->sk_echoes,
           sk->sk_errors, sk->sk_open, sk->sk_holding);
    fflush(stdout);
}

static void
soak_init(struct soak *sk, size_t nslots, int port)
{
    memset(sk, 0, sizeof(*sk));
    sk->sk_nslots = nslots;
    sk->sk_port = port;
    sk->sk_rng = 0x736f616b;
    sk->sk_slots = calloc(nslots, sizeof(*sk->sk_slots));
    sk->sk_idle = calloc(nslots, sizeof(*sk->sk_idle));
    sk->sk_pattern = malloc(SOAK_PATTERN_SIZE);
    sk->sk_upper = malloc(SOAK_PATTERN_SIZE);
    ck_assert(sk->sk_slots != NULL && sk->sk_idle != NULL && sk->sk_pattern != NULL &&
              sk->sk_upper != NULL);
    fill_pattern(sk->sk_pattern, SOAK_PATTERN_SIZE, 9000);
    ref_upper(sk->sk_upper, sk->sk_pattern, SOAK_PATTERN_SIZE);
    sk->sk_epfd = epoll_create1(EPOLL_CLOEXEC);
    ck_assert_int_ge(sk->sk_epfd, 0);
    for (size_t b = 0; b < SOAK_WHEEL_SIZE; b++)
        sk->sk_wheel[b] = SIZE_MAX;
    sk->sk_wheel_tick = now_ms() / SOAK_TICK_MS;
    for (size_t i = 0; i < nslots; i++) {
        sk->sk_slots[i].sl_fd = -1;
        /* Marks a slot that has not connected yet. */
        sk->sk_slots[i].sl_off = SIZE_MAX;
        soak_idle_push(sk, i);
    }
}

static void
soak_deinit(struct soak *sk)
{
    for (size_t i = 0; i < sk->sk_nslots; i++)
        if (sk->sk_slots[i].sl_fd >= 0)
            close(sk->sk_slots[i].sl_fd);
    close(sk->sk_epfd);
    free(sk->sk_slots);
    free(sk->sk_idle);
    free(sk->sk_pattern);
    free(sk->sk_upper);
}

/*
 * Every slot connects, echoes one message of random size (a few bytes to
 * 64 KiB), checks the uppercase byte for byte, closes, and connects again,
 * so that the daemon holds about SOAK_CONNECTIONS connections all along
 * while accepting and closing as fast as both sides can.  The daemon's
 * RSS must stay flat: a leak per connection would show within seconds.
 */
START_TEST(test_soak_churn)
{
    unsigned long seconds = soak_env("UPECHOD_SOAK_SECONDS", SOAK_SECONDS, 1, 86400);
    size_t nslots = soak_env("UPECHOD_SOAK_CONNECTIONS", SOAK_CONNECTIONS, 1, 100000);
    long long t0 = -1, now, next_sample = 0, next_stall = 0, end_ms, drain_until = 0, started;
    long rss_mark = -1, rss_end = -1, fds_before, fds_after = -1, mark_ms;
    long long drops_before, drops_after;
    size_t max_conn;
    struct epoll_event evs[1024];
    struct daemon_proc dp;
    struct rlimit rl;
    struct soak *sk;
    char ini[512];
    int r;

    ck_assert_msg(seconds > 0, "UPECHOD_SOAK_SECONDS: want 1 to 86400");
    ck_assert_msg(nslots > 0, "UPECHOD_SOAK_CONNECTIONS: want 1 to 100000");
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    ck_assert_int_eq(raise_nofile(rl.rlim_max), 0);
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    ck_assert_msg(rl.rlim_cur >= nslots + 64, "open-file limit %llu is too low for %zu connections",
                  (unsigned long long)rl.rlim_cur, nslots);
    /*
     * Room above the slots: the daemon sees a close only some time after
     * the client made it, and at max_connections it would stop accepting.
     */
    max_conn = 2 * nslots + 64;
    if (max_conn > rl.rlim_cur - 256)
        max_conn = rl.rlim_cur - 256;
    snprintf(ini, sizeof(ini),
             "[tcp]\nenabled = yes\nlisten = 127.0.0.1:0\nbacklog = 4096\n"
             "[udp]\nenabled = no\n"
             "[limits]\nmax_connections = %zu\n",
             max_conn);
    r = daemon_start(&dp, ini);
    ck_assert_msg(r == 0, "daemon_start: %s", strerror(-r));
    ck_assert_int_gt(dp.dp_tcp_port, 0);
    fds_before = daemon_nfds(&dp);

    sk = malloc(sizeof(*sk));
    ck_assert_ptr_nonnull(sk);
    soak_init(sk, nslots, dp.dp_tcp_port);
    end_ms = (long long)seconds * 1000;
    mark_ms = end_ms >= 2 * SOAK_RSS_FROM_MS ? SOAK_RSS_FROM_MS : end_ms / 2;
    printf("soak: %zu connections churning for %lu s against port %d\n", nslots, seconds,
           dp.dp_tcp_port);

    drops_before = soak_listen_drops();
    started = now_ms();
    for (;;) {
        int n;

        now = now_ms();
        while (!sk->sk_stopping && sk->sk_idle_len > 0 && sk->sk_connecting < SOAK_MAX_CONNECTING) {
            size_t i = sk->sk_idle[sk->sk_idle_head];

            sk->sk_idle_head = (sk->sk_idle_head + 1) % sk->sk_nslots;
            sk->sk_idle_len--;
            soak_connect(sk, i, now);
        }
        n = epoll_wait(sk->sk_epfd, evs, 1024, SOAK_TICK_MS);
        ck_assert_msg(n >= 0 || errno == EINTR, "epoll_wait: %s", strerror(errno));
        now = now_ms();
        for (int k = 0; k < n; k++) {
            size_t i = (size_t)evs[k].data.u64;

            /* An earlier event of this batch may have closed it already. */
            if (sk->sk_slots[i].sl_state != SOAK_IDLE)
                soak_event(sk, i, now);
        }
        soak_expire(sk, now);
        /* The clock starts once every slot is connected for the first time. */
        if (t0 < 0 && sk->sk_first_done == nslots) {
            t0 = now;
            printf("soak: all %zu connected after %llu connects\n", nslots, sk->sk_connects);
        }
        if (now >= next_stall) {
            soak_check_stalls(sk, now);
            next_stall = now + 1000;
        }
        if (t0 >= 0 && now >= next_sample) {
            soak_sample(sk, &dp, now - t0);
            if (rss_mark < 0 && now - t0 >= mark_ms)
                rss_mark = sk->sk_samples[sk->sk_nsamples - 1].ss_rss_kib;
            next_sample = now + SOAK_SAMPLE_MS;
        }
        if (!sk->sk_stopping && t0 >= 0 && now - t0 >= end_ms) {
            /* The end sample is taken under full load, before the clients leave. */
            soak_sample(sk, &dp, now - t0);
            rss_end = sk->sk_samples[sk->sk_nsamples - 1].ss_rss_kib;
            sk->sk_stopping = true;
            drain_until = now + SOAK_DRAIN_MS;
        }
        if (sk->sk_stopping && (sk->sk_open == 0 || now >= drain_until))
            break;
        ck_assert_msg(t0 >= 0 || now - started < 60000, "%zu of %zu connections up after 60 s",
                      sk->sk_first_done, nslots);
    }
    if (sk->sk_open > 0) {
        fprintf(stderr, "soak: %zu connections still open %d ms after churn stopped\n", sk->sk_open,
                SOAK_DRAIN_MS);
        sk->sk_errors += sk->sk_open;
    }

    /* Every connection is closed: the daemon must give its descriptors back. */
    for (long long until = now_ms() + 10000; now_ms() < until;) {
        fds_after = daemon_nfds(&dp);
        if (fds_after <= fds_before)
            break;
        usleep(100 * 1000);
    }
    drops_after = soak_listen_drops();
    printf("soak: %zu slots for %lu s: %llu connections, %llu echoes verified (%llu bytes), "
           "%llu errors; daemon RSS %ld KiB at %ld s, %ld KiB at the end, drift %+ld KiB; "
           "daemon fds %ld before, %ld after; kernel listen drops %lld\n",
           nslots, seconds, sk->sk_connects, sk->sk_echoes, sk->sk_bytes, sk->sk_errors, rss_mark,
           mark_ms / 1000, rss_end, rss_end - rss_mark, fds_before, fds_after,
           drops_before >= 0 && drops_after >= 0 ? drops_after - drops_before : -1);
    fflush(stdout);

    ck_assert_msg(sk->sk_errors == 0, "%llu errors (the first ones are on stderr)", sk->sk_errors);
    ck_assert_uint_ge(sk->sk_echoes, nslots);
    ck_assert_int_gt(rss_mark, 0);
    /* A sanitizer's quarantine and shadow memory make RSS say nothing about leaks. */
    ck_assert_msg(getenv("UPECHOD_ASAN") != NULL || rss_end - rss_mark < SOAK_MAX_DRIFT_KIB,
                  "daemon RSS grew by %ld KiB from %ld s to the end", rss_end - rss_mark,
                  mark_ms / 1000);
    ck_assert_msg(fds_after <= fds_before, "daemon holds %ld descriptors, %ld before the run",
                  fds_after, fds_before);
    soak_deinit(sk);
    free(sk);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

static Suite *
soak_suite(void)
{
    Suite *s = suite_create("soak");
    TCase *tc = tcase_create("churn");

    /* The run itself, plus ramp-up, drain and the daemon's stop. */
    tcase_set_timeout(tc, (double)soak_env("UPECHOD_SOAK_SECONDS", SOAK_SECONDS, 1, 86400) + 180);
    tcase_add_test(tc, test_soak_churn);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(soak_suite(), CK_ENV);
}
