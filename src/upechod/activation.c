/* activation.c: sockets passed by the service manager (sd_listen_fds(3)), without libsystemd. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "activation.h"
#include "addr.h"
#include "log.h"
#include "number.h"

static const char *
activation_type_name(int domain, int type)
{
    if (type == SOCK_DGRAM)
        return domain == AF_UNIX ? "unix datagram" : "udp";
    if (type == SOCK_STREAM)
        return domain == AF_UNIX ? "unix" : "tcp";
    return "socket";
}

/*
 * Copy the i-th colon-separated name of LISTEN_FDNAMES into af_name.  The
 * names only label log lines, so a missing or short list is not an error.
 */
static void
activation_name(struct activated_fd *af, const char *names, size_t i)
{
    const char *s = names, *e;
    size_t len;

    for (; s != NULL && i > 0; i--) {
        s = strchr(s, ':');
        if (s != NULL)
            s++;
    }
    if (s == NULL || *s == '\0' || *s == ':') {
        strcpy(af->af_name, "unknown");
        return;
    }
    e = strchr(s, ':');
    len = e != NULL ? (size_t)(e - s) : strlen(s);
    if (len >= sizeof(af->af_name))
        len = sizeof(af->af_name) - 1;
    memcpy(af->af_name, s, len);
    af->af_name[len] = '\0';
}

/*
 * Identify one passed descriptor and check that upechod can serve it: TCP
 * or UNIX stream sockets that already listen, or UDP sockets.  Anything
 * else is a mistake in the socket unit (a FIFO, ListenSequentialPacket=,
 * a UNIX datagram socket whose clients could not be answered, Accept=yes
 * connections), and serving part of it would hide the mistake.
 */
