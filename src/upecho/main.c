/* upecho.c: send lines to upechod, print each reply and check it is the uppercase of the line. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <sysexits.h>

#include "upechod-build.h"
#include "target.h"
#include "upper.h"

#define EX_WRONG 1 /* a reply was not the uppercase of its request */

/* Sends per UDP request: the first and this many minus one retries, each with its share of the
 * timeout. */
#define UDP_ATTEMPTS 4
#define UDP_MAX 65507

/* The connection and what it takes to check replies on it. */
struct upecho {
    struct target ue_target;
    int ue_fd;
    int ue_timeout_ms;
    unsigned long ue_line; /* requests so far, for messages */
    unsigned char *ue_reply;
    size_t ue_reply_cap;
    unsigned char *ue_retried; /* UDP: the last request that was sent more than once */
    size_t ue_retried_len;
    bool ue_has_retried;
};

static long long
upecho_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until deadline_ms; returns revents, 0 on timeout, -errno. */
static int
upecho_poll(int fd, short events, long long deadline_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};

    for (;;) {
        long long left = deadline_ms - upecho_now_ms();
        int n;

        if (left < 0)
            left = 0;
        n = poll(&pfd, 1, (int)left);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return -errno;
        return n == 0 ? 0 : pfd.revents;
    }
}

static int
upecho_reserve(struct upecho *ue, size_t len)
{
    unsigned char *n;

    if (len <= ue->ue_reply_cap)
        return 0;
    n = realloc(ue->ue_reply, len);
    if (n == NULL)
        return -ENOMEM;
    ue->ue_reply = n;
    ue->ue_reply_cap = len;
    return 0;
}

