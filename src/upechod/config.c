/* config.c: parse upechod.ini into a struct upechod_config and validate it in one place. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "number.h"
#include "upechod-build.h"

/* Largest file config_parse_file() reads: a real one is a few kilobytes. */
#define CONFIG_FILE_MAX (1024 * 1024)
/* Bounds that catch typos without getting in the way of a real deployment. */
#define CONFIG_MAX_CONNECTIONS_MAX 10000000ULL
#define CONFIG_PENDING_MIN 4096
#define CONFIG_RATE_LIMIT_MAX 1000000ULL
#define CONFIG_IDLE_TIMEOUT_MAX (86400ULL * 365)
#define CONFIG_SHUTDOWN_TIMEOUT_MAX 3600ULL
#define CONFIG_WORKERS_MAX 256ULL

static const char *const config_sections[] = {"tcp",    "udp",    "unix",   "log",
                                              "limits", "server", "metrics"};
#define CONFIG_NSECTIONS (int)(sizeof(config_sections) / sizeof(config_sections[0]))
/* p_section before the first header, and after a header that is not usable. */
#define SECTION_NONE (-1)
#define SECTION_BAD (-2)

enum config_key_id {
    KEY_TCP_ENABLED,
    KEY_TCP_LISTEN,
    KEY_TCP_BACKLOG,
    KEY_TCP_PROXY_PROTOCOL,
    KEY_TCP_PROXY_FROM,
    KEY_UDP_ENABLED,
    KEY_UDP_LISTEN,
    KEY_UDP_DROP_PRIVILEGED,
    KEY_UDP_RATE_LIMIT,
    KEY_UDP_RATE_LIMIT_PER_PORT,
    KEY_UNIX_ENABLED,
    KEY_UNIX_PATH,
    KEY_UNIX_MODE,
    KEY_UNIX_BACKLOG,
    KEY_UNIX_PROXY_PROTOCOL,
    KEY_UNIX_PROXY_FROM,
    KEY_LOG_LEVEL,
    KEY_MAX_CONNECTIONS,
    KEY_MAX_PENDING_OUTPUT,
    KEY_MAX_MEMORY,
    KEY_MAX_CONNECTIONS_PER_SOURCE,
    KEY_IDLE_TIMEOUT,
    KEY_SHUTDOWN_TIMEOUT,
    KEY_USER,
    KEY_GROUP,
    KEY_WORKERS,
    KEY_METRICS_ENABLED,
    KEY_METRICS_LISTEN,
    KEY_COUNT
};

/*
 * Every key upechod knows, with its default written as it would be in the
 * file: config_defaults() runs these texts through the same code as the file,
 * so the built-in defaults and conf/upechod.ini cannot drift apart in meaning.
 */
struct config_key {
    int k_section; /* index into config_sections */
    const char *k_name;
    const char *k_default;
};

static const struct config_key config_keys[KEY_COUNT] = {
    [KEY_TCP_ENABLED] = {0, "enabled", "yes"},
    [KEY_TCP_LISTEN] = {0, "listen", "127.0.0.1:9090"},
    [KEY_TCP_BACKLOG] = {0, "backlog", "1024"},
    [KEY_TCP_PROXY_PROTOCOL] = {0, "proxy_protocol", "no"},
    [KEY_TCP_PROXY_FROM] = {0, "proxy_protocol_from", ""},
    [KEY_UDP_ENABLED] = {1, "enabled", "yes"},
    [KEY_UDP_LISTEN] = {1, "listen", "127.0.0.1:7777"},
    [KEY_UDP_DROP_PRIVILEGED] = {1, "drop_privileged_source_ports", "yes"},
    [KEY_UDP_RATE_LIMIT] = {1, "rate_limit", "0"},
    [KEY_UDP_RATE_LIMIT_PER_PORT] = {1, "rate_limit_per_port", "10000"},
    [KEY_UNIX_ENABLED] = {2, "enabled", "no"},
    [KEY_UNIX_PATH] = {2, "path", "/run/upechod/upechod.sock"},
    [KEY_UNIX_MODE] = {2, "mode", "0660"},
    [KEY_UNIX_BACKLOG] = {2, "backlog", "1024"},
    [KEY_UNIX_PROXY_PROTOCOL] = {2, "proxy_protocol", "no"},
    [KEY_UNIX_PROXY_FROM] = {2, "proxy_protocol_from", ""},
    [KEY_LOG_LEVEL] = {3, "level", "info"},
    [KEY_MAX_CONNECTIONS] = {4, "max_connections", "10000"},
    [KEY_MAX_PENDING_OUTPUT] = {4, "max_pending_output", "1M"},
    [KEY_MAX_MEMORY] = {4, "max_memory", "256M"},
    [KEY_MAX_CONNECTIONS_PER_SOURCE] = {4, "max_connections_per_source", "0"},
    [KEY_IDLE_TIMEOUT] = {4, "idle_timeout", "300"},
    [KEY_SHUTDOWN_TIMEOUT] = {4, "shutdown_timeout", "10"},
    [KEY_USER] = {5, "user", ""},
    [KEY_GROUP] = {5, "group", ""},
    [KEY_WORKERS] = {5, "workers", "1"},
    [KEY_METRICS_ENABLED] = {6, "enabled", "no"},
    [KEY_METRICS_LISTEN] = {6, "listen", "127.0.0.1:9477"},
};

/*
 * State shared by the line reader, the inih handler and config_validate().
 * inih in Debian hands its handler no line number, so the reader counts lines
 * and the handler, which inih calls before reading the next line, uses that.
 */
struct config_parser {
    struct upechod_config *p_cf;
    const char *p_name; /* file name for messages */
    config_error_fn p_err;
    void *p_arg;
    int p_nerrors;

    const char *p_text; /* the whole input; may hold NUL bytes when read from a file */
    size_t p_len;
    size_t p_off;
    int p_lineno;

