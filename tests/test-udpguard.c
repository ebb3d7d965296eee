/* test-udpguard.c: the UDP reflection guard and the per-source rate limit. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check-helpers.h"
#include "check-main.h"
#include "harness.h"

#define BURST 50
#define RATE 5

static const char guard_ini[] = INI_UDP4_ONLY;

static const char guard6_ini[] = INI_UDP6_ONLY;

static const char noguard_ini[] = INI_UDP4_ONLY "drop_privileged_source_ports = no\n";

static const char rate_ini[] = INI_UDP4_ONLY "rate_limit = 5\n";

/* Wildcard, no guard but the loop guard (and no rate limit to stop a loop in its stead). */
static const char loop_ini[] = "[tcp]\nenabled = no\n[udp]\nlisten = 0.0.0.0:0\n"
                               "drop_privileged_source_ports = no\nrate_limit = 0\n";

/*
 * A UDP socket bound to src (port src_port, 0 for any) and connected to the
 * daemon's port on the same family's loopback.  Returns the fd or -errno.
 */
static int
udp_from(int family, const char *src, int src_port, int dst_port)
{
    struct sockaddr_storage me = {0}, to = {0};
    socklen_t len;
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0), r;

    if (fd == -1)
        return -errno;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&me, *b = (struct sockaddr_in6 *)&to;

        a->sin6_family = b->sin6_family = AF_INET6;
        inet_pton(AF_INET6, src, &a->sin6_addr);
        a->sin6_port = htons((uint16_t)src_port);
        b->sin6_addr = in6addr_loopback;
        b->sin6_port = htons((uint16_t)dst_port);
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&me, *b = (struct sockaddr_in *)&to;

        a->sin_family = b->sin_family = AF_INET;
        inet_pton(AF_INET, src, &a->sin_addr);
        a->sin_port = htons((uint16_t)src_port);
        b->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        b->sin_port = htons((uint16_t)dst_port);
        len = sizeof(*a);
    }
    if (bind(fd, (struct sockaddr *)&me, len) == -1 || connect(fd, (struct sockaddr *)&to, len)) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static int
udp_from_or_fail(int family, const char *src, int dst_port)
{
    int fd;

    ck_assert_int_gt(dst_port, 0);
    fd = udp_from(family, src, 0, dst_port);
    ck_assert_msg(fd >= 0, "UDP socket from %s: %s", src, strerror(-fd));
    return fd;
}

/* A socket on the first free source port from first towards last (below 1024 needs root). */
static int
udp_from_port(int family, const char *src, int first, int last, int dst_port, int *port)
{
    int step = first <= last ? 1 : -1;

    for (int p = first; p != last + step; p += step) {
        int fd = udp_from(family, src, p, dst_port);

        if (fd >= 0) {
            *port = p;
            return fd;
        }
        ck_assert_msg(fd == -EADDRINUSE, "binding %s port %d: %s", src, p, strerror(-fd));
    }
    ck_abort_msg("no free source port from %d to %d", first, last);
    return -1;
}

/* One datagram within timeout_ms: its full length (MSG_TRUNC), or -ETIMEDOUT. */
static ssize_t
recv_one(int fd, void *buf, size_t size, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ssize_t r;

    ck_assert_int_ge(poll(&pfd, 1, timeout_ms), 0);
    if (!(pfd.revents & POLLIN))
        return -ETIMEDOUT;
    r = recv(fd, buf, size, MSG_TRUNC | MSG_DONTWAIT);
    ck_assert_msg(r >= 0, "recv: %s", strerror(errno));
    return r;
}

/* msg goes out from fd and comes back uppercased, no longer than it went. */
static void
answered(int fd, const char *msg)
{
    size_t len = strlen(msg);
    char got[256], want[256];
    ssize_t r;

    ck_assert_int_eq(send(fd, msg, len, 0), (ssize_t)len);
    r = recv_one(fd, got, sizeof(got), 2000);
    ck_assert_msg(r == (ssize_t)len, "reply to '%s': %zd", msg, r);
    ref_upper(want, msg, len);
    ck_assert_mem_eq(got, want, len);
}

