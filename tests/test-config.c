/* test-config.c: parsing and validating upechod.ini, and the exact error messages. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <arpa/inet.h>
#include <sched.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "check-main.h"
#include "config.h"

/* Longest line the reader accepts: inih's buffer less "\r\n\0". */
#define LINE_MAX_CHARS (INI_MAX_LINE - 3)
#define NMSGS 64

/* The error messages of one parse, as the callback received them. */
struct msgs {
    int m_n;
    char m_text[NMSGS][1024];
};

static struct msgs ms;
static struct upechod_config cf;

static void
collect(void *arg, const char *msg)
{
    struct msgs *m = arg;

    ck_assert_msg(strchr(msg, '\n') == NULL, "message is not one line: %s", msg);
    if (m->m_n < NMSGS)
        snprintf(m->m_text[m->m_n], sizeof(m->m_text[0]), "%s", msg);
    m->m_n++;
}

/* Parse text as "t.ini"; the return value must equal the number of messages. */
static int
parse(const char *text)
{
    int rc;

    memset(&ms, 0, sizeof(ms));
    rc = config_parse_string(&cf, "t.ini", text, collect, &ms);
    ck_assert_int_eq(rc, ms.m_n);
    for (int i = 0; i < ms.m_n && i < NMSGS; i++)
        ck_assert_msg(strncmp(ms.m_text[i], "t.ini:", 6) == 0, "bad prefix: %s", ms.m_text[i]);
    return rc;
}

/* Parse text, which must be valid. */
static void
parse_ok(const char *text)
{
    int rc = parse(text);

    ck_assert_msg(rc == 0, "%d errors, first: %s", rc, ms.m_n > 0 ? ms.m_text[0] : "");
}

/* Parse text, which must give exactly the one error msg. */
static void
parse_bad(const char *text, const char *msg)
{
    int rc = parse(text);

    ck_assert_msg(rc == 1, "%s: %d errors, first: %s", text, rc, ms.m_n > 0 ? ms.m_text[0] : "");
    ck_assert_str_eq(ms.m_text[0], msg);
}

/* Whether the last parse reported msg. */
static int
reported(const char *msg)
{
    for (int i = 0; i < ms.m_n && i < NMSGS; i++) {
        if (strcmp(ms.m_text[i], msg) == 0)
            return 1;
    }
    return 0;
}

/* Every field but cf_file equal. */
static void
assert_config_eq(const struct upechod_config *a, const struct upechod_config *b)
{
    ck_assert_int_eq(a->cf_tcp_enabled, b->cf_tcp_enabled);
    ck_assert_uint_eq(a->cf_tcp_nlisten, b->cf_tcp_nlisten);
    for (size_t i = 0; i < a->cf_tcp_nlisten; i++) {
        ck_assert(addr_equal(&a->cf_tcp_listen[i], &b->cf_tcp_listen[i]));
        ck_assert_str_eq(a->cf_tcp_listen_text[i], b->cf_tcp_listen_text[i]);
    }
    ck_assert_int_eq(a->cf_tcp_backlog, b->cf_tcp_backlog);
    ck_assert_int_eq(a->cf_tcp_proxy_protocol, b->cf_tcp_proxy_protocol);
    ck_assert_uint_eq(a->cf_tcp_nproxy_from, b->cf_tcp_nproxy_from);
    ck_assert(memcmp(a->cf_tcp_proxy_from, b->cf_tcp_proxy_from,
                     a->cf_tcp_nproxy_from * sizeof(a->cf_tcp_proxy_from[0])) == 0);
    ck_assert_int_eq(a->cf_udp_enabled, b->cf_udp_enabled);
    ck_assert_uint_eq(a->cf_udp_nlisten, b->cf_udp_nlisten);
    for (size_t i = 0; i < a->cf_udp_nlisten; i++) {
        ck_assert(addr_equal(&a->cf_udp_listen[i], &b->cf_udp_listen[i]));
        ck_assert_str_eq(a->cf_udp_listen_text[i], b->cf_udp_listen_text[i]);
    }
    ck_assert_int_eq(a->cf_udp_drop_privileged, b->cf_udp_drop_privileged);
    ck_assert_uint_eq(a->cf_udp_rate_limit, b->cf_udp_rate_limit);
    ck_assert_uint_eq(a->cf_udp_rate_limit_per_port, b->cf_udp_rate_limit_per_port);
    ck_assert_int_eq(a->cf_unix_enabled, b->cf_unix_enabled);
    ck_assert_str_eq(a->cf_unix_path, b->cf_unix_path);
    ck_assert_uint_eq(a->cf_unix_mode, b->cf_unix_mode);
    ck_assert_int_eq(a->cf_unix_backlog, b->cf_unix_backlog);
    ck_assert_int_eq(a->cf_unix_proxy_protocol, b->cf_unix_proxy_protocol);
    ck_assert_int_eq(a->cf_log_level, b->cf_log_level);
    ck_assert_uint_eq(a->cf_max_connections, b->cf_max_connections);
    ck_assert_uint_eq(a->cf_max_pending_output, b->cf_max_pending_output);
    ck_assert_uint_eq(a->cf_max_memory, b->cf_max_memory);
    ck_assert_uint_eq(a->cf_max_connections_per_source, b->cf_max_connections_per_source);
    ck_assert_uint_eq(a->cf_idle_timeout, b->cf_idle_timeout);
    ck_assert_uint_eq(a->cf_shutdown_timeout, b->cf_shutdown_timeout);
    ck_assert_str_eq(a->cf_user, b->cf_user);
    ck_assert_str_eq(a->cf_group, b->cf_group);
    ck_assert_uint_eq(a->cf_workers, b->cf_workers);
    ck_assert_int_eq(a->cf_metrics_enabled, b->cf_metrics_enabled);
    ck_assert(addr_equal(&a->cf_metrics_listen, &b->cf_metrics_listen));
    ck_assert_str_eq(a->cf_metrics_listen_text, b->cf_metrics_listen_text);
}

/* The path of conf/upechod.ini in the source tree. */
static void
ini_path(char *buf, size_t size)
{
    const char *src = getenv("SRCDIR");

    ck_assert_msg(src != NULL, "SRCDIR is not set");
    snprintf(buf, size, "%s/conf/upechod.ini", src);
}

START_TEST(test_config_defaults)
{
    char buf[ADDR_STRLEN];

    config_defaults(&cf);
    ck_assert_str_eq(cf.cf_file, "");
    ck_assert(cf.cf_tcp_enabled);
    ck_assert_uint_eq(cf.cf_tcp_nlisten, 1);
    ck_assert_str_eq(cf.cf_tcp_listen_text[0], "127.0.0.1:9090");
    ck_assert_str_eq(addr_format((struct sockaddr *)&cf.cf_tcp_listen[0].a_ss,
                                 cf.cf_tcp_listen[0].a_len, buf, sizeof(buf)),
                     "127.0.0.1:9090");
    ck_assert_int_eq(cf.cf_tcp_backlog, 1024);
    ck_assert(cf.cf_udp_enabled);
    ck_assert_uint_eq(cf.cf_udp_nlisten, 1);
    ck_assert_str_eq(cf.cf_udp_listen_text[0], "127.0.0.1:7777");
    ck_assert_int_eq(addr_port((struct sockaddr *)&cf.cf_udp_listen[0].a_ss), 7777);
    ck_assert(cf.cf_udp_drop_privileged);
    ck_assert_uint_eq(cf.cf_udp_rate_limit, 0);
    ck_assert_uint_eq(cf.cf_udp_rate_limit_per_port, 10000);
    ck_assert(!cf.cf_unix_enabled);
    ck_assert_str_eq(cf.cf_unix_path, "/run/upechod/upechod.sock");
    ck_assert_uint_eq(cf.cf_unix_mode, 0660);
    ck_assert_int_eq(cf.cf_unix_backlog, 1024);
    ck_assert(!cf.cf_tcp_proxy_protocol);
    ck_assert_uint_eq(cf.cf_tcp_nproxy_from, 0);
    ck_assert(!cf.cf_unix_proxy_protocol);
    ck_assert_int_eq(cf.cf_log_level, LOG_LEVEL_INFO);
    ck_assert_uint_eq(cf.cf_max_connections, 10000);
    ck_assert_uint_eq(cf.cf_max_pending_output, 1024 * 1024);
    ck_assert_uint_eq(cf.cf_max_memory, 256 * 1024 * 1024);
    ck_assert_uint_eq(cf.cf_max_connections_per_source, 0);
    ck_assert_uint_eq(cf.cf_idle_timeout, 300);
    ck_assert_uint_eq(cf.cf_shutdown_timeout, 10);
    ck_assert_str_eq(cf.cf_user, "");
    ck_assert_str_eq(cf.cf_group, "");
    ck_assert_uint_eq(cf.cf_workers, 1);

    /* An empty file is the defaults, with its name recorded. */
    parse_ok("");
    ck_assert_str_eq(cf.cf_file, "t.ini");
    {
        struct upechod_config def;

        config_defaults(&def);
        assert_config_eq(&cf, &def);
    }
}
END_TEST