    int p_section;       /* index into config_sections, SECTION_NONE or SECTION_BAD */
    char p_prev_key[64]; /* last key since the header, "" if none: continuation lines */
    int p_prev_line;
    bool p_continued;          /* the line inih is handling continues the list key p_list_id */
    int p_list_id;             /* the key the last key line set, -1 if it was rejected */
    int p_open_line;           /* a list line that ended in a comma, 0 if none */
    int p_open_id;             /* its key */
    int p_key_line[KEY_COUNT]; /* where each key was given, 0 if not */
    bool p_key_bad[KEY_COUNT]; /* its value was rejected, so cross-key checks skip it */
};

/* Append printf output at *off in buf, keeping buf NUL-terminated when it fills up. */
__attribute__((format(printf, 4, 0))) static void
config_vappend(char *buf, size_t size, size_t *off, const char *fmt, va_list ap)
{
    int n;

    if (*off >= size - 1)
        return;
    n = vsnprintf(buf + *off, size - *off, fmt, ap);
    if (n < 0)
        return;
    *off = (size_t)n < size - *off ? *off + (size_t)n : size - 1;
}

__attribute__((format(printf, 4, 5))) static void
config_append(char *buf, size_t size, size_t *off, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    config_vappend(buf, size, off, fmt, ap);
    va_end(ap);
}

/*
 * Append a name (file, section or key) with control characters replaced by
 * '?', so that whatever the input holds, a message stays one line.
 */
static void
config_append_clean(char *buf, size_t size, size_t *off, const char *s)
{
    for (; *s != '\0' && *off < size - 1; s++)
        buf[(*off)++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    buf[*off] = '\0';
}

/*
 * Quote a value for a message: "..." with control characters, quotes and
 * backslashes escaped, cut short with ... when it does not fit.  Returns buf.
 */
static const char *
config_quote(char *buf, size_t size, const char *s)
{
    size_t off = 0;

    buf[off++] = '"';
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        /* Room for the longest escape plus the closing ..." and NUL. */
        if (off + 4 + 5 > size) {
            memcpy(buf + off, "...", 3);
            off += 3;
            break;
        }
        if (c < 0x20 || c == 0x7f) {
            snprintf(buf + off, 5, "\\x%02x", c);
            off += 4;
        } else {
            if (c == '"' || c == '\\')
                buf[off++] = '\\';
            buf[off++] = (char)c;
        }
    }
    buf[off++] = '"';
    buf[off] = '\0';
    return buf;
}

/*
 * Report one error as "FILE:LINE: [section] key: message", leaving out the
 * parts that are NULL (and LINE when it is 0), and count it.
 */
__attribute__((format(printf, 5, 6))) static void
config_report(struct config_parser *p, int line, const char *section, const char *key,
              const char *fmt, ...)
{
    char msg[sizeof(p->p_cf->cf_file) + 1024];
    size_t off = 0;
    va_list ap;

    msg[0] = '\0';
    config_append_clean(msg, sizeof(msg), &off, p->p_name);
    if (line > 0)
        config_append(msg, sizeof(msg), &off, ":%d", line);
    config_append(msg, sizeof(msg), &off, ": ");
    if (section != NULL) {
        config_append(msg, sizeof(msg), &off, "[");
        config_append_clean(msg, sizeof(msg), &off, section);
        config_append(msg, sizeof(msg), &off, "]");
        if (key != NULL) {
            config_append(msg, sizeof(msg), &off, " ");
            config_append_clean(msg, sizeof(msg), &off, key);
        }
        config_append(msg, sizeof(msg), &off, ": ");
    }
    va_start(ap, fmt);
    config_vappend(msg, sizeof(msg), &off, fmt, ap);
    va_end(ap);

    p->p_nerrors++;
    if (p->p_err != NULL)
        p->p_err(p->p_arg, msg);
}

/* Report a bad value for key id, on the line being parsed. */
#define config_bad(p, id, ...)                                                                     \
    config_report((p), (p)->p_lineno, config_sections[config_keys[id].k_section],                  \
                  config_keys[id].k_name, __VA_ARGS__)

static int
config_bool(struct config_parser *p, int id, const char *v, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    char q[1024];

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    config_bad(p, id, "must be yes or no (or true/false, on/off, 1/0), got %s",
               config_quote(q, sizeof(q), v));
    return -EINVAL;
}

/* A whole number from min to max; unit, if not NULL, names what it counts. */
static int
config_number(struct config_parser *p, int id, const char *v, unsigned long long min,
              unsigned long long max, const char *unit, unsigned long long *out)
{
    char q[1024];

    if (number_parse(v, 10, out) == 0 && *out >= min && *out <= max)
        return 0;
    config_bad(p, id, "must be a whole number%s%s from %llu to %llu, got %s", unit ? " of " : "",
               unit ? unit : "", min, max, config_quote(q, sizeof(q), v));
    return -EINVAL;
}

/* A byte count with an optional K, M or G suffix (1024-based), at least 4K. */
static int
config_size(struct config_parser *p, int id, const char *v, size_t *out)
{
    char digits[32], q[1024];
    size_t n = strlen(v), shift = 0;
    unsigned long long num;
    int rc;

    if (n > 0) {
        switch (v[n - 1]) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        }
    }
    if (shift != 0)
        n--;
    rc = -EINVAL;
    if (n < sizeof(digits)) {
        memcpy(digits, v, n);
        digits[n] = '\0';
        rc = number_parse(digits, 10, &num);
    }
    if (rc == 0 && (num > (SIZE_MAX >> shift)))
        rc = -ERANGE;
    if (rc == -ERANGE) {
        config_bad(p, id, "is too large, got %s", config_quote(q, sizeof(q), v));
        return rc;
    }
    if (rc == 0 && (num << shift) >= CONFIG_PENDING_MIN) {
        *out = (size_t)(num << shift);
        return 0;
    }
    config_bad(p, id,
               "must be a size of at least 4K, in bytes or with a K, M or G suffix "
               "(1024-based), got %s",
               config_quote(q, sizeof(q), v));
    return -EINVAL;
}

