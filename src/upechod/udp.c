/* udp.c: UDP echo, one datagram back for each datagram in, in batches. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>

#include "log.h"
#include "ratelimit.h"
#include "udp.h"
#include "upper.h"

/* Datagrams per recvmmsg(2) call, and calls per wakeup: streams must not starve. */
#define UDP_BATCH 32
#define UDP_ROUNDS 4
/* Largest UDP payload over IPv6 (IPv4 stops at 65507); one byte more detects truncation. */
#define UDP_BUFSIZE 65536
/* Receive buffer asked for on each UDP socket. */
#define UDP_RCVBUF (4 * 1024 * 1024)

struct udp_batch {
    struct mmsghdr ub_msgs[UDP_BATCH];
    struct iovec ub_iov[UDP_BATCH];
    struct sockaddr_storage ub_addrs[UDP_BATCH];
    /* Room for IP_PKTINFO or IPV6_PKTINFO, whichever is larger. */
    char ub_cmsg[UDP_BATCH][CMSG_SPACE(sizeof(struct in6_pktinfo))] __attribute__((aligned(8)));
    unsigned char ub_data[UDP_BATCH][UDP_BUFSIZE];
};

struct udp {
    TAILQ_ENTRY(udp) u_entry; /* in its env's ue_socks */
    struct udp_env *u_env;
    struct event *u_ev;
    int u_fd;
    int u_port; /* the port bound, host order; for the loop guard */
};

/* The scratch space every UDP socket of one event loop shares; each loop has its own. */
struct udp_batch *
udp_batch_new(void)
{
    return calloc(1, sizeof(struct udp_batch));
}

void
udp_batch_free(struct udp_batch *b)
{
    free(b);
}

/*
 * A socket bound to a wildcard address must answer from the address the
 * client wrote to, or a client with a connected socket drops the reply.
 * Ask the kernel for each datagram's destination.
 */
int
udp_prepare_socket(int fd, const struct sockaddr *bound)
{
    int one = 1, rcvbuf = UDP_RCVBUF;

    /*
     * Thousands of clients sending at once overflow the default receive
     * buffer between two wakeups, and the kernel drops what does not fit.
     * Root may exceed net.core.rmem_max; anyone else gets as much as it allows.
     */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) == -1)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

    if (bound->sa_family == AF_INET)
        return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    if (bound->sa_family == AF_INET6)
        return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
    return 0;
}

/*
 * Turn the destination the kernel reported into the source of the reply.
 * Only the address is kept: the interface index would pin the reply to the
 * incoming interface, which routing may disagree with.
 */
static void
udp_fix_pktinfo(struct msghdr *mh)
{
    struct cmsghdr *c;

    for (c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo *pi = (struct in_pktinfo *)CMSG_DATA(c);

            pi->ipi_spec_dst = pi->ipi_addr;
            pi->ipi_ifindex = 0;
            mh->msg_controllen = CMSG_SPACE(sizeof(*pi));
            memmove(mh->msg_control, c, CMSG_SPACE(sizeof(*pi)));
            return;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo *pi = (struct in6_pktinfo *)CMSG_DATA(c);

            pi->ipi6_ifindex = 0;
            mh->msg_controllen = CMSG_SPACE(sizeof(*pi));
            memmove(mh->msg_control, c, CMSG_SPACE(sizeof(*pi)));
            return;
        }
    }
    mh->msg_control = NULL;
    mh->msg_controllen = 0;
}

static uint64_t
udp_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Why a datagram goes unanswered; UDP_ANSWER when it does not. */
enum udp_verdict {
    UDP_ANSWER,
    UDP_DROP_PRIVILEGED,
    UDP_DROP_LOOP,
    UDP_DROP_RATELIMIT,
};

/*
 * Source ports of services that answer whatever datagram reaches them:
 * echo 7, daytime 13, qotd 17, chargen 19, time 37, DNS 53 (an error
 * reply), NTP 123, SNMP 161.  Answering one starts a loop with it; all are
 * below 1024, so this matters when drop_privileged_source_ports is off.
 * Port 0 is no one's: only a forged datagram comes from it.
 */
static int
udp_echoish_port(int port)
{
    switch (port) {
    case 0:
    case 7:
    case 13:
    case 17:
    case 19:
    case 37:
    case 53:
    case 123:
    case 161:
        return 1;
    }
    return 0;
}

