/* activate.c: hand listening sockets to a command the way systemd's socket activation does. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "activation.h"
#include "addr.h"
#include "harness.h"

#define ACTIVATE_MAX 16
/* Where sockets wait while fds 3.. are cleared for them. */
#define ACTIVATE_HIGH_FD 100

static void
usage(void)
{
    fprintf(stderr, "usage: activate [-r REPORT] [-n NAMES] SOCKET... -- COMMAND [ARG...]\n"
                    "  SOCKET is tcp:HOST:PORT, udp:HOST:PORT or unix:PATH (port 0 for any);\n"
                    "  they become fds 3, 4, ... of COMMAND, which replaces this process, so that\n"
                    "  LISTEN_PID is its pid.  REPORT gets one \"KIND ADDRESS\" line per socket\n"
                    "  as bound, written before COMMAND runs.  NAMES becomes LISTEN_FDNAMES.\n");
    exit(64);
}

/* Create, bind and (for streams) listen one socket from "kind:address"; fd or -1. */
static int
activate_open(const char *spec, char *text, size_t textlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct addr a;
    const char *why = NULL;
    int fd, type, one = 1;

    if (strncmp(spec, "unix:", 5) == 0) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};

        if (strlen(spec + 5) >= sizeof(sun.sun_path)) {
            fprintf(stderr, "activate: %s: path too long\n", spec);
            return -1;
        }
        strcpy(sun.sun_path, spec + 5);
        unlink(sun.sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd == -1 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
            listen(fd, 128) == -1)
            goto fail;
        snprintf(text, textlen, "unix %s", sun.sun_path);
        return fd;
    }
    if (strncmp(spec, "tcp:", 4) == 0)
        type = SOCK_STREAM;
    else if (strncmp(spec, "udp:", 4) == 0)
        type = SOCK_DGRAM;
    else {
        fprintf(stderr, "activate: %s: expected tcp:, udp: or unix:\n", spec);
        return -1;
    }
    if (addr_parse(spec + 4, ADDR_NUMERIC, &a, &why) < 0) {
        fprintf(stderr, "activate: %s: %s\n", spec, why);
        return -1;
    }
    fd = socket(a.a_ss.ss_family, type, 0);
    if (fd == -1)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a.a_ss, a.a_len) == -1 ||
        (type == SOCK_STREAM && listen(fd, 128) == -1) ||
        getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
        goto fail;
    snprintf(text, textlen, "%s ", type == SOCK_STREAM ? "tcp" : "udp");
    addr_format((struct sockaddr *)&ss, len, text + 4, textlen - 4);
    return fd;
fail:
    fprintf(stderr, "activate: %s: %s\n", spec, strerror(errno));
    return -1;
}

/* Write the report whole under a temporary name, then rename, so readers never see half. */
static int
activate_report(const char *path, char text[][ADDR_STRLEN + 8], size_t n)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "we");
    if (f == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", text[i]);
    if (fclose(f) == EOF || rename(tmp, path) == -1)
        return -1;
    return 0;
}

int
main(int argc, char **argv)
{
    char text[ACTIVATE_MAX][ADDR_STRLEN + 8];
    int high[ACTIVATE_MAX];
    const char *report = NULL, *names = NULL;
    size_t n = 0;
    int i = 1;

    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
            report = argv[++i];
        } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            names = argv[++i];
        } else if (argv[i][0] == '-' || n == ACTIVATE_MAX) {
            usage();
        } else {
            int fd = activate_open(argv[i], text[n], sizeof(text[n]));

            /* Out of the way of 3.., which the next socket() may have taken. */
            if (fd < 0 || (high[n] = fcntl(fd, F_DUPFD, ACTIVATE_HIGH_FD)) == -1)
                return 71;
            close(fd);
            n++;
        }
    }
    if (i + 1 >= argc || n == 0)
        usage();

    for (size_t k = 0; k < n; k++) {
        if (dup2(high[k], ACTIVATION_FD_START + (int)k) == -1) {
            fprintf(stderr, "activate: dup2: %s\n", strerror(errno));
            return 71;
        }
        close(high[k]);
    }
    listen_env_set(getpid(), n, names);
    if (report != NULL && activate_report(report, text, n) == -1) {
        fprintf(stderr, "activate: %s: %s\n", report, strerror(errno));
        return 73;
    }
    execv(argv[i + 1], argv + i + 1);
    fprintf(stderr, "activate: %s: %s\n", argv[i + 1], strerror(errno));
    return 127;
}