/* conf/upechod.ini documents the defaults: it must parse to exactly config_defaults(). */
START_TEST(test_config_shipped_ini)
{
    struct upechod_config def;
    char path[PATH_MAX], line[1024];
    FILE *f;
    int lineno = 0;

    ini_path(path, sizeof(path));
    memset(&ms, 0, sizeof(ms));
    ck_assert_int_eq(config_parse_file(&cf, path, collect, &ms), 0);
    ck_assert_int_eq(ms.m_n, 0);
    ck_assert_str_eq(cf.cf_file, path);
    config_defaults(&def);
    assert_config_eq(&cf, &def);

    /* Every line must stay within what the parser accepts. */
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        ck_assert_msg(strlen(line) <= LINE_MAX_CHARS, "line %d is too long", lineno);
    }
    fclose(f);
    ck_assert_int_gt(lineno, 50);
}
END_TEST

START_TEST(test_config_bools)
{
    static const char *const yes[] = {"yes", "YES", "Yes", "true", "TRUE", "on", "On", "1"};
    static const char *const no[] = {"no", "NO", "No", "false", "False", "off", "OFF", "0"};
    char text[256];

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        snprintf(text, sizeof(text),
                 "[unix]\nenabled = %s\n[udp]\ndrop_privileged_source_ports=%s\n", yes[i], no[i]);
        parse_ok(text);
        ck_assert_msg(cf.cf_unix_enabled, "%s", yes[i]);
        ck_assert_msg(!cf.cf_udp_drop_privileged, "%s", no[i]);

        snprintf(text, sizeof(text),
                 "[tcp]\nenabled = %s\n[udp]\nenabled = %s\ndrop_privileged_source_ports = %s\n",
                 no[i], yes[i], yes[i]);
        parse_ok(text);
        ck_assert_msg(!cf.cf_tcp_enabled, "%s", no[i]);
        ck_assert(cf.cf_udp_enabled);
        ck_assert(cf.cf_udp_drop_privileged);
    }
}
END_TEST

/* The [tcp] listen list parsed: exactly these texts, item i on port i + 1. */
static void
check_tcp_list(const char *const *want, size_t n)
{
    ck_assert_uint_eq(cf.cf_tcp_nlisten, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(cf.cf_tcp_listen_text[i], want[i]);
        ck_assert_int_eq(addr_port((struct sockaddr *)&cf.cf_tcp_listen[i].a_ss), (int)i + 1);
    }
}

