/* notify.c: the service manager's readiness protocol (sd_notify(3)), without libsystemd. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "number.h"

/* Longest message we send; the protocol's messages are a few short lines. */
#define NOTIFY_MSG_MAX 4096

struct notify {
    int n_fd;
    struct sockaddr_un n_addr;
    socklen_t n_addrlen;
};

/*
 * Fill n_addr from NOTIFY_SOCKET: an absolute path, or "@name" for a name in
 * the abstract namespace (the '@' becomes the leading NUL byte, and the
 * length covers exactly the name, since abstract names are not terminated).
 */
static int
notify_parse_addr(struct notify *n, const char *e)
{
    size_t len = strlen(e);

    if (e[0] != '/' && e[0] != '@')
        return -EAFNOSUPPORT;
    if (len < 2 || len > sizeof(n->n_addr.sun_path) - (e[0] == '/'))
        return -EINVAL;
    memset(&n->n_addr, 0, sizeof(n->n_addr));
    n->n_addr.sun_family = AF_UNIX;
    memcpy(n->n_addr.sun_path, e, len);
    if (e[0] == '@') {
        n->n_addr.sun_path[0] = '\0';
        n->n_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        n->n_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    return 0;
}

/*
 * NOTIFY_SOCKET stays in the environment: libsystemd offers to unset it so
 * that children do not notify in the daemon's name, but upechod never
 * executes anything, and a forked child could not pass NotifyAccess=main.
 */
struct notify *
notify_new(void)
{
    const char *e = getenv("NOTIFY_SOCKET");
    struct notify *n;
    int r;

    if (e == NULL || e[0] == '\0')
        return NULL;
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        log_warn("notify: cannot allocate: %s; the service manager gets no status",
                 strerror(errno));
        return NULL;
    }
    r = notify_parse_addr(n, e);
    if (r < 0) {
        log_warn("notify: NOTIFY_SOCKET=%s is %s; the service manager gets no status", e,
                 r == -EAFNOSUPPORT ? "not an absolute path or @abstract name"
                                    : "empty or too long for a socket address");
        free(n);
        return NULL;
    }
    n->n_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (n->n_fd == -1) {
        log_warn("notify: cannot create a socket for %s: %s; the service manager gets no status", e,
                 strerror(errno));
        free(n);
        return NULL;
    }
    return n;
}

void
notify_free(struct notify *n)
{
    if (n == NULL)
        return;
    close(n->n_fd);
    free(n);
}

/*
 * Format prefix and fmt into one datagram and send it.  MSG_DONTWAIT because
 * a manager that is slow to read must never stall the event loop (a lost
 * status line is harmless, and a lost watchdog ping is followed by the next);
 * MSG_NOSIGNAL as a guard, though datagram sockets raise no SIGPIPE.
 */
static int __attribute__((format(printf, 3, 0)))
notify_vsend(struct notify *n, const char *prefix, const char *fmt, va_list ap)
{
    char msg[NOTIFY_MSG_MAX];
    size_t plen = strlen(prefix);
    ssize_t w;
    int len;

    if (n == NULL)
        return 0;
    if (plen >= sizeof(msg))
        return -EMSGSIZE;
    memcpy(msg, prefix, plen);
    len = vsnprintf(msg + plen, sizeof(msg) - plen, fmt, ap);
    if (len < 0)
        return -EINVAL;
    if ((size_t)len >= sizeof(msg) - plen)
        return -EMSGSIZE;

    do {
        w = sendto(n->n_fd, msg, plen + (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL,
                   (const struct sockaddr *)&n->n_addr, n->n_addrlen);
    } while (w == -1 && errno == EINTR);
    if (w == -1) {
        int err = errno;

        if (err == EAGAIN)
            log_debug("notify: service manager's queue is full, status dropped");
        else
            log_warn("notify: cannot send to the service manager: %s", strerror(err));
        return -err;
    }
    return 0;
}

int
notify_send(struct notify *n, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = notify_vsend(n, "", fmt, ap);
    va_end(ap);
    return r;
}

/*
 * sd_watchdog_enabled(3) semantics: WATCHDOG_PID, when set, names the one
 * process the manager watches; anything unparsable means no watchdog.
 */
uint64_t
notify_watchdog_usec(void)
{
    const char *e = getenv("WATCHDOG_USEC");
    const char *p = getenv("WATCHDOG_PID");
    unsigned long long usec, pid;

    if (e == NULL || number_parse(e, 10, &usec) < 0)
        return 0;
    if (p != NULL && (number_parse(p, 10, &pid) < 0 || pid != (unsigned long long)getpid()))
        return 0;
    return (uint64_t)usec;
}

/* All listeners are bound: the manager may start units ordered after ours. */
int
notify_ready(struct notify *n, const char *status)
{
    if (status == NULL)
        return notify_send(n, "READY=1");
    return notify_send(n, "READY=1\nSTATUS=%s", status);
}

/*
 * A reload begins; READY=1 ends it.  MONOTONIC_USEC lets systemd 253 and
 * later match this message to the SIGHUP it sent (Type=notify-reload);
 * older versions ignore it.
 */
int
notify_reloading(struct notify *n)
{
    struct timespec ts;

    if (n == NULL)
        return 0;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
        return -errno;
    return notify_send(n, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
                       (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

int
notify_stopping(struct notify *n)
{
    return notify_send(n, "STOPPING=1");
}

int
notify_watchdog(struct notify *n)
{
    return notify_send(n, "WATCHDOG=1");
}

/* Free-form one-line status that systemctl status shows. */
int
notify_status(struct notify *n, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = notify_vsend(n, "STATUS=", fmt, ap);
    va_end(ap);
    return r;
}
