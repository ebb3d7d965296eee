/* proxy.c: the PROXY protocol (HAProxy's v1 text and v2 binary header) in front of a stream. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log.h"
#include "number.h"
#include "proxy.h"
#include "stream.h"

/* The 12 bytes every v2 header begins with; no text protocol starts this way. */
static const uint8_t proxy_v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A decimal port, 0 to 65535, digits only; -1 if it is not one. */
static int
proxy_port(const char *s)
{
    unsigned long long v;

    if (*s < '0' || *s > '9' || strlen(s) > 5 || number_parse(s, 10, &v) != 0 || v > 65535)
        return -1;
    return (int)v;
}

/* Cut the next space-separated field off *s; NULL when there is none or it is empty. */
static char *
proxy_field(char **s)
{
    char *f = *s, *sp;

    if (f == NULL || *f == '\0' || *f == ' ')
        return NULL;
    if ((sp = strchr(f, ' ')) != NULL) {
        *sp = '\0';
        *s = sp + 1;
    } else {
        *s = NULL;
    }
    return f;
}

/*
 * v1: "PROXY TCP4 SRC DST SPORT DPORT\r\n", TCP6 alike, or "PROXY UNKNOWN"
 * followed by anything up to the CRLF; at most 107 bytes with the CRLF.
 */
static enum proxy_result
proxy_parse_v1(const uint8_t *buf, size_t len, struct proxy_header *out, const char **why)
{
    char line[PROXY_V1_MAX + 1], *s, *f[4];
    const uint8_t *lf = memchr(buf, '\n', len < PROXY_V1_MAX ? len : PROXY_V1_MAX);
    size_t n;
    int af, sport, dport;

    if (lf == NULL) {
        if (len >= PROXY_V1_MAX) {
            *why = "v1: no CRLF within the first 107 bytes";
            return PROXY_ERROR;
        }
        return PROXY_MORE;
    }
    if (lf == buf || lf[-1] != '\r') {
        *why = "v1: the line ends in LF without CR";
        return PROXY_ERROR;
    }
    n = (size_t)(lf - 1 - buf);
    if (memchr(buf, '\0', n) != NULL) {
        *why = "v1: NUL byte in the header";
        return PROXY_ERROR;
    }
    memcpy(line, buf, n);
    line[n] = '\0';
    out->ph_len = n + 2;
    out->ph_version = 1;

    s = line + 6;
    if (strncmp(s, "UNKNOWN", 7) == 0 && (s[7] == '\0' || s[7] == ' ')) {
        out->ph_local = true;
        return PROXY_DONE;
    }
    if (strncmp(s, "TCP4 ", 5) == 0)
        af = AF_INET;
    else if (strncmp(s, "TCP6 ", 5) == 0)
        af = AF_INET6;
    else {
        *why = "v1: protocol is not TCP4, TCP6 or UNKNOWN";
        return PROXY_ERROR;
    }
    s += 5;
    for (int i = 0; i < 4; i++) {
        if ((f[i] = proxy_field(&s)) == NULL) {
            *why = "v1: expected source, destination and two ports, one space apart";
            return PROXY_ERROR;
        }
    }
    if (s != NULL) {
        *why = "v1: text after the destination port";
        return PROXY_ERROR;
    }
    if ((sport = proxy_port(f[2])) < 0) {
        *why = "v1: bad source port";
        return PROXY_ERROR;
    }
    if ((dport = proxy_port(f[3])) < 0) {
        *why = "v1: bad destination port";
        return PROXY_ERROR;
    }
    if (af == AF_INET) {
        struct sockaddr_in *src = (struct sockaddr_in *)&out->ph_src;
        struct sockaddr_in *dst = (struct sockaddr_in *)&out->ph_dst;

        if (inet_pton(AF_INET, f[0], &src->sin_addr) != 1) {
            *why = "v1: bad source address";
            return PROXY_ERROR;
        }
        if (inet_pton(AF_INET, f[1], &dst->sin_addr) != 1) {
            *why = "v1: bad destination address";
            return PROXY_ERROR;
        }
        src->sin_family = dst->sin_family = AF_INET;
        src->sin_port = htons((uint16_t)sport);
        dst->sin_port = htons((uint16_t)dport);
        out->ph_src_len = out->ph_dst_len = sizeof(*src);
    } else {
        struct sockaddr_in6 *src = (struct sockaddr_in6 *)&out->ph_src;
        struct sockaddr_in6 *dst = (struct sockaddr_in6 *)&out->ph_dst;

        if (inet_pton(AF_INET6, f[0], &src->sin6_addr) != 1) {
            *why = "v1: bad source address";
            return PROXY_ERROR;
        }
        if (inet_pton(AF_INET6, f[1], &dst->sin6_addr) != 1) {
            *why = "v1: bad destination address";
            return PROXY_ERROR;
        }
        src->sin6_family = dst->sin6_family = AF_INET6;
        src->sin6_port = htons((uint16_t)sport);
        dst->sin6_port = htons((uint16_t)dport);
        out->ph_src_len = out->ph_dst_len = sizeof(*src);
    }
    return PROXY_DONE;
}

