/* target.h: the tools' "tcp://HOST:PORT", "udp://HOST:PORT" and "unix:///path" targets. */
#ifndef UPECHOD_TARGET_H
#define UPECHOD_TARGET_H

#include <stddef.h>

#include "addr.h"

enum target_kind {
    TARGET_TCP = 0,
    TARGET_UDP,
    TARGET_UNIX,
};

/* Longest text target_format() produces, with the NUL. */
#define TARGET_STRLEN (ADDR_STRLEN + 8)

struct target {
    enum target_kind t_kind;
    struct addr t_addr;
};

int target_parse(const char *text, struct target *out, const char **why);
const char *target_kind_name(enum target_kind kind);
int target_is_stream(const struct target *t);
const char *target_format(const struct target *t, char *buf, size_t size);
int target_sources_parse(const char *text, int family, struct addr **list, size_t *count,
                         const char **why);
int target_connect(const struct target *t, const struct addr *source, int *fdp);

#endif
