/* test-target.c: parsing the tools' tcp://, udp:// and unix:// targets and --source lists. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "check-main.h"
#include "target.h"

/* Parse text, which must succeed, and check kind and printed form. */
static void
check_ok(const char *text, enum target_kind kind, const char *printed)
{
    struct target t;
    const char *why = NULL;
    char buf[TARGET_STRLEN];
    int rc = target_parse(text, &t, &why);

    ck_assert_msg(rc == 0, "%s: %d (%s)", text, rc, why != NULL ? why : "");
    ck_assert_int_eq(t.t_kind, kind);
    ck_assert_str_eq(target_format(&t, buf, sizeof(buf)), printed);
}

/* Parse text, which must fail with a reason containing hint. */
static void
check_bad(const char *text, const char *hint)
{
    struct target t;
    const char *why = NULL;
    int rc = target_parse(text, &t, &why);

    ck_assert_msg(rc == -EINVAL, "%s: parsed, rc %d", text, rc);
    ck_assert_ptr_nonnull(why);
    ck_assert_msg(strstr(why, hint) != NULL, "%s: reason '%s' lacks '%s'", text, why, hint);
}

START_TEST(test_target_tcp)
{
    check_ok("tcp://127.0.0.1:7", TARGET_TCP, "tcp://127.0.0.1:7");
    check_ok("TCP://127.0.0.1:65535", TARGET_TCP, "tcp://127.0.0.1:65535");
    check_ok("tcp://localhost:7000", TARGET_TCP, "tcp://127.0.0.1:7000");
}
END_TEST

START_TEST(test_target_udp)
{
    struct target t;

    check_ok("udp://127.0.0.1:9", TARGET_UDP, "udp://127.0.0.1:9");
    ck_assert_int_eq(target_parse("udp://127.0.0.1:9", &t, NULL), 0);
    ck_assert(!target_is_stream(&t));
    ck_assert_int_eq(addr_port((struct sockaddr *)&t.t_addr.a_ss), 9);
    ck_assert_str_eq(target_kind_name(t.t_kind), "udp");
}
END_TEST

START_TEST(test_target_ipv6)
{
    struct target t;

    check_ok("tcp://[::1]:7", TARGET_TCP, "tcp://[::1]:7");
    check_ok("udp://[fe80::1]:53", TARGET_UDP, "udp://[fe80::1]:53");
    ck_assert_int_eq(target_parse("tcp://[::1]:7", &t, NULL), 0);
    ck_assert_int_eq(t.t_addr.a_ss.ss_family, AF_INET6);
    check_bad("tcp://::1:7", "brackets");
    check_bad("tcp://[::1:7", "]");
    check_bad("tcp://[::1]7", "PORT");
    check_bad("tcp://[::1]", "PORT");
}
END_TEST

START_TEST(test_target_unix)
{
    struct target t;
    const struct sockaddr_un *sun;
    char longpath[200];

    check_ok("unix:///run/upechod.sock", TARGET_UNIX, "unix:///run/upechod.sock");
    ck_assert_int_eq(target_parse("unix:///tmp/x", &t, NULL), 0);
    ck_assert(target_is_stream(&t));
    sun = (const struct sockaddr_un *)&t.t_addr.a_ss;
    ck_assert_int_eq(sun->sun_family, AF_UNIX);
    ck_assert_str_eq(sun->sun_path, "/tmp/x");
    ck_assert_int_eq(t.t_addr.a_len, offsetof(struct sockaddr_un, sun_path) + 7);
    check_bad("unix://", "missing");
    check_bad("unix://relative/sock", "absolute");
    memset(longpath, 'a', sizeof(longpath));
    memcpy(longpath, "unix:///", 8);
    longpath[sizeof(longpath) - 1] = '\0';
    check_bad(longpath, "too long");
}
END_TEST

START_TEST(test_target_bad)
{
    check_bad("http://127.0.0.1:80", "tcp://");
    check_bad("127.0.0.1:7", "tcp://");
    check_bad("", "tcp://");
    check_bad("tcp:/127.0.0.1:7", "tcp://");
    check_bad("tcp://127.0.0.1", "missing port");
    check_bad("tcp://127.0.0.1:", "port");
    check_bad("tcp://127.0.0.1:0", "1 to 65535");
    check_bad("tcp://127.0.0.1:65536", "port");
    check_bad("tcp://127.0.0.1:7x", "port");
    check_bad("tcp://127.0.0.1:7/", "port");
    check_bad("tcp://:7", "missing host");
    check_bad("tcp://", "missing host");
    check_bad("udp://*:7", "wildcard");
    check_bad("tcp://[::]:7", "wildcard");
}
END_TEST

START_TEST(test_target_sources)
{
    struct addr *list = NULL;
    size_t n = 0;
    const char *why = NULL;
    char buf[ADDR_STRLEN];

    ck_assert_int_eq(target_sources_parse("127.0.0.2-127.0.0.9", AF_INET, &list, &n, &why), 0);
    ck_assert_uint_eq(n, 8);
    ck_assert_str_eq(addr_format((struct sockaddr *)&list[0].a_ss, list[0].a_len, buf, sizeof(buf)),
                     "127.0.0.2:0");
    ck_assert_str_eq(addr_format((struct sockaddr *)&list[7].a_ss, list[7].a_len, buf, sizeof(buf)),
                     "127.0.0.9:0");
    /* Lists append, so the option can be repeated. */
    ck_assert_int_eq(
        target_sources_parse("127.0.1.1,127.0.1.255-127.0.2.0", AF_INET, &list, &n, &why), 0);
    ck_assert_uint_eq(n, 11);
    ck_assert_str_eq(
        addr_format((struct sockaddr *)&list[10].a_ss, list[10].a_len, buf, sizeof(buf)),
        "127.0.2.0:0");
    ck_assert_int_eq(target_sources_parse("::1,[::2]", AF_INET6, &list, &n, &why), 0);
    ck_assert_uint_eq(n, 13);
    ck_assert_int_eq(list[12].a_ss.ss_family, AF_INET6);

    ck_assert_int_eq(target_sources_parse("127.0.0.9-127.0.0.2", AF_INET, &list, &n, &why),
                     -EINVAL);
    ck_assert_int_eq(target_sources_parse("10.0.0.0-10.255.255.255", AF_INET, &list, &n, &why),
                     -EINVAL);
    ck_assert_int_eq(target_sources_parse("::1", AF_INET, &list, &n, &why), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "IPv4"));
    ck_assert_int_eq(target_sources_parse("127.0.0.1", AF_INET6, &list, &n, &why), -EINVAL);
    ck_assert_int_eq(target_sources_parse("::1-::2", AF_INET6, &list, &n, &why), -EINVAL);
    ck_assert_int_eq(target_sources_parse("127.0.0.1,", AF_INET, &list, &n, &why), -EINVAL);
    ck_assert_int_eq(target_sources_parse("host", AF_INET, &list, &n, &why), -EINVAL);
    ck_assert_int_eq(target_sources_parse("127.0.0.1", AF_UNIX, &list, &n, &why), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "tcp:// or udp://"));
    free(list);
}
END_TEST

static Suite *
target_suite(void)
{
    Suite *s = suite_create("target");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_target_tcp);
    tcase_add_test(tc, test_target_udp);
    tcase_add_test(tc, test_target_ipv6);
    tcase_add_test(tc, test_target_unix);
    tcase_add_test(tc, test_target_bad);
    tcase_add_test(tc, test_target_sources);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(target_suite(), CK_NORMAL);
}
