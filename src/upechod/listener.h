/* listener.h: the sockets upechod listens on, for streams (TCP, AF_UNIX) and UDP. */
#ifndef UPECHOD_LISTENER_H
#define UPECHOD_LISTENER_H

#include <sys/queue.h>
#include <sys/stat.h>

#include "config.h"
#include "transport.h"

/*
 * One configured address (or one socket passed by systemd), owned by the
 * main thread, which binds and closes it; workers only attach to its
 * sockets.  TCP and UDP addresses get one socket per worker, bound with
 * SO_REUSEPORT so the kernel spreads clients over them; an AF_UNIX path or
 * a passed socket has one socket that every worker shares.
 */
struct listener {
    TAILQ_ENTRY(listener) ls_entry;
    unsigned ls_id; /* names it to the workers across reloads */
    enum transport ls_transport;
    struct addr ls_conf_addr;           /* as configured (port 0 stays 0), to match on reload */
    char ls_path[CONFIG_UNIX_PATH_MAX]; /* AF_UNIX path */
    char ls_name[ADDR_STRLEN];          /* what it is bound to, real port filled in */
    int *ls_fds;                        /* ls_nfds sockets */
    unsigned ls_nfds;
    int ls_activated; /* passed in by systemd: never closed on reload */
    dev_t ls_dev;     /* identity of the AF_UNIX socket file we created */
    ino_t ls_ino;
    int ls_mark; /* reload bookkeeping */
};

TAILQ_HEAD(listener_list, listener);

struct listener *listener_new_inet(enum transport t, const struct addr *a, int backlog,
                                   unsigned nsockets, const char **what);
struct listener *listener_new_unix(const char *path, mode_t mode, uid_t uid, gid_t gid, int backlog,
                                   const char **what);
struct listener *listener_new_fd(int fd, enum transport t, const char **what);
void listener_free(struct listener *ls);
int listener_set_backlog(struct listener *ls, int backlog);
int listener_fd(const struct listener *ls, unsigned worker);
void listener_nodelay(int fd);

#endif