/*
 * A comma-separated list of HOST:PORT.  The list replaces the previous one
 * only when every item is good, so that a bad item does not also show up as
 * an empty list in config_validate().  An indented line after it
 * (p_continued) adds to the list, and only to a list whose lines were all
 * good; a line may end in a comma when such a line follows it.
 */
static int
config_listen(struct config_parser *p, int id, const char *v, struct addr *addrs,
              char (*texts)[ADDR_STRLEN], size_t *naddrs)
{
    struct addr a[CONFIG_MAX_LISTEN];
    char t[CONFIG_MAX_LISTEN][ADDR_STRLEN];
    char q[1024], q2[1024];
    size_t n = 0;
    int bad = 0;
    const char *s = v;

    /* A list's next line adds to what its lines gave so far, if they were all good. */
    if (p->p_continued && !p->p_key_bad[id]) {
        n = *naddrs;
        memcpy(a, addrs, n * sizeof(a[0]));
        memcpy(t, texts, n * sizeof(t[0]));
    }

    while (isspace((unsigned char)*s))
        s++;
    while (*s != '\0') {
        const char *end = strchr(s, ','), *e, *why;
        size_t len;

        if (end == NULL)
            end = s + strlen(s);
        e = end;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        while (s < e && isspace((unsigned char)*s))
            s++;
        len = (size_t)(e - s);
        if (len == 0) {
            config_bad(p, id, "empty address in the list (a stray comma?)");
            bad = 1;
        } else if (n == CONFIG_MAX_LISTEN) {
            config_bad(p, id, "more than %d addresses", CONFIG_MAX_LISTEN);
            bad = 1;
            break;
        } else if (len >= ADDR_STRLEN) {
            memcpy(t[n], s, ADDR_STRLEN - 1);
            t[n][ADDR_STRLEN - 1] = '\0';
            config_bad(p, id, "%s: address too long (at most %d characters)",
                       config_quote(q, sizeof(q), t[n]), ADDR_STRLEN - 1);
            bad = 1;
        } else {
            memcpy(t[n], s, len);
            t[n][len] = '\0';
            if (addr_parse(t[n], ADDR_NUMERIC, &a[n], &why) != 0) {
                config_bad(p, id, "%s: %s", config_quote(q, sizeof(q), t[n]), why);
                bad = 1;
            } else {
                size_t i;

                for (i = 0; i < n && !addr_equal(&a[i], &a[n]); i++)
                    ;
                if (i < n && strcmp(t[i], t[n]) == 0) {
                    config_bad(p, id, "%s is listed twice", config_quote(q, sizeof(q), t[n]));
                    bad = 1;
                } else if (i < n) {
                    config_bad(p, id, "%s is the same address as %s, listed before it",
                               config_quote(q, sizeof(q), t[n]),
                               config_quote(q2, sizeof(q2), t[i]));
                    bad = 1;
                } else {
                    n++;
                }
            }
        }
        if (*end == '\0')
            break;
        s = end + 1;
        /* A comma must be followed by another address, here or on the next line. */
        if (*s == '\0') {
            p->p_open_line = p->p_lineno;
            p->p_open_id = id;
        }
    }
    if (bad)
        return -EINVAL;
    if (p->p_continued && p->p_key_bad[id])
        return 0;
    memcpy(addrs, a, n * sizeof(a[0]));
    memcpy(texts, t, n * sizeof(t[0]));
    *naddrs = n;
    return 0;
}

/* A comma-separated list of addresses and CIDR prefixes; empty is an empty list. */
static int
config_proxy_from(struct config_parser *p, int id, const char *v, struct proxy_net *nets,
                  size_t *nnets)
{
    struct proxy_net a[CONFIG_MAX_PROXY_FROM];
    char t[ADDR_STRLEN], q[1024];
    size_t n = 0;
    int bad = 0;
    const char *s = v, *why;

    while (isspace((unsigned char)*s))
        s++;
    while (*s != '\0') {
        const char *end = strchr(s, ','), *e;

        if (end == NULL)
            end = s + strlen(s);
        e = end;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        while (s < e && isspace((unsigned char)*s))
            s++;
        if (e == s) {
            config_bad(p, id, "empty address in the list (a stray comma?)");
            bad = 1;
        } else if (n == CONFIG_MAX_PROXY_FROM) {
            config_bad(p, id, "more than %d addresses", CONFIG_MAX_PROXY_FROM);
            bad = 1;
            break;
        } else if ((size_t)(e - s) >= sizeof(t)) {
            config_bad(p, id, "address too long (at most %zu characters)", sizeof(t) - 1);
            bad = 1;
        } else {
            memcpy(t, s, (size_t)(e - s));
            t[e - s] = '\0';
            if (proxy_net_parse(t, &a[n], &why) != 0) {
                config_bad(p, id, "%s: %s", config_quote(q, sizeof(q), t), why);
                bad = 1;
            } else {
                n++;
            }
        }
        if (*end == '\0')
            break;
        s = end + 1;
        if (*s == '\0') {
            config_bad(p, id, "the list ends with a comma");
            bad = 1;
        }
    }
    if (bad)
        return -EINVAL;
    memcpy(nets, a, n * sizeof(a[0]));
    *nnets = n;
    return 0;
}

static int
config_mode(struct config_parser *p, int id, const char *v, mode_t *out)
{
    unsigned long long m;
    char q[1024];

    /*
     * Permission bits only: setuid, setgid and sticky mean nothing on a
     * socket, and a mode that asks for them is a typo or worse.
     */
    if (number_parse(v, 8, &m) == 0 && m <= 0777) {
        *out = (mode_t)m;
        return 0;
    }
    config_bad(p, id,
               "must be an octal file mode from 0000 to 0777 (no setuid, setgid or sticky bit), "
               "such as 0660, got %s",
               config_quote(q, sizeof(q), v));
    return -EINVAL;
}