/* One v2 unix address: 108 bytes, the path NUL-terminated unless it fills them. */
static socklen_t
proxy_v2_unix(const uint8_t *p, struct sockaddr_storage *ss)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)ss;
    size_t n = sizeof(sun->sun_path) - 1;

    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, p, n);
    sun->sun_path[n] = '\0';
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(sun->sun_path) + 1);
}

/*
 * v2: the signature, version and command, family and protocol, a 16-bit
 * length, then that many bytes: the addresses of the family, then TLVs,
 * which are skipped whole with the rest of the block.
 */
static enum proxy_result
proxy_parse_v2(const uint8_t *buf, size_t len, struct proxy_header *out, const char **why)
{
    unsigned vc = buf[12], fam = buf[13];
    size_t alen = (size_t)buf[14] << 8 | buf[15], need;
    const uint8_t *a = buf + PROXY_V2_FIXED;

    if ((vc >> 4) != 2) {
        *why = "v2: version is not 2";
        return PROXY_ERROR;
    }
    if ((vc & 0xf) > 1) {
        *why = "v2: command is neither LOCAL nor PROXY";
        return PROXY_ERROR;
    }
    if (alen > PROXY_V2_MAX_LEN) {
        *why = "v2: address block longer than 2048 bytes";
        return PROXY_ERROR;
    }
    if (len < PROXY_V2_FIXED + alen)
        return PROXY_MORE;
    out->ph_len = PROXY_V2_FIXED + alen;
    out->ph_version = 2;
    /* LOCAL: the balancer speaking for itself; the spec says to ignore the family. */
    if ((vc & 0xf) == 0) {
        out->ph_local = true;
        return PROXY_DONE;
    }
    if ((fam >> 4) > 3 || (fam & 0xf) > 2) {
        *why = "v2: unknown address family or protocol";
        return PROXY_ERROR;
    }
    /* UNSPEC in either half: the spec says to use the connection's own addresses. */
    if ((fam >> 4) == 0 || (fam & 0xf) == 0) {
        out->ph_local = true;
        return PROXY_DONE;
    }
    switch (fam) {
    case 0x11: /* TCP over IPv4 */
    case 0x12: /* UDP over IPv4 */
        need = 12;
        break;
    case 0x21: /* TCP over IPv6 */
    case 0x22: /* UDP over IPv6 */
        need = 36;
        break;
    case 0x31: /* unix stream */
    case 0x32: /* unix datagram */
        need = 216;
        break;
    default:
        *why = "v2: unknown address family or protocol";
        return PROXY_ERROR;
    }
    if (alen < need) {
        *why = "v2: address block too short for its family";
        return PROXY_ERROR;
    }
    if (fam >> 4 == 1) {
        struct sockaddr_in *src = (struct sockaddr_in *)&out->ph_src;
        struct sockaddr_in *dst = (struct sockaddr_in *)&out->ph_dst;

        src->sin_family = dst->sin_family = AF_INET;
        memcpy(&src->sin_addr, a, 4);
        memcpy(&dst->sin_addr, a + 4, 4);
        memcpy(&src->sin_port, a + 8, 2);
        memcpy(&dst->sin_port, a + 10, 2);
        out->ph_src_len = out->ph_dst_len = sizeof(*src);
    } else if (fam >> 4 == 2) {
        struct sockaddr_in6 *src = (struct sockaddr_in6 *)&out->ph_src;
        struct sockaddr_in6 *dst = (struct sockaddr_in6 *)&out->ph_dst;

        src->sin6_family = dst->sin6_family = AF_INET6;
        memcpy(&src->sin6_addr, a, 16);
        memcpy(&dst->sin6_addr, a + 16, 16);
        memcpy(&src->sin6_port, a + 32, 2);
        memcpy(&dst->sin6_port, a + 34, 2);
        out->ph_src_len = out->ph_dst_len = sizeof(*src);
    } else {
        out->ph_src_len = proxy_v2_unix(a, &out->ph_src);
        out->ph_dst_len = proxy_v2_unix(a + 108, &out->ph_dst);
    }
    return PROXY_DONE;
}