START_TEST(test_config_listen)
{
    const struct sockaddr_in6 *sin6;
    const struct sockaddr_in *sin;

    parse_ok("[tcp]\nlisten = [::1]:9091\n");
    ck_assert_uint_eq(cf.cf_tcp_nlisten, 1);
    ck_assert_str_eq(cf.cf_tcp_listen_text[0], "[::1]:9091");
    sin6 = (const struct sockaddr_in6 *)&cf.cf_tcp_listen[0].a_ss;
    ck_assert_int_eq(sin6->sin6_family, AF_INET6);
    ck_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    ck_assert_int_eq(addr_port((const struct sockaddr *)sin6), 9091);

    parse_ok("[udp]\nlisten = *:7\n");
    sin = (const struct sockaddr_in *)&cf.cf_udp_listen[0].a_ss;
    ck_assert_int_eq(sin->sin_family, AF_INET);
    ck_assert_uint_eq(sin->sin_addr.s_addr, htonl(INADDR_ANY));
    ck_assert_int_eq(addr_port((const struct sockaddr *)sin), 7);

    parse_ok("[tcp]\nlisten = [::]:0\n");
    sin6 = (const struct sockaddr_in6 *)&cf.cf_tcp_listen[0].a_ss;
    ck_assert_int_eq(sin6->sin6_family, AF_INET6);
    ck_assert(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
    ck_assert_int_eq(addr_port((const struct sockaddr *)sin6), 0);

    /* Several, with whitespace around the items, trimmed in the stored text. */
    parse_ok("[tcp]\nlisten =  127.0.0.1:1 ,[::1]:2,\t*:3 , localhost:4 ; comment\n");
    check_tcp_list((const char *const[]){"127.0.0.1:1", "[::1]:2", "*:3", "localhost:4"}, 4);
    /* The same port on different protocols or addresses is fine. */
    parse_ok("[tcp]\nlisten = 127.0.0.1:5, [::1]:5\n[udp]\nlisten = 127.0.0.1:5\n");
    ck_assert_uint_eq(cf.cf_tcp_nlisten, 2);
    ck_assert_uint_eq(cf.cf_udp_nlisten, 1);

    /* An empty list is fine while the protocol is off. */
    parse_ok("[tcp]\nenabled = no\nlisten =\n");
    ck_assert_uint_eq(cf.cf_tcp_nlisten, 0);

    /* As many as CONFIG_MAX_LISTEN. */
    {
        char text[256];
        size_t off = (size_t)snprintf(text, sizeof(text), "[udp]\nlisten = ");

        for (int i = 1; i <= CONFIG_MAX_LISTEN; i++)
            off += (size_t)snprintf(text + off, sizeof(text) - off, "%s*:%d", i > 1 ? "," : "", i);
        parse_ok(text);
        ck_assert_uint_eq(cf.cf_udp_nlisten, CONFIG_MAX_LISTEN);
    }
}
END_TEST

/*
 * A listen list goes on over indented lines, each adding its items, with or
 * without a comma at the end of the line before; comments and blank lines
 * may come between.  Lifts the line-length limit on long lists.
 */
START_TEST(test_config_listen_lines)
{
    parse_ok("[tcp]\nlisten = 127.0.0.1:1,\n  [::1]:2 ; the second\n\n; a note\n"
             "\t*:3, 127.0.0.2:4\n[udp]\nlisten =\n    127.0.0.1:5\n    127.0.0.1:6\n");
    check_tcp_list((const char *const[]){"127.0.0.1:1", "[::1]:2", "*:3", "127.0.0.2:4"}, 4);
    ck_assert_uint_eq(cf.cf_udp_nlisten, 2);
    ck_assert_str_eq(cf.cf_udp_listen_text[1], "127.0.0.1:6");

    /* CONFIG_MAX_LISTEN IPv6 addresses, more than one line could hold. */
    {
        char text[4096], msg[128];
        size_t off = (size_t)snprintf(text, sizeof(text), "[tcp]\nlisten =\n");

        for (int i = 1; i <= CONFIG_MAX_LISTEN; i++)
            off += (size_t)snprintf(text + off, sizeof(text) - off, "  [2001:db8::%x]:9090%s\n", i,
                                    i < CONFIG_MAX_LISTEN ? "," : "");
        parse_ok(text);
        ck_assert_uint_eq(cf.cf_tcp_nlisten, CONFIG_MAX_LISTEN);
        ck_assert_str_eq(cf.cf_tcp_listen_text[CONFIG_MAX_LISTEN - 1], "[2001:db8::20]:9090");
        /* One more, on line 3 + CONFIG_MAX_LISTEN, is one too many. */
        snprintf(text + off - 1, sizeof(text) - off + 1, ",\n  [2001:db8::ff]:9090\n");
        snprintf(msg, sizeof(msg), "t.ini:%d: [tcp] listen: more than %d addresses",
                 3 + CONFIG_MAX_LISTEN, CONFIG_MAX_LISTEN);
        parse_bad(text, msg);
    }

    /* Across lines, as within one: duplicates, and bad items named on their own line. */
    parse_bad("[tcp]\nlisten = *:1\n  *:1\n", "t.ini:3: [tcp] listen: \"*:1\" is listed twice");
    ck_assert_uint_eq(cf.cf_tcp_nlisten, 1);
    parse_bad("[tcp]\nlisten = *:1,\n  nowhere\n",
              "t.ini:3: [tcp] listen: \"nowhere\": expected HOST:PORT");
    parse_bad("[tcp]\nlisten = *:1,\n  *:2,\n[udp]\n",
              "t.ini:3: [tcp] listen: the list ends with a comma; continue it on an indented next "
              "line, or remove the comma");
    /* A list whose first line was bad takes nothing from the lines after it. */
    parse_bad("[tcp]\nlisten = *:1, nowhere\n  *:2, 127.0.0.1:9090\n",
              "t.ini:2: [tcp] listen: \"nowhere\": expected HOST:PORT");
    ck_assert_str_eq(cf.cf_tcp_listen_text[0], "127.0.0.1:9090");
    ck_assert_uint_eq(cf.cf_tcp_nlisten, 1);
    /* A listen given twice: the second and its lines are reported once, not merged. */
    parse_bad("[tcp]\nlisten = *:1\nlisten = *:2\n  *:3\n",
              "t.ini:3: [tcp] listen: given twice, first on line 2");
    ck_assert_uint_eq(cf.cf_tcp_nlisten, 1);
    /* A header ends the list: an indented line after it is an error, not more of the list. */
    parse_bad("[tcp]\nlisten = *:1\n[udp]\n  listen = *:2\n",
              "t.ini:4: [udp]: indented line \"listen = *:2\"; only the lines that continue a "
              "[tcp] or [udp] listen list may be indented, remove the leading whitespace");
    ck_assert_uint_eq(cf.cf_tcp_nlisten, 1);
    ck_assert_str_eq(cf.cf_udp_listen_text[0], "127.0.0.1:7777");
}
END_TEST

/* [metrics]: off by default, one address, validated like the listen lists. */
START_TEST(test_config_metrics)
{
    const struct sockaddr_in6 *sin6;

    parse_ok("");
    ck_assert(!cf.cf_metrics_enabled);
    ck_assert_str_eq(cf.cf_metrics_listen_text, "127.0.0.1:9477");
    ck_assert_int_eq(addr_port((struct sockaddr *)&cf.cf_metrics_listen.a_ss), 9477);

    parse_ok("[metrics]\nenabled = yes\nlisten = [::1]:0 ; any port\n");
    ck_assert(cf.cf_metrics_enabled);
    ck_assert_str_eq(cf.cf_metrics_listen_text, "[::1]:0");
    sin6 = (const struct sockaddr_in6 *)&cf.cf_metrics_listen.a_ss;
    ck_assert_int_eq(sin6->sin6_family, AF_INET6);
    ck_assert_int_eq(ntohs(sin6->sin6_port), 0);

    parse_bad("[metrics]\nenabled = sometimes\n",
              "t.ini:2: [metrics] enabled: must be yes or no (or true/false, on/off, 1/0), got "
              "\"sometimes\"");
    parse_bad("[metrics]\nlisten = 127.0.0.1:1, 127.0.0.1:2\n",
              "t.ini:2: [metrics] listen: takes one address, got the list \"127.0.0.1:1, "
              "127.0.0.1:2\"");
    parse_bad("[metrics]\nlisten =\n",
              "t.ini:2: [metrics] listen: must not be empty; give one HOST:PORT such as "
              "127.0.0.1:9477");
    parse_bad("[metrics]\nlisten = ::1:9477\n",
              "t.ini:2: [metrics] listen: \"::1:9477\": IPv6 addresses go in brackets, as "
              "[::1]:PORT");
    parse_bad("[metrics]\nlisten = 127.0.0.1:99999\n",
              "t.ini:2: [metrics] listen: \"127.0.0.1:99999\": port must be a number from 0 to "
              "65535");
    parse_bad("[metrics]\nlisten = *:1\nlisten = *:2\n",
              "t.ini:3: [metrics] listen: given twice, first on line 2");
    parse_bad("[metrics]\nlisten = *:1\n  *:2\n",
              "t.ini:3: [metrics] listen: only a [tcp] or [udp] listen list goes on over indented "
              "lines; put the whole value on line 2, or remove the leading whitespace");
    parse_bad("[metrics]\nport = 9477\n",
              "t.ini:2: [metrics] port: unknown key; [metrics] knows enabled, listen");
}
END_TEST

START_TEST(test_config_values)
{
    parse_ok("[tcp]\nbacklog = 1\n[unix]\nbacklog = 65535\nenabled = on\n"
             "path = /tmp/x.sock\nmode = 0600\n[log]\nlevel = debug\n");
    ck_assert_int_eq(cf.cf_tcp_backlog, 1);
    ck_assert_int_eq(cf.cf_unix_backlog, 65535);
    ck_assert(cf.cf_unix_enabled);
    ck_assert_str_eq(cf.cf_unix_path, "/tmp/x.sock");
    ck_assert_uint_eq(cf.cf_unix_mode, 0600);
    ck_assert_int_eq(cf.cf_log_level, LOG_LEVEL_DEBUG);

    parse_ok("[unix]\nmode = 777\n[log]\nlevel = ERROR\n");
    ck_assert_uint_eq(cf.cf_unix_mode, 0777);
    ck_assert_int_eq(cf.cf_log_level, LOG_LEVEL_ERROR);
    parse_ok("[unix]\nmode = 0777\n[log]\nlevel = warning\n");
    ck_assert_uint_eq(cf.cf_unix_mode, 0777);
    ck_assert_int_eq(cf.cf_log_level, LOG_LEVEL_WARNING);
    parse_ok("[unix]\nmode = 0\n");
    ck_assert_uint_eq(cf.cf_unix_mode, 0);

    parse_ok("[udp]\nrate_limit = 1000000\n[limits]\nmax_connections = 10000000\n"
             "idle_timeout = 31536000\nshutdown_timeout = 3600\n");
    ck_assert_uint_eq(cf.cf_udp_rate_limit, 1000000);
    ck_assert_uint_eq(cf.cf_max_connections, 10000000);
    ck_assert_uint_eq(cf.cf_idle_timeout, 31536000);
    ck_assert_uint_eq(cf.cf_shutdown_timeout, 3600);
    parse_ok("[limits]\nmax_connections = 1\nidle_timeout = 0\nshutdown_timeout = 1\n");
    ck_assert_uint_eq(cf.cf_max_connections, 1);
    ck_assert_uint_eq(cf.cf_idle_timeout, 0);
    ck_assert_uint_eq(cf.cf_shutdown_timeout, 1);
    parse_ok("[limits]\nmax_connections_per_source = 10000000\n");
    ck_assert_uint_eq(cf.cf_max_connections_per_source, 10000000);
    parse_ok("[limits]\nmax_connections_per_source = 16\n");
    ck_assert_uint_eq(cf.cf_max_connections_per_source, 16);

    parse_ok("[server]\nuser = nobody\ngroup = nogroup\n");
    ck_assert_str_eq(cf.cf_user, "nobody");
    ck_assert_str_eq(cf.cf_group, "nogroup");
    parse_ok("[server]\nuser = daemon\ngroup =\n");
    ck_assert_str_eq(cf.cf_user, "daemon");
    ck_assert_str_eq(cf.cf_group, "");

    parse_ok("[server]\nworkers = 256\n");
    ck_assert_uint_eq(cf.cf_workers, 256);
    parse_ok("[server]\nworkers = 1\n");
    ck_assert_uint_eq(cf.cf_workers, 1);
    {
        /* auto: the CPUs this process may run on, not the machine's. */
        cpu_set_t set;

        ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
        parse_ok("[server]\nworkers = auto\n");
        ck_assert_uint_eq(cf.cf_workers, (unsigned)CPU_COUNT(&set));
    }

    /* Syntax inih allows: ':' for '=', inline " ;" comments, # comments, CRLF, a BOM. */
    parse_ok("\xef\xbb\xbf; comment\r\n# comment\r\n[tcp]\r\nbacklog: 7 ; seven\r\n\r\n");
    ck_assert_int_eq(cf.cf_tcp_backlog, 7);
    /* A section may be opened again, and a file need not end in a newline. */
    parse_ok("[tcp]\nbacklog = 8\n[udp]\n[tcp]\nenabled = yes\n[ tcp ] ; again\nlisten = *:1");
    ck_assert_int_eq(cf.cf_tcp_backlog, 8);
    ck_assert_str_eq(cf.cf_tcp_listen_text[0], "*:1");
}
END_TEST

START_TEST(test_config_sizes)
{
    static const struct {
        const char *s_text;
        size_t s_bytes;
    } sizes[] = {
        {"4096", 4096},
        {"4K", 4096},
        {"4k", 4096},
        {"100000", 100000},
        {"1M", 1 << 20},
        {"16m", 16 << 20},
        {"2G", (size_t)2 << 30},
        {"1g", (size_t)1 << 30},
        {"1024K", 1 << 20},
    };
    char text[128];

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        snprintf(text, sizeof(text), "[limits]\nmax_pending_output = %s\n", sizes[i].s_text);
        parse_ok(text);
        ck_assert_msg(cf.cf_max_pending_output == sizes[i].s_bytes, "%s: %zu", sizes[i].s_text,
                      cf.cf_max_pending_output);
        snprintf(text, sizeof(text), "[limits]\nmax_memory = %s\n", sizes[i].s_text);
        parse_ok(text);
        ck_assert_msg(cf.cf_max_memory == sizes[i].s_bytes, "%s: %zu", sizes[i].s_text,
                      cf.cf_max_memory);
    }
}
END_TEST

