/* refserver.c: a minimal single-threaded epoll uppercase echo server, the benchmarks' yardstick. */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "upper.h"

#define EX_USAGE 64
#define EX_OSERR 71

/* Events taken from one epoll_wait(2). */
#define REFSERVER_EVENTS 256
/* Datagrams per recvmmsg(2)/sendmmsg(2), and batches per wakeup so streams are not starved. */
#define REFSERVER_UDP_BATCH 64
#define REFSERVER_UDP_ROUNDS 4
/* Largest UDP payload over IPv6 (65507 over IPv4). */
#define REFSERVER_UDP_BUFSIZE 65536
#define REFSERVER_MAX_LISTENERS 16

enum refserver_kind {
    REFSERVER_LISTENER,
    REFSERVER_UDP,
    REFSERVER_CONN,
    REFSERVER_SIGNAL,
};

/* What an epoll event points at; every object below starts with one. */
struct refserver_tag {
    enum refserver_kind t_kind;
    int t_fd;
};

/*
 * One stream connection.  The echo is read into c_buf, uppercased there and
 * written back; whatever the kernel did not take stays in c_buf[c_off..c_len)
 * and nothing more is read until it is out, which is the backpressure.
 */
struct refserver_conn {
    struct refserver_tag c_tag;
    LIST_ENTRY(refserver_conn) c_entry;
    size_t c_off;
    size_t c_len;
    int c_waiting; /* registered for EPOLLOUT instead of EPOLLIN (level-triggered mode) */
    unsigned char c_buf[];
};

struct refserver {
    int rs_epfd;
    int rs_edge;       /* edge-triggered: one registration per connection, no epoll_ctl after */
    size_t rs_bufsize; /* bytes per connection buffer */
    size_t rs_nconns;
    LIST_HEAD(, refserver_conn) rs_conns;
    int rs_accept_paused;
    int rs_stop;
    struct refserver_tag rs_listeners[REFSERVER_MAX_LISTENERS];
    size_t rs_nlisteners;
    struct refserver_tag rs_signal;
};

/* Scratch space for the UDP batches; the loop is single-threaded. */
static struct mmsghdr refserver_msgs[REFSERVER_UDP_BATCH];
static struct iovec refserver_iov[REFSERVER_UDP_BATCH];
static struct sockaddr_storage refserver_addrs[REFSERVER_UDP_BATCH];
static unsigned char refserver_dgrams[REFSERVER_UDP_BATCH][REFSERVER_UDP_BUFSIZE];

static void
refserver_usage(FILE *f)
{
    fputs("usage: refserver [-e] [-b BYTES] [-t HOST:PORT] [-u HOST:PORT] [-U PATH]\n"
          "A minimal epoll uppercase echo server to compare upechod with.\n"
          "  -t HOST:PORT  serve TCP here (port 0: any free port); may be repeated\n"
          "  -u HOST:PORT  serve UDP here, with recvmmsg/sendmmsg; may be repeated\n"
          "  -U PATH       serve a unix stream socket at PATH\n"
          "  -b BYTES      buffer per stream connection (default 65536)\n"
          "  -e            edge-triggered epoll (default: level-triggered)\n"
          "Prints \"listening on tcp|udp|unix ADDRESS\" for each socket, then serves\n"
          "until SIGINT or SIGTERM.\n",
          f);
}

static int
refserver_ctl(struct refserver *rs, int op, struct refserver_tag *tag, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag};

    return epoll_ctl(rs->rs_epfd, op, tag->t_fd, &ev) == -1 ? -errno : 0;
}