/*
 * Datagrams from the privileged sources went out before the control's; the
 * daemon answers in order, so once the control's reply is in, any reply to
 * them would be too.  They must have none.
 */
static void
check_dropped(const int *priv, size_t n, int control)
{
    char got[64];

    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(send(priv[i], "reflect me", 10, 0), 10);
    answered(control, "control");
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(recv_one(priv[i], got, sizeof(got), 100) == -ETIMEDOUT,
                      "a datagram from a privileged port was answered");
}

static bool
root_or_skip(const char *test)
{
    if (geteuid() == 0)
        return true;
    fprintf(stderr, "%s: skipped: binding a source port below 1024 needs root\n", test);
    return false;
}

/* drop_privileged_source_ports = yes: ports near 1000 and 1023 get no answer, 1024 and up do. */
START_TEST(test_guard_drops_privileged)
{
    struct daemon_proc dp;
    int priv[2], ok, control, p0, p1, p2;

    if (!root_or_skip("test_guard_drops_privileged"))
        return;
    start_or_fail(&dp, guard_ini);
    priv[0] = udp_from_port(AF_INET, "127.0.0.1", 1000, 1019, dp.dp_udp_port, &p0);
    priv[1] = udp_from_port(AF_INET, "127.0.0.1", 1023, 1020, dp.dp_udp_port, &p1);
    ok = udp_from_port(AF_INET, "127.0.0.1", 1024, 1043, dp.dp_udp_port, &p2);
    control = udp_from_or_fail(AF_INET, "127.0.0.1", dp.dp_udp_port);
    check_dropped(priv, 2, control);
    answered(ok, "from 1024 and up");
    fprintf(stderr, "udpguard: source ports %d and %d dropped, %d answered\n", p0, p1, p2);
    close(priv[0]);
    close(priv[1]);
    close(ok);
    close(control);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

START_TEST(test_guard_drops_privileged_ipv6)
{
    struct daemon_proc dp;
    int priv, control, port;

    if (!root_or_skip("test_guard_drops_privileged_ipv6"))
        return;
    if (!ipv6_available()) {
        fprintf(stderr, "test_guard_drops_privileged_ipv6: skipped: no ::1 here\n");
        return;
    }
    start_or_fail(&dp, guard6_ini);
    priv = udp_from_port(AF_INET6, "::1", 1000, 1019, dp.dp_udp6_port, &port);
    control = udp_from_or_fail(AF_INET6, "::1", dp.dp_udp6_port);
    check_dropped(&priv, 1, control);
    close(priv);
    close(control);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/* drop_privileged_source_ports = no: a privileged source port is answered like any other. */
START_TEST(test_guard_off)
{
    struct daemon_proc dp;
    int priv, port;

    if (!root_or_skip("test_guard_off"))
        return;
    start_or_fail(&dp, noguard_ini);
    priv = udp_from_port(AF_INET, "127.0.0.1", 1000, 1019, dp.dp_udp_port, &port);
    answered(priv, "privileged but welcome");
    close(priv);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * rate_limit = 5: of a burst of 50 datagrams from one source about 5 are
 * answered (5 to 7, more only if the burst took long enough for the bucket
 * to refill), each reply the uppercase of its own request and no longer;
 * another source address is unaffected; a second later the first source is
 * answered again.
 */
START_TEST(test_rate_limit)
{
    struct daemon_proc dp;
    char msg[64], got[128], want[64];
    int a, b, nreplies = 0, most;
    long long t0, span;
    ssize_t r;

    start_or_fail(&dp, rate_ini);
    a = udp_from_or_fail(AF_INET, "127.0.0.1", dp.dp_udp_port);
    b = udp_from_or_fail(AF_INET, "127.0.0.2", dp.dp_udp_port);
    t0 = now_ms();
    for (int i = 0; i < BURST; i++) {
        /* Lengths vary, so that a reply of the wrong length shows. */
        int len = snprintf(msg, sizeof(msg), "burst datagram %02d%.*s", i, i % 7, "padding");

        ck_assert_int_eq(send(a, msg, (size_t)len, 0), len);
    }
    answered(b, "another source");
    /* The daemon saw the burst within this span; the bucket refills RATE a second meanwhile. */
    span = now_ms() - t0;
    most = RATE + 2 + (int)(span * RATE / 1000);
    while ((r = recv_one(a, got, sizeof(got), 100)) != -ETIMEDOUT) {
        int i;

        ck_assert_int_lt(r, (ssize_t)sizeof(got));
        got[r] = '\0';
        ck_assert_msg(sscanf(got, "BURST DATAGRAM %d", &i) == 1, "unexpected reply");
        int len = snprintf(msg, sizeof(msg), "burst datagram %02d%.*s", i, i % 7, "padding");
        ck_assert_msg(r == len, "reply to a %d-byte datagram is %zd bytes", len, r);
        ref_upper(want, msg, (size_t)len);
        ck_assert_mem_eq(got, want, (size_t)len);
        nreplies++;
    }
    fprintf(stderr,
            "udpguard: %d of a burst of %d answered at rate_limit = %d (burst took %lld ms)\n",
            nreplies, BURST, RATE, span);
    ck_assert_msg(nreplies >= RATE && nreplies <= most, "%d replies to a burst of %d in %lld ms",
                  nreplies, BURST, span);
    /* The other source still has most of its own second's worth. */
    for (int i = 0; i < RATE - 1; i++)
        answered(b, "still unaffected");

    usleep(1100 * 1000);
    for (int i = 0; i < RATE; i++)
        answered(a, "a second later");
    close(a);
    close(b);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * Send one UDP datagram with a forged source, as an attacker would: an IPv4
 * header of our own (IP_HDRINCL) carries src:sport, to 127.0.0.1:dport.
 */
static void
spoof_udp(const char *src, int sport, int dport, const char *payload)
{
    unsigned char pkt[128];
    size_t plen = strlen(payload), len = sizeof(struct iphdr) + 8 + plen;
    struct iphdr *ip = (struct iphdr *)pkt;
    unsigned char *udp = pkt + sizeof(*ip);
    struct sockaddr_in to = {.sin_family = AF_INET};
    int fd;

    ck_assert_uint_le(len, sizeof(pkt));
    memset(pkt, 0, sizeof(pkt));
    ip->version = 4;
    ip->ihl = 5;
    ip->tot_len = htons((uint16_t)len);
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ck_assert_int_eq(inet_pton(AF_INET, src, &ip->saddr), 1);
    ip->daddr = htonl(INADDR_LOOPBACK);
    /* UDP header: ports, length, checksum 0 (none, allowed over IPv4). */
    udp[0] = (unsigned char)(sport >> 8);
    udp[1] = (unsigned char)sport;
    udp[2] = (unsigned char)(dport >> 8);
    udp[3] = (unsigned char)dport;
    udp[4] = (unsigned char)((8 + plen) >> 8);
    udp[5] = (unsigned char)(8 + plen);
    memcpy(udp + 8, payload, plen);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* IPPROTO_RAW implies IP_HDRINCL: the kernel sends the header as written. */
    fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    ck_assert_msg(fd >= 0, "raw socket: %s", strerror(errno));
    ck_assert_int_eq(sendto(fd, pkt, len, 0, (struct sockaddr *)&to, sizeof(to)), (ssize_t)len);
    close(fd);
}

static bool
raw_or_skip(const char *test)
{
    if (geteuid() == 0)
        return true;
    fprintf(stderr, "%s: skipped: forging a source address needs root (a raw socket)\n", test);
    return false;
}

/*
 * A datagram forged from the daemon's own address and port (and from
 * another local address on its port, which a wildcard socket also owns)
 * would be answered to itself, forever: 100% CPU.  It must be dropped,
 * counted and logged, the log line rate-limited, and a client still served.
 */
START_TEST(test_loop_own_port)
{
    struct daemon_proc dp;
    long long ticks0, ticks1;
    int control, port;

    if (!raw_or_skip("test_loop_own_port"))
        return;
    start_or_fail(&dp, loop_ini);
    /* The wildcard's port: the log names it as 0.0.0.0:P, which the harness does not read. */
    ck_assert(daemon_log_contains(&dp, "listening on udp 0.0.0.0:"));
    {
        FILE *f = fopen(dp.dp_log, "re");
        char line[512];
        const char *p;

        ck_assert_ptr_nonnull(f);
        port = 0;
        while (port == 0 && fgets(line, sizeof(line), f) != NULL)
            if ((p = strstr(line, "listening on udp 0.0.0.0:")) != NULL)
                port = atoi(p + strlen("listening on udp 0.0.0.0:"));
        fclose(f);
    }
    ck_assert_int_gt(port, 0);
    control = udp_from_or_fail(AF_INET, "127.0.0.1", port);
    answered(control, "before");

    ticks0 = daemon_cpu_ticks(&dp);
    for (int i = 0; i < 10; i++) {
        spoof_udp("127.0.0.1", port, port, "loop me");
        spoof_udp("127.0.0.2", port, port, "loop me too");
    }
    usleep(1000 * 1000);
    ticks1 = daemon_cpu_ticks(&dp);
    fprintf(stderr, "udpguard: 20 datagrams forged from our own port: %lld CPU ticks in 1 s\n",
            ticks1 - ticks0);
    /* A loop burns a whole core (100 ticks a second); idle is about 0. */
    ck_assert_msg(ticks1 - ticks0 < 30, "the daemon used %lld ticks in 1 s: looping?",
                  ticks1 - ticks0);
    answered(control, "still served");
    ck_assert(daemon_log_contains(&dp, "answering would start an endless loop"));
    /* 20 drops within a second: one line, not twenty. */
    ck_assert_int_eq(daemon_log_count(&dp, "answering would start an endless loop"), 1);
    close(control);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * A packet socket on the loopback interface, to count the datagrams two
 * daemons send each other: what goes on the wire is what a loop is, and a
 * count does not depend on how busy the machine is, as CPU time does.
 */
static int
sniff_open(void)
{
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP)};
    int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_IP));

    ck_assert_msg(fd >= 0, "packet socket: %s", strerror(errno));
    sll.sll_ifindex = (int)if_nametoindex("lo");
    ck_assert_int_gt(sll.sll_ifindex, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sll, sizeof(sll)), 0);
    return fd;
}