/* One bad value for each key, with the whole message. */
START_TEST(test_config_bad_values)
{
    static const struct {
        const char *b_text;
        const char *b_msg;
    } bad[] = {
        {"[tcp]\nenabled = maybe\n",
         "t.ini:2: [tcp] enabled: must be yes or no (or true/false, on/off, 1/0), got \"maybe\""},
        {"[udp]\ndrop_privileged_source_ports = y\n",
         "t.ini:2: [udp] drop_privileged_source_ports: must be yes or no (or true/false, on/off, "
         "1/0), got \"y\""},
        {"[tcp]\n\nbacklog = 0\n",
         "t.ini:3: [tcp] backlog: must be a whole number from 1 to 65535, got \"0\""},
        {"[tcp]\nbacklog = 65536\n",
         "t.ini:2: [tcp] backlog: must be a whole number from 1 to 65535, got \"65536\""},
        {"[tcp]\nbacklog = -1\n",
         "t.ini:2: [tcp] backlog: must be a whole number from 1 to 65535, got \"-1\""},
        {"[tcp]\nbacklog = 12 ab\n",
         "t.ini:2: [tcp] backlog: must be a whole number from 1 to 65535, got \"12 ab\""},
        {"[tcp]\nbacklog =\n",
         "t.ini:2: [tcp] backlog: must be a whole number from 1 to 65535, got \"\""},
        {"[tcp]\nbacklog = 99999999999999999999999\n",
         "t.ini:2: [tcp] backlog: must be a whole number from 1 to 65535, got "
         "\"99999999999999999999999\""},
        {"[unix]\nbacklog = 0x10\n",
         "t.ini:2: [unix] backlog: must be a whole number from 1 to 65535, got \"0x10\""},
        {"[tcp]\nlisten = 127.0.0.1:65536\n",
         "t.ini:2: [tcp] listen: \"127.0.0.1:65536\": port must be a number from 0 to 65535"},
        {"[tcp]\nlisten = example.com:80\n",
         "t.ini:2: [tcp] listen: \"example.com:80\": not an IPv4 address (use [::1] for IPv6, * "
         "for any)"},
        {"[udp]\nlisten = ::1:7\n",
         "t.ini:2: [udp] listen: \"::1:7\": IPv6 addresses go in brackets, as [::1]:PORT"},
        {"[udp]\nlisten = 127.0.0.1\n", "t.ini:2: [udp] listen: \"127.0.0.1\": expected HOST:PORT"},
        {"[udp]\nlisten = [::1:7\n",
         "t.ini:2: [udp] listen: \"[::1:7\": missing ']' after IPv6 address"},
        {"[tcp]\nlisten = *:1, 127.0.0.1:2, *:1\n",
         "t.ini:2: [tcp] listen: \"*:1\" is listed twice"},
        {"[tcp]\nlisten = 0.0.0.0:1, *:1\n",
         "t.ini:2: [tcp] listen: \"*:1\" is the same address as \"0.0.0.0:1\", listed before it"},
        {"[tcp]\nlisten = *:1,,*:2\n",
         "t.ini:2: [tcp] listen: empty address in the list (a stray comma?)"},
        {"[tcp]\nlisten = *:1,\n",
         "t.ini:2: [tcp] listen: the list ends with a comma; continue it on an indented next "
         "line, or remove the comma"},
        {"[tcp]\nlisten = *:1,\n\n[udp]\n",
         "t.ini:2: [tcp] listen: the list ends with a comma; continue it on an indented next "
         "line, or remove the comma"},
        {"[udp]\nrate_limit = 1000001\n",
         "t.ini:2: [udp] rate_limit: must be a whole number from 0 to 1000000, got \"1000001\""},
        {"[udp]\nrate_limit_per_port = -1\n",
         "t.ini:2: [udp] rate_limit_per_port: must be a whole number from 0 to 1000000, got "
         "\"-1\""},
        {"[unix]\npath = run/upechod.sock\n",
         "t.ini:2: [unix] path: must be an absolute path (starting with /), got "
         "\"run/upechod.sock\""},
        {"[unix]\npath =\n",
         "t.ini:2: [unix] path: must not be empty; give an absolute path such as "
         "/run/upechod/upechod.sock"},
        {"[unix]\nmode = 0800\n",
         "t.ini:2: [unix] mode: must be an octal file mode from 0000 to 0777 (no setuid, setgid or "
         "sticky bit), such as 0660, got "
         "\"0800\""},
        {"[unix]\nmode = 10000\n",
         "t.ini:2: [unix] mode: must be an octal file mode from 0000 to 0777 (no setuid, setgid or "
         "sticky bit), such as 0660, got "
         "\"10000\""},
        {"[unix]\nmode = 4660\n",
         "t.ini:2: [unix] mode: must be an octal file mode from 0000 to 0777 (no setuid, setgid or "
         "sticky bit), such as 0660, got \"4660\""},
        {"[unix]\nmode = 1777\n",
         "t.ini:2: [unix] mode: must be an octal file mode from 0000 to 0777 (no setuid, setgid or "
         "sticky bit), such as 0660, got \"1777\""},
        {"[unix]\nmode = 07777\n",
         "t.ini:2: [unix] mode: must be an octal file mode from 0000 to 0777 (no setuid, setgid or "
         "sticky bit), such as 0660, got \"07777\""},
        {"[unix]\nmode = rw\n",
         "t.ini:2: [unix] mode: must be an octal file mode from 0000 to 0777 (no setuid, setgid or "
         "sticky bit), such as 0660, got "
         "\"rw\""},
        {"[log]\nlevel = verbose\n",
         "t.ini:2: [log] level: must be one of error, warning, info, debug, got \"verbose\""},
        {"[server]\nworkers = 0\n",
         "t.ini:2: [server] workers: must be a whole number from 1 to 256, or auto, got \"0\""},
        {"\n[server]\nworkers = 257\n",
         "t.ini:3: [server] workers: must be a whole number from 1 to 256, or auto, got \"257\""},
        {"[server]\nworkers = AUTO\n",
         "t.ini:2: [server] workers: must be a whole number from 1 to 256, or auto, got \"AUTO\""},
        {"[limits]\nmax_connections = 0\n",
         "t.ini:2: [limits] max_connections: must be a whole number from 1 to 10000000, got \"0\""},
        {"[limits]\nmax_connections = 10000001\n",
         "t.ini:2: [limits] max_connections: must be a whole number from 1 to 10000000, got "
         "\"10000001\""},
        {"[limits]\nmax_pending_output = 4095\n",
         "t.ini:2: [limits] max_pending_output: must be a size of at least 4K, in bytes or with a "
         "K, M or G suffix (1024-based), got \"4095\""},
        {"[limits]\nmax_pending_output = 3K\n",
         "t.ini:2: [limits] max_pending_output: must be a size of at least 4K, in bytes or with a "
         "K, M or G suffix (1024-based), got \"3K\""},
        {"[limits]\nmax_pending_output = 1T\n",
         "t.ini:2: [limits] max_pending_output: must be a size of at least 4K, in bytes or with a "
         "K, M or G suffix (1024-based), got \"1T\""},
        {"[limits]\nmax_pending_output = 1 M\n",
         "t.ini:2: [limits] max_pending_output: must be a size of at least 4K, in bytes or with a "
         "K, M or G suffix (1024-based), got \"1 M\""},
        {"[limits]\nmax_pending_output = 17179869184G\n",
         "t.ini:2: [limits] max_pending_output: is too large, got \"17179869184G\""},
        {"[limits]\nmax_pending_output = 99999999999999999999999\n",
         "t.ini:2: [limits] max_pending_output: is too large, got \"99999999999999999999999\""},
        {"[limits]\nmax_memory = 4095\n",
         "t.ini:2: [limits] max_memory: must be a size of at least 4K, in bytes or with a "
         "K, M or G suffix (1024-based), got \"4095\""},
        {"[limits]\nmax_memory = 256 M\n",
         "t.ini:2: [limits] max_memory: must be a size of at least 4K, in bytes or with a "
         "K, M or G suffix (1024-based), got \"256 M\""},
        {"[limits]\nmax_memory = 17179869184G\n",
         "t.ini:2: [limits] max_memory: is too large, got \"17179869184G\""},
        {"[limits]\nmax_connections_per_source = -1\n",
         "t.ini:2: [limits] max_connections_per_source: must be a whole number from 0 to "
         "10000000, got \"-1\""},
        {"[limits]\nmax_connections_per_source = 10000001\n",
         "t.ini:2: [limits] max_connections_per_source: must be a whole number from 0 to "
         "10000000, got \"10000001\""},
        {"[limits]\nidle_timeout = 31536001\n",
         "t.ini:2: [limits] idle_timeout: must be a whole number of seconds from 0 to 31536000, "
         "got \"31536001\""},
        {"[limits]\nshutdown_timeout = 0\n",
         "t.ini:2: [limits] shutdown_timeout: must be a whole number of seconds from 1 to 3600, "
         "got \"0\""},
        {"[limits]\nshutdown_timeout = 3601\n",
         "t.ini:2: [limits] shutdown_timeout: must be a whole number of seconds from 1 to 3600, "
         "got \"3601\""},
        {"[server]\nuser = up echod\n",
         "t.ini:2: [server] user: \"up echod\" is not a valid user name (no spaces, colons or "
         "control characters)"},
        {"[server]\nuser = nobody\ngroup = a:b\n",
         "t.ini:3: [server] group: \"a:b\" is not a valid group name (no spaces, colons or control "
         "characters)"},
        /* Quotes are not syntax: they end up in the value, and the message shows them escaped. */
        {"[log]\nlevel = \"info\"\n",
         "t.ini:2: [log] level: must be one of error, warning, info, debug, got \"\\\"info\\\"\""},
        {"[log]\nlevel = in\x01\x7f\n",
         "t.ini:2: [log] level: must be one of error, warning, info, debug, got \"in\\x01\\x7f\""},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        parse_bad(bad[i].b_text, bad[i].b_msg);
}
END_TEST

/* A bad value leaves the default in place. */
START_TEST(test_config_bad_keeps_default)
{
    ck_assert_int_eq(parse("[tcp]\nbacklog = 0\nlisten = *:1, nonsense\n"), 2);
    ck_assert_int_eq(cf.cf_tcp_backlog, 1024);
    ck_assert_uint_eq(cf.cf_tcp_nlisten, 1);
    ck_assert_str_eq(cf.cf_tcp_listen_text[0], "127.0.0.1:9090");
}
END_TEST

START_TEST(test_config_listen_limits)
{
    char text[256], path[CONFIG_UNIX_PATH_MAX + 2];
    size_t off = (size_t)snprintf(text, sizeof(text), "[tcp]\nlisten = ");

    for (int i = 1; i <= CONFIG_MAX_LISTEN + 1; i++)
        off += (size_t)snprintf(text + off, sizeof(text) - off, "%s*:%d", i > 1 ? "," : "", i);
    parse_bad(text, "t.ini:2: [tcp] listen: more than 32 addresses");

    /* The longest path sun_path holds, and one byte more. */
    memset(path, 'p', sizeof(path));
    path[0] = '/';
    path[CONFIG_UNIX_PATH_MAX - 1] = '\0';
    snprintf(text, sizeof(text), "[unix]\npath = %s\n", path);
    parse_ok(text);
    ck_assert_str_eq(cf.cf_unix_path, path);
    path[CONFIG_UNIX_PATH_MAX - 1] = 'p';
    path[CONFIG_UNIX_PATH_MAX] = '\0';
    snprintf(text, sizeof(text), "[unix]\npath = %s\n", path);
    parse_bad(text, "t.ini:2: [unix] path: is 108 characters, longer than a unix socket path can "
                    "be (at most 107)");
}
END_TEST

START_TEST(test_config_syntax)
{
    parse_bad("[tcp]\nbacklog = 5\n[udp\nenabled = yes\n",
              "t.ini:3: section header \"[udp\" has no closing ']'");
    parse_bad("[tcp]\n[nosuch]\nfoo = 1\nbar = 2\n",
              "t.ini:2: [nosuch]: unknown section; known sections are tcp, udp, unix, log, limits, "
              "server, metrics");
    parse_bad("[tcp]\nbacklog = 5\nbacklg = 5\n",
              "t.ini:3: [tcp] backlg: unknown key; [tcp] knows enabled, listen, backlog, "
              "proxy_protocol, proxy_protocol_from");
    parse_bad("[tcp]\nlisten = *:1\n\n[udp]\n[tcp]\nlisten = *:2\n",
              "t.ini:6: [tcp] listen: given twice, first on line 2");
    ck_assert_str_eq(cf.cf_tcp_listen_text[0], "*:1");
    /* A bad first value is still the first. */
    parse(";\n[limits]\nidle_timeout = x\nidle_timeout = 5\n");
    ck_assert_int_eq(ms.m_n, 2);
    ck_assert_str_eq(ms.m_text[1], "t.ini:4: [limits] idle_timeout: given twice, first on line 3");
    parse_bad(
        "[tcp]\nenabled\n",
        "t.ini:2: expected \"key = value\", a [section] header or a comment, got \"enabled\"");
    parse_bad("[tcp]\nbacklog ; = 5\n", "t.ini:2: expected \"key = value\", a [section] header or "
                                        "a comment, got \"backlog ; = 5\"");
    parse_bad("[tcp]\n = 5\n", "t.ini:2: missing key name before '='");
    parse_bad("backlog = 5\n[tcp]\n",
              "t.ini:1: key \"backlog\" comes before any [section] header; known sections are "
              "tcp, udp, unix, log, limits, server, metrics");
    parse_bad("[]\n", "t.ini:1: empty section name");
    parse_bad("[tcp] backlog = 5\n", "t.ini:1: [tcp]: unexpected text \"backlog = 5\" after ']'");
    parse_bad("[Tcp]\n", "t.ini:1: [Tcp]: unknown section; known sections are tcp, udp, unix, "
                         "log, limits, server, metrics");
    /* inih would take an indented line as more of the value above it: only lists go on. */
    parse_bad("[tcp]\nenabled = yes\n\n\tbacklog = 5\n",
              "t.ini:4: [tcp] enabled: only a [tcp] or [udp] listen list goes on over indented "
              "lines; put the whole value on line 2, or remove the leading whitespace");
    ck_assert_int_eq(cf.cf_tcp_backlog, 1024);
    parse_bad("[unix]\npath = /run/a\n  b.sock\n",
              "t.ini:3: [unix] path: only a [tcp] or [udp] listen list goes on over indented "
              "lines; put the whole value on line 2, or remove the leading whitespace");
    /* Indentation is harmless before a header and for comments. */
    parse_ok("  [tcp]\nbacklog = 6\n  ; comment\n    \n[udp]\nrate_limit = 3\n");
    ck_assert_int_eq(cf.cf_tcp_backlog, 6);
    ck_assert_uint_eq(cf.cf_udp_rate_limit, 3);
    /* Before a key it is an error, the first key after a header included. */
    parse_bad("[tcp]\n  backlog = 6\n",
              "t.ini:2: [tcp]: indented line \"backlog = 6\"; only the lines that continue a "
              "[tcp] or [udp] listen list may be indented, remove the leading whitespace");
    ck_assert_int_eq(cf.cf_tcp_backlog, 1024);
    parse_bad("[tcp]\nbacklog = 6\n[udp]\n\trate_limit = 3\n",
              "t.ini:4: [udp]: indented line \"rate_limit = 3\"; only the lines that continue a "
              "[tcp] or [udp] listen list may be indented, remove the leading whitespace");
    ck_assert_uint_eq(cf.cf_udp_rate_limit, 0);
    parse_bad(" backlog = 6\n[tcp]\n",
              "t.ini:1: indented line \"backlog = 6\"; only the lines that continue a [tcp] or "
              "[udp] listen list may be indented, remove the leading whitespace");
}
END_TEST

/*
 * Lines longer than inih's buffer: inih would cut them and parse the rest
 * as a line of its own; the reader reports them and passes nothing on.
 */
START_TEST(test_config_long_lines)
{
    char text[1024], msg[256];
    size_t off;

    snprintf(msg, sizeof(msg), "t.ini:2: line too long (at most %d characters)", LINE_MAX_CHARS);

    off = (size_t)snprintf(text, sizeof(text), "[server]\nuser = ");
    memset(text + off, 'a', 250 - 7);
    off += 250 - 7;
    strcpy(text + off, "\n[udp]\nrate_limit = 2\n[tcp]\nbacklog = 0\n");
    ck_assert_int_eq(parse(text), 2);
    ck_assert_str_eq(ms.m_text[0], msg);
    /* The following lines keep their numbers, and nothing of the long one was taken. */
    ck_assert_str_eq(ms.m_text[1],
                     "t.ini:6: [tcp] backlog: must be a whole number from 1 to 65535, got \"0\"");
    ck_assert_str_eq(cf.cf_user, "");
    ck_assert_uint_eq(cf.cf_udp_rate_limit, 2);

    /* A long line of a key that would be good when cut is still rejected. */
    off = (size_t)snprintf(text, sizeof(text), "[tcp]\nbacklog = 5");
    memset(text + off, ' ', 300);
    off += 300;
    strcpy(text + off, "; comment\n");
    parse_bad(text, msg);
    ck_assert_int_eq(cf.cf_tcp_backlog, 1024);

    /* Exactly the limit is fine; one more is not. */
    off = (size_t)snprintf(text, sizeof(text), "[server]\nuser = ");
    memset(text + off, 'u', LINE_MAX_CHARS - 7);
    strcpy(text + off + LINE_MAX_CHARS - 7, "\n");
    /* Taken whole: the one error is that no such user exists. */
    ck_assert_int_eq(parse(text), 1);
    ck_assert_ptr_nonnull(strstr(ms.m_text[0], "t.ini:2: [server] user: \"uuu"));
    ck_assert_ptr_nonnull(strstr(ms.m_text[0], "\": no such user"));
    ck_assert_uint_eq(strlen(cf.cf_user), LINE_MAX_CHARS - 7);
    memset(text + off, 'u', LINE_MAX_CHARS - 6);
    strcpy(text + off + LINE_MAX_CHARS - 6, "\r\n");
    parse_bad(text, msg);
    ck_assert_str_eq(cf.cf_user, "");
}
END_TEST

START_TEST(test_config_cross_checks)
{
    parse_bad("[tcp]\nenabled = no\n[udp]\nenabled = false\n",
              "t.ini:4: [udp] enabled: tcp, udp and unix are all disabled, so there is nothing to "
              "serve; enable at least one");
    parse_bad("[udp]\nenabled = no\n[unix]\nenabled = no\n[tcp]\nenabled = off\n",
              "t.ini:6: [tcp] enabled: tcp, udp and unix are all disabled, so there is nothing to "
              "serve; enable at least one");
    parse_ok("[tcp]\nenabled = no\n[udp]\nenabled = no\n[unix]\nenabled = yes\n");
    parse_bad("[tcp]\nlisten =\n", "t.ini:2: [tcp] listen: empty, but [tcp] enabled = yes; give "
                                   "at least one address, or set enabled = no");
    parse_bad("[udp]\nlisten =   \nenabled = 1\n",
              "t.ini:2: [udp] listen: empty, but [udp] enabled = yes; give at least one address, "
              "or set enabled = no");
    parse_bad("[server]\ngroup = nogroup\n",
              "t.ini:2: [server] group: set without user; group only applies when dropping "
              "privileges to a user, so set user too");
    /* No cross-key error on top of a value error. */
    parse_bad(
        "[tcp]\nenabled = no\n[udp]\nenabled = nah\n",
        "t.ini:4: [udp] enabled: must be yes or no (or true/false, on/off, 1/0), got \"nah\"");
    /* The user and group must exist, so that -t catches a misspelt one with its line. */
    parse_bad("[log]\nlevel = info\n[server]\nuser = upechod-no-such-user\n",
              "t.ini:4: [server] user: \"upechod-no-such-user\": no such user");
    parse_bad("[server]\nuser = nobody\ngroup = upechod-no-such-group\n",
              "t.ini:3: [server] group: \"upechod-no-such-group\": no such group");
    parse_bad("[server]\nuser = a b\ngroup = nogroup\n",
              "t.ini:2: [server] user: \"a b\" is not a valid user name (no spaces, colons or "
              "control characters)");
}
END_TEST

/* Whether address text (v4 or v6) is in the [tcp] proxy_protocol_from just parsed. */
static bool
proxy_from_has(const char *text)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1)
        sin->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1)
        sin6->sin6_family = AF_INET6;
    else
        ck_abort_msg("bad test address %s", text);
    return proxy_net_match(cf.cf_tcp_proxy_from, cf.cf_tcp_nproxy_from, (struct sockaddr *)&ss);
}