/* Bind a TCP, UDP or unix socket and print where it listens. */
static int
refserver_listen(struct refserver *rs, int type, const char *text, int is_unix)
{
    struct refserver_tag *tag;
    struct sockaddr_storage ss;
    struct sockaddr_un sun;
    socklen_t len = sizeof(ss);
    char name[ADDR_STRLEN];
    struct addr a;
    const char *why = NULL;
    int fd, one = 1, rc;

    if (rs->rs_nlisteners == REFSERVER_MAX_LISTENERS) {
        fprintf(stderr, "refserver: too many sockets\n");
        return -EINVAL;
    }
    if (is_unix) {
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        if (strlen(text) >= sizeof(sun.sun_path)) {
            fprintf(stderr, "refserver: unix path too long: %s\n", text);
            return -EINVAL;
        }
        strcpy(sun.sun_path, text);
        memcpy(&a.a_ss, &sun, sizeof(sun));
        a.a_len = sizeof(sun);
        unlink(text);
    } else if (addr_parse(text, ADDR_NUMERIC, &a, &why) < 0) {
        fprintf(stderr, "refserver: bad address '%s': %s\n", text, why);
        return -EINVAL;
    }
    fd = socket(a.a_ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        goto fail;
    if (!is_unix)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a.a_ss, a.a_len) == -1)
        goto fail;
    if (type == SOCK_STREAM && listen(fd, 4096) == -1)
        goto fail;
    if (is_unix) {
        snprintf(name, sizeof(name), "%s", text);
    } else {
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
            goto fail;
        addr_format((struct sockaddr *)&ss, len, name, sizeof(name));
    }
    tag = &rs->rs_listeners[rs->rs_nlisteners];
    tag->t_kind = type == SOCK_STREAM ? REFSERVER_LISTENER : REFSERVER_UDP;
    tag->t_fd = fd;
    rc = refserver_ctl(rs, EPOLL_CTL_ADD, tag, EPOLLIN);
    if (rc < 0) {
        errno = -rc;
        goto fail;
    }
    rs->rs_nlisteners++;
    printf("listening on %s %s\n", is_unix ? "unix" : type == SOCK_STREAM ? "tcp" : "udp", name);
    fflush(stdout);
    return 0;
fail:
    rc = -errno;
    fprintf(stderr, "refserver: cannot listen on %s: %s\n", text, strerror(errno));
    if (fd != -1)
        close(fd);
    return rc;
}

/* Stop or resume taking connections: out of descriptors, they wait in the backlog. */
static void
refserver_set_accepting(struct refserver *rs, int on)
{
    for (size_t i = 0; i < rs->rs_nlisteners; i++)
        if (rs->rs_listeners[i].t_kind == REFSERVER_LISTENER)
            refserver_ctl(rs, EPOLL_CTL_MOD, &rs->rs_listeners[i], on ? EPOLLIN : 0);
    rs->rs_accept_paused = !on;
}

static void
refserver_conn_close(struct refserver *rs, struct refserver_conn *c)
{
    LIST_REMOVE(c, c_entry);
    close(c->c_tag.t_fd);
    free(c);
    rs->rs_nconns--;
    if (rs->rs_accept_paused)
        refserver_set_accepting(rs, 1);
}

/*
 * Write out c_buf[c_off..c_len).  Returns 1 when all of it is out, 0 when the
 * kernel would not take the rest now, -errno when the connection is broken.
 */
static int
refserver_conn_flush(struct refserver_conn *c)
{
    while (c->c_off < c->c_len) {
        ssize_t n = send(c->c_tag.t_fd, c->c_buf + c->c_off, c->c_len - c->c_off, MSG_NOSIGNAL);

        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        c->c_off += (size_t)n;
    }
    c->c_off = c->c_len = 0;
    return 1;
}

/*
 * Read once, uppercase, write back.  Returns 1 when everything read went out,
 * 0 when there was nothing to read or output is left over, -1 to close (end of
 * input, which only arrives after all earlier input was echoed, or an error).
 */
static int
refserver_conn_echo(struct refserver *rs, struct refserver_conn *c)
{
    ssize_t n = read(c->c_tag.t_fd, c->c_buf, rs->rs_bufsize);

    if (n == 0)
        return -1;
    if (n == -1)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    upper_inplace(c->c_buf, (size_t)n);
    c->c_off = 0;
    c->c_len = (size_t)n;
    return refserver_conn_flush(c) < 0 ? -1 : c->c_len == 0;
}

/*
 * Level-triggered: one read per wakeup, so thousands of busy connections
 * share the loop fairly.  While output is left over the connection waits for
 * EPOLLOUT only, which stops reading from it.
 */