/*
 * A datagram from one of our own UDP ports is our own reply coming back,
 * or another echo server's on the same port: answering it would loop
 * forever.  As FreeBSD inetd's check_loop(), compare the source port with
 * the port of every UDP socket we serve, whatever the source address.  For
 * a socket bound to a specific address, comparing the address too would
 * miss a wildcard one (any local address is ours) and another upechod on
 * the same port elsewhere, whose loop with us is just as endless; a client
 * whose source port is exactly one of ours loses little.  A few compares:
 * one per UDP socket.  Every worker serves every UDP address, so the
 * sockets of this worker's loop have all of our ports.
 */
static int
udp_is_loop(const struct udp_env *env, int port)
{
    const struct udp *u;

    if (udp_echoish_port(port))
        return 1;
    TAILQ_FOREACH(u, &env->ue_socks, u_entry) {
        if (u->u_port == port)
            return 1;
    }
    return 0;
}

/* Decide whether a datagram from sa gets an answer (reflection guard, loop guard, rate limit). */
static enum udp_verdict
udp_should_answer(const struct udp_env *env, const struct sockaddr *sa, uint64_t now_ms)
{
    int port = addr_port(sa);

    /*
     * An echo service answering port 7 (echo), 19 (chargen) or any other
     * privileged port is the classic reflection loop (CERT CA-1996-01).
     */
    if (env->ue_conf->cf_udp_drop_privileged && port >= 0 && port < 1024)
        return UDP_DROP_PRIVILEGED;
    if (udp_is_loop(env, port))
        return UDP_DROP_LOOP;
    /*
     * A loop between two servers (remote ones, or on other ports) is a
     * single source address and port answering as fast as the round trip
     * allows.  The per-port table runs in debt mode: the first datagram
     * over rate_limit_per_port starts a second in which every datagram
     * from that address and port is dropped, so each datagram going round
     * is dropped on its next pass, within one round trip, and the loop is
     * dead however many were forged.  A loop slower than the limit (one
     * datagram over a round trip longer than 1/limit) is not seen: it
     * runs on, at most at the limit.  (Every datagram of a loop through
     * upechod is already uppercase, but so are many clients' digits and
     * binary payloads: content tells no loop from a client.)  A load test
     * from one host spreads over many sockets, each far below the limit.
     */
    if (!ratelimit_allow(env->ue_portlimit, sa, 1, env->ue_conf->cf_udp_rate_limit_per_port,
                         now_ms) ||
        !ratelimit_allow(env->ue_ratelimit, sa, 0, env->ue_conf->cf_udp_rate_limit, now_ms))
        return UDP_DROP_RATELIMIT;
    return UDP_ANSWER;
}

/*
 * One loop line a second for the whole daemon: every worker's sockets
 * share the budget, so N workers do not log N lines for one loop.
 */
static int
udp_loop_may_log(struct udp_loop_log *ll, uint64_t now_ms)
{
    uint64_t last = __atomic_load_n(&ll->ll_logged_ms, __ATOMIC_RELAXED);

    if (last != 0 && now_ms - last < 1000)
        return 0;
    return __atomic_compare_exchange_n(&ll->ll_logged_ms, &last, now_ms, 0, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED);
}

/* Count a datagram that goes unanswered, by reason; a loop is also logged, once a second at most.
 */
static void
udp_count_drop(struct udp *u, enum udp_verdict v, const struct msghdr *mh, uint64_t now_ms)
{
    struct server_stats *st = u->u_env->ue_stats;
    char from[ADDR_STRLEN];

    STATS_ADD(st->ss_dgrams_dropped, 1);
    switch (v) {
    case UDP_DROP_PRIVILEGED:
        STATS_ADD(st->ss_drop_privileged, 1);
        break;
    case UDP_DROP_RATELIMIT:
        STATS_ADD(st->ss_drop_ratelimit, 1);
        break;
    case UDP_DROP_LOOP:
        STATS_ADD(st->ss_drop_loop, 1);
        if (!udp_loop_may_log(u->u_env->ue_loop_log, now_ms)) {
            __atomic_fetch_add(&u->u_env->ue_loop_log->ll_unlogged, 1, __ATOMIC_RELAXED);
            break;
        }
        addr_format((const struct sockaddr *)mh->msg_name, mh->msg_namelen, from, sizeof(from));
        log_warn("udp: not answering %s: its port is upechod's own or an echo-like service's, "
                 "and answering would start an endless loop (%llu more such datagrams since "
                 "the last line)",
                 from,
                 (unsigned long long)__atomic_exchange_n(&u->u_env->ue_loop_log->ll_unlogged, 0,
                                                         __ATOMIC_RELAXED));
        break;
    case UDP_ANSWER:
        break;
    }
}

