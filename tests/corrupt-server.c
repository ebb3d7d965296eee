/* corrupt-server.c: a TCP and UDP uppercasing echo that damages every Nth byte, for tool tests. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upper.h"

/* Clients served at once; the tool tests use far fewer. */
#define CORRUPT_MAX_FDS 1024
/* The server ends itself after this long, so a crashed test cannot leave it behind. */
#define CORRUPT_LIFETIME_S 120

/*
 * Uppercase buf, then flip bit 0x20 of every `every`th byte counted across
 * all the bytes *count has seen: a-z stays lowercase there, other bytes
 * change too, so each damaged byte differs from a correct echo.
 */
static void
corrupt(unsigned char *buf, size_t len, unsigned long long *count, unsigned long every)
{
    upper_inplace(buf, len);
    for (size_t i = 0; i < len; i++)
        if (++*count % every == 0)
            buf[i] ^= 0x20;
}

static int
bind_loopback(int type, int *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd == -1 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) == -1 ||
        (type == SOCK_STREAM && listen(fd, 1024) == -1)) {
        perror("corrupt-server: socket");
        exit(1);
    }
    *port = ntohs(sin.sin_port);
    return fd;
}

/* Write all of buf to a blocking socket; -1 when the client is gone. */
static int
send_all(int fd, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * usage: corrupt-server [EVERY]  (default 1000).  Prints "TCPPORT UDPPORT"
 * on stdout, then serves both on 127.0.0.1 until killed.
 */
int
main(int argc, char **argv)
{
    static struct pollfd pfds[CORRUPT_MAX_FDS];
    static unsigned long long counts[CORRUPT_MAX_FDS];
    static unsigned char buf[65536];
    unsigned long every = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    int tcp_port, udp_port;
    nfds_t nfds = 2;

    if (every == 0)
        every = 1000;
    alarm(CORRUPT_LIFETIME_S);
    pfds[0].fd = bind_loopback(SOCK_STREAM, &tcp_port);
    pfds[1].fd = bind_loopback(SOCK_DGRAM, &udp_port);
    pfds[0].events = pfds[1].events = POLLIN;
    printf("%d %d\n", tcp_port, udp_port);
    fflush(stdout);

    for (;;) {
        if (poll(pfds, nfds, -1) == -1) {
            if (errno == EINTR)
                continue;
            perror("corrupt-server: poll");
            return 1;
        }
        if (pfds[0].revents & POLLIN) {
            int fd = accept(pfds[0].fd, NULL, NULL);

            if (fd >= 0 && nfds < CORRUPT_MAX_FDS) {
                pfds[nfds].fd = fd;
                pfds[nfds].events = POLLIN;
                pfds[nfds].revents = 0;
                counts[nfds] = 0;
                nfds++;
            } else if (fd >= 0) {
                close(fd);
            }
        }
        if (pfds[1].revents & POLLIN) {
            struct sockaddr_storage from;
            socklen_t fromlen = sizeof(from);
            ssize_t n = recvfrom(pfds[1].fd, buf, sizeof(buf), MSG_DONTWAIT,
                                 (struct sockaddr *)&from, &fromlen);

            if (n >= 0) {
                corrupt(buf, (size_t)n, &counts[1], every);
                sendto(pfds[1].fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fromlen);
            }
        }
        for (nfds_t i = 2; i < nfds; i++) {
            ssize_t n;

            if (pfds[i].revents == 0)
                continue;
            n = recv(pfds[i].fd, buf, sizeof(buf), 0);
            if (n > 0) {
                corrupt(buf, (size_t)n, &counts[i], every);
                if (send_all(pfds[i].fd, buf, (size_t)n) == 0)
                    continue;
            } else if (n == -1 && errno == EINTR) {
                continue;
            }
            close(pfds[i].fd);
            pfds[i] = pfds[nfds - 1];
            counts[i] = counts[nfds - 1];
            nfds--;
            i--;
        }
    }
}
