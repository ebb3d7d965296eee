/* listener.c: binding and accepting on upechod's stream and datagram sockets. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
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
    if (getsockname(ls->ls_fds[0], (struct sockaddr *)&ss, &len) == 0)
        addr_format((struct sockaddr *)&ss, len, ls->ls_name, sizeof(ls->ls_name));
    else
        snprintf(ls->ls_name, sizeof(ls->ls_name), "(fd %d)", ls->ls_fds[0]);
}

/* A listener for nfds sockets, all -1 for now. */
static struct listener *
listener_alloc(enum transport t, unsigned nfds)
{
    static unsigned next_id;
    struct listener *ls = calloc(1, sizeof(*ls));

    if (ls == NULL || (ls->ls_fds = calloc(nfds, sizeof(int))) == NULL) {
        free(ls);
        return NULL;
    }
    /* Only the main thread creates listeners. */
    ls->ls_id = ++next_id;
    ls->ls_transport = t;
    ls->ls_nfds = nfds;
    for (unsigned i = 0; i < nfds; i++)
        ls->ls_fds[i] = -1;
    return ls;
}

/* Close every socket of ls and free it, without touching the AF_UNIX file. */
static void
listener_release(struct listener *ls)
{
    for (unsigned i = 0; i < ls->ls_nfds; i++)
        if (ls->ls_fds[i] != -1)
            close(ls->ls_fds[i]);
    free(ls->ls_fds);
    free(ls);
}

/*
 * Echo replies are small and latency-bound: never wait for Nagle.  Set on a
 * listening socket, Linux gives it to every connection accepted from it
 * whose handshake completes afterwards, which saves a setsockopt(2) per
 * accept.
 */