/*
 * Datagrams between UDP ports p and q (either way) seen on lo within
 * ms milliseconds.  Each is counted once, as it is received: lo shows a
 * packet socket every packet twice, going out and coming in.
 */
static long
sniff_count(int fd, int p, int q, int ms)
{
    long n = 0;
    unsigned char pkt[256];

    for (long long end = now_ms() + ms, left; (left = end - now_ms()) > 0;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        struct sockaddr_ll from;
        socklen_t len = sizeof(from);
        const struct iphdr *ip = (const struct iphdr *)pkt;
        const unsigned char *udp;
        ssize_t r;
        int sport, dport;

        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        r = recvfrom(fd, pkt, sizeof(pkt), MSG_DONTWAIT, (struct sockaddr *)&from, &len);
        if (r < (ssize_t)sizeof(*ip) + 8 || from.sll_pkttype == PACKET_OUTGOING ||
            ip->protocol != IPPROTO_UDP || r < (ssize_t)(ip->ihl * 4 + 8))
            continue;
        udp = pkt + ip->ihl * 4;
        sport = udp[0] << 8 | udp[1];
        dport = udp[2] << 8 | udp[3];
        n += (sport == p && dport == q) || (sport == q && dport == p);
    }
    return n;
}

#define LOOP_FORGED 100
#define LOOP_DEADLINE_S 10

