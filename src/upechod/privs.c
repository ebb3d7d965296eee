/* privs.c: dropping root after the sockets are bound. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "privs.h"

/*
 * The uid and gid `user` and `group` name (group "" = the user's primary
 * group).  0, or -ENOENT / -errno.
 */
int
privs_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid)
{
    struct passwd *pw;
    struct group *gr;

    errno = 0;
    if ((pw = getpwnam(user)) == NULL)
        return errno ? -errno : -ENOENT;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    if (group[0] != '\0') {
        errno = 0;
        if ((gr = getgrnam(group)) == NULL)
            return errno ? -errno : -ENOENT;
        *gid = gr->gr_gid;
    }
    return 0;
}

/*
 * Become `user` (and `group`, or the user's primary group): supplementary
 * groups first, then the gid, then the uid, in the only order that works.
 * Then prove it: if setuid(0) still succeeds, root could be regained and we
 * refuse to go on.  Returns 0, or -errno with *what naming the failed step.
 * Not root and no user asked for: nothing to do.
 */
int
privs_drop(const char *user, const char *group, const char **what)
{
    struct passwd *pw;
    struct group *gr;
    gid_t gid;

    if (user[0] == '\0')
        return 0;
    errno = 0;
    if ((pw = getpwnam(user)) == NULL) {
        *what = "no such user";
        return errno ? -errno : -ENOENT;
    }
    if (geteuid() != 0) {
        if (pw->pw_uid == geteuid())
            return 0;
        *what = "not started as root, cannot switch user";
        return -EPERM;
    }
    gid = pw->pw_gid;
    if (group[0] != '\0') {
        errno = 0;
        if ((gr = getgrnam(group)) == NULL) {
            *what = "no such group";
            return errno ? -errno : -ENOENT;
        }
        gid = gr->gr_gid;
    }
    *what = "initgroups";
    if (initgroups(pw->pw_name, gid) == -1)
        return -errno;
    *what = "setgid";
    if (setresgid(gid, gid, gid) == -1)
        return -errno;
    *what = "setuid";
    if (setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
        return -errno;
    if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        *what = "root could be regained after dropping privileges";
        return -EPERM;
    }
    log_info("running as user %s (uid %ld, gid %ld)", pw->pw_name, (long)pw->pw_uid, (long)gid);
    return 0;
}
