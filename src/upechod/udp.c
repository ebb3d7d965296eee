/* udp.c: UDP echo, one datagram back for each datagram in, in batches. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>

#include "log.h"
#include "udp.h"
#include "upper.h"

/* Datagrams per recvmmsg(2) call, and calls per wakeup: streams must not starve. */
#define UDP_BATCH 32
#define UDP_ROUNDS 4
/* Largest UDP payload over IPv6 (IPv4 stops at 65507); one byte more detects truncation. */
#define UDP_BUFSIZE 65536
/* Source addresses the rate limiter remembers; a fixed table, so spoofing cannot grow it. */
#define UDP_RATELIMIT_SLOTS 4096
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
    const struct udp_env *u_env;
    struct event *u_ev;
    int u_fd;
};

struct udp_ratelimit_slot {
    unsigned char rs_addr[16];
    uint8_t rs_family;
    uint32_t rs_tokens;
    uint64_t rs_last_ms;
};

struct udp_ratelimit {
    struct udp_ratelimit_slot rl_slots[UDP_RATELIMIT_SLOTS];
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

struct udp_ratelimit *
udp_ratelimit_new(void)
{
    return calloc(1, sizeof(struct udp_ratelimit));
}

void
udp_ratelimit_free(struct udp_ratelimit *rl)
{
    free(rl);
}

/*
 * A token bucket per source address (ports ignored: a spoofer picks those),
 * `rate` replies a second with a burst of one second's worth.  Addresses
 * hash into a fixed table; a collision simply restarts the slot's bucket, so
 * memory stays constant whatever the sources.  Returns 1 to answer.
 */
int
udp_ratelimit_allow(struct udp_ratelimit *rl, const struct sockaddr *sa, unsigned rate,
                    uint64_t now_ms)
{
    unsigned char key[16] = {0};
    struct udp_ratelimit_slot *s;
    uint32_t h = 2166136261u;
    uint64_t refill;

    if (rate == 0)
        return 1;
    if (sa->sa_family == AF_INET)
        memcpy(key, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    else if (sa->sa_family == AF_INET6)
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    for (size_t i = 0; i < sizeof(key); i++)
        h = (h ^ key[i]) * 16777619u;
    h ^= sa->sa_family;
    s = &rl->rl_slots[h % UDP_RATELIMIT_SLOTS];
    if (s->rs_family != sa->sa_family || memcmp(s->rs_addr, key, sizeof(key)) != 0) {
        memcpy(s->rs_addr, key, sizeof(key));
        s->rs_family = (uint8_t)sa->sa_family;
        s->rs_tokens = rate;
        s->rs_last_ms = now_ms;
    }
    refill = (now_ms - s->rs_last_ms) * rate / 1000;
    if (refill > 0) {
        s->rs_tokens = (uint32_t)(s->rs_tokens + refill > rate ? rate : s->rs_tokens + refill);
        s->rs_last_ms = now_ms;
    }
    if (s->rs_tokens == 0)
        return 0;
    s->rs_tokens--;
    return 1;
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

/* Decide whether a datagram from sa gets an answer (reflection guard and rate limit). */
static int
udp_should_answer(const struct udp_env *env, const struct sockaddr *sa, uint64_t now_ms)
{
    int port = addr_port(sa);

    /*
     * An echo service answering port 7 (echo), 19 (chargen) or any other
     * privileged port is the classic reflection loop (CERT CA-1996-01).
     */
    if (env->ue_conf->cf_udp_drop_privileged && port >= 0 && port < 1024)
        return 0;
    return udp_ratelimit_allow(env->ue_ratelimit, sa, env->ue_conf->cf_udp_rate_limit, now_ms);
}

/* Send the prepared replies, dropping (and counting) what the kernel will not take now. */
static void
udp_send_batch(struct udp *u, struct mmsghdr *msgs, int n)
{
    struct server_stats *stats = u->u_env->ue_stats;
    int off = 0;

    while (off < n) {
        int sent = sendmmsg(u->u_fd, msgs + off, (unsigned)(n - off), MSG_DONTWAIT);

        if (sent > 0) {
            STATS_ADD(stats->st_dgrams_out, sent);
            off += sent;
            continue;
        }
        if (sent == -1 && errno == EINTR)
            continue;
        if (sent == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            /* UDP promises nothing; waiting here would stall every other client. */
            STATS_ADD(stats->st_dgrams_dropped, n - off);
            return;
        }
        /* This one datagram cannot go (unreachable, refused, ...): skip it. */
        log_debug("udp: sendmmsg: %s", strerror(errno));
        STATS_ADD(stats->st_dgrams_dropped, 1);
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
        STATS_ADD(env->ue_stats->st_dgrams_in, n);
        for (int i = 0; i < n; i++) {
            struct msghdr *mh = &b->ub_msgs[i].msg_hdr;
            size_t len = b->ub_msgs[i].msg_len;

            if ((mh->msg_flags & MSG_TRUNC) ||
                !udp_should_answer(env, (struct sockaddr *)mh->msg_name, now_ms)) {
                STATS_ADD(env->ue_stats->st_dgrams_dropped, 1);
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

/* Serve datagrams on a bound UDP socket; the fd stays the caller's. */
struct udp *
udp_new(const struct udp_env *env, int fd)
{
    struct udp *u = calloc(1, sizeof(*u));

    if (u == NULL)
        return NULL;
    u->u_env = env;
    u->u_fd = fd;
    u->u_ev = event_new(env->ue_base, fd, EV_READ | EV_PERSIST, udp_read_cb, u);
    if (u->u_ev == NULL || event_add(u->u_ev, NULL) == -1) {
        if (u->u_ev != NULL)
            event_free(u->u_ev);
        free(u);
        return NULL;
    }
    return u;
}

void
udp_free(struct udp *u)
{
    if (u == NULL)
        return;
    event_free(u->u_ev);
    free(u);
}
