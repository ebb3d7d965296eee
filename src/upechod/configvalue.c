/* configvalue.c: turn each key's value in upechod.ini into its field of struct upechod_config. */
#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "config-internal.h"
#include "number.h"

/* Bounds that catch typos without getting in the way of a real deployment. */
#define CONFIG_MAX_CONNECTIONS_MAX 10000000ULL
#define CONFIG_PENDING_MIN 4096
#define CONFIG_RATE_LIMIT_MAX 1000000ULL
#define CONFIG_IDLE_TIMEOUT_MAX (86400ULL * 365)
#define CONFIG_SHUTDOWN_TIMEOUT_MAX 3600ULL
#define CONFIG_WORKERS_MAX 256ULL

static int
configvalue_bool(struct config_parser *p, int id, const char *v, bool *out)
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
configvalue_number(struct config_parser *p, int id, const char *v, unsigned long long min,
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
configvalue_size(struct config_parser *p, int id, const char *v, size_t *out)
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
configvalue_listen(struct config_parser *p, int id, const char *v, struct addr *addrs,
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
configvalue_proxy_from(struct config_parser *p, int id, const char *v, struct proxy_net *nets,
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
configvalue_mode(struct config_parser *p, int id, const char *v, mode_t *out)
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
configvalue_path(struct config_parser *p, int id, const char *v, char *out, size_t size)
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
configvalue_level(struct config_parser *p, int id, const char *v, enum log_level *out)
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
configvalue_addr(struct config_parser *p, int id, const char *v, struct addr *out, char *text)
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
configvalue_name(struct config_parser *p, int id, const char *v, char *out, size_t size)
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
configvalue_workers(struct config_parser *p, int id, const char *v, unsigned *out)
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
int
configvalue_set(struct config_parser *p, int id, const char *v)
{
    struct upechod_config *cf = p->p_cf;
    unsigned long long n = 0;
    int rc;

    switch (id) {
    case KEY_TCP_ENABLED:
        return configvalue_bool(p, id, v, &cf->cf_tcp_enabled);
    case KEY_TCP_LISTEN:
        return configvalue_listen(p, id, v, cf->cf_tcp_listen, cf->cf_tcp_listen_text,
                                  &cf->cf_tcp_nlisten);
    case KEY_TCP_BACKLOG:
        if ((rc = configvalue_number(p, id, v, 1, 65535, NULL, &n)) == 0)
            cf->cf_tcp_backlog = (int)n;
        return rc;
    case KEY_TCP_PROXY_PROTOCOL:
        return configvalue_bool(p, id, v, &cf->cf_tcp_proxy_protocol);
    case KEY_TCP_PROXY_FROM:
        return configvalue_proxy_from(p, id, v, cf->cf_tcp_proxy_from, &cf->cf_tcp_nproxy_from);
    case KEY_UDP_ENABLED:
        return configvalue_bool(p, id, v, &cf->cf_udp_enabled);
    case KEY_UDP_LISTEN:
        return configvalue_listen(p, id, v, cf->cf_udp_listen, cf->cf_udp_listen_text,
                                  &cf->cf_udp_nlisten);
    case KEY_UDP_DROP_PRIVILEGED:
        return configvalue_bool(p, id, v, &cf->cf_udp_drop_privileged);
    case KEY_UDP_RATE_LIMIT:
        if ((rc = configvalue_number(p, id, v, 0, CONFIG_RATE_LIMIT_MAX, NULL, &n)) == 0)
            cf->cf_udp_rate_limit = (unsigned)n;
        return rc;
    case KEY_UDP_RATE_LIMIT_PER_PORT:
        if ((rc = configvalue_number(p, id, v, 0, CONFIG_RATE_LIMIT_MAX, NULL, &n)) == 0)
            cf->cf_udp_rate_limit_per_port = (unsigned)n;
        return rc;
    case KEY_UNIX_ENABLED:
        return configvalue_bool(p, id, v, &cf->cf_unix_enabled);
    case KEY_UNIX_PATH:
        return configvalue_path(p, id, v, cf->cf_unix_path, sizeof(cf->cf_unix_path));
    case KEY_UNIX_MODE:
        return configvalue_mode(p, id, v, &cf->cf_unix_mode);
    case KEY_UNIX_BACKLOG:
        if ((rc = configvalue_number(p, id, v, 1, 65535, NULL, &n)) == 0)
            cf->cf_unix_backlog = (int)n;
        return rc;
    case KEY_UNIX_PROXY_PROTOCOL:
        return configvalue_bool(p, id, v, &cf->cf_unix_proxy_protocol);
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
        return configvalue_level(p, id, v, &cf->cf_log_level);
    case KEY_MAX_CONNECTIONS:
        if ((rc = configvalue_number(p, id, v, 1, CONFIG_MAX_CONNECTIONS_MAX, NULL, &n)) == 0)
            cf->cf_max_connections = (size_t)n;
        return rc;
    case KEY_MAX_PENDING_OUTPUT:
        return configvalue_size(p, id, v, &cf->cf_max_pending_output);
    case KEY_MAX_MEMORY:
        return configvalue_size(p, id, v, &cf->cf_max_memory);
    case KEY_MAX_CONNECTIONS_PER_SOURCE:
        if ((rc = configvalue_number(p, id, v, 0, CONFIG_MAX_CONNECTIONS_MAX, NULL, &n)) == 0)
            cf->cf_max_connections_per_source = (size_t)n;
        return rc;
    case KEY_IDLE_TIMEOUT:
        if ((rc = configvalue_number(p, id, v, 0, CONFIG_IDLE_TIMEOUT_MAX, "seconds", &n)) == 0)
            cf->cf_idle_timeout = (unsigned)n;
        return rc;
    case KEY_SHUTDOWN_TIMEOUT:
        if ((rc = configvalue_number(p, id, v, 1, CONFIG_SHUTDOWN_TIMEOUT_MAX, "seconds", &n)) == 0)
            cf->cf_shutdown_timeout = (unsigned)n;
        return rc;
    case KEY_USER:
        return configvalue_name(p, id, v, cf->cf_user, sizeof(cf->cf_user));
    case KEY_GROUP:
        return configvalue_name(p, id, v, cf->cf_group, sizeof(cf->cf_group));
    case KEY_WORKERS:
        return configvalue_workers(p, id, v, &cf->cf_workers);
    case KEY_METRICS_ENABLED:
        return configvalue_bool(p, id, v, &cf->cf_metrics_enabled);
    case KEY_METRICS_LISTEN:
        return configvalue_addr(p, id, v, &cf->cf_metrics_listen, cf->cf_metrics_listen_text);
    }
    return -EINVAL;
}

/* inih's handler: called for each key line the reader let through, in a usable section. */
int
configvalue_handler(void *user, const char *section, const char *name, const char *value)
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
        if (id == p->p_list_id && configvalue_set(p, id, value) != 0)
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
    if (configvalue_set(p, id, value) != 0)
        p->p_key_bad[id] = true;
    return 1;
}
