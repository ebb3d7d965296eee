/* config.c: upechod.ini's keys, defaults, messages, cross-key checks and entry points. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ini.h>

#include "config-internal.h"
#include "config.h"
#include "upechod-build.h"

const char *const config_sections[] = {
    [SECTION_TCP] = "tcp",         [SECTION_UDP] = "udp",       [SECTION_UNIX] = "unix",
    [SECTION_LOG] = "log",         [SECTION_LIMITS] = "limits", [SECTION_SERVER] = "server",
    [SECTION_METRICS] = "metrics",
};
/*
 * A name without an enum value, or a new last enum value without a name,
 * stops the build; a gap between names would be a NULL that the first
 * section header looked up in configline.c trips on.
 */
_Static_assert(sizeof(config_sections) / sizeof(config_sections[0]) == CONFIG_NSECTIONS,
               "config_sections[] must name every enum config_section, and only those");

const struct config_key config_keys[KEY_COUNT] = {
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
const char *
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
void
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

/* "a, b, c" into buf: the known sections, or the known keys of one section. */
const char *
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
        configvalue_set(&p, id, config_keys[id].k_default);
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

    rc = ini_parse_stream(configline_reader, &p, configvalue_handler, &p);
    if (rc < 0) {
        config_report(&p, 0, NULL, NULL, "cannot parse: out of memory");
        return -ENOMEM;
    }
    /* The reader let through only lines inih accepts; this is a safety net. */
    if (rc > 0)
        config_report(&p, rc, NULL, NULL, "cannot parse this line");
    configline_close_list(&p);

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

    rc = configline_read_file(&p, &buf, &len);
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