/* Connect within the timeout; returns an exit status, printing why on failure. */
static int
upecho_connect(struct upecho *ue, const char *text)
{
    int rc = target_connect(&ue->ue_target, NULL, &ue->ue_fd);

    if (rc == -EINPROGRESS) {
        int err = 0;
        socklen_t len = sizeof(err);

        rc = upecho_poll(ue->ue_fd, POLLOUT, upecho_now_ms() + ue->ue_timeout_ms);
        if (rc == 0) {
            fprintf(stderr, "upecho: cannot connect to %s: timed out\n", text);
            return EX_TEMPFAIL;
        }
        if (rc > 0 && getsockopt(ue->ue_fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        rc = rc < 0 ? rc : -err;
    }
    if (rc < 0) {
        fprintf(stderr, "upecho: cannot connect to %s: %s\n", text, strerror(-rc));
        return EX_UNAVAILABLE;
    }
    return EX_OK;
}

/* Report the first wrong byte of a reply, in a form that shows invisible bytes. */
static void
upecho_report_wrong(const struct upecho *ue, const unsigned char *sent, const unsigned char *reply,
                    size_t len, size_t at)
{
    unsigned char want;

    upper_copy(&want, &sent[at], 1);
    fprintf(stderr,
            "upecho: wrong reply to message %lu: byte %zu of %zu is 0x%02x, expected 0x%02x "
            "(the uppercase of 0x%02x)\n",
            ue->ue_line, at, len, reply[at], want, sent[at]);
}

/*
 * Stream: write the request and read exactly as many bytes back, both at
 * once, so a request larger than the socket buffers cannot deadlock against
 * the echo coming back.  The reply is left in ue_reply.
 */
static int
upecho_stream_exchange(struct upecho *ue, const unsigned char *msg, size_t len)
{
    long long deadline = upecho_now_ms() + ue->ue_timeout_ms;
    size_t sent = 0, got = 0;

    while (got < len) {
        short want = POLLIN | (sent < len ? POLLOUT : 0);
        int rev = upecho_poll(ue->ue_fd, want, deadline);
        ssize_t n;

        if (rev == 0) {
            fprintf(stderr,
                    "upecho: timed out after %d ms waiting for the reply to message %lu "
                    "(%zu of %zu bytes back)\n",
                    ue->ue_timeout_ms, ue->ue_line, got, len);
            return EX_TEMPFAIL;
        }
        if (rev < 0) {
            fprintf(stderr, "upecho: poll: %s\n", strerror(-rev));
            return EX_OSERR;
        }
        if (sent < len && (rev & (POLLOUT | POLLERR))) {
            n = send(ue->ue_fd, msg + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                fprintf(stderr, "upecho: sending message %lu: %s\n", ue->ue_line, strerror(errno));
                return EX_UNAVAILABLE;
            }
            if (n > 0)
                sent += (size_t)n;
        }
        if (rev & (POLLIN | POLLHUP | POLLERR)) {
            n = recv(ue->ue_fd, ue->ue_reply + got, len - got, MSG_DONTWAIT);
            if (n == 0) {
                fprintf(stderr,
                        "upecho: the server closed the connection during the reply to "
                        "message %lu (%zu of %zu bytes back)\n",
                        ue->ue_line, got, len);
                return EX_UNAVAILABLE;
            }
            if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                fprintf(stderr, "upecho: receiving the reply to message %lu: %s\n", ue->ue_line,
                        strerror(errno));
                return EX_UNAVAILABLE;
            }
            if (n > 0)
                got += (size_t)n;
        }
    }
    return EX_OK;
}

/* Whether a datagram is the right answer to the last request that was sent twice. */
static bool
upecho_is_stale(const struct upecho *ue, const unsigned char *reply, size_t n)
{
    return ue->ue_has_retried && n == ue->ue_retried_len &&
           upper_equal(reply, ue->ue_retried, n, NULL);
}

/*
 * UDP: send the request as one datagram and wait for one back, resending
 * up to UDP_ATTEMPTS times in all.  A late answer to an earlier request
 * that had to be resent is recognised and skipped.
 */
static int
upecho_udp_exchange(struct upecho *ue, const unsigned char *msg, size_t len)
{
    int slice = ue->ue_timeout_ms / UDP_ATTEMPTS > 0 ? ue->ue_timeout_ms / UDP_ATTEMPTS : 1;

    if (len > UDP_MAX) {
        fprintf(stderr, "upecho: message %lu is %zu bytes, more than a UDP datagram holds (%d)\n",
                ue->ue_line, len, UDP_MAX);
        return EX_USAGE;
    }
    for (int attempt = 0; attempt < UDP_ATTEMPTS; attempt++) {
        long long deadline = upecho_now_ms() + slice;

        if (send(ue->ue_fd, msg, len, MSG_NOSIGNAL) == -1) {
            fprintf(stderr, "upecho: sending message %lu: %s\n", ue->ue_line, strerror(errno));
            return EX_UNAVAILABLE;
        }
        if (attempt == 1) {
            /* From now on a late reply to this request is stale, not wrong. */
            memcpy(ue->ue_retried, msg, len);
            ue->ue_retried_len = len;
            ue->ue_has_retried = true;
        }
        for (;;) {
            int rev = upecho_poll(ue->ue_fd, POLLIN, deadline);
            ssize_t n;

            if (rev == 0)
                break;
            if (rev < 0) {
                fprintf(stderr, "upecho: poll: %s\n", strerror(-rev));
                return EX_OSERR;
            }
            n = recv(ue->ue_fd, ue->ue_reply, UDP_MAX + 1, MSG_DONTWAIT);
            if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                continue;
            if (n == -1) {
                /* ECONNREFUSED: the ICMP port unreachable that a closed port sends back. */
                fprintf(stderr, "upecho: receiving the reply to message %lu: %s\n", ue->ue_line,
                        strerror(errno));
                return EX_UNAVAILABLE;
            }
            if ((size_t)n == len && upper_equal(ue->ue_reply, msg, len, NULL))
                return EX_OK;
            if (upecho_is_stale(ue, ue->ue_reply, (size_t)n))
                continue;
            if ((size_t)n == len)
                return EX_OK; /* wrong, and upecho_one() says where */
            fprintf(stderr, "upecho: wrong reply to message %lu: %zd bytes back for %zu sent\n",
                    ue->ue_line, n, len);
            return EX_WRONG;
        }
    }
    fprintf(stderr, "upecho: no reply to message %lu after %d tries in %d ms\n", ue->ue_line,
            UDP_ATTEMPTS, ue->ue_timeout_ms);
    return EX_TEMPFAIL;
}

/* Send one request, check the reply and print it as a line.  Returns an exit status. */
static int
upecho_one(struct upecho *ue, const unsigned char *msg, size_t len)
{
    size_t at;
    int rc;

    ue->ue_line++;
    if (upecho_reserve(ue, len > UDP_MAX + 1 ? len : UDP_MAX + 1) < 0) {
        fprintf(stderr, "upecho: out of memory\n");
        return EX_OSERR;
    }
    if (ue->ue_target.t_kind == TARGET_UDP)
        rc = upecho_udp_exchange(ue, msg, len);
    else
        rc = upecho_stream_exchange(ue, msg, len);
    if (rc != EX_OK)
        return rc;
    if (!upper_equal(ue->ue_reply, msg, len, &at)) {
        upecho_report_wrong(ue, msg, ue->ue_reply, len, at);
        return EX_WRONG;
    }
    if (fwrite(ue->ue_reply, 1, len, stdout) != len || putchar('\n') == EOF ||
        fflush(stdout) == EOF) {
        fprintf(stderr, "upecho: writing the reply: %s\n", strerror(errno));
        return EX_IOERR;
    }
    return EX_OK;
}

/*
 * After the last reply on a stream nothing more may come: bytes already
 * waiting mean the server sent more than it was sent.
 */
static int
upecho_check_surplus(struct upecho *ue)
{
    unsigned char b;
    ssize_t n;

    if (ue->ue_target.t_kind == TARGET_UDP)
        return EX_OK;
    n = recv(ue->ue_fd, &b, 1, MSG_DONTWAIT);
    if (n == 1) {
        fprintf(stderr, "upecho: the server sent more bytes than it was sent\n");
        return EX_WRONG;
    }
    return EX_OK;
}

/*
 * Read stdin line by line (binary-safe, the newline is not sent).  With a
 * terminal, show a prompt and carry on after a wrong reply; otherwise stop
 * at the first failure, so a pipeline sees it in the exit status.
 */
static int
upecho_lines(struct upecho *ue, bool interactive)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int status = EX_OK;

    for (;;) {
        int rc;

        /* Like read -p, the prompt goes to stderr: stdout carries only replies. */
        if (interactive)
            fputs("upecho> ", stderr);
        errno = 0;
        n = getline(&line, &cap, stdin);
        if (n == -1) {
            if (errno != 0) {
                fprintf(stderr, "upecho: reading stdin: %s\n", strerror(errno));
                status = EX_IOERR;
            }
            if (interactive)
                fputc('\n', stderr);
            break;
        }
        if (n > 0 && line[n - 1] == '\n')
            n--;
        rc = upecho_one(ue, (unsigned char *)line, (size_t)n);
        if (rc == EX_OK)
            continue;
        if (interactive && rc == EX_WRONG) {
            status = rc;
            continue;
        }
        status = rc;
        break;
    }
    free(line);
    return status;
}