/*
 * Two daemons on different ports with the defaults, 100 datagrams forged
 * from the second to the first: they answer each other faster than
 * rate_limit_per_port until a bucket runs out; then that source owes a
 * second, every datagram going round is dropped on its next pass, and the
 * wire between them goes quiet for good.  Without the debt the loop thins
 * out to the limit and runs on (when the round trip is over 1/limit, as
 * on a loaded host).  Datagrams are counted on lo, a second at a time.
 */
START_TEST(test_loop_two_daemons)
{
    struct daemon_proc a, b;
    long first, last = -1, total = 0;
    int sniff, s = 0, control;

    if (!raw_or_skip("test_loop_two_daemons"))
        return;
    start_or_fail(&a, guard_ini);
    start_or_fail(&b, guard_ini);
    sniff = sniff_open();
    for (int i = 0; i < LOOP_FORGED; i++)
        spoof_udp("127.0.0.1", b.dp_udp_port, a.dp_udp_port, "ping pong");
    first = sniff_count(sniff, a.dp_udp_port, b.dp_udp_port, 1000);
    total = first;
    /* The loop went round, or the test proves nothing. */
    ck_assert_msg(first > LOOP_FORGED, "only %ld datagrams between the daemons in 1 s", first);
    while (last != 0 && ++s < LOOP_DEADLINE_S) {
        last = sniff_count(sniff, a.dp_udp_port, b.dp_udp_port, 1000);
        total += last;
    }
    fprintf(stderr,
            "udpguard: two daemons, %d forged datagrams: %ld datagrams between them in the first "
            "second, %ld in all; quiet %s %d s\n",
            LOOP_FORGED, first, total, last == 0 ? "from" : "not even after", s);
    ck_assert_msg(last == 0, "still %ld datagrams a second between the daemons after %d s", last,
                  s);
    /* And it stays quiet. */
    last = sniff_count(sniff, a.dp_udp_port, b.dp_udp_port, 1000);
    ck_assert_msg(last == 0, "%ld datagrams between the daemons after a quiet second", last);
    /* Another client of each is answered as before. */
    control = udp_from_or_fail(AF_INET, "127.0.0.1", a.dp_udp_port);
    answered(control, "after the loop");
    close(control);
    control = udp_from_or_fail(AF_INET, "127.0.0.1", b.dp_udp_port);
    answered(control, "after the loop");
    close(control);
    close(sniff);
    ck_assert_int_eq(daemon_stop(&b), 0);
    ck_assert_int_eq(daemon_stop(&a), 0);
}
END_TEST