START_TEST(test_config_proxy)
{
    parse_ok("[tcp]\nproxy_protocol = yes\n"
             "proxy_protocol_from = 127.0.0.1, 10.0.0.0/8 , ::1,[fd00::]/8, 192.168.0.0/16\n"
             "[unix]\nenabled = yes\nproxy_protocol = on\nproxy_protocol_from =\n");
    ck_assert(cf.cf_tcp_proxy_protocol);
    ck_assert(cf.cf_unix_proxy_protocol);
    ck_assert_uint_eq(cf.cf_tcp_nproxy_from, 5);
    ck_assert(proxy_from_has("127.0.0.1"));
    ck_assert(!proxy_from_has("127.0.0.2"));
    ck_assert(proxy_from_has("10.200.3.4"));
    ck_assert(!proxy_from_has("11.0.0.1"));
    ck_assert(proxy_from_has("::1"));
    ck_assert(!proxy_from_has("::2"));
    ck_assert(proxy_from_has("fdab::17"));
    ck_assert(!proxy_from_has("fe80::1"));
    ck_assert(proxy_from_has("::ffff:192.168.7.7"));
    ck_assert(proxy_from_has("192.168.255.255"));

    /* A list may name everyone, though that lets any client claim any address. */
    parse_ok("[tcp]\nproxy_protocol = yes\nproxy_protocol_from = 0.0.0.0/0, ::/0\n");
    ck_assert(proxy_from_has("203.0.113.9"));
    ck_assert(proxy_from_has("2001:db8::9"));
    /* The list alone changes nothing, and is kept for when proxy_protocol is turned on. */
    parse_ok("[tcp]\nproxy_protocol_from = 127.0.0.1\n");
    ck_assert(!cf.cf_tcp_proxy_protocol);
    ck_assert_uint_eq(cf.cf_tcp_nproxy_from, 1);

    parse_bad("[tcp]\nproxy_protocol = yes\n",
              "t.ini:2: [tcp] proxy_protocol: yes, but proxy_protocol_from is empty; list the "
              "addresses or CIDR prefixes of the balancers allowed to send a PROXY header");
    parse_bad("[tcp]\nproxy_protocol = maybe\n",
              "t.ini:2: [tcp] proxy_protocol: must be yes or no (or true/false, on/off, 1/0), got "
              "\"maybe\"");
    /* No "empty" error on top of a bad list. */
    parse_bad("[tcp]\nproxy_protocol = yes\nproxy_protocol_from = 10.0.0.1/8\n",
              "t.ini:3: [tcp] proxy_protocol_from: \"10.0.0.1/8\": address has bits set past the "
              "prefix length");
    parse_bad("[tcp]\nproxy_protocol_from = 10.0.0.0/33\n",
              "t.ini:2: [tcp] proxy_protocol_from: \"10.0.0.0/33\": prefix length must be 0 to "
              "32");
    parse_bad("[tcp]\nproxy_protocol_from = ::/129\n",
              "t.ini:2: [tcp] proxy_protocol_from: \"::/129\": prefix length must be 0 to 128");
    parse_bad("[tcp]\nproxy_protocol_from = 10.0.0.0/\n",
              "t.ini:2: [tcp] proxy_protocol_from: \"10.0.0.0/\": prefix length must be 0 to 32");
    parse_bad("[tcp]\nproxy_protocol_from = 10.0.0.0/+8\n",
              "t.ini:2: [tcp] proxy_protocol_from: \"10.0.0.0/+8\": prefix length must be 0 to "
              "32");
    parse_bad("[tcp]\nproxy_protocol_from = lb.example.com\n",
              "t.ini:2: [tcp] proxy_protocol_from: \"lb.example.com\": not an IPv4 or IPv6 "
              "address (host names are not looked up)");
    parse_bad("[tcp]\nproxy_protocol_from = 127.0.0.1:9090\n",
              "t.ini:2: [tcp] proxy_protocol_from: \"127.0.0.1:9090\": not an IPv4 or IPv6 "
              "address (host names are not looked up)");
    parse_bad("[tcp]\nproxy_protocol_from = 127.0.0.1,,::1\n",
              "t.ini:2: [tcp] proxy_protocol_from: empty address in the list (a stray comma?)");
    parse_bad("[tcp]\nproxy_protocol_from = 127.0.0.1,\n",
              "t.ini:2: [tcp] proxy_protocol_from: the list ends with a comma");
    parse_bad("[tcp]\nproxy_protocol_from = /8\n",
              "t.ini:2: [tcp] proxy_protocol_from: \"/8\": expected an IPv4 or IPv6 address, "
              "optionally with /PREFIX");
    {
        char text[512];
        size_t off = (size_t)snprintf(text, sizeof(text), "[tcp]\nproxy_protocol_from = ");

        for (int i = 0; i < CONFIG_MAX_PROXY_FROM; i++)
            off += (size_t)snprintf(text + off, sizeof(text) - off, "%s::%x", i ? "," : "", i);
        snprintf(text + off, sizeof(text) - off, "\n");
        parse_ok(text);
        ck_assert_uint_eq(cf.cf_tcp_nproxy_from, CONFIG_MAX_PROXY_FROM);
        snprintf(text + off, sizeof(text) - off, ",::ff\n");
        parse_bad(text, "t.ini:2: [tcp] proxy_protocol_from: more than 32 addresses");
    }
    /* A unix socket's peers have no address to check. */
    parse_bad("[unix]\nproxy_protocol_from = 127.0.0.1\n",
              "t.ini:2: [unix] proxy_protocol_from: is not used for [unix]: unix socket peers have "
              "no address; who may connect, and so send a PROXY header, is decided by the "
              "socket's mode and its directory's permissions; leave it empty");
    parse_bad("[tcp]\nproxy_protocol_from = ::1\nproxy_protocol = yes\nproxy_protocol = no\n",
              "t.ini:4: [tcp] proxy_protocol: given twice, first on line 3");
}
END_TEST