static void
refserver_conn_level(struct refserver *rs, struct refserver_conn *c, uint32_t events)
{
    int rc;

    if (c->c_waiting) {
        rc = refserver_conn_flush(c);
        if (rc < 0) {
            refserver_conn_close(rs, c);
        } else if (rc == 1) {
            c->c_waiting = 0;
            refserver_ctl(rs, EPOLL_CTL_MOD, &c->c_tag, EPOLLIN);
        }
        return;
    }
    rc = refserver_conn_echo(rs, c);
    if (rc < 0) {
        refserver_conn_close(rs, c);
    } else if (c->c_len > 0) {
        c->c_waiting = 1;
        refserver_ctl(rs, EPOLL_CTL_MOD, &c->c_tag, EPOLLOUT);
    }
}

/*
 * Edge-triggered: registered once for both directions, so the loop never
 * calls epoll_ctl; in exchange every wakeup must go on until the kernel says
 * EAGAIN, which costs one more read per wakeup.
 */
static void
refserver_conn_edge(struct refserver *rs, struct refserver_conn *c, uint32_t events)
{
    for (;;) {
        int rc = c->c_len > 0 ? refserver_conn_flush(c) : 1;

        if (rc < 0) {
            refserver_conn_close(rs, c);
            return;
        }
        if (rc == 0)
            return;
        rc = refserver_conn_echo(rs, c);
        if (rc < 0) {
            refserver_conn_close(rs, c);
            return;
        }
        if (rc == 0)
            return;
    }
}

/* Take every pending connection. */
static void
refserver_accept(struct refserver *rs, struct refserver_tag *ls)
{
    for (;;) {
        struct refserver_conn *c;
        int fd = accept4(ls->t_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;

        if (fd == -1) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                fprintf(stderr, "refserver: accept: %s; pausing until a connection closes\n",
                        strerror(errno));
                if (rs->rs_nconns > 0)
                    refserver_set_accepting(rs, 0);
            }
            return;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = malloc(sizeof(*c) + rs->rs_bufsize);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->c_tag.t_kind = REFSERVER_CONN;
        c->c_tag.t_fd = fd;
        c->c_off = c->c_len = 0;
        c->c_waiting = 0;
        if (refserver_ctl(rs, EPOLL_CTL_ADD, &c->c_tag,
                          rs->rs_edge ? EPOLLIN | EPOLLOUT | EPOLLET : EPOLLIN) < 0) {
            close(fd);
            free(c);
            continue;
        }
        LIST_INSERT_HEAD(&rs->rs_conns, c, c_entry);
        rs->rs_nconns++;
    }
}

/* Answer every datagram with its uppercase, a batch at a time; what the kernel refuses is lost. */
static void
refserver_udp(struct refserver_tag *u)
{
    for (int round = 0; round < REFSERVER_UDP_ROUNDS; round++) {
        int n, off = 0;

        for (int i = 0; i < REFSERVER_UDP_BATCH; i++) {
            struct msghdr *mh = &refserver_msgs[i].msg_hdr;

            refserver_iov[i].iov_base = refserver_dgrams[i];
            refserver_iov[i].iov_len = REFSERVER_UDP_BUFSIZE;
            memset(mh, 0, sizeof(*mh));
            mh->msg_name = &refserver_addrs[i];
            mh->msg_namelen = sizeof(refserver_addrs[i]);
            mh->msg_iov = &refserver_iov[i];
            mh->msg_iovlen = 1;
        }
        n = recvmmsg(u->t_fd, refserver_msgs, REFSERVER_UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++) {
            upper_inplace(refserver_dgrams[i], refserver_msgs[i].msg_len);
            refserver_iov[i].iov_len = refserver_msgs[i].msg_len;
        }
        while (off < n) {
            int sent = sendmmsg(u->t_fd, refserver_msgs + off, (unsigned)(n - off), MSG_DONTWAIT);

            if (sent > 0)
                off += sent;
            else if (sent == -1 && errno == EINTR)
                continue;
            else if (sent == -1 && (errno == EAGAIN || errno == ENOBUFS))
                break;
            else
                off++;
        }
        if (n < REFSERVER_UDP_BATCH)
            return;
    }
}