/*
 * A delay line between two daemons, standing for the network between two
 * hosts: what daemon A sends to socket ra goes on to daemon B from socket
 * rb, and back, each way held for at least DELAY_US.  Runs for ms
 * milliseconds; returns how many datagrams it passed on.
 */
#define DELAY_US 1000

static long
delay_line(int ra, int rb, int ms)
{
    static char buf[64][512];
    static size_t len[64];
    static int dst[64];
    long n = 0;

    for (long long end = now_ms() + ms; now_ms() < end;) {
        int got = 0;

        for (int side = 0; side < 2; side++) {
            int from = side == 0 ? ra : rb;
            ssize_t r;

            while (got < 64 && (r = recv(from, buf[got], sizeof(buf[got]), MSG_DONTWAIT)) >= 0) {
                len[got] = (size_t)r;
                dst[got++] = side == 0 ? rb : ra;
            }
        }
        usleep(DELAY_US);
        for (int i = 0; i < got; i++)
            n += send(dst[i], buf[i], len[i], 0) == (ssize_t)len[i];
    }
    return n;
}

/*
 * Two daemons at rate_limit_per_port = 1000 through a delay line (a round
 * trip of 2 ms and more): a loop of one datagram runs below the limit and
 * is not stopped, but 100 go round faster than it, and once a bucket runs
 * out the source owes a second: every datagram going round is dropped on
 * its next pass.  Without the debt, the loop thins out to the limit,
 * which a round trip over 1/limit keeps alive for good.  No root needed:
 * the delay line starts the loop as an ordinary client would.
 */
