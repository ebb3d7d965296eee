/* config-internal.h: what config.c, configline.c and configvalue.c share, and no other file. */
#ifndef UPECHOD_CONFIG_INTERNAL_H
#define UPECHOD_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* The sections, in config_sections[] order; k_section and p_section hold one. */
enum config_section {
    SECTION_TCP,
    SECTION_UDP,
    SECTION_UNIX,
    SECTION_LOG,
    SECTION_LIMITS,
    SECTION_SERVER,
    SECTION_METRICS,
    CONFIG_NSECTIONS
};
/* The section names, CONFIG_NSECTIONS of them; config.c defines them and checks the count. */
extern const char *const config_sections[];
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

extern const struct config_key config_keys[KEY_COUNT];

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

/* config.c: the messages. */
const char *config_quote(char *buf, size_t size, const char *s);
__attribute__((format(printf, 5, 6))) void config_report(struct config_parser *p, int line,
                                                         const char *section, const char *key,
                                                         const char *fmt, ...);
const char *config_known(char *buf, size_t size, int section);

/* Report a bad value for key id, on the line being parsed. */
#define config_bad(p, id, ...)                                                                     \
    config_report((p), (p)->p_lineno, config_sections[config_keys[id].k_section],                  \
                  config_keys[id].k_name, __VA_ARGS__)

/* configline.c: the file and its lines. */
int configline_read_file(struct config_parser *p, char **bufp, size_t *lenp);
char *configline_reader(char *str, int num, void *stream);
void configline_close_list(struct config_parser *p);

/* configvalue.c: each key's value into its field. */
int configvalue_set(struct config_parser *p, int id, const char *v);
int configvalue_handler(void *user, const char *section, const char *name, const char *value);

#endif
