/* test-proxy.c: the PROXY protocol header parser and address lists (src/upechod/proxy.c). */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "check-main.h"
#include "proxy.h"

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A v2 header in buf: version/command, family/protocol, then alen bytes of addr; its length. */
static size_t
v2(uint8_t *buf, unsigned vc, unsigned fam, const void *addr, size_t alen)
{
    memcpy(buf, sig, 12);
    buf[12] = (uint8_t)vc;
    buf[13] = (uint8_t)fam;
    buf[14] = (uint8_t)(alen >> 8);
    buf[15] = (uint8_t)alen;
    if (alen > 0)
        memcpy(buf + 16, addr, alen);
    return 16 + alen;
}

/*
 * buf[0..len) is a whole header of hlen bytes (the rest is payload): the
 * parse is DONE with that length, and every shorter prefix of the header
 * asks for more.
 */
static void
check_done(const uint8_t *buf, size_t len, size_t hlen, struct proxy_header *ph)
{
    const char *why = "unset";

    ck_assert_int_eq(proxy_parse(buf, len, ph, &why), PROXY_DONE);
    ck_assert_ptr_null(why);
    ck_assert_uint_eq(ph->ph_len, hlen);
    for (size_t i = 0; i < hlen; i++) {
        struct proxy_header tmp;

        ck_assert_msg(proxy_parse(buf, i, &tmp, &why) == PROXY_MORE,
                      "a prefix of %zu of %zu bytes is not PROXY_MORE: %s", i, hlen,
                      why ? why : "");
    }
}

static void
check_v1_done(const char *text, struct proxy_header *ph)
{
    check_done((const uint8_t *)text, strlen(text), strlen(text), ph);
    ck_assert_int_eq(ph->ph_version, 1);
}

/* buf fails with exactly the reason want. */
static void
check_error(const uint8_t *buf, size_t len, const char *want)
{
    struct proxy_header ph;
    const char *why = NULL;

    ck_assert_int_eq(proxy_parse(buf, len, &ph, &why), PROXY_ERROR);
    ck_assert_ptr_nonnull(why);
    ck_assert_str_eq(why, want);
}

static void
check_v1_error(const char *text, const char *want)
{
    check_error((const uint8_t *)text, strlen(text), want);
}

