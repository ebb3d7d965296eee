/* listener.h: the sockets upechod listens on, for streams (TCP, AF_UNIX) and UDP. */
#ifndef UPECHOD_LISTENER_H
#define UPECHOD_LISTENER_H

#include <sys/queue.h>
#include <sys/stat.h>

#include "server.h"

struct evconnlistener;
struct udp;

struct listener {
    TAILQ_ENTRY(listener) ls_entry;
    struct server *ls_srv;
    enum transport ls_transport;
    struct addr ls_conf_addr;           /* as configured (port 0 stays 0), to match on reload */
    char ls_path[CONFIG_UNIX_PATH_MAX]; /* AF_UNIX path */
    char ls_name[ADDR_STRLEN];          /* what it is bound to, real port filled in */
    int ls_fd;
    int ls_activated; /* passed in by systemd: never closed on reload */
    dev_t ls_dev;     /* identity of the AF_UNIX socket file we created */
    ino_t ls_ino;
    int ls_mark;                   /* reload bookkeeping */
    struct evconnlistener *ls_evl; /* streams */
    struct udp *ls_udp;            /* datagrams */
};

struct listener *listener_new_inet(struct server *srv, enum transport t, const struct addr *a,
                                   int backlog, const char **what);
struct listener *listener_new_unix(struct server *srv, const char *path, mode_t mode, int backlog,
                                   const char **what);
struct listener *listener_new_fd(struct server *srv, int fd, enum transport t);
void listener_free(struct listener *ls);
int listener_set_backlog(struct listener *ls, int backlog);
void listener_set_accepting(struct listener *ls, int on);

#endif