/*
 * Parse a PROXY header at the start of buf, a pure function of the bytes:
 * PROXY_MORE while they are a valid beginning of one (never once PROXY_MAX
 * bytes are there), PROXY_DONE with *out filled, or PROXY_ERROR with *why
 * set to a static string naming the fault.
 */
enum proxy_result
proxy_parse(const uint8_t *buf, size_t len, struct proxy_header *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    *why = NULL;
    if (memcmp(buf, "PROXY ", len < 6 ? len : 6) == 0)
        return len < 6 ? PROXY_MORE : proxy_parse_v1(buf, len, out, why);
    if (memcmp(buf, proxy_v2_sig, len < 12 ? len : 12) == 0)
        return len < PROXY_V2_FIXED ? PROXY_MORE : proxy_parse_v2(buf, len, out, why);
    *why = "no PROXY header signature";
    return PROXY_ERROR;
}

/*
 * "ADDRESS" or "ADDRESS/BITS", IPv4 or IPv6 (bare or in brackets).  Bits
 * set past the prefix are refused: "10.0.0.1/8" is more likely a typo than
 * a wish for 10.0.0.0/8.  Returns 0, or -EINVAL with *why set.
 */
int
proxy_net_parse(const char *text, struct proxy_net *out, const char **why)
{
    char host[64];
    const char *slash = strchr(text, '/'), *hs = text;
    size_t hl = slash != NULL ? (size_t)(slash - text) : strlen(text), nbytes;
    unsigned long long bits;

    memset(out, 0, sizeof(*out));
    if (hl >= 2 && hs[0] == '[' && hs[hl - 1] == ']') {
        hs++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(host)) {
        *why = "expected an IPv4 or IPv6 address, optionally with /PREFIX";
        return -EINVAL;
    }
    memcpy(host, hs, hl);
    host[hl] = '\0';
    if (inet_pton(AF_INET, host, out->pn_addr) == 1) {
        out->pn_family = AF_INET;
        out->pn_prefix = 32;
    } else if (inet_pton(AF_INET6, host, out->pn_addr) == 1) {
        out->pn_family = AF_INET6;
        out->pn_prefix = 128;
    } else {
        *why = "not an IPv4 or IPv6 address (host names are not looked up)";
        return -EINVAL;
    }
    if (slash != NULL) {
        if (slash[1] < '0' || slash[1] > '9' || number_parse(slash + 1, 10, &bits) != 0 ||
            bits > out->pn_prefix) {
            *why = out->pn_family == AF_INET ? "prefix length must be 0 to 32"
                                             : "prefix length must be 0 to 128";
            return -EINVAL;
        }
        out->pn_prefix = (unsigned)bits;
    }
    nbytes = out->pn_family == AF_INET ? 4 : 16;
    for (size_t i = 0; i < nbytes; i++) {
        unsigned keep = out->pn_prefix >= 8 * (i + 1) ? 8
                        : out->pn_prefix > 8 * i      ? out->pn_prefix - 8 * (unsigned)i
                                                      : 0;
        uint8_t mask = (uint8_t)(0xff00 >> keep);

        if (out->pn_addr[i] & ~mask) {
            *why = "address has bits set past the prefix length";
            return -EINVAL;
        }
    }
    return 0;
}