/* Every error of a file, each once, in order. */
START_TEST(test_config_many_errors)
{
    static const char text[] = "[tcp]\n"              /* 1 */
                               "backlog = 0\n"        /* 2 */
                               "listen = *:99999\n"   /* 3 */
                               "[bogus]\n"            /* 4 */
                               "x = 1\n"              /* 5 */
                               "[udp\n"               /* 6 */
                               "[log]\n"              /* 7 */
                               "level = loud\n"       /* 8 */
                               "level = quiet\n"      /* 9 */
                               "what is this\n"       /* 10 */
                               "[limits]\n"           /* 11 */
                               "idle_timeout = -1\n"  /* 12 */
                               "max_connection = 5\n" /* 13 */
                               "[server]\n"           /* 14 */
                               "group = staff\n";     /* 15 */
    static const char *const want[] = {
        "t.ini:2: [tcp] backlog: must be a whole number from 1 to 65535, got \"0\"",
        "t.ini:3: [tcp] listen: \"*:99999\": port must be a number from 0 to 65535",
        "t.ini:4: [bogus]: unknown section; known sections are tcp, udp, unix, log, limits, "
        "server, "
        "metrics",
        "t.ini:6: section header \"[udp\" has no closing ']'",
        "t.ini:8: [log] level: must be one of error, warning, info, debug, got \"loud\"",
        "t.ini:9: [log] level: given twice, first on line 8",
        "t.ini:10: expected \"key = value\", a [section] header or a comment, got \"what is "
        "this\"",
        "t.ini:12: [limits] idle_timeout: must be a whole number of seconds from 0 to 31536000, "
        "got \"-1\"",
        "t.ini:13: [limits] max_connection: unknown key; [limits] knows max_connections, "
        "max_pending_output, max_memory, max_connections_per_source, idle_timeout, "
        "shutdown_timeout",
        "t.ini:15: [server] group: set without user; group only applies when dropping privileges "
        "to a user, so set user too",
    };
    size_t n = sizeof(want) / sizeof(want[0]);

    ck_assert_int_eq(parse(text), (int)n);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(ms.m_text[i], want[i]);
    ck_assert(reported(want[n - 1]));
}
END_TEST

