/* proxy.h: the PROXY protocol (HAProxy's v1 text and v2 binary header) in front of a stream. */
#ifndef UPECHOD_PROXY_H
#define UPECHOD_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The spec's largest v1 header, "PROXY TCP6 <2 x 39> <2 x 5>\r\n" at its longest. */
#define PROXY_V1_MAX 107
/* v2: the fixed 16 bytes, then a length field; more than this is refused. */
#define PROXY_V2_FIXED 16
#define PROXY_V2_MAX_LEN 2048
/* The most bytes any header we accept can take. */
#define PROXY_MAX (PROXY_V2_FIXED + PROXY_V2_MAX_LEN)
/* Seconds a connection has to deliver its whole header. */
#define PROXY_TIMEOUT_SEC 5

/* What proxy_parse() made of the bytes so far. */
enum proxy_result {
    PROXY_ERROR = -1, /* not a valid header; *why says what is wrong */
    PROXY_MORE = 0,   /* a valid beginning: wait for more bytes */
    PROXY_DONE = 1,   /* a whole header, ph_len bytes long */
};

/*
 * A parsed header.  ph_local is set when the header names no client: v1
 * UNKNOWN, v2 LOCAL (the balancer's health checks) and v2 UNSPEC; the
 * connection's own addresses then stand.  Otherwise ph_src and ph_dst hold
 * the client and the address it connected to (AF_INET, AF_INET6, or for v2
 * AF_UNIX).
 */
struct proxy_header {
    size_t ph_len; /* bytes the header takes at the start of the input */
    int ph_version;
    bool ph_local;
    struct sockaddr_storage ph_src;
    socklen_t ph_src_len;
    struct sockaddr_storage ph_dst;
    socklen_t ph_dst_len;
};

enum proxy_result proxy_parse(const uint8_t *buf, size_t len, struct proxy_header *out,
                              const char **why);

/* An address or CIDR prefix a PROXY header may come from: "10.0.0.0/8", "::1". */
struct proxy_net {
    int pn_family; /* AF_INET or AF_INET6 */
    uint8_t pn_addr[16];
    unsigned pn_prefix; /* leading bits that must match */
};

int proxy_net_parse(const char *text, struct proxy_net *out, const char **why);
bool proxy_net_match(const struct proxy_net *nets, size_t n, const struct sockaddr *sa);

struct stream;
int proxy_stream_start(struct stream *st);

#endif