/* Whether the first `prefix` bits of a and b are equal. */
static bool
proxy_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;

    if (memcmp(a, b, whole) != 0)
        return false;
    return rest == 0 || ((a[whole] ^ b[whole]) & (uint8_t)(0xff00 >> rest)) == 0;
}

/* Whether sa (IPv4, IPv6, or IPv4 mapped into IPv6) falls in one of the n nets. */
bool
proxy_net_match(const struct proxy_net *nets, size_t n, const struct sockaddr *sa)
{
    const uint8_t *v4 = NULL, *v6 = NULL;

    if (sa->sa_family == AF_INET) {
        v4 = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        v6 = a->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            v4 = a->s6_addr + 12;
    }
    for (size_t i = 0; i < n; i++) {
        if (nets[i].pn_family == AF_INET && v4 != NULL &&
            proxy_prefix_equal(nets[i].pn_addr, v4, nets[i].pn_prefix))
            return true;
        if (nets[i].pn_family == AF_INET6 && v6 != NULL &&
            proxy_prefix_equal(nets[i].pn_addr, v6, nets[i].pn_prefix))
            return true;
    }
    return false;
}

/*
 * A connection whose header phase failed: count it, close it, and say why,
 * at most once a second so that a flood of bad clients cannot flood the log.
 */
static void
proxy_refuse(struct stream *st, uint64_t *counter, const char *why)
{
    struct stats_budget *budget = st->st_env->se_proxy_log;
    struct timespec ts;
    uint64_t unlogged;
    char peer[ADDR_STRLEN];

    STATS_ADD(*counter, 1);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* The budget is the daemon's: every worker's failures share one line a second. */
    if (stats_budget_take(budget, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000)) {
        if ((unlogged = stats_budget_unlogged(budget)) > 0)
            log_warn("%s %s: closed: %s (and %llu more PROXY header failures since the last "
                     "report)",
                     transport_name(st->st_transport), stream_peer(st, peer, sizeof(peer)), why,
                     (unsigned long long)unlogged);
        else
            log_warn("%s %s: closed: %s", transport_name(st->st_transport),
                     stream_peer(st, peer, sizeof(peer)), why);
    }
    stream_free(st);
}

/* The header did not arrive in time. */
static void
proxy_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct stream *st = arg;

    proxy_refuse(st, &st->st_env->se_stats->ss_proxy_timeouts,
                 "no complete PROXY header within 5 s");
}

/* The peer may not send a header: refused from the loop, after stream_new() returned. */
static void
proxy_refused_cb(evutil_socket_t fd, short what, void *arg)
{
    struct stream *st = arg;

    proxy_refuse(st, &st->st_env->se_stats->ss_proxy_refused,
                 "not in proxy_protocol_from, so it may not send a PROXY header");
}

/* Whether st waits to be closed by proxy_refused_cb(), which then must be what ends it. */
static bool
proxy_is_refused(struct stream *st)
{
    return event_get_callback(st->st_extra->sx_proxy_timer) == proxy_refused_cb;
}

