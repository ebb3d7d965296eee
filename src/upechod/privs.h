/* privs.h: dropping root after the sockets are bound. */
#ifndef UPECHOD_PRIVS_H
#define UPECHOD_PRIVS_H

#include <sys/types.h>

int privs_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid);
int privs_drop(const char *user, const char *group, const char **what);

#endif