static void
refserver_dispatch(struct refserver *rs, struct epoll_event *ev)
{
    struct refserver_tag *tag = ev->data.ptr;

    switch (tag->t_kind) {
    case REFSERVER_LISTENER:
        refserver_accept(rs, tag);
        break;
    case REFSERVER_UDP:
        refserver_udp(tag);
        break;
    case REFSERVER_CONN:
        if (rs->rs_edge)
            refserver_conn_edge(rs, (struct refserver_conn *)tag, ev->events);
        else
            refserver_conn_level(rs, (struct refserver_conn *)tag, ev->events);
        break;
    case REFSERVER_SIGNAL:
        rs->rs_stop = 1;
        break;
    }
}

/* Serve until a signal; returns 0 or -errno. */
static int
refserver_run(struct refserver *rs)
{
    struct epoll_event evs[REFSERVER_EVENTS];

    while (!rs->rs_stop) {
        int n = epoll_wait(rs->rs_epfd, evs, REFSERVER_EVENTS, -1);

        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int i = 0; i < n; i++)
            refserver_dispatch(rs, &evs[i]);
    }
    return 0;
}

/* SIGINT and SIGTERM arrive through the loop, so the process can close and exit 0. */
static int
refserver_signals(struct refserver *rs)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
        return -errno;
    rs->rs_signal.t_kind = REFSERVER_SIGNAL;
    rs->rs_signal.t_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (rs->rs_signal.t_fd == -1)
        return -errno;
    return refserver_ctl(rs, EPOLL_CTL_ADD, &rs->rs_signal, EPOLLIN);
}

int
main(int argc, char **argv)
{
    struct refserver rs = {.rs_bufsize = 65536};
    const char *unix_path = NULL;
    char *end;
    int ch, rc = 0;

    LIST_INIT(&rs.rs_conns);
    rs.rs_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (rs.rs_epfd == -1) {
        perror("refserver: epoll_create1");
        return EX_OSERR;
    }
    if (refserver_signals(&rs) < 0) {
        perror("refserver: signalfd");
        return EX_OSERR;
    }
    while ((ch = getopt(argc, argv, "b:et:u:U:h")) != -1) {
        switch (ch) {
        case 'b':
            rs.rs_bufsize = strtoul(optarg, &end, 10);
            if (*end != '\0' || rs.rs_bufsize == 0 || rs.rs_bufsize > (1u << 30)) {
                fprintf(stderr, "refserver: -b wants a buffer size in bytes, not '%s'\n", optarg);
                return EX_USAGE;
            }
            break;
        case 'e':
            rs.rs_edge = 1;
            break;
        case 't':
            rc = refserver_listen(&rs, SOCK_STREAM, optarg, 0);
            break;
        case 'u':
            rc = refserver_listen(&rs, SOCK_DGRAM, optarg, 0);
            break;
        case 'U':
            unix_path = optarg;
            rc = refserver_listen(&rs, SOCK_STREAM, optarg, 1);
            break;
        case 'h':
            refserver_usage(stdout);
            return 0;
        default:
            refserver_usage(stderr);
            return EX_USAGE;
        }
        if (rc < 0)
            return rc == -EINVAL ? EX_USAGE : EX_OSERR;
    }
    if (optind != argc || rs.rs_nlisteners == 0) {
        refserver_usage(stderr);
        return EX_USAGE;
    }
    rc = refserver_run(&rs);
    if (rc < 0)
        fprintf(stderr, "refserver: epoll_wait: %s\n", strerror(-rc));
    while (!LIST_EMPTY(&rs.rs_conns))
        refserver_conn_close(&rs, LIST_FIRST(&rs.rs_conns));
    for (size_t i = 0; i < rs.rs_nlisteners; i++)
        close(rs.rs_listeners[i].t_fd);
    close(rs.rs_signal.t_fd);
    close(rs.rs_epfd);
    if (unix_path != NULL)
        unlink(unix_path);
    return rc < 0 ? EX_OSERR : 0;
}
