/* config.h: upechod's configuration as plain data, parsed from INI and validated in one place. */
#ifndef UPECHOD_CONFIG_H
#define UPECHOD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/un.h>

#include "addr.h"
#include "log.h"
#include "proxy.h"

/* Most addresses one listen= key may name. */
#define CONFIG_MAX_LISTEN 32
/* Most addresses and prefixes proxy_protocol_from may name. */
#define CONFIG_MAX_PROXY_FROM 32
/* sun_path's size, with the NUL. */
#define CONFIG_UNIX_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)
#define CONFIG_NAME_MAX 256

/*
 * Everything upechod reads from its INI file.  Plain data with no pointers,
 * so that a reload can parse into a fresh copy and swap it in whole.
 */
struct upechod_config {
    char cf_file[4096]; /* file it came from, "" for built-in defaults */

    /* [tcp] */
    bool cf_tcp_enabled; /* yes */
    struct addr cf_tcp_listen[CONFIG_MAX_LISTEN];
    char cf_tcp_listen_text[CONFIG_MAX_LISTEN][ADDR_STRLEN];
    size_t cf_tcp_nlisten; /* 127.0.0.1:9090 */
    int cf_tcp_backlog;    /* 1024 */

    bool cf_tcp_proxy_protocol; /* no: connections begin with a PROXY header */
    struct proxy_net cf_tcp_proxy_from[CONFIG_MAX_PROXY_FROM];
    size_t cf_tcp_nproxy_from; /* "": who may send one */

    /* [udp] */
    bool cf_udp_enabled; /* yes */
    struct addr cf_udp_listen[CONFIG_MAX_LISTEN];
    char cf_udp_listen_text[CONFIG_MAX_LISTEN][ADDR_STRLEN];
    size_t cf_udp_nlisten;       /* 127.0.0.1:7777 */
    bool cf_udp_drop_privileged; /* drop_privileged_source_ports = yes */
    unsigned cf_udp_rate_limit;  /* rate_limit = 0 (off), replies/s per source */

    /* rate_limit_per_port = 10000 (0 = off), replies/s per source address and port */
    unsigned cf_udp_rate_limit_per_port;

    /* [unix] */
    bool cf_unix_enabled;                    /* no */
    char cf_unix_path[CONFIG_UNIX_PATH_MAX]; /* /run/upechod/upechod.sock */
    mode_t cf_unix_mode;                     /* 0660 */
    int cf_unix_backlog;                     /* 1024 */

    bool cf_unix_proxy_protocol; /* no; any peer that may connect may send the header */

    /* [log] */
    enum log_level cf_log_level; /* info */

    /* [limits] */
    size_t cf_max_connections;    /* 10000 */
    size_t cf_max_pending_output; /* 1M (bytes) */
    unsigned cf_idle_timeout;     /* 300 s, 0 = never */
    unsigned cf_shutdown_timeout; /* 10 s */
    /* max_memory = 256M: bytes of output pending on all streams together */
    size_t cf_max_memory;
    /* max_connections_per_source = 0 (off); IPv4 by address, IPv6 by /64 */
    size_t cf_max_connections_per_source;

    /* [server] */
    char cf_user[CONFIG_NAME_MAX];  /* "" = stay who we are */
    char cf_group[CONFIG_NAME_MAX]; /* "" = the user's primary group */
    unsigned cf_workers;            /* 1; "auto" is resolved to the CPUs we may run on */

    /* [metrics] */
    bool cf_metrics_enabled;       /* no */
    struct addr cf_metrics_listen; /* 127.0.0.1:9477 */
    char cf_metrics_listen_text[ADDR_STRLEN];
};

/*
 * Receives each error as one line, "FILE:LINE: [section] key: what is wrong"
 * (no trailing newline).
 */
typedef void (*config_error_fn)(void *arg, const char *msg);

/* Fill cf with the built-in defaults, the values conf/upechod.ini shows. */
void config_defaults(struct upechod_config *cf);

/*
 * Parse an INI file, or text named name in messages, into cf (defaults first,
 * then the file, then the cross-key checks), reporting every error through
 * err (which may be NULL).  Returns 0 when the configuration is valid, the
 * number of errors when it is not, or -errno when the file cannot be read.
 * cf is filled either way, but only a return of 0 makes it fit to use.
 */
int config_parse_file(struct upechod_config *cf, const char *path, config_error_fn err, void *arg);
int config_load(struct upechod_config *cf, const char *path, config_error_fn err, void *arg);
int config_parse_string(struct upechod_config *cf, const char *name, const char *text,
                        config_error_fn err, void *arg);

/*
 * Key i of those the parser knows (0 up): its section, name and default as
 * written in the file.  Returns 0, or -ENOENT past the last key.
 */
int config_key(size_t i, const char **section, const char **name, const char **def);

#endif