static int
config_path(struct config_parser *p, int id, const char *v, char *out, size_t size)
{
    char q[1024];
    size_t n = strlen(v);

    if (n == 0) {
        config_bad(p, id, "must not be empty; give an absolute path such as %s",
                   config_keys[id].k_default);
        return -EINVAL;
    }
    if (v[0] != '/') {
        config_bad(p, id, "must be an absolute path (starting with /), got %s",
                   config_quote(q, sizeof(q), v));
        return -EINVAL;
    }
    if (n >= size) {
        config_bad(p, id, "is %zu characters, longer than a unix socket path can be (at most %zu)",
                   n, size - 1);
        return -EINVAL;
    }
    memcpy(out, v, n + 1);
    return 0;
}

static int
config_level(struct config_parser *p, int id, const char *v, enum log_level *out)
{
    char q[1024];

    if (log_level_parse(v, out) == 0)
        return 0;
    config_bad(p, id, "must be one of error, warning, info, debug, got %s",
               config_quote(q, sizeof(q), v));
    return -EINVAL;
}

/*
 * One HOST:PORT, for a listener that takes a single address (the metrics
 * endpoint): a list is an error rather than its first item.
 */
static int
config_addr(struct config_parser *p, int id, const char *v, struct addr *out, char *text)
{
    char q[1024];
    const char *why;
    struct addr a;
    size_t len = strlen(v);

    if (len == 0) {
        config_bad(p, id, "must not be empty; give one HOST:PORT such as %s",
                   config_keys[id].k_default);
        return -EINVAL;
    }
    if (strchr(v, ',') != NULL) {
        config_bad(p, id, "takes one address, got the list %s", config_quote(q, sizeof(q), v));
        return -EINVAL;
    }
    if (len >= ADDR_STRLEN) {
        config_bad(p, id, "address too long (at most %d characters)", ADDR_STRLEN - 1);
        return -EINVAL;
    }
    if (addr_parse(v, ADDR_NUMERIC, &a, &why) != 0) {
        config_bad(p, id, "%s: %s", config_quote(q, sizeof(q), v), why);
        return -EINVAL;
    }
    *out = a;
    memcpy(text, v, len + 1);
    return 0;
}

/* A user or group name; "" means not set. */
static int
config_name(struct config_parser *p, int id, const char *v, char *out, size_t size)
{
    char q[1024];
    size_t n = strlen(v);

    if (n >= size) {
        config_bad(p, id, "too long (at most %zu characters)", size - 1);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (isspace((unsigned char)v[i]) || iscntrl((unsigned char)v[i]) || v[i] == ':') {
            config_bad(p, id, "%s is not a valid %s name (no spaces, colons or control characters)",
                       config_quote(q, sizeof(q), v), config_keys[id].k_name);
            return -EINVAL;
        }
    }
    memcpy(out, v, n + 1);
    return 0;
}

/*
 * workers: a count, or "auto" for the CPUs this process may run on (its
 * affinity mask, which taskset, cgroups' cpusets and systemd's CPUAffinity=
 * narrow), so that a container given 2 of 64 cores starts 2 workers.
 */
static int
config_workers(struct config_parser *p, int id, const char *v, unsigned *out)
{
    unsigned long long n;
    cpu_set_t set;
    char q[1024];

    if (strcmp(v, "auto") == 0) {
        n = sched_getaffinity(0, sizeof(set), &set) == 0 ? (unsigned long long)CPU_COUNT(&set) : 1;
        *out = (unsigned)(n < 1 ? 1 : n > CONFIG_WORKERS_MAX ? CONFIG_WORKERS_MAX : n);
        return 0;
    }
    if (number_parse(v, 10, &n) == 0 && n >= 1 && n <= CONFIG_WORKERS_MAX) {
        *out = (unsigned)n;
        return 0;
    }
    config_bad(p, id, "must be a whole number from 1 to %llu, or auto, got %s", CONFIG_WORKERS_MAX,
               config_quote(q, sizeof(q), v));
    return -EINVAL;
}