START_TEST(test_loop_slow_network)
{
    static const char slow_ini[] = INI_UDP4_ONLY "rate_limit_per_port = 1000\n";
    struct daemon_proc a, b;
    long first, last = -1, total;
    int ra, rb, s = 0;

    start_or_fail(&a, slow_ini);
    start_or_fail(&b, slow_ini);
    ra = udp_from_or_fail(AF_INET, "127.0.0.1", a.dp_udp_port);
    rb = udp_from_or_fail(AF_INET, "127.0.0.1", b.dp_udp_port);
    for (int i = 0; i < LOOP_FORGED; i++)
        ck_assert_int_eq(send(ra, "ping pong", 9, 0), 9);
    first = total = delay_line(ra, rb, 1000);
    ck_assert_msg(first > LOOP_FORGED, "only %ld datagrams passed on in 1 s", first);
    while (last != 0 && ++s < LOOP_DEADLINE_S) {
        last = delay_line(ra, rb, 1000);
        total += last;
    }
    fprintf(stderr,
            "udpguard: two daemons 2 ms apart, %d datagrams: %ld passed on in the first second, "
            "%ld in all; quiet %s %d s\n",
            LOOP_FORGED, first, total, last == 0 ? "from" : "not even after", s);
    ck_assert_msg(last == 0, "still %ld datagrams a second between the daemons after %d s", last,
                  s);
    close(ra);
    close(rb);
    ck_assert_int_eq(daemon_stop(&b), 0);
    ck_assert_int_eq(daemon_stop(&a), 0);
}
END_TEST

/*
 * drop_privileged_source_ports = no still does not answer echo-like
 * services' ports (7 echo here): that is a loop with the other service.
 */
START_TEST(test_loop_echo_port)
{
    struct daemon_proc dp;
    int priv, ok, control, port;

    if (!root_or_skip("test_loop_echo_port"))
        return;
    start_or_fail(&dp, noguard_ini);
    priv = udp_from_port(AF_INET, "127.0.0.1", 7, 7, dp.dp_udp_port, &port);
    ok = udp_from_port(AF_INET, "127.0.0.1", 1000, 1019, dp.dp_udp_port, &port);
    control = udp_from_or_fail(AF_INET, "127.0.0.1", dp.dp_udp_port);
    check_dropped(&priv, 1, control);
    answered(ok, "not an echo port");
    close(priv);
    close(ok);
    close(control);
    ck_assert_int_eq(daemon_stop(&dp), 0);
}
END_TEST

/*
 * A second daemon on the same UDP address must fail to bind, not share the
 * port (SO_REUSEADDR on UDP would let it take some of the datagrams).
 */
START_TEST(test_udp_port_in_use)
{
    struct daemon_proc first, second;
    char ini[256], want[128];
    int status = -1;

    start_or_fail(&first, guard_ini);
    snprintf(ini, sizeof(ini), "[tcp]\nenabled = no\n[udp]\nlisten = 127.0.0.1:%d\n",
             first.dp_udp_port);
    ck_assert_int_eq(daemon_start(&second, ini), -ECHILD);
    status = second.dp_status;
    ck_assert_msg(status != 0, "the second daemon exited %d", status);
    snprintf(want, sizeof(want), "cannot listen on udp 127.0.0.1:%d: bind: Address already in use",
             first.dp_udp_port);
    /* The log may reach the file a moment after the exit. */
    for (long long end = now_ms() + 5000; !daemon_log_contains(&second, want) && now_ms() < end;)
        usleep(10 * 1000);
    if (!daemon_log_contains(&second, want))
        daemon_dump_log(&second);
    ck_assert_msg(daemon_log_contains(&second, want), "no '%s' in the log", want);
    daemon_stop(&second);
    ck_assert_int_eq(daemon_stop(&first), 0);
}
END_TEST

static Suite *
udpguard_suite(void)
{
    Suite *s = suite_create("udpguard");
    TCase *tc = tcase_create("udpguard");

    tcase_add_test(tc, test_guard_drops_privileged);
    tcase_add_test(tc, test_guard_drops_privileged_ipv6);
    tcase_add_test(tc, test_guard_off);
    tcase_add_test(tc, test_rate_limit);
    tcase_add_test(tc, test_loop_own_port);
    tcase_add_test(tc, test_loop_two_daemons);
    tcase_add_test(tc, test_loop_slow_network);
    tcase_add_test(tc, test_loop_echo_port);
    tcase_add_test(tc, test_udp_port_in_use);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(udpguard_suite(), CK_ENV);
}