void
listener_nodelay(int fd)
{
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* One bound (and, for TCP, listening) socket; -1 with errno set and *what naming the step. */
static int
listener_bind_inet(enum transport t, const struct sockaddr *sa, socklen_t salen, int backlog,
                   int reuseport, const char **what)
{
    int type = t == TRANSPORT_UDP ? SOCK_DGRAM : SOCK_STREAM;
    int fd, one = 1, err;

    *what = "socket";
    fd = socket(sa->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    /*
     * Restarts must not wait out TIME_WAIT.  TCP only: on a UDP socket
     * SO_REUSEADDR lets another process bind the same address and take
     * a share of the datagrams; a second daemon must get EADDRINUSE.
     */
    if (t == TRANSPORT_TCP)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /*
     * Only with several workers: SO_REUSEPORT would also let a second
     * daemon of the same user share the port instead of failing to start.
     */
    *what = "setsockopt SO_REUSEPORT";
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
        goto fail;
    /* [::]:port and *:port are separate entries of the config, so keep them separate here. */
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (t == TRANSPORT_UDP && udp_prepare_socket(fd, sa) == -1) {
        *what = "setsockopt";
        goto fail;
    }
    *what = "bind";
    if (bind(fd, sa, salen) == -1)
        goto fail;
    /* Before listen(2), so that every connection accepted inherits it. */
    if (t == TRANSPORT_TCP)
        listener_nodelay(fd);
    *what = "listen";
    if (t != TRANSPORT_UDP && listen(fd, backlog) == -1)
        goto fail;
    return fd;
fail:
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

/*
 * Bind a TCP or UDP address with nsockets sockets (SO_REUSEPORT when more
 * than one).  Returns the listener, or NULL with errno set and *what naming
 * the step that failed ("bind", "listen", ...).
 */
struct listener *
listener_new_inet(enum transport t, const struct addr *a, int backlog, unsigned nsockets,
                  const char **what)
{
    struct sockaddr_storage ss = a->a_ss;
    socklen_t sslen = a->a_len;
    struct listener *ls;
    int err;

    *what = "out of memory";
    if ((ls = listener_alloc(t, nsockets)) == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    ls->ls_conf_addr = *a;
    /*
     * SO_REUSEPORT would let us join a port another process (of the same
     * user) already serves, and share its clients: first check that the
     * port is free with a socket that does not ask to share.
     */
    if (nsockets > 1 && addr_port((struct sockaddr *)&ss) > 0) {
        int probe = listener_bind_inet(t, (struct sockaddr *)&ss, sslen, backlog, 0, what);

        if (probe == -1)
            goto fail;
        close(probe);
    }
    for (unsigned i = 0; i < nsockets; i++) {
        ls->ls_fds[i] =
            listener_bind_inet(t, (struct sockaddr *)&ss, sslen, backlog, nsockets > 1, what);
        if (ls->ls_fds[i] == -1)
            goto fail;
        /* Port 0: the others join the port the kernel picked for the first. */
        if (i == 0 && getsockname(ls->ls_fds[0], (struct sockaddr *)&ss, &sslen) == -1) {
            *what = "getsockname";
            goto fail;
        }
    }
    listener_name(ls);
    return ls;
fail:
    err = errno;
    listener_release(ls);
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
    /*
     * Non-blocking: a live listener whose backlog is full would otherwise
     * hold start-up (or a reload) in connect(2).  EAGAIN means just that:
     * someone listens there.
     */
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
        *what = "socket";
        return -errno;
    }
    rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    if (rc == -1 && (errno == EAGAIN || errno == EINPROGRESS))
        rc = 0;
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

/*
 * Remove the AF_UNIX file at path if it still is the socket we created
 * (lstat: a symlink put in its place is not followed).  0, or -1 with errno.
 */
static int
listener_unix_unlink(const struct listener *ls, const char *path)
{
    struct stat st;

    if (ls->ls_ino == 0 || lstat(path, &st) == -1 || st.st_dev != ls->ls_dev ||
        st.st_ino != ls->ls_ino)
        return 0;
    return unlink(path);
}

/*
 * The socket file just bound at path: check through an O_PATH descriptor,
 * which never follows a symlink, that it is a socket, note its identity,
 * and hand it to uid:gid (when not -1) through that same descriptor.  So
 * whatever is swapped in at the path meanwhile, no other file is ever
 * chowned, and no file's mode is ever changed after the fact: the mode
 * comes from the umask at bind time, as systemd does it.
 */
static int
listener_unix_own(struct listener *ls, const char *path, uid_t uid, gid_t gid, const char **what)
{
    struct stat st;
    int pfd, err = 0;

    *what = "open";
    if ((pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC)) == -1)
        return -errno;
    *what = "stat";
    if (fstat(pfd, &st) == -1) {
        err = -errno;
    } else if (!S_ISSOCK(st.st_mode)) {
        *what = "the path was replaced by something that is not a socket";
        err = -EEXIST;
    } else {
        ls->ls_dev = st.st_dev;
        ls->ls_ino = st.st_ino;
        *what = "chown";
        if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
            fchownat(pfd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1)
            err = -errno;
    }
    close(pfd);
    return err;
}

/*
 * Bind an AF_UNIX stream socket at path with the given file mode, owned by
 * uid:gid (-1: left as created); every worker shares it.
 */
struct listener *
listener_new_unix(const char *path, mode_t mode, uid_t uid, gid_t gid, int backlog,
                  const char **what)
{
    struct sockaddr_un sun;
    struct listener *ls;
    mode_t omask;
    int fd, rc, err;

    if ((rc = listener_unix_clear(path, what)) != 0) {
        errno = -rc;
        return NULL;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));

    *what = "out of memory";
    if ((ls = listener_alloc(TRANSPORT_UNIX, 1)) == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    *what = "socket";
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
        goto fail;
    ls->ls_fds[0] = fd;
    /* The file is created with the mode asked for: no window with wider permissions. */
    omask = umask(~mode & 0777);
    rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(omask);
    *what = "bind";
    if (rc == -1)
        goto fail;
    if ((rc = listener_unix_own(ls, path, uid, gid, what)) != 0) {
        errno = -rc;
        goto fail_unlink;
    }
    *what = "listen";
    if (listen(fd, backlog) == -1)
        goto fail_unlink;
    snprintf(ls->ls_path, sizeof(ls->ls_path), "%s", path);
    listener_name(ls);
    return ls;
fail_unlink:
    err = errno;
    listener_unix_unlink(ls, path);
    errno = err;
fail:
    err = errno;
    listener_release(ls);
    errno = err;
    return NULL;
}

/*
 * Serve an already bound (and, for streams, listening) socket passed in by
 * systemd; every worker shares it.  A datagram socket gets the same
 * preparation as one we bind (destination addresses, receive buffer): a
 * wildcard ListenDatagram= must answer from the address the client wrote
 * to.  Returns NULL with errno set and *what naming the step that failed.
 */
struct listener *
listener_new_fd(int fd, enum transport t, const char **what)
{
    struct listener *ls;

    if (t == TRANSPORT_UDP) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        *what = "getsockname";
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
            return NULL;
        *what = "setsockopt";
        if (udp_prepare_socket(fd, (struct sockaddr *)&ss) == -1)
            return NULL;
    }
    *what = "out of memory";
    if ((ls = listener_alloc(t, 1)) == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    ls->ls_fds[0] = fd;
    ls->ls_activated = 1;
    if (t == TRANSPORT_TCP)
        listener_nodelay(fd);
    listener_name(ls);
    return ls;
}

/*
 * Close the sockets; every worker must have let go of them first.
 * Connections accepted from them are independent and carry on.  The AF_UNIX
 * file is removed only while it is still the one we created: a second
 * daemon may have replaced it.
 */
void
listener_free(struct listener *ls)
{
    if (ls == NULL)
        return;
    if (ls->ls_path[0] != '\0' && !ls->ls_activated && listener_unix_unlink(ls, ls->ls_path) == -1)
        log_warn("cannot remove %s: %s", ls->ls_path, strerror(errno));
    listener_release(ls);
}

/* Apply a new backlog to the listening sockets; Linux accepts listen(2) again for that. */
int
listener_set_backlog(struct listener *ls, int backlog)
{
    if (ls->ls_transport == TRANSPORT_UDP || ls->ls_activated)
        return 0;
    for (unsigned i = 0; i < ls->ls_nfds; i++)
        if (listen(ls->ls_fds[i], backlog) == -1)
            return -errno;
    return 0;
}

/* The socket worker number `worker` serves: its own, or the one they all share. */
int
listener_fd(const struct listener *ls, unsigned worker)
{
    return ls->ls_nfds == 1 ? ls->ls_fds[0] : ls->ls_fds[worker % ls->ls_nfds];
}