/* Parse value for key id into the config; 0, or -EINVAL after reporting why. */
static int
config_set(struct config_parser *p, int id, const char *v)
{
    struct upechod_config *cf = p->p_cf;
    unsigned long long n = 0;
    int rc;

    switch (id) {
    case KEY_TCP_ENABLED:
        return config_bool(p, id, v, &cf->cf_tcp_enabled);
    case KEY_TCP_LISTEN:
        return config_listen(p, id, v, cf->cf_tcp_listen, cf->cf_tcp_listen_text,
                             &cf->cf_tcp_nlisten);
    case KEY_TCP_BACKLOG:
        if ((rc = config_number(p, id, v, 1, 65535, NULL, &n)) == 0)
            cf->cf_tcp_backlog = (int)n;
        return rc;
    case KEY_TCP_PROXY_PROTOCOL:
        return config_bool(p, id, v, &cf->cf_tcp_proxy_protocol);
    case KEY_TCP_PROXY_FROM:
        return config_proxy_from(p, id, v, cf->cf_tcp_proxy_from, &cf->cf_tcp_nproxy_from);
    case KEY_UDP_ENABLED:
        return config_bool(p, id, v, &cf->cf_udp_enabled);
    case KEY_UDP_LISTEN:
        return config_listen(p, id, v, cf->cf_udp_listen, cf->cf_udp_listen_text,
                             &cf->cf_udp_nlisten);
    case KEY_UDP_DROP_PRIVILEGED:
        return config_bool(p, id, v, &cf->cf_udp_drop_privileged);
    case KEY_UDP_RATE_LIMIT:
        if ((rc = config_number(p, id, v, 0, CONFIG_RATE_LIMIT_MAX, NULL, &n)) == 0)
            cf->cf_udp_rate_limit = (unsigned)n;
        return rc;
    case KEY_UDP_RATE_LIMIT_PER_PORT:
        if ((rc = config_number(p, id, v, 0, CONFIG_RATE_LIMIT_MAX, NULL, &n)) == 0)
            cf->cf_udp_rate_limit_per_port = (unsigned)n;
        return rc;
    case KEY_UNIX_ENABLED:
        return config_bool(p, id, v, &cf->cf_unix_enabled);
    case KEY_UNIX_PATH:
        return config_path(p, id, v, cf->cf_unix_path, sizeof(cf->cf_unix_path));
    case KEY_UNIX_MODE:
        return config_mode(p, id, v, &cf->cf_unix_mode);
    case KEY_UNIX_BACKLOG:
        if ((rc = config_number(p, id, v, 1, 65535, NULL, &n)) == 0)
            cf->cf_unix_backlog = (int)n;
        return rc;
    case KEY_UNIX_PROXY_PROTOCOL:
        return config_bool(p, id, v, &cf->cf_unix_proxy_protocol);
    case KEY_UNIX_PROXY_FROM:
        /* Known, so that the message can say why it does not apply rather than "unknown key". */
        if (v[0] == '\0')
            return 0;
        config_bad(p, id,
                   "is not used for [unix]: unix socket peers have no address; who may connect, "
                   "and so send a PROXY header, is decided by the socket's mode and its "
                   "directory's permissions; leave it empty");
        return -EINVAL;
    case KEY_LOG_LEVEL:
        return config_level(p, id, v, &cf->cf_log_level);
    case KEY_MAX_CONNECTIONS:
        if ((rc = config_number(p, id, v, 1, CONFIG_MAX_CONNECTIONS_MAX, NULL, &n)) == 0)
            cf->cf_max_connections = (size_t)n;
        return rc;
    case KEY_MAX_PENDING_OUTPUT:
        return config_size(p, id, v, &cf->cf_max_pending_output);
    case KEY_MAX_MEMORY:
        return config_size(p, id, v, &cf->cf_max_memory);
    case KEY_MAX_CONNECTIONS_PER_SOURCE:
        if ((rc = config_number(p, id, v, 0, CONFIG_MAX_CONNECTIONS_MAX, NULL, &n)) == 0)
            cf->cf_max_connections_per_source = (size_t)n;
        return rc;
    case KEY_IDLE_TIMEOUT:
        if ((rc = config_number(p, id, v, 0, CONFIG_IDLE_TIMEOUT_MAX, "seconds", &n)) == 0)
            cf->cf_idle_timeout = (unsigned)n;
        return rc;
    case KEY_SHUTDOWN_TIMEOUT:
        if ((rc = config_number(p, id, v, 1, CONFIG_SHUTDOWN_TIMEOUT_MAX, "seconds", &n)) == 0)
            cf->cf_shutdown_timeout = (unsigned)n;
        return rc;
    case KEY_USER:
        return config_name(p, id, v, cf->cf_user, sizeof(cf->cf_user));
    case KEY_GROUP:
        return config_name(p, id, v, cf->cf_group, sizeof(cf->cf_group));
    case KEY_WORKERS:
        return config_workers(p, id, v, &cf->cf_workers);
    case KEY_METRICS_ENABLED:
        return config_bool(p, id, v, &cf->cf_metrics_enabled);
    case KEY_METRICS_LISTEN:
        return config_addr(p, id, v, &cf->cf_metrics_listen, cf->cf_metrics_listen_text);
    }
    return -EINVAL;
}

/* "a, b, c" into buf: the known sections, or the known keys of one section. */
static const char *
config_known(char *buf, size_t size, int section)
{
    size_t off = 0;

    buf[0] = '\0';
    if (section < 0) {
        for (int i = 0; i < CONFIG_NSECTIONS; i++)
            config_append(buf, size, &off, "%s%s", i ? ", " : "", config_sections[i]);
        return buf;
    }
    for (int i = 0; i < KEY_COUNT; i++) {
        if (config_keys[i].k_section == section)
            config_append(buf, size, &off, "%s%s", off ? ", " : "", config_keys[i].k_name);
    }
    return buf;
}

/* inih's handler: called for each key line the reader let through, in a usable section. */
static int
config_handler(void *user, const char *section, const char *name, const char *value)
{
    struct config_parser *p = user;
    const char *sec = config_sections[p->p_section];
    char known[256];
    int id;

    for (id = 0; id < KEY_COUNT; id++) {
        if (config_keys[id].k_section == p->p_section && strcmp(config_keys[id].k_name, name) == 0)
            break;
    }
    if (p->p_continued) {
        /* A list's next line; nothing more to say if its key line was rejected. */
        if (id == p->p_list_id && config_set(p, id, value) != 0)
            p->p_key_bad[id] = true;
        p->p_continued = false;
        return 1;
    }
    p->p_list_id = -1;
    if (id == KEY_COUNT) {
        config_report(p, p->p_lineno, sec, name, "unknown key; [%s] knows %s", sec,
                      config_known(known, sizeof(known), p->p_section));
        return 1;
    }
    if (p->p_key_line[id] != 0) {
        config_bad(p, id, "given twice, first on line %d", p->p_key_line[id]);
        return 1;
    }
    p->p_key_line[id] = p->p_lineno;
    p->p_list_id = id;
    if (config_set(p, id, value) != 0)
        p->p_key_bad[id] = true;
    return 1;
}

/* Whether key `name` of section `section` is a list that may go on over indented lines. */
static bool
config_is_list(int section, const char *name)
{
    return (section == config_keys[KEY_TCP_LISTEN].k_section ||
            section == config_keys[KEY_UDP_LISTEN].k_section) &&
           strcmp(name, "listen") == 0;
}

