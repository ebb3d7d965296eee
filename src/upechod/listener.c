/* listener.c: binding and accepting on upechod's stream and datagram sockets. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/listener.h>

#include "listener.h"
#include "log.h"
#include "stream.h"
#include "udp.h"

/* Fill ls_name with the address the socket is really bound to (port 0 resolved). */
static void
listener_name(struct listener *ls)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (ls->ls_transport == TRANSPORT_UNIX && ls->ls_path[0] != '\0') {
        snprintf(ls->ls_name, sizeof(ls->ls_name), "%s", ls->ls_path);
        return;
    }
    if (getsockname(ls->ls_fd, (struct sockaddr *)&ss, &len) == 0)
        addr_format((struct sockaddr *)&ss, len, ls->ls_name, sizeof(ls->ls_name));
    else
        snprintf(ls->ls_name, sizeof(ls->ls_name), "(fd %d)", ls->ls_fd);
}

/* Take a new stream connection from the listener and hand it to a stream. */
static void
listener_accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen,
                   void *arg)
{
    struct listener *ls = arg;

    if (ls->ls_transport == TRANSPORT_TCP) {
        int one = 1;

        /* Echo replies are small and latency-bound: never wait for Nagle. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (stream_new(ls->ls_srv, fd, ls->ls_transport, sa, (socklen_t)salen) == NULL)
        close(fd);
}

/* accept(2) failed for a reason other than a transient one. */
static void
listener_error_cb(struct evconnlistener *evl, void *arg)
{
    struct listener *ls = arg;

    server_accept_failed(ls->ls_srv, EVUTIL_SOCKET_ERROR());
}

static struct listener *
listener_alloc(struct server *srv, enum transport t, int fd)
{
    struct listener *ls = calloc(1, sizeof(*ls));

    if (ls == NULL)
        return NULL;
    ls->ls_srv = srv;
    ls->ls_transport = t;
    ls->ls_fd = fd;
    return ls;
}

/*
 * Attach a bound socket to the event loop: an evconnlistener for streams,
 * a plain event for UDP.  On failure the fd is left for the caller to close.
 */
static int
listener_attach(struct listener *ls)
{
    listener_name(ls);
    if (ls->ls_transport == TRANSPORT_UDP) {
        ls->ls_udp = udp_new(ls->ls_srv, ls->ls_fd);
        return ls->ls_udp == NULL ? -ENOMEM : 0;
    }
    /* Backlog 0: the socket is already listening (ours, or passed by systemd). */
    ls->ls_evl = evconnlistener_new(ls->ls_srv->srv_base, listener_accept_cb, ls,
                                    LEV_OPT_CLOSE_ON_EXEC, 0, ls->ls_fd);
    if (ls->ls_evl == NULL)
        return -ENOMEM;
    evconnlistener_set_error_cb(ls->ls_evl, listener_error_cb);
    if (ls->ls_srv->srv_paused)
        evconnlistener_disable(ls->ls_evl);
    return 0;
}

/*
 * Bind a TCP or UDP socket.  Returns the listener, or NULL with errno set and
 * *what naming the step that failed ("bind", "listen", ...).
 */
struct listener *
listener_new_inet(struct server *srv, enum transport t, const struct addr *a, int backlog,
                  const char **what)
{
    const struct sockaddr *sa = (const struct sockaddr *)&a->a_ss;
    int type = t == TRANSPORT_UDP ? SOCK_DGRAM : SOCK_STREAM;
    struct listener *ls;
    int fd, one = 1, err;

    *what = "socket";
    fd = socket(sa->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return NULL;
    /* Restarts must not wait out TIME_WAIT; UDP gets it for symmetry. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* [::]:port and *:port are separate entries of the config, so keep them separate here. */
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (t == TRANSPORT_UDP && udp_prepare_socket(fd, sa) == -1) {
        *what = "setsockopt";
        goto fail;
    }
    *what = "bind";
    if (bind(fd, sa, a->a_len) == -1)
        goto fail;
    *what = "listen";
    if (t != TRANSPORT_UDP && listen(fd, backlog) == -1)
        goto fail;
    *what = "out of memory";
    if ((ls = listener_alloc(srv, t, fd)) == NULL)
        goto fail;
    ls->ls_conf_addr = *a;
    if (listener_attach(ls) != 0) {
        free(ls);
        errno = ENOMEM;
        goto fail;
    }
    return ls;
fail:
    err = errno;
    close(fd);
    errno = err;
    return NULL;
}

/*
 * An AF_UNIX path may hold a socket left by a process that died: replace it.
 * Refuse when someone still listens there, and never remove a file that is
 * not a socket.  Returns 0 when the path is free to bind, else -errno with
 * *what explaining.
 */
static int
listener_unix_clear(const char *path, const char **what)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd, rc;

    if (lstat(path, &st) == -1) {
        if (errno == ENOENT)
            return 0;
        *what = "stat";
        return -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        *what = "path exists and is not a socket; not removing it";
        return -EEXIST;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
        *what = "socket";
        return -errno;
    }
    rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    close(fd);
    if (rc == 0) {
        *what = "another process is listening on this socket";
        return -EADDRINUSE;
    }
    if (errno != ECONNREFUSED) {
        *what = "cannot tell whether the existing socket is in use";
        return -errno;
    }
    log_info("removing stale socket %s", path);
    if (unlink(path) == -1 && errno != ENOENT) {
        *what = "removing stale socket";
        return -errno;
    }
    return 0;
}

/* Bind an AF_UNIX stream socket at path with the given file mode. */
struct listener *
listener_new_unix(struct server *srv, const char *path, mode_t mode, int backlog, const char **what)
{
    struct sockaddr_un sun;
    struct listener *ls;
    struct stat st;
    mode_t omask;
    int fd, rc, err;

    if ((rc = listener_unix_clear(path, what)) != 0) {
        errno = -rc;
        return NULL;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));

    *what = "socket";
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
        return NULL;
    /* The file is created with the mode asked for: no window with wider permissions. */
    omask = umask(~mode & 0777);
    rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(omask);
    *what = "bind";
    if (rc == -1)
        goto fail;
    *what = "chmod";
    if (chmod(path, mode) == -1 || stat(path, &st) == -1)
        goto fail_unlink;
    *what = "listen";
    if (listen(fd, backlog) == -1)
        goto fail_unlink;
    *what = "out of memory";
    if ((ls = listener_alloc(srv, TRANSPORT_UNIX, fd)) == NULL)
        goto fail_unlink;
    snprintf(ls->ls_path, sizeof(ls->ls_path), "%s", path);
    ls->ls_dev = st.st_dev;
    ls->ls_ino = st.st_ino;
    if (listener_attach(ls) != 0) {
        free(ls);
        errno = ENOMEM;
        goto fail_unlink;
    }
    return ls;
fail_unlink:
    err = errno;
    unlink(path);
    errno = err;
fail:
    err = errno;
    close(fd);
    errno = err;
    return NULL;
}

/* Serve an already bound (and, for streams, listening) socket passed in by systemd. */
struct listener *
listener_new_fd(struct server *srv, int fd, enum transport t)
{
    struct listener *ls = listener_alloc(srv, t, fd);

    if (ls == NULL)
        return NULL;
    ls->ls_activated = 1;
    if (listener_attach(ls) != 0) {
        free(ls);
        return NULL;
    }
    return ls;
}

/*
 * Stop listening and close the socket.  Connections accepted from it are
 * independent and carry on.  The AF_UNIX file is removed only while it is
 * still the one we created: a second daemon may have replaced it.
 */
void
listener_free(struct listener *ls)
{
    struct stat st;

    if (ls == NULL)
        return;
    if (ls->ls_evl != NULL)
        evconnlistener_free(ls->ls_evl);
    udp_free(ls->ls_udp);
    if (ls->ls_path[0] != '\0' && !ls->ls_activated && stat(ls->ls_path, &st) == 0 &&
        st.st_dev == ls->ls_dev && st.st_ino == ls->ls_ino && unlink(ls->ls_path) == -1)
        log_warn("cannot remove %s: %s", ls->ls_path, strerror(errno));
    close(ls->ls_fd);
    free(ls);
}

/* Apply a new backlog to a listening socket; Linux accepts listen(2) again for that. */
int
listener_set_backlog(struct listener *ls, int backlog)
{
    if (ls->ls_transport == TRANSPORT_UDP || ls->ls_activated)
        return 0;
    return listen(ls->ls_fd, backlog) == -1 ? -errno : 0;
}

/* Pause or resume accepting on a stream listener; UDP sockets are never paused. */
void
listener_set_accepting(struct listener *ls, int on)
{
    if (ls->ls_evl == NULL)
        return;
    if (on)
        evconnlistener_enable(ls->ls_evl);
    else
        evconnlistener_disable(ls->ls_evl);
}
