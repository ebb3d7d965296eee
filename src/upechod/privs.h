/* privs.h: dropping root after the sockets are bound. */
#ifndef UPECHOD_PRIVS_H
#define UPECHOD_PRIVS_H

int privs_drop(const char *user, const char *group, const char **what);

#endif