/* A list line ended in a comma and no indented line went on with it. */
static void
config_close_list(struct config_parser *p)
{
    int id = p->p_open_id;

    if (p->p_open_line == 0)
        return;
    config_report(p, p->p_open_line, config_sections[config_keys[id].k_section],
                  config_keys[id].k_name,
                  "the list ends with a comma; continue it on an indented next line, "
                  "or remove the comma");
    p->p_key_bad[id] = true;
    p->p_open_line = 0;
}

/*
 * Sort one line (NUL-terminated in line, which is also inih's buffer) the
 * way inih would, report what is wrong with it, and leave in line what inih
 * should see: the line itself without leading whitespace, or a blank line.
 */
static void
config_classify(struct config_parser *p, char *line)
{
    char *s = line, *e;
    char q[1024], known[256];
    int was_space = 0;

    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0' || *s == ';' || *s == '#')
        goto blank;

    /*
     * inih continues the previous key's value on an indented line: a listen
     * list may go on that way, any other value must fit on its line.
     */
    if (s > line && p->p_prev_key[0] != '\0') {
        if (p->p_section >= 0 && config_is_list(p->p_section, p->p_prev_key)) {
            /* Cut an inline comment as inih does on key lines; hand it " items". */
            for (e = s; *e != '\0' && !(was_space && *e == ';'); e++)
                was_space = isspace((unsigned char)*e);
            while (e > s && isspace((unsigned char)e[-1]))
                e--;
            *e = '\0';
            p->p_continued = true;
            p->p_open_line = 0;
            memmove(line + 1, s, (size_t)(e - s) + 1);
            line[0] = ' ';
            strcat(line, "\n");
            return;
        }
        if (p->p_section >= 0)
            config_report(p, p->p_lineno, config_sections[p->p_section], p->p_prev_key,
                          "only a [tcp] or [udp] listen list goes on over indented lines; "
                          "put the whole value on line %d, or remove the leading whitespace",
                          p->p_prev_line);
        goto blank;
    }
    config_close_list(p);

    if (*s == '[') {
        char *name = s + 1, *close = strchr(s, ']'), *rest;
        int i;

        p->p_prev_key[0] = '\0';
        p->p_section = SECTION_BAD;
        if (close == NULL) {
            config_report(p, p->p_lineno, NULL, NULL, "section header %s has no closing ']'",
                          config_quote(q, sizeof(q), s));
            goto blank;
        }
        for (rest = close + 1; isspace((unsigned char)*rest); rest++)
            ;
        while (isspace((unsigned char)*name))
            name++;
        e = close;
        while (e > name && isspace((unsigned char)e[-1]))
            e--;
        *e = '\0';
        if (*name == '\0') {
            config_report(p, p->p_lineno, NULL, NULL, "empty section name");
            goto blank;
        }
        for (i = 0; i < CONFIG_NSECTIONS && strcmp(config_sections[i], name) != 0; i++)
            ;
        if (i == CONFIG_NSECTIONS) {
            config_report(p, p->p_lineno, name, NULL, "unknown section; known sections are %s",
                          config_known(known, sizeof(known), -1));
            goto blank;
        }
        p->p_section = i;
        if (*rest != '\0' && *rest != ';' && *rest != '#')
            config_report(p, p->p_lineno, name, NULL, "unexpected text %s after ']'",
                          config_quote(q, sizeof(q), rest));
        /* Hand inih the bare header, which is never longer than the line it came from. */
        line[0] = '[';
        strcpy(line + 1, config_sections[i]);
        strcat(line, "]\n");
        return;
    }

    /* Find the '=' or ':' the way inih does: an inline comment is ';' after whitespace. */
    for (e = s; *e != '\0' && *e != '=' && *e != ':' && !(was_space && *e == ';'); e++)
        was_space = isspace((unsigned char)*e);
    if (*e != '=' && *e != ':') {
        config_report(p, p->p_lineno, NULL, NULL,
                      "expected \"key = value\", a [section] header or a comment, got %s",
                      config_quote(q, sizeof(q), s));
        goto blank;
    }
    {
        char *ne = e;
        size_t n;

        while (ne > s && isspace((unsigned char)ne[-1]))
            ne--;
        n = (size_t)(ne - s);
        if (n == 0) {
            config_report(p, p->p_lineno, NULL, NULL, "missing key name before '%c'", *e);
            goto blank;
        }
        /*
         * Indented, with no key above it in this section (the first key after
         * a header): inih would take it as a key, but indentation before a
         * key is an error wherever it is.
         */
        if (s > line) {
            if (p->p_section != SECTION_BAD)
                config_report(p, p->p_lineno,
                              p->p_section >= 0 ? config_sections[p->p_section] : NULL, NULL,
                              "indented line %s; only the lines that continue a [tcp] or [udp] "
                              "listen list may be indented, remove the leading whitespace",
                              config_quote(q, sizeof(q), s));
            goto blank;
        }
        if (n >= sizeof(p->p_prev_key))
            n = sizeof(p->p_prev_key) - 1;
        memcpy(p->p_prev_key, s, n);
        p->p_prev_key[n] = '\0';
        p->p_prev_line = p->p_lineno;
    }
    if (p->p_section == SECTION_NONE) {
        config_report(p, p->p_lineno, NULL, NULL,
                      "key %s comes before any [section] header; known sections are %s",
                      config_quote(q, sizeof(q), p->p_prev_key),
                      config_known(known, sizeof(known), -1));
        goto blank;
    }
    /* Keys under an unknown or broken header: that header was already reported. */
    if (p->p_section == SECTION_BAD)
        goto blank;
    memmove(line, s, strlen(s));
    strcpy(line + strlen(s), "\n");
    return;

blank:
    strcpy(line, "\n");
}