/* Input before the header is complete: parse what is there, then hand over to the echo. */
static void
proxy_read_cb(struct bufferevent *bev, void *arg)
{
    struct stream *st = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    char via[ADDR_STRLEN] = "", peer[ADDR_STRLEN];
    struct proxy_header ph;
    const char *why;
    uint8_t *p;

    if (proxy_is_refused(st))
        return;
    if (len > PROXY_MAX)
        len = PROXY_MAX;
    if ((p = evbuffer_pullup(in, (ssize_t)len)) == NULL) {
        log_warn("%s %s: out of memory reading a PROXY header, closing",
                 transport_name(st->st_transport), stream_peer(st, peer, sizeof(peer)));
        stream_free(st);
        return;
    }
    switch (proxy_parse(p, len, &ph, &why)) {
    case PROXY_MORE:
        return;
    case PROXY_ERROR:
        proxy_refuse(st, &st->st_env->se_stats->ss_proxy_bad, why);
        return;
    case PROXY_DONE:
        break;
    }
    evbuffer_drain(in, ph.ph_len);
    event_free(st->st_extra->sx_proxy_timer);
    st->st_extra->sx_proxy_timer = NULL;
    /* Formatted only for the debug line below. */
    if (log_get_level() >= LOG_LEVEL_DEBUG)
        stream_peer(st, via, sizeof(via));
    /* LOCAL, UNSPEC and unix addresses: the connection's own address stands. */
    if (!ph.ph_local && ph.ph_src.ss_family != AF_UNIX)
        (void)stream_set_peer(st, (struct sockaddr *)&ph.ph_src, ph.ph_src_len); /* has its extra */
    /*
     * max_connections_per_source counts the client the header names; a
     * header that names none (LOCAL health checks, UNSPEC) counts against
     * the balancer itself, so that no connection goes uncounted.
     */
    if (st->st_transport == TRANSPORT_TCP &&
        st->st_env->se_admit(st, &st->st_extra->sx_addr.a_ss.sa, st->st_extra->sx_addr.a_len,
                             st->st_env->se_arg) != 0) {
        stream_free(st);
        return;
    }
    STATS_ADD(st->st_env->se_stats->ss_proxy_accepted, 1);
    log_debug("%s %s: PROXY v%d header from %s%s", transport_name(st->st_transport),
              stream_peer(st, peer, sizeof(peer)), ph.ph_version, via,
              ph.ph_local ? ", naming no client" : "");
    stream_begin_echo(st);
}

/* The connection ended or failed before its header was complete. */
static void
proxy_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct stream *st = arg;

    if (proxy_is_refused(st))
        return;
    if (what & BEV_EVENT_TIMEOUT) {
        proxy_refuse(st, &st->st_env->se_stats->ss_proxy_timeouts, "idle before its PROXY header");
        return;
    }
    proxy_refuse(st, &st->st_env->se_stats->ss_proxy_truncated,
                 evbuffer_get_length(bufferevent_get_input(bev)) == 0
                     ? "closed before sending a PROXY header"
                     : "closed in the middle of its PROXY header");
}

/*
 * Begin a connection on a listener with proxy_protocol = yes: its first
 * bytes must be a header, within PROXY_TIMEOUT_SEC.  A TCP peer not in
 * proxy_protocol_from is closed at once, from the loop, since the caller
 * still holds st.  AF_UNIX peers have no address to check: whoever may open
 * the socket may send a header.  A TCP stream's address is kept already
 * (stream_set_peer()).  Returns 0, or -ENOMEM with st unchanged but for
 * its extra state.
 */
int
proxy_stream_start(struct stream *st)
{
    const struct upechod_config *cf = st->st_env->se_conf;
    struct timeval tv = {.tv_sec = PROXY_TIMEOUT_SEC, .tv_usec = 0};
    struct stream_extra *sx = stream_extra(st);
    bool allowed;

    if (sx == NULL)
        return -ENOMEM;
    allowed = st->st_transport != TRANSPORT_TCP ||
              proxy_net_match(cf->cf_tcp_proxy_from, cf->cf_tcp_nproxy_from, &sx->sx_addr.a_ss.sa);
    sx->sx_proxy_timer =
        evtimer_new(st->st_env->se_base, allowed ? proxy_timeout_cb : proxy_refused_cb, st);
    if (sx->sx_proxy_timer == NULL)
        return -ENOMEM;
    bufferevent_setcb(st->st_bev, proxy_read_cb, NULL, proxy_event_cb, st);
    if (allowed)
        evtimer_add(sx->sx_proxy_timer, &tv);
    else
        event_active(sx->sx_proxy_timer, EV_TIMEOUT, 0);
    return 0;
}