START_TEST(test_config_files)
{
    char dir[] = "/tmp/test-config-XXXXXX", path[PATH_MAX], msg[PATH_MAX + 64];
    static const char text[] =
        "[tcp]\nbacklog = 3\n[log]\nlevel = de\0bug\n[udp]\nrate_limit = 9\n";
    int fd;

    ck_assert_ptr_nonnull(mkdtemp(dir));

    snprintf(path, sizeof(path), "%s/missing.ini", dir);
    memset(&ms, 0, sizeof(ms));
    ck_assert_int_eq(config_parse_file(&cf, path, collect, &ms), -ENOENT);
    ck_assert_int_eq(ms.m_n, 1);
    snprintf(msg, sizeof(msg), "%s: cannot read: %s", path, strerror(ENOENT));
    ck_assert_str_eq(ms.m_text[0], msg);
    ck_assert_str_eq(cf.cf_file, path);
    ck_assert_int_eq(cf.cf_tcp_backlog, 1024);

    memset(&ms, 0, sizeof(ms));
    ck_assert_int_eq(config_parse_file(&cf, dir, collect, &ms), -EISDIR);
    ck_assert_int_eq(ms.m_n, 1);
    snprintf(msg, sizeof(msg), "%s: cannot read: %s", dir, strerror(EISDIR));
    ck_assert_str_eq(ms.m_text[0], msg);

    /* A file is parsed whole, a NUL byte in it reported on its line. */
    snprintf(path, sizeof(path), "%s/nul.ini", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
    close(fd);
    memset(&ms, 0, sizeof(ms));
    ck_assert_int_eq(config_parse_file(&cf, path, collect, &ms), 1);
    snprintf(msg, sizeof(msg), "%s:4: line contains a NUL byte", path);
    ck_assert_str_eq(ms.m_text[0], msg);
    ck_assert_int_eq(cf.cf_tcp_backlog, 3);
    ck_assert_uint_eq(cf.cf_udp_rate_limit, 9);
    ck_assert_int_eq(cf.cf_log_level, LOG_LEVEL_INFO);
    unlink(path);

    /*
     * A FIFO would block the reader (and the daemon's loop on reload) until
     * someone wrote to it: only a regular file is read, and the error names it.
     */
    snprintf(path, sizeof(path), "%s/fifo.ini", dir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    memset(&ms, 0, sizeof(ms));
    ck_assert_int_eq(config_parse_file(&cf, path, collect, &ms), -EINVAL);
    ck_assert_int_eq(ms.m_n, 1);
    snprintf(msg, sizeof(msg), "%s: not a regular file (a FIFO, device or socket?)", path);
    ck_assert_str_eq(ms.m_text[0], msg);
    unlink(path);
    memset(&ms, 0, sizeof(ms));
    ck_assert_int_eq(config_parse_file(&cf, "/dev/zero", collect, &ms), -EINVAL);
    ck_assert_str_eq(ms.m_text[0], "/dev/zero: not a regular file (a FIFO, device or socket?)");

    /* An unreadable file gives -EACCES, unless we run as root. */
    if (geteuid() != 0) {
        snprintf(path, sizeof(path), "%s/secret.ini", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0);
        ck_assert_int_ge(fd, 0);
        close(fd);
        memset(&ms, 0, sizeof(ms));
        ck_assert_int_eq(config_parse_file(&cf, path, collect, &ms), -EACCES);
        ck_assert_int_eq(ms.m_n, 1);
        unlink(path);
    }
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/*
 * config_key() lists exactly what the parser knows: each key with its
 * default parses, and an unknown key's message names the same keys.
 */
START_TEST(test_config_key_list)
{
    static const char *const sections[] = {"tcp",    "udp",    "unix",   "log",
                                           "limits", "server", "metrics"};
    const char *section, *name, *def;
    char text[512], want[512];
    size_t i, n = 0;

    for (i = 0; config_key(i, &section, &name, &def) == 0; i++) {
        snprintf(text, sizeof(text), "[%s]\n%s = %s\n", section, name, def);
        parse_ok(text);
    }
    ck_assert_uint_ge(i, 18);
    ck_assert_int_eq(config_key(i, &section, &name, &def), -ENOENT);
    for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
        size_t off = 0;

        off += (size_t)snprintf(want, sizeof(want), "t.ini:2: [%s] zz: unknown key; [%s] knows ",
                                sections[s], sections[s]);
        for (size_t k = 0, first = 1; config_key(k, &section, &name, &def) == 0; k++) {
            if (strcmp(section, sections[s]) != 0)
                continue;
            off +=
                (size_t)snprintf(want + off, sizeof(want) - off, "%s%s", first ? "" : ", ", name);
            first = 0;
            n++;
        }
        snprintf(text, sizeof(text), "[%s]\nzz = 1\n", sections[s]);
        parse_bad(text, want);
    }
    /* Every key belongs to one of the sections above. */
    ck_assert_uint_eq(n, i);
}
END_TEST

START_TEST(test_config_no_callback)
{
    /* Errors are still counted when nobody listens to them. */
    ck_assert_int_eq(config_parse_string(&cf, "x", "[tcp]\nbacklog = 0\n[x]\n", NULL, NULL), 2);
    ck_assert_str_eq(cf.cf_file, "x");
}
END_TEST

static Suite *
config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_config_defaults);
    tcase_add_test(tc, test_config_shipped_ini);
    tcase_add_test(tc, test_config_bools);
    tcase_add_test(tc, test_config_listen);
    tcase_add_test(tc, test_config_values);
    tcase_add_test(tc, test_config_metrics);
    tcase_add_test(tc, test_config_sizes);
    tcase_add_test(tc, test_config_bad_values);
    tcase_add_test(tc, test_config_listen_lines);
    tcase_add_test(tc, test_config_bad_keeps_default);
    tcase_add_test(tc, test_config_listen_limits);
    tcase_add_test(tc, test_config_syntax);
    tcase_add_test(tc, test_config_long_lines);
    tcase_add_test(tc, test_config_cross_checks);
    tcase_add_test(tc, test_config_proxy);
    tcase_add_test(tc, test_config_many_errors);
    tcase_add_test(tc, test_config_files);
    tcase_add_test(tc, test_config_no_callback);
    tcase_add_test(tc, test_config_key_list);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return check_main(config_suite(), CK_NORMAL);
}