/*
 * inih's reader: one line of the input per call, like fgets().  It finds
 * every line-level error itself (inih reports only the first, and silently
 * splits or cuts lines longer than its buffer) and hands inih a blank line in
 * place of each line it rejected, so that every error is reported once.
 */
static char *
config_reader(char *str, int num, void *stream)
{
    struct config_parser *p = stream;
    const char *line, *end, *nl;
    size_t len, max;

    if (p->p_off >= p->p_len || num < 4)
        return NULL;
    line = p->p_text + p->p_off;
    nl = memchr(line, '\n', p->p_len - p->p_off);
    end = nl != NULL ? nl : p->p_text + p->p_len;
    p->p_off = (size_t)(end - p->p_text) + (nl != NULL);
    p->p_lineno++;

    if (p->p_lineno == 1 && end - line >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0)
        line += 3;
    if (end > line && end[-1] == '\r')
        end--;
    len = (size_t)(end - line);
    /* inih needs room for "\r\n\0" after the longest line. */
    max = (size_t)num - 3;

    if (memchr(line, '\0', len) != NULL) {
        config_report(p, p->p_lineno, NULL, NULL, "line contains a NUL byte");
        strcpy(str, "\n");
    } else if (len > max) {
        config_report(p, p->p_lineno, NULL, NULL, "line too long (at most %zu characters)", max);
        strcpy(str, "\n");
    } else {
        memcpy(str, line, len);
        str[len] = '\0';
        config_classify(p, str);
    }
    return str;
}

/* Report the cross-key problem of a stream or datagram listener with no address. */
static void
config_validate_listen(struct config_parser *p, int enabled_id, int listen_id, bool enabled,
                       size_t nlisten)
{
    const struct config_key *k = &config_keys[listen_id];

    if (!enabled || nlisten > 0 || p->p_key_bad[enabled_id] || p->p_key_bad[listen_id])
        return;
    config_report(p, p->p_key_line[listen_id], config_sections[k->k_section], k->k_name,
                  "empty, but [%s] enabled = yes; give at least one address, or set enabled = no",
                  config_sections[k->k_section]);
}

/*
 * The user and group must exist now, not only once the sockets are bound:
 * `upechod -t` then catches a misspelt name, with its line, and start-up
 * never fails halfway for it.
 */
static void
config_validate_accounts(struct config_parser *p)
{
    const struct upechod_config *cf = p->p_cf;
    char q[1024];

    if (cf->cf_user[0] != '\0' && !p->p_key_bad[KEY_USER]) {
        errno = 0;
        if (getpwnam(cf->cf_user) == NULL)
            config_report(p, p->p_key_line[KEY_USER], "server", "user", "%s: %s",
                          config_quote(q, sizeof(q), cf->cf_user),
                          errno != 0 && errno != ENOENT ? strerror(errno) : "no such user");
    }
    if (cf->cf_group[0] != '\0' && !p->p_key_bad[KEY_GROUP]) {
        errno = 0;
        if (getgrnam(cf->cf_group) == NULL)
            config_report(p, p->p_key_line[KEY_GROUP], "server", "group", "%s: %s",
                          config_quote(q, sizeof(q), cf->cf_group),
                          errno != 0 && errno != ENOENT ? strerror(errno) : "no such group");
    }
}

/* The checks that involve more than one key, once the whole file is read. */
static void
config_validate(struct config_parser *p)
{
    const struct upechod_config *cf = p->p_cf;
    static const int enabled[] = {KEY_TCP_ENABLED, KEY_UDP_ENABLED, KEY_UNIX_ENABLED};
    int last = enabled[0];

    config_validate_listen(p, KEY_TCP_ENABLED, KEY_TCP_LISTEN, cf->cf_tcp_enabled,
                           cf->cf_tcp_nlisten);
    config_validate_listen(p, KEY_UDP_ENABLED, KEY_UDP_LISTEN, cf->cf_udp_enabled,
                           cf->cf_udp_nlisten);

    /* A PROXY header rewrites the client's address: only named balancers may send one. */
    if (cf->cf_tcp_proxy_protocol && cf->cf_tcp_nproxy_from == 0 &&
        !p->p_key_bad[KEY_TCP_PROXY_FROM])
        config_report(p, p->p_key_line[KEY_TCP_PROXY_PROTOCOL], "tcp", "proxy_protocol",
                      "yes, but proxy_protocol_from is empty; list the addresses or CIDR "
                      "prefixes of the balancers allowed to send a PROXY header");

    if (!cf->cf_tcp_enabled && !cf->cf_udp_enabled && !cf->cf_unix_enabled) {
        int bad = 0;

        /* Name the last enabled = line: that is where the file turned the last one off. */
        for (size_t i = 0; i < sizeof(enabled) / sizeof(enabled[0]); i++) {
            bad |= p->p_key_bad[enabled[i]];
            if (p->p_key_line[enabled[i]] > p->p_key_line[last])
                last = enabled[i];
        }
        if (!bad)
            config_report(p, p->p_key_line[last], config_sections[config_keys[last].k_section],
                          "enabled",
                          "tcp, udp and unix are all disabled, so there is nothing to serve; "
                          "enable at least one");
    }

    if (cf->cf_user[0] == '\0' && cf->cf_group[0] != '\0' && !p->p_key_bad[KEY_USER])
        config_report(p, p->p_key_line[KEY_GROUP], "server", "group",
                      "set without user; group only applies when dropping privileges to a user, "
                      "so set user too");
    config_validate_accounts(p);
}

void
config_defaults(struct upechod_config *cf)
{
    struct config_parser p;

    memset(cf, 0, sizeof(*cf));
    memset(&p, 0, sizeof(p));
    p.p_cf = cf;
    p.p_name = "built-in defaults";
    for (int id = 0; id < KEY_COUNT; id++)
        config_set(&p, id, config_keys[id].k_default);
}

