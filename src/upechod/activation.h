/* activation.h: sockets passed by the service manager (sd_listen_fds(3)), without libsystemd. */
#ifndef UPECHOD_ACTIVATION_H
#define UPECHOD_ACTIVATION_H

#include <stddef.h>
#include <sys/socket.h>

/* The first passed descriptor; the protocol fixes it. */
#define ACTIVATION_FD_START 3

/* One passed socket, identified from the socket itself rather than from its name. */
struct activated_fd {
    int af_fd;
    int af_domain;                   /* AF_INET, AF_INET6 or AF_UNIX */
    int af_type;                     /* SOCK_STREAM (listening) or SOCK_DGRAM */
    struct sockaddr_storage af_addr; /* getsockname() */
    socklen_t af_addrlen;
    char af_name[256]; /* from LISTEN_FDNAMES, "unknown" without; for logs */
};

int activation_collect(struct activated_fd **out, size_t *n);
void activation_free(struct activated_fd *fds, size_t n);

#endif