/* Send the prepared replies, dropping (and counting) what the kernel will not take now. */
static void
udp_send_batch(struct udp *u, struct mmsghdr *msgs, int n)
{
    struct server_stats *st = u->u_env->ue_stats;
    int off = 0;

    while (off < n) {
        int sent = sendmmsg(u->u_fd, msgs + off, (unsigned)(n - off), MSG_DONTWAIT);

        if (sent > 0) {
            STATS_ADD(st->ss_dgrams_out, sent);
            for (int i = off; i < off + sent; i++)
                STATS_ADD(st->ss_t_bytes_out[TRANSPORT_UDP], msgs[i].msg_hdr.msg_iov->iov_len);
            off += sent;
            continue;
        }
        if (sent == -1 && errno == EINTR)
            continue;
        if (sent == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            /* UDP promises nothing; waiting here would stall every other client. */
            STATS_ADD(st->ss_dgrams_dropped, n - off);
            STATS_ADD(st->ss_drop_sendfail, n - off);
            return;
        }
        /* This one datagram cannot go (unreachable, refused, ...): skip it. */
        log_debug("udp: sendmmsg: %s", strerror(errno));
        STATS_ADD(st->ss_dgrams_dropped, 1);
        STATS_ADD(st->ss_drop_sendfail, 1);
        off++;
    }
}

/* The socket is readable: answer up to UDP_ROUNDS * UDP_BATCH datagrams, then yield. */
static void
udp_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct udp *u = arg;
    const struct udp_env *env = u->u_env;
    struct udp_batch *b = env->ue_batch;
    uint64_t now_ms = udp_now_ms();

    for (int round = 0; round < UDP_ROUNDS; round++) {
        struct mmsghdr out[UDP_BATCH];
        int n, nout = 0;

        for (int i = 0; i < UDP_BATCH; i++) {
            struct msghdr *mh = &b->ub_msgs[i].msg_hdr;

            b->ub_iov[i].iov_base = b->ub_data[i];
            b->ub_iov[i].iov_len = UDP_BUFSIZE;
            memset(mh, 0, sizeof(*mh));
            mh->msg_name = &b->ub_addrs[i];
            mh->msg_namelen = sizeof(b->ub_addrs[i]);
            mh->msg_iov = &b->ub_iov[i];
            mh->msg_iovlen = 1;
            mh->msg_control = b->ub_cmsg[i];
            mh->msg_controllen = sizeof(b->ub_cmsg[i]);
        }
        n = recvmmsg(fd, b->ub_msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_debug("udp: recvmmsg: %s", strerror(errno));
            return;
        }
        STATS_ADD(env->ue_stats->ss_dgrams_in, n);
        for (int i = 0; i < n; i++) {
            struct msghdr *mh = &b->ub_msgs[i].msg_hdr;
            size_t len = b->ub_msgs[i].msg_len;
            enum udp_verdict v;

            STATS_ADD(env->ue_stats->ss_t_bytes_in[TRANSPORT_UDP], len);
            if (mh->msg_flags & MSG_TRUNC) {
                STATS_ADD(env->ue_stats->ss_dgrams_dropped, 1);
                STATS_ADD(env->ue_stats->ss_drop_truncated, 1);
                continue;
            }
            v = udp_should_answer(env, (struct sockaddr *)mh->msg_name, now_ms);
            if (v != UDP_ANSWER) {
                udp_count_drop(u, v, mh, now_ms);
                continue;
            }
            /* Same buffer, same length: a reply is never larger than its request. */
            upper_inplace(b->ub_data[i], len);
            b->ub_iov[i].iov_len = len;
            mh->msg_flags = 0;
            udp_fix_pktinfo(mh);
            out[nout].msg_hdr = *mh;
            out[nout].msg_len = 0;
            nout++;
        }
        if (nout > 0)
            udp_send_batch(u, out, nout);
        if (n < UDP_BATCH)
            return;
    }
}

/* Serve datagrams on a bound UDP socket in env's loop; the fd stays the caller's. */
struct udp *
udp_new(struct udp_env *env, int fd)
{
    struct udp *u = calloc(1, sizeof(*u));
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (u == NULL)
        return NULL;
    u->u_env = env;
    u->u_fd = fd;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        u->u_port = addr_port((struct sockaddr *)&ss);
    else
        u->u_port = -1;
    u->u_ev = event_new(env->ue_base, fd, EV_READ | EV_PERSIST, udp_read_cb, u);
    if (u->u_ev == NULL || event_add(u->u_ev, NULL) == -1) {
        if (u->u_ev != NULL)
            event_free(u->u_ev);
        free(u);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&env->ue_socks, u, u_entry);
    return u;
}

void
udp_free(struct udp *u)
{
    if (u == NULL)
        return;
    TAILQ_REMOVE(&u->u_env->ue_socks, u, u_entry);
    event_free(u->u_ev);
    free(u);
}