/*
 * The known keys one by one, for the test that holds upechod.ini(5) to the
 * parser: section, name and default (as written in the file) of key i.
 */
int
config_key(size_t i, const char **section, const char **name, const char **def)
{
    if (i >= KEY_COUNT)
        return -ENOENT;
    *section = config_sections[config_keys[i].k_section];
    *name = config_keys[i].k_name;
    *def = config_keys[i].k_default;
    return 0;
}

/* Parse len bytes of text (which need not end in NUL) named name into cf. */
static int
config_parse_buffer(struct upechod_config *cf, const char *name, const char *text, size_t len,
                    config_error_fn err, void *arg)
{
    struct config_parser p;
    int rc;

    config_defaults(cf);
    snprintf(cf->cf_file, sizeof(cf->cf_file), "%s", name);

    memset(&p, 0, sizeof(p));
    p.p_cf = cf;
    p.p_name = name;
    p.p_err = err;
    p.p_arg = arg;
    p.p_text = text;
    p.p_len = len;
    p.p_section = SECTION_NONE;

    rc = ini_parse_stream(config_reader, &p, config_handler, &p);
    if (rc < 0) {
        config_report(&p, 0, NULL, NULL, "cannot parse: out of memory");
        return -ENOMEM;
    }
    /* The reader let through only lines inih accepts; this is a safety net. */
    if (rc > 0)
        config_report(&p, rc, NULL, NULL, "cannot parse this line");
    config_close_list(&p);

    config_validate(&p);
    return p.p_nerrors;
}

/*
 * Parse text, named name in messages, into cf.  Returns 0 when it is valid,
 * else the number of errors, each reported through err.
 */
int
config_parse_string(struct upechod_config *cf, const char *name, const char *text,
                    config_error_fn err, void *arg)
{
    if (name == NULL)
        name = "(string)";
    if (text == NULL)
        return -EINVAL;
    return config_parse_buffer(cf, name, text, strlen(text), err, arg);
}

/*
 * Read the regular file p->p_name, at most CONFIG_FILE_MAX bytes, into *bufp
 * (which the caller frees, whatever the return) and its length into *lenp.
 * Returns 0, or after reporting why, with the defaults in p->p_cf: -errno
 * when it cannot be read, -EINVAL when it is not a regular file, 1 when it
 * is too large.
 */
static int
config_read_file(struct config_parser *p, char **bufp, size_t *lenp)
{
    struct upechod_config *cf = p->p_cf;
    const char *path = p->p_name;
    struct stat st;
    char *buf = NULL;
    size_t len = 0, size = 0;
    int fd, rc = 0;

    /*
     * Only a regular file: a FIFO or a device would block the event loop on
     * reload (O_NONBLOCK keeps even the open from waiting for a writer).
     */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1) {
        rc = -errno;
    } else if (fstat(fd, &st) == -1) {
        rc = -errno;
    } else if (S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
    } else if (!S_ISREG(st.st_mode)) {
        config_defaults(cf);
        snprintf(cf->cf_file, sizeof(cf->cf_file), "%s", path);
        config_report(p, 0, NULL, NULL, "not a regular file (a FIFO, device or socket?)");
        close(fd);
        return -EINVAL;
    }
    while (rc == 0) {
        ssize_t n;

        if (len == size) {
            char *nbuf;

            if (size > CONFIG_FILE_MAX)
                break;
            size = size ? size * 2 : 8192;
            if ((nbuf = realloc(buf, size)) == NULL) {
                rc = -ENOMEM;
                break;
            }
            buf = nbuf;
        }
        n = read(fd, buf + len, size - len);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            rc = -errno;
        else if (n == 0)
            break;
        else
            len += (size_t)n;
    }
    if (fd != -1)
        close(fd);
    *bufp = buf;
    *lenp = len;

    if (rc < 0) {
        config_defaults(cf);
        snprintf(cf->cf_file, sizeof(cf->cf_file), "%s", path);
        config_report(p, 0, NULL, NULL, "cannot read: %s", strerror(-rc));
    } else if (len > CONFIG_FILE_MAX) {
        config_defaults(cf);
        snprintf(cf->cf_file, sizeof(cf->cf_file), "%s", path);
        config_report(p, 0, NULL, NULL, "larger than %d bytes; is this the right file?",
                      CONFIG_FILE_MAX);
        rc = 1;
    }
    return rc;
}

/*
 * Parse the file at path into cf.  Returns 0 when it is valid, the number of
 * errors (each reported through err) when it is not, or -errno when it
 * cannot be read (reported too).
 */
int
config_parse_file(struct upechod_config *cf, const char *path, config_error_fn err, void *arg)
{
    struct config_parser p;
    char *buf = NULL;
    size_t len = 0;
    int rc;

    memset(&p, 0, sizeof(p));
    p.p_cf = cf;
    p.p_name = path;
    p.p_err = err;
    p.p_arg = arg;

    rc = config_read_file(&p, &buf, &len);
    if (rc == 0)
        rc = config_parse_buffer(cf, path, buf != NULL ? buf : "", len, err, arg);
    free(buf);
    return rc;
}

/*
 * Load what upechod runs on: `path`, or with NULL the installed default
 * file when it exists, else the built-in defaults (cf_file is then "").
 * Returns as config_parse_file() does.  At start-up and on every reload the
 * same choice is made, so a default file created later is picked up.
 */
int
config_load(struct upechod_config *cf, const char *path, config_error_fn err, void *arg)
{
    struct stat st;

    if (path == NULL && stat(UPECHOD_DEFAULT_CONFIG, &st) == 0)
        path = UPECHOD_DEFAULT_CONFIG;
    if (path == NULL) {
        config_defaults(cf);
        return 0;
    }
    return config_parse_file(cf, path, err, arg);
}