static void
usage(FILE *f)
{
    fputs("usage: upecho [options] tcp://HOST:PORT | udp://HOST:PORT | unix:///PATH\n"
          "Sends each line of standard input (or each -m message) to an uppercasing echo\n"
          "server, prints each reply on its own line and checks it is the uppercase of\n"
          "what was sent.  On a terminal it prompts for one line at a time.\n"
          "  -m, --message TEXT   send TEXT instead of reading stdin (may be repeated)\n"
          "  -t, --timeout SECS   wait this long for each reply (default 5; UDP resends the\n"
          "                       request up to 3 times within it)\n"
          "  -h, --help           this help\n"
          "  -V, --version        print the version\n"
          "Exit status: 0 every reply right, 1 a wrong reply, 69 cannot connect or the\n"
          "connection broke, 75 timed out, 64 usage, 74 stdin or stdout failed.\n",
          f);
}

static const struct option long_options[] = {
    {"message", required_argument, NULL, 'm'},
    {"timeout", required_argument, NULL, 't'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

int
main(int argc, char **argv)
{
    struct upecho ue;
    const char **messages;
    size_t nmessages = 0;
    const char *why;
    double secs = 5.0;
    int opt, status;

    memset(&ue, 0, sizeof(ue));
    ue.ue_fd = -1;
    messages = calloc((size_t)argc, sizeof(*messages));
    if (messages == NULL)
        return EX_OSERR;
    while ((opt = getopt_long(argc, argv, "m:t:hV", long_options, NULL)) != -1) {
        char *end;

        switch (opt) {
        case 'm':
            messages[nmessages++] = optarg;
            break;
        case 't':
            errno = 0;
            secs = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || errno != 0 || !(secs > 0) || secs > 86400) {
                fprintf(stderr, "upecho: -t wants a positive number of seconds, not '%s'\n",
                        optarg);
                free(messages);
                return EX_USAGE;
            }
            break;
        case 'h':
            usage(stdout);
            free(messages);
            return EX_OK;
        case 'V':
            printf("upecho %s\n", UPECHOD_VERSION);
            free(messages);
            return EX_OK;
        default:
            usage(stderr);
            free(messages);
            return EX_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "upecho: expected one target, such as tcp://127.0.0.1:7000\n");
        usage(stderr);
        free(messages);
        return EX_USAGE;
    }
    if (target_parse(argv[optind], &ue.ue_target, &why) < 0) {
        fprintf(stderr, "upecho: bad target '%s': %s\n", argv[optind], why);
        free(messages);
        return EX_USAGE;
    }
    ue.ue_timeout_ms = (int)(secs * 1000.0 + 0.999);
    ue.ue_retried = malloc(UDP_MAX);
    if (ue.ue_retried == NULL) {
        free(messages);
        return EX_OSERR;
    }
    signal(SIGPIPE, SIG_IGN);

    status = upecho_connect(&ue, argv[optind]);
    if (status == EX_OK && nmessages > 0) {
        for (size_t i = 0; i < nmessages && status == EX_OK; i++)
            status = upecho_one(&ue, (const unsigned char *)messages[i], strlen(messages[i]));
    } else if (status == EX_OK) {
        status = upecho_lines(&ue, isatty(STDIN_FILENO));
    }
    if (status == EX_OK)
        status = upecho_check_surplus(&ue);
    if (ue.ue_fd != -1)
        close(ue.ue_fd);
    free(ue.ue_reply);
    free(ue.ue_retried);
    free(messages);
    return status;
}