static int
activation_identify(struct activated_fd *af)
{
    char text[ADDR_STRLEN];
    socklen_t len;
    struct stat st;
    int listening = 0, flags;

    if (fstat(af->af_fd, &st) == -1) {
        log_error("socket activation: fd %d (%s) is not open: %s", af->af_fd, af->af_name,
                  strerror(errno));
        return -EINVAL;
    }
    if (!S_ISSOCK(st.st_mode)) {
        log_error("socket activation: fd %d (%s) is not a socket; upechod serves only "
                  "ListenStream= and ListenDatagram= sockets",
                  af->af_fd, af->af_name);
        return -EINVAL;
    }
    len = sizeof(af->af_domain);
    if (getsockopt(af->af_fd, SOL_SOCKET, SO_DOMAIN, &af->af_domain, &len) == -1)
        goto sockopt_failed;
    len = sizeof(af->af_type);
    if (getsockopt(af->af_fd, SOL_SOCKET, SO_TYPE, &af->af_type, &len) == -1)
        goto sockopt_failed;
    if (af->af_type == SOCK_STREAM) {
        len = sizeof(listening);
        if (getsockopt(af->af_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == -1)
            goto sockopt_failed;
    }
    af->af_addrlen = sizeof(af->af_addr);
    if (getsockname(af->af_fd, (struct sockaddr *)&af->af_addr, &af->af_addrlen) == -1)
        goto sockopt_failed;

    if (af->af_domain != AF_INET && af->af_domain != AF_INET6 && af->af_domain != AF_UNIX) {
        log_error("socket activation: fd %d (%s) is of address family %d; upechod serves "
                  "only IPv4, IPv6 and UNIX sockets",
                  af->af_fd, af->af_name, af->af_domain);
        return -EINVAL;
    }
    if (af->af_type != SOCK_STREAM && af->af_type != SOCK_DGRAM) {
        log_error("socket activation: fd %d (%s) is of socket type %d; upechod serves only "
                  "ListenStream= and ListenDatagram= sockets",
                  af->af_fd, af->af_name, af->af_type);
        return -EINVAL;
    }
    addr_format((struct sockaddr *)&af->af_addr, af->af_addrlen, text, sizeof(text));
    if (af->af_type == SOCK_DGRAM && af->af_domain == AF_UNIX) {
        log_error("socket activation: fd %d (%s) is a UNIX datagram socket (%s); upechod "
                  "serves UNIX clients over ListenStream= only",
                  af->af_fd, af->af_name, text);
        return -EINVAL;
    }
    if (af->af_type == SOCK_STREAM && !listening) {
        log_error("socket activation: fd %d (%s) is a %s socket (%s) that is not listening; "
                  "upechod needs Accept=no",
                  af->af_fd, af->af_name, activation_type_name(af->af_domain, af->af_type), text);
        return -EINVAL;
    }

    /*
     * Each process owns its descriptor flags, but O_NONBLOCK is shared with
     * the manager's copy; systemd creates its sockets non-blocking anyway.
     */
    if (fcntl(af->af_fd, F_SETFD, FD_CLOEXEC) == -1)
        goto fcntl_failed;
    flags = fcntl(af->af_fd, F_GETFL);
    if (flags == -1 || fcntl(af->af_fd, F_SETFL, flags | O_NONBLOCK) == -1)
        goto fcntl_failed;

    log_info("socket activation: fd %d (%s): %s %s", af->af_fd, af->af_name,
             activation_type_name(af->af_domain, af->af_type), text);
    return 0;

sockopt_failed:
    log_error("socket activation: cannot identify fd %d (%s): %s", af->af_fd, af->af_name,
              strerror(errno));
    return -EINVAL;
fcntl_failed:
    log_error("socket activation: cannot set flags on fd %d (%s): %s", af->af_fd, af->af_name,
              strerror(errno));
    return -errno;
}

/*
 * Take the sockets the manager passed when LISTEN_PID names this process.
 * Returns 0 with *n = 0 when there are none (not activated, or the variables
 * were meant for another process and are left alone), 0 with the array
 * otherwise, or -EINVAL when the variables or a socket are unusable.  The
 * variables are unset as soon as they are known to be ours, so that nothing
 * later takes the same descriptors twice.  On error nothing is closed: the
 * descriptors stay as passed and the caller exits.
 */
int
activation_collect(struct activated_fd **out, size_t *n)
{
    const char *pid_e, *fds_e, *names_e;
    char *names = NULL;
    unsigned long long pid, nfds;
    struct activated_fd *fds = NULL;
    int r = 0;

    *out = NULL;
    *n = 0;

    pid_e = getenv("LISTEN_PID");
    if (pid_e == NULL)
        return 0;
    if (number_parse(pid_e, 10, &pid) < 0) {
        log_error("socket activation: LISTEN_PID=%s is not a process ID", pid_e);
        return -EINVAL;
    }
    if (pid != (unsigned long long)getpid())
        return 0;

    fds_e = getenv("LISTEN_FDS");
    if (fds_e == NULL) {
        nfds = 0;
    } else if (number_parse(fds_e, 10, &nfds) < 0 ||
               nfds > (unsigned long long)(INT_MAX - ACTIVATION_FD_START)) {
        log_error("socket activation: LISTEN_FDS=%s is not a count of descriptors", fds_e);
        r = -EINVAL;
    }
    names_e = getenv("LISTEN_FDNAMES");
    if (names_e != NULL) {
        names = strdup(names_e);
        if (names == NULL)
            r = -ENOMEM;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (r < 0 || nfds == 0)
        goto out;

    fds = calloc(nfds, sizeof(*fds));
    if (fds == NULL) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nfds; i++) {
        fds[i].af_fd = ACTIVATION_FD_START + (int)i;
        activation_name(&fds[i], names, i);
        r = activation_identify(&fds[i]);
        if (r < 0)
            goto out;
    }
    *out = fds;
    fds = NULL;
    *n = nfds;
out:
    free(fds);
    free(names);
    return r;
}

/* Frees the array only: the descriptors belong to whoever serves them. */
void
activation_free(struct activated_fd *fds, size_t n)
{
    (void)n;
    free(fds);
}
