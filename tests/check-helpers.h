/* check-helpers.h: the harness's calls that a test cannot go on without, as check assertions. */
#ifndef UPECHOD_CHECK_HELPERS_H
#define UPECHOD_CHECK_HELPERS_H

/*
 * The harness itself asserts nothing and returns -errno; these thin wrappers
 * fail the calling test instead, with the reason in the message.  Static
 * inline, so each test program takes only what it uses and the harness
 * library needs no check.
 */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "harness.h"

/* daemon_start(), failing the test unless the daemon got ready. */
static inline void
start_or_fail(struct daemon_proc *dp, const char *ini)
{
    int r = daemon_start(dp, ini);

    ck_assert_msg(r == 0, "daemon_start: %s", strerror(-r));
}

/* A TCP connection to port on family's loopback address, failing the test if there is none. */
static inline int
connect_or_fail(int family, int port)
{
    int fd;

    ck_assert_int_gt(port, 0);
    fd = tcp_connect(family, port);
    ck_assert_msg(fd >= 0, "tcp_connect to port %d: %s", port, strerror(-fd));
    return fd;
}

/* One short message and its uppercase back within timeout_ms, on a stream. */
static inline void
echo_once(int fd, const char *msg, int timeout_ms)
{
    size_t len = strlen(msg);
    char got[256], want[256];
    ssize_t n;

    ck_assert_uint_lt(len, sizeof(got));
    ck_assert_int_eq(write_all(fd, msg, len), 0);
    n = read_exact(fd, got, len, timeout_ms);
    ck_assert_msg(n == (ssize_t)len, "echo of '%s': %s", msg,
                  n < 0 ? strerror((int)-n) : "short read or EOF");
    ref_upper(want, msg, len);
    ck_assert_mem_eq(got, want, len);
}

/* send_until_stall(), failing the test on a send error: how many bytes went in. */
static inline size_t
fill_or_fail(int fd, const void *ring, size_t ring_len, size_t cap, int stall_ms)
{
    ssize_t n = send_until_stall(fd, ring, ring_len, cap, stall_ms);

    ck_assert_msg(n >= 0, "send: %s", strerror((int)-n));
    return (size_t)n;
}

/* How many descriptors the daemon holds, failing the test if /proc cannot say. */
static inline int
nfds_or_fail(const struct daemon_proc *dp)
{
    int n = daemon_nfds(dp);

    ck_assert_msg(n >= 0, "/proc/%d/fd: %s", (int)dp->dp_pid, strerror(-n));
    return n;
}

/* daemon_wait_nfds(), failing the test if /proc cannot say: the last count. */
static inline int
wait_nfds_or_fail(const struct daemon_proc *dp, int want, int timeout_ms)
{
    int n = daemon_wait_nfds(dp, want, timeout_ms);

    ck_assert_msg(n >= 0, "/proc/%d/fd: %s", (int)dp->dp_pid, strerror(-n));
    return n;
}

/* The daemon is down (or up) to want descriptors within timeout_ms. */
static inline void
expect_nfds(const struct daemon_proc *dp, int want, int timeout_ms)
{
    int n = wait_nfds_or_fail(dp, want, timeout_ms);

    ck_assert_msg(n == want, "daemon holds %d descriptors, %d expected", n, want);
}

/* manager_open(), failing the test unless NOTIFY_SOCKET now leads to a new manager socket. */
static inline void
manager_open_or_fail(struct manager *m, bool abstract)
{
    int r = manager_open(m, abstract);

    ck_assert_msg(r == 0, "manager_open: %s", strerror(-r));
}

/* manager_recv(), failing the test on an error: a datagram's length, or -ETIMEDOUT. */
static inline ssize_t
manager_recv_or_fail(struct manager *m, char *buf, size_t size, pid_t *pid, long long timeout_ms)
{
    ssize_t n = manager_recv(m, buf, size, pid, timeout_ms);

    ck_assert_msg(n >= 0 || n == -ETIMEDOUT, "NOTIFY_SOCKET: %s", strerror((int)-n));
    return n;
}

#endif