/* The printed address and port of sa. */
static const char *
fmt(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    char a[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

        inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
        snprintf(buf, size, "%s:%u", a, ntohs(s->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

        inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
        snprintf(buf, size, "[%s]:%u", a, ntohs(s->sin6_port));
    } else if (ss->ss_family == AF_UNIX) {
        snprintf(buf, size, "unix:%s", ((const struct sockaddr_un *)ss)->sun_path);
    } else {
        snprintf(buf, size, "family %d", ss->ss_family);
    }
    return buf;
}

static void
check_addrs(const struct proxy_header *ph, const char *src, const char *dst)
{
    char b[256];

    ck_assert(!ph->ph_local);
    ck_assert_str_eq(fmt(&ph->ph_src, b, sizeof(b)), src);
    ck_assert_str_eq(fmt(&ph->ph_dst, b, sizeof(b)), dst);
}

/* The spec's v1 examples, 2.1. */
START_TEST(test_proxy_v1)
{
    static const char tcp6_max[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    static const char unknown_max[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    struct proxy_header ph;
    char buf[256];

    check_v1_done("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", &ph);
    check_addrs(&ph, "255.255.255.255:65535", "255.255.255.255:65535");
    check_v1_done("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", &ph);
    check_addrs(&ph, "192.168.0.1:56324", "192.168.0.11:443");
    ck_assert_uint_eq(ph.ph_src_len, sizeof(struct sockaddr_in));

    /* The spec counts it: 104 bytes. */
    ck_assert_uint_eq(strlen(tcp6_max), 104);
    check_v1_done(tcp6_max, &ph);
    check_addrs(&ph, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    check_v1_done("PROXY TCP6 2001:db8::1 ::1 0 9090\r\n", &ph);
    check_addrs(&ph, "[2001:db8::1]:0", "[::1]:9090");
    ck_assert_uint_eq(ph.ph_src_len, sizeof(struct sockaddr_in6));

    check_v1_done("PROXY UNKNOWN\r\n", &ph);
    ck_assert(ph.ph_local);
    ck_assert_uint_eq(strlen(unknown_max), PROXY_V1_MAX);
    check_v1_done(unknown_max, &ph);
    ck_assert(ph.ph_local);

    /* Payload after the header, even in the same read, is not part of it. */
    snprintf(buf, sizeof(buf), "PROXY TCP4 10.0.0.1 10.0.0.2 1000 2000\r\nhello\r\n");
    check_done((const uint8_t *)buf, strlen(buf), strlen(buf) - 7, &ph);
    check_addrs(&ph, "10.0.0.1:1000", "10.0.0.2:2000");
    snprintf(buf, sizeof(buf), "PROXY UNKNOWN\r\nPROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n");
    check_done((const uint8_t *)buf, strlen(buf), 15, &ph);
    ck_assert(ph.ph_local);
}
END_TEST

START_TEST(test_proxy_v1_errors)
{
    char buf[256];

    check_v1_error("GET / HTTP/1.0\r\n\r\n", "no PROXY header signature");
    check_v1_error("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY header signature");
    check_v1_error("PROXYTCP4", "no PROXY header signature");
    check_v1_error("PROX\n", "no PROXY header signature");
    check_v1_error("\r\n\r\nhello", "no PROXY header signature");

    /* 107 bytes without a CRLF end it; so does a CRLF that would make it 108. */
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    check_error((const uint8_t *)buf, PROXY_V1_MAX, "v1: no CRLF within the first 107 bytes");
    {
        struct proxy_header ph;
        const char *why;

        ck_assert_int_eq(proxy_parse((const uint8_t *)buf, PROXY_V1_MAX - 1, &ph, &why),
                         PROXY_MORE);
    }
    memcpy(buf + PROXY_V1_MAX - 1, "\r\n", 2);
    check_error((const uint8_t *)buf, PROXY_V1_MAX + 1, "v1: no CRLF within the first 107 bytes");
    check_error((const uint8_t *)buf, sizeof(buf), "v1: no CRLF within the first 107 bytes");

    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1: the line ends in LF without CR");
    check_v1_error("PROXY UNKNOWN\n", "v1: the line ends in LF without CR");
    check_error((const uint8_t *)"PROXY UNKNOWN \0\r\n", 17, "v1: NUL byte in the header");
    check_error((const uint8_t *)"PROXY TCP4 1.2.3.4\0005.6.7.8 1 2\r\n", 32,
                "v1: NUL byte in the header");

    check_v1_error("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                   "v1: protocol is not TCP4, TCP6 or UNKNOWN");
    check_v1_error("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
                   "v1: protocol is not TCP4, TCP6 or UNKNOWN");
    check_v1_error("PROXY UNKNOWNX\r\n", "v1: protocol is not TCP4, TCP6 or UNKNOWN");
    check_v1_error("PROXY \r\n", "v1: protocol is not TCP4, TCP6 or UNKNOWN");
    check_v1_error("PROXY TCP4\r\n", "v1: protocol is not TCP4, TCP6 or UNKNOWN");

    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                   "v1: expected source, destination and two ports, one space apart");
    check_v1_error("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
                   "v1: expected source, destination and two ports, one space apart");
    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n",
                   "v1: expected source, destination and two ports, one space apart");
    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1: text after the destination port");
    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "v1: text after the destination port");

    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "v1: bad source port");
    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "v1: bad source port");
    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "v1: bad source port");
    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n", "v1: bad source port");
    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 000001 2\r\n", "v1: bad source port");
    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "v1: bad destination port");
    check_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "v1: bad destination port");

    check_v1_error("PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "v1: bad source address");
    check_v1_error("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "v1: bad source address");
    check_v1_error("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "v1: bad source address");
    check_v1_error("PROXY TCP4 localhost 5.6.7.8 1 2\r\n", "v1: bad source address");
    check_v1_error("PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "v1: bad destination address");
    check_v1_error("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "v1: bad source address");
    check_v1_error("PROXY TCP6 ::1 ::g 1 2\r\n", "v1: bad destination address");
    check_v1_error("PROXY TCP6 [::1] ::1 1 2\r\n", "v1: bad source address");
}
END_TEST

/* The spec's v2 address blocks, 2.2, with and without TLVs after them. */
START_TEST(test_proxy_v2)
{
    uint8_t buf[PROXY_MAX + 64], addr[PROXY_V2_MAX_LEN];
    struct proxy_header ph;
    size_t n;

    /* PROXY, TCP over IPv4: 192.0.2.1:56324 to 198.51.100.7:443. */
    memcpy(addr, (const uint8_t[]){192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb}, 12);
    n = v2(buf, 0x21, 0x11, addr, 12);
    check_done(buf, n, 16 + 12, &ph);
    ck_assert_int_eq(ph.ph_version, 2);
    check_addrs(&ph, "192.0.2.1:56324", "198.51.100.7:443");
    /* ... over UDP: the addresses are the same. */
    n = v2(buf, 0x21, 0x12, addr, 12);
    check_done(buf, n, 28, &ph);
    check_addrs(&ph, "192.0.2.1:56324", "198.51.100.7:443");

    /* With TLVs (a PP2_TYPE_UNIQUE_ID and a NOOP) skipped, and payload after it all. */
    memcpy(addr + 12,
           "\x05\x00\x04"
           "abcd"
           "\x04\x00\x00",
           10);
    n = v2(buf, 0x21, 0x11, addr, 22);
    memcpy(buf + n, "payload", 7);
    check_done(buf, n + 7, 38, &ph);
    check_addrs(&ph, "192.0.2.1:56324", "198.51.100.7:443");
    /* A TLV whose own length runs past the block is still only skipped with it. */
    memcpy(addr + 12, "\x05\xff\xff", 3);
    n = v2(buf, 0x21, 0x11, addr, 15);
    check_done(buf, n, 31, &ph);

    /* TCP over IPv6: [2001:db8::1]:1 to [::1]:65535. */
    memset(addr, 0, 36);
    inet_pton(AF_INET6, "2001:db8::1", addr);
    inet_pton(AF_INET6, "::1", addr + 16);
    memcpy(addr + 32, "\x00\x01\xff\xff", 4);
    n = v2(buf, 0x21, 0x21, addr, 36);
    check_done(buf, n, 52, &ph);
    check_addrs(&ph, "[2001:db8::1]:1", "[::1]:65535");
    n = v2(buf, 0x21, 0x22, addr, 36 + 100);
    check_done(buf, n, 152, &ph);
    check_addrs(&ph, "[2001:db8::1]:1", "[::1]:65535");

    /* Unix stream and datagram: two 108-byte paths. */
    memset(addr, 0, 216);
    strcpy((char *)addr, "/run/client.sock");
    strcpy((char *)addr + 108, "/run/upechod/upechod.sock");
    n = v2(buf, 0x21, 0x31, addr, 216);
    check_done(buf, n, 232, &ph);
    check_addrs(&ph, "unix:/run/client.sock", "unix:/run/upechod/upechod.sock");
    n = v2(buf, 0x21, 0x32, addr, 216);
    check_done(buf, n, 232, &ph);
    /* A path that fills its 108 bytes is cut, never read past. */
    memset(addr, 'p', 216);
    n = v2(buf, 0x21, 0x31, addr, 216);
    check_done(buf, n, 232, &ph);
    ck_assert_uint_eq(strlen(((struct sockaddr_un *)&ph.ph_src)->sun_path), 107);

    /* UNSPEC: no addresses, whatever the block holds; the connection's own stand. */
    n = v2(buf, 0x21, 0x00, NULL, 0);
    check_done(buf, n, 16, &ph);
    ck_assert(ph.ph_local);
    n = v2(buf, 0x21, 0x00, addr, 20);
    check_done(buf, n, 36, &ph);
    ck_assert(ph.ph_local);
    /* An UNSPEC family or protocol with a known other half falls back to UNSPEC. */
    static const unsigned unspec[] = {0x01, 0x02, 0x10, 0x20, 0x30};
    for (size_t i = 0; i < sizeof(unspec) / sizeof(unspec[0]); i++) {
        n = v2(buf, 0x21, unspec[i], addr, 12);
        check_done(buf, n, 28, &ph);
        ck_assert(ph.ph_local);
    }

    /* LOCAL (health checks): the family is ignored, even one that is not valid. */
    n = v2(buf, 0x20, 0x00, NULL, 0);
    check_done(buf, n, 16, &ph);
    ck_assert(ph.ph_local);
    n = v2(buf, 0x20, 0x11, addr, 12);
    check_done(buf, n, 28, &ph);
    ck_assert(ph.ph_local);
    n = v2(buf, 0x20, 0x77, addr, 3);
    check_done(buf, n, 19, &ph);
    ck_assert(ph.ph_local);

    /* The longest block accepted. */
    memset(addr, 0, sizeof(addr));
    n = v2(buf, 0x21, 0x11, addr, PROXY_V2_MAX_LEN);
    check_done(buf, n, PROXY_MAX, &ph);
}
END_TEST

START_TEST(test_proxy_v2_errors)
{
    uint8_t buf[PROXY_MAX + 64], addr[256] = {0};
    struct proxy_header ph;
    const char *why;
    size_t n;

    /* The signature, wrong in any byte. */
    for (size_t i = 0; i < 12; i++) {
        n = v2(buf, 0x21, 0x11, addr, 12);
        buf[i] ^= 0x20;
        check_error(buf, n, "no PROXY header signature");
        check_error(buf, i + 1, "no PROXY header signature");
    }
    n = v2(buf, 0x11, 0x11, addr, 12);
    check_error(buf, n, "v2: version is not 2");
    check_error(buf, 16, "v2: version is not 2");
    n = v2(buf, 0x31, 0x11, addr, 12);
    check_error(buf, n, "v2: version is not 2");
    n = v2(buf, 0x01, 0x11, addr, 12);
    check_error(buf, n, "v2: version is not 2");
    n = v2(buf, 0x22, 0x11, addr, 12);
    check_error(buf, n, "v2: command is neither LOCAL nor PROXY");
    n = v2(buf, 0x2f, 0x11, addr, 12);
    check_error(buf, n, "v2: command is neither LOCAL nor PROXY");

    /* A length over the bound is refused from the fixed part alone. */
    memset(buf, 0, sizeof(buf));
    v2(buf, 0x21, 0x11, NULL, 0);
    buf[14] = (PROXY_V2_MAX_LEN + 1) >> 8;
    buf[15] = (PROXY_V2_MAX_LEN + 1) & 0xff;
    check_error(buf, 16, "v2: address block longer than 2048 bytes");
    buf[14] = buf[15] = 0xff;
    check_error(buf, 16, "v2: address block longer than 2048 bytes");

    static const unsigned bad_fam[] = {0x03, 0x13, 0x23, 0x33, 0x40, 0x41, 0xf1, 0xff};
    for (size_t i = 0; i < sizeof(bad_fam) / sizeof(bad_fam[0]); i++) {
        n = v2(buf, 0x21, bad_fam[i], addr, 216);
        check_error(buf, n, "v2: unknown address family or protocol");
    }
    n = v2(buf, 0x21, 0x11, addr, 11);
    check_error(buf, n, "v2: address block too short for its family");
    n = v2(buf, 0x21, 0x21, addr, 35);
    check_error(buf, n, "v2: address block too short for its family");
    n = v2(buf, 0x21, 0x21, addr, 12);
    check_error(buf, n, "v2: address block too short for its family");
    n = v2(buf, 0x21, 0x31, addr, 215);
    check_error(buf, n, "v2: address block too short for its family");

    /* Truncated: any prefix waits for more; the caller ends it on EOF or timeout. */
    n = v2(buf, 0x21, 0x21, addr, 36);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(proxy_parse(buf, i, &ph, &why), PROXY_MORE);
}
END_TEST

/* The parser's bound: never PROXY_MORE once PROXY_MAX bytes are there. */
START_TEST(test_proxy_bounded)
{
    static uint8_t buf[PROXY_MAX];
    struct proxy_header ph;
    const char *why;

    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "PROXY ", 6);
    ck_assert_int_eq(proxy_parse(buf, sizeof(buf), &ph, &why), PROXY_ERROR);
    memset(buf, 0, sizeof(buf));
    v2(buf, 0x21, 0x11, NULL, 0);
    buf[14] = PROXY_V2_MAX_LEN >> 8;
    buf[15] = PROXY_V2_MAX_LEN & 0xff;
    ck_assert_int_eq(proxy_parse(buf, sizeof(buf) - 1, &ph, &why), PROXY_MORE);
    ck_assert_int_eq(proxy_parse(buf, sizeof(buf), &ph, &why), PROXY_DONE);
    ck_assert_int_eq(proxy_parse(buf, 0, &ph, &why), PROXY_MORE);
}
END_TEST

/* Address lists: what proxy_protocol_from holds. */
START_TEST(test_proxy_net)
{
    struct proxy_net nets[4];
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    const char *why;

    ck_assert_int_eq(proxy_net_parse("127.0.0.0/8", &nets[0], &why), 0);
    ck_assert_int_eq(proxy_net_parse("2001:db8::/33", &nets[1], &why), 0);
    ck_assert_int_eq(proxy_net_parse("[::1]", &nets[2], &why), 0);
    ck_assert_int_eq(proxy_net_parse("192.0.2.7", &nets[3], &why), 0);
    ck_assert_uint_eq(nets[1].pn_prefix, 33);
    ck_assert_uint_eq(nets[3].pn_prefix, 32);

    inet_pton(AF_INET, "127.255.0.9", &sin.sin_addr);
    ck_assert(proxy_net_match(nets, 4, (struct sockaddr *)&sin));
    ck_assert(!proxy_net_match(nets + 1, 3, (struct sockaddr *)&sin));
    inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
    ck_assert(proxy_net_match(nets, 4, (struct sockaddr *)&sin));
    inet_pton(AF_INET, "192.0.2.8", &sin.sin_addr);
    ck_assert(!proxy_net_match(nets, 4, (struct sockaddr *)&sin));
    inet_pton(AF_INET6, "2001:db8:7fff::1", &sin6.sin6_addr);
    ck_assert(proxy_net_match(nets, 4, (struct sockaddr *)&sin6));
    inet_pton(AF_INET6, "2001:db8:8000::1", &sin6.sin6_addr);
    ck_assert(!proxy_net_match(nets, 4, (struct sockaddr *)&sin6));
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6.sin6_addr);
    ck_assert(proxy_net_match(nets, 4, (struct sockaddr *)&sin6));
    inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
    ck_assert(proxy_net_match(nets, 4, (struct sockaddr *)&sin6));
    ck_assert(!proxy_net_match(nets, 4, (struct sockaddr *)&sun));
    ck_assert(!proxy_net_match(nets, 0, (struct sockaddr *)&sin6));

    ck_assert_int_eq(proxy_net_parse("2001:db8:4000::/33", &nets[0], &why), -EINVAL);
    ck_assert_str_eq(why, "address has bits set past the prefix length");
    ck_assert_int_eq(proxy_net_parse("0.0.0.0/0", &nets[0], &why), 0);
    ck_assert_int_eq(proxy_net_parse("1.0.0.0/0", &nets[0], &why), -EINVAL);
    ck_assert_int_eq(proxy_net_parse("[::1", &nets[0], &why), -EINVAL);
    ck_assert_int_eq(proxy_net_parse("", &nets[0], &why), -EINVAL);
}
END_TEST

static Suite *
proxy_suite(void)
{
    Suite *s = suite_create("proxy");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_proxy_v1);
    tcase_add_test(tc, test_proxy_v1_errors);
    tcase_add_test(tc, test_proxy_v2);
    tcase_add_test(tc, test_proxy_v2_errors);
    tcase_add_test(tc, test_proxy_bounded);
    tcase_add_test(tc, test_proxy_net);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(proxy_suite(), CK_NORMAL);
}
